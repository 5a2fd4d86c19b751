#!/bin/sh
# One-shot: wait for the Temporal cluster, then create the namespace if it is missing.
# (From temporalio/samples-server compose, with its MAX_ATTEMPTS typo fixed.)
set -eu
NAMESPACE="${DEFAULT_NAMESPACE:-default}"
MAX_ATTEMPTS=30
attempt=0
until temporal operator cluster health --address "$TEMPORAL_ADDRESS" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    echo "Temporal at $TEMPORAL_ADDRESS not healthy after $MAX_ATTEMPTS attempts" >&2
    exit 1
  fi
  sleep 2
done
temporal operator namespace describe --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" >/dev/null 2>&1 ||
  temporal operator namespace create --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" --retention 30d

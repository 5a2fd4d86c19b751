#!/bin/sh
# One-shot: register the contract's search attributes (docs/contract.md, Search attributes).
# `create` fails when they exist already; that is fine on a re-run.
set -eu
NAMESPACE="${DEFAULT_NAMESPACE:-default}"
for attribute in RolloutStateCode RolloutStatus RolloutCommunityStatus; do
  temporal operator search-attribute create --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" \
    --name "$attribute" --type Keyword ||
    temporal operator search-attribute list --address "$TEMPORAL_ADDRESS" -n "$NAMESPACE" |
      grep -q "$attribute"
done

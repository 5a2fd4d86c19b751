#!/bin/sh
# One-shot of the monitoring profile (the grafana-dashboards service): put Temporal's SDK
# dashboard where Grafana provisions it from (provisioning/dashboards/dashboards.yml).
#
# temporalio/dashboards sdk/temporal-go-java-sdks-tally.json (MIT) at a pinned commit: the
# variant whose metric names are the worker's, `_total` counters and durations in `_seconds`
# (worker.prometheus_config); the Core-SDK variant expects unsuffixed milliseconds. It is
# checked against its SHA-256, and downloaded here rather than copied into this repository.
# A failed download costs the dashboard, not Grafana: the job still exits 0.
set -eu
COMMIT=f10143b89ca887b1096f5c9498ec2f1599562007
SHA256=eca32b044d6f13a7a21343827338943b19ac1628f9c5b3c9cf01ac335cc2c7ff
URL="https://raw.githubusercontent.com/temporalio/dashboards/$COMMIT/sdk/temporal-go-java-sdks-tally.json"
DIR=/var/lib/grafana/dashboards/temporal
FILE="$DIR/temporal-sdk.json"

verified() {
  # Busybox and coreutils both read "HASH  FILE" lines with -c; quiet by redirection.
  echo "$SHA256  $1" | sha256sum -c >/dev/null 2>&1
}

mkdir -p "$DIR"
if [ -f "$FILE" ] && verified "$FILE"; then
  exit 0  # downloaded on an earlier start: Grafana's data volume keeps it
fi
tmp=$(mktemp "$DIR/.download.XXXXXX")
if curl -fsSL --retry 3 --max-time 60 -o "$tmp" "$URL" && verified "$tmp"; then
  chmod 644 "$tmp"
  mv "$tmp" "$FILE"
  echo "Temporal SDK dashboard (temporalio/dashboards@$COMMIT) provisioned"
else
  rm -f "$tmp"
  echo "warning: Temporal's SDK dashboard not downloaded from $URL; Grafana starts without it" >&2
fi

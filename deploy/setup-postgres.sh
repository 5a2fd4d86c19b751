#!/bin/sh
# One-shot: create and migrate Temporal's own databases (temporal, temporal_visibility).
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${POSTGRES_PWD:?}"
SCHEMA=/etc/temporal/schema/postgresql/v12
for db in temporal temporal_visibility; do
  dir=$SCHEMA/temporal/versioned
  [ "$db" = temporal_visibility ] && dir=$SCHEMA/visibility/versioned
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" \
    -p "${DB_PORT:-5432}" --pw "$POSTGRES_PWD" --db "$db" create || true
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" \
    -p "${DB_PORT:-5432}" --pw "$POSTGRES_PWD" --db "$db" setup-schema -v 0.0
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" \
    -p "${DB_PORT:-5432}" --pw "$POSTGRES_PWD" --db "$db" update-schema -d "$dir"
done

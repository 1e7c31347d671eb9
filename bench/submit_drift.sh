#!/usr/bin/env bash
# Does a 201 cost more the longer the orchestrator runs? The send path
# closed loop (16 clients) in CHUNKS back-to-back slices of SECONDS each,
# against one database that is never vacuumed (the bench machine runs with
# autovacuum off; in production it is what happens between two vacuums of
# orch.messages). Each slice prints its req/s and server CPU per 201; at
# the end, the size of the partial index of unpublished rows and what one
# claim reads (EXPLAIN (ANALYZE, BUFFERS), planned as the relay's
# bookkeeping connections plan it).
#
#   bench/submit_drift.sh [CHUNKS=6] [SECONDS=10] [CLIENTS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=${1:-6}; SECS=${2:-10}; CLIENTS=${3:-16}
. bench/lib.sh
start_orchestrator "$CLIENTS"

printf '| slice | s from start | req/s | server CPU µs per 201 (orchestrator / postgres / redis / nats) | messages so far |\n|---:|---:|---:|---|---:|\n'
for i in $(seq 1 "$CHUNKS"); do
  cpu_snapshot c0
  j=$(loadgen_json --clients "$CLIENTS" --duration "${SECS}s")
  cpu_snapshot c1
  n=$(psql -Atq "$PG/$DB" -c "SELECT count(*) FROM orch.messages")
  # shellcheck disable=SC2154  # c0 and c1 are set by cpu_snapshot (printf -v)
  printf '| %s | %s | %s | %s | %s |\n' "$i" "$((i * SECS))" "$(field "$j" rps)" \
    "$(cpu_per_request "$c0" "$c1" "$(field "$j" ok 0)" | cut -d'|' -f1-4,6)" "$n"
done
sleep 2   # the relay drains
printf '\nmessages_unpublished: %s; one claim from the start:\n' \
  "$(psql -Atq "$PG/$DB" -c "SELECT pg_size_pretty(pg_relation_size('orch.messages_unpublished'))")"
psql -Atq "$PG/$DB" <<'SQL'
SET enable_bitmapscan = off;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)
SELECT id FROM orch.messages
 WHERE published_at IS NULL AND event_subject IS NOT NULL
   AND (next_attempt_at IS NULL OR next_attempt_at <= now())
   AND (lease_until IS NULL OR lease_until < now())
 ORDER BY created_at, id LIMIT 512 FOR UPDATE SKIP LOCKED;
SQL

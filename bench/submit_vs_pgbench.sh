#!/usr/bin/env bash
# Goal 1 of the performance issue: submit throughput against the database's
# own limit. Alternates, in one run, A = pgbench (one single-row INSERT per
# transaction into a table shaped like orch.messages) and B = the full
# POST /v1/sms/send path (JWT, schema + domain validation, idempotency with
# Redis + Postgres, message + outbox commit, relay to JetStream with PubAck),
# at the same client count, ROUNDS times; prints each pair and the ratio
# B/A as min / median / max.
#
#   bench/submit_vs_pgbench.sh [CLIENTS=16] [SECONDS=10] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-16}; SECS=${2:-10}; ROUNDS=${3:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sms-orchestrator-target}"
PG=postgres://postgres@127.0.0.1:5432
DB=bench_submit
SECRET=bench-secret-0123456789abcdef0123456789
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)

cargo build --release -q -p orchestrator -p loadgen
BIN=$CARGO_TARGET_DIR/release

psql -q "$PG/test" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
psql -q "$PG/$DB" <<'SQL'
CREATE TABLE pgbench_messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id text NOT NULL, status text NOT NULL,
  to_number text NOT NULL, sender text NOT NULL, body text NOT NULL, encoding text NOT NULL,
  segments int NOT NULL, correlation_id text, created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now());
SQL
cat > /tmp/pgbench_insert.sql <<'SQL'
INSERT INTO pgbench_messages (tenant_id, status, to_number, sender, body, encoding, segments, correlation_id)
VALUES ('bench', 'accepted', '+447700900123', 'Acme', 'Your code is 123456', 'GSM-7', 1, 'c');
SQL

STREAM=BENCH_$$
$BIN/orchestrator --listen 127.0.0.1:18090 --admin-listen 127.0.0.1:19190 --submit-api-enabled \
  --jwt-hs256-secret "$SECRET" --database-url "$PG/$DB" --redis-url redis://127.0.0.1:6379 \
  --nats-url nats://127.0.0.1:4222 --nats-create-stream --nats-stream "$STREAM" \
  --nats-stream-subjects "bench$$.>" --nats-subject "bench$$.sms.outbound.request" \
  --nats-status-subject "bench$$.sms.outbound.status" --nats-status-consumer "bench$$" \
  --database-max-connections "$CLIENTS" >/tmp/bench-orchestrator.log 2>&1 &
ORCH=$!
trap 'kill $ORCH 2>/dev/null || true' EXIT
sleep 2

ratios=()
printf '| round | pgbench TPS | orchestrator TPS | ratio |\n|---|---|---|---|\n'
for r in $(seq 1 "$ROUNDS"); do
  a=$("$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" -f /tmp/pgbench_insert.sql "$PG/$DB" 2>/dev/null \
      | awk '/^tps/ {print $3; exit}')
  b=$("$BIN/loadgen" --url http://127.0.0.1:18090 --secret "$SECRET" --clients "$CLIENTS" \
      --duration "${SECS}s" --json | tail -1 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["rps"],1))')
  ratio=$(python3 -c "print(round($b/$a,3))")
  ratios+=("$ratio")
  printf '| %s | %s | %s | %s |\n' "$r" "$a" "$b" "$ratio"
done
python3 - "${ratios[@]}" <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[1:])
print(f"\nratio orchestrator/pgbench: min {r[0]}  median {statistics.median(r)}  max {r[-1]}")
PY
curl -s http://127.0.0.1:19190/metrics | grep -E '^orchestrator_publish_duration_seconds_(bucket|count)' > /tmp/bench-publish-latency.txt || true
echo "commit→PubAck histogram: /tmp/bench-publish-latency.txt"

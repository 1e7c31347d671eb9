# shellcheck shell=bash
# Shared by the submit benchmarks: source it, then `start_orchestrator`.
# Builds the release binaries, gives the run its own database, JetStream
# stream and subjects (deleted on exit, with everything they hold), and
# starts the orchestrator on the full production path: HS256 JWT, Redis,
# Postgres, relay to JetStream with PubAck.
#
# After start_orchestrator: $API (base URL), $ADMIN (metrics URL base),
# $ORCH (pid), $BIN (release binaries), $SECRET, $PG, $DB, $SUBJECT.
# ORCH_ARGS adds orchestrator flags (e.g. --database-group-commit 1);
# ORCH_ENV, NAME=VALUE pairs for its environment only (e.g.
# TOKIO_WORKER_THREADS=1; the load generator keeps its own).

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sms-orchestrator-target}"
BIN=$CARGO_TARGET_DIR/release
PG=postgres://postgres@127.0.0.1:5432
DB=bench_$$
SECRET=bench-secret-0123456789abcdef0123456789
STREAM=BENCH_$$
# The run's tenant: its Idempotency-Keys in Redis (48 h TTL) are deleted on exit.
TENANT=bench$$
SUBJECT=bench$$.sms.outbound.request
API=http://127.0.0.1:18090
ADMIN=http://127.0.0.1:19190
ORCH=
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -1)

# Every bench builds this one package set: cargo unifies features over the
# packages named, so another set would rebuild the shared dependencies
# (10-25 min on 2 cores). mirror-proxy is in it so the soak and the mirror
# bench reuse the build too.
RELEASE_SET="-p orchestrator -p loadgen -p integration-tests -p mirror-proxy"
# BUILD_PROFILE=dev builds the debug binaries instead (then set BIN).
build_release() {
  # shellcheck disable=SC2086
  cargo build --profile "${BUILD_PROFILE:-release}" -q $RELEASE_SET --bin orchestrator --bin loadgen \
    --bin sweep-test-state --bin mirror-proxy --bin legacy-gateway
}

bench_cleanup() {
  if [ -n "$ORCH" ]; then kill "$ORCH" 2>/dev/null || true; wait "$ORCH" 2>/dev/null || true; fi
  "$BIN/sweep-test-state" --prefix "$STREAM" >/dev/null 2>&1 || true
  psql -q "$PG/test" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  redis-cli --scan --pattern "orch:submit-idem:$TENANT:*" 2>/dev/null | xargs -r -n 1000 redis-cli del >/dev/null 2>&1 || true
  rm -f "/tmp/bench-times-$$" "/tmp/bench-pgbench-$$" "/tmp/pgbench_insert_$$.sql" /tmp/bench-pgblat-$$.*
}

# start_orchestrator [POOL=16]
start_orchestrator() {
  local pool=${1:-16}
  build_release
  trap bench_cleanup EXIT
  psql -q "$PG/test" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  # shellcheck disable=SC2086
  env ${ORCH_ENV:-} "$BIN/orchestrator" --listen 127.0.0.1:18090 --admin-listen 127.0.0.1:19190 --submit-api-enabled \
    --jwt-hs256-secret "$SECRET" --database-url "$PG/$DB" --redis-url redis://127.0.0.1:6379 \
    --nats-url nats://127.0.0.1:4222 --nats-create-stream --nats-stream "$STREAM" \
    --nats-stream-subjects "bench$$.>" --nats-subject "$SUBJECT" \
    --nats-status-subject "bench$$.sms.outbound.status" --nats-status-consumer "bench$$" \
    --shadow-subject "bench$$.shadow.sms.outbound.request" \
    --database-max-connections "$pool" ${ORCH_ARGS:-} >/tmp/bench-orchestrator.log 2>&1 &
  ORCH=$!
  for _ in $(seq 1 100); do
    curl -sf "$ADMIN/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "orchestrator did not become ready; see /tmp/bench-orchestrator.log" >&2
  return 1
}

# loadgen_json ARGS...: one loadgen run, its JSON line.
loadgen_json() {
  "$BIN/loadgen" --url "$API" --secret "$SECRET" --tenant "$TENANT" --json "$@" | tail -1
}

# field JSON NAME [DIGITS=1]
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])[sys.argv[2]], int(sys.argv[3])))" "$1" "$2" "${3:-1}"; }

# Peak resident memory of a process so far, MiB (VmHWM).
peak_rss_mib() { awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# min / median / max of the arguments.
spread() {
  python3 - "$@" <<'PY'
import statistics, sys
r = sorted(float(x) for x in sys.argv[1:])
print(f"min {r[0]:g}  median {statistics.median(r):g}  max {r[-1]:g}")
PY
}

# The pgbench side of the comparison: a table shaped like orch.messages in
# the run's database, and one single-row INSERT per transaction.
pgbench_table() {
  psql -q "$PG/$DB" <<'SQL'
CREATE TABLE pgbench_messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id text NOT NULL, status text NOT NULL,
  to_number text NOT NULL, sender text NOT NULL, body text NOT NULL, encoding text NOT NULL,
  segments int NOT NULL, correlation_id text, created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now());
SQL
  cat > "/tmp/pgbench_insert_$$.sql" <<'SQL'
INSERT INTO pgbench_messages (tenant_id, status, to_number, sender, body, encoding, segments, correlation_id)
VALUES ('bench', 'accepted', '+447700900123', 'Acme', 'Your code is 123456', 'GSM-7', 1, 'c');
SQL
}

# pgbench_exec ARGS...: pgbench against the run's database, its report on
# stdout. An aborted run (a script Postgres refuses) says why and stops the
# bench, instead of leaving an empty figure.
pgbench_exec() {
  local out
  if ! out=$("$PGBENCH" -n -M prepared "$@" "$PG/$DB" 2>&1); then
    echo "pgbench $* failed:" >&2
    grep -i 'error' <<<"$out" | sort | uniq -c | head -5 >&2
    return 1
  fi
  printf '%s\n' "$out"
}

# pgbench_generic CMD...: CMD with pgbench's sessions planning each
# prepared statement once (plan_cache_mode = force_generic_plan), as the
# orchestrator's prepared accepting statement is. Left to choose, Postgres
# re-planned bench/pgbench_accept.sql on every execution (a custom plan
# sees `generate_series(1, 1)` where the generic one assumes 1 000 rows):
# 30 % of Postgres's CPU went to the planner, and the C leg read 5 241
# statements/s where generic plans make 7 925 (2026-12-01, RESULTS.md).
pgbench_generic() { PGOPTIONS="${PGOPTIONS:-} -c plan_cache_mode=force_generic_plan" "$@"; }

# pgbench_run CLIENTS SECONDS [SCRIPT] [PGBENCH ARGS...]: "TPS TRANSACTIONS"
pgbench_run() {
  local c=$1 secs=$2 script=${3:-/tmp/pgbench_insert_$$.sql}
  shift 2; [ $# -gt 0 ] && shift
  local threads=$(( c < 2 ? 1 : 2 )) out
  out=$(pgbench_exec -c "$c" -j "$threads" -T "$secs" -f "$script" "$@") || return 1
  awk '/actually processed/ {n=$NF} /^tps/ {t=$3} END {printf "%.1f %d\n", t, n}' <<<"$out"
}

# pgbench_latency RATE CLIENTS SECS SCRIPT [ARGS...]: pgbench open loop at
# RATE transactions/s (-R: latency counted from each transaction's
# scheduled start, like loadgen's), per-transaction log; prints
# "p50 p99 max" in ms.
pgbench_latency() {
  local rate=$1 c=$2 secs=$3 script=$4
  shift 4
  rm -f /tmp/bench-pgblat-$$.*
  pgbench_exec -c "$c" -j 2 -R "$rate" -T "$secs" --log --log-prefix="/tmp/bench-pgblat-$$" \
    -f "$script" "$@" >/dev/null || return 1
  cat /tmp/bench-pgblat-$$.* | python3 -c '
import sys
lat = sorted(int(line.split()[2]) / 1000 for line in sys.stdin if line.strip())
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"{q(0.5):.2f} {q(0.99):.2f} {lat[-1]:.2f}")'
  rm -f /tmp/bench-pgblat-$$.*
}

# WAL bytes Postgres wrote between two `wal_lsn` readings.
wal_lsn() { psql -Atq "$PG/$DB" -c "SELECT pg_current_wal_lsn()"; }
wal_bytes() { psql -Atq "$PG/$DB" -c "SELECT pg_wal_lsn_diff('$2', '$1')::bigint"; }

# CPU accounting, to show where a request's cost goes. `cpu_snapshot VAR`
# sets VAR to "orchestrator postgres redis nats clients" in clock ticks
# (1/100 s): live
# processes' utime+stime, plus, for Postgres, what the postmaster has reaped
# from exited backends (pgbench's connections end with each run), and for
# the load generators (loadgen, pgbench: children of this shell) bash's
# `times`. It sets a variable rather than printing, because `$(cpu_snapshot)`
# would run `times` in a subshell, which has no children of its own: the
# load generator's column read ~0 (and went negative) until 2026-12-01.
cpu_of() { awk '{s=$14+$15} END {print s+0}' "$@" 2>/dev/null || echo 0; }
cpu_snapshot() {
  local o p r n c postmaster
  # $1 is the caller's variable, set at the end.
  o=$(cpu_of "/proc/$ORCH/stat")
  postmaster=$(pgrep -o -x postgres)
  p=$(( $(for pid in $(pgrep -x postgres); do cpu_of "/proc/$pid/stat"; done | paste -sd+ | bc) \
      + $(awk '{print $16+$17}' "/proc/$postmaster/stat") ))
  r=$(cpu_of "/proc/$(pgrep -o -x redis-server)/stat")
  n=$(cpu_of "/proc/$(pgrep -o -x nats-server)/stat")
  times >"/tmp/bench-times-$$"   # in this shell: the load generators are its children
  c=$(awk 'NR==2 {gsub(/[ms]/," "); split($0,a," "); print int((a[1]*60+a[2]+a[3]*60+a[4])*100)}' "/tmp/bench-times-$$")
  printf -v "$1" '%s' "$o $p $r $n $c"
}
# cpu_per_request BEFORE AFTER REQUESTS: CPU µs per request for each part.
cpu_per_request() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
before, after, n = sys.argv[1].split(), sys.argv[2].split(), float(sys.argv[3])
names = ["orchestrator", "postgres", "redis", "nats", "load generator"]
parts = [(int(a) - int(b)) * 10_000 / n for a, b in zip(after, before)]
# The goal is server CPU per request: the total leaves the load generator out.
print(" | ".join(f"{name} {us:.0f}" for name, us in zip(names, parts)) + f" | server total {sum(parts[:4]):.0f}")
PY
}

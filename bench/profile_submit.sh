#!/usr/bin/env bash
# Where a 201's server CPU goes (#17): the full send path under a closed loop
# (like submit_vs_pgbench's B leg), sampled system-wide with `perf record`,
# then the top symbols of the Postgres backends and of the orchestrator,
# and the database's row and WAL work per 201 (pg_stat_* deltas).
#
#   bench/profile_submit.sh [CLIENTS=16] [SECONDS=8] [TOP=40]
#
# Needs perf (linux-perf) and kernel.perf_event_paranoid <= 2. Postgres's
# binary exports its functions, so its symbols resolve without debug
# packages. The raw profile stays in /tmp/bench-profile.data.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-16}; SECS=${2:-8}; TOP=${3:-40}
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
. bench/lib.sh
start_orchestrator "$CLIENTS"
# Warm up (prepared statements, pools, page cache), then measure.
loadgen_json --clients "$CLIENTS" --duration 3s >/dev/null

tables() {
  psql -Atq "$PG/$DB" -c "SELECT coalesce(sum(n_tup_ins),0), coalesce(sum(n_tup_upd),0),
    coalesce(sum(n_tup_hot_upd),0), coalesce(sum(n_tup_del),0) FROM pg_stat_user_tables"
}
sleep 1.1
IFS='|' read -r i0 u0 h0 d0 <<<"$(tables)"
w0=$(wal_lsn)
perf record -q -e cpu-clock -F 499 -a -g -o /tmp/bench-profile.data -- \
  "$BIN/loadgen" --url "$API" --secret "$SECRET" --tenant "$TENANT" --json \
  --clients "$CLIENTS" --duration "${SECS}s" >/tmp/bench-profile.json 2>/dev/null
j=$(tail -1 /tmp/bench-profile.json)
w1=$(wal_lsn)
sleep 1.1
IFS='|' read -r i1 u1 h1 d1 <<<"$(tables)"
ok=$(field "$j" ok 0)
printf 'send, %s clients, %s s: %s req/s, %s 201s\n' "$CLIENTS" "$SECS" "$(field "$j" rps)" "$ok"
python3 - "$ok" "$((i1 - i0))" "$((u1 - u0))" "$((h1 - h0))" "$((d1 - d0))" "$(wal_bytes "$w0" "$w1")" <<'PY'
import sys
ok, ins, upd, hot, dele, wal = (float(x) for x in sys.argv[1:])
print(f"per 201: {ins/ok:.2f} rows inserted, {upd/ok:.2f} updated ({hot/ok:.2f} HOT), "
      f"{dele/ok:.2f} deleted, {wal/ok:.0f} WAL bytes")
PY

# Threads by process: the orchestrator's and loadgen's are both named
# tokio-rt-worker, so the orchestrator's are told apart by its thread ids.
orch_tids=$(ls "/proc/$ORCH/task" | paste -sd,)
printf '\nCPU samples by process (share of both cores):\n'
perf report -i /tmp/bench-profile.data --stdio --no-children --sort pid -g none 2>/dev/null \
  | python3 -c '
import collections, re, sys
orch = set(sys.argv[1].split(","))
share = collections.Counter()
for line in sys.stdin:
    m = re.match(r"\s+([0-9.]+)%\s+(\d+):(\S+)", line)
    if m:
        pct, tid, comm = float(m[1]), m[2], m[3]
        share["orchestrator" if tid in orch else "loadgen" if comm == "tokio-rt-worker" else comm] += pct
for name, pct in share.most_common(8):
    print(f"  {pct:6.2f}%  {name}")' "$orch_tids"
printf '\npostgres, top %s symbols (self):\n' "$TOP"
perf report -i /tmp/bench-profile.data --stdio --no-children --comms postgres \
  --sort dso,sym -g none --percent-limit 0.4 2>/dev/null | grep -E '^ +[0-9]' | head -"$TOP"
printf '\norchestrator, top %s symbols (self; a release build has no frame pointers, so no call graph):\n' "$TOP"
perf report -i /tmp/bench-profile.data --stdio --no-children --tid "$orch_tids" \
  --sort dso,sym -g none --percent-limit 0.3 2>/dev/null | grep -E '^ +[0-9]' | head -"$TOP"

#!/usr/bin/env bash
# Goal 8, first half: the scaling shape of POST /v1/sms/send. At 1, 2, 4,
# 8, 16, 32 and 64 concurrent clients (closed loop), pgbench's single-row
# INSERT and the full submit path alternate; throughput and p99 of each,
# and their ratio. The orchestrator's pool stays at 16 connections, as it
# would in production; pgbench opens one connection per client.
#
#   bench/submit_scaling.sh [SECONDS=5] [CLIENT_COUNTS="1 2 4 8 16 32 64"]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}; COUNTS=${2:-1 2 4 8 16 32 64}
. bench/lib.sh
start_orchestrator 16
pgbench_table

printf '| clients | pgbench TPS | orchestrator req/s | ratio | p50 ms | p99 ms | errors |\n|---:|---:|---:|---:|---:|---:|---:|\n'
for c in $COUNTS; do
  pgbench_run "$c" "$SECS" >"/tmp/bench-pgbench-$$"; read -r a _ <"/tmp/bench-pgbench-$$"
  j=$(loadgen_json --clients "$c" --duration "${SECS}s")
  b=$(field "$j" rps 0)
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$a" "$b" "$(python3 -c "print(round($b/$a,3))")" \
    "$(field "$j" p50_ms 2)" "$(field "$j" p99_ms 2)" "$(field "$j" errors 0)"
done
printf '\norchestrator peak RSS: %s MiB\n' "$(peak_rss_mib "$ORCH")"

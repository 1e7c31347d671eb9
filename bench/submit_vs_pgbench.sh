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
. bench/lib.sh
start_orchestrator "$CLIENTS"
pgbench_table
cpu_a=(); cpu_b=()

ratios=()
printf '| round | pgbench TPS | orchestrator TPS | ratio |\n|---|---|---|---|\n'
for r in $(seq 1 "$ROUNDS"); do
  c0=$(cpu_snapshot)
  pgbench_run "$CLIENTS" "$SECS" >"/tmp/bench-pgbench-$$"; read -r a a_n <"/tmp/bench-pgbench-$$"
  c1=$(cpu_snapshot)
  j=$(loadgen_json --clients "$CLIENTS" --duration "${SECS}s")
  c2=$(cpu_snapshot)
  b=$(field "$j" rps)
  ratio=$(python3 -c "print(round($b/$a,3))")
  ratios+=("$ratio")
  cpu_a+=("$(cpu_per_request "$c0" "$c1" "$a_n")")
  cpu_b+=("$(cpu_per_request "$c1" "$c2" "$(field "$j" ok 0)")")
  printf '| %s | %s | %s | %s |\n' "$r" "$a" "$b" "$ratio"
done
printf '\nratio orchestrator/pgbench: %s\n' "$(spread "${ratios[@]}")"
printf '\nCPU per request, µs (pgbench: its transactions; orchestrator: its 202s):\n\n| round | side | CPU µs per request by process |\n|---|---|---|\n'
for i in "${!cpu_a[@]}"; do
  printf '| %s | pgbench | %s |\n| %s | orchestrator | %s |\n' "$((i+1))" "${cpu_a[$i]}" "$((i+1))" "${cpu_b[$i]}"
done
curl -s "$ADMIN/metrics" | grep -E '^orchestrator_publish_duration_seconds_(bucket|count)' > /tmp/bench-publish-latency.txt || true
echo "commit→PubAck histogram: /tmp/bench-publish-latency.txt"
echo "orchestrator peak RSS: $(peak_rss_mib "$ORCH") MiB"

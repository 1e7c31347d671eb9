#!/usr/bin/env bash
# Goal 2 (latency at half of peak) and the orchestrator half of goal 7
# (memory). Finds the peak of POST /v1/sms/send and of GET /v1/sms/{id}
# (closed loop, 16 clients), then holds half of each peak open loop (rate
# fixed, latency measured from each request's scheduled instant: no
# coordinated omission) ROUNDS times, and reports p50/p99 min/median/max
# and the orchestrator's peak RSS.
#
#   bench/submit_latency.sh [SECONDS=10] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}; ROUNDS=${2:-3}
. bench/lib.sh
start_orchestrator 16

for mode in send get; do
  peak=$(field "$(loadgen_json --mode "$mode" --clients 16 --duration "${SECS}s")" rps 0)
  half=$(python3 -c "print(int($peak/2))")
  printf '\n%s: closed-loop peak %s req/s; open loop at %s req/s\n\n' "$mode" "$peak" "$half"
  printf '| round | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | errors |\n|---|---:|---:|---:|---:|---:|---:|\n'
  p50s=(); p99s=()
  for r in $(seq 1 "$ROUNDS"); do
    j=$(loadgen_json --mode "$mode" --clients 64 --rate "$half" --duration "${SECS}s")
    p50s+=("$(field "$j" p50_ms 2)"); p99s+=("$(field "$j" p99_ms 2)")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$r" "$(field "$j" rps 0)" "$(field "$j" p50_ms 2)" \
      "$(field "$j" p90_ms 2)" "$(field "$j" p99_ms 2)" "$(field "$j" max_ms 2)" "$(field "$j" errors 0)"
  done
  printf '\n%s at half peak: p50 %s ms; p99 %s ms\n' "$mode" "$(spread "${p50s[@]}")" "$(spread "${p99s[@]}")"
done
printf '\norchestrator peak RSS over the whole run: %s MiB\n' "$(peak_rss_mib "$ORCH")"

#!/usr/bin/env bash
# Goal 3: a 1000-item POST /v1/sms/bulk accepted in under 100 ms (p50) and
# its 1000 events on JetStream in under 1 s. One client sends bulk requests
# back to back for SECONDS; for each, loadgen times the 202 and watches the
# subject until every one of its message ids has been published.
#
#   bench/bulk.sh [SECONDS=20] [ITEMS=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}; ITEMS=${2:-1000}
. bench/lib.sh
start_orchestrator 16
loadgen_json --mode bulk --bulk-size "$ITEMS" --clients 1 --duration "${SECS}s" \
  --nats-url nats://127.0.0.1:4222 --nats-subject "$SUBJECT" >/tmp/bench-bulk.json
j=$(cat /tmp/bench-bulk.json)
printf '| items | requests | accept p50 ms | accept p99 ms | accept max ms | all events p50 ms | all events p99 ms | all events max ms | errors |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$ITEMS" "$(field "$j" requests 0)" \
  "$(field "$j" accept_p50_ms)" "$(field "$j" accept_p99_ms)" "$(field "$j" accept_max_ms)" \
  "$(field "$j" events_p50_ms)" "$(field "$j" events_p99_ms)" "$(field "$j" events_max_ms)" "$(field "$j" errors 0)"
printf '\norchestrator peak RSS: %s MiB\n' "$(peak_rss_mib "$ORCH")"

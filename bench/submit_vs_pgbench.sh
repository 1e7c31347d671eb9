#!/usr/bin/env bash
# Goal 1 of the performance issue: submit throughput against the database's
# own limit. Alternates, in one run, A = pgbench (one single-row INSERT per
# transaction into a table shaped like orch.messages) and B = the full
# POST /v1/sms/send path (JWT, schema + domain validation, idempotency with
# Redis + Postgres, message row (its own outbox) commit, relay to JetStream with PubAck),
# at the same client count, ROUNDS times; prints each pair and the ratio
# B/A as min / median / max. A third leg, C, runs the orchestrator's own
# accepting statement under pgbench (bench/pgbench_accept.sql: key +
# message row with its event, one request per transaction): the
# database's limit for what a submit must write. At the end, C again with
# 4 and 16 requests per transaction: what group commit could buy.
#
#   bench/submit_vs_pgbench.sh [CLIENTS=16] [SECONDS=10] [ROUNDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-16}; SECS=${2:-10}; ROUNDS=${3:-5}
. bench/lib.sh
start_orchestrator "$CLIENTS"
pgbench_table
cpu_a=(); cpu_b=(); cpu_c=(); per_commit=(); per_accept_commit=()
# Transactions the run's database committed so far (statistics reach the
# view within a second of a transaction's end, hence the pause).
db_commits() { sleep 1.1; psql -Atq "$PG/$DB" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
# The accept path's own commits: orchestrator_db_commit_requests' sum and count.
accept_commits() { curl -sf "$ADMIN/metrics" | awk '/^orchestrator_db_commit_requests_(sum|count) / {printf "%s ", $2}'; }

ratios=(); ratios_c=()
printf '| round | A: pgbench single-row INSERT TPS | B: orchestrator req/s | C: pgbench accept statement TPS | B/A | B/C |\n|---|---:|---:|---:|---:|---:|\n'
for r in $(seq 1 "$ROUNDS"); do
  cpu_snapshot c0
  pgbench_run "$CLIENTS" "$SECS" >"/tmp/bench-pgbench-$$"; read -r a a_n <"/tmp/bench-pgbench-$$"
  x1=$(db_commits); read -r s1 n1 <<<"$(accept_commits)"
  cpu_snapshot c1
  j=$(loadgen_json --clients "$CLIENTS" --duration "${SECS}s")
  cpu_snapshot c2
  x2=$(db_commits); read -r s2 n2 <<<"$(accept_commits)"
  per_accept_commit+=("$(python3 -c "print(round(($s2 - $s1) / max(1, $n2 - $n1), 2))")")
  # Requests per commit in B: every transaction of the database counts
  # (the relay's and the bookkeeping's too), so it reads low.
  per_commit+=("$(python3 -c "print(round($(field "$j" ok 0) / max(1, $x2 - $x1), 2))")")
  pgbench_generic pgbench_run "$CLIENTS" "$SECS" bench/pgbench_accept.sql -D batch=1 >"/tmp/bench-pgbench-$$"; read -r c c_n <"/tmp/bench-pgbench-$$"
  cpu_snapshot c3
  b=$(field "$j" rps)
  ratio=$(python3 -c "print(round($b/$a,3))"); ratios+=("$ratio")
  ratio_c=$(python3 -c "print(round($b/$c,3))"); ratios_c+=("$ratio_c")
  cpu_a+=("$(cpu_per_request "$c0" "$c1" "$a_n")")
  cpu_b+=("$(cpu_per_request "$c1" "$c2" "$(field "$j" ok 0)")")
  cpu_c+=("$(cpu_per_request "$c2" "$c3" "$c_n")")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$r" "$a" "$b" "$c" "$ratio" "$ratio_c"
done
printf '\nB/A (orchestrator / pgbench single-row INSERT): %s\n' "$(spread "${ratios[@]}")"
printf 'B/C (orchestrator / pgbench running its accept statement): %s\n' "$(spread "${ratios_c[@]}")"
printf 'B: requests per accept-path commit (orchestrator_db_commit_requests): %s\n' "$(spread "${per_accept_commit[@]}")"
printf 'B: 201s per Postgres transaction (every transaction of the database): %s\n' "$(spread "${per_commit[@]}")"
printf '\nCPU per request, µs, by process (A, C: per pgbench transaction; B: per 202):\n\n| round | leg | CPU µs per request |\n|---|---|---|\n'
for i in "${!cpu_a[@]}"; do
  printf '| %s | A | %s |\n| %s | B | %s |\n| %s | C | %s |\n' "$((i+1))" "${cpu_a[$i]}" "$((i+1))" "${cpu_b[$i]}" "$((i+1))" "${cpu_c[$i]}"
done
printf '\nThe accept statement with N requests per transaction (%s clients, %s s):\n\n| requests per transaction | TPS | requests/s |\n|---:|---:|---:|\n' "$CLIENTS" "$SECS"
for n in 1 4 16; do
  pgbench_generic pgbench_run "$CLIENTS" "$SECS" bench/pgbench_accept.sql -D batch="$n" >"/tmp/bench-pgbench-$$"; read -r t _ <"/tmp/bench-pgbench-$$"
  printf '| %s | %s | %s |\n' "$n" "$t" "$(python3 -c "print(round($t*$n))")"
done
curl -s "$ADMIN/metrics" | grep -E '^orchestrator_publish_duration_seconds_(bucket|count)' > /tmp/bench-publish-latency.txt || true
echo "commit→PubAck histogram: /tmp/bench-publish-latency.txt"
echo "orchestrator peak RSS: $(peak_rss_mib "$ORCH") MiB"

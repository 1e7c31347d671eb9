#!/usr/bin/env bash
# Goal 2 (latency at half of peak) and the orchestrator half of goal 7
# (memory). Finds the peak of POST /v1/sms/send and of GET /v1/sms/{id}
# (closed loop, 16 clients), then holds half of each peak open loop (one
# uniform schedule, latency measured from each request's scheduled
# instant: no coordinated omission) ROUNDS times.
#
# Each send round is followed, at the same rate and connection count, by
# pgbench running a single-row INSERT open loop (-R): the database's own
# commit latency on this disk in the same minute, since a 202 waits for
# Postgres's WAL flush (fdatasync) and the disk's flush stalls are every
# durable write's. WAL bytes per request/transaction are shown beside it.
# Then a short latency-vs-rate curve for send, each rate against pgbench.
#
#   bench/submit_latency.sh [SECONDS=10] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}; ROUNDS=${2:-3}
CONNS=64
. bench/lib.sh
start_orchestrator 16
pgbench_table
INSERT_SQL=/tmp/pgbench_insert_$$.sql

for mode in send get; do
  peak=$(field "$(loadgen_json --mode "$mode" --clients 16 --duration "${SECS}s")" rps 0)
  half=$(python3 -c "print(int($peak/2))")
  printf '\n%s: closed-loop peak %s req/s; open loop at %s req/s, %s connections\n\n' "$mode" "$peak" "$half" "$CONNS"
  printf '| round | leg | achieved/s | p50 ms | p90 ms | p99 ms | max ms | late p99 ms | WAL bytes per request | errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
  p50s=(); p99s=(); pg50s=(); pg99s=()
  for r in $(seq 1 "$ROUNDS"); do
    w0=$(wal_lsn)
    j=$(loadgen_json --mode "$mode" --clients "$CONNS" --rate "$half" --duration "${SECS}s")
    w1=$(wal_lsn)
    p50s+=("$(field "$j" p50_ms 2)"); p99s+=("$(field "$j" p99_ms 2)")
    printf '| %s | orchestrator | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" "$(field "$j" rps 0)" "$(field "$j" p50_ms 2)" \
      "$(field "$j" p90_ms 2)" "$(field "$j" p99_ms 2)" "$(field "$j" max_ms 2)" "$(field "$j" late_p99_ms 2)" \
      "$(( $(wal_bytes "$w0" "$w1") / ($(field "$j" ok 0) + 1) ))" "$(field "$j" errors 0)"
    if [ "$mode" = send ]; then
      w0=$(wal_lsn)
      read -r g50 g99 gmax < <(pgbench_latency "$half" "$CONNS" "$SECS" "$INSERT_SQL")
      w1=$(wal_lsn)
      pg50s+=("$g50"); pg99s+=("$g99")
      printf '| %s | pgbench INSERT | %s | %s | | %s | %s | | %s | |\n' "$r" "$half" "$g50" "$g99" "$gmax" \
        "$(( $(wal_bytes "$w0" "$w1") / (half * SECS + 1) ))"
    fi
  done
  printf '\n%s at half peak: p50 %s ms; p99 %s ms\n' "$mode" "$(spread "${p50s[@]}")" "$(spread "${p99s[@]}")"
  if [ "$mode" = send ]; then
    printf 'pgbench INSERT at the same rate: p50 %s ms; p99 %s ms\n' "$(spread "${pg50s[@]}")" "$(spread "${pg99s[@]}")"
    printf '\nsend latency by rate (%s connections, 5 s each, alternating with pgbench INSERT):\n\n' "$CONNS"
    printf '| rate/s | orchestrator p50 | p99 | pgbench INSERT p50 | p99 |\n|---:|---:|---:|---:|---:|\n'
    for rate in 100 300 1000; do
      j=$(loadgen_json --mode send --clients "$CONNS" --rate "$rate" --duration 5s)
      read -r g50 g99 _ < <(pgbench_latency "$rate" "$CONNS" 5 "$INSERT_SQL")
      printf '| %s | %s | %s | %s | %s |\n' "$rate" "$(field "$j" p50_ms 2)" "$(field "$j" p99_ms 2)" "$g50" "$g99"
    done
  fi
done
printf '\norchestrator peak RSS over the whole run: %s MiB\n' "$(peak_rss_mib "$ORCH")"

#!/usr/bin/env bash
# Cost of `compare diff` against capture volume: generates synthetic
# mirror-proxy captures (bench/gen_capture.py: send/bulk/status exchanges,
# legacy vs orchestrator answers, ~2 % real differences, fictional
# +447700900xxx numbers) of 10 000, 100 000 and 1 000 000 exchanges, times
# `compare diff` on each and `compare report` on the diff log it wrote
# (wall, CPU, max RSS via /usr/bin/time), and prints Markdown tables: time
# should grow linearly and memory stay flat (both stream). Then times
# `compare replay` of the 10 000 and 100 000 captures against two local
# nginx instances (fixed answers, legacy and orchestrator style) at a fixed
# --concurrency: replay is bound by the HTTP round trips, not the diff. The
# targets are fake, so the replay runs with --allow-writes (writes are sent
# unmarked; nothing real is behind them). Captures live in a temp dir (1M
# exchanges ≈ 2 GB), removed at exit.
#
#   bench/diff_scaling.sh            # 10k, 100k, 1M diff; 10k, 100k replay
#   bench/diff_scaling.sh --quick    # without the 1M capture
#   CONCURRENCY=32 RUNS=5 bench/diff_scaling.sh
#
# Needs python3, /usr/bin/time (apt-get install -y time), /usr/sbin/nginx
# (nginx-light) and curl. Ports 18701 and 18702 must be free (PORT_BASE=18700
# moves them).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/sms-orchestrator-target}
SIZES=(10000 100000 1000000)
[ "${1:-}" = "--quick" ] && SIZES=(10000 100000)
REPLAY_MAX=100000               # replay the captures up to this size
CONCURRENCY=${CONCURRENCY:-16}  # replay: requests in flight
RUNS=${RUNS:-3}                 # diff runs per size below 1M (median kept)
NGINX=${NGINX:-/usr/sbin/nginx}
PORT_BASE=${PORT_BASE:-18700}
PORTS=($((PORT_BASE + 1)) $((PORT_BASE + 2)))
export DIFF_REDACTION_KEY=bench-diff-scaling-key

[ -x /usr/bin/time ] || { echo "needs /usr/bin/time: apt-get install -y time" >&2; exit 1; }
[ -x "$NGINX" ] || { echo "needs nginx at $NGINX (apt-get install -y nginx-light)" >&2; exit 1; }

cargo build --release -q -p compare
BIN=$CARGO_TARGET_DIR/release/compare

WORK=$(mktemp -d "${TMPDIR:-/tmp}/diff-scaling.XXXXXX")
NGINX_PID=
cleanup() {
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Largest capture (~2.1 KB per exchange) plus its diff log must fit.
largest=${SIZES[-1]}
need_mb=$(( largest * 3500 / 1000000 + 100 ))
free_mb=$(df -Pm "$WORK" | awk 'NR == 2 {print $4}')
if [ "$free_mb" -lt "$need_mb" ]; then
  echo "not enough space in $WORK: ${free_mb} MB free, ~${need_mb} MB needed (try --quick or TMPDIR=…)" >&2
  exit 1
fi

# Two fake upstreams answering like the legacy api-gateway (200, ObjectId,
# Express headers) and like the orchestrator (202 for submits, UUIDv7).
mkdir -p "$WORK/nginx/logs"
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  server {
    listen 127.0.0.1:${PORTS[0]};
    default_type "application/json; charset=utf-8";
    add_header X-Powered-By Express;
    location = /v1/sms/send { return 200 '{"id":"69f495c078e510617311d8a3","status":"accepted","to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,"created_at":"2026-05-01T12:00:00.100Z","reference":"order-1"}'; }
    location = /v1/sms/bulk { return 200 '{"accepted":1,"rejected":0,"results":[{"index":0,"id":"69f495c078e510617311d8a3","status":"accepted"}]}'; }
    location / { return 200 '{"id":"69f495c078e510617311d8a3","status":"delivered","to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,"created_at":"2026-05-01T12:00:00.100Z","reference":"order-1"}'; }
  }
  server {
    listen 127.0.0.1:${PORTS[1]};
    default_type application/json;
    location = /v1/sms/send { return 202 '{"id":"019de368-f600-7e8c-8072-075f390b2086","status":"accepted","to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,"created_at":"2026-05-01T12:00:00.123Z","reference":"order-1"}'; }
    location = /v1/sms/bulk { return 202 '{"accepted":1,"rejected":0,"results":[{"index":0,"id":"019de368-f600-7e8c-8072-075f390b2086","status":"accepted"}]}'; }
    location / { return 200 '{"id":"019de368-f600-7e8c-8072-075f390b2086","status":"delivered","to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,"created_at":"2026-05-01T12:00:00.123Z","reference":"order-1"}'; }
  }
}
EOF
for port in "${PORTS[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; pick other ports with PORT_BASE=…" >&2; exit 1
  fi
done
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
up() { curl -fs "http://127.0.0.1:${PORTS[0]}/v1/sms/x" >/dev/null && curl -fs "http://127.0.0.1:${PORTS[1]}/v1/sms/x" >/dev/null; }
for _ in $(seq 50); do up && break; sleep 0.1; done
if ! up || ! kill -0 "$NGINX_PID" 2>/dev/null; then
  echo "nginx did not start: $(cat "$WORK/nginx/logs/error.log" 2>/dev/null)" >&2; NGINX_PID=; exit 1
fi

# Runs a command under /usr/bin/time; prints "wall_s cpu_s max_rss_kib".
timed() {
  /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" \
    || { cat "$WORK/stderr" "$WORK/time" >&2; return 1; }
  awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' "$WORK/time"
}

# The median line (by wall time) of "wall cpu rss" lines.
median() { sort -n | awk '{l[NR] = $0} END {print l[int((NR + 1) / 2)]}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
diff_rows=()
report_rows=()
replay_rows=()
for n in "${SIZES[@]}"; do
  capture=$WORK/capture-$n.jsonl
  python3 bench/gen_capture.py "$n" "$capture"
  capture_mib=$(( $(stat -c %s "$capture") / 1048576 ))
  runs=$RUNS
  [ "$n" -ge 1000000 ] && runs=1
  results=()
  for _ in $(seq "$runs"); do
    rm -f "$WORK/diffs.jsonl"
    result=$(timed "$BIN" diff --capture "$capture" --out "$WORK/diffs.jsonl")
    results+=("$result")
  done
  read -r wall cpu rss < <(printf '%s\n' "${results[@]}" | median)
  records=$(wc -l < "$WORK/diffs.jsonl")
  differs=$(grep -c '"verdict":"differs"' "$WORK/diffs.jsonl" || true)
  log_mib=$(( $(stat -c %s "$WORK/diffs.jsonl") / 1048576 ))
  diff_rows+=("$(awk -v n="$n" -v w="$wall" -v c="$cpu" -v r="$rss" -v runs="$runs" -v cap="$capture_mib" \
      -v logm="$log_mib" -v rec="$records" -v d="$differs" 'BEGIN {
    printf "| %d | %d | %s | %.2f | %.2f | %.0f | %.2f | %.1f | %d | %d/%d |", n, cap, runs, w, c, n / w, w * 1e6 / n, r / 1024, logm, d, rec }')")
  result=$(timed "$BIN" report "$WORK/diffs.jsonl" --json "$WORK/report.json")
  read -r wall cpu rss <<<"$result"
  report_rows+=("$(awk -v n="$records" -v w="$wall" -v c="$cpu" -v r="$rss" -v logm="$log_mib" 'BEGIN {
    printf "| %d | %d | %.2f | %.2f | %.0f | %.1f |", n, logm, w, c, n / w, r / 1024 }')")
  rm -f "$WORK/diffs.jsonl" "$WORK/report.json"

  if [ "$n" -le "$REPLAY_MAX" ]; then
    result=$(timed "$BIN" replay --capture "$capture" \
        --primary "http://127.0.0.1:${PORTS[0]}" --candidate "http://127.0.0.1:${PORTS[1]}" \
        --allow-writes --concurrency "$CONCURRENCY" --no-progress --out "$WORK/replay.jsonl")
    read -r wall cpu rss <<<"$result"
    records=$(wc -l < "$WORK/replay.jsonl")
    replay_rows+=("$(awk -v n="$n" -v w="$wall" -v c="$cpu" -v r="$rss" -v rec="$records" -v k="$CONCURRENCY" 'BEGIN {
      printf "| %d | %d | %.2f | %.2f | %.0f | %.1f | %d |", n, k, w, c, n / w, r / 1024, rec }')")
    grep -m1 '^done in' "$WORK/stderr" | sed 's/^/  replay: /' >&2 || true
    rm -f "$WORK/replay.jsonl"
  fi
  rm -f "$capture"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "### compare diff (JSONL capture streamed; default rules; redacted diff log)"
echo
echo "| exchanges | capture MiB | runs | wall s | CPU s | exchanges/s | µs/exchange | max RSS MiB | diff log MiB | differs/records |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${diff_rows[@]}"
echo
echo "### compare report over that diff log (records streamed into the aggregates)"
echo
echo "| records | diff log MiB | wall s | CPU s | records/s | max RSS MiB |"
echo "|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${report_rows[@]}"
echo
echo "### compare replay against two local nginx (--concurrency $CONCURRENCY, --allow-writes: fake targets)"
echo
echo "| exchanges | concurrency | wall s | CPU s | exchanges/s | max RSS MiB | records |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${replay_rows[@]}"
echo
echo "Replay is bound by HTTP round trips (two per exchange) on loopback, not by the diff;"
echo "it reads the whole capture first (capture::read), so its memory grows with the capture."

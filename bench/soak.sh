#!/usr/bin/env bash
# Soak (issue 15): a long run at half of peak submit throughput, first on
# the orchestrator directly, then through mirror-proxy (100 % sampling;
# primary = the legacy gateway simulator, shadow = the same orchestrator).
# Every 10 s it samples the orchestrator's (and, in the mirror leg,
# mirror-proxy's) resident memory, open file descriptors, the run
# database's Postgres connections and the outbox's oldest unpublished age
# (orchestrator_outbox_oldest_age_seconds). At the end of each leg it
# prints the samples' ranges and the RSS slope (least squares, MiB/min)
# and fails when loadgen counted any error.
#
#   bench/soak.sh [SECONDS=600 per leg]
#
# SOAK_LEGS picks the legs ("direct mirror", the default; "mirror" alone
# for a long proxy run). SOAK_KEEP=DIR keeps each leg's samples there
# (LEG.samples, columns as in `sample` below) for plotting or a rerun of
# the figures.
#
# SOAK_PROFILE=debug runs the debug binaries (a smoke run of the script
# itself; its figures are not the product's).
#
# Not part of the test command (it takes 2 × SECONDS plus builds); its
# figures go in bench/RESULTS.md. Uses the machine's Postgres, Redis and
# NATS through bench/lib.sh (own database, stream and tenant, deleted on
# exit).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
CONNS=32
SHADOW_SECRET=soak-shadow-credential
export ORCH_ARGS="--shadow-secret $SHADOW_SECRET ${ORCH_ARGS:-}"
. bench/lib.sh
PROFILE=${SOAK_PROFILE:-release}
if [ "$PROFILE" = debug ]; then
  BIN=$CARGO_TARGET_DIR/debug
  BUILD_PROFILE=dev
fi
start_orchestrator 16
SAMPLES=/tmp/soak-samples-$$
LEGACY= MIRROR=
soak_cleanup() {
  [ -n "$MIRROR" ] && kill "$MIRROR" 2>/dev/null || true
  [ -n "$LEGACY" ] && kill "$LEGACY" 2>/dev/null || true
  rm -rf "$SAMPLES" /tmp/soak-mirror-$$
  bench_cleanup
}
trap soak_cleanup EXIT
mkdir -p "$SAMPLES"

rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
pg_conns() { psql -Atq "$PG/$DB" -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB'"; }
# The proxy's id-correlation map (bounded by correlation.max_entries,
# default 100 000): the one structure that grows with traffic.
id_pairs() { curl -sf http://127.0.0.1:19194/metrics | awk '/^mirror_id_pairs / {v = $2} END {print v + 0}'; }
outbox_age() { curl -sf "$ADMIN/metrics" | awk '/^orchestrator_outbox_oldest_age_seconds / {print $2}'; }

# sample LEG PID...: every 10 s until the loadgen of the leg ends, one line
# "t orch_rss orch_fds pg_conns outbox_age [proxy_rss proxy_fds id_pairs]".
sample() {
  local leg=$1 orch=$2 proxy=${3:-} t=0
  while [ -e "$SAMPLES/$leg.running" ]; do
    line="$t $(rss_mib "$orch") $(fds "$orch") $(pg_conns) $(outbox_age)"
    [ -n "$proxy" ] && line="$line $(rss_mib "$proxy") $(fds "$proxy") $(id_pairs)"
    echo "$line" >>"$SAMPLES/$leg.samples"
    sleep 10; t=$((t + 10))
  done
}

# report LEG LOADGEN_JSON
report() {
  python3 - "$SAMPLES/$1.samples" "$1" "$2" <<'PY'
import json, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
leg, run = sys.argv[2], json.loads(sys.argv[3])
def slope(xs, ys):
    n = len(xs); mx = sum(xs) / n; my = sum(ys) / n
    d = sum((x - mx) ** 2 for x in xs)
    return 0.0 if d == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / d
t = [r[0] for r in rows]
cols = {"orchestrator RSS MiB": 1, "orchestrator fds": 2, "Postgres connections": 3, "outbox oldest age s": 4}
if len(rows[0]) > 5:
    cols.update({"mirror-proxy RSS MiB": 5, "mirror-proxy fds": 6, "mirror-proxy id pairs": 7})
print(f"\n{leg}: {run['ok']} ok, {run['errors']} errors, {run['rps']:.0f} req/s, "
      f"p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, max {run['max_ms']:.1f} ms; {len(rows)} samples every 10 s\n")
# Slopes over the second half too: the first minutes include warm-up
# (allocator arenas, pool connections, the proxy's id map filling) that is
# not growth.
half = rows[len(rows) // 2:]
print("| series | first | last | min | max | slope per minute | second half: slope per minute (min–max) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, i in cols.items():
    ys = [r[i] for r in rows]
    hs = [r[i] for r in half]
    late = (f"{slope([r[0] for r in half], hs) * 60:+.3f} ({min(hs):g}–{max(hs):g})"
            if len(half) > 2 else "")
    print(f"| {name} | {ys[0]:g} | {ys[-1]:g} | {min(ys):g} | {max(ys):g} | {slope(t, ys) * 60:+.3f} | {late} |")
PY
}

# leg NAME URL RATE [PROXY_PID]
leg() {
  local name=$1 url=$2 rate=$3 proxy=${4:-}
  touch "$SAMPLES/$name.running"
  sample "$name" "$ORCH" "$proxy" &
  local sampler=$!
  j=$("$BIN/loadgen" --url "$url" --secret "$SECRET" --tenant "$TENANT" --json \
        --mode send --clients "$CONNS" --rate "$rate" --duration "${SECS}s" --label "$name" | tail -1)
  rm -f "$SAMPLES/$name.running"
  wait "$sampler"
  if [ -n "${SOAK_KEEP:-}" ]; then mkdir -p "$SOAK_KEEP" && cp "$SAMPLES/$name.samples" "$SOAK_KEEP/"; fi
  report "$name" "$j"
  [ "$(field "$j" errors 0)" = 0 ] || { echo "$name: loadgen counted errors" >&2; exit 1; }
}

peak=$(field "$(loadgen_json --mode send --clients 16 --duration 10s)" rps 0)
half=$(python3 -c "print(int($peak/2))")
printf '%s build; orchestrator send peak %s req/s (closed loop, 16 clients); soak at %s req/s, %s connections, %s s per leg\n' \
  "$PROFILE" "$peak" "$half" "$CONNS" "$SECS"
LEGS=${SOAK_LEGS:-direct mirror}
case " $LEGS " in *" direct "*) leg direct "$API" "$half" ;; esac
case " $LEGS " in *" mirror "*) ;; *) exit 0 ;; esac

# The mirror leg: legacy gateway simulator as primary, the orchestrator as
# shadow, every request mirrored.
"$BIN/legacy-gateway" --listen 127.0.0.1:18093 --jwt-hs256-secret "$SECRET" >/dev/null 2>&1 &
LEGACY=$!
mkdir -p /tmp/soak-mirror-$$
cat >/tmp/soak-mirror-$$/mirror-proxy.toml <<EOF
[primary]
address = "127.0.0.1:18093"

[shadow]
url = "$API"
credential = "$SHADOW_SECRET"
timeout = "5s"
max_in_flight = 256

[sampling]
percent = 100.0

[diff]
log = "/tmp/soak-mirror-$$/diff.jsonl"
rules = ["$PWD/mirror-proxy/rules/shadow.toml"]
EOF
DIFF_REDACTION_KEY=soak-redaction-key RUST_LOG=warn "$BIN/mirror-proxy" \
  --config /tmp/soak-mirror-$$/mirror-proxy.toml --listen 127.0.0.1:18094 --admin-listen 127.0.0.1:19194 \
  >/tmp/soak-mirror-$$/log 2>&1 &
MIRROR=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:19194/metrics && break; sleep 0.1; done
leg mirror http://127.0.0.1:18094 "$half" "$MIRROR"
printf '\nmirror-proxy shadow requests by outcome:\n'
curl -sf http://127.0.0.1:19194/metrics | grep -E '^mirror_(mirrored|dropped|shadow_errors|primary_errors)_total' || true

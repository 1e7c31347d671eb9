#!/usr/bin/env bash
# Schemathesis (PyPI) against the committed contract and the real
# orchestrator binary: every generated request must get an answer that
# conforms to orchestrator/openapi.yaml (`--checks all`), and none a 5xx.
#
#   scripts/schemathesis.sh            # bounded: SCHEMATHESIS_MAX_TIME (default 150 s)
#
# The orchestrator runs as shipped by default (embedded SQLite in a temp
# dir, submit API on, `--check-responses` so it also checks each of its own
# answers), with an HS256 secret made up for the run; the token is minted
# here for a tenant of its own. Every phase runs: the contract's examples,
# coverage, fuzzing (positive and negative data) and stateful (the
# contract's `links`: send → GET by the returned id, bulk → GET). The
# numbers (cases generated, answers by status, 5xx) are printed at the end
# and written to $SCHEMATHESIS_REPORT_DIR (default: a temp dir).
#
# Fails when: Schemathesis finds a failure, any answer is a 5xx, the
# orchestrator logged a contract violation, or fewer than
# SCHEMATHESIS_MIN_CASES (default 1000) cases ran.
set -euo pipefail
cd "$(dirname "$0")/.."

for d in "$HOME/.cargo/bin" "$HOME/.pyenv/shims"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sms-orchestrator-target}"
SCHEMATHESIS_VERSION=4.32.5
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-150}"
MIN_CASES="${SCHEMATHESIS_MIN_CASES:-1000}"

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION (PyPI)"
  python3 -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
fi
command -v schemathesis >/dev/null 2>&1 || { echo "schemathesis is still missing after installing it" >&2; exit 1; }

bin="$CARGO_TARGET_DIR/debug/orchestrator"
[ -x "$bin" ] || cargo build -p orchestrator --locked
dir="$(mktemp -d)"
report="${SCHEMATHESIS_REPORT_DIR:-$dir/report}"
mkdir -p "$report"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

secret="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
shadow="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
tenant="schemathesis"
(cd "$dir" && exec "$bin" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --submit-api-enabled \
  --jwt-hs256-secret "$secret" --shadow-secret "$shadow" --check-responses) >"$dir/orchestrator.log" 2>&1 &
pid=$!
api=
for _ in $(seq 1 150); do
  api="$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        v = json.loads(line)
    except ValueError:
        continue
    if v.get("message") == "listening":
        print(v["api_addr"]); break
' "$dir/orchestrator.log")"
  [ -n "$api" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/orchestrator.log" >&2; echo "the orchestrator did not start" >&2; exit 1; }
  sleep 0.2
done
[ -n "$api" ] || { cat "$dir/orchestrator.log" >&2; echo "the orchestrator did not listen within 30 s" >&2; exit 1; }

# An HS256 token as the identity provider would issue it: tenant claim
# `tenant_id`, an hour's life.
token="$(python3 - "$secret" "$tenant" <<'PY'
import base64, hashlib, hmac, json, sys, time
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
secret, tenant = sys.argv[1], sys.argv[2]
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"sub": "schemathesis", "tenant_id": tenant, "iat": now, "nbf": now, "exp": now + 3600}).encode())
sig = b64(hmac.new(secret.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest())
print(f"{head}.{claims}.{sig}")
PY
)"

echo "==> schemathesis $(schemathesis --version | awk '{print $NF}') against http://$api (at most ${MAX_TIME} s)"
set +e
schemathesis --config-file scripts/schemathesis/schemathesis.toml run orchestrator/openapi.yaml \
  --url "http://$api" \
  --checks all --exclude-checks unsupported_method \
  --max-time "$MAX_TIME" \
  --max-examples 400 \
  --workers 2 \
  --request-timeout 30 \
  -H "Authorization: Bearer $token" \
  -H "X-Tenant-Id: $tenant" \
  -H "X-Shadow-Credential: $shadow" \
  --report ndjson,junit --report-dir "$report" \
  --no-color
st=$?
set -e

# The figures, from Schemathesis's own event log.
python3 - "$report" "$MIN_CASES" <<'PY'
import collections, glob, json, sys
report, min_cases = sys.argv[1], int(sys.argv[2])
cases, statuses, per_op, phases = 0, collections.Counter(), collections.Counter(), collections.Counter()
for path in glob.glob(f"{report}/*.ndjson"):
    for line in open(path):
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for interaction in recorder.get("interactions", {}).values():
            response = interaction.get("response")
            if response is None:
                continue
            cases += 1
            statuses[response["status_code"]] += 1
            per_op[recorder["label"]] += 1
            phases[finished["phase"]] += 1
fivexx = sum(n for s, n in statuses.items() if s >= 500)
print(f"schemathesis: {cases} requests answered; by status {dict(sorted(statuses.items()))}; 5xx: {fivexx}")
print(f"  by operation: {dict(sorted(per_op.items()))}")
print(f"  by phase: {dict(sorted(phases.items()))}")
if fivexx:
    sys.exit("a 5xx answer: see the report")
if cases < min_cases:
    sys.exit(f"only {cases} cases ran (at least {min_cases} wanted)")
PY

violations="$(grep -c '"contract violation"' "$dir/orchestrator.log" || true)"
if [ "$violations" != 0 ]; then
  grep '"contract violation"' "$dir/orchestrator.log" | head -20 >&2
  echo "the orchestrator logged $violations contract violation(s)" >&2
  exit 1
fi
if [ "$st" != 0 ]; then
  echo "schemathesis found failures (exit $st)" >&2
  exit "$st"
fi
echo "schemathesis: no failures, no 5xx, no contract violation"

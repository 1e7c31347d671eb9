#!/usr/bin/env bash
# Watch the whole cutover rehearsal (docs/cutover.md, "Rehearse it"): builds
# the workspace's binaries, then walks 0 → 1 → 2 → 3 → rollback → 3 → 4 on
# this machine with progress per step and a summary table at the end.
# Needs what the test command installs (envoy, prometheus, nats-server,
# redis-server) and Postgres on TEST_DATABASE_URL (default: 127.0.0.1:5432).
# REHEARSAL_RATE (requests/s, default 60) and REHEARSAL_WINDOW (default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
for d in "$HOME/.cargo/bin" "$HOME/.pyenv/shims"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
done
export PATH
cargo build --workspace --bins --quiet
exec "${CARGO_TARGET_DIR:-target}/debug/rehearse-cutover" "$@"

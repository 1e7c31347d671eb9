#!/usr/bin/env bash
# cargo-fuzz (libFuzzer) over every target in fuzz/, each for a bounded time:
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=600 scripts/fuzz.sh     # the longer runs of bench/RESULTS.md
#   scripts/fuzz.sh phone jwt            # some targets
#   FUZZ_CMIN=1 scripts/fuzz.sh          # then minimise the committed corpora
#
# Targets (fuzz/fuzz_targets/): phone, sender, text (the domain parsers),
# fingerprint (the idempotency fingerprint over the service's JSON parser),
# jwt (token header and claims), diff (compare's diff engine),
# capture_jsonl, capture_har, capture_goreplay (compare's readers),
# mirror_config (mirror-proxy's config file).
#
# libFuzzer needs nightly rustc features: the nightly toolchain when
# installed, else the stable one with RUSTC_BOOTSTRAP=1. Built without a
# sanitizer (`-s none`: safe Rust; panics, overflow checks and debug
# assertions are what a crash is here). Each run starts from the committed
# corpus (fuzz/corpus/<target>, read only) and writes what it finds to a
# temp dir, so a run does not change the checkout; a crash is left in
# fuzz/artifacts/<target>/ and fails the script with the command that
# replays it. Prints a table: target, seconds, executions, corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."

for d in "$HOME/.cargo/bin"; do
  [ -d "$d" ] && case ":$PATH:" in *":$d:"*) ;; *) PATH="$d:$PATH" ;; esac
done
export PATH
SECONDS_EACH="${FUZZ_SECONDS:-20}"
CARGO_FUZZ_VERSION=0.13.2
# Its own build cache: instrumented builds share nothing with the others.
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/sms-orchestrator-target}-fuzz}"
unset CARGO_TARGET_DIR

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  echo "==> no nightly toolchain: stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <("${fuzz[@]}" list)
echo "==> building ${#targets[@]} fuzz targets"
"${fuzz[@]}" build -s none --target-dir "$target_dir"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '\n%-18s %8s %14s %10s %s\n' target seconds executions exec/s corpus
failed=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "$work/$t"
  log="$work/$t.log"
  if "${fuzz[@]}" run -s none --target-dir "$target_dir" "$t" "$work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    ok=1
  else
    ok=0
  fi
  # A crashed run has no statistics: every lookup tolerates no match.
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)"
  [ -n "$runs" ] || runs="$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -1 || true)"
  secs="$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)"
  corpus=$(( $(find "fuzz/corpus/$t" -type f | wc -l) + $(find "$work/$t" -type f | wc -l) ))
  rate=$(( ${runs:-0} / ( ${secs:-1} > 0 ? ${secs:-1} : 1 ) ))
  printf '%-18s %8s %14s %10s %s\n' "$t" "${secs:-?}" "${runs:-?}" "$rate" "$corpus"
  if [ "$ok" = 0 ]; then
    failed+=("$t")
    echo "---- $t failed; the end of its log:" >&2
    tail -40 "$log" >&2
    echo "---- replay: ${fuzz[*]} run -s none $t fuzz/artifacts/$t/<crash file>" >&2
  fi
  if [ -n "${FUZZ_CMIN:-}" ] && [ "$ok" = 1 ]; then
    cp -n "$work/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    "${fuzz[@]}" cmin -s none --target-dir "$target_dir" "$t" "fuzz/corpus/$t" >"$work/$t.cmin.log" 2>&1 || { tail -20 "$work/$t.cmin.log" >&2; failed+=("$t (cmin)"); }
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crash in ${#targets[@]} targets"

#!/usr/bin/env bash
# Diff-engine micro benchmark (criterion): exchanges per second on one core
# for ~1 KB JSON bodies with the shipped default rules. Results: RESULTS.md.
#   bench/compare-diff.sh            # full run
#   bench/compare-diff.sh --quick    # shorter measurement
set -euo pipefail
cd "$(dirname "$0")/.."
measurement=3
[ "${1:-}" = "--quick" ] && measurement=1
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
cargo bench -p compare --bench diff -- --warm-up-time 1 --measurement-time "$measurement"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

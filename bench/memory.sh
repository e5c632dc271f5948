#!/usr/bin/env bash
# What a node costs in memory (issue 11, item 5), the baseline and this tree
# in one run: idle RSS of a node with no config, and 1 M small entries PUT
# through the service port (RSS growth per entry beyond key and value, and
# RSS growth over the /_stats bytes). Usage:
#   bench/memory.sh [--baseline PATH] [--entries 1000000] [--value-bytes 32]
#                   [--idle-secs 5] [--concurrency 32]
# --baseline defaults to /tmp/shoal-baseline (build it once from the commit to
# compare with: `git worktree add /tmp/base <commit> && cd /tmp/base && cargo
# build --release --locked && cp target/release/shoal /tmp/shoal-baseline`).
# BENCH_SKIP_BUILD=1 skips the release build. Logs, configs and summary.md go
# to bench/results/memory-<UTC>/.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=/tmp/shoal-baseline
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --baseline) baseline=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --locked --bin shoal --example memory_bench
fi
[[ -x "$baseline" ]] || { echo "memory.sh: no baseline binary at $baseline (see the header)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
out="bench/results/memory-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
"$target/release/examples/memory_bench" --out "$out" --binary "$baseline" \
  --binary "$target/release/shoal" "${args[@]}" | tee "$out/run.txt"
echo "results: $out (summary: $out/summary.md)"

#!/usr/bin/env bash
# What churn costs (issue 7): rolling restart in place, replace roll
# (maxSurge 1), scale-out 5→6, scale-in 6→5, and an owner SIGKILLed before
# failure detection, each on a fresh cluster of real nodes on 127.0.37.x
# (standard ports), once with the churn features on (no `churn:` section:
# the defaults) and once with them off, under a steady keep-alive client
# load. Usage:
#   bench/churn.sh [--scenarios rolling,replace,scale-out,scale-in,sigkill]
#                  [--modes on,off] [--keys 2000] [--rate 400] [--workers 16]
#                  [--tail 5] [--cold-keys 200] [--binary PATH] [--out DIR]
#                  [--no-churn-section]
# --no-churn-section: mode off writes no `churn:` section either, for a
# binary older than issue 7 (which refuses the section; both modes are then
# plain groupcache). BENCH_SKIP_BUILD=1 skips the release build.
# Raw output (node logs, /_stats, /metrics, configs, result.json per
# scenario and mode, summary.md, run.txt) goes to bench/results/churn-<UTC>/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --bin shoal --example churn_bench
fi
target="${CARGO_TARGET_DIR:-target}"
out="bench/results/churn-$(date -u +%Y%m%dT%H%M%SZ)"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[$i]}" == --out && $((i + 1)) -lt ${#args[@]} ]]; then
    out="${args[$((i + 1))]}"
  fi
done
mkdir -p "$out"
"$target/release/examples/churn_bench" --binary "$target/release/shoal" --out "$out" "$@" \
  | tee "$out/run.txt"
echo "results: $out (summary: $out/summary.md)"

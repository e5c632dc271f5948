#!/usr/bin/env bash
# What issue 10's freshness settings buy: a key set read at a steady
# open-loop rate with TTL 2 s, against four clusters of 3 real nodes run
# side by side in the same seconds (baseline: ttl only; refresh-ahead: plus
# refresh_ahead 0.8; full: plus stale_while_revalidate 2s, stale_if_error
# 30s, ttl_jitter 0.1, max_concurrent_loads 16; guarded: full plus
# circuit_breaker {failures 5, cool_down 2s}), through one origin outage
# (503s) in the middle. Usage:
#   bench/freshness.sh [--duration 60] [--outage-start 20] [--outage-length 20]
#                      [--rate 600] [--keys 60] [--origin-delay-ms 100]
#                      [--modes baseline,refresh-ahead,full,guarded] [--binary PATH]
#                      [--out DIR]
# A binary older than issue 10 refuses every config but baseline's
# (check-config); give it --modes baseline. BENCH_SKIP_BUILD=1 skips the
# release build. Raw output (per mode: node configs and logs, /metrics at
# the end of the warm-up and of the run, reads.csv, origin.csv; then
# timeline.csv, result.json, summary.md, run.txt) goes to
# bench/results/freshness-<UTC>/.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release --locked --bin shoal --example freshness_bench
fi
target="${CARGO_TARGET_DIR:-target}"
out="bench/results/freshness-$(date -u +%Y%m%dT%H%M%SZ)"
binary="$target/release/shoal"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ $((i + 1)) -lt ${#args[@]} ]]; then
    case "${args[$i]}" in
      --out) out="${args[$((i + 1))]}" ;;
      --binary) binary="${args[$((i + 1))]}" ;;
    esac
  fi
done
mkdir -p "$out"
"$target/release/examples/freshness_bench" --binary "$binary" --out "$out" "$@" \
  | tee "$out/run.txt"
echo "results: $out (summary: $out/summary.md)"

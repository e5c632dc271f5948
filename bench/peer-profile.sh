#!/usr/bin/env bash
# bench/peer-profile.sh — where the peer hit's CPU goes: bench/hit-path.sh's
# peer part (node A fetching every value from node B, both on CPU 0) under a
# system-wide `perf record` for 8 s of its peak run, folded by process and by
# crate (bench/perf_crates.py). Needs root (perf -a). One command:
#
#   bench/peer-profile.sh            # the binary in target/release
#   BENCH_SHOAL=/path/to/shoal bench/peer-profile.sh   # another build, for a before/after
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf; }
out=bench/results/peer-profile-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
BENCH_ONLY=${BENCH_PART:-peer} BENCH_REPEAT=1 BENCH_DURATION=20s BENCH_SKIP_BUILD=${BENCH_SKIP_BUILD:-} \
    bench/hit-path.sh >"$out/hit-path.log" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT
until grep -q "peak run 1" "$out/hit-path.log" 2>/dev/null; do
    kill -0 $bench 2>/dev/null || { cat "$out/hit-path.log"; exit 1; }
    sleep 0.5
done
sleep 3
perf record -e cpu-clock -F 1999 -a -o "$out/perf.data" -- sleep 8 >/dev/null 2>&1
wait $bench
trap - EXIT
grep -E "peer hit|peer, keyring" "$out/hit-path.log" | tee "$out/throughput.txt"
perf report -i "$out/perf.data" --no-children --sort pid,sym -g none 2>/dev/null |
    python3 bench/perf_crates.py 14 | tee "$out/profile.txt"
echo "results: $out"

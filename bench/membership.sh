#!/usr/bin/env bash
# Membership measurements on real nodes (127.0.34.x): convergence, gossip
# traffic, SIGKILL/SIGTERM → gone from every ring, false positives at 10 %
# packet loss. Needs root for iptables. Usage:
#   bench/membership.sh [--nodes 10] [--trials 5] [--loss-seconds 300] [--profiles lan,fast]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v iptables >/dev/null; then
  apt-get update -qq && apt-get install -y -qq iptables
fi
cargo build --release --bin shoal --example membership_bench
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="bench/results/membership-$stamp"
mkdir -p "$out"
./target/release/examples/membership_bench --out "$out" "$@" | tee "$out/run.txt"
echo "results: $out"

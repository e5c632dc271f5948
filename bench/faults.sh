#!/usr/bin/env bash
# The long fault suite: 8 nodes, 5 minutes of chaos (SIGKILL and SIGTERM
# restarts, partitions of one or two nodes, 10 % packet loss, a slow
# origin) under read/write load, then the checker (tests/faults.rs).
# Needs root, iproute2 and iptables. FAULTS_SECS, FAULTS_NODES,
# FAULTS_CLIENTS and FAULTS_SEED override the size and replay a run; the
# report goes to bench/results/faults-<UTC time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
report="bench/results/faults-$(date -u +%Y%m%dT%H%M%SZ).txt"
export FAULTS_SECS="${FAULTS_SECS:-300}"
export FAULTS_NODES="${FAULTS_NODES:-8}"
export FAULTS_REPORT="$PWD/$report"
# The same build as `cargo test` (debug): no second build of the tree.
cargo test --locked --test faults -- --nocapture
echo "report: $report"

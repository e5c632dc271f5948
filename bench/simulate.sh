#!/usr/bin/env bash
# bench/simulate.sh — the membership simulator (examples/membership_sim.rs) at
# N = 10 … 5000, with Lifeguard's confirmations on (the default) and off
# (the baseline) in the same run, then the plot. One command; BENCHMARKS.md ("Simulation
# (issue 11)") explains it.
#
#   bench/simulate.sh
#
# Environment (all optional):
#   SIM_NODES="10 50 100 200 1000 5000"   cluster sizes of the standard scenario
#   SIM_TRIALS=3          seeds per size up to 200 (larger sizes run one)
#   SIM_LOSS_NODES="50 200"  sizes of the loss scenario (10 % loss, 600 s)
#   SIM_LOSS_TRIALS=10    seeds per size of the loss scenario
#   SIM_SKIP_BUILD=1      use the example already in target/release
#
# Everything runs in virtual time, so the figures do not depend on how busy
# the machine is; only the wall time does (it is printed per run). Raw
# results go to bench/results/simulation-<UTC time>/ (standard.csv, loss.csv,
# unconfirmed.csv: the standard scenario with confirmations off, the log); the
# plot to bench/simulation.png.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

NODES=${SIM_NODES:-"10 50 100 200 1000 5000"}
TRIALS=${SIM_TRIALS:-3}
LOSS_NODES=${SIM_LOSS_NODES:-"50 200"}
LOSS_TRIALS=${SIM_LOSS_TRIALS:-10}
OUT="bench/results/simulation-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
say() { printf '==> %s\n' "$*" >&2; }

if [ -z "${SIM_SKIP_BUILD:-}" ]; then
    say "building the simulator (release, feature sim)"
    nice -n 19 cargo build --release --features sim --example membership_sim
fi
SIM=target/release/examples/membership_sim

for n in $NODES; do
    trials=$TRIALS
    [ "$n" -gt 200 ] && trials=1
    say "standard scenario, N = $n, $trials trial(s)"
    nice -n 19 "$SIM" --nodes "$n" --trials "$trials" --csv "$OUT/standard.csv" | tee -a "$OUT/log"
    say "standard scenario, N = $n, confirmations off (the baseline)"
    nice -n 19 "$SIM" --nodes "$n" --trials "$trials" --suspicion-confirmations 0 \
        --csv "$OUT/unconfirmed.csv" | tee -a "$OUT/log"
done
for n in $LOSS_NODES; do
    for confirmations in 2 0; do
        say "loss scenario, N = $n: 600 s at 10 % loss, suspicion_confirmations $confirmations"
        nice -n 19 "$SIM" --nodes "$n" --scenario loss --loss 0.1 --duration 600 \
            --trials "$LOSS_TRIALS" --suspicion-confirmations "$confirmations" \
            --csv "$OUT/loss-confirmations-$confirmations.csv" | tee -a "$OUT/log"
    done
done

say "plotting"
python3 bench/plot_sim.py "$OUT/standard.csv" bench/simulation.png "$OUT/unconfirmed.csv"
say "results in $OUT, plot in bench/simulation.png"

#!/usr/bin/env python3
"""bench/plot_sim.py STANDARD_CSV OUT_PNG [UNCONFIRMED_CSV] — the simulator's curves against N.

Reads the CSV examples/membership_sim.rs appends (--csv), one line per trial,
and draws four panels against cluster size (log scale): convergence after a
cold start; crash and graceful leave until gone from every ring; gossip sent
per member; an invalidation's spread after 1 s and 5 s. Points are medians
over the trials at a size, bars their range. UNCONFIRMED_CSV, the same
scenario with Lifeguard's confirmations off (the baseline), adds its crash
curve to the detection panel.

Needs matplotlib: `python3 -m pip install matplotlib` (or the distribution's
python3-matplotlib) if the import fails.
"""

import csv
import statistics
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit("plot_sim.py needs matplotlib: python3 -m pip install matplotlib")


def number(text):
    """A figure from the CSV; 'never' (did not happen in the limit) is None."""
    try:
        return float(text)
    except ValueError:
        return None


def by_size(rows, column):
    """N -> (median, low, high) of a column, over the trials at that N."""
    out = {}
    for n in sorted({int(r["nodes"]) for r in rows}):
        values = [number(r[column]) for r in rows if int(r["nodes"]) == n]
        values = [v for v in values if v is not None]
        if values:
            out[n] = (statistics.median(values), min(values), max(values))
    return out


def draw(ax, rows, column, label, scale=1.0, marker="o"):
    series = by_size(rows, column)
    sizes = list(series)
    mid = [series[n][0] * scale for n in sizes]
    low = [(series[n][0] - series[n][1]) * scale for n in sizes]
    high = [(series[n][2] - series[n][0]) * scale for n in sizes]
    ax.errorbar(sizes, mid, yerr=[low, high], marker=marker, capsize=3, label=label)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    baseline = []
    if len(sys.argv) == 4:
        with open(sys.argv[3], newline="") as f:
            baseline = list(csv.DictReader(f))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    (converge, gone), (traffic, spread) = axes

    draw(converge, rows, "converged_s", "cold start → all alive everywhere")
    converge.set_ylabel("seconds (virtual)")
    converge.set_title("Convergence after a cold start")

    draw(gone, rows, "crash_gone_s", "crash (Lifeguard)")
    if baseline:
        draw(gone, baseline, "crash_gone_s", "crash, confirmations off", marker="^")
    draw(gone, rows, "leave_gone_s", "graceful leave", marker="s")
    gone.set_ylabel("seconds (virtual)")
    gone.set_title("Until gone from every ring")

    draw(traffic, rows, "bytes_per_s", "bytes/s")
    traffic.set_ylabel("bytes per second per member")
    traffic.set_title("Gossip sent per member (30 s after convergence)")

    draw(spread, rows, "spread_1s", "after 1 s", scale=100)
    draw(spread, rows, "spread_5s", "after 5 s", scale=100, marker="s")
    spread.set_ylabel("% of the other members")
    spread.set_ylim(0, 105)
    spread.set_title("Invalidation broadcast reach")

    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xlabel("members (N)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("shoal membership simulator: LAN profile, loopback-like network, no loss")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=100)


if __name__ == "__main__":
    main()

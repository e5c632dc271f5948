#!/usr/bin/env python3
"""Folds `perf report --no-children --sort pid,sym` output into shares by
process and by crate (the first path segment of a Rust symbol; libc's
allocator and memcpy by name; everything in the kernel as "kernel").

    perf report -i perf.data --no-children --sort pid,sym -g none | bench/perf_crates.py [TOP]
"""
import collections
import re
import sys

ALLOC = re.compile(r"malloc|free|memalign|realloc|unlink_chunk|consolidate|_int_")
MEM = re.compile(r"^__mem|^mem")
RUST = re.compile(r"^<?(?:&|\*const |\*mut )?([a-z_][a-z0-9_]*)::")


def crate(kind: str, symbol: str) -> str:
    if kind == "k":
        return "kernel"
    if ALLOC.search(symbol):
        return "malloc/free"
    if MEM.search(symbol):
        return "memcpy/memcmp"
    m = RUST.match(symbol)
    return m.group(1) if m else "other"


def main() -> None:
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    by_process = collections.defaultdict(collections.Counter)
    line_re = re.compile(r"\s*([\d.]+)%\s+(\d+):(\S+)\s+\[(.)\]\s+(.*)")
    for line in sys.stdin:
        m = line_re.match(line)
        if not m:
            continue
        share, pid, comm, kind, symbol = m.groups()
        by_process[f"{comm} {pid}"][crate(kind, symbol.strip())] += float(share)
    for process, crates in sorted(by_process.items(), key=lambda p: -sum(p[1].values())):
        total = sum(crates.values())
        if total < 2:
            continue
        print(f"{process}: {total:.1f}% of all samples")
        for name, share in crates.most_common(top):
            print(f"    {100 * share / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()

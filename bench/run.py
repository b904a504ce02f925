#!/usr/bin/env python3
"""make bench: ledger scale. For 1k/10k/100k/1M live mappings, runs bench/ledger_scale natively
and under the shim (log off: ledger only), alternating, and prints medians: ns per mmap+munmap
pair with N live, ns per munmap when tearing N down in random order, the ratio to native, and
the shim's own heap bytes per live mapping."""
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
EXE = os.path.join(TOP, "build", "bench", "ledger_scale")
LIB = os.path.join(TOP, "target", "release", "libshmtrace.so")
SIZES = [1_000, 10_000, 100_000, 1_000_000]
REPS = int(os.environ.get("BENCH_REPS", "3"))


def raise_map_limit():
    """Unmapping pages out of a merged kernel area splits it: 1M pages may need ~1M areas."""
    path = "/proc/sys/vm/max_map_count"
    try:
        if int(open(path).read()) < 2_100_000:
            with open(path, "w") as f:
                f.write("2100000")
        return True
    except OSError:
        return int(open(path).read()) >= 2_100_000


def run(n, shim):
    env = dict(os.environ)
    if shim:
        env.update(LD_PRELOAD=LIB, SHMTRACE_LOG="off")
    out = subprocess.run([EXE, str(n)], env=env, capture_output=True, text=True, check=True)
    _, pair, teardown, per_mapping = out.stdout.split()
    return float(pair), float(teardown), float(per_mapping)


def main():
    sizes = SIZES if raise_map_limit() else [n for n in SIZES if n <= 30_000]
    if sizes != SIZES:
        print("note: vm.max_map_count is too low to unmap 1M pages one by one and cannot be "
              "raised (not root): large sizes skipped")
    print(f"ledger scale: medians of {REPS} alternating runs (native, shim, ...), "
          "shim = LD_PRELOAD with SHMTRACE_LOG=off")
    print(f"{'live':>9} {'pair ns':>9} {'shim':>9} {'ratio':>6} {'teardown ns':>12} {'shim':>9} "
          f"{'ratio':>6} {'heap B/mapping':>15}")
    for n in sizes:
        native, shim = [], []
        for _ in range(REPS):
            native.append(run(n, False))
            shim.append(run(n, True))
        med = lambda rows, i: statistics.median(r[i] for r in rows)
        pair, spair = med(native, 0), med(shim, 0)
        tear, stear = med(native, 1), med(shim, 1)
        print(f"{n:>9} {pair:>9.0f} {spair:>9.0f} {spair / pair:>6.2f} {tear:>12.0f} "
              f"{stear:>9.0f} {stear / tear:>6.2f} {med(shim, 2):>15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""make bench-where: where the time of one hooked call goes, natively and under the shim, from
`perf record -e cpu-clock` (a software clock: works in a VM without hardware counters). Every
sample is charged to the object it fell in: the kernel, libc, the program, the shim. Samples
times the period, divided by the run's hooked calls, gives ns per call in each object.

Why: wall time on a shared or virtual machine moves by +-10 % between runs, mostly in the
kernel, so a 5 % target cannot be read off the clock. This splits a mode's added time into the
shim's own (its objects' samples, which no other process changes) and the rest (the kernel's
and libc's difference to native), which shows whether the remainder lies outside the shim.

The scale workloads (`scale1k`, `scale10k`, `scale100k`, `scale1000k`: N live pages, then
mmap+munmap pairs of one page, then the N pages' `munmap` in random order) give one row per
phase, `pair` and `teardown`: the bench prints each phase's span on CLOCK_MONOTONIC, perf stamps
samples with the same clock, and `perf report --time` keeps the samples inside it; the calls
are the pairs' 2 x SCALE_PAIRS, and the teardown's N `munmap`s. They run only when named in
BENCH_WORKLOADS (`scale1000k` takes minutes and raises vm.max_map_count, as `make bench`).

Knobs: BENCH_WHERE_REPS (runs per cell, default 3; the median is shown), BENCH_WORKLOADS,
BENCH_MODES (off, binary, text, json), BENCH_WHERE_SYMS=N (after each workload, the N functions
of the kernel and of the shim with the most samples per mode, median of the runs, ns per call:
which functions grow with the live mappings)."""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
EXE = os.path.join(TOP, "build", "bench", "bench")
LIB = os.path.join(TOP, "target", "release", "libshmtrace.so")
REPS = int(os.environ.get("BENCH_WHERE_REPS", "3"))
# One sample per 50 us of CPU time.
PERIOD_NS = 50_000

# workload argv, iterations, hooked calls per iteration (each workload warms up for a tenth
# of its iterations first).
WORKLOADS = [
    (["mmap"], 150_000, 2),
    (["shm"], 30_000, 4),
    (["posix"], 30_000, 4),
    (["semname"], 15_000, 3),
    (["semop"], 500_000, 2),
    (["msg"], 400_000, 2),
    (["threads", "1"], 150_000, 2),
]
# Named workload, live pages; each runs a few mmap+munmap pairs (not charged) before its
# teardown.
SCALE = {f"scale{n // 1000}k": n for n in (1_000, 10_000, 100_000, 1_000_000)}
SCALE_PAIRS = 20_000
# A scale workload's phases, each charged for the samples inside its span.
SCALE_PHASES = ["pair", "teardown"]
OBJECTS = ["shim", "kernel", "libc", "other"]


def modes(logdir):
    log = os.path.join(logdir, "log.%p")
    every = [
        ("native", {}),
        ("off", {"LD_PRELOAD": LIB, "SHMTRACE_LOG": "off"}),
        ("binary", {"LD_PRELOAD": LIB, "SHMTRACE_LOG": log, "SHMTRACE_FORMAT": "binary"}),
        ("text", {"LD_PRELOAD": LIB, "SHMTRACE_LOG": log, "SHMTRACE_FORMAT": "text"}),
    ]
    keep = os.environ.get("BENCH_MODES", "")
    return [(n, e) for n, e in every if n == "native" or not keep or n in keep.split(",")]


def kind(dso):
    if dso.startswith("[kernel"):
        return "kernel"
    if "libshmtrace" in dso:
        return "shim"
    if dso.startswith("libc.so") or dso.startswith("[vdso]"):
        # The vDSO's clock reads are counted with libc: the shim's are the difference.
        return "libc"
    return "other"


def perf_report(data, sort, window=None):
    """`perf report` lines (percent, samples, key...) of `data`, inside `window` if given."""
    cmd = ["perf", "report", "-i", data, "--stdio", "--sort", sort, "-n"]
    if window:
        cmd.append("--time=%.6f,%.6f" % (window[0] / 1e9, window[1] / 1e9))
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(.*)", line)
        if m:
            yield int(m.group(1)), m.group(2).split()


def sample(argv, env, logdir, phases, symbols=False):
    """For each of `phases` (`None`: the whole run; a name: the samples inside the span the
    bench printed for it), samples per object and with `symbols` samples per (object,
    function)."""
    data = os.path.join(logdir, "perf.data")
    for f in os.listdir(logdir):
        os.remove(os.path.join(logdir, f))
    full = dict(os.environ, **env)
    run = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-c", str(PERIOD_NS),
                          "-k", "CLOCK_MONOTONIC", "-o", data, EXE] + argv, env=full, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    figures = dict(line.split() for line in run.stdout.splitlines() if len(line.split()) == 2)
    found = {}
    for phase in phases:
        window = None
        if phase:
            window = (float(figures[f"{phase}_from_ns"]), float(figures[f"{phase}_to_ns"]))
        counts = dict.fromkeys(OBJECTS, 0)
        for n, key in perf_report(data, "dso", window):
            counts[kind(key[0])] += n
        syms = {}
        if symbols:
            for n, key in perf_report(data, "dso,sym", window):
                # key: dso, [k] or [.], the symbol (which may contain spaces)
                where = kind(key[0])
                if where in ("kernel", "shim") and len(key) >= 3:
                    syms[(where, " ".join(key[2:]))] = n
        found[phase] = (counts, syms)
    return found


def main():
    if not shutil.which("perf"):
        print("perf is not installed (apt-get install linux-perf)", file=sys.stderr)
        return 1
    keep = os.environ.get("BENCH_WORKLOADS")
    work = [w for w in WORKLOADS if not keep or "".join(w[0]) in keep.split(",")]
    for name in (keep.split(",") if keep else []):
        if name in SCALE:
            work.append((["scale", str(SCALE[name])], SCALE_PAIRS, None))
    if any(argv[0] == "scale" and int(argv[1]) > 60_000 for argv, _, _ in work):
        raise_map_limit()
    nsyms = int(os.environ.get("BENCH_WHERE_SYMS", "0"))
    tmp = tempfile.mkdtemp(prefix="shmtrace-where-")
    try:
        print(f"ns per hooked call by where the CPU was (perf cpu-clock, {PERIOD_NS // 1000} us "
              f"period, median of {REPS} runs); 'added' is the mode minus native, 'outside' "
              "what of it is not in the shim's own code\n")
        print(f"{'workload':<18} {'mode':<7}" + "".join(f"{o:>9}" for o in OBJECTS)
              + f"{'total':>9}{'added':>9}{'outside':>9}")
        for argv, iters, calls in work:
            scale = argv[0] == "scale"
            phases = SCALE_PHASES if scale else [None]
            # Modes alternate within each round, so that drift of the machine spreads evenly.
            runs = {name: [] for name, _ in modes(tmp)}
            for _ in range(REPS):
                for name, env in modes(tmp):
                    runs[name].append(sample(argv + [str(iters)], env, tmp, phases, nsyms > 0))
            for phase in phases:
                if scale:
                    label = f"scale{int(argv[1]) // 1000}k {phase}"
                    # The pairs' mmap and munmap, or the teardown's N munmaps.
                    hooked = 2 * iters if phase == "pair" else int(argv[1])
                else:
                    label = " ".join(argv)
                    hooked = iters * 1.1 * calls
                report(label, hooked, {n: [r[phase] for r in rs] for n, rs in runs.items()},
                       nsyms)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(label, hooked, runs, nsyms):
    """One row per mode (ns per hooked call by object, the median of the runs), then with
    `nsyms` each mode's top functions."""
    totals = {}
    for name, found in runs.items():
        counts = [c for c, _ in found]
        per = {o: statistics.median(r[o] for r in counts) * PERIOD_NS / hooked for o in OBJECTS}
        total = statistics.median(sum(r.values()) for r in counts) * PERIOD_NS / hooked
        totals[name] = total
        cols = ""
        if name != "native":
            added = total - totals["native"]
            cols = f"{added:>+9.0f}{added - per['shim']:>+9.0f}"
        print(f"{label:<18} {name:<7}" + "".join(f"{per[o]:>9.0f}" for o in OBJECTS)
              + f"{total:>9.0f}{cols}", flush=True)
    for name, found in runs.items():
        syms = [s for _, s in found]
        every = set().union(*syms)
        median = {k: statistics.median(r.get(k, 0) for r in syms) for k in every}
        top = sorted(median.items(), key=lambda kv: -kv[1])[:nsyms]
        for (where, sym), n in top:
            print(f"    {label} {name:<7} {where:<6} {n * PERIOD_NS / hooked:>8.1f}  {sym}",
                  flush=True)


def raise_map_limit():
    """As `make bench`: unmapping pages out of a merged kernel area splits it, so a million
    live pages may need about a million areas."""
    path = "/proc/sys/vm/max_map_count"
    try:
        if int(open(path).read()) < 2_100_000:
            with open(path, "w") as f:
                f.write("2100000")
    except OSError:
        print("cannot raise vm.max_map_count: scale1000k may fail", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

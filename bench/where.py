#!/usr/bin/env python3
"""make bench-where: where the time of one hooked call goes, natively and under the shim, from
`perf record -e cpu-clock` (a software clock: works in a VM without hardware counters). Every
sample is charged to the object it fell in: the kernel, libc, the program, the shim. Samples
times the period, divided by the run's hooked calls, gives ns per call in each object.

Why: wall time on a shared or virtual machine moves by +-10 % between runs, mostly in the
kernel, so a 5 % target cannot be read off the clock. This splits a mode's added time into the
shim's own (its objects' samples, which no other process changes) and the rest (the kernel's
and libc's difference to native), which shows whether the remainder lies outside the shim.

Knobs: BENCH_WHERE_REPS (runs per cell, default 3; the median is shown), BENCH_WORKLOADS,
BENCH_MODES (off, binary, text, json)."""
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


def sample(argv, env, logdir):
    """Samples per object for one run."""
    data = os.path.join(logdir, "perf.data")
    for f in os.listdir(logdir):
        os.remove(os.path.join(logdir, f))
    full = dict(os.environ, **env)
    subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-c", str(PERIOD_NS), "-o", data,
                    EXE] + argv, env=full, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--sort", "dso", "-n"],
                         capture_output=True, text=True, check=True).stdout
    counts = dict.fromkeys(OBJECTS, 0)
    for line in out.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)", line)
        if m:
            counts[kind(m.group(2))] += int(m.group(1))
    return counts


def main():
    if not shutil.which("perf"):
        print("perf is not installed (apt-get install linux-perf)", file=sys.stderr)
        return 1
    keep = os.environ.get("BENCH_WORKLOADS")
    work = [w for w in WORKLOADS if not keep or "".join(w[0]) in keep.split(",")]
    tmp = tempfile.mkdtemp(prefix="shmtrace-where-")
    try:
        print(f"ns per hooked call by where the CPU was (perf cpu-clock, {PERIOD_NS // 1000} us "
              f"period, median of {REPS} runs); 'added' is the mode minus native, 'outside' "
              "what of it is not in the shim's own code\n")
        print(f"{'workload':<10} {'mode':<7}" + "".join(f"{o:>9}" for o in OBJECTS)
              + f"{'total':>9}{'added':>9}{'outside':>9}")
        for argv, iters, calls in work:
            hooked = iters * 1.1 * calls
            totals = {}
            # Modes alternate within each round, so that drift of the machine spreads evenly.
            samples = {name: [] for name, _ in modes(tmp)}
            for _ in range(REPS):
                for name, env in modes(tmp):
                    samples[name].append(sample(argv + [str(iters)], env, tmp))
            for name, runs in samples.items():
                per = {o: statistics.median(r[o] for r in runs) * PERIOD_NS / hooked
                       for o in OBJECTS}
                total = statistics.median(sum(r.values()) for r in runs) * PERIOD_NS / hooked
                totals[name] = total
                cols = ""
                if name != "native":
                    added = total - totals["native"]
                    cols = f"{added:>+9.0f}{added - per['shim']:>+9.0f}"
                print(f"{' '.join(argv):<10} {name:<7}" + "".join(f"{per[o]:>9.0f}" for o in OBJECTS)
                      + f"{total:>9.0f}{cols}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

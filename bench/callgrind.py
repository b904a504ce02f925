#!/usr/bin/env python3
"""make bench-profile: user-space instructions per hooked call, counted by callgrind (the same
on any machine, unaffected by load), natively and in each shim mode. Each workload runs at two
iteration counts; the difference divided by the extra calls is the steady-state cost per call,
free of start-up and exit work. Kernel instructions are not counted: compare wall times with
`make bench`. BENCH_FUNCS=1 also prints the shim's top functions (exclusive) per call;
BENCH_MODES=off,binary keeps only those modes, BENCH_WORKLOADS=mmap,posix only those
workloads, BENCH_LIB profiles another build of the library."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
EXE = os.path.join(TOP, "build", "bench", "bench")
LIB = os.environ.get("BENCH_LIB") or os.path.join(TOP, "target", "release", "libshmtrace.so")
STANDIN = os.path.join(TOP, "build", "bench", "standin.so")

# workload argv prefix, iteration counts (small, large), calls per iteration
WORKLOADS = [
    (["mmap"], 2000, 4000, 2),
    # The mmap cycle from one spawned thread: the hook path off the main thread (its TLS).
    (["threads", "1"], 2000, 4000, 2),
    (["filemap"], 2000, 4000, 2),
    (["posix"], 1000, 2000, 4),
    (["semop"], 4000, 8000, 2),
    (["shm"], 1000, 2000, 4),
    (["msg"], 4000, 8000, 2),
    (["semname"], 1000, 2000, 3),
]


def workloads():
    keep = os.environ.get("BENCH_WORKLOADS", "")
    return [w for w in WORKLOADS if not keep or "".join(w[0]) in keep.split(",")]


def modes(logdir):
    keep = os.environ.get("BENCH_MODES", "")
    return [(name, env) for name, env in all_modes(logdir)
            if name == "native" or not keep or name in keep.split(",")]


def all_modes(logdir):
    log = os.path.join(logdir, "log.%p")
    return [
        ("native", {}),
        ("off", {"LD_PRELOAD": LIB, "SHMTRACE_LOG": "off"}),
        ("text", {"LD_PRELOAD": LIB, "SHMTRACE_LOG": log, "SHMTRACE_FORMAT": "text"}),
        ("json", {"LD_PRELOAD": LIB, "SHMTRACE_LOG": log, "SHMTRACE_FORMAT": "json"}),
        ("binary", {"LD_PRELOAD": LIB, "SHMTRACE_LOG": log, "SHMTRACE_FORMAT": "binary"}),
        # The C stand-in (bench/standin.c): snprintf and write(2), one line per call.
        ("standin", {"LD_PRELOAD": STANDIN, "STANDIN_LOG": os.path.join(logdir, "standin")}),
    ]


def collect(argv, env, out):
    full = dict(os.environ, **env)
    r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", EXE] + argv,
                       env=full, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", r.stderr).group(1))


def functions(path):
    out = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", path],
                         capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+?):(.*?)( \[.*\])?$", line)
        if m:
            table[m.group(3)] = table.get(m.group(3), 0) + int(m.group(1).replace(",", ""))
    return table


def main():
    if not shutil.which("valgrind"):
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    show = os.environ.get("BENCH_FUNCS", "") not in ("", "0")
    tmp = tempfile.mkdtemp(prefix="shmtrace-callgrind-")
    try:
        names = [m for m, _ in modes(tmp)]
        print("instructions per hooked call (user space, callgrind)\n")
        print(f"{'workload':<10}" + "".join(f"{m:>9}" for m in names))
        for argv, small, large, calls in workloads():
            row, profiles = [], {}
            for name, env in modes(tmp):
                counts = []
                for n in (small, large):
                    out = os.path.join(tmp, f"{''.join(argv)}.{name}.{n}.out")
                    counts.append(collect(argv + [str(n)], env, out))
                    profiles[(name, n)] = out
                # The timed loop runs n iterations after a warm-up of n/10.
                extra = (large - small) * 1.1 * calls
                row.append((counts[1] - counts[0]) / extra)
            print(f"{''.join(argv):<10}" + "".join(f"{v:>9.0f}" for v in row), flush=True)
            if show:
                for name in names[1:]:
                    a = functions(profiles[(name, small)])
                    b = functions(profiles[(name, large)])
                    extra = (large - small) * 1.1 * calls
                    diff = sorted(((b.get(k, 0) - a.get(k, 0)) / extra, k) for k in b)
                    print(f"  {name}: " + "; ".join(f"{k[:60]} {v:.0f}"
                                                      for v, k in reversed(diff[-8:]) if v >= 1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

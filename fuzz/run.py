#!/usr/bin/env python3
"""Differential fuzzer: runs fuzz/driver.c natively and under libshmtrace.so for each seed, each
run in a private IPC namespace, and compares

  - transparency: the two transcripts (arguments, results, errno after every call, what calls
    wrote), which the driver normalises only where the kernel chooses (addresses, ids, pids);
  - the ledger against the kernel, which the driver checks under the shim every CHECK_EVERY
    calls and at the end (after cleaning up through the hooked calls);
  - the log: one record per call made, same function, same success or failure, same errno;
    a mapping of the memfd names it (`"object":"memfd:..."`), one of the plain file nothing.

On a difference it prints the seed and the shortest failing prefix of calls (for the ledger,
found by re-running with a check after every call).

Before fuzzing it runs fuzz/regress.c: one scenario per class of divergence found so far.

Every regression scenario and, for each seed, transparency, the ledger and the log are counted
checks (c_tests/testlib.py), ending with `N passed, M failed, K skipped`: the short default run
is the `fuzz` suite of tests/run.py (`make test-fuzz`); `make fuzz` runs it at length.

usage: run.py [--seeds N] [--first SEED] [--calls N] [--check-every N] [--huge-pages N]
"""

import argparse
import errno
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "c_tests"))
import testlib as t  # noqa: E402

NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"


def build(work, name):
    exe = os.path.join(work, name)
    subprocess.run(
        ["gcc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(ROOT, "include"),
         "-o", exe, os.path.join(ROOT, "fuzz", name + ".c"), "-ldl"],
        check=True)
    return exe


def regressions(work, when):
    """fuzz/regress.c under the shim, in a private IPC namespace: one check per scenario
    (`ok NAME` / `FAIL NAME: why` / `skipped: NAME: why`), and one for its exit status."""
    env = t.clean_env(preload=True, SHMTRACE_LOG=os.devnull)
    proc = subprocess.run([*t.UNSHARE_IPC, build(work, "regress")], env=env,
                          stdout=subprocess.PIPE, text=True, timeout=120)
    for line in proc.stdout.splitlines():
        if line.startswith("ok "):
            t.check(True, f"regression {line[3:]} ({when})")
        elif line.startswith("FAIL "):
            t.check(False, f"regression {line[5:]} ({when})")
        elif line.startswith("skipped: "):
            name, _, why = line[len("skipped: "):].partition(": ")
            t.skip(f"regression {name} ({when})", why)
        else:
            print("fuzz: regression " + line)
    t.check(proc.returncode == 0, f"regress exits 0 ({when})", f"exit status {proc.returncode}")


def huge_pages_settled():
    """Waits (up to 5 s) until every huge page is free and unreserved again: a private IPC
    namespace's segments are destroyed after its last process exits, not with it, and the next
    run must start with the same pool (a segment never faulted in holds a reservation only)."""
    for _ in range(500):
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        if (int(info["HugePages_Free"]) == int(info["HugePages_Total"])
                and int(info["HugePages_Rsvd"]) == 0):
            return
        time.sleep(0.01)


def run(driver, work, seed, calls, every, shim, stop=False):
    """One run; returns (transcript lines, divergence lines, log path or None)."""
    huge_pages_settled()
    tag = "shim" if shim else "native"
    tx = os.path.join(work, f"{seed}.{tag}.tx")
    log = os.path.join(work, f"{seed}.{every}.log") if shim else None
    if log and os.path.exists(log):
        os.unlink(log)
    cmd = [*t.UNSHARE_IPC, driver, str(seed), str(calls), str(every), tx]
    if stop:
        cmd.append("stop")
    env = (t.clean_env(preload=True, SHMTRACE_FORMAT="json", SHMTRACE_LOG=log) if shim
           else t.clean_env())
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, timeout=600)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"seed {seed} ({tag}): driver exited {proc.returncode}: "
                           f"{proc.stderr[-2000:]}")
    with open(tx) as f:
        lines = f.read().splitlines()
    diverged = [l for l in proc.stderr.splitlines() if l.startswith("DIVERGE")]
    return lines, diverged, log


RESULT = re.compile(r"-> (\S+)(?: errno=(\d+))?")


def compare_log(lines, log):
    """The log's call records against the calls the transcript says were made."""
    records = []
    with open(log) as f:
        for raw in f:
            rec = json.loads(raw)
            if rec.get("event") == "call" and "ret" in rec:
                records.append(rec)
    made = [l.split(" ", 1)[1] for l in lines]
    if len(records) != len(made):
        return f"{len(made)} calls made, {len(records)} logged"
    for i, (line, rec) in enumerate(zip(made, records)):
        words = line.split()
        name = words[1] if words[0] == "cleanup" else words[0]
        if rec["fn"] != name:
            return f"call {i}: made {name}, logged {rec['fn']}"
        m = RESULT.search(line)
        failed = m.group(1) in ("-1", "FAILED")
        logged_failed = rec["ret"] in (-1, "MAP_FAILED", "(void *) -1", "SEM_FAILED")
        if failed != logged_failed:
            return f"call {i} ({line}): logged ret {rec['ret']}"
        if failed and m.group(2) and getattr(errno, rec["errno"] or "", None) != int(m.group(2)):
            return f"call {i} ({line}): logged errno {rec['errno']}"
        # A mapping of the memfd names it; one of the plain file names nothing.
        if not failed and name in ("mmap", "mmap64"):
            memfd, got = " memfd " in line, rec.get("object")
            if memfd != (got is not None) or (memfd and not got.startswith("memfd:")):
                return f"call {i} ({line}): logged object {got!r}"
    return None


def narrow(driver, work, seed, calls):
    """The shortest failing prefix of a ledger divergence: a check after every call."""
    lines, diverged, _ = run(driver, work, seed, calls, 1, True, stop=True)
    if not diverged:
        return "(not reproduced with a check after every call)"
    n = int(re.search(r"after call (\d+)", diverged[0]).group(1)) + 1
    tail = "\n    ".join(lines[max(0, n - 8):n])
    return f"{diverged[0]}\n  shortest failing prefix: {n} calls; the last ones:\n    {tail}"


def fuzz_seed(driver, work, seed, calls, every):
    """One seed natively and under the shim: three checks (transparency, ledger, log)."""
    native, _, _ = run(driver, work, seed, calls, every, False)
    shim, diverged, log = run(driver, work, seed, calls, every, True)
    first = next((i for i, (a, b) in enumerate(zip(native, shim)) if a != b), None)
    if first is not None:
        why = (f"shortest failing prefix {first + 1} calls:\n"
               f"    native: {native[first]}\n    shim:   {shim[first]}")
    else:
        why = f"{len(native)} vs {len(shim)} lines"
    t.check(first is None and len(native) == len(shim),
            f"transparency: seed {seed} ({len(native)} calls)", why)
    t.check(not diverged, f"ledger against the kernel: seed {seed}",
            diverged and narrow(driver, work, seed, calls))
    why = compare_log(shim, log)
    t.check(why is None, f"log against the calls: seed {seed}", why)
    return len(native)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-v", action="store_true", help="print every check")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first", type=int, default=1)
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--check-every", type=int, default=100)
    ap.add_argument("--huge-pages", type=int, default=8,
                    help="huge pages to reserve for the run (restored after); 0 for none")
    args = ap.parse_args()
    t.verbose = args.v
    if not os.path.exists(t.LIB):
        t.check(False, "libshmtrace.so is built", f"{t.LIB} missing (make lib)")
        return t.summary()
    if not t.can_unshare():
        t.skip("the differential fuzzer", "needs a private IPC namespace (unshare --ipc: root)",
               count=1 + 3 * args.seeds)
        return t.summary()
    funcs = t.hooks()
    print(f"fuzz: {len(funcs)} hooked functions from shmtrace.h: {' '.join(funcs)}")
    total, saved = 0, None
    with tempfile.TemporaryDirectory(prefix="shmtrace-fuzz.") as work:
        # Once as the machine is (no huge pages, usually), once with some reserved below.
        regressions(work, "as configured")
    if args.huge_pages and os.access(NR_HUGEPAGES, os.W_OK):
        with open(NR_HUGEPAGES) as f:
            saved = f.read().strip()
        with open(NR_HUGEPAGES, "w") as f:
            f.write(str(args.huge_pages))
    elif args.huge_pages:
        t.skip("huge page reservation", f"{NR_HUGEPAGES} not writable; MAP_HUGETLB and "
               "SHM_HUGETLB calls fail with ENOMEM")
    try:
        with tempfile.TemporaryDirectory(prefix="shmtrace-fuzz.") as work:
            regressions(work, f"{args.huge_pages} huge pages")
            driver = build(work, "driver")
            for seed in range(args.first, args.first + args.seeds):
                try:
                    total += fuzz_seed(driver, work, seed, args.calls, args.check_every)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    t.check(False, f"seed {seed} runs", str(e))
    finally:
        if saved is not None:
            with open(NR_HUGEPAGES, "w") as f:
                f.write(saved)
    print(f"fuzz: {total} calls over {args.seeds} seeds")
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())

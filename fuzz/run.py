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
import fcntl
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "c_tests"))
import testlib as t  # noqa: E402

NR_HUGEPAGES = "/proc/sys/vm/nr_hugepages"


def build(work, name, *defines):
    exe = os.path.join(work, "-".join([name, *defines]))
    subprocess.run(
        ["gcc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(ROOT, "include"),
         *("-D" + d for d in defines), "-o", exe, os.path.join(ROOT, "fuzz", name + ".c"),
         "-ldl"],
        check=True)
    return exe


def generators(work, funcs):
    """The hooked functions (names from shmtrace.h) the driver has no generator for: a function
    added to the hook table without one fails here on any machine, also where the fuzzing
    itself cannot run. And the proof that this sees a missing one: a build without the last
    function's generator must name exactly that function."""
    def missing(*defines):
        out = subprocess.run([build(work, "driver", *defines), "--missing"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
        return [funcs[int(n)] for n in out.split()]
    try:
        none = missing()
    except subprocess.CalledProcessError as e:
        t.check(False, "every hooked function has a generator in fuzz/driver.c", str(e))
        return
    t.check(not none, "every hooked function has a generator in fuzz/driver.c",
            f"none for {' '.join(none)} (docs/testing.md: adding a hooked function to the fuzzer)")
    dropped = missing(f"FUZZ_DROP_GENERATOR={len(funcs) - 1}")
    t.check(dropped == funcs[-1:], "a function without a generator is reported",
            f"a driver without the generator of {funcs[-1]} reports {dropped}")


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


def huge_pool():
    """(total, free, reserved) huge pages of the default size."""
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return tuple(int(info[k]) for k in ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd"))


def huge_pages_settled():
    """Waits (up to 5 s) until every huge page is free and unreserved again: a private IPC
    namespace's segments are destroyed after its last process exits, not with it, and the next
    run must start with the same pool (a segment never faulted in holds a reservation only).
    Returns the pool's size, or None if it did not settle."""
    for _ in range(500):
        total, free, rsvd = huge_pool()
        if free == total and rsvd == 0:
            return total
        time.sleep(0.01)
    return None


class Disturbed(Exception):
    """The huge page pool is machine-wide: a run during which another program resized it, held
    pages of it, or took some, may see MAP_HUGETLB and SHM_HUGETLB calls fail that would
    succeed alone. Such a seed proves nothing and is run again (up to three times)."""


def exclusive():
    """Holds a machine-wide lock (until exit) so that two fuzz runs, whose transcripts both
    depend on the huge page pool, do not run at once."""
    lock = open(os.path.join(tempfile.gettempdir(), "shmtrace-fuzz.lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("fuzz: waiting for another fuzz run on this machine to end", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def run(driver, work, seed, calls, every, shim, stop=False, perturb=False, quiet=False,
        binary=False):
    """One run; returns (transcript lines, divergence lines, log path or None). `perturb`: with
    other neighbours for what the kernel places (FUZZ_PERTURB, natively only). `quiet`: under
    the shim with SHMTRACE_LOG=off, where calls take the paths that build no event. `binary`:
    under the shim with the binary log (its own path for the mapping calls), whose log is
    returned decoded as JSON lines."""
    pool = huge_pages_settled()
    if pool is None:
        raise Disturbed(f"huge pages held by another program: {huge_pool()}")
    tag = ("quiet" if quiet else "binary" if binary else "shim" if shim
           else "perturbed" if perturb else "native")
    tx = os.path.join(work, f"{seed}.{tag}.tx")
    log = os.path.join(work, f"{seed}.{every}.{tag}.log") if shim and not quiet else None
    if log and os.path.exists(log):
        os.unlink(log)
    cmd = [*t.UNSHARE_IPC, driver, str(seed), str(calls), str(every), tx]
    if stop:
        cmd.append("stop")
    fmt = "binary" if binary else "json"
    env = (t.clean_env(preload=True, SHMTRACE_LOG="off") if quiet
           else t.clean_env(preload=True, SHMTRACE_FORMAT=fmt, SHMTRACE_LOG=log) if shim
           else t.clean_env(FUZZ_PERTURB="1") if perturb else t.clean_env())
    proc = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True, timeout=600)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"seed {seed} ({tag}): driver exited {proc.returncode}: "
                           f"{proc.stderr[-2000:]}")
    if huge_pool()[0] != pool:
        raise Disturbed(f"the huge page pool was resized during the run: {pool} -> {huge_pool()[0]}")
    with open(tx) as f:
        lines = f.read().splitlines()
    diverged = [l for l in proc.stderr.splitlines() if l.startswith("DIVERGE")]
    if binary and os.path.exists(log):
        decoded = log + ".jsonl"
        with open(decoded, "w") as out:
            subprocess.run([t.COMMAND, "decode", "--format", "json", log], stdout=out,
                           check=True, timeout=600)
        log = decoded
    return lines, diverged, log


RESULT = re.compile(r"-> (\S+)(?: errno=(\d+))?")


def compare_log(lines, log):
    """The log's call records against the calls the transcript says were made."""
    records = []
    with open(log) as f:
        for raw in f:
            if not raw.strip():  # unclaimed room of a log file written in place
                continue
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


def narrow(driver, work, seed, calls, quiet=False, binary=False):
    """The shortest failing prefix of a ledger divergence: a check after every call."""
    try:
        lines, diverged, _ = run(driver, work, seed, calls, 1, True, stop=True, quiet=quiet,
                                 binary=binary)
    except Disturbed as e:
        return f"(not narrowed: {e})"
    if not diverged:
        return "(not reproduced with a check after every call)"
    n = int(re.search(r"after call (\d+)", diverged[0]).group(1)) + 1
    tail = "\n    ".join(lines[max(0, n - 8):n])
    return f"{diverged[0]}\n  shortest failing prefix: {n} calls; the last ones:\n    {tail}"


def first_difference(a, b):
    """The index of the first line in which transcripts `a` and `b` differ, or None."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def same_transcripts(name, a, b, a_tag, b_tag):
    """One check: transcripts `a` and `b` are identical; else the first difference."""
    first = first_difference(a, b)
    if first is not None:
        why = (f"shortest failing prefix {first + 1} calls:\n"
               f"    {a_tag}: {a[first]}\n    {b_tag}: {b[first]}")
    else:
        why = f"{len(a)} vs {len(b)} lines"
    t.check(first is None and len(a) == len(b), name, why)


def fuzz_seed(driver, work, seed, calls, every, retry):
    """One seed natively, natively with another layout, and under the shim logged as JSON, with
    the binary log and with the log off: nine checks (layout independence of the generated
    calls, transparency and ledger in the three modes, each log against the calls). With
    `retry`,
    raises Disturbed instead when the runs first differ in a call that failed with ENOMEM in one
    of them only: huge pages another program took in the meantime decide that, and a
    difference the shim makes comes back when the seed is run again."""
    native, _, _ = run(driver, work, seed, calls, every, False)
    perturbed, _, _ = run(driver, work, seed, calls, every, False, perturb=True)
    shim, diverged, log = run(driver, work, seed, calls, every, True)
    quiet, quiet_diverged, _ = run(driver, work, seed, calls, every, True, quiet=True)
    binary, binary_diverged, binlog = run(driver, work, seed, calls, every, True, binary=True)
    for other in (perturbed, shim, quiet, binary) if retry else ():
        i = first_difference(native, other)
        if i is not None and ("errno=12" in native[i]) != ("errno=12" in other[i]):
            raise Disturbed(f"ENOMEM in one run only: {native[i]} | {other[i]}")
    same_transcripts(f"layout independence: seed {seed} (a generator's call depends on what "
                     "the kernel placed next to a mapping)", native, perturbed,
                     "native", "perturbed")
    same_transcripts(f"transparency: seed {seed} ({len(native)} calls)", native, shim,
                     "native", "shim")
    t.check(not diverged, f"ledger against the kernel: seed {seed}",
            diverged and narrow(driver, work, seed, calls))
    same_transcripts(f"transparency, log off: seed {seed}", native, quiet, "native", "shim")
    t.check(not quiet_diverged, f"ledger against the kernel, log off: seed {seed}",
            quiet_diverged and narrow(driver, work, seed, calls, quiet=True))
    same_transcripts(f"transparency, binary log: seed {seed}", native, binary, "native",
                     "shim")
    t.check(not binary_diverged, f"ledger against the kernel, binary log: seed {seed}",
            binary_diverged and narrow(driver, work, seed, calls, binary=True))
    why = compare_log(shim, log)
    t.check(why is None, f"log against the calls: seed {seed}", why)
    why = compare_log(binary, binlog)
    t.check(why is None, f"binary log against the calls: seed {seed}", why)
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
    funcs = t.hooks()
    print(f"fuzz: {len(funcs)} hooked functions from shmtrace.h: {' '.join(funcs)}")
    with tempfile.TemporaryDirectory(prefix="shmtrace-fuzz.") as work:
        generators(work, funcs)
    if not t.can_unshare():
        # What would have run: each seed's nine checks (`fuzz_seed`), and the regressions as one.
        t.skip("the differential fuzzer", "needs a private IPC namespace (unshare --ipc: root)",
               count=1 + 9 * args.seeds)
        return t.summary()
    lock = exclusive()  # noqa: F841 (held until exit)
    total, saved = 0, None
    with tempfile.TemporaryDirectory(prefix="shmtrace-fuzz.") as work:
        # Once as the machine is (no huge pages, usually), once with some reserved below.
        regressions(work, "as configured")
    # A run stopped (a timeout's SIGTERM) still gives the machine its huge pages back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
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
                for attempt in range(3):
                    try:
                        total += fuzz_seed(driver, work, seed, args.calls, args.check_every,
                                           retry=attempt < 2)
                    except Disturbed as e:
                        print(f"fuzz: seed {seed} repeated: {e}")
                        if attempt == 2:
                            t.check(False, f"seed {seed} runs undisturbed", str(e))
                        continue
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        t.check(False, f"seed {seed} runs", str(e))
                    break
    finally:
        if saved is not None:
            with open(NR_HUGEPAGES, "w") as f:
                f.write(saved)
        remove_orphaned_names()
    print(f"fuzz: {total} calls over {args.seeds} seeds")
    return t.summary()


def remove_orphaned_names():
    """/dev/shm names of drivers that died before their cleanup (killed, or crashed): a driver
    names them /shmtrace-fuzz-PID-N (semaphores sem.shmtrace-fuzz-PID-N), and a name whose
    driver is gone is nobody's. /dev/shm is not namespaced, so live drivers' names stay."""
    for path in glob.glob("/dev/shm/*shmtrace-fuzz-*-*"):
        pid = os.path.basename(path).split("-")[2]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

if __name__ == "__main__":
    sys.exit(main())

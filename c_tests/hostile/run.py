#!/usr/bin/env python3
"""The hostile-host suite: foreign allocators, threads, fork, long runs.

    python3 c_tests/hostile/run.py [--stress] [-v] [--libdir DIR] [--build DIR] [GROUP ...]

GROUP is any of: alloc threads fork longrun (default: all). Builds the programs with
`make -C c_tests/hostile` (into build/hostile), then runs each under the shim:

  alloc    a program with threads allocating and freeing large blocks while others call every
           hook, with jemalloc and with tcmalloc preloaded before the shim, after it, and with
           the program linked with -lshmtrace; the same with the program's own malloc (over
           mmap); natively first (baseline: the load itself is sound). Then the
           verdict: a program that releases everything itself, run with jemalloc before and
           after the shim, gets a clean report and exit status 0 under SHMTRACE_EXITCODE, its
           report naming libjemalloc's mappings retained (also the `shmtrace` command's
           verdict on its log); with SHMTRACE_ALLOCATORS=none they are still reachable, leaks
           again with SHMTRACE_LEAKS=all; a mapping
           the program itself leaves is still a leak beside jemalloc's; a child forked while
           another thread holds the loader's lock still ends and reports.
  threads  8 threads calling every hook at once; the ledger against /proc/self/maps and the
           log against each thread's own count of its calls, exactly (JSON, text, and the
           binary log as `shmtrace decode` reads it).
  fork     forks while threads are inside hooks, vfork and posix_spawn children, a process
           tree writing one shared log file (JSON, text and binary).
  longrun  1M calls (10M with --stress): the shim's heap and VmRSS flat; heap follows live
           objects only.

Every run has a time limit; a run (or a child it reports `HUNG pid`) still alive then is a
failure, and every process of it gets a gdb backtrace (`thread apply all bt`), saved under
build/hostile/hangs/ and summarised here. SysV objects the programs create carry mode 0610
and a key whose top byte is this invocation's tag (so concurrent runs never touch each
other's); any left in /proc/sysvipc after a run is removed and counted as a failure.

Prints `FAIL ...` for every failed check (with -v every check) and ends with exactly one line
`N passed, M failed, K skipped` (an allocator not installed is a skip); exits 1 if anything
failed. Python standard library only.
"""

import collections
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testlib  # noqa: E402
from testlib import check, first, note  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build", "hostile")
LIB = testlib.LIB
SHMTRACE = testlib.COMMAND  # decodes binary logs
ALLOCATORS = {
    "jemalloc": "libjemalloc.so.2",
    "tcmalloc": "libtcmalloc_minimal.so.4",
}
ALLOCATOR_PACKAGES = {"jemalloc": "libjemalloc2", "tcmalloc": "libtcmalloc-minimal4"}
FNS = testlib.hooks()  # in SHMTRACE_CALL_* order, as hostile.h prints its counts
MMAP_FAMILY = {"mmap", "mmap64", "munmap", "mremap"}
MARK = "610"  # the mode of every SysV object the programs create (hostile.h: HZ_MODE)
TAG = 0x7e  # the top byte of their keys, chosen per invocation (main)

CALL_KEYS = ["event", "pid", "tid", "ts", "fn", "args", "ret", "errno", "dur_ns", "caller"]
ENTER_KEYS = ["event", "pid", "tid", "ts", "fn", "args", "caller"]
START_KEYS = ["event", "pid", "ppid", "ts", "exe", "modules"]
FORK_KEYS = ["event", "pid", "ppid", "ts"]
REPORT_KEYS = ["event", "pid", "clean", "segments", "semaphores", "attachments", "mappings"]
TEXT_CALL = re.compile(
    r"shmtrace\[(?P<pid>\d+)(?::(?P<tid>\d+))?\] \d+\.\d{6} (?P<fn>\w+)\(.*\)"
    r"(?: = (?:MAP_FAILED|SEM_FAILED|\(void \*\) -1|0x[0-9a-f]+|-?\d+)(?: E[A-Z0-9]+ \([^()]*\))?"
    r" <\d+\.\d{6}>| (?P<unfinished><unfinished \.\.\.>)) caller=0x[0-9a-f]+\Z")
TEXT_START = re.compile(r"shmtrace\[(?P<pid>\d+)\] start: .* \(parent \d+\)\Z")
TEXT_FORK = re.compile(r"shmtrace\[(?P<pid>\d+)\] fork: parent (?P<ppid>\d+)\Z")
TEXT_RETAINED = re.compile(r"shmtrace\[(?P<pid>\d+)\] (retained by allocators, not leaks \(.*\):"
                           r"|  .+: \d+ mappings?, +\d+ bytes)\Z")
TEXT_CLEAN = re.compile(r"shmtrace\[(?P<pid>\d+)\] report: clean: no segment, semaphore set, "
                        r"attachment or mapping left behind\Z")

verbose = False
stress = False


# ---- SysV objects ----------------------------------------------------------------------

def marked_sysv(tag=None):
    """{(kind, id)} of the SysV objects with the suite's mode and a key with this run's tag
    (any tag if `tag` is False)."""
    tag = TAG if tag is None else tag
    ids = set()
    for kind in ("shm", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) > 2 and cols[2] == MARK and \
                        (tag is False or (int(cols[0]) & 0xffffffff) >> 24 == tag):
                    ids.add((kind, int(cols[1])))
    return ids


# ---- hangs: who is stuck where -----------------------------------------------------------

def session_pids(sid):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid:  # state ppid pgrp session
            pids.append(int(entry))
    return sorted(pids)


def backtraces(what, pids):
    """gdb backtraces of every thread of `pids`, saved to build/hostile/hangs/; a summary."""
    if not pids:
        return "no process left to inspect"
    outdir = os.path.join(BUILD, "hangs")
    os.makedirs(outdir, exist_ok=True)
    summary = []
    gdb = shutil.which("gdb")
    for pid in pids:
        path = os.path.join(outdir, f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', what)}.{pid}.txt")
        if gdb:
            try:
                out = subprocess.run([gdb, "-p", str(pid), "-batch", "-ex",
                                      "thread apply all bt"], capture_output=True, text=True,
                                     timeout=90).stdout
            except subprocess.TimeoutExpired:
                out = "gdb timed out\n"
        else:
            out = "gdb not installed; kernel stacks:\n"
            for task in sorted(os.listdir(f"/proc/{pid}/task")):
                try:
                    with open(f"/proc/{pid}/task/{task}/wchan") as f:
                        out += f"task {task} wchan {f.read()}\n"
                except OSError:
                    pass
        with open(path, "w") as f:
            f.write(out)
        summary.append(f"pid {pid} ({path}):\n" + summarise_bt(out))
    return "\n".join(summary)


def frame_name(line):
    """`#3  0x... in lock_raw<T> () at src/x.rs:41` -> `lock_raw (src/x.rs:41)`."""
    body = re.sub(r"^#\d+\s+(?:0x[0-9a-f]+ in )?", "", line)
    where = re.search(r" at (\S+:\d+)$", body)
    lib = re.search(r" from (\S+)$", body)
    while re.search(r"<[^<>]*>", body):
        body = re.sub(r"<[^<>]*>", "", body)
    name = re.sub(r"::h[0-9a-f]{16}$", "", body.split(" (")[0]).split("::")[-1]
    if name == "??":
        return f"?? ({os.path.basename(lib[1])})" if lib else "??"
    return name + (f" ({where[1]})" if where and where[1].startswith("src/") else "")


BORING_FRAMES = {"call_once", "do_call", "catch_unwind", "{closure#0}", "{closure#1}",
                 "lll_mutex_lock_optimized", "__GI___lll_lock_wait", "start_thread", "clone3",
                 "__GI_sched_yield"}


def summarise_bt(text):
    """One line per thread: its innermost frames (deduplicated runs)."""
    lines, current = [], None
    for line in text.splitlines():
        if line.startswith("Thread "):
            current = []
            lines.append((line.split(" (")[0], current))
        elif line.startswith("#") and current is not None and len(current) < 10:
            name = frame_name(line)
            if name.split(" (")[0] in BORING_FRAMES:
                continue
            if not current or current[-1] != name:
                current.append(name)
    return "\n".join(f"    {t}: " + " < ".join(f) for t, f in lines) or text[-400:]


# ---- running a program ---------------------------------------------------------------------

class Run:
    pass


def run(what, argv, tmp, preload=None, env=None, timeout=30, log=None, fmt="json", rc=0):
    """Runs argv in its own session with a journal (and a log file, `log`: a path, or None
    for SHMTRACE_LOG=off); checks it ends in time, exits with `rc`, prints no FAIL line, leaves no
    process and no SysV object behind. Returns a Run (rc, stdout, journal text, log path)."""
    r = Run()
    r.journal_path = tempfile.mkstemp(prefix="journal.", dir=tmp)[1]
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("SHMTRACE_", "HOSTILE_")) and k not in ("LD_PRELOAD",)}
    full["HOSTILE_JOURNAL"] = r.journal_path
    full["HOSTILE_TAG"] = str(TAG)
    # The .linked programs find the snapshot of the library (their RUNPATH names LIBDIR).
    full["LD_LIBRARY_PATH"] = os.path.dirname(LIB)
    full["SHMTRACE_LOG"] = log or "off"
    full["SHMTRACE_FORMAT"] = fmt
    # Audit findings are c_tests/findings' business: these runs check records and reports.
    full["SHMTRACE_SUPPRESS"] = os.path.join(ROOT, "c_tests", "findings", "all.supp")
    if preload:
        full["LD_PRELOAD"] = " ".join(preload)
    full.update(env or {})
    r.log = log
    before = marked_sysv()
    start = time.time()
    proc = subprocess.Popen(argv, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    r.hung = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        r.hung = True
        pids = session_pids(proc.pid)
        check(False, f"{what}: finishes within {timeout} s (deadlock?)",
              "backtraces of every process:\n" + backtraces(what, pids))
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    r.seconds = time.time() - start
    r.rc = proc.returncode
    r.stdout, r.stderr = out.decode(errors="replace"), err.decode(errors="replace")
    # Children the program reported hung (HUNG pid), or any other process left behind.
    left = session_pids(proc.pid)
    for _ in range(30):  # children of a program that just failed may still be exiting
        if not left or r.hung:
            break
        time.sleep(0.1)
        left = session_pids(proc.pid)
    if left and not r.hung:
        r.hung = True
        reported = re.findall(r"^HUNG (\d+)", r.stdout, re.M)
        check(False, f"{what}: no process left running after the program ended "
              f"(children it reported hung: {reported})",
              "backtraces:\n" + backtraces(what, left))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    with open(r.journal_path) as f:
        r.journal = f.read()
    fails = [l for l in r.stdout.splitlines() if l.startswith("FAIL")]
    if not r.hung:
        check(r.rc == rc and not fails, f"{what}: exits {rc}, every in-process check passes",
              f"exit status {r.rc}; " + first(fails or r.stderr.strip().splitlines()[-3:], 6))
    elif fails:
        print("     its own checks before that: " + first(fails, 6))
    if any(re.search(r"\(errno (EINVAL|EIDRM)\)", l) and re.search(r"sem|shm", l)
           for l in fails):
        print("     hint: a SysV object of this run vanished while in use: did another process "
              "remove it?")
    time.sleep(0.05)
    leftovers = marked_sysv() - before
    testlib.remove_sysv(leftovers)
    removed = ", ".join(f"{k} {i}" for k, i in sorted(leftovers))
    if r.hung:  # killed here: its cleanup never ran, and the hang is the failure
        if leftovers:
            print(f"     removed what the killed processes left: {removed}")
    else:
        check(not leftovers, f"{what}: no SysV object left behind", "removed " + removed)
    if verbose:
        print(f"     ({r.seconds:.1f} s)")
    return r


# ---- journal and log ------------------------------------------------------------------------

def journal_counts(text):
    """Counter {(pid, tid, fn, event): n} of the calls the programs say they made."""
    c = collections.Counter()
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] != ["COUNT"]:
            continue
        pid, tid, nums = int(parts[1]), int(parts[2]), [int(x) for x in parts[3:]]
        for i, fn in enumerate(FNS):
            if nums[i]:
                c[(pid, tid, fn, "call")] += nums[i]
            if nums[len(FNS) + i]:
                c[(pid, tid, fn, "enter")] += nums[len(FNS) + i]
    return c


def journal_notes(text):
    return [line.split(" ", 2)[2] for line in text.splitlines() if line.startswith("NOTE ")]


class Log:
    """A log, parsed: counts {(pid, tid, fn, event)}, starts {pid: [record]}, forks
    {pid: [ppid]}, reports {pid: [clean]}, problems [str]."""

    def __init__(self, path, fmt):
        self.counts = collections.Counter()
        self.starts, self.forks, self.reports, self.problems = {}, {}, {}, []
        self.report_text = {}
        self.retained = {}  # pid: [module, ...] of the report's retained groups
        self.report_mappings = {}  # pid: the report's "mappings" (JSON)
        self.report_reachable = {}  # pid: the report's "reachable" (JSON)
        self.lines = 0
        if fmt == "binary":  # read as what `shmtrace decode` makes of it
            out = subprocess.run([SHMTRACE, "decode", "--format", "json", path],
                                 capture_output=True)
            if out.returncode != 0 or out.stderr:
                self.problems.append(f"shmtrace decode: exit {out.returncode}, "
                                     f"{out.stderr.decode(errors='replace')[:300]!r}")
            data, fmt = out.stdout, "json"
        else:
            with open(path, "rb") as f:
                data = f.read()
        if data and not data.endswith(b"\n"):
            self.problems.append("the log does not end with a newline")
        text = data.decode(errors="replace")
        (self._json if fmt == "json" else self._text)(text.splitlines())

    def bad(self, n, why, line):
        if len(self.problems) < 20:
            self.problems.append(f"line {n}: {why}: {line[:200]!r}")
        else:
            self.problems.append("...")

    def _json(self, lines):
        for n, line in enumerate(lines, 1):
            self.lines += 1
            try:
                obj = json.loads(line)
            except ValueError as e:
                self.bad(n, f"not JSON ({e})", line)
                continue
            if not isinstance(obj, dict):
                self.bad(n, "not an object", line)
                continue
            event = obj.get("event")
            if event in ("call", "enter"):
                want = CALL_KEYS if event == "call" else ENTER_KEYS
                keys = list(obj)
                if keys[-1:] == ["created"] and obj.get("fn") in ("shmget", "semget"):
                    keys = keys[:-1]
                if keys != want or obj["fn"] not in FNS or not isinstance(obj["args"], dict):
                    self.bad(n, "not a well-formed record", line)
                    continue
                self.counts[(obj["pid"], obj["tid"], obj["fn"], event)] += 1
            elif event == "start" and list(obj) == START_KEYS:
                self.starts.setdefault(obj["pid"], []).append(obj)
            elif event == "fork" and list(obj) == FORK_KEYS:
                self.forks.setdefault(obj["pid"], []).append(obj["ppid"])
            elif event == "report" and list(obj)[:len(REPORT_KEYS)] == REPORT_KEYS and all(
                    k in ("reachable_attachments", "reachable", "scan", "retained")
                    for k in list(obj)[len(REPORT_KEYS):]):
                self.reports.setdefault(obj["pid"], []).append(obj["clean"])
                self.retained[obj["pid"]] = [g["module"] for g in obj.get("retained", [])]
                self.report_mappings[obj["pid"]] = obj["mappings"]
                self.report_reachable[obj["pid"]] = obj.get("reachable", [])
                self.report_text[obj["pid"]] = line[:300]
            else:
                self.bad(n, "unknown record", line)

    def _text(self, lines):
        for n, line in enumerate(lines, 1):
            self.lines += 1
            m = TEXT_CALL.match(line)
            if m:
                pid = int(m["pid"])
                tid = int(m["tid"]) if m["tid"] else pid
                if m["tid"] and tid == pid:
                    self.bad(n, "main thread written as [PID:TID]", line)
                if m["fn"] not in FNS:
                    self.bad(n, "unknown function", line)
                    continue
                self.counts[(pid, tid, m["fn"], "enter" if m["unfinished"] else "call")] += 1
                continue
            m = TEXT_START.match(line)
            if m:
                self.starts.setdefault(int(m["pid"]), []).append(line)
                continue
            m = TEXT_FORK.match(line)
            if m:
                self.forks.setdefault(int(m["pid"]), []).append(int(m["ppid"]))
                continue
            m = TEXT_CLEAN.match(line)
            if m:
                self.reports.setdefault(int(m["pid"]), []).append(True)
                continue
            m = TEXT_RETAINED.match(line)
            if m:
                self.retained.setdefault(int(m["pid"]), []).append(line)
                continue
            self.bad(n, "not a record of the documented shape (or a report that is not "
                     "clean)", line)


def compare_counts(log_counts, want, exact=lambda key: True):
    """Differences between the log's counts and the journal's: exact where exact(key), else
    the log must have at least as many; enter records, at most one per call."""
    problems = []
    for key in sorted(set(log_counts) | set(want)):
        got, need = log_counts.get(key, 0), want.get(key, 0)
        if key[3] == "enter":
            # A semop is logged as started only when it has to wait: at most once per call.
            if got > need:
                problems.append(f"pid {key[0]} tid {key[1]} {key[2]} enter: {got} records, "
                                f"{need} calls made")
            continue
        if got != need and (exact(key) or got < need):
            pid, tid, fn, event = key
            problems.append(f"pid {pid} tid {tid} {fn} {event}: {got} records, "
                            f"{need} calls made")
    return problems


def check_log(what, r, fmt, exact=lambda key: True, pids_reporting=None, clean=True,
              skip=lambda key: False):
    """Every line of r's log parses; the records match the journal per (pid, tid, fn,
    event) (except keys skip() excludes); every process in `pids_reporting` (default: every
    pid in the journal) wrote exactly one exit report, clean if `clean`. Returns the Log."""
    log = Log(r.log, fmt)
    check(not log.problems, f"{what}: all {log.lines} log lines parse ({fmt})",
          first(log.problems, 5))
    want = journal_counts(r.journal)
    got = collections.Counter({k: v for k, v in log.counts.items() if not skip(k)})
    want = collections.Counter({k: v for k, v in want.items() if not skip(k)})
    diff = compare_counts(got, want, exact)
    check(want and not diff, f"{what}: records per process and thread match the calls each "
          f"made ({sum(want.values())} calls)", first(diff, 6) if want else "empty journal")
    if fmt in ("json", "binary"):
        lib = os.path.realpath(LIB)
        wrong = [f"pid {p}: {[m['path'] for m in st['modules'] if 'shmtrace' in m['path']]}"
                 for p, sts in log.starts.items() for st in sts
                 if lib not in [os.path.realpath(m["path"]) for m in st["modules"]]]
        check(log.starts and not wrong, f"{what}: every process image loaded the library "
              "under test", first(wrong) if log.starts else "no start record")
    pids = pids_reporting if pids_reporting is not None else {k[0] for k in want}
    bad = [f"pid {p}: reports {log.reports.get(p)}" for p in sorted(pids)
           if len(log.reports.get(p, [])) != 1 or (clean and log.reports[p] != [True])]
    check(not bad, f"{what}: each of {len(pids)} processes wrote one exit report"
          + (", clean" if clean else ""), first(bad))
    return log


# ---- the groups -------------------------------------------------------------------------------

def remove(path):
    if os.path.exists(path):
        os.unlink(path)


def find_allocator(name):
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
              "/usr/lib"):
        path = os.path.join(d, name)
        if os.path.exists(path):
            return path
    return None


def exe(name, linked=False):
    return os.path.join(BUILD, name + (".linked" if linked else ""))


def group_alloc(tmp):
    secs = "3" if stress else "1"
    limit = 30 if stress else 12
    rounds = 3 if stress else 1
    for name, soname in ALLOCATORS.items():
        lib = find_allocator(soname)
        if not lib:
            testlib.skip(f"alloc with {name}", f"{soname} not installed (Debian: "
                         f"{ALLOCATOR_PACKAGES[name]})")
            continue
        # Does the allocator define mmap itself? Then, ahead of the shim, it hides the
        # program's mmap-family calls from it.
        nm = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True,
                            text=True).stdout
        defines = sorted({l.split()[-1] for l in nm.splitlines()} & MMAP_FAMILY)
        if defines:
            note(f"{name} defines {', '.join(defines)} itself (raw system calls): preloaded "
                 "ahead of the shim, it hides the program's mmap-family calls from it")
        for mode in ("threads", "fork"):
            run(f"alloc {mode} with {name}, no shim (baseline)", [exe("alloc"), mode, secs],
                tmp, preload=[lib], env={"HOSTILE_NATIVE": "1"}, timeout=limit)
        configs = [("preloaded before the shim", [lib, LIB], False),
                   ("preloaded after the shim", [LIB, lib], False),
                   ("preloaded, program linked with -lshmtrace", [lib], True)]
        for rnd in range(rounds):
            for how, preload, linked in configs:
                ahead = preload[0] == lib
                invisible = ahead and bool(defines)
                for mode in ("threads", "fork"):
                    what = f"alloc {mode}, {name} {how}"
                    args = [exe("alloc", linked), mode, secs]
                    if invisible:
                        args.append("--mmap-invisible")
                        what += " (mmap family invisible)"
                    log = os.path.join(tmp, "alloc.log")
                    remove(log)
                    r = run(what, args, tmp, preload=preload, log=log, timeout=limit)
                    if r.hung:
                        continue
                    seen = [n for n in journal_notes(r.journal) if n.startswith("calls ")]
                    if verbose:
                        print("     " + "; ".join(seen))
                    # The allocator adds mmap-family records of its own; SysV ones are exact.
                    # jemalloc's mappings left at exit are retained, not leaks: clean.
                    family = lambda k: k[2] in MMAP_FAMILY
                    lg = check_log(what, r, "json", exact=lambda k: not family(k),
                                   clean=name == "jemalloc",
                                   skip=family if invisible else lambda k: False)
                    pid = next((int(l.split()[1]) for l in r.journal.splitlines()
                                if l.startswith("COUNT")), None)
                    extra = {n.split()[1]: int(n.split()[3]) - int(n.split()[5])
                             for n in seen}
                    if mode == "threads" and rnd == 0:
                        saw = ("none of the program's mmap-family calls" if invisible else
                               f"{extra.get('mmap', 0)} mmap and {extra.get('munmap', 0)} "
                               "munmap calls of the allocator's own")
                        note(f"{name} {how}: the shim saw {saw}; exit report " +
                             ("clean" if lg.reports.get(pid) == [True] else
                              f"NOT clean: {lg.report_text.get(pid, '?')}"))
                    if invisible:
                        made = sum(v for k, v in journal_counts(r.journal).items()
                                   if family(k))
                        logged = sum(v for k, v in lg.counts.items() if family(k))
                        check(made and not logged, f"{what}: none of the program's {made} "
                              "mmap-family calls reaches the shim (the limit to document)",
                              f"{logged} mmap-family records in the log")
    retained_by_jemalloc(tmp)
    for linked in (False, True):
        for mode in ("threads", "fork"):
            what = f"mymalloc {mode} (the program's own malloc over mmap), " + \
                   ("linked" if linked else "preloaded")
            log = os.path.join(tmp, "mymalloc.log")
            remove(log)
            r = run(what, [exe("mymalloc", linked), mode, secs], tmp,
                    preload=None if linked else [LIB], log=log, timeout=limit)
            if not r.hung:
                check_log(what, r, "json", exact=lambda k: k[2] not in MMAP_FAMILY, clean=False)


def retained_by_jemalloc(tmp):
    """Issue 4: jemalloc keeps the address space it maps until exit; those mappings are
    retained by an allocator, not leaks of the program, in the shim's verdict and the
    command's."""
    jemalloc = find_allocator(ALLOCATORS["jemalloc"])
    if not jemalloc:
        return testlib.skip("retained mappings", f"{ALLOCATORS['jemalloc']} not installed "
                            f"(Debian: {ALLOCATOR_PACKAGES['jemalloc']})")
    name = os.path.basename(jemalloc)
    page = os.sysconf("SC_PAGESIZE")
    status = 97  # SHMTRACE_EXITCODE: what a report that is not clean makes the exit status
    for how, preload in (("before", [jemalloc, LIB]), ("after", [LIB, jemalloc])):
        cases = [("releases everything", [], {}, 0),
                 # Not set aside, jemalloc's mappings are still reachable (its own tables
                 # point at them): leaks only when those count too.
                 ("SHMTRACE_ALLOCATORS=none", [],
                  {"SHMTRACE_ALLOCATORS": "none", "SHMTRACE_LEAKS": "all"}, status),
                 ("leaks a mapping of its own", ["leak"], {}, status)]
        for case, args, env, want in cases:
            what = f"retained: {case}, jemalloc preloaded {how} the shim"
            log = os.path.join(tmp, "retained.jsonl")
            remove(log)
            env = dict(env, SHMTRACE_EXITCODE=str(status))
            r = run(what, [exe("released"), *args], tmp, preload=preload, env=env, log=log,
                    rc=want)
            if r.hung:
                continue
            lg = Log(log, "json")
            pids = list(lg.reports)
            check(not lg.problems and len(pids) == 1 and len(lg.reports[pids[0]]) == 1,
                  f"{what}: one well-formed exit report", first(lg.problems) or str(pids))
            if not pids:
                continue
            pid = pids[0]
            clean, retained = lg.reports[pid][0], lg.retained.get(pid, [])
            mappings = lg.report_mappings.get(pid, [])
            jem = [m for m in retained if os.path.basename(m) == name]
            if case == "releases everything":
                check(clean and not mappings and jem,
                      f"{what}: clean, exit status 0, jemalloc's mappings retained ({name})",
                      lg.report_text.get(pid, ""))
            elif case == "SHMTRACE_ALLOCATORS=none":
                reachable = lg.report_reachable.get(pid, [])
                check(not clean and (mappings or reachable) and not retained,
                      f"{what}: not clean, jemalloc's mappings are leaks again",
                      lg.report_text.get(pid, ""))
            else:
                own = [m for m in mappings if m["bytes"] == 3 * page and m["count"] == 1]
                check(not clean and len(mappings) == 1 and own and jem,
                      f"{what}: not clean, exactly the program's 3-page mapping is a leak, "
                      "jemalloc's retained", lg.report_text.get(pid, ""))
            if not os.path.exists(SHMTRACE):
                continue
            cmd_env = {k: v for k, v in os.environ.items() if not k.startswith("SHMTRACE_")}
            cmd_env.update({k: v for k, v in env.items() if k == "SHMTRACE_ALLOCATORS"})
            leaks = ["--leaks", "all"] if env.get("SHMTRACE_LEAKS") == "all" else []
            out = subprocess.run([SHMTRACE, "report", "--json", "--error-exitcode", str(status),
                                  *leaks, log], capture_output=True, text=True, env=cmd_env,
                                 timeout=30)
            try:
                doc = json.loads(out.stdout)
                verdict = doc["verdict"]
                groups = [g for g in doc["retained"] if os.path.basename(g["module"]) == name]
            except (ValueError, KeyError, TypeError) as e:
                check(False, f"{what}: shmtrace report --json parses", f"{e}: {out.stderr}")
                continue
            agrees = out.returncode == want and verdict["clean"] == (want == 0)
            if case == "SHMTRACE_ALLOCATORS=none":
                agrees = agrees and not groups and verdict["retained_mappings"] == 0
            else:
                agrees = agrees and groups and verdict["retained_mappings"] > 0
            check(agrees, f"{what}: the shmtrace command's verdict and --error-exitcode agree "
                  "(retained group shown apart)",
                  f"exit status {out.returncode}, verdict {verdict}, retained {doc['retained']}")
    # A forked child's report finds jemalloc without the loader's lock, which a thread of the
    # parent held at the fork (never reset in the child): it ends, clean.
    what = "retained: fork while a thread is inside dl_iterate_phdr, jemalloc preloaded"
    log = os.path.join(tmp, "retained.jsonl")
    remove(log)
    r = run(what, [exe("released"), "fork-locked"], tmp, preload=[jemalloc, LIB], log=log,
            env={"SHMTRACE_EXITCODE": str(status)}, timeout=20)
    if not r.hung:
        lg = Log(log, "json")
        bad = {p: c for p, c in lg.reports.items() if c != [True]}
        jem = [p for p, mods in lg.retained.items()
               if any(os.path.basename(m) == name for m in mods)]
        check(not lg.problems and len(lg.reports) == 2 and not bad and len(jem) == 2,
              f"{what}: parent and child each wrote one clean report, jemalloc's retained",
              first(lg.problems) or f"reports {lg.reports}, retained {lg.retained}")
    # The text report: clean, then the retained section (every line of the documented shape).
    what = "retained: text report, jemalloc preloaded before the shim"
    log = os.path.join(tmp, "retained.log")
    remove(log)
    r = run(what, [exe("released")], tmp, preload=[jemalloc, LIB], log=log, fmt="text",
            env={"SHMTRACE_EXITCODE": str(status)})
    if not r.hung:
        lg = Log(log, "text")
        pid = next(iter(lg.reports), None)
        check(not lg.problems and pid and lg.reports[pid] == [True]
              and len(lg.retained.get(pid, [])) == 2 and name in lg.retained[pid][1],
              f"{what}: clean line, then the retained section naming {name}",
              first(lg.problems) or str(lg.retained))


def group_threads(tmp):
    runs = [("json", False, "10" if stress else "3"), ("text", True, "5" if stress else "1"),
            ("binary", False, "10" if stress else "2")]
    for fmt, linked, secs in runs:
        what = f"threads: 8 threads x every hook for {secs} s, {fmt} log" + \
               (", linked" if linked else ", preloaded")
        log = os.path.join(tmp, f"threads.{fmt}")
        r = run(what, [exe("threads", linked), secs], tmp, preload=None if linked else [LIB],
                log=log, fmt=fmt, timeout=int(secs) + 40)
        if not r.hung:
            check_log(what, r, fmt, pids_reporting={int(l.split()[1]) for l in
                                                    r.journal.splitlines()
                                                    if l.startswith("COUNT")})
        remove(log)
    if stress:  # the long one, without a log (a log of 30 s of 8 threads is gigabytes)
        run("threads: 8 threads x every hook for 30 s, log off", [exe("threads"), "30"], tmp,
            preload=[LIB], timeout=90)


def fork_storm(what, secs, tmp, fmt):
    log = os.path.join(tmp, f"storm.{fmt}")
    r = run(what, [exe("fork"), "storm", secs], tmp, preload=[LIB], log=log, fmt=fmt,
            timeout=int(secs) + 40)
    if not r.hung:
        # Every process that ends normally writes one clean report (fork children speak
        # only of what they made themselves), except vfork children ending with _exit.
        silent = {int(p) for p in re.findall(r"^CHILD (\d+) vfork-exit$", r.stdout, re.M)}
        pids = {int(l.split()[1]) for l in r.journal.splitlines() if l.startswith("COUNT")}
        lg = check_log(what, r, fmt, pids_reporting=pids - silent)
        wrong = sorted(silent & set(lg.reports))
        check(not wrong, f"{what}: no report from vfork children ending with _exit",
              f"pids {wrong}")
        if verbose:
            print("     " + " ".join(journal_notes(r.journal)))
    remove(log)


def group_fork(tmp):
    secs = "10" if stress else "2"
    # With the log off the hooks are fastest, so the most calls complete while each fork is
    # prepared: the ledger-only storm is the one that caught the deferred queue's bugs (calls
    # entered out of order around it, and calls dropped when it filled up).
    what = f"fork storm, log off: forks while 4 threads are in hooks ({secs} s)"
    run(what, [exe("fork"), "storm", secs], tmp, preload=[LIB], timeout=int(secs) + 40)
    what = f"fork storm: forks, vforks and posix_spawns while 4 threads are in hooks ({secs} s)"
    for fmt in ("json", "binary"):
        fork_storm(f"{what}, {fmt} log", secs, tmp, fmt)

    for fmt in ("json", "text", "binary"):
        what = f"fork spawn: vfork and posix_spawn children ({fmt} log)"
        log = os.path.join(tmp, f"spawn.{fmt}")
        r = run(what, [exe("fork"), "spawn"], tmp, preload=[LIB], log=log, fmt=fmt)
        if r.hung:
            continue
        children = dict((int(p), kind) for p, kind in
                        re.findall(r"^CHILD (\d+) (\S+)$", r.stdout, re.M))
        parent = {int(l.split()[1]) for l in r.journal.splitlines()
                  if l.startswith("COUNT")} - set(children)
        check(len(children) == 3 and len(parent) == 1, f"{what}: three children, one parent",
              f"{children} {parent}")
        reporting = parent | {p for p, k in children.items() if k != "vfork-exit"}
        lg = check_log(what, r, fmt, pids_reporting=reporting)
        silent = [p for p, k in children.items() if k == "vfork-exit" and p in lg.reports]
        check(not silent, f"{what}: a vfork child ending with _exit writes no report (its "
              "memory is its parent's)", f"pids {silent}")
        forks = [p for p in children if p in lg.forks]
        check(not forks, f"{what}: no fork record from vfork or posix_spawn children",
              f"{ {p: lg.forks[p] for p in forks} }")
        spawned = [p for p, k in children.items() if k != "vfork-exit"]
        starts = [p for p in spawned if len(lg.starts.get(p, [])) == 1
                  and (fmt == "text" or lg.starts[p][0]["exe"].endswith("/spawned"))]
        check(len(starts) == 2, f"{what}: the exec'd and the posix_spawn'ed program each "
              "open their part of the log with a start record naming `spawned`",
              f"{ {p: lg.starts.get(p) and len(lg.starts[p]) for p in spawned} }")
        remove(log)

    levels, fanout, calls = (4, 4, 2000) if stress else (3, 3, 300)
    nproc = sum(fanout ** i for i in range(levels + 1))
    for fmt, linked in (("json", False), ("text", True), ("binary", False)):
        what = (f"fork tree: {nproc} processes ({levels} levels of {fanout}) x {calls} calls, "
                f"one shared {fmt} log" + (", linked" if linked else ", preloaded"))
        log = os.path.join(tmp, f"tree.{fmt}")
        r = run(what, [exe("fork", linked), "tree", str(levels), str(fanout), str(calls)], tmp,
                preload=None if linked else [LIB], log=log, fmt=fmt,
                timeout=120 if stress else 40)
        if r.hung:
            continue
        pids = {int(l.split()[1]) for l in r.journal.splitlines() if l.startswith("COUNT")}
        check(len(pids) == nproc, f"{what}: every process journaled its calls",
              f"{len(pids)} of {nproc}")
        lg = check_log(what, r, fmt, pids_reporting=pids)
        parents = dict(tuple(map(int, re.match(r"tree (\d+) parent (\d+)", n).groups()))
                       for n in journal_notes(r.journal) if n.startswith("tree "))
        def opening_wrong(pid, ppid):
            if ppid:  # forked: one fork record naming the parent, no start record
                return lg.forks.get(pid) != [ppid] or bool(lg.starts.get(pid))
            return bool(lg.forks.get(pid)) or len(lg.starts.get(pid, [])) != 1
        wrong = [f"pid {p}: fork records {lg.forks.get(p)}, start records "
                 f"{len(lg.starts.get(p, []))}, parent {pp}" for p, pp in sorted(parents.items())
                 if opening_wrong(p, pp)]
        check(len(parents) == nproc and not wrong, f"{what}: each forked process opens its "
              "part of the log with one fork record naming its parent; the root with one "
              "start record", first(wrong))
        remove(log)


def group_longrun(tmp):
    total = 10_000_000 if stress else 1_000_000
    logged = 2_000_000 if stress else 200_000
    for calls, log, fmt in ((total, None, "json"), (logged, "/dev/null", "json")):
        what = f"longrun: {calls:,} calls, " + ("log off" if log is None else
                                                f"{fmt} log to /dev/null") + \
               ", shim heap and VmRSS flat"
        r = run(what, [exe("longrun"), str(calls)], tmp, preload=[LIB], log=log, fmt=fmt,
                timeout=300 if stress else 60)
        samples = re.findall(r"^SAMPLE (\d+) (\d+) (\d+) (\d+)$", r.stdout, re.M)
        live = re.search(r"^LIVE (.*)$", r.stdout, re.M)
        if samples:
            heap = sorted({int(s[1]) for s in samples})
            rss = [int(s[2]) for s in samples]
            note(f"{what.rsplit(', ', 1)[0]}: shim heap "
                 f"{' -> '.join(str(h) for h in heap)} bytes over the run; VmRSS "
                 f"{rss[0]}..{max(rss)} kB; {r.seconds:.1f} s"
                 + (f"; {live[1]}" if live else ""))


GROUPS = {"alloc": group_alloc, "threads": group_threads, "fork": group_fork,
          "longrun": group_longrun}


def main():
    global verbose, stress, BUILD, LIB, SHMTRACE
    opts = testlib.parse_args(__doc__, "hostile", list(GROUPS), flags=["--stress"])
    verbose, stress, BUILD, LIB = testlib.verbose, opts.stress, opts.build, testlib.LIB
    SHMTRACE = testlib.COMMAND
    start = time.time()
    if not check(os.path.exists(LIB), f"{LIB} exists (make lib)") or \
            not testlib.make(HERE, opts.make_vars):
        return testlib.summary()
    # A tag no live object has: this run's objects are told apart from any other run's.
    global TAG
    taken = set()
    for kind in ("shm", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            next(f)
            taken |= {(int(l.split()[0]) & 0xffffffff) >> 24 for l in f if l.strip()}
    free_tags = [t for t in range(0x60, 0x80) if t not in taken]
    if free_tags:
        TAG = random.choice(free_tags)
    shutil.rmtree(os.path.join(BUILD, "hangs"), ignore_errors=True)
    stale = marked_sysv(tag=False)
    if stale:
        note(f"SysV objects with mode 0{MARK} already exist (an earlier run killed, or another "
             f"run of this suite now): left alone: {sorted(stale)}")
    # Every run uses one snapshot of the library: a rebuild meanwhile (others work in this
    # tree) neither mixes versions nor garbles the backtraces gdb reads from it.
    with tempfile.TemporaryDirectory(prefix="shmtrace-hostile.") as tmp, \
            testlib.private_copies([LIB]) as (_, copies):
        LIB = copies["libshmtrace.so"]
        for name in opts.names:
            t0, before = time.time(), testlib.failed
            try:
                GROUPS[name](tmp)
            except Exception:
                check(False, f"{name}: run.py crashed", traceback.format_exc())
            print(f"-- {name}: {'ok' if testlib.failed == before else 'FAILED'} "
                  f"({time.time() - t0:.0f} s)")
            sys.stdout.flush()
    if verbose:
        print(f"({time.time() - start:.0f} s)")
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Edge cases for shmtrace: signals, bad input, secure execution and log
files, late calls.

    python3 c_tests/edge/run.py [-v] [--libdir DIR] [--build DIR] [GROUP ...]

GROUPs: badinput signals kill secure logfile late (default: all). Builds with
`make -C c_tests/edge`, then:

  badinput  every hook with bad input, and _exit/_Exit/vfork with out-of-range statuses
            (badinput.c, one run per section): natively, linked
            and preloaded, stdout (result and errno of every call) must be identical and the
            exit status 0; the JSON log must match the program's journal record by record
            (function, result, errno: every failed call is logged with its errno) and never
            show a decoded sops/timeout the kernel rejected (EFAULT, E2BIG, ENOMEM) or more
            sembufs than the kernel read (it takes nsops as 32 bits); a text log parses too.
  signals   sig_semop (semop/semtimedop interrupted by SIGUSR1 whose handler maps and
            unmaps: EINTR as natively) and sig_hammer (a timer signal whose handler maps and
            unmaps hammers threads looping on the hooks, or on fork): same stdout as
            natively, no hang (a hung run is backtraced with gdb, then killed), logs parse.
  kill      processes SIGKILLed at random moments while looping on the hooks (children of a
            driver, and whole programs killed from here, also during start-up): once
            resynchronised at record starts every record parses, and records are cut only
            where a killed process was writing (no more cuts than kills).
  secure    secure.c linked against a copy of the library in a private 0755 directory (uid
            65534 may not enter the checkout); a copy with a file capability (setcap), run
            as uid 65534 (root gets no AT_SECURE from file capabilities), and a setuid copy
            run by root: the program sees AT_SECURE=1, SHMTRACE_LOG's file is not created
            (nor a pre-existing one written), the log goes to stderr with exactly one
            warning line. A copy without the capability, run the same way, does create the
            file (control).
  logfile   log files are created with mode 0600 (umask 0), never follow a symlink (one
            warning, log on stderr, the target untouched), are appended to and never
            truncated, and an unopenable path gives exactly one warning and the log on stderr.
  late      hooks called from thread-local and pthread key destructors, atexit handlers, the
            program's and another library's destructors, and after the shim's own teardown:
            same stdout and exit status as natively; the loader runs the shim's destructor
            before liblate's (LD_DEBUG) and the log shows the report before those calls.

Every program runs in its own IPC namespace (unshare --ipc) inside a shell that lists
/proc/sysvipc when it ends: a SysV object left behind is a failure, and can never leak into
the machine (without unshare, the global tables are compared before and after instead).
Prints `FAIL ...` for every failed check and ends with exactly one line
`N passed, M failed, K skipped` (a group that cannot run here, e.g. secure when not root, is
one skip); exits 1 if anything failed. Standard library only.
"""

import glob
import json
import os
import random
import re
import shutil
import signal
import stat
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
BUILD = os.path.join(ROOT, "build", "edge")
LIB = testlib.LIB
TIMEOUT = 10  # seconds per run; programs die after 20 (harness.h alarm), gdb needs them alive
NOBODY = 65534
GROUPS = ["badinput", "signals", "kill", "secure", "logfile", "late"]

POINTER_FNS = {"shmat", "mmap", "mmap64", "mremap", "sem_open"}
MMAP_FAMILY = {"mmap", "mmap64", "mremap"}
# Pointer functions whose failure is NULL rather than (void *) -1, and its name.
NULL_FAILURE = {"sem_open": "SEM_FAILED"}
UNREAD_SOPS = {"EFAULT", "E2BIG", "ENOMEM"}  # the kernel did not (fully) read sops
WARNING = "shmtrace: warning:"
TEXT_LINE = re.compile(
    r"shmtrace\[(?P<pid>\d+)(?::(?P<tid>\d+))?\] (?P<ts>\d+\.\d{6}) (?P<fn>\w+)\((?P<args>.*)\)"
    r"(?: = (?P<ret>MAP_FAILED|SEM_FAILED|\(void \*\) -1|NULL|0x[0-9a-f]+|-?\d+)"
    r"(?: (?P<errno>E[A-Z0-9]+) \((?P<msg>[^()]*)\))?(?: of (?P<object>\S.*?))?"
    r" <(?P<dur>\d+\.\d{6})>"
    r"| (?P<unfinished><unfinished \.\.\.>)) caller=(?P<caller>0x[0-9a-f]+)\Z")
TEXT_START = re.compile(r"shmtrace\[\d+\] start: .* \(parent \d+\)\Z")
TEXT_FORK = re.compile(r"shmtrace\[\d+\] fork: parent \d+\Z")
TEXT_REPORT_HEAD = re.compile(r"shmtrace\[(?P<pid>\d+)\] report: (clean|\d+ leaks?|no segment)[: ,]")
# Audit findings (docs/findings.md; checked in detail by c_tests/findings/run.py).
TEXT_FINDING = re.compile(r"shmtrace\[\d+(:\d+)?\] \d+\.\d{6} finding SHM\d{3} (error|warning|info) "
                          r"\([a-z-]+\) in \w+: .+ site=0x[0-9a-f]+\Z")
TEXT_REPORT_BODY = re.compile(r"shmtrace\[(?P<pid>\d+)\] (?!\d+\.\d{6} ).")

HAVE_NS = False


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def binary(name, kind):
    return os.path.join(BUILD, f"{name}.{kind}")


# ---- running a program -----------------------------------------------------------------

# Runs the program, then lists what the IPC namespace still holds into the file $1.
# LD_PRELOAD ($3) is given to the program alone, not to the shell and its helpers.
WRAPPER = '''d=$1; u=$2; p=$3; shift 3; [ -n "$u" ] && umask "$u"
if [ -n "$p" ]; then LD_PRELOAD=$p "$@"; else "$@"; fi; rc=$?
{ tail -n +2 /proc/sysvipc/shm | sed 's/^/shm /'
  tail -n +2 /proc/sysvipc/sem | sed 's/^/sem /'; } > "$d"
exit $rc'''


class Run:
    def __init__(self):
        self.rc, self.stdout, self.stderr = None, "", ""
        self.hung, self.backtrace, self.leftovers, self.journal = False, "", [], ""


def program_pids(pid):
    """The processes under `pid` (the wrapper shell), deepest first."""
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        return out
    for k in kids:
        out += program_pids(k) + [k]
    return out


def backtrace(pid):
    r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                       capture_output=True, text=True, timeout=60)
    keep = [l for l in r.stdout.splitlines() if l.startswith(("Thread ", "#"))]
    keep = [l if len(l) <= 220 else l[:220] + "..." for l in keep]
    return "\n".join(keep) or (r.stdout + r.stderr)[-2000:]


def run(what, argv, env=None, preload=False, tmp=None, journal=False, timeout=TIMEOUT,
        as_user=None, umask=None, leaks_ok=False, check_sysv=True):
    """Runs argv (in its own IPC namespace); returns a Run with rc (negative: killed by that
    signal), stdout, stderr, journal text, leftovers; a hang is backtraced with gdb and
    killed. Counts a SysV leftover as a failure."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("SHMTRACE_") and k not in ("LD_PRELOAD", "LD_DEBUG")}
    r = Run()
    jpath = None
    if journal:
        fd, jpath = tempfile.mkstemp(prefix="journal.", dir=tmp)
        os.close(fd)
        full_env["SHMTRACE_TEST_JOURNAL"] = jpath
    full_env.update(env or {})
    if as_user is not None:
        argv = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}", "--clear-groups"] + argv
    fd, dump = tempfile.mkstemp(prefix="sysv.", dir=tmp)
    os.close(fd)
    cmd = ["/bin/sh", "-c", WRAPPER, "sh", dump, "" if umask is None else "%o" % umask,
                                     LIB if preload else ""] + argv
    if HAVE_NS:
        cmd = ["unshare", "--ipc", "--"] + cmd
    else:
        before = testlib.sysv_ids()
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        r.hung = True
        pids = program_pids(proc.pid)
        try:
            r.backtrace = backtrace(pids[-1]) if pids else "(no process to attach to)"
        except Exception as e:  # gdb missing or stuck
            r.backtrace = f"(gdb failed: {e!r})"
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    r.stdout, r.stderr = out.decode(errors="replace"), err.decode(errors="replace")
    r.rc = proc.returncode
    if r.rc is not None and r.rc > 128 and not r.hung:
        r.rc = -(r.rc - 128)  # the shell's way of saying "killed by signal rc-128"
    if jpath:
        r.journal = read(jpath)
        os.unlink(jpath)
    if HAVE_NS:
        r.leftovers = [] if r.hung else [l.split()[0] + " " + l.split()[2]
                                         for l in read(dump).splitlines() if l.strip()]
    else:
        left = sorted(testlib.sysv_ids() - before)
        r.leftovers = [f"{k} {i}" for k, i in left]
        testlib.remove_sysv(left)
    os.unlink(dump)
    if r.hung:
        check(False, f"{what}: finishes within {timeout} s (hung: gdb backtrace follows, "
              "then killed)", "\n" + indent(r.backtrace, 60))
    if check_sysv and not r.hung and not leaks_ok:
        check(not r.leftovers, f"{what}: no SysV object left behind", ", ".join(r.leftovers))
    return r


def indent(text, max_lines):
    lines = text.splitlines()
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join("    " + l for l in lines)


def status(rc):
    if rc is None:
        return "none"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def same_output(what, native, r, require_rc=None):
    """Stdout and exit status of r equal the native run's."""
    if r.hung:
        return False
    ok = True
    if require_rc is not None:
        ok &= check(native.rc == require_rc, f"{what}: native run exits {require_rc}",
                    status(native.rc))
    ok &= check(r.rc == native.rc, f"{what}: exit status as natively ({status(native.rc)})",
                f"{status(r.rc)}; stderr: " + first(
                    [l for l in r.stderr.splitlines() if not l.startswith("shmtrace")], 3))
    a, b = native.stdout.splitlines(), r.stdout.splitlines()
    diff = next((i for i in range(max(len(a), len(b)))
                 if i >= len(a) or i >= len(b) or a[i] != b[i]), None)
    detail = ""
    if diff is not None:
        detail = (f"line {diff + 1}: native {a[diff] if diff < len(a) else '(nothing)'!r}, "
                  f"got {b[diff] if diff < len(b) else '(nothing: output ends here)'!r}")
    ok &= check(diff is None, f"{what}: stdout identical to the native run "
                f"({len(a)} lines)", detail)
    return ok


# ---- logs ------------------------------------------------------------------------------

def json_lines(text):
    """(objects, problems): every line must be a JSON object with an event, or blank (the
    padding of a log file written in place, docs/library.md "Log files")."""
    objs, problems = [], []
    if text and not text.endswith("\n"):
        problems.append(f"does not end with a newline: last line {text.splitlines()[-1][:100]!r}")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip(" "):
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or "event" not in obj:
                raise ValueError("not an object with an event")
        except ValueError as e:
            problems.append(f"line {n} does not parse ({e}): {line[:120]!r}")
            continue
        objs.append(obj)
    return objs, problems


def text_lines(text, allow_other=False):
    """Problems of a text log: every line a call/enter record, a start record, or a line of
    a report (after its head line, same pid); warnings allowed; others only if allow_other.
    Blank lines are the padding of a log file written in place."""
    problems = []
    if text and not text.endswith("\n"):
        problems.append(f"does not end with a newline: last line {text.splitlines()[-1][:100]!r}")
    report_pid = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip(" "):
            continue
        head = TEXT_REPORT_HEAD.match(line)
        if head:
            report_pid = head["pid"]
            continue
        body = TEXT_REPORT_BODY.match(line)
        if body and body["pid"] == report_pid and not TEXT_LINE.match(line):
            continue
        report_pid = None
        if (TEXT_LINE.match(line) or TEXT_START.match(line) or TEXT_FORK.match(line)
                or TEXT_FINDING.match(line) or line.startswith(WARNING)):
            continue
        if allow_other and not line.startswith("shmtrace"):
            continue
        problems.append(f"line {n} is not a whole record: {line[:120]!r}")
    return problems


class Entry:
    """One line of a harness.h journal."""

    def __init__(self, line):
        kind, pid, tid, fn, ret, err, tag, _lo, _hi = line.split(" ")
        self.event = "enter" if kind == "E" else "call"
        self.pid, self.tid, self.fn, self.tag = int(pid), int(tid), fn, tag
        self.errno = None if err == "-" else err
        self.ret = None
        if self.event == "call":
            self.ret = norm_ret(fn, int(ret, 16) if fn in POINTER_FNS else int(ret))

    def key(self):
        return (self.event, self.fn, self.ret, self.errno)


def norm_ret(fn, value):
    if fn in POINTER_FNS:
        if isinstance(value, str):
            if not value.startswith("0x"):
                return value
            value = int(value, 16)
        if fn in NULL_FAILURE:
            return NULL_FAILURE[fn] if value == 0 else hex(value)
        if value == 2**64 - 1:
            return "MAP_FAILED" if fn in MMAP_FAMILY else "(void *) -1"
        return hex(value)
    return value


def journal_entries(text):
    return [Entry(l) for l in text.splitlines() if l[:2] in ("C ", "E ")]


def rec_key(obj):
    ret = norm_ret(obj["fn"], obj["ret"]) if obj["event"] == "call" else None
    return (obj["event"], obj["fn"], ret, obj.get("errno"))


def match_journal(what, entries, records, strict):
    """Per thread, the journal's entries against the log's call/enter records: equal
    sequences (strict), or the entries in order within the records. Returns [(entry, rec)]."""
    def by_thread(items, pid, tid):
        groups = {}
        for it in items:
            groups.setdefault((pid(it), tid(it)), []).append(it)
        return groups
    want = by_thread(entries, lambda e: e.pid, lambda e: e.tid)
    got = by_thread([o for o in records if o.get("event") in ("call", "enter")],
                    lambda o: o.get("pid"), lambda o: o.get("tid"))
    problems, pairs = [], []
    for thread in sorted(set(want) | (set(got) if strict else set())):
        w, g = want.get(thread, []), got.get(thread, [])
        # Whether a semop waits (and so has an enter record) is the kernel's to say: enter
        # records are compared only where a thread stopped, in the call in progress.
        w = [e for i, e in enumerate(w) if e.event == "call" or i == len(w) - 1]
        g = [o for i, o in enumerate(g) if o["event"] == "call" or i == len(g) - 1]
        if strict:
            for i in range(max(len(w), len(g))):
                e = w[i] if i < len(w) else None
                o = g[i] if i < len(g) else None
                if e is None or o is None or e.key() != rec_key(o):
                    problems.append(f"thread {thread}: record {i + 1}: expected "
                                    f"{e.key() if e else 'nothing'} [{e.tag if e else ''}], got "
                                    f"{rec_key(o) if o else 'nothing'}")
                    break
                pairs.append((e, o))
        else:
            j = 0
            for e in w:
                while j < len(g) and rec_key(g[j]) != e.key():
                    j += 1
                if j == len(g):
                    problems.append(f"thread {thread}: {e.key()} [{e.tag}] not in the log")
                    break
                pairs.append((e, g[j]))
                j += 1
    check(not problems, f"{what}: the log has every journaled call with its result and errno "
          f"({len(entries)} {'records, exactly' if strict else 'records, in order'})",
          first(problems))
    return pairs


def check_sops_decoding(what, records):
    """Never a sops/timeout the kernel rejected; never more sembufs than it read."""
    bad = []
    for o in records:
        if o.get("fn") not in ("semop", "semtimedop") or not isinstance(o.get("args"), dict):
            continue
        a, err = o["args"], o.get("errno")
        sops = a.get("sops")
        # An enter record shows the operations a call waits with (read by the kernel first),
        # never a timeout, and never operations of a semtimedop with a timeout (not tried).
        if o["event"] == "enter" and (isinstance(a.get("timeout"), dict)
                                      or isinstance(sops, list) and a.get("timeout")):
            bad.append(f"enter record decodes caller memory: {json.dumps(a)[:160]}")
        if o["event"] != "call":
            continue
        if err in UNREAD_SOPS and isinstance(sops, list):
            bad.append(f"{o['fn']} failed {err} but sops decoded: {json.dumps(a)[:160]}")
        if o["fn"] == "semtimedop" and err == "EFAULT" and isinstance(a.get("timeout"), dict):
            bad.append(f"semtimedop failed EFAULT but timeout decoded: {json.dumps(a)[:160]}")
        nsops = a.get("nsops")
        if isinstance(sops, list) and isinstance(nsops, int) and len(sops) > min(8, nsops % 2**32):
            bad.append(f"{len(sops)} sembufs decoded, the kernel read {nsops % 2**32} "
                       f"(nsops {nsops}): {json.dumps(a)[:160]}")
    check(not bad, f"{what}: no sops/timeout decoded beyond what the kernel read", first(bad))


# ---- groups ----------------------------------------------------------------------------

def three_runs(what, prog, args, tmp, fmt="json", journal=True, strict=False, timeout=TIMEOUT,
               require_rc=0, text_run=False):
    """Native, linked and preloaded runs of prog; stdout/status compared, JSON logs checked.
    Returns {mode: (run, records)}."""
    native = run(f"{what} native", [binary(prog, "plain")] + args, tmp=tmp, timeout=timeout)
    if native.hung or not check(native.rc == require_rc, f"{what}: native run exits "
                                f"{require_rc}", f"{status(native.rc)}: {native.stderr[-300:]}"):
        return {}
    results = {}
    modes = [("linked", binary(prog, "linked"), False), ("preloaded", binary(prog, "plain"), True)]
    for mode, exe, preload in modes:
        log = os.path.join(tmp, f"{prog}.{'_'.join(args) or 'run'}.{mode}.{fmt}")
        r = run(f"{what} {mode}", [exe] + args, tmp=tmp, preload=preload, journal=journal,
                env={"SHMTRACE_LOG": log, "SHMTRACE_FORMAT": fmt}, timeout=timeout)
        same_output(f"{what} {mode}", native, r)
        text = read(log)
        if r.hung:
            results[mode] = (r, [])
            continue
        records, problems = json_lines(text)
        check(text and not problems, f"{what} {mode}: every line of the JSON log parses "
              f"({len(text.splitlines())} lines)", first(problems) or "empty log")
        if journal:
            match_journal(f"{what} {mode}", journal_entries(r.journal), records, strict)
        results[mode] = (r, records)
    if text_run:
        r = run(f"{what} preloaded (text log)", [binary(prog, "plain")] + args, tmp=tmp,
                preload=True, journal=journal, timeout=timeout)
        if same_output(f"{what} preloaded (text log)", native, r):
            problems = text_lines(r.stderr)
            check(not problems, f"{what} preloaded (text log on stderr): every line is a "
                  f"whole record ({len(r.stderr.splitlines())} lines)", first(problems))
    return results


def group_badinput(tmp):
    listing = subprocess.run([binary("badinput", "plain"), "--list"], capture_output=True,
                             text=True)
    sections = listing.stdout.split()
    if not check(listing.returncode == 0 and sections, "badinput --list names its sections"):
        return
    logged = set()
    for section in sections:
        what = f"badinput {section}"
        try:
            results = three_runs(what, "badinput", [section], tmp, strict=True, text_run=True)
        finally:
            # The named_sem section unlinks the semaphore it makes; a run that died did not.
            # /dev/shm is shared: only names of processes gone are removed.
            for path in glob.glob("/dev/shm/sem.shmtrace-badinput-sem-*"):
                if not os.path.exists(f"/proc/{path.rsplit('-', 1)[1]}"):
                    os.unlink(path)
        for mode, (r, records) in results.items():
            logged |= {o.get("fn") for o in records if o.get("event") == "call"}
            if records:
                check_sops_decoding(f"{what} {mode}", records)
                failed_calls = [o for o in records if o.get("event") == "call"
                                and o.get("errno") is not None]
                check(all(isinstance(o["errno"], str) and o["errno"].startswith("E")
                          and (o["ret"] == -1
                               or o["ret"] in ("MAP_FAILED", "(void *) -1", "SEM_FAILED"))
                          for o in failed_calls),
                      f"{what} {mode}: each of the {len(failed_calls)} failed calls is logged "
                      "with its errno name and failure result")
    hooks = testlib.hooks()
    check(set(hooks) <= logged, f"badinput: all {len(hooks)} hooks of include/shmtrace.h are "
          "called (and logged) with bad input", str(sorted(set(hooks) - logged)))


def group_signals(tmp):
    for mode in ("norestart", "restart"):
        what = f"sig_semop {mode}"
        results = three_runs(what, "sig_semop", [mode], tmp)
        for m, (r, records) in results.items():
            if not records:
                continue
            intr = [o for o in records if o.get("event") == "call"
                    and o.get("fn") in ("semop", "semtimedop") and o.get("errno") == "EINTR"]
            check(len(intr) == 6, f"{what} {m}: the log shows the 6 interrupted calls with "
                  "errno EINTR", f"{len(intr)} found")
    for mode in ("thread", "process", "fork"):
        # A run takes 0.4 s; 20 s is a hang, even on a loaded machine.
        three_runs(f"sig_hammer {mode}", "sig_hammer", [mode], tmp, timeout=20)


def group_kill(tmp):
    n_children = 60
    seed = random.randrange(1 << 30)
    what = f"kill_loop driver ({n_children} children, seed {seed})"
    native = run(f"{what} native", [binary("kill_loop", "plain"), "driver", str(n_children),
                                    str(seed)], tmp=tmp, timeout=30)
    want = f"children killed by SIGKILL: {n_children} of {n_children} (other ends: 0)\n"
    check(native.rc == 0 and native.stdout == want, f"{what} native: every child killed",
          f"{status(native.rc)}: {native.stdout!r}")
    torn = []
    for mode, exe, preload in (("linked", binary("kill_loop", "linked"), False),
                               ("preloaded", binary("kill_loop", "plain"), True)):
        for fmt in ("json", "text"):
            for shared in (False, True):
                d = tempfile.mkdtemp(prefix=f"kill.{mode}.{fmt}.", dir=tmp)
                log = os.path.join(d, "all.log" if shared else "k.%p.log")
                label = f"{what} {mode} {fmt} {'one shared log' if shared else 'log per pid'}"
                r = run(label, [exe, "driver", str(n_children), str(seed)], tmp=tmp,
                        preload=preload, env={"SHMTRACE_LOG": log, "SHMTRACE_FORMAT": fmt},
                        timeout=30)
                same_output(label, native, r)
                torn += check_log_dir(label, d, fmt, n_children + 1, n_children + 1,
                                      killed=n_children)
    # Whole programs killed from here at random moments, start-up included.
    runs = 40
    for mode, exe, preload in (("linked", binary("kill_loop", "linked"), False),
                               ("preloaded", binary("kill_loop", "plain"), True)):
        for fmt in ("json", "text"):
            d = tempfile.mkdtemp(prefix=f"solo.{mode}.{fmt}.", dir=tmp)
            label = f"kill_loop solo {mode} {fmt} ({runs} programs killed after 0-40 ms)"
            bad = []
            for i in range(runs):
                env = dict((k, v) for k, v in os.environ.items()
                           if not k.startswith("SHMTRACE_") and k != "LD_PRELOAD")
                env.update({"SHMTRACE_LOG": os.path.join(d, f"solo.{i}.log"),
                            "SHMTRACE_FORMAT": fmt})
                if preload:
                    env["LD_PRELOAD"] = LIB
                p = subprocess.Popen([exe, "solo"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
                time.sleep(random.uniform(0, 0.04))
                p.kill()
                _, err = p.communicate()
                if p.returncode != -signal.SIGKILL:
                    bad.append(f"run {i}: {status(p.returncode)} {err[-200:]!r}")
            check(not bad, f"{label}: each ends by SIGKILL only", first(bad))
            torn += check_log_dir(label, d, fmt, runs, killed=runs)
    if torn:
        note(f"{len(torn)} record(s) cut short by SIGKILL: " + first(torn, 5))


def record_pieces(line, marker):
    """A line split at record starts, padding (spaces) dropped: [(piece, cut)]. A piece is cut
    when another record follows it on the line, or padding does."""
    pieces = [p for p in re.split(f"(?={re.escape(marker)})", line) if p.strip(" ")]
    return [(p, i < len(pieces) - 1 or p != p.rstrip(" ")) for i, p in enumerate(pieces)]


def tears(data, fmt):
    """Where records were cut: [(file offset of the line, text around the cut)]."""
    marker = "shmtrace[" if fmt == "text" else '{"event":'
    out, pos = [], 0
    lines = data.decode("utf-8", "replace").split("\n")
    for n, line in enumerate(lines):
        for piece, cut in record_pieces(line, marker):
            if cut or (n == len(lines) - 1):
                out.append((pos, piece.rstrip(" ")[-60:]))
        pos += len(line.encode()) + 1
    return out


def resync(text, fmt):
    """(whole records as text, number of cut records). A log file is written in place, over
    padding the process appended ahead of its records (spaces, a newline ending each chunk):
    a line of spaces is padding not written (yet, or ever: a killed process's rest). A process
    SIGKILLed while copying a record can leave that record cut: padding follows it, and in a
    log several processes or threads write, possibly the next record on the same line. On a
    descriptor written with write(2) (stderr, a pipe), a cut record is the unterminated tail.
    Readers skip blank lines and resynchronise at record starts (docs/library.md, "Log
    files")."""
    marker = "shmtrace[" if fmt == "text" else '{"event":'
    lines = text.split("\n")
    whole, cuts = [], 0
    for n, line in enumerate(lines):
        for piece, cut in record_pieces(line, marker):
            if cut or n == len(lines) - 1:
                cuts += 1
            else:
                whole.append(piece)
    return "".join(f"{w}\n" for w in whole), cuts


def check_log_dir(label, d, fmt, max_files, want_files=None, killed=0):
    """After resynchronising at record starts, every record of every log in d parses, and no
    more records are cut than processes were killed; returns descriptions of the cuts."""
    files = sorted(os.listdir(d))
    problems, lines, torn, cuts = [], 0, [], 0
    for name in files:
        text, cut = resync(read(os.path.join(d, name)), fmt)
        cuts += cut
        lines += len(text.splitlines())
        if fmt == "json":
            _, p = json_lines(text)
        else:
            p = text_lines(text)
        problems += [f"{name}: {x}" for x in p]
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        nul = data.find(b"\0")
        if nul >= 0:
            problems.append(f"{name}: a NUL byte at file offset {nul} (not plain text)")
        torn += [f"{label}: {name}: cut at file offset {off} (= {off // 4096} * 4096 + "
                 f"{off % 4096}): {around!r}" for off, around in tears(data, fmt)]
    if "all.log" not in files:
        if want_files is not None:
            check(len(files) == want_files, f"{label}: one log per process ({want_files})",
                  f"{len(files)} files")
        else:
            check(0 < len(files) <= max_files, f"{label}: at most one log per process",
                  f"{len(files)} files for {max_files} processes")
    check(lines and not problems, f"{label}: every record of every log is whole once "
          f"resynchronised at record starts ({len(files)} files, {lines} records)",
          first(problems))
    check(cuts <= killed, f"{label}: records cut only by the SIGKILLs ({cuts} cut, "
          f"{killed} processes killed)", first(torn))
    return torn


def group_secure(tmp):
    if os.geteuid() != 0:
        return testlib.skip("secure", "needs root (setcap, chown, setpriv)")
    tools = testlib.missing("setcap", "getcap", "setpriv")
    if tools:
        return testlib.skip("secure", f"{', '.join(tools)} not installed (Debian: libcap2-bin, "
                            "util-linux)")
    # uid 65534 may not be able to enter the checkout (a clone under a 0700 home): the program
    # is linked against a copy of the library in a directory it can reach.
    with testlib.private_copies([LIB]) as (base, _):
        if testlib.make(HERE, [f"LIBDIR={base}", f"BUILD={base}", f"{base}/secure.linked"],
                        "secure.linked linked against a copy of the library uid 65534 reaches"):
            secure_copies(tmp, base, os.path.join(base, "secure.linked"))


def secure_copies(tmp, base, src):
    logs = os.path.join(base, "logs")
    os.mkdir(logs)
    os.chmod(logs, 0o1777)  # anyone may create a file here: only the shim's policy stops it
    copies = {}
    for name in ("cap", "nocap", "suid"):
        copies[name] = os.path.join(base, f"secure.{name}")
        shutil.copy(src, copies[name])
        os.chmod(copies[name], 0o755)
    r = subprocess.run(["setcap", "cap_net_bind_service+ep", copies["cap"]],
                       capture_output=True, text=True)
    got = subprocess.run(["getcap", copies["cap"]], capture_output=True, text=True).stdout
    if not check(r.returncode == 0 and "cap_net_bind_service" in got,
                 "setcap gives the copy a file capability", r.stderr + got):
        return
    os.chown(copies["suid"], NOBODY, NOBODY)
    os.chmod(copies["suid"], 0o4755)

    for fmt in ("text", "json"):
        cases = [("file capability, run as uid 65534", copies["cap"], NOBODY),
                 ("setuid to 65534, run by root", copies["suid"], None)]
        for label, exe, user in cases:
            what = f"secure ({label}, {fmt})"
            log = os.path.join(logs, f"new.{fmt}.%p.log")
            r = run(what, [exe], tmp=tmp, as_user=user,
                    env={"SHMTRACE_LOG": log, "SHMTRACE_FORMAT": fmt})
            check(r.rc == 0 and r.stdout.startswith("AT_SECURE=1\n"),
                  f"{what}: the kernel set AT_SECURE and the program ran",
                  f"{status(r.rc)}, stdout {r.stdout!r}, stderr {r.stderr[-300:]!r}")
            check(not os.listdir(logs), f"{what}: SHMTRACE_LOG's file is not created",
                  str(os.listdir(logs)))
            check_stderr_log(what, r.stderr, fmt, warnings=1, mention="secure")
            for name in os.listdir(logs):
                os.unlink(os.path.join(logs, name))
        # A pre-existing file the program could write: left alone.
        what = f"secure (file capability, run as uid 65534, existing log file, {fmt})"
        existing = os.path.join(logs, "existing.log")
        with open(existing, "w") as f:
            f.write("precious\n")
        os.chown(existing, NOBODY, NOBODY)
        r = run(what, [copies["cap"]], tmp=tmp, as_user=NOBODY,
                env={"SHMTRACE_LOG": existing, "SHMTRACE_FORMAT": fmt})
        check(r.rc == 0 and r.stdout.startswith("AT_SECURE=1\n"), f"{what}: AT_SECURE=1",
              f"{status(r.rc)} {r.stdout!r}")
        check(read(existing) == "precious\n", f"{what}: the file is not written",
              repr(read(existing)[:200]))
        check_stderr_log(what, r.stderr, fmt, warnings=1, mention="secure")
        os.unlink(existing)

    # Control: the same program without the capability does write the file.
    what = "secure (no capability, run as uid 65534: control)"
    log = os.path.join(logs, "control.log")
    r = run(what, [copies["nocap"]], tmp=tmp, as_user=NOBODY, env={"SHMTRACE_LOG": log})
    check(r.rc == 0 and r.stdout.startswith("AT_SECURE=0\n"), f"{what}: AT_SECURE=0",
          f"{status(r.rc)} {r.stdout!r}")
    check(os.path.exists(log) and "start:" in read(log) and WARNING not in r.stderr,
          f"{what}: the log file is created and written, no warning",
          f"exists {os.path.exists(log)}, stderr {r.stderr[-200:]!r}")
    # Root gets no AT_SECURE from a file capability (its permitted set is full anyway).
    r = run("secure (file capability, run by root)", [copies["cap"]], tmp=tmp,
            env={"SHMTRACE_LOG": "off"})
    note(f"run by root, the capability copy sees {r.stdout.splitlines()[0] if r.stdout else '?'}"
         " (the kernel does not mark root's exec of a file-capability program as secure), "
         "hence the runs as uid 65534")


def check_stderr_log(what, stderr, fmt, warnings, mention=None):
    """stderr: exactly `warnings` warning lines, and the log records (start, mmap) there."""
    lines = stderr.splitlines()
    warns = [l for l in lines if l.startswith(WARNING)]
    check(len(warns) == warnings and (not mention or all(mention in w for w in warns)),
          f"{what}: exactly {warnings} warning line(s) on stderr"
          + (f" (about {mention})" if mention else ""), first(warns) or "none")
    rest = "".join(l + "\n" for l in lines if not l.startswith(WARNING))
    if fmt == "json":
        objs, problems = json_lines(rest)
        has = any(o.get("event") == "start" for o in objs) and any(
            o.get("fn") == "mmap" for o in objs)
    else:
        problems = text_lines(rest)
        has = "start:" in rest and " mmap(" in rest
    check(has and not problems, f"{what}: the log goes to stderr ({fmt}, start record and "
          "calls)", first(problems) or stderr[-300:])


def group_logfile(tmp):
    for mode, exe, preload in (("linked", binary("secure", "linked"), False),
                               ("preloaded", binary("secure", "plain"), True)):
        d = tempfile.mkdtemp(prefix=f"logfile.{mode}.", dir=tmp)

        what = f"logfile {mode}: new file, umask 0"
        log = os.path.join(d, "new.log")
        r = run(what, [exe], tmp=tmp, preload=preload, umask=0, env={"SHMTRACE_LOG": log})
        st = os.lstat(log) if os.path.exists(log) else None
        check(r.rc == 0 and st and stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
              f"{what}: created with mode 0600", oct(st.st_mode) if st else "not created")
        check(WARNING not in r.stderr and "start:" in read(log) and "report:" in read(log),
              f"{what}: the log is in the file, nothing on stderr", r.stderr[-200:])

        what = f"logfile {mode}: existing file"
        log = os.path.join(d, "existing.log")
        with open(log, "w") as f:
            f.write("precious line\n")
        os.chmod(log, 0o644)
        for _ in range(2):
            r = run(what, [exe], tmp=tmp, preload=preload, env={"SHMTRACE_LOG": log})
        text = read(log)
        check(text.startswith("precious line\n") and text.count(" start: ") == 2
              and text.count(" report: ") == 2,
              f"{what}: appended to by two runs, never truncated (first line kept)",
              repr(text[:200]))
        check(stat.S_IMODE(os.stat(log).st_mode) == 0o644, f"{what}: its mode is left alone",
              oct(os.stat(log).st_mode))
        check(not text_lines(text[len("precious line\n"):]),
              f"{what}: the appended lines are whole records",
              first(text_lines(text[len("precious line\n"):])))

        for fmt in ("text", "json"):
            what = f"logfile {mode}: symlink to a missing file ({fmt})"
            link, target = os.path.join(d, f"link.{fmt}.log"), os.path.join(d, f"target.{fmt}.log")
            os.symlink(target, link)
            r = run(what, [exe], tmp=tmp, preload=preload,
                    env={"SHMTRACE_LOG": link, "SHMTRACE_FORMAT": fmt})
            check(r.rc == 0 and not os.path.exists(target) and os.path.islink(link),
                  f"{what}: not followed (target not created, link unchanged)",
                  f"{status(r.rc)}, target exists: {os.path.exists(target)}")
            check_stderr_log(what, r.stderr, fmt, warnings=1)

        what = f"logfile {mode}: symlink to an existing file"
        link, target = os.path.join(d, "link2.log"), os.path.join(d, "target2.log")
        with open(target, "w") as f:
            f.write("do not touch\n")
        os.symlink(target, link)
        r = run(what, [exe], tmp=tmp, preload=preload, env={"SHMTRACE_LOG": link})
        check(r.rc == 0 and read(target) == "do not touch\n", f"{what}: the target is untouched",
              repr(read(target)[:200]))
        check_stderr_log(what, r.stderr, "text", warnings=1)

        not_dir = os.path.join(d, "plainfile")
        with open(not_dir, "w") as f:
            f.write("x\n")
        fifo = os.path.join(d, "fifo")  # nobody reads it: opening must not block the program
        os.mkfifo(fifo)
        for label, path in (("missing directory", "/nonexistent-shmtrace-dir/x.log"),
                            ("a directory", d),
                            ("under a regular file", os.path.join(not_dir, "x.log")),
                            ("a FIFO without a reader", fifo)):
            for fmt in ("text", "json"):
                what = f"logfile {mode}: unopenable path ({label}, {fmt})"
                r = run(what, [exe], tmp=tmp, preload=preload,
                        env={"SHMTRACE_LOG": path, "SHMTRACE_FORMAT": fmt})
                check(r.rc == 0 and r.stdout == "AT_SECURE=0\nsecure: done\n",
                      f"{what}: the program runs as usual", f"{status(r.rc)} {r.stdout!r}")
                check_stderr_log(what, r.stderr, fmt, warnings=1)


LATE_WHO = {5: "liblate destructor", 6: "liblate atexit", 7: "liblate global atexit"}


def group_late(tmp):
    # The order the loader finalizes in: the shim before liblate (so liblate's destructor and
    # its atexit handlers run after the shim's teardown).
    for mode, exe, preload in (("linked", binary("late", "linked"), False),
                               ("preloaded", binary("late", "plain"), True)):
        r = run(f"late {mode} LD_DEBUG", [exe, "return"], tmp=tmp, preload=preload,
                env={"LD_DEBUG": "files", "SHMTRACE_LOG": "off"})
        fini = [l.split("calling fini:")[1].split()[0] for l in r.stderr.splitlines()
                if "calling fini:" in l and "calling fini:  " not in l]
        names = [os.path.basename(f) for f in fini]
        shim = next((i for i, n in enumerate(names) if n.startswith("libshmtrace")), None)
        late = next((i for i, n in enumerate(names) if n == "liblate.so"), None)
        check(shim is not None and late is not None and shim < late,
              f"late {mode}: the loader runs the shim's destructor before liblate's",
              str(names))
    for mode, want in (("return", 5), ("exit", 7), ("late_exit", 9), ("pthread_exit", 0)):
        what = f"late {mode}"
        results = three_runs(what, "late", [mode], tmp, journal=False, require_rc=want)
        for m, (r, records) in results.items():
            if not records:
                continue
            report = next((i for i, o in enumerate(records) if o.get("event") == "report"), None)
            late = {k: [i for i, o in enumerate(records)
                        if o.get("fn") == "mmap" and o.get("event") == "call"
                        and isinstance(o.get("args"), dict)
                        and o["args"].get("length") == 4096 * (16 + k)] for k in LATE_WHO}
            logged = [LATE_WHO[k] for k in LATE_WHO if late[k]]
            check(report is not None, f"{what} {m}: the shim wrote its report")
            check(report is not None and all(i > report for k in LATE_WHO for i in late[k]),
                  f"{what} {m}: calls from {', '.join(logged) or '(none logged)'} come after "
                  "the report in the log (they ran after the shim's teardown)")
            if len(logged) < len(LATE_WHO):
                note(f"{what} {m}: calls after the shim's teardown not logged for: "
                     + ", ".join(LATE_WHO[k] for k in LATE_WHO if not late[k]))


def main():
    global BUILD, LIB, HAVE_NS
    opts = testlib.parse_args(__doc__, "edge", GROUPS)
    BUILD, LIB = opts.build, testlib.LIB
    start = time.time()
    if not check(os.path.exists(LIB), f"{LIB} exists (make lib)") or \
            not testlib.make(HERE, opts.make_vars):
        return testlib.summary()
    HAVE_NS = testlib.can_unshare()
    if not HAVE_NS:
        note("unshare --ipc unavailable: SysV leftovers are found by comparing the machine's "
             "tables before and after each run")
    with tempfile.TemporaryDirectory(prefix="shmtrace-edge.") as tmp:
        for group in opts.names:
            before, t0 = testlib.failed, time.time()
            try:
                globals()[f"group_{group}"](tmp)
            except Exception:
                check(False, f"{group}: run.py crashed", traceback.format_exc())
            print(f"-- {group}: {'ok' if testlib.failed == before else 'FAILED'} "
                  f"({time.time() - t0:.1f} s)")
    if testlib.verbose:
        print(f"({time.time() - start:.1f} s)")
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Runs the shmtrace C scenarios and checks the shim against them.

    python3 c_tests/run.py [-v] [--libdir DIR] [--build DIR] [SCENARIO ...]

Builds with `make -C c_tests`, then for each scenario:

  * runs it natively (NAME.plain), linked (NAME.linked) and preloaded (LD_PRELOAD + NAME.plain):
    stdout must be identical and the exit status 0 (transparency of results and errno);
  * checks the text log the linked and preloaded runs wrote on stderr, and a JSON log written
    to a file, record by record against the journal the scenario kept of its own calls
    (function, return value, errno, enter records, caller), plus scenario-specific decoding;
  * removes any SysV object a run left behind, and counts that as a failure.

As root the whole suite runs in a private IPC namespace (`unshare --ipc`): its snapshots of
/proc/sysvipc see only its own objects (never another suite's, running at the same time), and
whatever it leaves, even after a crash, dies with the namespace.

Then checks the SHMTRACE_LOG / SHMTRACE_FORMAT behaviour, the exit report and
SHMTRACE_EXITCODE on the examples, and runs the ledger_* programs (the ledger against the
kernel's own view, case by case, and their exit reports; `run.py ledger` runs only those).
Prints `FAIL ...` for every failed check and ends with exactly one line
`N passed, M failed, K skipped`; exits 1 if anything failed. Standard library only.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testlib  # noqa: E402
from testlib import check, first  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "build", "c_tests")
LIB = os.path.join(ROOT, "target", "release", "libshmtrace.so")
TIMEOUT = 30  # seconds per run; the scenarios themselves die after 20 (alarm)

POINTER_FNS = {"shmat", "mmap", "mmap64", "mremap", "sem_open"}
MMAP_FAMILY = {"mmap", "mmap64", "mremap"}
# Pointer functions whose failure is NULL rather than (void *) -1, and its name.
NULL_FAILURE = {"sem_open": "SEM_FAILED"}
ARG_KEYS = {
    "shmget": ["key", "size", "shmflg"],
    "shmat": ["shmid", "shmaddr", "shmflg"],
    "shmdt": ["shmaddr"],
    "shmctl": ["shmid", "cmd", "buf"],
    "semget": ["key", "nsems", "semflg"],
    "semop": ["semid", "sops", "nsops"],
    "semtimedop": ["semid", "sops", "nsops", "timeout"],
    "semctl": ["semid", "semnum", "cmd"],
    "mmap": ["addr", "length", "prot", "flags", "fd", "offset"],
    "mmap64": ["addr", "length", "prot", "flags", "fd", "offset"],
    "munmap": ["addr", "length"],
    "mremap": ["old_address", "old_size", "new_size", "flags"],
    "shm_open": ["name", "oflag", "mode"],
    "shm_unlink": ["name"],
    "memfd_create": ["name", "flags"],
    "sem_open": ["name", "oflag"],
    "sem_close": ["sem"],
    "sem_unlink": ["name"],
    "msgget": ["key", "msgflg"],
    "msgsnd": ["msqid", "msgp", "msgsz", "msgflg"],
    "msgrcv": ["msqid", "msgp", "msgsz", "msgtyp", "msgflg"],
    "msgctl": ["msqid", "cmd", "buf"],
}
SEMCTL_4TH = {"SETVAL": "val", "GETALL": "array", "SETALL": "array"}
SEMCTL_4TH.update(dict.fromkeys(
    ["IPC_STAT", "IPC_SET", "SEM_STAT", "SEM_STAT_ANY", "IPC_INFO", "SEM_INFO"], "buf"))
NUMBER_ARGS = {"size", "nsems", "nsops", "semnum", "length", "old_size", "new_size", "shmid",
               "semid", "fd", "val", "offset", "value", "msqid", "msgsz", "msgtyp"}
POINTER_ARGS = {"shmaddr", "buf", "addr", "old_address", "new_address", "array", "sem", "msgp"}
CALL_KEYS = ["event", "pid", "tid", "ts", "fn", "args", "ret", "errno", "dur_ns", "caller"]
ENTER_KEYS = ["event", "pid", "tid", "ts", "fn", "args", "caller"]
HEX = re.compile(r"0x[0-9a-f]+\Z")
ERRNO_NAME = re.compile(r"E[A-Z0-9]+\Z")
TEXT_LINE = re.compile(
    r"shmtrace\[(?P<pid>\d+)(?::(?P<tid>\d+))?\] (?P<ts>\d+\.\d{6}) (?P<fn>\w+)\((?P<args>.*)\)"
    r"(?: = (?P<ret>MAP_FAILED|SEM_FAILED|\(void \*\) -1|NULL|0x[0-9a-f]+|-?\d+)"
    r"(?: (?P<errno>E[A-Z0-9]+) \((?P<msg>[^()]*)\))?(?: of (?P<object>\S.*?))?"
    r" <(?P<dur>\d+\.\d{6})>"
    r"| (?P<unfinished><unfinished \.\.\.>)) caller=(?P<caller>0x[0-9a-f]+)\Z")
# The exit report (one write): a header line, then its section and entry lines.
TEXT_REPORT_HEAD = re.compile(r"shmtrace\[(?P<pid>\d+)\] report: (?P<verdict>clean|\d+ leaks?)[: ]")
TEXT_REPORT_BODY = re.compile(r"shmtrace\[(?P<pid>\d+)\] (?!\d+\.\d{6} ).")
TEXT_START = re.compile(r"shmtrace\[\d+\] (start: .* \(parent \d+\)|fork: parent \d+)\Z")
REPORT_KEYS = ["event", "pid", "clean", "segments", "semaphores", "attachments", "mappings"]
# After those, each only when not empty, in this order (docs/log-format.md).
REPORT_OPTIONAL_KEYS = ["reachable_attachments", "reachable", "scan", "retained"]
WARNING = "shmtrace: warning:"


class Records(list):
    """Call and enter records; `reports` maps each pid to its exit reports' verdicts."""
    def __init__(self):
        super().__init__()
        self.reports = {}

# ---- the journal a scenario keeps of its own calls (see harness.h) ----------------------

class Entry:
    def __init__(self, line):
        kind, pid, tid, fn, ret, err, tag, lo, hi = line.split(" ")
        self.event = "enter" if kind == "E" else "call"
        self.pid, self.tid, self.fn, self.tag = int(pid), int(tid), fn, tag
        self.code = (int(lo, 16), int(hi, 16))
        self.errno = None if err == "-" else err
        self.ret = None
        if self.event == "call":
            if fn in POINTER_FNS:
                value = int(ret, 16)
                if fn in NULL_FAILURE:
                    self.ret = NULL_FAILURE[fn] if value == 0 else hex(value)
                elif value == 2**64 - 1:
                    self.ret = "MAP_FAILED" if fn in MMAP_FAMILY else "(void *) -1"
                else:
                    self.ret = hex(value)
            else:
                self.ret = int(ret)

    def key(self):
        return (self.event, self.fn, self.ret, self.errno)


class Journal:
    def __init__(self, text):
        self.entries, self.values = [], {}
        for line in text.splitlines():
            if line.startswith("V "):
                _, pid, name, value = line.split(" ")
                self.values[name] = int(value, 16)
            else:
                self.entries.append(Entry(line))

    def tagged(self, tag):
        return [e for e in self.entries if e.tag == tag and e.event == "call"]

    def ret(self, tag):
        """The return value the log must show for the call tagged `tag`."""
        return self.tagged(tag)[0].ret

    def val(self, name):
        return self.values[name]

    def pids(self):
        return sorted({e.pid for e in self.entries})


# ---- log records -----------------------------------------------------------------------

class Rec:
    """One log record, from either format: event pid tid fn args ret errno caller dur."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def key(self):
        return (self.event, self.fn, self.ret, self.errno)


def parse_json_log(text, t0, t1):
    """Returns (records, problems) for a JSON Lines log."""
    recs, problems = Records(), []
    if text and not text.endswith("\n"):
        problems.append("log does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip(" "):
            continue  # padding of a log file written in place (docs/library.md, "Log files")
        try:
            obj = json.loads(line)
        except ValueError as e:
            problems.append(f"line {n} is not JSON ({e}): {line[:120]!r}")
            continue
        if isinstance(obj, dict) and obj.get("event") == "report":
            rest = list(obj)[len(REPORT_KEYS):]
            if (list(obj)[:len(REPORT_KEYS)] != REPORT_KEYS or not isinstance(obj["clean"], bool)
                    or rest != [k for k in REPORT_OPTIONAL_KEYS if k in rest]):
                problems.append(f"line {n}: report keys/types wrong: {line[:160]}")
            else:
                recs.reports.setdefault(obj["pid"], []).append(obj["clean"])
            continue
        bad = json_problems(obj, line, t0, t1)
        problems += [f"line {n}: {p}: {line[:160]}" for p in bad]
        if not isinstance(obj, dict) or "fn" not in obj:
            continue
        recs.append(Rec(event=obj.get("event"), pid=obj.get("pid"), tid=obj.get("tid"),
                        fn=obj.get("fn"), args=obj.get("args"), ret=obj.get("ret"),
                        errno=obj.get("errno"), dur=obj.get("dur_ns"),
                        caller=int(obj["caller"], 16) if isinstance(obj.get("caller"), str)
                        and HEX.match(obj["caller"]) else None, line=line))
    return recs, problems


def json_problems(obj, line, t0, t1):
    """Everything wrong with the shape of one JSON record."""
    if not isinstance(obj, dict):
        return ["not an object"]
    p = []
    event = obj.get("event")
    if event == "fork":
        keys = ["event", "pid", "ppid", "ts"]
        return [] if list(obj) == keys else [f"fork record keys {list(obj)} != {keys}"]
    if event == "start":
        keys = ["event", "pid", "ppid", "ts", "exe", "modules"]
        return [] if list(obj) == keys and isinstance(obj["modules"], list) else [
            f"start record keys {list(obj)} != {keys}"]
    want = CALL_KEYS if event == "call" else ENTER_KEYS if event == "enter" else None
    if want is None:
        return [f"bad event {event!r}"]
    if event == "call" and obj.get("fn") in ("shmget", "semget", "shm_open", "sem_open") and obj.get("errno") is None:
        want = want + ["created"]  # a successful get says whether it created the object
        if not isinstance(obj.get("created"), bool):
            return [f"created is not a boolean"]
    if obj.get("fn") in ("mmap", "mmap64") and "object" in obj:
        want = want + ["object"]  # the shared memory object mapped, when named
    if list(obj) != want:
        p.append(f"keys {list(obj)} != {want}")
    for k in ("pid", "tid"):
        if not (isinstance(obj.get(k), int) and obj[k] > 0):
            p.append(f"bad {k}")
    if not re.search(r'"ts":\d+\.\d{6},', line):
        p.append("ts is not seconds with 6 decimals")
    elif not t0 - 2 <= obj["ts"] <= t1 + 2:
        p.append(f"ts {obj['ts']} outside the run ({t0:.0f}..{t1:.0f})")
    if not (isinstance(obj.get("caller"), str) and HEX.match(obj["caller"])):
        p.append("caller is not a hex string")
    fn, args = obj.get("fn"), obj.get("args")
    if fn not in ARG_KEYS:
        return p + [f"unknown fn {fn!r}"]
    if not isinstance(args, dict):
        return p + ["args is not an object"]
    keys = list(ARG_KEYS[fn])
    if fn == "semctl" and SEMCTL_4TH.get(args.get("cmd")):
        keys.append(SEMCTL_4TH[args["cmd"]])
    if fn == "mremap" and "MREMAP_FIXED" in str(args.get("flags", "")).split("|"):
        keys.append("new_address")
    if fn == "sem_open" and "O_CREAT" in str(args.get("oflag", "")).split("|"):
        keys += ["mode", "value"]
    if list(args) != keys:
        p.append(f"args keys {list(args)} != {keys}")
    for k, v in args.items():
        if k in NUMBER_ARGS and not isinstance(v, int):
            p.append(f"{k} is not a number")
        if k in POINTER_ARGS and not (v is None or isinstance(v, str) and HEX.match(v)):
            p.append(f"{k} is not a pointer")
        if k in ("key", "shmflg", "semflg", "msgflg", "cmd", "prot", "flags") and not isinstance(v, str):
            p.append(f"{k} is not a string")
    if event == "enter":
        if fn not in ("semop", "semtimedop"):
            p.append("enter record for a call that cannot block")
        if fn == "semtimedop" and isinstance(args.get("sops"), list) and args.get("timeout"):
            p.append("sops decoded in the enter record of a semtimedop with a timeout")
        if isinstance(args.get("timeout"), dict):
            p.append("timeout decoded in an enter record")
        return p
    ret, err = obj.get("ret"), obj.get("errno")
    if fn in POINTER_FNS:
        if not isinstance(ret, str):
            p.append("ret of a pointer function is not a string")
    elif not isinstance(ret, int):
        p.append("ret is not a number")
    if not (err is None or isinstance(err, str) and ERRNO_NAME.match(err)):
        p.append(f"bad errno {err!r}")
    if not (isinstance(obj.get("dur_ns"), int) and obj["dur_ns"] >= 0):
        p.append("bad dur_ns")
    return p


def parse_text_log(lines, t0, t1):
    """Returns (records, problems) for text log lines."""
    recs, problems = Records(), []
    report_pid = None
    for n, line in enumerate(lines, 1):
        if not line.strip(" "):
            continue  # padding of a log file written in place
        m = TEXT_LINE.match(line)
        head = TEXT_REPORT_HEAD.match(line)
        if not m and head:
            report_pid = int(head["pid"])
            recs.reports.setdefault(report_pid, []).append(head["verdict"] == "clean")
            continue
        if not m and TEXT_START.match(line):
            continue
        body = TEXT_REPORT_BODY.match(line)
        if not m and body and int(body["pid"]) == report_pid:
            continue
        report_pid = None
        if not m:
            problems.append(f"line {n} does not have the documented shape: {line[:160]!r}")
            continue
        pid = int(m["pid"])
        tid = int(m["tid"]) if m["tid"] else pid
        if m["tid"] and tid == pid:
            problems.append(f"line {n}: main thread written as [PID:TID]: {line[:80]}")
        if not t0 - 2 <= float(m["ts"]) <= t1 + 2:
            problems.append(f"line {n}: time {m['ts']} outside the run ({t0:.0f}..{t1:.0f})")
        if m["msg"] is not None and m["msg"] != os.strerror(getattr(errno, m["errno"], 0)):
            problems.append(f"line {n}: message for {m['errno']} is not strerror's: {m['msg']}")
        ret = m["ret"]
        if ret is not None and m["fn"] not in POINTER_FNS:
            if not re.fullmatch(r"-?\d+", ret):
                problems.append(f"line {n}: {m['fn']} returns an int, not {ret}")
                continue
            ret = int(ret)
        recs.append(Rec(event="enter" if m["unfinished"] else "call", pid=pid, tid=tid,
                        fn=m["fn"], args=m["args"], ret=ret, errno=m["errno"],
                        dur=float(m["dur"]) * 1e9 if m["dur"] else None,
                        caller=int(m["caller"], 16), line=line))
    return recs, problems


def enters_in_place(thread, recs):
    """An enter record is directly followed by its call's record, or ends the thread's log."""
    for i, r in enumerate(recs[:-1]):
        if r.event == "enter" and (recs[i + 1].event, recs[i + 1].fn) != ("call", r.fn):
            return [f"thread {thread[0]}:{thread[1]} record {i + 1}: enter record of {r.fn} "
                    f"not followed by its call record"]
    return []


def match(what, journal, recs):
    """Checks the log against the journal, record by record per thread; returns
    {tag: [(entry, record), ...]} for the records that matched, or None if some did not."""
    def by_thread(items):
        groups = {}
        for it in items:
            groups.setdefault((it.pid, it.tid), []).append(it)
        return groups

    want, got = by_thread(journal.entries), by_thread(recs)
    problems, pairs, callers = [], {}, []
    for thread in sorted(set(want) | set(got)):
        w, g = want.get(thread, []), got.get(thread, [])
        problems += enters_in_place(thread, g)
        # Whether a semop waits (and so has an enter record) is the kernel's to say: enter
        # records are compared only where the thread stopped, in the call in progress.
        w = [e for i, e in enumerate(w) if e.event == "call" or i == len(w) - 1]
        g = [r for i, r in enumerate(g) if r.event == "call" or i == len(g) - 1]
        for i in range(max(len(w), len(g))):
            e = w[i] if i < len(w) else None
            r = g[i] if i < len(g) else None
            if e is None or r is None or e.key() != r.key():
                exp = "nothing" if e is None else f"{e.key()} [{e.tag}]"
                problems.append(f"thread {thread[0]}:{thread[1]} record {i + 1}: expected "
                                f"{exp}, got {r.key() if r else 'nothing'}")
                break
            pairs.setdefault(e.tag, []).append((e, r))
            if r.caller is None or not e.code[0] <= r.caller < e.code[1]:
                callers.append(f"{e.fn} [{e.tag}] caller {r.caller and hex(r.caller)} not in "
                               f"{hex(e.code[0])}..{hex(e.code[1])}")
    check(not problems,
          f"{what}: {len(journal.entries)} records match the journal (fn, ret, errno, enter)",
          first(problems))
    check(not callers and pairs, f"{what}: caller points into the calling code",
          first(callers))
    return None if problems else pairs


# ---- running a scenario ----------------------------------------------------------------

class Run:
    pass


def run(what, binary, preload=False, env=None, tmp=None, args=(), leaks=False):
    """Runs one scenario binary with a journal; returns a Run. Removes SysV leftovers (in
    r.leftovers) and counts them as a failure, unless the run leaks on purpose (leaks=True)."""
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("SHMTRACE_") and k not in ("LD_PRELOAD", "LD_DEBUG")}
    fd, journal_path = tempfile.mkstemp(prefix="journal.", dir=tmp)
    os.close(fd)
    full_env["SHMTRACE_TEST_JOURNAL"] = journal_path
    # The scenarios misuse the calls on purpose; findings are c_tests/findings' business.
    full_env["SHMTRACE_SUPPRESS"] = os.path.join(HERE, "findings", "all.supp")
    # The scenarios check the ledger against the kernel: every attachment and mapping held
    # counts, reachable or not (lost or still reachable is c_tests/verdict's business).
    full_env["SHMTRACE_LEAKS"] = "all"
    if preload:
        full_env["LD_PRELOAD"] = LIB
    full_env.update(env or {})

    before = testlib.sysv_ids()
    r = Run()
    r.t0 = time.time()
    proc = subprocess.Popen([binary, *args], env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        check(False, f"{what}: finishes within {TIMEOUT} s")
    r.t1 = time.time()
    r.rc, r.stdout, r.stderr = proc.returncode, out.decode(errors="replace"), \
        err.decode(errors="replace")
    with open(journal_path) as f:
        r.journal = Journal(f.read())
    os.unlink(journal_path)

    r.leftovers = leaked = sorted(testlib.sysv_ids() - before)
    testlib.remove_sysv(leaked)
    if not leaks:
        check(not leaked, f"{what}: no SysV object left behind",
              "removed " + ", ".join(f"{k} {i}" for k, i in leaked))
    return r


def check_exit(what, r):
    return check(r.rc == 0, f"{what}: exits 0", f"exit status {r.rc}; stderr: "
                 + first([l for l in r.stderr.splitlines() if not l.startswith("shmtrace")]))


def check_text_log(what, r, lines=None):
    """The text log on stderr: documented shape, and every record as journaled."""
    lines = r.stderr.splitlines() if lines is None else lines
    recs, problems = parse_text_log(lines, r.t0, r.t1)
    check(not problems, f"{what}: every line is a text record", first(problems))
    check_reports(what, recs)
    return recs, match(f"{what} text", r.journal, recs)


def check_reports(what, recs):
    """One exit report per process at most, and one from the process that started the run."""
    twice = [pid for pid, verdicts in recs.reports.items() if len(verdicts) > 1]
    check(not twice, f"{what}: no process reports twice", str(twice))
    first_pid = recs[0].pid if recs else None
    check(first_pid in recs.reports, f"{what}: the first process writes an exit report",
          f"reports from {sorted(recs.reports)}, first pid {first_pid}")


def check_json_log(what, r, text):
    recs, problems = parse_json_log(text, r.t0, r.t1)
    check(not problems, f"{what}: every line is a well-formed JSON record", first(problems))
    check_reports(what, recs)
    return recs, match(f"{what} json", r.journal, recs)


# ---- scenario-specific expectations ----------------------------------------------------
#
# EXPECT[scenario][tag](journal) -> {"args": {...}, "text": "...", "min_dur_ns": n}:
# the decoded arguments of the call with that tag (JSON, compared exactly, ANY_PTR matching
# any non-NULL pointer) and its text rendering (see text_matches).

class AnyPtr:
    def __eq__(self, other):
        return isinstance(other, str) and bool(HEX.match(other)) and other != "0x0"

    def __repr__(self):
        return "<ptr>"


ANY_PTR = AnyPtr()
PRIVATE = "IPC_PRIVATE"


def shm_expect():
    def sid(j):
        return j.ret("private")

    return {
        "private": lambda j: dict(
            args={"key": PRIVATE, "size": 4096, "shmflg": "IPC_CREAT|IPC_EXCL|0600"},
            text="IPC_PRIVATE, 4096, IPC_CREAT|IPC_EXCL|0600"),
        "keyed": lambda j: dict(
            args={"key": hex(j.val("key")), "size": 8192, "shmflg": "IPC_CREAT|IPC_EXCL|0640"},
            text=f"{hex(j.val('key'))}, 8192, IPC_CREAT|IPC_EXCL|0640"),
        "lookup": lambda j: dict(args={"key": hex(j.val("key")), "size": 0, "shmflg": "000"}),
        "missing": lambda j: dict(
            args={"key": hex(j.val("missing")), "size": 4096, "shmflg": "0600"}),
        "huge": lambda j: dict(
            args={"key": PRIVATE, "size": 2**64 - 1, "shmflg": "IPC_CREAT|0600"},
            text="IPC_PRIVATE, 18446744073709551615, IPC_CREAT|0600"),
        "attach": lambda j: dict(args={"shmid": sid(j), "shmaddr": None, "shmflg": "0"},
                                 text=f"{sid(j)}, NULL, 0"),
        "attach_ro": lambda j: dict(
            args={"shmid": sid(j), "shmaddr": None, "shmflg": "SHM_RDONLY"},
            text=f"{sid(j)}, NULL, SHM_RDONLY"),
        "attach_badid": lambda j: dict(args={"shmid": -1, "shmaddr": None, "shmflg": "0"}),
        "attach_misaligned": lambda j: dict(
            args={"shmid": sid(j), "shmaddr": "0x10001", "shmflg": "0"},
            text=f"{sid(j)}, 0x10001, 0"),
        "stat": lambda j: dict(args={"shmid": sid(j), "cmd": "IPC_STAT", "buf": ANY_PTR},
                               text=f"{sid(j)}, IPC_STAT, <ptr>"),
        "stat_badid": lambda j: dict(args={"shmid": -1, "cmd": "IPC_STAT", "buf": ANY_PTR}),
        "stat_null": lambda j: dict(args={"shmid": sid(j), "cmd": "IPC_STAT", "buf": None},
                                    text=f"{sid(j)}, IPC_STAT, NULL"),
        "set": lambda j: dict(args={"shmid": sid(j), "cmd": "IPC_SET", "buf": ANY_PTR}),
        "badcmd": lambda j: dict(args={"shmid": sid(j), "cmd": "9999", "buf": ANY_PTR},
                                 text=f"{sid(j)}, 9999, <ptr>"),
        "detach_bad": lambda j: dict(
            args={"shmaddr": hex(int(j.ret("attach_ro"), 16) + 1)}),
        "detach_ro": lambda j: dict(args={"shmaddr": j.ret("attach_ro")},
                                    text=j.ret("attach_ro")),
        "rmid": lambda j: dict(args={"shmid": sid(j), "cmd": "IPC_RMID", "buf": None},
                               text=f"{sid(j)}, IPC_RMID, NULL"),
    }


def sem_expect():
    def sid(j):
        return j.ret("private")

    def ops(*triples):
        return [{"sem_num": n, "sem_op": o, "sem_flg": f} for n, o, f in triples]

    def ctl(cmd, **extra):
        return lambda j: dict(args={"semid": sid(j), "semnum": 0, "cmd": cmd, **extra})

    return {
        "private": lambda j: dict(
            args={"key": PRIVATE, "nsems": 3, "semflg": "IPC_CREAT|0600"},
            text="IPC_PRIVATE, 3, IPC_CREAT|0600"),
        "keyed": lambda j: dict(
            args={"key": hex(j.val("key")), "nsems": 2, "semflg": "IPC_CREAT|IPC_EXCL|0600"}),
        "missing": lambda j: dict(
            args={"key": hex(j.val("missing")), "nsems": 1, "semflg": "0600"}),
        "toomany": lambda j: dict(args={"key": hex(j.val("key")), "nsems": 5, "semflg": "000"}),
        "setval": lambda j: dict(
            args={"semid": sid(j), "semnum": 0, "cmd": "SETVAL", "val": 1},
            text=f"{sid(j)}, 0, SETVAL, 1"),
        "getval": lambda j: dict(args={"semid": sid(j), "semnum": 0, "cmd": "GETVAL"},
                                 text=f"{sid(j)}, 0, GETVAL"),
        "setall": ctl("SETALL", array=ANY_PTR),
        "getall": ctl("GETALL", array=ANY_PTR),
        "getpid": ctl("GETPID"),
        "getncnt": ctl("GETNCNT"),
        "getzcnt": ctl("GETZCNT"),
        "stat": lambda j: dict(
            args={"semid": sid(j), "semnum": 0, "cmd": "IPC_STAT", "buf": ANY_PTR},
            text=f"{sid(j)}, 0, IPC_STAT, <ptr>"),
        "set": ctl("IPC_SET", buf=ANY_PTR),
        "ipcinfo": ctl("IPC_INFO", buf=ANY_PTR),
        "seminfo": ctl("SEM_INFO", buf=ANY_PTR),
        "badcmd": ctl("9999"),
        "rmid": lambda j: dict(args={"semid": sid(j), "semnum": 0, "cmd": "IPC_RMID"},
                               text=f"{sid(j)}, 0, IPC_RMID"),
        "p": lambda j: dict(
            args={"semid": sid(j), "sops": ops((0, -1, "SEM_UNDO")), "nsops": 1},
            text=f"{sid(j)}, [{{0, -1, SEM_UNDO}}], 1"),
        "nowait": lambda j: dict(
            args={"semid": sid(j), "sops": ops((0, -1, "IPC_NOWAIT")), "nsops": 1}),
        "v2": lambda j: dict(
            args={"semid": sid(j), "sops": ops((0, 1, "SEM_UNDO"), (2, -2, "0")), "nsops": 2},
            text=f"{sid(j)}, [{{0, 1, SEM_UNDO}}, {{2, -2, 0}}], 2"),
        "ten": lambda j: dict(args={"semid": sid(j), "sops": ops(*[(1, 1, "0")] * 8),
                                    "nsops": 10}),
        "efault": lambda j: dict(args={"semid": sid(j), "sops": None, "nsops": 1},
                                 text=f"{sid(j)}, NULL, 1"),
        "e2big": lambda j: dict(args={"semid": sid(j), "sops": ANY_PTR, "nsops": 100000},
                                text=f"{sid(j)}, <ptr>, 100000"),
        "timed_ok": lambda j: dict(
            args={"semid": sid(j), "sops": ops((0, -1, "SEM_UNDO")), "nsops": 1,
                  "timeout": {"tv_sec": 1, "tv_nsec": 500000000}},
            text=f"{sid(j)}, [{{0, -1, SEM_UNDO}}], 1, {{tv_sec=1, tv_nsec=500000000}}"),
        "timed_out": lambda j: dict(
            args={"semid": sid(j), "sops": ops((0, -1, "SEM_UNDO")), "nsops": 1,
                  "timeout": {"tv_sec": 0, "tv_nsec": 10000000}},
            min_dur_ns=10_000_000),
        "timed_bad": lambda j: dict(
            # The kernel read the timespec (then rejected its value): shown as read.
            args={"semid": sid(j), "sops": ANY_PTR_OR_OPS, "nsops": 1,
                  "timeout": {"tv_sec": 0, "tv_nsec": 1000000000}},
            text=f"{sid(j)}, <sops>, 1, {{tv_sec=0, tv_nsec=1000000000}}"),
        "timed_null": lambda j: dict(
            args={"semid": sid(j), "sops": ops((2, 1, "0")), "nsops": 1, "timeout": None},
            text=f"{sid(j)}, [{{2, 1, 0}}], 1, NULL"),
    }


class AnyPtrOrOps:
    """sops of a call the kernel rejected for another reason: read or not, both documented."""

    def __eq__(self, other):
        return other == ANY_PTR or isinstance(other, list)

    def __repr__(self):
        return "<ptr or sops>"


ANY_PTR_OR_OPS = AnyPtrOrOps()


def mmap_expect():
    rw, anon = "PROT_READ|PROT_WRITE", "MAP_PRIVATE|MAP_ANONYMOUS"

    def mm(addr, length, prot, flags, fd=-1, offset=0):
        return {"addr": addr, "length": length, "prot": prot, "flags": flags, "fd": fd,
                "offset": offset}

    def remap(old, old_size, new_size, flags, new=None):
        a = {"old_address": old, "old_size": old_size, "new_size": new_size, "flags": flags}
        return a if new is None else {**a, "new_address": new}

    return {
        "anon_private": lambda j: dict(args=mm(None, 12288, rw, anon),
                                       text=f"NULL, 12288, {rw}, {anon}, -1, 0"),
        "anon_shared": lambda j: dict(args=mm(None, 4096, rw, "MAP_SHARED|MAP_ANONYMOUS")),
        "fixed": lambda j: dict(
            args=mm(hex(j.val("fixed_target")), 4096, rw, "MAP_SHARED|MAP_FIXED|MAP_ANONYMOUS"),
            text=f"{hex(j.val('fixed_target'))}, 4096, {rw}, MAP_SHARED|MAP_FIXED|MAP_ANONYMOUS,"
                 " -1, 0"),
        "file": lambda j: dict(args=mm(None, 4096, "PROT_READ", "MAP_SHARED", j.val("fd"), 4096),
                               text=f"NULL, 4096, PROT_READ, MAP_SHARED, {j.val('fd')}, 0x1000"),
        "len0": lambda j: dict(args=mm(None, 0, "PROT_READ", anon),
                               text=f"NULL, 0, PROT_READ, {anon}, -1, 0"),
        "badfd": lambda j: dict(args=mm(None, 4096, "PROT_READ", "MAP_SHARED")),
        "reserve": lambda j: dict(args=mm(None, 8192, "PROT_NONE", anon)),
        "munmap_misaligned": lambda j: dict(
            args={"addr": hex(int(j.ret("anon_private"), 16) + 1), "length": 4096}),
        "munmap_shared": lambda j: dict(args={"addr": j.ret("anon_shared"), "length": 4096},
                                        text=f"{j.ret('anon_shared')}, 4096"),
        "grow": lambda j: dict(args=remap(j.ret("anon_private"), 4096, 32768, "MREMAP_MAYMOVE"),
                               text=f"{j.ret('anon_private')}, 4096, 32768, MREMAP_MAYMOVE"),
        "shrink": lambda j: dict(args=remap(j.ret("grow"), 32768, 8192, "0")),
        "remap_fixed": lambda j: dict(
            args=remap(j.ret("shrink"), 8192, 8192, "MREMAP_MAYMOVE|MREMAP_FIXED",
                       hex(j.val("fixed_dest"))),
            text=f"{j.ret('shrink')}, 8192, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, "
                 f"{hex(j.val('fixed_dest'))}"),
        "dontunmap": lambda j: dict(
            args=remap(j.ret("remap_fixed"), 8192, 8192, "MREMAP_MAYMOVE|MREMAP_DONTUNMAP"),
            text=f"{j.ret('remap_fixed')}, 8192, 8192, MREMAP_MAYMOVE|MREMAP_DONTUNMAP"),
        "badflags": lambda j: dict(args=remap(j.ret("dontunmap"), 8192, 8192, "0x80")),
        "fixed_nomove": lambda j: dict(
            args=remap(j.ret("dontunmap"), 8192, 8192, "MREMAP_FIXED",
                       hex(j.val("fixed_dest")))),
    }


def fnptr_expect():
    return {
        "semctl": lambda j: dict(
            args={"semid": j.ret("semget"), "semnum": 0, "cmd": "SETVAL", "val": 2}),
        "semtimedop": lambda j: dict(
            args={"semid": j.ret("semget"),
                  "sops": [{"sem_num": 0, "sem_op": -1, "sem_flg": "SEM_UNDO"}], "nsops": 1,
                  "timeout": {"tv_sec": 2, "tv_nsec": 0}}),
        "mmap64": lambda j: dict(args={"addr": None, "length": 4096, "prot": "PROT_READ",
                                       "flags": "MAP_SHARED|MAP_ANONYMOUS", "fd": -1,
                                       "offset": 0}),
        "mremap": lambda j: dict(args={"old_address": j.ret("mmap"), "old_size": 4096,
                                       "new_size": 8192, "flags": "MREMAP_MAYMOVE"}),
    }


def early_expect():
    """Decoding works the same before the shim's constructor ran (libearly) and after."""
    return {
        "early_shmget": lambda j: dict(
            args={"key": PRIVATE, "size": 4096, "shmflg": "IPC_CREAT|0600"},
            text="IPC_PRIVATE, 4096, IPC_CREAT|0600"),
        "early_rmid": lambda j: dict(
            args={"shmid": j.ret("early_shmget"), "cmd": "IPC_RMID", "buf": None}),
        "early_mmap": lambda j: dict(
            args={"addr": None, "length": 4096, "prot": "PROT_READ|PROT_WRITE",
                  "flags": "MAP_PRIVATE|MAP_ANONYMOUS", "fd": -1, "offset": 0}),
        "early_munmap": lambda j: dict(args={"addr": j.ret("early_mmap"), "length": 4096}),
        "early_sem_close": lambda j: dict(args={"sem": j.ret("early_sem_open")}),
        "main_shmget": lambda j: dict(
            args={"key": PRIVATE, "size": 4096, "shmflg": "IPC_CREAT|0600"}),
    }


def exec_expect():
    return {
        "before_shmget": lambda j: dict(
            args={"key": PRIVATE, "size": 4096, "shmflg": "IPC_CREAT|0600"}),
        "after_shmget": lambda j: dict(
            args={"key": PRIVATE, "size": 8192, "shmflg": "IPC_CREAT|0600"},
            text="IPC_PRIVATE, 8192, IPC_CREAT|0600"),
        "after_munmap": lambda j: dict(args={"addr": j.ret("after_mmap"), "length": 8192}),
    }


EXPECT = {
    "shm": shm_expect(), "early": early_expect(), "exec": exec_expect(), "sem": sem_expect(), "mmap": mmap_expect(),
    "mmap64": mmap_expect(), "mmap_now": mmap_expect(), "mmap_noplt": mmap_expect(),
    "fnptr": fnptr_expect(),
}


def text_matches(want, got):
    """<ptr> in want matches any pointer, <sops> a pointer or a sembuf array."""
    tokens = {"<ptr>": "0x[0-9a-f]+", "<sops>": r"(?:0x[0-9a-f]+|\[.*\])"}
    pattern = "".join(tokens.get(part) or re.escape(part)
                      for part in re.split(r"(<ptr>|<sops>)", want))
    return re.fullmatch(pattern, got) is not None


def check_decoding(what, scenario, journal, pairs, fmt):
    """The arguments of every tagged call, as EXPECT describes them (for this format)."""
    if pairs is None:
        return  # the log does not match the journal: already reported
    problems, compared = [], 0
    for tag, expect in EXPECT.get(scenario, {}).items():
        want = expect(journal)
        if fmt == "text" and "text" not in want and "min_dur_ns" not in want:
            continue
        calls = [rec for e, rec in pairs.get(tag, []) if rec.event == "call"]
        if not calls:
            problems.append(f"[{tag}] no matched record")
        for rec in calls:
            compared += 1
            if fmt == "json" and not want["args"] == rec.args:
                problems.append(f"[{tag}] args {json.dumps(rec.args)} != {want['args']}")
            if fmt == "text" and "text" in want and not text_matches(want["text"], rec.args):
                problems.append(f"[{tag}] args {rec.args!r} != {want['text']!r}")
            if rec.dur < want.get("min_dur_ns", 0):
                problems.append(f"[{tag}] duration {rec.dur} ns < {want['min_dur_ns']}")
    if compared or problems:
        check(not problems, f"{what} {fmt}: {compared} calls decoded as documented",
              first(problems))


# ---- scenario-specific checks beyond decoding ------------------------------------------

def check_block(what, r, recs):
    child = [e for e in r.journal.entries if e.tag == "blocked"]
    if not check(len(child) == 1, f"{what}: the child journaled its blocking semop"):
        return
    pid = child[0].pid
    mine = [x for x in recs if x.pid == pid]
    enters = [x for x in mine if x.event == "enter" and x.fn == "semop"]
    calls = [x for x in mine if x.event == "call" and x.fn == "semop"]
    check(len(enters) == 1 and not calls and mine and mine[-1] is enters[0],
          f"{what}: killed child's log ends with the semop enter record, no call record",
          f"{len(enters)} enter, {len(calls)} call records for pid {pid}")
    if enters and isinstance(enters[0].args, dict):
        a = enters[0].args
        # It waits: the kernel read its operations first, so the record carries them.
        wanted = {"semid": r.journal.ret("semget"),
                  "sops": [{"sem_num": 0, "sem_op": -1, "sem_flg": "SEM_UNDO"}], "nsops": 1}
        check(a == wanted,
              f"{what}: enter record shows semid, the operations it waits with, nsops",
              json.dumps(a))


def check_processes(what, r, recs, scenario):
    pids = r.journal.pids()
    logged = sorted({x.pid for x in recs})
    if scenario in ("fork", "exit", "block"):
        check(len(pids) == 2 and logged == pids, f"{what}: parent and child both logged",
              f"journal pids {pids}, log pids {logged}")
    if scenario == "exec":
        after = matched(r, "after_")
        check(len(after) == 4 and all(x.pid == pids[0] for x in after) and len(pids) == 1,
              f"{what}: the exec'd image's calls are logged, same pid",
              f"{len(after)} of 4 after exec")
    if scenario == "exit":
        lasts = r.journal.tagged("last")
        got = {e.pid for e, x in (r.pairs or {}).get("last", [])}
        check(len(lasts) == 2 and got == {e.pid for e in lasts},
              f"{what}: the last call before _exit/_Exit is logged in both processes",
              f"logged for {sorted(got)} of {sorted(e.pid for e in lasts)}")
    if scenario == "threads":
        n = sum(1 for e in r.journal.entries if e.event == "call")
        calls = [x for x in recs if x.event == "call"]
        tids = {x.tid for x in recs}
        check(len(calls) == n and len(tids) == 7,
              f"{what}: exactly {n} call records from 7 threads",
              f"{len(calls)} call records from {len(tids)} threads")
    if scenario == "early":
        early = matched(r, "early_")
        check(len(early) == 7, f"{what}: the 7 calls from libearly's constructor are logged",
              f"{len(early)} logged")


def matched(r, prefix):
    """The log records matched to journal entries whose tag starts with prefix."""
    return [x for tag, pairs in (r.pairs or {}).items() if tag.startswith(prefix)
            for e, x in pairs]


# ---- per scenario ----------------------------------------------------------------------

SCENARIOS = ["shm", "sem", "mmap", "mmap64", "mmap_now", "mmap_noplt", "fnptr", "early",
             "threads", "fork", "exec", "exit", "block", "api"]


def binary(name, kind):
    return os.path.join(BUILD, f"{name}.{kind}")


def exit_report_reads(exe, tmp):
    """With the log off, the exit report is made only when SHMTRACE_EXITCODE needs its verdict:
    otherwise nobody sees it, and a short-lived process would pay for its reads of the address
    space (strace shows them)."""
    what = "SHMTRACE_LOG=off: the exit report"
    if not shutil.which("strace"):
        return testlib.skip(what, "strace not installed (Debian: strace)", 2)
    for extra, made in (({}, False), ({"SHMTRACE_EXITCODE": "3"}, True)):
        trace = os.path.join(tmp, "exit_report.strace")
        env = dict(os.environ, LD_PRELOAD=LIB, SHMTRACE_LOG="off", **extra)
        r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat", "-o", trace, exe],
                           env=env, capture_output=True, text=True, timeout=60)
        reads = [line for line in read(trace).splitlines() if "/proc/self/" in line]
        if made:
            # The status is the verdict's (this scenario's findings): the report was made. It
            # holds nothing at exit, so nothing is scanned and nothing read.
            check(r.returncode == 3, f"{what} with SHMTRACE_EXITCODE is made (its verdict's "
                  "status)", f"exit {r.returncode}")
        else:
            check(r.returncode == 0 and not reads, f"{what} reads nothing of /proc/self",
                  f"exit {r.returncode}; {reads[:3]}")


def forked_child_log_cost(exe, tmp):
    """A forked child with a log file of its own (`%p`) that holds nothing at exit: its exit
    report reads /proc/self/maps once (for the modules loaded since the start) and scans
    nothing (no pagemap); with text or JSON its few records (8 in the fork scenario's child,
    as many as the shim writes so) go with write(2), with no lock nor a chunk's rest given back
    (strace shows the system calls)."""
    what = "forked child, a log of its own"
    if not shutil.which("strace"):
        return testlib.skip(what, "strace not installed (Debian: strace)", 3)
    for fmt in ("json", "binary"):
        logdir = tempfile.mkdtemp(prefix=f"childcost.{fmt}.", dir=tmp)
        trace = os.path.join(logdir, "strace")
        env = dict(os.environ, LD_PRELOAD=LIB, SHMTRACE_LOG=os.path.join(logdir, "log.%p"),
                   SHMTRACE_FORMAT=fmt)
        r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=openat,fcntl,ftruncate",
                            "-o", trace, exe], env=env, capture_output=True, text=True,
                           timeout=60)
        calls = {}
        for line in read(trace).splitlines():
            pid, _, rest = line.partition(" ")
            calls.setdefault(pid, []).append(rest.strip())
        # The first process in the trace is the scenario's; the other one is its child.
        pids = list(calls)
        child = calls[pids[1]] if len(pids) == 2 else []
        maps = [c for c in child if '"/proc/self/maps"' in c]
        pagemap = [c for c in child if "/proc/self/pagemap" in c]
        check(r.returncode == 0 and len(pids) == 2 and len(maps) == 1 and not pagemap,
              f"{what} ({fmt}): its exit report reads /proc/self/maps once, scans nothing",
              f"exit {r.returncode}; {len(pids)} processes; maps {len(maps)}, "
              f"pagemap {len(pagemap)}")
        if fmt == "json":
            locks = [c for c in child if "F_SETLKW" in c or c.startswith("ftruncate")]
            check(len(pids) == 2 and not locks,
                  f"{what} ({fmt}): its records written with no lock, nothing given back",
                  f"{locks[:3]}")


def run_scenario(name, tmp, have_linked, have_lib):
    if name == "api":
        return run_api(tmp, have_linked)
    native = run(f"{name} native", binary(name, "plain"), tmp=tmp)
    check_exit(f"{name} native", native)
    check(native.stderr == "", f"{name} native: nothing on stderr", native.stderr[:200])
    modes = []
    if have_linked:
        modes.append(("linked", binary(name, "linked"), False))
    if have_lib:
        modes.append(("preload", binary(name, "plain"), True))
    for mode, exe, preload in modes:
        what = f"{name} {mode}"
        # default configuration: text on stderr
        r = run(what, exe, preload=preload, tmp=tmp)
        check_exit(what, r)
        check(r.stdout == native.stdout, f"{what}: stdout identical to the native run",
              diff(native.stdout, r.stdout))
        recs, r.pairs = check_text_log(what, r)
        if r.rc == 0:  # else the scenario stopped early: already reported
            check_decoding(what, name, r.journal, r.pairs, "text")
        # JSON Lines into a file
        log = os.path.join(tmp, f"{name}.{mode}.jsonl")
        r = run(f"{what} json", exe, preload=preload, tmp=tmp,
                env={"SHMTRACE_FORMAT": "json", "SHMTRACE_LOG": log})
        check_exit(f"{what} json", r)
        check(r.stdout == native.stdout, f"{what} json: stdout identical to the native run",
              diff(native.stdout, r.stdout))
        check(r.stderr == "", f"{what} json: nothing on stderr when logging to a file",
              r.stderr[:200])
        text = read(log)
        recs, r.pairs = check_json_log(what, r, text)
        if r.rc == 0:
            check_decoding(what, name, r.journal, r.pairs, "json")
            check_processes(f"{what} json", r, recs, name)
            if name == "block":
                check_block(f"{what} json", r, recs)
        if name.startswith("mmap"):
            fns = {x.fn for x in recs} & {"mmap", "mmap64"}
            want = {"mmap64"} if name == "mmap64" else {"mmap"}
            check(fns == want, f"{what} json: mmap calls logged as {want.pop()}", str(fns))
        if name == "early":
            check_init_order(what, exe, preload, tmp)


def run_api(tmp, have_linked):
    if not check(have_linked, "api: api.linked was built"):
        return
    r = run("api linked", binary("api", "linked"), tmp=tmp)
    check_exit("api linked", r)
    version = cargo_version()
    check(r.stdout.startswith(f"shmtrace_version() = {version}\n"),
          f"api: shmtrace_version() is the crate version {version}", r.stdout[:200])
    log = os.path.join(tmp, "api.jsonl")
    r = run("api json", binary("api", "linked"), tmp=tmp,
            env={"SHMTRACE_FORMAT": "json", "SHMTRACE_LOG": log})
    check_exit("api json", r)
    events = [json.loads(line).get("event") for line in read(log).splitlines()]
    check(events == ["start", "report"],
          "api: the C API itself logs no call (only the start record and the exit report)",
          read(log)[:200])


def check_init_order(what, exe, preload, tmp):
    """libearly's constructor must run before the shim's (the point of the scenario)."""
    r = run(f"{what} LD_DEBUG", exe, preload=preload, tmp=tmp,
            env={"LD_DEBUG": "files", "SHMTRACE_LOG": "off"})
    inits = re.findall(r"calling init: (\S+)", r.stderr)
    early = [i for i, p in enumerate(inits) if p.endswith("/libearly.so")]
    shim = [i for i, p in enumerate(inits) if p.endswith("/libshmtrace.so")]
    check(early and (not shim or early[0] < shim[0]),
          f"{what}: libearly is initialized before libshmtrace", " -> ".join(inits))


def cargo_version():
    with open(os.path.join(ROOT, "Cargo.toml")) as f:
        return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def diff(a, b):
    al, bl = a.splitlines(), b.splitlines()
    for i in range(max(len(al), len(bl))):
        x = al[i] if i < len(al) else "<end>"
        y = bl[i] if i < len(bl) else "<end>"
        if x != y:
            return f"line {i + 1}: native {x!r}, here {y!r}"
    return ""


# ---- configuration ---------------------------------------------------------------------

def check_config(tmp, have_linked, have_lib):
    modes = []
    if have_linked:
        modes.append(("linked", "linked", False))
    if have_lib:
        modes.append(("preload", "plain", True))
    native = {name: run(f"config {name} native", binary(name, "plain"), tmp=tmp).stdout
              for name in ("shm", "fork", "exec")}

    for mode, kind, preload in modes:
        def config_run(label, name, env):
            """Runs scenario `name` with env; it must still work and print the same stdout."""
            w = f"config {mode} {label}"
            r = run(w, binary(name, kind), preload, env, tmp=tmp)
            check_exit(w, r)
            check(r.stdout == native[name], f"{w}: stdout identical to the native run",
                  diff(native[name], r.stdout))
            return w, r

        w, r = config_run("SHMTRACE_LOG=off", "shm", {"SHMTRACE_LOG": "off"})
        check(r.stderr == "", f"{w}: nothing on stderr", r.stderr[:200])
        if preload:
            exit_report_reads(binary("shm", kind), tmp)
            forked_child_log_cost(binary("fork", kind), tmp)

        for var, value in (("SHMTRACE_FORMAT", "bogus"), ("SHMTRACE_LOG", "/nonexistent/dir/x")):
            w, r = config_run(f"{var}={value}", "shm", {var: value})
            lines = r.stderr.splitlines()
            warnings = [line for line in lines if line.startswith(WARNING)]
            check(len(warnings) == 1, f"{w}: exactly one '{WARNING}' line on stderr",
                  f"{len(warnings)}: {warnings[:3]}")
            check_text_log(f"{w} (text on stderr)", r,
                           [line for line in lines if not line.startswith(WARNING)])

        w, r = config_run("SHMTRACE_LOG=stderr SHMTRACE_FORMAT=json", "shm",
                          {"SHMTRACE_LOG": "stderr", "SHMTRACE_FORMAT": "json"})
        check_json_log(w, r, r.stderr)

        log = os.path.join(tmp, f"append.{mode}.log")
        with open(log, "w") as f:
            f.write("an earlier line\n")
        w, r = config_run("SHMTRACE_LOG=file SHMTRACE_FORMAT=text", "shm",
                          {"SHMTRACE_LOG": log, "SHMTRACE_FORMAT": "text"})
        lines = read(log).splitlines()
        check(lines[:1] == ["an earlier line"], f"{w}: the log file is appended to",
              f"first line {lines[:1]}")
        check(r.stderr == "", f"{w}: nothing on stderr", r.stderr[:200])
        check_text_log(w, r, lines[1:])

        for name in ("fork", "exec"):
            logdir = tempfile.mkdtemp(prefix=f"perpid.{mode}.{name}.", dir=tmp)
            w, r = config_run(f"{name} SHMTRACE_LOG=.../log.%p", name,
                              {"SHMTRACE_LOG": os.path.join(logdir, "log.%p"),
                               "SHMTRACE_FORMAT": "json"})
            pids = r.journal.pids()
            files = sorted(os.listdir(logdir))
            check(files == sorted(f"log.{p}" for p in pids), f"{w}: one file per process",
                  f"files {files}, pids {pids}")
            problems = []
            for p in pids:
                recs, bad = parse_json_log(read(os.path.join(logdir, f"log.{p}")), r.t0, r.t1)
                want = [e.key() for e in r.journal.entries if e.pid == p]
                if bad or [x.key() for x in recs] != want or {x.pid for x in recs} != {p}:
                    problems.append(f"log.{p}: {len(recs)} records, {len(want)} expected; "
                                    f"{first(bad, 1)}")
            check(not problems, f"{w}: each file holds exactly its process's calls"
                  + (" (before and after exec)" if name == "exec" else ""), first(problems))


# ---- main ------------------------------------------------------------------------------

def build(make_vars):
    """make -C c_tests; returns (linked builds available, library available)."""
    have_lib = os.path.exists(LIB)
    full = subprocess.run(["make", "-C", HERE, *make_vars, "all"], capture_output=True,
                          text=True)
    if check(full.returncode == 0, "make -C c_tests (all builds, -Wall -Wextra -Werror)",
             full.stderr.strip()[-600:]):
        return True, have_lib
    plain = subprocess.run(["make", "-C", HERE, *make_vars, "plain"], capture_output=True,
                           text=True)
    if not check(plain.returncode == 0, "make -C c_tests plain", plain.stderr.strip()[-600:]):
        sys.exit(testlib.summary())
    return False, have_lib


def check_nm():
    if testlib.missing("nm"):
        return testlib.skip("nm -u on mmap64.*", "nm not installed (Debian: binutils)", 2)
    for kind in ("plain", "linked"):
        exe = binary("mmap64", kind)
        if not os.path.exists(exe):
            continue
        out = subprocess.run(["nm", "-u", exe], capture_output=True, text=True).stdout
        syms = {line.split()[-1].split("@")[0] for line in out.splitlines()}
        check("mmap64" in syms and "mmap" not in syms,
              f"mmap64.{kind}: references mmap64, not mmap (nm -u)",
              str(sorted(s for s in syms if s.startswith("mmap"))))


def check_exports():
    """The library exports exactly the hooks the header lists and the shmtrace_* API, nothing
    else."""
    if not os.path.exists(LIB):
        return
    if testlib.missing("nm"):
        return testlib.skip("libshmtrace.so's exports", "nm not installed (Debian: binutils)", 2)
    hooks = set(testlib.hooks())
    out = subprocess.run(["nm", "-D", "--defined-only", LIB], capture_output=True,
                         text=True).stdout
    funcs = {line.split()[-1] for line in out.splitlines() if line.split()[1:2] == ["T"]}
    check(hooks <= funcs, f"libshmtrace.so exports all {len(hooks)} hooks (nm -D --defined-only)",
          str(sorted(hooks - funcs)))
    # _exit/_Exit are hooked so that a process ending that way still writes its report, exit
    # to note where the program's frames end (roots of the report's pointer scan), and vfork
    # so that a vfork child never updates its parent's ledger.
    extra = {f for f in funcs - hooks - {"_exit", "_Exit", "exit", "vfork"}
             if not f.startswith("shmtrace_")}
    check(not extra, "libshmtrace.so exports no other function", str(sorted(extra)))


def sysv_exists(kind, ident):
    with open(f"/proc/sysvipc/{kind}") as f:
        return any(line.split()[1:2] == [str(ident)] for line in f.readlines()[1:])


def check_verdict(tmp):
    """The exit report against the kernel, and SHMTRACE_EXITCODE, on the bundled examples."""
    top = os.path.dirname(HERE)
    build = subprocess.run(["make", "-C", top, os.path.join(top, "build", "leaky"),
                            os.path.join(top, "build", "demo")],
                           capture_output=True, text=True)
    if not check(build.returncode == 0, "examples build", build.stderr[-400:]):
        return
    env = dict(os.environ, LD_PRELOAD=LIB, SHMTRACE_EXITCODE="3", SHMTRACE_FORMAT="json")
    log = os.path.join(tmp, "leaky.jsonl")
    r = subprocess.run([os.path.join(top, "build", "leaky")], capture_output=True, text=True,
                       env=dict(env, SHMTRACE_LOG=log), timeout=20)
    m = re.search(r"created segment (\d+) and semaphore set (\d+)", r.stdout)
    try:
        check(r.returncode == 3, "leaky: SHMTRACE_EXITCODE=3 makes a leaking run exit 3",
              f"status {r.returncode}")
        reports = [json.loads(l) for l in read(log).splitlines() if '"event":"report"' in l]
        rep = reports[0] if len(reports) == 1 else {}
        check(m and rep.get("clean") is False
              and [s["shmid"] for s in rep["segments"]] == [int(m[1])]
              and [s["semid"] for s in rep["semaphores"]] == [int(m[2])]
              and [(a["shmid"], a["size"]) for a in rep["attachments"]] == [(int(m[1]), 65536)]
              and [(x["count"], x["bytes"]) for x in rep["mappings"]] == [(1, 1 << 20)],
              "leaky: the report names exactly the segment, set, attachment and mapping leaked",
              str(rep)[:300])
        check(m and sysv_exists("shm", m[1]) and sysv_exists("sem", m[2]),
              "leaky: the kernel agrees the reported segment and set outlived the process")
    finally:
        if m:
            subprocess.run(["ipcrm", "-m", m[1], "-s", m[2]], capture_output=True)
    log = os.path.join(tmp, "demo.jsonl")
    r = subprocess.run([os.path.join(top, "build", "demo")], capture_output=True, text=True,
                       env=dict(env, SHMTRACE_LOG=log), timeout=20)
    reports = [json.loads(l) for l in read(log).splitlines() if '"event":"report"' in l]
    check(r.returncode == 0 and [x["clean"] for x in reports] == [True],
          "demo: a clean run reports clean and keeps exit status 0 despite SHMTRACE_EXITCODE",
          f"status {r.returncode}, reports {reports}")


# ---- the ledger against the kernel (ledger_*.c) ---------------------------------------
#
# Each ledger_* program checks, in the same run, the ledger (through the C API) against the
# kernel's view, printing `FAIL ...` for each disagreement; ledger_exit leaks on purpose.
# Every case runs alone, in both log formats, with SHMTRACE_EXITCODE set: here we check its
# verdict, that every process's exit report says what the kernel says, and the exit status.

LEDGER_PROGRAMS = ["ledger_map", "ledger_shm", "ledger_sysv", "ledger_fork"]
LEDGER_EXIT_MODES = ["return", "exit", "_exit", "_Exit"]
LEDGER_STATUS = 9  # SHMTRACE_EXITCODE of the ledger runs
REPORT_ENTRY = {  # text report entry lines: what they name
    "segments": re.compile(r"\] +segment +shmid=(\d+) "),
    "semaphores": re.compile(r"\] +semaphore set +semid=(\d+) "),
    "attachments": re.compile(r"\] +shmid=(\d+) addr="),
    "mappings": re.compile(r"\] +0x[0-9a-f]+: (\d+) mappings?, \d+ bytes"),
}


def ledger_reports(text, fmt):
    """{pid: [report, ...]} for every process that has a start or fork record (a vfork child has
    neither: it runs in its parent's memory and writes no report). A report is
    {"clean", "leaks", "segments": [shmid], "semaphores": [semid], "attachments": [shmid],
    "mappings": [count per call site]}; "leaks" is the text header's count (None in JSON)."""
    reports, current = {}, None
    for line in text.splitlines():
        if not line.strip(" "):
            continue  # padding of a log file written in place
        if fmt == "json":
            obj = json.loads(line)
            if obj["event"] in ("start", "fork", "report"):
                rep = reports.setdefault(obj["pid"], [])
            if obj["event"] == "report":
                rep.append({"clean": obj["clean"], "leaks": None,
                            "segments": [x["shmid"] for x in obj["segments"]],
                            "semaphores": [x["semid"] for x in obj["semaphores"]],
                            "attachments": [x["shmid"] for x in obj["attachments"]],
                            "mappings": [x["count"] for x in obj["mappings"]]})
            continue
        start = TEXT_START.match(line)
        if start:
            reports.setdefault(int(line.split("]")[0].split("[")[1]), [])
            continue
        head, call, body = (p.match(line) for p in (TEXT_REPORT_HEAD, TEXT_LINE,
                                                      TEXT_REPORT_BODY))
        if not (head or call or body):
            current = None
            continue
        pid = int((head or call or body)["pid"])
        if head:
            verdict = head["verdict"]
            current = (pid, {"clean": verdict == "clean", "segments": [], "semaphores": [],
                             "attachments": [], "mappings": [],
                             "leaks": 0 if verdict == "clean" else int(verdict.split()[0])})
            reports.setdefault(pid, []).append(current[1])
        elif call or not current or current[0] != pid:
            current = None
        else:  # a line of the report `current` began
            for key, pattern in REPORT_ENTRY.items():
                m = pattern.search(line)
                if m:
                    current[1][key].append(int(m[1]))
    return reports


def ledger_run(tmp, what, prog, arg, fmt, status=LEDGER_STATUS, leaks=False):
    """Runs `prog.linked arg` with a log file in format fmt; returns (run, reports)."""
    fd, log = tempfile.mkstemp(prefix=f"{prog}.{arg}.", suffix=f".{fmt}", dir=tmp)
    os.close(fd)
    env = {"SHMTRACE_LOG": log, "SHMTRACE_FORMAT": fmt}
    if status:
        env["SHMTRACE_EXITCODE"] = str(status)
    r = run(what, binary(prog, "linked"), env=env, tmp=tmp, args=[arg], leaks=leaks)
    r.fails = [l for l in (r.stdout + r.stderr).splitlines()
               if l.startswith("FAIL") or "CHECK failed" in l]
    try:
        return r, ledger_reports(read(log), fmt)
    except (ValueError, KeyError, TypeError) as e:
        check(False, f"{what}: the log parses", f"{e!r}: {read(log)[:300]}")
        return r, {}


def check_ledger_case(tmp, prog, case, fmt):
    what = f"{prog} {case} ({fmt})"
    r, reports = ledger_run(tmp, what, prog, case, fmt)
    check(r.rc == 0 and not r.fails, f"{what}: the ledger agrees with the kernel",
          f"exit status {r.rc}; " + first(r.fails or r.stderr.splitlines()[-3:]))
    bad = [f"pid {pid}: {reps}" for pid, reps in reports.items()
           if len(reps) != 1 or not reps[0]["clean"]]
    check(reports and not bad, f"{what}: every process writes one exit report, clean",
          first(bad) if bad else "no report")


def check_ledger_case_unlogged(tmp, prog, case):
    """The same case with nothing logged: the mapping calls take their path without an event
    (hooks/mapping.rs; `shmtrace_pause` read from one word there), the kernel still the
    oracle of the ledger the program reads through the C API."""
    what = f"{prog} {case} (log off)"
    env = {"SHMTRACE_LOG": "off", "SHMTRACE_EXITCODE": str(LEDGER_STATUS)}
    r = run(what, binary(prog, "linked"), env=env, tmp=tmp, args=[case])
    fails = [l for l in (r.stdout + r.stderr).splitlines()
             if l.startswith("FAIL") or "CHECK failed" in l]
    check(r.rc == 0 and not fails, f"{what}: the ledger agrees with the kernel",
          f"exit status {r.rc}; " + first(fails or r.stderr.splitlines()[-3:]))


def check_ledger_exit(tmp, mode, fmt, status=LEDGER_STATUS):
    what = f"ledger_exit {mode} ({fmt}{', no SHMTRACE_EXITCODE' if not status else ''})"
    r, reports = ledger_run(tmp, what, "ledger_exit", mode, fmt, status, leaks=True)
    check(not r.fails, f"{what}: in-process checks pass", first(r.fails))
    reps = [rep for reps in reports.values() for rep in reps]
    rep = reps[0] if len(reports) == 1 and len(reps) == 1 else None
    if mode == "clean":
        check(r.rc == 0 and rep and rep["clean"] and not r.leftovers,
              f"{what}: a clean run reports clean and exits 0 despite SHMTRACE_EXITCODE",
              f"exit status {r.rc}, reports {reports}, left {r.leftovers}")
        return
    want = status or 0
    check(r.rc == want, f"{what}: a leaking run ending by {mode} exits {want}",
          f"exit status {r.rc}")
    m = re.search(r"^leaking shm (\d+) sem (\d+)$", r.stdout, re.M)
    shm, sem = (int(m[1]), int(m[2])) if m else (None, None)
    check(m and rep and rep["clean"] is False and rep["segments"] == [shm]
          and rep["semaphores"] == [sem] and not rep["attachments"] and not rep["mappings"]
          and rep["leaks"] in (None, 2),
          f"{what}: the report names exactly the leaked segment and semaphore set",
          f"leaked {shm} and {sem}; reports {reports}")
    check(m and {("shm", shm), ("sem", sem)} <= set(r.leftovers),
          f"{what}: /proc/sysvipc still lists them after exit (removed now)",
          f"left {r.leftovers}")


def check_ledger(tmp):
    """Every ledger_* case, alone, in both formats; then the exit reports of ledger_exit."""
    for prog in LEDGER_PROGRAMS:
        listing = subprocess.run([binary(prog, "linked"), "--list"], capture_output=True,
                                 text=True, env=dict(os.environ, SHMTRACE_LOG="off"))
        cases = listing.stdout.split()
        if not check(listing.returncode == 0 and cases, f"{prog} --list names its cases",
                     listing.stderr[-200:]):
            continue
        for case in cases:
            for fmt in ("text", "json"):
                check_ledger_case(tmp, prog, case, fmt)
            check_ledger_case_unlogged(tmp, prog, case)
    for fmt in ("text", "json"):
        for mode in LEDGER_EXIT_MODES + ["clean"]:
            check_ledger_exit(tmp, mode, fmt)
    check_ledger_exit(tmp, "return", "json", status=0)


def main():
    global BUILD, LIB
    known = SCENARIOS + ["config", "ledger"]
    opts = testlib.parse_args(__doc__, "c_tests", known)
    BUILD, LIB, make_vars = opts.build, testlib.LIB, opts.make_vars
    names = SCENARIOS if opts.names == known else opts.names
    testlib.isolate_ipc()
    start = time.time()
    have_linked, have_lib = build(make_vars)
    check(have_lib, f"{LIB} exists")
    hooks = set(testlib.hooks())
    check(set(ARG_KEYS) == hooks, "run.py knows the arguments of exactly the header's hooks",
          str(sorted(set(ARG_KEYS) ^ hooks)))
    check_nm()
    check_exports()
    with tempfile.TemporaryDirectory(prefix="shmtrace-c-tests.") as tmp:
        for name in names:
            if name in ("config", "ledger"):
                continue
            before = testlib.failed
            try:
                run_scenario(name, tmp, have_linked, have_lib)
            except Exception:  # a bug here, or output too broken to analyse
                check(False, f"{name}: run.py crashed", traceback.format_exc())
            print(f"-- {name}: {'ok' if testlib.failed == before else 'FAILED'}")
        if "config" in names or names == SCENARIOS:
            before = testlib.failed
            check_config(tmp, have_linked, have_lib)
            print(f"-- config: {'ok' if testlib.failed == before else 'FAILED'}")
        if names == SCENARIOS and have_lib:
            before = testlib.failed
            check_verdict(tmp)
            print(f"-- verdict: {'ok' if testlib.failed == before else 'FAILED'}")
        if ("ledger" in names or names == SCENARIOS) and check(have_linked,
                                                               "ledger_*.linked built"):
            before = testlib.failed
            check_ledger(tmp)
            print(f"-- ledger: {'ok' if testlib.failed == before else 'FAILED'}")
    if testlib.verbose:
        print(f"({time.time() - start:.1f} s)")
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

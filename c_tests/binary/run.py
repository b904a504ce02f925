#!/usr/bin/env python3
"""The binary log (SHMTRACE_FORMAT=binary): durable, complete, decodable.

    python3 c_tests/binary/run.py [-v] [GROUP ...]

GROUPs (default: all), each running build/binary/binlog (binlog.c) under the shim:

  kill     SIGKILL at random moments of a busy mmap/munmap loop, and while blocked in a semop:
           `shmtrace decode` shows every call the program counted as returned (its count is in
           a shared mapping, so it survives the kill) and at most one more, in program order,
           and the call in progress as started (an enter record), the blocked semop always,
           with the operation it waits with. Text and JSON log files, written in place the same
           way, likewise hold every returned call after a SIGKILL, no NUL byte, and parse line
           by line (lines of spaces are padding; at most the last record is cut).
  threads  8 threads: each thread's calls are all there, once, in its order (each munmap
           follows the mmap it undoes).
  fork     children with a per-pid log (%p) each get a complete log of their own (fork record,
           every call, exit report); without %p all processes share one file, each complete;
           `shmtrace report` reads the binary logs of a directory; unrelated processes
           appending to one file at the same time each find all their records there. So do
           processes of 4 threads each sharing one text or JSON log file written in place: no
           line torn or interleaved, no NUL byte; a single such process leaves no blank line.
  exec     an exec'd image continues its process's log (two start records, all calls).
  disk     a log on a 256 KiB tmpfs that fills up: the program's stdout and exit status are
           as without the shim, stderr has exactly one warning line, and the log decodes to
           what fitted (skipped when tmpfs cannot be mounted, e.g. not root).
  config   SHMTRACE_FORMAT=binary without a file, or with a file that is not a binary log, or
           that cannot be created: exactly one warning line, text records on stderr, and a
           pre-existing file left untouched.
  decode   a decoded binary log has the same records as a text log of the same program
           (pids, times and addresses aside); a call's time and duration, counted in the
           log's clock (TSC ticks where reliable) and converted when decoded, lie within what
           the program measured around it with the wall clock (to a millisecond).

Prints `FAIL ...` for every failed check and ends with `N passed, M failed, K skipped`;
exits 1 if anything failed. Every semaphore set a program creates is removed by its id
afterwards; as root the suite runs in a private IPC namespace.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testlib  # noqa: E402
from testlib import check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build", "binary")
LIB = testlib.LIB
CLI = testlib.COMMAND
PROG = os.path.join(BUILD, "binlog")
PAGE = 4096
LEN_BUSY = 3 * PAGE
PAIRS = 100
GROUPS = ["kill", "threads", "fork", "exec", "disk", "config", "decode"]
WARNING = "shmtrace: warning:"

def build():
    os.makedirs(BUILD, exist_ok=True)
    r = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-O2", "-g", "-pthread", "-o", PROG,
                        os.path.join(HERE, "binlog.c")], capture_output=True, text=True)
    return check(r.returncode == 0, "binlog.c builds (-Wall -Wextra -Werror)", r.stderr[-1500:])


def env(log, fmt="binary", preload=True):
    e = testlib.clean_env(preload)
    if log is not None:
        e["SHMTRACE_LOG"] = log
    if fmt is not None:
        e["SHMTRACE_FORMAT"] = fmt
    return e


def decode(path, fmt="json"):
    """The decoded records (dicts for JSON, lines for text) and decode's stderr."""
    out = subprocess.run([CLI, "decode", "--format", fmt, path], capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"decode {path}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    return ([json.loads(l) for l in lines] if fmt == "json" else lines), out.stderr


def calls(records, length=None):
    """Call and enter records of mmap/munmap of `length` bytes (all calls if None)."""
    picked = []
    for r in records:
        if r["event"] not in ("call", "enter"):
            continue
        if length is not None and r["args"].get("length") != length:
            continue
        picked.append(r)
    return picked


def only_file(d, prefix):
    found = [f for f in os.listdir(d) if f.startswith(prefix)]
    if len(found) != 1:
        raise RuntimeError(f"expected one {prefix}* log in {d}, found {found}")
    return os.path.join(d, found[0])


def read_counter(path):
    try:
        with open(path, "rb") as f:
            return int.from_bytes(f.read(8), sys.byteorder)
    except (FileNotFoundError, ValueError):
        return 0


def in_program_order(recs, what):
    """mmap then munmap of what it returned, alternately; the last may be in progress."""
    problems = []
    last_addr = None
    for i, r in enumerate(recs):
        want = "mmap" if i % 2 == 0 else "munmap"
        if r["fn"] != want:
            problems.append(f"#{i} is {r['fn']}, expected {want}")
            break
        if r["event"] == "enter" and i != len(recs) - 1:
            problems.append(f"#{i} in progress but not last")
        if want == "mmap":
            last_addr = r.get("ret")
        elif r["args"]["addr"] != last_addr:
            problems.append(f"#{i} munmap({r['args']['addr']}) after mmap = {last_addr}")
            break
    return check(not problems, f"{what}: calls in program order", "; ".join(problems[:3]))


# ---- kill ------------------------------------------------------------------------------

def busy_then_killed(log, count, fmt, most):
    """Runs `binlog busy` until it counted a random number of calls (up to `most`), then a
    little more, and SIGKILLs it; (pid, threshold, calls it counted as returned)."""
    p = subprocess.Popen([PROG, "busy", count], env=env(log, fmt))
    threshold = random.randint(1_000, most)
    deadline = time.time() + 10
    while read_counter(count) < threshold and time.time() < deadline and p.poll() is None:
        time.sleep(0.001)
    time.sleep(random.random() * 0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return p.pid, threshold, read_counter(count)


def kill_busy(tmp, trial):
    log = os.path.join(tmp, f"busy{trial}.%p.bin")
    pid, threshold, counted = busy_then_killed(log, os.path.join(tmp, f"busy{trial}.count"),
                                               "binary", 60_000)
    records, _ = decode(log.replace("%p", str(pid)))
    recs = calls(records, LEN_BUSY)
    returned = sum(1 for r in recs if r["event"] == "call")
    started = sum(1 for r in recs if r["event"] == "enter")
    what = f"kill busy #{trial} ({counted} calls counted)"
    check(counted >= threshold, f"{what}: the program ran", f"counted {counted}")
    check(counted <= returned <= counted + 1, f"{what}: every returned call is in the log",
          f"{returned} returned calls in the log")
    check(started <= 1, f"{what}: at most one call in progress", f"{started}")
    in_program_order(recs, what)


def kill_busy_lines(tmp, fmt, trial):
    """A text or JSON log file is written in place too: after a SIGKILL at a random moment it
    holds every call the program counted as returned, reads as plain text (no NUL byte), and
    every line but padding (spaces) and at most the record cut by the kill parses."""
    log = os.path.join(tmp, f"busy{trial}.{fmt}.%p.log")
    pid, threshold, counted = busy_then_killed(
        log, os.path.join(tmp, f"busy{trial}.{fmt}.count"), fmt, 30_000)
    with open(log.replace("%p", str(pid)), "rb") as f:
        data = f.read()
    what = f"kill busy {fmt} #{trial} ({counted} calls counted)"
    check(b"\0" not in data, f"{what}: the log holds no NUL byte")
    lines = [l for l in data.decode().split("\n") if l.strip(" ")]
    records, bad = [], []
    for n, line in enumerate(lines):
        if fmt == "json":
            try:
                records.append(json.loads(line))
                continue
            except ValueError:
                pass
        else:
            m = re.match(r"shmtrace\[\d+\] \d+\.\d{6} (mmap|munmap)\((NULL|0x[0-9a-f]+), "
                         r"(\d+)(?:, .*)?\) = (0x[0-9a-f]+|0) <\d+\.\d{6}> caller=0x[0-9a-f]+$", line)
            if m or not line.startswith("shmtrace[") or " start: " in line:
                if m:
                    records.append({"event": "call", "fn": m[1], "ret": m[4],
                                    "args": {"addr": None if m[2] == "NULL" else m[2],
                                             "length": int(m[3])}})
                continue
        bad.append((n, line))
    check(not bad or (len(bad) == 1 and bad[0][0] == len(lines) - 1),
          f"{what}: every line parses but padding and the record cut by the kill (the last)",
          repr(bad[:2])[:300])
    recs = calls(records, LEN_BUSY)
    check(counted >= threshold, f"{what}: the program ran", f"counted {counted}")
    check(counted <= len(recs) <= counted + 1, f"{what}: every returned call is in the log",
          f"{len(recs)} calls in the log")
    in_program_order(recs, what)


def kill_block(tmp):
    log = os.path.join(tmp, "block.%p.bin")
    count = os.path.join(tmp, "block.count")
    p = subprocess.Popen([PROG, "block", count], env=env(log), stdout=subprocess.PIPE, text=True)
    semid = None
    try:
        line = p.stdout.readline()
        m = re.match(r"semid (\d+)", line)
        semid = int(m.group(1)) if m else None
        deadline = time.time() + 10
        while read_counter(count) < 2 * PAIRS and time.time() < deadline:
            time.sleep(0.01)
        # Let it reach the semop that waits forever.
        time.sleep(0.3)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        if semid is not None:
            subprocess.run(["ipcrm", "-s", str(semid)], capture_output=True)
    check(semid is not None, "kill block: the program made its semaphore set")
    counted = read_counter(count)
    records, _ = decode(log.replace("%p", str(p.pid)))
    semops = [r for r in records if r.get("fn") == "semop"]
    returned = [r for r in semops if r["event"] == "call"]
    entered = [r for r in semops if r["event"] == "enter"]
    check(counted == 2 * PAIRS, "kill block: the program made every P/V", f"{counted}")
    check(len(returned) == counted and all(r["ret"] == 0 for r in returned),
          "kill block: every returned semop is in the log", f"{len(returned)} of {counted}")
    # The P/V pairs never wait, so only the semop that waits forever is logged as started,
    # with the operation it waits with (the kernel read it before the wait).
    check(len(entered) == 1, "kill block: one enter record, the waiting semop's",
          f"{len(entered)}")
    check(bool(semops) and semops[-1]["event"] == "enter"
          and semops[-1]["args"]["semid"] == semid
          and semops[-1]["args"]["sops"] == [{"sem_num": 1, "sem_op": -1, "sem_flg": "0"}],
          "kill block: the blocked semop is the last record, as started, with its operation",
          json.dumps(semops[-1]) if semops else "no semop")


# ---- threads, fork, exec ---------------------------------------------------------------

def threads(tmp):
    n, per = 8, 3000
    log = os.path.join(tmp, "threads.%p.bin")
    p = subprocess.run([PROG, "threads", str(n), str(per)], env=env(log), timeout=120,
                       capture_output=True, text=True)
    check(p.returncode == 0 and p.stderr == "", "threads: ran cleanly", p.stderr[-300:])
    paths = [f for f in os.listdir(tmp) if f.startswith("threads.")]
    check(len(paths) == 1, "threads: one log for the process", str(paths))
    records, notes = decode(os.path.join(tmp, paths[0]))
    check(notes == "", "threads: decode notes nothing", notes)
    for t in range(n):
        recs = calls(records, (16 + t) * PAGE)
        tids = {r["tid"] for r in recs}
        check(len(recs) == 2 * per and all(r["event"] == "call" for r in recs) and len(tids) == 1,
              f"threads: thread {t} has all its {2 * per} calls, once",
              f"{len(recs)} records, tids {sorted(tids)}")
        in_program_order(recs, f"threads: thread {t}")


def per_process_complete(records, pid, length, per, what, forked):
    mine = [r for r in records if r.get("pid") == pid]
    kinds = [r["event"] for r in mine]
    check(kinds[:1] == (["fork"] if forked else ["start"]) and kinds[-1:] == ["report"],
          f"{what}: opens with its {'fork' if forked else 'start'} record, ends with its report",
          f"{kinds[:2]} ... {kinds[-2:]}")
    recs = calls(mine, length)
    check(len(recs) == 2 * per and all(r["event"] == "call" for r in recs),
          f"{what}: all {2 * per} calls", f"{len(recs)}")
    in_program_order(recs, what)


def fork(tmp):
    n, per = 3, 500
    for shared in (False, True):
        d = os.path.join(tmp, "fork-shared" if shared else "fork")
        os.mkdir(d)
        log = os.path.join(d, "all.bin" if shared else "%p.bin")
        p = subprocess.run([PROG, "fork", str(n), str(per)], env=env(log), timeout=60,
                           capture_output=True, text=True)
        label = "fork (one shared file)" if shared else "fork (%p)"
        check(p.returncode == 0 and p.stderr == "", f"{label}: ran cleanly", p.stderr[-300:])
        files = sorted(os.listdir(d))
        check(len(files) == (1 if shared else n + 1), f"{label}: log files", str(files))
        records = []
        for f in files:
            recs, notes = decode(os.path.join(d, f))
            check(notes == "", f"{label}: {f} decodes without notes", notes)
            records += recs
        pids = sorted({r["pid"] for r in records})
        check(len(pids) == n + 1, f"{label}: {n + 1} processes", str(pids))
        parent = min(pids, key=lambda pid: [r["event"] for r in records
                                            if r.get("pid") == pid][0] != "start")
        per_process_complete(records, parent, 31 * PAGE, per, f"{label}: parent", False)
        children = sorted(pid for pid in pids if pid != parent)
        for c, pid in enumerate(children):
            per_process_complete(records, pid, (32 + c) * PAGE, per, f"{label}: child {c}", True)
        if not shared:
            rep = subprocess.run([CLI, "report", d], capture_output=True, text=True, timeout=60)
            check(rep.returncode == 0 and "clean" in rep.stdout,
                  "fork: shmtrace report reads the binary logs", (rep.stdout + rep.stderr)[-300:])


def concurrent(tmp):
    """Unrelated processes appending to one file at once: the cursor in the file's header is
    shared memory, so their records never overlap."""
    procs, n, per = 4, 4, 1500
    log = os.path.join(tmp, "concurrent.bin")
    running = [subprocess.Popen([PROG, "threads", str(n), str(per)], env=env(log),
                                stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    for p in running:
        _, err = p.communicate(timeout=120)
        check(p.returncode == 0 and err == "", "concurrent: a process ran cleanly", err[-300:])
    records, notes = decode(log)
    check(notes == "", "concurrent: decode notes nothing", notes)
    for p in running:
        mine = [r for r in records if r.get("pid") == p.pid]
        check([r["event"] for r in mine][:1] == ["start"] and mine[-1]["event"] == "report",
              f"concurrent: process {p.pid} has its start and report records")
        for t in range(n):
            recs = calls(mine, (16 + t) * PAGE)
            check(len(recs) == 2 * per and all(r["event"] == "call" for r in recs),
                  f"concurrent: process {p.pid} thread {t} has all its calls", f"{len(recs)}")
            in_program_order(recs, f"concurrent: process {p.pid} thread {t}")


TEXT_CALL = re.compile(r"shmtrace\[(\d+)(?::\d+)?\] \d+\.\d{6} (mmap|munmap)\((NULL|0x[0-9a-f]+), (\d+)"
                       r"(?:, .*)?\) = (0x[0-9a-f]+|0) <\d+\.\d{6}> caller=0x[0-9a-f]+$")


def log_lines(path, fmt, what):
    """A text or JSON log file's records as dicts (pid, event, fn, args, ret), checking that it
    holds no NUL byte and that every line but padding (spaces) is one whole record; and the
    number of lines of padding."""
    with open(path, "rb") as f:
        data = f.read()
    check(b"\0" not in data, f"{what}: the log holds no NUL byte")
    check(data.endswith(b"\n"), f"{what}: the log ends with a newline")
    records, bad, blank = [], [], 0
    for line in data.decode().split("\n")[:-1]:
        if not line.strip(" "):
            blank += 1
            continue
        if fmt == "json":
            try:
                records.append(json.loads(line))
            except ValueError:
                bad.append(line)
            continue
        m = TEXT_CALL.match(line)
        if m:
            records.append({"pid": int(m[1]), "event": "call", "fn": m[2], "ret": m[5],
                            "args": {"addr": None if m[3] == "NULL" else m[3],
                                     "length": int(m[4])}})
        elif not re.match(r"shmtrace\[\d+\] (start|exit|report|leaks?|summary)\b", line) and \
                not (line.startswith("shmtrace[") and ": " in line.split(" ", 2)[1]):
            bad.append(line)
    check(not bad, f"{what}: every line is one whole record or padding", repr(bad[:2])[:300])
    return records, blank


def concurrent_lines(tmp, fmt):
    """Processes of several threads each appending to one text or JSON log file written in
    place: each thread's calls are all there, in order, and no line is torn or holds two
    records (chunks claimed ahead by one thread while the others write, by each process under
    the file's lock). A process alone with its file leaves no line of padding at its end."""
    procs, n, per = 3, 4, 2000
    log = os.path.join(tmp, f"concurrent.{fmt}.log")
    running = [subprocess.Popen([PROG, "threads", str(n), str(per)], env=env(log, fmt),
                                stderr=subprocess.PIPE, text=True) for _ in range(procs)]
    for p in running:
        _, err = p.communicate(timeout=120)
        check(p.returncode == 0 and err == "", f"concurrent {fmt}: a process ran cleanly",
              err[-300:])
    records, _ = log_lines(log, fmt, f"concurrent {fmt}")
    for p in running:
        mine = [r for r in records if r.get("pid") == p.pid]
        for t in range(n):
            recs = calls(mine, (16 + t) * PAGE)
            check(len(recs) == 2 * per, f"concurrent {fmt}: process {p.pid} thread {t} has "
                  f"all its calls, once", f"{len(recs)}")
            in_program_order(recs, f"concurrent {fmt}: process {p.pid} thread {t}")
    alone = os.path.join(tmp, f"alone.{fmt}.log")
    p = subprocess.run([PROG, "threads", "8", str(per)], env=env(alone, fmt), timeout=120,
                       capture_output=True, text=True)
    check(p.returncode == 0 and p.stderr == "", f"alone {fmt}: ran cleanly", p.stderr[-300:])
    records, blank = log_lines(alone, fmt, f"alone {fmt}")
    check(len(calls(records)) == 8 * 2 * per, f"alone {fmt}: all {8 * 2 * per} calls",
          f"{len(calls(records))}")
    check(blank == 0, f"alone {fmt}: no line of padding left after a normal exit", f"{blank}")


def exec_(tmp):
    log = os.path.join(tmp, "exec.%p.bin")
    p = subprocess.run([PROG, "exec"], env=env(log), timeout=60, capture_output=True, text=True)
    check(p.returncode == 0 and p.stdout == "done 1\n", "exec: ran", p.stderr[-300:])
    records, _ = decode(only_file(tmp, "exec."))
    kinds = [r["event"] for r in records]
    check(kinds.count("start") == 2 and kinds.count("report") == 1,
          "exec: one log, two images (two start records, one report)", str(kinds))
    in_program_order(calls(records, LEN_BUSY), "exec")
    check(len(calls(records, LEN_BUSY)) == 4, "exec: the calls of both images")


# ---- full disk, bad configuration ------------------------------------------------------

def disk(tmp):
    mnt = os.path.join(tmp, "tiny")
    os.mkdir(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt],
                       capture_output=True, text=True)
    if m.returncode != 0:
        why = (m.stderr.strip() or "not permitted").splitlines()[0]
        return testlib.skip("disk", f"cannot mount a tmpfs ({why})")
    try:
        n = 20_000
        native = subprocess.run([PROG, "many", str(n)], env=env(None, None, preload=False),
                                capture_output=True, text=True, timeout=60)
        log = os.path.join(mnt, "full.%p.bin")
        p = subprocess.run([PROG, "many", str(n)], env=env(log), capture_output=True,
                           text=True, timeout=60)
        check((p.stdout, p.returncode) == (native.stdout, native.returncode),
              "disk: stdout and exit status as natively", f"{p.stdout!r} {p.returncode}")
        lines = p.stderr.splitlines()
        check(len(lines) == 1 and lines[0].startswith(WARNING) and "No space left" in lines[0],
              "disk: exactly one warning line", repr(p.stderr[:300]))
        path = only_file(mnt, "full.")
        records, notes = decode(path)
        recs = calls(records, LEN_BUSY)
        check(0 < len(recs) < 2 * n and "not stored" in notes,
              "disk: the log holds what fitted and says records were lost",
              f"{len(recs)} calls, notes {notes!r}")
        in_program_order(recs, "disk")
        check(os.path.getsize(path) <= 256 * 1024, "disk: the file stayed within the disk")
    finally:
        subprocess.run(["umount", mnt], capture_output=True)


def config(tmp):
    native = subprocess.run([PROG, "many", "2"], env=env(None, None, preload=False),
                            capture_output=True, text=True, timeout=60)

    def one_warning(what, log, contains):
        p = subprocess.run([PROG, "many", "2"], env=env(log), capture_output=True, text=True,
                           timeout=60)
        lines = p.stderr.splitlines()
        warnings = [l for l in lines if l.startswith(WARNING)]
        check((p.stdout, p.returncode) == (native.stdout, native.returncode),
              f"config {what}: stdout and exit status as natively")
        check(len(warnings) == 1 and contains in warnings[0],
              f"config {what}: exactly one warning", repr(warnings))
        texts = [l for l in lines if re.match(r"shmtrace\[\d+\] \d+\.\d{6} (mmap|munmap)\(", l)]
        check(len(texts) == 4, f"config {what}: text records on stderr", f"{len(texts)}")

    one_warning("binary without a file", None, "needs a file")
    one_warning("binary to stderr", "stderr", "needs a file")
    existing = os.path.join(tmp, "text.log")
    with open(existing, "w") as f:
        f.write("shmtrace[1] start: /bin/true (parent 0)\n")
    one_warning("binary onto a text log", existing, "not a shmtrace binary log")
    with open(existing) as f:
        check(f.read() == "shmtrace[1] start: /bin/true (parent 0)\n",
              "config: the text log is left untouched")
    one_warning("binary in a missing directory", os.path.join(tmp, "no", "such.bin"),
                "No such file")
    p = subprocess.run([PROG, "many", "1"], env=env(os.path.join(tmp, "x.bin"), "xml"),
                       capture_output=True, text=True, timeout=60)
    check(p.stderr.count(WARNING) == 1 and "not text, json or binary" in p.stderr,
          "config: an unknown format gives one warning", repr(p.stderr[:200]))


def decode_like_text(tmp):
    text_log = os.path.join(tmp, "same.txt")
    bin_log = os.path.join(tmp, "same.bin")
    subprocess.run([PROG, "fork", "1", "3"], env=env(text_log, "text"), check=True, timeout=60)
    subprocess.run([PROG, "fork", "1", "3"], env=env(bin_log), check=True, timeout=60)
    decoded, _ = decode(bin_log, "text")
    with open(text_log) as f:
        # Lines of spaces: padding of a log file shared by the processes (docs/library.md).
        logged = [l for l in f.read().splitlines() if l.strip(" ")]

    def shape(line):
        line = re.sub(r"0x[0-9a-f]+", "ADDR", line)
        line = re.sub(r"\d+\.\d{6}", "T", line)
        line = re.sub(r"shmtrace\[\d+(:\d+)?\]", "shmtrace[P]", line)
        return re.sub(r"parent \d+", "parent P", re.sub(r"start: \S+", "start: EXE", line))

    # Parent and child write in their own order in each log: compare each as a multiset.
    check(sorted(map(shape, decoded)) == sorted(map(shape, logged)),
          "decode: the same records as a text log", "\n".join(
              sorted(set(map(shape, decoded)) ^ set(map(shape, logged)))[:6]))


def times_like_the_wall_clock(tmp):
    """The log's times are converted to wall-clock times when decoded: after 50 ms of calls
    (the log counts TSC ticks by then where the TSC is reliable), a semtimedop that
    times out after 30 ms starts between the program's own clock readings around it, and
    lasts at least the timeout and at most what the program measured (a millisecond of slack:
    the conversion's error is far smaller, the program's readings are not at the call's
    exact edges)."""
    log = os.path.join(tmp, "timed.bin")
    p = subprocess.run([PROG, "timed"], env=env(log), capture_output=True, text=True,
                       timeout=60)
    check(p.returncode == 0 and p.stderr == "", "times: ran cleanly", p.stderr[-300:])
    seen = dict(line.split() for line in p.stdout.splitlines())
    before, after = int(seen.get("before", 0)), int(seen.get("after", 0))
    records, _ = decode(log)
    calls_ = [r for r in records if r.get("fn") == "semtimedop" and r["event"] == "call"]
    check(len(calls_) == 1 and calls_[0]["errno"] == "EAGAIN", "times: the semtimedop is there",
          json.dumps(calls_)[:300])
    if len(calls_) != 1:
        return
    ts_ns = round(calls_[0]["ts"] * 1e6) * 1000
    dur = calls_[0]["dur_ns"]
    slack = 1_000_000
    check(before - slack <= ts_ns <= after + slack,
          "times: the call's start lies between the program's clock readings",
          f"{before} <= {ts_ns} <= {after}")
    check(30_000_000 - slack <= dur <= after - before + slack,
          "times: the duration is at least the timeout, at most what the program measured",
          f"dur {dur}, measured {after - before}")


def main():
    global BUILD, PROG, LIB, CLI
    opts = testlib.parse_args(__doc__, "binary", GROUPS)
    BUILD, LIB, CLI = opts.build, testlib.LIB, testlib.COMMAND
    PROG = os.path.join(BUILD, "binlog")
    testlib.isolate_ipc()
    if not build():
        sys.exit(testlib.summary())
    with tempfile.TemporaryDirectory(prefix="shmtrace-binary.") as tmp:
        for g in opts.names:
            d = os.path.join(tmp, g)
            os.mkdir(d)
            try:
                if g == "kill":
                    kill_block(d)
                    for trial in range(4):
                        kill_busy(d, trial)
                    for trial in range(2):
                        for fmt in ("text", "json"):
                            kill_busy_lines(d, fmt, trial)
                elif g == "exec":
                    exec_(d)
                elif g == "fork":
                    fork(d)
                    concurrent(d)
                    for fmt in ("text", "json"):
                        concurrent_lines(d, fmt)
                elif g == "decode":
                    decode_like_text(d)
                    times_like_the_wall_clock(d)
                else:
                    globals()[g](d)
            except Exception as e:  # a crashed group is a failure, the others still run
                check(False, f"{g}: ran to the end", repr(e))
    sys.exit(testlib.summary())


if __name__ == "__main__":
    main()

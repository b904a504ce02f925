#!/usr/bin/env python3
"""System V message queues through shmtrace: msgget, msgsnd, msgrcv, msgctl.

    python3 c_tests/msgq/run.py [-v] [--libdir DIR] [--build DIR]

Runs msgq.c (c_tests/msgq) in each mode natively, linked and preloaded: the three print the
same (results, errno, the text every msgrcv received) and exit 0. Then checks, with
/proc/sysvipc/msg as the oracle:
  * the text, JSON and binary logs: every call with its decoded flags and commands, `created`
    only for the call that created the queue; a msgrcv blocked in one process and released
    by a msgsnd from another is logged as started, then returned (the binary log says it
    waited); EINTR and EIDRM after a wait;
  * the exit report: clean when the queue is removed; without IPC_RMID exactly that queue is
    reported, with the messages and bytes the kernel says it still holds (3 and 12, or 0);
  * the command across fork, exec and threads: a queue a child or an exec'd image removes is
    no leak, one never removed is, with its messages and bytes, in the text and JSON reports;
  * a queue made with raw system calls (out of the shim's sight) is found in the kernel by the
    command, by its last sender;
  * SHMTRACE_BLOCK_WARN_MS: a msgrcv that waited longer is reported once it returned (SHM016).
As root the suite runs in its own IPC namespace; every queue a run leaves is removed
afterwards (ipcrm), even when a check fails. Ends with `N passed, M failed, K skipped`.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testlib  # noqa: E402
from testlib import check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ["clean", "misuse", "skip-rmid", "skip-rmid-empty", "blocked", "signal", "removed", "threads",
         "fork", "exec", "blocked-long", "raw-leak"]
MSG_FNS = ("msgget", "msgsnd", "msgrcv", "msgctl")


def queues():
    """The kernel's message queues: {msqid: (messages, bytes)}."""
    with open("/proc/sysvipc/msg") as f:
        next(f)
        return {int(c[1]): (int(c[4]), int(c[3])) for c in (l.split() for l in f) if c}


def run(argv, env, then=None):
    """stdout, stderr, status and the queues left by one run ({msqid: (messages, bytes)});
    `then()` runs before they are removed, and its result comes fifth."""
    before = set(queues())
    try:
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        left = {q: v for q, v in queues().items() if q not in before}
        return r.stdout, r.stderr, r.returncode, left, then and then()
    finally:
        testlib.remove_sysv(("msg", q) for q in set(queues()) - before)


def program(opts, kind):
    return os.path.join(opts.build, f"msgq.{kind}")


def records(log):
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def msg_records(recs):
    return [r for r in recs if r.get("event") in ("call", "enter") and r.get("fn") in MSG_FNS]


def transparency(opts):
    for mode in MODES:
        native = run([program(opts, "plain"), mode], testlib.clean_env())
        check(native[2] == 0, f"{mode}: runs natively", native[1])
        for how, argv, env in [
            ("linked", [program(opts, "linked"), mode], testlib.clean_env()),
            ("preloaded", [program(opts, "plain"), mode], testlib.clean_env(preload=True)),
        ]:
            out, err, rc, _, _ = run(argv, env)
            check(rc == 0 and out == native[0], f"{mode}: {how} prints what the native run does",
                  f"rc={rc}\n{out}\n--- native\n{native[0]}\n{err[-800:]}")


def logs(opts):
    env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="json")
    _, err, _, _, _ = run([program(opts, "plain"), "clean"], env)
    calls = msg_records(records(err))
    shape = [(c["fn"], c["args"].get("msgflg") or c["args"].get("cmd"), c["ret"], c["errno"],
              c.get("created")) for c in calls]
    check(shape[:11] == [
        ("msgget", "IPC_CREAT|0600", shape[0][2], None, True),
        ("msgsnd", "0", 0, None, None),
        ("msgsnd", "0", 0, None, None),
        ("msgsnd", "IPC_NOWAIT", 0, None, None),
        ("msgctl", "IPC_STAT", 0, None, None),
        ("msgrcv", "0", 4, None, None),
        ("msgrcv", "IPC_NOWAIT", -1, "E2BIG", None),
        ("msgrcv", "IPC_NOWAIT|MSG_NOERROR", 2, None, None),
        ("msgrcv", "IPC_NOWAIT|MSG_EXCEPT", -1, "ENOMSG", None),
        ("msgrcv", "0", 3, None, None),
        ("msgrcv", "IPC_NOWAIT", -1, "ENOMSG", None),
    ], "JSON log: each call with its decoded flags or command, result, errno", shape[:11])
    check(shape[12:] == [
        ("msgget", "IPC_CREAT|IPC_EXCL|0600", shape[12][2], None, True),
        ("msgget", "IPC_CREAT|IPC_EXCL|0600", -1, "EEXIST", None),
        ("msgget", "000", shape[12][2], None, False),
        ("msgctl", "IPC_RMID", 0, None, None),
        ("msgctl", "IPC_INFO", shape[16][2], None, None),
        ("msgctl", "IPC_RMID", 0, None, None),
    ], "JSON log: a keyed queue created with IPC_EXCL, refused again, opened, removed", shape[12:])
    findings = [r for r in records(err) if r.get("event") == "finding"]
    check(not findings, "a program that uses its queues correctly has no finding", findings)

    _, err, _, _, _ = run([program(opts, "plain"), "misuse"], env)
    recs = records(err)
    shape = [(c["fn"], c["args"].get("msgflg") or c["args"].get("cmd"), c["ret"] == -1,
              c["errno"], c.get("created")) for c in msg_records(recs)]
    check(shape == [
        ("msgget", "IPC_CREAT|0600", False, None, True),
        ("msgget", "IPC_CREAT|0600", False, None, False),
        ("msgsnd", "0", False, None, None),
        ("msgctl", "IPC_RMID", False, None, None),
        ("msgctl", "IPC_RMID", True, "EINVAL", None),
        ("msgsnd", "IPC_NOWAIT", True, "EINVAL", None),
    ], "IPC_CREAT alone: created when the key was free, opened when it existed", shape)
    found = [(f["code"], f["fn"]) for f in recs if f.get("event") == "finding"]
    check(found == [("SHM002", "msgget"), ("SHM002", "msgget"), ("SHM015", "msgctl"),
                    ("SHM007", "msgctl"), ("SHM008", "msgsnd")],
          "misuse: create-without-excl twice, the message removed with its queue, the second "
          "IPC_RMID, the send after it", found)
    rcv = next((c for c in calls if c["fn"] == "msgrcv"), {})
    check(list(rcv.get("args", {})) == ["msqid", "msgp", "msgsz", "msgtyp", "msgflg"]
          and rcv["args"]["msgtyp"] == 2 and rcv["args"]["msgsz"] == 64,
          "JSON log: msgrcv's arguments by their man page names", rcv.get("args"))
    check(not [c for c in calls if c["event"] == "enter"],
          "JSON log: calls that never wait have no enter record")

    _, err, _, _, _ = run([program(opts, "plain"), "clean"], testlib.clean_env(preload=True))
    lines = [l for l in err.splitlines() if re.search(r"\] \d+\.\d+ msg(get|snd|rcv|ctl)\(", l)]
    expect = [r"msgget\(IPC_PRIVATE, IPC_CREAT\|0600\) = \d+ <",
              r"msgsnd\(\d+, 0x[0-9a-f]+, 3, 0\) = 0 <",
              r"msgrcv\(\d+, 0x[0-9a-f]+, 2, 3, IPC_NOWAIT\) = -1 E2BIG \(Argument list too long\)",
              r"msgctl\(\d+, IPC_STAT, 0x[0-9a-f]+\) = 0 <",
              r"msgctl\(\d+, IPC_RMID, NULL\) = 0 <"]
    check(len(lines) == len(calls) and all(any(re.search(e, l) for l in lines) for e in expect),
          "text log: strace-like lines with decoded flags and commands",
          [e for e in expect if not any(re.search(e, l) for l in lines)] or lines[:4])

    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log.bin")
        env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="binary", SHMTRACE_LOG=log)
        run([program(opts, "plain"), "clean"], env)
        dec = subprocess.run([testlib.COMMAND, "decode", "--format", "json", log],
                             capture_output=True, text=True)
        decoded = msg_records(records(dec.stdout))
        strip = lambda cs: [(c["fn"], c["args"], c["ret"], c["errno"], c.get("created"))
                            for c in cs]
        # Ids, keys (from the pid) and addresses are this run's own: compare everything else.
        own = ("msqid", "msgp", "buf", "key")
        same = lambda cs: [(f, {k: v for k, v in a.items() if k not in own},
                            r if f not in ("msgget", "msgctl") else r >= 0, e, c)
                           for f, a, r, e, c in strip(cs)]
        diff = [(x, y) for x, y in zip(same(decoded), same(calls)) if x != y]
        check(len(decoded) == len(calls) and not diff, "binary log decodes to the same calls",
              f"{len(decoded)} vs {len(calls)}: {diff[:2]} {dec.stderr[-300:]}")


def waits(opts):
    """A msgrcv blocked in a child, released by the parent's msgsnd, EINTR or EIDRM."""
    for mode, ret, errno in [("blocked", 7, None), ("signal", -1, "EINTR"),
                             ("removed", -1, "EIDRM")]:
        env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="json")
        _, err, _, _, _ = run([program(opts, "plain"), mode], env)
        recs = msg_records(records(err))
        rcv = [r for r in recs if r["fn"] == "msgrcv"]
        enter, done = (rcv + [None, None])[:2]
        ok = (len(rcv) == 2 and enter["event"] == "enter" and done["event"] == "call"
              and enter["pid"] == done["pid"] and enter["ts"] == done["ts"]
              and done["ret"] == ret and done["errno"] == errno
              and enter["args"] == done["args"] and enter["args"]["msgtyp"] == 5)
        check(ok, f"{mode}: the child's msgrcv is logged as started, then returned "
              f"{ret} {errno or ''}", rcv)
        others = [r for r in recs if r["fn"] != "msgrcv"]
        check(all(r["pid"] != (enter or {}).get("pid") for r in others)
              and all(r["event"] == "call" for r in others),
              f"{mode}: the parent's calls never wait", others)
        if mode == "blocked":
            send = [r for r in others if r["fn"] == "msgsnd"]
            check(send and done and send[0]["ts"] < done["ts"] + done["dur_ns"] / 1e9,
                  "blocked: the parent's msgsnd comes while the child waits", send)

    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log.bin")
        env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="binary", SHMTRACE_LOG=log)
        run([program(opts, "plain"), "blocked"], env)
        dec = subprocess.run([testlib.COMMAND, "decode", "--format", "json", log],
                             capture_output=True, text=True)
        rcv = [r for r in msg_records(records(dec.stdout)) if r["fn"] == "msgrcv"]
        check([r["event"] for r in rcv] == ["enter", "call"],
              "binary log: the msgrcv that waited decodes as started, then returned",
              rcv or dec.stderr[-300:])

    env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="json")
    _, err, _, _, _ = run([program(opts, "plain"), "threads"], env)
    rcv = [r for r in msg_records(records(err)) if r["fn"] == "msgrcv"]
    check([r["event"] for r in rcv] == ["enter", "call"] and rcv[0]["tid"] != rcv[0]["pid"]
          and rcv[1]["ret"] == 13,
          "threads: a thread's msgrcv waits, released by the main thread's msgsnd", rcv)


def report_lines(err):
    return [l for l in err.splitlines() if "] report:" in l or " message queue " in l]


def reports(opts):
    for mode, held in [("clean", None), ("skip-rmid", (3, 12)), ("skip-rmid-empty", (0, 0))]:
        for fmt in ("text", "json"):
            env = testlib.clean_env(preload=True, SHMTRACE_FORMAT=fmt)
            _, err, _, left, _ = run([program(opts, "plain"), mode], env)
            what = f"{mode} ({fmt})"
            if held is None:
                report = next((r for r in records(err) if r.get("event") == "report"), {})
                clean = (report.get("clean") is True and "queues" not in report if fmt == "json"
                         else "report: clean: no segment" in err and not report_lines(err)[1:])
                check(not left and clean, f"{what}: clean, and the kernel has no queue",
                      report_lines(err) + [left])
                continue
            check(list(left.values()) == [held],
                  f"{what}: the kernel has the queue, {held[0]} messages, {held[1]} bytes", left)
            msqid = next(iter(left), None)
            if fmt == "text":
                rows = report_lines(err)
                check(len(rows) == 2 and "report: 1 leak left behind: 1 message queue" in rows[0]
                      and f"message queue msqid={msqid} key=IPC_PRIVATE {held[0]} messages, "
                          f"{held[1]} bytes created at 0x" in rows[1]
                      and f"(ipcrm -q {msqid})" in rows[1],
                      f"{what}: exactly that queue is reported, with what the kernel holds", rows)
            else:
                report = next((r for r in records(err) if r.get("event") == "report"), {})
                check(report.get("clean") is False and
                      [(q["msqid"], q["messages"], q["bytes"]) for q in report.get("queues", [])]
                      == [(msqid, *held)],
                      f"{what}: the JSON report lists the queue with its messages and bytes",
                      report)


def command(opts):
    with tempfile.TemporaryDirectory() as d:
        for mode, held in [("clean", None), ("fork", None), ("exec", None), ("threads", None),
                           ("blocked", None), ("skip-rmid", (3, 12))]:
            out_dir = os.path.join(d, mode)
            argv = [testlib.COMMAND, "--error-exitcode", "3", "--out", out_dir,
                    "--", program(opts, "plain"), mode]
            json_report = [testlib.COMMAND, "report", "--json", out_dir]
            # The merged report is on stderr; the JSON one is read while the queue still exists.
            _, out, rc, left, js = run(argv, testlib.clean_env(), then=lambda: subprocess.run(
                json_report, capture_output=True, text=True))
            last = [l for l in out.splitlines() if l.startswith("shmtrace: ")]
            if held:
                msqid = next(iter(left), None)
                check(rc == 3 and any("1 leak: 1 message queue" in l for l in last)
                      and f"message queue msqid={msqid} key=IPC_PRIVATE holding {held[0]} "
                          f"messages ({held[1]} bytes)" in out
                      and f"(ipcrm -q {msqid})" in out and list(left.values()) == [held],
                      f"command, {mode}: the queue left is a leak, with what the kernel holds",
                      out[-1500:])
            else:
                check(rc == 0 and any("clean" in l for l in last) and not left,
                      f"command, {mode}: no leak", out[-1500:])
            try:
                doc = json.loads(js.stdout)
                leaks = [(l["kind"], l.get("messages"), l.get("bytes")) for l in doc["leaks"]]
                want = [("message queue", *held)] if held else []
                check(doc["verdict"]["message_queues"] == len(want) and leaks == want
                      and doc["sysv"]["created"] >= 1,
                      f"command, {mode}: the JSON report lists the queue with its messages "
                      "and bytes", leaks)
            except (ValueError, KeyError) as e:
                check(False, f"command, {mode}: the JSON report", f"{e}: {js.stdout[:300]}")


def unseen(opts):
    """A queue the tree made with raw system calls: the command finds it in the kernel."""
    with tempfile.TemporaryDirectory() as d:
        out_dir = os.path.join(d, "raw")
        argv = [testlib.COMMAND, "--error-exitcode", "3", "--out", out_dir,
                "--", program(opts, "plain"), "raw-leak"]
        json_report = [testlib.COMMAND, "report", "--json", out_dir]
        _, out, rc, left, js = run(argv, testlib.clean_env(), then=lambda: subprocess.run(
            json_report, capture_output=True, text=True))
        msqid = next(iter(left), None)
        check(rc == 3 and list(left.values()) == [(1, 6)]
              and f"message queue msqid={msqid} key=IPC_PRIVATE holding 6 bytes, created during "
                  f"the run" in out and f"(ipcrm -q {msqid})" in out,
              "command: a queue made with raw system calls is found in the kernel, a leak",
              out[-1200:])
        try:
            doc = json.loads(js.stdout)
            check([(u["kind"], u["id"], u["size"]) for u in doc["not_seen"]]
                  == [("message queue", msqid, 6)] and doc["verdict"]["not_seen"] == 1,
                  "command: the JSON report lists it under not_seen", doc.get("not_seen"))
        except (ValueError, KeyError) as e:
            check(False, "command: the JSON report lists it under not_seen", f"{e}")


def blocked_finding(opts):
    for warn, expect in [("100", True), (None, False)]:
        extra = {"SHMTRACE_FORMAT": "json"}
        if warn:
            extra["SHMTRACE_BLOCK_WARN_MS"] = warn
        _, err, rc, _, _ = run([program(opts, "plain"), "blocked-long"],
                               testlib.clean_env(preload=True, **extra))
        found = [(f["code"], f["fn"]) for f in records(err) if f.get("event") == "finding"]
        if expect:
            message = next((f["message"] for f in records(err)
                            if f.get("event") == "finding"), "")
            took = re.search(r"blocked for (\d+) ms, more than 100 ms", message)
            check(rc == 0 and found == [("SHM016", "msgrcv")] and took
                  and 250 <= int(took[1]) < 10000,
                  "SHMTRACE_BLOCK_WARN_MS=100: the msgrcv that waited ~300 ms is reported once, "
                  "with how long it waited", found + [message])
        else:
            check(rc == 0 and not found, "without SHMTRACE_BLOCK_WARN_MS: nothing", found)


def main():
    opts = testlib.parse_args(__doc__, "msgq")
    testlib.isolate_ipc()
    if not testlib.make(HERE, opts.make_vars):
        return testlib.summary()
    before = set(queues())
    try:
        for group in (transparency, logs, waits, reports, command, unseen, blocked_finding):
            group(opts)
    finally:
        testlib.remove_sysv(("msg", q) for q in set(queues()) - before)
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""POSIX shared memory through shmtrace: shm_open and shm_unlink.

    python3 c_tests/posix/run.py [-v] [--libdir DIR] [--build DIR]

Runs posix.c (c_tests/posix) in each mode natively, linked and preloaded: the three print the
same and exit 0 (results and errno transparent, bad names answered as libc answers them).
Then checks, against /dev/shm as the oracle:
  * the text, JSON and binary logs: every shm_open and shm_unlink with its name and decoded
    flags, `created` true only for the call that created the name;
  * the exit report: clean when every step is there; each release step left out in turn
    (shm_unlink, munmap) reports exactly that leak;
  * the command across processes: a name a child or an exec'd image unlinks is no leak, one
    never unlinked is, with --error-exitcode;
  * Python's multiprocessing.shared_memory kept past exit is reported, and clean with unlink.
Every run's /dev/shm/shmtrace-posix-* and /dev/shm/shmtrace_py_* names are removed
afterwards, even when a check fails. Ends with `N passed, M failed, K skipped`.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testlib  # noqa: E402
from testlib import check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ["clean", "skip-unlink", "skip-munmap", "bad-input", "fork", "exec", "threads"]
LEFT = ["/dev/shm/shmtrace-posix-*", "/dev/shm/shmtrace_py_*"]


def leftovers():
    return sorted(p for pattern in LEFT for p in glob.glob(pattern))


def remove_leftovers():
    for path in leftovers():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def run(argv, env, then=None):
    """stdout, stderr, status and the names left of one run; `then()` runs before its names
    are removed, and its result comes fifth."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        return r.stdout, r.stderr, r.returncode, leftovers(), then and then()
    finally:
        remove_leftovers()


def program(opts, kind):
    return os.path.join(opts.build, f"posix.{kind}")


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


def records(log):
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def shm_calls(recs):
    return [r for r in recs if r.get("event") == "call" and r["fn"] in ("shm_open", "shm_unlink")]


def logs(opts):
    env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="json")
    out, err, rc, _, _ = run([program(opts, "plain"), "clean"], env)
    calls = shm_calls(records(err))
    pid = next((r["pid"] for r in records(err) if r.get("event") == "start"), None)
    name = f"/shmtrace-posix-{pid}-a"
    shape = [(c["fn"], c["args"].get("name"), c["args"].get("oflag"), c["ret"] == -1,
              c["errno"], c.get("created")) for c in calls]
    check(shape[:6] == [
        ("shm_open", name, "O_RDWR|O_CREAT|O_EXCL", False, None, True),
        ("shm_open", name, "O_RDONLY", False, None, False),
        ("shm_open", name, "O_RDWR|O_CREAT|O_EXCL", True, "EEXIST", None),
        ("shm_unlink", name, None, False, None, None),
        ("shm_unlink", name, None, True, "ENOENT", None),
        ("shm_open", name, "O_RDWR", True, "ENOENT", None),
    ], "JSON log: each call with its name, decoded flags, errno and created", shape)
    creat = f"/shmtrace-posix-{pid}-creat"
    check(shape[6:8] == [("shm_open", creat, "O_RDWR|O_CREAT", False, None, True),
                         ("shm_open", creat, "O_RDWR|O_CREAT", False, None, False)],
          "O_CREAT alone: created when the name was new, opened when it existed", shape[6:])
    check(calls and calls[0]["args"].get("mode") == "0600", "JSON log: the mode in octal",
          calls[:1])
    findings = [(f["code"], f["fn"]) for f in records(err) if f.get("event") == "finding"]
    check(findings == [("SHM002", "shm_open")] * 2,
          "findings: O_CREAT without O_EXCL on a fixed name (twice), nothing else", findings)

    out, err, rc, _, _ = run([program(opts, "plain"), "clean"], testlib.clean_env(preload=True))
    lines = [l for l in err.splitlines() if " shm_open(" in l or " shm_unlink(" in l]
    check(len(lines) == len(calls) and
          any('shm_open("/shmtrace-posix-' in l and '-a", O_RDWR|O_CREAT|O_EXCL, 0600) = ' in l
              for l in lines) and
          any("shm_unlink(" in l and "= -1 ENOENT (No such file or directory)" in l
              for l in lines),
          "text log: shm_open(\"NAME\", FLAGS, MODE) and shm_unlink(\"NAME\")", lines[:3])

    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log.bin")
        env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="binary", SHMTRACE_LOG=log)
        run([program(opts, "plain"), "clean"], env)
        dec = subprocess.run([testlib.COMMAND, "decode", "--format", "json", log],
                             capture_output=True, text=True)
        decoded = shm_calls(records(dec.stdout))
        # Descriptors differ by one: the binary log holds one.
        strip = lambda cs: [(c["fn"], c["args"], c["ret"] == -1, c["errno"], c.get("created"))
                            for c in cs]
        check(len(decoded) == len(calls) and
              [c[1]["name"] for c in strip(decoded)][:1] == [f"/shmtrace-posix-{decoded[0]['pid']}-a"]
              and [(c[0], c[2], c[3], c[4]) for c in strip(decoded)] ==
              [(c[0], c[2], c[3], c[4]) for c in strip(calls)],
              "binary log decodes to the same calls, names included",
              f"{strip(decoded)[:3]} vs {strip(calls)[:3]} {dec.stderr[-300:]}")


def reports(opts):
    for mode, leak in [("clean", None), ("skip-unlink", "name"), ("skip-munmap", "mapping")]:
        env = testlib.clean_env(preload=True)
        out, err, rc, left, _ = run([program(opts, "plain"), mode], env)
        report = [l for l in err.splitlines() if "] report:" in l]
        name_rows = [l for l in err.splitlines() if " shm name " in l]
        map_rows = [l for l in err.splitlines() if "mapping" in l and "report:" not in l
                    and "never unmapped" not in l]
        if leak is None:
            # Its O_CREAT without O_EXCL is a warning: no leak, but not "clean" either.
            check(report and "report: no segment, semaphore set, attachment or mapping left "
                  "behind" in report[0] and not left,
                  f"{mode}: the report has no leak and /dev/shm holds nothing", report + left)
        elif leak == "name":
            check(report and "report: 1 leak left behind: 1 name" in report[0]
                  and len(name_rows) == 1 and len(left) == 1
                  and name_rows[0].split()[3] == left[0]
                  and "never unlinked, still exists" in name_rows[0],
                  f"{mode}: exactly the name left in /dev/shm is reported", report + name_rows + left)
        else:
            check(report and "report: 1 leak left behind: 1 mapping (8192 bytes)" in report[0]
                  and not name_rows and not left,
                  f"{mode}: exactly the mapping is reported", report + map_rows + left)


def command(opts):
    with tempfile.TemporaryDirectory() as d:
        for mode, leaks in [("clean", False), ("fork", False), ("exec", False),
                            ("threads", False), ("skip-unlink", True)]:
            argv = [testlib.COMMAND, "--error-exitcode", "3", "--out", os.path.join(d, mode),
                    "--", program(opts, "plain"), mode]
            # The merged report is on stderr.
            json_report = [testlib.COMMAND, "report", "--json", os.path.join(d, mode)]
            _, out, rc, left, js = run(argv, testlib.clean_env(), then=lambda: subprocess.run(
                json_report, capture_output=True, text=True))
            last = [l for l in out.splitlines() if l.startswith("shmtrace: ")]
            if leaks:
                check(rc == 3 and any("1 leak: 1 shm name" in l for l in last)
                      and "POSIX names created and never unlinked" in out and left,
                      f"command, {mode}: the name left in /dev/shm is a leak", out[-1500:])
            else:
                check(rc == 0 and any("clean" in l for l in last) and not left,
                      f"command, {mode}: no leak", out[-1500:])
            try:
                doc = json.loads(js.stdout)
                names = [n["name"] for n in doc["names"]]
                check(doc["verdict"]["names"] == len(names) == (1 if leaks else 0),
                      f"command, {mode}: the JSON report counts the names", names)
            except (ValueError, KeyError) as e:
                check(False, f"command, {mode}: the JSON report counts the names",
                      f"{e}: {js.stdout[:300]} {js.stderr[:300]}")


PYTHON_SHM = """
import sys
from multiprocessing import resource_tracker, shared_memory
shm = shared_memory.SharedMemory(create=True, size=4096, name=sys.argv[1])
if sys.argv[2] == "keep":
    # Kept for another program: the resource tracker must not unlink it at exit either.
    resource_tracker.unregister(shm._name, "shared_memory")
shm.buf[0] = 1
shm.close()
if sys.argv[2] == "unlink":
    shm.unlink()
"""


def python(opts):
    with tempfile.TemporaryDirectory() as d:
        for how, leaks in [("keep", True), ("unlink", False)]:
            name = f"shmtrace_py_{os.getpid()}"
            argv = [testlib.COMMAND, "--error-exitcode", "3", "--out", os.path.join(d, how),
                    "--", sys.executable, "-c", PYTHON_SHM, name, how]
            _, out, rc, left, _ = run(argv, testlib.clean_env())
            if leaks:
                check(rc == 3 and f"shm name /{name}" in out and left == [f"/dev/shm/{name}"],
                      "python shared_memory never unlinked: the name is reported",
                      out[-1500:])
            else:
                check("shm name" not in out and not left,
                      "python shared_memory unlinked: no name reported", out[-1500:])


def main():
    opts = testlib.parse_args(__doc__, "posix")
    testlib.isolate_ipc()
    if not testlib.make(HERE, opts.make_vars):
        return testlib.summary()
    try:
        for group in (transparency, logs, reports, command, python):
            group(opts)
    finally:
        remove_leftovers()
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

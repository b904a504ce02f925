#!/usr/bin/env python3
"""POSIX shared memory and named semaphores through shmtrace: shm_open and shm_unlink;
sem_open, sem_close and sem_unlink.

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
The same for named semaphores (namedsem.c): transparency; the three logs (`created`, mode and
value only with O_CREAT, SEM_FAILED); the exit report clean, and with sem_close or sem_unlink
left out exactly that (SHM014, or the name); the command across fork (a child unlinks, a
child inherits and never closes), exec and threads, and a name removed outside the tree.
Every run's /dev/shm/shmtrace-posix-*, /dev/shm/sem.shmtrace-namedsem-* and
/dev/shm/shmtrace_py_* names are removed afterwards, even when a check fails. Ends with `N passed, M failed, K skipped`.
"""

import glob
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
MODES = ["clean", "skip-unlink", "skip-munmap", "bad-input", "fork", "exec", "threads"]
SEM_MODES = ["clean", "skip-close", "skip-unlink", "creat", "fork", "fork-inherit", "exec",
             "threads"]
LEFT = ["/dev/shm/shmtrace-posix-*", "/dev/shm/sem.shmtrace-namedsem-*",
        "/dev/shm/shmtrace_py_*"]


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


def program(opts, kind, name="posix"):
    return os.path.join(opts.build, f"{name}.{kind}")


def transparency(opts, name="posix", modes=MODES):
    for mode in modes:
        native = run([program(opts, "plain", name), mode], testlib.clean_env())
        check(native[2] == 0, f"{name} {mode}: runs natively", native[1])
        for how, argv, env in [
            ("linked", [program(opts, "linked", name), mode], testlib.clean_env()),
            ("preloaded", [program(opts, "plain", name), mode], testlib.clean_env(preload=True)),
        ]:
            out, err, rc, _, _ = run(argv, env)
            check(rc == 0 and out == native[0],
                  f"{name} {mode}: {how} prints what the native run does",
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
                check(rc == 3 and any("1 leak: 1 POSIX name" in l for l in last)
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


def sem_transparency(opts):
    transparency(opts, "namedsem", SEM_MODES)


def sem_calls(recs):
    return [r for r in recs if r.get("event") == "call"
            and r["fn"] in ("sem_open", "sem_close", "sem_unlink")]


def sem_shape(calls):
    return [(c["fn"], c["args"].get("name"), c["args"].get("oflag"), c["ret"], c["errno"],
             c.get("created")) for c in calls]


def sem_logs(opts):
    prog = program(opts, "plain", "namedsem")
    env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="json")
    _, err, _, _, _ = run([prog, "clean"], env)
    recs = records(err)
    calls = sem_calls(recs)
    pid = next((r["pid"] for r in recs if r.get("event") == "start"), None)
    name = f"/shmtrace-namedsem-{pid}-a"
    sem = calls[0]["ret"] if calls else None
    want = [
        ("sem_open", name, "O_CREAT|O_EXCL", sem, None, True),
        ("sem_open", name, "0", sem, None, False),
        ("sem_open", name, "O_CREAT|O_EXCL", "SEM_FAILED", "EEXIST", None),
        ("sem_close", None, None, 0, None, None),
        ("sem_close", None, None, 0, None, None),
        ("sem_unlink", name, None, 0, None, None),
        ("sem_unlink", name, None, -1, "ENOENT", None),
        ("sem_open", name, "0", "SEM_FAILED", "ENOENT", None),
    ]
    check(isinstance(sem, str) and sem.startswith("0x") and sem_shape(calls) == want,
          "sem JSON log: each call with its name, flags, result, errno and created",
          f"{sem_shape(calls)}\n{want}")
    check(len(calls) == 8 and calls[0]["args"] == {"name": name, "oflag": "O_CREAT|O_EXCL",
                                                   "mode": "0600", "value": 1}
          and calls[1]["args"] == {"name": name, "oflag": "0"}
          and calls[3]["args"] == calls[4]["args"] == {"sem": sem},
          "sem JSON log: mode and value only with O_CREAT; sem_close shows the address",
          [c["args"] for c in calls])
    findings = [f["code"] for f in recs if f.get("event") == "finding"]
    check(findings == [], "sem clean: no finding", findings)

    _, err, _, _, _ = run([prog, "creat"], env)
    calls = sem_calls(records(err))
    opens = [(c["args"].get("oflag"), c.get("created")) for c in calls if c["fn"] == "sem_open"]
    check(opens == [("O_CREAT", True), ("O_CREAT", False)],
          "sem O_CREAT alone: created when the name was new, opened when it existed", opens)
    findings = [(f["code"], f["fn"]) for f in records(err) if f.get("event") == "finding"]
    check(findings == [("SHM002", "sem_open")] * 2,
          "sem findings: O_CREAT without O_EXCL on a fixed name (twice), nothing else", findings)

    _, err, _, _, _ = run([prog, "clean"], testlib.clean_env(preload=True))
    lines = [l for l in err.splitlines() if re.search(r" sem_(open|close|unlink)\(", l)]
    check(len(lines) == 8
          and re.search(r'sem_open\("/shmtrace-namedsem-\d+-a", O_CREAT\|O_EXCL, 0600, 1\) = '
                        r"0x[0-9a-f]+ ", lines[0])
          and re.search(r'sem_open\("/shmtrace-namedsem-\d+-a", 0\) = 0x', lines[1])
          and "= SEM_FAILED EEXIST (File exists)" in lines[2]
          and re.search(r" sem_close\(0x[0-9a-f]+\) = 0 ", lines[3]),
          "sem text log: sem_open(\"NAME\", FLAGS[, MODE, VALUE]), SEM_FAILED, sem_close(ADDR)",
          lines[:4])

    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log.bin")
        env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="binary", SHMTRACE_LOG=log)
        run([prog, "clean"], env)
        dec = subprocess.run([testlib.COMMAND, "decode", "--format", "json", log],
                             capture_output=True, text=True)
        decoded = sem_calls(records(dec.stdout))
        pid = decoded[0]["pid"] if decoded else None
        sem = decoded[0]["ret"] if decoded else None
        want = [(f, a.replace("NAME", f"/shmtrace-namedsem-{pid}-a") if a else a, o,
                 sem if r == "SEM" else r, e, c) for f, a, o, r, e, c in [
            ("sem_open", "NAME", "O_CREAT|O_EXCL", "SEM", None, True),
            ("sem_open", "NAME", "0", "SEM", None, False),
            ("sem_open", "NAME", "O_CREAT|O_EXCL", "SEM_FAILED", "EEXIST", None),
            ("sem_close", None, None, 0, None, None),
            ("sem_close", None, None, 0, None, None),
            ("sem_unlink", "NAME", None, 0, None, None),
            ("sem_unlink", "NAME", None, -1, "ENOENT", None),
            ("sem_open", "NAME", "0", "SEM_FAILED", "ENOENT", None)]]
        check(sem_shape(decoded) == want,
              "sem binary log decodes to the same calls, names included",
              f"{sem_shape(decoded)} {dec.stderr[-300:]}")


def sem_reports(opts):
    prog = program(opts, "plain", "namedsem")
    for mode in ("clean", "skip-close", "skip-unlink"):
        _, err, rc, left, _ = run([prog, mode], testlib.clean_env(preload=True))
        report = [l for l in err.splitlines() if "] report:" in l]
        rows = [l for l in err.splitlines() if " semaphore name " in l]
        found = re.findall(r"\] +(SHM\d+) \w+ sem_open at ", err)
        if mode == "clean":
            check(report and "report: clean:" in report[0] and not rows and not found
                  and not left, "sem clean: the report is clean, /dev/shm holds nothing",
                  report + rows + found + left)
        elif mode == "skip-close":
            check(report and "leak" not in report[0] and not rows and found == ["SHM014"]
                  and not left,
                  "sem without sem_close: exactly SHM014 at the sem_open, no leak",
                  report + rows + found + left)
        else:
            check(report and "report: 1 leak left behind: 1 name" in report[0]
                  and len(rows) == 1 and len(left) == 1 and rows[0].split()[3] == left[0]
                  and "never unlinked, still exists" in rows[0] and not found,
                  "sem without sem_unlink: exactly the name left in /dev/shm is reported",
                  report + rows + found + left)


def sem_command(opts):
    prog = program(opts, "plain", "namedsem")
    with tempfile.TemporaryDirectory() as d:
        for mode in ("clean", "skip-close", "skip-unlink", "fork", "fork-inherit", "exec",
                     "threads"):
            out_dir = os.path.join(d, mode)
            argv = [testlib.COMMAND, "--error-exitcode", "3", "--out", out_dir, "--", prog, mode]
            json_report = [testlib.COMMAND, "report", "--json", out_dir]
            # With the name still there for skip-unlink, then once it was removed outside.
            def reports():
                first = subprocess.run(json_report, capture_output=True, text=True)
                for path in leftovers():
                    os.unlink(path)
                text = subprocess.run([testlib.COMMAND, "report", out_dir],
                                      capture_output=True, text=True)
                again = subprocess.run(json_report, capture_output=True, text=True)
                return first, text, again
            _, out, rc, left, (js, text, again) = run(argv, testlib.clean_env(), then=reports)
            last = [l for l in out.splitlines() if l.startswith("shmtrace: ")]
            found = re.findall(r"SHM\d+", out)
            try:
                names = [(n["kind"], n["name"], n["kernel"]) for n in json.loads(js.stdout)["names"]]
                gone = [(n["kind"], n["kernel"]) for n in json.loads(again.stdout)["names"]]
            except (ValueError, KeyError) as e:
                names = gone = f"{e}: {js.stdout[:200]} {js.stderr[:200]}"
            if mode == "skip-unlink":
                check(rc == 3 and any("1 leak: 1 POSIX name" in l for l in last)
                      and re.search(r"semaphore name /shmtrace-namedsem-\d+-a\n", out)
                      and "(rm /dev/shm/sem.shmtrace-namedsem-" in out and len(left) == 1
                      and names == [("sem", left[0].replace("/dev/shm/sem.", "/"), "exists")],
                      "command, sem skip-unlink: the name left in /dev/shm is a leak",
                      f"{out[-1500:]}\n{names}")
                check(gone == [("sem", "gone")] and
                      "no longer exists (removed outside the traced processes)" in text.stdout,
                      "command, sem skip-unlink: a name removed outside the tree since is "
                      "reported as such", f"{gone}\n{text.stdout[-800:]}")
            elif mode == "skip-close":
                check(rc == 0 and found == ["SHM014"] and names == [] and not left,
                      "command, sem skip-close: SHM014 and no leak", out[-1500:])
            else:
                check(rc == 0 and any("clean" in l for l in last) and not found
                      and names == [] and not left,
                      f"command, sem {mode}: no leak, no finding", f"{out[-1500:]}\n{names}")


def main():
    opts = testlib.parse_args(__doc__, "posix")
    testlib.isolate_ipc()
    if not testlib.make(HERE, opts.make_vars):
        return testlib.summary()
    try:
        for group in (transparency, logs, reports, command, python, sem_transparency,
                      sem_logs, sem_reports, sem_command):
            group(opts)
    finally:
        remove_leftovers()
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

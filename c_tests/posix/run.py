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
  * Python's multiprocessing.shared_memory kept past exit is reported, at the native site of
    its shm_open (the _posixshmem extension module), and clean with unlink;
  * memfd_create (memfd.c): the same results natively, linked and preloaded, bad input
    included; its name and flags in the three log formats; each mmap names the object
    /proc/self/maps shows for it (`of memfd:NAME`, `of /dev/shm/NAME`) and nothing for any other
    file, whatever became of the descriptor number (closed and reused, dup2), in the three
    log formats (a name renamed after shm_open excepted: logged by the name it was opened
    by, as documented); with the log off, the report names them as /proc/self/maps shows
    them at the report (an unlinked name ` (deleted)`, a renamed one's new name); a memfd
    mapping whose pointer is dropped is lost at its site, one still referenced is still
    reachable; the command across fork, exec and threads (descriptor numbers reused by other
    threads).
The same for named semaphores (namedsem.c): transparency; the three logs (`created`, mode and
value only with O_CREAT, SEM_FAILED); the exit report clean, and with sem_close or sem_unlink
left out exactly that (SHM014, or the name); the command across fork (a child unlinks, a
child inherits and never closes), exec and threads, and a name removed outside the tree.
Every run's /dev/shm/shmtrace-posix-*, /dev/shm/sem.shmtrace-namedsem-* and
/dev/shm/shmtrace_py_* names are removed afterwards, even when a check fails. Ends with
`N passed, M failed, K skipped`.
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
                # shm_open is called from the _posixshmem extension module, which Python
                # loads after start: named as a function or module+offset, not a bare address.
                site = [l.split(" at ", 1)[1] for l in out.splitlines()
                        if "created by" in l and "python" in l]
                check(len(site) == 1 and "_posixshmem" in site[0],
                      "python shared_memory: the site is in _posixshmem", site or out[-1500:])
            else:
                check("shm name" not in out and not left,
                      "python shared_memory unlinked: no name reported", out[-1500:])


def memfd_program(opts, kind):
    return os.path.join(opts.build, f"memfd.{kind}")


def memfd_calls(recs, fns=("memfd_create", "mmap")):
    return [r for r in recs if r.get("event") == "call" and r["fn"] in fns]


def memfd_transparency(opts):
    native = run([memfd_program(opts, "plain"), "transparency"], testlib.clean_env())
    check(native[2] == 0 and "maps: /memfd:posix-ring (deleted)" in native[0],
          "memfd: runs natively, the kernel names the mapping", native[0] + native[1])
    for how, argv, env in [
        ("linked", [memfd_program(opts, "linked"), "transparency"], testlib.clean_env()),
        ("preloaded", [memfd_program(opts, "plain"), "transparency"],
         testlib.clean_env(preload=True)),
    ]:
        out, err, rc, _, _ = run(argv, env)
        check(rc == 0 and out == native[0],
              f"memfd: {how} prints what the native run does (bad input too)",
              f"rc={rc}\n{out}\n--- native\n{native[0]}\n{err[-800:]}")

    env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="json")
    _, err, _, _, _ = run([memfd_program(opts, "plain"), "transparency"], env)
    calls = memfd_calls(records(err))
    shape = [(c["fn"], c["args"].get("name"), c["args"].get("flags"), c["errno"],
              c.get("object")) for c in calls]
    kept = "b" * 63
    check(shape == [
        ("memfd_create", "posix-ring", "MFD_CLOEXEC|MFD_ALLOW_SEALING", None, None),
        ("mmap", None, "MAP_SHARED", None, "memfd:posix-ring"),
        ("memfd_create", "", "0", None, None),
        ("memfd_create", kept, "0", None, None),
        ("memfd_create", None, "0", "EFAULT", None),
        ("memfd_create", shape[5][1], "0", "EINVAL", None),
        ("memfd_create", shape[6][1], "0x100", "EINVAL", None),
        ("memfd_create", shape[7][1], "0x54000000", "EINVAL", None),
        ("memfd_create", "0x8", "0", "EFAULT", None),
    ] and all(n.startswith("0x") for n in (shape[5][1], shape[6][1], shape[7][1])),
        "memfd JSON log: names (read after a success only), flags by name, errno, the "
        "object mapped", shape)

    _, err, _, _, _ = run([memfd_program(opts, "plain"), "transparency"],
                          testlib.clean_env(preload=True))
    lines = [l for l in err.splitlines() if " memfd_create(" in l or " mmap(" in l]
    check(len(lines) == 9
          and 'memfd_create("posix-ring", MFD_CLOEXEC|MFD_ALLOW_SEALING) = ' in lines[0]
          and " of memfd:posix-ring <" in lines[1]
          and f'memfd_create("{kept}"..., 0) = ' in lines[3]
          and "memfd_create(NULL, 0) = -1 EFAULT (Bad address)" in lines[4],
          "memfd text log: memfd_create(\"NAME\", FLAGS), mmap(...) = ADDR of memfd:NAME",
          lines)

    with tempfile.TemporaryDirectory() as d:
        log = os.path.join(d, "log.bin")
        env = testlib.clean_env(preload=True, SHMTRACE_FORMAT="binary", SHMTRACE_LOG=log)
        run([memfd_program(opts, "plain"), "transparency"], env)
        dec = subprocess.run([testlib.COMMAND, "decode", "--format", "json", log],
                             capture_output=True, text=True)
        decoded = [(c["fn"], c["args"].get("name"), c["args"].get("flags"), c["errno"],
                    c.get("object")) for c in memfd_calls(records(dec.stdout))]
        pointers = lambda rows: [r if not (r[1] or "").startswith("0x") else r[:1] + r[2:]
                                 for r in rows]
        check(pointers(decoded) == pointers(shape),
              "memfd binary log decodes to the same calls, names and objects included",
              f"{decoded}\n{shape}\n{dec.stderr[-300:]}")


def expected_object(path):
    """What the log names for a mapping /proc/self/maps shows with `path`."""
    if path.startswith("/dev/shm/"):
        return path
    if path.startswith("/memfd:") and path.endswith(" (deleted)"):
        return path[1:-len(" (deleted)")]
    return None


MAP_LABELS = ["memfd", "shm", "reused-by-file", "dup2", "dup2-shm", "shm-renamed", "dup",
              "shm-unlinked", "anonymous", "file"]


def kernel_paths(out, tag):
    """{label: (address, path)} from the `TAG LABEL ADDRESS PATH` lines memfd.c prints."""
    kernel = {}
    for line in out.splitlines():
        if not line.startswith(tag + " "):
            continue
        _, label, addr, *path = line.split(" ", 3)
        kernel[label] = (int(addr, 16), path[0] if path else "")
    return kernel


def logged_objects(fmt, err, log):
    """{address: object or None} of each successful mmap in a log of format `fmt`."""
    if fmt == "json":
        return {int(c["ret"], 16): c.get("object") for c in memfd_calls(records(err), ("mmap",))
                if c["errno"] is None}
    if fmt == "binary":
        dec = subprocess.run([testlib.COMMAND, "decode", "--format", "json", log],
                             capture_output=True, text=True)
        return {int(c["ret"], 16): c.get("object")
                for c in memfd_calls(records(dec.stdout), ("mmap",)) if c["errno"] is None}
    named = {}
    for line in err.splitlines():
        m = re.search(r" mmap\(.*\) = (0x[0-9a-f]+)(?: of (.+?))? <[0-9.]+> caller=", line)
        if m:
            named[int(m.group(1), 16)] = m.group(2)
    return named


def memfd_maps(opts):
    for fmt in ("json", "text", "binary"):
        with tempfile.TemporaryDirectory() as d:
            log = os.path.join(d, "log.bin")
            extra = {"SHMTRACE_LOG": log} if fmt == "binary" else {}
            env = testlib.clean_env(preload=True, SHMTRACE_FORMAT=fmt, **extra)
            out, err, rc, _, _ = run([memfd_program(opts, "plain"), "maps"], env)
            named = logged_objects(fmt, err, log)
        kernel = kernel_paths(out, "map")
        check(rc == 0 and sorted(kernel) == sorted(MAP_LABELS),
              f"memfd maps, {fmt} log: every case mapped", out + err[-500:])
        for label in MAP_LABELS:
            addr, path = kernel.get(label, (0, ""))
            # A copy made by dup is not followed (dup is not hooked): documented, unnamed.
            want = None if label == "dup" else expected_object(path)
            if label == "shm-renamed":
                # Documented: the fstat that confirms the file cannot see a rename; the log
                # keeps the name it was opened by.
                want = path[:-len("-to")] if path.endswith("-to") else "renamed?"
            check(addr in named and named[addr] == want,
                  f"memfd maps, {fmt} log, {label}: names {want!r} as /proc/self/maps shows "
                  f"{path!r}", f"logged {named.get(addr, 'no mmap record')!r}")
        check(expected_object(kernel.get("dup", (0, ""))[1]) == "memfd:posix-ring",
              f"memfd maps, {fmt} log, dup: the kernel does name the copy (what the shim "
              "leaves unnamed)", kernel.get("dup"))


def memfd_report(opts):
    """With the log off, mmap asks nothing: the report names each mapping's object as
    /proc/self/maps shows it when the report is made."""
    for how, argv in (("preloaded", [memfd_program(opts, "plain"), "report"]),
                      ("linked", [memfd_program(opts, "linked"), "report"])):
        env = testlib.clean_env(preload=how == "preloaded", SHMTRACE_LOG="off")
        out, err, rc, _, _ = run(argv, env)
        kernel = kernel_paths(out, "now")
        doc = next((json.loads(l) for l in out.splitlines() if l.startswith('{"event":"report"')),
                   None)
        check(rc == 0 and doc is not None and sorted(kernel) == sorted(MAP_LABELS),
              f"memfd report, log off, {how}: every case mapped, a JSON report", out + err[-500:])
        if doc is None:
            continue
        got = {}
        for m in doc["mappings"] + doc["reachable"]:
            if m.get("object"):
                got[m["object"]] = got.get(m["object"], 0) + m["count"]
        want = {}
        for label in MAP_LABELS:
            obj = None if label == "dup" else expected_object(kernel.get(label, (0, ""))[1])
            if obj:
                want[obj] = want.get(obj, 0) + 1
        check(got == want and any(o.endswith(" (deleted)") for o in want)
              and any(o.startswith("memfd:") for o in want),
              f"memfd report, log off, {how}: each mapping names its object as "
              "/proc/self/maps shows it now (unlinked ones deleted), nothing for other files",
              f"report {got}\nkernel {want}")


def memfd_leak(opts):
    out, err, rc, _, _ = run([memfd_program(opts, "plain"), "leak"],
                             testlib.clean_env(preload=True))
    lines = err.splitlines()
    site = {}
    for l in lines:
        if " mmap(" in l and " of memfd:" in l:
            site[l.split(" of ")[1].split(" ")[0]] = l.rsplit("caller=", 1)[1].split()[0]
    report = [l for l in lines if "] report:" in l]
    rows = [l.split("]   ", 1)[1] for l in lines if "]   " in l]
    check(report and "report: 1 leak left behind: 1 mapping (8192 bytes)" in report[0],
          "memfd leak: the dropped mapping is the one leak", report)
    lost = f"{site.get('memfd:posix-lost')}: 1 mapping, 8192 bytes of memfd:posix-lost"
    kept = f"{site.get('memfd:posix-kept')}: 1 mapping, 8192 bytes of memfd:posix-kept"
    reachable = lines.index(next((l for l in lines if "still reachable" in l), lines[-1]))
    check([r for r in rows if "posix-lost" in r] == [lost]
          and any(lost in l for l in lines[:reachable]),
          "memfd leak: lost, at the site of its mmap, naming the memfd", rows)
    check([r for r in rows if "posix-kept" in r] == [kept]
          and any(kept in l for l in lines[reachable:]),
          "memfd leak: the one still referenced is still reachable, naming the memfd", rows)


def memfd_command(opts):
    with tempfile.TemporaryDirectory() as d:
        for mode in ("fork", "exec", "threads", "leak"):
            rundir = os.path.join(d, mode)
            argv = [testlib.COMMAND, "--out", rundir, "--", memfd_program(opts, "plain"), mode]
            _, out, rc, _, js = run(argv, testlib.clean_env(), then=lambda: subprocess.run(
                [testlib.COMMAND, "report", "--json", "--leaks", "all", rundir],
                capture_output=True, text=True))
            try:
                doc = json.loads(js.stdout)
            except ValueError as e:
                check(False, f"memfd command, {mode}: JSON report", f"{e} {js.stderr[-300:]}")
                continue
            root = min(p["pid"] for p in doc["processes"])
            held = sorted((m["object"], m["pid"] == root, kind)
                          for kind in ("reachable", "mappings") for m in doc[kind]
                          if m.get("object"))
            want = {
                "fork": [("memfd:posix-fork", False, "reachable")],
                "exec": [("memfd:posix-exec", True, "reachable")],
                "threads": [(f"memfd:posix-t{t}-49", True, "reachable") for t in range(4)],
                "leak": [("memfd:posix-kept", True, "reachable"),
                         ("memfd:posix-lost", True, "mappings")],
            }[mode]
            check(rc == 0 and held == want,
                  f"memfd command, {mode}: the mappings left name their memfd, in the right "
                  "process", f"{held}\n{out[-1200:]}")
            if mode == "leak":
                check("OBJECT" in out and "memfd:posix-lost" in out
                      and "mapping of memfd:posix-kept" in out,
                      "memfd command: the report's tables name the objects", out[-1500:])
            if mode != "threads":
                continue
            # Each thread's mmap names the memfd that same thread just made on that number,
            # though the other threads reuse the numbers all the time.
            wrong, seen = [], 0
            for path in glob.glob(os.path.join(rundir, "*.bin")):
                dec = subprocess.run([testlib.COMMAND, "decode", "--format", "json", path],
                                     capture_output=True, text=True)
                last = {}
                for c in memfd_calls(records(dec.stdout)):
                    if c["fn"] == "memfd_create":
                        last[(c["tid"], c["ret"])] = "memfd:" + c["args"]["name"]
                    elif c["args"]["fd"] >= 0:
                        seen += 1
                        if c.get("object") != last.get((c["tid"], c["args"]["fd"])):
                            wrong.append(c)
            check(seen == 200 and not wrong,
                  "memfd command, threads: every mapping names its own thread's memfd",
                  f"{seen} mappings; wrong: {wrong[:3]}")


def memfd(opts):
    for group in (memfd_transparency, memfd_maps, memfd_report, memfd_leak, memfd_command):
        group(opts)


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
        for group in (transparency, logs, reports, command, python, memfd, sem_transparency,
                      sem_logs, sem_reports, sem_command):
            group(opts)
    finally:
        remove_leftovers()
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

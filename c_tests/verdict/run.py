#!/usr/bin/env python3
"""The verdict "lost or still reachable" (suite `verdict` of tests/run.py; make test-verdict).

    python3 c_tests/verdict/run.py [-v] [--libdir DIR] [--build DIR]

Builds c_tests/verdict, then:
  - C programs under the library (JSON report) and under `shmtrace`: mappings whose only
    pointer was overwritten are lost, at the line that made them; a pointer in a malloc'd
    struct, inside another reachable mapping, or into the middle of a mapping keeps a mapping
    still reachable; a cycle of two mappings is lost; a forgotten SysV attachment is lost;
    SHMTRACE_LEAKS / --leaks all count the still reachable ones; scans over a truncated file
    mapping, a PROT_NONE reservation and mappings another thread unmaps meanwhile do not crash;
    the checkpoint API fails exactly the test case that leaked;
  - real programs under `shmtrace --error-exitcode 1`: python3 -c pass, git status in a
    repository, node -e 0, and Apache httpd (apache2-bin, prefork, loopback port, a few
    requests, a clean stop) are clean, with still reachable mappings listed. tests/run.py
    installs them (git, nodejs, apache2-bin); a program missing here counts its checks as
    skipped, with one `skipped: <why>` line.

Runs in its own IPC namespace (unshare --ipc) when possible; the C programs remove what they
create. Prints `FAIL ...` per failed check and ends with `N passed, N failed, N skipped`.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testlib  # noqa: E402
from testlib import check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = testlib.ROOT
BUILD = LIB = COMMAND = None  # set by main() from the command line
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Werror"]
PROGRAMS = ["lost_loop", "reachable", "cycle", "sysv_lost", "scan_hostile", "checkpoint"]


def libs(name):
    """What a program links beyond libc."""
    return {
        "scan_hostile": ["-ldl", "-lpthread"],
        "checkpoint": ["-I" + os.path.join(ROOT, "include"), "-L" + os.path.dirname(LIB),
                       "-lshmtrace"],
    }.get(name, [])


def build():
    """Compiles the C programs; counts it as one check; returns whether all built."""
    os.makedirs(BUILD, exist_ok=True)
    errors = []
    for name in PROGRAMS:
        src = os.path.join(HERE, name + ".c")
        r = subprocess.run(["cc", *CFLAGS, "-o", os.path.join(BUILD, name), src, *libs(name)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(r.stderr.strip()[-800:])
    return check(not errors, "c_tests/verdict builds (-Wall -Wextra -Werror)", "\n".join(errors))


def preloaded(name, **env):
    """Runs a verdict program under the library with a JSON log; (process, exit report)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        e = testlib.clean_env(True, SHMTRACE_LOG=log, SHMTRACE_FORMAT="json",
                              LD_LIBRARY_PATH=os.path.dirname(LIB), **env)
        p = subprocess.run([os.path.join(BUILD, name)], env=e, capture_output=True, text=True,
                           timeout=120)
        reports = [json.loads(line) for line in open(log) if '"event":"report"' in line]
    return p, (reports[-1] if reports else {})


def traced(argv, *options, cwd=None, timeout=300):
    """Runs argv under `shmtrace --json`; (exit status, merged report or {})."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "report.json")
        p = subprocess.run([COMMAND, "--out", os.path.join(tmp, "run"), "--json", "-o", out,
                            *options, "--", *argv], capture_output=True, text=True, cwd=cwd,
                           env=testlib.clean_env(), timeout=timeout)
        try:
            doc = json.load(open(out))
        except (OSError, ValueError):
            doc = {}
    if not doc:
        print(p.stderr[-2000:])
    return p.returncode, doc


def line_of(name, marker):
    with open(os.path.join(HERE, name + ".c")) as f:
        return next(i for i, line in enumerate(f, 1) if marker in line)


def mapping_total(entries):
    return sum(m["count"] for m in entries), sum(m["bytes"] for m in entries)


def c_programs():
    # Four mappings from one line, each overwriting the pointer to the one before.
    p, r = preloaded("lost_loop")
    check(p.returncode == 0, "lost_loop: runs", p.stderr[-500:])
    check(mapping_total(r.get("mappings", [])) == (3, 3 * 8192),
          "lost_loop: the three overwritten mappings are lost", r.get("mappings"))
    check(mapping_total(r.get("reachable", [])) == (1, 8192),
          "lost_loop: the last one, still in a global, is still reachable", r.get("reachable"))
    check(r.get("scan", {}).get("bytes", 0) > 0, "lost_loop: the report states the scan cost",
          r.get("scan"))
    status, doc = traced([os.path.join(BUILD, "lost_loop")], "--error-exitcode", "1")
    line = line_of("lost_loop", "LOST_LINE")
    sites = [m["site"] for m in doc.get("mappings", [])]
    check(status == 1 and doc.get("verdict", {}).get("mappings") == 3,
          "lost_loop under shmtrace: 3 lost mappings fail the run", (status, doc.get("verdict")))
    check(any(s and s.get("line") == line and s.get("file", "").endswith("lost_loop.c")
              for s in sites), f"lost_loop under shmtrace: lost at lost_loop.c:{line}", sites)

    p, r = preloaded("reachable")
    check(p.returncode == 0 and not r.get("mappings") and r.get("clean") is True,
          "reachable: no mapping lost, the report is clean", r)
    check(mapping_total(r.get("reachable", [])) == (4, (1 + 2 + 3 + 4) * 4096),
          "reachable: in a malloc'd struct, inside a reachable mapping, and into the middle: "
          "all four still reachable", r.get("reachable"))
    p, r = preloaded("reachable", SHMTRACE_LEAKS="all", SHMTRACE_EXITCODE="3")
    check(p.returncode == 3 and r.get("clean") is False,
          "reachable: SHMTRACE_LEAKS=all counts them (SHMTRACE_EXITCODE applies)", p.returncode)
    p, r = preloaded("reachable", SHMTRACE_LEAKS="some", SHMTRACE_EXITCODE="3")
    warnings = [l for l in p.stderr.splitlines() if "SHMTRACE_LEAKS" in l]
    check(p.returncode == 0 and len(warnings) == 1,
          "reachable: a bad SHMTRACE_LEAKS is one warning line and the default", p.stderr[-500:])
    status, doc = traced([os.path.join(BUILD, "reachable")], "--error-exitcode", "1")
    check(status == 0 and doc.get("verdict", {}).get("reachable") == 4,
          "reachable under shmtrace: clean, 4 still reachable", doc.get("verdict"))
    status, doc = traced([os.path.join(BUILD, "reachable")], "--error-exitcode", "1",
                         "--leaks", "all")
    check(status == 1 and doc.get("verdict", {}).get("leaks") == 4,
          "reachable under shmtrace --leaks all: 4 leaks", doc.get("verdict"))

    p, r = preloaded("cycle")
    check(mapping_total(r.get("mappings", [])) == (2, 3 * 4096) and not r.get("reachable"),
          "cycle: two mappings pointing only at each other are both lost", r)

    p, r = preloaded("sysv_lost")
    lost = r.get("attachments", [])
    kept = r.get("reachable_attachments", [])
    check(p.returncode == 0 and len(lost) == 1 and len(kept) == 1 and not r.get("segments"),
          "sysv_lost: the forgotten attachment is lost, the kept one still reachable, no "
          "segment outlives the run", r)

    p, r = preloaded("scan_hostile")
    check(p.returncode == 0 and "scans 200" in p.stdout and "report" == r.get("event"),
          "scan_hostile: 200 scans while a thread unmaps, a truncated file mapping and PROT_NONE "
          "reservations, then the exit report: no crash", (p.returncode, p.stdout, p.stderr[-500:]))

    p, _ = preloaded("checkpoint")
    lines = dict(l.split(" ", 1) for l in p.stdout.splitlines() if " " in l)
    check(p.returncode == 0, "checkpoint: runs", p.stderr[-500:])
    check("leaks=0" in lines.get("clean", "") and "reachable_mappings=0" in lines.get("clean", ""),
          "checkpoint: the clean test has nothing", lines.get("clean"))
    check(re.search(r"leaks=2 segments=1 lost_mappings=1 lost_bytes=12288 .*sites=2",
                    lines.get("leaky", "")),
          "checkpoint: the leaky test has its segment and its lost mapping, two sites",
          lines.get("leaky"))
    check(re.search(r"leaks=0 .*reachable_mappings=1 reachable_bytes=8192",
                    lines.get("keeps", "")),
          "checkpoint: the test keeping a mapping has it still reachable, no leak",
          lines.get("keeps"))


# ---- real programs ------------------------------------------------------------------------

def found(command):
    """The path of `command` if it is installed (tests/run.py installs the suite's packages)."""
    return shutil.which(command) or (os.path.exists(command) and command) or None


def clean_with_reachable(what, status, doc, want_reachable=True):
    v = doc.get("verdict", {})
    check(status == 0 and v.get("clean") is True,
          f"{what}: clean under --error-exitcode 1", (status, v.get("text")))
    if want_reachable:
        check(v.get("reachable", 0) > 0 and doc.get("reachable"),
              f"{what}: its still reachable mappings are listed", v.get("text"))


def real_programs():
    python = found("python3")
    if python:
        clean_with_reachable("python3 -c pass", *traced([python, "-c", "pass"],
                                                        "--error-exitcode", "1"))
    else:
        testlib.skip("python3 -c pass", "python3 is not installed", 2)

    git = found("git")
    if git:
        with tempfile.TemporaryDirectory() as repo:
            g = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
            subprocess.run([*g, "init", "-q"], cwd=repo, check=True)
            for i in range(20):
                with open(os.path.join(repo, f"f{i}"), "w") as f:
                    f.write(f"{i}\n" * 100)
                subprocess.run([*g, "add", f"f{i}"], cwd=repo, check=True)
                subprocess.run([*g, "commit", "-qm", f"c{i}"], cwd=repo, check=True)
            subprocess.run([*g, "gc", "-q"], cwd=repo, check=True)
            with open(os.path.join(repo, "f0"), "a") as f:
                f.write("changed\n")
            clean_with_reachable("git status --short", *traced([git, "status", "--short"],
                                                               "--error-exitcode", "1", cwd=repo))
    else:
        testlib.skip("git status", "git is not installed (Debian package git)", 2)

    node = found("node")
    if node:
        clean_with_reachable("node -e 0", *traced([node, "-e", "0"], "--error-exitcode", "1"))
    else:
        testlib.skip("node -e 0", "node is not installed (Debian package nodejs)", 2)

    apache = found("/usr/sbin/apache2")
    if apache:
        apache_httpd(apache)
    else:
        testlib.skip("apache2", "not installed (Debian package apache2-bin)", 2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apache_httpd(apache):
    """Prefork httpd in the foreground on a loopback port, a few requests, a graceful stop."""
    modules = "/usr/lib/apache2/modules"
    if not os.path.exists(os.path.join(modules, "mod_mpm_prefork.so")):
        testlib.skip("apache2", "apache2-bin has no mod_mpm_prefork.so", 2)
        return
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        docs = os.path.join(tmp, "htdocs")
        os.makedirs(docs)
        with open(os.path.join(docs, "index.html"), "w") as f:
            f.write("hello\n")
        conf = os.path.join(tmp, "httpd.conf")
        with open(conf, "w") as f:
            f.write(f"""ServerRoot "{tmp}"
LoadModule mpm_prefork_module {modules}/mod_mpm_prefork.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule dir_module {modules}/mod_dir.so
LoadModule mime_module {modules}/mod_mime.so
Listen 127.0.0.1:{port}
ServerName localhost
PidFile {tmp}/httpd.pid
ErrorLog {tmp}/error.log
DocumentRoot "{docs}"
DirectoryIndex index.html
TypesConfig /etc/mime.types
StartServers 2
MinSpareServers 1
MaxSpareServers 3
Mutex file:{tmp}
User nobody
Group nogroup
""")
        out = os.path.join(tmp, "report.json")
        os.chmod(tmp, 0o755)
        env = testlib.clean_env()
        # setsid: at its stop httpd signals its whole process group, which must not be ours.
        p = subprocess.Popen([COMMAND, "--out", os.path.join(tmp, "run"), "--json", "-o", out,
                              "--error-exitcode", "1", "--", "setsid", apache, "-D",
                              "FOREGROUND", "-f", conf], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        served = 0
        deadline = time.time() + 30
        while time.time() < deadline and served < 5:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    served += r.read() == b"hello\n"
            except OSError:
                time.sleep(0.3)
        pid = None
        try:
            pid = int(open(os.path.join(tmp, "httpd.pid")).read())
        except (OSError, ValueError):
            pass
        if pid:
            os.kill(pid, signal.SIGWINCH)  # graceful-stop: children finish, then exit
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        check(served == 5, "apache2: serves five requests under shmtrace", err[-1000:])
        try:
            doc = json.load(open(out))
        except (OSError, ValueError):
            doc = {}
        errors = open(os.path.join(tmp, "error.log")).read() if os.path.exists(
            os.path.join(tmp, "error.log")) else ""
        if not doc:
            print(errors[-2000:], err[-2000:])
        # This build of APR returns its pools' pages by the clean stop: nothing may be left
        # to list, but whatever is must be still reachable, not lost.
        clean_with_reachable("apache2 (prefork, clean stop)", p.returncode, doc,
                             want_reachable=False)
        testlib.note("apache2: %d still reachable mapping(s) listed"
                     % doc.get("verdict", {}).get("reachable", 0))


def main():
    global BUILD, LIB, COMMAND
    opts = testlib.parse_args(__doc__, "verdict")
    BUILD, LIB, COMMAND = opts.build, testlib.LIB, testlib.COMMAND
    if not os.path.exists(LIB) or not os.path.exists(COMMAND):
        check(False, "the library and the command are built", "build first: make lib")
        return testlib.summary()
    testlib.isolate_ipc()
    if build():
        c_programs()
    else:
        testlib.skip("the C programs", "they did not build", 19)
    real_programs()
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The test front door (`make test`): installs what the suites need, runs them, and ends with
exactly one line `N passed, M failed, K skipped` covering all of them.

    python3 tests/run.py [--no-install] [SUITE ...]

SUITEs (default: all, in this order):

  lint          cargo fmt --check and clippy -D warnings (one check each)
  rust          the library's unit tests and the command's tests (cargo test)
  install       make install/uninstall, pkg-config and the downstream recipe
  transparency  C scenarios natively, linked and preloaded: same results and errno; every
                call logged as made; the ledger against the kernel; the exit report
  bad-input     bad arguments to every hook, signals, SIGKILL, secure execution, log file
                safety, calls after teardown
  binary-log    the binary log: durable under SIGKILL, threads, fork, exec, a full disk
  findings      every audit finding's program and its corrected version, suppressions
  allocators    foreign allocators, threads on every hook, fork storms, memory flatness
  verdict       lost or still reachable: C programs for each case, the checkpoint API, and
                real programs (python3, git, node, apache2) clean under the command
  html          the HTML report and the trace JSON against the run's logs and JSON report;
                the page in headless Chromium (lanes, leaks, findings, clicks)
  fuzz          the differential fuzzer's short fixed-seed run (fuzz/run.py; `make fuzz`
                runs it at length): random call sequences natively and under the shim, the
                ledger against the kernel, the log against the calls; its regression scenarios
  posix         POSIX shared memory: shm_open/shm_unlink transparent and logged, names left
                in /dev/shm reported by the shim and the command, Python's shared_memory
  msgq          System V message queues: msgget/msgsnd/msgrcv/msgctl transparent and logged
                (waits across processes, EINTR, EIDRM), queues left reported with the messages
                and bytes /proc/sysvipc/msg says they hold, by the shim and the command

Each suite's own lines pass through; its count line becomes `-- SUITE: N passed, ...`. A
suite that ends without its count line (a crash) counts one failure. Exits 1 if anything
failed. Standard library only.
"""

import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
SUITES = {
    "lint": [["cargo", "fmt", "--all", "--check"],
             ["cargo", "clippy", "-q", "--release", "--all-targets", "--", "-D", "warnings"]],
    "rust": [["cargo", "test", "--release", "-q", "--no-fail-fast"]],
    "install": [[PY, "tests/install_recipe.py"]],
    "transparency": [[PY, "c_tests/run.py"]],
    "bad-input": [[PY, "c_tests/edge/run.py"]],
    "binary-log": [[PY, "c_tests/binary/run.py"]],
    "findings": [[PY, "c_tests/findings/run.py"]],
    "allocators": [[PY, "c_tests/hostile/run.py"]],
    "verdict": [[PY, "c_tests/verdict/run.py"]],
    "html": [[PY, "tests/html/run.py"]],
    "fuzz": [[PY, "fuzz/run.py"]],
    "posix": [[PY, "c_tests/posix/run.py"]],
    "msgq": [[PY, "c_tests/msgq/run.py"]],
}

# Debian packages the suites use beyond Rust, gcc, make and Python: (package, how to tell it
# is there, the suites that need it). docs/testing.md says why each is needed.
PACKAGES = [
    ("util-linux", ["ipcs", "ipcrm", "unshare", "setpriv"], ["transparency", "bad-input",
                                                             "binary-log", "findings",
                                                             "allocators", "rust",
                                                             "verdict", "html",
                                                             "fuzz", "posix", "msgq"]),
    ("mount", ["mount", "umount"], ["binary-log"]),
    ("binutils", ["nm", "readelf", "strip", "objcopy"], ["transparency", "install",
                                                         "allocators", "rust"]),
    ("g++", ["g++"], ["rust"]),
    ("libc6-dev", ["libc.a"], ["rust"]),
    ("pkg-config", ["pkg-config"], ["install"]),
    ("libcap2-bin", ["setcap", "getcap"], ["bad-input"]),
    ("gdb", ["gdb"], ["bad-input", "allocators"]),
    ("libjemalloc2", ["libjemalloc.so.2"], ["allocators"]),
    ("libtcmalloc-minimal4", ["libtcmalloc_minimal.so.4"], ["allocators"]),
    ("git", ["git"], ["verdict"]),
    ("nodejs", ["node"], ["verdict"]),
    ("apache2-bin", ["/usr/sbin/apache2"], ["verdict"]),
    ("chromium", ["chromium"], ["html"]),
    ("strace", ["strace"], ["transparency"]),
]
LIBDIRS = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
COUNTS = re.compile(r"(\d+) passed, (\d+) failed, (\d+) skipped\Z")
CARGO_RESULT = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")


def present(probe):
    if probe.startswith("/"):
        return os.path.exists(probe)
    if probe.startswith("lib"):
        return any(os.path.exists(os.path.join(d, probe)) for d in LIBDIRS)
    return shutil.which(probe) is not None


def install(suites):
    """Installs the missing packages these suites need (apt-get update only then)."""
    need = [pkg for pkg, probes, users in PACKAGES
            if set(users) & set(suites) and not all(map(present, probes))]
    if not need:
        return
    why = ("not root" if os.geteuid() != 0 else
           "no apt-get" if not shutil.which("apt-get") else None)
    if why:
        print(f"note: cannot install {' '.join(need)} ({why}): the checks that need them "
              "are skipped")
        return
    print(f"installing {' '.join(need)} (apt-get)")
    sys.stdout.flush()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *need]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"note: {' '.join(cmd)} failed: the checks that need {' '.join(need)} are "
                  f"skipped\n{r.stderr.strip()[-600:]}")
            return


def run_suite(name):
    """Runs one suite, passing its lines through; returns (passed, failed, skipped)."""
    total = [0, 0, 0]
    for cmd in SUITES[name]:
        counted = False
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        for line in proc.stdout:
            line = line.rstrip("\n")
            m = COUNTS.match(line) or CARGO_RESULT.search(line)
            if m:
                counted = True
                total = [t + int(n) for t, n in zip(total, m.groups())]
                if COUNTS.match(line):
                    continue
            print(line)
            sys.stdout.flush()
        rc = proc.wait()
        if name == "lint":  # a tool with no counts of its own: one check
            counted = True
            total[0 if rc == 0 else 1] += 1
        if not counted or (rc != 0 and total[1] == 0):
            total[1] += 1
            print(f"FAIL {' '.join(cmd)}: exit status {rc}"
                  + ("" if counted else ", no count line (crashed?)"))
    return total


def main():
    args = sys.argv[1:]
    no_install = "--no-install" in args
    names = [a for a in args if a != "--no-install"] or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        sys.exit(f"unknown suite(s) {' '.join(unknown)}; known: {' '.join(SUITES)}")
    if not no_install:
        install(names)
    start, grand = time.time(), [0, 0, 0]
    for name in names:
        print(f"== {name}")
        sys.stdout.flush()
        t0 = time.time()
        counts = run_suite(name)
        grand = [g + c for g, c in zip(grand, counts)]
        print(f"-- {name}: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped "
              f"({time.time() - t0:.0f} s)")
    print(f"({time.time() - start:.0f} s)")
    print(f"{grand[0]} passed, {grand[1]} failed, {grand[2]} skipped")
    return 1 if grand[1] else 0


if __name__ == "__main__":
    sys.exit(main())

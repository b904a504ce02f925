#!/usr/bin/env python3
"""make test-install: `make install`/`uninstall` into temporary prefixes (staged with DESTDIR
and direct), pkg-config, and the downstream recipe in examples/downstream, whose `make check`
must fail on its deliberate leak, naming it, and pass once fixed. Ends with
`N passed, M failed, K skipped`.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "c_tests"))
import testlib  # noqa: E402
from testlib import check  # noqa: E402


def sh(*args, env=None, cwd=TOP):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def cargo_version():
    text = open(os.path.join(TOP, "Cargo.toml")).read()
    return re.search(r'^version = "(.*)"', text, re.M)[1]


def staged_install(tmp, version):
    """DESTDIR install: exactly the expected files, a proper soname; uninstall removes them."""
    stage = os.path.join(tmp, "stage")
    r = sh("make", "-s", "install", f"DESTDIR={stage}", "PREFIX=/usr")
    if not check(r.returncode == 0, "make install DESTDIR=... PREFIX=/usr", r.stderr[-400:]):
        return
    want = sorted([
        "usr/bin/shmtrace",
        "usr/include/shmtrace.h", "usr/lib/libshmtrace.so", "usr/lib/libshmtrace.so.0",
        f"usr/lib/libshmtrace.so.{version}", "usr/lib/pkgconfig/shmtrace.pc",
        "usr/share/doc/shmtrace/README.md", "usr/share/doc/shmtrace/library.md",
        "usr/share/doc/shmtrace/log-format.md", "usr/share/doc/shmtrace/findings.md",
        "usr/share/doc/shmtrace/allocators.md", "usr/share/doc/shmtrace/limits.md",
        "usr/share/doc/shmtrace/shmtrace-command.md",
        "usr/share/man/man7/shmtrace.7"])
    check(files_under(stage) == want, "install puts exactly the expected files in place",
          str(files_under(stage)))
    lib = os.path.join(stage, "usr/lib")
    check(os.readlink(os.path.join(lib, "libshmtrace.so")) == "libshmtrace.so.0"
          and os.readlink(os.path.join(lib, "libshmtrace.so.0")) == f"libshmtrace.so.{version}",
          "libshmtrace.so -> .so.0 -> .so.VERSION symlinks")
    soname = sh("readelf", "-d", os.path.join(lib, f"libshmtrace.so.{version}")).stdout
    check("Library soname: [libshmtrace.so.0]" in soname, "the library's soname is libshmtrace.so.0")
    pc = open(os.path.join(lib, "pkgconfig/shmtrace.pc")).read()
    check("prefix=/usr\n" in pc and "/stage" not in pc, "shmtrace.pc names PREFIX, not DESTDIR")
    man = open(os.path.join(stage, "usr/share/man/man7/shmtrace.7")).read()
    check(f'"shmtrace {version}"' in man, "the man page carries the version")
    r = sh("make", "-s", "uninstall", f"DESTDIR={stage}", "PREFIX=/usr")
    check(r.returncode == 0 and files_under(stage) == [], "make uninstall removes exactly that",
          str(files_under(stage)))


def downstream(tmp, version):
    """Install into a prefix; build and check the downstream example with pkg-config alone."""
    if testlib.missing("pkg-config"):
        return testlib.skip("downstream recipe", "pkg-config not installed (Debian: pkg-config)")
    prefix = os.path.join(tmp, "prefix")
    r = sh("make", "-s", "install", f"PREFIX={prefix}")
    if not check(r.returncode == 0, "make install PREFIX=tmp", r.stderr[-400:]):
        return
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib/pkgconfig"))
    env.pop("LD_PRELOAD", None)
    check(sh("pkg-config", "--modversion", "shmtrace", env=env).stdout.strip() == version,
          "pkg-config --modversion shmtrace is the crate version")
    header = open(os.path.join(prefix, "include/shmtrace.h")).read()
    check(f'#define SHMTRACE_VERSION "{version}"' in header,
          "the installed header's SHMTRACE_VERSION is the crate version")

    run = subprocess.run([os.path.join(prefix, "bin/shmtrace"), "--out",
                          os.path.join(tmp, "run"), "--", "true"],
                         capture_output=True, text=True, env=env)
    check(run.returncode == 0 and "clean" in run.stderr,
          "the installed shmtrace finds the installed library and reports", run.stderr[-400:])

    proj = os.path.join(tmp, "proj")
    shutil.copytree(os.path.join(TOP, "examples/downstream"), proj)
    r = sh("make", "check", cwd=proj, env=env)
    out = r.stdout + r.stderr
    leaked = re.findall(r"segment shmid=(\d+) .*never removed, still exists", out)
    try:
        check(r.returncode != 0, "downstream: `make check` fails on the deliberate leak")
        check(len(leaked) == 1 and "test_queue leaks" in out,
              "downstream: the failure names the leaked segment", out[-600:])
        check(leaked and os.path.exists("/proc/sysvipc/shm") and any(
            line.split()[1:2] == leaked[:1] for line in open("/proc/sysvipc/shm")),
            "downstream: the kernel still holds the segment the report names")
    finally:
        for shmid in leaked:
            sh("ipcrm", "-m", shmid)
    r = sh("make", "check", "FIXED=1", cwd=proj, env=env)
    check(r.returncode == 0, "downstream: `make check FIXED=1` passes", (r.stdout + r.stderr)[-600:])

    r = sh("make", "-s", "uninstall", f"PREFIX={prefix}")
    check(r.returncode == 0 and files_under(prefix) == [], "make uninstall PREFIX=tmp",
          str(files_under(prefix)))


def main():
    testlib.parse_args(__doc__, "install")
    testlib.isolate_ipc()
    version = cargo_version()
    with tempfile.TemporaryDirectory(prefix="shmtrace-install.") as tmp:
        staged_install(tmp, version)
        downstream(tmp, version)
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

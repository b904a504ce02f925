"""What every test runner shares: counted checks and skips, the one summary line each ends with
(`N passed, M failed, K skipped`), argument parsing, where the library, the command and the
build directories are, building a suite's programs, the list of hooked functions (read from
include/shmtrace.h), running with and without the shim, SysV cleanup and a private IPC
namespace, and copies a dropped-privilege user can reach. Standard library only."""

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "include", "shmtrace.h")
LIBDIR = os.path.join(ROOT, "target", "release")
LIB = os.path.join(LIBDIR, "libshmtrace.so")
COMMAND = os.path.join(LIBDIR, "shmtrace")

verbose = False
passed = failed = skipped = 0


def check(ok, what, detail=""):
    """Counts one check; prints it when it fails (or always with -v); returns whether it held."""
    global passed, failed
    if ok:
        passed += 1
        if verbose:
            print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}" + (f": {detail}" if detail else ""))
    sys.stdout.flush()
    return bool(ok)


def skip(what, why, count=1):
    """Counts `count` checks that could not run here (never as passed), with one line."""
    global skipped
    skipped += count
    print(f"skipped: {what}: {why}")
    sys.stdout.flush()


def first(items, n=3):
    """The first n items, joined, and how many more there are."""
    items = list(items)
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return "; ".join(str(x) for x in items[:n]) + more


def note(text):
    print(f"note {text}")
    sys.stdout.flush()


def summary():
    """Prints the summary line; the exit status: 1 if anything failed."""
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.stdout.flush()
    return 1 if failed else 0


# ---- arguments and paths ----------------------------------------------------------------

def parse_args(doc, build, names=None, flags=()):
    """The runners' common command line: [-v] [--libdir DIR] [--build DIR] [flags] [NAME ...].

    `build` names the suite's directory under build/; `names` are the groups a run may be
    limited to (None: the runner has no groups); `flags` extra boolean options.
    Sets LIBDIR, LIB and COMMAND here; returns the options with `.build`, `.names` (all
    groups when none given) and `.make_vars` (LIBDIR=/BUILD= for the suite's Makefile)."""
    global verbose, LIBDIR, LIB, COMMAND
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-v", action="store_true", help="print every check")
    p.add_argument("--libdir", help="where libshmtrace.so and shmtrace are (target/release)")
    p.add_argument("--build", help=f"where the test programs go (build/{build})")
    for flag in flags:
        p.add_argument(flag, action="store_true")
    if names is not None:
        p.add_argument("names", nargs="*", metavar="NAME",
                       help=f"only these groups: {' '.join(names)}")
    opts = p.parse_args()
    unknown = [n for n in getattr(opts, "names", []) if n not in names]
    if unknown:
        p.error(f"unknown {' '.join(unknown)} (known: {' '.join(names)})")
    verbose = opts.v
    opts.make_vars = []
    if opts.libdir:
        LIBDIR = os.path.abspath(opts.libdir)
        LIB, COMMAND = os.path.join(LIBDIR, "libshmtrace.so"), os.path.join(LIBDIR, "shmtrace")
        opts.make_vars.append(f"LIBDIR={LIBDIR}")
    if opts.build:
        opts.make_vars.append(f"BUILD={os.path.abspath(opts.build)}")
    opts.build = os.path.abspath(opts.build or os.path.join(ROOT, "build", build))
    opts.names = getattr(opts, "names", None) or list(names or [])
    return opts


def make(directory, args, what=None):
    """Builds a suite's programs (make -C directory ARGS: variables, targets); counts it as a
    check; returns whether it built."""
    r = subprocess.run(["make", "-C", directory, *args], capture_output=True, text=True)
    what = what or f"make -C {os.path.relpath(directory, ROOT)} (-Wall -Wextra -Werror)"
    return check(r.returncode == 0, what, (r.stdout + r.stderr).strip()[-1500:])


def hooks():
    """The hooked functions in SHMTRACE_CALL_* order, as the header defines them."""
    with open(HEADER) as f:
        text = f.read()
    index = {int(n): name.lower() for name, n in
             re.findall(r"^#define SHMTRACE_CALL_(\w+) (\d+)$", text, re.M)}
    count = int(re.search(r"^#define SHMTRACE_FUNCTIONS (\d+)$", text, re.M)[1])
    if sorted(index) != list(range(count)):
        raise RuntimeError(f"{HEADER}: SHMTRACE_CALL_* {sorted(index)} do not number "
                           f"0..SHMTRACE_FUNCTIONS-1 ({count})")
    return [index[i] for i in range(count)]


# ---- running programs -------------------------------------------------------------------

def clean_env(preload=None, **extra):
    """The environment without any SHMTRACE_*/LD_PRELOAD/LD_DEBUG of the caller's; with the
    shim preloaded if `preload` (True: the library; or a list of libraries)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SHMTRACE_") and k not in ("LD_PRELOAD", "LD_DEBUG")}
    if preload:
        env["LD_PRELOAD"] = LIB if preload is True else ":".join(preload)
    env.update(extra)
    return env


def missing(*tools):
    """The tools of `tools` not on PATH."""
    return [t for t in tools if not shutil.which(t)]


@contextlib.contextmanager
def private_copies(paths):
    """Copies of `paths` (the library, test programs) in a private temporary directory of mode
    0755: a snapshot a rebuild cannot change, which a user with dropped privileges can reach
    even when they cannot enter the checkout (a clone under a 0700 home). Yields (directory,
    {basename: copy}); removed afterwards. A copied libshmtrace.so gets its soname link."""
    d = tempfile.mkdtemp(prefix="shmtrace-copies.")
    try:
        os.chmod(d, 0o755)
        copies = {}
        for path in paths:
            dest = os.path.join(d, os.path.basename(path))
            shutil.copy2(path, dest)
            os.chmod(dest, 0o755)
            copies[os.path.basename(path)] = dest
            if os.path.basename(path) == "libshmtrace.so":
                os.symlink("libshmtrace.so", os.path.join(d, "libshmtrace.so.0"))
        yield d, copies
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- SysV objects and the IPC namespace -------------------------------------------------

def sysv_ids():
    """Every segment, semaphore set and message queue this IPC namespace has: {(kind, id)}."""
    ids = set()
    for kind in ("shm", "sem", "msg"):
        with open(f"/proc/sysvipc/{kind}") as f:
            next(f)
            ids |= {(kind, int(line.split()[1])) for line in f if line.strip()}
    return ids


def remove_sysv(objs):
    """Removes SysV objects given as (kind, id), kind "shm", "sem" or "msg"; gone ones are
    fine."""
    flags = {"shm": "-m", "sem": "-s", "msg": "-q"}
    for kind, ident in objs:
        subprocess.run(["ipcrm", flags[kind], str(ident)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def can_unshare():
    """Whether programs can run in a private IPC namespace (unshare --ipc: root)."""
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--ipc", "true"], capture_output=True).returncode == 0


UNSHARE_IPC = ["unshare", "--ipc", "--"]


def isolate_ipc():
    """Re-runs this script in a new IPC namespace, once, where that is permitted: its
    snapshots of /proc/sysvipc see only its own objects, and whatever it leaves, even after a
    crash, dies with the namespace."""
    if os.environ.get("SHMTRACE_TEST_IPCNS") or not can_unshare():
        return
    os.environ["SHMTRACE_TEST_IPCNS"] = "1"
    sys.stdout.flush()
    os.execvp("unshare", [*UNSHARE_IPC, sys.executable, *sys.argv])

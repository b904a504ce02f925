"""What the C test runners share: counted checks, notes, and the one summary line each ends
with (`N passed, N failed`). Standard library only."""

import sys

verbose = False
passed = failed = 0


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


def first(items, n=3):
    """The first n items, joined, and how many more there are."""
    items = list(items)
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return "; ".join(str(x) for x in items[:n]) + more


def note(text):
    print(f"note {text}")
    sys.stdout.flush()


def sysv_ids():
    """Every shared memory segment and semaphore set this IPC namespace has: {(kind, id)}."""
    ids = set()
    for kind in ("shm", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            next(f)
            ids |= {(kind, int(line.split()[1])) for line in f if line.strip()}
    return ids


def summary():
    """Prints the summary line; the exit status: 1 if anything failed."""
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0

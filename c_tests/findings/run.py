#!/usr/bin/env python3
"""Audit findings: every finding's triggering program and its corrected version,
suppressions by code and by site, and the exit status with and without error findings.

    python3 c_tests/findings/run.py [-v]

Builds c_tests/findings (NAME.bad, NAME.fixed), then for every program:
  - natively, then preloaded with a JSON log: same stdout and exit status (the shim changes
    no result; SHMTRACE_BLOCK_WARN_MS=100 is set for all, so every semop waits in slices);
  - NAME.bad logs its finding, and only that code: a `finding` record with the documented
    severity, a `site` inside the program's code, a message; the process's exit report lists
    it; in the text format, a `finding CODE SEVERITY (name)` line;
  - NAME.fixed logs no finding at all.
Then: SHMTRACE_SUPPRESS by code and by name in the shim, one warning naming file and line for
a malformed line, site rules (function, file:line) applied by the `shmtrace` command;
SHMTRACE_EXITCODE and `shmtrace --error-exitcode` with an error finding, a warning only, and
a suppressed error.

Each program runs in its own IPC namespace (unshare --ipc) when possible; the programs also
remove every object they create (findings.h), so nothing is left behind either way. Prints
`FAIL ...` per failed check and ends with `N passed, M failed, K skipped`; exits 1 on any
failure.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import testlib  # noqa: E402
from testlib import check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(ROOT, "build", "findings")
LIB = testlib.LIB
COMMAND = testlib.COMMAND

# program: (code, name, severity)
CASES = {
    "world_accessible": ("SHM001", "world-accessible", "error"),
    "create_without_excl": ("SHM002", "create-without-excl", "warning"),
    "write_exec": ("SHM003", "write-exec-mapping", "warning"),
    "fixed_replaces": ("SHM004", "fixed-replaces-live", "error"),
    "shmdt_not_attachment": ("SHM005", "shmdt-not-attachment", "error"),
    "munmap_never_mapped": ("SHM006", "munmap-never-mapped", "warning"),
    "double_release": ("SHM007", "double-release", "error"),
    "use_after_remove": ("SHM008", "use-after-remove", "error"),
    "exit_holding_semaphore": ("SHM009", "exit-holding-semaphore", "warning"),
    "semop_blocked": ("SHM010", "semop-blocked", "warning"),
    "size_not_page_multiple": ("SHM011", "size-not-page-multiple", "info"),
    "foreign_creator": ("SHM012", "foreign-creator", "info"),
    "sem_not_closed": ("SHM014", "sem-not-closed", "warning"),
}

UNSHARE = []


def run(argv, env_extra=None, preload=False, timeout=120):
    env = testlib.clean_env(SHMTRACE_BLOCK_WARN_MS="100")
    env.update(env_extra or {})
    prefix = list(UNSHARE)
    if preload:
        # Through env, so that unshare itself is not traced.
        prefix += ["env", f"LD_PRELOAD={LIB}"]
    return subprocess.run(prefix + argv, env=env, capture_output=True, text=True, timeout=timeout)


def records(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def program_ranges(recs):
    """pid -> (start, end) of the program's code, a fork child inheriting its parent's."""
    ranges = {}
    parents = {}
    for r in recs:
        if r["event"] == "start" and r.get("modules"):
            m = r["modules"][0]
            ranges[r["pid"]] = (int(m["start"], 16), int(m["end"], 16))
        elif r["event"] == "fork":
            parents[r["pid"]] = r["ppid"]
    for pid, ppid in parents.items():
        if pid not in ranges and ppid in ranges:
            ranges[pid] = ranges[ppid]
    return ranges


def run_case(tmp, prog, variant):
    code, name, severity = CASES[prog]
    exe = os.path.join(BUILD, f"{prog}.{variant}")
    label = f"{prog}.{variant}"
    native = run([exe])
    log = os.path.join(tmp, f"{label}.jsonl")
    traced = run([exe], {"SHMTRACE_FORMAT": "json", "SHMTRACE_LOG": log}, preload=True)
    check(native.returncode == 0, f"{label}: native exit 0 ({native.returncode}: {native.stdout}{native.stderr})")
    check(
        (traced.returncode, traced.stdout) == (native.returncode, native.stdout),
        f"{label}: same exit status and stdout preloaded ({traced.returncode} {traced.stdout!r} vs {native.stdout!r})",
    )
    if native.stdout.strip() == "skip":
        return testlib.skip(f"{label}: its finding", "the program needs root")
    recs = records(log)
    found = [r for r in recs if r["event"] == "finding"]
    if variant == "fixed":
        check(not found, f"{label}: no finding ({[f['code'] for f in found]})")
        return
    check(found and all(f["code"] == code for f in found),
          f"{label}: {code} and only {code} ({[f['code'] for f in found]})")
    ranges = program_ranges(recs)
    for f in found:
        site = int(f["site"], 16)
        lo, hi = ranges.get(f["pid"], (0, 0))
        check(f["severity"] == severity and f["name"] == name, f"{label}: {code} is {name}, {severity}")
        check(lo <= site < hi, f"{label}: site {f['site']} in the program [{lo:#x}, {hi:#x})")
        check(len(f["message"]) > 20 and f["fn"], f"{label}: message and fn")
    reports = {r["pid"]: r for r in recs if r["event"] == "report"}
    for pid in {f["pid"] for f in found}:
        rep = reports.get(pid, {})
        codes = [x["code"] for x in rep.get("findings", [])]
        check(code in codes and rep.get("finding_totals", {}).get(severity, 0) >= 1,
              f"{label}: exit report of {pid} lists {code} ({codes})")
    text_log = os.path.join(tmp, f"{label}.txt")
    run([exe], {"SHMTRACE_LOG": text_log}, preload=True)
    with open(text_log) as t:
        text = t.read()
    check(re.search(rf"\] \d+\.\d{{6}} finding {code} {severity} \({name}\) in \w+: .+ site=0x[0-9a-f]+\n", text),
          f"{label}: text finding line")
    check(re.search(rf"findings: .*\n.*{code} +{severity}", text), f"{label}: text report lists {code}")


def source_line(prog, needle):
    with open(os.path.join(HERE, prog + ".c")) as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                return i
    raise AssertionError(needle)


def suppressions(tmp):
    exe = os.path.join(BUILD, "create_without_excl.bad")
    for rule in ("code SHM002", "code create-without-excl", "code shm002 # comment"):
        rules = os.path.join(tmp, "rules.supp")
        with open(rules, "w") as f:
            f.write(f"# suppressions\n\n{rule}\n")
        log = os.path.join(tmp, "supp.jsonl")
        if os.path.exists(log):
            os.unlink(log)
        r = run([exe], {"SHMTRACE_FORMAT": "json", "SHMTRACE_LOG": log, "SHMTRACE_SUPPRESS": rules}, preload=True)
        recs = records(log)
        check(r.returncode == 0 and not [x for x in recs if x["event"] == "finding"],
              f"suppressed by `{rule}`: no finding logged")
        check(all("findings" not in x for x in recs if x["event"] == "report"),
              f"suppressed by `{rule}`: none in the exit report")
        check("warning" not in r.stderr, f"suppressed by `{rule}`: no warning ({r.stderr!r})")

    rules = os.path.join(tmp, "bad.supp")
    with open(rules, "w") as f:
        f.write("code SHM002\nthis is not a rule\ncode SHM999\n")
    log = os.path.join(tmp, "bad.jsonl")
    r = run([exe], {"SHMTRACE_FORMAT": "json", "SHMTRACE_LOG": log, "SHMTRACE_SUPPRESS": rules}, preload=True)
    warnings = [w for w in r.stderr.splitlines() if "warning" in w]
    check(len(warnings) == 2 and f"{rules}:2: ignored" in warnings[0] and f"{rules}:3: ignored" in warnings[1],
          f"malformed lines: one warning each, naming file and line ({warnings})")
    check(not [x for x in records(log) if x["event"] == "finding"], "malformed lines: the valid rule still applies")

    # Site rules: applied by the command, which symbolizes.
    # Four sites: shmget, semget, shm_open and sem_open.
    shm_line = source_line("create_without_excl", "shmget(unique_key")
    total = 4
    for rule, left in (
        (f"code SHM002 at site create_without_excl.c:{shm_line}", total - 1),
        (f"site findings/create_without_excl.c:{shm_line}", total - 1),
        ("site main", 0),
        ("code SHM002 at site not_main", total),
    ):
        with open(rules, "w") as f:
            f.write(rule + "\n")
        out = os.path.join(tmp, "run")
        shutil.rmtree(out, ignore_errors=True)
        doc = os.path.join(tmp, "report.json")
        r = run([COMMAND, "--lib", LIB, "--out", out, "--json", "-o", doc, "--", exe],
                {"SHMTRACE_SUPPRESS": rules})
        with open(doc) as f:
            report = json.load(f)
        kept = report["findings"]
        check(len(kept) == left and report["verdict"]["findings"]["suppressed"] == total - left,
              f"command, `{rule}`: {left} finding(s) left ({[k['site']['text'] for k in kept]})")
        if left == total - 1:
            check(all(k["site"]["line"] != shm_line for k in kept),
                  f"command, `{rule}`: the other sites are kept")


def exit_codes(tmp):
    bad = os.path.join(BUILD, "world_accessible.bad")
    fixed = os.path.join(BUILD, "world_accessible.fixed")
    warning_only = os.path.join(BUILD, "create_without_excl.bad")
    rules = os.path.join(tmp, "exit.supp")
    with open(rules, "w") as f:
        f.write("code SHM001\n")
    for exe, extra, want, what in (
        (bad, {}, 7, "an error finding"),
        (fixed, {}, 0, "no finding"),
        (warning_only, {}, 0, "a warning only"),
        (bad, {"SHMTRACE_SUPPRESS": rules}, 0, "a suppressed error"),
    ):
        env = {"SHMTRACE_EXITCODE": "7", "SHMTRACE_LOG": "off"}
        env.update(extra)
        r = run([exe], env, preload=True)
        check(r.returncode == want, f"SHMTRACE_EXITCODE=7, {what}: exit {want} (got {r.returncode})")
    with open(rules, "w") as f:
        f.write("site main\n")
    for exe, extra, want, what in (
        (bad, {}, 9, "an error finding"),
        (fixed, {}, 0, "no finding"),
        (warning_only, {}, 0, "a warning only"),
        (bad, {"SHMTRACE_SUPPRESS": rules}, 0, "an error suppressed by site"),
    ):
        out = os.path.join(tmp, "exit-run")
        shutil.rmtree(out, ignore_errors=True)
        r = run([COMMAND, "--lib", LIB, "--out", out, "--error-exitcode", "9", "--", exe], extra)
        check(r.returncode == want, f"shmtrace --error-exitcode 9, {what}: exit {want} (got {r.returncode})")


def main():
    global BUILD, LIB, COMMAND, UNSHARE
    opts = testlib.parse_args(__doc__, "findings")
    BUILD, LIB, COMMAND = opts.build, testlib.LIB, testlib.COMMAND
    if not testlib.make(HERE, [f"BUILD={BUILD}"]):
        return testlib.summary()
    for path in (LIB, COMMAND):
        if not check(os.path.exists(path), f"{path} exists (make lib)"):
            return testlib.summary()
    if testlib.can_unshare():
        UNSHARE = testlib.UNSHARE_IPC
    else:
        testlib.note("unshare --ipc unavailable: programs run in the global IPC namespace")
    with tempfile.TemporaryDirectory(prefix="shmtrace-findings-") as tmp:
        for prog in CASES:
            for variant in ("bad", "fixed"):
                try:
                    run_case(tmp, prog, variant)
                except Exception as e:  # one broken case must not hide the others
                    check(False, f"{prog}.{variant}: {type(e).__name__}: {e}")
        with open(os.path.join(HERE, "all.supp")) as f:
            listed = re.findall(r"^code (SHM\d{3})$", f.read(), re.M)
        check(listed == [c for c, _, _ in CASES.values()], "all.supp lists every code (c_tests/run.py uses it)")
        for part in (suppressions, exit_codes):
            try:
                part(tmp)
            except Exception as e:
                check(False, f"{part.__name__}: {type(e).__name__}: {e}")
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

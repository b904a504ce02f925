#!/usr/bin/env python3
"""The command's pictures checked against the run itself (`make test-html`). A small process
tree (tests/html/tree.c: fork, exec, a process killed, a finding, SysV and mapping leaks) runs
under `shmtrace --html --trace-json`; the trace JSON is checked against the Trace Event
Format's required fields and against the decoded logs, and the page is opened in headless
Chromium (Debian's chromium, which `make test` installs when missing; without it those checks
are skipped): every process lane, the leak markers with their sites, the findings, the calls
behind them, no console error and no network request; then the page of a run reported while
two of its processes are deadlocked (the deadlock and the set in use). The oracle is the
command's own JSON and text report and the logs. Runs in a private IPC namespace when it can (`unshare --ipc`)."""
import glob
import json
import os
import select
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HANG = os.path.join(os.path.dirname(os.path.dirname(HERE)), "cli", "tests", "programs", "hang.c")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "c_tests"))
import browser  # noqa: E402
import testlib  # noqa: E402

# The phases this file's events use, and those the format defines (Trace Event Format doc).
FORMAT_PHASES = set("BEXiIC" "bnesftPOND" "Mc" "RrV")
USED_PHASES = {"X", "i", "C", "M"}
# Calls drawn per lane at most: one per pixel column (900) and those the report points at.
COLUMNS = 900


def checked(name, fn, *args):
    """One counted check: `fn` holds when it raises no AssertionError."""
    try:
        fn(*args)
    except AssertionError as e:
        testlib.check(False, name, str(e))
    else:
        testlib.check(True, name)


def shmtrace(*args, **kwargs):
    """The command (the build's, or --libdir's) with these arguments."""
    return subprocess.run([testlib.COMMAND, *args], **kwargs)


def run_tree(work, argv_extra=()):
    """Runs tree.c under shmtrace; returns (run dir, html, trace json, report json)."""
    exe = os.path.join(work, "tree")
    if not os.path.exists(exe):
        subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-o", exe,
                        os.path.join(HERE, "tree.c")], check=True)
    name = "many" if argv_extra else "tree"
    run = os.path.join(work, f"{name}.run")
    html = os.path.join(work, f"{name}.html")
    trace = os.path.join(work, f"{name}.trace.json")
    out = shmtrace("--out", run, "--html", html, "--trace-json", trace, "--", exe, *argv_extra,
                   capture_output=True, text=True)
    # What the tree leaves on purpose (it prints `shm ID` and `sem ID`).
    testlib.remove_sysv((kind, int(ident)) for kind, _, ident in
                        (line.partition(" ") for line in out.stdout.splitlines())
                        if kind in ("shm", "sem") and ident.isdigit())
    assert os.path.exists(html) and os.path.exists(trace), out.stderr
    report = json.loads(shmtrace("report", "--json", run, capture_output=True, text=True).stdout)
    return run, html, trace, report


def check_report_form(run, html, trace):
    """`shmtrace report --html --trace-json RUNDIR` writes what the run wrote."""
    again_html, again_trace = html + ".again", trace + ".again"
    shmtrace("report", "--html", again_html, "--trace-json", again_trace, run,
             stdout=subprocess.DEVNULL, check=True)
    for first, second in ((html, again_html), (trace, again_trace)):
        with open(first, "rb") as a, open(second, "rb") as b:
            assert a.read() == b.read(), f"{second} differs from {first}"


def logged_calls(run):
    """Every call record of the run's logs, decoded by the command."""
    calls = []
    for path in sorted(glob.glob(os.path.join(run, "*.bin"))):
        out = shmtrace("decode", "--format", "json", path, capture_output=True, text=True,
                       check=True).stdout
        calls += [r for r in map(json.loads, out.splitlines()) if r.get("event") == "call"]
    return calls


# ---- the trace JSON ----

def check_trace_format(trace):
    with open(trace) as f:
        doc = json.load(f)
    events = doc["traceEvents"]
    assert isinstance(events, list) and events, "no traceEvents"
    for e in events:
        assert isinstance(e.get("name"), str), f"no name: {e}"
        assert e.get("ph") in FORMAT_PHASES, f"not a phase of the format: {e}"
        assert e["ph"] in USED_PHASES, f"unexpected phase: {e}"
        assert isinstance(e.get("pid"), int), f"no integer pid: {e}"
        if e["ph"] != "C":
            assert isinstance(e.get("tid"), int), f"no integer tid: {e}"
        if e["ph"] != "M":
            assert isinstance(e.get("ts"), (int, float)) and e["ts"] >= 0, f"bad ts: {e}"
        if e["ph"] == "X":
            assert isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0, f"bad dur: {e}"
        if e["ph"] == "i":
            assert e.get("s") in ("g", "p", "t"), f"instant without scope: {e}"
        if e["ph"] == "C":
            assert e.get("args") and all(isinstance(v, (int, float))
                                         for v in e["args"].values()), f"bad counter: {e}"
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "process_sort_index", "thread_name"), e


def check_trace_content(trace, run, report):
    with open(trace) as f:
        doc = json.load(f)
    events = doc["traceEvents"]
    epoch = doc["otherData"]["epoch_us"]
    pids = {p["pid"] for p in report["processes"]}
    named = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert named == pids, f"process tracks {named}, processes {pids}"

    calls = logged_calls(run)
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == len(calls) == sum(c["calls"] for c in report["calls"]), \
        f"{len(complete)} complete events, {len(calls)} calls logged"
    # Each call at its logged time in microseconds, with its duration, thread and arguments.
    by_key = {(e["pid"], e["tid"], e["name"], round(epoch + e["ts"])): e for e in complete}
    for c in calls:
        key = (c["pid"], c["tid"], c["fn"], round(c["ts"] * 1e6))
        e = by_key.get(key)
        assert e, f"no complete event at {key}"
        assert abs(e["dur"] - c["dur_ns"] / 1000) < 0.001, (e, c)
        for k, v in c["args"].items():
            assert e["args"][k] == v, f"{c['fn']} {k}: {e['args'][k]} != {v}"
        assert e["args"]["ret"] == c["ret"] and e["args"]["errno"] == c["errno"], (e, c)
        assert e["args"]["caller"] == c["caller"], (e, c)

    # What each process held at the end: the bytes its mappings left at exit cover, lost,
    # still reachable or retained (those with an exit report; the killed one ends holding the
    # page it mapped).
    held = {}
    for e in events:
        if e["ph"] == "C" and e["name"] == "held bytes":
            held[e["pid"]] = e["args"]["mapped"]
    for p in report["processes"]:
        if p["ended"] != "exited":
            assert held.get(p["pid"]) == 4096, f"{p['pid']} ({p['ended']}): {held.get(p['pid'])}"
            continue
        left = sum(m["bytes"] for m in report["mappings"] if m["pid"] == p["pid"])
        left += sum(r["bytes"] for r in report["retained"] if r["pid"] == p["pid"])
        left += sum(r["bytes"] for r in report["reachable"]
                    if r["pid"] == p["pid"] and r["shmid"] is None)
        assert held.get(p["pid"], 0) == left, \
            f"{p['pid']} ends holding {held.get(p['pid'])} mapped bytes, its report {left}"
    objects = [e for e in events if e["ph"] == "C" and e["name"] == "live objects"]
    assert any(e["args"]["SysV"] == 1 for e in objects), "no live SysV object counted"

    leaks = [e for e in events if e["ph"] == "i" and e.get("cat") == "leak"]
    expected = len(report["leaks"]) + len(report["attachments"]) + len(report["mappings"])
    assert len(leaks) == expected, f"{len(leaks)} leak instants, {expected} leaks"
    sites = {e["args"]["site"] for e in leaks}
    assert sites == {x["site"]["text"] for k in ("leaks", "attachments", "mappings")
                     for x in report[k]}, sites
    findings = [e for e in events if e["ph"] == "i" and e.get("cat") == "finding"]
    assert sorted(e["name"].split()[0] for e in findings) == \
        sorted(f["code"] for f in report["findings"] for _ in range(f["count"])), findings
    marks = {e["name"].split()[0] for e in events if e.get("cat") == "process"}
    assert {"start", "fork", "exec", "end:"} <= marks, marks


# ---- the page ----

READY = "document.body && document.body.dataset.ready === 'true'"


def check_page(page, report):
    assert page.errors == [], f"console errors: {page.errors}"
    resources = page.eval("performance.getEntriesByType('resource').map(r => r.name)")
    assert resources == [], f"the page fetched {resources}"
    lanes = page.eval("[...document.querySelectorAll('g.lane')].map(g => "
                      "[+g.dataset.pid, +g.dataset.depth])")
    expected = [[p["pid"], p["depth"]] for p in report["processes"]]
    assert lanes == expected, f"lanes {lanes}, processes {expected}"
    for p in report["processes"]:
        lane = f"document.getElementById('lane-{p['pid']}')"
        ends = page.eval(f"[...{lane}.querySelectorAll('.mark.exit, .mark.vanished')]"
                         ".map(n => n.classList[1])")
        expected = ["exit"] if p["ended"] == "exited" else ["vanished"]
        assert ends == expected, f"{p['pid']} ({p['ended']}): end marks {ends}"
        if p["forked"] or p["depth"] > 0:
            assert page.eval(f"{lane}.querySelectorAll('.mark.fork').length") == 1, p
    execs = page.eval("document.querySelectorAll('.mark.exec').length")
    assert execs == 1, f"{execs} exec marks"
    links = page.eval("document.querySelectorAll('.fork-link').length")
    assert links == len(report["processes"]) - 1, f"{links} fork links"

    markers = page.eval("[...document.querySelectorAll('g.leak')].map(g => "
                        "[+g.closest('g.lane').dataset.pid, g.dataset.site])")
    expected = [[x["pid"], x["site"]["text"]] for k in ("leaks", "attachments", "mappings")
                for x in report[k]]
    assert sorted(markers) == sorted(expected), f"leak markers {markers}, leaks {expected}"
    root = report["processes"][0]["pid"]
    creates = page.eval(f"document.querySelectorAll('#lane-{root} .ev.create').length")
    removes = page.eval(f"document.querySelectorAll('#lane-{root} .ev.remove').length")
    assert (creates, removes) == (1, 1), f"root lane: {creates} creations, {removes} removals"

    rows = page.eval("[...document.querySelectorAll('tr.finding-row')].map(r => "
                     "r.querySelector('a').textContent)")
    assert rows == [f["code"] for f in report["findings"]], rows
    calls = page.eval("[...document.querySelectorAll('tr[data-fn-row]')].map(r => "
                      "[r.dataset.fnRow, +r.cells[1].textContent])")
    assert calls == [[c["fn"], c["calls"]] for c in report["calls"]], calls


def click(page, selector, event="click"):
    page.eval(f"document.querySelector({json.dumps(selector)}).dispatchEvent("
              f"new MouseEvent({json.dumps(event)}, {{bubbles: true, cancelable: true}}))")
    return page.eval("document.getElementById('detail').textContent")


def check_interaction(page, report):
    leak = report["leaks"][0]
    text = click(page, f"g.leak[data-site={json.dumps(leak['site']['text'])}]")
    assert leak["site"]["text"] in text and "semget(" in text and "nsems = 1" in text, text
    finding = report["findings"][0]
    text = click(page, "tr.finding-row a")
    assert finding["code"] in text and "shmget(" in text and finding["site"]["text"] in text, text
    assert "IPC_CREAT|0666" in text, f"the finding's call and its arguments: {text}"
    # Pointing at a call shows it: arguments, result, duration, site.
    text = click(page, "#timeline rect.ev.mmap", "mouseover")
    assert "mmap(" in text and "duration" in text and "site" in text and "main" in text, text
    selected = page.eval("document.querySelectorAll('#timeline .selected').length")
    assert selected == 1, f"{selected} marks selected"
    # A function of the statistics marks its calls.
    click(page, "tr[data-fn-row='munmap']")
    marked = page.eval("[...document.querySelectorAll('#timeline .ev.marked')]"
                       ".map(n => n.dataset.fn)")
    assert marked and set(marked) == {"munmap"}, marked
    # A process's number in a table goes to its lane.
    pid = report["leaks"][0]["pid"]
    click(page, f"#leaks a[href='#lane-{pid}']")
    assert page.eval("location.hash") == f"#lane-{pid}", page.eval("location.hash")
    assert page.errors == [], f"console errors: {page.errors}"


def check_downsampled(page, report, calls):
    """A run with more calls than pixels: at most one call per column, and the calls drawn
    stand for every call of the lane."""
    drawn = page.eval("[...document.querySelectorAll('#timeline .ev')].map(n => "
                      "+(n.dataset.n || 1))")
    assert 0 < len(drawn) <= COLUMNS + 4, f"{len(drawn)} calls drawn"
    assert sum(drawn) == calls, f"the calls drawn stand for {sum(drawn)} calls, not {calls}"
    assert page.errors == [], f"console errors: {page.errors}"


def run_deadlock(work):
    """`hang cycle 2` (two children, each holding the semaphore the other waits for) under
    shmtrace, reported with `--html` and as text while it hangs; every process killed and the
    set removed afterwards. Returns (html, report json, report text)."""
    exe = os.path.join(work, "hang")
    subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-o", exe, HANG],
                   check=True)
    run, html = os.path.join(work, "hang.run"), os.path.join(work, "hang.html")
    proc = subprocess.Popen([testlib.COMMAND, "--out", run, "--", exe, "cycle", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ready = []
    try:
        # "ready SEMID PID PID" once both children sleep in semop.
        if select.select([proc.stdout], [], [], 30)[0]:
            ready = proc.stdout.readline().split()
        assert ready[:1] == ["ready"], f"hang cycle 2 did not get ready: {ready}"
        shmtrace("report", "--html", html, run, stdout=subprocess.DEVNULL, check=True)
        report = json.loads(shmtrace("report", "--json", run, capture_output=True,
                                     text=True).stdout)
        text = shmtrace("report", "--color", "never", run, capture_output=True,
                        text=True).stdout
    finally:
        for pid in ready[2:]:
            os.kill(int(pid), signal.SIGKILL)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if ready[1:2]:
            testlib.remove_sysv([("sem", int(ready[1]))])
    return html, report, text


def check_ongoing(page, report, text):
    """A run that hangs: the deadlock and the set in use are on the page as the text report
    words them, beside the verdict and a lane per process."""
    assert page.errors == [], f"console errors: {page.errors}"
    assert report["verdict"]["deadlocks"] == 1 and report["verdict"]["in_use"] == 1, \
        report["verdict"]
    verdict = page.eval("document.getElementById('verdict').textContent")
    assert verdict == report["verdict"]["text"], f"{verdict!r} != {report['verdict']['text']!r}"
    lanes = page.eval("[...document.querySelectorAll('g.lane')].map(g => +g.dataset.pid)")
    assert lanes == [p["pid"] for p in report["processes"]], lanes
    ongoing = page.eval("document.querySelector('#ongoing pre')?.textContent ?? ''")
    assert "deadlock of 2 processes" in ongoing and "in use by" in ongoing, ongoing
    lines = [line for line in ongoing.splitlines() if line.strip()]
    missing = [line for line in lines if line not in text.splitlines()]
    assert not missing, f"not in the text report: {missing}"
    assert page.eval("document.querySelector('nav a[href=\"#ongoing\"]') !== null"), "no link"


def main():
    testlib.parse_args(__doc__, "html")
    testlib.isolate_ipc()
    if not os.path.exists(testlib.COMMAND):
        testlib.skip("every check", f"{testlib.COMMAND} not built (make lib)", 7)
        return testlib.summary()
    with tempfile.TemporaryDirectory(prefix="shmtrace-html-") as work:
        run, html, trace, report = run_tree(work)
        checked("trace json: the format's fields", check_trace_format, trace)
        checked("trace json: calls, counters, leaks, findings", check_trace_content,
                trace, run, report)
        checked("report form: the same files from the run directory",
                check_report_form, run, html, trace)
        chromium = browser.find_chromium()
        if not chromium:
            testlib.skip("the page in headless Chromium", "chromium not installed "
                         "(Debian: chromium; make test installs it)", 4)
            return testlib.summary()
        with browser.Browser(chromium) as b:
            page = b.open("file://" + html, READY)
            checked("page: lanes, marks, leaks, findings, calls", check_page, page, report)
            checked("page: pointing and clicking", check_interaction, page, report)
            n = 5000
            _, big_html, _, big_report = run_tree(work, ("many", str(n)))
            big = b.open("file://" + big_html, READY)
            total = sum(c["calls"] for c in big_report["calls"])
            checked("page: a run longer than the timeline is wide", check_downsampled, big,
                    big_report, total)
            hang_html, hang_report, hang_text = run_deadlock(work)
            checked("page: a deadlock and an object in use", check_ongoing,
                    b.open("file://" + hang_html, READY), hang_report, hang_text)
    return testlib.summary()


if __name__ == "__main__":
    sys.exit(main())

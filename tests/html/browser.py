"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
commands on fd 3, replies on fd 4, NUL-separated JSON), so nothing beyond the Python standard
library and Debian's chromium is needed. Used by the HTML report's tests and by `make bench`.

    with Browser() as b:
        page = b.open("file:///tmp/report.html", ready="document.body.dataset.ready")
        page.eval("document.title"); page.errors; page.load_seconds

    python3 tests/html/browser.py PAGE.html SHOT.png    # a screenshot of a report page
"""
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe", "about:blank"]


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, path=None, timeout=60):
        self.path = path or find_chromium()
        self.timeout = timeout
        self.next_id = 0
        self.events = []
        self.buffer = b""

    def __enter__(self):
        self.profile = tempfile.mkdtemp(prefix="shmtrace-chromium-")
        to_child, self.cmd = os.pipe()
        self.reply, from_child = os.pipe()

        def fds():
            # Through fresh numbers first: either end may already be 3 or 4.
            read, write = os.dup(to_child), os.dup(from_child)
            os.dup2(read, 3)
            os.dup2(write, 4)

        # Not close_fds: it would close 3 and 4 after fds() (the pipes' other ends are not
        # inheritable, so only these reach chromium).
        self.proc = subprocess.Popen(
            [self.path, *FLAGS[:-1], f"--user-data-dir={self.profile}", FLAGS[-1]],
            close_fds=False, preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        return self

    def __exit__(self, *exc):
        try:
            self.send("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd)
        os.close(self.reply)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("no answer from chromium in time")
            ready, _, _ = select.select([self.reply], [], [], left)
            if ready:
                chunk = os.read(self.reply, 1 << 20)
                if not chunk:
                    raise BrowserError("chromium closed the pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, session=None, **params):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == mid:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, url, ready, width=1400, height=900):
        """Loads url in a new tab and waits until the expression `ready` is truthy."""
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session)
        for domain in ("Runtime.enable", "Page.enable", "Log.enable"):
            self.send(domain, session)
        self.send("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)
        started = time.monotonic()
        self.send("Page.navigate", session, url=url)
        deadline = started + self.timeout
        while not page.eval(f"!!({ready})", check=False):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url}: not ready after {self.timeout} s")
            time.sleep(0.02)
        page.load_seconds = time.monotonic() - started
        return page


class Page:
    def __init__(self, browser, session):
        self.browser, self.session = browser, session
        self.load_seconds = None

    def eval(self, expression, check=True):
        r = self.browser.send("Runtime.evaluate", self.session, expression=expression,
                              returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            if check:
                raise BrowserError(f"{expression}: {r['exceptionDetails']}")
            return None
        return r["result"].get("value")

    @property
    def errors(self):
        """Console errors, uncaught exceptions and error log entries of this page so far."""
        found = []
        for e in self.browser.events:
            if e.get("sessionId") != self.session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                found.append(p["exceptionDetails"].get("exception", {}).get(
                    "description", p["exceptionDetails"].get("text")))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description")))
                                      for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
                found.append(p["entry"].get("text"))
        return found

    def screenshot(self, path, full_page=False):
        import base64
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.browser.send("Page.captureScreenshot", self.session, **params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3:
        sys.exit("usage: browser.py PAGE.html SHOT.png")
    with Browser() as b:
        shot = b.open("file://" + os.path.abspath(sys.argv[1]), "document.body.dataset.ready",
                      width=1300, height=760)
        shot.screenshot(sys.argv[2])

#!/usr/bin/env python3
"""make bench-real: programs nobody here wrote, natively and under the shim in each mode.

bench/bench measures one hooked call at a time; a user feels the shim through whole programs.
This runs stress-ng's IPC and mapping stressors (a fixed number of bogo operations each) and
Apache httpd (prefork, loopback) serving a file to ApacheBench, natively and preloaded with
the shim logging off, to a binary log and to a JSON log. Runs are interleaved (native, off,
binary, json, native, ...) so that a machine's drift lands on every mode alike, and the median
of BENCH_REAL_REPS runs (default 3) is shown, with each mode's time as a ratio to native.

Needs stress-ng and apache2-bin + apache2-utils (ab); installs them with apt-get when missing
and possible, else skips what it cannot run. BENCH_REAL=sem-sysv,httpd,... picks workloads."""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
LIB = os.path.join(TOP, "target", "release", "libshmtrace.so")
REPS = int(os.environ.get("BENCH_REAL_REPS", "3"))
MODES = ["native", "off", "binary", "json"]

# name, stress-ng arguments (one worker, a fixed number of operations: about a second natively).
# sem-sysv's processes contend for the semaphores: spread over 2 vCPUs the same command took
# anywhere from 0.5 to 6.5 s, whatever the mode, as their wake-ups happened to line up. Pinned
# to one CPU (--taskset, which its children inherit) they take turns, and the time measures
# the calls rather than the scheduler.
STRESSORS = [
    ("sem-sysv", ["--sem-sysv", "1", "--sem-sysv-ops", "300000", "--taskset", "0"]),
    ("msg", ["--msg", "1", "--msg-ops", "300000"]),
    ("shm-sysv", ["--shm-sysv", "1", "--shm-sysv-bytes", "1M", "--shm-sysv-segs", "4",
                  "--shm-sysv-ops", "500"]),
    ("shm", ["--shm", "1", "--shm-bytes", "1M", "--shm-objs", "4", "--shm-ops", "200"]),
    ("mmap", ["--mmap", "1", "--mmap-bytes", "1M", "--mmap-ops", "100"]),
]
HTTPD_REQUESTS = 4000
MODULES = "/usr/lib/apache2/modules"


def install_missing():
    need = [pkg for pkg, probe in (("stress-ng", "/usr/bin/stress-ng"),
                                   ("apache2-bin", "/usr/sbin/apache2"),
                                   ("apache2-utils", "/usr/bin/ab"))
            if not os.path.exists(probe)]
    if not need or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print(f"installing {' '.join(need)} (apt-get)", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *need]):
        subprocess.run(cmd, env=env, capture_output=True)


def mode_env(mode, tmp, name):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("SHMTRACE_") or k == "LD_PRELOAD":
            del env[k]
    if mode == "native":
        return env
    env["LD_PRELOAD"] = LIB
    if mode == "off":
        env["SHMTRACE_LOG"] = "off"
    else:
        log = os.path.join(tmp, f"{name}.{mode}.%p.log")
        env["SHMTRACE_LOG"] = log
        env["SHMTRACE_FORMAT"] = mode
    return env


def stress(args, env):
    """Seconds stress-ng says its stressor ran, from its metrics line."""
    r = subprocess.run(["stress-ng", *args, "--metrics-brief"], env=env, capture_output=True,
                       text=True, timeout=600)
    name = args[0].lstrip("-")
    for line in (r.stdout + r.stderr).splitlines():
        m = re.search(rf"metrc: \[\d+\] {re.escape(name)}\s+(\d+)\s+([\d.]+)\s", line)
        if m:
            return float(m.group(2))
    raise RuntimeError(f"stress-ng {' '.join(args)}: no metrics ({r.returncode}): "
                       f"{(r.stdout + r.stderr)[-400:]}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def httpd(env, tmp):
    """Seconds ab takes for HTTPD_REQUESTS requests (4 at a time) of a 64 KiB file."""
    root = tempfile.mkdtemp(dir=tmp)
    os.chmod(root, 0o755)
    docs = os.path.join(root, "htdocs")
    os.makedirs(docs)
    with open(os.path.join(docs, "file.bin"), "wb") as f:
        f.write(os.urandom(64 << 10))
    port = free_port()
    conf = os.path.join(root, "httpd.conf")
    with open(conf, "w") as f:
        f.write(f"""ServerRoot "{root}"
LoadModule mpm_prefork_module {MODULES}/mod_mpm_prefork.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule mime_module {MODULES}/mod_mime.so
Listen 127.0.0.1:{port}
ServerName localhost
PidFile {root}/httpd.pid
ErrorLog {root}/error.log
DocumentRoot "{docs}"
TypesConfig /etc/mime.types
StartServers 4
MinSpareServers 4
MaxSpareServers 8
Mutex file:{root}
User nobody
Group nogroup
""")
    # setsid: at its stop httpd signals its whole process group, which must not be ours.
    p = subprocess.Popen(["setsid", "/usr/sbin/apache2", "-D", "FOREGROUND", "-f", conf],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/file.bin"
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
                break
            except OSError:
                if time.time() > deadline:
                    log = os.path.join(root, "error.log")
                    raise RuntimeError("httpd did not start: " + (
                        open(log).read()[-400:] if os.path.exists(log) else "no error log"))
                time.sleep(0.1)
        r = subprocess.run(["ab", "-q", "-n", str(HTTPD_REQUESTS), "-c", "4", url],
                           capture_output=True, text=True, timeout=600)
        m = re.search(r"Time taken for tests:\s+([\d.]+) seconds", r.stdout)
        failed = re.search(r"Failed requests:\s+(\d+)", r.stdout)
        if not m or not failed or failed.group(1) != "0":
            raise RuntimeError(f"ab: {r.stdout[-400:]}{r.stderr[-400:]}")
        return float(m.group(1))
    finally:
        try:
            os.kill(int(open(os.path.join(root, "httpd.pid")).read()), signal.SIGTERM)
        except (OSError, ValueError):
            p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main():
    if not os.path.exists(LIB):
        sys.exit(f"{LIB} missing: make lib first")
    install_missing()
    wanted = set(filter(None, os.environ.get("BENCH_REAL", "").split(",")))
    work = []
    if shutil.which("stress-ng"):
        work += [(name, lambda env, tmp, a=args: stress(a, env)) for name, args in STRESSORS]
    else:
        print("skipped: stress-ng (not installed)")
    if os.path.exists("/usr/sbin/apache2") and shutil.which("ab") and \
            os.path.exists(os.path.join(MODULES, "mod_mpm_prefork.so")):
        work.append(("httpd", httpd))
    else:
        print("skipped: httpd (apache2-bin and apache2-utils' ab needed)")
    if wanted:
        work = [w for w in work if w[0] in wanted]
    print(f"median of {REPS} interleaved runs; seconds natively, then each mode / native")
    print(f"{'workload':<10} {'native s':>9} " + " ".join(f"{m:>7}" for m in MODES[1:]))
    for name, run in work:
        times = {m: [] for m in MODES}
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o1777)  # httpd's children run as nobody and write logs here
            for _ in range(REPS):
                for mode in MODES:
                    times[mode].append(run(mode_env(mode, tmp, name), tmp))
                for f in os.listdir(tmp):  # the logs of a round: a disk that fills skews the next
                    path = os.path.join(tmp, f)
                    if f.endswith(".log"):
                        os.unlink(path)
        med = {m: statistics.median(v) for m, v in times.items()}
        print(f"{name:<10} {med['native']:>9.3f} " +
              " ".join(f"{med[m] / med['native']:>6.2f}x" for m in MODES[1:]), flush=True)


if __name__ == "__main__":
    main()

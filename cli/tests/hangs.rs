//! Who waits for whom: programs hung in semop (tests/programs/hang.c) under `shmtrace`, looked
//! at with `shmtrace report` from outside while they hang, and after they were killed. Every
//! process is killed at the end of its test, and its semaphore set removed, even on failure.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A hung program under `shmtrace`: its set and children, all killed when dropped.
struct Hung {
    run_dir: PathBuf,
    shmtrace: Child,
    /// shmtrace's stderr so far, read as it comes.
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    set: i64,
    pids: Vec<i32>,
    _guard: IpcGuard,
}

impl Hung {
    /// Starts `hang ARGS` under shmtrace and waits (bounded) for its "ready" or "running" line.
    fn start(scratch: &Scratch, args: &[&str]) -> Hung {
        Hung::start_with(scratch, args, &[])
    }

    /// The same, with these variables in the run's environment.
    fn start_with(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Hung {
        let run_dir = scratch.path("run");
        let mut guard = IpcGuard::new(&[&run_dir]);
        let hang = scratch.compile("hang");
        let mut shmtrace = shmtrace_run(&run_dir, &[], &[&hang])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running shmtrace");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_pipe = shmtrace.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let stdout = shmtrace.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let words: Vec<i64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.parse().ok())
            .collect();
        let Some((&set, children)) = words.split_first() else {
            let _ = shmtrace.kill();
            panic!("hang {args:?} did not get ready: {line:?}");
        };
        guard.add_set(set);
        Hung {
            run_dir,
            shmtrace,
            stderr,
            stderr_reader: Some(stderr_reader),
            set,
            pids: children.iter().map(|&p| p as i32).collect(),
            _guard: guard,
        }
    }

    /// `shmtrace report --json` on the run directory, from outside, while the run goes on.
    fn live_report(&self) -> Value {
        report_json(&self.run_dir, &[])
    }

    fn live_text(&self) -> String {
        let out = Command::new(SHMTRACE)
            .args(["report", "--color", "never"])
            .arg(&self.run_dir)
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// shmtrace's stderr so far.
    fn stderr_now(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (bounded) for shmtrace to end; its exit status and stderr.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.shmtrace.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "shmtrace did not end");
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        (status.code().unwrap_or(-1), self.stderr_now())
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        for &pid in &self.pids {
            kill(pid, libc::SIGKILL);
        }
        let _ = self.shmtrace.kill();
        let _ = self.shmtrace.wait();
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid this test started.
    unsafe { libc::kill(pid, sig) };
}

fn waits(doc: &Value) -> &Vec<Value> {
    doc["waits"]["edges"].as_array().expect("waits.edges")
}

fn deadlocks(doc: &Value) -> &Vec<Value> {
    doc["waits"]["deadlocks"]
        .as_array()
        .expect("waits.deadlocks")
}

/// The one wait of `pid` in the report.
fn wait_of(doc: &Value, pid: i32) -> &Value {
    let of: Vec<_> = waits(doc)
        .iter()
        .filter(|w| w["waiter"]["pid"] == pid)
        .collect();
    assert_eq!(of.len(), 1, "waits of {pid} in {doc}");
    of[0]
}

fn line(marker: &str) -> u64 {
    line_of("hang", marker)
}

/// Each member of the ring waits at the `wait` line for the semaphore the next took at the
/// `take` line, and the ring is one deadlock of every member, named as such in the text.
fn check_ring(hung: &Hung, doc: &Value) {
    let n = hung.pids.len();
    for (i, &pid) in hung.pids.iter().enumerate() {
        let next = hung.pids[(i + 1) % n];
        let w = wait_of(doc, pid);
        assert_eq!(w["semid"], hung.set);
        assert_eq!(w["sem"], (i + 1) % n);
        assert_eq!(w["value"], 0);
        assert_eq!(w["op"], -1);
        assert_eq!(w["site"]["line"], line("wait"), "{w}");
        let holders = w["holders"].as_array().unwrap();
        assert_eq!(holders.len(), 1, "{w}");
        assert_eq!(holders[0]["holder"]["pid"], next);
        assert_eq!(holders[0]["net"], -1);
        assert_eq!(holders[0]["site"]["line"], line("take"), "{w}");
        assert_eq!(w["reset"]["value"], 1, "{w}");
        assert_eq!(w["reset"]["site"]["line"], line("setval"), "{w}");
    }
    let found = deadlocks(doc);
    assert_eq!(found.len(), 1, "{doc}");
    let mut pids: Vec<i64> = found[0]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    pids.sort();
    let mut expected: Vec<i64> = hung.pids.iter().map(|&p| i64::from(p)).collect();
    expected.sort();
    assert_eq!(pids, expected);
    let text = found[0]["text"].as_str().unwrap();
    assert!(text.starts_with("deadlock: pid "), "{text}");
    assert_eq!(
        text.matches(&format!("hang.c:{}", line("take"))).count(),
        n,
        "{text}"
    );
    assert_eq!(doc["verdict"]["deadlocks"], 1);
    assert_eq!(doc["verdict"]["clean"], false);
}

fn ring(members: &str) {
    let scratch = Scratch::new(&format!("hang-ring-{members}"));
    let hung = Hung::start(&scratch, &["cycle", members]);
    check_ring(&hung, &hung.live_report());
    let text = hung.live_text();
    assert!(
        text.contains(&format!("deadlock of {members} processes:")),
        "{text}"
    );
    assert!(text.contains("who waits for whom"), "{text}");
    // Killed: the end-of-run report still names it, from the operations the enter records
    // carry (the processes, and their /proc, are gone).
    let run_dir = hung.run_dir.clone();
    for &pid in &hung.pids {
        kill(pid, libc::SIGKILL);
    }
    let (_, stderr) = hung.finish();
    assert!(
        stderr.contains(&format!("deadlock of {members} processes:")),
        "{stderr}"
    );
    let after = report_json(&run_dir, &[]);
    assert_eq!(deadlocks(&after).len(), 1, "{after}");
}

#[test]
fn a_deadlock_of_two_processes_is_named_with_every_site() {
    ring("2");
}

#[test]
fn a_deadlock_of_three_processes_is_named_with_every_site() {
    ring("3");
}

#[test]
fn a_slow_holder_is_named_without_a_deadlock() {
    let scratch = Scratch::new("hang-slow");
    let hung = Hung::start(&scratch, &["slow"]);
    let (holder, waiter) = (hung.pids[0], hung.pids[1]);
    let doc = hung.live_report();
    let w = wait_of(&doc, waiter);
    assert_eq!(w["site"]["line"], line("wait"));
    let holders = w["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{w}");
    assert_eq!(holders[0]["holder"]["pid"], holder);
    assert_eq!(holders[0]["state"], "running");
    assert_eq!(holders[0]["sem_undo_adjustment"], 0);
    assert_eq!(holders[0]["site"]["line"], line("hold"));
    assert!(deadlocks(&doc).is_empty(), "{doc}");
    assert_eq!(doc["verdict"]["deadlocks"], 0);
    let text = hung.live_text();
    assert!(
        text.contains(&format!(
            "taken by pid {holder} (hang) at holder (hang.c:{}) (-1, no SEM_UNDO): running",
            line("hold")
        )),
        "{text}"
    );
}

#[test]
fn a_waiter_released_by_the_holders_sem_undo_at_its_exit_is_no_longer_waiting() {
    let scratch = Scratch::new("hang-undo");
    let hung = Hung::start(&scratch, &["undo"]);
    let (holder, waiter) = (hung.pids[0], hung.pids[1]);
    let doc = hung.live_report();
    let holders = wait_of(&doc, waiter)["holders"].as_array().unwrap().clone();
    assert_eq!(holders.len(), 1, "{doc}");
    assert_eq!(holders[0]["holder"]["pid"], holder);
    assert_eq!(holders[0]["sem_undo_adjustment"], 1);
    kill(holder, libc::SIGKILL);
    let (status, stderr) = hung.finish();
    assert_eq!(status, 0, "{stderr}");
    assert!(!stderr.contains("who waits for whom"), "{stderr}");
    assert!(!stderr.contains("deadlock"), "{stderr}");
}

#[test]
fn a_wait_for_zero_names_who_raised_the_value() {
    let scratch = Scratch::new("hang-zero");
    let hung = Hung::start(&scratch, &["zero"]);
    let (raiser, waiter) = (hung.pids[0], hung.pids[1]);
    let doc = hung.live_report();
    let w = wait_of(&doc, waiter);
    assert_eq!(w["op"], 0);
    assert_eq!(w["value"], 1);
    assert_eq!(w["site"]["line"], line("zero"));
    let holders = w["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{w}");
    assert_eq!(holders[0]["holder"]["pid"], raiser);
    assert_eq!(holders[0]["net"], 1);
    assert_eq!(holders[0]["site"]["line"], line("raise"));
    let text = hung.live_text();
    assert!(text.contains("to reach zero (value 1)"), "{text}");
    assert!(
        text.contains(&format!("raised by pid {raiser} (hang)")),
        "{text}"
    );
}

#[test]
fn a_wait_ended_by_the_removal_of_its_set_is_shown() {
    let scratch = Scratch::new("hang-removed");
    let run_dir = scratch.path("run");
    let _guard = IpcGuard::new(&[&run_dir]);
    let hang = scratch.compile("hang");
    let out = shmtrace_run(&run_dir, &[], &[&hang])
        .arg("removed")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert!(
        stderr.contains("waits ended by removal (EIDRM)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("at wait_for (hang.c:{}): semid ", line("wait"))),
        "{stderr}"
    );
    let doc = report_json(&run_dir, &[]);
    let woken = doc["waits"]["woken_by_removal"].as_array().unwrap();
    assert_eq!(woken.len(), 1, "{doc}");
    assert_eq!(woken[0]["site"]["line"], line("wait"));
    assert!(waits(&doc).is_empty(), "{doc}");
}

/// The finding shmtrace raises during the run, once per cycle.
const LIVE: &str = "shmtrace: finding SHM013 error (deadlock): ";

fn live_findings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with(LIVE)).collect()
}

/// Whether `pid` is alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()?
                .split_whitespace()
                .next()
                .map(|st| st != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn a_deadlock_is_raised_once_while_its_processes_are_still_blocked() {
    let scratch = Scratch::new("hang-live");
    let hung = Hung::start_with(
        &scratch,
        &["cycle", "2"],
        &[("SHMTRACE_BLOCK_WARN_MS", "100")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while live_findings(&hung.stderr_now()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no finding: {}",
            hung.stderr_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(hung.pids.iter().all(|&p| alive(p)), "{:?}", hung.pids);
    // Ten thresholds more, still blocked: still one finding.
    std::thread::sleep(Duration::from_secs(1));
    let stderr = hung.stderr_now();
    let found = live_findings(&stderr);
    assert_eq!(found.len(), 1, "{stderr}");
    let doc = hung.live_report();
    let d = &deadlocks(&doc)[0];
    assert_eq!(
        (&d["code"], &d["name"], &d["severity"]),
        (&"SHM013".into(), &"deadlock".into(), &"error".into())
    );
    // The report's own text, naming every process, where it waits and where it took.
    assert_eq!(found[0], format!("{LIVE}{}", d["text"].as_str().unwrap()));
    for &pid in &hung.pids {
        assert!(
            found[0].contains(&format!("pid {pid} (hang) waits at")),
            "{stderr}"
        );
    }
    assert_eq!(
        found[0]
            .matches(&format!("hang.c:{}", line("wait")))
            .count(),
        2
    );
    assert_eq!(
        found[0]
            .matches(&format!("hang.c:{}", line("take")))
            .count(),
        2
    );
    for &pid in &hung.pids {
        kill(pid, libc::SIGKILL);
    }
    let (_, stderr) = hung.finish();
    assert_eq!(live_findings(&stderr).len(), 1, "{stderr}");
    assert!(
        stderr.contains("SHM013 deadlock of 2 processes:"),
        "{stderr}"
    );
}

#[test]
fn a_suppressed_deadlock_is_neither_raised_nor_counted() {
    let scratch = Scratch::new("hang-suppressed");
    let rules = scratch.path("rules.supp");
    std::fs::write(&rules, "code deadlock\n").unwrap();
    let rules = rules.to_str().unwrap();
    let hung = Hung::start_with(
        &scratch,
        &["cycle", "2"],
        &[
            ("SHMTRACE_BLOCK_WARN_MS", "50"),
            ("SHMTRACE_SUPPRESS", rules),
        ],
    );
    // Without the rule, the logs show it once both processes wait (bounded, whatever the load).
    let deadline = Instant::now() + Duration::from_secs(20);
    while deadlocks(&hung.live_report()).len() != 1 {
        assert!(Instant::now() < deadline, "{}", hung.live_report());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Well past the threshold: a finding would have been raised by now.
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(SHMTRACE)
        .args(["report", "--json"])
        .arg(&hung.run_dir)
        .env("SHMTRACE_SUPPRESS", rules)
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(deadlocks(&doc).is_empty(), "{doc}");
    assert_eq!(doc["verdict"]["deadlocks"], 0);
    assert_eq!(
        doc["verdict"]["findings"]["suppressed"], 1,
        "{}",
        doc["verdict"]
    );
    assert!(live_findings(&hung.stderr_now()).is_empty());
}

/// A busy pattern looked at repeatedly while it runs, then at its end: never a deadlock, and
/// no finding raised during the run, with a short blocking threshold.
fn no_false_deadlock(mode: &str) {
    let scratch = Scratch::new(&format!("hang-{mode}"));
    let hung = Hung::start_with(&scratch, &[mode, "3"], &[("SHMTRACE_BLOCK_WARN_MS", "20")]);
    let mut looks = 0;
    let deadline = Instant::now() + Duration::from_millis(2500);
    // At least three looks even when a loaded machine makes each one slow.
    while Instant::now() < deadline || looks < 3 {
        let doc = hung.live_report();
        assert!(deadlocks(&doc).is_empty(), "{doc}");
        assert_eq!(doc["verdict"]["deadlocks"], 0);
        looks += 1;
    }
    let run_dir: PathBuf = hung.run_dir.clone();
    let (status, stderr) = hung.finish();
    assert_eq!(status, 0, "{stderr}");
    // (The shim's SHM010 may speak of a possible deadlock on a loaded machine.)
    assert!(!stderr.contains("SHM013"), "{stderr}");
    assert_eq!(
        report_json(Path::new(&run_dir), &[])["verdict"]["deadlocks"],
        0
    );
}

#[test]
fn ping_pong_runs_for_seconds_with_no_false_deadlock() {
    no_false_deadlock("pingpong");
}

#[test]
fn producer_consumer_runs_for_seconds_with_no_false_deadlock() {
    no_false_deadlock("prodcons");
}

/// The `SHM009` findings of a finished run's report.
fn exit_holding(run_dir: &Path) -> Vec<Value> {
    report_json(run_dir, &[])["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "SHM009")
        .cloned()
        .collect()
}

/// Runs `hang ARGS` under shmtrace to its end (bounded); the run directory.
fn run_to_end(scratch: &Scratch, args: &[&str]) -> PathBuf {
    let run_dir = scratch.path("run");
    // Removes what the logs say was made, when the test ends.
    let _guard = IpcGuard::new(&[&run_dir]);
    let hang = scratch.compile("hang");
    let mut child = shmtrace_run(&run_dir, &[], &[&hang])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hang {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    run_dir
}

#[test]
fn tokens_a_partner_gave_are_not_held_at_exit() {
    // One round: B's shim alone sees it exit with semaphore 1 taken and at 0, and logs SHM009;
    // over the tree, A gave it that token.
    let scratch = Scratch::new("hang-exit-handoff");
    let run_dir = run_to_end(&scratch, &["handoff"]);
    let logged = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .filter_map(|e| log_text(&e.path()))
        .filter(|t| t.contains(r#""code":"SHM009""#))
        .count();
    // (A's too when it exits before B gave semaphore 0 back.)
    assert!(logged >= 1, "the shim's own verdict");
    let found = exit_holding(&run_dir);
    assert!(found.is_empty(), "{found:?}");
    // Many rounds for a second.
    let scratch = Scratch::new("hang-exit-pingpong");
    let run_dir = run_to_end(&scratch, &["pingpong", "1"]);
    let found = exit_holding(&run_dir);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_lock_kept_at_exit_is_found_at_the_site_that_took_it() {
    let scratch = Scratch::new("hang-exit-keep");
    let run_dir = run_to_end(&scratch, &["keep"]);
    let found = exit_holding(&run_dir);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["site"]["line"], line("take"), "{}", found[0]);
    assert_eq!(found[0]["severity"], "warning");
    assert_eq!(found[0]["pids"].as_array().unwrap().len(), 1);
    let message = found[0]["message"].as_str().unwrap();
    assert!(
        message.contains("semaphore 0 of set semid=") && message.contains("by 1 without SEM_UNDO"),
        "{message}"
    );
}

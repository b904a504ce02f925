//! The deadlock watch of a run: while the tree runs, a deadlock is reported when it happens,
//! not only in the report at the end (which a hung run never reaches on its own).
//!
//! With `SHMTRACE_BLOCK_WARN_MS` set, shmtrace looks every half threshold at which threads of
//! the run sleep in `semop`/`semtimedop` (`/proc/PID/task/TID/syscall`, for each process that
//! writes a log in the run directory). A thread counts as blocked since it was first seen in
//! the same call with no more wake-ups than the shim's waiting slices make (its voluntary
//! context switches): a thread of a busy ping-pong is seen in semop often, but wakes thousands
//! of times in between. When a thread has been blocked past the threshold and was not looked at
//! before, the wait-for graph is built from the logs written so far (as `shmtrace report` does
//! on a running tree) and each cycle not reported yet is printed once to stderr as finding
//! `SHM013`, with the text the report gives it. A wait that is not part of a cycle prints
//! nothing here (the shim's `SHM010` speaks for it). The logs are read only then, never on a
//! timer, for at most a twentieth of the time, and on a thread of their own: the supervision
//! (reaping, signals) never waits for them, and a graph still being built when the tree ends
//! is dropped unprinted (the report that follows says it all).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::args::ViewOptions;
use crate::merge::{self, DEADLOCK, Sources};
use crate::runinfo::RunInfo;
use crate::{logs, render, semaphores};

/// Shortest interval between two looks at the threads.
const MIN_LOOK: Duration = Duration::from_millis(10);

/// A thread seen in a semop: which call, since when, and its wake-ups then.
struct Sleeper {
    call: (u64, u64, u64),
    since: Instant,
    seen: Instant,
    switches: u64,
}

/// A cycle: its (pid, semid, semaphore) steps, sorted, and the report's text for it.
type Cycle = (Vec<(i32, i64, Option<u16>)>, String);

pub struct Watch {
    run_dir: PathBuf,
    threshold: Duration,
    sleepers: HashMap<(i32, i32), Sleeper>,
    /// Blocked threads the graph was built for already, by (pid, tid, since).
    examined: HashSet<(i32, i32, Instant)>,
    /// Cycles reported, each by its (pid, semid, semaphore) steps, sorted.
    reported: BTreeSet<Vec<(i32, i64, Option<u16>)>>,
    next_look: Instant,
    /// The graph being built, and when it began.
    building: Option<(JoinHandle<Vec<Cycle>>, Instant)>,
    /// No graph is built before then.
    resting_until: Option<Instant>,
}

impl Watch {
    /// A watch when `SHMTRACE_BLOCK_WARN_MS` is a positive number of milliseconds (the shim
    /// warns about any other value).
    pub fn from_env(run_dir: &Path) -> Option<Watch> {
        let ms: u64 = std::env::var("SHMTRACE_BLOCK_WARN_MS").ok()?.parse().ok()?;
        (ms > 0).then(|| Watch {
            run_dir: run_dir.to_path_buf(),
            threshold: Duration::from_millis(ms),
            sleepers: HashMap::new(),
            examined: HashSet::new(),
            reported: BTreeSet::new(),
            next_look: Instant::now(),
            building: None,
            resting_until: None,
        })
    }

    /// Looks at the run when it is time; how long until the next look.
    pub fn tick(&mut self) -> Duration {
        let now = Instant::now();
        if now >= self.next_look {
            self.look(now);
            self.next_look = now + (self.threshold / 2).max(MIN_LOOK);
        }
        self.next_look.saturating_duration_since(Instant::now())
    }

    fn look(&mut self, now: Instant) {
        self.print_built(now);
        let mut present = HashSet::new();
        for pid in log_pids(&self.run_dir) {
            for tid in tasks(pid) {
                let Some(call) = semaphores::blocked_call(pid, tid) else {
                    continue;
                };
                let Some(switches) = voluntary_switches(pid, tid) else {
                    continue;
                };
                present.insert((pid, tid));
                self.saw(pid, tid, call, switches, now);
            }
        }
        self.sleepers.retain(|k, _| present.contains(k));
        let sleepers = &self.sleepers;
        self.examined.retain(|(pid, tid, since)| {
            sleepers
                .get(&(*pid, *tid))
                .is_some_and(|s| s.since == *since)
        });
        let overdue: Vec<(i32, i32, Instant)> = self
            .sleepers
            .iter()
            .filter(|(_, s)| now.duration_since(s.since) >= self.threshold)
            .map(|(&(pid, tid), s)| (pid, tid, s.since))
            .filter(|k| !self.examined.contains(k))
            .collect();
        let busy = self.building.is_some() || self.resting_until.is_some_and(|t| now < t);
        if overdue.is_empty() || busy {
            return;
        }
        self.examined.extend(overdue);
        let run_dir = self.run_dir.clone();
        let worker = std::thread::Builder::new()
            .name("deadlock watch".into())
            .spawn(move || cycles_now(&run_dir));
        if let Ok(worker) = worker {
            self.building = Some((worker, now));
        }
    }

    /// Prints each cycle of a graph built meanwhile that was not reported yet.
    fn print_built(&mut self, now: Instant) {
        if !self.building.as_ref().is_some_and(|(w, _)| w.is_finished()) {
            return;
        }
        let Some((worker, began)) = self.building.take() else {
            return;
        };
        // Reading the logs of a long, busy run takes a while: the watch spends at most a
        // twentieth of the time doing it.
        self.resting_until = Some(now + (now.duration_since(began) * 19).max(self.threshold));
        for (key, text) in worker.join().unwrap_or_default() {
            if self.reported.insert(key) {
                let (code, name, severity) = DEADLOCK;
                eprintln!("shmtrace: finding {code} {severity} ({name}): {text}");
            }
        }
    }

    fn saw(&mut self, pid: i32, tid: i32, call: (u64, u64, u64), switches: u64, now: Instant) {
        let slices = |s: &Sleeper| {
            let elapsed = now.duration_since(s.seen).as_nanos();
            (elapsed / self.threshold.as_nanos().max(1)) as u64 + 2
        };
        match self.sleepers.get_mut(&(pid, tid)) {
            Some(s) if s.call == call && switches.saturating_sub(s.switches) <= slices(s) => {
                s.seen = now;
                s.switches = switches;
            }
            _ => {
                self.sleepers.insert(
                    (pid, tid),
                    Sleeper {
                        call,
                        since: now,
                        seen: now,
                        switches,
                    },
                );
            }
        }
    }
}

/// The cycles of the wait-for graph built from the logs as they are now.
fn cycles_now(run_dir: &Path) -> Vec<Cycle> {
    let Ok(inputs) = logs::gather(&[run_dir.to_path_buf()]) else {
        return Vec::new();
    };
    let sources = Sources {
        inputs: &inputs,
        run: RunInfo::read(run_dir).ok().flatten(),
        run_dir: Some(run_dir.to_path_buf()),
    };
    let Ok(report) = merge::build(sources, &ViewOptions::default()) else {
        return Vec::new();
    };
    let hangs = &report.hangs;
    hangs
        .deadlocks
        .iter()
        .map(|d| {
            let mut key: Vec<(i32, i64, Option<u16>)> = d
                .steps
                .iter()
                .map(|s| {
                    let w = &hangs.waits[s.wait];
                    (w.waiter.pid, w.semid, w.num)
                })
                .collect();
            key.sort();
            (key, render::deadlock_text(hangs, d))
        })
        .collect()
}

/// The processes of the run that are alive and write a log in its directory (`PID.bin`).
fn log_pids(run_dir: &Path) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".bin")?.parse().ok())
        .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
        .collect()
}

fn tasks(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn voluntary_switches(pid: i32, tid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

//! The report's view of blocked semops: who waits for whom, with sites, and the deadlocks.
//!
//! Waiters are the semop calls that never returned. Their operations come from the enter
//! record (shims that record them) or, while the thread is still blocked, from the kernel
//! (`semaphores::blocked_ops`); the holdings come from the logs, the values from the kernel.

use std::collections::BTreeSet;

use super::collect::Collector;
use super::holdings::{Holdings, Reset, Settled, Site};
use super::tree::Tree;
use super::waits::{self, Graph, Liveness, Waiter, World};
use super::{Ending, Process};
use crate::logs::Pos;
use crate::semaphores;
use crate::symbols::{Symbol, Symbolizer};

/// One process of a wait, as the report names it.
#[derive(Clone, Debug)]
pub struct Party {
    pub pid: i32,
    pub program: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HolderState {
    Running,
    /// One of its threads is itself blocked in a semop.
    Waiting,
    /// It exited (or was killed) and the kernel's `SEM_UNDO` did not give all of it back.
    ExitedHolding,
}

impl HolderState {
    pub fn label(self) -> &'static str {
        match self {
            HolderState::Running => "running",
            HolderState::Waiting => "waiting",
            HolderState::ExitedHolding => "exited while holding",
        }
    }
}

#[derive(Clone, Debug)]
pub struct HolderView {
    pub party: Party,
    /// Its net on the semaphore now (after the kernel's adjustment when it exited).
    pub net: i64,
    /// Its pending `SEM_UNDO` adjustment (0: none); for an exited process, already applied.
    pub adjustment: i64,
    pub site: Option<Symbol>,
    pub state: HolderState,
}

/// One semaphore a blocked thread waits for.
#[derive(Clone, Debug)]
pub struct WaitView {
    pub waiter: Party,
    pub tid: i32,
    pub site: Option<Symbol>,
    pub semid: i64,
    /// `None`: the call's operations are not known.
    pub num: Option<u16>,
    /// Negative: takes that many; 0: waits for zero.
    pub op: i16,
    pub value: Option<i64>,
    pub holders: Vec<HolderView>,
    /// The last `SETVAL`/`SETALL` of this semaphore: holdings count from there.
    pub reset: Option<ResetView>,
}

#[derive(Clone, Debug)]
pub struct ResetView {
    pub by: Party,
    /// `SETVAL`'s value; `None` for `SETALL`.
    pub value: Option<i64>,
    pub site: Option<Symbol>,
}

/// A semop woken with `EIDRM`: its set was removed while it waited.
#[derive(Clone, Debug)]
pub struct WokenView {
    pub waiter: Party,
    pub tid: i32,
    pub semid: i64,
    pub site: Option<Symbol>,
}

/// A cycle of processes, each waiting for the next: `steps[i]` is the wait of the i-th process
/// on what the next one holds.
#[derive(Clone, Debug)]
pub struct Deadlock {
    pub steps: Vec<DeadlockStep>,
}

#[derive(Clone, Debug)]
pub struct DeadlockStep {
    /// Index into `Hangs::waits`.
    pub wait: usize,
    /// Index into that wait's holders: the next process of the cycle.
    pub holder: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Hangs {
    pub waits: Vec<WaitView>,
    pub deadlocks: Vec<Deadlock>,
    pub woken: Vec<WokenView>,
}

/// A deadlock's finding code, name and severity (docs/findings.md).
pub const DEADLOCK: (&str, &str, &str) = ("SHM013", "deadlock", "error");

impl Hangs {
    /// Every site of a deadlock: where each process waits, and where it took what the next
    /// one waits for.
    pub fn sites<'a>(&'a self, d: &'a Deadlock) -> impl Iterator<Item = Option<&'a Symbol>> {
        d.steps.iter().flat_map(|s| {
            let w = &self.waits[s.wait];
            [w.site.as_ref(), w.holders[s.holder].site.as_ref()]
        })
    }

    /// Drops the deadlocks `suppressed` says of any of their sites; how many.
    pub fn suppress(&mut self, suppressed: impl Fn(Option<&Symbol>) -> bool) -> u64 {
        let before = self.deadlocks.len();
        let kept: Vec<Deadlock> = self
            .deadlocks
            .iter()
            .filter(|d| !self.sites(d).any(&suppressed))
            .cloned()
            .collect();
        self.deadlocks = kept;
        (before - self.deadlocks.len()) as u64
    }
}

struct Live<'a> {
    processes: &'a [Process],
}

impl World for Live<'_> {
    fn liveness(&self, pid: i32) -> Liveness {
        match self.processes.iter().find(|p| p.pid == pid) {
            Some(p) if p.ending == Ending::StillRunning => Liveness::Running,
            _ => Liveness::Gone,
        }
    }

    fn value(&self, semid: i64, num: u16) -> Option<i64> {
        semaphores::value(semid, num)
    }
}

/// `reread`: the logs read again (for a cycle of processes still running, see [`confirmed`]).
pub(super) fn hangs(
    collector: &Collector,
    tree: &Tree,
    processes: &[Process],
    symbolizer: &mut Symbolizer,
    reread: &mut dyn FnMut() -> Option<Collector>,
) -> Hangs {
    let world = Live { processes };
    let settled = collector.holdings.settle();
    let mut graph = waits::build(waiters(collector, &world), &settled, &world);
    if !graph.cycles.is_empty() {
        graph.cycles = confirmed(&graph, collector, &settled, &world, reread);
    }
    view(&graph, &collector.holdings, tree, processes, symbolizer)
}

/// The cycles that held at one instant. The logs of running processes are read one after
/// another, and a process may move on after its log was read: together they can show a
/// cycle that never was (a consumer still waiting in its log, read first, and its producer
/// already waiting for the next free slot in its own). A cycle with a running process is
/// kept only if, after that reading, each waiting thread of its running processes sleeps in
/// the kernel in a semop of the same set, and a second reading shows the same calls pending
/// and the same holdings of those sets: the first reading's state then held for all of them
/// at one instant, between the two readings. A thread that moved on in between wrote a
/// record (its call's return, before any next call), so it cannot pass both checks.
fn confirmed(
    graph: &Graph,
    first: &Collector,
    before: &Settled,
    world: &Live,
    reread: &mut dyn FnMut() -> Option<Collector>,
) -> Vec<Vec<i32>> {
    let running = |pid: &i32| world.liveness(*pid) == Liveness::Running;
    let waiting_of = |pids: &[i32]| -> Vec<&Waiter> {
        graph
            .waiters
            .iter()
            .filter(|w| pids.contains(&w.pid))
            .collect()
    };
    let asleep = |w: &Waiter| {
        !running(&w.pid)
            || semaphores::blocked_call(w.pid, w.tid)
                .is_some_and(|(semid, _, _)| i64::try_from(semid) == Ok(w.semid))
    };
    let (settled, cycles): (Vec<Vec<i32>>, Vec<Vec<i32>>) = graph
        .cycles
        .iter()
        .cloned()
        .partition(|c| !c.iter().any(running));
    let candidates: Vec<Vec<i32>> = cycles
        .into_iter()
        .filter(|c| waiting_of(c).into_iter().all(asleep))
        .collect();
    if candidates.is_empty() {
        return settled;
    }
    let Some(second) = reread() else {
        return settled;
    };
    let after = second.holdings.settle();
    let same = |c: &Vec<i32>| {
        let semids: BTreeSet<i64> = waiting_of(c).iter().map(|w| w.semid).collect();
        pending_semops(first, c) == pending_semops(&second, c)
            && semids
                .iter()
                .all(|&semid| before.of_set(semid) == after.of_set(semid))
    };
    settled
        .into_iter()
        .chain(candidates.into_iter().filter(same))
        .collect()
}

/// The semops of these processes that had not returned: (pid, tid, where the call began).
fn pending_semops(collector: &Collector, pids: &[i32]) -> BTreeSet<(i32, i32, Pos)> {
    collector
        .pending
        .values()
        .flatten()
        .filter(|(_, c)| pids.contains(&c.pid))
        .filter(|(_, c)| matches!(c.func.as_str(), "semop" | "semtimedop"))
        .map(|(pos, c)| (c.pid, c.tid, *pos))
        .collect()
}

/// The semops that never returned, with their operations.
fn waiters(collector: &Collector, world: &Live) -> Vec<Waiter> {
    collector
        .pending
        .values()
        .flatten()
        .filter(|(_, c)| matches!(c.func.as_str(), "semop" | "semtimedop"))
        .filter_map(|(pos, c)| {
            let live = world.liveness(c.pid) == Liveness::Running;
            Some(Waiter {
                pid: c.pid,
                tid: c.tid,
                semid: c.arg_i64("semid")?,
                ops: super::holdings::ops_of(c).or_else(|| {
                    live.then(|| semaphores::blocked_ops(c.pid, c.tid))
                        .flatten()
                }),
                site: Site {
                    pos: *pos,
                    ts: c.ts,
                    caller: c.caller,
                },
            })
        })
        .collect()
}

fn view(
    graph: &Graph,
    holdings: &Holdings,
    tree: &Tree,
    processes: &[Process],
    symbolizer: &mut Symbolizer,
) -> Hangs {
    let party = |pid: i32| Party {
        pid,
        program: processes
            .iter()
            .find(|p| p.pid == pid)
            .and_then(|p| p.exes.iter().rev().flatten().next())
            .map(|exe| exe.rsplit('/').next().unwrap_or(exe).to_string()),
    };
    let mut site = |pid: i32, s: &Site| {
        let modules = tree.modules_at(pid, s.pos, s.ts);
        s.caller.map(|a| symbolizer.symbolize(a, modules))
    };
    let waiting = |pid: i32| graph.waiters.iter().any(|w| w.pid == pid);
    let mut waits = Vec::new();
    for (i, w) in graph.waiters.iter().enumerate() {
        let needs: Vec<_> = graph.needs.iter().filter(|n| n.waiter == i).collect();
        let waiter_site = site(w.pid, &w.site);
        if needs.is_empty() {
            waits.push(WaitView {
                waiter: party(w.pid),
                tid: w.tid,
                site: waiter_site,
                semid: w.semid,
                num: None,
                op: 0,
                value: None,
                holders: Vec::new(),
                reset: None,
            });
            continue;
        }
        for n in needs {
            let holders = n
                .holders
                .iter()
                .map(|h| {
                    let gone = h.liveness == Liveness::Gone;
                    HolderView {
                        party: party(h.pid),
                        net: if gone {
                            h.held.after_exit()
                        } else {
                            h.held.net
                        },
                        adjustment: h.held.adjustment,
                        site: site(h.pid, &h.held.last),
                        state: holder_state(gone, waiting(h.pid)),
                    }
                })
                .collect();
            waits.push(WaitView {
                waiter: party(w.pid),
                tid: w.tid,
                site: waiter_site.clone(),
                semid: n.semid,
                num: Some(n.num),
                op: n.op,
                value: n.value,
                holders,
                reset: last_reset(holdings, n.semid, n.num).map(|r| ResetView {
                    by: party(r.pid),
                    value: r.value,
                    site: site(r.pid, &r.site),
                }),
            });
        }
    }
    let deadlocks = graph
        .cycles
        .iter()
        .filter_map(|cycle| deadlock(cycle, &waits))
        .collect();
    let woken = holdings
        .woken
        .iter()
        .map(|w| WokenView {
            waiter: party(w.pid),
            tid: w.tid,
            semid: w.semid,
            site: site(w.pid, &w.site),
        })
        .collect();
    Hangs {
        waits,
        deadlocks,
        woken,
    }
}

/// The latest `SETVAL` of this semaphore or `SETALL` of its set.
fn last_reset(holdings: &Holdings, semid: i64, num: u16) -> Option<&Reset> {
    holdings
        .resets
        .iter()
        .filter(|r| r.semid == semid && r.num.is_none_or(|n| n == num))
        .max_by_key(|r| (r.site.ts, r.site.pos.file, r.site.pos.line))
}

fn holder_state(gone: bool, waiting: bool) -> HolderState {
    if gone {
        HolderState::ExitedHolding
    } else if waiting {
        HolderState::Waiting
    } else {
        HolderState::Running
    }
}

/// The steps of one cycle: for each process, its first wait on what the next one holds.
fn deadlock(cycle: &[i32], waits: &[WaitView]) -> Option<Deadlock> {
    let steps = cycle
        .iter()
        .zip(cycle.iter().cycle().skip(1))
        .map(|(&pid, &next)| {
            waits.iter().enumerate().find_map(|(wait, w)| {
                let holder = w.holders.iter().position(|h| h.party.pid == next)?;
                (w.waiter.pid == pid).then_some(DeadlockStep { wait, holder })
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Deadlock { steps })
}

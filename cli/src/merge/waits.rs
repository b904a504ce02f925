//! The wait-for graph: each blocked `semop` linked to the processes whose holdings stand in its
//! way, and its cycles, which are deadlocks.
//!
//! A blocked call waits for particular semaphores: a decrement for the value to reach what it
//! takes, a wait-for-zero for the value to reach zero. Operations the current value already
//! allows are not what it waits for (when the value is known). For a decrement, the processes
//! in the way are the others that took units of that semaphore and hold them (a negative net,
//! beyond what producers supplied); for a wait-for-zero, the others whose increments are still
//! in the value. A process that exited keeps what its `SEM_UNDO` adjustment did not give back.
//!
//! A process waits for another when one of its blocked threads waits for something the other
//! holds; a cycle of such processes can never move on its own: a deadlock.

use std::collections::BTreeSet;

use super::holdings::{Held, SemOp, Settled, Site};

/// A thread blocked in a semop (its call never returned).
#[derive(Clone, Debug)]
pub struct Waiter {
    pub pid: i32,
    pub tid: i32,
    pub semid: i64,
    /// `None`: the operations are not known (not recorded, and not readable now).
    pub ops: Option<Vec<SemOp>>,
    pub site: Site,
}

/// What a process's state means for its holdings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Running,
    /// Exited or killed: the kernel has applied its `SEM_UNDO` adjustments.
    Gone,
}

/// One semaphore a waiter needs, and who stands in the way.
#[derive(Clone, Debug)]
pub struct Need {
    /// Index into the waiters.
    pub waiter: usize,
    pub semid: i64,
    pub num: u16,
    /// Negative: takes that many; 0: waits for zero.
    pub op: i16,
    /// The semaphore's value now, when the kernel could tell.
    pub value: Option<i64>,
    pub holders: Vec<Holder>,
}

#[derive(Clone, Debug)]
pub struct Holder {
    pub pid: i32,
    pub held: Held,
    pub liveness: Liveness,
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub waiters: Vec<Waiter>,
    pub needs: Vec<Need>,
    /// Each a list of pids, the smallest first, each waiting for the next (the last for the
    /// first).
    pub cycles: Vec<Vec<i32>>,
}

/// What the graph needs to know about processes and the kernel.
pub trait World {
    fn liveness(&self, pid: i32) -> Liveness;
    fn value(&self, semid: i64, num: u16) -> Option<i64>;
}

pub fn build(waiters: Vec<Waiter>, holdings: &Settled, world: &dyn World) -> Graph {
    let mut needs = Vec::new();
    for (i, w) in waiters.iter().enumerate() {
        for op in blocking_ops(w, world) {
            let value = world.value(w.semid, op.num);
            needs.push(Need {
                waiter: i,
                semid: w.semid,
                num: op.num,
                op: op.op,
                value,
                holders: holders(w.pid, w.semid, op, holdings, world),
            });
        }
    }
    let mut graph = Graph {
        waiters,
        needs,
        cycles: Vec::new(),
    };
    graph.cycles = cycles(&graph);
    graph
}

/// The operations of a blocked call that wait: decrements and waits-for-zero (without
/// `IPC_NOWAIT`) that the current
/// value does not allow (all of them when the value is unknown, or when each alone would be
/// allowed: then it is their combination that waits).
fn blocking_ops(w: &Waiter, world: &dyn World) -> Vec<SemOp> {
    let candidates: Vec<SemOp> = w
        .ops
        .iter()
        .flatten()
        .copied()
        // An operation that may not wait would have failed the call rather than block it.
        .filter(|op| op.op <= 0 && !op.nowait)
        .collect();
    let blocked: Vec<SemOp> = candidates
        .iter()
        .copied()
        .filter(|op| match world.value(w.semid, op.num) {
            None => true,
            Some(v) if op.op == 0 => v != 0,
            Some(v) => v < -i64::from(op.op),
        })
        .collect();
    if blocked.is_empty() {
        candidates
    } else {
        blocked
    }
}

fn holders(
    waiter: i32,
    semid: i64,
    op: SemOp,
    holdings: &Settled,
    world: &dyn World,
) -> Vec<Holder> {
    let Some(sem) = holdings.of(semid, op.num) else {
        return Vec::new();
    };
    let effective = |pid: i32, held: &Held| match world.liveness(pid) {
        Liveness::Running => held.net,
        Liveness::Gone => held.after_exit(),
    };
    let value = world.value(semid, op.num);
    if value.is_some_and(|v| sem.in_motion(v, effective))
        || (op.op < 0 && sem.held_excess(effective) <= 0)
    {
        return Vec::new();
    }
    sem.by_pid
        .iter()
        .filter(|(pid, _)| **pid != waiter)
        .filter(|(pid, held)| {
            let net = effective(**pid, held);
            if op.op < 0 { net < 0 } else { net > 0 }
        })
        .map(|(pid, held)| Holder {
            pid: *pid,
            held: *held,
            liveness: world.liveness(*pid),
        })
        .collect()
}

/// Every elementary cycle of the process graph (a waits for b when a need of a's threads has
/// b among its holders), each once, rotated to start at its smallest pid.
fn cycles(graph: &Graph) -> Vec<Vec<i32>> {
    let edges: BTreeSet<(i32, i32)> = graph
        .needs
        .iter()
        .flat_map(|n| {
            let from = graph.waiters[n.waiter].pid;
            n.holders.iter().map(move |h| (from, h.pid))
        })
        .collect();
    let nodes: BTreeSet<i32> = edges.iter().map(|e| e.0).collect();
    let mut found = Vec::new();
    for &start in &nodes {
        // Only cycles whose smallest pid is `start`: each is found once.
        let mut path = vec![start];
        walk(start, start, &edges, &mut path, &mut found);
    }
    found
}

fn walk(
    start: i32,
    at: i32,
    edges: &BTreeSet<(i32, i32)>,
    path: &mut Vec<i32>,
    found: &mut Vec<Vec<i32>>,
) {
    for &(_, next) in edges.range((at, i32::MIN)..=(at, i32::MAX)) {
        if next == start {
            found.push(path.clone());
        } else if next > start && !path.contains(&next) {
            path.push(next);
            walk(start, next, edges, path, found);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{Value, json};

    use super::super::holdings::Holdings;
    use super::*;
    use crate::logs::{Call, Pos};

    #[derive(Default)]
    struct Fake {
        gone: Vec<i32>,
        values: HashMap<(i64, u16), i64>,
    }

    impl World for Fake {
        fn liveness(&self, pid: i32) -> Liveness {
            if self.gone.contains(&pid) {
                Liveness::Gone
            } else {
                Liveness::Running
            }
        }
        fn value(&self, semid: i64, num: u16) -> Option<i64> {
            self.values.get(&(semid, num)).copied()
        }
    }

    fn op(num: u16, op: i16, undo: bool) -> SemOp {
        SemOp {
            num,
            op,
            undo,
            nowait: false,
        }
    }

    /// A completed semop of `pid` at time `ts`.
    fn done(h: &mut Holdings, pid: i32, ts: i64, semid: i64, ops: &[SemOp]) {
        let sops: Vec<Value> = ops
            .iter()
            .map(|o| {
                let flg = if o.undo { "SEM_UNDO" } else { "0" };
                json!({"sem_num": o.num, "sem_op": o.op, "sem_flg": flg})
            })
            .collect();
        let Value::Object(args) = json!({"semid": semid, "sops": sops, "nsops": ops.len()}) else {
            unreachable!()
        };
        let call = Call {
            pid,
            tid: pid,
            ts,
            func: "semop".into(),
            args,
            ret: Some(json!(0)),
            errno: None,
            dur_ns: 0,
            caller: Some(0x100),
            stack: vec![],
            created: None,
        };
        h.record(Pos { file: 0, line: 0 }, &call);
    }

    fn waiting(pid: i32, semid: i64, ops: &[SemOp]) -> Waiter {
        Waiter {
            pid,
            tid: pid,
            semid,
            ops: Some(ops.to_vec()),
            site: Site {
                pos: Pos { file: 0, line: 0 },
                ts: 100,
                caller: Some(0x200),
            },
        }
    }

    fn holder_pids(g: &Graph) -> Vec<(i32, Vec<i32>)> {
        g.needs
            .iter()
            .map(|n| {
                (
                    g.waiters[n.waiter].pid,
                    n.holders.iter().map(|h| h.pid).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn two_processes_each_holding_what_the_other_waits_for_are_a_deadlock() {
        let mut h = Holdings::default();
        done(&mut h, 11, 1, 3, &[op(0, -1, false)]);
        done(&mut h, 12, 2, 4, &[op(0, -1, false)]);
        let world = Fake {
            values: HashMap::from([((3, 0), 0), ((4, 0), 0)]),
            ..Fake::default()
        };
        let g = build(
            vec![
                waiting(11, 4, &[op(0, -1, false)]),
                waiting(12, 3, &[op(0, -1, false)]),
            ],
            &h.settle(),
            &world,
        );
        assert_eq!(holder_pids(&g), vec![(11, vec![12]), (12, vec![11])]);
        assert_eq!(g.cycles, vec![vec![11, 12]]);
    }

    #[test]
    fn three_processes_in_a_ring_are_one_deadlock() {
        let mut h = Holdings::default();
        for (pid, semid) in [(21, 1), (22, 2), (23, 3)] {
            done(&mut h, pid, 1, semid, &[op(0, -1, true)]);
        }
        let g = build(
            vec![
                waiting(22, 1, &[op(0, -1, false)]),
                waiting(23, 2, &[op(0, -1, false)]),
                waiting(21, 3, &[op(0, -1, false)]),
            ],
            &h.settle(),
            &Fake::default(),
        );
        assert_eq!(g.cycles, vec![vec![21, 23, 22]]);
    }

    #[test]
    fn a_holder_that_is_not_waiting_is_named_without_a_cycle() {
        let mut h = Holdings::default();
        done(&mut h, 11, 1, 3, &[op(0, -1, false)]);
        let g = build(
            vec![waiting(12, 3, &[op(0, -1, false)])],
            &h.settle(),
            &Fake::default(),
        );
        assert_eq!(holder_pids(&g), vec![(12, vec![11])]);
        assert!(g.cycles.is_empty());
    }

    #[test]
    fn an_exited_holder_holds_only_what_its_undo_adjustment_did_not_give_back() {
        let mut h = Holdings::default();
        done(&mut h, 11, 1, 3, &[op(0, -1, true)]);
        done(&mut h, 13, 1, 3, &[op(1, -1, false)]);
        let world = Fake {
            gone: vec![11, 13],
            ..Fake::default()
        };
        let g = build(
            vec![waiting(12, 3, &[op(0, -1, false), op(1, -1, false)])],
            &h.settle(),
            &world,
        );
        assert_eq!(holder_pids(&g), vec![(12, vec![]), (12, vec![13])]);
        assert_eq!(g.needs[1].holders[0].liveness, Liveness::Gone);
    }

    #[test]
    fn a_wait_for_zero_is_held_up_by_whoever_raised_the_value() {
        let mut h = Holdings::default();
        done(&mut h, 11, 1, 3, &[op(0, 1, false)]);
        let world = Fake {
            values: HashMap::from([((3, 0), 1)]),
            ..Fake::default()
        };
        let g = build(
            vec![waiting(12, 3, &[op(0, 0, false)])],
            &h.settle(),
            &world,
        );
        assert_eq!(holder_pids(&g), vec![(12, vec![11])]);
        assert_eq!(g.needs[0].op, 0);
    }

    #[test]
    fn operations_the_value_allows_are_not_waited_for() {
        let h = Holdings::default();
        let world = Fake {
            values: HashMap::from([((3, 0), 5), ((3, 1), 0)]),
            ..Fake::default()
        };
        let g = build(
            vec![waiting(12, 3, &[op(0, -1, false), op(1, -1, false)])],
            &h.settle(),
            &world,
        );
        assert_eq!(g.needs.len(), 1);
        assert_eq!(g.needs[0].num, 1);
    }

    #[test]
    fn consumers_waiting_for_a_producer_are_no_deadlock() {
        let mut h = Holdings::default();
        // The producer posted 2, each consumer took one; both now wait for more.
        done(&mut h, 31, 1, 3, &[op(0, -1, false)]);
        done(&mut h, 30, 2, 3, &[op(0, 2, false)]);
        done(&mut h, 32, 3, 3, &[op(0, -1, false)]);
        let g = build(
            vec![
                waiting(31, 3, &[op(0, -1, false)]),
                waiting(32, 3, &[op(0, -1, false)]),
            ],
            &h.settle(),
            &Fake::default(),
        );
        assert!(g.cycles.is_empty(), "{:?}", g.cycles);
        assert!(g.needs.iter().all(|n| n.holders.is_empty()));
    }

    #[test]
    fn consumers_seen_while_the_producers_post_is_not_logged_yet_are_no_deadlock() {
        let mut h = Holdings::default();
        // A set made in the logs (starts at 0): the producer's third post has happened (the
        // value shows it taken already) but is not logged yet.
        let Value::Object(args) = json!({"key": "IPC_PRIVATE", "nsems": 1, "semflg": "IPC_CREAT"})
        else {
            unreachable!()
        };
        let created = Call {
            pid: 30,
            tid: 30,
            ts: 0,
            func: "semget".into(),
            args,
            ret: Some(json!(3)),
            errno: None,
            dur_ns: 0,
            caller: None,
            stack: vec![],
            created: Some(true),
        };
        h.record(Pos { file: 0, line: 0 }, &created);
        done(&mut h, 30, 1, 3, &[op(0, 2, false)]);
        done(&mut h, 31, 2, 3, &[op(0, -2, false)]);
        done(&mut h, 32, 3, 3, &[op(0, -1, false)]);
        let world = Fake {
            values: HashMap::from([((3, 0), 0)]),
            ..Fake::default()
        };
        let g = build(
            vec![
                waiting(31, 3, &[op(0, -1, false)]),
                waiting(32, 3, &[op(0, -1, false)]),
            ],
            &h.settle(),
            &world,
        );
        assert!(g.needs.iter().all(|n| n.holders.is_empty()));
        assert!(g.cycles.is_empty());
    }

    #[test]
    fn ping_pong_is_no_deadlock() {
        let mut h = Holdings::default();
        // s1 starts at 1 (set, not logged as an operation), s2 at 0. A: P(s1) V(s2); B: P(s2)
        // V(s1); A is on its second P(s1), B is between its P(s2) and V(s1).
        done(&mut h, 41, 1, 1, &[op(0, -1, false)]);
        done(&mut h, 41, 2, 2, &[op(0, 1, false)]);
        done(&mut h, 42, 3, 2, &[op(0, -1, false)]);
        let g = build(
            vec![waiting(41, 1, &[op(0, -1, false)])],
            &h.settle(),
            &Fake::default(),
        );
        assert!(g.needs.iter().all(|n| n.holders.is_empty()));
        assert!(g.cycles.is_empty());
    }

    #[test]
    fn operations_that_may_not_wait_are_not_waited_for() {
        let h = Holdings::default();
        let mut nowait = op(0, -1, false);
        nowait.nowait = true;
        let g = build(
            vec![waiting(12, 3, &[nowait, op(1, -1, false)])],
            &h.settle(),
            &Fake::default(),
        );
        assert_eq!(g.needs.len(), 1);
        assert_eq!(g.needs[0].num, 1);
    }

    #[test]
    fn unknown_operations_wait_for_nothing_in_particular() {
        let h = Holdings::default();
        let mut w = waiting(12, 3, &[]);
        w.ops = None;
        let g = build(vec![w], &h.settle(), &Fake::default());
        assert!(g.needs.is_empty());
        assert_eq!(g.waiters.len(), 1);
    }
}

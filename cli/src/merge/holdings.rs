//! What each process holds of each semaphore, from the completed operations in the logs.
//!
//! A process's holding of a semaphore is the net of its completed operations on it (negative:
//! it took units and has not given them back; positive: it added units nobody took from it)
//! and its pending `SEM_UNDO` adjustment (what the kernel gives back when it exits). `SETVAL`
//! and `SETALL` set the value outright: the kernel clears every process's adjustment for those
//! semaphores, and earlier holdings no longer say anything, so they are reset (and the reset is
//! kept to be shown). `IPC_RMID` ends the set: its holdings go, and its waiters are woken with
//! `EIDRM`.
//!
//! Units a process took are not always units it holds: a consumer takes what a producer gave,
//! and gives nothing back. So each process is also classed by what it did: it *took* (some
//! decrement), it *produced* (an increment after the first decrement anyone made), or it only
//! *initialised* (increments before anyone took). Taken units count as held only as far as
//! producers did not supply them (see `Semaphore::held_excess`).
//!
//! Changes are gathered while the logs are read, file by file, and applied in the order they
//! happened (by time) when the holdings are asked for: a reset in one process's log must not
//! clear what another process did after it. Only records the logs already have are used:
//! nothing is added to the shim's per-call work.

use std::collections::BTreeMap;

use crate::logs::{Call, Micros, Pos};

/// One operation of a `sembuf` array, as a record shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemOp {
    pub num: u16,
    pub op: i16,
    pub undo: bool,
    pub nowait: bool,
}

/// The operations of a semop record, when the shim could read them (never on EFAULT, and in
/// enter records only from shims that record them).
pub fn ops_of(call: &Call) -> Option<Vec<SemOp>> {
    let list = call.args.get("sops")?.as_array()?;
    list.iter()
        .map(|op| {
            let flags = op.get("sem_flg")?.as_str()?;
            Some(SemOp {
                num: u16::try_from(op.get("sem_num")?.as_u64()?).ok()?,
                op: i16::try_from(op.get("sem_op")?.as_i64()?).ok()?,
                undo: flags.split('|').any(|f| f == "SEM_UNDO"),
                nowait: flags.split('|').any(|f| f == "IPC_NOWAIT"),
            })
        })
        .collect()
}

/// Where a holding was last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub pos: Pos,
    pub ts: Micros,
    pub caller: Option<u64>,
}

/// One process's holding of one semaphore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// The sum of its completed operations.
    pub net: i64,
    /// Its `SEM_UNDO` adjustment: what the kernel adds back at its exit.
    pub adjustment: i64,
    /// Its last operation on this semaphore.
    pub last: Site,
    /// Its last decrement of it (`None`: it never took).
    pub last_take: Option<Site>,
    /// When it last made an increment.
    pub last_raise: Option<Micros>,
}

impl Held {
    /// What stays taken (or added) once the process has exited and the kernel applied its
    /// adjustment.
    pub fn after_exit(&self) -> i64 {
        self.net + self.adjustment
    }
}

/// The holdings of one semaphore since it was created or last set.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Semaphore {
    /// Its value when it was created (0) or set with `SETVAL`; `None` when not known (made
    /// outside the logs, or set with `SETALL`, whose values are not logged).
    start: Option<i64>,
    /// When anyone first decremented it.
    first_take: Option<Micros>,
    pub by_pid: BTreeMap<i32, Held>,
}

impl Semaphore {
    fn starting_at(start: Option<i64>) -> Semaphore {
        Semaphore {
            start,
            ..Semaphore::default()
        }
    }

    /// Operations must come in the order they were made.
    fn apply(&mut self, pid: i32, op: SemOp, site: Site) {
        if op.op < 0 && self.first_take.is_none() {
            self.first_take = Some(site.ts);
        }
        let held = self.by_pid.entry(pid).or_insert(Held {
            net: 0,
            adjustment: 0,
            last: site,
            last_take: None,
            last_raise: None,
        });
        held.net += i64::from(op.op);
        if op.undo {
            held.adjustment -= i64::from(op.op);
        }
        if op.op < 0 {
            held.last_take = Some(site);
        }
        if op.op > 0 {
            held.last_raise = Some(site.ts);
        }
        held.last = site;
    }

    /// It took, or it gave after someone took (a producer): its gifts are not a starting value.
    fn supplies(&self, held: &Held) -> bool {
        held.last_take.is_some()
            || held
                .last_raise
                .zip(self.first_take)
                .is_some_and(|(raise, take)| raise >= take)
    }

    /// Whether the logs lag the kernel: the value they account for (its starting value plus
    /// every net) is not the value it has. Another process's operation has happened but is
    /// not logged yet; holdings say nothing reliable until it is.
    pub fn in_motion(&self, value: i64, effective: impl Fn(i32, &Held) -> i64) -> bool {
        self.start.is_some_and(|start| {
            let accounted: i64 = self.by_pid.iter().map(|(pid, h)| effective(*pid, h)).sum();
            start + accounted != value
        })
    }

    /// Units taken and not given back, beyond what producers supplied; `effective` is a
    /// holding's net as it stands now (after the kernel's adjustment for exited processes).
    pub fn held_excess(&self, effective: impl Fn(i32, &Held) -> i64) -> i64 {
        let (taken, supplied) =
            self.by_pid
                .iter()
                .fold((0, 0), |(taken, supplied), (pid, held)| {
                    let net = effective(*pid, held);
                    let supplies = self.supplies(held);
                    (
                        taken + (-net).max(0),
                        supplied + if supplies { net.max(0) } else { 0 },
                    )
                });
        taken - supplied
    }
}

/// `semctl` `SETVAL` or `SETALL`: the holdings of `num` (all semaphores for `SETALL`) start
/// again from nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reset {
    pub pid: i32,
    pub semid: i64,
    /// `None`: every semaphore of the set (`SETALL`).
    pub num: Option<u16>,
    /// `SETVAL`'s value.
    pub value: Option<i64>,
    pub site: Site,
}

/// A semop that failed with `EIDRM`: woken because its set was removed while it waited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Woken {
    pub pid: i32,
    pub tid: i32,
    pub semid: i64,
    pub site: Site,
}

/// A change to holdings, kept until they are asked for.
#[derive(Clone, Copy, Debug)]
enum Change {
    Op {
        pid: i32,
        semid: i64,
        op: SemOp,
    },
    /// `semget` made it: every semaphore starts at 0.
    Created {
        semid: i64,
        nsems: u16,
    },
    /// `SETVAL` (one semaphore, its value) or `SETALL` (`None`: all of them).
    Set {
        value: Option<i64>,
        semid: i64,
        num: Option<u16>,
    },
    Removed {
        semid: i64,
    },
}

/// What the logs say about semaphores, gathered in reading order.
#[derive(Debug, Default)]
pub struct Holdings {
    changes: Vec<(Site, Change)>,
    pub resets: Vec<Reset>,
    pub woken: Vec<Woken>,
}

impl Holdings {
    /// Takes in one completed call (any function: only semaphore calls change holdings).
    pub fn record(&mut self, pos: Pos, call: &Call) {
        let site = Site {
            pos,
            ts: call.ts,
            caller: call.caller,
        };
        if call.func == "semget" && call.created == Some(true) {
            let semid = call.ret_i64();
            let nsems = call.arg_i64("nsems").and_then(|n| u16::try_from(n).ok());
            if let (Some(semid), Some(nsems)) = (semid, nsems) {
                self.changes.push((site, Change::Created { semid, nsems }));
            }
            return;
        }
        let Some(semid) = call.arg_i64("semid") else {
            return;
        };
        match call.func.as_str() {
            "semop" | "semtimedop" if call.succeeded() => {
                for op in ops_of(call).unwrap_or_default() {
                    let pid = call.pid;
                    self.changes.push((site, Change::Op { pid, semid, op }));
                }
            }
            "semop" | "semtimedop" if call.errno.as_deref() == Some("EIDRM") => {
                self.woken.push(Woken {
                    pid: call.pid,
                    tid: call.tid,
                    semid,
                    site,
                });
            }
            "semctl" if call.succeeded() => {
                let cmd = call.arg_str("cmd").unwrap_or("");
                let (num, value) = match cmd.strip_prefix("IPC_64|").unwrap_or(cmd) {
                    "SETVAL" => {
                        let num = call.arg_i64("semnum").and_then(|n| u16::try_from(n).ok());
                        let Some(num) = num else { return };
                        (Some(num), call.arg_i64("val"))
                    }
                    "SETALL" => (None, None),
                    "IPC_RMID" => {
                        self.changes.push((site, Change::Removed { semid }));
                        return;
                    }
                    _ => return,
                };
                self.changes.push((site, Change::Set { value, semid, num }));
                self.resets.push(Reset {
                    pid: call.pid,
                    semid,
                    num,
                    value,
                    site,
                });
            }
            _ => {}
        }
    }

    /// Every change applied in the order it was made.
    pub fn settle(&self) -> Settled {
        let mut order: Vec<&(Site, Change)> = self.changes.iter().collect();
        order.sort_by_key(|(site, _)| (site.ts, site.pos.file, site.pos.line));
        let mut settled = Settled::default();
        for (site, change) in order {
            match *change {
                Change::Op { pid, semid, op } => settled
                    .held
                    .entry((semid, op.num))
                    .or_default()
                    .apply(pid, op, *site),
                Change::Created { semid, nsems } => {
                    for num in 0..nsems {
                        settled.start((semid, num), Some(0), site.ts);
                    }
                }
                Change::Set {
                    value,
                    semid,
                    num: Some(num),
                } => settled.start((semid, num), value, site.ts),
                Change::Set {
                    semid, num: None, ..
                }
                | Change::Removed { semid } => settled.end_set(semid, site.ts),
            }
        }
        settled
    }
}

/// Holdings as they stand after every change the logs recorded.
#[derive(Debug, Default)]
pub struct Settled {
    /// By (semid, semaphore number); sets removed are dropped.
    held: BTreeMap<(i64, u16), Semaphore>,
    /// Holdings that a reset or the removal of their set ended, as they stood then, and when.
    ended: Vec<((i64, u16), Semaphore, Micros)>,
}

impl Settled {
    /// The holdings of one semaphore, if any process of the logs operated on it.
    pub fn of(&self, semid: i64, num: u16) -> Option<&Semaphore> {
        self.held.get(&(semid, num))
    }

    /// The holdings of every semaphore of a set the logs operated on, by number.
    pub fn of_set(&self, semid: i64) -> Vec<(u16, &Semaphore)> {
        self.held
            .range((semid, 0)..=(semid, u16::MAX))
            .map(|(k, s)| (k.1, s))
            .collect()
    }

    /// Every stretch of holdings, from a creation or reset to the next reset, the removal of
    /// the set, or now: (semid, semaphore number), the holdings at its end, and when it ended
    /// (`None`: it goes on).
    pub fn epochs(&self) -> impl Iterator<Item = ((i64, u16), &Semaphore, Option<Micros>)> {
        let ended = self.ended.iter().map(|(k, s, end)| (*k, s, Some(*end)));
        ended.chain(self.held.iter().map(|(k, s)| (*k, s, None)))
    }

    fn start(&mut self, key: (i64, u16), value: Option<i64>, at: Micros) {
        if let Some(old) = self.held.insert(key, Semaphore::starting_at(value)) {
            self.ended.push((key, old, at));
        }
    }

    fn end_set(&mut self, semid: i64, at: Micros) {
        let keys: Vec<(i64, u16)> = self
            .held
            .range((semid, 0)..=(semid, u16::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(old) = self.held.remove(&key) {
                self.ended.push((key, old, at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn call(pid: i32, func: &str, args: Value, errno: Option<&str>) -> Call {
        let Value::Object(args) = args else {
            panic!("args must be an object")
        };
        Call {
            pid,
            tid: pid,
            ts: 0,
            func: func.into(),
            args,
            ret: Some(json!(0)),
            errno: errno.map(str::to_string),
            dur_ns: 0,
            caller: Some(0x1000 + pid as u64),
            stack: vec![],
            created: None,
        }
    }

    fn semop(pid: i32, semid: i64, ops: &[(u16, i16, &str)]) -> Call {
        let sops: Vec<Value> = ops
            .iter()
            .map(|(n, o, f)| json!({"sem_num": n, "sem_op": o, "sem_flg": f}))
            .collect();
        call(
            pid,
            "semop",
            json!({"semid": semid, "sops": sops, "nsops": ops.len()}),
            None,
        )
    }

    fn pos(line: usize) -> Pos {
        Pos { file: 0, line }
    }

    fn nets(h: &Holdings, semid: i64, num: u16) -> Vec<(i32, i64, i64)> {
        h.settle()
            .of(semid, num)
            .into_iter()
            .flat_map(|s| s.by_pid.iter())
            .map(|(pid, held)| (*pid, held.net, held.adjustment))
            .collect()
    }

    #[test]
    fn completed_operations_sum_per_process_with_their_undo_adjustment() {
        let mut h = Holdings::default();
        h.record(pos(1), &semop(10, 3, &[(0, -1, "SEM_UNDO"), (1, 1, "0")]));
        h.record(pos(2), &semop(10, 3, &[(0, -1, "0")]));
        h.record(pos(3), &semop(11, 3, &[(0, 1, "IPC_NOWAIT|SEM_UNDO")]));
        assert_eq!(nets(&h, 3, 0), vec![(10, -2, 1), (11, 1, -1)]);
        assert_eq!(nets(&h, 3, 1), vec![(10, 1, 0)]);
        let settled = h.settle();
        let held = &settled.of(3, 0).unwrap().by_pid[&10];
        assert_eq!(held.last.pos, pos(2));
        assert_eq!(held.after_exit(), -1);
    }

    fn at(mut c: Call, ts: Micros) -> Call {
        c.ts = ts;
        c
    }

    fn excess(h: &Holdings, semid: i64) -> i64 {
        h.settle()
            .of(semid, 0)
            .unwrap()
            .held_excess(|_, held| held.net)
    }

    #[test]
    fn units_a_producer_supplied_are_not_held_by_their_consumers() {
        let mut h = Holdings::default();
        // Producer 10 posts, consumers 11 and 12 take what it posted.
        h.record(pos(1), &at(semop(11, 3, &[(0, -1, "0")]), 5));
        h.record(pos(2), &at(semop(10, 3, &[(0, 2, "0")]), 6));
        h.record(pos(3), &at(semop(12, 3, &[(0, -1, "0")]), 7));
        assert_eq!(excess(&h, 3), 0);
    }

    #[test]
    fn changes_apply_in_time_order_whatever_order_the_logs_are_read_in() {
        let mut h = Holdings::default();
        // The producer's log is read first: its posts come after the consumer's first take.
        h.record(pos(1), &at(semop(10, 3, &[(0, 1, "0")]), 6));
        h.record(pos(2), &at(semop(10, 3, &[(0, 1, "0")]), 8));
        // A later file: the value was set before all of this, and the consumer took twice.
        let mut set = call(
            12,
            "semctl",
            json!({"semid": 3, "semnum": 0, "cmd": "SETVAL", "val": 0}),
            None,
        );
        set.ts = 1;
        h.record(pos(3), &set);
        h.record(pos(4), &at(semop(11, 3, &[(0, -1, "0")]), 5));
        h.record(pos(5), &at(semop(11, 3, &[(0, -1, "0")]), 7));
        assert_eq!(nets(&h, 3, 0), vec![(10, 2, 0), (11, -2, 0)]);
        assert_eq!(excess(&h, 3), 0);
        assert_eq!(h.settle().of(3, 0).unwrap().by_pid[&11].last.ts, 7);
    }

    #[test]
    fn a_semaphore_whose_logged_operations_do_not_add_up_to_its_value_is_in_motion() {
        let mut h = Holdings::default();
        let mut created = call(
            10,
            "semget",
            json!({"key": "IPC_PRIVATE", "nsems": 2}),
            None,
        );
        created.ret = Some(json!(3));
        created.created = Some(true);
        h.record(pos(1), &created);
        h.record(pos(2), &at(semop(10, 3, &[(0, 2, "0")]), 2));
        h.record(pos(3), &at(semop(11, 3, &[(0, -1, "0")]), 3));
        h.record(pos(4), &at(semop(12, 3, &[(0, -1, "0")]), 4));
        let settled = h.settle();
        let sem = settled.of(3, 0).unwrap();
        let net = |_: i32, held: &Held| held.net;
        assert!(!sem.in_motion(0, net));
        // The kernel's value says one more post happened than the logs show so far.
        assert!(sem.in_motion(1, net));
        // Semaphore 1 was created too: it starts at 0 with no holdings.
        assert!(!settled.of(3, 1).unwrap().in_motion(0, net));
        assert!(settled.of(3, 1).unwrap().in_motion(1, net));
    }

    #[test]
    fn units_given_before_anyone_took_are_an_initial_value_that_takers_hold() {
        let mut h = Holdings::default();
        // 10 initialises a lock with +1; 11 takes it and keeps it.
        h.record(pos(1), &at(semop(10, 3, &[(0, 1, "0")]), 1));
        h.record(pos(2), &at(semop(11, 3, &[(0, -1, "0")]), 2));
        assert_eq!(excess(&h, 3), 1);
        // A lock user that gives back holds nothing more.
        h.record(pos(3), &at(semop(11, 3, &[(0, 1, "0")]), 3));
        assert_eq!(excess(&h, 3), 0);
    }

    #[test]
    fn failed_operations_hold_nothing_and_eidrm_is_a_wakeup_by_removal() {
        let mut h = Holdings::default();
        let mut failed = semop(10, 3, &[(0, -1, "0")]);
        failed.errno = Some("EAGAIN".into());
        h.record(pos(1), &failed);
        failed.errno = Some("EIDRM".into());
        h.record(pos(2), &failed);
        assert!(nets(&h, 3, 0).is_empty());
        assert_eq!(h.woken.len(), 1);
        assert_eq!((h.woken[0].pid, h.woken[0].semid), (10, 3));
    }

    #[test]
    fn setval_resets_one_semaphore_setall_and_rmid_the_whole_set() {
        let mut h = Holdings::default();
        h.record(pos(1), &semop(10, 3, &[(0, -1, "0"), (1, -1, "0")]));
        h.record(
            pos(2),
            &call(
                11,
                "semctl",
                json!({"semid": 3, "semnum": 0, "cmd": "SETVAL", "val": 1}),
                None,
            ),
        );
        assert!(nets(&h, 3, 0).is_empty());
        assert_eq!(nets(&h, 3, 1), vec![(10, -1, 0)]);
        assert_eq!(h.resets[0].num, Some(0));
        assert_eq!(h.resets[0].value, Some(1));
        h.record(
            pos(3),
            &call(
                11,
                "semctl",
                json!({"semid": 3, "semnum": 0, "cmd": "IPC_64|SETALL", "array": "0x10"}),
                None,
            ),
        );
        assert!(nets(&h, 3, 1).is_empty());
        assert_eq!(h.resets[1].num, None);
        h.record(pos(4), &semop(10, 4, &[(0, -1, "0")]));
        h.record(
            pos(5),
            &call(
                11,
                "semctl",
                json!({"semid": 4, "semnum": 0, "cmd": "IPC_RMID"}),
                None,
            ),
        );
        assert!(nets(&h, 4, 0).is_empty());
    }

    #[test]
    fn operations_not_read_are_no_holdings() {
        let mut h = Holdings::default();
        h.record(
            pos(1),
            &call(
                10,
                "semop",
                json!({"semid": 3, "sops": "0x7ffd0000", "nsops": 1}),
                None,
            ),
        );
        assert!(nets(&h, 3, 0).is_empty());
    }
}

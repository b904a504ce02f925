//! Reading records into what the merge needs: start and fork records, exit reports, pending
//! blocking calls, SysV creations and removals, call statistics, and a few early call sites
//! per process (to recognise the program image a forked child inherited).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::holdings::Holdings;
use super::model::{CallStat, Kind, NameKind};
use crate::logs::{Call, ExitReport, Finding, Loaded, Micros, Pos, Record, Start};

/// How many early call sites of a process are kept to recognise the image it inherited.
const EARLY_SITES: usize = 16;

/// A SysV object created by a successful shmget/semget/msgget.
pub(super) struct Creation {
    pub(super) kind: Kind,
    pub(super) id: i64,
    pub(super) key: String,
    pub(super) size: u64,
    pub(super) flags: String,
    pub(super) created: Option<bool>,
    pub(super) pid: i32,
    pub(super) ts: Micros,
    pub(super) pos: Pos,
    pub(super) caller: Option<u64>,
    /// The frames above `caller`, when recorded.
    pub(super) stack: Vec<u64>,
}

/// A POSIX shared memory or semaphore name created (`shm_open`, `sem_open` that created it)
/// or unlinked.
pub(super) struct NameEvent {
    pub(super) kind: NameKind,
    pub(super) name: String,
    pub(super) created: bool,
    pub(super) pid: i32,
    pub(super) ts: Micros,
    pub(super) pos: Pos,
    pub(super) caller: Option<u64>,
    pub(super) stack: Vec<u64>,
}

pub(super) struct Removal {
    pub(super) kind: Kind,
    pub(super) id: i64,
    pub(super) pid: i32,
    pub(super) ts: Micros,
    pub(super) pos: Pos,
}

#[derive(Default)]
pub(super) struct Seen {
    pub(super) first_ts: Micros,
    /// Its latest record with a time (an exit report has none).
    pub(super) last_ts: Micros,
    pub(super) records: u64,
    /// Early call sites (position, address), to recognise an inherited image.
    pub(super) early: Vec<(Pos, Micros, u64)>,
}

#[derive(Default)]
pub(super) struct Collector {
    pub(super) starts: Vec<(Pos, Start)>,
    pub(super) forks: HashMap<i32, i32>,
    pub(super) reports: HashMap<i32, (Pos, ExitReport)>,
    pub(super) pending: HashMap<(usize, i32, i32), Vec<(Pos, Call)>>,
    pub(super) creations: Vec<Creation>,
    pub(super) removals: Vec<Removal>,
    pub(super) names: Vec<NameEvent>,
    pub(super) stats: BTreeMap<(i32, String), CallStat>,
    pub(super) seen: HashMap<i32, Seen>,
    pub(super) findings: Vec<(Pos, Finding)>,
    /// Modules loaded after a start record, listed when the image ended.
    pub(super) loaded: Vec<(Pos, Loaded)>,
    /// Every process that got, attached, operated on or controlled each SysV id.
    pub(super) users: HashMap<(Kind, i64), BTreeSet<i32>>,
    pub(super) holdings: Holdings,
}

impl Collector {
    pub(super) fn add(&mut self, pos: Pos, record: Record) {
        let (pid, ts) = match &record {
            Record::Start(s) => (s.pid, s.ts),
            Record::Fork(f) => (f.pid, f.ts),
            Record::Enter(c) | Record::Call(c) => (c.pid, c.ts),
            Record::Report(r) => (r.pid, Micros::MAX),
            Record::Finding(f) => (f.pid, f.ts),
            Record::Modules(l) => (l.pid, l.ts),
        };
        let seen = self.seen.entry(pid).or_insert_with(|| Seen {
            first_ts: Micros::MAX,
            ..Seen::default()
        });
        seen.records += 1;
        if ts < seen.first_ts {
            seen.first_ts = ts;
        }
        if ts != Micros::MAX && ts > seen.last_ts {
            seen.last_ts = ts;
        }
        match record {
            Record::Start(s) => self.starts.push((pos, s)),
            Record::Fork(f) => {
                self.forks.insert(f.pid, f.ppid);
            }
            Record::Enter(c) => {
                remember_early(seen, pos, c.ts, c.caller);
                self.pending
                    .entry((pos.file, c.pid, c.tid))
                    .or_default()
                    .push((pos, c));
            }
            Record::Call(c) => {
                remember_early(seen, pos, c.ts, c.caller);
                self.call(pos, c);
            }
            Record::Report(r) => {
                for site in r.attachments.iter().map(|a| a.site) {
                    remember_early(seen, pos, Micros::MAX, site);
                }
                for site in r.mappings.iter().map(|m| m.site) {
                    remember_early(seen, pos, Micros::MAX, site);
                }
                self.reports.insert(r.pid, (pos, r));
            }
            Record::Finding(f) => self.findings.push((pos, f)),
            Record::Modules(l) => self.loaded.push((pos, l)),
        }
    }

    /// The tracked calls a process made: those that returned, and those that never did.
    pub(super) fn calls_of(&self, pid: i32) -> u64 {
        let returned: u64 = self
            .stats
            .range((pid, String::new())..)
            .take_while(|((p, _), _)| *p == pid)
            .map(|(_, s)| s.calls)
            .sum();
        let pending: usize = self
            .pending
            .iter()
            .filter(|((_, p, _), _)| *p == pid)
            .map(|(_, v)| v.len())
            .sum();
        returned + pending as u64
    }

    pub(super) fn call(&mut self, pos: Pos, c: Call) {
        if let Some(stack) = self.pending.get_mut(&(pos.file, c.pid, c.tid))
            && let Some(i) = stack.iter().rposition(|(_, e)| e.func == c.func)
        {
            stack.remove(i);
        }
        let stat = self.stats.entry((c.pid, c.func.clone())).or_default();
        stat.calls += 1;
        stat.failed += u64::from(!c.succeeded());
        stat.total_ns = stat.total_ns.saturating_add(c.dur_ns);
        stat.max_ns = stat.max_ns.max(c.dur_ns);
        self.holdings.record(pos, &c);
        if !c.succeeded() {
            return;
        }
        let used = match c.func.as_str() {
            "shmget" => c.ret_i64().map(|id| (Kind::Segment, id)),
            "semget" => c.ret_i64().map(|id| (Kind::SemaphoreSet, id)),
            "shmat" | "shmctl" => c.arg_i64("shmid").map(|id| (Kind::Segment, id)),
            "semop" | "semtimedop" | "semctl" => {
                c.arg_i64("semid").map(|id| (Kind::SemaphoreSet, id))
            }
            "msgget" => c.ret_i64().map(|id| (Kind::MessageQueue, id)),
            "msgsnd" | "msgrcv" | "msgctl" => c.arg_i64("msqid").map(|id| (Kind::MessageQueue, id)),
            _ => None,
        };
        if let Some(key) = used {
            self.users.entry(key).or_default().insert(c.pid);
        }
        match c.func.as_str() {
            "shm_open" | "shm_unlink" | "sem_open" | "sem_unlink" => {
                let created = c.func.ends_with("_open");
                let kind = if c.func.starts_with("sem_") {
                    NameKind::Semaphore
                } else {
                    NameKind::Shm
                };
                // Only a creation or an unlink changes what outlives the run.
                if created && c.created != Some(true) {
                    return;
                }
                if let Some(name) = c.arg_str("name") {
                    self.names.push(NameEvent {
                        kind,
                        name: name.to_string(),
                        created,
                        pid: c.pid,
                        ts: c.ts,
                        pos,
                        caller: c.caller,
                        stack: c.stack,
                    });
                }
            }
            "shmget" | "semget" | "msgget" => {
                let Some(id) = c.ret_i64().filter(|id| *id >= 0) else {
                    return;
                };
                let (kind, size_key, flags_key) = match c.func.as_str() {
                    "shmget" => (Kind::Segment, "size", "shmflg"),
                    "semget" => (Kind::SemaphoreSet, "nsems", "semflg"),
                    // A queue has no size; what it holds is the kernel's at report time.
                    _ => (Kind::MessageQueue, "", "msgflg"),
                };
                self.creations.push(Creation {
                    kind,
                    id,
                    key: c.arg_str("key").unwrap_or("?").to_string(),
                    size: c
                        .arg_i64(size_key)
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    flags: c.arg_str(flags_key).unwrap_or("").to_string(),
                    created: c.created,
                    pid: c.pid,
                    ts: c.ts,
                    pos,
                    caller: c.caller,
                    stack: c.stack,
                });
            }
            "shmctl" | "semctl" | "msgctl" => {
                let cmd = c.arg_str("cmd").unwrap_or("");
                if cmd.strip_prefix("IPC_64|").unwrap_or(cmd) != "IPC_RMID" {
                    return;
                }
                let (kind, id_key) = match c.func.as_str() {
                    "shmctl" => (Kind::Segment, "shmid"),
                    "semctl" => (Kind::SemaphoreSet, "semid"),
                    _ => (Kind::MessageQueue, "msqid"),
                };
                if let Some(id) = c.arg_i64(id_key) {
                    self.removals.push(Removal {
                        kind,
                        id,
                        pid: c.pid,
                        ts: c.ts,
                        pos,
                    });
                }
            }
            _ => {}
        }
    }
}

pub(super) fn remember_early(seen: &mut Seen, pos: Pos, ts: Micros, caller: Option<u64>) {
    if let Some(addr) = caller
        && seen.early.len() < EARLY_SITES
        && !seen.early.iter().any(|e| e.2 == addr)
    {
        seen.early.push((pos, ts, addr));
    }
}

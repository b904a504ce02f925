//! The run over time, for the pictures (`--html`, `--trace-json`): every call of every process
//! in time order, each process's fork, exec and end, and what each process held after every
//! call that changed it (bytes mapped, bytes attached, live SysV objects it created, live
//! shared file mappings), replayed from the calls as the kernel applies them.
//!
//! The text and JSON reports need only totals; this keeps each call (its arguments as compact
//! JSON text, about a hundred bytes), so it is built only when a picture is asked for.

mod held;
pub mod marks;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::logs::{self, Call, Finding, Micros, Module, Pos, Record};
use crate::merge::Kind;
use held::Held;

/// What a successful call changed, as the replay needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    Map {
        addr: u64,
        len: u64,
        shared_file: bool,
    },
    Unmap {
        addr: u64,
        len: u64,
    },
    Remap {
        old: u64,
        old_len: u64,
        new: u64,
        new_len: u64,
        keep_old: bool,
    },
    /// A shmget/semget that created the object.
    Create {
        kind: Kind,
        id: i64,
        /// Bytes of a segment (0 for a set).
        size: u64,
    },
    Remove {
        kind: Kind,
        id: i64,
    },
    Attach {
        shmid: i64,
        addr: u64,
    },
    Detach {
        addr: u64,
    },
}

impl Effect {
    /// A SysV object's creation or removal: always marked on the timeline.
    pub fn is_lifecycle(self) -> bool {
        matches!(self, Effect::Create { .. } | Effect::Remove { .. })
    }
}

/// One call as logged.
#[derive(Clone, Debug)]
pub struct Event {
    pub pid: i32,
    pub tid: i32,
    pub ts: Micros,
    pub dur_ns: u64,
    pub func: Box<str>,
    /// The decoded arguments, a JSON object as text.
    pub args: Box<str>,
    /// The result as JSON text; `None` for a call that never returned.
    pub ret: Option<Box<str>>,
    pub errno: Option<Box<str>>,
    pub caller: Option<u64>,
    pub stack: Box<[u64]>,
    pub effect: Effect,
    pos: Pos,
}

impl Event {
    pub fn returned(&self) -> bool {
        self.ret.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// The first image of a process that did not come from a traced fork.
    Start {
        exe: Option<String>,
    },
    Exec {
        exe: Option<String>,
    },
    Fork {
        parent: i32,
    },
}

#[derive(Clone, Debug)]
pub struct Mark {
    pub pid: i32,
    pub ts: Micros,
    pub kind: MarkKind,
    pos: Pos,
}

/// What a process held just after `ts`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub ts: Micros,
    pub mapped: u64,
    pub attached: u64,
    /// Live SysV segments and semaphore sets this process created.
    pub sysv: u32,
    /// Live `MAP_SHARED` mappings of a file (POSIX shared memory among them).
    pub shared_files: u32,
}

/// A program image's module map, from its start record.
struct Image {
    start: Micros,
    modules: Vec<Module>,
}

#[derive(Default)]
pub struct Timeline {
    /// Every call, in time order (calls that never returned included).
    pub events: Vec<Event>,
    /// Start, exec and fork, in time order.
    pub marks: Vec<Mark>,
    /// Per process, in time order, after every call that changed what it held.
    pub samples: BTreeMap<i32, Vec<Sample>>,
    /// Every finding record, in time order.
    pub findings: Vec<Finding>,
    /// Per process, its first and last record's times (its lane).
    spans: HashMap<i32, (Micros, Micros)>,
    /// Per process, its images' module maps by start time (to symbolize its calls).
    images: HashMap<i32, Vec<Image>>,
    /// Per process, the parent a fork record names and when (a forked child runs its
    /// parent's image).
    forked_from: HashMap<i32, (i32, Micros)>,
    pub first_ts: Micros,
    pub end_ts: Micros,
}

impl Timeline {
    /// Reads every log (unreadable ones were already warned about by the merge).
    pub fn read(files: &[PathBuf]) -> Timeline {
        let mut t = Timeline::default();
        let mut pending: HashMap<(usize, i32, i32), Vec<Event>> = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let _ = logs::read_file(path, i, &mut |pos, record| t.add(pos, record, &mut pending));
        }
        t.events.extend(pending.into_values().flatten());
        t.events.sort_by_key(|e| (e.ts, e.pos));
        t.marks.sort_by_key(|m| (m.ts, m.pos));
        t.findings.sort_by_key(|f| f.ts);
        for v in t.images.values_mut() {
            v.sort_by_key(|i| i.start);
        }
        t.end_ts = t.spans.values().map(|s| s.1).max().unwrap_or(0);
        t.first_ts = t
            .events
            .first()
            .map(|e| e.ts)
            .into_iter()
            .chain(t.marks.first().map(|m| m.ts))
            .min()
            .unwrap_or(t.end_ts);
        t.replay();
        t
    }

    fn add(
        &mut self,
        pos: Pos,
        record: Record,
        pending: &mut HashMap<(usize, i32, i32), Vec<Event>>,
    ) {
        let (pid, ts) = match &record {
            Record::Start(s) => (s.pid, s.ts),
            Record::Fork(f) => (f.pid, f.ts),
            Record::Enter(c) | Record::Call(c) => (c.pid, c.ts),
            Record::Finding(f) => (f.pid, f.ts),
            Record::Report(_) => return,
            Record::Modules(l) => {
                // Loaded after the image started: its calls from them are symbolized too.
                if let Some(image) = self.images.get_mut(&l.pid).and_then(|i| i.last_mut()) {
                    crate::logs::add_modules(&mut image.modules, &l.modules);
                }
                return;
            }
        };
        let span = self.spans.entry(pid).or_insert((ts, ts));
        *span = (span.0.min(ts), span.1.max(ts));
        match record {
            Record::Start(s) => {
                let images = self.images.entry(s.pid).or_default();
                let kind = if images.is_empty() && !self.forked_from.contains_key(&s.pid) {
                    MarkKind::Start { exe: s.exe }
                } else {
                    MarkKind::Exec { exe: s.exe }
                };
                images.push(Image {
                    start: s.ts,
                    modules: s.modules,
                });
                self.marks.push(Mark {
                    pid: s.pid,
                    ts: s.ts,
                    kind,
                    pos,
                });
            }
            Record::Fork(f) => {
                self.forked_from.insert(f.pid, (f.ppid, f.ts));
                self.marks.push(Mark {
                    pid: f.pid,
                    ts: f.ts,
                    kind: MarkKind::Fork { parent: f.ppid },
                    pos,
                });
            }
            Record::Enter(c) => {
                let key = (pos.file, c.pid, c.tid);
                pending.entry(key).or_default().push(event(pos, c, false));
            }
            Record::Call(c) => {
                if let Some(waiting) = pending.get_mut(&(pos.file, c.pid, c.tid))
                    && let Some(i) = waiting.iter().rposition(|e| *e.func == c.func)
                {
                    waiting.remove(i);
                }
                self.events.push(event(pos, c, true));
            }
            Record::Finding(f) => self.findings.push(f),
            Record::Report(_) | Record::Modules(_) => {}
        }
    }

    /// Replays every call in time order into per-process samples.
    fn replay(&mut self) {
        let mut held: HashMap<i32, Held> = HashMap::new();
        let mut sizes: HashMap<i64, u64> = HashMap::new();
        // Live SysV objects and the process that created each.
        let mut live: HashMap<(Kind, i64), i32> = HashMap::new();
        let mut sysv: HashMap<i32, u32> = HashMap::new();
        let mut marks = self.marks.iter().peekable();
        for e in &self.events {
            while let Some(m) = marks.next_if(|m| (m.ts, m.pos) <= (e.ts, e.pos)) {
                match m.kind {
                    MarkKind::Fork { parent } => {
                        let inherited = held.get(&parent).cloned().unwrap_or_default();
                        held.insert(m.pid, inherited);
                    }
                    // An exec replaces the address space; a fresh start begins with nothing.
                    _ => {
                        held.insert(m.pid, Held::default());
                    }
                }
            }
            if e.effect == Effect::None || !e.returned() {
                continue;
            }
            // The caller's lane, or the creator's for a removal; and an id's previous creator.
            let mut changed = [Some(e.pid), None];
            let h = held.entry(e.pid).or_default();
            match e.effect {
                Effect::Map {
                    addr,
                    len,
                    shared_file,
                } => h.map(addr, len, shared_file),
                Effect::Unmap { addr, len } => h.unmap(addr, len),
                Effect::Remap {
                    old,
                    old_len,
                    new,
                    new_len,
                    keep_old,
                } => h.remap(old, old_len, new, new_len, keep_old),
                Effect::Attach { shmid, addr } => {
                    h.attach(addr, sizes.get(&shmid).copied().unwrap_or(0))
                }
                Effect::Detach { addr } => h.detach(addr),
                Effect::Create { kind, id, size } => {
                    if kind == Kind::Segment {
                        sizes.insert(id, size);
                    }
                    if let Some(old) = live.insert((kind, id), e.pid) {
                        // The id was reused without a removal seen: the old one is gone.
                        changed[1] = Some(old);
                        *sysv.entry(old).or_default() -= 1;
                    }
                    *sysv.entry(e.pid).or_default() += 1;
                }
                Effect::Remove { kind, id } => {
                    if let Some(creator) = live.remove(&(kind, id)) {
                        *sysv.entry(creator).or_default() -= 1;
                        changed[0] = Some(creator);
                    }
                }
                Effect::None => {}
            }
            for pid in changed.into_iter().flatten() {
                let h = held.entry(pid).or_default();
                let sample = Sample {
                    ts: e.ts,
                    mapped: h.mapped,
                    attached: h.attached,
                    sysv: sysv.get(&pid).copied().unwrap_or(0),
                    shared_files: h.shared_files,
                };
                let series = self.samples.entry(pid).or_default();
                match series.last_mut() {
                    Some(last) if last.ts == sample.ts => *last = sample,
                    Some(last)
                        if Sample {
                            ts: sample.ts,
                            ..*last
                        } == sample => {}
                    _ => series.push(sample),
                }
            }
        }
    }

    /// When `pid`'s first record was written (the run's start if it has none).
    pub fn start_of(&self, pid: i32) -> Micros {
        self.spans.get(&pid).map_or(self.first_ts, |s| s.0)
    }

    /// When `pid`'s last record was written (the run's end if it has none).
    pub fn end_of(&self, pid: i32) -> Micros {
        self.spans.get(&pid).map_or(self.end_ts, |s| s.1)
    }

    /// The module map of the image `pid` ran at `ts`: its latest own image started by then,
    /// else (a forked child before any exec) its parent's at the fork.
    pub fn modules_at(&self, pid: i32, ts: Micros) -> Option<&[Module]> {
        let mut pid = pid;
        let mut ts = ts;
        for _ in 0..64 {
            if let Some(images) = self.images.get(&pid)
                && let Some(image) = images.iter().rev().find(|i| i.start <= ts)
            {
                return Some(image.modules.as_slice());
            }
            let (parent, fork) = *self.forked_from.get(&pid)?;
            ts = fork;
            pid = parent;
        }
        None
    }
}

fn event(pos: Pos, c: Call, returned: bool) -> Event {
    let effect = if returned && c.succeeded() {
        effect_of(&c)
    } else {
        Effect::None
    };
    let ret = returned.then(|| {
        c.ret
            .as_ref()
            .map_or_else(|| "null".to_string(), Value::to_string)
            .into_boxed_str()
    });
    Event {
        pid: c.pid,
        tid: c.tid,
        ts: c.ts,
        dur_ns: c.dur_ns,
        args: Value::Object(c.args).to_string().into_boxed_str(),
        func: c.func.into_boxed_str(),
        ret,
        errno: c.errno.map(String::into_boxed_str),
        caller: c.caller,
        stack: c.stack.into_boxed_slice(),
        effect,
        pos,
    }
}

fn num(args: &Map<String, Value>, key: &str) -> Option<u64> {
    args.get(key).and_then(Value::as_u64)
}

fn has_flag(args: &Map<String, Value>, key: &str, flag: &str) -> bool {
    args.get(key)
        .and_then(Value::as_str)
        .is_some_and(|f| f.split('|').any(|part| part == flag))
}

/// The effect of a successful call.
fn effect_of(c: &Call) -> Effect {
    let a = &c.args;
    let ret_addr = || logs::hex(c.ret.as_ref());
    let id = |key: &str| a.get(key).and_then(Value::as_i64);
    let removal = || {
        let cmd = c.arg_str("cmd").unwrap_or("");
        cmd.strip_prefix("IPC_64|").unwrap_or(cmd) == "IPC_RMID"
    };
    let effect = match c.func.as_str() {
        "mmap" | "mmap64" => ret_addr()
            .zip(num(a, "length"))
            .map(|(addr, len)| Effect::Map {
                addr,
                len,
                shared_file: has_flag(a, "flags", "MAP_SHARED")
                    && a.get("fd")
                        .and_then(Value::as_i64)
                        .is_some_and(|fd| fd >= 0),
            }),
        "munmap" => logs::hex(a.get("addr"))
            .zip(num(a, "length"))
            .map(|(addr, len)| Effect::Unmap { addr, len }),
        "mremap" => (|| {
            Some(Effect::Remap {
                old: logs::hex(a.get("old_address"))?,
                old_len: num(a, "old_size")?,
                new: ret_addr()?,
                new_len: num(a, "new_size")?,
                keep_old: has_flag(a, "flags", "MREMAP_DONTUNMAP"),
            })
        })(),
        "shmget" | "semget" | "msgget" if c.created != Some(false) => {
            c.ret_i64().map(|id| Effect::Create {
                kind: match c.func.as_str() {
                    "shmget" => Kind::Segment,
                    "semget" => Kind::SemaphoreSet,
                    _ => Kind::MessageQueue,
                },
                id,
                size: num(a, "size").unwrap_or(0),
            })
        }
        "shmctl" if removal() => id("shmid").map(|id| Effect::Remove {
            kind: Kind::Segment,
            id,
        }),
        "semctl" if removal() => id("semid").map(|id| Effect::Remove {
            kind: Kind::SemaphoreSet,
            id,
        }),
        "msgctl" if removal() => id("msqid").map(|id| Effect::Remove {
            kind: Kind::MessageQueue,
            id,
        }),
        "shmat" => id("shmid")
            .zip(ret_addr())
            .map(|(shmid, addr)| Effect::Attach { shmid, addr }),
        "shmdt" => logs::hex(a.get("shmaddr")).map(|addr| Effect::Detach { addr }),
        _ => None,
    };
    effect.unwrap_or(Effect::None)
}

#[cfg(test)]
mod tests;

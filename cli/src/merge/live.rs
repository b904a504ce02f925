//! What the logs cannot say alone, asked of the kernel at the end: which objects left behind are
//! still in use by a running process of the tree (not leaks), and which objects and attachments
//! the tree made that no log recorded (a static binary, a setuid program, a raw system call).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::collect::Collector;
use super::model::{Ending, Kind, Process, SysvLeak, Unseen, UnseenKind, User};
use crate::kernel::{self, Kernel, Object, Presence, Start};
use crate::logs::Micros;

/// The running processes of the tree and the SysV segments each has mapped now.
pub(super) struct Running {
    maps: BTreeMap<i32, (Option<String>, BTreeSet<i64>)>,
}

impl Running {
    pub(super) fn read(processes: &[Process]) -> Running {
        let maps = processes
            .iter()
            .filter(|p| p.ending == Ending::StillRunning)
            .map(|p| {
                let exe = p.exes.last().cloned().flatten();
                (p.pid, (exe, kernel::mapped_segments(p.pid)))
            })
            .collect();
        Running { maps }
    }

    /// Who holds a leftover object: for a segment, the running processes that have it mapped;
    /// for a set or a queue, those that got or used it (the kernel does not say who has one
    /// "open").
    fn users(&self, c: &Collector, leak: &SysvLeak) -> Vec<User> {
        let exists = matches!(leak.presence, Presence::Exists | Presence::MarkedForRemoval);
        if !exists {
            return Vec::new();
        }
        let logged = c.users.get(&(leak.kind, leak.id));
        self.maps
            .iter()
            .filter(|(pid, (_, mapped))| match leak.kind {
                Kind::Segment => mapped.contains(&leak.id),
                Kind::SemaphoreSet | Kind::MessageQueue => logged.is_some_and(|u| u.contains(pid)),
            })
            .map(|(pid, (exe, _))| User {
                pid: *pid,
                exe: exe.clone(),
            })
            .collect()
    }
}

/// Splits the objects left behind into leaks and objects in use (with their users).
pub(super) fn split_in_use(
    c: &Collector,
    running: &Running,
    leaks: Vec<SysvLeak>,
) -> (Vec<SysvLeak>, Vec<SysvLeak>) {
    leaks
        .into_iter()
        .map(|mut leak| {
            leak.users = running.users(c, &leak);
            leak
        })
        .partition(|l| l.users.is_empty())
}

/// The kernel's word: objects created during the run by the tree that no log recorded, and
/// SysV attachments of running processes that no log recorded.
pub(super) fn unseen(
    c: &Collector,
    kernel: &Kernel,
    start: &Start,
    tree: &BTreeSet<i32>,
    running: &Running,
    ended: Option<Micros>,
    leaks: &[SysvLeak],
) -> Vec<Unseen> {
    // An id the logs name counts as recorded, unless the kernel's object under it is another.
    let recorded = |kind: Kind, id: i64| {
        c.users.contains_key(&(kind, id))
            && !leaks
                .iter()
                .any(|l| l.kind == kind && l.id == id && l.presence == Presence::Reused)
    };
    let ended_s = ended.map(|e| e.div_euclid(1_000_000));
    let during_run = |o: &Object, before: &HashSet<(i64, i64)>| {
        !before.contains(&(o.id, o.ctime))
            && o.ctime >= start.started_s
            && ended_s.is_none_or(|e| o.ctime <= e)
    };
    let mut found = Vec::new();
    for o in kernel.segments.iter().flat_map(|m| m.values()) {
        let by_tree = o.cpid.is_some_and(|p| tree.contains(&p));
        if by_tree && during_run(o, &start.segments) && !recorded(Kind::Segment, o.id) {
            found.push(Unseen {
                what: UnseenKind::Segment,
                id: o.id,
                key: Some(o.key),
                size: o.size,
                pid: o.cpid,
            });
        }
    }
    for o in kernel.sets.iter().flat_map(|m| m.values()) {
        if !during_run(o, &start.sets) || recorded(Kind::SemaphoreSet, o.id) {
            continue;
        }
        // Sets name no creator: the tree's when a process of the tree was the last to operate
        // on one of its semaphores (another program's set, made meanwhile, is not blamed).
        let operator = kernel::set_operators(o.id, o.size)
            .into_iter()
            .find(|p| tree.contains(p));
        if operator.is_some() {
            found.push(Unseen {
                what: UnseenKind::SemaphoreSet,
                id: o.id,
                key: Some(o.key),
                size: o.size,
                pid: operator,
            });
        }
    }
    for q in kernel.queues.iter().flat_map(|m| m.values()) {
        if !during_run(&q.object, &start.queues) || recorded(Kind::MessageQueue, q.object.id) {
            continue;
        }
        // Queues name no creator either: the tree's when a process of it sent or received last.
        let operator = [q.last_sender, q.last_receiver]
            .into_iter()
            .find(|p| tree.contains(p));
        if operator.is_some() {
            found.push(Unseen {
                what: UnseenKind::MessageQueue,
                id: q.object.id,
                key: Some(q.object.key),
                size: q.bytes,
                pid: operator,
            });
        }
    }
    for (pid, (_, mapped)) in &running.maps {
        for id in mapped {
            if !recorded(Kind::Segment, *id) && !found.iter().any(|u| u.id == *id) {
                let size = kernel
                    .segments
                    .as_ref()
                    .and_then(|m| m.get(id))
                    .map_or(0, |o| o.size);
                found.push(Unseen {
                    what: UnseenKind::Attachment,
                    id: *id,
                    key: None,
                    size,
                    pid: Some(*pid),
                });
            }
        }
    }
    found.sort_by_key(|u| (u.what, u.id, u.pid));
    found
}

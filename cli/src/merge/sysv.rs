//! SysV objects across the tree: created by one process (a successful shmget/semget/msgget
//! that created the object), removed by any (a successful IPC_RMID on that id afterwards).

use std::collections::{BTreeMap, HashSet};

use super::collect::{Collector, Creation, Removal};
use super::model::{Kind, SysvLeak, SysvSummary};
use super::tree::Tree;
use crate::kernel::{Identity, Kernel};
use crate::logs::{Micros, Pos};
use crate::symbols::{Symbol, Symbolizer};

/// Objects created in the tree and never removed afterwards by any process of it.
pub(super) fn sysv_leaks(
    c: &Collector,
    tree: &Tree,
    kernel: &Kernel,
    symbolizer: &mut Symbolizer,
) -> (Vec<SysvLeak>, SysvSummary) {
    enum Ev<'a> {
        Create(&'a Creation),
        Remove(&'a Removal),
    }
    /// Time, creation (0) before removal (1) in the same microsecond, position.
    type Event<'a> = (Micros, u8, Pos, Ev<'a>);
    let mut by_id: BTreeMap<(Kind, i64), Vec<Event<'_>>> = BTreeMap::new();
    for cr in &c.creations {
        by_id
            .entry((cr.kind, cr.id))
            .or_default()
            .push((cr.ts, 0, cr.pos, Ev::Create(cr)));
    }
    for r in &c.removals {
        by_id
            .entry((r.kind, r.id))
            .or_default()
            .push((r.ts, 1, r.pos, Ev::Remove(r)));
    }
    let reported: HashSet<(i32, Kind, i64)> = c
        .reports
        .values()
        .flat_map(|(_, r)| {
            let segs = r.segments.iter().map(|id| (r.pid, Kind::Segment, *id));
            let sets = r
                .semaphores
                .iter()
                .map(|id| (r.pid, Kind::SemaphoreSet, *id));
            segs.chain(sets).collect::<Vec<_>>()
        })
        .collect();

    let mut summary = SysvSummary::default();
    let mut leaks = Vec::new();
    for ((kind, id), mut events) in by_id {
        events.sort_by_key(|e| (e.0, e.1, e.2));
        // The object currently alive under this id: its creation, if this tree created it.
        let mut alive: Option<&Creation> = None;
        let mut opened_before = false;
        let mut finish = |cr: &Creation, leaks: &mut Vec<SysvLeak>| {
            let modules = tree.modules_at(cr.pid, cr.pos, cr.ts);
            let exe = tree
                .image_at(cr.pid, cr.pos, cr.ts)
                .and_then(|i| i.exe.clone());
            let who = Identity {
                key: &cr.key,
                size: cr.size,
                creator: cr.pid,
                created: cr.ts,
            };
            let (presence, queued) = match kind {
                Kind::Segment => (kernel.segment(id, &who), None),
                Kind::SemaphoreSet => (kernel.semaphore_set(id, &who), None),
                Kind::MessageQueue => kernel.message_queue(id, &who),
            };
            leaks.push(SysvLeak {
                kind,
                id,
                key: cr.key.clone(),
                size: cr.size,
                queued,
                pid: cr.pid,
                exe,
                site: cr
                    .caller
                    .map_or(Symbol::raw(0), |a| symbolizer.symbolize(a, modules)),
                stack: symbolizer.symbolize_all(&cr.stack, modules),
                ts: cr.ts,
                presence,
                users: Vec::new(),
            });
        };
        for (_, _, _, ev) in &events {
            match ev {
                Ev::Create(cr) => {
                    if !created(cr, opened_before, &reported) {
                        opened_before = true;
                        continue;
                    }
                    if let Some(prev) = alive.take() {
                        // The id was reused: the previous object went away unseen.
                        finish(prev, &mut leaks);
                    }
                    summary.created += 1;
                    alive = Some(cr);
                    opened_before = true;
                }
                Ev::Remove(r) => {
                    if let Some(cr) = alive.take() {
                        summary.removed += 1;
                        if r.pid != cr.pid {
                            summary.removed_elsewhere += 1;
                        }
                    }
                }
            }
        }
        if let Some(cr) = alive {
            finish(cr, &mut leaks);
        }
    }
    leaks.sort_by_key(|l| (tree.rank(l.pid), l.ts, l.kind, l.id));
    (leaks, summary)
}

/// Whether this successful get created the object. Shims record it (`created`); for older
/// logs: `IPC_PRIVATE` and `IPC_CREAT|IPC_EXCL` always create, `IPC_CREAT` alone created it
/// if the creating process's exit report lists it or no process of the tree had it before.
pub(super) fn created(
    cr: &Creation,
    opened_before: bool,
    reported: &HashSet<(i32, Kind, i64)>,
) -> bool {
    if let Some(created) = cr.created {
        return created;
    }
    let flags: Vec<&str> = cr.flags.split('|').collect();
    let creat = flags.contains(&"IPC_CREAT");
    cr.key == "IPC_PRIVATE"
        || (creat && flags.contains(&"IPC_EXCL"))
        || (creat && (reported.contains(&(cr.pid, cr.kind, cr.id)) || !opened_before))
}

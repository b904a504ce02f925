//! POSIX shared memory and semaphore names across the tree: created by one process (a
//! `shm_open` or `sem_open` that created the name), unlinked by any (a successful `shm_unlink`
//! or `sem_unlink` afterwards). A name the tree created and never unlinked outlives the run;
//! `/dev/shm` says whether it is still there.

use std::collections::BTreeMap;

use super::collect::{Collector, NameEvent};
use super::model::{NameKind, NameLeak};
use super::tree::Tree;
use crate::kernel::Presence;
use crate::logs::Micros;
use crate::symbols::{Symbol, Symbolizer};

/// Where glibc keeps the object of a name: `/dev/shm/NAME`, `/dev/shm/sem.NAME` for a
/// semaphore.
pub fn dev_shm_path(kind: NameKind, name: &str) -> String {
    let prefix = match kind {
        NameKind::Shm => "",
        NameKind::Semaphore => "sem.",
    };
    format!("/dev/shm/{prefix}{}", name.trim_start_matches('/'))
}

/// Names created in the tree and never unlinked afterwards by any process of it, each with
/// what `/dev/shm` holds now (`presence` asks, given the path and when the tree created it).
pub(super) fn name_leaks(
    c: &Collector,
    tree: &Tree,
    symbolizer: &mut Symbolizer,
    presence: impl Fn(&str, Micros) -> Presence,
) -> Vec<NameLeak> {
    let mut by_name: BTreeMap<(NameKind, &str), Vec<&NameEvent>> = BTreeMap::new();
    for ev in &c.names {
        by_name.entry((ev.kind, &ev.name)).or_default().push(ev);
    }
    let mut leaks = Vec::new();
    for ((kind, name), mut events) in by_name {
        events.sort_by_key(|e| (e.ts, e.pos));
        let Some(last) = events.last().filter(|e| e.created) else {
            continue;
        };
        let path = dev_shm_path(kind, name);
        let modules = tree.modules_at(last.pid, last.pos, last.ts);
        leaks.push(NameLeak {
            kind,
            name: name.to_string(),
            presence: presence(&path, last.ts),
            path,
            pid: last.pid,
            exe: tree
                .image_at(last.pid, last.pos, last.ts)
                .and_then(|i| i.exe.clone()),
            site: last
                .caller
                .map_or(Symbol::raw(0), |a| symbolizer.symbolize(a, modules)),
            stack: symbolizer.symbolize_all(&last.stack, modules),
            ts: last.ts,
        });
    }
    leaks.sort_by_key(|l| (tree.rank(l.pid), l.ts));
    leaks
}

//! POSIX shared memory names across the tree: created by one process (a `shm_open` that
//! created the name), unlinked by any (a successful `shm_unlink` afterwards). A name still in
//! `/dev/shm` at the end that no process of the tree unlinked outlives the run.

use std::collections::BTreeMap;
use std::path::Path;

use super::collect::{Collector, NameEvent};
use super::model::NameLeak;
use super::tree::Tree;
use crate::symbols::{Symbol, Symbolizer};

/// Where glibc keeps the object of a name.
pub fn dev_shm_path(name: &str) -> String {
    format!("/dev/shm/{}", name.trim_start_matches('/'))
}

/// Names created in the tree, never unlinked afterwards by any process of it, and still in
/// `/dev/shm` (`exists` asks).
pub(super) fn name_leaks(
    c: &Collector,
    tree: &Tree,
    symbolizer: &mut Symbolizer,
    exists: impl Fn(&Path) -> bool,
) -> Vec<NameLeak> {
    let mut by_name: BTreeMap<&str, Vec<&NameEvent>> = BTreeMap::new();
    for ev in &c.names {
        by_name.entry(&ev.name).or_default().push(ev);
    }
    let mut leaks = Vec::new();
    for (name, mut events) in by_name {
        events.sort_by_key(|e| (e.ts, e.pos));
        let Some(last) = events.last().filter(|e| e.created) else {
            continue;
        };
        let path = dev_shm_path(name);
        if !exists(Path::new(&path)) {
            continue;
        }
        let modules = tree.modules_at(last.pid, last.pos, last.ts);
        leaks.push(NameLeak {
            name: name.to_string(),
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

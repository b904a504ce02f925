//! The process tree and each process's program images: a start record begins an image (at
//! program start and after each exec); a process that made calls before any start record of
//! its own runs the image it inherited at fork, found among its parent's images (or, parent
//! unknown, among all images: the one holding the addresses it called from).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::collect::Collector;
use super::model::ParentSource;
use crate::logs::{Micros, Module, Pos, Start, add_modules};
use crate::runinfo::RunInfo;

/// One program image: from a start record, or inherited at fork.
pub(super) struct Image {
    /// `None` for an inherited image (it precedes every record of the process).
    pub(super) pos: Option<Pos>,
    pub(super) ts: Micros,
    pub(super) exe: Option<String>,
    pub(super) modules: Rc<Vec<Module>>,
}

/// Whether a record at (`pos`, `ts`) of a process comes after its start record at
/// (`spos`, `sts`): by line in the same file, else by time.
pub(super) fn after(spos: Pos, sts: Micros, pos: Pos, ts: Micros) -> bool {
    if spos.file == pos.file {
        spos.line < pos.line
    } else {
        sts <= ts
    }
}

/// The process tree and each process's program images.
pub(super) struct Tree {
    pub(super) nodes: HashMap<i32, Node>,
    /// Depth-first, children by first record.
    pub(super) order: Vec<i32>,
    ranks: HashMap<i32, usize>,
}

pub(super) struct Node {
    pub(super) ppid: Option<i32>,
    pub(super) parent_source: ParentSource,
    pub(super) images: Vec<Image>,
    pub(super) depth: usize,
}

impl Tree {
    pub(super) fn build(c: &Collector, run: Option<&RunInfo>) -> Tree {
        let mut by_first: Vec<(Micros, i32)> =
            c.seen.iter().map(|(pid, s)| (s.first_ts, *pid)).collect();
        by_first.sort();

        // Own images (start records), per process, in order.
        let mut own: HashMap<i32, Vec<Image>> = HashMap::new();
        let mut starts: Vec<&(Pos, Start)> = c.starts.iter().collect();
        starts.sort_by_key(|(pos, s)| (s.ts, *pos));
        for (pos, s) in starts {
            let images = own.entry(s.pid).or_default();
            images.push(Image {
                pos: Some(*pos),
                ts: s.ts,
                exe: s.exe.clone(),
                modules: Rc::new(s.modules.clone()),
            });
        }
        // Modules an image loaded after its start (dlopen), listed when it ended: added
        // before any child inherits the image, so the child's calls from them are placed too.
        for (pos, loaded) in &c.loaded {
            let image = own.get_mut(&loaded.pid).and_then(|images| {
                images
                    .iter_mut()
                    .rev()
                    .find(|i| i.pos.is_some_and(|sp| after(sp, i.ts, *pos, loaded.ts)))
            });
            if let Some(image) = image {
                add_modules(Rc::make_mut(&mut image.modules), &loaded.modules);
            }
        }
        let first_start_ppid: HashMap<i32, i32> = c
            .starts
            .iter()
            .filter_map(|(_, s)| Some((s.pid, s.ppid?, s.ts)))
            .fold(HashMap::new(), |mut m, (pid, ppid, ts)| {
                let e = m.entry(pid).or_insert((ts, ppid));
                if ts < e.0 {
                    *e = (ts, ppid);
                }
                m
            })
            .into_iter()
            .map(|(pid, (_, ppid))| (pid, ppid))
            .collect();

        let mut nodes: HashMap<i32, Node> = HashMap::new();
        // Processes whose first record is not a start record inherited an image at fork (or
        // at vfork): find it among their parent's images, or, parent unknown, among all images
        // that contain the addresses they called from.
        for &(first_ts, pid) in &by_first {
            let seen = &c.seen[&pid];
            let mut images = own.remove(&pid).unwrap_or_default();
            let mut ppid = c
                .forks
                .get(&pid)
                .copied()
                .or_else(|| first_start_ppid.get(&pid).copied());
            if ppid.is_none() {
                ppid = run
                    .filter(|r| r.root_pid == Some(pid))
                    .map(|r| r.shmtrace_pid);
            }
            let mut parent_source = ParentSource::Recorded;
            let first_own = images.first().and_then(|i| i.pos.map(|p| (p, i.ts)));
            let early: Vec<u64> = seen
                .early
                .iter()
                .filter(|(pos, ts, _)| first_own.is_none_or(|(sp, sts)| !after(sp, sts, *pos, *ts)))
                .map(|e| e.2)
                .collect();
            // Calls made before any start record of its own ran in an inherited image.
            let needs_inherited = first_own.is_none() || !early.is_empty();
            // Parent unknown and no address to recognise its image by: nothing to go on.
            if needs_inherited && (ppid.is_some() || !early.is_empty()) {
                // The parent's images; if none fits (parent outside the logs), any image.
                let best = ppid
                    .and_then(|parent| {
                        let images = nodes
                            .get(&parent)
                            .map(|n| &n.images)
                            .or_else(|| own.get(&parent));
                        fitting(
                            images.into_iter().flatten().map(|i| (parent, i)),
                            first_ts,
                            &early,
                        )
                    })
                    .or_else(|| {
                        let all = nodes
                            .iter()
                            .flat_map(|(p, n)| n.images.iter().map(move |i| (*p, i)))
                            .chain(own.iter().flat_map(|(p, v)| v.iter().map(move |i| (*p, i))))
                            .filter(|(p, i)| i.pos.is_some() && *p != pid);
                        fitting(all, first_ts, &early).filter(|_| !early.is_empty())
                    })
                    .map(|(owner, i)| (owner, i.exe.clone(), Rc::clone(&i.modules)));
                if let Some((owner, exe, modules)) = best {
                    if ppid.is_none() {
                        // The process that started the image: the parent, or an ancestor
                        // when a forked child forked again.
                        ppid = Some(owner);
                        parent_source = ParentSource::Inferred;
                    }
                    images.insert(
                        0,
                        Image {
                            pos: None,
                            ts: Micros::MIN,
                            exe,
                            modules,
                        },
                    );
                }
            }
            nodes.insert(
                pid,
                Node {
                    ppid,
                    parent_source,
                    images,
                    depth: 0,
                },
            );
        }

        // Depth-first order from the roots (parent outside the tree or unknown).
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        let mut roots = Vec::new();
        for &(_, pid) in &by_first {
            match nodes[&pid]
                .ppid
                .filter(|p| nodes.contains_key(p) && *p != pid)
            {
                Some(parent) => children.entry(parent).or_default().push(pid),
                None => roots.push(pid),
            }
        }
        let mut order = Vec::new();
        let mut visited = HashSet::new();
        let mut stack: Vec<(i32, usize)> = roots.iter().rev().map(|p| (*p, 0)).collect();
        while let Some((pid, depth)) = stack.pop() {
            if !visited.insert(pid) {
                continue;
            }
            order.push(pid);
            if let Some(n) = nodes.get_mut(&pid) {
                n.depth = depth;
            }
            for child in children.get(&pid).into_iter().flatten().rev() {
                stack.push((*child, depth + 1));
            }
        }
        // A cycle of parents (pid reuse in odd logs): list the rest flat.
        for &(_, pid) in &by_first {
            if visited.insert(pid) {
                order.push(pid);
            }
        }
        let ranks = order.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        Tree {
            nodes,
            order,
            ranks,
        }
    }

    /// Position in `order`, for sorting by process.
    pub(super) fn rank(&self, pid: i32) -> usize {
        self.ranks.get(&pid).copied().unwrap_or(usize::MAX)
    }

    /// The image of `pid` that made the record at (`pos`, `ts`).
    pub(super) fn image_at(&self, pid: i32, pos: Pos, ts: Micros) -> Option<&Image> {
        self.nodes
            .get(&pid)?
            .images
            .iter()
            .rev()
            .find(|i| i.pos.is_none_or(|sp| after(sp, i.ts, pos, ts) || sp == pos))
    }

    pub(super) fn modules_at(&self, pid: i32, pos: Pos, ts: Micros) -> Option<&[Module]> {
        self.image_at(pid, pos, ts).map(|i| i.modules.as_slice())
    }
}

/// The latest image, started before `first_ts` (or inherited), that contains every address in
/// `early`.
pub(super) fn fitting<'a>(
    candidates: impl Iterator<Item = (i32, &'a Image)>,
    first_ts: Micros,
    early: &[u64],
) -> Option<(i32, &'a Image)> {
    candidates
        .filter(|(_, i)| i.ts <= first_ts || i.pos.is_none())
        .filter(|(_, i)| {
            early
                .iter()
                .all(|a| i.modules.iter().any(|m| m.start <= *a && *a < m.end))
        })
        .max_by_key(|(_, i)| i.ts)
}

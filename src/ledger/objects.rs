//! System V segments, semaphore sets and message queues this process got from
//! `shmget`/`semget`/`msgget`.
//!
//! Only creation is ownership: a record says whether this process created the object (the hook
//! layer finds out, see `Facts::created`) or merely opened it. Records of opened objects are kept
//! for audit; only created, not removed, not inherited ones can be leaks.
//!
//! Removed objects are forgotten as soon as they are gone from this process's point of view
//! (a set at once, a segment when this process no longer has it attached): kernel ids are
//! rarely reused, so a program that creates and removes objects in a loop would otherwise
//! grow the ledger without bound.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// The two kinds of System V object the kernel oracle is asked about (message queues are
/// asked what they still hold: `Ledger::queues_left`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Segment,
    SemaphoreSet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub shmid: i32,
    pub key: i32,
    pub size: u64,
    pub site: u64,
    /// The stack above `site` (a stack id of the ledger's site table; 0: none recorded).
    pub stack: u32,
    pub created: bool,
    /// This process called `IPC_RMID`: the kernel destroys it at its last detach, wherever.
    pub removed: bool,
    pub inherited: bool,
    /// Live attachments of it in this process.
    pub attached: u32,
    /// The huge page size its attachments are rounded to (`SHM_HUGETLB`), 0 for normal pages.
    pub huge_page_size: u64,
    /// The ledger's checkpoint epoch when it was got (see `Ledger::checkpoint`).
    pub epoch: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemaphoreSet {
    pub semid: i32,
    pub key: i32,
    pub nsems: u32,
    pub site: u64,
    /// The stack above `site` (a stack id of the ledger's site table; 0: none recorded).
    pub stack: u32,
    pub created: bool,
    pub inherited: bool,
    /// The ledger's checkpoint epoch when it was got (see `Ledger::checkpoint`).
    pub epoch: u32,
}

/// A message queue: like a set, gone at once on `IPC_RMID`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageQueue {
    pub msqid: i32,
    pub key: i32,
    pub site: u64,
    /// The stack above `site` (a stack id of the ledger's site table; 0: none recorded).
    pub stack: u32,
    pub created: bool,
    pub inherited: bool,
    /// The ledger's checkpoint epoch when it was got (see `Ledger::checkpoint`).
    pub epoch: u32,
}

#[derive(Default)]
pub struct Objects {
    segments: Latest<Segment>,
    sets: BTreeMap<i32, SemaphoreSet>,
    queues: BTreeMap<i32, MessageQueue>,
}

impl Objects {
    pub const fn new() -> Objects {
        Objects {
            segments: Latest::new(),
            sets: BTreeMap::new(),
            queues: BTreeMap::new(),
        }
    }

    /// A successful `shmget` (`removed`, `inherited` and `attached` of `fresh` are ignored).
    pub fn segment_got(&mut self, fresh: Segment) {
        let shmid = fresh.shmid;
        let created = fresh.created;
        let fresh = Segment {
            removed: false,
            inherited: false,
            attached: 0,
            ..fresh
        };
        match self.segments.get_mut(shmid) {
            // A removed segment cannot be opened by key again, so the same id now names a new
            // object; and a creation always makes a new one. Opening what we already know
            // keeps what we know (notably that we created it).
            Some(old) => {
                if old.removed || created {
                    *old = Segment {
                        attached: old.attached,
                        ..fresh
                    }
                }
            }
            None => self.segments.insert_new(shmid, fresh),
        }
    }

    /// A successful `shmctl(IPC_RMID)`. Returns whether the segment was known.
    pub fn segment_removed(&mut self, shmid: i32) -> bool {
        let Some(seg) = self.segments.get_mut(shmid) else {
            return false;
        };
        if seg.attached == 0 {
            self.segments.remove(shmid);
        } else {
            seg.removed = true;
        }
        true
    }

    pub fn segment(&self, shmid: i32) -> Option<&Segment> {
        self.segments.get(shmid)
    }

    pub fn segment_attached(&mut self, shmid: i32) {
        if let Some(seg) = self.segments.get_mut(shmid) {
            seg.attached = seg.attached.saturating_add(1);
        }
    }

    pub fn segment_detached(&mut self, shmid: i32) {
        if let Some(seg) = self.segments.get_mut(shmid) {
            seg.attached = seg.attached.saturating_sub(1);
            if seg.removed && seg.attached == 0 {
                self.segments.remove(shmid);
            }
        }
    }

    /// A successful `semget` (`inherited` of `fresh` is ignored).
    pub fn set_got(&mut self, fresh: SemaphoreSet) {
        let created = fresh.created;
        let semid = fresh.semid;
        let fresh = SemaphoreSet {
            inherited: false,
            ..fresh
        };
        match self.sets.entry(semid) {
            Entry::Occupied(mut old) if created => *old.get_mut() = fresh,
            Entry::Occupied(_) => {}
            Entry::Vacant(free) => {
                free.insert(fresh);
            }
        }
    }

    /// A successful `semctl(IPC_RMID)`: the set is gone at once. Returns whether it was known.
    pub fn set_removed(&mut self, semid: i32) -> bool {
        self.sets.remove(&semid).is_some()
    }

    /// A successful `msgget` (`inherited` of `fresh` is ignored).
    pub fn queue_got(&mut self, fresh: MessageQueue) {
        let fresh = MessageQueue {
            inherited: false,
            ..fresh
        };
        match self.queues.entry(fresh.msqid) {
            // A creation always makes a new queue; opening keeps what we know.
            Entry::Occupied(mut old) if fresh.created => *old.get_mut() = fresh,
            Entry::Occupied(_) => {}
            Entry::Vacant(free) => {
                free.insert(fresh);
            }
        }
    }

    /// A successful `msgctl(IPC_RMID)`: the queue is gone at once. Returns whether it was known.
    pub fn queue_removed(&mut self, msqid: i32) -> bool {
        self.queues.remove(&msqid).is_some()
    }

    pub fn queues(&self) -> impl Iterator<Item = &MessageQueue> + '_ {
        self.queues.values()
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> + '_ {
        self.segments.values()
    }

    pub fn sets(&self) -> impl Iterator<Item = &SemaphoreSet> + '_ {
        self.sets.values()
    }

    /// No allocation: see `Ledger::after_fork_in_child` (the last record stays where it is).
    pub fn mark_all_inherited(&mut self) {
        for s in self.segments.values_mut() {
            s.inherited = true;
        }
        for s in self.sets.values_mut() {
            s.inherited = true;
        }
        for q in self.queues.values_mut() {
            q.inherited = true;
        }
    }
}

/// Records by id: the one got last beside a tree of the others, so that a program that
/// creates, attaches, detaches and removes a segment in a loop never touches the tree (a new
/// record moves the previous last one into it). Iterates in id order, like the tree alone.
struct Latest<V> {
    /// Never also in `tree`.
    last: Option<(i32, V)>,
    tree: BTreeMap<i32, V>,
}

impl<V> Default for Latest<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Latest<V> {
    const fn new() -> Self {
        Latest {
            last: None,
            tree: BTreeMap::new(),
        }
    }

    fn get(&self, id: i32) -> Option<&V> {
        match &self.last {
            Some((k, v)) if *k == id => Some(v),
            _ => self.tree.get(&id),
        }
    }

    fn get_mut(&mut self, id: i32) -> Option<&mut V> {
        match &mut self.last {
            Some((k, v)) if *k == id => Some(v),
            _ => self.tree.get_mut(&id),
        }
    }

    /// A record for an id not held yet.
    fn insert_new(&mut self, id: i32, v: V) {
        if let Some((k, older)) = self.last.replace((id, v)) {
            self.tree.insert(k, older);
        }
    }

    fn remove(&mut self, id: i32) -> Option<V> {
        match &self.last {
            Some((k, _)) if *k == id => self.last.take().map(|(_, v)| v),
            _ => self.tree.remove(&id),
        }
    }

    fn values(&self) -> impl Iterator<Item = &V> + '_ {
        // Without a last record, `at` is below every id: all of the tree comes after it.
        let at = self.last.as_ref().map_or(i32::MIN, |(k, _)| *k);
        let below = self.tree.range(..at).map(|(_, v)| v);
        let above = self.tree.range(at..).map(|(_, v)| v);
        below.chain(self.last.as_ref().map(|(_, v)| v)).chain(above)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.tree
            .values_mut()
            .chain(self.last.as_mut().map(|(_, v)| v))
    }
}

impl Segment {
    /// Created here, not inherited, not removed: the kernel keeps it after we exit unless
    /// someone else removes it.
    pub fn is_leak_candidate(&self) -> bool {
        self.created && !self.removed && !self.inherited
    }
}

impl SemaphoreSet {
    /// Created here and not inherited (a removed set is no longer in the table).
    pub fn is_leak_candidate(&self) -> bool {
        self.created && !self.inherited
    }
}

impl MessageQueue {
    /// Created here and not inherited (a removed queue is no longer in the table).
    pub fn is_leak_candidate(&self) -> bool {
        self.created && !self.inherited
    }
}

#[cfg(test)]
mod tests {
    use super::Latest;

    #[test]
    fn the_last_record_and_the_tree_read_as_one_map_in_id_order() {
        let mut m: Latest<i32> = Latest::new();
        assert_eq!(m.values().count(), 0);
        for id in [5, -3, 9, 7, i32::MIN, i32::MAX] {
            m.insert_new(id, id ^ 0x55);
        }
        let want = |ids: &[i32]| ids.iter().map(|id| id ^ 0x55).collect::<Vec<_>>();
        assert_eq!(
            m.values().copied().collect::<Vec<_>>(),
            want(&[i32::MIN, -3, 5, 7, 9, i32::MAX])
        );
        assert_eq!(m.get(i32::MAX), Some(&(i32::MAX ^ 0x55)), "the last");
        assert_eq!(m.get(-3), Some(&(-3 ^ 0x55)), "in the tree");
        *m.get_mut(5).unwrap() = 1;
        assert_eq!(m.remove(i32::MAX), Some(i32::MAX ^ 0x55));
        assert_eq!(m.remove(i32::MAX), None);
        assert_eq!(m.remove(9), Some(9 ^ 0x55));
        m.insert_new(6, 60);
        assert_eq!(
            m.values().copied().collect::<Vec<_>>(),
            [want(&[i32::MIN, -3]), vec![1, 60], want(&[7])].concat()
        );
        m.values_mut().for_each(|v| *v += 1);
        assert_eq!(m.values().count(), 5);
        assert_eq!(m.get(6), Some(&61));
        assert_eq!(m.get(9), None);
    }
}

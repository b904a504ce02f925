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
    segments: BTreeMap<i32, Segment>,
    sets: BTreeMap<i32, SemaphoreSet>,
    queues: BTreeMap<i32, MessageQueue>,
}

impl Objects {
    pub const fn new() -> Objects {
        Objects {
            segments: BTreeMap::new(),
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
        // One descent of the tree, whichever way it goes (a create/remove loop pays it twice
        // per segment).
        match self.segments.entry(shmid) {
            Entry::Occupied(mut known) => {
                let old = known.get_mut();
                // A removed segment cannot be opened by key again, so the same id now names a
                // new object; and a creation always makes a new one. Opening what we already
                // know keeps what we know (notably that we created it).
                if old.removed || created {
                    *old = Segment {
                        attached: old.attached,
                        ..fresh
                    }
                }
            }
            Entry::Vacant(free) => {
                free.insert(fresh);
            }
        }
    }

    /// A successful `shmctl(IPC_RMID)`. Returns whether the segment was known.
    pub fn segment_removed(&mut self, shmid: i32) -> bool {
        let Entry::Occupied(mut known) = self.segments.entry(shmid) else {
            return false;
        };
        if known.get().attached == 0 {
            known.remove();
        } else {
            known.get_mut().removed = true;
        }
        true
    }

    pub fn segment(&self, shmid: i32) -> Option<&Segment> {
        self.segments.get(&shmid)
    }

    pub fn segment_attached(&mut self, shmid: i32) {
        if let Some(seg) = self.segments.get_mut(&shmid) {
            seg.attached = seg.attached.saturating_add(1);
        }
    }

    pub fn segment_detached(&mut self, shmid: i32) {
        if let Entry::Occupied(mut known) = self.segments.entry(shmid) {
            let seg = known.get_mut();
            seg.attached = seg.attached.saturating_sub(1);
            if seg.removed && seg.attached == 0 {
                known.remove();
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

    /// No allocation: see `Ledger::after_fork_in_child`.
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

//! POSIX shared memory names (`shm_open`, `shm_unlink`): the names this process created and
//! has not unlinked. A name outlives every process, like a SysV segment, until it is unlinked.

use super::report::NameLeak;
use super::{Facts, Ledger, Outcome};
use shmtrace_core::trace::event::{Event, Name};

/// A name this process created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    pub name: Name,
    /// The object's inode when it was created (0: unknown), so that a name unlinked and
    /// created again by someone else is not taken for ours.
    pub inode: u64,
    pub site: u64,
    pub stack: u32,
    pub inherited: bool,
}

/// Few names live at once in practice: a list, searched linearly.
pub struct Names {
    created: Vec<Created>,
}

impl Names {
    pub const fn new() -> Names {
        Names {
            created: Vec::new(),
        }
    }

    /// In place, without allocating (see `Ledger::after_fork_in_child`).
    pub fn mark_all_inherited(&mut self) {
        for c in &mut self.created {
            c.inherited = true;
        }
    }
}

impl Ledger {
    pub(super) fn on_shm_open(&mut self, ev: &Event, facts: &Facts) -> Outcome {
        if !facts.created {
            return Outcome::NoEffect;
        }
        let stack = self.sites.intern_stack(ev.stack());
        let created = Created {
            name: ev.name,
            inode: facts.inode,
            site: ev.caller,
            stack,
            inherited: false,
        };
        // Created again: the earlier object of that name was unlinked behind our back.
        match self.names.created.iter_mut().find(|c| c.name == ev.name) {
            Some(slot) => *slot = created,
            None => self.names.created.push(created),
        }
        Outcome::Recorded
    }

    pub(super) fn on_shm_unlink(&mut self, ev: &Event) -> Outcome {
        let before = self.names.created.len();
        self.names.created.retain(|c| c.name != ev.name);
        if self.names.created.len() < before {
            Outcome::Recorded
        } else {
            Outcome::UnknownObject
        }
    }

    /// Names this process created, never unlinked, and that still name the object it
    /// created: `inode_now` is the kernel oracle (the inode the name refers to now, if any).
    pub fn names_left(&self, inode_now: impl Fn(&[u8]) -> Option<u64>) -> Vec<NameLeak> {
        self.names
            .created
            .iter()
            .filter(|c| !c.inherited)
            .filter(|c| {
                inode_now(c.name.as_bytes()).is_some_and(|now| c.inode == 0 || now == c.inode)
            })
            .map(|c| NameLeak {
                name: c.name,
                site: c.site,
                stack: self.stack(c.stack),
            })
            .collect()
    }
}

//! POSIX names (`shm_open`, `shm_unlink`; `sem_open`, `sem_unlink`): the names this process
//! created and has not unlinked. A name outlives every process, like a SysV segment, until it
//! is unlinked. And the named semaphores this process has open (`sem_open`, `sem_close`).

use super::Call;
use super::report::{NameLeak, OpenSemaphore};
use super::{Facts, Ledger, Outcome};
use shmtrace_core::trace::event::Name;

/// Which namespace a name is in: `/NAME` is `/dev/shm/NAME` for `shm_open` and
/// `/dev/shm/sem.NAME` for `sem_open`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Shm,
    Sem,
}

impl NameKind {
    /// What glibc puts between `/dev/shm/` and the name.
    pub fn file_prefix(self) -> &'static str {
        match self {
            NameKind::Shm => "",
            NameKind::Sem => "sem.",
        }
    }

    /// The exit report's word for it, in text.
    pub fn label(self) -> &'static str {
        match self {
            NameKind::Shm => "shm name",
            NameKind::Sem => "semaphore name",
        }
    }

    /// Its `"kind"` in the JSON report.
    pub fn key(self) -> &'static str {
        match self {
            NameKind::Shm => "shm",
            NameKind::Sem => "sem",
        }
    }
}

/// A name this process created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Created {
    pub kind: NameKind,
    pub name: Name,
    /// The object's inode when it was created (0: unknown), so that a name unlinked and
    /// created again by someone else is not taken for ours.
    pub inode: u64,
    pub site: u64,
    pub stack: u32,
    pub inherited: bool,
}

/// A named semaphore this process has open. glibc maps a name once per process and counts
/// its opens: every `sem_open` of it returns the same address, and the mapping goes at the
/// `sem_close` that matches the last of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Open {
    addr: u64,
    opens: u64,
    /// Of `opens`, those made before a fork, by the parent: the child inherited glibc's
    /// table with its counts, and they are not the child's to close.
    inherited: u64,
    /// The first `sem_open` of this mapping by this process.
    site: u64,
    stack: u32,
}

/// Few names live at once in practice: lists, searched linearly.
pub struct Names {
    created: Vec<Created>,
    open: Vec<Open>,
}

impl Names {
    pub const fn new() -> Names {
        Names {
            created: Vec::new(),
            open: Vec::new(),
        }
    }

    /// In place, without allocating (see `Ledger::after_fork_in_child`).
    pub fn mark_all_inherited(&mut self) {
        for c in &mut self.created {
            c.inherited = true;
        }
        for o in &mut self.open {
            o.inherited = o.opens;
        }
    }
}

impl Ledger {
    pub(super) fn on_name_created(&mut self, kind: NameKind, ev: &Call, facts: &Facts) -> Outcome {
        if !facts.created {
            return Outcome::NoEffect;
        }
        let stack = self.sites.intern_stack(ev.stack());
        let created = Created {
            kind,
            name: *ev.name,
            inode: facts.inode,
            site: ev.caller,
            stack,
            inherited: false,
        };
        // Created again: the earlier object of that name was unlinked behind our back.
        match self
            .names
            .created
            .iter_mut()
            .find(|c| c.kind == kind && c.name == *ev.name)
        {
            Some(slot) => *slot = created,
            None => self.names.created.push(created),
        }
        Outcome::Recorded
    }

    pub(super) fn on_name_unlinked(&mut self, kind: NameKind, ev: &Call) -> Outcome {
        let before = self.names.created.len();
        self.names
            .created
            .retain(|c| c.kind != kind || c.name != *ev.name);
        if self.names.created.len() < before {
            Outcome::Recorded
        } else {
            Outcome::UnknownObject
        }
    }

    /// A successful `sem_open`: the name if it created it, and one more open of the semaphore
    /// at the address it returned.
    pub(super) fn on_sem_open(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        self.on_name_created(NameKind::Sem, ev, facts);
        let addr = ev.ret as u64;
        let i = match self.names.open.iter().position(|o| o.addr == addr) {
            Some(i) => i,
            None => {
                self.names.open.push(Open {
                    addr,
                    opens: 0,
                    inherited: 0,
                    site: 0,
                    stack: 0,
                });
                self.names.open.len() - 1
            }
        };
        if self.names.open[i].opens == self.names.open[i].inherited {
            // This process's first open of it.
            let stack = self.sites.intern_stack(ev.stack());
            let open = &mut self.names.open[i];
            (open.site, open.stack) = (ev.caller, stack);
        }
        let open = &mut self.names.open[i];
        open.opens = open.opens.saturating_add(1);
        Outcome::Recorded
    }

    /// A successful `sem_close`: one open fewer; the last one closes the semaphore.
    pub(super) fn on_sem_close(&mut self, ev: &Call) -> Outcome {
        let addr = ev.args[0];
        let Some(i) = self.names.open.iter().position(|o| o.addr == addr) else {
            return Outcome::UnknownObject;
        };
        let open = &mut self.names.open[i];
        open.opens -= 1;
        // Closing more than it opened itself closes what its parent opened.
        open.inherited = open.inherited.min(open.opens);
        if open.opens == 0 {
            self.names.open.swap_remove(i);
        }
        Outcome::Recorded
    }

    /// Names this process created, never unlinked, and that still name the object it
    /// created: `inode_now` is the kernel oracle (the inode the name refers to now, if any).
    pub fn names_left(&self, inode_now: impl Fn(NameKind, &[u8]) -> Option<u64>) -> Vec<NameLeak> {
        self.names
            .created
            .iter()
            .filter(|c| !c.inherited)
            .filter(|c| {
                inode_now(c.kind, c.name.as_bytes())
                    .is_some_and(|now| c.inode == 0 || now == c.inode)
            })
            .map(|c| NameLeak {
                kind: c.kind,
                name: c.name,
                site: c.site,
                stack: self.stack(c.stack),
            })
            .collect()
    }

    /// Named semaphores this process opened and has not closed as often as it opened them
    /// (its parent's opens before a fork are not counted).
    pub fn semaphores_open(&self) -> Vec<OpenSemaphore> {
        self.names
            .open
            .iter()
            .filter(|o| o.opens > o.inherited)
            .map(|o| OpenSemaphore {
                addr: o.addr,
                opens: o.opens - o.inherited,
                site: o.site,
            })
            .collect()
    }
}

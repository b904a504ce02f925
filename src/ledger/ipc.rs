//! The System V object calls: `shmget`, `shmctl`, `semget`, `semctl`, `msgget`, `msgctl`.

use super::Call;
use super::objects::{MessageQueue, Segment, SemaphoreSet};
use super::{Facts, Ledger, Outcome};

/// glibc ORs `IPC_64` into `cmd` before the syscall and the kernel strips it
/// (`ipc_parse_version`), so a caller passing it still means the plain command.
const IPC_64: i32 = 0x100;

impl Ledger {
    pub(super) fn on_shmget(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        let flags = ev.arg_int(2);
        // The kernel ignores an opener's SHM_HUGETLB: only a creation says what pages it has.
        let huge_page_size = if facts.created && flags & libc::SHM_HUGETLB != 0 {
            super::memory::granule(flags, libc::SHM_HUGETLB, facts)
        } else {
            0
        };
        let stack = self.sites.intern_stack(ev.stack());
        self.objects.segment_got(Segment {
            shmid: ev.ret as i32,
            key: ev.arg_int(0),
            size: if facts.segment_size != 0 {
                facts.segment_size
            } else {
                ev.args[1]
            },
            site: ev.caller,
            stack,
            created: facts.created,
            removed: false,
            inherited: false,
            attached: 0,
            huge_page_size,
            epoch: self.epoch,
        });
        Outcome::Recorded
    }

    pub(super) fn on_shmctl(&mut self, ev: &Call) -> Outcome {
        removal(ev.arg_int(1), || {
            self.objects.segment_removed(ev.arg_int(0))
        })
    }

    pub(super) fn on_semget(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        let nsems = if facts.nsems != 0 {
            facts.nsems
        } else {
            u32::try_from(ev.arg_int(1)).unwrap_or(0)
        };
        let stack = self.sites.intern_stack(ev.stack());
        self.objects.set_got(SemaphoreSet {
            semid: ev.ret as i32,
            key: ev.arg_int(0),
            nsems,
            site: ev.caller,
            stack,
            created: facts.created,
            inherited: false,
            epoch: self.epoch,
        });
        Outcome::Recorded
    }

    pub(super) fn on_semctl(&mut self, ev: &Call) -> Outcome {
        removal(ev.arg_int(2), || self.objects.set_removed(ev.arg_int(0)))
    }

    /// `msgget`: a queue holds nothing the ledger models beyond its existence (its messages
    /// are the kernel's, asked at report time), so sending and receiving cost it nothing.
    pub(super) fn on_msgget(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        let stack = self.sites.intern_stack(ev.stack());
        self.objects.queue_got(MessageQueue {
            msqid: ev.ret as i32,
            key: ev.arg_int(0),
            site: ev.caller,
            stack,
            created: facts.created,
            inherited: false,
            epoch: self.epoch,
        });
        Outcome::Recorded
    }

    pub(super) fn on_msgctl(&mut self, ev: &Call) -> Outcome {
        removal(ev.arg_int(1), || self.objects.queue_removed(ev.arg_int(0)))
    }
}

/// A `*ctl` call: only `IPC_RMID` changes the ledger, and only for an object it knows.
fn removal(cmd: i32, remove: impl FnOnce() -> bool) -> Outcome {
    if cmd & !IPC_64 != libc::IPC_RMID {
        Outcome::NoEffect
    } else if remove() {
        Outcome::Recorded
    } else {
        Outcome::UnknownObject
    }
}

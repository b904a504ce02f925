//! Read-only questions the audit asks before a call changes the ledger (the ledger is held
//! across calls that replace or release address space, so the answer is the state the kernel
//! acts on).

use super::regions::Kind;
use super::{Attachment, Ledger};

impl Ledger {
    /// The first live region in `[from, to)` the program mapped and uses: its start, and
    /// whether it is an attachment piece. `PROT_NONE` regions (address space reserved to be
    /// mapped over, a common and correct idiom) and regions of unknown origin do not count.
    pub fn live_use_in(&self, from: u64, to: u64) -> Option<(u64, bool)> {
        let mut at = from;
        while at < to {
            let (start, v) = self.regions.first_overlap(at, to)?;
            let kind = v.meta.kind();
            if kind != Kind::Unknown && v.meta.prot() != libc::PROT_NONE {
                return Some((start, kind == Kind::Shm));
            }
            at = v.end;
        }
        None
    }

    /// The attachment the live region containing `addr` is a piece of, if it is one.
    pub fn attachment_containing(&self, addr: u64) -> Option<&Attachment> {
        let (_, v) = self.regions.containing(addr)?;
        if v.meta.kind() != Kind::Shm {
            return None;
        }
        self.attachments.get(v.meta.slot()?)
    }

    /// The size of a segment this process created and still knows (`shmget` returned its id
    /// and no `IPC_RMID` here made it go): what `IPC_STAT` would say, since a creation's size
    /// is exactly the size asked for. `None` for a segment only opened (its recorded size may
    /// be the opener's, smaller one, when the kernel would not say) or unknown.
    pub fn created_segment_size(&self, shmid: i32) -> Option<u64> {
        self.objects
            .segment(shmid)
            .filter(|s| s.created)
            .map(|s| s.size)
    }

    /// The protection of the live region containing `addr`, as it was mapped.
    pub fn prot_at(&self, addr: u64) -> Option<i32> {
        self.regions.containing(addr).map(|(_, v)| v.meta.prot())
    }

    /// Whether any live region overlaps `[from, to)`.
    pub fn knows_any(&self, from: u64, to: u64) -> bool {
        self.regions.first_overlap(from, to).is_some()
    }
}

#[cfg(test)]
mod tests {
    use crate::ledger::{Facts, Ledger};
    use shmtrace_core::trace::event::{Event, Func, Phase};

    fn mmap(l: &mut Ledger, addr: u64, len: u64, prot: i32) {
        let mut ev = Event::new(Phase::Exit, Func::Mmap);
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED;
        ev.args = [addr, len, prot as u64, flags as u64, u64::MAX, 0];
        ev.ret = addr as i64;
        l.apply(&ev, &Facts::new(4096));
    }

    #[test]
    fn reservations_are_not_live_use() {
        let mut l = Ledger::new();
        mmap(&mut l, 0x10000, 0x3000, libc::PROT_NONE);
        mmap(&mut l, 0x12000, 0x1000, libc::PROT_READ);
        assert_eq!(
            l.live_use_in(0x10000, 0x12000),
            None,
            "only the reservation"
        );
        assert_eq!(l.live_use_in(0x10000, 0x13000), Some((0x12000, false)));
        assert_eq!(l.live_use_in(0x13000, 0x20000), None);
        assert_eq!(l.prot_at(0x12fff), Some(libc::PROT_READ));
        assert_eq!(l.prot_at(0x10000), Some(libc::PROT_NONE));
        assert_eq!(l.prot_at(0x13000), None);
        assert!(l.knows_any(0x10000, 0x11000));
        assert!(!l.knows_any(0x13000, 0x14000));
        assert!(
            !l.knows_any(0x11000, 0x11000),
            "an empty range overlaps nothing"
        );
    }

    #[test]
    fn a_created_segment_has_the_size_it_was_created_with_until_it_goes() {
        use crate::ledger::tests::Calls;
        let mut l = Ledger::new();
        l.shmget(7, 0, 10_000, true, 0x10);
        l.shmget(8, 0x4d2, 4096, false, 0x11);
        assert_eq!(l.created_segment_size(7), Some(10_000));
        assert_eq!(
            l.created_segment_size(8),
            None,
            "an opener's size is not the kernel's word"
        );
        assert_eq!(l.created_segment_size(9), None);
        l.shmat(7, 0x40000, 0, 10_000, 0x12);
        l.shmctl_rmid(7);
        assert_eq!(
            l.created_segment_size(7),
            Some(10_000),
            "removed but attached: it still exists"
        );
        l.shmdt(0x40000);
        assert_eq!(l.created_segment_size(7), None, "gone at its last detach");
    }
}

//! Read-only questions the audit asks before a call changes the ledger (the ledger is held
//! across calls that replace or release address space, so the answer is the state the kernel
//! acts on).

use super::Ledger;
use super::regions::Kind;

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

    /// Whether any live region overlaps `[from, to)`.
    pub fn knows_any(&self, from: u64, to: u64) -> bool {
        self.regions.first_overlap(from, to).is_some()
    }
}

//! What the audit remembers between calls, in fixed tables (no allocation, so a fork child can
//! reset it in place and a hook never grows it): ids this process removed, addresses it
//! detached, semaphores it holds without `SEM_UNDO`, and the findings so far.
//!
//! Each table is bounded: when one is full the oldest entry makes room (removed ids, detached
//! addresses) or the new one is not tracked (holdings, distinct findings, which are still
//! counted). A finding missed that way is a false negative, never a false positive.

use super::codes::{Finding, Severity};

pub const REMOVED_KEPT: usize = 64;
pub const DETACHED_KEPT: usize = 64;
pub const HOLDINGS_KEPT: usize = 128;
pub const FOUND_KEPT: usize = 64;

/// Net adjustments this process made to one semaphore without `SEM_UNDO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    pub semid: i32,
    pub num: u16,
    /// Sum of the `sem_op`s of successful operations without `SEM_UNDO` (negative: taken).
    pub net: i64,
    /// The call site of the last decrement.
    pub site: u64,
}

/// One distinct finding (by code and site) and how many times it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// The first occurrence (its message is the one the report repeats).
    pub finding: Finding,
    pub count: u64,
}

pub struct State {
    /// `(kind, id)` removed by this process, oldest overwritten first.
    removed: [Option<(u64, i32)>; REMOVED_KEPT],
    removed_next: usize,
    /// Slots ever written (searches stop there: most programs never fill a table).
    removed_used: usize,
    detached: [u64; DETACHED_KEPT],
    detached_next: usize,
    detached_used: usize,
    holdings: [Option<Holding>; HOLDINGS_KEPT],
    found: [Option<Found>; FOUND_KEPT],
    /// Findings beyond `FOUND_KEPT` distinct ones, by severity (info, warning, error).
    pub overflow: [u64; 3],
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    pub const fn new() -> State {
        State {
            removed: [None; REMOVED_KEPT],
            removed_next: 0,
            removed_used: 0,
            detached: [0; DETACHED_KEPT],
            detached_next: 0,
            detached_used: 0,
            holdings: [None; HOLDINGS_KEPT],
            found: [None; FOUND_KEPT],
            overflow: [0; 3],
        }
    }

    pub fn any_removed(&self) -> bool {
        self.removed[..self.removed_used]
            .iter()
            .any(Option::is_some)
    }

    pub fn was_removed(&self, kind: u64, id: i32) -> bool {
        self.removed[..self.removed_used].contains(&Some((kind, id)))
    }

    pub fn removed(&mut self, kind: u64, id: i32) {
        if self.was_removed(kind, id) {
            return;
        }
        if let Some(slot) = self.removed.get_mut(self.removed_next) {
            *slot = Some((kind, id));
        }
        self.removed_next = (self.removed_next + 1) % REMOVED_KEPT;
        self.removed_used = (self.removed_used + 1).min(REMOVED_KEPT);
    }

    /// A get returned this id: it names a live object again.
    pub fn id_reused(&mut self, kind: u64, id: i32) {
        for slot in &mut self.removed[..self.removed_used] {
            if *slot == Some((kind, id)) {
                *slot = None;
            }
        }
    }

    pub fn was_detached(&self, addr: u64) -> bool {
        addr != 0 && self.detached[..self.detached_used].contains(&addr)
    }

    pub fn detached(&mut self, addr: u64) {
        if addr == 0 || self.was_detached(addr) {
            return;
        }
        if let Some(slot) = self.detached.get_mut(self.detached_next) {
            *slot = addr;
        }
        self.detached_next = (self.detached_next + 1) % DETACHED_KEPT;
        self.detached_used = (self.detached_used + 1).min(DETACHED_KEPT);
    }

    /// `shmat` placed an attachment here: detaching it is legitimate again.
    pub fn attached(&mut self, addr: u64) {
        for slot in &mut self.detached[..self.detached_used] {
            if *slot == addr {
                *slot = 0;
            }
        }
    }

    /// A successful operation without `SEM_UNDO` on one semaphore.
    pub fn adjusted(&mut self, semid: i32, num: u16, op: i16, site: u64) {
        if op == 0 {
            return;
        }
        let existing = self
            .holdings
            .iter_mut()
            .flatten()
            .find(|h| h.semid == semid && h.num == num);
        let h = match existing {
            Some(h) => h,
            None => {
                let Some(free) = self.holdings.iter_mut().find(|h| h.is_none()) else {
                    return;
                };
                free.insert(Holding {
                    semid,
                    num,
                    net: 0,
                    site,
                })
            }
        };
        h.net = h.net.saturating_add(i64::from(op));
        if op < 0 {
            h.site = site;
        }
    }

    /// `SETVAL` (one semaphore) or `SETALL`/`IPC_RMID` (`num` None: the whole set): whatever
    /// this process took or gave before no longer matters.
    pub fn reset(&mut self, semid: i32, num: Option<u16>) {
        for slot in &mut self.holdings {
            if slot.is_some_and(|h| h.semid == semid && num.is_none_or(|n| n == h.num)) {
                *slot = None;
            }
        }
    }

    /// Semaphores this process took more of than it gave back.
    pub fn held(&self) -> impl Iterator<Item = Holding> + '_ {
        self.holdings
            .iter()
            .flatten()
            .filter(|h| h.net < 0)
            .copied()
    }

    /// Counts a finding; returns whether it is the first of its code at its site.
    pub fn count(&mut self, finding: Finding) -> bool {
        let same = |f: &Found| f.finding.code == finding.code && f.finding.site == finding.site;
        if let Some(f) = self.found.iter_mut().flatten().find(|f| same(f)) {
            f.count = f.count.saturating_add(1);
            return false;
        }
        match self.found.iter_mut().find(|f| f.is_none()) {
            Some(free) => *free = Some(Found { finding, count: 1 }),
            None => {
                let i = finding.severity() as usize;
                if let Some(n) = self.overflow.get_mut(i) {
                    *n = n.saturating_add(1);
                }
            }
        }
        true
    }

    pub fn found(&self) -> impl Iterator<Item = &Found> + '_ {
        self.found.iter().flatten()
    }

    /// Findings of this severity so far (each occurrence).
    pub fn total(&self, severity: Severity) -> u64 {
        let kept = self
            .found()
            .filter(|f| f.finding.severity() == severity)
            .fold(0u64, |n, f| n.saturating_add(f.count));
        kept.saturating_add(self.overflow.get(severity as usize).copied().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::codes::Code;
    use crate::trace::event::Func;

    #[test]
    fn removed_ids_are_forgotten_when_reused_and_when_old() {
        let mut s = State::new();
        s.removed(1, 7);
        assert!(s.was_removed(1, 7) && !s.was_removed(0, 7));
        s.id_reused(1, 7);
        assert!(!s.was_removed(1, 7));
        for id in 0..=REMOVED_KEPT as i32 {
            s.removed(0, id);
        }
        assert!(!s.was_removed(0, 0), "the oldest made room");
        assert!(s.was_removed(0, REMOVED_KEPT as i32));
    }

    #[test]
    fn detached_addresses_until_attached_again() {
        let mut s = State::new();
        s.detached(0x1000);
        assert!(s.was_detached(0x1000));
        s.attached(0x1000);
        assert!(!s.was_detached(0x1000));
        assert!(!s.was_detached(0));
    }

    #[test]
    fn holdings_net_out_and_reset() {
        let mut s = State::new();
        s.adjusted(3, 0, -1, 0x10);
        s.adjusted(3, 1, -1, 0x11);
        s.adjusted(3, 1, 1, 0x12);
        s.adjusted(4, 0, 2, 0x13);
        let held: Vec<_> = s.held().collect();
        assert_eq!(held.len(), 1);
        assert_eq!(
            (held[0].semid, held[0].num, held[0].net, held[0].site),
            (3, 0, -1, 0x10)
        );
        s.reset(3, Some(0));
        assert_eq!(s.held().count(), 0);
        s.adjusted(4, 0, -3, 0x14);
        assert_eq!(s.held().next().map(|h| h.net), Some(-1));
        s.reset(4, None);
        assert_eq!(s.held().count(), 0);
    }

    #[test]
    fn findings_counted_by_code_and_site() {
        let mut s = State::new();
        let f = Finding::new(Code::WorldAccessible, Func::Shmget, 0x10, [0, 1, 0o666]);
        assert!(s.count(f));
        assert!(!s.count(Finding {
            detail: [0, 2, 0o644],
            ..f
        }));
        assert!(s.count(Finding { site: 0x11, ..f }));
        assert_eq!(s.total(Severity::Error), 3);
        assert_eq!(s.found().count(), 2);
        for site in 0..FOUND_KEPT as u64 {
            s.count(Finding::new(
                Code::ForeignCreator,
                Func::Shmget,
                0x100 + site,
                [0; 3],
            ));
        }
        assert_eq!(s.found().count(), FOUND_KEPT);
        assert_eq!(s.total(Severity::Info), FOUND_KEPT as u64);
    }
}

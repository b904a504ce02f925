//! What the audit remembers between calls, in fixed tables (no allocation, so a fork child can
//! reset it in place and a hook never grows it): ids this process removed, addresses it
//! detached, semaphores it holds without `SEM_UNDO`, and the findings so far.
//!
//! Each table is bounded: when one is full the oldest entry makes room (removed ids, detached
//! addresses) or the new one is not tracked (holdings, distinct findings, which are still
//! counted). A finding missed that way is a false negative, never a false positive.

use core::sync::atomic::{AtomicU8, Ordering};

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
    /// `(kind, id)` removed by this process.
    removed: Recent<REMOVED_KEPT>,
    /// Slots of `removed`'s filter changed since [`State::publish_removed`].
    removed_changed: Changed,
    detached: Recent<DETACHED_KEPT>,
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
            removed: Recent::new(),
            removed_changed: Changed::NONE,
            detached: Recent::new(),
            holdings: [None; HOLDINGS_KEPT],
            found: [None; FOUND_KEPT],
            overflow: [0; 3],
        }
    }

    /// Back to [`State::new`], writing only the parts in use: in a forked child every page
    /// written is a page copied from the parent, and a short-lived child that does one thing
    /// paid for the copies of the whole state.
    pub fn clear(&mut self) {
        if self.removed.reset() {
            self.removed_changed.all = true;
        }
        self.detached.reset();
        for slot in &mut self.holdings {
            if slot.is_some() {
                *slot = None;
            }
        }
        for slot in &mut self.found {
            if slot.is_some() {
                *slot = None;
            }
        }
        if self.overflow != [0; 3] {
            self.overflow = [0; 3];
        }
    }

    pub fn was_removed(&self, kind: u64, id: i32) -> bool {
        self.removed.contains(object_key(kind, id))
    }

    pub fn removed(&mut self, kind: u64, id: i32) {
        let key = object_key(kind, id);
        if let Some(evicted) = self.removed.insert(key) {
            self.removed_changed.note(evicted);
        }
        self.removed_changed.note(key);
    }

    /// A get returned this id: it names a live object again.
    pub fn id_reused(&mut self, kind: u64, id: i32) {
        let key = object_key(kind, id);
        if self.removed.forget(key) {
            self.removed_changed.note(key);
        }
    }

    /// Copies what changed in the removed ids' filter since the last call to `to`, which
    /// threads read without this state's lock.
    pub fn publish_removed(&mut self, to: &RemovedFilter) {
        let changed = core::mem::replace(&mut self.removed_changed, Changed::NONE);
        let publish = |slot: usize| {
            let count = self.removed.counts[slot];
            if to.0[slot].load(Ordering::Relaxed) != count {
                to.0[slot].store(count, Ordering::Relaxed);
            }
        };
        if changed.all {
            (0..FILTER_SLOTS).for_each(publish);
        } else {
            changed.slots[..changed.len]
                .iter()
                .for_each(|&s| publish(s.into()));
        }
    }

    pub fn was_detached(&self, addr: u64) -> bool {
        self.detached.contains(addr)
    }

    pub fn detached(&mut self, addr: u64) {
        self.detached.insert(addr);
    }

    /// `shmat` placed an attachment here: detaching it is legitimate again.
    pub fn attached(&mut self, addr: u64) {
        self.detached.forget(addr);
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

/// Never 0 (0 marks a free slot in `Recent`).
fn object_key(kind: u64, id: i32) -> u64 {
    ((kind + 1) << 32) | u64::from(id as u32)
}

const FILTER_SLOTS: usize = 1024;

fn filter_slot(key: u64) -> usize {
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % FILTER_SLOTS
}

/// The removed ids' counting filter as [`State::publish_removed`] last copied it: a thread
/// asks "could this id have been removed?" in one load, without the audit's lock, so that
/// a program that removed some object pays nothing more on every use of the others.
pub struct RemovedFilter([AtomicU8; FILTER_SLOTS]);

impl Default for RemovedFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl RemovedFilter {
    pub const fn new() -> Self {
        RemovedFilter([const { AtomicU8::new(0) }; FILTER_SLOTS])
    }

    /// False only if `(kind, id)` is surely not among the removed ids.
    #[inline(always)]
    pub fn may_hold(&self, kind: u64, id: i32) -> bool {
        self.0[filter_slot(object_key(kind, id))].load(Ordering::Relaxed) != 0
    }
}

/// Keys whose filter slot changed; more than fit: all slots.
struct Changed {
    slots: [u16; 4],
    len: usize,
    all: bool,
}

impl Changed {
    const NONE: Changed = Changed {
        slots: [0; 4],
        len: 0,
        all: false,
    };

    fn note(&mut self, key: u64) {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                *slot = filter_slot(key) as u16;
                self.len += 1;
            }
            None => self.all = true,
        }
    }
}

/// The last `N` distinct non-zero keys, the oldest forgotten first. A counting filter answers
/// the common question, "not there", with one load: these tables are asked on every shm and
/// semaphore call, and a program that creates and removes in a loop keeps them full.
struct Recent<const N: usize> {
    keys: [u64; N],
    next: usize,
    len: usize,
    /// How many keys hash to each slot (at most `N`, so a byte holds it).
    counts: [u8; FILTER_SLOTS],
}

impl<const N: usize> Recent<N> {
    const fn new() -> Self {
        Recent {
            keys: [0; N],
            next: 0,
            len: 0,
            counts: [0; FILTER_SLOTS],
        }
    }

    /// [`Recent::new`], written only if something was ever inserted (an empty table's keys
    /// and counts are all zero: `forget` keeps them so); whether it was.
    fn reset(&mut self) -> bool {
        let used = self.len != 0 || self.next != 0;
        if used {
            *self = Self::new();
        }
        used
    }

    fn contains(&self, key: u64) -> bool {
        key != 0 && self.counts[filter_slot(key)] != 0 && self.keys.contains(&key)
    }

    /// Adds `key`; the key it pushed out to make room, if any.
    fn insert(&mut self, key: u64) -> Option<u64> {
        if key == 0 || self.contains(key) {
            return None;
        }
        let old = core::mem::replace(&mut self.keys[self.next], key);
        self.next = (self.next + 1) % N;
        self.counts[filter_slot(key)] += 1;
        if old == 0 {
            self.len += 1;
            None
        } else {
            self.counts[filter_slot(old)] -= 1;
            Some(old)
        }
    }

    /// Removes `key`; whether it was there.
    fn forget(&mut self, key: u64) -> bool {
        if key == 0 || self.counts[filter_slot(key)] == 0 {
            return false;
        }
        // Keys are distinct (`insert` adds none twice): the first one found is the only one.
        // Newest first: what is forgotten was most often just inserted (an address `shmdt`
        // released, attached again by the next `shmat`).
        for back in 1..=N {
            let i = (self.next + N - back) % N;
            if self.keys[i] == key {
                self.keys[i] = 0;
                self.len -= 1;
                self.counts[filter_slot(key)] -= 1;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::codes::Code;
    use shmtrace_core::trace::event::Func;

    fn is_new(s: &State) -> bool {
        let fresh = |r: &Recent<64>| {
            r.len == 0 && r.next == 0 && r.keys == [0; 64] && r.counts == [0; FILTER_SLOTS]
        };
        fresh(&s.removed)
            && fresh(&s.detached)
            && s.holdings.iter().all(Option::is_none)
            && s.found.iter().all(Option::is_none)
            && s.overflow == [0; 3]
    }

    #[test]
    fn clear_leaves_what_new_makes() {
        let mut s = State::new();
        assert!(is_new(&s));
        for id in 0..3 {
            s.removed(1, id);
            s.detached(0x1000 * (id as u64 + 1));
        }
        s.id_reused(1, 0);
        s.holdings[5] = Some(Holding {
            semid: 1,
            num: 0,
            net: -1,
            site: 2,
        });
        s.overflow[2] = 4;
        assert!(!is_new(&s));
        s.clear();
        assert!(is_new(&s));
        // Inserted and forgotten again: empty, but the next slot moved on.
        s.removed(1, 9);
        s.id_reused(1, 9);
        assert!(!is_new(&s));
        s.clear();
        assert!(is_new(&s));
    }

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
    fn the_published_filter_follows_the_removed_ids() {
        let filter = RemovedFilter::new();
        let mut s = State::new();
        let holds = |f: &RemovedFilter, kind, id| f.may_hold(kind, id);
        s.removed(1, 7);
        assert!(!holds(&filter, 1, 7), "not before it is published");
        s.publish_removed(&filter);
        assert!(holds(&filter, 1, 7));
        assert!(
            !holds(&filter, 5, 7) && !holds(&filter, 1, 8),
            "other ids stay free"
        );
        s.id_reused(1, 7);
        s.publish_removed(&filter);
        assert!(!holds(&filter, 1, 7));
        // Past the table's size the oldest is pushed out, and its slot published free.
        for id in 0..=REMOVED_KEPT as i32 {
            s.removed(5, id);
            s.publish_removed(&filter);
        }
        assert!(!s.was_removed(5, 0));
        for id in 0..=REMOVED_KEPT as i32 {
            let in_table = s.was_removed(5, id);
            assert!(
                !in_table || holds(&filter, 5, id),
                "{id}: removed, so it may be held"
            );
        }
        let counts_match = |f: &RemovedFilter, s: &State| {
            (0..FILTER_SLOTS).all(|i| f.0[i].load(Ordering::Relaxed) == s.removed.counts[i])
        };
        assert!(counts_match(&filter, &s));
        // Many changes before one publication (more than a call makes) publish them all.
        for id in 100..110 {
            s.removed(1, id);
        }
        s.publish_removed(&filter);
        assert!(counts_match(&filter, &s));
        s.clear();
        s.publish_removed(&filter);
        assert!((0..FILTER_SLOTS).all(|i| filter.0[i].load(Ordering::Relaxed) == 0));
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

    #[test]
    fn recent_keeps_exactly_the_last_n_keys() {
        let mut r: Recent<8> = Recent::new();
        for key in 1..=100u64 {
            r.insert(key);
            r.insert(key); // a second insert of a present key changes nothing
        }
        assert!(
            (1..=92).all(|k| !r.contains(k)),
            "evicted keys are gone from the filter too"
        );
        assert!((93..=100).all(|k| r.contains(k)));
        r.forget(95);
        assert!(!r.contains(95) && r.contains(96) && r.len != 0);
        (93..=100).for_each(|k| {
            r.forget(k);
        });
        assert!(r.len == 0 && r.counts.iter().all(|&c| c == 0));
        assert!(!r.contains(0));
    }
}

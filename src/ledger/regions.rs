//! The interval map of live regions: disjoint `[start, end)` ranges keyed by start.
//!
//! The value is 16 bytes (end, a site index, packed metadata) so that an entry of the B+tree
//! (`spanmap.rs`) costs 24 bytes plus node overhead, which keeps a live mapping under 64 bytes
//! (see the memory test in `tests/memory.rs`). Everything here is generic over what a region
//! is; attachment bookkeeping happens in the callbacks the ledger passes in.

use super::spanmap::SpanMap;

/// Where a region's pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Anon,
    File,
    /// A piece of a System V shm attachment; the metadata carries the attachment's slot.
    Shm,
    /// Pages the ledger saw appear through `mremap` of a range it never saw mapped (glibc
    /// internals, raw syscalls): tracked so the address space stays right, never reported.
    Unknown,
}

/// Protection, sharing, origin, inheritance and attachment slot in one word.
///
/// Bits 0-2 `PROT_READ|PROT_WRITE|PROT_EXEC`, bit 3 shared, bits 4-5 kind, bit 6 inherited,
/// bits 8-31 the attachment slot for `Kind::Shm`; for the other kinds bits 8-13 the log2 of a
/// hugetlb region's page size (0: base pages) and bits 14-31 the checkpoint epoch (an
/// attachment keeps its epoch in its record).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta(u32);

/// Attachment slots must fit the 24 bits left in `Meta`.
pub const MAX_SLOTS: u32 = 1 << 24;

const PROT_MASK: u32 = 0b111;
const SHARED: u32 = 1 << 3;
const KIND_SHIFT: u32 = 4;
const INHERITED: u32 = 1 << 6;
const SLOT_SHIFT: u32 = 8;
const PAGE_SHIFT_MASK: u32 = 0x3f;
const EPOCH_SHIFT: u32 = 14;
/// Checkpoint epochs must fit the 18 bits above a region's page size.
pub const MAX_EPOCH: u32 = (1 << 18) - 1;

impl Meta {
    /// `slot`: the attachment slot for `Kind::Shm`, the checkpoint epoch for the other kinds.
    pub fn new(kind: Kind, prot: i32, shared: bool, slot: u32) -> Meta {
        let kind_bits = match kind {
            Kind::Anon => 0,
            Kind::File => 1,
            Kind::Shm => 2,
            Kind::Unknown => 3,
        };
        let mut bits = (prot as u32 & PROT_MASK) | (kind_bits << KIND_SHIFT);
        if shared {
            bits |= SHARED;
        }
        bits |= match kind {
            Kind::Shm => (slot & (MAX_SLOTS - 1)) << SLOT_SHIFT,
            Kind::Anon | Kind::File | Kind::Unknown => (slot & MAX_EPOCH) << EPOCH_SHIFT,
        };
        Meta(bits)
    }

    pub fn kind(self) -> Kind {
        match (self.0 >> KIND_SHIFT) & 0b11 {
            0 => Kind::Anon,
            1 => Kind::File,
            2 => Kind::Shm,
            _ => Kind::Unknown,
        }
    }

    pub fn prot(self) -> i32 {
        (self.0 & PROT_MASK) as i32
    }

    pub fn shared(self) -> bool {
        self.0 & SHARED != 0
    }

    pub fn inherited(self) -> bool {
        self.0 & INHERITED != 0
    }

    pub fn with_inherited(self, inherited: bool) -> Meta {
        if inherited {
            Meta(self.0 | INHERITED)
        } else {
            Meta(self.0 & !INHERITED)
        }
    }

    /// A hugetlb region of `2^shift`-byte pages (not for `Kind::Shm`: its attachment knows).
    pub fn with_page_shift(self, shift: u32) -> Meta {
        if self.kind() == Kind::Shm {
            return self;
        }
        let bits = self.0 & !(PAGE_SHIFT_MASK << SLOT_SHIFT);
        Meta(bits | ((shift & PAGE_SHIFT_MASK) << SLOT_SHIFT))
    }

    /// log2 of a hugetlb region's page size, 0 for base pages and attachments.
    pub fn page_shift(self) -> u32 {
        if self.kind() == Kind::Shm {
            0
        } else {
            (self.0 >> SLOT_SHIFT) & PAGE_SHIFT_MASK
        }
    }

    /// The attachment slot of a `Kind::Shm` region.
    pub fn slot(self) -> Option<u32> {
        (self.kind() == Kind::Shm).then_some(self.0 >> SLOT_SHIFT)
    }

    /// The checkpoint epoch a region other than an attachment's piece was mapped in.
    pub fn epoch(self) -> u32 {
        if self.kind() == Kind::Shm {
            0
        } else {
            self.0 >> EPOCH_SHIFT
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Val {
    pub end: u64,
    /// Index into the ledger's site table.
    pub site: u32,
    pub meta: Meta,
}

/// What a removal did to one region, for the caller's bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub meta: Meta,
    pub bytes: u64,
    /// +1 when the region split in two, -1 when it vanished, 0 when it was trimmed.
    pub pieces: i32,
}

#[derive(Default)]
pub struct Regions {
    map: SpanMap<Val>,
    bytes: u64,
    peak: u64,
}

impl Regions {
    pub const fn new() -> Regions {
        Regions {
            map: SpanMap::new(),
            bytes: 0,
            peak: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn peak(&self) -> u64 {
        self.peak
    }

    pub fn reset_peak(&mut self) {
        self.peak = self.bytes;
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, Val)> + '_ {
        self.map.iter()
    }

    /// Flips every region's inherited bit in place: no allocation (see `after_fork_in_child`).
    pub fn mark_all_inherited(&mut self) {
        self.map
            .for_each_mut(|v| v.meta = v.meta.with_inherited(true));
    }

    /// The region containing `addr`.
    pub fn containing(&self, addr: u64) -> Option<(u64, Val)> {
        let (s, v) = self.map.le(addr)?;
        (v.end > addr).then_some((s, v))
    }

    /// The lowest region overlapping `[from, to)`.
    pub fn first_overlap(&self, from: u64, to: u64) -> Option<(u64, Val)> {
        if from >= to {
            return None;
        }
        if let Some(found) = self.containing(from) {
            return Some(found);
        }
        self.map.ge(from).filter(|&(s, _)| s < to)
    }

    /// Whether any region overlaps `[start, end)`: one descent of the tree (the last region
    /// starting before `end` is the only candidate, the regions being disjoint).
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        start < end && self.map.lt(end).is_some_and(|(_, v)| v.end > start)
    }

    /// Removes `[start, end)` from every region it overlaps, leaving 0, 1 or 2 remnants of
    /// each, and tells `cut` what happened to each one. Returns the bytes removed.
    ///
    /// The two common cases cost one descent of the tree each (at a million regions every
    /// level is a cache miss): a range starting exactly where a region starts (`munmap` of
    /// what `mmap` returned), and a range nothing overlaps (a fresh `mmap`).
    #[inline]
    pub fn remove(&mut self, start: u64, end: u64, mut cut: impl FnMut(Cut)) -> u64 {
        if start >= end {
            return 0;
        }
        let removed = if let Some(v) = self.map.remove(start) {
            // The regions are disjoint: none starting before `start` reaches into the range.
            let mut removed = self.cut_out(start, v, end, &mut cut);
            if v.end < end {
                removed += self.remove_starting_within(start, end, &mut cut);
            }
            removed
        } else if self.overlaps(start, end) {
            self.remove_overlapping(start, end, &mut cut)
        } else {
            return 0;
        };
        self.bytes = self.bytes.saturating_sub(removed);
        removed
    }

    /// `remove` when no region starts at `start`.
    fn remove_overlapping(&mut self, start: u64, end: u64, cut: &mut impl FnMut(Cut)) -> u64 {
        let mut removed = 0u64;
        // Only the last region starting before `start` can reach into the range.
        let mut right = None;
        if let Some((s, _)) = self.map.lt(start)
            && let Some(v) = self.map.get_mut(s)
            && v.end > start
        {
            let old_end = v.end;
            v.end = start;
            let bytes = old_end.min(end) - start;
            removed += bytes;
            let pieces = if old_end > end {
                right = Some(Val { end: old_end, ..*v });
                1
            } else {
                0
            };
            cut(Cut {
                meta: v.meta,
                bytes,
                pieces,
            });
        }
        if let Some(val) = right {
            // The range lies strictly inside that region: nothing else overlaps it.
            self.map.insert(end, val);
        } else {
            removed += self.remove_starting_within(start, end, cut);
        }
        removed
    }

    /// Removes the regions starting in `[start, end)`, keeping what reaches past `end`.
    fn remove_starting_within(&mut self, start: u64, end: u64, cut: &mut impl FnMut(Cut)) -> u64 {
        let mut removed = 0u64;
        while let Some((s, v)) = self.map.ge(start).filter(|&(s, _)| s < end) {
            self.map.remove(s);
            removed += self.cut_out(s, v, end, cut);
        }
        removed
    }

    /// Accounts for the region `[s, v.end)`, just taken out of the map, losing everything
    /// before `end` (`s` lies inside the range being removed); a tail past `end` goes back.
    #[inline]
    fn cut_out(&mut self, s: u64, v: Val, end: u64, cut: &mut impl FnMut(Cut)) -> u64 {
        if v.end > end {
            self.map.insert(end, v);
            cut(Cut {
                meta: v.meta,
                bytes: end - s,
                pieces: 0,
            });
            end - s
        } else {
            cut(Cut {
                meta: v.meta,
                bytes: v.end - s,
                pieces: -1,
            });
            v.end - s
        }
    }

    /// Takes out the region that is exactly `[start, end)`, unless it is an attachment's piece
    /// (whose removal has more to keep in step): one descent, where a look and a `remove`
    /// take two. Nothing changes when there is none. Its bytes stay counted until
    /// [`Regions::taken_gone`]; [`Regions::put_back`] undoes the taking.
    pub fn take_exact(&mut self, start: u64, end: u64) -> Option<Val> {
        if start >= end {
            return None;
        }
        self.map
            .remove_if(start, |v| v.end == end && v.meta.slot().is_none())
    }

    /// A region [`Regions::take_exact`] took out is gone for good.
    pub fn taken_gone(&mut self, start: u64, val: Val) {
        self.bytes = self.bytes.saturating_sub(val.end - start);
    }

    /// A region [`Regions::take_exact`] took out is there after all.
    pub fn put_back(&mut self, start: u64, val: Val) {
        self.map.insert(start, val);
    }

    /// Inserts a region over a range the caller has just cleared with `remove`. Refuses an
    /// empty or overlapping one, which only an event the kernel never produced can cause, so
    /// the map stays disjoint whatever it is fed.
    pub fn insert(&mut self, start: u64, val: Val) -> bool {
        if start >= val.end || self.overlaps(start, val.end) {
            return false;
        }
        self.map.insert(start, val);
        self.grow_bytes(val.end - start);
        true
    }

    /// `insert` for a range `remove` has just emptied: the overlap check (one more descent of
    /// the tree) is known to pass.
    pub fn insert_cleared(&mut self, start: u64, val: Val) -> bool {
        debug_assert!(!self.overlaps(start, val.end));
        if start >= val.end {
            return false;
        }
        self.map.insert(start, val);
        self.grow_bytes(val.end - start);
        true
    }

    /// `insert` into free space in one descent of the tree, where checking that the range is
    /// free and inserting make two: false, and nothing changed, when the range is not free or
    /// the leaf cannot tell (then `remove` and `insert_cleared`).
    #[inline]
    pub fn insert_free(&mut self, start: u64, val: Val) -> bool {
        let end = val.end;
        if start >= end {
            return false;
        }
        let placed = self.map.insert_between(start, val, |before, after| {
            before.is_none_or(|b| b.end <= start) && after.is_none_or(|a| a >= end)
        });
        if placed {
            self.grow_bytes(end - start);
        }
        placed
    }

    /// Splits the region containing `at` in two there; false if none starts before it.
    pub fn split(&mut self, at: u64) -> bool {
        let Some(v) = self.map.lt(at).and_then(|(s, _)| self.map.get_mut(s)) else {
            return false;
        };
        if v.end <= at {
            return false;
        }
        let right = Val { ..*v };
        v.end = at;
        self.map.insert(at, right);
        true
    }

    /// Moves the end of the region starting at `start` to `new_end`, over a range the caller
    /// has cleared (refused otherwise, as for `insert`). Returns the bytes added.
    pub fn extend(&mut self, start: u64, new_end: u64) -> u64 {
        let Some(old_end) = self.map.get(start).map(|v| v.end) else {
            return 0;
        };
        if new_end <= old_end || self.overlaps(old_end, new_end) {
            return 0;
        }
        let Some(v) = self.map.get_mut(start) else {
            return 0;
        };
        let added = new_end - v.end;
        v.end = new_end;
        self.grow_bytes(added);
        added
    }

    fn grow_bytes(&mut self, bytes: u64) {
        self.bytes = self.bytes.saturating_add(bytes);
        self.peak = self.peak.max(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(end: u64, site: u32) -> Val {
        Val {
            end,
            site,
            meta: Meta::new(Kind::Anon, 3, false, 0),
        }
    }

    fn spans(r: &Regions) -> Vec<(u64, u64, u32)> {
        r.iter().map(|(s, v)| (s, v.end, v.site)).collect()
    }

    #[test]
    fn meta_round_trips() {
        let m = Meta::new(Kind::Shm, 5, true, MAX_SLOTS - 1);
        assert_eq!(m.kind(), Kind::Shm);
        assert_eq!(m.prot(), 5);
        assert!(m.shared());
        assert!(!m.inherited());
        assert_eq!(m.slot(), Some(MAX_SLOTS - 1));
        let i = m.with_inherited(true);
        assert!(i.inherited());
        assert_eq!(i.slot(), Some(MAX_SLOTS - 1));
        assert_eq!(Meta::new(Kind::File, -1, false, 7).prot(), 7);
        assert_eq!(Meta::new(Kind::File, 0, false, 7).slot(), None);
        let huge = Meta::new(Kind::Anon, 3, true, 0).with_page_shift(21);
        assert_eq!(
            (huge.page_shift(), huge.prot(), huge.kind()),
            (21, 3, Kind::Anon)
        );
        assert_eq!(huge.with_page_shift(0).page_shift(), 0);
        assert_eq!(m.with_page_shift(21).page_shift(), 0);
    }

    #[test]
    fn remove_leaves_zero_one_or_two_remnants() {
        let mut r = Regions::new();
        r.insert(0x1000, val(0x5000, 1));
        r.insert(0x8000, val(0x9000, 2));
        let mut cuts = Vec::new();
        // Middle: two remnants.
        assert_eq!(r.remove(0x2000, 0x3000, |c| cuts.push(c.pieces)), 0x1000);
        assert_eq!(
            spans(&r),
            [
                (0x1000, 0x2000, 1),
                (0x3000, 0x5000, 1),
                (0x8000, 0x9000, 2)
            ]
        );
        // Across a tail, a whole region and into a gap: one remnant, one gone.
        assert_eq!(r.remove(0x4000, 0xa000, |c| cuts.push(c.pieces)), 0x2000);
        assert_eq!(spans(&r), [(0x1000, 0x2000, 1), (0x3000, 0x4000, 1)]);
        // A head.
        assert_eq!(r.remove(0x0, 0x1800, |c| cuts.push(c.pieces)), 0x800);
        assert_eq!(spans(&r), [(0x1800, 0x2000, 1), (0x3000, 0x4000, 1)]);
        // Nothing there.
        assert_eq!(r.remove(0x6000, 0x7000, |c| cuts.push(c.pieces)), 0);
        assert_eq!(cuts, [1, 0, -1, 0]);
        assert_eq!(r.bytes(), 0x1800);
        assert_eq!(r.peak(), 0x5000);
    }

    #[test]
    fn removal_from_a_region_start_trims_splits_or_runs_on() {
        let mut r = Regions::new();
        r.insert(0x1000, val(0x3000, 1));
        r.insert(0x3000, val(0x4000, 2));
        r.insert(0x6000, val(0x8000, 3));
        let mut cuts = Vec::new();
        // Its head only: the tail stays.
        assert_eq!(
            r.remove(0x1000, 0x2000, |c| cuts.push((c.pieces, c.bytes))),
            0x1000
        );
        // Exactly a region, then on through the next one and a gap into a third.
        assert_eq!(
            r.remove(0x2000, 0x7000, |c| cuts.push((c.pieces, c.bytes))),
            0x3000
        );
        assert_eq!(spans(&r), [(0x7000, 0x8000, 3)]);
        assert_eq!(cuts, [(0, 0x1000), (-1, 0x1000), (-1, 0x1000), (0, 0x1000)]);
        assert_eq!(r.bytes(), 0x1000);
        // Exactly the last one: nothing left, nothing more found.
        assert_eq!(r.remove(0x7000, 0x8000, |_| ()), 0x1000);
        assert_eq!(r.remove(0x7000, 0x8000, |_| ()), 0);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn empty_and_inverted_ranges_do_nothing() {
        let mut r = Regions::new();
        r.insert(0x1000, val(0x2000, 1));
        assert!(!r.insert(0x3000, val(0x3000, 1)));
        assert_eq!(r.remove(0x1800, 0x1800, |_| ()), 0);
        assert_eq!(r.remove(0x1800, 0x1000, |_| ()), 0);
        assert_eq!(r.first_overlap(u64::MAX, 0), None);
        assert_eq!(r.remove(0, u64::MAX, |_| ()), 0x1000);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn overlapping_inserts_and_extensions_are_refused() {
        let mut r = Regions::new();
        r.insert(0x1000, val(0x3000, 1));
        r.insert(0x4000, val(0x5000, 2));
        assert!(!r.insert(0x2000, val(0x2800, 3)));
        assert!(!r.insert(0x0, val(0x1800, 3)));
        assert_eq!(r.extend(0x1000, 0x4800), 0);
        assert_eq!(r.extend(0x1000, 0x4000), 0x1000);
        assert_eq!(spans(&r), [(0x1000, 0x4000, 1), (0x4000, 0x5000, 2)]);
        assert_eq!(r.bytes(), 0x4000);
    }

    /// The same operations on a plain sorted list of `(start, end, site)`.
    #[derive(Default)]
    struct Model(Vec<(u64, u64, u32)>);

    impl Model {
        fn remove(&mut self, start: u64, end: u64) -> (u64, Vec<i32>) {
            let mut out = Vec::new();
            let (mut removed, mut pieces) = (0, Vec::new());
            for &(s, e, site) in &self.0 {
                if e <= start || s >= end {
                    out.push((s, e, site));
                    continue;
                }
                removed += e.min(end) - s.max(start);
                let left = s < start;
                let right = e > end;
                if left {
                    out.push((s, start, site));
                }
                if right {
                    out.push((end, e, site));
                }
                pieces.push(i32::from(left) + i32::from(right) - 1);
            }
            self.0 = out;
            (removed, pieces)
        }

        fn insert(&mut self, start: u64, end: u64, site: u32) -> bool {
            if start >= end || self.0.iter().any(|&(s, e, _)| s < end && e > start) {
                return false;
            }
            self.0.push((start, end, site));
            self.0.sort_unstable();
            true
        }

        fn split(&mut self, at: u64) -> bool {
            let Some(i) = self.0.iter().position(|&(s, e, _)| s < at && at < e) else {
                return false;
            };
            let (s, e, site) = self.0[i];
            self.0[i] = (s, at, site);
            self.0.insert(i + 1, (at, e, site));
            true
        }

        fn bytes(&self) -> u64 {
            self.0.iter().map(|&(s, e, _)| e - s).sum()
        }
    }

    #[test]
    fn random_operations_match_a_plain_list() {
        // Hundreds of regions, so removals span many leaves of the tree, and cut regions at
        // both ends of a range.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let page = 0x1000;
        let space = 40_000;
        let mut r = Regions::new();
        let mut m = Model::default();
        let mut placed_free = 0;
        for round in 0..6_000u32 {
            let a = next(space) * page;
            match next(10) {
                0..=2 => {
                    let end = a + (1 + next(8)) * page;
                    assert_eq!(r.insert(a, val(end, round)), m.insert(a, end, round));
                }
                3..=5 => {
                    // Into free space in one descent when the leaf can tell, else the long way.
                    let end = a + (1 + next(8)) * page;
                    let free = !m.0.iter().any(|&(s, e, _)| s < end && e > a);
                    if r.insert_free(a, val(end, round)) {
                        assert!(free, "placed over a region: [{a:#x}, {end:#x})");
                        assert!(m.insert(a, end, round));
                        placed_free += 1;
                    } else {
                        assert_eq!(r.insert(a, val(end, round)), m.insert(a, end, round));
                    }
                }
                6..=7 => {
                    let end = a + (1 + next(if round % 50 == 0 { 20_000 } else { 64 })) * page;
                    let mut pieces = Vec::new();
                    let removed = r.remove(a, end, |c| pieces.push(c.pieces));
                    let (want, mut want_pieces) = m.remove(a, end);
                    assert_eq!(removed, want, "remove [{a:#x}, {end:#x})");
                    pieces.sort_unstable();
                    want_pieces.sort_unstable();
                    assert_eq!(pieces, want_pieces);
                }
                8 => {
                    let at = a + page / 2 * next(2);
                    assert_eq!(r.split(at), m.split(at));
                }
                _ => {
                    let got = r.first_overlap(a, a + 16 * page).map(|(s, v)| (s, v.end));
                    let want =
                        m.0.iter()
                            .find(|&&(s, e, _)| s < a + 16 * page && e > a)
                            .map(|&(s, e, _)| (s, e));
                    assert_eq!(got, want);
                    assert_eq!(
                        r.containing(a).map(|(s, _)| s),
                        m.0.iter().find(|&&(s, e, _)| s <= a && a < e).map(|t| t.0)
                    );
                }
            }
            if round % 500 == 0 || round > 5_990 {
                assert_eq!(spans(&r), m.0);
                assert_eq!(r.bytes(), m.bytes());
                assert_eq!(r.len(), m.0.len());
            }
        }
        assert!(
            m.0.len() > 500,
            "{} regions: too few to span leaves",
            m.0.len()
        );
        assert!(placed_free > 500, "{placed_free} placed in one descent");
    }
}

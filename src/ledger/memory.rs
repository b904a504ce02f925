//! The address-space calls: `mmap`/`mmap64`, `munmap`, `mremap`, `shmat`, `shmdt`.
//!
//! Every successful result is the truth about the range it names: whatever the ledger believed
//! was there is removed first, as a replacement when the call can replace (`MAP_FIXED`,
//! `SHM_REMAP`, the target of `MREMAP_FIXED`) and as a stale view otherwise. Arithmetic on
//! addresses saturates: the kernel validated the call, but a replayed or hostile event may not
//! have been.

use super::Call;
use super::attachments::Attachments;
use super::objects::Objects;
use super::regions::{Cut, Kind, Meta, Val};
use super::resync::Unsure;
use super::sites;
use super::{Facts, Ledger, Outcome};
use shmtrace_core::trace::event::Func;

/// `MAP_HUGE_*`/`SHM_HUGE_*`: log2 of the huge page size, in 6 bits at `MAP_HUGE_SHIFT`.
const MAP_HUGE_MASK: i32 = 0x3f;

pub(super) fn round_up(len: u64, granule: u64) -> u64 {
    let mask = granule.wrapping_sub(1);
    len.saturating_add(mask) & !mask
}

fn align_down(addr: u64, granule: u64) -> u64 {
    addr & !granule.wrapping_sub(1)
}

/// The page size a mapping's length is rounded to: a huge page for `MAP_HUGETLB`/`SHM_HUGETLB`
/// (the two share the `*_HUGE_SHIFT` size encoding), else the base page.
pub(super) fn granule(flags: i32, huge_flag: i32, facts: &Facts) -> u64 {
    if flags & huge_flag == 0 {
        return facts.page();
    }
    let log2 = (flags >> libc::MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    if log2 == 0 {
        facts.huge_page()
    } else {
        1u64.checked_shl(log2 as u32).unwrap_or(facts.huge_page())
    }
}

/// The page size an `mmap`'s length is rounded to: a hugetlbfs file's page, else as
/// [`granule`] says for its flags.
pub(super) fn file_granule(flags: i32, facts: &Facts) -> u64 {
    // Nearly always 0 (not a file on hugetlbfs): tested first.
    if facts.file_page_size != 0
        && facts.file_page_size > facts.page()
        && facts.file_page_size.is_power_of_two()
    {
        facts.file_page_size
    } else {
        granule(flags, libc::MAP_HUGETLB, facts)
    }
}

/// The end of `len` bytes from `start`, the length rounded up to `granule`.
fn end_of(start: u64, len: u64, granule: u64) -> u64 {
    match start.checked_add(round_up(len, granule)) {
        Some(end) => end,
        // Past the top of the address space: no kernel accepted this; stay in range.
        None => align_down(u64::MAX, granule).max(start),
    }
}

/// An attachment's piece removed (`cut`): its attachment, and the segment at its last piece,
/// in step. Out of line: most regions removed are not attachments'.
#[inline(never)]
fn detach_piece(attachments: &mut Attachments, objects: &mut Objects, slot: u32, cut: Cut) {
    if let Some(ended) = attachments.account(slot, 0, cut.bytes, cut.pieces) {
        objects.segment_detached(ended.shmid);
    }
}

/// The region a `munmap` is about to release, taken out of the ledger before the call
/// ([`Ledger::take_unmapped`]) and handed back with it ([`Ledger::apply_taken`]).
#[derive(Clone, Copy, Debug)]
pub struct Taken {
    start: u64,
    val: Val,
}

impl Ledger {
    /// Before `munmap(addr, len)`, the ledger held until the call is entered: when the range
    /// is exactly one region the ledger knows (not an attachment's piece), that region taken
    /// out, in the one descent that finds it. Whoever asks before the call whether the ledger
    /// knows anything there (the audit) then has its answer, and the call's entry needs no
    /// second descent. `None`, nothing changed, for any other range.
    pub fn take_unmapped(&mut self, addr: u64, len: u64, page_size: u64) -> Option<Taken> {
        let page = Facts::new(page_size).page();
        // A call the kernel refuses from its arguments alone (EINVAL) is not worth a descent.
        if len == 0 || addr & (page - 1) != 0 {
            return None;
        }
        let end = end_of(addr, len, page);
        let val = self.regions.take_exact(addr, end)?;
        Some(Taken { start: addr, val })
    }

    /// The `munmap` a region was taken for ([`Ledger::take_unmapped`]), completed: the model
    /// as [`Ledger::apply_call`] leaves it. A failed call changed nothing: the region goes
    /// back first, and the call is entered as any failure.
    pub fn apply_taken(&mut self, taken: Taken, call: &Call, facts: &Facts) -> Outcome {
        debug_assert_eq!(call.func, Func::Munmap);
        if call.failed() || call.args[0] != taken.start {
            return self.put_back_and_apply(taken, call, facts);
        }
        self.count_call(call.func);
        self.regions.taken_gone(taken.start, taken.val);
        // As `unmap` keeps them: the origins of attachment pieces that were in the range.
        if !self.origins.is_empty() {
            self.origins.remove(taken.start, taken.val.end);
        }
        Outcome::Recorded
    }

    /// Rare (a `munmap` fails with ENOMEM when a split would pass the kernel's limit on
    /// mappings): out of line, and the `munmap` rule of [`Ledger::apply_call`] alone, not
    /// the whole dispatch: a second copy of it would have the compiler call every rule out
    /// of line from the copy the logged path inlines.
    #[cold]
    #[inline(never)]
    fn put_back_and_apply(&mut self, taken: Taken, call: &Call, facts: &Facts) -> Outcome {
        self.regions.put_back(taken.start, taken.val);
        self.count_call(call.func);
        if call.failed() {
            self.note_failure(call, facts);
            return Outcome::NoEffect;
        }
        // Not the call the region was taken for: entered as any `munmap`.
        let outcome = self.on_munmap(call, facts);
        if outcome == Outcome::UnmappedUnknown {
            self.unknown_unmaps = self.unknown_unmaps.saturating_add(1);
        }
        outcome
    }

    /// Removes `[start, end)`, keeping attachment and segment records in step.
    #[inline]
    pub(super) fn unmap(&mut self, start: u64, end: u64) -> u64 {
        let Ledger {
            regions,
            attachments,
            objects,
            origins,
            ..
        } = self;
        let removed = regions.remove(start, end, |cut| {
            if let Some(slot) = cut.meta.slot() {
                detach_piece(attachments, objects, slot, cut);
            }
        });
        if removed > 0 && !origins.is_empty() {
            origins.remove(start, end);
        }
        removed
    }

    /// The page size of a region: a huge page for hugetlb mappings and attachments.
    pub(super) fn page_of(&self, meta: Meta, facts: &Facts) -> u64 {
        match meta.slot() {
            Some(slot) => match self.attachments.get(slot) {
                Some(a) if a.page > 0 => a.page,
                _ => facts.page(),
            },
            None if meta.page_shift() > 0 => 1u64 << meta.page_shift(),
            None => facts.page(),
        }
    }

    /// Where offset 0 of the segment would lie in the attachment piece starting at `start`.
    pub(super) fn origin_of(&self, start: u64, meta: Meta) -> Option<u64> {
        let att = self.attachments.get(meta.slot()?)?;
        Some(self.origins.get(start).unwrap_or(att.addr))
    }

    /// Records the origin of an attachment piece just placed at `[start, end)` as a copy of the
    /// piece at `from` (a move or a duplicate keeps the offsets in the segment).
    pub(super) fn copy_origin(&mut self, from: u64, start: u64, end: u64, meta: Meta) {
        let Some(origin) = self.origin_of(from, meta) else {
            return;
        };
        let origin = origin.wrapping_add(start.wrapping_sub(from));
        self.origins.insert(start, end, origin);
    }

    /// Clears the range a successful call now occupies. `replaces`: the call is allowed to
    /// replace what is there; otherwise anything found there was stale.
    fn clear(&mut self, start: u64, end: u64, replaces: bool) -> Outcome {
        // Nearly always empty (a new mapping in free space): one descent says so, where
        // `unmap` would first look for a region starting exactly at `start`.
        if !self.regions.overlaps(start, end) {
            return Outcome::Recorded;
        }
        let removed = self.unmap(start, end);
        if removed > 0 && !replaces {
            self.stale_bytes = self.stale_bytes.saturating_add(removed);
            Outcome::Stale { bytes: removed }
        } else {
            Outcome::Recorded
        }
    }

    /// Inserts a region over a cleared range, accounting for attachment pieces.
    pub(super) fn place(&mut self, start: u64, end: u64, site: u32, meta: Meta) -> bool {
        let placed = self.regions.insert(start, Val { end, site, meta });
        if placed {
            self.account_piece(start, end, meta);
        }
        placed
    }

    /// `place` right after `clear(start, end, _)`: the range is known to be empty.
    fn place_cleared(&mut self, start: u64, end: u64, site: u32, meta: Meta) -> bool {
        let placed = self.regions.insert_cleared(start, Val { end, site, meta });
        if placed {
            self.account_piece(start, end, meta);
        }
        placed
    }

    /// A new region that is a piece of an attachment counts towards it.
    fn account_piece(&mut self, start: u64, end: u64, meta: Meta) {
        if let Some(slot) = meta.slot() {
            self.attachments.account(slot, end - start, 0, 1);
        }
    }

    /// Grows the region starting at `start` to `new_end` over a cleared range.
    fn extend(&mut self, start: u64, meta: Meta, new_end: u64) {
        let old_end = self.regions.containing(start).map_or(start, |(_, v)| v.end);
        let added = self.regions.extend(start, new_end);
        if let Some(slot) = meta.slot() {
            self.attachments.account(slot, added, 0, 0);
            // Grown past its window, a piece can be split into pieces `shmdt` must find
            // outside it: recorded like a moved one.
            if added > 0
                && let Some(origin) = self.origin_of(start, meta)
            {
                self.origins.insert(old_end, new_end, origin);
            }
        }
    }

    /// The site of `ev`'s call: its caller, and the stack above it when one was recorded;
    /// for a mapping, the shared memory object it maps when the hook named one.
    #[inline(always)]
    pub(super) fn site_of(&mut self, ev: &Call) -> u32 {
        // Nearly always: no stack recorded, no object named.
        if ev.stack.is_empty() && ev.name().is_empty() {
            return self
                .sites
                .intern(ev.caller, sites::NO_STACK, sites::NO_OBJECT);
        }
        self.site_with_more(ev)
    }

    #[inline(never)]
    fn site_with_more(&mut self, ev: &Call) -> u32 {
        let stack = self.sites.intern_stack(ev.stack());
        let object = match ev.func {
            Func::Mmap | Func::Mmap64 if !ev.name().is_empty() => {
                self.sites.intern_object(ev.name())
            }
            _ => sites::NO_OBJECT,
        };
        self.sites.intern(ev.caller, stack, object)
    }

    /// [`Ledger::site_of`] for a mapping whose object the hook left pending (see
    /// [`Facts::object_pending`]).
    #[inline(always)]
    fn mapping_site(&mut self, ev: &Call, facts: &Facts) -> u32 {
        if !facts.object_pending {
            return self.site_of(ev);
        }
        let stack = self.sites.intern_stack(ev.stack());
        self.sites.intern(ev.caller, stack, sites::PENDING_OBJECT)
    }

    /// Inlined into each copy of the dispatch (the hooks' and the logged path's): the call
    /// and its facts then stay in registers, never written out for a call of its own.
    #[inline(always)]
    pub(super) fn on_mmap(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        let start = align_down(ev.ret as u64, facts.page());
        let prot = ev.arg_int(2);
        let flags = ev.arg_int(3);
        let granule = file_granule(flags, facts);
        let end = end_of(start, ev.args[1], granule);
        let kind = if flags & libc::MAP_ANONYMOUS != 0 {
            Kind::Anon
        } else {
            Kind::File
        };
        let shared = matches!(
            flags & libc::MAP_TYPE,
            libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE
        );
        let site = self.mapping_site(ev, facts);
        let meta = Meta::new(kind, prot, shared, self.epoch);
        let meta = if granule > facts.page() {
            meta.with_page_shift(granule.trailing_zeros())
        } else {
            meta
        };
        let val = Val { end, site, meta };
        // Nearly always a new mapping in free space: one descent sees it free and places it.
        if self.regions.insert_free(start, val) {
            return Outcome::Recorded;
        }
        // MAP_FIXED_NOREPLACE succeeds only over free space; a kernel older than 4.17 takes
        // it as a hint. Either way nothing was replaced.
        let replaces = flags & libc::MAP_FIXED != 0 && flags & libc::MAP_FIXED_NOREPLACE == 0;
        let outcome = self.clear(start, end, replaces);
        self.place_cleared(start, end, site, meta);
        outcome
    }

    #[inline]
    pub(super) fn on_munmap(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        let page = facts.page();
        let start = align_down(ev.args[0], page);
        let end = end_of(ev.args[0], ev.args[1], page);
        if self.unmap(start, end) == 0 {
            Outcome::UnmappedUnknown
        } else {
            Outcome::Recorded
        }
    }

    pub(super) fn on_shmat(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        let shmid = ev.arg_int(0);
        let flags = ev.arg_int(2);
        let start = align_down(ev.ret as u64, facts.page());
        let known = self.objects.segment(shmid).copied();
        let size = if facts.segment_size != 0 {
            facts.segment_size
        } else if let Some(seg) = known {
            seg.size
        } else {
            return Outcome::Untracked;
        };
        let granule = match known {
            Some(seg) if seg.huge_page_size.is_power_of_two() => seg.huge_page_size,
            _ => facts.page(),
        };
        let end = end_of(start, size, granule);
        let outcome = self.clear(start, end, flags & libc::SHM_REMAP != 0);
        let readonly = flags & libc::SHM_RDONLY != 0;
        let mut prot = libc::PROT_READ;
        if !readonly {
            prot |= libc::PROT_WRITE;
        }
        if flags & libc::SHM_EXEC != 0 {
            prot |= libc::PROT_EXEC;
        }
        let site = self.site_of(ev);
        let stack = self.sites.stack_of(site);
        let Some(slot) =
            self.attachments
                .add(shmid, start, end - start, readonly, ev.caller, stack)
        else {
            return Outcome::Untracked;
        };
        self.attachments.set_epoch(slot, self.epoch);
        if granule > facts.page() {
            self.attachments.set_page(slot, granule);
        }
        // Nothing between `clear` and here touches the regions: the range is still empty.
        if !self.place_cleared(start, end, site, Meta::new(Kind::Shm, prot, true, slot)) {
            self.attachments.release(slot);
            return Outcome::Untracked;
        }
        self.objects.segment_attached(shmid);
        outcome
    }

    /// `shmdt(addr)` follows the kernel's walk: the lowest attachment piece at or above `addr`
    /// whose origin is `addr` goes whole, then every later piece of the same attachment with
    /// that origin, until the first region that ends past `addr` plus the segment's size (a
    /// piece `mremap` grew in place there stays attached). Pieces are found wherever `mremap`
    /// moved or copied them.
    pub(super) fn on_shmdt(&mut self, ev: &Call) -> Outcome {
        let addr = ev.args[0];
        let Some((first, slot)) = self.first_detached(addr) else {
            return Outcome::UnmappedUnknown;
        };
        let Some(size) = self.attachments.get(slot).map(|a| a.size) else {
            return Outcome::UnmappedUnknown;
        };
        let lim = addr.saturating_add(size);
        let mut pos = first;
        while let Some((s, v)) = self.regions.first_overlap(pos, u64::MAX) {
            if s != first && v.end > lim {
                break;
            }
            if v.meta.slot() == Some(slot) && self.origin_of(s, v.meta) == Some(addr) {
                self.unmap(s, v.end);
            }
            pos = v.end;
        }
        Outcome::Recorded
    }

    /// The piece `shmdt(addr)` starts with, and its attachment's slot.
    fn first_detached(&self, addr: u64) -> Option<(u64, u32)> {
        let placed = self.attachments.at_addr(addr).filter_map(|slot| {
            let lim = addr.saturating_add(self.attachments.get(slot)?.size);
            self.first_piece(slot, addr, lim)
                .map(|(start, meta)| (start, meta, slot))
        });
        let moved = self.origins.with_origin(addr).filter_map(|start| {
            let (s, v) = self.regions.containing(start)?;
            Some((s, v.meta, v.meta.slot()?))
        });
        placed
            .chain(moved)
            .filter(|&(start, meta, _)| start >= addr && self.origin_of(start, meta) == Some(addr))
            .min_by_key(|&(start, _, _)| start)
            .map(|(start, _, slot)| (start, slot))
    }

    /// The lowest piece of attachment `slot` overlapping `[from, to)` whose origin is `from`.
    fn first_piece(&self, slot: u32, from: u64, to: u64) -> Option<(u64, Meta)> {
        let mut pos = from;
        while let Some((s, v)) = self.regions.first_overlap(pos, to) {
            if v.meta.slot() == Some(slot) && self.origin_of(s, v.meta) == Some(from) {
                return Some((s, v.meta));
            }
            pos = v.end;
        }
        None
    }

    /// Every mode of `mremap`; see the module comment for the overall rule.
    pub(super) fn on_mremap(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        let page = facts.page();
        let old = align_down(ev.args[0], page);
        // The kernel rounds the lengths of a hugetlb mapping to its huge page.
        let granule = self
            .regions
            .containing(old)
            .map_or(page, |(_, v)| self.page_of(v.meta, facts));
        let old_len = round_up(ev.args[1], granule);
        let new_len = round_up(ev.args[2], granule);
        let flags = ev.arg_int(3);
        let new = align_down(ev.ret as u64, page);
        let fixed = flags & libc::MREMAP_FIXED != 0;
        let dontunmap = flags & libc::MREMAP_DONTUNMAP != 0;
        let new_end = end_of(new, new_len, page);

        if old_len == 0 {
            // A second mapping of a shared mapping's pages; the source stays.
            let outcome = self.clear(new, new_end, fixed);
            return self.duplicate(old, new, new_end, ev).or(outcome);
        }

        let old_end = end_of(old, old_len, page);
        if new == old && !fixed {
            if new_len <= old_len {
                self.unmap(end_of(old, new_len, page), old_end);
                return Outcome::Recorded;
            }
            // Grown in place: the kernel found the pages after the source free.
            let outcome = self.clear(old_end, new_end, false);
            let grown = self.grow(old, old_end, new_end, ev);
            return grown.or(outcome);
        }

        if fixed && round_up(ev.args[1], page) == round_up(ev.args[2], page) {
            // Since Linux 6.17 such a move (the same length to the page) may span several VMAs:
            // each replaces its own part of the target, and the target facing a hole stays as
            // it was. Whether a gap in the ledger is a hole or a mapping it never saw, only the
            // kernel can say. Each VMA's part is rounded to its own page size, so only a
            // hugetlb VMA that the range's end cuts moves more than the range.
            let end = end_of(old, ev.args[1], page);
            let old_end = self.regions.containing(end - 1).map_or(end, |(_, v)| {
                round_up(end, self.page_of(v.meta, facts)).max(end)
            });
            let new_end = new.saturating_add(old_end - old);
            if self.move_pieces(old, old_end, new) {
                self.unsure = Some(Unsure {
                    ranges: [(new, new_end), (old, old_end)],
                    target_first: true,
                    moved: None,
                    copies: false,
                });
            }
            if !dontunmap {
                self.unmap(old, old_end);
            }
            return Outcome::Recorded;
        }

        // Moved: the destination is the kernel's choice, or with MREMAP_FIXED the caller's,
        // whose old contents are unmapped first. The kernel guarantees it is disjoint from the
        // source, so the source can be read piece by piece while the copy is written.
        let outcome = self.clear(new, new_end, fixed);
        let kept = old_len.min(new_len);
        let copied = self.copy(old, end_of(old, kept, page), new, ev);
        if !dontunmap {
            self.unmap(old, old_end);
        }
        let grown = if new_len > old_len {
            self.grow(new, end_of(new, old_len, page), new_end, ev)
        } else {
            Outcome::Recorded
        };
        copied.or(grown).or(outcome)
    }

    /// Copies the regions in `[from, to)` to `dest` at the same offsets, keeping their site,
    /// origin and attachment (a moved region keeps its call site). Gaps, which the kernel says
    /// were mapped, become unknown regions at `caller`.
    fn copy(&mut self, from: u64, to: u64, dest: u64, caller: &Call) -> Outcome {
        let mut unknown = 0u64;
        let mut pos = from;
        while pos < to {
            let (piece_start, piece_end, site, meta) = match self.regions.first_overlap(pos, to) {
                Some((s, v)) => (s.max(pos), v.end.min(to), v.site, v.meta),
                None => (to, to, 0, Meta::new(Kind::Unknown, 0, false, 0)),
            };
            if piece_start > pos {
                let site = self.site_of(caller);
                let a = dest.saturating_add(pos - from);
                let b = dest.saturating_add(piece_start - from);
                if self.place(a, b, site, Meta::new(Kind::Unknown, 0, false, 0)) {
                    unknown = unknown.saturating_add(b - a);
                }
            }
            if piece_end > piece_start {
                let a = dest.saturating_add(piece_start - from);
                let b = dest.saturating_add(piece_end - from);
                if self.place(a, b, site, meta) {
                    self.copy_origin(piece_start, a, b, meta);
                }
            }
            pos = piece_end;
        }
        if unknown > 0 {
            Outcome::UnknownSource { bytes: unknown }
        } else {
            Outcome::Recorded
        }
    }

    /// Grows the mapping ending at `end` (its last page at `end - page`) to `new_end`, over a
    /// cleared range. Without a known region there, the growth is an unknown region.
    fn grow(&mut self, start: u64, end: u64, new_end: u64, caller: &Call) -> Outcome {
        if new_end <= end {
            return Outcome::Recorded;
        }
        let last = end.saturating_sub(1).max(start);
        match self.regions.containing(last) {
            Some((s, v)) if v.end == end => {
                self.extend(s, v.meta, new_end);
                Outcome::Recorded
            }
            _ => {
                let site = self.site_of(caller);
                self.place(end, new_end, site, Meta::new(Kind::Unknown, 0, false, 0));
                Outcome::UnknownSource {
                    bytes: new_end - end,
                }
            }
        }
    }

    /// `mremap(old, 0, len, MREMAP_MAYMOVE)`: a new mapping of the same shared pages. It is a
    /// new acquisition at `caller`, except that a duplicate of an attachment's pages stays part
    /// of that attachment (the kernel counts it in `shm_nattch`).
    fn duplicate(&mut self, old: u64, new: u64, new_end: u64, caller: &Call) -> Outcome {
        let site = self.site_of(caller);
        match self.regions.containing(old) {
            Some((_, v)) => {
                let meta = if v.meta.kind() == Kind::Shm {
                    v.meta
                } else {
                    v.meta.with_inherited(false)
                };
                if self.place(new, new_end, site, meta) {
                    self.copy_origin(old, new, new_end, meta);
                }
                Outcome::Recorded
            }
            None => {
                self.place(new, new_end, site, Meta::new(Kind::Unknown, 0, true, 0));
                Outcome::UnknownSource {
                    bytes: new_end.saturating_sub(new),
                }
            }
        }
    }
}

impl Outcome {
    /// The more notable of two outcomes of one call.
    fn or(self, other: Outcome) -> Outcome {
        fn rank(o: &Outcome) -> u8 {
            match o {
                Outcome::NoEffect => 0,
                Outcome::Recorded => 1,
                Outcome::Stale { .. } => 2,
                Outcome::UnmappedUnknown | Outcome::UnknownObject => 3,
                Outcome::UnknownSource { .. } => 4,
                Outcome::Untracked => 5,
            }
        }
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_saturates() {
        assert_eq!(round_up(1, 4096), 4096);
        assert_eq!(round_up(4096, 4096), 4096);
        assert_eq!(round_up(0, 4096), 0);
        assert_eq!(round_up(u64::MAX, 4096), !4095);
        assert_eq!(end_of(u64::MAX - 10, 100, 4096), u64::MAX - 10);
        assert_eq!(end_of(0x1000, 1, 4096), 0x2000);
    }

    #[test]
    fn huge_page_granules() {
        let facts = Facts::new(4096);
        assert_eq!(granule(0, libc::MAP_HUGETLB, &facts), 4096);
        assert_eq!(
            granule(libc::MAP_HUGETLB, libc::MAP_HUGETLB, &facts),
            2 << 20
        );
        let one_gib = libc::MAP_HUGETLB | (30 << libc::MAP_HUGE_SHIFT);
        assert_eq!(granule(one_gib, libc::MAP_HUGETLB, &facts), 1 << 30);
        let absurd = libc::MAP_HUGETLB | (63 << libc::MAP_HUGE_SHIFT);
        assert_eq!(granule(absurd, libc::MAP_HUGETLB, &facts), 1 << 63);
    }
}

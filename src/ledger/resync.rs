//! Calls whose effect on the address space the ledger cannot predict from their result, and
//! how it takes the kernel's word for the ranges they touched.
//!
//! Some calls change the address space and then fail: `mmap(MAP_FIXED)` discards the range
//! before it finds no huge page to fill it with; `mremap(MREMAP_FIXED)` unmaps its target
//! before it validates the source; a move across several VMAs (Linux 6.17 and later) moves them
//! one by one and may stop part way. A successful move across several VMAs leaves the target
//! facing a hole as it was, which only the kernel can tell apart from an unseen mapping moved
//! along. For those, [`Ledger::apply`] records what is [`Unsure`]; the hook layer re-reads
//! those ranges from `/proc/self/maps` and hands them to [`Ledger::resync`]. Failures are rare
//! and successes of that kind rarer, so the fast path pays one branch.

use super::Call;
use super::memory::round_up;
use super::regions::{Kind, Meta};
use super::{Facts, Ledger};
use shmtrace_core::trace::event::Func;

/// Above every user address space Linux offers (57-bit with 5-level page tables).
const MAX_USER_ADDRESS: u64 = 1 << 57;

/// Ranges whose state after a call only the kernel knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsure {
    /// Up to two `[start, end)` ranges (an empty one is unused).
    pub ranges: [(u64, u64); 2],
    /// `ranges[0]` is the target of a move: pages the kernel has there and the ledger does not
    /// are unknown regions. Elsewhere the kernel only ever took pages away.
    pub target_first: bool,
    /// A failed move `(old, new, len)`: pieces of the source the kernel shows gone while their
    /// place in the target is mapped were moved before the failure, and keep what the ledger
    /// knew of them. `ranges` are then the target and the source.
    pub moved: Option<(u64, u64, u64)>,
    /// The failed move keeps its source (`MREMAP_DONTUNMAP`): what it moved is a copy, to be
    /// recognised in the target (see [`Ledger::resync`]).
    pub copies: bool,
}

/// What the kernel has mapped in part of an [`Unsure`] range: `start..end` (within the range;
/// shorter when the reader ran out of room) and the mapped spans in it, sorted and disjoint.
pub struct KernelView<'a> {
    pub start: u64,
    pub end: u64,
    pub mapped: &'a [(u64, u64)],
    /// The kernel's VMAs there, clipped to the range.
    pub vmas: &'a [KernelVma],
}

/// What the ledger can check of one VMA the kernel has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelVma {
    pub start: u64,
    pub end: u64,
    /// It starts at `start` (it was not clipped there): a failed call may have split a VMA
    /// without unmapping anything (a `MAP_FIXED` that cannot split a hugetlb VMA at its other
    /// end), and a split attachment is one piece more.
    pub begins: bool,
    pub prot: i32,
    /// The segment, for a System V attachment.
    pub shmid: Option<i32>,
}

impl KernelView<'_> {
    /// The mapped parts of `[a, b)`.
    fn mapped_in(&self, a: u64, b: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.mapped
            .iter()
            .map(move |&(s, e)| (s.max(a), e.min(b)))
            .filter(|(s, e)| s < e)
    }

    /// The unmapped parts of `[a, b)` (within what this view covers).
    fn unmapped_in(&self, a: u64, b: u64) -> Vec<(u64, u64)> {
        let (a, b) = (a.max(self.start), b.min(self.end));
        let mut gaps = Vec::new();
        let mut pos = a;
        for (s, e) in self.mapped_in(a, b) {
            if s > pos {
                gaps.push((pos, s));
            }
            pos = pos.max(e);
        }
        if pos < b {
            gaps.push((pos, b));
        }
        gaps
    }

    fn covers(&self, a: u64, b: u64) -> bool {
        a >= self.start && b <= self.end && self.unmapped_in(a, b).is_empty()
    }
}

impl Unsure {
    /// One range in which the kernel may have taken pages away or split VMAs.
    fn range(start: u64, end: u64) -> Unsure {
        Unsure {
            ranges: [(start, end.max(start)), (0, 0)],
            target_first: false,
            moved: None,
            copies: false,
        }
    }
}

/// Whether two `[start, end)` ranges share an address.
fn overlap(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl Ledger {
    /// What the last [`Ledger::apply`] could not predict, if anything (taken: asked once).
    pub fn take_unsure(&mut self) -> Option<Unsure> {
        self.unsure.take()
    }

    /// Records, for a failed call, the ranges it may have changed before failing.
    #[cold]
    pub(super) fn note_failure(&mut self, ev: &Call, facts: &Facts) {
        let page = facts.page();
        let flags = ev.arg_int(3);
        self.unsure = match ev.func {
            Func::Mmap | Func::Mmap64
                if flags & libc::MAP_FIXED != 0
                    && flags & libc::MAP_FIXED_NOREPLACE == 0
                    && ev.args[0].saturating_add(ev.args[1]) <= MAX_USER_ADDRESS =>
            {
                let granule = super::memory::file_granule(flags, facts);
                let start = ev.args[0] & !(granule - 1);
                let end = round_up(ev.args[0].saturating_add(ev.args[1]), granule);
                Some(Unsure::range(start, end))
            }
            // Refused before anything: a target reaching past any user address space, and
            // MREMAP_DONTUNMAP with two sizes.
            Func::Mremap
                if flags & libc::MREMAP_FIXED != 0
                    && ev.args[4].saturating_add(ev.args[2]) <= MAX_USER_ADDRESS
                    && (flags & libc::MREMAP_DONTUNMAP == 0
                        || round_up(ev.args[1], page) == round_up(ev.args[2], page)) =>
            {
                let old = ev.args[0] & !(page - 1);
                let new = ev.args[4] & !(page - 1);
                // A hugetlb source has its lengths rounded to its huge page, the target's too.
                let granule = self
                    .regions
                    .containing(old)
                    .map_or(page, |(_, v)| self.page_of(v.meta, facts));
                let len = round_up(ev.args[1].min(ev.args[2]), granule);
                let new_len = round_up(ev.args[2], granule);
                // A shrink unmaps its tail before it moves; one that cannot split a hugetlb VMA
                // at the tail's end may have split another at its start (a tail past any user
                // address space is refused first).
                let old_end = old.saturating_add(round_up(ev.args[1], granule));
                let source_end = if old_end <= MAX_USER_ADDRESS {
                    old_end.max(old.saturating_add(len))
                } else {
                    old.saturating_add(len)
                };
                Some(Unsure {
                    ranges: [(new, new.saturating_add(new_len)), (old, source_end)],
                    target_first: true,
                    moved: Some((old, new, len)),
                    copies: flags & libc::MREMAP_DONTUNMAP != 0,
                })
            }
            // A munmap that cannot split a hugetlb VMA at one end may have split another at the
            // other end first.
            Func::Munmap if ev.args[0].saturating_add(ev.args[1]) <= MAX_USER_ADDRESS => {
                let start = ev.args[0] & !(page - 1);
                let end = round_up(ev.args[0].saturating_add(ev.args[1]), page);
                Some(Unsure::range(start, end))
            }
            // A shrink unmaps the tail first; one that cannot split a hugetlb VMA at its end
            // may have split another at its start.
            Func::Mremap
                if round_up(ev.args[1], page) > round_up(ev.args[2], page)
                    && ev.args[0].saturating_add(ev.args[1]) <= MAX_USER_ADDRESS =>
            {
                let old = ev.args[0] & !(page - 1);
                let start = old.saturating_add(round_up(ev.args[2], page));
                let end = old.saturating_add(round_up(ev.args[1], page));
                Some(Unsure::range(start, end))
            }
            // SHM_REMAP, like MAP_FIXED, may split what it would have replaced before failing.
            Func::Shmat if ev.arg_int(2) & libc::SHM_REMAP != 0 => {
                let start = ev.args[1] & !(page - 1);
                let size = self.objects.segment(ev.arg_int(0)).map_or(page, |s| s.size);
                Some(Unsure::range(
                    start,
                    start.saturating_add(round_up(size, page)),
                ))
            }
            Func::Mmap
            | Func::Mmap64
            | Func::Mremap
            | Func::Munmap
            | Func::Shmat
            | Func::Shmget
            | Func::Shmdt
            | Func::Shmctl
            | Func::Semget
            | Func::Semop
            | Func::Semtimedop
            | Func::Semctl
            | Func::ShmOpen
            | Func::ShmUnlink
            | Func::MemfdCreate
            | Func::SemOpen
            | Func::SemClose
            | Func::SemUnlink
            | Func::Msgget
            | Func::Msgsnd
            | Func::Msgrcv
            | Func::Msgctl => None,
        };
    }

    /// Moves what the ledger knows of each region in `[from, to)` to `dest` at the same offset,
    /// replacing what was there piece by piece; gaps move nothing. Returns whether there was a
    /// gap. The kernel guarantees source and target are disjoint.
    pub(super) fn move_pieces(&mut self, from: u64, to: u64, dest: u64) -> bool {
        let mut gap = false;
        let mut pos = from;
        while pos < to {
            let Some((s, v)) = self.regions.first_overlap(pos, to) else {
                return true;
            };
            let (a, b) = (s.max(pos), v.end.min(to));
            gap |= a > pos;
            let ta = dest.saturating_add(a - from);
            let tb = dest.saturating_add(b - from);
            self.unmap(ta, tb);
            if self.place(ta, tb, v.site, v.meta) {
                self.copy_origin(a, ta, tb, v.meta);
            }
            pos = b;
        }
        gap
    }

    /// Takes the kernel's word for the ranges of `unsure`: `views` are what it has mapped there
    /// now, in the order of `unsure.ranges`; `copied` are the parts of a failed move's source
    /// the kernel shows copied to the target (a move that keeps its source,
    /// `MREMAP_DONTUNMAP`). Pages the ledger has and the kernel does not are dropped; in the
    /// target of a move, pages the kernel has and the ledger does not become unknown regions
    /// at `ev`'s site.
    pub fn resync(
        &mut self,
        unsure: &Unsure,
        views: &[KernelView<'_>],
        copied: &[(u64, u64)],
        ev: &Call,
    ) {
        // A target overlapping its source moved nothing: the kernel refuses it (before or after
        // unmapping the target, depending on the version: the views show which).
        let moved = unsure
            .moved
            .filter(|&(old, _, len)| !overlap((old, old.saturating_add(len)), unsure.ranges[0]));
        if let (Some((old, new, len)), [dst, src, ..]) = (moved, views) {
            let end = old.saturating_add(len);
            let stop = if unsure.copies {
                self.copies_end(src, copied, old, end)
            } else {
                // What the kernel did not move is still in the source.
                src.mapped_in(old, end).next().map_or(end, |(s, _)| s)
            };
            for &(a, b) in copied {
                let (a, b) = (a.max(old), b.min(stop));
                if a < b {
                    self.move_pieces(a, b, new.saturating_add(a - old));
                }
            }
            // Source pieces gone while their target is mapped moved before the failure.
            for (a, b) in src.unmapped_in(old, stop) {
                let (ta, tb) = (new.saturating_add(a - old), new.saturating_add(b - old));
                if dst.covers(ta, tb) && self.regions.first_overlap(a, b).is_some() {
                    self.move_pieces(a, b, ta);
                    self.unmap(a, b);
                }
            }
        }
        for (i, view) in views.iter().enumerate() {
            for vma in view.vmas.iter().filter(|v| v.begins) {
                self.split_piece(vma.start);
            }
            for (a, b) in view.unmapped_in(view.start, view.end) {
                self.unmap(a, b);
            }
            if i == 0 && unsure.target_first {
                for (a, b) in view.mapped_in(view.start, view.end) {
                    self.fill_unknown(a, b, ev);
                }
            }
            for vma in view.vmas {
                self.forget_replaced(vma, ev);
            }
        }
    }

    /// Where the kernel stopped copying a failed move that keeps its source
    /// (`MREMAP_DONTUNMAP`, source `[old, end)` as `src` shows it). It moves the source's VMAs
    /// one by one in address order and stops at the first it cannot move: a System V attachment
    /// that is not the only VMA of the range, and any hugetlb VMA (which cannot be kept), are
    /// refused before their part of the target is touched; so is a source that begins in a
    /// hole. The copies are a prefix: a target that already held the same segment at the same
    /// offsets beyond it is no copy.
    fn copies_end(&self, src: &KernelView<'_>, copied: &[(u64, u64)], old: u64, end: u64) -> u64 {
        let covered = |a: u64, b: u64| {
            let mut pos = a;
            while let Some(&(_, e)) = copied.iter().find(|&&(s, e)| s <= pos && e > pos) {
                pos = e;
                if pos >= b {
                    return true;
                }
            }
            false
        };
        let mut vmas = src
            .vmas
            .iter()
            .filter(|v| v.end > old && v.start < end)
            .peekable();
        if vmas.peek().is_none_or(|v| v.start > old) {
            return old;
        }
        for (i, vma) in vmas.enumerate() {
            let alone = i == 0 && vma.end >= end;
            if (vma.shmid.is_some() && !alone)
                || self.hugetlb_at(vma.start)
                || !covered(vma.start, vma.end.min(end))
            {
                return vma.start.max(old);
            }
        }
        end.min(src.end)
    }

    /// Whether the ledger knows `addr` as part of a hugetlb mapping.
    fn hugetlb_at(&self, addr: u64) -> bool {
        self.regions
            .containing(addr)
            .is_some_and(|(_, v)| match v.meta.slot() {
                Some(slot) => self.attachments.get(slot).is_some_and(|a| a.page > 0),
                None => v.meta.page_shift() > 0,
            })
    }

    /// Regions in `vma` that the kernel shows are something else now (another segment or
    /// none, other permissions) were replaced by what the call did before failing: what took
    /// their place is unknown.
    fn forget_replaced(&mut self, vma: &KernelVma, ev: &Call) {
        let mut pos = vma.start;
        while let Some((s, v)) = self.regions.first_overlap(pos, vma.end) {
            let (a, b) = (s.max(pos), v.end.min(vma.end));
            let shmid = v
                .meta
                .slot()
                .and_then(|slot| self.attachments.get(slot))
                .map(|att| att.shmid);
            let kind = v.meta.kind();
            if kind != Kind::Unknown && (shmid != vma.shmid || v.meta.prot() != vma.prot) {
                self.unmap(a, b);
                self.fill_unknown(a, b, ev);
            }
            pos = b;
        }
    }

    /// Splits the attachment piece containing `at` there, as the kernel split its VMA.
    fn split_piece(&mut self, at: u64) {
        if let Some((s, v)) = self.regions.containing(at)
            && s < at
            && let Some(slot) = v.meta.slot()
            && self.regions.split(at)
        {
            self.attachments.account(slot, 0, 0, 1);
        }
    }

    /// Places unknown regions over the parts of `[a, b)` the ledger has no region in.
    fn fill_unknown(&mut self, a: u64, b: u64, ev: &Call) {
        let mut pos = a;
        while pos < b {
            let next = self.regions.first_overlap(pos, b);
            let gap_end = next.map_or(b, |(s, _)| s.max(pos));
            if gap_end > pos {
                let site = self.site_of(ev);
                self.place(pos, gap_end, site, Meta::new(Kind::Unknown, 0, false, 0));
            }
            pos = next.map_or(b, |(_, v)| v.end);
        }
    }
}

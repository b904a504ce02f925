//! Calls that change the address space and fail, or whose outcome only the kernel knows: the
//! ledger says what is unsure and takes the kernel's view of it (given here by hand).

use super::*;
use crate::ledger::{Call, KernelView, KernelVma, RegionKind::*, Unsure};

const A: u64 = 0x7f00_0000_0000;
const T: u64 = 0x7f00_1000_0000;
const H: u64 = 2 << 20;
const S1: u64 = 0x5555_0000_1000;
const S2: u64 = 0x5555_0000_2000;
const S3: u64 = 0x5555_0000_3000;

fn p(n: u64) -> u64 {
    n * PAGE
}

/// Applies `ev` and, if the ledger is unsure of it, the kernel's view: `mapped` lists what is
/// mapped now in each unsure range.
fn apply_with_kernel(l: &mut Ledger, ev: &Event, mapped: [&[(u64, u64)]; 2]) -> Option<Unsure> {
    l.apply(ev, &facts());
    let unsure = l.take_unsure()?;
    let views = [0, 1].map(|i| KernelView {
        start: unsure.ranges[i].0,
        end: unsure.ranges[i].1,
        mapped: mapped[i],
        vmas: &[],
    });
    l.resync(
        &unsure,
        &views,
        &[],
        &Call::of(ev).expect("a completed call"),
    );
    check_invariants(l);
    Some(unsure)
}

/// Class 5 of the kernel-exactness fuzzing: a failed `mmap(MAP_FIXED|MAP_HUGETLB)` (no huge
/// page to be had) has already discarded its whole huge-page-rounded range.
#[test]
fn a_failed_map_fixed_has_already_discarded_its_range() {
    let mut l = Ledger::new();
    l.mmap(A, p(4), PRIV_ANON, S1);
    l.mmap(A + H, p(1), PRIV_ANON, S2);
    let flags = PRIV_ANON | FIXED | libc::MAP_HUGETLB as u64;
    let ev = call(Func::Mmap, &[A, p(1), RW, flags, u64::MAX, 0], -1, S3);
    let unsure = apply_with_kernel(&mut l, &ev, [&[], &[]]).unwrap();
    assert_eq!(unsure.ranges[0], (A, A + H));
    assert_eq!(spans(&l), [(A + H, A + H + p(1), Anon, S2)]);
    // A failed call without MAP_FIXED changed nothing: the ledger is sure of it.
    let ev = call(Func::Mmap, &[A, p(1), RW, PRIV_ANON, u64::MAX, 0], -1, S3);
    l.apply(&ev, &facts());
    assert_eq!(l.take_unsure(), None);
}

/// Class 4: a failed `mremap(MREMAP_FIXED)` (here `old_size` 2^60) has already unmapped its
/// target; the source is as it was.
#[test]
fn a_failed_mremap_fixed_has_already_unmapped_its_target() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    l.mmap(T, p(4), PRIV_ANON, S2);
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    let ev = call(Func::Mremap, &[A, 1 << 60, p(2), flags, T], -1, S3);
    let unsure = apply_with_kernel(&mut l, &ev, [&[], &[(A, A + p(2))]]).unwrap();
    assert_eq!(unsure.ranges, [(T, T + p(2)), (A, A + p(2))]);
    assert_eq!(
        spans(&l),
        [(A, A + p(2), Anon, S1), (T + p(2), T + p(4), Anon, S2)]
    );
}

/// Class 3b: a move across several VMAs (Linux 6.17 and later) that fails part way has already
/// moved the first ones, which keep what the ledger knew of them.
#[test]
fn a_move_failing_part_way_keeps_what_it_moved() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    l.mmap(A + p(3), p(1), SHARED_ANON, S2);
    l.mmap(T, p(4), PRIV_ANON, S3);
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    let ev = call(Func::Mremap, &[A, p(4), p(4), flags, T], -1, S3);
    // The kernel moved the first VMA, left the target facing the hole, and stopped.
    let dst = [(T, T + p(4))];
    let src = [(A + p(3), A + p(4))];
    apply_with_kernel(&mut l, &ev, [&dst, &src]).unwrap();
    assert_eq!(
        spans(&l),
        [
            (A + p(3), A + p(4), Anon, S2),
            (T, T + p(2), Anon, S1),
            (T + p(2), T + p(4), Anon, S3)
        ]
    );
}

/// Class 3a: a successful same-size `MREMAP_FIXED` move of a range with a hole (Linux 6.17 and
/// later) moves each VMA and leaves the target facing the hole as it was.
#[test]
fn a_move_across_a_hole_leaves_the_target_facing_it() {
    let mut l = Ledger::new();
    l.mmap(A, p(1), PRIV_ANON, S1);
    l.mmap(A + p(2), p(1), PRIV_ANON, S2);
    l.mmap(T, p(3), SHARED_ANON, S3);
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    let ev = call(
        Func::Mremap,
        &[A, p(3), p(3), flags as u64, T],
        T as i64,
        S1,
    );
    let unsure = apply_with_kernel(&mut l, &ev, [&[(T, T + p(3))], &[]]).unwrap();
    assert!(unsure.target_first && unsure.moved.is_none());
    assert_eq!(
        spans(&l),
        [
            (T, T + p(1), Anon, S1),
            (T + p(1), T + p(2), Anon, S3),
            (T + p(2), T + p(3), Anon, S2)
        ]
    );
    // Had the gap been a mapping the ledger never saw, the kernel shows the target facing it
    // mapped where the ledger had nothing: an unknown region.
    let mut l = Ledger::new();
    l.mmap(A, p(1), PRIV_ANON, S1);
    l.mmap(A + p(2), p(1), PRIV_ANON, S2);
    apply_with_kernel(&mut l, &ev, [&[(T, T + p(3))], &[]]).unwrap();
    assert_eq!(l.region_at(T + p(1)).map(|r| r.kind), Some(Unknown));
    // Without a gap the ledger is sure of the move.
    let mut l = Ledger::new();
    l.mmap(A, p(3), PRIV_ANON, S1);
    l.apply(&ev, &facts());
    assert_eq!(l.take_unsure(), None);
    assert_eq!(spans(&l), [(T, T + p(3), Anon, S1)]);
}

/// A kernel VMA of the view: a System V attachment of `shmid`, or other memory (`None`).
fn vma(start: u64, end: u64, shmid: Option<i32>) -> KernelVma {
    KernelVma {
        start,
        end,
        begins: true,
        prot: RW as i32,
        shmid,
    }
}

/// `v` as a view of `range` shows it.
fn clip(v: &KernelVma, (start, end): (u64, u64)) -> KernelVma {
    KernelVma {
        start: v.start.max(start),
        end: v.end.min(end),
        begins: v.start >= start,
        ..*v
    }
}

/// Class 8: a failed `MREMAP_DONTUNMAP` move copies a prefix of its source's VMAs. The kernel
/// stops at an attachment that is not the only VMA of the range, and refuses a source that
/// begins in a hole or an attachment followed by more; a target that already held the same
/// segment at the same offsets (which the kernel shows exactly like a copy) keeps its piece.
#[test]
fn a_failed_dontunmap_move_copies_only_a_prefix() {
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP) as u64;
    let setup = || {
        let mut l = Ledger::new();
        l.mmap(A, p(1), PRIV_ANON, S1);
        l.shmget(7, 0, p(1), true, S2);
        l.shmget(8, 0, p(4), true, S2);
        l.shmat(7, A + p(2), 0, p(1), S2);
        l.shmat(8, A + p(4), 0, p(4), S2);
        l.munmap(A + p(4), p(1));
        l.mmap(A + p(8), p(1), PRIV_ANON, S1);
        l.shmat(8, T + p(4), 0, p(4), S3);
        l
    };
    let source = [
        vma(A, A + p(1), None),
        vma(A + p(2), A + p(3), Some(7)),
        vma(A + p(5), A + p(8), Some(8)),
        vma(A + p(8), A + p(9), None),
    ];
    // (source start, length, target, what the kernel shows copied, expected copy at T)
    type Case<'a> = (u64, u64, u64, &'a [(u64, u64)], bool);
    let cases: [Case; 3] = [
        // Stopped at the attachment of segment 7, after copying the first page.
        (A, p(8), T, &[(A, A + p(1)), (A + p(5), A + p(8))], true),
        // Begins in a hole.
        (A + p(4), p(4), T + p(4), &[(A + p(5), A + p(8))], false),
        // An attachment followed by more.
        (A + p(5), p(4), T + p(5), &[(A + p(5), A + p(8))], false),
    ];
    for (old, len, new, copied, first_copied) in cases {
        let mut l = setup();
        let ev = call(Func::Mremap, &[old, len, len, flags, new], -1, S3);
        l.apply(&ev, &facts());
        let unsure = l.take_unsure().unwrap();
        assert!(unsure.copies);
        let (src_start, src_end) = unsure.ranges[1];
        let src: Vec<_> = source
            .iter()
            .filter(|v| v.end > src_start && v.start < src_end)
            .map(|v| clip(v, unsure.ranges[1]))
            .collect();
        let spans_of = |v: &[KernelVma]| v.iter().map(|v| (v.start, v.end)).collect::<Vec<_>>();
        let dst_vmas = [vma(T, T + p(1), None), vma(T + p(4), T + p(8), Some(8))];
        let (dst_start, dst_end) = unsure.ranges[0];
        let dst: Vec<_> = dst_vmas
            .iter()
            .filter(|v| v.end > dst_start && v.start < dst_end && (first_copied || v.start != T))
            .map(|v| clip(v, unsure.ranges[0]))
            .collect();
        let (dst_spans, src_spans) = (spans_of(&dst), spans_of(&src));
        let views = [
            KernelView {
                start: dst_start,
                end: dst_end,
                mapped: &dst_spans,
                vmas: &dst,
            },
            KernelView {
                start: src_start,
                end: src_end,
                mapped: &src_spans,
                vmas: &src,
            },
        ];
        l.resync(
            &unsure,
            &views,
            copied,
            &Call::of(&ev).expect("a completed call"),
        );
        check_invariants(&l);
        let target: Vec<_> = spans(&l).into_iter().filter(|s| s.0 >= T).collect();
        let piece = (T + p(4), T + p(8), Shm, S3);
        if first_copied {
            assert_eq!(target, [(T, T + p(1), Anon, S1), piece], "from {old:#x}");
        } else {
            assert_eq!(target, [piece], "from {old:#x}");
        }
    }
}

/// Class 9: a failed `MREMAP_FIXED` shrink unmapped its tail first: the ledger re-reads the
/// whole source, tail included, where a split attachment is one piece more.
#[test]
fn a_failed_fixed_shrink_rereads_its_tail() {
    let mut l = Ledger::new();
    l.shmget(8, 0, p(8), true, S2);
    l.shmat(8, A, 0, p(8), S2);
    let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
    let ev = call(Func::Mremap, &[A, p(16), p(1), flags, T], -1, S3);
    l.apply(&ev, &facts());
    let unsure = l.take_unsure().unwrap();
    assert_eq!(unsure.ranges, [(T, T + p(1)), (A, A + p(16))]);
    let src = [vma(A, A + p(1), Some(8)), vma(A + p(1), A + p(8), Some(8))];
    let src_spans = [(A, A + p(8))];
    let views = [
        KernelView {
            start: T,
            end: T + p(1),
            mapped: &[],
            vmas: &[],
        },
        KernelView {
            start: A,
            end: A + p(16),
            mapped: &src_spans,
            vmas: &src,
        },
    ];
    l.resync(
        &unsure,
        &views,
        &[],
        &Call::of(&ev).expect("a completed call"),
    );
    check_invariants(&l);
    assert_eq!(l.attachments().next().map(|a| a.pieces), Some(2));
    // A tail past any user address space is refused before anything: the source stays as long
    // as what would move.
    let ev = call(Func::Mremap, &[A, 1 << 60, p(1), flags, T], -1, S3);
    l.apply(&ev, &facts());
    assert_eq!(l.take_unsure().unwrap().ranges[1], (A, A + p(1)));
}

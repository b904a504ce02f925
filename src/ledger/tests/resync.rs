//! Calls that change the address space and fail, or whose outcome only the kernel knows: the
//! ledger says what is unsure and takes the kernel's view of it (given here by hand).

use super::*;
use crate::ledger::{KernelView, RegionKind::*, Unsure};

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
    l.resync(&unsure, &views, &[], ev);
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

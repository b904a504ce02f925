//! One test per rule the ledger honours, each with the exact regions expected afterwards.

use super::*;
use crate::ledger::{Call, ObjectKind, RegionKind::*};

const A: u64 = 0x7f00_0000_0000;
const S1: u64 = 0x5555_0000_1000;
const S2: u64 = 0x5555_0000_2000;
const S3: u64 = 0x5555_0000_3000;

fn p(n: u64) -> u64 {
    n * PAGE
}

fn all_alive(_: ObjectKind, _: i32) -> bool {
    true
}

#[test]
fn enter_records_and_failed_calls_change_nothing_but_counts() {
    let mut l = Ledger::new();
    let mut enter = call(Func::Mmap, &[0, PAGE, RW, PRIV_ANON, u64::MAX, 0], 0, S1);
    enter.phase = Phase::Enter;
    assert_eq!(l.apply(&enter, &facts()), Outcome::NoEffect);
    let failed = call(Func::Mmap, &[0, PAGE, RW, PRIV_ANON, u64::MAX, 0], -1, S1);
    assert_eq!(l.apply(&failed, &facts()), Outcome::NoEffect);
    let failed_shmget = call(Func::Shmget, &[0, PAGE, 0o1600], -1, S1);
    assert_eq!(
        l.apply(
            &failed_shmget,
            &Facts {
                created: true,
                ..facts()
            }
        ),
        Outcome::NoEffect
    );
    assert!(spans(&l).is_empty());
    assert_eq!(l.segments().count(), 0);
    let stats = l.stats();
    assert_eq!(stats.calls[Func::Mmap as usize], 1);
    assert_eq!(stats.calls[Func::Shmget as usize], 1);
    assert_eq!(stats.calls.iter().sum::<u64>(), 2);
}

#[test]
fn a_call_the_ledger_only_counts_changes_nothing_else() {
    // The shim counts these outside the ledger: applying them must have no other effect.
    let mut l = Ledger::new();
    assert_eq!(l.mmap(A, 1, PRIV_ANON, S1), Outcome::Recorded);
    let before = l.stats();
    let only = Func::ALL.into_iter().filter(|&f| Ledger::counts_only(f));
    for func in only {
        for ret in [0, 3, -1] {
            let ev = call(func, &[7, A, 16, 0, 0, 0], ret, S2);
            assert_eq!(
                l.apply(&ev, &facts()),
                Outcome::NoEffect,
                "{func:?} -> {ret}"
            );
            assert!(l.take_unsure().is_none(), "{func:?} -> {ret}");
        }
        let mut stats = l.stats();
        assert_eq!(stats.calls[func as usize], 3, "{func:?}");
        stats.calls = before.calls;
        assert_eq!(stats, before, "{func:?}");
    }
    assert!(Ledger::counts_only(Func::Msgsnd) && Ledger::counts_only(Func::MemfdCreate));
    assert!(!Ledger::counts_only(Func::Msgctl) && !Ledger::counts_only(Func::SemOpen));
}

#[test]
fn mmap_records_origin_and_rounds_length_up() {
    let mut l = Ledger::new();
    assert_eq!(l.mmap(A, 1, PRIV_ANON, S1), Outcome::Recorded);
    assert_eq!(
        l.mmap(A + p(4), p(2) + 1, libc::MAP_SHARED as u64, S2),
        Outcome::Recorded
    );
    assert_eq!(
        spans(&l),
        [(A, A + p(1), Anon, S1), (A + p(4), A + p(7), File, S2)]
    );
    let r: Vec<_> = l.regions().collect();
    assert!(!r[0].shared && r[1].shared);
    assert_eq!(r[0].prot, RW as i32);
    assert_eq!(l.stats().bytes_mapped, p(4));
    check_invariants(&l);
}

#[test]
fn mmap_hugetlb_rounds_to_the_huge_page() {
    let mut l = Ledger::new();
    let flags = PRIV_ANON | libc::MAP_HUGETLB as u64;
    l.mmap(A, 1, flags, S1);
    let one_gib = flags | (30 << libc::MAP_HUGE_SHIFT);
    l.mmap(A + (1 << 30), 1, one_gib, S1);
    assert_eq!(
        spans(&l),
        [
            (A, A + (2 << 20), Anon, S1),
            (A + (1 << 30), A + (2 << 30), Anon, S1)
        ]
    );
}

/// Class 6 of the kernel-exactness fuzzing: the kernel rounds `mremap` lengths of a hugetlb
/// mapping (`MAP_HUGETLB`, a hugetlbfs file, a `SHM_HUGETLB` attachment) to its huge page
/// (since Linux 5.16; it refuses to grow one).
#[test]
fn hugetlb_mremap_rounds_lengths_to_the_huge_page() {
    const H: u64 = 2 << 20;
    let mut l = Ledger::new();
    let check = |l: &mut Ledger, a: u64, site: u64| {
        assert_eq!(l.region_at(a).map(|r| r.end), Some(a + 2 * H));
        // Shrinking by 8 small pages changes nothing; by a page more than a huge page, one.
        l.mremap(a, 2 * H, 2 * H - p(8), 0, a, site);
        assert_eq!(l.region_at(a).map(|r| r.end), Some(a + 2 * H));
        l.mremap(a, H + p(1), H, 0, a, site);
        assert_eq!(l.region_at(a).map(|r| r.end), Some(a + H));
    };
    l.mmap(A, 2 * H - p(1), PRIV_ANON | libc::MAP_HUGETLB as u64, S1);
    check(&mut l, A, S1);
    let args = [0, H + p(1), RW, libc::MAP_SHARED as u64, 3, 0];
    let file = call(Func::Mmap, &args, (A + 8 * H) as i64, S2);
    let hugetlbfs = Facts {
        file_page_size: H,
        ..facts()
    };
    l.apply(&file, &hugetlbfs);
    check(&mut l, A + 8 * H, S2);
    let flags = (libc::IPC_CREAT | libc::SHM_HUGETLB | 0o600) as u64;
    let ev = call(Func::Shmget, &[0, H + p(3), flags], 9, S3);
    l.apply(
        &ev,
        &Facts {
            created: true,
            ..facts()
        },
    );
    l.shmat(9, A + 16 * H, 0, H + p(3), S3);
    check(&mut l, A + 16 * H, S3);
    check_invariants(&l);
}

/// Class 10: a same-length `MREMAP_FIXED` move (Linux 6.17 and later: across several VMAs)
/// rounds each VMA's part to that VMA's page size. A hugetlb VMA followed by a hole moves its
/// huge pages and nothing past the range's end; one that the range's end cuts moves whole.
#[test]
fn a_fixed_move_rounds_each_vma_to_its_own_page() {
    const H: u64 = 2 << 20;
    let huge = PRIV_ANON | libc::MAP_HUGETLB as u64;
    let fixed = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    let mut l = Ledger::new();
    l.mmap(A, H, huge, S1);
    l.mmap(A + 2 * H - p(16), p(8), PRIV_ANON, S2);
    l.mremap(A, H + p(8), H + p(8), fixed, A + 4 * H, S1);
    assert_eq!(
        spans(&l),
        [
            (A + 2 * H - p(16), A + 2 * H - p(8), Anon, S2),
            (A + 4 * H, A + 5 * H, Anon, S1)
        ]
    );
    l.mmap(A + 8 * H, 2 * H, huge, S3);
    l.mremap(A + 8 * H, H + p(8), H + p(8), fixed, A + 12 * H, S3);
    assert_eq!(l.region_at(A + 12 * H).map(|r| r.end), Some(A + 14 * H));
    assert_eq!(l.region_at(A + 8 * H), None);
    check_invariants(&l);
}

#[test]
fn munmap_anywhere_leaves_zero_one_or_two_remnants() {
    let mut l = Ledger::new();
    l.mmap(A, p(10), PRIV_ANON, S1);
    l.mmap(A + p(12), p(4), PRIV_ANON, S2);
    l.mmap(A + p(20), p(2), PRIV_ANON, S3);
    // The middle of one mapping: two remnants.
    assert_eq!(l.munmap(A + p(3), p(2)), Outcome::Recorded);
    // From inside one mapping, across a gap and a whole mapping, into a gap: one remnant, one
    // gone.
    assert_eq!(l.munmap(A + p(8), p(9)), Outcome::Recorded);
    // Exactly a mapping: none; and a length that is not a page multiple.
    assert_eq!(l.munmap(A + p(20), p(1) + 1), Outcome::Recorded);
    assert_eq!(
        spans(&l),
        [(A, A + p(3), Anon, S1), (A + p(5), A + p(8), Anon, S1)]
    );
    check_invariants(&l);
}

/// A `munmap` whose region was taken out before the call (`take_unmapped`, the hook's path
/// while nothing is logged) leaves the ledger as the call entered alone does; a failed one
/// leaves it as it was.
#[test]
fn a_region_taken_before_munmap_ends_as_the_call_alone_leaves_it() {
    let build = || {
        let mut l = Ledger::new();
        l.mmap(A, p(4), PRIV_ANON, S1);
        l.mmap(A + p(8), p(2), PRIV_ANON, S2);
        l.shmget(7, 0, p(2), true, S3);
        l.shmat(7, A + p(16), 0, p(2), S3);
        l
    };
    let unmap = |a: u64, len: u64, ret: i64| call(Func::Munmap, &[a, len], ret, S1);
    let (mut taken, mut alone) = (build(), build());
    // Exactly one region, its length not a page multiple: taken.
    let region = taken
        .take_unmapped(A, p(3) + 1, PAGE)
        .expect("exactly a region");
    let ev = unmap(A, p(3) + 1, 0);
    let got = taken.apply_taken(region, &Call::of(&ev).unwrap(), &facts());
    assert_eq!(got, alone.apply(&ev, &facts()));
    assert_eq!(spans(&taken), spans(&alone));
    assert_eq!(taken.stats(), alone.stats());
    // Taken, then the call failed: back as it was, the failure counted as any.
    let region = taken
        .take_unmapped(A + p(8), p(2), PAGE)
        .expect("exactly a region");
    let ev = unmap(A + p(8), p(2), -1);
    let got = taken.apply_taken(region, &Call::of(&ev).unwrap(), &facts());
    assert_eq!(got, alone.apply(&ev, &facts()));
    assert_eq!(spans(&taken), spans(&alone));
    assert_eq!(taken.stats(), alone.stats());
    assert_eq!(spans(&taken)[0], (A + p(8), A + p(10), Anon, S2));
    // Handed another call than the one it was taken for: back, and that call entered alone.
    let region = taken
        .take_unmapped(A + p(8), p(2), PAGE)
        .expect("exactly a region");
    let ev = unmap(A + p(30), p(1), 0);
    let got = taken.apply_taken(region, &Call::of(&ev).unwrap(), &facts());
    assert_eq!(got, Outcome::UnmappedUnknown);
    assert_eq!(got, alone.apply(&ev, &facts()));
    assert_eq!(spans(&taken), spans(&alone));
    assert_eq!(taken.stats(), alone.stats());
    // Not taken, nothing changed: part of a region, more than one, an attachment's piece, an
    // address off a page, no length, nothing there.
    let before = spans(&taken);
    assert!(taken.take_unmapped(A + p(8), p(1), PAGE).is_none());
    assert!(taken.take_unmapped(A + p(8), p(3), PAGE).is_none());
    assert!(taken.take_unmapped(A + p(16), p(2), PAGE).is_none());
    assert!(taken.take_unmapped(A + p(8) + 1, p(2), PAGE).is_none());
    assert!(taken.take_unmapped(A + p(8), 0, PAGE).is_none());
    assert!(taken.take_unmapped(A + p(30), p(1), PAGE).is_none());
    assert_eq!(spans(&taken), before);
    assert_eq!(taken.stats(), alone.stats());
    check_invariants(&taken);
}

#[test]
fn munmap_of_a_range_never_mapped_is_counted_and_said() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    assert_eq!(l.munmap(A + p(5), p(3)), Outcome::UnmappedUnknown);
    assert_eq!(l.munmap(A + p(1), p(3)), Outcome::Recorded);
    assert_eq!(l.stats().unknown_unmaps, 1);
    assert_eq!(spans(&l), [(A, A + p(1), Anon, S1)]);
}

#[test]
fn map_fixed_replaces_what_it_overlaps_attachments_included() {
    let mut l = Ledger::new();
    l.shmget(7, 0, p(2), true, S1);
    l.mmap(A, p(4), PRIV_ANON, S1);
    l.shmat(7, A + p(4), 0, p(2), S2);
    assert_eq!(l.attachments().count(), 1);
    // Covers the tail of the mapping and the whole attachment.
    assert_eq!(
        l.mmap(A + p(2), p(5), PRIV_ANON | FIXED, S3),
        Outcome::Recorded
    );
    assert_eq!(
        spans(&l),
        [(A, A + p(2), Anon, S1), (A + p(2), A + p(7), Anon, S3)]
    );
    assert_eq!(l.attachments().count(), 0);
    assert_eq!(l.segments().next().map(|s| s.attached), Some(0));
    assert_eq!(l.stats().stale_bytes, 0);
    check_invariants(&l);
}

#[test]
fn map_fixed_over_part_of_an_attachment_keeps_the_rest_attached() {
    let mut l = Ledger::new();
    l.shmat(7, A, 0, p(3), S2);
    l.mmap(A + p(1), p(1), PRIV_ANON | FIXED, S3);
    assert_eq!(
        spans(&l),
        [
            (A, A + p(1), Shm, S2),
            (A + p(1), A + p(2), Anon, S3),
            (A + p(2), A + p(3), Shm, S2)
        ]
    );
    let att = l.attachments().next().copied().unwrap();
    assert_eq!((att.pieces, att.mapped, att.size), (2, p(2), p(3)));
    check_invariants(&l);
}

#[test]
fn map_fixed_noreplace_and_plain_mmap_over_known_regions_mean_a_stale_view() {
    let mut l = Ledger::new();
    l.mmap(A, p(4), PRIV_ANON, S1);
    let noreplace = PRIV_ANON | libc::MAP_FIXED_NOREPLACE as u64;
    assert_eq!(l.mmap(A + p(6), p(2), noreplace, S2), Outcome::Recorded);
    // The kernel says [A+3, A+5) was free: our page at A+3 was unmapped behind our back.
    assert_eq!(
        l.mmap(A + p(3), p(2), noreplace, S2),
        Outcome::Stale { bytes: p(1) }
    );
    assert_eq!(
        l.mmap(A, p(1), PRIV_ANON, S3),
        Outcome::Stale { bytes: p(1) }
    );
    assert_eq!(
        spans(&l),
        [
            (A, A + p(1), Anon, S3),
            (A + p(1), A + p(3), Anon, S1),
            (A + p(3), A + p(5), Anon, S2),
            (A + p(6), A + p(8), Anon, S2)
        ]
    );
    assert_eq!(l.stats().stale_bytes, p(2));
    check_invariants(&l);
}

#[test]
fn mremap_shrinks_in_place() {
    let mut l = Ledger::new();
    l.mmap(A, p(4), PRIV_ANON, S1);
    assert_eq!(l.mremap(A, p(4), p(1) + 1, 0, A, S2), Outcome::Recorded);
    assert_eq!(spans(&l), [(A, A + p(2), Anon, S1)]);
    // MREMAP_MAYMOVE shrinks in place too.
    l.mremap(A, p(2), p(1), libc::MREMAP_MAYMOVE, A, S2);
    assert_eq!(spans(&l), [(A, A + p(1), Anon, S1)]);
    check_invariants(&l);
}

#[test]
fn mremap_grows_in_place_keeping_the_site() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    assert_eq!(l.mremap(A, p(2), p(5), 0, A, S2), Outcome::Recorded);
    assert_eq!(spans(&l), [(A, A + p(5), Anon, S1)]);
    assert_eq!(l.stats().peak_bytes_mapped, p(5));
    // A stale region where the kernel grew is dropped.
    l.mmap(A + p(6), p(1), PRIV_ANON, S3);
    assert_eq!(
        l.mremap(A, p(5), p(7), libc::MREMAP_MAYMOVE, A, S2),
        Outcome::Stale { bytes: p(1) }
    );
    assert_eq!(spans(&l), [(A, A + p(7), Anon, S1)]);
    check_invariants(&l);
}

#[test]
fn mremap_maymove_moves_and_keeps_the_site() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), SHARED_ANON, S1);
    let b = A + p(100);
    assert_eq!(
        l.mremap(A, p(2), p(3), libc::MREMAP_MAYMOVE, b, S2),
        Outcome::Recorded
    );
    assert_eq!(spans(&l), [(b, b + p(3), Anon, S1)]);
    assert!(l.regions().next().unwrap().shared);
    check_invariants(&l);
}

#[test]
fn mremap_moves_a_split_source_piece_by_piece() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    l.mmap(A + p(2), p(2), PRIV_ANON, S2);
    let b = A + p(100);
    // Moving and shrinking to 3 pages: the first region whole, one page of the second.
    l.mremap(A, p(4), p(3), libc::MREMAP_MAYMOVE, b, S3);
    assert_eq!(
        spans(&l),
        [(b, b + p(2), Anon, S1), (b + p(2), b + p(3), Anon, S2)]
    );
    check_invariants(&l);
}

#[test]
fn mremap_fixed_unmaps_the_target_first() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    let b = A + p(10);
    l.mmap(b - p(1), p(3), PRIV_ANON, S2);
    l.shmat(9, b + p(2), 0, p(2), S3);
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    assert_eq!(l.mremap(A, p(2), p(4), flags, b, S3), Outcome::Recorded);
    assert_eq!(
        spans(&l),
        [(b - p(1), b, Anon, S2), (b, b + p(4), Anon, S1)]
    );
    assert_eq!(
        l.attachments().count(),
        0,
        "the attachment under the target is gone"
    );
    assert_eq!(l.stats().stale_bytes, 0);
    check_invariants(&l);
}

#[test]
fn mremap_dontunmap_keeps_the_source() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    let b = A + p(10);
    let flags = libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP;
    assert_eq!(l.mremap(A, p(2), p(2), flags, b, S2), Outcome::Recorded);
    assert_eq!(
        spans(&l),
        [(A, A + p(2), Anon, S1), (b, b + p(2), Anon, S1)]
    );
    check_invariants(&l);
}

#[test]
fn mremap_old_size_zero_maps_the_same_shared_pages_again() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), SHARED_ANON, S1);
    let b = A + p(10);
    assert_eq!(
        l.mremap(A, 0, p(2), libc::MREMAP_MAYMOVE, b, S2),
        Outcome::Recorded
    );
    // The second mapping is a new acquisition, at the mremap call.
    assert_eq!(
        spans(&l),
        [(A, A + p(2), Anon, S1), (b, b + p(2), Anon, S2)]
    );
    assert!(l.regions().all(|r| r.shared));
    // A duplicate of an attachment's pages belongs to that attachment.
    l.shmat(4, A + p(20), 0, p(1), S3);
    let c = A + p(30);
    l.mremap(A + p(20), 0, p(1), libc::MREMAP_MAYMOVE, c, S2);
    let att = l.attachments().next().copied().unwrap();
    assert_eq!((att.pieces, att.mapped), (2, p(2)));
    // shmdt removes the piece at its address; the duplicate lives until unmapped.
    l.shmdt(A + p(20));
    assert_eq!(l.attachments().count(), 1);
    l.munmap(c, p(1));
    assert_eq!(l.attachments().count(), 0);
    check_invariants(&l);
}

#[test]
fn mremap_of_pages_never_seen_is_tracked_as_unknown_and_never_reported() {
    let mut l = Ledger::new();
    let b = A + p(10);
    assert_eq!(
        l.mremap(A, p(2), p(3), libc::MREMAP_MAYMOVE, b, S2),
        Outcome::UnknownSource { bytes: p(2) }
    );
    assert_eq!(spans(&l), [(b, b + p(3), Unknown, S2)]);
    // Grown in place from an unknown mapping: only the growth is known.
    assert_eq!(
        l.mremap(A + p(50), p(1), p(2), 0, A + p(50), S2),
        Outcome::UnknownSource { bytes: p(1) }
    );
    assert!(l.report(all_alive).is_clean());
    check_invariants(&l);
}

#[test]
fn each_shmat_is_its_own_attachment() {
    let mut l = Ledger::new();
    l.shmget(7, 0x4d2, 5000, true, S1);
    // The size comes from the shmget record when the hook has no IPC_STAT answer.
    assert_eq!(l.shmat(7, A, 0, 0, S2), Outcome::Recorded);
    assert_eq!(
        l.shmat(7, A + p(4), libc::SHM_RDONLY, 5000, S3),
        Outcome::Recorded
    );
    assert_eq!(
        spans(&l),
        [(A, A + p(2), Shm, S2), (A + p(4), A + p(6), Shm, S3)]
    );
    let mut atts: Vec<_> = l.attachments().copied().collect();
    atts.sort_by_key(|a| a.addr);
    assert_eq!(atts.len(), 2);
    assert_ne!(atts[0].id, atts[1].id);
    assert_eq!(
        (atts[0].shmid, atts[0].size, atts[0].readonly),
        (7, p(2), false)
    );
    assert_eq!((atts[1].addr, atts[1].readonly), (A + p(4), true));
    let prots: Vec<_> = l.regions().map(|r| r.prot).collect();
    assert_eq!(prots, [RW as i32, libc::PROT_READ]);
    assert_eq!(l.segments().next().map(|s| s.attached), Some(2));
    check_invariants(&l);
}

#[test]
fn shmat_of_a_segment_of_unknown_size_is_untracked() {
    let mut l = Ledger::new();
    assert_eq!(l.shmat(9, A, 0, 0, S2), Outcome::Untracked);
    assert!(spans(&l).is_empty());
    assert_eq!(l.stats().untracked, 1);
    assert_eq!(l.shmdt(A), Outcome::UnmappedUnknown);
}

#[test]
fn shmdt_removes_every_piece_even_after_splits() {
    let mut l = Ledger::new();
    l.shmat(7, A, 0, p(6), S2);
    l.munmap(A + p(1), p(1));
    l.munmap(A + p(3), p(1));
    assert_eq!(l.attachments().next().map(|a| a.pieces), Some(3));
    // Even with its first page gone, the attachment is found by the address shmat returned.
    l.munmap(A, p(1));
    l.mmap(A + p(10), p(1), PRIV_ANON, S1);
    assert_eq!(l.shmdt(A), Outcome::Recorded);
    assert_eq!(spans(&l), [(A + p(10), A + p(11), Anon, S1)]);
    assert_eq!(l.attachments().count(), 0);
    // Detaching again: nothing we know of.
    assert_eq!(l.shmdt(A), Outcome::UnmappedUnknown);
    check_invariants(&l);
}

#[test]
fn shmdt_picks_the_attachment_whose_piece_comes_first() {
    let mut l = Ledger::new();
    l.shmat(7, A, 0, p(3), S2);
    l.munmap(A, p(1));
    l.shmat(8, A, 0, p(1), S3);
    l.shmdt(A);
    assert_eq!(spans(&l), [(A + p(1), A + p(3), Shm, S2)]);
    assert_eq!(l.attachments().next().map(|a| a.shmid), Some(7));
    l.shmdt(A);
    assert!(spans(&l).is_empty());
}

/// Class 2 of the kernel-exactness fuzzing: `shmdt` finds the pieces `mremap` moved, kept
/// (`MREMAP_DONTUNMAP`) or duplicated (`old_size` 0) by their offset in the segment, not by the
/// address `shmat` returned.
#[test]
fn shmdt_finds_pieces_mremap_moved_kept_or_duplicated() {
    let b = A + p(100);
    let c = A + p(200);
    let mut l = Ledger::new();
    // Moved whole: its origin moved with it.
    l.shmat(7, A, 0, p(3), S1);
    l.mremap(A, p(3), p(3), libc::MREMAP_MAYMOVE, b, S2);
    assert_eq!(l.shmdt(A), Outcome::UnmappedUnknown);
    assert_eq!(l.shmdt(b), Outcome::Recorded);
    assert!(spans(&l).is_empty());
    // MREMAP_DONTUNMAP of the middle page: the copy's origin is one page before it.
    l.shmat(7, A, 0, p(3), S1);
    let dontunmap = libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP;
    l.mremap(A + p(1), p(1), p(1), dontunmap, b + p(1), S2);
    let copy = l.region_at(b + p(1)).unwrap();
    assert_eq!(copy.origin, Some(b));
    assert_eq!(l.shmdt(A), Outcome::Recorded);
    assert_eq!(spans(&l), [(b + p(1), b + p(2), Shm, S1)]);
    assert_eq!(l.shmdt(b), Outcome::Recorded);
    // A duplicate of its last page, placed by the kernel: offset 2, so origin 2 pages before.
    l.shmat(7, A, 0, p(3), S1);
    l.mremap(A + p(2), 0, p(1), libc::MREMAP_MAYMOVE, c, S2);
    assert_eq!(l.attachments().next().map(|a| a.pieces), Some(2));
    assert_eq!(l.shmdt(A), Outcome::Recorded);
    assert_eq!(spans(&l), [(c, c + p(1), Shm, S2)]);
    assert_eq!(l.shmdt(c), Outcome::UnmappedUnknown);
    assert_eq!(l.shmdt(c - p(2)), Outcome::Recorded);
    assert!(spans(&l).is_empty());
    assert_eq!(l.attachments().count(), 0);
    check_invariants(&l);
}

/// Class 7 of the kernel-exactness fuzzing: after its first piece, `shmdt` stops at the first
/// region ending past the address plus the segment's size, and leaves a piece `mremap` grew
/// there attached, whole.
#[test]
fn shmdt_stops_at_a_piece_reaching_past_the_segment() {
    let mut l = Ledger::new();
    l.shmat(7, A, 0, p(4), S1);
    l.munmap(A + p(1), p(1));
    // The piece at A+2 grows in place to A+6, past A+4.
    l.mremap(A + p(2), p(2), p(4), 0, A + p(2), S2);
    assert_eq!(l.shmdt(A), Outcome::Recorded);
    assert_eq!(spans(&l), [(A + p(2), A + p(6), Shm, S1)]);
    assert_eq!(l.attachments().next().map(|a| a.mapped), Some(p(4)));
    // Its first piece goes whole, even past the window, and the grown part, split off by a
    // munmap, is still found outside the window.
    l.munmap(A + p(4), p(1));
    assert_eq!(l.shmdt(A), Outcome::Recorded);
    assert_eq!(spans(&l), [(A + p(5), A + p(6), Shm, S1)]);
    assert_eq!(l.shmdt(A), Outcome::Recorded);
    assert!(spans(&l).is_empty());
    check_invariants(&l);
}

#[test]
fn munmap_over_an_attachment_detaches_what_it_covers() {
    let mut l = Ledger::new();
    l.shmget(7, 0, p(3), true, S1);
    l.shmat(7, A, 0, p(3), S2);
    l.munmap(A + p(2), p(1));
    let att = l.attachments().next().copied().unwrap();
    assert_eq!((att.pieces, att.mapped), (1, p(2)));
    assert_eq!(l.segments().next().map(|s| s.attached), Some(1));
    // The attachment ends with its last piece.
    l.munmap(A, p(2));
    assert_eq!(l.attachments().count(), 0);
    assert_eq!(l.segments().next().map(|s| s.attached), Some(0));
    check_invariants(&l);
}

#[test]
fn shm_remap_replaces_what_it_overlaps() {
    let mut l = Ledger::new();
    l.mmap(A, p(4), PRIV_ANON, S1);
    l.shmat(7, A + p(3), 0, p(2), S2);
    assert_eq!(
        l.shmat(8, A + p(2), libc::SHM_REMAP, p(2), S3),
        Outcome::Recorded
    );
    assert_eq!(
        spans(&l),
        [
            (A, A + p(2), Anon, S1),
            (A + p(2), A + p(4), Shm, S3),
            (A + p(4), A + p(5), Shm, S2)
        ]
    );
    // Without SHM_REMAP, the kernel never attaches over a mapping: ours was stale.
    assert_eq!(l.shmat(9, A, 0, p(1), S3), Outcome::Stale { bytes: p(1) });
    check_invariants(&l);
}

#[test]
fn segments_created_opened_and_removed() {
    let mut l = Ledger::new();
    l.shmget(1, 0, p(1), true, S1);
    l.shmget(2, 0x4d2, p(1), false, S2);
    l.shmget(3, 0x4d3, p(1), true, S3);
    // Opening what we created keeps it ours.
    l.shmget(3, 0x4d3, 0, false, S1);
    assert_eq!(l.stats().segments, 2);
    // IPC_RMID only marks a segment that is still attached.
    l.shmat(1, A, 0, 0, S1);
    assert_eq!(l.shmctl_rmid(1), Outcome::Recorded);
    let seg1 = l.segments().find(|s| s.shmid == 1).copied().unwrap();
    assert!(seg1.removed && seg1.created);
    assert_eq!(l.stats().segments, 1);
    // ... and is forgotten at its last detach here.
    l.shmdt(A);
    assert!(l.segments().all(|s| s.shmid != 1));
    assert_eq!(l.shmctl_rmid(99), Outcome::UnknownObject);
    // The IPC_64 bit some callers pass is ignored, as the kernel does.
    let ev = call(
        Func::Shmctl,
        &[3, (libc::IPC_RMID | 0x100) as u64, 0],
        0,
        S1,
    );
    assert_eq!(l.apply(&ev, &facts()), Outcome::Recorded);
    let ids: Vec<_> = l.segments().map(|s| (s.shmid, s.created)).collect();
    assert_eq!(ids, [(2, false)]);
    // Other shmctl commands change nothing.
    let ev = call(Func::Shmctl, &[2, libc::IPC_STAT as u64, 0x1000], 0, S1);
    assert_eq!(l.apply(&ev, &facts()), Outcome::NoEffect);
}

/// Class 1 of the kernel-exactness fuzzing: re-opening a segment (with flags of its own, here
/// `SHM_HUGETLB`) neither makes it created nor rewrites what its creation said.
#[test]
fn reopening_a_segment_keeps_its_record_and_page_size() {
    let mut l = Ledger::new();
    let open = |l: &mut Ledger, shmid: i32, created: bool, size: u64| {
        let flags = (libc::IPC_CREAT | libc::SHM_HUGETLB | 0o600) as u64;
        let ev = call(Func::Shmget, &[0x4d2, 0, flags], i64::from(shmid), S2);
        let facts = Facts {
            created,
            segment_size: size,
            ..facts()
        };
        l.apply(&ev, &facts)
    };
    l.shmget(7, 0x4d2, p(3), true, S1);
    assert_eq!(open(&mut l, 7, false, p(3)), Outcome::Recorded);
    // A segment first met through an opener's SHM_HUGETLB: its pages are not known to be huge.
    assert_eq!(open(&mut l, 8, false, p(2)), Outcome::Recorded);
    let segs: Vec<_> = l
        .segments()
        .map(|s| (s.shmid, s.created, s.size, s.site, s.huge_page_size))
        .collect();
    assert_eq!(segs, [(7, true, p(3), S1, 0), (8, false, p(2), S2, 0)]);
    // Its attachment spans its 3 pages, not a huge page: the neighbour stays.
    l.mmap(A + p(3), p(1), PRIV_ANON, S3);
    assert_eq!(l.shmat(7, A, 0, 0, S1), Outcome::Recorded);
    assert_eq!(l.shmat(8, A + p(8), 0, 0, S1), Outcome::Recorded);
    assert_eq!(
        spans(&l),
        [
            (A, A + p(3), Shm, S1),
            (A + p(3), A + p(4), Anon, S3),
            (A + p(8), A + p(10), Shm, S1)
        ]
    );
    check_invariants(&l);
}

#[test]
fn a_reused_id_is_a_new_object() {
    let mut l = Ledger::new();
    l.shmget(5, 0, p(1), false, S1);
    l.shmat(5, A, 0, 0, S1);
    l.shmctl_rmid(5);
    // The kernel destroyed it elsewhere and reused the id for a segment we create.
    l.shmget(5, 0, p(2), true, S2);
    let seg = l.segments().next().copied().unwrap();
    assert_eq!(
        (seg.created, seg.removed, seg.size, seg.site),
        (true, false, p(2), S2)
    );
    l.semget(3, 0, 1, false, S1);
    l.semget(3, 0, 2, true, S2);
    let set = l.semaphore_sets().next().copied().unwrap();
    assert_eq!((set.created, set.nsems, set.site), (true, 2, S2));
}

#[test]
fn semaphore_sets_are_gone_at_ipc_rmid() {
    let mut l = Ledger::new();
    l.semget(3, 0, 1, true, S1);
    l.semget(4, 0x4d2, 2, false, S2);
    assert_eq!(l.stats().semaphore_sets, 1);
    assert_eq!(l.semctl_rmid(3), Outcome::Recorded);
    assert_eq!(l.stats().semaphore_sets, 0);
    let ids: Vec<_> = l.semaphore_sets().map(|s| s.semid).collect();
    assert_eq!(ids, [4]);
    assert_eq!(l.semctl_rmid(3), Outcome::UnknownObject);
    // semop holds nothing but is counted.
    let op = call(Func::Semop, &[4, 0x1000, 1], 0, S1);
    assert_eq!(l.apply(&op, &facts()), Outcome::NoEffect);
    assert_eq!(l.stats().calls[Func::Semop as usize], 1);
    // Facts::nsems overrides a 0 passed when opening.
    let ev = call(Func::Semget, &[0x4d3, 0, 0], 5, S1);
    l.apply(
        &ev,
        &Facts {
            nsems: 8,
            ..facts()
        },
    );
    assert_eq!(l.semaphore_sets().last().map(|s| s.nsems), Some(8));
}

#[test]
fn fork_child_inherits_everything_and_owns_only_what_it_acquires() {
    let mut l = Ledger::new();
    l.mmap(A, p(2), PRIV_ANON, S1);
    l.shmget(7, 0, p(1), true, S1);
    l.semget(3, 0, 1, true, S1);
    l.shmat(7, A + p(10), 0, p(1), S2);
    assert!(!l.report(all_alive).is_clean());

    l.after_fork_in_child();
    assert!(l.regions().all(|r| r.inherited));
    assert!(l.attachments().all(|a| a.inherited));
    assert!(l.segments().all(|s| s.inherited));
    assert_eq!(l.stats().calls.iter().sum::<u64>(), 0);
    assert_eq!(l.stats().segments, 0);
    assert!(l.report(all_alive).is_clean());

    // A moved inherited region stays inherited; what the child maps is its own.
    l.mremap(A, p(2), p(2), libc::MREMAP_MAYMOVE, A + p(20), S3);
    l.mmap(A + p(30), p(1), PRIV_ANON, S3);
    let report = l.report(all_alive);
    assert_eq!(report.mappings.len(), 1);
    assert_eq!(
        (report.mappings[0].site, report.mappings[0].bytes),
        (S3, p(1))
    );
    // The child removing the parent's segment is recorded on the inherited record.
    assert_eq!(l.shmctl_rmid(7), Outcome::Recorded);
    // Still attached (inherited attachment), so only marked.
    assert!(l.segments().any(|s| s.shmid == 7 && s.removed));
    check_invariants(&l);
}

#[test]
fn stats_follow_the_calls() {
    let mut l = Ledger::new();
    l.mmap(A, p(4), PRIV_ANON, S1);
    l.shmat(7, A + p(8), 0, p(2), S2);
    l.munmap(A, p(3));
    let stats = l.stats();
    assert_eq!(stats.mappings, 2);
    assert_eq!(stats.bytes_mapped, p(3));
    assert_eq!(stats.peak_bytes_mapped, p(6));
    assert_eq!(stats.attachments, 1);
    assert_eq!(stats.calls[Func::Mmap as usize], 1);
    assert_eq!(stats.calls[Func::Shmat as usize], 1);
    assert_eq!(stats.calls[Func::Munmap as usize], 1);
    // mmap64 is mmap.
    let ev = call(
        Func::Mmap64,
        &[0, PAGE, RW, PRIV_ANON, u64::MAX, 0],
        (A + p(20)) as i64,
        S1,
    );
    l.apply(&ev, &facts());
    assert_eq!(l.stats().bytes_mapped, p(4));
    assert_eq!(l.stats().calls[Func::Mmap64 as usize], 1);
}

#[test]
fn hostile_numbers_never_panic() {
    let mut l = Ledger::new();
    let odd = Facts {
        page_size: 3,
        huge_page_size: 5,
        ..facts()
    };
    let big = [u64::MAX, u64::MAX - 1, 0, 1, 1 << 63, !4095];
    for &a in &big {
        for &b in &big {
            for func in Func::ALL {
                for ret in [a as i64, 0, -2, i64::MIN, i64::MAX] {
                    let ev = call(func, &[a, b, a, b, a, b], ret, a);
                    l.apply(&ev, &odd);
                    l.apply(&ev, &facts());
                }
            }
            let flags = [
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                0,
                libc::MREMAP_DONTUNMAP | 1,
            ];
            for f in flags {
                l.mremap(a, b, a, f, b, 1);
                l.mremap(a, 0, b, f, a, 1);
            }
        }
    }
    let _ = l.stats();
    let mut out = String::new();
    let report = l.report(all_alive);
    crate::ledger::write_text(&report, 1, &mut out).unwrap();
    crate::ledger::write_json(&report, 1, &mut out).unwrap();
    l.after_fork_in_child();
}

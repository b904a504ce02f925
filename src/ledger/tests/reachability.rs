//! The report split by a pointer scan (lost or still reachable) and limited by checkpoints.

use super::*;
use crate::ledger::ObjectKind;

fn everything_alive(_: ObjectKind, _: i32) -> bool {
    true
}

#[test]
fn candidates_are_what_the_report_would_list() {
    let mut l = Ledger::new();
    l.mmap(0x10000, PAGE, PRIV_ANON, 0x55);
    l.shmget(7, 0, PAGE, true, 0x56);
    l.shmat(7, 0x20000, 0, PAGE, 0x57);
    l.after_fork_in_child();
    l.mmap(0x30000, 2 * PAGE, PRIV_ANON, 0x58);
    l.shmat(7, 0x40000, 0, PAGE, 0x59);
    let starts: Vec<u64> = l.leak_candidates().iter().map(|c| c.start).collect();
    assert_eq!(
        starts,
        [0x30000, 0x40000],
        "inherited ones are not candidates"
    );
    assert_eq!(l.leak_candidates()[0].end, 0x32000);
}

#[test]
fn lost_and_reachable_mappings_and_attachments_are_apart() {
    let mut l = Ledger::new();
    for i in 0..3 {
        l.mmap(0x10000 + i * 0x10000, PAGE, PRIV_ANON, 0x55);
    }
    l.shmget(7, 0, 2 * PAGE, true, 0x56);
    l.shmat(7, 0x80000, 0, 2 * PAGE, 0x57);
    l.shmat(7, 0x90000, 0, 2 * PAGE, 0x58);
    // Split the second attachment: it is reachable through either piece.
    l.munmap(0x90000, PAGE);
    l.shmat(7, 0x90000, 0, PAGE, 0x59);
    let lost = [0x10000, 0x30000, 0x80000, 0x90000];
    let report = l.report_scoped(everything_alive, 0, |start| lost.contains(&start));
    assert_eq!(report.mapping_count(), 2);
    assert_eq!(report.reachable.len(), 1);
    assert_eq!(
        (report.reachable[0].count, report.reachable[0].bytes),
        (1, PAGE)
    );
    let addrs =
        |v: &Vec<crate::ledger::AttachmentLeak>| v.iter().map(|a| a.addr).collect::<Vec<_>>();
    // 0x80000 lost; 0x90000 has a lost piece at 0x90000 (the new attachment is there now)
    // and a reachable one at 0x91000.
    assert_eq!(addrs(&report.attachments), [0x80000, 0x90000]);
    assert_eq!(report.attachments[1].site, 0x59);
    assert_eq!(addrs(&report.reachable_attachments), [0x90000]);
    assert_eq!(report.reachable_attachments[0].site, 0x58);
    // The segment, two lost attachments, two lost mappings.
    assert_eq!(report.leaks(), 5);
    assert_eq!(report.reachable_count(), 2);
    let all = crate::ledger::Report {
        count_reachable: true,
        ..report.clone()
    };
    assert_eq!(all.leaks(), 7);
    assert!(
        l.report(everything_alive).reachable.is_empty(),
        "no scan: all lost"
    );
}

#[test]
fn a_checkpoint_limits_the_report_to_what_came_after() {
    let mut l = Ledger::new();
    l.mmap(0x10000, PAGE, PRIV_ANON, 0x55);
    l.shmget(7, 0, PAGE, true, 0x56);
    l.semget(9, 0, 1, true, 0x57);
    let since = l.checkpoint();
    l.mmap(0x20000, PAGE, PRIV_ANON, 0x58);
    l.shmget(8, 0, PAGE, true, 0x59);
    l.shmat(8, 0x30000, 0, PAGE, 0x5a);
    // A partial unmap keeps the epoch of what remains.
    l.munmap(0x10000, 0);
    let report = l.report_scoped(everything_alive, since, |_| true);
    let sites = |r: &crate::ledger::Report| {
        let mut s: Vec<u64> = r.mappings.iter().map(|m| m.site).collect();
        s.extend(r.segments.iter().map(|x| x.site));
        s.extend(r.semaphores.iter().map(|x| x.site));
        s.extend(r.attachments.iter().map(|x| x.site));
        s
    };
    assert_eq!(sites(&report), [0x58, 0x59, 0x5a]);
    let next = l.checkpoint();
    assert!(next > since);
    assert_eq!(l.report_scoped(everything_alive, next, |_| true).leaks(), 0);
    assert_eq!(l.report(everything_alive).leaks(), 6);
}

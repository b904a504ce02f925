//! Message queues: created ones are owned until `IPC_RMID`, which is immediate; what a
//! leaked queue still holds is the kernel's answer at report time.

use super::*;

const S1: u64 = 0x5555_0000_1000;
const S2: u64 = 0x5555_0000_2000;

fn msgget(l: &mut Ledger, msqid: i32, key: i32, created: bool, site: u64) -> Outcome {
    let flags = if created {
        libc::IPC_CREAT | libc::IPC_EXCL | 0o600
    } else {
        0
    };
    let ev = call(
        Func::Msgget,
        &[i64::from(key) as u64, flags as u64],
        i64::from(msqid),
        site,
    );
    l.apply(&ev, &Facts { created, ..facts() })
}

fn msgctl(l: &mut Ledger, msqid: i32, cmd: i32) -> Outcome {
    let ev = call(Func::Msgctl, &[msqid as u64, cmd as u64, 0], 0, S1);
    l.apply(&ev, &facts())
}

/// The kernel's answer for every queue: 3 messages of 48 bytes in all.
fn three_held(_: i32) -> Option<(u64, u64)> {
    Some((3, 48))
}

#[test]
fn a_created_queue_is_a_leak_until_removed() {
    let mut l = Ledger::new();
    assert_eq!(msgget(&mut l, 7, 0, true, S1), Outcome::Recorded);
    assert_eq!(msgget(&mut l, 8, 0x4d2, false, S2), Outcome::Recorded);
    let left = l.queues_left(0, three_held);
    assert_eq!(left.len(), 1, "only the created one");
    let q = left[0];
    assert_eq!(
        (q.msqid, q.key, q.messages, q.bytes, q.site),
        (7, 0, 3, 48, S1)
    );
    // IPC_STAT, IPC_SET and the rest change nothing; IPC_RMID (with or without IPC_64) is
    // immediate.
    assert_eq!(msgctl(&mut l, 7, libc::IPC_STAT), Outcome::NoEffect);
    assert_eq!(msgctl(&mut l, 7, libc::IPC_RMID | 0x100), Outcome::Recorded);
    assert!(l.queues_left(0, three_held).is_empty());
    assert_eq!(msgctl(&mut l, 7, libc::IPC_RMID), Outcome::UnknownObject);
    let ids: Vec<_> = l.message_queues().map(|q| q.msqid).collect();
    assert_eq!(ids, [8], "the opened one is kept for what it is");
}

#[test]
fn a_queue_the_kernel_no_longer_has_is_no_leak() {
    let mut l = Ledger::new();
    msgget(&mut l, 7, 0, true, S1);
    // Removed by another process: IPC_STAT fails.
    assert!(l.queues_left(0, |_| None).is_empty());
}

#[test]
fn sending_and_receiving_hold_nothing_but_are_counted() {
    let mut l = Ledger::new();
    msgget(&mut l, 7, 0, true, S1);
    let send = call(Func::Msgsnd, &[7, 0x1000, 16, 0], 0, S1);
    let receive = call(Func::Msgrcv, &[7, 0x1000, 16, 0, 0], 16, S1);
    assert_eq!(l.apply(&send, &facts()), Outcome::NoEffect);
    assert_eq!(l.apply(&receive, &facts()), Outcome::NoEffect);
    assert_eq!(l.stats().calls[Func::Msgsnd as usize], 1);
    assert_eq!(l.stats().calls[Func::Msgrcv as usize], 1);
    // A failed get holds nothing.
    let mut refused = call(Func::Msgget, &[0x4d2, 0], -1, S1);
    refused.errno = libc::ENOENT;
    l.apply(&refused, &facts());
    assert_eq!(l.message_queues().count(), 1);
}

#[test]
fn a_fork_child_owns_only_the_queues_it_creates_and_checkpoints_scope_them() {
    let mut l = Ledger::new();
    msgget(&mut l, 7, 0, true, S1);
    l.after_fork_in_child();
    assert!(l.queues_left(0, three_held).is_empty());
    let since = l.checkpoint();
    msgget(&mut l, 9, 0, true, S2);
    let ids: Vec<_> = l
        .queues_left(since, three_held)
        .iter()
        .map(|q| q.msqid)
        .collect();
    assert_eq!(ids, [9]);
    // A reused id created again is a new queue.
    msgget(&mut l, 7, 0, true, S2);
    let sites: Vec<_> = l
        .queues_left(0, three_held)
        .iter()
        .map(|q| q.site)
        .collect();
    assert_eq!(sites, [S2, S2]);
}

#[test]
fn a_leaked_queue_reads_with_what_it_holds_in_text_and_json() {
    use crate::ledger::{write_json, write_text};
    let mut l = Ledger::new();
    msgget(&mut l, 7, 0, true, S1);
    let mut report = l.report(|_, _| true);
    report.queues = l.queues_left(0, three_held);
    assert_eq!(report.leaks(), 1);
    assert!(!report.is_clean());
    let mut text = String::new();
    write_text(&report, 4242, &mut text).unwrap();
    assert_eq!(
        text,
        "\
shmtrace[4242] report: 1 leak left behind: 1 message queue
shmtrace[4242] outlive the process (created here, never removed: the kernel keeps them after exit):
shmtrace[4242]   message queue msqid=7 key=IPC_PRIVATE 3 messages, 48 bytes created at 0x555500001000: never removed, still exists (ipcrm -q 7)
"
    );
    let mut json = String::new();
    write_json(&report, 4242, &mut json).unwrap();
    assert!(
        json.contains(
            r#""semaphores":[],"queues":[{"msqid":7,"key":"IPC_PRIVATE","messages":3,"bytes":48,"site":"0x555500001000"}],"attachments":[]"#
        ),
        "{json}"
    );
}

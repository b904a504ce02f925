//! POSIX shared memory and semaphore names: created and never unlinked is a leak while
//! `/dev/shm` still holds the object created. Named semaphores opened and not closed as often.

use super::{call, facts};
use crate::ledger::{Ledger, NameKind, OpenSemaphore, Outcome};
use shmtrace_core::trace::event::{Func, Name};

const CREAT: u64 = (libc::O_RDWR | libc::O_CREAT) as u64;

fn shm_open(ledger: &mut Ledger, name: &[u8], created: bool, inode: u64, site: u64) -> Outcome {
    let mut ev = call(Func::ShmOpen, &[0x1000, CREAT, 0o600], 3, site);
    ev.name = Name::from_bytes(name);
    let mut facts = facts();
    facts.created = created;
    facts.inode = inode;
    ledger.apply(&ev, &facts)
}

fn shm_unlink(ledger: &mut Ledger, name: &[u8], ret: i64) -> Outcome {
    let mut ev = call(Func::ShmUnlink, &[0x1000], ret, 0x10);
    ev.name = Name::from_bytes(name);
    ledger.apply(&ev, &facts())
}

/// The shm names left, with `/dev/shm` holding `present` (name, inode).
fn left(ledger: &Ledger, present: &[(&[u8], u64)]) -> Vec<(Vec<u8>, u64)> {
    let now = |kind, name: &[u8]| {
        present
            .iter()
            .find(|p| kind == NameKind::Shm && p.0 == name)
            .map(|p| p.1)
    };
    ledger
        .names_left(now)
        .into_iter()
        .map(|n| (n.name.as_bytes().to_vec(), n.site))
        .collect()
}

#[test]
fn a_created_name_never_unlinked_is_left_at_its_site() {
    let mut l = Ledger::new();
    assert_eq!(shm_open(&mut l, b"/a", true, 7, 0x100), Outcome::Recorded);
    assert_eq!(left(&l, &[(b"/a", 7)]), [(b"/a".to_vec(), 0x100)]);
}

#[test]
fn an_opened_name_is_not_ours() {
    let mut l = Ledger::new();
    assert_eq!(shm_open(&mut l, b"/a", false, 7, 0x100), Outcome::NoEffect);
    assert!(left(&l, &[(b"/a", 7)]).is_empty());
}

#[test]
fn unlinking_releases_the_name() {
    let mut l = Ledger::new();
    shm_open(&mut l, b"/a", true, 7, 0x100);
    shm_open(&mut l, b"/b", true, 8, 0x200);
    assert_eq!(
        shm_unlink(&mut l, b"/a", -1),
        Outcome::NoEffect,
        "a failed unlink"
    );
    assert_eq!(shm_unlink(&mut l, b"/a", 0), Outcome::Recorded);
    assert_eq!(shm_unlink(&mut l, b"/c", 0), Outcome::UnknownObject);
    assert_eq!(left(&l, &[(b"/b", 8)]), [(b"/b".to_vec(), 0x200)]);
}

#[test]
fn a_name_gone_or_naming_another_object_is_no_leak() {
    let mut l = Ledger::new();
    shm_open(&mut l, b"/a", true, 7, 0x100);
    assert!(left(&l, &[]).is_empty(), "unlinked by another process");
    assert!(
        left(&l, &[(b"/a", 9)]).is_empty(),
        "and created again by someone else"
    );
}

#[test]
fn created_again_the_latest_site_counts() {
    let mut l = Ledger::new();
    shm_open(&mut l, b"/a", true, 7, 0x100);
    shm_open(&mut l, b"/a", true, 9, 0x300);
    assert_eq!(left(&l, &[(b"/a", 9)]), [(b"/a".to_vec(), 0x300)]);
}

#[test]
fn a_fork_child_neither_reports_nor_keeps_its_parents_names() {
    let mut child = Ledger::new();
    shm_open(&mut child, b"/parent", true, 7, 0x100);
    child.after_fork_in_child();
    assert!(left(&child, &[(b"/parent", 7)]).is_empty());
    shm_open(&mut child, b"/child", true, 8, 0x200);
    assert_eq!(shm_unlink(&mut child, b"/parent", 0), Outcome::Recorded);
    assert_eq!(
        left(&child, &[(b"/parent", 7), (b"/child", 8)]),
        [(b"/child".to_vec(), 0x200)]
    );
}

const SEM_CREAT: u64 = (libc::O_CREAT | libc::O_EXCL) as u64;

/// A successful sem_open returning `addr`.
fn sem_open(ledger: &mut Ledger, name: &[u8], created: bool, addr: i64, site: u64) -> Outcome {
    let mut ev = call(Func::SemOpen, &[0x1000, SEM_CREAT, 0o600, 1], addr, site);
    ev.name = Name::from_bytes(name);
    let mut facts = facts();
    facts.created = created;
    facts.inode = 7;
    ledger.apply(&ev, &facts)
}

fn sem_close(ledger: &mut Ledger, addr: u64, ret: i64) -> Outcome {
    ledger.apply(&call(Func::SemClose, &[addr], ret, 0x20), &facts())
}

fn sem_unlink(ledger: &mut Ledger, name: &[u8]) -> Outcome {
    let mut ev = call(Func::SemUnlink, &[0x1000], 0, 0x30);
    ev.name = Name::from_bytes(name);
    ledger.apply(&ev, &facts())
}

/// The names left of each kind, with `/dev/shm` holding every name with inode 7.
fn left_kinds(ledger: &Ledger) -> Vec<(NameKind, Vec<u8>)> {
    ledger
        .names_left(|_, _| Some(7))
        .into_iter()
        .map(|n| (n.kind, n.name.as_bytes().to_vec()))
        .collect()
}

fn open_sems(ledger: &Ledger) -> Vec<(u64, u64, u64)> {
    let all: Vec<OpenSemaphore> = ledger.semaphores_open();
    all.iter().map(|o| (o.addr, o.opens, o.site)).collect()
}

#[test]
fn a_semaphore_open_twice_and_closed_once_is_still_open() {
    let mut l = Ledger::new();
    assert_eq!(
        sem_open(&mut l, b"/s", true, 0x7f00_0000, 0x100),
        Outcome::Recorded
    );
    assert_eq!(
        sem_open(&mut l, b"/s", false, 0x7f00_0000, 0x200),
        Outcome::Recorded
    );
    assert_eq!(sem_close(&mut l, 0x7f00_0000, 0), Outcome::Recorded);
    assert_eq!(
        open_sems(&l),
        [(0x7f00_0000, 1, 0x100)],
        "one open left, at the first sem_open"
    );
    assert_eq!(sem_close(&mut l, 0x7f00_0000, 0), Outcome::Recorded);
    assert!(open_sems(&l).is_empty());
    assert_eq!(
        sem_close(&mut l, 0x7f00_0000, -1),
        Outcome::NoEffect,
        "a failed close"
    );
    assert_eq!(
        sem_close(&mut l, 0x7f00_0000, 0),
        Outcome::UnknownObject,
        "a close the ledger cannot match"
    );
}

#[test]
fn sem_open_fails_with_null_and_then_holds_nothing() {
    let mut l = Ledger::new();
    assert_eq!(sem_open(&mut l, b"/s", true, 0, 0x100), Outcome::NoEffect);
    assert!(open_sems(&l).is_empty() && left_kinds(&l).is_empty());
    // (void *) -1 is no failure for sem_open: SEM_FAILED is NULL.
    let ev = call(Func::SemOpen, &[0x1000, 0, 0, 0], -1, 0x100);
    assert!(!ev.failed());
}

#[test]
fn semaphore_and_shm_names_are_apart_and_each_unlink_releases_its_own() {
    let mut l = Ledger::new();
    sem_open(&mut l, b"/x", true, 0x7f00_0000, 0x100);
    shm_open(&mut l, b"/x", true, 7, 0x200);
    assert_eq!(
        left_kinds(&l),
        [
            (NameKind::Sem, b"/x".to_vec()),
            (NameKind::Shm, b"/x".to_vec())
        ]
    );
    assert_eq!(shm_unlink(&mut l, b"/x", 0), Outcome::Recorded);
    assert_eq!(left_kinds(&l), [(NameKind::Sem, b"/x".to_vec())]);
    assert_eq!(sem_unlink(&mut l, b"/x"), Outcome::Recorded);
    assert!(left_kinds(&l).is_empty());
    assert_eq!(
        open_sems(&l),
        [(0x7f00_0000, 1, 0x100)],
        "unlinking does not close"
    );
}

#[test]
fn a_semaphore_opened_without_creating_is_open_but_its_name_not_ours() {
    let mut l = Ledger::new();
    sem_open(&mut l, b"/s", false, 0x7f00_0000, 0x100);
    assert!(left_kinds(&l).is_empty());
    assert_eq!(open_sems(&l).len(), 1);
}

#[test]
fn a_fork_child_does_not_report_its_parents_open_semaphores() {
    let mut child = Ledger::new();
    sem_open(&mut child, b"/p", true, 0x7f00_0000, 0x100);
    child.after_fork_in_child();
    assert!(open_sems(&child).is_empty() && left_kinds(&child).is_empty());
    // Its own sem_open of the same name adds to glibc's inherited count: that one is its own.
    sem_open(&mut child, b"/p", false, 0x7f00_0000, 0x200);
    assert_eq!(open_sems(&child), [(0x7f00_0000, 1, 0x200)]);
    sem_close(&mut child, 0x7f00_0000, 0);
    assert!(open_sems(&child).is_empty());
    // Closing the inherited one too, then opening again: its own again.
    sem_close(&mut child, 0x7f00_0000, 0);
    sem_open(&mut child, b"/p", false, 0x7f00_0000, 0x300);
    assert_eq!(open_sems(&child), [(0x7f00_0000, 1, 0x300)]);
}

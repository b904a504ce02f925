//! POSIX shared memory names: created and never unlinked is a leak while `/dev/shm` still
//! holds the object created.

use super::{call, facts};
use crate::ledger::{Ledger, Outcome};
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

/// The names left, with `/dev/shm` holding `present` (name, inode).
fn left(ledger: &Ledger, present: &[(&[u8], u64)]) -> Vec<(Vec<u8>, u64)> {
    let now = |name: &[u8]| present.iter().find(|p| p.0 == name).map(|p| p.1);
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

//! Mappings of shared memory objects: the object an `mmap` names stays with its pages (split,
//! moved, inherited) and the report names it, one entry per object mapped at a site.

use super::*;
use crate::ledger::{ObjectKind, write_json, write_text};
use shmtrace_core::trace::event::Name;

const SHARED: u64 = libc::MAP_SHARED as u64;

fn everything_alive(_: ObjectKind, _: i32) -> bool {
    true
}

fn map_object(l: &mut Ledger, ret: u64, len: u64, object: &[u8], site: u64) -> Outcome {
    let mut ev = call(Func::Mmap, &[0, len, RW, SHARED, 3, 0], ret as i64, site);
    ev.name = Name::from_bytes(object);
    l.apply(&ev, &facts())
}

fn objects(mappings: &[crate::ledger::MappingLeak]) -> Vec<(u64, Vec<u8>, u64, u64)> {
    mappings
        .iter()
        .map(|m| (m.site, m.object.as_bytes().to_vec(), m.count, m.bytes))
        .collect()
}

#[test]
fn one_site_mapping_two_objects_and_a_file_is_three_entries() {
    let mut l = Ledger::new();
    assert_eq!(
        map_object(&mut l, 0x10000, PAGE, b"memfd:ring", 0x55),
        Outcome::Recorded
    );
    map_object(&mut l, 0x20000, PAGE, b"memfd:ring", 0x55);
    map_object(&mut l, 0x30000, 2 * PAGE, b"/dev/shm/psm_1", 0x55);
    map_object(&mut l, 0x40000, 4 * PAGE, b"", 0x55);
    let report = l.report(everything_alive);
    assert_eq!(
        objects(&report.mappings),
        [
            (0x55, b"".to_vec(), 1, 4 * PAGE),
            (0x55, b"/dev/shm/psm_1".to_vec(), 1, 2 * PAGE),
            (0x55, b"memfd:ring".to_vec(), 2, 2 * PAGE),
        ]
    );
}

#[test]
fn the_object_stays_with_its_pages_split_moved_or_inherited() {
    let mut l = Ledger::new();
    map_object(&mut l, 0x10000, 4 * PAGE, b"memfd:ring", 0x55);
    // A hole in the middle: two pieces, both of the memfd.
    l.munmap(0x11000, PAGE);
    // The last piece moved elsewhere.
    l.mremap(
        0x12000,
        2 * PAGE,
        2 * PAGE,
        libc::MREMAP_MAYMOVE,
        0x80000,
        0x66,
    );
    let report = l.report(everything_alive);
    assert_eq!(
        objects(&report.mappings),
        [(0x55, b"memfd:ring".to_vec(), 2, 3 * PAGE)]
    );
    l.after_fork_in_child();
    map_object(&mut l, 0x90000, PAGE, b"memfd:child", 0x77);
    assert_eq!(
        objects(&l.report(everything_alive).mappings),
        [(0x77, b"memfd:child".to_vec(), 1, PAGE)],
        "a child reports only its own"
    );
}

#[test]
fn lost_and_reachable_entries_name_their_object() {
    let mut l = Ledger::new();
    map_object(&mut l, 0x10000, PAGE, b"memfd:lost", 0x55);
    map_object(&mut l, 0x20000, PAGE, b"memfd:kept", 0x55);
    let report = l.report_scoped(everything_alive, 0, |start| start == 0x10000);
    assert_eq!(
        objects(&report.mappings),
        [(0x55, b"memfd:lost".to_vec(), 1, PAGE)]
    );
    assert_eq!(
        objects(&report.reachable),
        [(0x55, b"memfd:kept".to_vec(), 1, PAGE)]
    );
    let mut text = String::new();
    write_text(&report, 42, &mut text).unwrap();
    assert!(
        text.contains("shmtrace[42]   0x55: 1 mapping, 4096 bytes of memfd:lost\n"),
        "{text}"
    );
    assert!(
        text.contains("shmtrace[42]   0x55: 1 mapping, 4096 bytes of memfd:kept\n"),
        "{text}"
    );
    let mut json = String::new();
    write_json(&report, 42, &mut json).unwrap();
    assert!(
        json.contains(
            r#""mappings":[{"site":"0x55","object":"memfd:lost","count":1,"bytes":4096}]"#
        ),
        "{json}"
    );
    assert!(
        json.contains(
            r#""reachable":[{"site":"0x55","object":"memfd:kept","count":1,"bytes":4096}]"#
        ),
        "{json}"
    );
}

#[test]
fn only_mappings_take_the_name_as_their_object() {
    let mut l = Ledger::new();
    // shm_open's name is its argument, not an object mapped: the mapping after it has none.
    let mut open = call(Func::ShmOpen, &[0x1000, 0, 0o600], 3, 0x44);
    open.name = Name::from_bytes(b"/psm_1");
    l.apply(&open, &facts());
    l.mmap(0x10000, PAGE, SHARED, 0x55);
    assert_eq!(
        objects(&l.report(everything_alive).mappings),
        [(0x55, b"".to_vec(), 1, PAGE)]
    );
}

fn map_pending(l: &mut Ledger, ret: u64, len: u64, site: u64) -> Outcome {
    let ev = call(Func::Mmap, &[0, len, RW, SHARED, 3, 0], ret as i64, site);
    l.apply(
        &ev,
        &Facts {
            object_pending: true,
            ..facts()
        },
    )
}

/// What a `/proc/self/maps` shows at the report: 0x10000.. a memfd, 0x30000.. and 0x80000..
/// an unlinked name, 0x50000 a regular file.
fn kernel_shows(addr: u64) -> Name {
    let object: &[u8] = match addr {
        0x10000..0x12000 => b"memfd:ring",
        0x30000..0x34000 | 0x80000..0x82000 => b"/dev/shm/psm_1 (deleted)",
        _ => b"",
    };
    Name::from_bytes(object)
}

#[test]
fn a_pending_object_is_named_as_the_kernel_shows_it_at_the_report() {
    let mut l = Ledger::new();
    assert!(!l.names_pending());
    map_pending(&mut l, 0x10000, PAGE, 0x55);
    map_pending(&mut l, 0x11000, PAGE, 0x55);
    map_pending(&mut l, 0x30000, 4 * PAGE, 0x55);
    // The number reused by a regular file: the kernel shows no object.
    map_pending(&mut l, 0x50000, PAGE, 0x55);
    // Named at the call (a logged mmap) from the same site: one entry with the pending ones.
    map_object(&mut l, 0x60000, PAGE, b"memfd:ring", 0x55);
    // Released: never asked about.
    map_pending(&mut l, 0x70000, PAGE, 0x66);
    l.munmap(0x70000, PAGE);
    assert!(l.names_pending());
    let asked = std::cell::RefCell::new(Vec::new());
    let report = l.report_named(
        everything_alive,
        0,
        |_| true,
        |addr| {
            asked.borrow_mut().push(addr);
            kernel_shows(addr)
        },
    );
    assert_eq!(
        objects(&report.mappings),
        [
            (0x55, b"/dev/shm/psm_1 (deleted)".to_vec(), 1, 4 * PAGE),
            (0x55, b"memfd:ring".to_vec(), 3, 3 * PAGE),
            (0x55, b"".to_vec(), 1, PAGE),
        ]
    );
    assert_eq!(
        *asked.borrow(),
        [0x10000, 0x11000, 0x30000, 0x50000],
        "only live mappings whose object is pending are asked about"
    );
    // Without the kernel's answer (report_scoped), a pending object is no name, never a guess.
    assert_eq!(
        objects(&l.report_scoped(everything_alive, 0, |_| true).mappings),
        [
            (0x55, b"".to_vec(), 4, 7 * PAGE),
            (0x55, b"memfd:ring".to_vec(), 1, PAGE),
        ]
    );
}

#[test]
fn a_pending_object_stays_with_its_pages_split_or_moved() {
    let mut l = Ledger::new();
    map_pending(&mut l, 0x30000, 4 * PAGE, 0x55);
    l.munmap(0x31000, PAGE);
    // The last piece moved: still the mmap's site, named by what the kernel shows there.
    l.mremap(
        0x32000,
        2 * PAGE,
        2 * PAGE,
        libc::MREMAP_MAYMOVE,
        0x80000,
        0x66,
    );
    let report = l.report_named(everything_alive, 0, |start| start != 0x80000, kernel_shows);
    assert_eq!(
        objects(&report.mappings),
        [(0x55, b"/dev/shm/psm_1 (deleted)".to_vec(), 1, PAGE)]
    );
    assert_eq!(
        objects(&report.reachable),
        [(0x55, b"/dev/shm/psm_1 (deleted)".to_vec(), 1, 2 * PAGE)]
    );
}

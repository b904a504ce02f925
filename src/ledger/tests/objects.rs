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

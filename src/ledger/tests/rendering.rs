//! The report: what goes in it, in which order, and how it reads in both formats.

use super::json::{Value, parse};
use super::*;
use crate::ledger::{
    AttachmentLeak, MappingLeak, ObjectKind, Report, SegmentLeak, SemaphoreLeak, write_json,
    write_text,
};
use shmtrace_core::trace::event::{Name, Stack};

const A: u64 = 0x7f3a_2c00_0000;

/// A process that leaks one of everything, plus things it must not be blamed for.
fn leaky() -> Ledger {
    let mut l = Ledger::new();
    // Inherited from the parent: never this process's leaks.
    l.shmget(100, 0, PAGE, true, 0x1111);
    l.semget(101, 0, 1, true, 0x1111);
    l.mmap(A + 0x100_0000, PAGE, PRIV_ANON, 0x1111);
    l.shmat(100, A + 0x200_0000, 0, PAGE, 0x1111);
    l.after_fork_in_child();

    l.shmget(65538, 0, 4096, true, 0x55d0_c0a0_1234);
    l.shmget(65539, 0x4d2, 8192, false, 0x55d0_c0a0_1235); // opened: not ours
    l.shmget(65540, 0x4d3, 4096, true, 0x55d0_c0a0_1236); // removed below
    l.shmget(65541, 0x4d4, 4096, true, 0x55d0_c0a0_1237); // removed by another process
    l.shmctl_rmid(65540);
    l.semget(3, 0x4d2, 1, true, 0x55d0_c0a0_1248);
    l.semget(4, 0, 2, true, 0x55d0_c0a0_1249); // removed below
    l.semctl_rmid(4);
    l.semget(5, 0x4d5, 1, false, 0x55d0_c0a0_124a); // opened: not ours
    l.shmat(65538, A, 0, 4096, 0x55d0_c0a0_1270);
    l.shmat(
        65539,
        A + 0x10_0000,
        libc::SHM_RDONLY,
        8192,
        0x55d0_c0a0_1271,
    );
    l.shmat(65538, A + 0x20_0000, 0, 4096, 0x55d0_c0a0_1272);
    l.shmdt(A + 0x20_0000);
    // Two mappings from one site, one from another (larger), one unmapped.
    l.mmap(A + 0x30_0000, PAGE, PRIV_ANON, 0x55d0_c0a0_1300);
    l.mmap(A + 0x31_0000, PAGE, PRIV_ANON, 0x55d0_c0a0_1300);
    l.mmap(A + 0x32_0000, 4 * PAGE, SHARED_ANON, 0x55d0_c0a0_1310);
    l.mmap(A + 0x33_0000, PAGE, PRIV_ANON, 0x55d0_c0a0_1320);
    l.munmap(A + 0x33_0000, PAGE);
    l
}

fn oracle(kind: ObjectKind, id: i32) -> bool {
    !(kind == ObjectKind::Segment && id == 65541)
}

#[test]
fn report_holds_own_leaks_in_order() {
    let l = leaky();
    let asked = std::cell::RefCell::new(Vec::new());
    let report = l.report(|kind, id| {
        asked.borrow_mut().push((kind, id));
        oracle(kind, id)
    });
    // The kernel is asked only about objects created here and never removed.
    assert_eq!(
        asked.into_inner(),
        [
            (ObjectKind::Segment, 65538),
            (ObjectKind::Segment, 65541),
            (ObjectKind::SemaphoreSet, 3)
        ]
    );
    assert_eq!(
        report,
        Report {
            segments: vec![SegmentLeak {
                shmid: 65538,
                key: 0,
                size: 4096,
                site: 0x55d0_c0a0_1234,
                stack: Stack::new()
            }],
            semaphores: vec![SemaphoreLeak {
                semid: 3,
                key: 0x4d2,
                nsems: 1,
                site: 0x55d0_c0a0_1248,
                stack: Stack::new()
            }],
            attachments: vec![
                AttachmentLeak {
                    shmid: 65538,
                    addr: A,
                    size: 4096,
                    mapped: 4096,
                    readonly: false,
                    site: 0x55d0_c0a0_1270,
                    stack: Stack::new()
                },
                AttachmentLeak {
                    shmid: 65539,
                    addr: A + 0x10_0000,
                    size: 8192,
                    mapped: 8192,
                    readonly: true,
                    site: 0x55d0_c0a0_1271,
                    stack: Stack::new()
                }
            ],
            mappings: vec![
                MappingLeak {
                    site: 0x55d0_c0a0_1310,
                    stack: Stack::new(),
                    object: Name::new(),
                    count: 1,
                    bytes: 16384
                },
                MappingLeak {
                    site: 0x55d0_c0a0_1300,
                    stack: Stack::new(),
                    object: Name::new(),
                    count: 2,
                    bytes: 8192
                }
            ],
            ..Report::default()
        }
    );
    assert!(!report.is_clean());
    assert_eq!(report.leaks(), 7);
}

#[test]
fn text_report_reads_well() {
    let report = leaky().report(oracle);
    let mut out = String::new();
    write_text(&report, 4242, &mut out).unwrap();
    let expected = "\
shmtrace[4242] report: 7 leaks left behind: 1 segment, 1 semaphore set, 2 attachments, 3 mappings (24576 bytes)
shmtrace[4242] outlive the process (created here, never removed: the kernel keeps them after exit):
shmtrace[4242]   segment       shmid=65538 key=IPC_PRIVATE size=4096 created at 0x55d0c0a01234: never removed, still exists (ipcrm -m 65538)
shmtrace[4242]   semaphore set semid=3     key=0x4d2       nsems=1   created at 0x55d0c0a01248: never removed, still exists (ipcrm -s 3)
shmtrace[4242] attachments never detached (exit detaches them silently):
shmtrace[4242]   shmid=65538 addr=0x7f3a2c000000 size=4096 read-write attached at 0x55d0c0a01270: never detached (shmdt(0x7f3a2c000000))
shmtrace[4242]   shmid=65539 addr=0x7f3a2c100000 size=8192 read-only  attached at 0x55d0c0a01271: never detached (shmdt(0x7f3a2c100000))
shmtrace[4242] mappings never unmapped, by call site (exit unmaps them silently):
shmtrace[4242]   0x55d0c0a01310: 1 mapping,  16384 bytes
shmtrace[4242]   0x55d0c0a01300: 2 mappings, 8192 bytes
";
    assert_eq!(out, expected, "\n{out}");
}

#[test]
fn a_partly_unmapped_attachment_says_how_much_is_left() {
    let mut l = Ledger::new();
    l.shmat(7, A, 0, 3 * PAGE, 0x10);
    l.munmap(A + PAGE, PAGE);
    let mut out = String::new();
    write_text(&l.report(|_, _| true), 1, &mut out).unwrap();
    assert!(
        out.contains("never detached (8192 bytes still mapped) (shmdt(0x7f3a2c000000))"),
        "{out}"
    );
}

#[test]
fn clean_report_is_one_line() {
    let mut l = Ledger::new();
    l.mmap(A, PAGE, PRIV_ANON, 1);
    l.munmap(A, PAGE);
    l.shmget(1, 0, PAGE, true, 1);
    l.shmctl_rmid(1);
    // Created and never removed, but gone per the kernel: removed by another process.
    l.semget(2, 0, 1, true, 1);
    let report = l.report(|_, _| false);
    assert!(report.is_clean());
    assert_eq!(report.leaks(), 0);
    let mut text = String::new();
    write_text(&report, 4242, &mut text).unwrap();
    assert_eq!(
        text,
        "shmtrace[4242] report: clean: no segment, semaphore set, attachment or mapping left behind\n"
    );
    let mut json = String::new();
    write_json(&report, 4242, &mut json).unwrap();
    assert_eq!(
        json,
        r#"{"event":"report","pid":4242,"clean":true,"segments":[],"semaphores":[],"attachments":[],"mappings":[]}"#
            .to_string()
            + "\n"
    );
}

#[test]
fn json_report_is_one_well_formed_line() {
    let report = leaky().report(oracle);
    let mut out = String::new();
    write_json(&report, 4242, &mut out).unwrap();
    let line = out.strip_suffix('\n').unwrap();
    assert!(!line.contains('\n'));
    let v = parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(
        v.keys(),
        [
            "event",
            "pid",
            "clean",
            "segments",
            "semaphores",
            "attachments",
            "mappings"
        ]
    );
    assert_eq!(v.get("event").str(), "report");
    assert_eq!(v.get("pid").num(), 4242.0);
    assert_eq!(v.get("clean"), &Value::Bool(false));
    let seg = &v.get("segments").arr()[0];
    assert_eq!(seg.keys(), ["shmid", "key", "size", "site"]);
    assert_eq!(seg.get("key").str(), "IPC_PRIVATE");
    assert_eq!(seg.get("site").str(), "0x55d0c0a01234");
    let sem = &v.get("semaphores").arr()[0];
    assert_eq!(sem.keys(), ["semid", "key", "nsems", "site"]);
    assert_eq!(sem.get("key").str(), "0x4d2");
    let atts = v.get("attachments").arr();
    assert_eq!(atts.len(), 2);
    assert_eq!(
        atts[1].keys(),
        ["shmid", "addr", "size", "readonly", "site"]
    );
    assert_eq!(atts[1].get("addr").str(), "0x7f3a2c100000");
    assert_eq!(atts[1].get("readonly"), &Value::Bool(true));
    let maps = v.get("mappings").arr();
    assert_eq!(maps[1].keys(), ["site", "count", "bytes"]);
    assert_eq!(maps[1].get("count").num(), 2.0);
    assert_eq!(
        line,
        concat!(
            r#"{"event":"report","pid":4242,"clean":false,"#,
            r#""segments":[{"shmid":65538,"key":"IPC_PRIVATE","size":4096,"site":"0x55d0c0a01234"}],"#,
            r#""semaphores":[{"semid":3,"key":"0x4d2","nsems":1,"site":"0x55d0c0a01248"}],"#,
            r#""attachments":[{"shmid":65538,"addr":"0x7f3a2c000000","size":4096,"readonly":false,"site":"0x55d0c0a01270"},"#,
            r#"{"shmid":65539,"addr":"0x7f3a2c100000","size":8192,"readonly":true,"site":"0x55d0c0a01271"}],"#,
            r#""mappings":[{"site":"0x55d0c0a01310","count":1,"bytes":16384},{"site":"0x55d0c0a01300","count":2,"bytes":8192}]}"#
        )
    );
}

#[test]
fn negative_keys_render_as_their_32_bits() {
    let mut l = Ledger::new();
    l.shmget(1, -2, PAGE, true, 1);
    let mut out = String::new();
    write_json(&l.report(|_, _| true), 1, &mut out).unwrap();
    assert!(out.contains(r#""key":"0xfffffffe""#), "{out}");
}

/// The same calls as `Calls`, each made through a recorded stack (`SHMTRACE_STACK`).
fn with_stack(mut ev: Event, frames: &[u64]) -> Event {
    ev.stack = Stack::from_slice(frames);
    ev
}

#[test]
fn stacks_split_sites_and_follow_each_leak_into_the_report() {
    let mut l = Ledger::new();
    let (x, y) = ([0x55d0_c0a0_1400, 0x55d0_c0a0_1500], [0x55d0_c0a0_1600]);
    let shmget = |shmid: i64, frames: &[u64]| {
        let flags = (libc::IPC_CREAT | 0o600) as u64;
        with_stack(
            call(Func::Shmget, &[0, PAGE, flags], shmid, 0x55d0_c0a0_1234),
            frames,
        )
    };
    let created = Facts {
        created: true,
        ..facts()
    };
    l.apply(&shmget(10, &x), &created);
    l.apply(&shmget(11, &y), &created);
    let semget = call(Func::Semget, &[0, 1, 0o600], 3, 0x55d0_c0a0_1248);
    l.apply(&with_stack(semget, &y), &created);
    let shmat = call(Func::Shmat, &[10, 0, 0], A as i64, 0x55d0_c0a0_1270);
    l.apply(
        &with_stack(shmat, &x),
        &Facts {
            segment_size: PAGE,
            ..facts()
        },
    );
    // One mmap call site reached through two stacks, twice through the first: two entries.
    let mmap = |at: u64, frames: &[u64]| {
        let args = [0, PAGE, RW, PRIV_ANON, u64::MAX, 0];
        with_stack(call(Func::Mmap, &args, at as i64, 0x55d0_c0a0_1300), frames)
    };
    l.apply(&mmap(A + 0x10_0000, &x), &facts());
    l.apply(&mmap(A + 0x20_0000, &y), &facts());
    l.apply(&mmap(A + 0x30_0000, &x), &facts());
    // Without a stack: a third entry for the same address.
    l.mmap(A + 0x40_0000, PAGE, PRIV_ANON, 0x55d0_c0a0_1300);
    // mremap moves keep the stack of the mapping they move.
    l.mremap(
        A + 0x30_0000,
        PAGE,
        PAGE,
        libc::MREMAP_MAYMOVE,
        A + 0x50_0000,
        0x9,
    );
    check_invariants(&l);

    let report = l.report(|_, _| true);
    let stacks = |leaks: Vec<&Stack>| {
        leaks
            .iter()
            .map(|s| s.as_slice().to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stacks(report.segments.iter().map(|s| &s.stack).collect()),
        [x.to_vec(), y.to_vec()]
    );
    assert_eq!(report.semaphores[0].stack.as_slice(), &y);
    assert_eq!(report.attachments[0].stack.as_slice(), &x);
    let maps: Vec<(u64, Vec<u64>, u64)> = report
        .mappings
        .iter()
        .map(|m| (m.site, m.stack.as_slice().to_vec(), m.count))
        .collect();
    assert_eq!(
        maps,
        [
            (0x55d0_c0a0_1300, x.to_vec(), 2),
            (0x55d0_c0a0_1300, vec![], 1),
            (0x55d0_c0a0_1300, y.to_vec(), 1),
        ]
    );

    let mut json = String::new();
    write_json(&report, 1, &mut json).unwrap();
    let line = json.strip_suffix('\n').unwrap();
    parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    for expected in [
        r#"{"shmid":10,"key":"IPC_PRIVATE","size":4096,"site":"0x55d0c0a01234","stack":["0x55d0c0a01400","0x55d0c0a01500"]}"#,
        r#"{"semid":3,"key":"IPC_PRIVATE","nsems":1,"site":"0x55d0c0a01248","stack":["0x55d0c0a01600"]}"#,
        r#""readonly":false,"site":"0x55d0c0a01270","stack":["0x55d0c0a01400","0x55d0c0a01500"]}"#,
        r#"{"site":"0x55d0c0a01300","stack":["0x55d0c0a01400","0x55d0c0a01500"],"count":2,"bytes":8192}"#,
        r#"{"site":"0x55d0c0a01300","count":1,"bytes":4096}"#,
    ] {
        assert!(line.contains(expected), "{expected} not in {line}");
    }
    let mut text = String::new();
    write_text(&report, 1, &mut text).unwrap();
    for expected in [
        "created at 0x55d0c0a01234 stack=0x55d0c0a01400,0x55d0c0a01500: never removed",
        "attached at 0x55d0c0a01270 stack=0x55d0c0a01400,0x55d0c0a01500: never detached",
        "shmtrace[1]   0x55d0c0a01300 stack=0x55d0c0a01600:",
        "shmtrace[1]   0x55d0c0a01300:",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
}

/// The report example of docs/log-format.md ("Stacks"): a segment created through a stack, and
/// one mmap call site reached through two stacks.
#[test]
fn the_documented_report_with_stacks() {
    let doc = include_str!("../../../docs/log-format.md");
    let documented = doc
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .find(|l| l.starts_with(r#"{"event":"report""#))
        .expect("a report example in docs/log-format.md");
    let mut l = Ledger::new();
    let flags = (libc::IPC_CREAT | 0o600) as u64;
    let shmget = call(Func::Shmget, &[0, PAGE, flags], 65539, 0x55d0_c0a0_1234);
    let frames = [0x55d0_c0a0_1400, 0x55d0_c0a0_1588, 0x7f3a_2bc2_9d90];
    l.apply(
        &with_stack(shmget, &frames),
        &Facts {
            created: true,
            ..facts()
        },
    );
    for (at, frame) in [(A, 0x55d0_c0a0_1400), (A + 0x10_0000, 0x55d0_c0a0_1620)] {
        let args = [0, 2 * PAGE, RW, PRIV_ANON, u64::MAX, 0];
        let mmap = call(Func::Mmap, &args, at as i64, 0x55d0_c0a0_1290);
        l.apply(&with_stack(mmap, &[frame]), &facts());
    }
    let mut out = String::new();
    write_json(&l.report(|_, _| true), 4242, &mut out).unwrap();
    assert_eq!(out, format!("{documented}\n"));
}

/// A shared memory name and a semaphore name left: each as its own kind of row, with the
/// file glibc keeps it in, in text and JSON.
#[test]
fn names_of_both_kinds_read_as_their_files() {
    use crate::ledger::{NameKind, NameLeak};
    use shmtrace_core::trace::event::Name;
    let report = Report {
        names: vec![
            NameLeak {
                kind: NameKind::Shm,
                name: Name::from_bytes(b"/psm_1"),
                site: 0x100,
                stack: Stack::new(),
            },
            NameLeak {
                kind: NameKind::Sem,
                name: Name::from_bytes(b"/jobs"),
                site: 0x200,
                stack: Stack::new(),
            },
        ],
        ..Ledger::new().report(|_, _| true)
    };
    let mut text = String::new();
    write_text(&report, 7, &mut text).unwrap();
    assert!(
        text.contains("report: 2 leaks left behind: 2 names"),
        "{text}"
    );
    let row = |kind: &str, path: &str| {
        text.lines().any(|l| {
            l.contains(kind)
                && l.contains(&format!(" {path} "))
                && l.ends_with(&format!("never unlinked, still exists (rm {path})"))
        })
    };
    assert!(row("shm name", "/dev/shm/psm_1"), "{text}");
    assert!(row("semaphore name", "/dev/shm/sem.jobs"), "{text}");
    let mut json = String::new();
    write_json(&report, 7, &mut json).unwrap();
    let names = parse(&json).unwrap().get("names").clone();
    let Value::Arr(names) = names else {
        panic!("{json}")
    };
    let fields: Vec<(Value, Value)> = names
        .iter()
        .map(|n| (n.get("name").clone(), n.get("kind").clone()))
        .collect();
    assert_eq!(
        fields,
        [
            (Value::Str("/psm_1".into()), Value::Str("shm".into())),
            (Value::Str("/jobs".into()), Value::Str("sem".into()))
        ],
        "{json}"
    );
}

use std::fs;
use std::path::PathBuf;

use super::*;

/// Writes `lines` as one JSON-lines log in a fresh directory and reads it back.
fn timeline(test: &str, lines: &[&str]) -> Timeline {
    let dir = std::env::temp_dir().join(format!("shmtrace-timeline-{test}-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("1.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let t = Timeline::read(&[PathBuf::from(&path)]);
    fs::remove_dir_all(&dir).unwrap();
    t
}

fn last(t: &Timeline, pid: i32) -> Sample {
    *t.samples[&pid].last().unwrap()
}

const START: &str = r#"{"event":"start","pid":10,"ppid":1,"ts":1.0,"exe":"/bin/p","modules":[]}"#;

#[test]
fn a_forked_child_holds_what_its_parent_held_and_an_exec_drops_it() {
    let t = timeline(
        "fork",
        &[
            START,
            r#"{"event":"call","pid":10,"tid":10,"ts":1.1,"fn":"mmap","args":{"addr":null,"length":8192,"prot":"PROT_READ","flags":"MAP_SHARED","fd":3,"offset":0},"ret":"0x10000","errno":null,"dur_ns":1}"#,
            r#"{"event":"fork","pid":11,"ppid":10,"ts":1.2}"#,
            r#"{"event":"call","pid":11,"tid":11,"ts":1.3,"fn":"mmap","args":{"addr":null,"length":4096,"prot":"PROT_READ","flags":"MAP_PRIVATE|MAP_ANONYMOUS","fd":-1,"offset":0},"ret":"0x20000","errno":null,"dur_ns":1}"#,
            r#"{"event":"start","pid":11,"ppid":10,"ts":1.4,"exe":"/bin/q","modules":[]}"#,
            r#"{"event":"call","pid":11,"tid":11,"ts":1.5,"fn":"mmap","args":{"addr":null,"length":4096,"prot":"PROT_READ","flags":"MAP_PRIVATE|MAP_ANONYMOUS","fd":-1,"offset":0},"ret":"0x30000","errno":null,"dur_ns":1}"#,
        ],
    );
    let child = &t.samples[&11];
    assert_eq!(
        (child[0].mapped, child[0].shared_files),
        (12288, 1),
        "inherited 8 KiB + 4 KiB"
    );
    assert_eq!(
        (last(&t, 11).mapped, last(&t, 11).shared_files),
        (4096, 0),
        "after the exec"
    );
    assert_eq!(last(&t, 10).mapped, 8192);
    let kinds: Vec<_> = t.marks.iter().map(|m| (m.pid, m.kind.clone())).collect();
    assert_eq!(
        kinds,
        [
            (
                10,
                MarkKind::Start {
                    exe: Some("/bin/p".into())
                }
            ),
            (11, MarkKind::Fork { parent: 10 }),
            (
                11,
                MarkKind::Exec {
                    exe: Some("/bin/q".into())
                }
            ),
        ]
    );
}

#[test]
fn an_object_removed_by_another_process_leaves_its_creators_count() {
    let t = timeline(
        "sysv",
        &[
            START,
            r#"{"event":"call","pid":10,"tid":10,"ts":1.1,"fn":"shmget","args":{"key":"IPC_PRIVATE","size":100,"shmflg":"IPC_CREAT|0600"},"ret":7,"errno":null,"dur_ns":1,"created":true}"#,
            r#"{"event":"call","pid":10,"tid":10,"ts":1.2,"fn":"shmget","args":{"key":"0x4d2","size":0,"shmflg":"0600"},"ret":8,"errno":null,"dur_ns":1,"created":false}"#,
            r#"{"event":"call","pid":12,"tid":12,"ts":1.3,"fn":"shmat","args":{"shmid":7,"shmaddr":null,"shmflg":"0"},"ret":"0x7000","errno":null,"dur_ns":1}"#,
            r#"{"event":"call","pid":12,"tid":12,"ts":1.4,"fn":"shmctl","args":{"shmid":7,"cmd":"IPC_64|IPC_RMID","buf":null},"ret":0,"errno":null,"dur_ns":1}"#,
            r#"{"event":"call","pid":12,"tid":12,"ts":1.5,"fn":"shmctl","args":{"shmid":7,"cmd":"IPC_RMID","buf":null},"ret":-1,"errno":"EINVAL","dur_ns":1}"#,
        ],
    );
    let creator: Vec<u32> = t.samples[&10].iter().map(|s| s.sysv).collect();
    assert_eq!(
        creator,
        [1, 0],
        "opening an existing object creates nothing"
    );
    assert_eq!(
        t.samples[&10].last().unwrap().ts,
        1_400_000,
        "removed by 12"
    );
    assert_eq!(
        last(&t, 12).attached,
        4096,
        "a 100-byte segment attaches a page"
    );
    assert_eq!(last(&t, 12).sysv, 0);
    assert_eq!(t.events.len(), 5);
    assert_eq!(
        t.events[4].effect,
        Effect::None,
        "a failed call changes nothing"
    );
}

#[test]
fn a_call_that_never_returned_is_kept_and_one_that_returned_once() {
    let t = timeline(
        "blocked",
        &[
            START,
            r#"{"event":"enter","pid":10,"tid":10,"ts":1.1,"fn":"semop","args":{"semid":1}}"#,
            r#"{"event":"call","pid":10,"tid":10,"ts":1.1,"fn":"semop","args":{"semid":1},"ret":0,"errno":null,"dur_ns":5}"#,
            r#"{"event":"enter","pid":10,"tid":11,"ts":1.2,"fn":"semop","args":{"semid":2}}"#,
        ],
    );
    let calls: Vec<(i32, bool)> = t.events.iter().map(|e| (e.tid, e.returned())).collect();
    assert_eq!(calls, [(10, true), (11, false)]);
    assert_eq!((t.first_ts, t.end_ts), (1_000_000, 1_200_000));
}

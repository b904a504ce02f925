//! The merge on small hand-written logs.

use super::collect::Collector;
use super::sysv::sysv_leaks;
use super::tree::Tree;
use super::*;
use crate::kernel::Presence;
use crate::logs::parse_line;
use crate::symbols::Symbol;

fn report_from(lines: &[&str]) -> Report {
    let mut c = Collector::default();
    for (i, l) in lines.iter().enumerate() {
        if let Some(r) = parse_line(l).unwrap() {
            c.add(
                Pos {
                    file: 0,
                    line: i + 1,
                },
                r,
            );
        }
    }
    let tree = Tree::build(&c, None);
    let (leaks, sysv) = sysv_leaks(&c, &tree, &Kernel::default(), &mut Symbolizer::new());
    Report {
        leaks,
        sysv,
        ..Report::default()
    }
}

fn call(pid: i32, ts: &str, func: &str, args: &str, ret: i64, extra: &str) -> String {
    format!(
        r#"{{"event":"call","pid":{pid},"tid":{pid},"ts":{ts},"fn":"{func}","args":{args},"ret":{ret},"errno":null,"dur_ns":1,"caller":"0x10"{extra}}}"#
    )
}

#[test]
fn removal_by_another_process_is_not_a_leak() {
    let lines = [
        call(
            1,
            "1.0",
            "shmget",
            r#"{"key":"IPC_PRIVATE","size":4096,"shmflg":"IPC_CREAT|0600"}"#,
            7,
            r#","created":true"#,
        ),
        call(
            2,
            "2.0",
            "shmctl",
            r#"{"shmid":7,"cmd":"IPC_RMID","buf":null}"#,
            0,
            "",
        ),
        call(
            2,
            "3.0",
            "semget",
            r#"{"key":"IPC_PRIVATE","nsems":1,"semflg":"IPC_CREAT|0600"}"#,
            9,
            r#","created":true"#,
        ),
        call(
            3,
            "4.0",
            "semget",
            r#"{"key":"0x4d2","nsems":1,"semflg":"IPC_CREAT|0600"}"#,
            9,
            r#","created":false"#,
        ),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = report_from(&lines);
    assert_eq!(r.leaks.len(), 1);
    assert_eq!(
        (r.leaks[0].kind, r.leaks[0].id, r.leaks[0].pid),
        (Kind::SemaphoreSet, 9, 2)
    );
    assert_eq!(
        (r.sysv.created, r.sysv.removed, r.sysv.removed_elsewhere),
        (2, 1, 1)
    );
}

#[test]
fn removal_before_creation_does_not_count_and_ipc_64_does() {
    let lines = [
        call(
            1,
            "1.0",
            "semctl",
            r#"{"semid":5,"semnum":0,"cmd":"IPC_RMID"}"#,
            0,
            "",
        ),
        call(
            1,
            "2.0",
            "semget",
            r#"{"key":"IPC_PRIVATE","nsems":1,"semflg":"0600"}"#,
            5,
            "",
        ),
        call(
            1,
            "3.0",
            "shmget",
            r#"{"key":"IPC_PRIVATE","size":1,"shmflg":"0600"}"#,
            6,
            "",
        ),
        call(
            1,
            "4.0",
            "shmctl",
            r#"{"shmid":6,"cmd":"IPC_64|IPC_RMID","buf":null}"#,
            0,
            "",
        ),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let r = report_from(&lines);
    assert_eq!(r.leaks.len(), 1);
    assert_eq!(r.leaks[0].id, 5);
}

#[test]
fn pending_enter_matches_later_call() {
    let mut c = Collector::default();
    let enter = |ts: &str, tid: i32| {
        format!(
            r#"{{"event":"enter","pid":1,"tid":{tid},"ts":{ts},"fn":"semop","args":{{"semid":1,"sops":"0x1","nsops":1}},"caller":"0x10"}}"#
        )
    };
    let lines = [
        enter("1.0", 1),
        enter("1.1", 2),
        r#"{"event":"call","pid":1,"tid":1,"ts":1.0,"fn":"semop","args":{},"ret":0,"errno":null,"dur_ns":5,"caller":"0x10"}"#.to_string(),
    ];
    for (i, l) in lines.iter().enumerate() {
        c.add(
            Pos {
                file: 0,
                line: i + 1,
            },
            parse_line(l).unwrap().unwrap(),
        );
    }
    let pending: Vec<_> = c.pending.values().flatten().collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].1.tid, 2);
    assert_eq!(c.stats[&(1, "semop".to_string())].calls, 1);
}

#[test]
fn forked_child_inherits_parent_image_and_exec_replaces_it() {
    let start = |pid: i32, ts: &str, exe: &str, lo: &str, hi: &str| {
        format!(
            r#"{{"event":"start","pid":{pid},"ppid":1,"ts":{ts},"exe":"{exe}","modules":[{{"path":"{exe}","base":"{lo}","start":"{lo}","end":"{hi}"}}]}}"#
        )
    };
    let lines = [
        start(10, "1.0", "/bin/a", "0x1000", "0x2000"),
        call(11, "2.0", "mmap", "{}", 0, "").replace("0x10\"", "0x1800\""),
        start(11, "3.0", "/bin/b", "0x5000", "0x6000"),
    ];
    let mut c = Collector::default();
    for (i, l) in lines.iter().enumerate() {
        let file = if i == 0 { 0 } else { 1 };
        c.add(Pos { file, line: i + 1 }, parse_line(l).unwrap().unwrap());
    }
    let tree = Tree::build(&c, None);
    let child = &tree.nodes[&11];
    assert_eq!(child.ppid, Some(1), "the start record's parent wins");
    assert_eq!(child.images.len(), 2);
    assert_eq!(child.images[0].exe.as_deref(), Some("/bin/a"));
    let before = tree
        .image_at(11, Pos { file: 1, line: 2 }, 2_000_000)
        .unwrap();
    assert_eq!(before.exe.as_deref(), Some("/bin/a"));
    let later = tree
        .image_at(11, Pos { file: 1, line: 9 }, 4_000_000)
        .unwrap();
    assert_eq!(later.exe.as_deref(), Some("/bin/b"));
}

#[test]
fn parent_inferred_from_addresses() {
    let lines = [
        r#"{"event":"start","pid":10,"ppid":1,"ts":1.0,"exe":"/bin/a","modules":[{"path":"/bin/a","base":"0x1000","start":"0x1000","end":"0x2000"}]}"#.to_string(),
        call(11, "2.0", "mmap", "{}", 0, "").replace("0x10\"", "0x1800\""),
    ];
    let mut c = Collector::default();
    for (i, l) in lines.iter().enumerate() {
        c.add(Pos { file: i, line: 1 }, parse_line(l).unwrap().unwrap());
    }
    let tree = Tree::build(&c, None);
    assert_eq!(tree.nodes[&11].ppid, Some(10));
    assert_eq!(tree.nodes[&11].parent_source, ParentSource::Inferred);
    assert_eq!(tree.order, vec![10, 11]);
    assert_eq!(tree.nodes[&11].depth, 1);
}

/// `--stack`: the frames recorded above a creation, a blocked call, an attachment and a
/// mapping follow each into the report, symbolized in the image that made the call.
#[test]
fn recorded_stacks_follow_every_site_into_the_report() {
    let lines = [
        r#"{"event":"start","pid":1,"ppid":0,"ts":0.5,"exe":"/nonexistent/app","modules":[{"path":"/nonexistent/app","base":"0x1000","start":"0x1000","end":"0x9000"}]}"#.to_string(),
        call(
            1,
            "1.0",
            "shmget",
            r#"{"key":"IPC_PRIVATE","size":4096,"shmflg":"IPC_CREAT|0600"}"#,
            7,
            r#","stack":["0x2000","0x3000"],"created":true"#,
        ),
        r#"{"event":"enter","pid":1,"tid":1,"ts":2.0,"fn":"semop","args":{"semid":1,"sops":"0x1","nsops":1},"caller":"0x1010","stack":["0x4000"]}"#.to_string(),
        r#"{"event":"report","pid":1,"clean":false,"segments":[{"shmid":7,"key":"IPC_PRIVATE","size":4096,"site":"0x10"}],"semaphores":[],"attachments":[{"shmid":7,"addr":"0x7f0000000000","size":4096,"readonly":false,"site":"0x1020","stack":["0x5000"]}],"mappings":[{"site":"0x1030","stack":["0x6000","0xffff0000"],"count":1,"bytes":4096},{"site":"0x1030","count":1,"bytes":4096}]}"#.to_string(),
    ];
    let mut c = Collector::default();
    for (i, l) in lines.iter().enumerate() {
        let pos = Pos {
            file: 0,
            line: i + 1,
        };
        c.add(pos, parse_line(l).unwrap().unwrap());
    }
    let tree = Tree::build(&c, None);
    let mut symbolizer = Symbolizer::new();
    let view = ViewOptions::default();
    let addrs = |stack: &[Symbol]| stack.iter().map(|s| s.addr).collect::<Vec<_>>();
    let texts = |stack: &[Symbol]| stack.iter().map(Symbol::text).collect::<Vec<_>>();

    let (leaks, _) = sysv_leaks(&c, &tree, &Kernel::default(), &mut symbolizer);
    assert_eq!(addrs(&leaks[0].stack), [0x2000, 0x3000]);
    // In the module map (the file is missing: module and offset only).
    assert_eq!(
        texts(&leaks[0].stack),
        ["0x2000 (app+0x1000)", "0x3000 (app+0x2000)"]
    );

    let blocked = blocked_calls(&c, &tree, &view, &mut symbolizer, &[]);
    assert_eq!(addrs(&blocked[0].stack), [0x4000]);

    let mut report = Report::default();
    exit_reports(
        &c,
        &tree,
        &view,
        &Allocators::default(),
        &mut symbolizer,
        &mut report,
    );
    assert_eq!(addrs(&report.attachments[0].stack), [0x5000]);
    assert_eq!(
        report.mappings.len(),
        2,
        "one site, two stacks: two entries"
    );
    assert_eq!(
        texts(&report.mappings[0].stack),
        ["0x6000 (app+0x5000)", "0xffff0000"],
        "outside every module: the raw address"
    );
    assert!(report.mappings[1].stack.is_empty());
}

fn collected(lines: &[String]) -> (Collector, Tree) {
    let mut c = Collector::default();
    for (i, l) in lines.iter().enumerate() {
        let pos = Pos {
            file: 0,
            line: i + 1,
        };
        c.add(pos, parse_line(l).unwrap().unwrap());
    }
    let tree = Tree::build(&c, None);
    (c, tree)
}

/// jemalloc's mappings (site, or a frame above it, in libjemalloc.so.2) are
/// retained, not leaks, whether the shim set them aside (`"retained"`) or an older shim (or a
/// run with `SHMTRACE_ALLOCATORS=none`) listed them among the mappings; the program's own
/// mapping is still a leak; `SHMTRACE_ALLOCATORS=none` here counts the listed ones again.
#[test]
fn allocator_mappings_are_retained_not_leaks() {
    let start = r#"{"event":"start","pid":1,"ppid":0,"ts":0.5,"exe":"/nonexistent/app","modules":[{"path":"/nonexistent/app","base":"0x1000","start":"0x1000","end":"0x9000"},{"path":"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2","base":"0x7f0000000000","start":"0x7f0000000000","end":"0x7f0000100000"}]}"#;
    let old_shim = r#"{"event":"report","pid":1,"clean":false,"segments":[],"semaphores":[],"attachments":[],"mappings":[{"site":"0x7f0000094b5a","count":3,"bytes":8388608},{"site":"0x1030","stack":["0x7f0000001000"],"count":1,"bytes":4096},{"site":"0x1040","count":1,"bytes":12288}]}"#;
    let new_shim = r#"{"event":"report","pid":2,"clean":true,"segments":[],"semaphores":[],"attachments":[],"mappings":[],"retained":[{"module":"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2","count":6,"bytes":17825792}]}"#;
    let lines = [
        start.to_string(),
        old_shim.to_string(),
        start.replace(r#""pid":1"#, r#""pid":2"#),
        new_shim.to_string(),
    ];
    let (c, tree) = collected(&lines);
    let view = ViewOptions::default();
    let jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";

    let mut report = Report::default();
    let known = Allocators::default();
    exit_reports(
        &c,
        &tree,
        &view,
        &known,
        &mut Symbolizer::new(),
        &mut report,
    );
    let v = &report.verdict;
    assert_eq!(
        (v.mappings, v.mapping_bytes),
        (1, 12288),
        "the program's own"
    );
    assert_eq!(
        (v.retained_mappings, v.retained_bytes),
        (10, 8388608 + 4096 + 17825792)
    );
    assert_eq!(report.mappings.len(), 1);
    assert_eq!(
        report.mappings[0].site.as_ref().map(|s| s.addr),
        Some(0x1040)
    );
    let groups: Vec<(i32, &str, u64, u64)> = report
        .retained
        .iter()
        .map(|r| (r.pid, r.module.as_str(), r.count, r.bytes))
        .collect();
    assert_eq!(
        groups,
        [(1, jemalloc, 4, 8388608 + 4096), (2, jemalloc, 6, 17825792)]
    );
    assert!(v.fails(), "the program's own mapping is a leak");
    let text = crate::render::verdict_text(v);
    assert_eq!(
        text,
        "1 leak: 1 mapping (12288 bytes); retained by allocators, not leaks: 10 mappings (26218496 bytes)"
    );
    let doc = crate::json::document(&report, &view);
    assert_eq!(doc["verdict"]["retained_mappings"], 10);
    assert_eq!(doc["retained"][1]["module"], jemalloc);
    assert_eq!(doc["retained"][1]["bytes"], 17825792);
    assert_eq!(
        doc["verdict"]["mappings"], 1,
        "existing fields keep their meaning"
    );

    // Only the new shim's process: clean, as the shim said.
    let (c2, tree2) = collected(&lines[2..]);
    let mut clean = Report::default();
    exit_reports(
        &c2,
        &tree2,
        &view,
        &known,
        &mut Symbolizer::new(),
        &mut clean,
    );
    assert!(!clean.verdict.fails() && clean.verdict.retained_mappings == 6);

    let mut off = Report::default();
    let none = Allocators::parse(Some(b"none")).unwrap();
    exit_reports(&c, &tree, &view, &none, &mut Symbolizer::new(), &mut off);
    assert_eq!(off.verdict.mappings, 5, "listed mappings all count again");
    assert_eq!(
        off.verdict.retained_mappings, 6,
        "what the shim set aside stays aside (its own SHMTRACE_ALLOCATORS decided)"
    );
}

/// Shared memory and semaphore names are apart (`/x` is `/dev/shm/x` for one and
/// `/dev/shm/sem.x` for the other); a name unlinked by another process of the tree is no
/// leak; each left name carries what `/dev/shm` says of its file.
#[test]
fn names_of_both_kinds_across_processes_with_their_presence() {
    let sem_open = |pid, ts, name: &str, created: bool| {
        call(
            pid,
            ts,
            "sem_open",
            &format!(r#"{{"name":"{name}","oflag":"O_CREAT","mode":"0600","value":1}}"#),
            0x7f00_0000,
            &format!(r#","created":{created}"#),
        )
    };
    let unlink = |pid, ts, func: &str, name: &str| {
        call(pid, ts, func, &format!(r#"{{"name":"{name}"}}"#), 0, "")
    };
    let lines = [
        sem_open(1, "1.0", "/x", true),
        call(
            1,
            "1.5",
            "shm_open",
            r#"{"name":"/x","oflag":"O_RDWR|O_CREAT|O_EXCL","mode":"0600"}"#,
            3,
            r#","created":true"#,
        ),
        sem_open(1, "2.0", "/parent", true),
        // Opened, not created: not the tree's to unlink.
        sem_open(1, "2.5", "/opened", false),
        unlink(2, "3.0", "sem_unlink", "/parent"),
        // A shm_unlink of /x leaves the semaphore /x.
        unlink(2, "4.0", "shm_unlink", "/x"),
        sem_open(1, "5.0", "/gone", true),
    ];
    let (c, tree) = collected(&lines);
    let asked = std::cell::RefCell::new(Vec::new());
    let leaks = names::name_leaks(&c, &tree, &mut Symbolizer::new(), |path, created| {
        asked.borrow_mut().push((path.to_string(), created));
        if path.ends_with("gone") {
            Presence::Gone
        } else {
            Presence::Exists
        }
    });
    let got: Vec<(NameKind, &str, &str, Presence, i32)> = leaks
        .iter()
        .map(|l| (l.kind, l.name.as_str(), l.path.as_str(), l.presence, l.pid))
        .collect();
    assert_eq!(
        got,
        [
            (
                NameKind::Semaphore,
                "/x",
                "/dev/shm/sem.x",
                Presence::Exists,
                1
            ),
            (
                NameKind::Semaphore,
                "/gone",
                "/dev/shm/sem.gone",
                Presence::Gone,
                1
            ),
        ]
    );
    assert_eq!(
        asked.into_inner(),
        [
            ("/dev/shm/sem.gone".to_string(), 5_000_000),
            ("/dev/shm/sem.x".to_string(), 1_000_000),
        ],
        "asked with each name's creation time"
    );
}

/// `/dev/shm` as the oracle: a file there now, none, or one born after the logged creation.
#[test]
fn dev_shm_files_are_judged_by_existence_and_birth() {
    let dir = std::env::temp_dir().join(format!("shmtrace-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("f");
    std::fs::write(&file, b"").unwrap();
    let path = file.to_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert_eq!(kernel::dev_shm_file(path, now), Presence::Exists);
    let born_known = std::fs::metadata(&file).unwrap().created().is_ok();
    let long_before = now - 60_000_000;
    assert_eq!(
        kernel::dev_shm_file(path, long_before),
        if born_known {
            Presence::Reused
        } else {
            Presence::Exists
        }
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(kernel::dev_shm_file(path, now), Presence::Gone);
    std::fs::remove_dir(&dir).unwrap();
}

/// Kills the children and removes the set when the test ends, passed or not: the kernel keeps
/// a set, and the children would wait in it forever.
struct BlockedChildren {
    semid: i32,
    pids: Vec<i32>,
}

impl Drop for BlockedChildren {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: our own children, killed and reaped; the set is our private one.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        // SAFETY: as above.
        unsafe { libc::semctl(self.semid, 0, libc::IPC_RMID) };
    }
}

/// A child that waits on semaphore `num` of `semid` (at 0) until it is killed.
fn child_waiting_on(semid: i32, num: u16) -> i32 {
    // SAFETY: the child makes only system calls (no allocation, no lock) and never returns.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let mut op = libc::sembuf {
            sem_num: num,
            sem_op: -1,
            sem_flg: 0,
        };
        // SAFETY: one operation on our private set, from our own stack.
        unsafe {
            libc::semop(semid, &mut op, 1);
            libc::_exit(0);
        }
    }
    pid
}

fn still_running(pid: i32) -> Process {
    Process {
        pid,
        ppid: None,
        parent_source: ParentSource::Recorded,
        exes: Vec::new(),
        forked: false,
        ending: Ending::StillRunning,
        status: None,
        depth: 0,
        records: 0,
        calls: 0,
    }
}

fn semop_line(event: &str, pid: i32, ts: &str, semid: i32, num: u16) -> String {
    let args = format!(
        r#"{{"semid":{semid},"sops":[{{"sem_num":{num},"sem_op":-1,"sem_flg":"0"}}],"nsops":1}}"#
    );
    match event {
        "enter" => format!(
            r#"{{"event":"enter","pid":{pid},"tid":{pid},"ts":{ts},"fn":"semop","args":{args},"caller":"0x10"}}"#
        ),
        _ => call(pid, ts, "semop", &args, 0, ""),
    }
}

/// Two running processes, each holding the semaphore the other waits for and each asleep in
/// the kernel in that semop: a deadlock only when a second reading of the logs shows the same
/// calls pending and the same holdings, which proves the first reading's state held at one
/// instant. Logs read one after another can show a cycle that never was (a process that
/// moved on after its log was read): a second reading where a wait returned, or none at all,
/// confirms nothing; nor does a waiter that is not asleep in a semop of the set.
#[test]
fn a_live_cycle_is_a_deadlock_only_when_a_second_reading_agrees() {
    // SAFETY: a private set of two semaphores, removed by `BlockedChildren`.
    let semid = unsafe { libc::semget(libc::IPC_PRIVATE, 2, 0o600) };
    assert!(semid >= 0, "semget");
    let mut children = BlockedChildren {
        semid,
        pids: Vec::new(),
    };
    let (a, b) = (child_waiting_on(semid, 0), child_waiting_on(semid, 1));
    children.pids.extend([a, b]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while [a, b]
        .iter()
        .any(|&p| crate::semaphores::blocked_call(p, p).is_none())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "children never blocked"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Each took the semaphore the other now waits for (no SEM_UNDO: it holds it).
    let first = vec![
        semop_line("call", a, "1.0", semid, 1),
        semop_line("call", b, "1.1", semid, 0),
        semop_line("enter", a, "1.2", semid, 0),
        semop_line("enter", b, "1.3", semid, 1),
    ];
    let mut a_moved_on = first.clone();
    a_moved_on.push(semop_line("call", a, "1.2", semid, 0));
    let processes = [still_running(a), still_running(b)];
    let deadlocks = |second: Option<&Vec<String>>, procs: &[Process]| {
        let (collector, tree) = collected(&first);
        let mut reread = || second.map(|lines| collected(lines).0);
        super::hangs::hangs(
            &collector,
            &tree,
            procs,
            &mut Symbolizer::new(),
            &mut reread,
        )
        .deadlocks
        .len()
    };
    assert_eq!(
        deadlocks(Some(&first), &processes),
        1,
        "the same again: a deadlock"
    );
    assert_eq!(
        deadlocks(Some(&a_moved_on), &processes),
        0,
        "a wait returned in between"
    );
    assert_eq!(deadlocks(None, &processes), 0, "no second reading");
    // A process of the cycle that is not asleep in a semop of the set (this test's own).
    let awake = [still_running(a), still_running(std::process::id() as i32)];
    let mut not_b = first.clone();
    for line in not_b.iter_mut() {
        *line = line.replace(
            &format!("\"pid\":{b},\"tid\":{b}"),
            &format!("\"pid\":{0},\"tid\":{0}", std::process::id()),
        );
    }
    let (collector, tree) = collected(&not_b);
    let mut reread = || Some(collected(&not_b).0);
    let found = super::hangs::hangs(
        &collector,
        &tree,
        &awake,
        &mut Symbolizer::new(),
        &mut reread,
    );
    assert!(found.deadlocks.is_empty(), "a waiter awake: no deadlock");
}

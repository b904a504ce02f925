//! The command on programs that behave like real software: children that outlive their parent,
//! daemons, a program that signals its own process group, a SIGTERM from outside, Python
//! `multiprocessing`, a static binary, a SysV id reused behind the shim's back, a stripped
//! library, a tree of hundreds of processes. Every run is bounded: a run that overstays is
//! killed with its process group and the test fails; daemons are killed and SysV objects
//! removed even when a test fails. Needs `make lib` and gcc.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Runs `cmd` in a process group of its own with its output captured; kills the group and
/// fails when it lasts longer than `limit`.
fn bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting shmtrace");
    finish(child, limit)
}

/// Waits for a child started by `bounded`-like code, reading its output meanwhile.
fn finish(mut child: Child, limit: Duration) -> Output {
    let mut readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .map(|pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    })
    .collect();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for shmtrace") {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group this test created.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("the run took longer than {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = readers.pop().unwrap().join().unwrap();
    let stdout = readers.pop().unwrap().join().unwrap();
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Kills a process (a daemon a test started) when dropped.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: kill(2) on a pid this test's program printed as its own daemon.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
}

/// `shmtrace ... -- PROGRAM` in the scenario's run directory, bounded; the SysV ids the program
/// prints (`shm ID`, `sem ID`) join the guard.
fn run_bounded(s: &mut Scenario, args: &[&str], program: &[&Path], limit: Duration) -> Output {
    let out = bounded(&mut s.command(args, program), limit);
    s.guard.add_from_output(&text(&out.stdout));
    out
}

/// The same with `--json -o FILE`, and the JSON report.
fn json_run(
    s: &mut Scenario,
    args: &[&str],
    program: &[&Path],
    limit: Duration,
) -> (Output, Value) {
    let report = s.scratch.path("report.json");
    let report_text = report.to_string_lossy().into_owned();
    let all = [&["--json", "-o", &report_text], args].concat();
    let out = run_bounded(s, &all, program, limit);
    let doc = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no JSON report: {}", text(&out.stderr)));
    (out, doc)
}

/// The number a program printed after `word` (`daemon 1234`).
#[track_caller]
fn printed(stdout: &str, word: &str) -> i64 {
    let prefix = format!("{word} ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} line in {stdout:?}"))
}

fn ended(doc: &Value) -> Vec<(i64, String)> {
    items(doc, "processes")
        .iter()
        .map(|p| {
            (
                p["pid"].as_i64().unwrap(),
                p["ended"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A child that outlives its parent by a second: waited for, and its segment is a leak of the
/// report (not a call the report never saw).
#[test]
fn a_child_that_outlives_the_program_is_waited_for() {
    let mut s = Scenario::new("outlive");
    let program = s.compile("outlive");

    let started = Instant::now();
    let (out, doc) = json_run(&mut s, &[], &[&program], Duration::from_secs(30));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(exit_code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(ended(&doc).len(), 2, "{doc}");
    assert!(ended(&doc).iter().all(|(_, e)| e == "exited"), "{doc}");
    let leaks = items(&doc, "leaks");
    assert_eq!(leaks.len(), 1, "{doc}");
    assert_eq!(leaks[0]["site"]["line"], line_of("outlive", "late"));
    assert_eq!(doc["verdict"]["still_running"], 0);
}

/// With --wait 0 the same child is not waited for: it is listed as still running.
#[test]
fn wait_zero_reports_at_once() {
    let mut s = Scenario::new("outlive-nowait");
    let program = s.compile("outlive");

    let (_, doc) = json_run(
        &mut s,
        &["--wait", "0"],
        &[&program],
        Duration::from_secs(30),
    );
    let states: Vec<String> = ended(&doc).into_iter().map(|(_, e)| e).collect();
    assert!(states.contains(&"still running".to_string()), "{doc}");
    assert_eq!(doc["verdict"]["still_running"], 1, "{doc}");
    // Let the child finish before the guard removes what it made.
    std::thread::sleep(Duration::from_millis(1500));
}

/// A daemon started through a launcher that exits: with --wait 1 the report comes while the
/// daemon runs, and the segment it keeps attached and the set it uses are "in use", not leaks,
/// with no ipcrm advice.
#[test]
fn a_running_daemons_objects_are_in_use_not_leaks() {
    let mut s = Scenario::new("daemon");
    let program = s.compile("daemon");

    let out = run_bounded(
        &mut s,
        &["--wait", "1", "--color", "never"],
        &[&program],
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    let daemon = printed(&stdout, "daemon");
    let _kill = KillOnDrop(vec![daemon as i32]);
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert_has(
        &stderr,
        "SysV objects in use by running processes (not leaks)",
    );
    assert_has(&stderr, format!("in use by pid {daemon} (daemon)"));
    assert!(!stderr.contains("ipcrm"), "{stderr}");
    assert_has(&stderr, "shmtrace: clean: ");
    assert_has(
        &stderr,
        "in use, not leaks: 2 SysV objects; 1 process still running",
    );

    let doc = report_json(&s.run_dir, &[]);
    assert_eq!(items(&doc, "leaks").len(), 0, "{doc}");
    let in_use = items(&doc, "in_use");
    assert_eq!(in_use.len(), 2, "{doc}");
    for o in in_use {
        assert_eq!(o["in_use_by"][0]["pid"], daemon, "{doc}");
    }
}

/// With --wait 0 the daemon is listed as still running.
#[test]
fn wait_zero_lists_the_daemon_as_still_running() {
    let mut s = Scenario::new("daemon-nowait");
    let program = s.compile("daemon");

    let (out, doc) = json_run(
        &mut s,
        &["--wait", "0"],
        &[&program],
        Duration::from_secs(30),
    );
    let stdout = text(&out.stdout);
    let daemon = printed(&stdout, "daemon");
    let _kill = KillOnDrop(vec![daemon as i32]);
    assert!(
        ended(&doc).contains(&(daemon, "still running".to_string())),
        "{doc}"
    );
    assert_eq!(doc["verdict"]["leaks"], 0, "{doc}");
}

/// A program that sends SIGTERM to its own process group (as Apache does on stop) does not
/// stop shmtrace: the program goes on, the report follows, the status is the program's.
#[test]
fn a_signal_to_the_programs_own_group_spares_shmtrace() {
    let mut s = Scenario::new("group-signal");
    let out = run_bounded(
        &mut s,
        &[],
        &[
            Path::new("sh"),
            Path::new("-c"),
            Path::new("trap '' TERM; kill -TERM 0; echo alive"),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(text(&out.stdout), "alive\n");
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert_has(&stderr, "shmtrace report: sh -c");
    assert_has(&stderr, "shmtrace: clean");
}

/// A SIGTERM sent to shmtrace from outside reaches the program, and the report follows.
#[test]
fn sigterm_from_outside_is_passed_to_the_program() {
    let s = Scenario::new("outside-term");
    let mut child = s
        .command(
            &[],
            &[
                Path::new("sh"),
                Path::new("-c"),
                Path::new(
                    "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
                ),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    stdout.read_exact(&mut first).expect("the program starts");
    assert_eq!(&first, b"ready\n");
    // SAFETY: kill(2) on the shmtrace this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.stdout = Some(stdout);
    let out = finish(child, Duration::from_secs(30));
    assert_has(&text(&out.stdout), "got TERM");
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 3, "the program's status: {stderr}");
    assert_has(&stderr, "shmtrace report: sh -c");
}

/// Python multiprocessing: the worker and the resource tracker (which outlives the main
/// process, and warns about the leaked shared memory when it ends) are all waited for; the
/// tracker's warning comes before the report.
#[test]
fn python_multiprocessing_is_fully_waited_for() {
    if Command::new("python3").arg("-c").arg("").status().is_err() {
        eprintln!("skipped: no python3");
        return;
    }
    let mut s = Scenario::new("python-mp");
    let script = s.scratch.path("mp.py");
    std::fs::write(
        &script,
        "import multiprocessing as mp\n\
         from multiprocessing import shared_memory\n\
         def work(name):\n    s = shared_memory.SharedMemory(name=name)\n    s.buf[0] = 7\n    s.close()\n\
         if __name__ == '__main__':\n\
         \x20   mp.set_start_method('spawn')\n\
         \x20   shm = shared_memory.SharedMemory(create=True, size=4096)\n\
         \x20   p = mp.Process(target=work, args=(shm.name,))\n\
         \x20   p.start(); p.join()\n\
         \x20   print('worker wrote', shm.buf[0], flush=True)\n\
         \x20   shm.close()  # never unlinked: the resource tracker warns and unlinks it\n",
    )
    .unwrap();
    let out = run_bounded(
        &mut s,
        &["--color", "never", "--all-processes"],
        &[Path::new("python3"), &script],
        Duration::from_secs(60),
    );
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert_eq!(text(&out.stdout), "worker wrote 7\n");
    let report_at = stderr.find("shmtrace report:").expect("a report");
    let warning_at = stderr
        .find("leaked shared_memory")
        .expect("the tracker's warning");
    assert!(warning_at < report_at, "{stderr}");
    assert!(!stderr.contains("still running"), "{stderr}");
    let doc = report_json(&s.run_dir, &[]);
    assert!(ended(&doc).len() >= 3, "main, worker, tracker: {doc}");
    assert!(ended(&doc).iter().all(|(_, e)| e == "exited"), "{doc}");
}

/// A static binary (never traced) that leaves a segment: the kernel's word catches it, with
/// its size and creator, as a leak.
#[test]
fn a_static_binarys_segment_is_caught_from_the_kernel() {
    let mut s = Scenario::new("static");
    let program = s
        .scratch
        .compile_with("static_leak", "static_leak", &["-static"]);

    let (out, doc) = json_run(
        &mut s,
        &["--error-exitcode", "9"],
        &[&program],
        Duration::from_secs(30),
    );
    let shm = printed(&text(&out.stdout), "shm");
    assert_eq!(exit_code(&out), 9, "{}", text(&out.stderr));
    let unseen = items(&doc, "not_seen");
    assert_eq!(unseen.len(), 1, "{doc}");
    assert_eq!(unseen[0]["kind"], "segment");
    assert_eq!(unseen[0]["id"], shm);
    assert_eq!(unseen[0]["size"], 12345);
    assert_eq!(unseen[0]["pid"], doc["run"]["root_pid"]);
    assert_eq!(doc["verdict"]["leaks"], 1);
}

/// In an IPC namespace of its own: a logged set removed and its id given to another set
/// behind the shim's back is not "still exists"; the other set is the kernel's word.
#[test]
fn a_reused_semaphore_id_is_not_still_existing() {
    let unshare = Command::new("unshare")
        .args(["--ipc", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !unshare {
        eprintln!("skipped: unshare --ipc is not permitted here");
        return;
    }
    // No guard: the ids are the namespace's, and it removes its objects when the run ends.
    let scratch = Scratch::new("reuse");
    let run_dir = scratch.path("run");
    let program = scratch.compile("reuse");
    let report = scratch.path("report.json");
    let mut cmd = Command::new("unshare");
    cmd.arg("--ipc")
        .arg(SHMTRACE)
        .arg("--lib")
        .arg(lib())
        .arg("--out")
        .arg(&run_dir)
        .args(["--json", "-o"])
        .arg(&report)
        .arg("--")
        .arg(&program)
        .env_remove("LD_PRELOAD");
    // The namespace, and every object in it, ends with the run.
    let out = bounded(&mut cmd, Duration::from_secs(30));
    let stdout = text(&out.stdout);
    assert_eq!(exit_code(&out), 0, "{}", text(&out.stderr));
    assert_has(&stdout, "reused");
    let doc: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let leaks = items(&doc, "leaks");
    assert_eq!(leaks.len(), 1, "{doc}");
    assert_eq!(leaks[0]["kernel"], "id reused", "{doc}");
    let unseen = items(&doc, "not_seen");
    assert_eq!(unseen.len(), 1, "{doc}");
    assert_eq!(unseen[0]["kind"], "semaphore set");
    assert_eq!(unseen[0]["id"], leaks[0]["id"]);
    assert_eq!(unseen[0]["key"], "0x5eed");
    assert_eq!(unseen[0]["size"], 3);
}

/// Builds `tests/programs/SOURCE` into `libstripped.so` with `compiler`, runs `finish` on it
/// (strip, split the debug information...), links `stripped_main` to it, runs that under
/// shmtrace, and returns the site of its one leak.
fn stripped_site(test: &str, compiler: &str, source: &str, finish: &[&[&str]]) -> Value {
    let mut s = Scenario::new(test);
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let dir = s.scratch.dir.display().to_string();
    let run = |program: &str, args: &[&str]| {
        let status = Command::new(program)
            .args(args)
            .current_dir(&s.scratch.dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "{program} {args:?} failed"
        );
    };
    let source = programs.join(source).display().to_string();
    let flags = [
        "-g", "-O0", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
    ];
    run(
        compiler,
        &[&flags[..], &["-o", "libstripped.so", &source]].concat(),
    );
    for step in finish {
        run(step[0], &step[1..]);
    }
    let main_source = programs.join("stripped_main.c").display().to_string();
    run(
        "gcc",
        &[
            "-g",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            "stripped_main",
            &main_source,
            &format!("-L{dir}"),
            &format!("-Wl,-rpath,{dir}"),
            "-lstripped",
        ],
    );
    let main = s.scratch.path("stripped_main");
    let (_, doc) = json_run(&mut s, &[], &[&main], Duration::from_secs(30));
    let leaks = items(&doc, "leaks");
    assert_eq!(leaks.len(), 1, "{doc}");
    leaks[0]["site"].clone()
}

/// A call site in a stripped shared library is named by the library's dynamic symbols.
#[test]
fn a_stripped_librarys_site_has_its_dynamic_symbol_name() {
    let strip: &[&str] = &["strip", "--strip-all", "libstripped.so"];
    let site = stripped_site("stripped", "gcc", "stripped_lib.c", &[strip]);
    assert_eq!(site["function"], "stripped_make_segment", "{site}");
    assert!(site["file"].is_null(), "{site}");
}

/// A C++ name from the dynamic symbols is demangled.
#[test]
fn a_cxx_site_is_demangled() {
    if Command::new("g++").arg("--version").output().is_err() {
        eprintln!("skipped: no g++");
        return;
    }
    let strip: &[&str] = &["strip", "--strip-all", "libstripped.so"];
    let site = stripped_site("stripped-cxx", "g++", "stripped_lib.cpp", &[strip]);
    assert_eq!(site["function"], "store::make_segment(int)", "{site}");
}

/// A stripped library whose debug information was split off with a debug link: the site has
/// its file and line again.
#[test]
fn a_debug_link_gives_file_and_line() {
    let steps: &[&[&str]] = &[
        &[
            "objcopy",
            "--only-keep-debug",
            "libstripped.so",
            "libstripped.so.debug",
        ],
        &["strip", "--strip-all", "libstripped.so"],
        &[
            "objcopy",
            "--add-gnu-debuglink=libstripped.so.debug",
            "libstripped.so",
        ],
    ];
    let site = stripped_site("debuglink", "gcc", "stripped_lib.c", steps);
    assert_eq!(site["function"], "stripped_make_segment", "{site}");
    assert!(ends_with(&site["file"], "stripped_lib.c"), "{site}");
    assert_eq!(site["line"], line_of("stripped_lib", "shmget"), "{site}");
}

/// 1,000 shell processes that make no tracked call and one leaking program: the report fits
/// on one screen (the idle ones folded into one line) and names the leak.
#[test]
fn a_big_tree_report_fits_on_one_screen() {
    let mut s = Scenario::new("big-tree");
    let leaker = s.compile("static_leak");
    let script = format!(
        "i=0; while [ $i -lt 1000 ]; do sh -c 'exit 0'; i=$((i+1)); done; {}",
        leaker.display()
    );
    let out = run_bounded(
        &mut s,
        &["--color", "never"],
        &[Path::new("sh"), Path::new("-c"), Path::new(&script)],
        Duration::from_secs(300),
    );
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert!(stderr.lines().count() <= 40, "{stderr}");
    assert_has(&stderr, "more processes made no tracked calls");
    assert_has(&stderr, "shmtrace: 1 leak: 1 segment");
    let doc = report_json(&s.run_dir, &[]);
    assert!(items(&doc, "processes").len() >= 1001, "{doc}");
}

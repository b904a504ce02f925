//! `shmtrace -- PROGRAM` on small C programs built at test time: process trees, exec chains,
//! killed and crashed runs, exit statuses, symbolized call sites, and `shmtrace report` on the
//! saved run directory. Needs `make lib` (the release library) and gcc.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn process(doc: &Value, pid: i64) -> &Value {
    items(doc, "processes")
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("no process {pid} in {doc}"))
}

fn root_pid(doc: &Value) -> i64 {
    doc["run"]["root_pid"].as_i64().expect("run.root_pid")
}

/// The parent creates a segment, the child removes it and creates a semaphore set nobody
/// removes: exactly the set is a leak, the child's.
#[test]
fn multi_process_verdict_is_exact() {
    let mut s = Scenario::new("family");
    let family = s.compile("family");

    let out = s.run(&[], &[&family]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert_has(&stderr, "shmtrace: 1 leak: 1 semaphore set\n");

    let doc = report_json(&s.run_dir, &[]);
    let root = root_pid(&doc);
    let processes = items(&doc, "processes");
    assert_eq!(processes.len(), 2, "{doc}");
    let child = processes.iter().find(|p| p["pid"] != root).unwrap();
    let child_pid = child["pid"].as_i64().unwrap();
    assert_eq!(child["ppid"], root);
    assert_eq!(child["ended"], "exited");
    assert_eq!(process(&doc, root)["ended"], "exited");
    assert_eq!(process(&doc, root)["status"], "exit 0");

    let leaks = items(&doc, "leaks");
    assert_eq!(leaks.len(), 1, "exactly one leak: {doc}");
    let leak = &leaks[0];
    assert_eq!(leak["kind"], "semaphore set");
    assert_eq!(leak["pid"], child_pid, "attributed to the child");
    assert!(ends_with(&leak["exe"], "/family"));
    assert_eq!(leak["kernel"], "exists");
    let sem: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sem ")?.parse().ok())
        .expect("family prints its semaphore set");
    assert_eq!(leak["id"], sem);
    assert_eq!(leak["site"]["function"], "make_set");
    assert_eq!(leak["site"]["line"], line_of("family", "semget"));

    assert_eq!(doc["verdict"]["leaks"], 1);
    assert_eq!(doc["verdict"]["segments"], 0);
    assert_eq!(doc["verdict"]["semaphore_sets"], 1);
    assert_eq!(doc["sysv"]["created"], 2);
    assert_eq!(doc["sysv"]["removed"], 1);
    assert_eq!(doc["sysv"]["removed_by_another_process"], 1);

    // The same report in text names the child and the exact line.
    let line = line_of("family", "semget");
    assert_has(
        &stderr,
        format!("created by {child_pid} (family) at make_set (family.c:{line})"),
    );
    assert_has(&stderr, format!("still exists (ipcrm -s {sem})"));
}

/// A program that execs another: what each image created is attributed to it, symbolized in
/// its own executable.
#[test]
fn exec_chain_attributes_objects_to_each_program() {
    let mut s = Scenario::new("chain");
    let first = s.compile("chain_first");
    let second = s.compile("chain_second");

    let out = s.run(&[], &[&first, &second]);
    assert_eq!(exit_code(&out), 0, "{}", text(&out.stderr));

    let doc = report_json(&s.run_dir, &[]);
    let root = root_pid(&doc);
    let processes = items(&doc, "processes");
    assert_eq!(processes.len(), 1, "exec keeps the pid: {doc}");
    let exes = items(&processes[0], "exes");
    assert_eq!(exes.len(), 2, "{doc}");
    assert!(ends_with(&exes[0], "/chain_first") && ends_with(&exes[1], "/chain_second"));

    let leaks = items(&doc, "leaks");
    assert_eq!(leaks.len(), 2, "{doc}");
    let segment = leaks.iter().find(|l| l["kind"] == "segment").unwrap();
    let set = leaks.iter().find(|l| l["kind"] == "semaphore set").unwrap();
    assert_eq!(segment["pid"], root);
    assert_eq!(set["pid"], root);
    assert!(ends_with(&segment["exe"], "/chain_first"), "{segment}");
    assert!(ends_with(&set["exe"], "/chain_second"), "{set}");
    assert!(
        ends_with(&segment["site"]["file"], "chain_first.c"),
        "{segment}"
    );
    assert_eq!(segment["site"]["line"], line_of("chain_first", "shmget"));
    assert!(ends_with(&set["site"]["file"], "chain_second.c"), "{set}");
    assert_eq!(set["site"]["line"], line_of("chain_second", "semget"));

    let stderr = text(&out.stderr);
    assert_has(
        &stderr,
        format!(
            "created by {root} (chain_second) at main (chain_second.c:{})",
            line_of("chain_second", "semget")
        ),
    );
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pids are the test's own processes.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Waits until `pid` is dead (a zombie or gone), at most 20 s (a loaded machine).
fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("process {pid} still alive after SIGKILL");
}

/// The run is killed with SIGKILL while a child blocks in semop: the partial logs still say
/// which call never returned, where, and that the processes did not exit normally.
#[test]
fn sigkill_while_a_child_blocks_in_semop() {
    let mut s = Scenario::new("blocker");
    let blocker = s.compile("blocker");

    let mut child = s
        .command(&[], &[&blocker])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let words: Vec<i32> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|w| w.parse().ok())
        .collect();
    let [sem, blocked, parent] = words[..] else {
        let _ = child.kill();
        panic!("blocker did not get ready: {line:?}");
    };
    s.guard.add_set(i64::from(sem));
    kill(blocked, libc::SIGKILL);
    wait_dead(blocked);
    kill(parent, libc::SIGKILL);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 128 + 9, "{stderr}");

    let semop_line = line_of("blocker", "semop");
    for expected in [
        "killed by SIGKILL".to_string(),
        "did not exit normally".to_string(),
        "calls that never returned".to_string(),
        format!("[{blocked}] semop({sem}, "),
        format!("at wait_forever (blocker.c:{semop_line})"),
        "never returned: the process did not exit normally".to_string(),
        "shmtrace: 1 leak: 1 semaphore set".to_string(),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
    }

    // The saved logs tell the same story.
    let doc = report_json(&s.run_dir, &[]);
    assert_eq!(
        process(&doc, i64::from(parent))["status"],
        "killed by SIGKILL"
    );
    assert_eq!(process(&doc, i64::from(parent))["exit_code"], 137);
    assert_eq!(
        process(&doc, i64::from(blocked))["ended"],
        "did not exit normally"
    );
    let never = items(&doc, "never_returned");
    assert_eq!(never.len(), 1, "{doc}");
    assert_eq!(never[0]["pid"], blocked);
    assert_eq!(never[0]["fn"], "semop");
    assert_eq!(never[0]["args"]["semid"], sem);
    assert_eq!(never[0]["site"]["line"], semop_line);
    assert_eq!(never[0]["still_waiting"], false);
    let leaks = items(&doc, "leaks");
    assert_eq!(leaks.len(), 1, "{doc}");
    assert_eq!(leaks[0]["id"], sem);
    assert_eq!(leaks[0]["pid"], parent);
    assert_eq!(leaks[0]["site"]["line"], line_of("blocker", "semget"));
    assert_eq!(doc["verdict"]["processes_without_exit_report"], 2);
}

/// A program dying of SIGSEGV: shmtrace exits 128+11 and says so; what it created is still
/// reported from its partial log.
#[test]
fn sigsegv_is_reported_and_propagated() {
    let mut s = Scenario::new("segv");
    let segv = s.compile("segv");

    let out = s.output(s.command(&[], &[&segv]).current_dir(&s.scratch.dir));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 128 + 11, "{stderr}");
    assert_has(&stderr, "killed by SIGSEGV");
    let shm: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("shm ")?.parse().ok())
        .expect("segv prints its segment");
    assert_has(
        &stderr,
        format!("segment shmid={shm} key=IPC_PRIVATE size=4096"),
    );
    assert_has(&stderr, format!("still exists (ipcrm -m {shm})"));
    assert_has(&stderr, "shmtrace: 1 leak: 1 segment\n");

    let doc = report_json(&s.run_dir, &[]);
    let root = root_pid(&doc);
    assert_eq!(process(&doc, root)["status"], "killed by SIGSEGV");
    assert_eq!(process(&doc, root)["ended"], "did not exit normally");
    assert_eq!(doc["run"]["exit_code"], 139);
}

/// The program's status is shmtrace's; --error-exitcode replaces it only when there are leaks.
#[test]
fn exit_status_and_error_exitcode() {
    let mut s = Scenario::new("status");
    let clean = s.compile("clean");
    let family = s.compile("family");

    let (clean_dir, out) = s.run_in("run0", &[], &[&clean, Path::new("3")]);
    assert_eq!(exit_code(&out), 3, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("shmtrace: clean: "));

    let (_, out) = s.run_in("run1", &["--error-exitcode", "42"], &[&clean]);
    assert_eq!(exit_code(&out), 0, "clean run keeps its status");

    let (_, out) = s.run_in("run2", &["--error-exitcode=42"], &[&family]);
    assert_eq!(exit_code(&out), 42, "{}", text(&out.stderr));

    let (leaky_dir, out) = s.run_in("run3", &[], &[&family]);
    assert_eq!(exit_code(&out), 0, "leaks alone do not change the status");

    // `report` exits 0, or the --error-exitcode value when there are leaks.
    let report = |args: &[&str], dir: &Path| {
        Command::new(SHMTRACE)
            .arg("report")
            .args(args)
            .arg(dir)
            .output()
            .unwrap()
    };
    assert_eq!(exit_code(&report(&[], &leaky_dir)), 0);
    assert_eq!(
        exit_code(&report(&["--error-exitcode", "9"], &leaky_dir)),
        9
    );
    assert_eq!(
        exit_code(&report(&["--error-exitcode", "9"], &clean_dir)),
        0
    );
}

/// `shmtrace report DIR` reproduces the run's report from the saved run directory.
#[test]
fn report_reproduces_the_run() {
    let mut s = Scenario::new("reproduce");
    let family = s.compile("family");
    let json_out = s.scratch.path("run.json.out");

    let out = s.run(
        &["--json", "--output", json_out.to_str().unwrap()],
        &[&family],
    );
    assert_eq!(exit_code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).is_empty(),
        "--output takes the report off stderr"
    );
    let during: Value = serde_json::from_str(&std::fs::read_to_string(&json_out).unwrap()).unwrap();
    let after = report_json(&s.run_dir, &[]);
    for key in [
        "verdict",
        "processes",
        "leaks",
        "attachments",
        "mappings",
        "never_returned",
        "calls",
        "sysv",
    ] {
        assert_eq!(during[key], after[key], "{key} differs");
    }
    assert_eq!(after["verdict"]["leaks"], 1);

    // And in text: the same verdict line.
    let text_report = Command::new(SHMTRACE)
        .arg("report")
        .arg(&s.run_dir)
        .output()
        .unwrap();
    assert!(text(&text_report.stdout).contains("shmtrace: 1 leak: 1 semaphore set\n"));
}

/// Call sites of a program built with -g: `function (file.c:LINE)` at the exact lines, for
/// SysV objects and for the attachments and mappings of the exit report.
#[test]
fn call_sites_are_symbolized_to_file_and_line() {
    let mut s = Scenario::new("sites");
    let sites = s.compile("sites");

    let out = s.run(&[], &[&sites]);
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 3, "{stderr}");
    let (shmget, shmat, mmap) = (
        line_of("sites", "shmget"),
        line_of("sites", "shmat"),
        line_of("sites", "mmap"),
    );
    for expected in [
        format!("at make_segment (sites.c:{shmget})"),
        format!("read-only  main (sites.c:{shmat})"),
        format!("main (sites.c:{mmap})"),
        "shmtrace: 3 leaks: 1 segment, 1 attachment, 1 mapping (8192 bytes)".to_string(),
    ] {
        assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
    }

    let doc = report_json(&s.run_dir, &[]);
    let site = &items(&doc, "leaks")[0]["site"];
    assert_eq!(site["function"], "make_segment");
    assert_eq!(site["line"], shmget);
    assert!(ends_with(&site["module"], "/sites"));
    assert_eq!(items(&doc, "attachments")[0]["site"]["line"], shmat);
    assert_eq!(items(&doc, "attachments")[0]["readonly"], true);
    assert_eq!(items(&doc, "mappings")[0]["site"]["line"], mmap);
    assert_eq!(items(&doc, "mappings")[0]["bytes"], 8192);

    // Without debug information: the function from the symbol table, with its offset.
    let stripped = s.scratch.compile_with("sites", "sites_stripped", &["-g0"]);
    let (_, out) = s.run_in("run2", &["--json"], &[&stripped]);
    let doc: Value = serde_json::from_slice(&out.stderr).expect("JSON report on stderr");
    let site = &items(&doc, "leaks")[0]["site"];
    assert_eq!(site["line"], Value::Null);
    assert!(
        site["text"]
            .as_str()
            .unwrap()
            .starts_with("make_segment+0x"),
        "{site}"
    );
    assert!(
        site["text"]
            .as_str()
            .unwrap()
            .ends_with(" (sites_stripped)")
    );
}

/// The environment: LD_PRELOAD keeps what the user preloads (after the shim), the shim's
/// variables are set, SHMTRACE_EXITCODE is removed, everything else passes through.
#[test]
fn environment_given_to_the_program() {
    let mut s = Scenario::new("env");
    let envprint = s.compile("envprint");
    let extra = s
        .scratch
        .compile_with("preload_extra", "libextra.so", &["-shared", "-fPIC"]);

    let out = s.output(
        s.command(&[], &[&envprint])
            .env("LD_PRELOAD", &extra)
            .env("SHMTRACE_EXITCODE", "99")
            .env("SHMTRACE_TEST_MARK", "kept"),
    );
    assert_eq!(exit_code(&out), 0, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lib = lib().canonicalize().unwrap();
    let log = s.run_dir.canonicalize().unwrap().join("%p.bin");
    for expected in [
        format!("LD_PRELOAD={} {}", lib.display(), extra.display()),
        format!("SHMTRACE_LOG={}", log.display()),
        "SHMTRACE_FORMAT=binary".to_string(),
        "SHMTRACE_EXITCODE=(unset)".to_string(),
        "SHMTRACE_TEST_MARK=kept".to_string(),
    ] {
        assert!(
            stdout.lines().any(|l| l == expected),
            "{expected:?} not in:\n{stdout}"
        );
    }
    // The program's stdout is its own: the report went to stderr.
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(text(&out.stderr).contains("shmtrace: clean: "));
}

/// Like system(3): a SIGINT sent to shmtrace is ignored, the program gets its own and dies of
/// it, and shmtrace still reports and exits 128+2.
#[test]
fn interrupt_reaches_the_program_and_the_report_follows() {
    let s = Scenario::new("sigint");
    let waiter = s.compile("waiter");

    let mut command = s.command(&[], &[&waiter]);
    // As from a terminal: a test run started in the background of a shell without job control
    // inherits SIGINT ignored, which shmtrace rightly passes on to the program.
    // SAFETY: between fork and exec only `signal`, which is async-signal-safe, runs.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        })
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let program: i32 = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("waiter not ready: {line:?}"));
    kill(child.id() as i32, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        child.try_wait().unwrap().is_none(),
        "shmtrace died of SIGINT"
    );
    kill(program, libc::SIGINT);
    // End of input: had the SIGINT not killed it, the program would now exit 0.
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 128 + 2, "{stderr}");
    assert_has(&stderr, "killed by SIGINT");
}

/// The records of every process of a run directory, as `shmtrace decode --format json` prints
/// its binary logs.
fn log_records(run_dir: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(run_dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "bin") {
            let text = log_text(&path).unwrap_or_else(|| panic!("{} decodes", path.display()));
            for line in text.lines() {
                records.push(serde_json::from_str(line).expect("a JSON log line"));
            }
        }
    }
    records
}

/// `stacks.c`: the helper's line for `marker` reached through the first or the second chain.
fn stacks_frames(chain: usize) -> Vec<(&'static str, u64)> {
    let frames: &[(&str, &str)] = if chain == 1 {
        &[
            ("first_leaf", "first_leaf"),
            ("first_chain", "first_chain"),
            ("main", "main_first"),
        ]
    } else {
        &[
            ("second_leaf", "second_leaf"),
            ("second_middle", "second_middle"),
            ("second_chain", "second_chain"),
        ]
    };
    frames
        .iter()
        .map(|&(function, marker)| (function, line_of("stacks", marker)))
        .collect()
}

/// The `(function, line)` of each frame of a report's `stack` array.
fn frames_of(stack: &Value) -> Vec<(String, u64)> {
    stack
        .as_array()
        .unwrap_or_else(|| panic!("stack is not an array: {stack}"))
        .iter()
        .map(|f| {
            assert!(ends_with(&f["file"], "/stacks.c"), "{f}");
            (
                f["function"].as_str().unwrap_or("?").to_string(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn owned(frames: &[(&str, u64)]) -> Vec<(String, u64)> {
    frames.iter().map(|&(f, l)| (f.to_string(), l)).collect()
}

/// `--stack 3`: one helper leaks a segment, an attachment and a mapping, called through two
/// call chains. Each leak names its own chain, frame by frame, at the exact lines: in the text
/// report, in the JSON report, and from the saved logs.
#[test]
fn deeper_stacks_tell_two_call_chains_apart() {
    let mut s = Scenario::new("stacks");
    let stacks = s.compile("stacks");

    let out = s.output(
        s.command(&["--stack", "3"], &[&stacks])
            .env_remove("SHMTRACE_STACK"),
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert_has(
        &stderr,
        "shmtrace: 6 leaks: 2 segments, 2 attachments, 2 mappings (8192 bytes)\n",
    );
    let shm: Vec<i64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("shm ")?.parse().ok())
        .collect();
    assert_eq!(shm.len(), 2, "{stdout}");

    // Text: under each site, one `called from` line per frame, innermost first; in the
    // attachment and mapping tables, indented under the site's column.
    let (shmget, shmat, mmap) = (
        line_of("stacks", "shmget"),
        line_of("stacks", "shmat"),
        line_of("stacks", "mmap"),
    );
    let doc = report_json(&s.run_dir, &[]);
    let root = root_pid(&doc);
    let called_from = |chain: usize| -> Vec<String> {
        stacks_frames(chain)
            .iter()
            .map(|(f, l)| format!("called from {f} (stacks.c:{l})"))
            .collect()
    };
    let lines: Vec<&str> = stderr.lines().collect();
    // The three lines under each line ending with `site`, trimmed, and their indents.
    let under = |site: &str| -> Vec<(Vec<String>, Vec<usize>)> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.ends_with(site))
            .map(|(i, _)| {
                let next = &lines[i + 1..(i + 4).min(lines.len())];
                (
                    next.iter().map(|l| l.trim_start().to_string()).collect(),
                    next.iter()
                        .map(|l| l.len() - l.trim_start().len())
                        .collect(),
                )
            })
            .collect()
    };
    for (site, column) in [
        (format!(" at leak_here (stacks.c:{shmget})"), None),
        (
            format!("  leak_here (stacks.c:{shmat})"),
            Some("ATTACHED AT"),
        ),
    ] {
        let found = under(&site);
        assert_eq!(found.len(), 2, "{site:?} twice in:\n{stderr}");
        let mut chains = Vec::new();
        for (frames, indents) in found {
            let chain = if frames == called_from(1) {
                1
            } else if frames == called_from(2) {
                2
            } else {
                panic!("under {site:?}: {frames:?} in:\n{stderr}");
            };
            chains.push(chain);
            // Indented below the site: the leak's `created by` line, or the table's column.
            let expected = match column {
                None => 10,
                Some(header) => {
                    let header_line = lines.iter().find(|l| l.ends_with(header)).unwrap();
                    header_line.len() - header.len() + 2
                }
            };
            assert_eq!(indents, [expected; 3], "under {site:?} in:\n{stderr}");
        }
        chains.sort_unstable();
        assert_eq!(chains, [1, 2], "{site:?} in:\n{stderr}");
    }
    // The mappings: one row for the site, then each stack that reached it with its count.
    let mmap_site = format!("  leak_here (stacks.c:{mmap})");
    let rows: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].ends_with(&mmap_site))
        .collect();
    assert_eq!(rows.len(), 1, "{mmap_site:?} once in:\n{stderr}");
    let under_row: Vec<String> = lines[rows[0] + 1..(rows[0] + 9).min(lines.len())]
        .iter()
        .map(|l| l.trim().to_string())
        .collect();
    let grouped = |first: usize, second: usize| -> Vec<String> {
        let through = || "1 mapping through:".to_string();
        [
            vec![through()],
            called_from(first),
            vec![through()],
            called_from(second),
        ]
        .concat()
    };
    assert!(
        under_row == grouped(1, 2) || under_row == grouped(2, 1),
        "{under_row:?} in:\n{stderr}"
    );
    for id in &shm {
        assert_has(
            &stderr,
            format!("created by {root} (stacks) at leak_here (stacks.c:{shmget})"),
        );
        assert_has(&stderr, format!("still exists (ipcrm -m {id})"));
    }

    // JSON: the same frames, as site objects next to each site.
    let chain_of = |stack: &Value| -> usize {
        match frames_of(stack).first().map(|f| f.0.as_str()) {
            Some("first_leaf") => 1,
            Some("second_leaf") => 2,
            other => panic!("unexpected innermost frame {other:?}: {stack}"),
        }
    };
    let leaks = items(&doc, "leaks");
    assert_eq!(leaks.len(), 2, "{doc}");
    for leak in leaks {
        assert_eq!(leak["site"]["line"], shmget);
        let chain = if leak["id"] == shm[0] { 1 } else { 2 };
        assert_eq!(frames_of(&leak["stack"]), owned(&stacks_frames(chain)));
    }
    for (key, line) in [("attachments", shmat), ("mappings", mmap)] {
        let entries = items(&doc, key);
        assert_eq!(entries.len(), 2, "one call site, two chains: {doc}");
        let mut chains: Vec<usize> = entries.iter().map(|e| chain_of(&e["stack"])).collect();
        for e in entries {
            assert_eq!(e["site"]["line"], line, "{e}");
            assert_eq!(
                frames_of(&e["stack"]),
                owned(&stacks_frames(chain_of(&e["stack"])))
            );
        }
        chains.sort_unstable();
        assert_eq!(chains, [1, 2], "{key}: {doc}");
    }

    // The log holds them raw: three return addresses after `caller` in every call record.
    let calls: Vec<Value> = log_records(&s.run_dir)
        .into_iter()
        .filter(|r| r["event"] == "call")
        .collect();
    assert_eq!(calls.len(), 6);
    for call in &calls {
        let frames = items(call, "stack");
        assert_eq!(frames.len(), 3, "{call}");
        assert!(frames.iter().all(|f| f.as_str().unwrap().starts_with("0x")));
    }
}

/// Without `--stack` nothing changes: no `stack` key in any record, empty `stack` arrays in
/// the JSON report, no `called from` line.
#[test]
fn without_stack_the_log_has_no_stack_key() {
    let mut s = Scenario::new("nostack");
    let stacks = s.compile("stacks");

    let out = s.output(s.command(&[], &[&stacks]).env_remove("SHMTRACE_STACK"));
    let stderr = text(&out.stderr);
    assert_eq!(exit_code(&out), 0, "{stderr}");
    assert!(!stderr.contains("called from"), "{stderr}");

    let records = log_records(&s.run_dir);
    assert!(records.iter().any(|r| r["event"] == "report"));
    for record in &records {
        let line = record.to_string();
        assert!(!line.contains("\"stack\""), "{line}");
    }
    let doc = report_json(&s.run_dir, &[]);
    for key in ["leaks", "attachments", "mappings"] {
        for entry in items(&doc, key) {
            assert_eq!(entry["stack"], Value::Array(vec![]), "{entry}");
        }
    }
}

//! The command line and bad input: help, usage errors (exit 2), missing or malformed logs,
//! filters, and a program that cannot be started.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn shmtrace(args: &[&str]) -> std::process::Output {
    Command::new(SHMTRACE)
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .unwrap()
}

#[test]
fn help_documents_every_option() {
    let out = shmtrace(&["--help"]);
    assert_eq!(exit_code(&out), 0);
    let help = text(&out.stdout);
    for option in [
        "--lib PATH",
        "--out DIR",
        "--stack N",
        "--error-exitcode N",
        "--json",
        "--output FILE",
        "--calls LIST",
        "--pid N",
        "--color WHEN",
        "--help",
        "--version",
        "shmtrace report",
        "NO_COLOR",
    ] {
        assert!(help.contains(option), "--help does not mention {option}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["report"],
        &["--calls", "nosuchfn", "true"],
        &["--error-exitcode", "0", "true"],
        &["--pid", "abc", "true"],
        &["--color", "sometimes", "true"],
        &["--bogus", "true"],
        &["report", "--lib", "x", "dir"],
        &["--stack", "17", "true"],
        &["report", "--stack", "3", "dir"],
        &["report", "/nonexistent/shmtrace/run"],
        &["--lib", "/nonexistent/libshmtrace.so", "true"],
    ] {
        let out = shmtrace(args);
        assert_eq!(exit_code(&out), 2, "shmtrace {args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("shmtrace: "),
            "shmtrace {args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "shmtrace {args:?}: {stderr}");
    }
}

#[test]
fn a_program_that_cannot_start_exits_127() {
    let scratch = Scratch::new("notfound");
    let out = Command::new(SHMTRACE)
        .arg("--lib")
        .arg(lib())
        .arg("--out")
        .arg(scratch.path("run"))
        .arg("/nonexistent/program")
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 127);
    assert!(text(&out.stderr).contains("cannot run /nonexistent/program"));
    assert!(
        !scratch.path("run").exists(),
        "the empty run directory is removed"
    );
}

#[test]
fn a_run_directory_with_logs_is_refused() {
    let scratch = Scratch::new("reuse");
    let dir = scratch.path("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("1.jsonl"), "").unwrap();
    let out = shmtrace_run(&dir, &[], &[std::path::Path::new("/bin/true")])
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 2);
    assert!(text(&out.stderr).contains("already holds logs"));
}

/// A torn last line (a process killed mid-write) is ignored; other bad lines are skipped and
/// named; the report is still made.
#[test]
fn malformed_logs_give_warnings_not_failures() {
    let scratch = Scratch::new("malformed");
    let log = scratch.path("4242.jsonl");
    let lines = [
        r#"{"event":"start","pid":4242,"ppid":1,"ts":1764168062.100000,"exe":"/bin/app","modules":[]}"#,
        r#"{"event":"call","pid":4242,"tid":4242,"ts":1764168062.123456,"fn":"semget","args":{"key":"IPC_PRIVATE","nsems":1,"semflg":"IPC_CREAT|0600"},"ret":2147483000,"errno":null,"dur_ns":1000,"caller":"0x401000","created":true}"#,
        "this is not json",
        r#"{"event":"call","pid":"x"}"#,
        r#"{"event":"enter","pid":4242,"tid":4243,"ts":1764168062.200000,"fn":"semop","args":{"semid":2147483000,"sops":"0x7ffd0000","nsops":1},"caller":"0x401010"}"#,
        r#"{"event":"call","pid":4242,"tid":4242,"ts":1764168062.3"#,
    ];
    std::fs::write(&log, lines.join("\n")).unwrap();

    let out = Command::new(SHMTRACE)
        .args(["report", "--color", "always"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(exit_code(&out), 0, "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains(":3: skipped: not JSON"), "{report}");
    assert!(report.contains(":4: skipped: no valid \"pid\""), "{report}");
    assert!(
        !report.contains(":6:"),
        "the torn last line is not an error: {report}"
    );
    assert!(report.contains("\x1b["), "--color always colours");
    assert!(
        report.contains("semop(2147483000, 0x7ffd0000, 1)"),
        "{report}"
    );

    let doc: Value = report_json(&log, &[]);
    assert_eq!(doc["verdict"]["leaks"], 1);
    assert_eq!(doc["leaks"][0]["kernel"], "gone");
    assert_eq!(doc["leaks"][0]["site"]["text"], "0x401000");
    assert_eq!(doc["never_returned"][0]["tid"], 4243);
    assert_eq!(doc["processes"][0]["exes"][0], "/bin/app");
    assert_eq!(doc["processes"][0]["ended"], "did not exit normally");
    assert_eq!(items(&doc, "warnings").len(), 2);

    // An empty directory: no logs, a usage error.
    let empty = scratch.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = shmtrace(&["report", empty.to_str().unwrap()]);
    assert_eq!(exit_code(&out), 2);
    assert!(text(&out.stderr).contains("no .jsonl log"));
}

/// --pid limits the processes listed and --calls the call statistics and blocked calls; the
/// verdict stays the whole tree's.
#[test]
fn filters() {
    let scratch = Scratch::new("filters");
    let dir = scratch.path("logs");
    std::fs::create_dir(&dir).unwrap();
    let call = |pid: i32, ts: &str, func: &str, args: &str, ret: &str| {
        format!(
            r#"{{"event":"call","pid":{pid},"tid":{pid},"ts":{ts},"fn":"{func}","args":{args},"ret":{ret},"errno":null,"dur_ns":10,"caller":"0x10"}}"#
        )
    };
    std::fs::write(
        dir.join("10.jsonl"),
        [
            call(10, "1.0", "mmap", r#"{"addr":null,"length":4096}"#, r#""0x7f0000""#),
            call(10, "1.1", "shmget", r#"{"key":"IPC_PRIVATE","size":1,"shmflg":"0600"}"#, "2147483001"),
            r#"{"event":"report","pid":10,"clean":false,"segments":[],"semaphores":[],"attachments":[],"mappings":[{"site":"0x10","count":1,"bytes":4096}]}"#.to_string(),
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("11.jsonl"),
        [
            r#"{"event":"fork","pid":11,"ppid":10,"ts":1.5}"#.to_string(),
            call(11, "2.0", "semget", r#"{"key":"IPC_PRIVATE","nsems":1,"semflg":"0600"}"#, "2147483002"),
            r#"{"event":"enter","pid":11,"tid":11,"ts":2.1,"fn":"semop","args":{"semid":2147483002,"sops":"0x1","nsops":1},"caller":"0x10"}"#.to_string(),
        ]
        .join("\n"),
    )
    .unwrap();

    let all = report_json(&dir, &[]);
    assert_eq!(items(&all, "processes").len(), 2);
    assert_eq!(all["processes"][1]["ppid"], 10);
    assert_eq!(all["processes"][1]["ppid_inferred"], false);
    assert_eq!(all["verdict"]["leaks"], 3);

    let child = report_json(&dir, &["--pid", "11"]);
    assert_eq!(items(&child, "processes").len(), 1);
    assert_eq!(items(&child, "leaks").len(), 1);
    assert_eq!(items(&child, "mappings").len(), 0);
    assert_eq!(items(&child, "never_returned").len(), 1);
    assert_eq!(child["verdict"]["leaks"], 3, "the verdict is the tree's");
    let fns: Vec<&str> = items(&child, "calls")
        .iter()
        .map(|c| c["fn"].as_str().unwrap())
        .collect();
    assert_eq!(fns, ["semget"]);

    let shm = report_json(&dir, &["--calls", "shm,mmap"]);
    let fns: Vec<&str> = items(&shm, "calls")
        .iter()
        .map(|c| c["fn"].as_str().unwrap())
        .collect();
    assert_eq!(fns, ["shmget", "mmap"]);
    assert_eq!(
        items(&shm, "never_returned").len(),
        0,
        "semop is filtered out"
    );

    let sem = report_json(&dir, &["--calls", "semop"]);
    assert_eq!(items(&sem, "calls").len(), 0);
    assert_eq!(items(&sem, "never_returned").len(), 1);
}

//! The verdict in words (also the JSON report's `verdict.text`), and the report's last lines.

use std::fmt::Write as _;

use super::Style;
use super::words::plural;
use crate::merge::{Report, Verdict};

/// `2 errors, 1 warning, 0 info` (findings after suppression).
pub(super) fn findings_text(v: &Verdict) -> String {
    let f = &v.findings;
    format!(
        "{}, {}, {} info",
        plural(f.errors, "error", "errors"),
        plural(f.warnings, "warning", "warnings"),
        f.info
    )
}

pub fn verdict_text(v: &Verdict) -> String {
    let mut text = verdict_leaks_text(v);
    if v.reachable > 0 && !v.count_reachable {
        let _ = write!(
            text,
            "; still reachable, not leaks: {} ({} bytes)",
            v.reachable, v.reachable_bytes
        );
    }
    if v.in_use > 0 {
        let _ = write!(
            text,
            "; in use, not leaks: {}",
            plural(v.in_use, "SysV object", "SysV objects")
        );
    }
    if v.still_running > 0 {
        let _ = write!(
            text,
            "; {} still running",
            plural(v.still_running, "process", "processes")
        );
    }
    if v.deadlocks > 0 {
        text = format!("{}; {text}", plural(v.deadlocks, "deadlock", "deadlocks"));
    }
    if v.retained_mappings == 0 {
        return text;
    }
    format!(
        "{text}; retained by allocators, not leaks: {} ({} bytes)",
        plural(v.retained_mappings, "mapping", "mappings"),
        v.retained_bytes
    )
}

fn verdict_leaks_text(v: &Verdict) -> String {
    if v.leaks() == 0 && !v.findings.any() {
        let clean = if v.deadlocks == 0 { "clean: " } else { "" };
        return format!("{clean}no SysV object, POSIX name, attachment or mapping left behind");
    }
    if v.leaks() == 0 {
        return format!(
            "no SysV object, POSIX name, attachment or mapping left behind; findings: {}",
            findings_text(v)
        );
    }
    let leaks = leaks_text(v);
    if v.findings.any() {
        format!("{leaks}; findings: {}", findings_text(v))
    } else {
        leaks
    }
}

fn leaks_text(v: &Verdict) -> String {
    let mut parts = Vec::new();
    if v.segments > 0 {
        parts.push(plural(v.segments, "segment", "segments"));
    }
    if v.semaphore_sets > 0 {
        parts.push(plural(v.semaphore_sets, "semaphore set", "semaphore sets"));
    }
    if v.message_queues > 0 {
        parts.push(plural(v.message_queues, "message queue", "message queues"));
    }
    if v.names > 0 {
        parts.push(plural(v.names, "POSIX name", "POSIX names"));
    }
    if v.attachments > 0 {
        parts.push(plural(v.attachments, "attachment", "attachments"));
    }
    if v.not_seen > 0 {
        parts.push(format!("{} not seen by the shim", v.not_seen));
    }
    if v.mappings > 0 {
        parts.push(format!(
            "{} ({} bytes)",
            plural(v.mappings, "mapping", "mappings"),
            v.mapping_bytes
        ));
    }
    if v.count_reachable && v.reachable > 0 {
        parts.push(format!(
            "{} still reachable ({} bytes)",
            v.reachable, v.reachable_bytes
        ));
    }
    format!(
        "{}: {}",
        plural(v.leaks(), "leak", "leaks"),
        parts.join(", ")
    )
}

/// The verdict, and what it does and does not cover.
pub(super) fn footer(out: &mut String, report: &Report, style: Style) {
    out.push('\n');
    let v = &report.verdict;
    let verdict = verdict_text(v);
    let verdict = if v.fails() {
        style.bad(&verdict)
    } else {
        style.good(&verdict)
    };
    let _ = writeln!(out, "shmtrace: {verdict}");
    if v.unreported > 0 {
        let _ = writeln!(
            out,
            "shmtrace: {} without an exit report: {} attachments and mappings are unknown",
            plural(v.unreported, "process", "processes"),
            if v.unreported == 1 { "its" } else { "their" }
        );
    }
    if !report.filtered_pids.is_empty() {
        let _ = writeln!(
            out,
            "shmtrace: the verdict covers all {}; --pid limits what is listed",
            plural(report.processes.len() as u64, "process", "processes")
        );
    }
    if let Some(dir) = &report.run_dir {
        let shown = dir.display().to_string();
        let _ = writeln!(
            out,
            "shmtrace: logs in {shown} (`shmtrace report {shown}` shows this report again)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let mut v = Verdict::default();
        assert!(verdict_text(&v).starts_with("clean"));
        v.semaphore_sets = 1;
        v.mappings = 2;
        v.mapping_bytes = 8192;
        assert_eq!(
            verdict_text(&v),
            "3 leaks: 1 semaphore set, 2 mappings (8192 bytes)"
        );
        v.retained_mappings = 1;
        v.retained_bytes = 4096;
        assert_eq!(
            verdict_text(&v),
            "3 leaks: 1 semaphore set, 2 mappings (8192 bytes); retained by allocators, not leaks: \
             1 mapping (4096 bytes)"
        );
        assert_eq!(v.leaks(), 3, "retained mappings are not leaks");
    }

    #[test]
    fn objects_in_use_and_running_processes_are_not_leaks() {
        let mut v = Verdict {
            in_use: 2,
            still_running: 1,
            ..Verdict::default()
        };
        assert_eq!(
            verdict_text(&v),
            "clean: no SysV object, POSIX name, attachment or mapping left behind; in use, not leaks: \
             2 SysV objects; 1 process still running"
        );
        v.not_seen = 1;
        assert_eq!(v.leaks(), 1);
        assert!(verdict_text(&v).starts_with("1 leak: 1 not seen by the shim; in use"));
    }

    #[test]
    fn still_reachable_counts_only_with_leaks_all() {
        let mut v = Verdict {
            reachable: 2,
            reachable_bytes: 8192,
            ..Verdict::default()
        };
        assert_eq!(v.leaks(), 0);
        assert!(!v.fails());
        assert_eq!(
            verdict_text(&v),
            "clean: no SysV object, POSIX name, attachment or mapping left behind; still reachable, not \
             leaks: 2 (8192 bytes)"
        );
        v.count_reachable = true;
        assert_eq!(v.leaks(), 2);
        assert!(v.fails());
        assert_eq!(verdict_text(&v), "2 leaks: 2 still reachable (8192 bytes)");
    }
}

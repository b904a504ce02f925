//! The report as one JSON document (schema in cli/README.md, "JSON report").

use serde_json::{Value, json};

use crate::args::ViewOptions;
use crate::kernel::Presence;
use crate::logs::Micros;
use crate::merge::{Kind, ParentSource, Report};
use crate::symbols::Symbol;

pub const SCHEMA_VERSION: u32 = 1;

fn hex(n: u64) -> String {
    format!("{n:#x}")
}

fn seconds(ts: Micros) -> Value {
    // 6 decimals, as in the logs.
    serde_json::Number::from_f64(ts as f64 / 1e6).map_or(Value::Null, Value::Number)
}

fn site(s: &Symbol) -> Value {
    json!({
        "addr": hex(s.addr),
        "text": s.text(),
        "function": s.function,
        "file": s.file,
        "line": s.line,
        "module": s.module,
        "module_offset": s.module_offset.map(hex),
        "function_offset": s.function_offset.map(hex),
    })
}

/// The frames above a site (`--stack`), innermost first: SITE objects, `[]` when not recorded.
fn stack(frames: &[Symbol]) -> Value {
    Value::Array(frames.iter().map(site).collect())
}

fn presence(p: Presence) -> &'static str {
    match p {
        Presence::Exists => "exists",
        Presence::MarkedForRemoval => "marked for removal",
        Presence::Gone => "gone",
        Presence::Reused => "id reused",
        Presence::Unknown => "unknown",
    }
}

pub fn document(report: &Report, view: &ViewOptions) -> Value {
    let v = &report.verdict;
    let run = report.run.as_ref().map(|r| {
        json!({
            "dir": report.run_dir.as_ref().map(|d| d.display().to_string()),
            "program": r.program,
            "lib": r.lib,
            "shmtrace_pid": r.shmtrace_pid,
            "root_pid": r.root_pid,
            "status": r.status.map(|s| s.describe()),
            "exit_code": r.status.map(|s| s.exit_code()),
        })
    });
    let processes: Vec<Value> = report
        .shown_processes(view)
        .map(|p| {
            json!({
                "pid": p.pid,
                "ppid": p.ppid,
                "ppid_inferred": p.parent_source == ParentSource::Inferred,
                "exes": p.exes,
                "forked": p.forked,
                "ended": p.ending.label(),
                "status": p.status.map(|s| s.describe()),
                "exit_code": p.status.map(|s| s.exit_code()),
                "depth": p.depth,
                "records": p.records,
            })
        })
        .collect();
    let leaks: Vec<Value> = report
        .leaks
        .iter()
        .map(|l| {
            let size_key = match l.kind {
                Kind::Segment => "size",
                Kind::SemaphoreSet => "nsems",
            };
            let mut obj = serde_json::Map::new();
            obj.insert("kind".into(), json!(l.kind.name()));
            obj.insert("id".into(), json!(l.id));
            obj.insert("key".into(), json!(l.key));
            obj.insert(size_key.into(), json!(l.size));
            obj.insert("pid".into(), json!(l.pid));
            obj.insert("exe".into(), json!(l.exe));
            obj.insert("site".into(), site(&l.site));
            obj.insert("stack".into(), stack(&l.stack));
            obj.insert("ts".into(), seconds(l.ts));
            obj.insert("kernel".into(), json!(presence(l.presence)));
            Value::Object(obj)
        })
        .collect();
    let attachments: Vec<Value> = report
        .attachments
        .iter()
        .map(|a| {
            json!({
                "pid": a.pid, "shmid": a.shmid, "addr": hex(a.addr), "size": a.size,
                "readonly": a.readonly, "site": a.site.as_ref().map(site),
                "stack": stack(&a.stack),
            })
        })
        .collect();
    let mappings: Vec<Value> = report
        .mappings
        .iter()
        .map(|m| {
            json!({
                "pid": m.pid, "count": m.count, "bytes": m.bytes,
                "site": m.site.as_ref().map(site), "stack": stack(&m.stack),
            })
        })
        .collect();
    let retained: Vec<Value> = report
        .retained
        .iter()
        .map(|r| json!({"pid": r.pid, "module": r.module, "count": r.count, "bytes": r.bytes}))
        .collect();
    let reachable = reachable_json(report);
    let blocked: Vec<Value> = report
        .blocked
        .iter()
        .map(|b| {
            json!({
                "pid": b.pid, "tid": b.tid, "fn": b.func, "args": b.args,
                "site": b.site.as_ref().map(site), "stack": stack(&b.stack),
                "since": seconds(b.since),
                "still_waiting": b.still_waiting,
            })
        })
        .collect();
    let findings: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "code": f.code, "name": f.name, "severity": f.severity, "fn": f.func,
                "site": f.site.as_ref().map(site), "count": f.count, "pids": f.pids,
                "message": f.message, "first": seconds(f.first_ts),
            })
        })
        .collect();
    let calls: Vec<Value> = report
        .calls
        .iter()
        .map(|c| {
            json!({
                "fn": c.func, "calls": c.calls, "failed": c.failed,
                "total_ns": c.total_ns, "max_ns": c.max_ns,
            })
        })
        .collect();
    json!({
        "shmtrace_report": SCHEMA_VERSION,
        "version": env!("CARGO_PKG_VERSION"),
        "run": run,
        "logs": report.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "verdict": {
            "clean": !v.fails(),
            "leaks": v.leaks(),
            "segments": v.segments,
            "semaphore_sets": v.semaphore_sets,
            "attachments": v.attachments,
            "mappings": v.mappings,
            "mapping_bytes": v.mapping_bytes,
            "retained_mappings": v.retained_mappings,
            "retained_bytes": v.retained_bytes,
            "reachable": v.reachable,
            "reachable_bytes": v.reachable_bytes,
            "leaks_counted": if v.count_reachable { "all" } else { "lost" },
            "scanned_bytes": v.scanned_bytes,
            "scan_ns": v.scan_ns,
            "processes_without_exit_report": v.unreported,
            "findings": {
                "error": v.findings.errors,
                "warning": v.findings.warnings,
                "info": v.findings.info,
                "suppressed": v.findings.suppressed,
            },
            "text": crate::render::verdict_text(v),
        },
        "processes": processes,
        "sysv": {
            "created": report.sysv.created,
            "removed": report.sysv.removed,
            "removed_by_another_process": report.sysv.removed_elsewhere,
        },
        "leaks": leaks,
        "attachments": attachments,
        "mappings": mappings,
        "retained": retained,
        "reachable": reachable,
        "never_returned": blocked,
        "findings": findings,
        "calls": calls,
        "filters": {
            "pids": report.filtered_pids,
            "calls": report.filtered_calls,
        },
        "warnings": report.warnings,
    })
}

/// Attachments and mappings still pointed into at exit (`shmid` only for attachments).
fn reachable_json(report: &Report) -> Vec<Value> {
    report
        .reachable
        .iter()
        .map(|r| {
            json!({
                "pid": r.pid, "shmid": r.shmid, "count": r.count, "bytes": r.bytes,
                "site": r.site.as_ref().map(site), "stack": stack(&r.stack),
            })
        })
        .collect()
}

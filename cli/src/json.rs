//! The report as one JSON document (schema in docs/command.md, "JSON report"): one function per
//! section, and per item of a list section.

use serde_json::{Value, json};

use crate::args::ViewOptions;
use crate::kernel::Presence;
use crate::logs::Micros;
use crate::merge::{
    Attachment, Blocked, CallStat, Hangs, Kind, Mappings, MergedFinding, NameLeak, ParentSource,
    Party, Process, Reachable, Report, Retained, SysvLeak, SysvSummary, Unseen, Verdict,
};
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
    json!({
        "shmtrace_report": SCHEMA_VERSION,
        "version": env!("CARGO_PKG_VERSION"),
        "run": run(report),
        "logs": report.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "verdict": verdict(&report.verdict),
        "processes": report.shown_processes(view).map(process).collect::<Value>(),
        "sysv": sysv(&report.sysv),
        "leaks": list(&report.leaks, leak),
        "names": list(&report.names, name_leak),
        "in_use": list(&report.in_use, in_use),
        "not_seen": list(&report.not_seen, unseen),
        "attachments": list(&report.attachments, attachment),
        "mappings": list(&report.mappings, mappings),
        "retained": list(&report.retained, retained),
        "reachable": list(&report.reachable, reachable),
        "never_returned": list(&report.blocked, blocked),
        "waits": waits(&report.hangs),
        "findings": list(&report.findings, finding),
        "calls": list(&report.calls, call_stat),
        "filters": {
            "pids": report.filtered_pids,
            "calls": report.filtered_calls,
        },
        "warnings": report.warnings,
    })
}

fn list<T>(items: &[T], item: fn(&T) -> Value) -> Value {
    items.iter().map(item).collect()
}

/// What the command knows of the run (`null` for logs without a run directory).
fn run(report: &Report) -> Value {
    let Some(r) = &report.run else {
        return Value::Null;
    };
    json!({
        "dir": report.run_dir.as_ref().map(|d| d.display().to_string()),
        "program": r.program,
        "lib": r.lib,
        "shmtrace_pid": r.shmtrace_pid,
        "root_pid": r.root_pid,
        "status": r.status.map(|s| s.describe()),
        "exit_code": r.status.map(|s| s.exit_code()),
    })
}

fn verdict(v: &Verdict) -> Value {
    json!({
        "clean": !v.fails(),
        "leaks": v.leaks(),
        "segments": v.segments,
        "semaphore_sets": v.semaphore_sets,
        "message_queues": v.message_queues,
        "names": v.names,
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
        "still_running": v.still_running,
        "in_use": v.in_use,
        "not_seen": v.not_seen,
        "deadlocks": v.deadlocks,
        "findings": {
            "error": v.findings.errors,
            "warning": v.findings.warnings,
            "info": v.findings.info,
            "suppressed": v.findings.suppressed,
        },
        "text": crate::render::verdict_text(v),
    })
}

fn process(p: &Process) -> Value {
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
        "calls": p.calls,
    })
}

fn sysv(s: &SysvSummary) -> Value {
    json!({
        "created": s.created,
        "removed": s.removed,
        "removed_by_another_process": s.removed_elsewhere,
    })
}

fn leak(l: &SysvLeak) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("kind".into(), json!(l.kind.name()));
    obj.insert("id".into(), json!(l.id));
    obj.insert("key".into(), json!(l.key));
    match l.kind {
        Kind::Segment => obj.insert("size".into(), json!(l.size)),
        Kind::SemaphoreSet => obj.insert("nsems".into(), json!(l.size)),
        // What the kernel says the queue holds now; null when it no longer has it.
        Kind::MessageQueue => {
            obj.insert("messages".into(), json!(l.queued.map(|q| q.0)));
            obj.insert("bytes".into(), json!(l.queued.map(|q| q.1)))
        }
    };
    obj.insert("pid".into(), json!(l.pid));
    obj.insert("exe".into(), json!(l.exe));
    obj.insert("site".into(), site(&l.site));
    obj.insert("stack".into(), stack(&l.stack));
    obj.insert("ts".into(), seconds(l.ts));
    obj.insert("kernel".into(), json!(presence(l.presence)));
    Value::Object(obj)
}

fn name_leak(l: &NameLeak) -> Value {
    json!({
        "kind": l.kind.key(),
        "name": l.name,
        "path": l.path,
        "pid": l.pid,
        "exe": l.exe,
        "site": site(&l.site),
        "stack": stack(&l.stack),
        "ts": seconds(l.ts),
        "kernel": presence(l.presence),
    })
}

/// An object left behind that running processes of the tree still use: a leak's fields and
/// who uses it.
fn in_use(l: &SysvLeak) -> Value {
    let mut obj = leak(l);
    let users: Vec<Value> = l
        .users
        .iter()
        .map(|u| json!({"pid": u.pid, "exe": u.exe}))
        .collect();
    obj["in_use_by"] = json!(users);
    obj
}

/// An object or attachment the kernel holds that no log recorded.
fn unseen(u: &Unseen) -> Value {
    json!({
        "kind": u.what.name(), "id": u.id,
        "key": u.key.map(crate::kernel::key_text),
        "size": u.size, "pid": u.pid,
    })
}

fn attachment(a: &Attachment) -> Value {
    json!({
        "pid": a.pid, "shmid": a.shmid, "addr": hex(a.addr), "size": a.size,
        "readonly": a.readonly, "site": a.site.as_ref().map(site),
        "stack": stack(&a.stack),
    })
}

fn mappings(m: &Mappings) -> Value {
    json!({
        "pid": m.pid, "count": m.count, "bytes": m.bytes, "object": m.object,
        "site": m.site.as_ref().map(site), "stack": stack(&m.stack),
    })
}

fn retained(r: &Retained) -> Value {
    json!({"pid": r.pid, "module": r.module, "count": r.count, "bytes": r.bytes})
}

/// Attachments and mappings still pointed into at exit (`shmid` only for attachments).
fn reachable(r: &Reachable) -> Value {
    json!({
        "pid": r.pid, "shmid": r.shmid, "object": r.object, "count": r.count,
        "bytes": r.bytes,
        "site": r.site.as_ref().map(site), "stack": stack(&r.stack),
    })
}

fn blocked(b: &Blocked) -> Value {
    json!({
        "pid": b.pid, "tid": b.tid, "fn": b.func, "args": b.args,
        "site": b.site.as_ref().map(site), "stack": stack(&b.stack),
        "since": seconds(b.since),
        "still_waiting": b.still_waiting,
    })
}

fn finding(f: &MergedFinding) -> Value {
    json!({
        "code": f.code, "name": f.name, "severity": f.severity, "fn": f.func,
        "site": f.site.as_ref().map(site), "count": f.count, "pids": f.pids,
        "message": f.message, "first": seconds(f.first_ts),
    })
}

fn call_stat(c: &CallStat) -> Value {
    json!({
        "fn": c.func, "calls": c.calls, "failed": c.failed,
        "total_ns": c.total_ns, "max_ns": c.max_ns,
    })
}

fn party_json(p: &Party) -> Value {
    json!({"pid": p.pid, "program": p.program})
}

fn site_json(s: Option<&Symbol>) -> Value {
    s.map_or(Value::Null, site)
}

/// Who waits for whom: one edge per semaphore a blocked call waits for, with its holders; and
/// the deadlocks, each naming its edges.
fn waits(hangs: &Hangs) -> Value {
    let edges: Vec<Value> = hangs
        .waits
        .iter()
        .map(|w| {
            let holders: Vec<Value> = w
                .holders
                .iter()
                .map(|h| {
                    json!({
                        "holder": party_json(&h.party), "net": h.net,
                        "sem_undo_adjustment": h.adjustment, "site": site_json(h.site.as_ref()),
                        "state": h.state.label(),
                    })
                })
                .collect();
            json!({
                "waiter": party_json(&w.waiter), "tid": w.tid,
                "site": site_json(w.site.as_ref()), "semid": w.semid, "sem": w.num,
                "op": w.num.map(|_| w.op), "value": w.value, "holders": holders,
                "reset": w.reset.as_ref().map(|r| json!({
                    "by": party_json(&r.by), "value": r.value, "site": site_json(r.site.as_ref()),
                })),
            })
        })
        .collect();
    let (code, name, severity) = crate::merge::DEADLOCK;
    let deadlocks: Vec<Value> = hangs
        .deadlocks
        .iter()
        .map(|d| {
            json!({
                "code": code, "name": name, "severity": severity,
                "pids": d.steps.iter().map(|s| hangs.waits[s.wait].waiter.pid).collect::<Vec<_>>(),
                "edges": d.steps.iter().map(|s| s.wait).collect::<Vec<_>>(),
                "text": crate::render::deadlock_text(hangs, d),
            })
        })
        .collect();
    let woken: Vec<Value> = hangs
        .woken
        .iter()
        .map(|w| {
            json!({
                "waiter": party_json(&w.waiter), "tid": w.tid, "semid": w.semid,
                "site": site_json(w.site.as_ref()),
            })
        })
        .collect();
    json!({"edges": edges, "deadlocks": deadlocks, "woken_by_removal": woken})
}

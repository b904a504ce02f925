//! `--trace-json FILE`: the run in the Trace Event Format that `ui.perfetto.dev` and
//! `chrome://tracing` open. Each process and thread is a track (named by metadata events),
//! each call a complete event (`X`) carrying its arguments, result and call site, what each
//! process holds a counter (`C`), and fork, exec, exit, leaks and findings instant events
//! (`i`). Times are microseconds from the run's first record (`otherData.epoch_us` is that
//! instant since the epoch). Written one event per line, as the run is large.

use std::collections::BTreeSet;
use std::io::{self, Write};

use serde_json::{Value, json};

use super::labels::{category, ending_text, program_name, stack_texts};
use crate::logs::Micros;
use crate::merge::{Ending, Report};
use crate::symbols::{Symbol, Symbolizer};
use crate::timeline::marks::{finding_marks, leak_marks};
use crate::timeline::{MarkKind, Timeline};

pub fn write(
    report: &Report,
    t: &Timeline,
    symbolizer: &mut Symbolizer,
    out: &mut dyn Write,
) -> io::Result<()> {
    let origin = t.first_ts;
    let us = |ts: Micros| ts.saturating_sub(origin).max(0);
    let mut first = true;
    let mut emit = |out: &mut dyn Write, event: &str| -> io::Result<()> {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        out.write_all(event.as_bytes())
    };
    write!(
        out,
        "{{\"displayTimeUnit\":\"ms\",\"otherData\":{},\"traceEvents\":[",
        json!({"producer": "shmtrace", "epoch_us": origin})
    )?;

    let mut threads: BTreeSet<(i32, i32)> = t.events.iter().map(|e| (e.pid, e.tid)).collect();
    for (rank, p) in report.processes.iter().enumerate() {
        threads.insert((p.pid, p.pid));
        let name = format!("{} [{}]", program_name(p), p.pid);
        for (kind, args) in [
            ("process_name", json!({"name": name})),
            ("process_sort_index", json!({"sort_index": rank})),
        ] {
            let e = json!({"name": kind, "ph": "M", "pid": p.pid, "tid": p.pid, "args": args});
            emit(out, &e.to_string())?;
        }
        let end = t.end_of(p.pid);
        let label = ending_text(p);
        if p.ending != Ending::StillRunning {
            let e = json!({"name": format!("end: {label}"), "cat": "process", "ph": "i",
                "s": "p", "ts": us(end), "pid": p.pid, "tid": p.pid});
            emit(out, &e.to_string())?;
        }
    }
    for (pid, tid) in &threads {
        let name = if pid == tid {
            "main".to_string()
        } else {
            format!("thread {tid}")
        };
        let e = json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
            "args": {"name": name}});
        emit(out, &e.to_string())?;
    }

    for m in &t.marks {
        let name = match &m.kind {
            MarkKind::Start { exe } => format!("start {}", exe.as_deref().unwrap_or("?")),
            MarkKind::Exec { exe } => format!("exec {}", exe.as_deref().unwrap_or("?")),
            MarkKind::Fork { parent } => format!("fork from {parent}"),
        };
        let e = json!({"name": name, "cat": "process", "ph": "i", "s": "p", "ts": us(m.ts),
            "pid": m.pid, "tid": m.pid});
        emit(out, &e.to_string())?;
    }

    let mut line = String::new();
    for e in &t.events {
        use std::fmt::Write as _;
        line.clear();
        // The arguments are already JSON: the result and site are added inside the object.
        let args = e.args.strip_suffix('}').unwrap_or("{");
        let sep = if args.len() > 1 { "," } else { "" };
        let (dur, ret) = match &e.ret {
            Some(ret) => (e.dur_ns as f64 / 1000.0, ret.as_ref()),
            // Never returned: it lasts until the process's last record.
            None => ((t.end_of(e.pid) - e.ts).max(0) as f64, "\"never returned\""),
        };
        let _ = write!(
            line,
            "{{\"name\":{},\"cat\":\"{}\",\"ph\":\"X\",\"ts\":{},\"dur\":{dur:.3},\"pid\":{},\
             \"tid\":{},\"args\":{args}{sep}\"ret\":{ret},\"errno\":{}",
            Value::from(e.func.as_ref()),
            category(&e.func),
            us(e.ts),
            e.pid,
            e.tid,
            e.errno
                .as_deref()
                .map_or_else(|| "null".to_string(), |n| Value::from(n).to_string()),
        );
        if let Some(caller) = e.caller {
            let _ = write!(line, ",\"caller\":\"{caller:#x}\"");
        }
        if !e.stack.is_empty() {
            let frames: Vec<String> = e.stack.iter().map(|a| format!("\"{a:#x}\"")).collect();
            let _ = write!(line, ",\"stack\":[{}]", frames.join(","));
        }
        line.push_str("}}");
        emit(out, &line)?;
    }

    // Each counter when it changes (and at its first sample).
    for (pid, samples) in &t.samples {
        let mut before: Option<&crate::timeline::Sample> = None;
        for s in samples {
            let bytes = (s.mapped, s.attached);
            if before.is_none_or(|b| (b.mapped, b.attached) != bytes) {
                let e = json!({"name": "held bytes", "ph": "C", "ts": us(s.ts), "pid": pid,
                    "args": {"mapped": s.mapped, "attached": s.attached}});
                emit(out, &e.to_string())?;
            }
            if before.is_none_or(|b| (b.sysv, b.shared_files) != (s.sysv, s.shared_files)) {
                let e = json!({"name": "live objects", "ph": "C", "ts": us(s.ts), "pid": pid,
                    "args": {"SysV": s.sysv, "shared file mappings": s.shared_files}});
                emit(out, &e.to_string())?;
            }
            before = Some(s);
        }
    }

    for l in leak_marks(report, t) {
        let e = json!({"name": format!("leak: {}", l.what), "cat": "leak", "ph": "i", "s": "p",
            "ts": us(l.ts), "pid": l.pid, "tid": l.pid,
            "args": {"site": l.site.as_ref().map(Symbol::text), "stack": stack_texts(&l.stack)}});
        emit(out, &e.to_string())?;
    }
    for f in finding_marks(report, t, symbolizer) {
        let finding = &report.findings[f.finding];
        let tid = f.event.map_or(f.pid, |i| t.events[i].tid);
        let e = json!({"name": format!("{} {}", finding.code, finding.name), "cat": "finding",
            "ph": "i", "s": "t", "ts": us(f.ts), "pid": f.pid, "tid": tid,
            "args": {"severity": finding.severity, "function": finding.func,
                "site": finding.site.as_ref().map(Symbol::text), "message": finding.message}});
        emit(out, &e.to_string())?;
    }
    out.write_all(b"\n]}\n")?;
    out.flush()
}

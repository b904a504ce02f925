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
use crate::timeline::{MarkKind, Sample, Timeline};

/// Writes the events one per line, the first after the opening bracket.
struct Events<'a> {
    out: &'a mut dyn Write,
    origin: Micros,
    first: bool,
}

impl Events<'_> {
    fn emit(&mut self, event: &str) -> io::Result<()> {
        self.out
            .write_all(if self.first { b"\n" } else { b",\n" })?;
        self.first = false;
        self.out.write_all(event.as_bytes())
    }

    fn value(&mut self, event: Value) -> io::Result<()> {
        self.emit(&event.to_string())
    }

    /// Microseconds from the run's first record.
    fn us(&self, ts: Micros) -> Micros {
        ts.saturating_sub(self.origin).max(0)
    }
}

pub fn write(
    report: &Report,
    t: &Timeline,
    symbolizer: &mut Symbolizer,
    out: &mut dyn Write,
) -> io::Result<()> {
    write!(
        out,
        "{{\"displayTimeUnit\":\"ms\",\"otherData\":{},\"traceEvents\":[",
        json!({"producer": "shmtrace", "epoch_us": t.first_ts})
    )?;
    let mut events = Events {
        out,
        origin: t.first_ts,
        first: true,
    };
    tracks(&mut events, report, t)?;
    process_marks(&mut events, t)?;
    calls(&mut events, t)?;
    counters(&mut events, t)?;
    leaks_and_findings(&mut events, report, t, symbolizer)?;
    events.out.write_all(b"\n]}\n")?;
    events.out.flush()
}

/// A named track per process (in tree order, with its end) and per thread.
fn tracks(events: &mut Events, report: &Report, t: &Timeline) -> io::Result<()> {
    let mut threads: BTreeSet<(i32, i32)> = t.events.iter().map(|e| (e.pid, e.tid)).collect();
    for (rank, p) in report.processes.iter().enumerate() {
        threads.insert((p.pid, p.pid));
        let name = format!("{} [{}]", program_name(p), p.pid);
        for (kind, args) in [
            ("process_name", json!({"name": name})),
            ("process_sort_index", json!({"sort_index": rank})),
        ] {
            events.value(json!({"name": kind, "ph": "M", "pid": p.pid, "tid": p.pid,
                "args": args}))?;
        }
        if p.ending != Ending::StillRunning {
            let ts = events.us(t.end_of(p.pid));
            events.value(
                json!({"name": format!("end: {}", ending_text(p)), "cat": "process",
                "ph": "i", "s": "p", "ts": ts, "pid": p.pid, "tid": p.pid}),
            )?;
        }
    }
    for (pid, tid) in threads {
        let name = if pid == tid {
            "main".to_string()
        } else {
            format!("thread {tid}")
        };
        events.value(
            json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
            "args": {"name": name}}),
        )?;
    }
    Ok(())
}

fn process_marks(events: &mut Events, t: &Timeline) -> io::Result<()> {
    for m in &t.marks {
        let name = match &m.kind {
            MarkKind::Start { exe } => format!("start {}", exe.as_deref().unwrap_or("?")),
            MarkKind::Exec { exe } => format!("exec {}", exe.as_deref().unwrap_or("?")),
            MarkKind::Fork { parent } => format!("fork from {parent}"),
        };
        let ts = events.us(m.ts);
        events.value(
            json!({"name": name, "cat": "process", "ph": "i", "s": "p", "ts": ts,
            "pid": m.pid, "tid": m.pid}),
        )?;
    }
    Ok(())
}

/// Each call a complete event, written by hand: its arguments are already JSON text, and a
/// million calls make this the bulk of the file.
fn calls(events: &mut Events, t: &Timeline) -> io::Result<()> {
    use std::fmt::Write as _;
    let mut line = String::new();
    for e in &t.events {
        line.clear();
        // The result and site go inside the arguments' object.
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
            events.us(e.ts),
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
        events.emit(&line)?;
    }
    Ok(())
}

/// Each counter of each process when it changes (and at its first sample).
fn counters(events: &mut Events, t: &Timeline) -> io::Result<()> {
    for (pid, samples) in &t.samples {
        let mut before: Option<&Sample> = None;
        for s in samples {
            let ts = events.us(s.ts);
            if before.is_none_or(|b| (b.mapped, b.attached) != (s.mapped, s.attached)) {
                events.value(
                    json!({"name": "held bytes", "ph": "C", "ts": ts, "pid": pid,
                    "args": {"mapped": s.mapped, "attached": s.attached}}),
                )?;
            }
            if before.is_none_or(|b| (b.sysv, b.shared_files) != (s.sysv, s.shared_files)) {
                events.value(
                    json!({"name": "live objects", "ph": "C", "ts": ts, "pid": pid,
                    "args": {"SysV": s.sysv, "shared file mappings": s.shared_files}}),
                )?;
            }
            before = Some(s);
        }
    }
    Ok(())
}

fn leaks_and_findings(
    events: &mut Events,
    report: &Report,
    t: &Timeline,
    symbolizer: &mut Symbolizer,
) -> io::Result<()> {
    for l in leak_marks(report, t) {
        let ts = events.us(l.ts);
        events.value(
            json!({"name": format!("leak: {}", l.what), "cat": "leak", "ph": "i",
            "s": "p", "ts": ts, "pid": l.pid, "tid": l.pid,
            "args": {"site": l.site.as_ref().map(Symbol::text), "stack": stack_texts(&l.stack)}}),
        )?;
    }
    for f in finding_marks(report, t, symbolizer) {
        let finding = &report.findings[f.finding];
        let tid = f.event.map_or(f.pid, |i| t.events[i].tid);
        let ts = events.us(f.ts);
        events.value(json!({"name": format!("{} {}", finding.code, finding.name),
            "cat": "finding", "ph": "i", "s": "t", "ts": ts, "pid": f.pid, "tid": tid,
            "args": {"severity": finding.severity, "function": finding.func,
                "site": finding.site.as_ref().map(Symbol::text), "message": finding.message}}))?;
    }
    Ok(())
}

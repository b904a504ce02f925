//! The report's leaks and findings placed on the timeline: each at its process and time, with
//! the call it came from when the log has it.

use super::{Effect, Event, Timeline};
use crate::logs::Micros;
use crate::merge::{Kind, Report};
use crate::symbols::{Symbol, Symbolizer};

/// Something left at exit, shown at the end of its process's lane.
#[derive(Clone, Debug)]
pub struct LeakMark {
    pub pid: i32,
    pub ts: Micros,
    /// `segment 65538 (65536 bytes)`, `attachment of segment 3 at 0x7f..`, `2 mappings, ...`.
    pub what: String,
    pub site: Option<Symbol>,
    pub stack: Vec<Symbol>,
    /// The call that made it (index in `Timeline::events`).
    pub event: Option<usize>,
}

/// One occurrence of a finding the report keeps (after suppression).
#[derive(Clone, Debug)]
pub struct FindingMark {
    pub pid: i32,
    pub ts: Micros,
    /// Index in `Report::findings`.
    pub finding: usize,
    /// The call it was found in.
    pub event: Option<usize>,
}

/// The latest call of `pid` at or before `ts` that `accept` takes.
fn call_before(
    t: &Timeline,
    pid: i32,
    ts: Micros,
    accept: impl Fn(&Event) -> bool,
) -> Option<usize> {
    let end = t.events.partition_point(|e| e.ts <= ts);
    t.events[..end]
        .iter()
        .rposition(|e| e.pid == pid && accept(e))
}

pub fn leak_marks(report: &Report, t: &Timeline) -> Vec<LeakMark> {
    let end = |pid: i32| t.end_of(pid);
    let mut marks = Vec::new();
    for l in &report.leaks {
        let what = match l.kind {
            Kind::Segment => format!("segment {} ({} bytes, key {})", l.id, l.size, l.key),
            Kind::SemaphoreSet => format!(
                "semaphore set {} ({} semaphore{}, key {})",
                l.id,
                l.size,
                if l.size == 1 { "" } else { "s" },
                l.key
            ),
            Kind::MessageQueue => {
                let held = l.queued.map_or(String::new(), |(messages, bytes)| {
                    format!("{messages} messages, {bytes} bytes, ")
                });
                format!("message queue {} ({held}key {})", l.id, l.key)
            }
        };
        marks.push(LeakMark {
            pid: l.pid,
            ts: end(l.pid),
            what,
            site: Some(l.site.clone()),
            stack: l.stack.clone(),
            event: call_before(t, l.pid, l.ts, |e| {
                matches!(e.effect, Effect::Create { kind, id, .. } if kind == l.kind && id == l.id)
            }),
        });
    }
    for a in &report.attachments {
        marks.push(LeakMark {
            pid: a.pid,
            ts: end(a.pid),
            what: format!(
                "attachment of segment {} at {:#x} ({} bytes{})",
                a.shmid,
                a.addr,
                a.size,
                if a.readonly { ", read-only" } else { "" }
            ),
            site: a.site.clone(),
            stack: a.stack.clone(),
            event: call_before(
                t,
                a.pid,
                Micros::MAX,
                |e| matches!(e.effect, Effect::Attach { addr, .. } if addr == a.addr),
            ),
        });
    }
    for m in &report.mappings {
        let site = m.site.as_ref().map(|s| s.addr);
        marks.push(LeakMark {
            pid: m.pid,
            ts: end(m.pid),
            what: format!(
                "{} mapping{}, {} bytes",
                m.count,
                if m.count == 1 { "" } else { "s" },
                m.bytes
            ),
            site: m.site.clone(),
            stack: m.stack.clone(),
            event: call_before(t, m.pid, Micros::MAX, |e| {
                e.caller == site && matches!(e.effect, Effect::Map { .. } | Effect::Remap { .. })
            }),
        });
    }
    marks
}

/// Each finding record the report kept, matched like the report groups them: by code and
/// symbolized site (addresses differ between processes).
pub fn finding_marks(
    report: &Report,
    t: &Timeline,
    symbolizer: &mut Symbolizer,
) -> Vec<FindingMark> {
    t.findings
        .iter()
        .filter_map(|f| {
            let modules = t.modules_at(f.pid, f.ts);
            let site = f.site.map(|a| symbolizer.symbolize(a, modules).text());
            let finding = report.findings.iter().position(|m| {
                m.code == f.code
                    && m.site.as_ref().map(Symbol::text) == site
                    && m.pids.contains(&f.pid)
            })?;
            Some(FindingMark {
                pid: f.pid,
                ts: f.ts,
                finding,
                event: call_before(t, f.pid, f.ts, |e| *e.func == f.func),
            })
        })
        .collect()
}

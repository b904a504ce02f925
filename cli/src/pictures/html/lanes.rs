//! The timeline as SVG, drawn here rather than by a charting library: one lane per process in
//! tree order (children indented under their parent, a fork drawn as a link from the parent's
//! lane), each with its bytes mapped and attached, its live SysV objects and shared file
//! mappings, its calls, fork, exec and end, and its leaks after its end.

use std::collections::HashMap;
use std::fmt::Write;

use super::downsample::{Scale, Shown, peaks};
use super::{esc, human_bytes};
use crate::logs::Micros;
use crate::merge::{Ending, Process, Report};
use crate::pictures::labels::{category, ending_text, program_name};
use crate::render::base_name;
use crate::timeline::marks::{FindingMark, LeakMark};
use crate::timeline::{Effect, MarkKind, Sample, Timeline};

pub const WIDTH: usize = 1300;
const LABEL_INDENT: usize = 14;
const PLOT_X0: usize = 250;
const PLOT_X1: usize = 1150;
/// One pixel column per plot pixel.
pub const COLUMNS: usize = PLOT_X1 - PLOT_X0;
const AXIS_H: usize = 28;
const LANE_H: usize = 104;
// Inside a lane, from its top.
const LIFE_Y: usize = 22;
const BYTES_TOP: usize = 28;
const BYTES_H: usize = 36;
const OBJECTS_TOP: usize = 68;
const OBJECTS_H: usize = 16;
const EVENTS_Y: usize = 88;
const LEAK_STEP: usize = 13;

pub struct Drawing<'a> {
    pub report: &'a Report,
    pub t: &'a Timeline,
    pub scale: Scale,
    pub shown: &'a HashMap<i32, Vec<Shown>>,
    /// Timeline event index -> index in the page's event list.
    pub event_ids: &'a HashMap<usize, usize>,
    pub leaks: &'a [LeakMark],
    pub findings: &'a [FindingMark],
}

impl Drawing<'_> {
    fn x(&self, ts: Micros) -> f64 {
        PLOT_X0 as f64 + self.scale.fraction(ts) * COLUMNS as f64
    }

    pub fn svg(&self) -> String {
        let lanes = &self.report.processes;
        let height = AXIS_H + LANE_H * lanes.len().max(1);
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} \
             {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\" \
             aria-label=\"timeline, one lane per process\">"
        );
        self.axis(&mut s, height);
        let tops: HashMap<i32, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.pid, AXIS_H + i * LANE_H))
            .collect();
        for p in lanes {
            self.lane(&mut s, p, tops[&p.pid]);
        }
        // Over the lanes' bands.
        self.fork_links(&mut s, &tops);
        s.push_str("</svg>");
        s
    }

    /// Time ticks from the first record: 1, 2 or 5 times a power of ten, about eight.
    fn axis(&self, s: &mut String, height: usize) {
        let span = (self.scale.last - self.scale.first).max(1);
        let mut step: i64 = 1;
        while span / step > 8 {
            step = match step.to_string().as_bytes()[0] {
                b'1' => step * 2,
                b'2' => step / 2 * 5,
                _ => step * 2,
            };
        }
        s.push_str("<g class=\"axis\">");
        let mut at = 0;
        while at <= span {
            let x = self.x(self.scale.first + at);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{height}\"/>\
                 <text x=\"{x:.1}\" y=\"14\">{}</text>",
                AXIS_H - 6,
                offset_text(at)
            );
            at += step;
        }
        s.push_str("</g>");
    }

    fn fork_links(&self, s: &mut String, tops: &HashMap<i32, usize>) {
        for m in &self.t.marks {
            let MarkKind::Fork { parent } = m.kind else {
                continue;
            };
            let (Some(from), Some(to)) = (tops.get(&parent), tops.get(&m.pid)) else {
                continue;
            };
            let x = self.x(m.ts);
            let _ = write!(
                s,
                "<path class=\"fork-link\" d=\"M{x:.1},{} V{}\"/>",
                from + LIFE_Y,
                to + LIFE_Y
            );
        }
    }

    fn lane(&self, s: &mut String, p: &Process, top: usize) {
        let pid = p.pid;
        let first = self.t.start_of(pid);
        let end = self.t.end_of(pid);
        let samples: &[Sample] = self.t.samples.get(&pid).map_or(&[], Vec::as_slice);
        let columns = peaks(samples, self.scale, end);
        let max = |f: fn(&Sample) -> u64| columns.iter().flatten().map(f).max().unwrap_or(0);
        let (mapped, attached) = (max(|s| s.mapped), max(|s| s.attached));
        let (sysv, shared) = (max(|s| s.sysv.into()), max(|s| s.shared_files.into()));
        let _ = write!(
            s,
            "<g class=\"lane\" id=\"lane-{pid}\" data-pid=\"{pid}\" data-depth=\"{}\" \
             transform=\"translate(0,{top})\"><rect class=\"band\" x=\"0\" y=\"2\" \
             width=\"{WIDTH}\" height=\"{}\"/>\
             <text class=\"lane-label\" x=\"{}\" y=\"18\"><tspan class=\"pid\">{pid}</tspan> \
             {}</text><text class=\"lane-sub\" x=\"{}\" y=\"34\">{}</text>\
             <text class=\"lane-sub\" x=\"{}\" y=\"50\">peak {} mapped, {} attached</text>\
             <text class=\"lane-sub\" x=\"{}\" y=\"66\">peak {sysv} SysV, {shared} shared \
             file</text>",
            p.depth,
            LANE_H - 4,
            4 + p.depth * LABEL_INDENT,
            esc(program_name(p)),
            4 + p.depth * LABEL_INDENT,
            esc(&ending_text(p)),
            4 + p.depth * LABEL_INDENT,
            human_bytes(mapped),
            human_bytes(attached),
            4 + p.depth * LABEL_INDENT,
        );
        let _ = write!(
            s,
            "<line class=\"life\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{LIFE_Y}\" y2=\"{LIFE_Y}\"/>",
            self.x(first),
            self.x(end)
        );
        let bytes = |class, value| Counter {
            class,
            value,
            top: BYTES_TOP,
            height: BYTES_H,
            scale: mapped.max(attached),
            filled: true,
        };
        let counts = |class, value| Counter {
            class,
            value,
            top: OBJECTS_TOP,
            height: OBJECTS_H,
            scale: sysv.max(shared),
            filled: false,
        };
        for counter in [
            bytes("mapped", |s| s.mapped),
            bytes("attached", |s| s.attached),
            counts("sysv", |s| s.sysv.into()),
            counts("shared", |s| s.shared_files.into()),
        ] {
            series(s, &columns, &counter);
        }
        self.calls(s, pid);
        self.process_marks(s, p, end);
        self.finding_marks(s, pid);
        self.leak_marks(s, pid, end);
        s.push_str("</g>");
    }

    fn calls(&self, s: &mut String, pid: i32) {
        for shown in self.shown.get(&pid).into_iter().flatten() {
            let e = &self.t.events[shown.event];
            let Some(id) = self.event_ids.get(&shown.event) else {
                continue;
            };
            let x = self.x(e.ts);
            let mut class = format!("ev {}", category(&e.func));
            if e.errno.is_some() {
                class.push_str(" failed");
            }
            if !e.returned() {
                class.push_str(" blocked");
            }
            let func = esc(&e.func);
            match e.effect {
                Effect::Create { .. } => {
                    let _ = write!(
                        s,
                        "<path class=\"{class} create\" data-ev=\"{id}\" data-fn=\"{func}\" \
                         d=\"M{x:.1},{} l-5,9 h10 z\"/>",
                        EVENTS_Y - 4
                    );
                }
                Effect::Remove { .. } => {
                    let _ = write!(
                        s,
                        "<path class=\"{class} remove\" data-ev=\"{id}\" data-fn=\"{func}\" \
                         d=\"M{x:.1},{} l-5,-9 h10 z\"/>",
                        EVENTS_Y + 5
                    );
                }
                _ => {
                    let _ = write!(
                        s,
                        "<rect class=\"{class}\" data-ev=\"{id}\" data-fn=\"{func}\" \
                         data-n=\"{}\" x=\"{:.1}\" y=\"{}\" width=\"2\" height=\"10\"/>",
                        shown.stands_for,
                        x - 1.0,
                        EVENTS_Y - 5
                    );
                }
            }
        }
    }

    fn process_marks(&self, s: &mut String, p: &Process, end: Micros) {
        for m in self.t.marks.iter().filter(|m| m.pid == p.pid) {
            let x = self.x(m.ts);
            let (class, title) = match &m.kind {
                MarkKind::Start { exe } => {
                    ("start", format!("start {}", exe.as_deref().unwrap_or("?")))
                }
                MarkKind::Exec { exe } => {
                    ("exec", format!("exec {}", exe.as_deref().unwrap_or("?")))
                }
                MarkKind::Fork { parent } => ("fork", format!("forked from {parent}")),
            };
            let _ = write!(
                s,
                "<g class=\"mark {class}\"><circle cx=\"{x:.1}\" cy=\"{LIFE_Y}\" r=\"4\"/>\
                 <title>{}</title></g>",
                esc(&title)
            );
            if let MarkKind::Exec { exe } = &m.kind {
                let _ = write!(
                    s,
                    "<text class=\"mark-label\" x=\"{:.1}\" y=\"{}\">exec {}</text>",
                    x + 6.0,
                    LIFE_Y - 4,
                    esc(base_name(exe.as_deref().unwrap_or("?")))
                );
            }
        }
        if p.ending == Ending::StillRunning {
            return;
        }
        let x = self.x(end);
        let class = if p.ending == Ending::Exited {
            "exit"
        } else {
            "vanished"
        };
        let title = ending_text(p);
        let _ = write!(
            s,
            "<g class=\"mark {class}\"><rect x=\"{:.1}\" y=\"{}\" width=\"8\" height=\"8\"/>\
             <title>{}</title></g>",
            x - 4.0,
            LIFE_Y - 4,
            esc(&title)
        );
    }

    fn finding_marks(&self, s: &mut String, pid: i32) {
        for (i, f) in self
            .findings
            .iter()
            .enumerate()
            .filter(|(_, f)| f.pid == pid)
        {
            let finding = &self.report.findings[f.finding];
            let ev = f
                .event
                .and_then(|e| self.event_ids.get(&e))
                .map_or(String::new(), |id| format!(" data-ev=\"{id}\""));
            let _ = write!(
                s,
                "<g class=\"finding sev-{}\" data-finding=\"{}\" data-occurrence=\"{i}\"{ev}>\
                 <path d=\"M{:.1},{} l-6,-10 h12 z\"/><title>{} {}</title></g>",
                esc(&finding.severity),
                f.finding,
                self.x(f.ts),
                LIFE_Y - 2,
                esc(&finding.code),
                esc(&finding.name)
            );
        }
    }

    fn leak_marks(&self, s: &mut String, pid: i32, end: Micros) {
        let x0 = self.x(end) + 12.0;
        for (k, (i, l)) in self
            .leaks
            .iter()
            .enumerate()
            .filter(|(_, l)| l.pid == pid)
            .enumerate()
        {
            let per_row = ((WIDTH as f64 - x0 - 6.0) / LEAK_STEP as f64).max(1.0) as usize;
            let x = x0 + (k % per_row * LEAK_STEP) as f64;
            let y = LIFE_Y + k / per_row * LEAK_STEP;
            let site = l.site.as_ref().map_or("?".to_string(), |s| s.text());
            let ev = l
                .event
                .and_then(|e| self.event_ids.get(&e))
                .map_or(String::new(), |id| format!(" data-ev=\"{id}\""));
            let _ = write!(
                s,
                "<g class=\"leak\" data-leak=\"{i}\" data-site=\"{}\"{ev}><path d=\"M{x:.1},{} \
                 l6,6 l-6,6 l-6,-6 z\"/><title>leak: {} at {}</title></g>",
                esc(&site),
                y - 6,
                esc(&l.what),
                esc(&site)
            );
        }
    }
}

/// One counter as steps, one per pixel column: a filled area (bytes) or a line (counts),
/// broken where the process did not exist yet; nothing for a counter that stayed at zero.
/// Both bytes counters share one scale, as do both counts.
struct Counter {
    class: &'static str,
    value: fn(&Sample) -> u64,
    top: usize,
    height: usize,
    scale: u64,
    filled: bool,
}

fn series(s: &mut String, columns: &[Option<Sample>], counter: &Counter) {
    let Counter {
        class,
        value,
        top,
        height,
        scale,
        filled,
    } = *counter;
    if columns.iter().flatten().all(|v| value(v) == 0) {
        return;
    }
    let base = top + height;
    let _ = write!(s, "<path class=\"{class}\" d=\"");
    let mut open = false;
    for (c, sample) in columns.iter().enumerate() {
        let x = PLOT_X0 + c;
        let Some(v) = sample else {
            if open && filled {
                let _ = write!(s, "V{base}Z");
            }
            open = false;
            continue;
        };
        let y = base as f64 - height as f64 * value(v) as f64 / scale as f64;
        match (open, filled) {
            (true, _) => {}
            (false, true) => {
                let _ = write!(s, "M{x},{base}");
            }
            (false, false) => {
                let _ = write!(s, "M{x},{y:.1}");
            }
        }
        let _ = write!(s, "V{y:.1}H{}", x + 1);
        open = true;
    }
    if open && filled {
        let _ = write!(s, "V{base}Z");
    }
    s.push_str("\"/>");
}

/// `+0`, `+250 µs`, `+1.5 ms`, `+2 s` from the first record.
pub fn offset_text(us: i64) -> String {
    match us {
        0 => "+0".to_string(),
        1..1_000 => format!("+{us} µs"),
        1_000..1_000_000 => format!("+{} ms", trim(us as f64 / 1e3)),
        _ => format!("+{} s", trim(us as f64 / 1e6)),
    }
}

fn trim(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

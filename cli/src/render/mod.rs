//! The report as text for people: sections in order of harm, aligned columns, colour only when
//! asked for (a terminal without NO_COLOR, or `--color always`).
//!
//! One function per section, in the order the report shows them; each writes its lines (and the
//! blank line before it) to the report.

mod calls;
mod findings;
mod hangs;
mod leftovers;
mod processes;
mod reachable;
mod table;
mod verdict;
mod words;

use std::fmt::Write as _;

use crate::args::ViewOptions;
use crate::merge::Report;
use calls::{call_statistics, never_returned};
use findings::findings;
pub use hangs::deadlock_text;
use hangs::{deadlocks, waits, woken};
use leftovers::{attachments, in_use, mappings, name_leaks, not_seen, retained, sysv_leaks};
use processes::processes;
use reachable::reachable;
use verdict::footer;
pub use verdict::verdict_text;
pub use words::{base_name, call_text, duration};

/// ANSI styles, or nothing.
#[derive(Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn heading(self, t: &str) -> String {
        self.paint("1", t)
    }
    fn bad(self, t: &str) -> String {
        self.paint("1;31", t)
    }
    fn warn(self, t: &str) -> String {
        self.paint("33", t)
    }
    fn good(self, t: &str) -> String {
        self.paint("1;32", t)
    }
    fn site(self, t: &str) -> String {
        self.paint("36", t)
    }
    fn dim(self, t: &str) -> String {
        self.paint("2", t)
    }
}

/// The whole report; `view` chooses the processes listed.
pub fn text(report: &Report, view: &ViewOptions, style: Style) -> String {
    let mut out = String::new();
    title(&mut out, report, style);
    processes(&mut out, report, view, style);
    sysv_leaks(&mut out, report, style);
    name_leaks(&mut out, report, style);
    in_use(&mut out, report, style);
    not_seen(&mut out, report, style);
    attachments(&mut out, report, style);
    mappings(&mut out, report, style);
    reachable(&mut out, report, style);
    retained(&mut out, report, style);
    never_returned(&mut out, report, style);
    waits(&mut out, report, style);
    woken(&mut out, report, style);
    deadlocks(&mut out, report, style);
    findings(&mut out, report, style);
    call_statistics(&mut out, report, style);
    warnings(&mut out, report, style);
    footer(&mut out, report, style);
    out
}

/// The sections about what still goes on, as the text report words them (without colour):
/// objects in use, what no log recorded, who waits for whom, wakeups, deadlocks. Empty when
/// there is none. The HTML page shows them as they are: they have no place on a timeline.
pub fn ongoing_text(report: &Report) -> String {
    let style = Style { color: false };
    let mut out = String::new();
    in_use(&mut out, report, style);
    not_seen(&mut out, report, style);
    waits(&mut out, report, style);
    woken(&mut out, report, style);
    deadlocks(&mut out, report, style);
    out.trim_start_matches('\n').to_string()
}

/// `shmtrace report: PROGRAM ARGS`.
fn title(out: &mut String, report: &Report, style: Style) {
    let mut title = String::from("shmtrace report");
    if let Some(run) = &report.run
        && !run.program.is_empty()
    {
        let _ = write!(title, ": {}", run.program.join(" "));
    }
    let _ = writeln!(out, "{}", style.heading(&title));
}

/// Starts a section: a blank line, then its heading.
fn section(out: &mut String, style: Style, heading: &str) {
    out.push('\n');
    let _ = writeln!(out, "{}", style.heading(heading));
}

/// What could not be read or understood.
fn warnings(out: &mut String, report: &Report, style: Style) {
    if report.warnings.is_empty() {
        return;
    }
    out.push('\n');
    let _ = writeln!(out, "{}", style.warn("warnings"));
    for w in &report.warnings {
        let _ = writeln!(out, "  {w}");
    }
}

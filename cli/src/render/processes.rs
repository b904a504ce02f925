//! The processes section: the tree, and how each process ended.

use std::fmt::Write as _;

use super::table::Table;
use super::words::plural;
use super::{Style, section};
use crate::args::ViewOptions;
use crate::merge::{Ending, ParentSource, Process, Report};

/// The process tree, with how each process ended.
pub(super) fn processes(out: &mut String, report: &Report, view: &ViewOptions, style: Style) {
    let shown: Vec<_> = report.shown_processes(view).collect();
    let of_all = if shown.len() == report.processes.len() {
        String::new()
    } else {
        format!(" of {}", report.processes.len())
    };
    section(out, style, &format!("processes ({}{of_all})", shown.len()));
    let mut table = Table::new(&[false, false, false, false]);
    table.header(style, &["PID", "PARENT", "ENDED", "PROGRAM"]);
    let (listed, folded) = fold_idle(report, &shown, view);
    for p in &listed {
        table.row(vec![
            format!("{}{}", "  ".repeat(p.depth.min(8)), p.pid),
            parent(p),
            ended(p, style),
            program(p),
        ]);
    }
    table.write(out, "  ");
    if folded > 0 {
        let _ = writeln!(
            out,
            "  {} made no tracked calls (--all-processes lists them)",
            plural(folded as u64, "more process", "more processes")
        );
    }
    if listed
        .iter()
        .any(|p| p.ppid.is_some() && p.parent_source == ParentSource::Inferred)
    {
        out.push_str(
            "  (PARENT?: not recorded; the process whose program the child inherited at fork: its parent, or an ancestor)\n",
        );
    }
    if listed
        .iter()
        .any(|p| p.ending == Ending::NotNormally && p.status.is_none())
    {
        out.push_str(
            "  (did not exit normally: no exit report: killed, crashed, or exec'd an untraced program)\n",
        );
    }
}

/// The processes the table lists, and how many it folds into one line: those that made no
/// tracked call and exited normally (a script's helpers), unless `--all-processes`.
fn fold_idle<'a>(
    report: &Report,
    shown: &[&'a Process],
    view: &ViewOptions,
) -> (Vec<&'a Process>, usize) {
    if view.all_processes {
        return (shown.to_vec(), 0);
    }
    let root = report.run.as_ref().and_then(|r| r.root_pid);
    let idle = |p: &Process| p.calls == 0 && p.ending == Ending::Exited && Some(p.pid) != root;
    let listed: Vec<&Process> = shown.iter().copied().filter(|p| !idle(p)).collect();
    let folded = shown.len() - listed.len();
    (listed, folded)
}

/// `PPID`, `PPID?` when inferred, `?` when unknown.
fn parent(p: &Process) -> String {
    match (p.ppid, p.parent_source) {
        (Some(pp), ParentSource::Inferred) => format!("{pp}?"),
        (Some(pp), ParentSource::Recorded) => pp.to_string(),
        (None, _) => "?".to_string(),
    }
}

fn ended(p: &Process, style: Style) -> String {
    match (&p.status, &p.ending) {
        (Some(status), Ending::Exited) => style.good(&status.describe()),
        (Some(status), _) => style.bad(&status.describe()),
        (None, Ending::Exited) => p.ending.label().to_string(),
        (None, Ending::StillRunning) => style.warn(p.ending.label()),
        (None, Ending::NotNormally) => style.bad(p.ending.label()),
    }
}

/// `/bin/sh (forked), exec /usr/bin/app`: the program inherited at fork, then one per exec.
fn program(p: &Process) -> String {
    let mut program = String::new();
    for (i, exe) in p.exes.iter().enumerate() {
        let exe = exe.as_deref().unwrap_or("?");
        if i == 0 {
            program.push_str(exe);
            if p.forked {
                program.push_str(" (forked)");
            }
        } else {
            let _ = write!(program, ", exec {exe}");
        }
    }
    if program.is_empty() {
        program.push('?');
    }
    program
}

//! The calls: those that never returned, and the statistics.

use std::fmt::Write as _;

use super::table::Table;
use super::words::{call_text, clock_time, duration, site_text, stack_lines};
use super::{Style, section};
use crate::logs::Micros;
use crate::merge::Report;
use crate::runinfo::Status;

/// Calls that started and never returned.
pub(super) fn never_returned(out: &mut String, report: &Report, style: Style) {
    if report.blocked.is_empty() {
        return;
    }
    let since = |ts: Micros| match report.first_ts {
        Some(first) if ts >= first => format!(
            "{}, {:.6} s into the run",
            clock_time(ts),
            (ts - first) as f64 / 1e6
        ),
        _ => clock_time(ts),
    };
    section(out, style, "calls that never returned");
    for b in &report.blocked {
        let thread = if b.tid == b.pid {
            b.pid.to_string()
        } else {
            format!("{}:{}", b.pid, b.tid)
        };
        let _ = writeln!(
            out,
            "  {} {}",
            style.dim(&format!("[{thread}]")),
            style.bad(&call_text(&b.func, &b.args))
        );
        let ended = report
            .processes
            .iter()
            .find(|p| p.pid == b.pid)
            .map(|p| match &p.status {
                Some(s @ Status::Signaled { .. }) => format!("was {}", s.describe()),
                Some(s) => format!("ended with {}", s.describe()),
                None => p.ending.label().to_string(),
            })
            .unwrap_or_default();
        let _ = writeln!(out, "      at {}", site_text(style, b.site.as_ref()));
        for line in stack_lines(style, &b.stack) {
            let _ = writeln!(out, "          {line}");
        }
        let state = if b.still_waiting {
            "still waiting: the process is still running".to_string()
        } else {
            format!("never returned: the process {ended}")
        };
        let _ = writeln!(out, "      waiting since {}; {state}", since(b.since));
    }
}

/// Call statistics over the processes and functions shown.
pub(super) fn call_statistics(out: &mut String, report: &Report, style: Style) {
    let scope = match (&report.filtered_calls, report.filtered_pids.is_empty()) {
        (None, true) => "all processes".to_string(),
        (calls, all_pids) => {
            let mut parts = Vec::new();
            if !all_pids {
                parts.push(format!(
                    "pid {}",
                    report
                        .filtered_pids
                        .iter()
                        .map(i32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(calls) = calls {
                parts.push(calls.join(", "));
            }
            parts.join("; ")
        }
    };
    section(out, style, &format!("calls ({scope})"));
    if report.calls.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut table = Table::new(&[false, true, true, true, true, true]);
        table.header(
            style,
            &[
                "FUNCTION",
                "CALLS",
                "FAILED",
                "TOTAL TIME",
                "AVERAGE",
                "MAX",
            ],
        );
        for c in &report.calls {
            table.row(vec![
                c.func.clone(),
                c.calls.to_string(),
                c.failed.to_string(),
                duration(c.total_ns),
                duration(c.total_ns / c.calls.max(1)),
                duration(c.max_ns),
            ]);
        }
        table.write(out, "  ");
    }
}

//! The report as text for people: sections in order of harm, aligned columns, colour only when
//! asked for (a terminal without NO_COLOR, or `--color always`).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::args::ViewOptions;
use crate::kernel::Presence;
use crate::logs::Micros;
use crate::merge::{Ending, Kind, ParentSource, Report, Verdict};
use crate::runinfo::Status;
use crate::symbols::Symbol;

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

/// A table: columns padded to their widest cell (the last column is not padded). Cells may
/// carry colour: widths are measured without escape sequences. A row may carry notes: lines
/// printed under it, indented under its last cell (a call site's stack).
struct Table {
    rows: Vec<Vec<String>>,
    notes: Vec<Vec<String>>,
    right: Vec<bool>,
}

impl Table {
    fn new(right: &[bool]) -> Table {
        Table {
            rows: Vec::new(),
            notes: Vec::new(),
            right: right.to_vec(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.row_with_notes(cells, Vec::new());
    }

    fn row_with_notes(&mut self, cells: Vec<String>, notes: Vec<String>) {
        self.rows.push(cells);
        self.notes.push(notes);
    }

    fn write(&self, out: &mut String, indent: &str) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| visible_len(s))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (row, notes) in self.rows.iter().zip(&self.notes) {
            let mut line = String::from(indent);
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c].saturating_sub(visible_len(cell));
                let last = c + 1 == row.len();
                if self.right.get(c).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    line.push_str("  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            let last_column: usize = widths
                .iter()
                .take(row.len().saturating_sub(1))
                .map(|w| w + 2)
                .sum();
            for note in notes {
                let pad = " ".repeat(indent.len() + last_column + 2);
                let _ = writeln!(out, "{pad}{note}");
            }
        }
    }
}

/// Characters shown, escape sequences excluded.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

fn base_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `12 ns`, `3.4 µs`, `1.234 ms`, `2.500 s`.
pub fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.3} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

/// Local wall-clock time of day, `15:04:05.123456`.
pub fn clock_time(ts: Micros) -> String {
    let secs = ts.div_euclid(1_000_000);
    let micros = ts.rem_euclid(1_000_000);
    let t = secs as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe and only writes
    // `tm`.
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if ok {
        format!(
            "{:02}:{:02}:{:02}.{micros:06}",
            tm.tm_hour, tm.tm_min, tm.tm_sec
        )
    } else {
        format!("{secs}.{micros:06}")
    }
}

/// `semop(3, 0x7ffd1c2e3a40, 1)` from a record's args.
pub fn call_text(func: &str, args: &serde_json::Map<String, Value>) -> String {
    let values: Vec<String> = args
        .values()
        .map(|v| match v {
            Value::Null => "NULL".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    format!("{func}({})", values.join(", "))
}

fn site_text(style: Style, site: Option<&Symbol>) -> String {
    site.map_or_else(|| style.dim("?"), |s| style.site(&s.text()))
}

/// The frames above a call site (`--stack`), innermost first, one line each:
/// `called from first_leaf (app.c:35)`.
fn stack_lines(style: Style, stack: &[Symbol]) -> Vec<String> {
    stack
        .iter()
        .map(|s| format!("{} {}", style.dim("called from"), style.site(&s.text())))
        .collect()
}

pub fn presence_text(p: Presence) -> &'static str {
    match p {
        Presence::Exists => "still exists",
        Presence::MarkedForRemoval => "marked for removal, still attached somewhere",
        Presence::Gone => "no longer exists (removed outside the traced processes)",
        Presence::Reused => "no longer exists (its id now names another segment)",
        Presence::Unknown => "existence unknown (/proc/sysvipc unreadable)",
    }
}

/// `2 errors, 1 warning, 0 info` (findings after suppression).
fn findings_text(v: &Verdict) -> String {
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
        return "clean: no SysV object, attachment or mapping left behind".to_string();
    }
    if v.leaks() == 0 {
        return format!(
            "no SysV object, attachment or mapping left behind; findings: {}",
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
    if v.attachments > 0 {
        parts.push(plural(v.attachments, "attachment", "attachments"));
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

/// Attachments and mappings still pointed into at exit, and what finding that out cost.
fn reachable_section(report: &Report, style: Style, out: &mut String) {
    let v = &report.verdict;
    if !report.reachable.is_empty() {
        out.push('\n');
        let counted = if v.count_reachable {
            "counted as leaks (--leaks all)"
        } else {
            "not leaks (--leaks all counts them)"
        };
        let _ = writeln!(
            out,
            "{}",
            style.heading(&format!(
                "still reachable at exit, {counted}: something still pointed into them"
            ))
        );
        let mut table = Table::new(&[false, false, true, true, false]);
        table.row(
            ["PID", "KIND", "COUNT", "BYTES", "MADE AT"]
                .map(|h| style.dim(h))
                .to_vec(),
        );
        for r in &report.reachable {
            let kind = match r.shmid {
                Some(shmid) => format!("attachment shmid={shmid}"),
                None => "mapping".to_string(),
            };
            table.row_with_notes(
                vec![
                    r.pid.to_string(),
                    kind,
                    r.count.to_string(),
                    r.bytes.to_string(),
                    site_text(style, r.site.as_ref()),
                ],
                stack_lines(style, &r.stack),
            );
        }
        table.write(out, "  ");
    }
    if v.scanned_bytes > 0 {
        let _ = writeln!(
            out,
            "{}",
            style.dim(&format!(
                "pointer scan at exit: {} bytes read in {}",
                v.scanned_bytes,
                duration(v.scan_ns)
            ))
        );
    }
}

pub fn text(report: &Report, view: &ViewOptions, style: Style) -> String {
    let mut out = String::new();
    let since = |ts: Micros| match report.first_ts {
        Some(first) if ts >= first => format!(
            "{}, {:.6} s into the run",
            clock_time(ts),
            (ts - first) as f64 / 1e6
        ),
        _ => clock_time(ts),
    };

    let mut title = String::from("shmtrace report");
    if let Some(run) = &report.run
        && !run.program.is_empty()
    {
        let _ = write!(title, ": {}", run.program.join(" "));
    }
    let _ = writeln!(out, "{}\n", style.heading(&title));

    // Processes.
    let shown: Vec<_> = report.shown_processes(view).collect();
    let _ = writeln!(
        out,
        "{}",
        style.heading(&format!(
            "processes ({}{})",
            shown.len(),
            if shown.len() == report.processes.len() {
                String::new()
            } else {
                format!(" of {}", report.processes.len())
            }
        ))
    );
    let mut table = Table::new(&[false, false, false, false]);
    table.row(vec![
        style.dim("PID"),
        style.dim("PARENT"),
        style.dim("ENDED"),
        style.dim("PROGRAM"),
    ]);
    let mut inferred = false;
    for p in &shown {
        let parent = match (p.ppid, p.parent_source) {
            (Some(pp), ParentSource::Inferred) => {
                inferred = true;
                format!("{pp}?")
            }
            (Some(pp), ParentSource::Recorded) => pp.to_string(),
            (None, _) => "?".to_string(),
        };
        let ended = match (&p.status, &p.ending) {
            (Some(status), Ending::Exited) => style.good(&status.describe()),
            (Some(status), _) => style.bad(&status.describe()),
            (None, Ending::Exited) => p.ending.label().to_string(),
            (None, Ending::StillRunning) => style.warn(p.ending.label()),
            (None, Ending::NotNormally) => style.bad(p.ending.label()),
        };
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
        table.row(vec![
            format!("{}{}", "  ".repeat(p.depth.min(8)), p.pid),
            parent,
            ended,
            program,
        ]);
    }
    table.write(&mut out, "  ");
    if inferred {
        out.push_str(
            "  (PARENT?: not recorded; the process whose program the child inherited at fork: its parent, or an ancestor)\n",
        );
    }
    if shown
        .iter()
        .any(|p| p.ending == Ending::NotNormally && p.status.is_none())
    {
        out.push_str(
            "  (did not exit normally: no exit report: killed, crashed, or exec'd an untraced program)\n",
        );
    }

    // SysV leaks.
    out.push('\n');
    let s = &report.sysv;
    let mut header = format!(
        "SysV objects created and never removed ({} created, {} removed",
        s.created, s.removed
    );
    if s.removed_elsewhere > 0 {
        let _ = write!(
            header,
            ", {} of them by another process",
            s.removed_elsewhere
        );
    }
    header.push(')');
    let _ = writeln!(out, "{}", style.heading(&header));
    if report.leaks.is_empty() {
        out.push_str("  none\n");
    }
    for leak in &report.leaks {
        let (id_name, size_name, flag) = match leak.kind {
            Kind::Segment => ("shmid", "size", "-m"),
            Kind::SemaphoreSet => ("semid", "nsems", "-s"),
        };
        let _ = writeln!(
            out,
            "  {} {id_name}={} key={} {size_name}={}",
            style.bad(leak.kind.name()),
            leak.id,
            leak.key,
            leak.size
        );
        let exe = leak
            .exe
            .as_deref()
            .map_or(String::new(), |e| format!(" ({})", base_name(e)));
        let _ = writeln!(
            out,
            "      created by {}{exe} at {}",
            leak.pid,
            site_text(style, Some(&leak.site)),
        );
        for line in stack_lines(style, &leak.stack) {
            let _ = writeln!(out, "          {line}");
        }
        let presence = presence_text(leak.presence);
        let _ = match leak.presence {
            Presence::Exists => writeln!(
                out,
                "      {} (ipcrm {flag} {})",
                style.bad(presence),
                leak.id
            ),
            _ => writeln!(out, "      {presence}"),
        };
    }

    // Attachments and mappings, per process.
    if !report.attachments.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{}",
            style.heading("attachments never detached (exit detaches them silently)")
        );
        let mut table = Table::new(&[false, false, false, true, false, false]);
        table.row(
            ["PID", "SHMID", "ADDRESS", "SIZE", "MODE", "ATTACHED AT"]
                .map(|h| style.dim(h))
                .to_vec(),
        );
        for a in &report.attachments {
            table.row_with_notes(
                vec![
                    a.pid.to_string(),
                    a.shmid.to_string(),
                    format!("{:#x}", a.addr),
                    a.size.to_string(),
                    (if a.readonly {
                        "read-only"
                    } else {
                        "read-write"
                    })
                    .to_string(),
                    site_text(style, a.site.as_ref()),
                ],
                stack_lines(style, &a.stack),
            );
        }
        table.write(&mut out, "  ");
    }
    if !report.mappings.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{}",
            style.heading("mappings never unmapped, by call site (exit unmaps them silently)")
        );
        let mut table = Table::new(&[false, true, true, false]);
        table.row(
            ["PID", "MAPPINGS", "BYTES", "MAPPED AT"]
                .map(|h| style.dim(h))
                .to_vec(),
        );
        for m in &report.mappings {
            table.row_with_notes(
                vec![
                    m.pid.to_string(),
                    m.count.to_string(),
                    m.bytes.to_string(),
                    site_text(style, m.site.as_ref()),
                ],
                stack_lines(style, &m.stack),
            );
        }
        table.write(&mut out, "  ");
    }

    reachable_section(report, style, &mut out);

    if !report.retained.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{}",
            style.heading(
                "retained by allocators, not leaks (address space an allocator keeps for reuse; \
                 SHMTRACE_ALLOCATORS=none counts them)"
            )
        );
        let mut table = Table::new(&[false, true, true, false]);
        table.row(
            ["PID", "MAPPINGS", "BYTES", "ALLOCATOR"]
                .map(|h| style.dim(h))
                .to_vec(),
        );
        for r in &report.retained {
            table.row(vec![
                r.pid.to_string(),
                r.count.to_string(),
                r.bytes.to_string(),
                r.module.clone(),
            ]);
        }
        table.write(&mut out, "  ");
    }

    // Calls that never returned.
    if !report.blocked.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", style.heading("calls that never returned"));
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

    // Audit findings.
    if !report.findings.is_empty() || report.verdict.findings.suppressed > 0 {
        out.push('\n');
        let _ = writeln!(
            out,
            "{}",
            style.heading(&format!(
                "findings ({}; explained in docs/findings.md)",
                findings_text(&report.verdict)
            ))
        );
        let mut table = Table::new(&[false, false, true, false, false]);
        table.row(
            ["CODE", "SEVERITY", "COUNT", "PID", "SITE"]
                .map(|h| style.dim(h))
                .to_vec(),
        );
        for f in &report.findings {
            let severity = match f.severity.as_str() {
                "error" => style.bad(&f.severity),
                "warning" => style.warn(&f.severity),
                _ => f.severity.clone(),
            };
            let pids: Vec<String> = f.pids.iter().map(i32::to_string).collect();
            table.row_with_notes(
                vec![
                    format!("{} {}", f.code, style.dim(&f.name)),
                    severity,
                    f.count.to_string(),
                    pids.join(","),
                    format!("{}: {}", f.func, site_text(style, f.site.as_ref())),
                ],
                vec![f.message.clone()],
            );
        }
        if !report.findings.is_empty() {
            table.write(&mut out, "  ");
        }
        if report.verdict.findings.suppressed > 0 {
            let _ = writeln!(
                out,
                "  ({} suppressed by SHMTRACE_SUPPRESS)",
                report.verdict.findings.suppressed
            );
        }
    }

    // Call statistics.
    out.push('\n');
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
    let _ = writeln!(out, "{}", style.heading(&format!("calls ({scope})")));
    if report.calls.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut table = Table::new(&[false, true, true, true, true, true]);
        table.row(
            [
                "FUNCTION",
                "CALLS",
                "FAILED",
                "TOTAL TIME",
                "AVERAGE",
                "MAX",
            ]
            .map(|h| style.dim(h))
            .to_vec(),
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
        table.write(&mut out, "  ");
    }

    if !report.warnings.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "{}", style.warn("warnings"));
        for w in &report.warnings {
            let _ = writeln!(out, "  {w}");
        }
    }

    // Verdict and footer.
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(812), "812 ns");
        assert_eq!(duration(12_034), "12.0 µs");
        assert_eq!(duration(1_234_567), "1.235 ms");
        assert_eq!(duration(2_500_000_000), "2.500 s");
    }

    #[test]
    fn table_alignment_ignores_colour() {
        let style = Style { color: true };
        let mut t = Table::new(&[false, true]);
        t.row(vec![style.bad("a"), "1".into()]);
        t.row(vec!["bbb".into(), "100".into()]);
        let mut out = String::new();
        t.write(&mut out, "");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(visible_len(lines[0]), visible_len(lines[1]));
    }

    #[test]
    fn table_notes_go_under_the_last_cell() {
        let mut t = Table::new(&[false, true, false]);
        t.row(vec!["PID".into(), "N".into(), "AT".into()]);
        t.row_with_notes(
            vec!["12345".into(), "1".into(), "leaf (a.c:3)".into()],
            vec![
                "called from mid (a.c:9)".into(),
                "called from main (a.c:14)".into(),
            ],
        );
        t.row(vec!["7".into(), "100".into(), "main (a.c:20)".into()]);
        let mut out = String::new();
        t.write(&mut out, "  ");
        assert_eq!(
            out,
            "  PID      N  AT\n\
             \x20 12345    1  leaf (a.c:3)\n\
             \x20               called from mid (a.c:9)\n\
             \x20               called from main (a.c:14)\n\
             \x20 7      100  main (a.c:20)\n"
        );
    }

    #[test]
    fn stack_lines_name_each_frame() {
        let mut frame = Symbol::raw(0x1234);
        frame.function = Some("mid".into());
        frame.file = Some("/src/a.c".into());
        frame.line = Some(9);
        let lines = stack_lines(Style { color: false }, &[frame, Symbol::raw(0x99)]);
        assert_eq!(lines, ["called from mid (a.c:9)", "called from 0x99"]);
        assert!(stack_lines(Style { color: false }, &[]).is_empty());
    }

    #[test]
    fn call_texts() {
        let args: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"semid":3,"sops":"0x7ffd","nsops":1,"timeout":null}"#)
                .unwrap();
        assert_eq!(
            call_text("semtimedop", &args),
            "semtimedop(3, 0x7ffd, 1, NULL)"
        );
    }

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
}

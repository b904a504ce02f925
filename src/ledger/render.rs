//! The report as text (for people) and as one JSON line (for tools), in the log's conventions:
//! lines prefixed `shmtrace[PID] `, keys as `IPC_PRIVATE` or lower-case hex, addresses as hex.

use core::fmt::{self, Write};

use super::report::{AttachmentLeak, MappingLeak, Report};
use shmtrace_core::trace::decode;
use shmtrace_core::trace::event::Stack;

struct Key(i32);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        decode::key(f, self.0)
    }
}

/// A call site and, when recorded, the stack above it: `0x55d0c0a01234` or
/// `0x55d0c0a01234 stack=0x55d0c0a01300,0x55d0c0a01400` (as in the text log's records).
struct Site<'a>(u64, &'a Stack);

impl fmt::Display for Site<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)?;
        for (i, frame) in self.1.as_slice().iter().enumerate() {
            f.write_str(if i == 0 { " stack=" } else { "," })?;
            write!(f, "{frame:#x}")?;
        }
        Ok(())
    }
}

/// `,"stack":["0x55d0c0a01300",...]` when a stack was recorded, nothing otherwise.
struct JsonStack<'a>(&'a Stack);

impl fmt::Display for JsonStack<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frames = self.0.as_slice();
        if frames.is_empty() {
            return Ok(());
        }
        f.write_str(",\"stack\":[")?;
        for (i, frame) in frames.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "\"{frame:#x}\"")?;
        }
        f.write_char(']')
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// Writes rows of cells, each column padded to its widest cell so entries line up; the last
/// cell of a row is free text and is not padded.
fn write_rows(out: &mut impl Write, pid: i32, rows: &[Vec<String>]) -> fmt::Result {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(cell.len()),
                None => widths.push(cell.len()),
            }
        }
    }
    for row in rows {
        write!(out, "shmtrace[{pid}]   ")?;
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.write_str(cell)?;
            } else {
                let w = widths.get(i).copied().unwrap_or(0);
                write!(out, "{cell:<w$} ")?;
            }
        }
        out.write_char('\n')?;
    }
    Ok(())
}

/// The report for people: one header line, then one section per kind of leak (only those with
/// entries), one line per entry. A clean report is exactly one line.
pub fn write_text(report: &Report, pid: i32, out: &mut impl Write) -> fmt::Result {
    if report.leaks() == 0 {
        if !report.has_findings() {
            writeln!(
                out,
                "shmtrace[{pid}] report: clean: no segment, semaphore set, attachment or mapping left behind"
            )?;
            write_reachable_text(report, pid, out)?;
            return write_retained_text(report, pid, out);
        }
        writeln!(
            out,
            "shmtrace[{pid}] report: no segment, semaphore set, attachment or mapping left behind"
        )?;
        write_reachable_text(report, pid, out)?;
        write_retained_text(report, pid, out)?;
        return write_findings_text(report, pid, out);
    }
    let n = |len: usize| u64::try_from(len).unwrap_or(u64::MAX);
    let mut parts: Vec<String> = Vec::new();
    let segs = n(report.segments.len());
    if segs > 0 {
        parts.push(format!("{segs} {}", plural(segs, "segment", "segments")));
    }
    let sets = n(report.semaphores.len());
    if sets > 0 {
        parts.push(format!(
            "{sets} {}",
            plural(sets, "semaphore set", "semaphore sets")
        ));
    }
    let names = n(report.names.len());
    if names > 0 {
        parts.push(format!("{names} {}", plural(names, "name", "names")));
    }
    let atts = n(report.attachments.len());
    if atts > 0 {
        parts.push(format!(
            "{atts} {}",
            plural(atts, "attachment", "attachments")
        ));
    }
    let maps = report.mapping_count();
    if maps > 0 {
        parts.push(format!(
            "{maps} {} ({} bytes)",
            plural(maps, "mapping", "mappings"),
            report.mapping_bytes()
        ));
    }
    let reachable = report.reachable_count();
    if report.count_reachable && reachable > 0 {
        parts.push(format!(
            "{reachable} still reachable ({} bytes)",
            report.reachable_bytes()
        ));
    }
    let leaks = report.leaks();
    writeln!(
        out,
        "shmtrace[{pid}] report: {leaks} {} left behind: {}",
        plural(leaks, "leak", "leaks"),
        parts.join(", ")
    )?;

    if segs > 0 || sets > 0 || names > 0 {
        writeln!(
            out,
            "shmtrace[{pid}] outlive the process (created here, never removed: the kernel keeps them after exit):"
        )?;
        let mut rows = Vec::new();
        for s in &report.segments {
            rows.push(vec![
                "segment".to_string(),
                format!("shmid={}", s.shmid),
                format!("key={}", Key(s.key)),
                format!("size={}", s.size),
                format!(
                    "created at {}: never removed, still exists (ipcrm -m {})",
                    Site(s.site, &s.stack),
                    s.shmid
                ),
            ]);
        }
        for s in &report.semaphores {
            rows.push(vec![
                "semaphore set".to_string(),
                format!("semid={}", s.semid),
                format!("key={}", Key(s.key)),
                format!("nsems={}", s.nsems),
                format!(
                    "created at {}: never removed, still exists (ipcrm -s {})",
                    Site(s.site, &s.stack),
                    s.semid
                ),
            ]);
        }
        for s in &report.names {
            let path = s.path();
            rows.push(vec![
                s.kind.label().to_string(),
                path.clone(),
                format!(
                    "created at {}: never unlinked, still exists (rm {path})",
                    Site(s.site, &s.stack),
                ),
            ]);
        }
        write_rows(out, pid, &rows)?;
    }

    if atts > 0 {
        writeln!(
            out,
            "shmtrace[{pid}] attachments never detached (exit detaches them silently):"
        )?;
        let rows: Vec<Vec<String>> = report
            .attachments
            .iter()
            .map(|a| {
                let partial = if a.mapped != a.size {
                    format!(" ({} bytes still mapped)", a.mapped)
                } else {
                    String::new()
                };
                vec![
                    format!("shmid={}", a.shmid),
                    format!("addr={:#x}", a.addr),
                    format!("size={}", a.size),
                    (if a.readonly {
                        "read-only"
                    } else {
                        "read-write"
                    })
                    .to_string(),
                    format!(
                        "attached at {}: never detached{partial} (shmdt({:#x}))",
                        Site(a.site, &a.stack),
                        a.addr
                    ),
                ]
            })
            .collect();
        write_rows(out, pid, &rows)?;
    }

    if maps > 0 {
        writeln!(
            out,
            "shmtrace[{pid}] mappings never unmapped, by call site (exit unmaps them silently):"
        )?;
        let rows: Vec<Vec<String>> = report.mappings.iter().map(mapping_row).collect();
        write_rows(out, pid, &rows)?;
    }
    write_reachable_text(report, pid, out)?;
    write_retained_text(report, pid, out)?;
    write_findings_text(report, pid, out)
}

/// `0x55d0c0a01234: 2 mappings, 8192 bytes`, ending ` of memfd:NAME` for a shared memory
/// object's.
fn mapping_row(m: &MappingLeak) -> Vec<String> {
    let object = m.object.as_bytes();
    let of = if object.is_empty() {
        String::new()
    } else {
        format!(" of {}", object.escape_ascii())
    };
    vec![
        format!("{}:", Site(m.site, &m.stack)),
        format!("{} {},", m.count, plural(m.count, "mapping", "mappings")),
        format!("{} bytes{of}", m.bytes),
    ]
}

/// Attachments and mappings something still points into, then what the scan cost (nothing
/// when there was nothing to scan for).
fn write_reachable_text(report: &Report, pid: i32, out: &mut impl Write) -> fmt::Result {
    if report.reachable_count() > 0 {
        let counted = if report.count_reachable {
            "counted as leaks (SHMTRACE_LEAKS=all)"
        } else {
            "not leaks (SHMTRACE_LEAKS=all counts them)"
        };
        writeln!(
            out,
            "shmtrace[{pid}] still reachable, {counted}: something still points into them, exit releases them:"
        )?;
        let mut rows: Vec<Vec<String>> = report
            .reachable_attachments
            .iter()
            .map(|a| {
                vec![
                    format!("attached at {}:", Site(a.site, &a.stack)),
                    format!("shmid={}", a.shmid),
                    format!("addr={:#x},", a.addr),
                    format!("{} bytes", a.mapped),
                ]
            })
            .collect();
        rows.extend(report.reachable.iter().map(mapping_row));
        write_rows(out, pid, &rows)?;
    }
    match report.scanned {
        Some(s) if s.bytes > 0 => writeln!(
            out,
            "shmtrace[{pid}] scanned {} bytes for pointers in {}.{:03} ms",
            s.bytes,
            s.nanos / 1_000_000,
            s.nanos / 1_000 % 1_000
        ),
        _ => Ok(()),
    }
}

/// The mappings set aside as allocators', one line per module (nothing when there are none).
fn write_retained_text(report: &Report, pid: i32, out: &mut impl Write) -> fmt::Result {
    if report.retained.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "shmtrace[{pid}] retained by allocators, not leaks (address space an allocator keeps for reuse; SHMTRACE_ALLOCATORS=none counts them):"
    )?;
    let rows: Vec<Vec<String>> = report
        .retained
        .iter()
        .map(|r| {
            vec![
                format!("{}:", r.module),
                format!("{} {},", r.count, plural(r.count, "mapping", "mappings")),
                format!("{} bytes", r.bytes),
            ]
        })
        .collect();
    write_rows(out, pid, &rows)
}

/// `findings: 1 error, 2 warnings, 0 info`, then one line per code and site (nothing when
/// there are none).
fn write_findings_text(report: &Report, pid: i32, out: &mut impl Write) -> fmt::Result {
    if !report.has_findings() {
        return Ok(());
    }
    let [errors, warnings, info] = report.finding_totals;
    writeln!(
        out,
        "shmtrace[{pid}] findings: {errors} {}, {warnings} {}, {info} info (docs/findings.md; SHMTRACE_SUPPRESS silences them):",
        plural(errors, "error", "errors"),
        plural(warnings, "warning", "warnings"),
    )?;
    let rows: Vec<Vec<String>> = report
        .findings
        .iter()
        .map(|f| {
            let times = if f.count == 1 {
                String::new()
            } else {
                format!(" ({} times)", f.count)
            };
            vec![
                f.code.to_string(),
                f.severity.to_string(),
                format!("{} at {:#x}{times}: {}", f.func, f.site, f.message),
            ]
        })
        .collect();
    write_rows(out, pid, &rows)
}

/// The report as one JSON object on one line (newline-terminated), for `SHMTRACE_FORMAT=json`.
pub fn write_json(report: &Report, pid: i32, out: &mut impl Write) -> fmt::Result {
    write!(
        out,
        r#"{{"event":"report","pid":{pid},"clean":{},"segments":["#,
        report.is_clean()
    )?;
    for (i, s) in report.segments.iter().enumerate() {
        comma(out, i)?;
        write!(
            out,
            r#"{{"shmid":{},"key":"{}","size":{},"site":"{:#x}"{}}}"#,
            s.shmid,
            Key(s.key),
            s.size,
            s.site,
            JsonStack(&s.stack)
        )?;
    }
    out.write_str(r#"],"semaphores":["#)?;
    for (i, s) in report.semaphores.iter().enumerate() {
        comma(out, i)?;
        write!(
            out,
            r#"{{"semid":{},"key":"{}","nsems":{},"site":"{:#x}"{}}}"#,
            s.semid,
            Key(s.key),
            s.nsems,
            s.site,
            JsonStack(&s.stack)
        )?;
    }
    out.write_char(']')?;
    if !report.names.is_empty() {
        out.write_str(r#","names":["#)?;
        for (i, s) in report.names.iter().enumerate() {
            comma(out, i)?;
            out.write_str(r#"{"name":""#)?;
            json_escaped(out, &String::from_utf8_lossy(s.name.as_bytes()))?;
            write!(
                out,
                r#"","kind":"{}","site":"{:#x}"{}}}"#,
                s.kind.key(),
                s.site,
                JsonStack(&s.stack)
            )?;
        }
        out.write_char(']')?;
    }
    out.write_str(r#","attachments":"#)?;
    write_attachments_json(out, &report.attachments)?;
    out.write_str(r#","mappings":"#)?;
    write_mappings_json(out, &report.mappings)?;
    write_reachable_json(report, out)?;
    if !report.retained.is_empty() {
        out.write_str(r#","retained":["#)?;
        for (i, r) in report.retained.iter().enumerate() {
            comma(out, i)?;
            out.write_str(r#"{"module":""#)?;
            json_escaped(out, &r.module)?;
            write!(out, r#"","count":{},"bytes":{}}}"#, r.count, r.bytes)?;
        }
        out.write_char(']')?;
    }
    if report.has_findings() {
        write_findings_json(report, out)?;
    }
    out.write_str("}\n")
}

/// `,"reachable_attachments":[...]`, `,"reachable":[...]` and `,"scan":{...}`, each only when
/// not empty (a report without them reads as before scans existed).
fn write_reachable_json(report: &Report, out: &mut impl Write) -> fmt::Result {
    if !report.reachable_attachments.is_empty() {
        out.write_str(r#","reachable_attachments":"#)?;
        write_attachments_json(out, &report.reachable_attachments)?;
    }
    if !report.reachable.is_empty() {
        out.write_str(r#","reachable":"#)?;
        write_mappings_json(out, &report.reachable)?;
    }
    match report.scanned {
        Some(s) if s.bytes > 0 => {
            write!(out, r#","scan":{{"bytes":{},"ns":{}}}"#, s.bytes, s.nanos)
        }
        _ => Ok(()),
    }
}

fn write_attachments_json(out: &mut impl Write, attachments: &[AttachmentLeak]) -> fmt::Result {
    out.write_char('[')?;
    for (i, a) in attachments.iter().enumerate() {
        comma(out, i)?;
        write!(
            out,
            r#"{{"shmid":{},"addr":"{:#x}","size":{},"readonly":{},"site":"{:#x}"{}}}"#,
            a.shmid,
            a.addr,
            a.size,
            a.readonly,
            a.site,
            JsonStack(&a.stack)
        )?;
    }
    out.write_char(']')
}

fn write_mappings_json(out: &mut impl Write, mappings: &[MappingLeak]) -> fmt::Result {
    out.write_char('[')?;
    for (i, m) in mappings.iter().enumerate() {
        comma(out, i)?;
        write!(out, r#"{{"site":"{:#x}"{}"#, m.site, JsonStack(&m.stack))?;
        if !m.object.as_bytes().is_empty() {
            out.write_str(r#","object":""#)?;
            json_escaped(out, &String::from_utf8_lossy(m.object.as_bytes()))?;
            out.write_char('"')?;
        }
        write!(out, r#","count":{},"bytes":{}}}"#, m.count, m.bytes)?;
    }
    out.write_char(']')
}

/// `,"findings":[...],"finding_totals":{...}`, only when there are findings (a report without
/// any reads as before audits existed).
fn write_findings_json(report: &Report, out: &mut impl Write) -> fmt::Result {
    // Messages are ASCII without quotes or backslashes (audit::codes): no escaping needed.
    out.write_str(r#","findings":["#)?;
    for (i, f) in report.findings.iter().enumerate() {
        comma(out, i)?;
        write!(
            out,
            r#"{{"code":"{}","name":"{}","severity":"{}","fn":"{}","site":"{:#x}","count":{},"message":"{}"}}"#,
            f.code, f.name, f.severity, f.func, f.site, f.count, f.message
        )?;
    }
    let [errors, warnings, info] = report.finding_totals;
    write!(
        out,
        r#"],"finding_totals":{{"error":{errors},"warning":{warnings},"info":{info}}}"#
    )
}

/// A string's characters inside JSON quotes (a module path may hold any byte).
fn json_escaped(out: &mut impl Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if u32::from(c) < 0x20 => write!(out, "\\u{:04x}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

fn comma(out: &mut impl Write, i: usize) -> fmt::Result {
    if i > 0 { out.write_char(',') } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::FindingEntry;

    /// The report's lines as pid 4242 writes them, text then JSON.
    fn rendered_lines(report: &Report) -> Vec<String> {
        let mut text = String::new();
        write_text(report, 4242, &mut text).unwrap();
        let mut json = String::new();
        write_json(report, 4242, &mut json).unwrap();
        text.lines()
            .chain(json.lines())
            .map(str::to_owned)
            .collect()
    }

    /// The report with findings documented in docs/log-format.md ("Findings in the exit
    /// report"), text and JSON.
    #[test]
    fn the_documented_report_with_findings() {
        let doc = include_str!("../../docs/log-format.md");
        let section = doc
            .split("## Findings in the exit report")
            .nth(1)
            .expect("the section");
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| l.starts_with("shmtrace[") || l.starts_with('{'))
            .collect();
        let report = Report {
            findings: vec![FindingEntry {
                code: "SHM001",
                name: "world-accessible",
                severity: "error",
                error: true,
                func: "shmget",
                site: 0x55d0_c0a0_1234,
                count: 1,
                message: "segment shmid=65538 was created with mode 0666, so any local user can \
                          read or corrupt it; create it with mode 0600 (or 0660 to share it with \
                          a group)"
                    .into(),
            }],
            finding_totals: [1, 0, 0],
            ..Report::default()
        };
        assert!(!report.is_clean(), "an error finding is not clean");
        assert_eq!(documented, rendered_lines(&report));
    }

    /// The report with retained mappings documented in docs/log-format.md, text and JSON.
    #[test]
    fn the_documented_report_with_retained_mappings() {
        let doc = include_str!("../../docs/log-format.md");
        let section = doc
            .split("## Mappings retained by allocators")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("the section");
        // Fenced, not indented: the record-format tests read every indented example line.
        let documented: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with("shmtrace[") || l.starts_with('{'))
            .collect();
        let report = Report {
            retained: vec![crate::ledger::Retained {
                module: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into(),
                count: 6,
                bytes: 17_825_792,
            }],
            ..Report::default()
        };
        assert!(report.is_clean() && report.leaks() == 0);
        assert_eq!(documented, rendered_lines(&report));
    }

    #[test]
    fn module_paths_stay_valid_json() {
        let report = Report {
            retained: vec![crate::ledger::Retained {
                module: "/tmp/a \"b\\c\u{1}/libjemalloc.so.2".into(),
                count: 1,
                bytes: 4096,
            }],
            ..Report::default()
        };
        let mut json = String::new();
        write_json(&report, 1, &mut json).unwrap();
        assert!(
            json.contains(r#""module":"/tmp/a \"b\\c\u0001/libjemalloc.so.2""#),
            "{json}"
        );
    }

    #[test]
    fn warnings_alone_keep_the_report_clean_and_none_change_nothing() {
        let mut report = Report {
            finding_totals: [0, 2, 1],
            ..Report::default()
        };
        assert!(report.is_clean() && report.has_findings());
        report.finding_totals = [0; 3];
        let mut json = String::new();
        write_json(&report, 1, &mut json).unwrap();
        assert!(!json.contains("findings"), "{json}");
    }
}

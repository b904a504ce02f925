//! Attachments and mappings still pointed into at exit (not leaks unless `--leaks all`), and
//! what finding that out cost.

use std::fmt::Write as _;

use super::table::Table;
use super::words::{duration, site_text, stack_lines};
use super::{Style, section};
use crate::merge::Report;

/// One row per attachment and per mapping call site, then the cost of the pointer scans.
pub(super) fn reachable(out: &mut String, report: &Report, style: Style) {
    let v = &report.verdict;
    if !report.reachable.is_empty() {
        let counted = if v.count_reachable {
            "counted as leaks (--leaks all)"
        } else {
            "not leaks (--leaks all counts them)"
        };
        section(
            out,
            style,
            &format!("still reachable at exit, {counted}: something still pointed into them"),
        );
        let mut table = Table::new(&[false, false, true, true, false]);
        table.header(style, &["PID", "KIND", "COUNT", "BYTES", "MADE AT"]);
        for r in &report.reachable {
            let kind = match (r.shmid, &r.object) {
                (Some(shmid), _) => format!("attachment shmid={shmid}"),
                (None, Some(object)) => format!("mapping of {object}"),
                (None, None) => "mapping".to_string(),
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
        if report.reachable.is_empty() {
            out.push('\n');
        }
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

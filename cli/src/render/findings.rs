//! The audit findings section.

use std::fmt::Write as _;

use super::table::Table;
use super::verdict::findings_text;
use super::words::{pid_list, site_text};
use super::{Style, section};
use crate::merge::Report;

/// Audit findings, by code and call site.
pub(super) fn findings(out: &mut String, report: &Report, style: Style) {
    if report.findings.is_empty() && report.verdict.findings.suppressed == 0 {
        return;
    }
    section(
        out,
        style,
        &format!(
            "findings ({}; explained in docs/findings.md)",
            findings_text(&report.verdict)
        ),
    );
    let mut table = Table::new(&[false, false, true, false, false]);
    table.header(style, &["CODE", "SEVERITY", "COUNT", "PID", "SITE"]);
    for f in &report.findings {
        let severity = match f.severity.as_str() {
            "error" => style.bad(&f.severity),
            "warning" => style.warn(&f.severity),
            _ => f.severity.clone(),
        };
        table.row_with_notes(
            vec![
                format!("{} {}", f.code, style.dim(&f.name)),
                severity,
                f.count.to_string(),
                pid_list(&f.pids),
                format!("{}: {}", f.func, site_text(style, f.site.as_ref())),
            ],
            vec![f.message.clone()],
        );
    }
    if !report.findings.is_empty() {
        table.write(out, "  ");
    }
    if report.verdict.findings.suppressed > 0 {
        let _ = writeln!(
            out,
            "  ({} suppressed by SHMTRACE_SUPPRESS)",
            report.verdict.findings.suppressed
        );
    }
}

//! What the processes left behind: SysV objects, attachments, mappings, and what allocators
//! kept (not leaks).

use std::fmt::Write as _;

use super::table::Table;
use super::words::{base_name, presence_text, site_text, stack_lines};
use super::{Style, section};
use crate::kernel::Presence;
use crate::merge::{Kind, Report};

/// SysV objects created and never removed, and whether the kernel still has them.
pub(super) fn sysv_leaks(out: &mut String, report: &Report, style: Style) {
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
    section(out, style, &header);
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
}

/// Segments still attached at exit, per process.
pub(super) fn attachments(out: &mut String, report: &Report, style: Style) {
    if report.attachments.is_empty() {
        return;
    }
    section(
        out,
        style,
        "attachments never detached (exit detaches them silently)",
    );
    let mut table = Table::new(&[false, false, false, true, false, false]);
    table.header(
        style,
        &["PID", "SHMID", "ADDRESS", "SIZE", "MODE", "ATTACHED AT"],
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
    table.write(out, "  ");
}

/// Mappings never unmapped, per process and call site.
pub(super) fn mappings(out: &mut String, report: &Report, style: Style) {
    if report.mappings.is_empty() {
        return;
    }
    section(
        out,
        style,
        "mappings never unmapped, by call site (exit unmaps them silently)",
    );
    let mut table = Table::new(&[false, true, true, false]);
    table.header(style, &["PID", "MAPPINGS", "BYTES", "MAPPED AT"]);
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
    table.write(out, "  ");
}

/// Mappings allocators kept for reuse, per process and allocator.
pub(super) fn retained(out: &mut String, report: &Report, style: Style) {
    if report.retained.is_empty() {
        return;
    }
    section(
        out,
        style,
        "retained by allocators, not leaks (address space an allocator keeps for reuse; \
             SHMTRACE_ALLOCATORS=none counts them)",
    );
    let mut table = Table::new(&[false, true, true, false]);
    table.header(style, &["PID", "MAPPINGS", "BYTES", "ALLOCATOR"]);
    for r in &report.retained {
        table.row(vec![
            r.pid.to_string(),
            r.count.to_string(),
            r.bytes.to_string(),
            r.module.clone(),
        ]);
    }
    table.write(out, "  ");
}

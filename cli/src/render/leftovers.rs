//! What the processes left behind: SysV objects, attachments, mappings, and what allocators
//! kept (not leaks).

use std::fmt::Write as _;

use super::table::Table;
use super::words::{
    base_name, grouped_stack_lines, name_presence_text, presence_text, site_text, stack_lines,
};
use super::{Style, section};
use crate::kernel::Presence;
use crate::merge::{Kind, Report, SysvLeak, UnseenKind, stacks};
use crate::symbols::Symbol;

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
        object_head(out, leak, style, style.bad(leak.kind.name()));
        let flag = match leak.kind {
            Kind::Segment => "-m",
            Kind::SemaphoreSet => "-s",
            Kind::MessageQueue => "-q",
        };
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

/// POSIX shared memory and semaphore names created and never unlinked, and whether
/// `/dev/shm` still holds them.
pub(super) fn name_leaks(out: &mut String, report: &Report, style: Style) {
    if report.names.is_empty() {
        return;
    }
    section(out, style, "POSIX names created and never unlinked");
    for leak in &report.names {
        let _ = writeln!(out, "  {} {}", style.bad(leak.kind.name()), leak.name);
        created_by(
            out,
            style,
            leak.pid,
            leak.exe.as_deref(),
            &leak.site,
            &leak.stack,
        );
        let _ = match leak.presence {
            Presence::Exists => writeln!(
                out,
                "      {} (rm {})",
                style.bad("never unlinked, still exists"),
                leak.path
            ),
            _ => writeln!(
                out,
                "      never unlinked; {}",
                name_presence_text(leak.presence, &leak.path)
            ),
        };
    }
}

/// A SysV object's first lines: kind (as painted), id, key and size; who created it, where,
/// and the stack above.
fn object_head(out: &mut String, o: &SysvLeak, style: Style, kind: String) {
    let _ = match o.kind {
        Kind::Segment => writeln!(out, "  {kind} shmid={} key={} size={}", o.id, o.key, o.size),
        Kind::SemaphoreSet => {
            writeln!(
                out,
                "  {kind} semid={} key={} nsems={}",
                o.id, o.key, o.size
            )
        }
        Kind::MessageQueue => {
            let held = o.queued.map_or(String::new(), |(messages, bytes)| {
                format!(
                    " holding {messages} {} ({bytes} bytes)",
                    if messages == 1 { "message" } else { "messages" }
                )
            });
            writeln!(out, "  {kind} msqid={} key={}{held}", o.id, o.key)
        }
    };
    created_by(out, style, o.pid, o.exe.as_deref(), &o.site, &o.stack);
}

/// Who created a leftover, where, and the stack above.
fn created_by(
    out: &mut String,
    style: Style,
    pid: i32,
    exe: Option<&str>,
    site: &Symbol,
    stack: &[Symbol],
) {
    let exe = exe.map_or(String::new(), |e| format!(" ({})", base_name(e)));
    let _ = writeln!(
        out,
        "      created by {pid}{exe} at {}",
        site_text(style, Some(site))
    );
    for line in stack_lines(style, stack) {
        let _ = writeln!(out, "          {line}");
    }
}

/// SysV objects left behind that running processes of the tree still use: not leaks.
pub(super) fn in_use(out: &mut String, report: &Report, style: Style) {
    if report.in_use.is_empty() {
        return;
    }
    section(
        out,
        style,
        "SysV objects in use by running processes (not leaks)",
    );
    for o in &report.in_use {
        object_head(out, o, style, o.kind.name().to_string());
        let users: Vec<String> = o
            .users
            .iter()
            .map(|u| match &u.exe {
                Some(exe) => format!("pid {} ({})", u.pid, base_name(exe)),
                None => format!("pid {}", u.pid),
            })
            .collect();
        let _ = writeln!(
            out,
            "      {}",
            style.good(&format!("in use by {}", users.join(", ")))
        );
    }
}

/// What the kernel holds that no log recorded: made by the tree out of the shim's sight.
pub(super) fn not_seen(out: &mut String, report: &Report, style: Style) {
    if report.not_seen.is_empty() {
        return;
    }
    section(
        out,
        style,
        "in the kernel, not seen by the shim (static binary, setuid program or raw system call)",
    );
    for u in &report.not_seen {
        let key = u.key.map_or(String::new(), |k| {
            format!(" key={}", crate::kernel::key_text(k))
        });
        let pid = u.pid.map_or("?".into(), |p| p.to_string());
        let line = match u.what {
            UnseenKind::Segment => format!(
                "segment shmid={}{key} size={}, created by {pid} (ipcrm -m {})",
                u.id, u.size, u.id
            ),
            UnseenKind::SemaphoreSet => format!(
                "semaphore set semid={}{key} nsems={}, created during the run{} (ipcrm -s {})",
                u.id,
                u.size,
                u.pid
                    .map_or(String::new(), |p| format!(", last used by {p}")),
                u.id
            ),
            UnseenKind::MessageQueue => format!(
                "message queue msqid={}{key} holding {} bytes, created during the run{} (ipcrm -q {})",
                u.id,
                u.size,
                u.pid
                    .map_or(String::new(), |p| format!(", last used by {p}")),
                u.id
            ),
            UnseenKind::Attachment => format!(
                "attachment of shmid={} (size {}) in running process {pid}",
                u.id, u.size
            ),
        };
        let _ = writeln!(out, "  {}", style.bad(&line));
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

/// Mappings never unmapped, per process and call site (one row per site, however many stacks
/// reached it).
pub(super) fn mappings(out: &mut String, report: &Report, style: Style) {
    if report.mappings.is_empty() {
        return;
    }
    section(
        out,
        style,
        "mappings never unmapped, by call site (exit unmaps them silently)",
    );
    // The column of shared memory objects only when a mapping maps one.
    let objects = report.mappings.iter().any(|m| m.object.is_some());
    let (align, header): (&[bool], &[&str]) = if objects {
        (
            &[false, true, true, false, false],
            &["PID", "MAPPINGS", "BYTES", "OBJECT", "MAPPED AT"],
        )
    } else {
        (
            &[false, true, true, false],
            &["PID", "MAPPINGS", "BYTES", "MAPPED AT"],
        )
    };
    let mut table = Table::new(align);
    table.header(style, header);
    for g in stacks::by_site(&report.mappings) {
        let mut row = vec![g.pid.to_string(), g.count.to_string(), g.bytes.to_string()];
        if objects {
            row.push(g.object.unwrap_or("-").to_string());
        }
        row.push(site_text(style, g.site));
        table.row_with_notes(row, grouped_stack_lines(style, &g.stacks));
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

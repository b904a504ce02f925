//! Blocked semops: who waits for whom, and the deadlocks.

use std::fmt::Write as _;

use super::words::site_text;
use super::{Style, section};
use crate::merge::{DEADLOCK, Deadlock, Hangs, HolderState, HolderView, Party, Report, WaitView};

fn party(p: &Party) -> String {
    match &p.program {
        Some(program) => format!("pid {} ({program})", p.pid),
        None => format!("pid {}", p.pid),
    }
}

/// `semid 3 sem 0 (value 0, needs 1)`, `semid 3 sem 0 to reach zero (value 1)`.
fn wanted(w: &WaitView) -> String {
    let Some(num) = w.num else {
        return format!("semid {} (its operations are not known)", w.semid);
    };
    let value = w.value.map_or_else(|| "?".to_string(), |v| v.to_string());
    if w.op == 0 {
        format!("semid {} sem {num} to reach zero (value {value})", w.semid)
    } else {
        format!(
            "semid {} sem {num} (value {value}, needs {})",
            w.semid,
            -i32::from(w.op)
        )
    }
}

/// `(-1, no SEM_UNDO)`, `(-1, SEM_UNDO gives 1 back at exit)`, `(+1)`.
fn holding(h: &HolderView, wait_for_zero: bool) -> String {
    let net = if wait_for_zero {
        format!("+{}", h.net)
    } else {
        h.net.to_string()
    };
    if wait_for_zero {
        format!("({net})")
    } else if h.state == HolderState::ExitedHolding {
        format!("({net} after its exit)")
    } else if h.adjustment == 0 {
        format!("({net}, no SEM_UNDO)")
    } else {
        format!("({net}, SEM_UNDO gives {} back at exit)", h.adjustment)
    }
}

fn held_by(style: Style, w: &WaitView, h: &HolderView) -> String {
    let verb = if w.op == 0 { "raised" } else { "taken" };
    format!(
        "{verb} by {} at {} {}",
        party(&h.party),
        site_text(style, h.site.as_ref()),
        holding(h, w.op == 0)
    )
}

fn waits_at(style: Style, w: &WaitView) -> String {
    format!(
        "{} waits at {} for {}",
        party(&w.waiter),
        site_text(style, w.site.as_ref()),
        wanted(w)
    )
}

/// One line per step of the cycle (`style` plain: the one-line form of the JSON).
fn deadlock_steps(style: Style, hangs: &Hangs, d: &Deadlock) -> Vec<String> {
    d.steps
        .iter()
        .map(|s| {
            let w = &hangs.waits[s.wait];
            format!(
                "{}, {}",
                waits_at(style, w),
                held_by(style, w, &w.holders[s.holder])
            )
        })
        .collect()
}

/// The whole cycle on one line, as the JSON and the finding raised during the run give it.
pub fn deadlock_text(hangs: &Hangs, d: &Deadlock) -> String {
    let steps = deadlock_steps(Style { color: false }, hangs, d);
    format!("deadlock: {}", steps.join("; "))
}

/// Each semaphore a blocked call waits for, and who holds it.
pub(super) fn waits(out: &mut String, report: &Report, style: Style) {
    let hangs = &report.hangs;
    if hangs.waits.is_empty() {
        return;
    }
    section(out, style, "who waits for whom");
    for w in &hangs.waits {
        let _ = write!(out, "  {}", waits_at(style, w));
        if w.num.is_some() && w.holders.is_empty() {
            let _ = write!(out, ": no process of the tree holds it");
        }
        out.push('\n');
        for h in &w.holders {
            let _ = writeln!(out, "      {}: {}", held_by(style, w, h), h.state.label());
        }
    }
}

/// Semops woken because their set was removed while they waited.
pub(super) fn woken(out: &mut String, report: &Report, style: Style) {
    if report.hangs.woken.is_empty() {
        return;
    }
    section(out, style, "waits ended by removal (EIDRM)");
    for w in &report.hangs.woken {
        let _ = writeln!(
            out,
            "  {} at {}: semid {} was removed while it waited",
            party(&w.waiter),
            site_text(style, w.site.as_ref()),
            w.semid
        );
    }
}

/// Every cycle of processes waiting for each other, step by step.
pub(super) fn deadlocks(out: &mut String, report: &Report, style: Style) {
    let hangs = &report.hangs;
    if hangs.deadlocks.is_empty() {
        return;
    }
    section(
        out,
        style,
        &format!("deadlocks ({})", hangs.deadlocks.len()),
    );
    for d in &hangs.deadlocks {
        let _ = writeln!(
            out,
            "  {} {} of {} processes:",
            DEADLOCK.0,
            style.bad("deadlock"),
            d.steps.len()
        );
        let steps = deadlock_steps(style, hangs, d);
        let last = steps.len().saturating_sub(1);
        for (i, step) in steps.iter().enumerate() {
            let end = if i == last { "" } else { ";" };
            let _ = writeln!(out, "    {step}{end}");
        }
    }
}

//! The report's "who waits for whom" and "deadlocks" sections, in text and in JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::merge::{Deadlock, Hangs, HolderState, HolderView, Party, WaitView};
use crate::render::{Style, site_text};

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

pub fn text(hangs: &Hangs, style: Style) -> String {
    let mut out = String::new();
    if hangs.waits.is_empty() {
        return out;
    }
    out.push('\n');
    let _ = writeln!(out, "{}", style.heading("who waits for whom"));
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
    if !hangs.deadlocks.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{}",
            style.heading(&format!("deadlocks ({})", hangs.deadlocks.len()))
        );
        for d in &hangs.deadlocks {
            let _ = writeln!(
                out,
                "  {} of {} processes:",
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
    out
}

fn party_json(p: &Party) -> Value {
    json!({"pid": p.pid, "program": p.program})
}

fn site_json(s: Option<&crate::symbols::Symbol>) -> Value {
    s.map_or(Value::Null, crate::json::site)
}

pub fn json(hangs: &Hangs) -> Value {
    let edges: Vec<Value> = hangs
        .waits
        .iter()
        .map(|w| {
            let holders: Vec<Value> = w
                .holders
                .iter()
                .map(|h| {
                    json!({
                        "holder": party_json(&h.party), "net": h.net,
                        "sem_undo_adjustment": h.adjustment, "site": site_json(h.site.as_ref()),
                        "state": h.state.label(),
                    })
                })
                .collect();
            json!({
                "waiter": party_json(&w.waiter), "tid": w.tid,
                "site": site_json(w.site.as_ref()), "semid": w.semid, "sem": w.num,
                "op": w.num.map(|_| w.op), "value": w.value, "holders": holders,
            })
        })
        .collect();
    let plain = Style { color: false };
    let deadlocks: Vec<Value> = hangs
        .deadlocks
        .iter()
        .map(|d| {
            json!({
                "pids": d.steps.iter().map(|s| hangs.waits[s.wait].waiter.pid).collect::<Vec<_>>(),
                "edges": d.steps.iter().map(|s| s.wait).collect::<Vec<_>>(),
                "text": format!("deadlock: {}", deadlock_steps(plain, hangs, d).join("; ")),
            })
        })
        .collect();
    json!({"edges": edges, "deadlocks": deadlocks})
}

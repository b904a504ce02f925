//! The report's words for numbers, times, calls, call sites and kernel states.

use std::path::Path;

use serde_json::Value;

use super::Style;
use crate::kernel::Presence;
use crate::logs::Micros;
use crate::symbols::Symbol;

pub fn base_name(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
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
pub(super) fn clock_time(ts: Micros) -> String {
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

pub(super) fn site_text(style: Style, site: Option<&Symbol>) -> String {
    site.map_or_else(|| style.dim("?"), |s| style.site(&s.text()))
}

/// The frames above a call site (`--stack`), innermost first, one line each:
/// `called from first_leaf (app.c:35)`.
pub(super) fn stack_lines(style: Style, stack: &[Symbol]) -> Vec<String> {
    stack
        .iter()
        .map(|s| format!("{} {}", style.dim("called from"), style.site(&s.text())))
        .collect()
}

/// The distinct stacks that reached one site, the most common first: all of them when there is
/// one, else each with its count, at most `STACKS_SHOWN` (the JSON report has every one).
pub(super) fn grouped_stack_lines(style: Style, stacks: &[(u64, &[Symbol])]) -> Vec<String> {
    const STACKS_SHOWN: usize = 3;
    if let [(_, only)] = stacks {
        return stack_lines(style, only);
    }
    let mut lines = Vec::new();
    for (count, stack) in stacks.iter().take(STACKS_SHOWN) {
        lines.push(style.dim(&format!(
            "{} through:",
            plural(*count, "mapping", "mappings")
        )));
        lines.extend(
            stack_lines(style, stack)
                .into_iter()
                .map(|l| format!("  {l}")),
        );
    }
    if stacks.len() > STACKS_SHOWN {
        let rest: u64 = stacks[STACKS_SHOWN..].iter().map(|(n, _)| n).sum();
        lines.push(style.dim(&format!(
            "{} through {} other stacks (--json lists every stack)",
            plural(rest, "mapping", "mappings"),
            stacks.len() - STACKS_SHOWN
        )));
    }
    lines
}

/// Pids in a row: the first few, then how many more.
pub(super) fn pid_list(pids: &[i32]) -> String {
    const SHOWN: usize = 6;
    let mut text: Vec<String> = pids.iter().take(SHOWN).map(i32::to_string).collect();
    if pids.len() > SHOWN {
        text.push(format!("+{} more", pids.len() - SHOWN));
    }
    text.join(",")
}

pub(super) fn presence_text(p: Presence) -> &'static str {
    match p {
        Presence::Exists => "still exists",
        Presence::MarkedForRemoval => "marked for removal, still attached somewhere",
        Presence::Gone => "no longer exists (removed outside the traced processes)",
        Presence::Reused => {
            "no longer exists (removed outside the traced processes; its id now names another object)"
        }
        Presence::Unknown => "existence unknown (/proc/sysvipc unreadable)",
    }
}

/// What `/dev/shm` says of a name the tree left (see [`crate::kernel::dev_shm_file`]).
pub(super) fn name_presence_text(p: Presence, path: &str) -> String {
    match p {
        Presence::Exists | Presence::MarkedForRemoval => format!("{path} still exists"),
        Presence::Gone => format!("{path} no longer exists (removed outside the traced processes)"),
        Presence::Reused => format!(
            "{path} no longer exists (removed outside the traced processes; the file there now was made later)"
        ),
        Presence::Unknown => format!("existence unknown ({path} could not be asked)"),
    }
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
    fn long_pid_lists_are_cut() {
        assert_eq!(pid_list(&[1, 2]), "1,2");
        let many: Vec<i32> = (1..=1000).collect();
        assert_eq!(pid_list(&many), "1,2,3,4,5,6,+994 more");
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
}

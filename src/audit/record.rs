//! The finding record, written when a finding happens (docs/log-format.md, "Findings").
//!
//!     shmtrace[4242] 1764168062.123456 finding SHM001 error (world-accessible) in shmget: MESSAGE site=0x55d0c0a01234
//!     {"event":"finding","pid":4242,"tid":4242,"ts":1764168062.123456,"code":"SHM001","name":"world-accessible","severity":"error","fn":"shmget","site":"0x55d0c0a01234","message":"MESSAGE"}
//!
//! Messages are ASCII made by this crate without quotes or backslashes: no escaping needed.

use core::fmt::{self, Write};

use super::codes::Finding;
use shmtrace_core::trace::format::{Format, write_timestamp};
use shmtrace_core::trace::linebuf::LineBuf;

/// A finding and who found it when.
pub struct Record<'a> {
    pub pid: i32,
    pub tid: i32,
    pub ts_ns: u64,
    pub finding: &'a Finding,
}

/// Appends the record, without the trailing newline.
pub fn write(format: Format, rec: &Record<'_>, out: &mut LineBuf) {
    // A LineBuf never fails a write (it cuts the line instead).
    let _ = match format {
        Format::Text => write_text(rec, out),
        Format::Json => write_json(rec, out),
    };
}

fn write_text(rec: &Record<'_>, out: &mut impl Write) -> fmt::Result {
    let f = rec.finding;
    if rec.tid == rec.pid || rec.tid == 0 {
        write!(out, "shmtrace[{}] ", rec.pid)?;
    } else {
        write!(out, "shmtrace[{}:{}] ", rec.pid, rec.tid)?;
    }
    write_timestamp(out, rec.ts_ns)?;
    write!(
        out,
        " finding {} {} ({}) in {}: ",
        f.code.code(),
        f.severity().name(),
        f.code.name(),
        f.func.name()
    )?;
    f.write_message(out)?;
    write!(out, " site={:#x}", f.site)
}

fn write_json(rec: &Record<'_>, out: &mut impl Write) -> fmt::Result {
    let f = rec.finding;
    write!(
        out,
        "{{\"event\":\"finding\",\"pid\":{},\"tid\":{},\"ts\":",
        rec.pid, rec.tid
    )?;
    write_timestamp(out, rec.ts_ns)?;
    write!(
        out,
        ",\"code\":\"{}\",\"name\":\"{}\",\"severity\":\"{}\",\"fn\":\"{}\",\"site\":\"{:#x}\",\"message\":\"",
        f.code.code(),
        f.code.name(),
        f.severity().name(),
        f.func.name(),
        f.site
    )?;
    f.write_message(out)?;
    out.write_str("\"}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::codes::{Code, what};
    use shmtrace_core::trace::event::Func;

    fn rec(format: Format, tid: i32) -> String {
        let finding = Finding::new(
            Code::WorldAccessible,
            Func::Shmget,
            0x55d0_c0a0_1234,
            [what::SEGMENT, 65538, 0o666],
        );
        let r = Record {
            pid: 4242,
            tid,
            ts_ns: 1_764_168_062_123_456_789,
            finding: &finding,
        };
        let mut line = LineBuf::new();
        write(format, &r, &mut line);
        line.as_str().to_owned()
    }

    const MESSAGE: &str = "segment shmid=65538 was created with mode 0666, so any local user can \
                           read or corrupt it; create it with mode 0600 (or 0660 to share it with a group)";

    #[test]
    fn text() {
        assert_eq!(
            rec(Format::Text, 4242),
            format!(
                "shmtrace[4242] 1764168062.123456 finding SHM001 error (world-accessible) in shmget: {MESSAGE} site=0x55d0c0a01234"
            )
        );
        assert!(rec(Format::Text, 4243).starts_with("shmtrace[4242:4243] "));
    }

    /// The examples in docs/log-format.md ("Findings") are what this module writes.
    #[test]
    fn documented_records() {
        let doc = include_str!("../../docs/log-format.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| {
                (l.starts_with("shmtrace[4242]") && l.contains(" finding "))
                    || l.starts_with(r#"{"event":"finding""#)
            })
            .collect();
        let finding = Finding::new(
            Code::WorldAccessible,
            Func::Shmget,
            0x55d0_c0a0_1234,
            [what::SEGMENT, 65538, 0o666],
        );
        let r = Record {
            pid: 4242,
            tid: 4242,
            ts_ns: 1_764_168_062_123_460_000,
            finding: &finding,
        };
        let made: Vec<String> = [Format::Text, Format::Json]
            .iter()
            .map(|&format| {
                let mut line = LineBuf::new();
                write(format, &r, &mut line);
                line.as_str().to_owned()
            })
            .collect();
        assert_eq!(documented, made);
    }

    #[test]
    fn json() {
        assert_eq!(
            rec(Format::Json, 4242),
            format!(
                "{{\"event\":\"finding\",\"pid\":4242,\"tid\":4242,\"ts\":1764168062.123456,\"code\":\"SHM001\",\"name\":\"world-accessible\",\"severity\":\"error\",\"fn\":\"shmget\",\"site\":\"0x55d0c0a01234\",\"message\":\"{MESSAGE}\"}}"
            )
        );
    }
}

//! Binary logs (`SHMTRACE_FORMAT=binary`) as the lines a text or JSON log would have held, for
//! `shmtrace decode FILE [--format text|json]` and for the merge, printed by the shim's own
//! formatting code (the `trace` modules are compiled into this command; the hooks are not).
//!
//! Records come in the order they were reserved: a call by when it started. A call that may
//! block gets its enter record then its call record, as in a text log; a call that was still in
//! progress when the process died (or exec'd from another thread) gets an enter record only
//! (`<unfinished ...>`, `"event":"enter"`), whatever the function.

use std::io::{self, Write};

use shmtrace_core::trace::binary::{self, Item, Reader};
use shmtrace_core::trace::format::{self, Format};
use shmtrace_core::trace::linebuf::LineBuf;

/// What a binary log held besides its records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    /// Calls started and never returned.
    pub in_progress: u64,
    /// Records a killed process had reserved but not written far enough to read.
    pub unfinished: u64,
    /// Records not stored because the log was full.
    pub lost: u64,
    /// Reading stopped at bytes that are not a record.
    pub damaged: bool,
}

/// Whether `data` is a binary log rather than text or JSON lines.
pub fn is_binary(data: &[u8]) -> bool {
    binary::is_binary_log(data)
}

/// Writes every record of the binary log `data` to `out`, one line each.
pub fn write_records(data: &[u8], json: bool, out: &mut impl Write) -> io::Result<Summary> {
    let mut reader = Reader::new(data)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not a shmtrace binary log"))?;
    let fmt = if json { Format::Json } else { Format::Text };
    let mut summary = Summary::default();
    let mut line = LineBuf::new();
    for item in reader.by_ref() {
        match item {
            Item::Call(ev) | Item::Waited(ev) => {
                let (events, n) = binary::as_logged(&ev, matches!(item, Item::Waited(_)));
                if ev.phase == shmtrace_core::trace::event::Phase::Enter {
                    summary.in_progress += 1;
                }
                for ev in &events[..n] {
                    line.clear();
                    format::write(fmt, ev, &mut line);
                    out.write_all(line.finish_line())?;
                    summary.records += 1;
                }
            }
            Item::Blob { text, json: j, .. } => {
                out.write_all(if json { j } else { text })?;
                summary.records += 1;
            }
        }
    }
    summary.unfinished = reader.unfinished;
    summary.lost = reader.lost();
    summary.damaged = reader.damaged;
    Ok(summary)
}

/// The notes a binary log deserves on stderr (nothing for a complete log).
pub fn notes(summary: &Summary) -> Vec<String> {
    let mut notes = Vec::new();
    if summary.lost > 0 {
        notes.push(format!(
            "{} records were not stored: the log was full (see the warning the program printed)",
            summary.lost
        ));
    }
    if summary.unfinished > 0 {
        notes.push(format!(
            "{} records were being written when their process died (left out)",
            summary.unfinished
        ));
    }
    if summary.damaged {
        notes.push("the log is damaged: reading stopped at bytes that are no record".into());
    }
    notes
}

/// `shmtrace decode`: the records on stdout, notes on stderr.
pub fn print(path: &std::path::Path, json: bool) -> Result<(), String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !is_binary(&data) {
        return Err(format!(
            "{}: not a shmtrace binary log (SHMTRACE_FORMAT=binary); text and JSON logs are \
             readable as they are",
            path.display()
        ));
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let summary = match write_records(&data, json, &mut out).and_then(|s| out.flush().map(|()| s)) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    for note in notes(&summary) {
        eprintln!("shmtrace: {}: {note}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmtrace_core::trace::binary::*;
    use shmtrace_core::trace::event::{Event, Func, Phase};

    fn log_with(records: &[(Event, bool)], blob: Option<(&[u8], &[u8])>) -> Vec<u8> {
        let mut data = vec![0u8; HEADER_SIZE];
        // The fixed layout of version 3: what is tested here is the printing.
        data[..8].copy_from_slice(&MAGIC_V3);
        if let Some((text, json)) = blob {
            let size = blob_size(text.len(), json.len());
            let at = data.len();
            data.resize(at + size, 0);
            let rec = &mut data[at..at + size];
            write_head(rec, TAG_BLOB);
            write_blob(rec, KIND_START, text, json);
            rec[STATE..STATE + 4].copy_from_slice(&STATE_DONE.to_ne_bytes());
        }
        for (ev, done) in records {
            let size = call_size(ev.func, &ev.args, ev.stack().len());
            let at = data.len();
            data.resize(at + size, 0);
            let rec = &mut data[at..at + size];
            write_head(rec, TAG_CALL);
            // A call in progress was written as it started, as the shim writes one that waits.
            let mut start = *ev;
            if !*done || ev.phase == Phase::Enter {
                start.phase = Phase::Enter;
            }
            write_call_start(rec, &start);
            let state = if *done { STATE_DONE } else { STATE_STARTED };
            if *done {
                let mut end = *ev;
                end.phase = Phase::Exit;
                write_call_end(rec, &end);
            }
            rec[STATE..STATE + 4].copy_from_slice(&state.to_ne_bytes());
        }
        let used = (data.len() - HEADER_SIZE) as u64;
        data[CURSOR_OFFSET..CURSOR_OFFSET + 8].copy_from_slice(&used.to_ne_bytes());
        data
    }

    fn event(func: Func, args: &[u64], ret: i64) -> Event {
        let mut ev = Event::new(Phase::Exit, func);
        ev.pid = 4242;
        ev.tid = 4242;
        ev.ts_ns = 1_764_168_062_123_480_000;
        ev.dur_ns = 2_000;
        ev.caller = 0x55d0_c0a0_1290;
        ev.args[..args.len()].copy_from_slice(args);
        ev.ret = ret;
        ev
    }

    fn lines_of(data: &[u8], json: bool) -> (String, Summary) {
        let mut out = Vec::new();
        let summary = write_records(data, json, &mut out).unwrap();
        (String::from_utf8(out).unwrap(), summary)
    }

    #[test]
    fn calls_print_exactly_as_the_documented_formats() {
        let mmap = event(
            Func::Mmap,
            &[0, 8192, 3, 0x22, u64::MAX, 0],
            0x7f3a_2bff_e000,
        );
        let data = log_with(
            &[(mmap, true)],
            Some((
                b"shmtrace[4242] start: /bin/x (parent 1)\n",
                b"{\"event\":\"start\"}\n",
            )),
        );
        let (text, summary) = lines_of(&data, false);
        assert_eq!(
            text,
            "shmtrace[4242] start: /bin/x (parent 1)\n\
             shmtrace[4242] 1764168062.123480 mmap(NULL, 8192, PROT_READ|PROT_WRITE, \
             MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f3a2bffe000 <0.000002> caller=0x55d0c0a01290\n"
        );
        assert_eq!(summary.records, 2);
        let (json, _) = lines_of(&data, true);
        let mut lines = json.lines();
        assert_eq!(lines.next(), Some("{\"event\":\"start\"}"));
        assert_eq!(
            lines.next(),
            Some(
                "{\"event\":\"call\",\"pid\":4242,\"tid\":4242,\"ts\":1764168062.123480,\
                 \"fn\":\"mmap\",\"args\":{\"addr\":null,\"length\":8192,\"prot\":\
                 \"PROT_READ|PROT_WRITE\",\"flags\":\"MAP_PRIVATE|MAP_ANONYMOUS\",\"fd\":-1,\
                 \"offset\":0},\"ret\":\"0x7f3a2bffe000\",\"errno\":null,\"dur_ns\":2000,\
                 \"caller\":\"0x55d0c0a01290\"}"
            )
        );
    }

    #[test]
    fn calls_that_waited_get_enter_then_call_and_calls_in_progress_enter_only() {
        let semop = event(Func::Semop, &[3, 0x7ffd_1c2e_3a50, 1], 0);
        // Written as started (it waited), then completed.
        let mut waited = semop;
        waited.phase = Phase::Enter;
        let munmap = event(Func::Munmap, &[0x7f3a_2bff_e000, 8192], 0);
        let data = log_with(
            &[
                (semop, true),
                (waited, true),
                (semop, false),
                (munmap, false),
            ],
            None,
        );
        let (text, summary) = lines_of(&data, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].contains("semop(3, 0x7ffd1c2e3a50, 1) = 0 <0.000002>"));
        assert!(lines[1].contains("semop(3, 0x7ffd1c2e3a50, 1) <unfinished ...>"));
        assert!(lines[2].contains("semop(3, 0x7ffd1c2e3a50, 1) = 0 <0.000002>"));
        assert!(lines[3].contains("semop(3, 0x7ffd1c2e3a50, 1) <unfinished ...>"));
        assert!(lines[4].contains("munmap(0x7f3a2bffe000, 8192) <unfinished ...>"));
        assert_eq!(summary.in_progress, 2);
        let (json, _) = lines_of(&data, true);
        let events: Vec<&str> = json
            .lines()
            .map(|l| {
                if l.starts_with("{\"event\":\"enter\"") {
                    "enter"
                } else {
                    "call"
                }
            })
            .collect();
        assert_eq!(events, ["call", "enter", "call", "enter", "enter"]);
    }

    #[test]
    fn text_and_json_logs_are_not_binary() {
        assert!(!is_binary(b"shmtrace[1] start: x (parent 0)\n"));
        assert!(!is_binary(b"{\"event\":\"start\"}\n"));
        let mut out = Vec::new();
        assert!(write_records(b"{}", false, &mut out).is_err());
    }
}

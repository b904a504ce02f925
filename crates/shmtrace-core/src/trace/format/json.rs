//! The JSON Lines record: one object per call, keys in the order docs/log-format.md lists.
//!
//! Every string written here is ASCII made by this crate (function names, flag names, hex,
//! digits, `|`, `<`, `(`, `*`, space), except the names of shared memory objects, which come
//! from the host and go through `json_string`.

use core::fmt::{self, Write};

use super::{Value, args, failure_word, object, write_timestamp};
use crate::trace::decode;
use crate::trace::event::{Event, Phase, SemOp, Timeout};
use crate::trace::linebuf::LineBuf;

/// Appends the JSON record for `ev`, without the trailing newline.
pub fn write(ev: &Event, out: &mut LineBuf) {
    // A LineBuf never fails a write (it cuts the line instead), so there is no error to report.
    let _ = write_record(ev, out);
}

fn write_record(ev: &Event, out: &mut impl Write) -> fmt::Result {
    let event = match ev.phase {
        Phase::Enter => "enter",
        Phase::Exit => "call",
    };
    write!(
        out,
        "{{\"event\":\"{event}\",\"pid\":{},\"tid\":{},\"ts\":",
        ev.pid, ev.tid
    )?;
    write_timestamp(out, ev.ts_ns)?;
    write!(out, ",\"fn\":\"{}\",\"args\":{{", ev.func.name())?;
    for (i, arg) in args(ev).iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        write!(out, "\"{}\":", arg.name)?;
        write_value(out, arg.value)?;
    }
    out.write_char('}')?;
    if ev.phase == Phase::Exit {
        out.write_str(",\"ret\":")?;
        write_ret(ev, out)?;
        out.write_str(",\"errno\":")?;
        write_errno(ev, out)?;
        write!(out, ",\"dur_ns\":{}", ev.dur_ns)?;
    }
    write!(out, ",\"caller\":\"{:#x}\"", ev.caller)?;
    write_stack(ev, out)?;
    if let Some(created) = ev.created() {
        write!(out, ",\"created\":{created}")?;
    }
    if let Some((bytes, _)) = object(ev) {
        out.write_str(",\"object\":")?;
        crate::trace::start::json_string(out, bytes)?;
    }
    out.write_char('}')
}

/// `,"stack":["0x55d0c0a01300",...]` when frames above the caller were recorded; nothing
/// otherwise (the default log is unchanged by the feature).
fn write_stack(ev: &Event, out: &mut impl Write) -> fmt::Result {
    let frames = ev.stack();
    if frames.is_empty() {
        return Ok(());
    }
    out.write_str(",\"stack\":[")?;
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        write!(out, "\"{frame:#x}\"")?;
    }
    out.write_char(']')
}

/// A number for `int` functions (`-1` on failure); a string for pointer-returning ones.
fn write_ret(ev: &Event, out: &mut impl Write) -> fmt::Result {
    if !ev.func.returns_pointer() {
        write!(out, "{}", ev.ret)
    } else if ev.failed() {
        write!(out, "\"{}\"", failure_word(ev.func))
    } else {
        write!(out, "\"{:#x}\"", ev.ret as u64)
    }
}

fn write_errno(ev: &Event, out: &mut impl Write) -> fmt::Result {
    if !ev.failed() {
        return out.write_str("null");
    }
    out.write_char('"')?;
    decode::errno_name(out, ev.errno)?;
    out.write_char('"')
}

fn write_value(out: &mut impl Write, value: Value<'_>) -> fmt::Result {
    match value {
        Value::Int(v) => write!(out, "{v}"),
        Value::Size(v) => write!(out, "{v}"),
        Value::Ptr(0) => out.write_str("null"),
        Value::Ptr(p) => write!(out, "\"{p:#x}\""),
        // `off_t` is signed; a JSON reader wants the number the caller passed.
        Value::Offset(o) => write!(out, "{}", o as i64),
        Value::Decoded(d) => {
            out.write_char('"')?;
            d.write(out)?;
            out.write_char('"')
        }
        Value::Sops { ops, .. } => write_sops(out, ops),
        Value::Timeout(t) => write_timeout(out, t),
        // A cut name reads as cut in text; JSON has `name` only, as it was kept.
        Value::Name { bytes, .. } => crate::trace::start::json_string(out, bytes),
    }
}

/// The kept `sembuf`s; `nsops` next to it says how many there were.
fn write_sops(out: &mut impl Write, ops: &[SemOp]) -> fmt::Result {
    out.write_char('[')?;
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        write!(
            out,
            "{{\"sem_num\":{},\"sem_op\":{},\"sem_flg\":\"",
            op.num, op.op
        )?;
        decode::sem_flg(out, op.flg)?;
        out.write_str("\"}")?;
    }
    out.write_char(']')
}

fn write_timeout(out: &mut impl Write, t: Timeout) -> fmt::Result {
    write!(out, "{{\"tv_sec\":{},\"tv_nsec\":{}}}", t.sec, t.nsec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::event::{Func, STACK_MAX, Stack};
    use crate::trace::format::fixtures::*;

    /// Panics unless `s` is exactly one well-formed JSON value (RFC 8259), whitespace aside.
    pub(crate) fn assert_valid_json(s: &str) {
        let mut p = Parser {
            s: s.as_bytes(),
            at: 0,
        };
        p.value()
            .unwrap_or_else(|e| panic!("{e} at byte {}: {s}", p.at));
        p.ws();
        assert_eq!(p.at, s.len(), "trailing bytes: {s}");
    }

    /// A recursive-descent well-formedness check; it builds nothing.
    struct Parser<'a> {
        s: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.at).copied()
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.at += 1;
            }
        }

        fn eat(&mut self, b: u8) -> Result<(), String> {
            self.ws();
            if self.peek() == Some(b) {
                self.at += 1;
                Ok(())
            } else {
                Err(format!("expected {:?}", b as char))
            }
        }

        fn value(&mut self) -> Result<(), String> {
            self.ws();
            match self.peek() {
                Some(b'{') => self.object(),
                Some(b'[') => self.array(),
                Some(b'"') => self.string(),
                Some(b'-' | b'0'..=b'9') => self.number(),
                Some(b't') => self.word("true"),
                Some(b'f') => self.word("false"),
                Some(b'n') => self.word("null"),
                _ => Err("expected a value".into()),
            }
        }

        fn word(&mut self, w: &str) -> Result<(), String> {
            if self.s[self.at..].starts_with(w.as_bytes()) {
                self.at += w.len();
                Ok(())
            } else {
                Err(format!("expected {w}"))
            }
        }

        fn object(&mut self) -> Result<(), String> {
            self.eat(b'{')?;
            self.ws();
            if self.peek() == Some(b'}') {
                self.at += 1;
                return Ok(());
            }
            loop {
                self.ws();
                self.string()?;
                self.eat(b':')?;
                self.value()?;
                self.ws();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        return Ok(());
                    }
                    _ => return Err("expected , or }".into()),
                }
            }
        }

        fn array(&mut self) -> Result<(), String> {
            self.eat(b'[')?;
            self.ws();
            if self.peek() == Some(b']') {
                self.at += 1;
                return Ok(());
            }
            loop {
                self.value()?;
                self.ws();
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b']') => {
                        self.at += 1;
                        return Ok(());
                    }
                    _ => return Err("expected , or ]".into()),
                }
            }
        }

        fn string(&mut self) -> Result<(), String> {
            self.eat(b'"')?;
            loop {
                match self.peek() {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => {
                        self.at += 1;
                        return Ok(());
                    }
                    Some(b'\\') => {
                        self.at += 1;
                        match self.peek() {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                                self.at += 1
                            }
                            Some(b'u') => {
                                self.at += 1;
                                for _ in 0..4 {
                                    self.digit(|c| c.is_ascii_hexdigit())?;
                                }
                            }
                            _ => return Err("bad escape".into()),
                        }
                    }
                    Some(c) if c < 0x20 => return Err("control character in string".into()),
                    Some(_) => self.at += 1,
                }
            }
        }

        fn digit(&mut self, ok: impl Fn(u8) -> bool) -> Result<(), String> {
            match self.peek() {
                Some(c) if ok(c) => {
                    self.at += 1;
                    Ok(())
                }
                _ => Err("expected a digit".into()),
            }
        }

        fn digits(&mut self) -> Result<(), String> {
            self.digit(|c| c.is_ascii_digit())?;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.at += 1;
            }
            Ok(())
        }

        fn number(&mut self) -> Result<(), String> {
            if self.peek() == Some(b'-') {
                self.at += 1;
            }
            if self.peek() == Some(b'0') {
                self.at += 1;
            } else {
                self.digits()?;
            }
            if self.peek() == Some(b'.') {
                self.at += 1;
                self.digits()?;
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.at += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.at += 1;
                }
                self.digits()?;
            }
            Ok(())
        }
    }

    #[test]
    fn the_validator_rejects_what_it_should() {
        for good in [
            "{}",
            "[]",
            r#"{"a":[1,-0.5,2e3,"x\"y",null,true,false,{}]}"#,
            r#""\u00e9""#,
        ] {
            assert_valid_json(good);
        }
        for bad in [
            "{",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            "[1,]",
            "01",
            "1.",
            "-",
            r#""a"#,
            "{a:1}",
            "{} {}",
            "0x10",
            r#"{"a":NULL}"#,
        ] {
            let r = std::panic::catch_unwind(|| assert_valid_json(bad));
            assert!(r.is_err(), "accepted {bad}");
        }
    }

    fn json(ev: &Event) -> String {
        let mut out = LineBuf::new();
        write(ev, &mut out);
        let line = out.as_str().to_owned();
        assert_valid_json(&line);
        line
    }

    /// The record for `ev` with the shared fixture fields spelled out, so a test only states
    /// what differs: `fn_`, `args`, and what follows `args` up to `caller`.
    fn expect(func: &str, args: &str, rest: &str) -> String {
        format!(
            "{{\"event\":\"call\",\"pid\":4242,\"tid\":4242,\"ts\":1764168062.123456,\"fn\":\"{func}\",\
             \"args\":{{{args}}},{rest}\"caller\":\"0x55d0c0a01234\"}}"
        )
    }

    const OK0: &str = "\"ret\":0,\"errno\":null,\"dur_ns\":12034,";

    fn fail(ret: &str, errno: &str) -> String {
        format!("\"ret\":{ret},\"errno\":\"{errno}\",\"dur_ns\":12034,")
    }

    #[test]
    fn every_doc_example_line() {
        // The JSON examples are those of the text examples but the shmat, the first mmap, the
        // shmctl and the semop enter record.
        let events = doc_examples();
        let made: Vec<String> = [0, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14]
            .iter()
            .map(|&i| json(&events[i]))
            .collect();
        assert_eq!(made, doc_lines("{\"event\""));
    }

    /// A successful get also says whether it created the object, after `caller`.
    fn with_created(line: String, created: bool) -> String {
        let body = line.strip_suffix('}').unwrap_or(&line);
        format!("{body},\"created\":{created}}}")
    }

    #[test]
    fn shmget() {
        let args = [int(0x4d2), 4096, int(libc::IPC_CREAT | 0o600)];
        let keys = r#""key":"0x4d2","size":4096,"shmflg":"IPC_CREAT|0600""#;
        let mut created = call(Func::Shmget, &args, 7);
        created.created = true;
        assert_eq!(
            json(&created),
            with_created(
                expect("shmget", keys, "\"ret\":7,\"errno\":null,\"dur_ns\":12034,"),
                true
            )
        );
        assert_eq!(
            json(&failed(Func::Shmget, &args, libc::EEXIST)),
            expect("shmget", keys, &fail("-1", "EEXIST"))
        );
    }

    #[test]
    fn shmat_returns_strings() {
        let args = [65538, 0, int(libc::SHM_RDONLY)];
        let keys = r#""shmid":65538,"shmaddr":null,"shmflg":"SHM_RDONLY""#;
        assert_eq!(
            json(&call(Func::Shmat, &args, 0x7f3a_2c00_0000)),
            expect(
                "shmat",
                keys,
                "\"ret\":\"0x7f3a2c000000\",\"errno\":null,\"dur_ns\":12034,"
            )
        );
        assert_eq!(
            json(&failed(Func::Shmat, &args, libc::EIDRM)),
            expect("shmat", keys, &fail("\"(void *) -1\"", "EIDRM"))
        );
    }

    #[test]
    fn shmdt() {
        assert_eq!(
            json(&call(Func::Shmdt, &[0x7f00_0000_0000], 0)),
            expect("shmdt", r#""shmaddr":"0x7f0000000000""#, OK0)
        );
        assert_eq!(
            json(&failed(Func::Shmdt, &[0], libc::EINVAL)),
            expect("shmdt", r#""shmaddr":null"#, &fail("-1", "EINVAL"))
        );
    }

    #[test]
    fn shmctl() {
        let args = [5, int(libc::IPC_STAT | 0x100), 0x7ffd_0000_0000];
        let keys = r#""shmid":5,"cmd":"IPC_64|IPC_STAT","buf":"0x7ffd00000000""#;
        assert_eq!(
            json(&call(Func::Shmctl, &args, 0)),
            expect("shmctl", keys, OK0)
        );
        assert_eq!(
            json(&failed(Func::Shmctl, &args, libc::EFAULT)),
            expect("shmctl", keys, &fail("-1", "EFAULT"))
        );
    }

    #[test]
    fn semget() {
        let args = [0, 2, int(libc::IPC_CREAT | 0o666)];
        let keys = r#""key":"IPC_PRIVATE","nsems":2,"semflg":"IPC_CREAT|0666""#;
        assert_eq!(
            json(&call(Func::Semget, &args, 9)),
            with_created(
                expect("semget", keys, "\"ret\":9,\"errno\":null,\"dur_ns\":12034,"),
                false
            )
        );
        assert_eq!(
            json(&failed(Func::Semget, &args, libc::ENOSPC)),
            expect("semget", keys, &fail("-1", "ENOSPC"))
        );
    }

    #[test]
    fn semop_sops_read_or_pointer() {
        let args = [3, 0x7ffd_0000_0010, 2];
        let undo = libc::SEM_UNDO as i16;
        assert_eq!(
            json(&with_sops(
                call(Func::Semop, &args, 0),
                &[(0, -1, undo), (1, 1, 0)]
            )),
            expect(
                "semop",
                r#""semid":3,"sops":[{"sem_num":0,"sem_op":-1,"sem_flg":"SEM_UNDO"},{"sem_num":1,"sem_op":1,"sem_flg":"0"}],"nsops":2"#,
                OK0
            )
        );
        assert_eq!(
            json(&failed(Func::Semop, &args, libc::E2BIG)),
            expect(
                "semop",
                r#""semid":3,"sops":"0x7ffd00000010","nsops":2"#,
                &fail("-1", "E2BIG")
            )
        );
    }

    #[test]
    fn semop_more_than_eight_sops_keeps_eight() {
        let ops: Vec<(u16, i16, i16)> = (0..8).map(|i| (i, -1, 0)).collect();
        let line = json(&with_sops(call(Func::Semop, &[3, 0x10, 100], 0), &ops));
        assert_eq!(line.matches("\"sem_num\"").count(), 8);
        assert!(line.contains(r#"{"sem_num":7,"sem_op":-1,"sem_flg":"0"}],"nsops":100}"#));
    }

    #[test]
    fn enter_records_have_no_result_show_the_operations_read_and_the_timeout_pointer() {
        let args = [3, 0x10, 1, 0x20];
        let ev = with_timeout(
            with_sops(enter(Func::Semtimedop, &args), &[(0, 0, 0)]),
            1,
            0,
        );
        assert_eq!(
            json(&ev),
            "{\"event\":\"enter\",\"pid\":4242,\"tid\":4242,\"ts\":1764168062.123456,\
             \"fn\":\"semtimedop\",\"args\":{\"semid\":3,\"sops\":[{\"sem_num\":0,\
             \"sem_op\":0,\"sem_flg\":\"0\"}],\"nsops\":1,\"timeout\":\"0x20\"},\
             \"caller\":\"0x55d0c0a01234\"}"
        );
        assert!(json(&enter(Func::Semtimedop, &args)).contains("\"sops\":\"0x10\""));
    }

    #[test]
    fn semtimedop_timeout_object_or_pointer() {
        let args = [3, 0x10, 1, 0x20];
        let ev = with_timeout(
            with_sops(call(Func::Semtimedop, &args, 0), &[(0, 0, 0)]),
            1,
            0,
        );
        assert_eq!(
            json(&ev),
            expect(
                "semtimedop",
                r#""semid":3,"sops":[{"sem_num":0,"sem_op":0,"sem_flg":"0"}],"nsops":1,"timeout":{"tv_sec":1,"tv_nsec":0}"#,
                OK0
            )
        );
        assert_eq!(
            json(&failed(Func::Semtimedop, &[3, 0x10, 1, 0], libc::EFAULT)),
            expect(
                "semtimedop",
                r#""semid":3,"sops":"0x10","nsops":1,"timeout":null"#,
                &fail("-1", "EFAULT")
            )
        );
    }

    #[test]
    fn semctl_fourth_argument_keys() {
        let cases = [
            (libc::SETVAL, r#","val":-2"#),
            (libc::GETALL, r#","array":"0x7ffd00000030""#),
            (libc::SETALL, r#","array":"0x7ffd00000030""#),
            (libc::IPC_STAT, r#","buf":"0x7ffd00000030""#),
            (libc::IPC_SET, r#","buf":"0x7ffd00000030""#),
            (libc::IPC_INFO, r#","buf":"0x7ffd00000030""#),
            (libc::SEM_STAT, r#","buf":"0x7ffd00000030""#),
            (libc::SEM_STAT_ANY, r#","buf":"0x7ffd00000030""#),
            (libc::SEM_INFO, r#","buf":"0x7ffd00000030""#),
            (libc::IPC_RMID, ""),
            (libc::GETVAL, ""),
            (libc::GETPID, ""),
            (libc::GETNCNT, ""),
            (libc::GETZCNT, ""),
        ];
        for (cmd, fourth) in cases {
            let arg = if cmd == libc::SETVAL {
                0xffff_fffe
            } else {
                0x7ffd_0000_0030
            };
            let mut name = String::new();
            decode::semctl_cmd(&mut name, cmd).unwrap();
            assert_eq!(
                json(&call(Func::Semctl, &[3, 0, int(cmd), arg], 0)),
                expect(
                    "semctl",
                    &format!(r#""semid":3,"semnum":0,"cmd":"{name}"{fourth}"#),
                    OK0
                )
            );
        }
        assert_eq!(
            json(&failed(
                Func::Semctl,
                &[3, 0, int(libc::IPC_RMID)],
                libc::EIDRM
            )),
            expect(
                "semctl",
                r#""semid":3,"semnum":0,"cmd":"IPC_RMID""#,
                &fail("-1", "EIDRM")
            )
        );
    }

    #[test]
    fn mmap_and_mmap64() {
        let flags = libc::MAP_SHARED | libc::MAP_HUGETLB | (21 << 26);
        let args = [
            0x7f00_0000_0000,
            4096,
            int(libc::PROT_READ),
            int(flags),
            4,
            0x3000,
        ];
        let keys = r#""addr":"0x7f0000000000","length":4096,"prot":"PROT_READ","flags":"MAP_SHARED|MAP_HUGETLB|MAP_HUGE_2MB","fd":4,"offset":12288"#;
        assert_eq!(
            json(&call(Func::Mmap64, &args, 0x7f00_0000_0000)),
            expect(
                "mmap64",
                keys,
                "\"ret\":\"0x7f0000000000\",\"errno\":null,\"dur_ns\":12034,"
            )
        );
        assert_eq!(
            json(&failed(Func::Mmap, &args, libc::ENOMEM)),
            expect("mmap", keys, &fail("\"MAP_FAILED\"", "ENOMEM"))
        );
    }

    #[test]
    fn munmap() {
        let keys = r#""addr":"0x7f0000000000","length":8192"#;
        assert_eq!(
            json(&call(Func::Munmap, &[0x7f00_0000_0000, 8192], 0)),
            expect("munmap", keys, OK0)
        );
        assert_eq!(
            json(&failed(Func::Munmap, &[0x7f00_0000_0000, 8192], 4000)),
            expect("munmap", keys, &fail("-1", "E4000"))
        );
    }

    #[test]
    fn mremap_new_address_only_with_fixed() {
        let moving = [0x1000, 4096, 8192, int(libc::MREMAP_MAYMOVE), 0x9000];
        assert_eq!(
            json(&call(Func::Mremap, &moving, 0x5000)),
            expect(
                "mremap",
                r#""old_address":"0x1000","old_size":4096,"new_size":8192,"flags":"MREMAP_MAYMOVE""#,
                "\"ret\":\"0x5000\",\"errno\":null,\"dur_ns\":12034,"
            )
        );
        let fixed = [
            0x1000,
            4096,
            8192,
            int(libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED),
            0x9000,
        ];
        assert_eq!(
            json(&failed(Func::Mremap, &fixed, libc::EINVAL)),
            expect(
                "mremap",
                r#""old_address":"0x1000","old_size":4096,"new_size":8192,"flags":"MREMAP_MAYMOVE|MREMAP_FIXED","new_address":"0x9000""#,
                &fail("\"MAP_FAILED\"", "EINVAL")
            )
        );
    }

    #[test]
    fn thread_id_and_negative_offset() {
        let mut ev = call(
            Func::Mmap,
            &[0, 1, 0, 0x22, int(-1), -4096i64 as u64],
            0x1000,
        );
        ev.tid = 4243;
        let line = json(&ev);
        assert!(line.starts_with(r#"{"event":"call","pid":4242,"tid":4243,"#));
        assert!(line.contains(r#""fd":-1,"offset":-4096}"#));
    }

    #[test]
    fn stack_right_after_caller_only_when_recorded() {
        let mut ev = created(call(
            Func::Shmget,
            &[0, 4096, int(libc::IPC_CREAT | 0o600)],
            7,
        ));
        assert!(!json(&ev).contains("stack"));
        ev.stack = Stack::from_slice(&[0x55d0_c0a0_1300, 0x7f3a_2bc2_9d90]);
        assert!(json(&ev).ends_with(
            r#","caller":"0x55d0c0a01234","stack":["0x55d0c0a01300","0x7f3a2bc29d90"],"created":true}"#
        ));
        let mut entering = enter(Func::Semop, &[3, 0x10, 1]);
        entering.stack = Stack::from_slice(&[0x55d0_c0a0_1300]);
        assert!(
            json(&entering).ends_with(r#","caller":"0x55d0c0a01234","stack":["0x55d0c0a01300"]}"#)
        );
    }

    #[test]
    fn a_full_stack_fits_in_the_longest_record() {
        let ops: Vec<(u16, i16, i16)> = (0..8).map(|i| (i, -32768, 0x7fff)).collect();
        let mut ev = with_timeout(
            with_sops(
                failed(
                    Func::Semtimedop,
                    &[int(-1), u64::MAX, u64::MAX, u64::MAX],
                    4000,
                ),
                &ops,
            ),
            i64::MIN,
            i64::MIN,
        );
        ev.ts_ns = u64::MAX;
        ev.dur_ns = u64::MAX;
        ev.caller = u64::MAX;
        ev.stack = Stack::from_slice(&[u64::MAX; STACK_MAX]);
        for format in [super::super::Format::Json, super::super::Format::Text] {
            let mut out = LineBuf::new();
            super::super::write(format, &ev, &mut out);
            let line = out.as_str().to_owned();
            assert!(
                line.ends_with(",0xffffffffffffffff")
                    || line.ends_with(r#""0xffffffffffffffff"]}"#),
                "cut: {line}"
            );
        }
    }

    #[test]
    fn every_sample_is_valid_json_with_keys_in_order() {
        for ev in samples() {
            let line = json(&ev);
            let keys: &[&str] = match ev.phase {
                Phase::Exit => &[
                    "event", "pid", "tid", "ts", "fn", "args", "ret", "errno", "dur_ns", "caller",
                ],
                Phase::Enter => &["event", "pid", "tid", "ts", "fn", "args", "caller"],
            };
            let mut from = 0;
            for key in keys {
                let quoted = format!("\"{key}\":");
                let at = line[from..]
                    .find(&quoted)
                    .unwrap_or_else(|| panic!("{key} missing or out of order: {line}"));
                from += at + quoted.len();
            }
        }
    }
}

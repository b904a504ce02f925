//! The strace-like text record:
//! `shmtrace[PID] SECONDS.MICROS FUNC(ARGS) = RESULT <DURATION> caller=0xADDR`.

use core::fmt::{self, Write};

use super::{Value, args, failure_word, num, object, write_duration, write_timestamp};
use crate::trace::decode;
use crate::trace::event::{Event, Phase, SemOp, Timeout};
use crate::trace::linebuf::LineBuf;

/// Appends the text record for `ev`, without the trailing newline.
pub fn write(ev: &Event, out: &mut LineBuf) {
    // A LineBuf never fails a write (it cuts the line instead), so there is no error to report.
    let _ = write_record(ev, out);
}

fn write_record(ev: &Event, out: &mut impl Write) -> fmt::Result {
    write_prefix(ev, out)?;
    out.write_char(' ')?;
    write_timestamp(out, ev.ts_ns)?;
    out.write_char(' ')?;
    out.write_str(ev.func.name())?;
    out.write_char('(')?;
    for (i, arg) in args(ev).iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        write_value(out, arg.value)?;
    }
    out.write_char(')')?;
    match ev.phase {
        Phase::Enter => out.write_str(" <unfinished ...>")?,
        Phase::Exit => {
            out.write_str(" = ")?;
            write_result(ev, out)?;
            if let Some((bytes, truncated)) = object(ev) {
                write!(out, " of {}", bytes.escape_ascii())?;
                if truncated {
                    out.write_str("...")?;
                }
            }
            out.write_str(" <")?;
            write_duration(out, ev.dur_ns)?;
            out.write_char('>')?;
        }
    }
    out.write_str(" caller=")?;
    num::hex(out, ev.caller)?;
    write_stack(ev, out)
}

/// ` stack=0x55d0c0a01300,0x55d0c0a01400` when frames above the caller were recorded.
fn write_stack(ev: &Event, out: &mut impl Write) -> fmt::Result {
    for (i, frame) in ev.stack().iter().enumerate() {
        out.write_str(if i == 0 { " stack=" } else { "," })?;
        num::hex(out, *frame)?;
    }
    Ok(())
}

/// `shmtrace[PID]`, or `shmtrace[PID:TID]` from a thread other than the main one.
fn write_prefix(ev: &Event, out: &mut impl Write) -> fmt::Result {
    out.write_str("shmtrace[")?;
    num::signed(out, ev.pid.into())?;
    if ev.tid != ev.pid {
        out.write_char(':')?;
        num::signed(out, ev.tid.into())?;
    }
    out.write_char(']')
}

/// `65538`, `0x7f3a2c000000`, or on failure `-1 EINVAL (Invalid argument)`.
fn write_result(ev: &Event, out: &mut impl Write) -> fmt::Result {
    if ev.failed() {
        out.write_str(failure_word(ev.func))?;
        out.write_char(' ')?;
        decode::errno_name(out, ev.errno)?;
        out.write_str(" (")?;
        decode::errno_message(out, ev.errno)?;
        out.write_char(')')
    } else if ev.func.returns_pointer() {
        num::hex(out, ev.ret as u64)
    } else {
        num::signed(out, ev.ret)
    }
}

fn write_value(out: &mut impl Write, value: Value<'_>) -> fmt::Result {
    match value {
        Value::Int(v) => num::signed(out, v.into()),
        Value::Long(v) => num::signed(out, v),
        Value::Size(v) => num::dec(out, v),
        Value::Ptr(p) => decode::pointer(out, p),
        Value::Offset(o) => decode::offset(out, o),
        Value::Decoded(d) => d.write(out),
        Value::Sops { ops, nsops } => write_sops(out, ops, nsops),
        Value::Timeout(t) => write_timeout(out, t),
        Value::Name { bytes, truncated } => {
            write!(out, "\"{}\"", bytes.escape_ascii())?;
            if truncated {
                out.write_str("...")?;
            }
            Ok(())
        }
    }
}

/// `[{0, -1, SEM_UNDO}, {1, 1, 0}]`, ending in `, ...` when `nsops` is more than were kept.
fn write_sops(out: &mut impl Write, ops: &[SemOp], nsops: u64) -> fmt::Result {
    out.write_char('[')?;
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        out.write_char('{')?;
        num::dec(out, op.num.into())?;
        out.write_str(", ")?;
        num::signed(out, op.op.into())?;
        out.write_str(", ")?;
        decode::sem_flg(out, op.flg)?;
        out.write_char('}')?;
    }
    if nsops > ops.len() as u64 {
        out.write_str(", ...")?;
    }
    out.write_char(']')
}

fn write_timeout(out: &mut impl Write, t: Timeout) -> fmt::Result {
    write!(out, "{{tv_sec={}, tv_nsec={}}}", t.sec, t.nsec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::event::{Func, Stack};
    use crate::trace::format::fixtures::*;

    fn text(ev: &Event) -> String {
        let mut out = LineBuf::new();
        write(ev, &mut out);
        out.as_str().to_owned()
    }

    /// The part after `shmtrace[4242] 1764168062.123456 `.
    fn body(ev: &Event) -> String {
        let line = text(ev);
        let prefix = "shmtrace[4242] 1764168062.123456 ";
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned()
    }

    const TAIL: &str = " <0.000012> caller=0x55d0c0a01234";

    #[test]
    fn every_doc_example_line() {
        let made: Vec<String> = doc_examples().iter().map(text).collect();
        assert_eq!(made, doc_lines("shmtrace["));
    }

    #[test]
    fn thread_prefix_only_when_tid_differs() {
        let mut ev = call(Func::Shmdt, &[0x7f00_0000_0000], 0);
        assert!(text(&ev).starts_with("shmtrace[4242] 1764168062.123456 shmdt("));
        ev.tid = 4243;
        assert!(text(&ev).starts_with("shmtrace[4242:4243] 1764168062.123456 shmdt("));
    }

    #[test]
    fn shmget() {
        let args = [int(0x4d2), 1 << 20, int(libc::IPC_CREAT | 0o640)];
        assert_eq!(
            body(&call(Func::Shmget, &args, 7)),
            format!("shmget(0x4d2, 1048576, IPC_CREAT|0640) = 7{TAIL}")
        );
        assert_eq!(
            body(&failed(Func::Shmget, &args, libc::EEXIST)),
            format!("shmget(0x4d2, 1048576, IPC_CREAT|0640) = -1 EEXIST (File exists){TAIL}")
        );
    }

    #[test]
    fn shmget_huge_and_unknown_flag_bits() {
        let flags = libc::SHM_HUGETLB | (21 << 26) | 0x10_0000 | 0o600;
        assert_eq!(
            body(&call(Func::Shmget, &[0, 2 << 20, int(flags)], 1)),
            format!(
                "shmget(IPC_PRIVATE, 2097152, SHM_HUGETLB|SHM_HUGE_2MB|0x100000|0600) = 1{TAIL}"
            )
        );
    }

    #[test]
    fn shmat() {
        let args = [65538, 0x7f00_0000_0000, int(libc::SHM_RND | 0x4)];
        assert_eq!(
            body(&call(Func::Shmat, &args, 0x7f00_0000_0000)),
            format!("shmat(65538, 0x7f0000000000, SHM_RND|0x4) = 0x7f0000000000{TAIL}")
        );
        assert_eq!(
            body(&failed(Func::Shmat, &args, libc::EACCES)),
            format!(
                "shmat(65538, 0x7f0000000000, SHM_RND|0x4) = (void *) -1 EACCES (Permission denied){TAIL}"
            )
        );
    }

    #[test]
    fn shmdt() {
        assert_eq!(
            body(&call(Func::Shmdt, &[0x7f00_0000_0000], 0)),
            format!("shmdt(0x7f0000000000) = 0{TAIL}")
        );
        assert_eq!(
            body(&failed(Func::Shmdt, &[0x1234], libc::EINVAL)),
            format!("shmdt(0x1234) = -1 EINVAL (Invalid argument){TAIL}")
        );
    }

    #[test]
    fn shmctl_with_ipc_64() {
        let args = [65538, int(libc::IPC_STAT | 0x100), 0x7ffd_0000_0000];
        assert_eq!(
            body(&call(Func::Shmctl, &args, 0)),
            format!("shmctl(65538, IPC_64|IPC_STAT, 0x7ffd00000000) = 0{TAIL}")
        );
        assert_eq!(
            body(&failed(
                Func::Shmctl,
                &[65538, int(libc::IPC_RMID), 0],
                libc::EPERM
            )),
            format!("shmctl(65538, IPC_RMID, NULL) = -1 EPERM (Operation not permitted){TAIL}")
        );
    }

    #[test]
    fn semget() {
        let args = [
            int(0x1234),
            4,
            int(libc::IPC_CREAT | libc::IPC_EXCL | 0o600),
        ];
        assert_eq!(
            body(&call(Func::Semget, &args, 3)),
            format!("semget(0x1234, 4, IPC_CREAT|IPC_EXCL|0600) = 3{TAIL}")
        );
        assert_eq!(
            body(&failed(Func::Semget, &args, libc::ENOSPC)),
            format!(
                "semget(0x1234, 4, IPC_CREAT|IPC_EXCL|0600) = -1 ENOSPC (No space left on device){TAIL}"
            )
        );
    }

    #[test]
    fn semop_success_failure_and_enter() {
        let args = [3, 0x7ffd_0000_0010, 2];
        let undo = libc::SEM_UNDO as i16;
        let nowait = libc::IPC_NOWAIT as i16;
        assert_eq!(
            body(&with_sops(
                call(Func::Semop, &args, 0),
                &[(0, -1, undo), (1, 1, nowait | undo)]
            )),
            format!("semop(3, [{{0, -1, SEM_UNDO}}, {{1, 1, IPC_NOWAIT|SEM_UNDO}}], 2) = 0{TAIL}")
        );
        assert_eq!(
            body(&failed(Func::Semop, &args, libc::EFAULT)),
            format!("semop(3, 0x7ffd00000010, 2) = -1 EFAULT (Bad address){TAIL}")
        );
        assert_eq!(
            body(&with_sops(
                failed(Func::Semop, &args, libc::EAGAIN),
                &[(0, -1, nowait), (1, 0, 0)]
            )),
            format!(
                "semop(3, [{{0, -1, IPC_NOWAIT}}, {{1, 0, 0}}], 2) = -1 EAGAIN (Resource temporarily unavailable){TAIL}"
            )
        );
        // A call that waits is logged with the operations the kernel read before it waited;
        // one logged before they were read shows the pointer.
        let entering = with_sops(enter(Func::Semop, &args), &[(0, -1, 0)]);
        assert_eq!(
            body(&entering),
            "semop(3, [{0, -1, 0}, ...], 2) <unfinished ...> caller=0x55d0c0a01234"
        );
        assert_eq!(
            body(&enter(Func::Semop, &args)),
            "semop(3, 0x7ffd00000010, 2) <unfinished ...> caller=0x55d0c0a01234"
        );
    }

    #[test]
    fn semop_more_than_eight_sops_is_cut() {
        let ops: Vec<(u16, i16, i16)> = (0..8).map(|i| (i, 1, 0)).collect();
        let ev = with_sops(call(Func::Semop, &[3, 0x10, 9], 0), &ops);
        assert_eq!(
            body(&ev),
            format!(
                "semop(3, [{{0, 1, 0}}, {{1, 1, 0}}, {{2, 1, 0}}, {{3, 1, 0}}, {{4, 1, 0}}, \
                 {{5, 1, 0}}, {{6, 1, 0}}, {{7, 1, 0}}, ...], 9) = 0{TAIL}"
            )
        );
        let exactly_eight = with_sops(call(Func::Semop, &[3, 0x10, 8], 0), &ops);
        assert!(body(&exactly_eight).contains("{7, 1, 0}], 8)"));
    }

    #[test]
    fn semtimedop_timeout_read_or_pointer() {
        let args = [3, 0x10, 1, 0x7ffd_0000_0020];
        let read = with_timeout(
            with_sops(call(Func::Semtimedop, &args, 0), &[(0, 0, 0)]),
            1,
            500_000_000,
        );
        assert_eq!(
            body(&read),
            format!("semtimedop(3, [{{0, 0, 0}}], 1, {{tv_sec=1, tv_nsec=500000000}}) = 0{TAIL}")
        );
        let timed_out = with_timeout(
            with_sops(failed(Func::Semtimedop, &args, libc::EAGAIN), &[(0, 0, 0)]),
            0,
            1000,
        );
        assert_eq!(
            body(&timed_out),
            format!(
                "semtimedop(3, [{{0, 0, 0}}], 1, {{tv_sec=0, tv_nsec=1000}}) = -1 EAGAIN (Resource temporarily unavailable){TAIL}"
            )
        );
        assert_eq!(
            body(&failed(Func::Semtimedop, &[3, 0x10, 1, 0], libc::E2BIG)),
            format!("semtimedop(3, 0x10, 1, NULL) = -1 E2BIG (Argument list too long){TAIL}")
        );
        let entering = with_timeout(
            with_sops(enter(Func::Semtimedop, &args), &[(0, 0, 0)]),
            1,
            0,
        );
        assert_eq!(
            body(&entering),
            "semtimedop(3, [{0, 0, 0}], 1, 0x7ffd00000020) <unfinished ...> caller=0x55d0c0a01234"
        );
    }

    #[test]
    fn semctl_fourth_argument_only_when_used() {
        let setval = [3, 1, int(libc::SETVAL), 0xdead_beef_0000_0007];
        assert_eq!(
            body(&call(Func::Semctl, &setval, 0)),
            format!("semctl(3, 1, SETVAL, 7) = 0{TAIL}")
        );
        let negative = [3, 1, int(libc::SETVAL), 0xffff_ffff];
        assert_eq!(
            body(&failed(Func::Semctl, &negative, libc::ERANGE)),
            format!("semctl(3, 1, SETVAL, -1) = -1 ERANGE (Numerical result out of range){TAIL}")
        );
        assert_eq!(
            body(&call(
                Func::Semctl,
                &[3, 0, int(libc::GETALL), 0x7ffd_0000_0030],
                0
            )),
            format!("semctl(3, 0, GETALL, 0x7ffd00000030) = 0{TAIL}")
        );
        assert_eq!(
            body(&call(
                Func::Semctl,
                &[3, 0, int(libc::IPC_STAT | 0x100), 0x7ffd_0000_0040],
                0
            )),
            format!("semctl(3, 0, IPC_64|IPC_STAT, 0x7ffd00000040) = 0{TAIL}")
        );
        assert_eq!(
            body(&call(Func::Semctl, &[3, 0, int(libc::IPC_RMID), 0x5555], 0)),
            format!("semctl(3, 0, IPC_RMID) = 0{TAIL}")
        );
        assert_eq!(
            body(&call(Func::Semctl, &[3, 2, int(libc::GETVAL), 0x5555], 5)),
            format!("semctl(3, 2, GETVAL) = 5{TAIL}")
        );
    }

    fn mmap_args(prot: i32, flags: i32, fd: i32, offset: u64) -> [u64; 6] {
        [0, 4096, int(prot), int(flags), int(fd), offset]
    }

    #[test]
    fn mmap_and_mmap64() {
        let args = mmap_args(libc::PROT_READ, libc::MAP_SHARED, 5, 0x2000);
        assert_eq!(
            body(&call(Func::Mmap, &args, 0x7f00_0000_0000)),
            format!("mmap(NULL, 4096, PROT_READ, MAP_SHARED, 5, 0x2000) = 0x7f0000000000{TAIL}")
        );
        assert_eq!(
            body(&failed(Func::Mmap64, &args, libc::ENOMEM)),
            format!(
                "mmap64(NULL, 4096, PROT_READ, MAP_SHARED, 5, 0x2000) = MAP_FAILED ENOMEM (Cannot allocate memory){TAIL}"
            )
        );
    }

    #[test]
    fn mmap_huge_2mb_prot_none_and_unknown_bits() {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | (21 << 26);
        let args = mmap_args(libc::PROT_NONE, flags, -1, 0);
        assert_eq!(
            body(&call(Func::Mmap, &args, 0x7f00_0000_0000)),
            format!(
                "mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB, -1, 0) = 0x7f0000000000{TAIL}"
            )
        );
        let args = mmap_args(libc::PROT_READ | 0x40, libc::MAP_PRIVATE | 0x200, 3, 0);
        assert_eq!(
            body(&failed(Func::Mmap, &args, libc::EINVAL)),
            format!(
                "mmap(NULL, 4096, PROT_READ|0x40, MAP_PRIVATE|0x200, 3, 0) = MAP_FAILED EINVAL (Invalid argument){TAIL}"
            )
        );
    }

    #[test]
    fn munmap() {
        assert_eq!(
            body(&call(Func::Munmap, &[0x7f00_0000_0000, 8192], 0)),
            format!("munmap(0x7f0000000000, 8192) = 0{TAIL}")
        );
        assert_eq!(
            body(&failed(
                Func::Munmap,
                &[0x7f00_0000_0001, 8192],
                libc::EINVAL
            )),
            format!("munmap(0x7f0000000001, 8192) = -1 EINVAL (Invalid argument){TAIL}")
        );
    }

    #[test]
    fn mremap_new_address_only_with_fixed() {
        let moving = [
            0x7f00_0000_0000,
            4096,
            8192,
            int(libc::MREMAP_MAYMOVE),
            0xdead,
        ];
        assert_eq!(
            body(&call(Func::Mremap, &moving, 0x7f10_0000_0000)),
            format!("mremap(0x7f0000000000, 4096, 8192, MREMAP_MAYMOVE) = 0x7f1000000000{TAIL}")
        );
        let fixed = [
            0x7f00_0000_0000,
            4096,
            8192,
            int(libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED),
            0x7f20_0000_0000,
        ];
        assert_eq!(
            body(&failed(Func::Mremap, &fixed, libc::EINVAL)),
            format!(
                "mremap(0x7f0000000000, 4096, 8192, MREMAP_MAYMOVE|MREMAP_FIXED, 0x7f2000000000) = MAP_FAILED EINVAL (Invalid argument){TAIL}"
            )
        );
    }

    #[test]
    fn unknown_errno_and_pointer_result_zero() {
        assert_eq!(
            body(&failed(Func::Shmdt, &[0x10], 4000)),
            format!("shmdt(0x10) = -1 E4000 (Unknown error 4000){TAIL}")
        );
        assert!(body(&call(Func::Mmap, &[0x0, 1, 0, 0x12, 0, 0], 0)).contains(" = 0x0 <"));
    }

    #[test]
    fn stack_follows_caller_only_when_recorded() {
        let mut ev = call(Func::Shmdt, &[0x7f00_0000_0000], 0);
        assert!(text(&ev).ends_with(" caller=0x55d0c0a01234"));
        ev.stack = Stack::from_slice(&[0x55d0_c0a0_1300]);
        assert_eq!(
            body(&ev),
            "shmdt(0x7f0000000000) = 0 <0.000012> caller=0x55d0c0a01234 stack=0x55d0c0a01300"
        );
        ev.stack = Stack::from_slice(&[0x55d0_c0a0_1300, 0x55d0_c0a0_1400, 0x7f3a_2bc2_9d90]);
        assert!(text(&ev).ends_with(
            " caller=0x55d0c0a01234 stack=0x55d0c0a01300,0x55d0c0a01400,0x7f3a2bc29d90"
        ));
        let mut entering = enter(Func::Semop, &[3, 0x10, 1]);
        entering.stack = Stack::from_slice(&[0x55d0_c0a0_1300]);
        assert_eq!(
            body(&entering),
            "semop(3, 0x10, 1) <unfinished ...> caller=0x55d0c0a01234 stack=0x55d0c0a01300"
        );
    }

    #[test]
    fn a_sample_of_every_function_has_the_record_shape() {
        for ev in samples() {
            let line = text(&ev);
            let call = format!(" {}(", ev.func.name());
            assert!(line.contains(&call), "{line}");
            match ev.phase {
                Phase::Enter => assert!(line.contains(") <unfinished ...> caller=0x"), "{line}"),
                Phase::Exit => assert!(
                    line.contains(") = ") && line.contains("> caller=0x"),
                    "{line}"
                ),
            }
        }
    }
}

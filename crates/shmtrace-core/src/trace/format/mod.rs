//! Turns an [`Event`] into one log record, text or JSON, as docs/log-format.md specifies.
//!
//! Both formats walk the same argument list ([`args`]), so which arguments a function shows,
//! in what order and under which names is decided once; each format only says how a kind of
//! value looks.

pub mod json;
pub mod text;

use core::fmt::{self, Write};

use super::decode::{self, SemctlArg};
use super::event::{Event, Func, NAME_KEPT, Phase, SemOp, Timeout};
use super::linebuf::LineBuf;

/// The record syntax, chosen by `SHMTRACE_FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Appends one record for `ev` to `out`, without the trailing newline (`finish_line` adds it).
pub fn write(format: Format, ev: &Event, out: &mut LineBuf) {
    match format {
        Format::Text => text::write(ev, out),
        Format::Json => json::write(ev, out),
    }
}

/// A value that both formats render as the same decoded word (JSON puts it in quotes).
#[derive(Clone, Copy, Debug)]
enum Decoded {
    Key(i32),
    ShmgetFlags(i32),
    SemgetFlags(i32),
    ShmatFlags(i32),
    ShmctlCmd(i32),
    SemctlCmd(i32),
    Prot(i32),
    MmapFlags(i32),
    MremapFlags(i32),
    OpenFlags(i32),
    SemOpenFlags(i32),
    Mode(u32),
    MemfdFlags(u32),
}

impl Decoded {
    fn write(self, out: &mut impl Write) -> fmt::Result {
        match self {
            Decoded::Key(v) => decode::key(out, v),
            Decoded::ShmgetFlags(v) => decode::shmget_flags(out, v),
            Decoded::SemgetFlags(v) => decode::semget_flags(out, v),
            Decoded::ShmatFlags(v) => decode::shmat_flags(out, v),
            Decoded::ShmctlCmd(v) => decode::shmctl_cmd(out, v),
            Decoded::SemctlCmd(v) => decode::semctl_cmd(out, v),
            Decoded::Prot(v) => decode::prot(out, v),
            Decoded::MmapFlags(v) => decode::mmap_flags(out, v),
            Decoded::MremapFlags(v) => decode::mremap_flags(out, v),
            Decoded::OpenFlags(v) => decode::open_flags(out, v),
            Decoded::SemOpenFlags(v) => decode::sem_open_flags(out, v),
            Decoded::Mode(v) => decode::mode(out, v),
            Decoded::MemfdFlags(v) => decode::memfd_flags(out, v),
        }
    }
}

/// One argument's value, by how it is rendered.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    /// A C `int`: ids, fds, `semnum`, semctl's `val`.
    Int(i32),
    /// A `size_t`: sizes and counts.
    Size(u64),
    Ptr(u64),
    /// A file offset (`off_t`): hex in text, a signed number in JSON.
    Offset(u64),
    Decoded(Decoded),
    /// The `sembuf`s read after the call; `nsops` tells whether the array was longer.
    Sops {
        ops: &'a [SemOp],
        nsops: u64,
    },
    Timeout(Timeout),
    /// A name read after the call (`truncated` when it was longer than was kept).
    Name {
        bytes: &'a [u8],
        truncated: bool,
    },
}

/// One argument: the man page's parameter name (the JSON key) and its value.
#[derive(Clone, Copy, Debug)]
struct Arg<'a> {
    name: &'static str,
    value: Value<'a>,
}

/// A function's shown arguments, in prototype order, in a fixed array so building them
/// cannot allocate.
struct Args<'a> {
    items: [Arg<'a>; 6],
    len: usize,
}

impl<'a> Args<'a> {
    fn of(list: &[Arg<'a>]) -> Args<'a> {
        let mut args = Args {
            items: [Arg {
                name: "",
                value: Value::Int(0),
            }; 6],
            len: 0,
        };
        for arg in list {
            args.push(*arg);
        }
        args
    }

    /// Adds `arg` when there is room; the longest argument list has six, so there always is.
    fn push(&mut self, arg: Arg<'a>) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = arg;
            self.len = self.len.saturating_add(1);
        }
    }

    /// The list with `arg` appended when the call uses that argument.
    fn and(mut self, arg: Option<Arg<'a>>) -> Args<'a> {
        if let Some(arg) = arg {
            self.push(arg);
        }
        self
    }

    fn iter(&self) -> impl Iterator<Item = &Arg<'a>> {
        self.items.iter().take(self.len)
    }
}

fn arg<'a>(name: &'static str, value: Value<'a>) -> Arg<'a> {
    Arg { name, value }
}

/// The arguments `ev` shows, from its raw bits (see the table on [`Event`]).
fn args(ev: &Event) -> Args<'_> {
    use Decoded::*;
    use Value::{Int, Offset, Ptr, Size};

    let raw = |i: usize| raw_arg(ev, i);
    let int = |i: usize| ev.arg_int(i);
    match ev.func {
        Func::Shmget => Args::of(&[
            arg("key", Value::Decoded(Key(int(0)))),
            arg("size", Size(raw(1))),
            arg("shmflg", Value::Decoded(ShmgetFlags(int(2)))),
        ]),
        Func::Shmat => Args::of(&[
            arg("shmid", Int(int(0))),
            arg("shmaddr", Ptr(raw(1))),
            arg("shmflg", Value::Decoded(ShmatFlags(int(2)))),
        ]),
        Func::Shmdt => Args::of(&[arg("shmaddr", Ptr(raw(0)))]),
        Func::Shmctl => Args::of(&[
            arg("shmid", Int(int(0))),
            arg("cmd", Value::Decoded(ShmctlCmd(int(1)))),
            arg("buf", Ptr(raw(2))),
        ]),
        Func::Semget => Args::of(&[
            arg("key", Value::Decoded(Key(int(0)))),
            arg("nsems", Int(int(1))),
            arg("semflg", Value::Decoded(SemgetFlags(int(2)))),
        ]),
        Func::Semop => Args::of(&[
            arg("semid", Int(int(0))),
            arg("sops", sops(ev)),
            arg("nsops", Size(raw(2))),
        ]),
        Func::Semtimedop => Args::of(&[
            arg("semid", Int(int(0))),
            arg("sops", sops(ev)),
            arg("nsops", Size(raw(2))),
            arg("timeout", timeout(ev)),
        ]),
        Func::Semctl => Args::of(&[
            arg("semid", Int(int(0))),
            arg("semnum", Int(int(1))),
            arg("cmd", Value::Decoded(SemctlCmd(int(2)))),
        ])
        .and(decode::semctl_arg(int(2)).map(|kind| {
            let value = match kind {
                // `union semun` holds `val` in its low 32 bits.
                SemctlArg::Val => Int(raw(3) as i32),
                SemctlArg::Buf | SemctlArg::Array => Ptr(raw(3)),
            };
            arg(kind.name(), value)
        })),
        Func::Mmap | Func::Mmap64 => Args::of(&[
            arg("addr", Ptr(raw(0))),
            arg("length", Size(raw(1))),
            arg("prot", Value::Decoded(Prot(int(2)))),
            arg("flags", Value::Decoded(MmapFlags(int(3)))),
            arg("fd", Int(int(4))),
            arg("offset", Offset(raw(5))),
        ]),
        Func::Munmap => Args::of(&[arg("addr", Ptr(raw(0))), arg("length", Size(raw(1)))]),
        Func::Mremap => Args::of(&[
            arg("old_address", Ptr(raw(0))),
            arg("old_size", Size(raw(1))),
            arg("new_size", Size(raw(2))),
            arg("flags", Value::Decoded(MremapFlags(int(3)))),
        ])
        .and(decode::mremap_uses_new_address(int(3)).then(|| arg("new_address", Ptr(raw(4))))),
        Func::ShmOpen => Args::of(&[
            arg("name", name(ev)),
            arg("oflag", Value::Decoded(OpenFlags(int(1)))),
            arg("mode", Value::Decoded(Mode(raw(2) as u32))),
        ]),
        Func::ShmUnlink | Func::SemUnlink => Args::of(&[arg("name", name(ev))]),
        Func::MemfdCreate => Args::of(&[
            arg("name", name(ev)),
            arg("flags", Value::Decoded(MemfdFlags(raw(1) as u32))),
        ]),
        // `mode` and `value` are read only with O_CREAT, as sem_open reads them.
        Func::SemOpen => Args::of(&[
            arg("name", name(ev)),
            arg("oflag", Value::Decoded(SemOpenFlags(int(1)))),
        ])
        .and(
            (int(1) & libc::O_CREAT != 0).then(|| arg("mode", Value::Decoded(Mode(raw(2) as u32)))),
        )
        .and((int(1) & libc::O_CREAT != 0).then(|| arg("value", Size(u64::from(raw(3) as u32))))),
        Func::SemClose => Args::of(&[arg("sem", Ptr(raw(0)))]),
    }
}

/// Argument `i`'s raw bits.
fn raw_arg(ev: &Event, i: usize) -> u64 {
    ev.args.get(i).copied().unwrap_or(0)
}

/// semop's and semtimedop's `sembuf`s when they were read (once the kernel had read them: after
/// the call, or when it started to wait), else the pointer.
fn sops(ev: &Event) -> Value<'_> {
    if ev.sops_read > 0 {
        Value::Sops {
            ops: ev.sops(),
            nsops: raw_arg(ev, 2),
        }
    } else {
        Value::Ptr(raw_arg(ev, 1))
    }
}

/// The name when it was read after the call, else the pointer. memfd_create's is read after a
/// success only, and may be empty.
fn name(ev: &Event) -> Value<'_> {
    let memfd_read = ev.func == Func::MemfdCreate && !ev.failed();
    if ev.phase == Phase::Exit && (memfd_read || !ev.name().is_empty()) {
        Value::Name {
            bytes: ev.name(),
            truncated: ev.name().len() >= NAME_KEPT,
        }
    } else {
        Value::Ptr(raw_arg(ev, 0))
    }
}

/// The shared memory object a successful `mmap` mapped (`/dev/shm/NAME`, `memfd:NAME`), when
/// the hook named it; `true` when it was longer than was kept.
fn object(ev: &Event) -> Option<(&[u8], bool)> {
    let maps = matches!(ev.func, Func::Mmap | Func::Mmap64);
    let bytes = ev.name();
    (maps && ev.phase == Phase::Exit && !ev.failed() && !bytes.is_empty())
        .then_some((bytes, bytes.len() >= NAME_KEPT))
}

/// semtimedop's timeout when it was read after the call, else the pointer.
fn timeout(ev: &Event) -> Value<'_> {
    match (ev.phase, ev.timeout) {
        (Phase::Exit, Some(t)) => Value::Timeout(t),
        _ => Value::Ptr(raw_arg(ev, 3)),
    }
}

/// How a failed call's return value reads: what the function's man page calls it.
fn failure_word(func: Func) -> &'static str {
    match func {
        Func::Shmat => "(void *) -1",
        Func::Mmap | Func::Mmap64 | Func::Mremap => "MAP_FAILED",
        Func::SemOpen => "SEM_FAILED",
        _ => "-1",
    }
}

const NS_PER_US: u64 = 1_000;
const US_PER_S: u64 = 1_000_000;

/// `SECONDS.MICROS`.
fn write_micros(out: &mut impl Write, micros: u64) -> fmt::Result {
    write!(out, "{}.{:06}", micros / US_PER_S, micros % US_PER_S)
}

/// The entry time, truncated to the microsecond like `strace -ttt`, so it never reads later
/// than the call started.
pub fn write_timestamp(out: &mut impl Write, ts_ns: u64) -> fmt::Result {
    write_micros(out, ts_ns / NS_PER_US)
}

/// A duration rounded to the nearest microsecond, so a sub-microsecond call does not read as
/// taking no time at all.
fn write_duration(out: &mut impl Write, dur_ns: u64) -> fmt::Result {
    write_micros(out, dur_ns.saturating_add(NS_PER_US / 2) / NS_PER_US)
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Events shared by the text and JSON tests.

    use crate::trace::event::{Event, Func, Name, Phase, SemOp, Stack, Timeout};

    pub const PID: i32 = 4242;
    pub const TS_NS: u64 = 1_764_168_062_123_456_789;
    pub const CALLER: u64 = 0x55d0_c0a0_1234;

    /// A returned call from the main thread.
    pub fn call(func: Func, args: &[u64], ret: i64) -> Event {
        let mut ev = Event::new(Phase::Exit, func);
        ev.pid = PID;
        ev.tid = PID;
        ev.ts_ns = TS_NS;
        ev.dur_ns = 12_034;
        ev.caller = CALLER;
        for (slot, value) in ev.args.iter_mut().zip(args) {
            *slot = *value;
        }
        ev.ret = ret;
        ev
    }

    /// A call that failed with `errno`.
    pub fn failed(func: Func, args: &[u64], errno: i32) -> Event {
        let mut ev = call(func, args, func.failure_value());
        ev.errno = errno;
        ev
    }

    /// An enter record.
    pub fn enter(func: Func, args: &[u64]) -> Event {
        let mut ev = call(func, args, 0);
        ev.phase = Phase::Enter;
        ev.dur_ns = 0;
        ev
    }

    /// A C `int` argument as `Event::args` stores it.
    pub fn int(v: i32) -> u64 {
        i64::from(v) as u64
    }

    pub fn with_sops(mut ev: Event, ops: &[(u16, i16, i16)]) -> Event {
        for (slot, &(num, op, flg)) in ev.sops.iter_mut().zip(ops) {
            *slot = SemOp { num, op, flg };
        }
        ev.sops_read = ops.len().min(ev.sops.len()) as u8;
        ev
    }

    pub fn created(mut ev: Event) -> Event {
        ev.created = true;
        ev
    }

    pub fn with_timeout(mut ev: Event, sec: i64, nsec: i64) -> Event {
        ev.timeout = Some(Timeout { sec, nsec });
        ev
    }

    /// The events behind every example line of docs/log-format.md, in the order they appear:
    /// the seven text examples (the first six are also the JSON examples' events), then the
    /// record with a stack (`SHMTRACE_STACK=3`), `shm_open` and `shm_unlink`, `memfd_create`
    /// and an `mmap` of its memfd, `sem_open`, `sem_close` and `sem_unlink`, each shown in both
    /// formats.
    pub fn doc_examples() -> [Event; 15] {
        let at = |mut ev: Event, micros: u64, dur_ns: u64, caller: u64| {
            ev.ts_ns = 1_764_168_062_000_000_000 + micros * 1_000;
            ev.dur_ns = dur_ns;
            ev.caller = caller;
            ev
        };
        let mut semop = with_sops(
            call(Func::Semop, &[3, 0x7ffd_1c2e_3a50, 1], 0),
            &[(0, -1, libc::SEM_UNDO as i16)],
        );
        semop.tid = 4243;
        let mut semop_enter =
            with_sops(enter(Func::Semop, &[3, 0x7ffd_1c2e_3a50, 1]), &[(1, -1, 0)]);
        semop_enter.ts_ns = 1_764_168_062_123_520_000;
        semop_enter.caller = 0x55d0_c0a0_1330;
        let mut with_stack = created(call(
            Func::Shmget,
            &[0, 4096, int(libc::IPC_CREAT | 0o600)],
            65539,
        ));
        with_stack.stack =
            Stack::from_slice(&[0x55d0_c0a0_1400, 0x55d0_c0a0_1588, 0x7f3a_2bc2_9d90]);
        let named = |mut ev: Event| {
            ev.name = Name::from_bytes(b"/psm_5b1f2c");
            ev
        };
        let oflag = int(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL);
        let shm_open = named(created(call(
            Func::ShmOpen,
            &[0x7f3a_2c40_1010, oflag, 0o600],
            3,
        )));
        let shm_unlink = named(failed(Func::ShmUnlink, &[0x7f3a_2c40_1010], libc::ENOENT));
        let mut memfd_create = call(
            Func::MemfdCreate,
            &[
                0x55d0_c0a0_3004,
                u64::from(libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING),
            ],
            4,
        );
        memfd_create.name = Name::from_bytes(b"ring");
        let mut mmap_memfd = call(
            Func::Mmap,
            &[
                0,
                65536,
                int(libc::PROT_READ | libc::PROT_WRITE),
                int(libc::MAP_SHARED),
                4,
                0,
            ],
            0x7f3a_2bfe_0000,
        );
        mmap_memfd.name = Name::from_bytes(b"memfd:ring");
        let sem_named = |mut ev: Event| {
            ev.name = Name::from_bytes(b"/jobs");
            ev
        };
        let sem_open = sem_named(created(call(
            Func::SemOpen,
            &[
                0x5604_1c2e_2004,
                int(libc::O_CREAT | libc::O_EXCL),
                0o600,
                1,
            ],
            0x7f3a_2c7f_e000,
        )));
        let sem_unlink = sem_named(call(Func::SemUnlink, &[0x5604_1c2e_2004], 0));
        [
            at(
                created(call(
                    Func::Shmget,
                    &[0, 4096, int(libc::IPC_CREAT | libc::IPC_EXCL | 0o600)],
                    65538,
                )),
                123_456,
                12_034,
                0x55d0_c0a0_1234,
            ),
            at(
                call(
                    Func::Shmat,
                    &[65538, 0, int(libc::SHM_RDONLY)],
                    0x7f3a_2c00_0000,
                ),
                123_470,
                4_120,
                0x55d0_c0a0_1250,
            ),
            at(
                call(
                    Func::Mmap,
                    &[
                        0,
                        8192,
                        int(libc::PROT_READ | libc::PROT_WRITE),
                        int(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
                        int(-1),
                        0,
                    ],
                    0x7f3a_2bff_e000,
                ),
                123_480,
                1_910,
                0x55d0_c0a0_1290,
            ),
            at(semop, 123_490, 812, 0x55d0_c0a0_12c0),
            at(
                failed(
                    Func::Shmctl,
                    &[99, int(libc::IPC_STAT), 0x7ffd_1c2e_3a40],
                    libc::EINVAL,
                ),
                123_500,
                1_003,
                0x55d0_c0a0_12f0,
            ),
            at(
                failed(
                    Func::Mmap,
                    &[
                        0,
                        0,
                        int(libc::PROT_READ),
                        int(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
                        int(-1),
                        0,
                    ],
                    libc::EINVAL,
                ),
                123_510,
                640,
                0x55d0_c0a0_1310,
            ),
            semop_enter,
            at(with_stack, 123_530, 9_120, 0x55d0_c0a0_1234),
            at(shm_open, 123_540, 21_500, 0x7f3a_2c40_0d5e),
            at(shm_unlink, 123_550, 6_020, 0x7f3a_2c40_0e12),
            at(memfd_create, 123_560, 4_410, 0x55d0_c0a0_1350),
            at(mmap_memfd, 123_570, 3_120, 0x55d0_c0a0_1370),
            at(sem_open, 123_580, 38_200, 0x55d0_c0a0_1360),
            at(
                call(Func::SemClose, &[0x7f3a_2c7f_e000], 0),
                123_590,
                2_900,
                0x55d0_c0a0_1390,
            ),
            at(sem_unlink, 123_600, 7_450, 0x55d0_c0a0_13b0),
        ]
    }

    /// Indented example lines of docs/log-format.md that start with `prefix`, without the
    /// `shmtrace[PID]` templates.
    pub fn doc_lines(prefix: &str) -> Vec<&'static str> {
        include_str!("../../../../../docs/log-format.md")
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| l.starts_with(prefix) && !l.starts_with("shmtrace[PID"))
            // Start and fork records have their own tests (trace::start).
            .filter(|l| !l.contains(" start: ") && !l.contains(r#""event":"start""#))
            .filter(|l| !l.contains(" fork: ") && !l.contains(r#""event":"fork""#))
            // So has the report (ledger::tests::rendering).
            .filter(|l| !l.contains(r#""event":"report""#))
            // So have the modules at exit (trace::start).
            .filter(|l| !l.contains(" modules: ") && !l.contains(r#""event":"modules""#))
            // So have findings and the report's findings (audit::record, ledger::render).
            .filter(|l| !l.contains(" finding ") && !l.contains(r#""event":"finding""#))
            .filter(|l| !l.contains("] report: ") && !l.contains("] findings: "))
            .filter(|l| !l.contains("]   SHM0"))
            .collect()
    }

    /// A representative success, failure and (for the blocking calls) enter record of every
    /// hooked function, plus edge cases.
    pub fn samples() -> Vec<Event> {
        let mut all = doc_examples().to_vec();
        for func in Func::ALL {
            let args = [int(-1), 0x7f00_0000_1000, 16, 0x7ffd_0000_0010, 0, 0];
            all.push(call(func, &args, 0));
            all.push(failed(func, &args, libc::EINVAL));
            all.push(failed(func, &args, 4000));
            all.push(enter(func, &args));
        }
        all.push(with_sops(
            call(Func::Semop, &[3, 0x7ffd_0000_0010, 12], 0),
            &[(0, -1, 0); 8],
        ));
        all.push(with_timeout(
            call(Func::Semtimedop, &[3, 0x10, 1, 0x20], 0),
            1,
            500_000_000,
        ));
        all.push(call(Func::Semctl, &[3, 0, int(libc::SETVAL), 7], 0));
        all.push(call(
            Func::Mremap,
            &[
                0x1000,
                4096,
                8192,
                int(libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED),
                0x9000,
            ],
            0x9000,
        ));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn render(format: Format, ev: &Event) -> String {
        let mut out = LineBuf::new();
        write(format, ev, &mut out);
        out.as_str().to_owned()
    }

    #[test]
    fn timestamps_truncate_and_durations_round() {
        let show = |f: &dyn Fn(&mut LineBuf) -> fmt::Result| {
            let mut out = LineBuf::new();
            f(&mut out).unwrap();
            out.as_str().to_owned()
        };
        assert_eq!(show(&|o| write_timestamp(o, TS_NS)), "1764168062.123456");
        assert_eq!(show(&|o| write_timestamp(o, 0)), "0.000000");
        assert_eq!(show(&|o| write_timestamp(o, 999)), "0.000000");
        assert_eq!(
            show(&|o| write_timestamp(o, u64::MAX)),
            "18446744073.709551"
        );
        assert_eq!(show(&|o| write_duration(o, 12_034)), "0.000012");
        assert_eq!(show(&|o| write_duration(o, 812)), "0.000001");
        assert_eq!(show(&|o| write_duration(o, 499)), "0.000000");
        assert_eq!(show(&|o| write_duration(o, 2_500_000_000)), "2.500000");
        assert_eq!(show(&|o| write_duration(o, u64::MAX)), "18446744073.709551");
    }

    #[test]
    fn write_dispatches_on_format_without_newline() {
        let ev = doc_examples()[0];
        let text = render(Format::Text, &ev);
        let json = render(Format::Json, &ev);
        assert!(text.starts_with("shmtrace[4242] "));
        assert!(json.starts_with("{\"event\":\"call\""));
        assert!(!text.ends_with('\n') && !json.ends_with('\n'));
        assert_eq!(Format::default(), Format::Text);
    }

    #[test]
    fn every_sample_renders_in_both_formats_and_json_parses() {
        for ev in samples() {
            let text = render(Format::Text, &ev);
            assert!(text.contains(ev.func.name()), "{text}");
            let json = render(Format::Json, &ev);
            json::tests::assert_valid_json(&json);
        }
    }
}

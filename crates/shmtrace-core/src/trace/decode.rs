//! The "Decoded values" of docs/log-format.md: how raw argument bits read in a record.
//!
//! Text and JSON share these renderings (JSON puts the decoded words in quotes). Every decoder
//! writes into a `core::fmt::Write` and never allocates, because it runs inside a hook. Bit
//! values come from `libc` so they are right for the target architecture; the few that `libc`
//! lacks are defined below from the kernel's UAPI headers.

use core::fmt::{self, Write};

use super::errnos;

/// The "new layout" bit glibc ORs into ctl commands (`include/uapi/linux/ipc.h`); not in `libc`.
pub const IPC_64: i32 = 0x100;

// `include/uapi/linux/shm.h`; not in `libc`.
const SHM_STAT: i32 = 13;
const SHM_INFO: i32 = 14;
const SHM_STAT_ANY: i32 = 15;

// Bits 26..31 of shmget and mmap flags hold log2 of a huge-page size
// (`include/uapi/asm-generic/hugetlb_encode.h`); `libc` has the mmap names on glibc only.
const HUGE_SHIFT: u32 = 26;
const HUGE_MASK: u32 = 0x3f;
const HUGE_LOG2_2MB: u32 = 21;
const HUGE_LOG2_1GB: u32 = 30;

// `include/uapi/asm-generic/mman-common.h`, except mips which has its own; not in `libc`.
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6"
)))]
const PROT_SEM: i32 = 0x8;
#[cfg(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6"
))]
const PROT_SEM: i32 = 0x10;

// `include/uapi/asm-generic/mman-common.h`; `libc` defines it for hexagon only.
const MAP_UNINITIALIZED: i32 = 0x400_0000;

/// The permission bits of shmget/semget flags, shown in octal after the flag names.
const MODE_BITS: u32 = 0o777;

/// A single-bit flag and its name. Tables may list flags in any order: output is in bit order.
type Flag = (i32, &'static str);

const SHMGET_FLAGS: &[Flag] = &[
    (libc::IPC_CREAT, "IPC_CREAT"),
    (libc::IPC_EXCL, "IPC_EXCL"),
    (libc::SHM_HUGETLB, "SHM_HUGETLB"),
    (libc::SHM_NORESERVE, "SHM_NORESERVE"),
];

/// strace's names for semget: the kernel ignores `IPC_NOWAIT` there, but callers pass it.
const SEMGET_FLAGS: &[Flag] = &[
    (libc::IPC_CREAT, "IPC_CREAT"),
    (libc::IPC_EXCL, "IPC_EXCL"),
    (libc::IPC_NOWAIT, "IPC_NOWAIT"),
];

const SHMAT_FLAGS: &[Flag] = &[
    (libc::SHM_RDONLY, "SHM_RDONLY"),
    (libc::SHM_RND, "SHM_RND"),
    (libc::SHM_REMAP, "SHM_REMAP"),
    (libc::SHM_EXEC, "SHM_EXEC"),
];

const PROT_FLAGS: &[Flag] = &[
    (libc::PROT_READ, "PROT_READ"),
    (libc::PROT_WRITE, "PROT_WRITE"),
    (libc::PROT_EXEC, "PROT_EXEC"),
    (PROT_SEM, "PROT_SEM"),
    (libc::PROT_GROWSDOWN, "PROT_GROWSDOWN"),
    (libc::PROT_GROWSUP, "PROT_GROWSUP"),
];

/// The values of the mapping-type field (`MAP_TYPE`), which is a number, not bits.
const MAP_TYPES: &[Flag] = &[
    (libc::MAP_SHARED, "MAP_SHARED"),
    (libc::MAP_PRIVATE, "MAP_PRIVATE"),
    (libc::MAP_SHARED_VALIDATE, "MAP_SHARED_VALIDATE"),
];

const MAP_FLAGS: &[Flag] = &[
    (libc::MAP_FIXED, "MAP_FIXED"),
    (libc::MAP_ANONYMOUS, "MAP_ANONYMOUS"),
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    (libc::MAP_32BIT, "MAP_32BIT"),
    (libc::MAP_GROWSDOWN, "MAP_GROWSDOWN"),
    (libc::MAP_DENYWRITE, "MAP_DENYWRITE"),
    (libc::MAP_EXECUTABLE, "MAP_EXECUTABLE"),
    (libc::MAP_LOCKED, "MAP_LOCKED"),
    (libc::MAP_NORESERVE, "MAP_NORESERVE"),
    (libc::MAP_POPULATE, "MAP_POPULATE"),
    (libc::MAP_NONBLOCK, "MAP_NONBLOCK"),
    (libc::MAP_STACK, "MAP_STACK"),
    (libc::MAP_HUGETLB, "MAP_HUGETLB"),
    (libc::MAP_SYNC, "MAP_SYNC"),
    (libc::MAP_FIXED_NOREPLACE, "MAP_FIXED_NOREPLACE"),
    (MAP_UNINITIALIZED, "MAP_UNINITIALIZED"),
];

const MREMAP_FLAGS: &[Flag] = &[
    (libc::MREMAP_MAYMOVE, "MREMAP_MAYMOVE"),
    (libc::MREMAP_FIXED, "MREMAP_FIXED"),
    (libc::MREMAP_DONTUNMAP, "MREMAP_DONTUNMAP"),
];

/// msgget's flags: the kernel ignores `IPC_NOWAIT` there, as for semget, but callers pass it.
const MSGGET_FLAGS: &[Flag] = SEMGET_FLAGS;

// `include/uapi/linux/msg.h`; not all in `libc`.
const MSG_NOERROR: i32 = 0o10000;
const MSG_EXCEPT: i32 = 0o20000;
const MSG_COPY: i32 = 0o40000;
const MSG_STAT: i32 = 11;
const MSG_INFO: i32 = 12;
const MSG_STAT_ANY: i32 = 13;

/// msgsnd's and msgrcv's `msgflg` (msgsnd uses `IPC_NOWAIT` only; strace names them all).
const MSG_FLAGS: &[Flag] = &[
    (libc::IPC_NOWAIT, "IPC_NOWAIT"),
    (MSG_NOERROR, "MSG_NOERROR"),
    (MSG_EXCEPT, "MSG_EXCEPT"),
    (MSG_COPY, "MSG_COPY"),
];

const SEM_FLAGS: &[Flag] = &[
    (libc::IPC_NOWAIT, "IPC_NOWAIT"),
    (libc::SEM_UNDO, "SEM_UNDO"),
];

/// The flags of `open(2)` that `shm_open` passes on (the access mode is a number, not bits).
const OPEN_FLAGS: &[Flag] = &[
    (libc::O_CREAT, "O_CREAT"),
    (libc::O_EXCL, "O_EXCL"),
    (libc::O_NOCTTY, "O_NOCTTY"),
    (libc::O_TRUNC, "O_TRUNC"),
    (libc::O_APPEND, "O_APPEND"),
    (libc::O_NONBLOCK, "O_NONBLOCK"),
    (libc::O_CLOEXEC, "O_CLOEXEC"),
];

/// memfd_create's flags; bits 26..31 are a huge-page size with `MFD_HUGETLB`.
const MEMFD_FLAGS: &[Flag] = &[
    (libc::MFD_CLOEXEC as i32, "MFD_CLOEXEC"),
    (libc::MFD_ALLOW_SEALING as i32, "MFD_ALLOW_SEALING"),
    (libc::MFD_HUGETLB as i32, "MFD_HUGETLB"),
    (libc::MFD_NOEXEC_SEAL as i32, "MFD_NOEXEC_SEAL"),
    (libc::MFD_EXEC as i32, "MFD_EXEC"),
];

const OPEN_ACCESS: &[Flag] = &[
    (libc::O_RDONLY, "O_RDONLY"),
    (libc::O_WRONLY, "O_WRONLY"),
    (libc::O_RDWR, "O_RDWR"),
];

/// A ctl command and its name.
type Cmd = (i32, &'static str);

/// Strips `IPC_64`, which some `libc` targets (musl with 64-bit `time_t`) fold into
/// `IPC_STAT` and the `*_STAT` commands derived from it.
const fn base_cmd(cmd: i32) -> i32 {
    cmd & !IPC_64
}

const IPC_CMDS: &[Cmd] = &[
    (libc::IPC_RMID, "IPC_RMID"),
    (libc::IPC_SET, "IPC_SET"),
    (base_cmd(libc::IPC_STAT), "IPC_STAT"),
    (libc::IPC_INFO, "IPC_INFO"),
];

const SHM_CMDS: &[Cmd] = &[
    (libc::SHM_LOCK, "SHM_LOCK"),
    (libc::SHM_UNLOCK, "SHM_UNLOCK"),
    (SHM_STAT, "SHM_STAT"),
    (SHM_INFO, "SHM_INFO"),
    (SHM_STAT_ANY, "SHM_STAT_ANY"),
];

const SEM_CMDS: &[Cmd] = &[
    (libc::GETPID, "GETPID"),
    (libc::GETVAL, "GETVAL"),
    (libc::GETALL, "GETALL"),
    (libc::GETNCNT, "GETNCNT"),
    (libc::GETZCNT, "GETZCNT"),
    (libc::SETVAL, "SETVAL"),
    (libc::SETALL, "SETALL"),
    (base_cmd(libc::SEM_STAT), "SEM_STAT"),
    (libc::SEM_INFO, "SEM_INFO"),
    (base_cmd(libc::SEM_STAT_ANY), "SEM_STAT_ANY"),
];

const MSG_CMDS: &[Cmd] = &[
    (MSG_STAT, "MSG_STAT"),
    (MSG_INFO, "MSG_INFO"),
    (MSG_STAT_ANY, "MSG_STAT_ANY"),
];

/// Writes `|`-separated terms, so each decoder only has to say which terms it has.
struct Terms<'a, W> {
    out: &'a mut W,
    any: bool,
}

impl<'a, W: Write> Terms<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Terms { out, any: false }
    }

    fn term(&mut self, term: fmt::Arguments<'_>) -> fmt::Result {
        if self.any {
            self.out.write_char('|')?;
        }
        self.any = true;
        self.out.write_fmt(term)
    }

    /// [`Terms::term`] for a name: written as it is, without the formatting machinery (most
    /// terms are names, and a record has several).
    fn name(&mut self, name: &str) -> fmt::Result {
        if self.any {
            self.out.write_char('|')?;
        }
        self.any = true;
        self.out.write_str(name)
    }

    /// Names the set bits of `bits` that `table` knows, lowest bit first, and returns the
    /// bits it could not name.
    fn named_bits(&mut self, bits: u32, table: &[Flag]) -> Result<u32, fmt::Error> {
        let mut unnamed = 0;
        // The set bits only, lowest first.
        let mut rest = bits;
        while rest != 0 {
            let bit = rest & rest.wrapping_neg();
            rest &= rest - 1;
            match table.iter().find(|f| f.0 as u32 == bit) {
                Some((_, name)) => self.name(name)?,
                None => unnamed |= bit,
            }
        }
        Ok(unnamed)
    }

    /// Bits no table names, as one hex term so nothing the caller passed goes unseen.
    fn unknown(&mut self, bits: u32) -> fmt::Result {
        if bits == 0 {
            return Ok(());
        }
        self.term(format_args!("{bits:#x}"))
    }

    /// A huge-page size field (`log2` of the size); `prefix` is `MAP` or `SHM`.
    fn huge_size(&mut self, log2: u32, prefix: &str) -> fmt::Result {
        match log2 {
            0 => Ok(()),
            HUGE_LOG2_2MB => self.term(format_args!("{prefix}_HUGE_2MB")),
            HUGE_LOG2_1GB => self.term(format_args!("{prefix}_HUGE_1GB")),
            n => self.term(format_args!("{n}<<{prefix}_HUGE_SHIFT")),
        }
    }

    /// Writes `none` when no term was written, so an empty set still reads as a value.
    fn or_none(&mut self, none: &str) -> fmt::Result {
        if self.any {
            return Ok(());
        }
        self.out.write_str(none)
    }
}

/// The flag renderer every plain flags argument uses: set bits by name in bit order, then the
/// unnamed bits as one hex term, or `none` when no bit is set.
fn flags(out: &mut impl Write, bits: u32, table: &[Flag], none: &str) -> fmt::Result {
    let mut terms = Terms::new(out);
    let unnamed = terms.named_bits(bits, table)?;
    terms.unknown(unnamed)?;
    terms.or_none(none)
}

/// Splits the huge-page size field off `bits`: `(log2 of the size, the other bits)`.
fn split_huge(bits: u32) -> (u32, u32) {
    let field = HUGE_MASK << HUGE_SHIFT;
    ((bits & field) >> HUGE_SHIFT, bits & !field)
}

fn lookup(table: &[(i32, &'static str)], value: i32) -> Option<&'static str> {
    table.iter().find(|e| e.0 == value).map(|e| e.1)
}

/// `NULL` for 0, else lower-case hex.
pub fn pointer(out: &mut impl Write, addr: u64) -> fmt::Result {
    if addr == 0 {
        out.write_str("NULL")
    } else {
        crate::trace::format::num::hex(out, addr)
    }
}

/// `IPC_PRIVATE`, else the key as hex of its 32 bits (as strace shows `key_t`).
pub fn key(out: &mut impl Write, key: i32) -> fmt::Result {
    if key == libc::IPC_PRIVATE {
        out.write_str("IPC_PRIVATE")
    } else {
        crate::trace::format::num::hex(out, u64::from(key as u32))
    }
}

/// A file offset in hex, `0` for zero (as strace shows mmap offsets).
pub fn offset(out: &mut impl Write, offset: u64) -> fmt::Result {
    if offset == 0 {
        out.write_char('0')
    } else {
        crate::trace::format::num::hex(out, offset)
    }
}

/// The flags of shmget and semget: names, a huge-page size (shmget), unknown bits as hex, then
/// always the permission bits in octal (`IPC_CREAT|0600`, `000`), as `%#03o` prints them.
fn get_flags(
    out: &mut impl Write,
    flags: i32,
    table: &[Flag],
    huge_prefix: Option<&str>,
) -> fmt::Result {
    let bits = flags as u32;
    let (huge, rest) = match huge_prefix {
        Some(_) => split_huge(bits & !MODE_BITS),
        None => (0, bits & !MODE_BITS),
    };
    let mut terms = Terms::new(out);
    let unnamed = terms.named_bits(rest, table)?;
    if let Some(prefix) = huge_prefix {
        terms.huge_size(huge, prefix)?;
    }
    terms.unknown(unnamed)?;
    terms.term(format_args!("0{:02o}", bits & MODE_BITS))
}

/// shmget's `shmflg`: `IPC_CREAT|IPC_EXCL|0600`, `SHM_HUGETLB|SHM_HUGE_2MB|0600`.
pub fn shmget_flags(out: &mut impl Write, shmflg: i32) -> fmt::Result {
    get_flags(out, shmflg, SHMGET_FLAGS, Some("SHM"))
}

/// semget's `semflg`: `IPC_CREAT|0600`.
pub fn semget_flags(out: &mut impl Write, semflg: i32) -> fmt::Result {
    get_flags(out, semflg, SEMGET_FLAGS, None)
}

/// msgget's `msgflg`: `IPC_CREAT|IPC_EXCL|0600`.
pub fn msgget_flags(out: &mut impl Write, msgflg: i32) -> fmt::Result {
    get_flags(out, msgflg, MSGGET_FLAGS, None)
}

/// msgsnd's and msgrcv's `msgflg`: `IPC_NOWAIT|MSG_NOERROR`, `0` when none.
pub fn msg_flags(out: &mut impl Write, msgflg: i32) -> fmt::Result {
    flags(out, msgflg as u32, MSG_FLAGS, "0")
}

/// shm_open's `oflag`: `O_RDWR|O_CREAT|O_EXCL`, the access mode first as strace prints it.
pub fn open_flags(out: &mut impl Write, oflag: i32) -> fmt::Result {
    let bits = oflag as u32;
    let access = oflag & libc::O_ACCMODE;
    let mut terms = Terms::new(out);
    match OPEN_ACCESS.iter().find(|f| f.0 == access) {
        Some((_, name)) => terms.name(name)?,
        None => terms.term(format_args!("{access:#x}"))?,
    }
    let unnamed = terms.named_bits(bits & !(libc::O_ACCMODE as u32), OPEN_FLAGS)?;
    terms.unknown(unnamed)
}

/// memfd_create's `flags`: `MFD_CLOEXEC|MFD_HUGETLB|MFD_HUGE_2MB`, `0` when none. As the
/// kernel reads them, bits 26..31 are a huge-page size only with `MFD_HUGETLB`; without it
/// they are unknown bits.
pub fn memfd_flags(out: &mut impl Write, flags: u32) -> fmt::Result {
    let (huge, rest) = if flags & libc::MFD_HUGETLB != 0 {
        split_huge(flags)
    } else {
        (0, flags)
    };
    let mut terms = Terms::new(out);
    let unnamed = terms.named_bits(rest, MEMFD_FLAGS)?;
    terms.huge_size(huge, "MFD")?;
    terms.unknown(unnamed)?;
    terms.or_none("0")
}

/// sem_open's `oflag`: `O_CREAT|O_EXCL`, `0` when none. sem_open ignores the access mode (it
/// always opens read-write), so none is shown.
pub fn sem_open_flags(out: &mut impl Write, oflag: i32) -> fmt::Result {
    flags(
        out,
        oflag as u32 & !(libc::O_ACCMODE as u32),
        OPEN_FLAGS,
        "0",
    )
}

/// A file mode (`shm_open`'s `mode`), in octal as `%#03o` prints it.
pub fn mode(out: &mut impl Write, mode: u32) -> fmt::Result {
    write!(out, "0{:02o}", mode)
}

/// shmat's `shmflg`: `SHM_RDONLY|SHM_RND`, `0` when none.
pub fn shmat_flags(out: &mut impl Write, shmflg: i32) -> fmt::Result {
    flags(out, shmflg as u32, SHMAT_FLAGS, "0")
}

/// A ctl command: its name, after `IPC_64|` when that bit is set; unknown as decimal.
fn ctl_cmd(out: &mut impl Write, cmd: i32, own: &[Cmd]) -> fmt::Result {
    let base = base_cmd(cmd);
    match lookup(IPC_CMDS, base).or_else(|| lookup(own, base)) {
        Some(name) if base != cmd => write!(out, "IPC_64|{name}"),
        Some(name) => out.write_str(name),
        None => write!(out, "{cmd}"),
    }
}

/// shmctl's `cmd`: `IPC_STAT`, `IPC_64|IPC_STAT`, `SHM_LOCK`, or a decimal number.
pub fn shmctl_cmd(out: &mut impl Write, cmd: i32) -> fmt::Result {
    ctl_cmd(out, cmd, SHM_CMDS)
}

/// semctl's `cmd`: `IPC_RMID`, `SETVAL`, `IPC_64|SEM_STAT`, or a decimal number.
pub fn semctl_cmd(out: &mut impl Write, cmd: i32) -> fmt::Result {
    ctl_cmd(out, cmd, SEM_CMDS)
}

/// msgctl's `cmd`: `IPC_RMID`, `IPC_64|MSG_STAT`, or a decimal number.
pub fn msgctl_cmd(out: &mut impl Write, cmd: i32) -> fmt::Result {
    ctl_cmd(out, cmd, MSG_CMDS)
}

/// `prot`: `PROT_READ|PROT_WRITE`, `PROT_NONE` when 0.
pub fn prot(out: &mut impl Write, prot: i32) -> fmt::Result {
    flags(out, prot as u32, PROT_FLAGS, "PROT_NONE")
}

/// mmap's `flags`: the mapping type (or its hex value), the flag names in bit order, a
/// huge-page size, then unknown bits as hex.
///
/// Bits 26..31 are a huge-page size only with `MAP_HUGETLB`, as the kernel reads them; without
/// it bit 26 is `MAP_UNINITIALIZED` and the others are unknown.
pub fn mmap_flags(out: &mut impl Write, flags: i32) -> fmt::Result {
    let bits = flags as u32;
    let map_type = bits & libc::MAP_TYPE as u32;
    let mut terms = Terms::new(out);
    match lookup(MAP_TYPES, map_type as i32) {
        Some(name) => terms.name(name)?,
        None => terms.term(format_args!("{map_type:#x}"))?,
    }
    let rest = bits & !(libc::MAP_TYPE as u32);
    let (huge, rest) = if rest & libc::MAP_HUGETLB as u32 != 0 {
        split_huge(rest)
    } else {
        (0, rest)
    };
    let unnamed = terms.named_bits(rest, MAP_FLAGS)?;
    terms.huge_size(huge, "MAP")?;
    terms.unknown(unnamed)
}

/// mremap's `flags`: `MREMAP_MAYMOVE|MREMAP_FIXED`, `0` when none.
pub fn mremap_flags(out: &mut impl Write, flags: i32) -> fmt::Result {
    self::flags(out, flags as u32, MREMAP_FLAGS, "0")
}

/// Whether mremap's fifth argument means anything (it is read only with `MREMAP_FIXED`).
pub fn mremap_uses_new_address(flags: i32) -> bool {
    flags & libc::MREMAP_FIXED != 0
}

/// A `sembuf`'s `sem_flg` (a C `short`): `IPC_NOWAIT|SEM_UNDO`, `0` when none.
pub fn sem_flg(out: &mut impl Write, sem_flg: i16) -> fmt::Result {
    flags(out, u32::from(sem_flg as u16), SEM_FLAGS, "0")
}

/// What semctl's fourth argument is for a command, which decides whether and how it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SemctlArg {
    /// `SETVAL`: `int val`.
    Val,
    /// The `*_STAT`, `IPC_SET` and `*_INFO` commands: `struct semid_ds *buf` (or `seminfo`).
    Buf,
    /// `GETALL`, `SETALL`: `unsigned short *array`.
    Array,
}

impl SemctlArg {
    /// The `union semun` member name, used as the JSON key.
    pub fn name(self) -> &'static str {
        match self {
            SemctlArg::Val => "val",
            SemctlArg::Buf => "buf",
            SemctlArg::Array => "array",
        }
    }
}

/// The kind of semctl's fourth argument for `cmd` (with or without `IPC_64`), or `None` when
/// the command does not use it.
pub fn semctl_arg(cmd: i32) -> Option<SemctlArg> {
    let base = base_cmd(cmd);
    if base == libc::SETVAL {
        Some(SemctlArg::Val)
    } else if base == libc::GETALL || base == libc::SETALL {
        Some(SemctlArg::Array)
    } else if [
        base_cmd(libc::IPC_STAT),
        libc::IPC_SET,
        base_cmd(libc::SEM_STAT),
        base_cmd(libc::SEM_STAT_ANY),
        libc::IPC_INFO,
        libc::SEM_INFO,
    ]
    .contains(&base)
    {
        Some(SemctlArg::Buf)
    } else {
        None
    }
}

/// The errno's name, `EINVAL`; `E<number>` when unknown.
pub fn errno_name(out: &mut impl Write, errno: i32) -> fmt::Result {
    match errnos::name(errno) {
        Some(name) => out.write_str(name),
        None => write!(out, "E{errno}"),
    }
}

/// The errno's message, `Invalid argument`; glibc's `Unknown error <number>` when unknown.
pub fn errno_message(out: &mut impl Write, errno: i32) -> fmt::Result {
    match errnos::message(errno) {
        Some(message) => out.write_str(message),
        None => write!(out, "Unknown error {errno}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::linebuf::LineBuf;

    /// Runs a decoder and returns what it wrote.
    fn show(decoder: impl FnOnce(&mut LineBuf) -> fmt::Result) -> String {
        let mut buf = LineBuf::new();
        decoder(&mut buf).unwrap();
        buf.as_str().to_owned()
    }

    #[test]
    fn pointers() {
        assert_eq!(show(|o| pointer(o, 0)), "NULL");
        assert_eq!(show(|o| pointer(o, 0x7f3a_2c00_0000)), "0x7f3a2c000000");
        assert_eq!(show(|o| pointer(o, u64::MAX)), "0xffffffffffffffff");
    }

    #[test]
    fn keys() {
        assert_eq!(show(|o| key(o, 0)), "IPC_PRIVATE");
        assert_eq!(show(|o| key(o, 1234)), "0x4d2");
        assert_eq!(show(|o| key(o, -1)), "0xffffffff");
    }

    #[test]
    fn offsets() {
        assert_eq!(show(|o| offset(o, 0)), "0");
        assert_eq!(show(|o| offset(o, 4096)), "0x1000");
        assert_eq!(show(|o| offset(o, -4096i64 as u64)), "0xfffffffffffff000");
    }

    #[test]
    fn shmget_flags_names_then_octal_mode() {
        let f = |v: i32| show(|o| shmget_flags(o, v));
        assert_eq!(
            f(libc::IPC_CREAT | libc::IPC_EXCL | 0o600),
            "IPC_CREAT|IPC_EXCL|0600"
        );
        assert_eq!(f(libc::IPC_CREAT), "IPC_CREAT|000");
        assert_eq!(f(0o600), "0600");
        assert_eq!(f(0), "000");
        assert_eq!(f(0o7), "007");
        assert_eq!(f(0o777), "0777");
        assert_eq!(
            f(libc::IPC_CREAT | libc::SHM_HUGETLB | libc::SHM_NORESERVE | 0o644),
            "IPC_CREAT|SHM_HUGETLB|SHM_NORESERVE|0644"
        );
    }

    #[test]
    fn shmget_flags_huge_sizes_and_unknown_bits() {
        let f = |v: i32| show(|o| shmget_flags(o, v));
        let huge = |log2: i32| log2 << HUGE_SHIFT;
        assert_eq!(
            f(libc::SHM_HUGETLB | huge(21) | 0o600),
            "SHM_HUGETLB|SHM_HUGE_2MB|0600"
        );
        assert_eq!(
            f(libc::SHM_HUGETLB | huge(30) | 0o600),
            "SHM_HUGETLB|SHM_HUGE_1GB|0600"
        );
        assert_eq!(
            f(libc::SHM_HUGETLB | huge(16) | 0o600),
            "SHM_HUGETLB|16<<SHM_HUGE_SHIFT|0600"
        );
        assert_eq!(
            f(libc::IPC_CREAT | 0x10_0000 | 0o600),
            "IPC_CREAT|0x100000|0600"
        );
        assert_eq!(
            f(-1),
            "IPC_CREAT|IPC_EXCL|SHM_HUGETLB|SHM_NORESERVE|63<<SHM_HUGE_SHIFT|0x3ffe000|0777"
        );
    }

    #[test]
    fn semget_flags_have_no_shm_names() {
        let f = |v: i32| show(|o| semget_flags(o, v));
        assert_eq!(f(libc::IPC_CREAT | 0o600), "IPC_CREAT|0600");
        assert_eq!(
            f(libc::IPC_CREAT | libc::IPC_NOWAIT | 0o666),
            "IPC_CREAT|IPC_NOWAIT|0666"
        );
        assert_eq!(f(0o10000 | 0o400), "0x1000|0400");
        assert_eq!(f(21 << HUGE_SHIFT), "0x54000000|000");
    }

    #[test]
    fn shmat_flags_in_bit_order() {
        let f = |v: i32| show(|o| shmat_flags(o, v));
        assert_eq!(f(0), "0");
        assert_eq!(f(libc::SHM_RDONLY), "SHM_RDONLY");
        assert_eq!(
            f(libc::SHM_EXEC | libc::SHM_REMAP | libc::SHM_RND | libc::SHM_RDONLY),
            "SHM_RDONLY|SHM_RND|SHM_REMAP|SHM_EXEC"
        );
        assert_eq!(f(libc::SHM_RND | 0x3), "SHM_RND|0x3");
        assert_eq!(f(0x4), "0x4");
    }

    #[test]
    fn shmctl_commands() {
        let f = |v: i32| show(|o| shmctl_cmd(o, v));
        assert_eq!(f(libc::IPC_RMID), "IPC_RMID");
        assert_eq!(f(2), "IPC_STAT");
        assert_eq!(f(2 | IPC_64), "IPC_64|IPC_STAT");
        assert_eq!(f(libc::IPC_SET | IPC_64), "IPC_64|IPC_SET");
        assert_eq!(f(libc::IPC_INFO), "IPC_INFO");
        assert_eq!(f(libc::SHM_LOCK), "SHM_LOCK");
        assert_eq!(f(libc::SHM_UNLOCK), "SHM_UNLOCK");
        assert_eq!(f(13), "SHM_STAT");
        assert_eq!(f(14), "SHM_INFO");
        assert_eq!(f(15), "SHM_STAT_ANY");
        assert_eq!(f(libc::SETALL), "17", "a sem command is unknown to shmctl");
        assert_eq!(f(99), "99");
        assert_eq!(f(99 | IPC_64), "355");
        assert_eq!(f(-1), "-1");
    }

    #[test]
    fn semctl_commands() {
        let f = |v: i32| show(|o| semctl_cmd(o, v));
        let names = [
            (0, "IPC_RMID"),
            (1, "IPC_SET"),
            (2, "IPC_STAT"),
            (3, "IPC_INFO"),
            (11, "GETPID"),
            (12, "GETVAL"),
            (13, "GETALL"),
            (14, "GETNCNT"),
            (15, "GETZCNT"),
            (16, "SETVAL"),
            (17, "SETALL"),
            (18, "SEM_STAT"),
            (19, "SEM_INFO"),
            (20, "SEM_STAT_ANY"),
        ];
        for (cmd, name) in names {
            assert_eq!(f(cmd), name);
            assert_eq!(f(cmd | IPC_64), format!("IPC_64|{name}"));
        }
        assert_eq!(f(21), "21");
    }

    #[test]
    fn msg_flags_and_commands() {
        let get = |v: i32| show(|o| msgget_flags(o, v));
        assert_eq!(
            get(libc::IPC_CREAT | libc::IPC_EXCL | 0o600),
            "IPC_CREAT|IPC_EXCL|0600"
        );
        assert_eq!(get(0), "000");
        let f = |v: i32| show(|o| msg_flags(o, v));
        assert_eq!(f(0), "0");
        assert_eq!(f(libc::IPC_NOWAIT), "IPC_NOWAIT");
        assert_eq!(
            f(libc::IPC_NOWAIT | MSG_NOERROR | MSG_EXCEPT | MSG_COPY),
            "IPC_NOWAIT|MSG_NOERROR|MSG_EXCEPT|MSG_COPY"
        );
        assert_eq!(f(MSG_NOERROR | 0x1), "MSG_NOERROR|0x1");
        let cmd = |v: i32| show(|o| msgctl_cmd(o, v));
        let names = [
            (0, "IPC_RMID"),
            (1, "IPC_SET"),
            (2, "IPC_STAT"),
            (3, "IPC_INFO"),
            (11, "MSG_STAT"),
            (12, "MSG_INFO"),
            (13, "MSG_STAT_ANY"),
        ];
        for (c, name) in names {
            assert_eq!(cmd(c), name);
            assert_eq!(cmd(c | IPC_64), format!("IPC_64|{name}"));
        }
        assert_eq!(cmd(14), "14");
        assert_eq!(cmd(-1), "-1");
    }

    #[test]
    fn semctl_fourth_argument_by_command() {
        use SemctlArg::*;
        assert_eq!(semctl_arg(libc::SETVAL), Some(Val));
        assert_eq!(semctl_arg(libc::SETVAL | IPC_64), Some(Val));
        assert_eq!(semctl_arg(libc::GETALL), Some(Array));
        assert_eq!(semctl_arg(libc::SETALL), Some(Array));
        for cmd in [2, 1, 18, 20, 3, 19] {
            assert_eq!(semctl_arg(cmd), Some(Buf), "{cmd}");
            assert_eq!(semctl_arg(cmd | IPC_64), Some(Buf), "{cmd}");
        }
        for cmd in [0, 11, 12, 14, 15, 99, -1] {
            assert_eq!(semctl_arg(cmd), None, "{cmd}");
        }
        assert_eq!(Val.name(), "val");
        assert_eq!(Buf.name(), "buf");
        assert_eq!(Array.name(), "array");
    }

    #[test]
    fn prot_values() {
        let f = |v: i32| show(|o| prot(o, v));
        assert_eq!(f(0), "PROT_NONE");
        assert_eq!(
            f(libc::PROT_READ | libc::PROT_WRITE),
            "PROT_READ|PROT_WRITE"
        );
        assert_eq!(
            f(libc::PROT_GROWSUP | libc::PROT_GROWSDOWN | PROT_SEM | libc::PROT_EXEC | 1 | 2),
            "PROT_READ|PROT_WRITE|PROT_EXEC|PROT_SEM|PROT_GROWSDOWN|PROT_GROWSUP"
        );
        assert_eq!(f(libc::PROT_READ | 0x40), "PROT_READ|0x40");
        assert_eq!(f(0x40), "0x40");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn mmap_flags_type_names_huge_and_unknown() {
        let f = |v: i32| show(|o| mmap_flags(o, v));
        assert_eq!(
            f(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
            "MAP_PRIVATE|MAP_ANONYMOUS"
        );
        assert_eq!(f(libc::MAP_SHARED), "MAP_SHARED");
        assert_eq!(
            f(libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC),
            "MAP_SHARED_VALIDATE|MAP_SYNC"
        );
        assert_eq!(f(0), "0x0");
        assert_eq!(f(0x7 | libc::MAP_FIXED), "0x7|MAP_FIXED");
        assert_eq!(
            f(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB),
            "MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|MAP_HUGE_2MB"
        );
        assert_eq!(
            f(libc::MAP_SHARED | libc::MAP_HUGETLB | libc::MAP_HUGE_1GB),
            "MAP_SHARED|MAP_HUGETLB|MAP_HUGE_1GB"
        );
        assert_eq!(
            f(libc::MAP_SHARED | libc::MAP_HUGETLB | libc::MAP_HUGE_64KB),
            "MAP_SHARED|MAP_HUGETLB|16<<MAP_HUGE_SHIFT"
        );
        assert_eq!(
            f(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | MAP_UNINITIALIZED),
            "MAP_PRIVATE|MAP_ANONYMOUS|MAP_UNINITIALIZED"
        );
        assert_eq!(
            f(libc::MAP_PRIVATE | 0x200 | 0x800_0000),
            "MAP_PRIVATE|0x8000200"
        );
        assert_eq!(
            f(libc::MAP_PRIVATE | libc::MAP_HUGETLB | libc::MAP_HUGE_2MB | 0x200),
            "MAP_PRIVATE|MAP_HUGETLB|MAP_HUGE_2MB|0x200"
        );
        let every = libc::MAP_FIXED
            | libc::MAP_ANONYMOUS
            | libc::MAP_32BIT
            | libc::MAP_GROWSDOWN
            | libc::MAP_DENYWRITE
            | libc::MAP_EXECUTABLE
            | libc::MAP_LOCKED
            | libc::MAP_NORESERVE
            | libc::MAP_POPULATE
            | libc::MAP_NONBLOCK
            | libc::MAP_STACK
            | libc::MAP_SYNC
            | libc::MAP_FIXED_NOREPLACE
            | MAP_UNINITIALIZED;
        assert_eq!(
            f(libc::MAP_SHARED | every),
            "MAP_SHARED|MAP_FIXED|MAP_ANONYMOUS|MAP_32BIT|MAP_GROWSDOWN|MAP_DENYWRITE|\
             MAP_EXECUTABLE|MAP_LOCKED|MAP_NORESERVE|MAP_POPULATE|MAP_NONBLOCK|MAP_STACK|\
             MAP_SYNC|MAP_FIXED_NOREPLACE|MAP_UNINITIALIZED"
        );
    }

    #[test]
    fn huge_constants_match_libc() {
        assert_eq!(HUGE_SHIFT as i32, libc::MAP_HUGE_SHIFT);
        assert_eq!(HUGE_MASK as i32, libc::MAP_HUGE_MASK);
        assert_eq!((HUGE_LOG2_2MB << HUGE_SHIFT) as i32, libc::MAP_HUGE_2MB);
        assert_eq!((HUGE_LOG2_1GB << HUGE_SHIFT) as i32, libc::MAP_HUGE_1GB);
    }

    #[test]
    fn mremap_flags_and_new_address() {
        let f = |v: i32| show(|o| mremap_flags(o, v));
        assert_eq!(f(0), "0");
        assert_eq!(f(libc::MREMAP_MAYMOVE), "MREMAP_MAYMOVE");
        assert_eq!(
            f(libc::MREMAP_DONTUNMAP | libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE),
            "MREMAP_MAYMOVE|MREMAP_FIXED|MREMAP_DONTUNMAP"
        );
        assert_eq!(f(libc::MREMAP_MAYMOVE | 0x10), "MREMAP_MAYMOVE|0x10");
        assert!(mremap_uses_new_address(
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED
        ));
        assert!(!mremap_uses_new_address(libc::MREMAP_MAYMOVE));
    }

    #[test]
    fn memfd_flags_names_then_huge_size() {
        let f = |v: u32| show(|o| memfd_flags(o, v));
        assert_eq!(f(0), "0");
        assert_eq!(
            f(libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING),
            "MFD_CLOEXEC|MFD_ALLOW_SEALING"
        );
        assert_eq!(
            f(libc::MFD_NOEXEC_SEAL | libc::MFD_EXEC),
            "MFD_NOEXEC_SEAL|MFD_EXEC"
        );
        assert_eq!(
            f(libc::MFD_HUGETLB | libc::MFD_HUGE_2MB),
            "MFD_HUGETLB|MFD_HUGE_2MB"
        );
        assert_eq!(
            f(libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_1GB),
            "MFD_CLOEXEC|MFD_HUGETLB|MFD_HUGE_1GB"
        );
        assert_eq!(
            f(libc::MFD_HUGETLB | libc::MFD_HUGE_64KB),
            "MFD_HUGETLB|16<<MFD_HUGE_SHIFT"
        );
        // Without MFD_HUGETLB the size bits are bits the kernel refuses.
        assert_eq!(f(libc::MFD_HUGE_2MB), "0x54000000");
        assert_eq!(f(libc::MFD_CLOEXEC | 0x100), "MFD_CLOEXEC|0x100");
    }

    #[test]
    fn sem_flg_values() {
        let f = |v: i16| show(|o| sem_flg(o, v));
        assert_eq!(f(0), "0");
        assert_eq!(f(libc::SEM_UNDO as i16), "SEM_UNDO");
        assert_eq!(
            f((libc::IPC_NOWAIT | libc::SEM_UNDO) as i16),
            "IPC_NOWAIT|SEM_UNDO"
        );
        assert_eq!(f(-1), "IPC_NOWAIT|SEM_UNDO|0xe7ff");
    }

    #[test]
    fn errno_names_and_messages() {
        assert_eq!(show(|o| errno_name(o, libc::EINVAL)), "EINVAL");
        assert_eq!(show(|o| errno_name(o, 200)), "E200");
        assert_eq!(show(|o| errno_name(o, 0)), "E0");
        assert_eq!(
            show(|o| errno_message(o, libc::ENOMEM)),
            "Cannot allocate memory"
        );
        assert_eq!(show(|o| errno_message(o, 200)), "Unknown error 200");
    }
}

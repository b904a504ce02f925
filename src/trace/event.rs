//! The record a hook produces for each call: fixed size, `Copy`, no pointers into the host.
//!
//! A hook fills an [`Event`] from raw argument bits and the real call's result; everything that
//! turns it into text happens later from this value alone, so formatting can be tested without
//! FFI and a recorder can store events verbatim.

/// The hooked functions, in the order of the export list.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Shmget,
    Shmat,
    Shmdt,
    Shmctl,
    Semget,
    Semop,
    Semtimedop,
    Semctl,
    Mmap,
    Mmap64,
    Munmap,
    Mremap,
}

impl Func {
    pub const ALL: [Func; 12] = [
        Func::Shmget,
        Func::Shmat,
        Func::Shmdt,
        Func::Shmctl,
        Func::Semget,
        Func::Semop,
        Func::Semtimedop,
        Func::Semctl,
        Func::Mmap,
        Func::Mmap64,
        Func::Munmap,
        Func::Mremap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Shmget => "shmget",
            Func::Shmat => "shmat",
            Func::Shmdt => "shmdt",
            Func::Shmctl => "shmctl",
            Func::Semget => "semget",
            Func::Semop => "semop",
            Func::Semtimedop => "semtimedop",
            Func::Semctl => "semctl",
            Func::Mmap => "mmap",
            Func::Mmap64 => "mmap64",
            Func::Munmap => "munmap",
            Func::Mremap => "mremap",
        }
    }

    /// Calls that can wait indefinitely get an enter record before they start.
    pub fn may_block(self) -> bool {
        matches!(self, Func::Semop | Func::Semtimedop)
    }

    /// Functions returning a pointer report failure as `(void *) -1` rather than `-1`.
    pub fn returns_pointer(self) -> bool {
        matches!(self, Func::Shmat | Func::Mmap | Func::Mmap64 | Func::Mremap)
    }
}

/// Whether the record was written before the real call (it may block) or after it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Written before a call that can block, so a hung or killed process shows where it waits.
    Enter,
    /// The call returned: `ret`, `errno` and `dur_ns` are meaningful.
    Exit,
}

/// One `struct sembuf`, copied out of the caller's array once the kernel accepted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemOp {
    pub num: u16,
    pub op: i16,
    pub flg: i16,
}

/// How many `sembuf` entries a record keeps; longer arrays are shown truncated, like strace.
pub const SOPS_KEPT: usize = 8;

/// A `struct timespec` copied out of the caller's memory once the kernel accepted it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeout {
    pub sec: i64,
    pub nsec: i64,
}

/// One call, before it started (`Phase::Enter`) or after it returned (`Phase::Exit`).
///
/// `args` holds the raw bits of each argument in prototype order, zero-extended from its C type
/// (signed C `int`s are stored as `u64` of the sign-extended value, so `-1` reads back as `-1`):
///
/// | func | args |
/// |---|---|
/// | shmget | key, size, shmflg |
/// | shmat | shmid, shmaddr, shmflg |
/// | shmdt | shmaddr |
/// | shmctl | shmid, cmd, buf |
/// | semget | key, nsems, semflg |
/// | semop | semid, sops, nsops |
/// | semtimedop | semid, sops, nsops, timeout |
/// | semctl | semid, semnum, cmd, arg (the `union semun` bits, whatever the caller passed) |
/// | mmap, mmap64 | addr, length, prot, flags, fd, offset |
/// | munmap | addr, length |
/// | mremap | old_address, old_size, new_size, flags, new_address (whatever the caller passed) |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub phase: Phase,
    pub func: Func,
    pub pid: i32,
    pub tid: i32,
    /// Wall-clock time at entry, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Time spent in the real call (0 for `Phase::Enter`).
    pub dur_ns: u64,
    pub args: [u64; 6],
    /// The real call's return value; pointers as their address.
    pub ret: i64,
    /// The errno the real call set when it failed; 0 on success (and for `Phase::Enter`).
    pub errno: i32,
    /// The return address into the caller of the hooked function.
    pub caller: u64,
    /// The first `min(nsops, SOPS_KEPT)` operations, or none when they were not read
    /// (the call failed before the kernel accepted the array, or this is a `Phase::Enter`).
    pub sops: [SemOp; SOPS_KEPT],
    pub sops_read: u8,
    /// The semtimedop timeout, when non-NULL and accepted by the kernel.
    pub timeout: Option<Timeout>,
    /// `shmget`/`semget`: whether this call created the object (rather than opened it).
    pub created: bool,
}

impl Event {
    pub fn new(phase: Phase, func: Func) -> Event {
        Event {
            phase,
            func,
            pid: 0,
            tid: 0,
            ts_ns: 0,
            dur_ns: 0,
            args: [0; 6],
            ret: 0,
            errno: 0,
            caller: 0,
            sops: [SemOp::default(); SOPS_KEPT],
            sops_read: 0,
            timeout: None,
            created: false,
        }
    }

    pub fn failed(&self) -> bool {
        self.phase == Phase::Exit && self.ret == -1
    }

    /// For a successful `shmget`/`semget`: whether it created the object.
    pub fn created(&self) -> Option<bool> {
        let get = matches!(self.func, Func::Shmget | Func::Semget);
        (get && self.phase == Phase::Exit && !self.failed()).then_some(self.created)
    }

    /// Argument `i` as the C `int` it was.
    pub fn arg_int(&self, i: usize) -> i32 {
        self.args.get(i).copied().unwrap_or(0) as i32
    }

    /// The operations that were read, in order.
    pub fn sops(&self) -> &[SemOp] {
        let n = usize::from(self.sops_read).min(SOPS_KEPT);
        &self.sops[..n]
    }
}

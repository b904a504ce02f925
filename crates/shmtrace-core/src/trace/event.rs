//! The record a hook produces for each call: fixed size, `Copy`, no pointers into the host.
//!
//! A hook fills an [`Event`] from raw argument bits and the real call's result; everything that
//! turns it into text happens later from this value alone, so formatting can be tested without
//! FFI and a recorder can store events verbatim.

use core::ffi::CStr;
use core::mem::MaybeUninit;

/// The families of hooked functions (`shmtrace --calls` selects calls by them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Shm,
    Sem,
    Mmap,
    Msg,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Shm, Group::Sem, Group::Mmap, Group::Msg];

    pub fn name(self) -> &'static str {
        match self {
            Group::Shm => "shm",
            Group::Sem => "sem",
            Group::Mmap => "mmap",
            Group::Msg => "msg",
        }
    }
}

/// A table entry's `failure`, or `-1` when it has none.
macro_rules! failure_or_minus_one {
    () => {
        -1
    };
    ($failure:literal) => {
        $failure
    };
}

macro_rules! define_func {
    ($($variant:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty
        { group: $group:ident, pointer: $pointer:literal, blocks: $blocks:literal
            $(, failure: $failure:literal)? })*) => {
        /// The hooked functions, in the order of the hook table.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Func {
            $($variant),*
        }

        impl Func {
            /// How many functions the shim hooks.
            pub const COUNT: usize = [$(Func::$variant),*].len();

            pub const ALL: [Func; Func::COUNT] = [$(Func::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Func::$variant => stringify!($name)),*
                }
            }

            /// The C symbol, NUL-terminated for `dlsym`.
            pub fn symbol(self) -> &'static CStr {
                match self {
                    $(Func::$variant => const {
                        match CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()) {
                            Ok(symbol) => symbol,
                            Err(_) => panic!("a C identifier holds no NUL"),
                        }
                    }),*
                }
            }

            pub fn group(self) -> Group {
                match self {
                    $(Func::$variant => Group::$group),*
                }
            }

            /// How many parameters the C function has: the words of `Event::args` it uses (the
            /// others stay 0).
            pub const fn arg_count(self) -> usize {
                match self {
                    $(Func::$variant => 0 $(+ { let _ = stringify!($arg); 1 })*),*
                }
            }

            /// Calls that can wait indefinitely get an enter record before they start.
            #[inline]
            pub fn may_block(self) -> bool {
                match self {
                    $(Func::$variant => $blocks),*
                }
            }

            /// Functions returning a pointer report failure as `(void *) -1` rather than `-1`.
            #[inline]
            pub fn returns_pointer(self) -> bool {
                match self {
                    $(Func::$variant => $pointer),*
                }
            }

            /// The return value that means failure: `-1` (also `(void *) -1`, `MAP_FAILED`)
            /// unless the table says otherwise (`sem_open`'s `SEM_FAILED` is 0).
            /// One load from a table: every hook asks it several times per call.
            #[inline]
            pub fn failure_value(self) -> i64 {
                const VALUES: [i64; Func::COUNT] = [$(failure_or_minus_one!($($failure)?)),*];
                VALUES[self as usize]
            }
        }
    };
}

crate::hook_table!(define_func);

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

/// How many bytes of a name (`shm_open`, `shm_unlink`, `memfd_create`, the object an `mmap`
/// maps) a record keeps; longer names are cut,
/// like strace's strings. `NAME_MAX` is 255, but real names are short.
pub const NAME_KEPT: usize = 63;

/// The name argument of a call, copied once libc had read it. Only the first `len` bytes are
/// ever written or read, so an event without a name pays one byte store for it, as for
/// [`Stack`].
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Name {
    len: u8,
    bytes: [MaybeUninit<u8>; NAME_KEPT],
}

impl Name {
    pub const fn new() -> Name {
        Name {
            len: 0,
            bytes: [MaybeUninit::uninit(); NAME_KEPT],
        }
    }

    /// The first `NAME_KEPT` bytes of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Name {
        let mut name = Name::new();
        let n = bytes.len().min(NAME_KEPT);
        for (slot, &b) in name.bytes.iter_mut().zip(&bytes[..n]) {
            *slot = MaybeUninit::new(b);
        }
        name.len = n as u8;
        name
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        let len = usize::from(self.len).min(NAME_KEPT);
        // SAFETY: `from_bytes` is the only writer: it initialises the first `len` slots
        // (never more than `NAME_KEPT`), and `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr().cast::<u8>(), len) }
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::new()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "\"{}\"", self.as_bytes().escape_ascii())
    }
}

/// The most return addresses a record keeps above its caller (`SHMTRACE_STACK`).
pub const STACK_MAX: usize = 16;

/// Up to [`STACK_MAX`] return addresses: the frames above a call's caller (its caller's
/// caller first), as the unwinder found them when the hook ran.
///
/// Only the first `len` slots are ever written or read: an empty stack costs one byte store to
/// build, so a hook recording no stack (the default) pays nothing for the array.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Stack {
    len: u8,
    frames: [MaybeUninit<u64>; STACK_MAX],
}

impl Stack {
    pub const fn new() -> Stack {
        Stack {
            frames: [MaybeUninit::uninit(); STACK_MAX],
            len: 0,
        }
    }

    /// The first `STACK_MAX` of `frames`.
    pub fn from_slice(frames: &[u64]) -> Stack {
        let mut stack = Stack::new();
        for &frame in frames {
            stack.push(frame);
        }
        stack
    }

    /// Appends `frame`; false (and nothing stored) when the stack is full.
    pub fn push(&mut self, frame: u64) -> bool {
        let len = usize::from(self.len);
        match self.frames.get_mut(len) {
            Some(slot) => {
                *slot = MaybeUninit::new(frame);
                self.len = self.len.saturating_add(1);
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn as_slice(&self) -> &[u64] {
        let len = usize::from(self.len).min(STACK_MAX);
        // SAFETY: `push` is the only writer: it initialises slot `len` before counting it, so
        // the first `len` slots (never more than `STACK_MAX`) are initialised `u64`s, and
        // `MaybeUninit<u64>` has the layout of `u64`.
        unsafe { core::slice::from_raw_parts(self.frames.as_ptr().cast::<u64>(), len) }
    }
}

impl Default for Stack {
    fn default() -> Stack {
        Stack::new()
    }
}

impl PartialEq for Stack {
    fn eq(&self, other: &Stack) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Stack {}

impl core::fmt::Debug for Stack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        struct Hex(u64);
        impl core::fmt::Debug for Hex {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
        f.debug_list()
            .entries(self.as_slice().iter().map(|&a| Hex(a)))
            .finish()
    }
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
/// | shm_open | name (the pointer; the string is in `name`), oflag, mode |
/// | shm_unlink | name (the pointer; the string is in `name`) |
/// | memfd_create | name (the pointer; the string is in `name`), flags |
/// | sem_open | name (the pointer; the string is in `name`), oflag, mode, value (the last two whatever the caller passed) |
/// | sem_close | sem |
/// | sem_unlink | name (the pointer; the string is in `name`) |
/// | msgget | key, msgflg |
/// | msgsnd | msqid, msgp, msgsz, msgflg |
/// | msgrcv | msqid, msgp, msgsz, msgtyp, msgflg |
/// | msgctl | msqid, cmd, buf |
///
/// `repr(C)`, small fields first and the stack last: an event is built in place on the hook's
/// stack, and the compiler zeroes its fields with a few wide stores; with the stack's unused
/// slots at the end rather than between zeroed fields, those stores never cover them, so a
/// hook recording no stack pays nothing for the array; the name's bytes likewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Event {
    pub phase: Phase,
    pub func: Func,
    pub sops_read: u8,
    /// `shmget`/`semget`/`msgget`/`shm_open`/`sem_open`: whether this call created the object
    /// (rather than opened it).
    pub created: bool,
    pub pid: i32,
    pub tid: i32,
    /// The errno the real call set when it failed; 0 on success (and for `Phase::Enter`).
    pub errno: i32,
    /// Wall-clock time at entry, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Time spent in the real call (0 for `Phase::Enter`).
    pub dur_ns: u64,
    pub args: [u64; 6],
    /// The real call's return value; pointers as their address.
    pub ret: i64,
    /// The return address into the caller of the hooked function.
    pub caller: u64,
    /// The semtimedop timeout, when non-NULL and accepted by the kernel.
    pub timeout: Option<Timeout>,
    /// The first `min(nsops, SOPS_KEPT)` operations (how many: `sops_read`), or none when they
    /// were not read (the call failed before the kernel accepted the array, or it is logged as
    /// started before the kernel read them).
    pub sops: [SemOp; SOPS_KEPT],
    /// `shm_open`, `shm_unlink`, `memfd_create`, `sem_open`, `sem_unlink`: the name, read after
    /// libc (or the kernel) had read it. `mmap`, `mmap64` of a descriptor `shm_open` or
    /// `memfd_create` returned: the object mapped, `/dev/shm/NAME` or `memfd:NAME`. Empty
    /// otherwise.
    pub name: Name,
    /// With `SHMTRACE_STACK=N`, up to N return addresses above `caller` (empty by default).
    pub stack: Stack,
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
            name: Name::new(),
            stack: Stack::new(),
        }
    }

    pub fn failed(&self) -> bool {
        self.phase == Phase::Exit && self.ret == self.func.failure_value()
    }

    /// For a successful `shmget`/`semget`/`msgget`/`shm_open`/`sem_open`: whether it created the object.
    pub fn created(&self) -> Option<bool> {
        let get = matches!(
            self.func,
            Func::Shmget | Func::Semget | Func::Msgget | Func::ShmOpen | Func::SemOpen
        );
        (get && self.phase == Phase::Exit && !self.failed()).then_some(self.created)
    }

    /// Argument `i` as the C `int` it was.
    pub fn arg_int(&self, i: usize) -> i32 {
        self.args.get(i).copied().unwrap_or(0) as i32
    }

    /// The frames above the caller, innermost first; empty unless `SHMTRACE_STACK` asked.
    #[inline]
    pub fn stack(&self) -> &[u64] {
        self.stack.as_slice()
    }

    #[inline]
    pub fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }

    /// The operations that were read, in order.
    #[inline]
    pub fn sops(&self) -> &[SemOp] {
        let n = usize::from(self.sops_read).min(SOPS_KEPT);
        &self.sops[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Func as usize` indexes `ALL` (the binary log and the C API store it), and each
    /// function's `dlsym` name is its name.
    #[test]
    fn the_hook_table_numbers_and_names_each_function_once() {
        for (i, func) in Func::ALL.into_iter().enumerate() {
            assert_eq!(func as usize, i);
            assert_eq!(func.symbol().to_str(), Ok(func.name()));
            let same = Func::ALL.iter().filter(|f| f.name() == func.name()).count();
            assert_eq!(same, 1, "{func:?}");
        }
        assert!(
            Group::ALL
                .iter()
                .all(|g| Func::ALL.iter().any(|f| f.group() == *g))
        );
    }

    /// `sem_open` fails with `SEM_FAILED` (NULL in glibc); every other function with -1
    /// (`(void *) -1`, `MAP_FAILED` for the pointer ones).
    #[test]
    fn each_function_fails_with_its_own_value() {
        for func in Func::ALL {
            let want = if func == Func::SemOpen { 0 } else { -1 };
            assert_eq!(func.failure_value(), want, "{func:?}");
            let mut ev = Event::new(Phase::Exit, func);
            ev.ret = want;
            assert!(ev.failed(), "{func:?}");
            ev.ret = if want == 0 { -1 } else { 0 };
            assert!(!ev.failed(), "{func:?}");
        }
        assert!(Func::SemOpen.returns_pointer());
    }

    #[test]
    fn argument_counts_follow_the_prototypes() {
        assert_eq!(Func::Shmdt.arg_count(), 1);
        assert_eq!(Func::Munmap.arg_count(), 2);
        assert_eq!(Func::Semtimedop.arg_count(), 4);
        assert_eq!(Func::Mmap.arg_count(), 6);
        assert!(Func::ALL.iter().all(|f| (1..=6).contains(&f.arg_count())));
    }

    #[test]
    fn stacks_keep_what_was_pushed_up_to_the_limit() {
        let mut s = Stack::new();
        assert!(s.is_empty() && s.as_slice().is_empty());
        assert!(s.push(0x10) && s.push(0x20));
        assert_eq!(s.as_slice(), &[0x10, 0x20]);
        let all: Vec<u64> = (1..=20).collect();
        let full = Stack::from_slice(&all);
        assert_eq!(full.len(), STACK_MAX);
        assert_eq!(full.as_slice(), &all[..STACK_MAX]);
        let mut copy = full;
        assert!(!copy.push(99), "a full stack takes no more");
        assert_eq!(copy, full);
        assert_ne!(Stack::from_slice(&[1, 2]), Stack::from_slice(&[1, 3]));
        assert_eq!(Stack::from_slice(&[]), Stack::new());
        assert_eq!(format!("{:?}", Stack::from_slice(&[0x1f])), "[0x1f]");
    }

    #[test]
    fn the_stack_frames_end_the_event() {
        // See `Event`: the frames must be its last bytes, and it must stay this size.
        assert_eq!(size_of::<Event>(), 368);
        assert_eq!(
            core::mem::offset_of!(Event, stack) + core::mem::offset_of!(Stack, frames),
            size_of::<Event>() - STACK_MAX * size_of::<u64>()
        );
    }

    #[test]
    fn names_are_kept_up_to_the_limit() {
        assert_eq!(Name::new().as_bytes(), b"");
        assert_eq!(Name::from_bytes(b"/x").as_bytes(), b"/x");
        let long = [b'a'; 100];
        assert_eq!(Name::from_bytes(&long).as_bytes(), &long[..NAME_KEPT]);
    }

    #[test]
    fn a_new_event_has_no_stack() {
        let ev = Event::new(Phase::Exit, Func::Mmap);
        assert!(ev.stack().is_empty());
    }
}

//! Version 4 of the binary log: records of variable length in per-thread chunks.
//!
//! Every byte of the log is a byte of a page the kernel allocates, zeroes and writes back, so
//! version 4 keeps what a record shares with its neighbours once per *chunk*: a thread reserves
//! a chunk of the file (one atomic add on the header's cursor), stamps it with its pid, its tid
//! and a calibration of its clock, and then appends its call records there with no atomic
//! operation at all. In a record every number is a LEB128 varint; the start time is the
//! difference from the previous record's (in clock ticks), the caller and each address the
//! difference from the previous one of their kind, so a call in a loop takes a byte or two per
//! field. The layout is in docs/log-format.md ("binary").
//!
//! Durability is that of version 3: a call's record is written when the call starts, its head
//! byte last ("started"), and completed in place when it returns: the end fields are appended
//! after the start fields, then the size, then the head byte ("done"). A reader walking a
//! chunk after a kill stops at the first byte that is no record head: zeros where nothing was
//! written, or the first end byte of a call whose completion was cut short (end bytes never
//! look like a head). A record whose fields are there but whose head byte is not was cut while
//! its start was written: it is counted as unfinished, as in version 3.
//!
//! Chunks of different threads and processes interleave in the file, each in its own order:
//! the reader merges them by start time (and blobs by the time they were written), which is
//! the order a single text log would have had.

use super::binary::{CURSOR_OFFSET, HEADER_SIZE, Item, LOST_OFFSET, TAG_BLOB};
use super::event::{
    Event, Func, NAME_KEPT, Name, Phase, SOPS_KEPT, STACK_MAX, SemOp, Stack, Timeout,
};

pub const MAGIC: [u8; 8] = *b"SHMTRB05";
/// Version 4: the same layout, every name in full (its records read as version 5's).
pub const MAGIC_V4: [u8; 8] = *b"SHMTRB04";
/// Header: ticks per second of the clock of the log's first process (u64, 0 until known):
/// later processes use it rather than measuring again.
pub const HZ_OFFSET: usize = 24;
/// Ticks per second of a clock that counts nanoseconds (the kernel's `CLOCK_REALTIME`).
pub const NS_HZ: u64 = 1_000_000_000;

pub const TAG_CHUNK: u32 = 0x4b43_5453; // "STCK"

/// A chunk's head: u32 tag, u32 size, i32 pid, i32 tid, u64 wall-clock ns, u64 ticks (read
/// together), u64 ticks per second. Call records follow.
pub const CHUNK_HEAD: usize = 40;
const CHUNK_PID: usize = 8;
const CHUNK_TID: usize = 12;
const CHUNK_NS: usize = 16;
const CHUNK_TICKS: usize = 24;
const CHUNK_HZ: usize = 32;

/// A blob's head: u32 tag, u32 size, u32 state, u32 kind, u32 text length, u32 JSON length,
/// u64 wall-clock ns when written; then the text and the JSON.
pub const BLOB_HEAD: usize = 32;
pub const BLOB_STATE: usize = 8;
const BLOB_KIND: usize = 12;
const BLOB_TEXT_LEN: usize = 16;
const BLOB_JSON_LEN: usize = 20;
const BLOB_TS: usize = 24;

/// Head bytes of what a chunk holds (all >= 0x80; a call's end bytes start below that).
pub const HEAD_STARTED: u8 = 0x81;
pub const HEAD_DONE: u8 = 0x82;
/// A calibration: u64 wall-clock ns, u64 ticks, read together (a thread's clock is
/// recalibrated when its last calibration is more than `RECALIBRATE` ticks old).
pub const HEAD_CALIBRATION: u8 = 0x83;
pub const CALIBRATION_SIZE: usize = 17;

/// A call record: head byte, u16 size (of what is written so far), u8 function, u8 flags.
pub const CALL_HEAD: usize = 5;
const REC_SIZE: usize = 1;

/// Start flags.
/// Written when it started to wait (a call that may wait): its operations follow its
/// arguments.
const START_WAITING: u8 = 1;
const START_STACK: u8 = 2;

/// End flags: the end's first byte, always in 0x40..0x80 (never 0, never a head).
const END_MARK: u8 = 0x40;
const END_CREATED: u8 = 1;
const END_TIMEOUT: u8 = 2;
const END_FAILED: u8 = 4;
/// The duration field holds the wall-clock ns at the end rather than ticks (a long call).
const END_AT_NS: u8 = 8;
const END_NAME: u8 = 16;

/// How a number is stored, by what it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// An integer, zigzag-encoded (-1 is one byte).
    Int,
    /// An address in the address space the calls manage (mapping and attachment addresses):
    /// difference from the previous one, 0 for NULL.
    Map,
    /// Any other pointer (a buffer, the sembufs, a name): difference from the previous one.
    Data,
}

const fn arg_class(func: Func, i: usize) -> Class {
    use Class::{Data, Int, Map};
    match (func, i) {
        (Func::Shmat, 1) | (Func::Shmdt, 0) | (Func::Mmap | Func::Mmap64, 0) => Map,
        (Func::Munmap, 0) | (Func::Mremap, 0 | 4) => Map,
        (Func::Shmctl | Func::Msgctl, 2) | (Func::Semop | Func::Semtimedop, 1) => Data,
        (Func::Semtimedop, 3) | (Func::Msgsnd | Func::Msgrcv, 1) => Data,
        (
            Func::ShmOpen
            | Func::ShmUnlink
            | Func::MemfdCreate
            | Func::SemOpen
            | Func::SemClose
            | Func::SemUnlink,
            0,
        ) => Data,
        _ => Int,
    }
}

const fn ret_class(func: Func) -> Class {
    match func {
        Func::Shmat | Func::Mmap | Func::Mmap64 | Func::Mremap => Class::Map,
        Func::SemOpen => Class::Data,
        _ => Class::Int,
    }
}

const fn has_sops(func: Func) -> bool {
    matches!(func, Func::Semop | Func::Semtimedop)
}

const fn has_name(func: Func) -> bool {
    matches!(
        func,
        Func::ShmOpen
            | Func::ShmUnlink
            | Func::MemfdCreate
            | Func::SemOpen
            | Func::SemUnlink
            | Func::Mmap
            | Func::Mmap64
    )
}

/// What the numbers of a chunk's records are differences from: the previous record's, as the
/// writer wrote them and the reader reads them, in the chunk's order. The addresses are kept
/// complemented: the shim keeps its registers in thread-local memory, which the exit report's
/// pointer scan reads, and the last address a thread mapped must not look like a pointer that
/// keeps that mapping reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    ticks: u64,
    caller: u64,
    not_map: u64,
    not_data: u64,
    names: Names,
}

impl Registers {
    /// A new chunk's registers: times from its calibration.
    pub const fn new(ticks: u64) -> Registers {
        Registers {
            ticks,
            caller: 0,
            not_map: !0,
            not_data: !0,
            names: Names::new(),
        }
    }
}

/// The last `NAMES_KEPT` names a chunk's records carried in full (version 5): a record whose
/// name is one of them carries `NAME_REF + slot` instead, one byte where the name took 20 or
/// 30 (a POSIX object's life names it three times). Each slot says where its name lies in the
/// chunk (from the chunk's start) and its length; a name is written in full into the next
/// slot in turn. Writer and reader fill the slots alike as they go, so a reference is always
/// to a name earlier in the same chunk: every chunk decodes on its own, and a record that
/// refers to a name follows the (completed) record that carries it. The offsets are kept
/// complemented, like the addresses: two of them side by side must not read as a pointer to
/// the exit report's scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Names {
    not_at: [u32; NAMES_KEPT],
    len: [u8; NAMES_KEPT],
    next: u8,
}

const NAMES_KEPT: usize = 4;

/// Whether two names of the same length are the same, eight bytes at a time (names are
/// short: a call to `memcmp` would cost more than the comparison).
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a == b;
    }
    let word = |s: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_ne_bytes(w)
    };
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last eight bytes (overlapping the words before when `n` is no multiple of 8).
    word(a, n - 8) == word(b, n - 8)
}
/// A name's first byte: its length (at most `NAME_KEPT`, below this), or this plus the slot
/// of the name it repeats.
const NAME_REF: u8 = 0x40;
/// Shorter names are always written in full (a reference would save nothing).
const NAME_REF_MIN: usize = 2;

impl Names {
    const fn new() -> Names {
        Names {
            not_at: [!0; NAMES_KEPT],
            len: [0; NAMES_KEPT],
            next: 0,
        }
    }

    /// The slot of `name` among the names written in full in `chunk` (the chunk's bytes up to
    /// the record being written).
    #[inline(always)]
    fn find(&self, name: &[u8], chunk: &[u8]) -> Option<usize> {
        if name.len() < NAME_REF_MIN {
            return None;
        }
        let mut k = 0;
        while k < NAMES_KEPT {
            if usize::from(self.len[k]) == name.len() {
                let at = !self.not_at[k] as usize;
                if chunk
                    .get(at..at + name.len())
                    .is_some_and(|kept| same(kept, name))
                {
                    return Some(k);
                }
            }
            k += 1;
        }
        None
    }

    /// A name of `len` bytes was written in full at `at` in the chunk.
    #[inline(always)]
    fn add(&mut self, at: usize, len: usize) {
        if len >= NAME_REF_MIN {
            let k = usize::from(self.next) % NAMES_KEPT;
            self.not_at[k] = !(at as u32);
            self.len[k] = len as u8;
            self.next = ((k + 1) % NAMES_KEPT) as u8;
        }
    }
}

/// A writer of varints into a record. Its owner checked once that the record has room for
/// the most the record can take (`start_bound`, `end_bound`: every varint at most
/// `VARINT_MAX` bytes, and `SPARE` more for the last one's wide store), so the stores need
/// no check each: everything inlines into the writers, with `len` in a register.
struct Out {
    ptr: *mut u8,
    len: usize,
}

/// Room past a record's bound: a varint is stored with one 8-byte store (`Out::varint`),
/// whose bytes past the varint are zeros, so the last field of a record may store up to 7
/// bytes past where the record ends.
const SPARE: usize = 8;

/// The continuation bits of an 8-byte varint (every byte's but the last), and of the first
/// 8 bytes of a longer one.
const CONTINUATION: u64 = 0x0080_8080_8080_8080;
const CONTINUED: u64 = 0x8080_8080_8080_8080;

/// By a value's leading zeros: the bytes of its varint and their continuation bits (for
/// values below 2^56, up to 8 bytes).
const WIDE: [(u8, u64); 65] = {
    let mut table = [(0, 0); 65];
    let mut zeros = 8;
    while zeros <= 64 {
        let n = if zeros == 64 { 1 } else { (70 - zeros) / 7 };
        table[zeros] = (n as u8, CONTINUATION >> (64 - 8 * n));
        zeros += 1;
    }
    table
};

/// `v` (below 2^56) with its 7-bit groups moved one to a byte, least significant first.
#[inline(always)]
fn spread7(v: u64) -> u64 {
    let x = (v & 0x0fff_ffff) | ((v & 0x00ff_ffff_f000_0000) << 4);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x0fff_c000_0fff_c000) << 2);
    (x & 0x007f_007f_007f_007f) | ((x & 0x3f80_3f80_3f80_3f80) << 1)
}

impl Out {
    /// A writer at `len` in `buf`, if `buf` has room for `bound` bytes.
    #[inline(always)]
    fn new(buf: &mut [u8], len: usize, bound: usize) -> Option<Out> {
        (buf.len() >= bound).then_some(Out {
            ptr: buf.as_mut_ptr(),
            len,
        })
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        // SAFETY: `new` checked the room for the writer's bound, which no record exceeds
        // (`bounds_hold_for_the_largest_records`).
        unsafe { *self.ptr.add(self.len) = b };
        self.len += 1;
    }

    /// Eight bytes at once, of which `n` count: the record's next bytes, and zeros after
    /// them where nothing was written yet (records are only ever appended into zeros).
    #[inline(always)]
    fn word(&mut self, w: u64, n: usize) {
        // SAFETY: as for `byte`: the bound leaves `SPARE` bytes past the last field.
        unsafe {
            self.ptr
                .add(self.len)
                .cast::<u64>()
                .write_unaligned(w.to_le())
        };
        self.len += n;
    }

    /// LEB128: most values in one or two bytes, any below 2^56 with one store.
    #[inline(always)]
    fn varint(&mut self, v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
        } else if v < 1 << 14 {
            self.word(v & 0x7f | (v << 1) & 0x7f00 | 0x80, 2);
        } else if v < 1 << 56 {
            let (n, continuation) = WIDE[v.leading_zeros() as usize];
            self.word(spread7(v) | continuation, usize::from(n));
        } else {
            self.word(spread7(v) | CONTINUED, 8);
            self.varint(v >> 56);
        }
    }

    #[inline(always)]
    fn signed(&mut self, v: i64) {
        self.varint(zigzag(v));
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) {
        // SAFETY: as for `byte`: the bound counts every byte of a name; `b` is not inside
        // the record.
        unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.add(self.len), b.len()) };
        self.len += b.len();
    }

    #[inline(always)]
    fn number(&mut self, class: Class, v: u64, regs: &mut Registers) {
        match class {
            Class::Int => self.signed(v as i64),
            Class::Map => {
                if v == 0 {
                    self.byte(0);
                } else {
                    match zigzag(v.wrapping_sub(!regs.not_map) as i64).checked_add(1) {
                        Some(e) => self.varint(e),
                        // 2^64: the one difference whose code does not fit 64 bits.
                        None => {
                            self.word(CONTINUED, 8);
                            self.varint(1 << 8);
                        }
                    }
                    regs.not_map = !v;
                }
            }
            Class::Data => {
                self.signed(v.wrapping_sub(!regs.not_data) as i64);
                regs.not_data = !v;
            }
        }
    }

    #[inline(always)]
    fn sops(&mut self, ev: &impl Fields) {
        let sops = ev.operations();
        self.byte(sops.len() as u8);
        for op in sops {
            self.varint(u64::from(op.num));
            self.signed(i64::from(op.op));
            self.signed(i64::from(op.flg));
        }
    }
}

/// How each argument of each function is stored, worked out at compile time.
const CLASSES: [[Class; 6]; Func::COUNT] = {
    let mut table = [[Class::Int; 6]; Func::COUNT];
    let mut f = 0;
    while f < Func::COUNT {
        let mut i = 0;
        while i < 6 {
            table[f][i] = arg_class(Func::ALL[f], i);
            i += 1;
        }
        f += 1;
    }
    table
};

#[inline(always)]
fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// At most this many bytes for a varint.
const VARINT_MAX: usize = 10;
const SOP_MAX: usize = 3 + 3 + 3;

/// At most this many bytes for the start of a record of `func` without frames.
const fn start_bound_of(func: Func) -> usize {
    let mut n = CALL_HEAD + 2 * VARINT_MAX + VARINT_MAX * func.arg_count() + SPARE;
    if has_sops(func) {
        n += 1 + SOP_MAX * SOPS_KEPT;
    }
    n
}

/// At most this many bytes for the end of a record of `func`.
const fn end_bound_of(func: Func) -> usize {
    let mut n = 1 + 2 * VARINT_MAX + SPARE;
    if has_sops(func) {
        n += 1 + SOP_MAX * SOPS_KEPT;
    }
    if matches!(func, Func::Semtimedop) {
        n += 2 * VARINT_MAX;
    }
    if has_name(func) {
        n += 1 + NAME_KEPT;
    }
    n
}

const fn bounds(end: bool) -> [usize; Func::COUNT] {
    let mut table = [0; Func::COUNT];
    let mut f = 0;
    while f < Func::COUNT {
        table[f] = if end {
            end_bound_of(Func::ALL[f])
        } else {
            start_bound_of(Func::ALL[f])
        };
        f += 1;
    }
    table
}

const START_BOUNDS: [usize; Func::COUNT] = bounds(false);
const END_BOUNDS: [usize; Func::COUNT] = bounds(true);

/// At most this many bytes for the start of `ev`'s record.
#[inline]
pub fn start_bound(ev: &Event) -> usize {
    let mut n = START_BOUNDS[ev.func as usize];
    if !ev.stack.is_empty() {
        n += 1 + VARINT_MAX * ev.stack().len();
    }
    n
}

/// At most this many bytes for the end of a record of `func`.
#[inline]
pub fn end_bound(func: Func) -> usize {
    END_BOUNDS[func as usize]
}

/// What a call record's writer reads of a call: an [`Event`], or what a hook that builds none
/// has of its call. Both give the same bytes for the same call: the writer is one.
pub trait Fields {
    /// The start time, in the clock's ticks (tagged as `Event::ts_ns` is for the log).
    fn ticks(&self) -> u64;
    fn caller(&self) -> u64;
    fn args(&self) -> &[u64; 6];
    /// The frames above the caller.
    fn frames(&self) -> &[u64];
    /// The operations read (a `semop`'s).
    fn operations(&self) -> &[SemOp];
    fn ret(&self) -> i64;
    /// The real call's errno when it failed, else 0.
    fn errno(&self) -> i32;
    fn created(&self) -> bool;
    fn timeout(&self) -> Option<Timeout>;
    fn name(&self) -> &[u8];
}

impl Fields for Event {
    #[inline(always)]
    fn ticks(&self) -> u64 {
        self.ts_ns
    }
    #[inline(always)]
    fn caller(&self) -> u64 {
        self.caller
    }
    #[inline(always)]
    fn args(&self) -> &[u64; 6] {
        &self.args
    }
    #[inline(always)]
    fn frames(&self) -> &[u64] {
        // Nearly always none: whether there are any is then the one comparison it was.
        if self.stack.is_empty() {
            &[]
        } else {
            self.stack.as_slice()
        }
    }
    #[inline(always)]
    fn operations(&self) -> &[SemOp] {
        self.sops()
    }
    #[inline(always)]
    fn ret(&self) -> i64 {
        self.ret
    }
    #[inline(always)]
    fn errno(&self) -> i32 {
        self.errno
    }
    #[inline(always)]
    fn created(&self) -> bool {
        self.created
    }
    #[inline(always)]
    fn timeout(&self) -> Option<Timeout> {
        self.timeout
    }
    #[inline(always)]
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

/// The writer of the records of function number `F` (`Func as u8`), with its function's
/// layout worked out at compile time (which arguments are addresses, whether it has
/// operations or a name) and its bounds constants: the shim picks it once per record and
/// everything below inlines into its own code.
pub struct Writer<const F: u8>;

impl<const F: u8> Writer<F> {
    const FUNC: Func = Func::ALL[F as usize];
    /// At most this many bytes for the end of a record.
    pub const END_BOUND: usize = end_bound_of(Self::FUNC);

    /// At most this many bytes for the start of `ev`'s record.
    #[inline(always)]
    pub fn start_bound(ev: &impl Fields) -> usize {
        let mut n = const { start_bound_of(Func::ALL[F as usize]) };
        if !ev.frames().is_empty() {
            n += 1 + VARINT_MAX * ev.frames().len();
        }
        n
    }

    /// [`write_start`] for `ev` of this writer's function.
    #[inline(always)]
    pub fn write_start(
        rec: &mut [u8],
        regs: &mut Registers,
        ev: &impl Fields,
        waiting: bool,
    ) -> usize {
        let Some(mut out) = Out::new(rec, 0, Self::start_bound(ev)) else {
            return 0;
        };
        start_of::<F>(&mut out, regs, ev, waiting);
        let len = out.len;
        set_size(rec, len);
        len
    }

    /// [`write_end`] for `ev` of this writer's function.
    #[inline(always)]
    pub fn write_end(
        rec: &mut [u8],
        regs: &mut Registers,
        chunk: Chunk<'_>,
        ev: &impl Fields,
        (waiting, dur, at_ns): (bool, u64, bool),
    ) -> usize {
        let Some(mut out) = Out::new(rec, 0, Self::END_BOUND) else {
            return 0;
        };
        end_of::<F>(&mut out, regs, chunk, ev, waiting, dur, at_ns);
        out.len
    }
}

/// [`write_start`] and [`write_end`]: the writer of `ev`'s function.
macro_rules! writers_by_func {
    ($($variant:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty
        { group: $group:ident, pointer: $pointer:literal, blocks: $blocks:literal
            $(, failure: $failure:literal)? })*) => {
        /// Writes the start of `ev`'s record into `rec` (at least `start_bound` bytes), all
        /// but its head byte (left 0: the caller stores it last); returns its length.
        /// `waiting`: the call is logged as started because it waits (its operations go with
        /// the start). Bytes past the record, up to its bound, are left zero.
        pub fn write_start(rec: &mut [u8], regs: &mut Registers, ev: &Event, waiting: bool)
            -> usize {
            match ev.func {
                $(Func::$variant =>
                    Writer::<{ Func::$variant as u8 }>::write_start(rec, regs, ev, waiting)),*
            }
        }

        /// Writes the end of `ev`'s record into `rec` (what follows its start: at least
        /// `end_bound` bytes); returns its length. `dur` is the duration in ticks, or with
        /// `at_ns` the wall-clock time at the end (a long call). Bytes past the end, up to its
        /// bound, are left zero.
        pub fn write_end(rec: &mut [u8], regs: &mut Registers, chunk: Chunk<'_>, ev: &Event,
            (waiting, dur, at_ns): (bool, u64, bool)) -> usize {
            match ev.func {
                $(Func::$variant => Writer::<{ Func::$variant as u8 }>::write_end(
                    rec, regs, chunk, ev, (waiting, dur, at_ns))),*
            }
        }
    };
}

crate::hook_table!(writers_by_func);

/// The start of a record of function number `F`.
#[inline(always)]
fn start_of<const F: u8>(out: &mut Out, regs: &mut Registers, ev: &impl Fields, waiting: bool) {
    let func = const { Func::ALL[F as usize] };
    let frames = !ev.frames().is_empty();
    let flags = flag(waiting, START_WAITING) | flag(frames, START_STACK);
    // Head (0: stored last), size (stored once known), function, flags.
    out.word(u64::from(F) << 24 | u64::from(flags) << 32, CALL_HEAD);
    out.signed(ev.ticks().wrapping_sub(regs.ticks) as i64);
    regs.ticks = ev.ticks();
    out.signed(ev.caller().wrapping_sub(regs.caller) as i64);
    regs.caller = ev.caller();
    // Unrolled, so that each argument's class is a constant.
    macro_rules! arg {
        ($($i:literal)*) => {$(
            if $i < func.arg_count() {
                out.number(const { CLASSES[F as usize][$i] }, ev.args()[$i], regs);
            }
        )*};
    }
    arg!(0 1 2 3 4 5);
    if frames {
        let stack = ev.frames();
        out.byte(stack.len() as u8);
        let mut prev = ev.caller();
        for &frame in stack {
            out.signed(frame.wrapping_sub(prev) as i64);
            prev = frame;
        }
    }
    if has_sops(func) && waiting {
        out.sops(ev);
    }
}

/// Where an end is written: the bytes of its chunk before it (from the chunk's start), and
/// its offset in the chunk (at least as far as those bytes go). A name already in those bytes
/// is referred to rather than written again.
#[derive(Clone, Copy)]
pub struct Chunk<'a> {
    pub before: &'a [u8],
    pub at: usize,
}

/// The end of a record of function number `F`.
#[inline(always)]
fn end_of<const F: u8>(
    out: &mut Out,
    regs: &mut Registers,
    chunk: Chunk<'_>,
    ev: &impl Fields,
    waiting: bool,
    dur: u64,
    at_ns: bool,
) {
    let func = const { Func::ALL[F as usize] };
    let failed = ev.errno() != 0 && ev.ret() == func.failure_value();
    let timeout = if matches!(func, Func::Semtimedop) {
        ev.timeout()
    } else {
        None
    };
    let name = if has_name(func) { ev.name() } else { &[] };
    // A file mapping's record has the object it maps when there is one; the other named
    // functions' always have their name.
    let named = has_name(func) && (!name.is_empty() || !matches!(func, Func::Mmap | Func::Mmap64));
    let flags = END_MARK
        | flag(ev.created(), END_CREATED)
        | flag(timeout.is_some(), END_TIMEOUT)
        | flag(failed, END_FAILED)
        | flag(at_ns, END_AT_NS)
        | flag(named, END_NAME);
    out.byte(flags);
    out.varint(dur);
    if failed {
        out.signed(i64::from(ev.errno()));
    } else {
        out.number(
            const { ret_class(Func::ALL[F as usize]) },
            ev.ret() as u64,
            regs,
        );
    }
    if has_sops(func) && !waiting {
        out.sops(ev);
    }
    if let Some(t) = timeout {
        out.signed(t.sec);
        out.signed(t.nsec);
    }
    if named {
        match regs.names.find(name, chunk.before) {
            Some(k) => out.byte(NAME_REF + k as u8),
            None => {
                out.byte(name.len() as u8);
                regs.names.add(chunk.at + out.len, name.len());
                out.bytes(name);
            }
        }
    }
}

/// Whether the record whose head is `head` was written as its call started to wait.
#[inline]
pub fn started_waiting(head: &[u8]) -> bool {
    head.get(4).is_some_and(|f| f & START_WAITING != 0)
}

/// Sets the size of a record (start and end written).
#[inline]
pub fn set_size(rec: &mut [u8], size: usize) {
    if let Some(dst) = rec.get_mut(REC_SIZE..REC_SIZE + 2) {
        dst.copy_from_slice(&(size as u16).to_ne_bytes());
    }
}

/// A chunk's head but its tag and size (the caller stores those last, in one word).
pub fn write_chunk_head(chunk: &mut [u8], pid: i32, tid: i32, ns: u64, ticks: u64, hz: u64) {
    put(chunk, CHUNK_PID, pid.to_ne_bytes());
    put(chunk, CHUNK_TID, tid.to_ne_bytes());
    put(chunk, CHUNK_NS, ns.to_ne_bytes());
    put(chunk, CHUNK_TICKS, ticks.to_ne_bytes());
    put(chunk, CHUNK_HZ, hz.to_ne_bytes());
}

/// The word that opens a chunk (tag and size), stored last.
pub fn chunk_word(size: usize) -> u64 {
    u64::from(TAG_CHUNK) | (size as u64) << 32
}

/// A calibration record but its head byte.
pub fn write_calibration(rec: &mut [u8], ns: u64, ticks: u64) {
    put(rec, 1, ns.to_ne_bytes());
    put(rec, 9, ticks.to_ne_bytes());
}

pub fn blob_size(text_len: usize, json_len: usize) -> usize {
    (BLOB_HEAD + text_len + json_len).next_multiple_of(8)
}

/// A blob record (`blob_size` bytes) but its state: tag and size first.
pub fn write_blob(rec: &mut [u8], kind: u32, ts_ns: u64, text: &[u8], json: &[u8]) {
    let size = rec.len() as u32;
    put(rec, 0, TAG_BLOB.to_ne_bytes());
    put(rec, 4, size.to_ne_bytes());
    put(rec, BLOB_KIND, kind.to_ne_bytes());
    put(rec, BLOB_TEXT_LEN, (text.len() as u32).to_ne_bytes());
    put(rec, BLOB_JSON_LEN, (json.len() as u32).to_ne_bytes());
    put(rec, BLOB_TS, ts_ns.to_ne_bytes());
    if let Some(dst) = rec.get_mut(BLOB_HEAD..BLOB_HEAD + text.len()) {
        dst.copy_from_slice(text);
    }
    let at = BLOB_HEAD + text.len();
    if let Some(dst) = rec.get_mut(at..at + json.len()) {
        dst.copy_from_slice(json);
    }
}

fn put<const N: usize>(rec: &mut [u8], at: usize, bytes: [u8; N]) {
    if let Some(dst) = rec.get_mut(at..at + N) {
        dst.copy_from_slice(&bytes);
    }
}

fn get<const N: usize>(rec: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = rec.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn get_u32(rec: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(get(rec, at))
}

fn get_u64(rec: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(get(rec, at))
}

// ---- reading --------------------------------------------------------------------------

/// A reader of varints inside one record.
struct In<'a> {
    rec: &'a [u8],
    at: usize,
    /// Where `rec` starts in the log.
    base: usize,
}

impl In<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.rec.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn signed(&mut self) -> Option<i64> {
        self.varint().map(unzigzag)
    }

    /// A varint of up to 65 bits (an address's code: 1 + a difference's zigzag).
    fn varint_wide(&mut self) -> Option<u128> {
        let mut v = 0u128;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u128::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn number(&mut self, class: Class, regs: &mut Registers) -> Option<u64> {
        Some(match class {
            Class::Int => self.signed()? as u64,
            Class::Map => match self.varint_wide()? {
                0 => 0,
                e => {
                    let v = (!regs.not_map).wrapping_add(unzigzag((e - 1) as u64) as u64);
                    regs.not_map = !v;
                    v
                }
            },
            Class::Data => {
                let v = (!regs.not_data).wrapping_add(self.signed()? as u64);
                regs.not_data = !v;
                v
            }
        })
    }

    fn sops(&mut self, ev: &mut Event) -> Option<()> {
        let n = usize::from(self.byte()?);
        if n > SOPS_KEPT {
            return None;
        }
        for op in ev.sops.iter_mut().take(n) {
            *op = SemOp {
                num: self.varint()? as u16,
                op: self.signed()? as i16,
                flg: self.signed()? as i16,
            };
        }
        ev.sops_read = n as u8;
        Some(())
    }
}

/// One chunk (or blob) being read: the merge takes from the one whose next record started
/// first.
struct Stream {
    /// Where it starts, where its next record is, and where it ends.
    start: usize,
    at: usize,
    end: usize,
    pid: i32,
    tid: i32,
    hz: u64,
    cal_ns: u64,
    cal_ticks: u64,
    regs: Registers,
    blob: bool,
    /// The same thread's next chunk: it is read once this one ends, so that each thread's
    /// records keep their order whatever the calibrations say.
    next: Option<usize>,
}

impl Stream {
    fn ns(&self, ticks: u64) -> u64 {
        let delta = ticks.wrapping_sub(self.cal_ticks) as i64 as i128;
        let ns = i128::from(self.cal_ns) + delta * i128::from(NS_HZ) / i128::from(self.hz.max(1));
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// After a call read as started, whose start ended at `start_len` in its record at
    /// `rec_at` (`size` bytes so far): its end may be there already, when the log was read
    /// while the call was being completed (and the thread wrote on since). The end is read
    /// for what it does to the registers (the records after it count from them), and its
    /// bytes passed over, when it is whole and followed by a record (a kill while it was
    /// written leaves zeros after it: then the chunk ends here).
    fn skip_end(&mut self, data: &[u8], rec_at: usize, start_len: usize, size: usize, ev: &Event) {
        let end_at = rec_at + start_len;
        if end_at >= self.end || data[end_at] & 0xc0 != END_MARK {
            return;
        }
        let mut regs = self.regs;
        let mut scratch = *ev;
        let mut input = In {
            rec: &data[..self.end],
            at: end_at,
            base: 0,
        };
        let waiting = started_waiting(&data[rec_at..]) && has_sops(ev.func);
        let chunk = (data, self.start);
        if read_end(
            &mut input,
            &mut scratch,
            waiting,
            (self.hz, chunk),
            &mut regs,
        )
        .is_none()
        {
            return;
        }
        let after = input.at;
        let followed =
            after < self.end && matches!(data[after], HEAD_STARTED | HEAD_DONE | HEAD_CALIBRATION);
        if after == rec_at + size || followed {
            self.regs = regs;
            self.at = self.at.max(after);
        }
    }
}

/// The records of a version 4 log, merged by start time.
pub struct Reader<'a> {
    data: &'a [u8],
    streams: Vec<Stream>,
    /// (start ns, stream) of each stream's next record, least first.
    heap: std::collections::BinaryHeap<core::cmp::Reverse<(u64, usize)>>,
    pub unfinished: u64,
    pub damaged: bool,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        let used = get_u64(data, CURSOR_OFFSET) as usize;
        let end = HEADER_SIZE.saturating_add(used).min(data.len());
        let mut reader = Reader {
            data,
            streams: Vec::new(),
            heap: Default::default(),
            unfinished: 0,
            damaged: false,
        };
        let mut last_of = std::collections::HashMap::new();
        let mut pos = HEADER_SIZE;
        while pos + 8 <= end {
            let tag = get_u32(data, pos);
            if tag == 0 {
                // Reserved by a process that died before writing it.
                pos += 8;
                continue;
            }
            let size = get_u32(data, pos + 4) as usize;
            let (min, blob) = match tag {
                TAG_CHUNK => (CHUNK_HEAD, false),
                TAG_BLOB => (BLOB_HEAD, true),
                _ => (8, false),
            };
            if size < min || !size.is_multiple_of(8) || pos + size > end {
                reader.damaged = true;
                break;
            }
            let at = pos;
            pos += size;
            if blob && get_u32(data, at + BLOB_STATE) == 0 {
                reader.unfinished += 1;
                continue;
            }
            if tag != TAG_CHUNK && tag != TAG_BLOB {
                // A record of a later version: its size says how to skip it.
                continue;
            }
            let stream = Stream {
                start: at,
                at: if blob { at } else { at + CHUNK_HEAD },
                end: at + size,
                pid: i32::from_ne_bytes(get(data, at + CHUNK_PID)),
                tid: i32::from_ne_bytes(get(data, at + CHUNK_TID)),
                cal_ns: get_u64(data, at + CHUNK_NS),
                cal_ticks: get_u64(data, at + CHUNK_TICKS),
                hz: get_u64(data, at + CHUNK_HZ),
                regs: Registers::new(get_u64(data, at + CHUNK_TICKS)),
                blob,
                next: None,
            };
            let i = reader.streams.len();
            let thread = (stream.pid, stream.tid);
            reader.streams.push(stream);
            if blob {
                reader.schedule(i);
            } else if let Some(prev) = last_of.insert(thread, i) {
                reader.streams[prev].next = Some(i);
            } else {
                reader.schedule(i);
            }
        }
        reader
    }

    /// Records the writer could not store because the log was full.
    pub fn lost(&self) -> u64 {
        get_u64(self.data, LOST_OFFSET)
    }

    /// Puts stream `i` back in the merge at its next record, if it has one.
    fn schedule(&mut self, mut i: usize) {
        loop {
            if let Some(ns) = self.peek(i) {
                self.heap.push(core::cmp::Reverse((ns, i)));
                return;
            }
            match self.streams[i].next {
                Some(next) => i = next,
                None => return,
            }
        }
    }

    /// The start time of stream `i`'s next record (applying calibrations on the way), or
    /// `None` at its end.
    fn peek(&mut self, i: usize) -> Option<u64> {
        let data = self.data;
        let s = &mut self.streams[i];
        if s.blob {
            return (s.at < s.end).then(|| get_u64(data, s.at + BLOB_TS));
        }
        loop {
            let head = *data.get(s.at).filter(|_| s.at < s.end)?;
            match head {
                HEAD_CALIBRATION if s.at + CALIBRATION_SIZE <= s.end => {
                    s.cal_ns = get_u64(data, s.at + 1);
                    s.cal_ticks = get_u64(data, s.at + 9);
                    s.at += CALIBRATION_SIZE;
                }
                HEAD_STARTED | HEAD_DONE => {
                    let rec = &data[s.at..s.end];
                    let mut input = In {
                        rec,
                        at: CALL_HEAD,
                        base: s.at,
                    };
                    let Some(delta) = input.signed() else {
                        self.damaged = true;
                        return None;
                    };
                    return Some(s.ns(s.regs.ticks.wrapping_add(delta as u64)));
                }
                0 => {
                    // Fields with no head: cut while its start was written.
                    if get::<2>(data, s.at + REC_SIZE) != [0, 0] && s.at + CALL_HEAD <= s.end {
                        self.unfinished += 1;
                    }
                    return None;
                }
                // The end of a call whose completion was cut short, or nothing written.
                _ => return None,
            }
        }
    }

    /// Reads stream `i`'s next record (its start time known to be there).
    fn take(&mut self, i: usize) -> Option<Item<'a>> {
        let data = self.data;
        let s = &mut self.streams[i];
        if s.blob {
            let rec = &data[s.at..s.end];
            s.at = s.end;
            let text_len = get_u32(rec, BLOB_TEXT_LEN) as usize;
            let json_len = get_u32(rec, BLOB_JSON_LEN) as usize;
            let text_end = BLOB_HEAD.saturating_add(text_len);
            let text = rec.get(BLOB_HEAD..text_end)?;
            let json = rec.get(text_end..text_end.saturating_add(json_len))?;
            return Some(Item::Blob {
                kind: get_u32(rec, BLOB_KIND),
                text,
                json,
            });
        }
        let head = data[s.at];
        let size = usize::from(u16::from_ne_bytes(get(data, s.at + REC_SIZE)));
        if size < CALL_HEAD || s.at + size > s.end {
            return None;
        }
        let rec_at = s.at;
        s.at += size;
        let (ev, waited, start_len) = read_call(data, rec_at, size, head == HEAD_DONE, s)?;
        if head == HEAD_STARTED {
            s.skip_end(data, rec_at, start_len, size, &ev);
        }
        Some(if waited && ev.phase == Phase::Exit {
            Item::Waited(ev)
        } else {
            Item::Call(ev)
        })
    }
}

/// A call record's start (and with `done` its end): the call, whether it waited, and where
/// its start ends in `rec`.
fn read_call(
    data: &[u8],
    rec_at: usize,
    size: usize,
    done: bool,
    s: &mut Stream,
) -> Option<(Event, bool, usize)> {
    let rec = &data[rec_at..rec_at + size];
    let func = *Func::ALL.get(usize::from(*rec.get(3)?))?;
    let flags = *rec.get(4)?;
    let mut ev = Event::new(if done { Phase::Exit } else { Phase::Enter }, func);
    ev.pid = s.pid;
    ev.tid = s.tid;
    let mut input = In {
        rec,
        at: CALL_HEAD,
        base: rec_at,
    };
    let regs = &mut s.regs;
    let ticks = regs.ticks.wrapping_add(input.signed()? as u64);
    regs.ticks = ticks;
    ev.ts_ns = s.ns(ticks);
    let regs = &mut s.regs;
    regs.caller = regs.caller.wrapping_add(input.signed()? as u64);
    ev.caller = regs.caller;
    for i in 0..func.arg_count() {
        ev.args[i] = input.number(arg_class(func, i), regs)?;
    }
    if flags & START_STACK != 0 {
        let n = usize::from(input.byte()?);
        if n > STACK_MAX {
            return None;
        }
        let mut frames = [0u64; STACK_MAX];
        let mut prev = ev.caller;
        for frame in frames.iter_mut().take(n) {
            prev = prev.wrapping_add(input.signed()? as u64);
            *frame = prev;
        }
        ev.stack = Stack::from_slice(&frames[..n]);
    }
    let waiting = flags & START_WAITING != 0 && has_sops(func);
    if waiting {
        input.sops(&mut ev)?;
    }
    let waited = flags & START_WAITING != 0 && func.may_block();
    let start_len = input.at;
    if done {
        read_end(
            &mut input,
            &mut ev,
            waiting,
            (s.hz, (data, s.start)),
            &mut s.regs,
        )?;
    }
    Some((ev, waited, start_len))
}

/// A call record's end, into `ev` (its start read).
/// `chunk`: the log and where the record's chunk starts in it (for the names it refers to).
fn read_end(
    input: &mut In<'_>,
    ev: &mut Event,
    waiting: bool,
    (hz, (data, chunk)): (u64, (&[u8], usize)),
    regs: &mut Registers,
) -> Option<()> {
    let func = ev.func;
    let end = input.byte()?;
    if end & 0xc0 != END_MARK {
        return None;
    }
    let dur = input.varint()?;
    ev.dur_ns = if end & END_AT_NS != 0 {
        dur.saturating_sub(ev.ts_ns)
    } else {
        (u128::from(dur) * u128::from(NS_HZ) / u128::from(hz.max(1))) as u64
    };
    if end & END_FAILED != 0 {
        ev.errno = input.signed()? as i32;
        ev.ret = func.failure_value();
    } else {
        ev.ret = input.number(ret_class(func), regs)? as i64;
    }
    ev.created = end & END_CREATED != 0;
    if has_sops(func) && !waiting {
        input.sops(ev)?;
    }
    if end & END_TIMEOUT != 0 {
        ev.timeout = Some(Timeout {
            sec: input.signed()?,
            nsec: input.signed()?,
        });
    }
    if end & END_NAME != 0 {
        let first = input.byte()?;
        if first >= NAME_REF {
            // A name written in full earlier in the chunk.
            let k = usize::from(first - NAME_REF);
            let len = usize::from(*regs.names.len.get(k).filter(|&&len| len != 0)?);
            let at = chunk + !regs.names.not_at[k] as usize;
            ev.name = Name::from_bytes(data.get(at..at + len)?);
        } else {
            let len = usize::from(first).min(NAME_KEPT);
            let at = input.at;
            ev.name = Name::from_bytes(input.rec.get(at..at + len)?);
            regs.names.add(input.base + at - chunk, len);
            input.at += len;
        }
    }
    Some(())
}

impl<'a> Iterator for Reader<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        while let Some(core::cmp::Reverse((_, i))) = self.heap.pop() {
            match self.take(i) {
                Some(item) => {
                    self.schedule(i);
                    return Some(item);
                }
                None => {
                    self.damaged = true;
                    if let Some(next) = self.streams[i].next {
                        self.schedule(next);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::binary::Reader as AnyReader;

    /// A log in memory built the way the shim builds it.
    struct Log {
        data: Vec<u8>,
    }

    /// A thread's chunk being written, as the shim keeps it.
    struct Writer {
        at: usize,
        pos: usize,
        regs: Registers,
        current: usize,
        current_len: usize,
    }

    /// `write_end` at `pos` of the chunk at `chunk` in `data`, as the shim calls it.
    fn end_into(
        data: &mut [u8],
        (chunk, pos): (usize, usize),
        regs: &mut Registers,
        ev: &Event,
        end: (bool, u64, bool),
    ) -> usize {
        let (before, rec) = data.split_at_mut(pos);
        let chunk = Chunk {
            before: &before[chunk..],
            at: pos - chunk,
        };
        write_end(rec, regs, chunk, ev, end)
    }

    const HZ: u64 = 3_000_000_000;
    /// Calibrations of the test chunks: wall-clock ns at `TICKS0` ticks.
    const NS0: u64 = 1_764_168_062_000_000_000;
    const TICKS0: u64 = 5_000_000_000;

    impl Log {
        fn new() -> Log {
            let mut data = vec![0u8; HEADER_SIZE];
            data[..8].copy_from_slice(&MAGIC);
            Log { data }
        }

        fn reserve(&mut self, size: usize) -> usize {
            let at = self.data.len();
            self.data.resize(at + size, 0);
            let used = (self.data.len() - HEADER_SIZE) as u64;
            self.data[CURSOR_OFFSET..CURSOR_OFFSET + 8].copy_from_slice(&used.to_ne_bytes());
            at
        }

        fn chunk(&mut self, pid: i32, tid: i32, size: usize, hz: u64) -> Writer {
            let at = self.reserve(size);
            let (ns, ticks) = if hz == NS_HZ {
                (NS0, NS0)
            } else {
                (NS0, TICKS0)
            };
            write_chunk_head(&mut self.data[at..], pid, tid, ns, ticks, hz);
            self.data[at..at + 8].copy_from_slice(&chunk_word(size).to_ne_bytes());
            Writer {
                at,
                pos: at + CHUNK_HEAD,
                regs: Registers::new(ticks),
                current: 0,
                current_len: 0,
            }
        }

        fn start(&mut self, w: &mut Writer, ev: &Event, waiting: bool) {
            let len = write_start(&mut self.data[w.pos..], &mut w.regs, ev, waiting);
            self.data[w.pos] = HEAD_STARTED;
            w.current = w.pos;
            w.current_len = len;
            w.pos += len;
        }

        fn end(&mut self, w: &mut Writer, ev: &Event, dur: u64, at_ns: bool) {
            let waiting = started_waiting(&self.data[w.current..]);
            let len = end_into(
                &mut self.data,
                (w.at, w.pos),
                &mut w.regs,
                ev,
                (waiting, dur, at_ns),
            );
            set_size(&mut self.data[w.current..], w.current_len + len);
            self.data[w.current] = HEAD_DONE;
            w.pos += len;
        }

        /// The end of the started call written after it, its head not yet marked done: a call
        /// being completed when the log is read.
        fn end_unmarked(&mut self, w: &mut Writer, ev: &Event, dur: u64) {
            let len = end_into(
                &mut self.data,
                (w.at, w.pos),
                &mut w.regs,
                ev,
                (false, dur, false),
            );
            w.pos += len;
        }

        fn call(&mut self, w: &mut Writer, ev: &Event, dur: u64) {
            self.start(w, ev, false);
            self.end(w, ev, dur, false);
        }

        fn blob(&mut self, ts_ns: u64, text: &[u8], json: &[u8]) {
            let size = blob_size(text.len(), json.len());
            let at = self.reserve(size);
            write_blob(&mut self.data[at..at + size], 7, ts_ns, text, json);
            self.data[at + BLOB_STATE] = 2;
        }

        fn items(&self) -> Vec<Item<'_>> {
            AnyReader::new(&self.data).unwrap().collect()
        }
    }

    /// An event as the shim has it (times in ticks), and as it reads back (in ns).
    fn sample(func: Func, ticks: u64) -> Event {
        let mut ev = Event::new(Phase::Exit, func);
        ev.pid = 10;
        ev.tid = 11;
        ev.ts_ns = ticks;
        ev.caller = 0x55d0_c0a0_1234;
        ev.args = [3, 0x7ffd_0000_1000, 2, 0x7ffd_0000_2000, u64::MAX, 0x1000];
        for arg in ev.args.iter_mut().skip(func.arg_count()) {
            *arg = 0;
        }
        ev
    }

    fn read_back(mut ev: Event, dur_ticks: u64) -> Event {
        ev.ts_ns = NS0 + (ev.ts_ns - TICKS0) / 3;
        ev.dur_ns = dur_ticks / 3;
        ev
    }

    #[test]
    fn every_field_of_every_function_survives_the_round_trip() {
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 8192, HZ);
        let mut want = Vec::new();
        for (n, func) in Func::ALL.into_iter().enumerate() {
            let mut ev = sample(func, TICKS0 + 3000 * n as u64);
            ev.stack = Stack::from_slice(&[0x1, 0x7f00_0000_0000, 0x3]);
            ev.created = matches!(
                func,
                Func::Shmget | Func::Semget | Func::Msgget | Func::ShmOpen | Func::SemOpen
            );
            if has_name(func) {
                ev.name = Name::from_bytes(b"/shmtrace-\"name\"");
            }
            if has_sops(func) {
                ev.sops[0] = SemOp {
                    num: 1,
                    op: -1,
                    flg: 0x1000,
                };
                ev.sops[1] = SemOp {
                    num: 65535,
                    op: i16::MIN,
                    flg: -1,
                };
                ev.sops_read = 2;
            }
            if func == Func::Semtimedop {
                ev.timeout = Some(Timeout {
                    sec: 1,
                    nsec: 500_000_000,
                });
            }
            ev.ret = if func.returns_pointer() {
                0x7f3a_2c00_0000
            } else {
                65538
            };
            let mut failed = ev;
            failed.ts_ns += 1500;
            failed.ret = func.failure_value();
            failed.errno = libc::EINVAL;
            failed.created = false;
            log.call(&mut w, &ev, 2436);
            log.call(&mut w, &failed, 30);
            want.push(Item::Call(read_back(ev, 2436)));
            want.push(Item::Call(read_back(failed, 30)));
        }
        assert_eq!(log.items(), want);
    }

    /// The writers store without a check per byte, trusting the bounds: the largest records
    /// of every function stay within them, and read back.
    #[test]
    fn bounds_hold_for_the_largest_records() {
        for func in Func::ALL {
            let mut ev = Event::new(Phase::Exit, func);
            ev.ts_ns = u64::MAX;
            ev.caller = u64::MAX;
            ev.args = [1 << 63; 6];
            for arg in ev.args.iter_mut().skip(func.arg_count()) {
                *arg = 0;
            }
            ev.stack = Stack::from_slice(&[1 << 63; STACK_MAX]);
            ev.sops = [SemOp {
                num: u16::MAX,
                op: i16::MIN,
                flg: i16::MIN,
            }; SOPS_KEPT];
            ev.sops_read = SOPS_KEPT as u8;
            ev.timeout = Some(Timeout {
                sec: i64::MIN,
                nsec: i64::MIN,
            });
            ev.name = Name::from_bytes(&[b'x'; 200]);
            ev.ret = i64::MIN;
            ev.created = true;
            for waiting in [false, true] {
                let mut rec = vec![0u8; start_bound(&ev) + end_bound(func)];
                let mut regs = Registers::new(0);
                let start = write_start(&mut rec, &mut regs, &ev, waiting);
                // A store starts before the record's end and is at most 8 bytes wide.
                assert!(0 < start && start + SPARE <= start_bound(&ev), "{func:?}");
                let (before, rest) = rec.split_at_mut(start);
                let chunk = Chunk { before, at: start };
                let end = write_end(rest, &mut regs, chunk, &ev, (waiting, u64::MAX, true));
                assert!(0 < end && end + SPARE <= end_bound(func), "{func:?}");
            }
            // The address 2^63 away from the previous one: the one code wider than 64 bits.
            let mut log = Log::new();
            let mut w = log.chunk(10, 11, 4096, NS_HZ);
            let mut first = sample(func, NS0);
            first.args[0] = 0x7f00_0000_0000;
            first.ret = 0x7f00_0000_0000;
            let mut far = first;
            far.ts_ns += 1;
            far.args[0] ^= 1 << 63;
            for arg in far.args.iter_mut().skip(func.arg_count()) {
                *arg = 0;
            }
            first.args[1..].fill(0);
            log.call(&mut w, &first, 0);
            log.call(&mut w, &far, 0);
            let read: Vec<u64> = log
                .items()
                .iter()
                .map(|item| match item {
                    Item::Call(ev) => ev.args[0],
                    _ => 0,
                })
                .collect();
            if func.arg_count() > 0 {
                assert_eq!(read, vec![first.args[0], far.args[0]], "{func:?}");
            }
        }
    }

    /// LEB128 one byte at a time, as version 4 was first written.
    fn leb128(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }

    #[test]
    fn a_varint_stored_in_one_word_is_leb128_with_zeros_after_it() {
        let mut values = vec![
            0,
            1,
            0x7f,
            0x80,
            0xff,
            0x3fff,
            0x4000,
            u64::MAX,
            0x0123_4567_89ab_cdef,
        ];
        for bit in 0..64 {
            values.extend([(1u64 << bit) - 1, 1 << bit, (1 << bit) + 1]);
        }
        for v in values {
            let mut buf = [0x55u8; 32];
            let mut out = Out {
                ptr: buf.as_mut_ptr(),
                len: 3,
            };
            out.varint(v);
            let want = leb128(v);
            assert_eq!(&buf[3..out.len], &want[..], "{v:#x}");
            // A store's bytes past the varint are zeros, and no store reaches 8 bytes past
            // the varint's start (9 bytes and more: two stores) or past its last byte.
            if (2..=8).contains(&want.len()) {
                assert!(buf[out.len..3 + 8].iter().all(|&b| b == 0), "{v:#x}");
            }
            let stored = (3 + 8).max(out.len + 7);
            assert!(
                buf[out.len..stored].iter().all(|&b| b == 0 || b == 0x55),
                "{v:#x}"
            );
            assert!(buf[stored..].iter().all(|&b| b == 0x55), "{v:#x}");
            let mut input = In {
                rec: &buf,
                at: 3,
                base: 0,
            };
            assert_eq!(input.varint(), Some(v));
        }
    }

    #[test]
    fn a_call_in_a_loop_takes_a_few_bytes() {
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 4096, HZ);
        let mut sizes = Vec::new();
        for i in 0..3u64 {
            let mut mmap = sample(Func::Mmap, TICKS0 + 9000 * i);
            mmap.args = [
                0,
                8192,
                3,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                -1i64 as u64,
                0,
            ];
            mmap.caller = 0x55d0_c0a0_1234;
            mmap.ret = 0x7f3a_2c00_0000;
            let before = w.pos;
            log.call(&mut w, &mmap, 3000);
            let mut munmap = sample(Func::Munmap, TICKS0 + 9000 * i + 4500);
            munmap.args[..2].copy_from_slice(&[0x7f3a_2c00_0000, 8192]);
            munmap.caller = 0x55d0_c0a0_1250;
            log.call(&mut w, &munmap, 3000);
            sizes.push((w.pos - before, log.items().len()));
        }
        // The first pair pays for the caller's and the address's first appearance.
        assert!(sizes[0].0 <= 48, "{sizes:?}");
        // Then 5 + 2 (time) + 1 (caller) + 7 (arguments) + 4 (end) for the mmap, 5 + 2 + 1 +
        // 3 + 4 for the munmap.
        assert!(sizes[2].0 <= 36, "{sizes:?}");
        assert_eq!(sizes[2].1, 6);
    }

    /// A POSIX object's life, as the shim logs it: the name at `shm_open`, the object at
    /// `mmap`, the name at `shm_unlink`.
    fn posix_cycle(name: &[u8], ticks: u64) -> [Event; 3] {
        let mut open = sample(Func::ShmOpen, ticks);
        open.name = Name::from_bytes(name);
        open.ret = 3;
        let mut map = sample(Func::Mmap, ticks + 300);
        map.name = Name::from_bytes(&[b"/dev/shm", name].concat());
        let mut unlink = sample(Func::ShmUnlink, ticks + 600);
        unlink.name = Name::from_bytes(name);
        [open, map, unlink]
    }

    fn names(items: &[Item<'_>]) -> Vec<Vec<u8>> {
        items
            .iter()
            .map(|item| match item {
                Item::Call(ev) | Item::Waited(ev) => ev.name().to_vec(),
                Item::Blob { .. } => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn a_name_repeated_in_a_chunk_is_written_once_and_reads_back_everywhere() {
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 8192, HZ);
        let mut want = Vec::new();
        let mut sizes = Vec::new();
        // The same object's life three times, then more names than the chunk keeps (each
        // pushes out the oldest), then the first name again, a name of one byte and none.
        let mut cycle = |log: &mut Log, w: &mut Writer, name: &[u8], ticks| {
            let before = w.pos;
            for ev in posix_cycle(name, ticks) {
                log.call(w, &ev, 30);
                want.push(ev.name().to_vec());
            }
            sizes.push(w.pos - before);
        };
        for i in 0..3 {
            cycle(&mut log, &mut w, b"/shmtrace-bench-4242", TICKS0 + 3000 * i);
        }
        for (i, name) in [
            &b"/a-name"[..],
            b"/b-name",
            b"/c-name",
            b"/d-name",
            b"/e-name",
        ]
        .into_iter()
        .enumerate()
        {
            cycle(&mut log, &mut w, name, TICKS0 + 20_000 + 3000 * i as u64);
        }
        for (i, name) in [&b"/shmtrace-bench-4242"[..], b"/", b""]
            .into_iter()
            .enumerate()
        {
            cycle(&mut log, &mut w, name, TICKS0 + 50_000 + 3000 * i as u64);
        }
        let items = log.items();
        assert_eq!(names(&items), want);
        // Written in full the first time (20 + 29 bytes), referred to after: a byte each.
        assert!(sizes[1] + 45 <= sizes[0], "{sizes:?}");
        assert_eq!(sizes[1], sizes[2]);
        // Pushed out of the chunk's names by the five others: in full again.
        assert!(sizes[8] >= sizes[1] + 45, "{sizes:?}");
        let mut reader = AnyReader::new(&log.data).unwrap();
        assert_eq!(reader.by_ref().count(), want.len());
        assert!(!reader.damaged);
    }

    #[test]
    fn names_compare_equal_only_when_every_byte_is() {
        for n in 2..=NAME_KEPT {
            let a: Vec<u8> = (0..n as u8).map(|b| b'a' + b % 26).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same(&a, &b), "{n} {i}");
            }
            assert!(!same(&a, &a[..n - 1]));
        }
    }

    #[test]
    fn each_chunk_has_its_names_in_full_and_decodes_without_the_others() {
        let mut log = Log::new();
        let mut first = log.chunk(10, 11, 512, HZ);
        for ev in posix_cycle(b"/shared-name", TICKS0) {
            log.call(&mut first, &ev, 30);
        }
        let mut second = log.chunk(10, 11, 512, HZ);
        for ev in posix_cycle(b"/shared-name", TICKS0 + 3000) {
            log.call(&mut second, &ev, 30);
        }
        // The first chunk's space as if reserved and never written (its writer killed first):
        // the second has every name it needs.
        log.data[first.at..first.at + 512].fill(0);
        assert_eq!(
            names(&log.items()),
            vec![
                b"/shared-name".to_vec(),
                b"/dev/shm/shared-name".to_vec(),
                b"/shared-name".to_vec()
            ]
        );
    }

    /// Read while the `shm_open` was being completed (its end, with the name in full, written;
    /// its size and head not yet) and its thread went on to `shm_unlink` the name: the
    /// reference reads as the name.
    #[test]
    fn a_name_in_the_end_of_a_call_being_completed_is_known_to_the_records_after_it() {
        let [mut open, _, unlink] = posix_cycle(b"/being-completed", TICKS0);
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, HZ);
        open.phase = Phase::Enter;
        log.start(&mut w, &open, false);
        open.phase = Phase::Exit;
        log.end_unmarked(&mut w, &open, 30);
        log.call(&mut w, &unlink, 30);
        let items = log.items();
        assert_eq!(
            names(&items),
            vec![Vec::new(), b"/being-completed".to_vec()]
        );
    }

    #[test]
    fn a_version_4_log_reads_as_it_did() {
        let mut log = Log::new();
        log.data[..8].copy_from_slice(&MAGIC_V4);
        let mut w = log.chunk(10, 11, 1024, HZ);
        // Version 4 wrote each name in full: names that never repeat are written so still.
        for (i, name) in [&b"/one"[..], b"/two"].into_iter().enumerate() {
            let [open, ..] = posix_cycle(name, TICKS0 + 3000 * i as u64);
            log.call(&mut w, &open, 30);
        }
        assert_eq!(
            names(&log.items()),
            vec![b"/one".to_vec(), b"/two".to_vec()]
        );
    }

    #[test]
    fn chunks_and_blobs_merge_by_start_time() {
        let mut log = Log::new();
        let mut a = log.chunk(10, 11, 1024, HZ);
        let mut b = log.chunk(10, 12, 1024, HZ);
        let ev = |tid, ticks, fd| {
            let mut ev = sample(Func::Munmap, ticks);
            ev.tid = tid;
            ev.args[1] = fd;
            ev
        };
        // Thread 12's chunk is later in the file but its second call started first.
        log.call(&mut a, &ev(11, TICKS0 + 3000, 1), 3);
        log.call(&mut b, &ev(12, TICKS0 + 1500, 2), 3);
        log.call(&mut a, &ev(11, TICKS0 + 9000, 3), 3);
        log.call(&mut b, &ev(12, TICKS0 + 6000, 4), 3);
        // Ticks are a third of a nanosecond: the calls started at 1, 0.5, 3 and 2 us, and a
        // blob was written at 1.5 us.
        log.blob(NS0 + 1500, b"text\n", b"{}\n");
        let order: Vec<u64> = log
            .items()
            .iter()
            .map(|item| match item {
                Item::Call(ev) => ev.args[1],
                _ => 0,
            })
            .collect();
        assert_eq!(order, vec![2, 1, 0, 4, 3]);
    }

    #[test]
    fn a_threads_chunks_keep_its_order_whatever_their_calibrations_say() {
        let mut log = Log::new();
        let mut first = log.chunk(10, 11, 512, HZ);
        log.call(&mut first, &sample(Func::Shmdt, TICKS0 + 3000), 3);
        // The next chunk's calibration puts its call before the first one's.
        let mut second = log.chunk(10, 11, 512, HZ);
        let at = second.at;
        log.data[at + CHUNK_NS..at + CHUNK_NS + 8].copy_from_slice(&(NS0 - 5000).to_ne_bytes());
        let mut later = sample(Func::Shmdt, TICKS0 + 3300);
        later.args[0] = 99;
        log.call(&mut second, &later, 3);
        let order: Vec<u64> = log
            .items()
            .iter()
            .map(|item| match item {
                Item::Call(ev) => ev.args[0],
                _ => 0,
            })
            .collect();
        assert_eq!(order, vec![3, 99]);
    }

    #[test]
    fn a_calibration_restarts_the_conversion_and_a_long_call_keeps_its_end_time() {
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, HZ);
        // The clock ran 1% fast against the wall clock since the chunk's calibration.
        let at = w.pos;
        write_calibration(&mut log.data[at..], NS0 + 1_000_000, TICKS0 + 3_030_000);
        log.data[at] = HEAD_CALIBRATION;
        w.pos += CALIBRATION_SIZE;
        let ev = sample(Func::Semop, TICKS0 + 3_030_000 + 300);
        log.start(&mut w, &ev, false);
        // Two seconds later by the wall clock.
        log.end(&mut w, &ev, NS0 + 2_001_000_100, true);
        let mut want = ev;
        want.ts_ns = NS0 + 1_000_100;
        want.dur_ns = 2_000_000_000;
        assert_eq!(log.items(), vec![Item::Call(want)]);
    }

    #[test]
    fn a_clock_counting_nanoseconds_reads_as_it_was_written() {
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, NS_HZ);
        let ev = sample(Func::Shmdt, NS0 + 123_456_789);
        log.call(&mut w, &ev, 812);
        let mut want = ev;
        want.dur_ns = 812;
        assert_eq!(log.items(), vec![Item::Call(want)]);
    }

    #[test]
    fn calls_that_waited_read_as_waited_with_the_operations_they_waited_with() {
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, HZ);
        let mut semop = sample(Func::Semop, TICKS0 + 30);
        semop.sops[0] = SemOp {
            num: 2,
            op: -1,
            flg: 0,
        };
        semop.sops_read = 1;
        let mut enter = semop;
        enter.phase = Phase::Enter;
        log.start(&mut w, &enter, true);
        log.end(&mut w, &semop, 300, false);
        let msgrcv = sample(Func::Msgrcv, TICKS0 + 3000);
        let mut enter = msgrcv;
        enter.phase = Phase::Enter;
        log.start(&mut w, &enter, true);
        log.end(&mut w, &msgrcv, 600, false);
        // A semop that never waited: its operations are read once it returned.
        let mut quick = semop;
        quick.ts_ns = TICKS0 + 6000;
        log.call(&mut w, &quick, 3);
        assert_eq!(
            log.items(),
            vec![
                Item::Waited(read_back(semop, 300)),
                Item::Waited(read_back(msgrcv, 600)),
                Item::Call(read_back(quick, 3)),
            ]
        );
    }

    /// The bytes a kill can leave in a chunk, and what each reads as.
    #[test]
    fn what_a_kill_leaves_is_skipped_or_read_as_started() {
        let done = sample(Func::Munmap, TICKS0 + 300);
        let mut in_progress = sample(Func::Munmap, TICKS0 + 600);
        in_progress.phase = Phase::Enter;
        in_progress.args[1] = 77;
        let started = {
            let mut ev = in_progress;
            ev.ts_ns = NS0 + 200;
            ev
        };
        // Killed after the start was stored, while the end was written: the end's first
        // bytes are there, the size and the head still say "started".
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, HZ);
        log.call(&mut w, &done, 3);
        log.start(&mut w, &in_progress, false);
        let end_at = w.pos;
        let mut returned = in_progress;
        returned.phase = Phase::Exit;
        let mut regs = w.regs;
        end_into(
            &mut log.data,
            (w.at, end_at),
            &mut regs,
            &returned,
            (false, 3, false),
        );
        // Another thread's chunk goes on.
        let mut other = log.chunk(10, 12, 512, HZ);
        let mut later = sample(Func::Shmdt, TICKS0 + 900);
        later.tid = 12;
        log.call(&mut other, &later, 3);
        let mut reader = AnyReader::new(&log.data).unwrap();
        let items: Vec<_> = reader.by_ref().collect();
        assert_eq!(
            items,
            vec![
                Item::Call(read_back(done, 3)),
                Item::Call(started),
                Item::Call(read_back(later, 3))
            ]
        );
        assert_eq!((reader.unfinished, reader.damaged), (0, false));

        // Killed while the start was written: its fields are there, its head is not.
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, HZ);
        log.call(&mut w, &done, 3);
        let at = w.pos;
        log.start(&mut w, &in_progress, false);
        log.data[at] = 0;
        // A chunk reserved and never written (killed right after the cursor moved).
        log.reserve(512);
        log.blob(NS0 + 5_000, b"report\n", b"{}\n");
        let mut reader = AnyReader::new(&log.data).unwrap();
        let items: Vec<_> = reader.by_ref().collect();
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!((reader.unfinished, reader.damaged), (1, false));

        // A call abandoned in progress (a signal handler jumped out of it): the thread's next
        // call follows its start.
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, HZ);
        log.start(&mut w, &in_progress, false);
        log.call(&mut w, &done, 3);
        let mut done_later = done;
        done_later.ts_ns = TICKS0 + 900;
        log.call(&mut w, &done_later, 3);
        assert_eq!(log.items().len(), 3);
    }

    /// A log read while a call was being completed (its end written, its size and head not
    /// yet) and its thread wrote on before the reader got there: the call reads as started,
    /// and the records after it still read, counting from what its end set.
    #[test]
    fn a_call_being_completed_while_the_log_is_read_hides_nothing_after_it() {
        let mut mmap = sample(Func::Mmap, TICKS0 + 300);
        mmap.args = [0, 8192, 3, 0x22, -1i64 as u64, 0];
        mmap.ret = 0x7f3a_2c00_0000;
        let mut munmap = sample(Func::Munmap, TICKS0 + 900);
        munmap.args = [0x7f3a_2c00_0000, 8192, 0, 0, 0, 0];
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 1024, HZ);
        let mut started = mmap;
        started.phase = Phase::Enter;
        log.start(&mut w, &started, false);
        log.end_unmarked(&mut w, &mmap, 30);
        log.call(&mut w, &munmap, 30);
        let mut seen_started = read_back(started, 0);
        seen_started.ret = 0;
        assert_eq!(
            log.items(),
            vec![Item::Call(seen_started), Item::Call(read_back(munmap, 30))]
        );
    }

    #[test]
    fn a_record_that_says_it_runs_past_its_chunk_is_damage() {
        let mut log = Log::new();
        let mut w = log.chunk(10, 11, 512, HZ);
        log.call(&mut w, &sample(Func::Munmap, TICKS0), 3);
        let at = w.at + CHUNK_HEAD;
        log.data[at + 1..at + 3].copy_from_slice(&600u16.to_ne_bytes());
        let mut reader = AnyReader::new(&log.data).unwrap();
        assert_eq!(reader.next(), None);
        assert!(reader.damaged);
    }
}

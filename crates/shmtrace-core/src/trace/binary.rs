//! The binary log (`SHMTRACE_FORMAT=binary`): its layout, shared by the shim, which writes it
//! in place in a file mapped into memory, and by `shmtrace decode`, which turns it back into
//! the text and JSON records (docs/log-format.md, "binary").
//!
//! A file is a 64-byte header then records, each 8-byte aligned and starting with a non-zero
//! tag and its size. A record is reserved (the header's cursor advanced) before it is written,
//! so a process killed in between leaves zeros, which a reader skips 8 bytes at a time. Its
//! `state` word is stored last: a record whose state is still 0 was never finished being
//! written and is skipped too.
//!
//! Numbers are in the byte order of the machine that wrote them: a log is decoded on the
//! machine (or at least the architecture) that produced it.

use super::event::{
    Event, Func, NAME_KEPT, Name, Phase, SOPS_KEPT, STACK_MAX, SemOp, Stack, Timeout,
};

/// The file's first 8 bytes; the last two digits are the layout version. The shim writes
/// version 5 (`binary_v4`: variable-length records in per-thread chunks, a name repeated in a
/// chunk referred to); the reader also reads version 4 (every name in full), version 3 (the fixed layout of this module), version 2 (an errno field of its own,
/// room for eight sembufs in every semop record) and version 1 (each call record kept all six
/// argument words).
pub const MAGIC: [u8; 8] = super::binary_v4::MAGIC;
/// The magic of a version 4 log (read by the same reader as version 5).
pub const MAGIC_V4: [u8; 8] = super::binary_v4::MAGIC_V4;
/// The magic of a version 3 log.
pub const MAGIC_V3: [u8; 8] = *b"SHMTRB03";
/// The magic of a version 2 log.
pub const MAGIC_V2: [u8; 8] = *b"SHMTRB02";
/// The magic of a version 1 log.
pub const MAGIC_V1: [u8; 8] = *b"SHMTRB01";
pub const HEADER_SIZE: usize = 64;
/// Header: bytes reserved for records after the header (u64, advanced atomically).
pub const CURSOR_OFFSET: usize = 8;
/// Header: records that could not be stored, the log being full (u64).
pub const LOST_OFFSET: usize = 16;

/// Kinds of blob records (records that are not calls), for readers that care; a new kind
/// needs only a new number here.
pub const KIND_OTHER: u32 = 0;
pub const KIND_START: u32 = 1;
pub const KIND_FORK: u32 = 2;
pub const KIND_REPORT: u32 = 3;
pub const KIND_FINDING: u32 = 4;
pub const KIND_MODULES: u32 = 5;

/// Record tags (never 0: a zero word is unwritten space).
pub const TAG_CALL: u32 = 0x4c43_5453; // "STCL"
pub const TAG_BLOB: u32 = 0x4c42_5453; // "STBL"

/// Record states: reserved (nothing valid yet), call started, written completely.
pub const STATE_RESERVED: u32 = 0;
pub const STATE_STARTED: u32 = 1;
pub const STATE_DONE: u32 = 2;

/// Offsets in every record.
pub const TAG: usize = 0;
pub const SIZE: usize = 4;
pub const STATE: usize = 8;

// A call record: its head, the same in every version.
const FUNC: usize = 12;
const FLAGS: usize = 13;
const SOPS_READ: usize = 14;
const STACK_LEN: usize = 15;
const PID: usize = 16;
const TID: usize = 20;

/// Where the other fields of a call record lie, in one layout version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fields {
    ts: usize,
    caller: usize,
    dur: usize,
    ret: usize,
    errno: usize,
    args: usize,
    /// Every record keeps all six argument words (version 1), or only as many as its function
    /// has parameters (version 2).
    all_args: bool,
    /// A file mapping's record says whether it has a name's room (`FLAG_NAMED`, version 2),
    /// or its flags argument does (no MAP_ANONYMOUS, version 1).
    named_by_flag: bool,
    /// A failed call keeps its errno where the result would be, and says so (`FLAG_FAILED`):
    /// the result of a failed call is its function's failure value (version 3).
    errno_in_ret: bool,
    /// A semop record has room for as many sembufs as its call passed, up to `SOPS_KEPT`
    /// (version 3), or for `SOPS_KEPT` always.
    sops_by_count: bool,
}

const V1: Fields = Fields {
    errno: 24,
    ts: 32,
    dur: 40,
    caller: 48,
    ret: 56,
    args: 64,
    all_args: true,
    named_by_flag: false,
    errno_in_ret: false,
    sops_by_count: false,
};

const V2: Fields = Fields {
    ts: 24,
    caller: 32,
    dur: 40,
    ret: 48,
    errno: 56,
    args: 64,
    all_args: false,
    named_by_flag: true,
    errno_in_ret: false,
    sops_by_count: false,
};

/// Every byte of a record is a byte of page the kernel faults in, zeroes and writes back:
/// version 3 drops the errno field (a failed call's result is known) and the sembufs a semop
/// did not pass.
const V3: Fields = Fields {
    ts: 24,
    caller: 32,
    dur: 40,
    ret: 48,
    errno: 48,
    args: 56,
    all_args: false,
    named_by_flag: true,
    errno_in_ret: true,
    sops_by_count: true,
};

/// The version of the fixed layout (this module's writer, kept for tests and tools).
const WRITTEN: Fields = V3;
const TS: usize = WRITTEN.ts;
const CALLER: usize = WRITTEN.caller;
const DUR: usize = WRITTEN.dur;
const RET: usize = WRITTEN.ret;
const ARGS: usize = WRITTEN.args;
/// The fixed part of a call record (version 3); the function's arguments follow, then the
/// sembufs (semop, semtimedop), the timeout (semtimedop), the name (shm_open, shm_unlink,
/// memfd_create, sem_open, sem_unlink; an mmap whose record says `FLAG_NAMED`) and the stack,
/// in that order, when the function has them.
pub const CALL_FIXED: usize = ARGS;
const SOP_SIZE: usize = 6;
const SOPS_SIZE: usize = (SOPS_KEPT * SOP_SIZE).next_multiple_of(8);
const TIMEOUT_SIZE: usize = 16;
/// A name: its length byte, then the bytes kept.
const NAME_SIZE: usize = (1 + NAME_KEPT).next_multiple_of(8);

const FLAG_CREATED: u8 = 1;
const FLAG_TIMEOUT: u8 = 2;
/// The record was written when the call started, before it returned: for a call that may
/// wait, that it waited (it is logged as started only then).
const FLAG_STARTED: u8 = 4;
/// A file mapping (mmap, mmap64 without MAP_ANONYMOUS): the record has room for the name of
/// the shared memory object it maps (known only once it returned), set when the record is
/// sized. Version 2 only: a version 1 reader tells a file mapping from its flags argument.
const FLAG_NAMED: u8 = 8;
/// The call failed: the result field holds its errno, the result being the function's failure
/// value (version 3).
const FLAG_FAILED: u8 = 16;

// A blob record: a record that is not a call (start, fork, report, ...), kept as rendered in
// both formats, so a new kind of record needs no new layout and the reader no new code.
const BLOB_KIND: usize = 12;
const BLOB_TEXT_LEN: usize = 16;
const BLOB_JSON_LEN: usize = 20;
pub const BLOB_FIXED: usize = 24;

/// Bytes for the sembufs in a record of this layout with these arguments (the count is the
/// third).
#[inline]
fn sops_room(layout: &Layout, fields: Fields, args: &[u64; 6]) -> usize {
    if !layout.carries.sops {
        0
    } else if fields.sops_by_count {
        (args[2].min(SOPS_KEPT as u64) as usize * SOP_SIZE).next_multiple_of(8)
    } else {
        SOPS_SIZE
    }
}

fn is_file_mapping(args: &[u64; 6]) -> bool {
    args[3] as i32 & libc::MAP_ANONYMOUS == 0
}

/// Where the sembufs, the timeout, the name and the stack of a call record start, in the
/// version written (what follows the sembufs moves with their room). The writer looks its
/// function's layout up once per record and asks it.
impl Layout {
    #[inline]
    fn sops_room(&self, args: &[u64; 6]) -> usize {
        sops_room(self, WRITTEN, args)
    }

    #[inline]
    fn timeout_at(&self, args: &[u64; 6]) -> usize {
        usize::from(self.timeout_at) + self.sops_room(args)
    }

    #[inline]
    fn name_at(&self, args: &[u64; 6]) -> usize {
        usize::from(self.name_at) + self.sops_room(args)
    }

    /// Whether a record of this call has room for the object a file mapping maps.
    #[inline]
    fn mapped_name(&self, args: &[u64; 6]) -> bool {
        self.carries.mapped_name && is_file_mapping(args)
    }

    #[inline]
    fn stack_at(&self, args: &[u64; 6], mapped_name: bool) -> usize {
        usize::from(self.stack_at) + self.sops_room(args) + if mapped_name { NAME_SIZE } else { 0 }
    }
}

/// What a call record carries after its fixed part.
#[derive(Clone, Copy)]
struct Carries {
    sops: bool,
    timeout: bool,
    /// The name argument, always.
    name: bool,
    /// For a file mapping only, the shared memory object it maps: the record says whether it
    /// has the room (`FLAG_NAMED`), which then comes where `name` would and moves the stack.
    mapped_name: bool,
}

const fn carries(func: Func) -> Carries {
    let (sops, timeout, name) = match func {
        Func::Semop => (true, false, false),
        Func::Semtimedop => (true, true, false),
        Func::ShmOpen | Func::ShmUnlink | Func::MemfdCreate | Func::SemOpen | Func::SemUnlink => {
            (false, false, true)
        }
        Func::Shmget
        | Func::Shmat
        | Func::Shmdt
        | Func::Shmctl
        | Func::Semget
        | Func::Semctl
        | Func::Mmap
        | Func::Mmap64
        | Func::Munmap
        | Func::Mremap
        | Func::SemClose
        | Func::Msgget
        | Func::Msgsnd
        | Func::Msgrcv
        | Func::Msgctl => (false, false, false),
    };
    Carries {
        sops,
        timeout,
        name,
        mapped_name: matches!(func, Func::Mmap | Func::Mmap64),
    }
}

/// What a call record of one function carries, and where: worked out once, at compile time,
/// since the writer asks on every call.
#[derive(Clone, Copy)]
struct Layout {
    carries: Carries,
    /// Argument words kept.
    args: u16,
    sops_at: u16,
    /// These three without the sembufs' room (see `sops_room`).
    timeout_at: u16,
    name_at: u16,
    /// Without a mapped name's room either.
    stack_at: u16,
}

const fn layout_of(func: Func, fields: Fields) -> Layout {
    let carries = carries(func);
    let args = if fields.all_args { 6 } else { func.arg_count() };
    let sops_at = fields.args + 8 * args;
    let timeout_at = sops_at;
    let name_at = timeout_at + if carries.timeout { TIMEOUT_SIZE } else { 0 };
    let stack_at = name_at + if carries.name { NAME_SIZE } else { 0 };
    Layout {
        carries,
        args: args as u16,
        sops_at: sops_at as u16,
        timeout_at: timeout_at as u16,
        name_at: name_at as u16,
        stack_at: stack_at as u16,
    }
}

/// The layouts of the version written.
const LAYOUTS: [Layout; Func::COUNT] = {
    let mut table = [layout_of(Func::ALL[0], WRITTEN); Func::COUNT];
    let mut i = 0;
    while i < Func::COUNT {
        table[i] = layout_of(Func::ALL[i], WRITTEN);
        i += 1;
    }
    table
};

#[inline]
fn layout(func: Func) -> &'static Layout {
    // `Func as usize` indexes `Func::ALL`, which `LAYOUTS` follows.
    &LAYOUTS[func as usize]
}

/// Size of the call record for `func` with these arguments and `stack_len` frames (known when
/// the call starts).
pub fn call_size(func: Func, args: &[u64; 6], stack_len: usize) -> usize {
    let layout = layout(func);
    layout.stack_at(args, layout.mapped_name(args)) + stack_len.min(STACK_MAX) * 8
}

/// Size of a blob record with these renderings.
pub fn blob_size(text_len: usize, json_len: usize) -> usize {
    (BLOB_FIXED + text_len + json_len).next_multiple_of(8)
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

/// Tag and size: written first, so that whatever follows can be skipped.
pub fn write_head(rec: &mut [u8], tag: u32) {
    let size = rec.len() as u32;
    put(rec, TAG, tag.to_ne_bytes());
    put(rec, SIZE, size.to_ne_bytes());
}

/// The fixed part of a call record, as an array: stores at constant offsets into it need no
/// bounds check each (the writer runs on every call).
fn fixed(rec: &mut [u8]) -> Option<&mut [u8; CALL_FIXED]> {
    rec.get_mut(..CALL_FIXED)?.try_into().ok()
}

/// What is known when the call starts (`rec` is `call_size` bytes, head already written).
/// An enter event also carries the operations it waits with, when they were read.
pub fn write_call_start(rec: &mut [u8], ev: &Event) {
    let stack = ev.stack();
    let Some(head) = fixed(rec) else {
        return;
    };
    head[FUNC] = ev.func as u8;
    head[STACK_LEN] = stack.len() as u8;
    put(head, PID, ev.pid.to_ne_bytes());
    put(head, TID, ev.tid.to_ne_bytes());
    put(head, TS, ev.ts_ns.to_ne_bytes());
    put(head, CALLER, ev.caller.to_ne_bytes());
    let layout = layout(ev.func);
    let mapped_name = layout.mapped_name(&ev.args);
    if mapped_name {
        head[FLAGS] = FLAG_NAMED;
    }
    if ev.phase == Phase::Enter {
        head[FLAGS] |= FLAG_STARTED;
        put_sops(rec, layout, ev);
    }
    // Only the function's own parameters: the other words of `args` are always 0.
    match layout.args {
        1 => put_args::<1>(rec, &ev.args),
        2 => put_args::<2>(rec, &ev.args),
        3 => put_args::<3>(rec, &ev.args),
        4 => put_args::<4>(rec, &ev.args),
        5 => put_args::<5>(rec, &ev.args),
        _ => put_args::<6>(rec, &ev.args),
    }
    if !stack.is_empty() {
        let at = layout.stack_at(&ev.args, mapped_name);
        for (i, frame) in stack.iter().enumerate() {
            put(rec, at + 8 * i, frame.to_ne_bytes());
        }
    }
}

/// What the call returned (the record's start already written).
pub fn write_call_end(rec: &mut [u8], ev: &Event) {
    let Some(head) = fixed(rec) else {
        return;
    };
    let mut flags = head[FLAGS] & (FLAG_STARTED | FLAG_NAMED);
    if ev.created {
        flags |= FLAG_CREATED;
    }
    // A failed call's result is its failure value: the field keeps the errno instead (an
    // errno is set only for a failed call; testing it first keeps the common path short).
    let ret = if ev.errno != 0 && ev.ret == ev.func.failure_value() {
        flags |= FLAG_FAILED;
        i64::from(ev.errno)
    } else {
        ev.ret
    };
    put(head, DUR, ev.dur_ns.to_ne_bytes());
    put(head, RET, ret.to_ne_bytes());
    let layout = layout(ev.func);
    let carries = layout.carries;
    put_sops(rec, layout, ev);
    if let (true, Some(t)) = (carries.timeout, ev.timeout) {
        flags |= FLAG_TIMEOUT;
        let at = layout.timeout_at(&ev.args);
        put(rec, at, t.sec.to_ne_bytes());
        put(rec, at + 8, t.nsec.to_ne_bytes());
    }
    if carries.name || flags & FLAG_NAMED != 0 {
        let name = ev.name();
        let at = layout.name_at(&ev.args);
        if let Some(len) = rec.get_mut(at) {
            *len = name.len() as u8;
        }
        if let Some(dst) = rec.get_mut(at + 1..at + 1 + name.len()) {
            dst.copy_from_slice(name);
        }
    }
    if let Some(f) = rec.get_mut(FLAGS) {
        *f = flags;
    }
}

/// The first `N` argument words, through an array of `N` words: plain stores, with one bounds
/// check for them all (a loop over a count known only at run time checks every word).
fn put_args<const N: usize>(rec: &mut [u8], args: &[u64; 6]) {
    let Some(words) = rec.get_mut(ARGS..ARGS + 8 * N) else {
        return;
    };
    let Ok(words): Result<&mut [[u8; 8]; N], _> = words.as_chunks_mut::<8>().0.try_into() else {
        return;
    };
    for (word, arg) in words.iter_mut().zip(args) {
        *word = arg.to_ne_bytes();
    }
}

/// The operations read, as many as the record has room for (one bounds check for them all).
fn put_sops(rec: &mut [u8], layout: &Layout, ev: &Event) {
    if !layout.carries.sops {
        return;
    }
    let at = usize::from(layout.sops_at);
    let room = layout.sops_room(&ev.args);
    let Some(area) = rec.get_mut(at..at + room) else {
        return;
    };
    let mut n = 0u8;
    for (dst, op) in area.chunks_exact_mut(SOP_SIZE).zip(ev.sops()) {
        dst[..2].copy_from_slice(&op.num.to_ne_bytes());
        dst[2..4].copy_from_slice(&op.op.to_ne_bytes());
        dst[4..].copy_from_slice(&op.flg.to_ne_bytes());
        n += 1;
    }
    if let Some(count) = rec.get_mut(SOPS_READ) {
        *count = n;
    }
}

/// Fills a blob record (`blob_size` bytes, head already written).
pub fn write_blob(rec: &mut [u8], kind: u32, text: &[u8], json: &[u8]) {
    put(rec, BLOB_KIND, kind.to_ne_bytes());
    put(rec, BLOB_TEXT_LEN, (text.len() as u32).to_ne_bytes());
    put(rec, BLOB_JSON_LEN, (json.len() as u32).to_ne_bytes());
    if let Some(dst) = rec.get_mut(BLOB_FIXED..BLOB_FIXED + text.len()) {
        dst.copy_from_slice(text);
    }
    let at = BLOB_FIXED + text.len();
    if let Some(dst) = rec.get_mut(at..at + json.len()) {
        dst.copy_from_slice(json);
    }
}

/// Whether `rec` holds the start of the call `ev` (the record a thread wrote when the call
/// started, checked before it is completed in place).
pub fn is_start_of(rec: &[u8], ev: &Event) -> bool {
    let size = rec.len();
    let Some(head) = rec
        .get(..CALL_FIXED)
        .and_then(|h| <&[u8; CALL_FIXED]>::try_from(h).ok())
    else {
        return false;
    };
    let word = |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    word(TAG) == TAG_CALL
        && word(SIZE) as usize == size
        && head[FUNC] == ev.func as u8
        && word(TID) as i32 == ev.tid
        && u64::from(word(TS)) | u64::from(word(TS + 4)) << 32 == ev.ts_ns
}

/// The size a record's head says it has (`rec` is at least its head).
pub fn record_size(head: &[u8; 8]) -> usize {
    u32::from_ne_bytes([head[SIZE], head[SIZE + 1], head[SIZE + 2], head[SIZE + 3]]) as usize
}

/// One record read back.
// Items are handed out one at a time and consumed at once: boxing the event would only add an
// allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A call: `Phase::Exit` when it returned, `Phase::Enter` when it was still in progress
    /// (the process was killed, or exec'd from another thread, meanwhile).
    Call(Event),
    /// A call that may wait and did: it returned (`Phase::Exit`), and was logged as started
    /// when it began to wait (text and JSON logs have its enter record).
    Waited(Event),
    /// Any other record, as rendered in each format (each ends with a newline).
    Blob {
        kind: u32,
        text: &'a [u8],
        json: &'a [u8],
    },
}

/// Why a file cannot be read as a binary log.
#[derive(Debug, PartialEq, Eq)]
pub enum NotALog {
    Magic,
}

/// Whether `data` starts like a binary log (of a version this reader knows).
pub fn is_binary_log(data: &[u8]) -> bool {
    data.starts_with(&MAGIC) || data.starts_with(&MAGIC_V4) || fields_of(data).is_some()
}

/// The call record layout of the log `data`, from its magic (versions 1 to 3).
fn fields_of(data: &[u8]) -> Option<Fields> {
    if data.starts_with(&MAGIC_V3) {
        Some(V3)
    } else if data.starts_with(&MAGIC_V2) {
        Some(V2)
    } else if data.starts_with(&MAGIC_V1) {
        Some(V1)
    } else {
        None
    }
}

/// The records of a binary log, calls by start time: in the order they were reserved
/// (versions 1 to 3), or merged from the chunks of each thread by start time (version 4).
pub struct Reader<'a> {
    data: &'a [u8],
    fields: Fields,
    pos: usize,
    end: usize,
    v4: Option<super::binary_v4::Reader<'a>>,
    /// Records the writing process had not finished writing (killed meanwhile).
    pub unfinished: u64,
    /// True when the reading stopped at bytes that are no record (a damaged file).
    pub damaged: bool,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Result<Reader<'a>, NotALog> {
        if (data.starts_with(&MAGIC) || data.starts_with(&MAGIC_V4)) && data.len() >= HEADER_SIZE {
            return Ok(Reader {
                data,
                fields: V3,
                pos: 0,
                end: 0,
                v4: Some(super::binary_v4::Reader::new(data)),
                unfinished: 0,
                damaged: false,
            });
        }
        let Some(fields) = fields_of(data).filter(|_| data.len() >= HEADER_SIZE) else {
            return Err(NotALog::Magic);
        };
        let used = get_u64(data, CURSOR_OFFSET) as usize;
        // Space reserved after the file stopped growing (a full disk) was never there.
        let end = HEADER_SIZE.saturating_add(used).min(data.len());
        Ok(Reader {
            data,
            fields,
            pos: HEADER_SIZE,
            end,
            v4: None,
            unfinished: 0,
            damaged: false,
        })
    }

    /// Records the writer could not store because the log was full.
    pub fn lost(&self) -> u64 {
        get_u64(self.data, LOST_OFFSET)
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if let Some(v4) = &mut self.v4 {
            let item = v4.next();
            self.unfinished = v4.unfinished;
            self.damaged = v4.damaged;
            return item;
        }
        while self.pos + BLOB_FIXED <= self.end {
            let at = self.pos;
            let tag = get_u32(self.data, at + TAG);
            if tag == 0 {
                // Reserved by a process that died before writing it.
                self.pos += 8;
                continue;
            }
            let size = get_u32(self.data, at + SIZE) as usize;
            if size < BLOB_FIXED || !size.is_multiple_of(8) || at + size > self.end {
                self.damaged = true;
                return None;
            }
            self.pos += size;
            let rec = &self.data[at..at + size];
            let state = get_u32(rec, STATE);
            if state == STATE_RESERVED {
                self.unfinished += 1;
                continue;
            }
            match tag {
                TAG_CALL => match read_call(rec, state, self.fields) {
                    Some((ev, true)) if ev.phase == Phase::Exit => return Some(Item::Waited(ev)),
                    Some((ev, _)) => return Some(Item::Call(ev)),
                    None => {
                        self.damaged = true;
                        return None;
                    }
                },
                TAG_BLOB => {
                    let text_len = get_u32(rec, BLOB_TEXT_LEN) as usize;
                    let json_len = get_u32(rec, BLOB_JSON_LEN) as usize;
                    let text_end = BLOB_FIXED.saturating_add(text_len);
                    let (Some(text), Some(json)) = (
                        rec.get(BLOB_FIXED..text_end),
                        rec.get(text_end..text_end.saturating_add(json_len)),
                    ) else {
                        self.damaged = true;
                        return None;
                    };
                    return Some(Item::Blob {
                        kind: get_u32(rec, BLOB_KIND),
                        text,
                        json,
                    });
                }
                // A record of a later version: its size says how to skip it.
                _ => continue,
            }
        }
        None
    }
}

/// The call, and whether it is one that may wait logged as started (it waited).
fn read_call(rec: &[u8], state: u32, fields: Fields) -> Option<(Event, bool)> {
    let func = *Func::ALL.get(usize::from(rec[FUNC]))?;
    let layout = layout_of(func, fields);
    let stack_len = usize::from(rec[STACK_LEN]);
    let done = state == STATE_DONE;
    let mut ev = Event::new(if done { Phase::Exit } else { Phase::Enter }, func);
    for (i, arg) in ev
        .args
        .iter_mut()
        .enumerate()
        .take(usize::from(layout.args))
    {
        *arg = get_u64(rec, fields.args + 8 * i);
    }
    let flags = rec[FLAGS];
    let mapped_name = layout.carries.mapped_name
        && if fields.named_by_flag {
            flags & FLAG_NAMED != 0
        } else {
            is_file_mapping(&ev.args)
        };
    let sops_room = sops_room(&layout, fields, &ev.args);
    let at = usize::from(layout.stack_at) + sops_room + if mapped_name { NAME_SIZE } else { 0 };
    if stack_len > STACK_MAX || rec.len() < at + 8 * stack_len {
        return None;
    }
    ev.pid = i32::from_ne_bytes(get(rec, PID));
    ev.tid = i32::from_ne_bytes(get(rec, TID));
    ev.ts_ns = get_u64(rec, fields.ts);
    ev.caller = get_u64(rec, fields.caller);
    let frames: [u64; STACK_MAX] = core::array::from_fn(|i| get_u64(rec, at + 8 * i));
    ev.stack = Stack::from_slice(&frames[..stack_len]);
    let waited = flags & FLAG_STARTED != 0 && func.may_block();
    if layout.carries.sops {
        let n = usize::from(rec[SOPS_READ]).min(sops_room / SOP_SIZE);
        let at = usize::from(layout.sops_at);
        for (i, op) in ev.sops.iter_mut().enumerate().take(n) {
            let base = at + SOP_SIZE * i;
            *op = SemOp {
                num: u16::from_ne_bytes(get(rec, base)),
                op: i16::from_ne_bytes(get(rec, base + 2)),
                flg: i16::from_ne_bytes(get(rec, base + 4)),
            };
        }
        ev.sops_read = n as u8;
    }
    if !done {
        return Some((ev, waited));
    }
    ev.created = flags & FLAG_CREATED != 0;
    ev.dur_ns = get_u64(rec, fields.dur);
    ev.ret = i64::from_ne_bytes(get(rec, fields.ret));
    if !fields.errno_in_ret {
        ev.errno = i32::from_ne_bytes(get(rec, fields.errno));
    } else if flags & FLAG_FAILED != 0 {
        ev.errno = ev.ret as i32;
        ev.ret = func.failure_value();
    }
    if flags & FLAG_TIMEOUT != 0 {
        let at = usize::from(layout.timeout_at) + sops_room;
        ev.timeout = Some(Timeout {
            sec: i64::from_ne_bytes(get(rec, at)),
            nsec: i64::from_ne_bytes(get(rec, at + 8)),
        });
    }
    if layout.carries.name || mapped_name {
        let at = usize::from(layout.name_at) + sops_room;
        let len = usize::from(*rec.get(at)?).min(NAME_KEPT);
        ev.name = Name::from_bytes(rec.get(at + 1..at + 1 + len)?);
    }
    Some((ev, waited))
}

/// What a text or JSON log would have held for a call read back: a call that waited had its
/// enter record (with the operations it waited with) written when it started waiting, so it
/// gets one here too.
pub fn as_logged(ev: &Event, waited: bool) -> ([Event; 2], usize) {
    let mut enter = *ev;
    enter.phase = Phase::Enter;
    if ev.phase == Phase::Exit && waited {
        ([enter, *ev], 2)
    } else {
        ([*ev, enter], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log in memory built the way the shim builds it.
    struct Log {
        data: Vec<u8>,
    }

    impl Log {
        fn new() -> Log {
            let mut data = vec![0u8; HEADER_SIZE];
            data[..8].copy_from_slice(&MAGIC_V3);
            Log { data }
        }

        fn reserve(&mut self, size: usize) -> usize {
            let at = self.data.len();
            self.data.resize(at + size, 0);
            let used = (self.data.len() - HEADER_SIZE) as u64;
            self.data[CURSOR_OFFSET..CURSOR_OFFSET + 8].copy_from_slice(&used.to_ne_bytes());
            at
        }

        fn rec(&mut self, at: usize, size: usize) -> &mut [u8] {
            &mut self.data[at..at + size]
        }

        fn call(&mut self, ev: &Event, finished: bool) {
            let size = call_size(ev.func, &ev.args, ev.stack().len());
            let at = self.reserve(size);
            let rec = self.rec(at, size);
            write_head(rec, TAG_CALL);
            write_call_start(rec, ev);
            put(rec, STATE, STATE_STARTED.to_ne_bytes());
            if finished {
                write_call_end(rec, ev);
                put(rec, STATE, STATE_DONE.to_ne_bytes());
            }
        }

        fn blob(&mut self, text: &[u8], json: &[u8]) {
            let size = blob_size(text.len(), json.len());
            let at = self.reserve(size);
            let rec = self.rec(at, size);
            write_head(rec, TAG_BLOB);
            write_blob(rec, 7, text, json);
            put(rec, STATE, STATE_DONE.to_ne_bytes());
        }

        fn items(&self) -> Vec<Item<'_>> {
            Reader::new(&self.data).unwrap().collect()
        }
    }

    fn sample(func: Func) -> Event {
        let mut ev = Event::new(Phase::Exit, func);
        ev.pid = 10;
        ev.tid = 11;
        ev.ts_ns = 1_764_168_062_123_456_789;
        ev.dur_ns = 812;
        ev.caller = 0x55d0_c0a0_1234;
        ev.args = [3, 0x7ffd_0000_1000, 2, 0x7ffd_0000_2000, u64::MAX, 0x1000];
        // A hook leaves the words past the function's parameters 0.
        for arg in ev.args.iter_mut().skip(func.arg_count()) {
            *arg = 0;
        }
        ev.ret = 0;
        ev
    }

    #[test]
    fn every_field_of_every_function_survives_the_round_trip() {
        for func in Func::ALL {
            let mut ev = sample(func);
            ev.stack = Stack::from_slice(&[0x1, 0x2, 0x3]);
            if matches!(
                func,
                Func::Shmget | Func::Semget | Func::Msgget | Func::ShmOpen | Func::SemOpen
            ) {
                ev.created = true;
            }
            // The sample's flags argument has no MAP_ANONYMOUS: an mmap is a file mapping.
            if layout(func).carries.name || layout(func).mapped_name(&ev.args) {
                ev.name = Name::from_bytes(b"/shmtrace-\"name\"");
            }
            if layout(func).carries.sops {
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
            let mut failed = ev;
            failed.ret = func.failure_value();
            failed.errno = libc::EINVAL;
            failed.created = false;
            let mut log = Log::new();
            log.call(&ev, true);
            log.call(&failed, true);
            assert_eq!(
                log.items(),
                vec![Item::Call(ev), Item::Call(failed)],
                "{func:?}"
            );
        }
    }

    #[test]
    fn a_record_keeps_only_its_functions_parameters() {
        let args = [0; 6];
        assert_eq!(CALL_FIXED, 56);
        assert_eq!(call_size(Func::Shmdt, &args, 0), 56 + 8);
        assert_eq!(call_size(Func::Munmap, &args, 0), 56 + 2 * 8);
        let anon = [0, 0, 0, libc::MAP_ANONYMOUS as u64, 0, 0];
        assert_eq!(call_size(Func::Mmap, &anon, 2), 56 + 6 * 8 + 2 * 8);
        assert_eq!(call_size(Func::ShmOpen, &args, 0), 56 + 3 * 8 + NAME_SIZE);
        assert_eq!(call_size(Func::SemClose, &args, 0), 56 + 8);
        assert_eq!(
            call_size(Func::MemfdCreate, &args, 0),
            56 + 2 * 8 + NAME_SIZE
        );
        assert_eq!(call_size(Func::SemOpen, &args, 0), 56 + 4 * 8 + NAME_SIZE);
        assert_eq!(call_size(Func::Msgrcv, &args, 0), 56 + 5 * 8);
    }

    #[test]
    fn a_semop_record_has_room_for_the_operations_it_passed_up_to_the_kept_count() {
        let nsops = |n: u64| [3, 0x7ffd_0000_1000, n, 0x7ffd_0000_2000, 0, 0];
        // One sembuf (6 bytes) in 8: the common semop.
        assert_eq!(call_size(Func::Semop, &nsops(1), 0), 56 + 3 * 8 + 8);
        assert_eq!(call_size(Func::Semop, &nsops(0), 0), 56 + 3 * 8);
        assert_eq!(call_size(Func::Semop, &nsops(3), 0), 56 + 3 * 8 + 24);
        assert_eq!(call_size(Func::Semop, &nsops(9), 0), 56 + 3 * 8 + SOPS_SIZE);
        assert_eq!(
            call_size(Func::Semop, &nsops(u64::MAX), 0),
            56 + 3 * 8 + SOPS_SIZE
        );
        assert_eq!(
            call_size(Func::Semtimedop, &nsops(2), 1),
            56 + 4 * 8 + 16 + TIMEOUT_SIZE + 8
        );
        // More operations read than the record has room for (a count the call does not
        // match): only those that fit are kept, nothing else is overwritten.
        for func in [Func::Semop, Func::Semtimedop] {
            let mut ev = sample(func);
            ev.args[2] = 1;
            ev.stack = Stack::from_slice(&[0x1]);
            ev.timeout = (func == Func::Semtimedop).then_some(Timeout { sec: 2, nsec: 3 });
            for (i, op) in ev.sops.iter_mut().enumerate().take(3) {
                op.num = i as u16;
            }
            ev.sops_read = 3;
            let mut log = Log::new();
            log.call(&ev, true);
            let mut kept = ev;
            kept.sops_read = 1;
            kept.sops[1..].fill(SemOp::default());
            assert_eq!(log.items(), vec![Item::Call(kept)], "{func:?}");
        }
    }

    /// A call record as version 1 or 2 wrote it: the errno in a field of its own, room for
    /// `SOPS_KEPT` sembufs in a semop record; version 1 with all six argument words and the
    /// fields elsewhere, and no `FLAG_NAMED`.
    fn old_record(ev: &Event, fields: Fields) -> Vec<u8> {
        let layout = layout_of(ev.func, fields);
        let mapped_name = layout.carries.mapped_name && is_file_mapping(&ev.args);
        let named = layout.carries.name || mapped_name;
        let sops_room = if layout.carries.sops { SOPS_SIZE } else { 0 };
        let mut rec =
            vec![
                0u8;
                usize::from(layout.stack_at) + sops_room + if mapped_name { NAME_SIZE } else { 0 }
            ];
        let size = rec.len();
        write_head(&mut rec, TAG_CALL);
        assert_eq!(get_u32(&rec, SIZE) as usize, size);
        rec[FUNC] = ev.func as u8;
        rec[FLAGS] = u8::from(ev.created) * FLAG_CREATED;
        if fields.named_by_flag && mapped_name {
            rec[FLAGS] |= FLAG_NAMED;
        }
        put(&mut rec, PID, ev.pid.to_ne_bytes());
        put(&mut rec, TID, ev.tid.to_ne_bytes());
        put(&mut rec, fields.errno, ev.errno.to_ne_bytes());
        put(&mut rec, fields.ts, ev.ts_ns.to_ne_bytes());
        put(&mut rec, fields.dur, ev.dur_ns.to_ne_bytes());
        put(&mut rec, fields.caller, ev.caller.to_ne_bytes());
        put(&mut rec, fields.ret, ev.ret.to_ne_bytes());
        for (i, arg) in ev.args.iter().enumerate().take(usize::from(layout.args)) {
            put(&mut rec, fields.args + 8 * i, arg.to_ne_bytes());
        }
        let sops = ev.sops();
        rec[SOPS_READ] = sops.len() as u8;
        for (i, op) in sops.iter().enumerate() {
            let at = usize::from(layout.sops_at) + SOP_SIZE * i;
            put(&mut rec, at, op.num.to_ne_bytes());
            put(&mut rec, at + 2, op.op.to_ne_bytes());
            put(&mut rec, at + 4, op.flg.to_ne_bytes());
        }
        if named {
            let at = usize::from(layout.name_at) + sops_room;
            rec[at] = ev.name().len() as u8;
            rec[at + 1..at + 1 + ev.name().len()].copy_from_slice(ev.name());
        }
        put(&mut rec, STATE, STATE_DONE.to_ne_bytes());
        rec
    }

    #[test]
    fn a_version_2_log_reads_as_it_did() {
        let mut data = vec![0u8; HEADER_SIZE];
        data[..8].copy_from_slice(&MAGIC_V2);
        let mut file = sample(Func::Mmap);
        file.args[3] = libc::MAP_SHARED as u64;
        file.name = Name::from_bytes(b"/shmtrace-ring");
        // One operation passed, in room for eight.
        let mut semop = sample(Func::Semop);
        semop.args[2] = 1;
        semop.sops[0] = SemOp {
            num: 1,
            op: -1,
            flg: 0x1000,
        };
        semop.sops_read = 1;
        let mut timed = sample(Func::Semtimedop);
        timed.timeout = Some(Timeout { sec: 4, nsec: 5 });
        // A failure whose errno had its own field.
        let mut failed = sample(Func::ShmOpen);
        failed.ret = -1;
        failed.errno = libc::ENOENT;
        failed.name = Name::from_bytes(b"/gone");
        let mut v2 = [&file, &semop, &timed, &failed].map(|ev| old_record(ev, V2));
        v2[2][FLAGS] |= FLAG_TIMEOUT;
        put(
            &mut v2[2],
            usize::from(layout_of(Func::Semtimedop, V2).timeout_at) + SOPS_SIZE,
            4i64.to_ne_bytes(),
        );
        put(
            &mut v2[2],
            usize::from(layout_of(Func::Semtimedop, V2).timeout_at) + SOPS_SIZE + 8,
            5i64.to_ne_bytes(),
        );
        for rec in &v2 {
            data.extend(rec);
        }
        let used = (data.len() - HEADER_SIZE) as u64;
        data[CURSOR_OFFSET..CURSOR_OFFSET + 8].copy_from_slice(&used.to_ne_bytes());
        let items: Vec<Item<'_>> = Reader::new(&data).unwrap().collect();
        assert_eq!(
            items,
            vec![
                Item::Call(file),
                Item::Call(semop),
                Item::Call(timed),
                Item::Call(failed)
            ]
        );
        assert!(
            v2[1].len() > call_size(Func::Semop, &semop.args, 0),
            "version 3 is smaller"
        );
    }

    #[test]
    fn a_version_1_log_reads_as_it_did() {
        let mut data = vec![0u8; HEADER_SIZE];
        data[..8].copy_from_slice(&MAGIC_V1);
        let mut mmap = sample(Func::Mmap);
        mmap.ret = 0x7f00_0000_0000;
        mmap.args[3] = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        // A file mapping as version 1 wrote it, with the object it maps.
        let mut file = sample(Func::Mmap);
        file.args[3] = libc::MAP_SHARED as u64;
        file.name = Name::from_bytes(b"/shmtrace-ring");
        let mut semop = sample(Func::Semop);
        semop.sops[0] = SemOp {
            num: 1,
            op: -1,
            flg: 0x1000,
        };
        semop.sops_read = 1;
        let mut shmget = sample(Func::Shmget);
        shmget.created = true;
        for ev in [&mmap, &file, &semop, &shmget] {
            data.extend(old_record(ev, V1));
        }
        let used = (data.len() - HEADER_SIZE) as u64;
        data[CURSOR_OFFSET..CURSOR_OFFSET + 8].copy_from_slice(&used.to_ne_bytes());
        assert!(is_binary_log(&data));
        let items: Vec<Item<'_>> = Reader::new(&data).unwrap().collect();
        assert_eq!(
            items,
            vec![
                Item::Call(mmap),
                Item::Call(file),
                Item::Call(semop),
                Item::Call(shmget)
            ]
        );
        assert!(
            !is_binary_log(b"SHMTRB06"),
            "a version this reader does not know"
        );
    }

    #[test]
    fn only_a_file_mapping_has_room_for_the_object_it_maps() {
        let mut anon = sample(Func::Mmap);
        anon.args[3] = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        anon.stack = Stack::from_slice(&[0x1, 0x2]);
        let mut file = anon;
        file.args[3] = libc::MAP_SHARED as u64;
        file.args[4] = 3;
        file.name = Name::from_bytes(b"memfd:ring");
        let anon_size = call_size(Func::Mmap, &anon.args, 2);
        assert_eq!(anon_size, CALL_FIXED + 6 * 8 + 2 * 8);
        assert_eq!(call_size(Func::Mmap, &file.args, 2), anon_size + NAME_SIZE);
        let mut log = Log::new();
        log.call(&anon, true);
        log.call(&file, true);
        let mut started = file;
        started.phase = Phase::Enter;
        log.call(&started, false);
        let mut read_started = started;
        read_started.name = Name::default();
        read_started.ret = 0;
        read_started.dur_ns = 0;
        assert_eq!(
            log.items(),
            vec![Item::Call(anon), Item::Call(file), Item::Call(read_started)]
        );
    }

    #[test]
    fn a_call_in_progress_reads_as_started() {
        let ev = sample(Func::Semop);
        let mut log = Log::new();
        log.call(&ev, false);
        let mut enter = Event::new(Phase::Enter, Func::Semop);
        enter.pid = ev.pid;
        enter.tid = ev.tid;
        enter.ts_ns = ev.ts_ns;
        enter.caller = ev.caller;
        enter.args = ev.args;
        assert_eq!(log.items(), vec![Item::Call(enter)]);
        assert_eq!(
            as_logged(&enter, false).1,
            1,
            "an enter record stays one record"
        );
    }

    /// A semop that waited: its start was written, with its operations, when it began to wait.
    fn waited(finished: bool) -> (Log, Event, Event) {
        let mut ev = sample(Func::Semop);
        ev.sops[0] = SemOp {
            num: 2,
            op: -1,
            flg: 0,
        };
        ev.sops_read = 1;
        let mut enter = ev;
        enter.phase = Phase::Enter;
        enter.ret = 0;
        enter.dur_ns = 0;
        let mut log = Log::new();
        let size = call_size(Func::Semop, &ev.args, 0);
        let at = log.reserve(size);
        let rec = log.rec(at, size);
        write_head(rec, TAG_CALL);
        write_call_start(rec, &enter);
        put(rec, STATE, STATE_STARTED.to_ne_bytes());
        if finished {
            write_call_end(rec, &ev);
            put(rec, STATE, STATE_DONE.to_ne_bytes());
        }
        (log, enter, ev)
    }

    #[test]
    fn a_call_that_waits_carries_its_operations_from_the_start() {
        let (log, enter, _) = waited(false);
        assert_eq!(log.items(), vec![Item::Call(enter)]);
        let (log, _, ev) = waited(true);
        assert_eq!(log.items(), vec![Item::Waited(ev)]);
    }

    #[test]
    fn unwritten_and_unfinished_records_are_skipped() {
        let mut log = Log::new();
        let first = sample(Func::Mmap);
        log.call(&first, true);
        // Reserved, never written (killed right after the cursor moved).
        log.reserve(call_size(Func::Munmap, &first.args, 0));
        // Head written, state never (killed while writing the start).
        let size = call_size(Func::Munmap, &first.args, 0);
        let at = log.reserve(size);
        write_head(log.rec(at, size), TAG_CALL);
        log.blob(b"shmtrace[10] fork: parent 9\n", b"{\"event\":\"fork\"}\n");
        let mut reader = Reader::new(&log.data).unwrap();
        assert_eq!(reader.next(), Some(Item::Call(first)));
        assert_eq!(
            reader.next(),
            Some(Item::Blob {
                kind: 7,
                text: b"shmtrace[10] fork: parent 9\n",
                json: b"{\"event\":\"fork\"}\n"
            })
        );
        assert_eq!(reader.next(), None);
        assert_eq!((reader.unfinished, reader.damaged), (1, false));
    }

    #[test]
    fn reading_stops_at_the_cursor_and_at_the_end_of_the_file() {
        let mut log = Log::new();
        log.call(&sample(Func::Munmap), true);
        let whole = log.data.len();
        log.call(&sample(Func::Munmap), true);
        // A file cut short (the disk was full when it should have grown).
        assert_eq!(Reader::new(&log.data[..whole + 16]).unwrap().count(), 1);
        assert_eq!(log.items().len(), 2);
    }

    #[test]
    fn garbage_is_reported_not_misread() {
        let mut log = Log::new();
        let at = log.reserve(32);
        log.data[at..at + 4].copy_from_slice(&TAG_CALL.to_ne_bytes());
        log.data[at + 4..at + 8].copy_from_slice(&5u32.to_ne_bytes());
        let mut reader = Reader::new(&log.data).unwrap();
        assert_eq!(reader.next(), None);
        assert!(reader.damaged);
        assert!(Reader::new(b"shmtrace[1] start").is_err());
    }

    #[test]
    fn calls_that_waited_read_as_enter_then_call_and_others_as_the_call() {
        let (_, _, ev) = waited(true);
        let (pair, n) = as_logged(&ev, true);
        assert_eq!(n, 2);
        assert_eq!(pair[0].phase, Phase::Enter);
        assert_eq!(pair[0].sops(), ev.sops());
        assert_eq!(pair[1], ev);
        let (one, n) = as_logged(&ev, false);
        assert_eq!((n, one[0]), (1, ev));
    }
}

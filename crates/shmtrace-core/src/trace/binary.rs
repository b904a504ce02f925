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

/// The file's first 8 bytes; the last two digits are the layout version.
pub const MAGIC: [u8; 8] = *b"SHMTRB01";
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

// A call record: what is known when the call starts, then what it returned.
const FUNC: usize = 12;
const FLAGS: usize = 13;
const SOPS_READ: usize = 14;
const STACK_LEN: usize = 15;
const PID: usize = 16;
const TID: usize = 20;
const ERRNO: usize = 24;
const TS: usize = 32;
const DUR: usize = 40;
const CALLER: usize = 48;
const RET: usize = 56;
const ARGS: usize = 64;
/// The fixed part of a call record; the sembufs (semop, semtimedop), the timeout
/// (semtimedop) and the stack follow, in that order, when the function has them.
pub const CALL_FIXED: usize = ARGS + 6 * 8;
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

// A blob record: a record that is not a call (start, fork, report, ...), kept as rendered in
// both formats, so a new kind of record needs no new layout and the reader no new code.
const BLOB_KIND: usize = 12;
const BLOB_TEXT_LEN: usize = 16;
const BLOB_JSON_LEN: usize = 20;
pub const BLOB_FIXED: usize = 24;

/// Where the sembufs, the timeout and the stack of a call record of `func` start.
fn sops_at(_func: Func) -> usize {
    CALL_FIXED
}

fn timeout_at(func: Func, args: &[u64; 6]) -> usize {
    CALL_FIXED
        + if carries(func, args).sops {
            SOPS_SIZE
        } else {
            0
        }
}

fn name_at(func: Func, args: &[u64; 6]) -> usize {
    timeout_at(func, args)
        + if carries(func, args).timeout {
            TIMEOUT_SIZE
        } else {
            0
        }
}

fn stack_at(func: Func, args: &[u64; 6]) -> usize {
    name_at(func, args)
        + if carries(func, args).name {
            NAME_SIZE
        } else {
            0
        }
}

/// What a call record carries after its fixed part.
struct Carries {
    sops: bool,
    timeout: bool,
    /// The name argument, or for a file mapping the shared memory object it maps (known only
    /// once it returned, so every file mapping has the room).
    name: bool,
}

fn carries(func: Func, args: &[u64; 6]) -> Carries {
    let (sops, timeout, name) = match func {
        Func::Semop => (true, false, false),
        Func::Semtimedop => (true, true, false),
        Func::ShmOpen | Func::ShmUnlink | Func::MemfdCreate | Func::SemOpen | Func::SemUnlink => {
            (false, false, true)
        }
        Func::Mmap | Func::Mmap64 => (false, false, args[3] as i32 & libc::MAP_ANONYMOUS == 0),
        Func::Shmget
        | Func::Shmat
        | Func::Shmdt
        | Func::Shmctl
        | Func::Semget
        | Func::Semctl
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
    }
}

/// Size of the call record for `func` with these arguments and `stack_len` frames (known when
/// the call starts).
pub fn call_size(func: Func, args: &[u64; 6], stack_len: usize) -> usize {
    stack_at(func, args) + stack_len.min(STACK_MAX) * 8
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

/// What is known when the call starts (`rec` is `call_size` bytes, head already written).
/// An enter event also carries the operations it waits with, when they were read.
pub fn write_call_start(rec: &mut [u8], ev: &Event) {
    rec[FUNC] = ev.func as u8;
    let stack = ev.stack();
    rec[STACK_LEN] = stack.len() as u8;
    put(rec, PID, ev.pid.to_ne_bytes());
    put(rec, TID, ev.tid.to_ne_bytes());
    put(rec, TS, ev.ts_ns.to_ne_bytes());
    put(rec, CALLER, ev.caller.to_ne_bytes());
    for (i, arg) in ev.args.iter().enumerate() {
        put(rec, ARGS + 8 * i, arg.to_ne_bytes());
    }
    if !stack.is_empty() {
        let at = stack_at(ev.func, &ev.args);
        for (i, frame) in stack.iter().enumerate() {
            put(rec, at + 8 * i, frame.to_ne_bytes());
        }
    }
    if ev.phase == Phase::Enter {
        rec[FLAGS] = FLAG_STARTED;
        put_sops(rec, ev);
    }
}

/// What the call returned (the record's start already written).
pub fn write_call_end(rec: &mut [u8], ev: &Event) {
    let mut flags = rec[FLAGS] & FLAG_STARTED;
    if ev.created {
        flags |= FLAG_CREATED;
    }
    put(rec, ERRNO, ev.errno.to_ne_bytes());
    put(rec, DUR, ev.dur_ns.to_ne_bytes());
    put(rec, RET, ev.ret.to_ne_bytes());
    put_sops(rec, ev);
    if let (Func::Semtimedop, Some(t)) = (ev.func, ev.timeout) {
        flags |= FLAG_TIMEOUT;
        let at = timeout_at(ev.func, &ev.args);
        put(rec, at, t.sec.to_ne_bytes());
        put(rec, at + 8, t.nsec.to_ne_bytes());
    }
    if carries(ev.func, &ev.args).name {
        let name = ev.name();
        let at = name_at(ev.func, &ev.args);
        rec[at] = name.len() as u8;
        if let Some(dst) = rec.get_mut(at + 1..at + 1 + name.len()) {
            dst.copy_from_slice(name);
        }
    }
    rec[FLAGS] = flags;
}

fn put_sops(rec: &mut [u8], ev: &Event) {
    if !carries(ev.func, &ev.args).sops {
        return;
    }
    let sops = ev.sops();
    rec[SOPS_READ] = sops.len() as u8;
    let at = sops_at(ev.func);
    for (i, op) in sops.iter().enumerate() {
        let base = at + SOP_SIZE * i;
        put(rec, base, op.num.to_ne_bytes());
        put(rec, base + 2, op.op.to_ne_bytes());
        put(rec, base + 4, op.flg.to_ne_bytes());
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
    get_u32(rec, TAG) == TAG_CALL
        && get_u32(rec, SIZE) as usize == rec.len()
        && rec.get(FUNC) == Some(&(ev.func as u8))
        && get_u64(rec, TS) == ev.ts_ns
        && i32::from_ne_bytes(get(rec, TID)) == ev.tid
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

/// Whether `data` starts like a binary log.
pub fn is_binary_log(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The records of a binary log, in the order they were reserved (calls by start time).
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
    /// Records the writing process had not finished writing (killed meanwhile).
    pub unfinished: u64,
    /// True when the reading stopped at bytes that are no record (a damaged file).
    pub damaged: bool,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Result<Reader<'a>, NotALog> {
        if !is_binary_log(data) || data.len() < HEADER_SIZE {
            return Err(NotALog::Magic);
        }
        let used = get_u64(data, CURSOR_OFFSET) as usize;
        // Space reserved after the file stopped growing (a full disk) was never there.
        let end = HEADER_SIZE.saturating_add(used).min(data.len());
        Ok(Reader {
            data,
            pos: HEADER_SIZE,
            end,
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
                TAG_CALL => match read_call(rec, state) {
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
fn read_call(rec: &[u8], state: u32) -> Option<(Event, bool)> {
    let func = *Func::ALL.get(usize::from(rec[FUNC]))?;
    let stack_len = usize::from(rec[STACK_LEN]);
    let args: [u64; 6] = core::array::from_fn(|i| get_u64(rec, ARGS + 8 * i));
    if stack_len > STACK_MAX || rec.len() < call_size(func, &args, stack_len) {
        return None;
    }
    let done = state == STATE_DONE;
    let mut ev = Event::new(if done { Phase::Exit } else { Phase::Enter }, func);
    ev.pid = i32::from_ne_bytes(get(rec, PID));
    ev.tid = i32::from_ne_bytes(get(rec, TID));
    ev.ts_ns = get_u64(rec, TS);
    ev.caller = get_u64(rec, CALLER);
    ev.args = args;
    let at = stack_at(func, &args);
    let frames: [u64; STACK_MAX] = core::array::from_fn(|i| get_u64(rec, at + 8 * i));
    ev.stack = Stack::from_slice(&frames[..stack_len]);
    let flags = rec[FLAGS];
    let waited = flags & FLAG_STARTED != 0 && func.may_block();
    if carries(func, &args).sops {
        let n = usize::from(rec[SOPS_READ]).min(SOPS_KEPT);
        let at = sops_at(func);
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
    ev.errno = i32::from_ne_bytes(get(rec, ERRNO));
    ev.dur_ns = get_u64(rec, DUR);
    ev.ret = i64::from_ne_bytes(get(rec, RET));
    if flags & FLAG_TIMEOUT != 0 {
        let at = timeout_at(func, &args);
        ev.timeout = Some(Timeout {
            sec: i64::from_ne_bytes(get(rec, at)),
            nsec: i64::from_ne_bytes(get(rec, at + 8)),
        });
    }
    if carries(func, &args).name {
        let at = name_at(func, &args);
        let len = usize::from(rec[at]).min(NAME_KEPT);
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
            if carries(func, &ev.args).name {
                ev.name = Name::from_bytes(b"/shmtrace-\"name\"");
            }
            if carries(func, &ev.args).sops {
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
            failed.ret = -1;
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
    fn only_a_file_mapping_has_room_for_the_object_it_maps() {
        let mut anon = sample(Func::Mmap);
        anon.args[3] = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let mut file = anon;
        file.args[3] = libc::MAP_SHARED as u64;
        file.args[4] = 3;
        file.name = Name::from_bytes(b"memfd:ring");
        assert_eq!(call_size(Func::Mmap, &anon.args, 0), CALL_FIXED);
        assert_eq!(call_size(Func::Mmap, &file.args, 0), CALL_FIXED + NAME_SIZE);
        let mut log = Log::new();
        log.call(&anon, true);
        log.call(&file, true);
        assert_eq!(log.items(), vec![Item::Call(anon), Item::Call(file)]);
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

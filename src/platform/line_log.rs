//! A text or JSON log in a regular file, written through a shared mapping of the file: a
//! record is one copy into memory, with no system call (`write(2)` per record cost more than
//! formatting it).
//!
//! Why it stays plain text: a process claims the file in *chunks*. Under a POSIX lock on the
//! file (taken by every shim writing it, in any process), it appends padding with `write(2)`:
//! spaces, and a newline as the chunk's last byte. The file is already mapped whole (one large
//! reservation of address space, as for the binary log), so nothing new is mapped. Records are
//! then copied over the padding, each into a range of its own reserved with an atomic add, so
//! lines from threads and processes never interleave. Where no record is written yet, the file
//! reads as one blank line (spaces), never as NUL bytes. When the file still ends where the
//! current chunk ends, a claim makes that chunk longer, so a single writer leaves no rest
//! behind; at exit a process gives back (`ftruncate`) the unused rest of a chunk that ends the
//! file. What is left (a process killed, or one that shared the file with a later writer) is
//! one line of spaces, or two (a chunk claimed ahead and not used yet).
//!
//! Why threads rarely wait: the next chunk is claimed ahead, by the one thread whose record
//! reaches the last part of the current chunk, while the others go on writing (see
//! `claim_ahead`); when the current chunk is full, a writer switches to the next one with one
//! exchange. A writer that does find it full while a claim is under way sleeps (a futex) until
//! the claim ends, leaving the core to the claiming thread. Chunks start small (a short
//! process leaves a small rest if killed) and quadruple up to 1 MiB. The word every record
//! updates has a cache line of its own.
//!
//! Why it is durable: the pages of a shared file mapping belong to the file, so every record
//! copied before a `SIGKILL` is in the file. A record being copied at the instant of the kill
//! can be cut (followed by spaces, and possibly by another thread's record on the same line).
//!
//! Why it never faults: records are written only over padding the file already holds
//! (`write(2)` allocated it, so a full disk is an error there, not a `SIGBUS` here).
//!
//! Several processes share one file (a path without `%p`, or a program and the one it
//! `exec`s): each claims chunks of its own. A forked child drops its parent's chunk.

use core::ffi::c_int;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::cell::Cell;

use crate::platform::mapped_log;

/// The first chunk a process claims, and the largest: each claim quadruples the size, so a
/// busy process soon makes few claims (the fourth is of the largest size) and a short one
/// leaves a small rest.
const CHUNK_MIN: u64 = 4 << 10;
const CHUNK_MAX: u64 = 1 << 20;
const CHUNK_GROWTH: u64 = 4;

/// The file's mapping; null when records are written with `write(2)`.
static BASE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static REGION: AtomicUsize = AtomicUsize::new(0);
static FD: AtomicI32 = AtomicI32::new(-1);

/// A cache line of its own, for the word every record writes: what records only read (the
/// mapping, the chunks, and whatever else the linker places nearby) is then not invalidated
/// on the other cores by each record.
#[repr(align(64))]
struct OwnLine<T>(T);

/// The current chunk and how much of it is used: `generation << USED_BITS | used`. The
/// chunk of generation `g` is `CHUNKS[g % 4]`, published before `STATE` moves to `g`; a writer
/// that read a slot since reused finds `STATE` changed and tries again.
static STATE: OwnLine<AtomicU64> = OwnLine(AtomicU64::new(0));
const USED_BITS: u32 = 40;
const USED_MASK: u64 = (1 << USED_BITS) - 1;

struct Chunk {
    start: AtomicU64,
    size: AtomicU64,
    /// The byte whose record claims the next chunk ahead of need (see `claim_ahead`).
    ahead: AtomicU64,
}

static CHUNKS: [Chunk; 4] = [const {
    Chunk {
        start: AtomicU64::new(0),
        size: AtomicU64::new(0),
        ahead: AtomicU64::new(0),
    }
}; 4];
/// The generation of a chunk claimed ahead and not current yet (0: none), published in its
/// slot: when the current chunk of the generation before is full, a writer makes it current.
static READY: AtomicU64 = AtomicU64::new(0);
/// Held by the thread claiming a chunk or giving its rest back (`take_claim`, `end_claim`).
static CLAIMING: AtomicBool = AtomicBool::new(false);
/// Bumped when `CLAIMING` is let go: the futex writers that wait for a chunk sleep on, so that
/// the claiming thread has the core (threads may outnumber cores) rather than share it with
/// writers yielding in a loop. `SLEEPERS` counts them, so that no wake-up is asked for none.
static CLAIMED: AtomicU32 = AtomicU32::new(0);
static SLEEPERS: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// This thread holds `CLAIMING`: a record written meanwhile on it (a signal handler that
    /// interrupted the claim) cannot wait for the claim, and is written with `write(2)`.
    static CLAIMING_HERE: Cell<bool> = const { Cell::new(false) };
}
static NEXT_SIZE: AtomicU64 = AtomicU64::new(CHUNK_MIN);
/// Set once the process has given its rest back at exit: a record written after that (a
/// thread still running, a late destructor) is one `write(2)`, so that it leaves no padding.
static FINISHED: AtomicBool = AtomicBool::new(false);
/// Records still to be written with one plain `write(2)` each before the first chunk is
/// claimed, in a file of this process's own (`%p`): a forked worker writes a handful (its
/// fork record, a few calls, its exit report), for which a claim (a lock, the padding, a
/// page populated, and the rest given back at exit: ten system calls) cost more than the
/// records. A few only: a process that writes more pays these writes on top of the claim. Only without a chunk yet, and under `CLAIMING`, so that no claim of this
/// process runs meanwhile; no other process writes a file named by this one's pid (one that
/// `exec`s writes on after it, never beside it).
static DIRECT_LEFT: AtomicU32 = AtomicU32::new(0);
const DIRECT_RECORDS: u32 = 8;

pub fn active() -> bool {
    !BASE.load(Ordering::Relaxed).is_null()
}

/// The log's mapping as `(start, len)`, if one is open: the shim's own memory.
pub fn mapping() -> Option<(usize, usize)> {
    let base = BASE.load(Ordering::Acquire);
    (!base.is_null()).then(|| (base as usize, REGION.load(Ordering::Relaxed)))
}

/// Writes records to `fd` through a mapping, if it is a regular file opened for reading and
/// writing that can be mapped; otherwise they go on with `write(2)` on it. `own`: the file is
/// named for this process alone (see `DIRECT_LEFT`).
pub fn open(fd: c_int, own: bool) -> bool {
    let Some((base, region)) = mapped_log::map_region(fd) else {
        return false;
    };
    FD.store(fd, Ordering::Relaxed);
    REGION.store(region, Ordering::Relaxed);
    no_chunk();
    DIRECT_LEFT.store(if own { DIRECT_RECORDS } else { 0 }, Ordering::Relaxed);
    BASE.store(base, Ordering::Release);
    true
}

/// In a forked child (async-signal-safe: atomics only). The parent goes on with its chunk;
/// the child claims its own when it writes.
pub fn continue_in_child() {
    no_chunk();
    DIRECT_LEFT.store(0, Ordering::Relaxed);
}

/// In a forked child that opens a log of its own (async-signal-safe): drops the parent's
/// mapping (its descriptor is the caller's to close).
pub fn drop_in_child() {
    let base = BASE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !base.is_null() {
        // SAFETY: the parent's mapping, inherited; nothing in this process refers to it any
        // more (BASE was cleared, and the child has no other thread).
        unsafe { libc::syscall(libc::SYS_munmap, base, REGION.load(Ordering::Relaxed)) };
    }
    FD.store(-1, Ordering::Relaxed);
    no_chunk();
}

/// No current chunk, and none claimed ahead: the next record claims one. Only where no other
/// thread can claim (at open, in a forked child) or with `CLAIMING` held.
fn no_chunk() {
    let next = (STATE.0.load(Ordering::Relaxed) >> USED_BITS) + 1;
    let slot = &CHUNKS[(next % 4) as usize];
    slot.start.store(0, Ordering::Relaxed);
    slot.size.store(0, Ordering::Relaxed);
    slot.ahead.store(0, Ordering::Relaxed);
    READY.store(0, Ordering::Relaxed);
    STATE.0.store(next << USED_BITS, Ordering::Release);
    NEXT_SIZE.store(CHUNK_MIN, Ordering::Relaxed);
    FINISHED.store(false, Ordering::Relaxed);
    let _ = CLAIMING_HERE.try_with(|here| here.set(false));
    CLAIMING.store(false, Ordering::Release);
}

/// Appends one record (newline-terminated), whole: into the mapping, or with one `write(2)`
/// when the file cannot take another chunk (full disk, size limit, the reservation's end).
pub fn append(bytes: &[u8]) {
    let base = BASE.load(Ordering::Acquire);
    let len = bytes.len() as u64;
    if base.is_null() || len == 0 {
        return;
    }
    let mut busy = 0u32;
    loop {
        let state = STATE.0.load(Ordering::Acquire);
        let generation = state >> USED_BITS;
        let used = state & USED_MASK;
        let chunk = &CHUNKS[(generation % 4) as usize];
        let start = chunk.start.load(Ordering::Relaxed);
        let size = chunk.size.load(Ordering::Relaxed);
        if used + len <= size {
            let ahead = chunk.ahead.load(Ordering::Relaxed);
            if STATE
                .0
                .compare_exchange_weak(state, state + len, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: `[start + used, + len)` lies in a chunk this process claimed (padding
                // the file holds, inside the mapping), reserved for this record alone by the
                // exchange above.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        bytes.as_ptr(),
                        base.add((start + used) as usize),
                        bytes.len(),
                    )
                };
                // Exactly one record covers the mark: its thread claims the next chunk.
                if used <= ahead && ahead < used + len {
                    claim_ahead(generation);
                }
                return;
            }
            continue;
        }
        if READY.load(Ordering::Acquire) == generation + 1 {
            // The next chunk is there already: it becomes current (this one's rest, shorter
            // than the record, stays padding). Failing means another writer moved first.
            let _ = STATE.0.compare_exchange(
                state,
                (generation + 1) << USED_BITS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            continue;
        }
        if FINISHED.load(Ordering::Relaxed) {
            return write_locked(bytes);
        }
        if size == 0 && DIRECT_LEFT.load(Ordering::Relaxed) > 0 && write_direct(bytes) {
            return;
        }
        match claim(generation, len) {
            Claim::Done => continue,
            // A claim takes well under a millisecond; one that takes seconds (the file's
            // lock held by a stopped process) is not waited for longer.
            Claim::Busy if busy < BUSY_MAX => busy += 1,
            Claim::Busy | Claim::Failed => return write_locked(bytes),
        }
    }
}

/// One of the first records of a file of this process's own, with `write(2)` and no lock (see
/// `DIRECT_LEFT`); false when it must go into a chunk after all (none left, or a claim is
/// under way: the caller waits for it as for any claim).
#[cold]
fn write_direct(bytes: &[u8]) -> bool {
    if !take_claim() {
        return false;
    }
    // Under `CLAIMING`: still no chunk (a claim that ended meanwhile made one).
    let state = STATE.0.load(Ordering::Acquire);
    let direct = chunk_of(state >> USED_BITS).1 == 0
        && READY.load(Ordering::Relaxed) == 0
        && DIRECT_LEFT.load(Ordering::Relaxed) > 0;
    if direct {
        DIRECT_LEFT.fetch_sub(1, Ordering::Relaxed);
        crate::platform::sink::write_fd(FD.load(Ordering::Relaxed), bytes);
    }
    end_claim();
    direct
}

/// How often a writer finds another thread claiming (and waits up to a millisecond for it)
/// before it writes with `write(2)`.
const BUSY_MAX: u32 = 2_000;

enum Claim {
    /// A new chunk is current.
    Done,
    /// Another thread is claiming, or just did: look again.
    Busy,
    /// The file takes no more chunks: write with `write(2)`.
    Failed,
}

/// Claims the chunk after the current one, of generation `generation`, once the current
/// one's last part starts to fill: one thread pays for the system calls while the others go
/// on writing, so that writers rarely find a chunk full and wait. Nothing waits here: if
/// another thread is claiming, that one does it.
#[cold]
fn claim_ahead(generation: u64) {
    if !take_claim() {
        return;
    }
    if STATE.0.load(Ordering::Acquire) >> USED_BITS == generation
        && READY.load(Ordering::Relaxed) != generation + 1
        && !FINISHED.load(Ordering::Relaxed)
    {
        // A failure (full disk) is met again, and answered, when the chunk is full.
        add_chunk(generation, 0, true);
    }
    end_claim();
}

/// Makes a chunk with room for at least `need` bytes current, if the current chunk is still
/// that of `generation` and none was claimed ahead meanwhile.
#[cold]
fn claim(generation: u64, need: u64) -> Claim {
    if !take_claim() {
        // A claim that never ends is this very thread's, interrupted by a signal handler
        // that writes (`_exit` there): the record goes with write(2) (the file lock is this
        // process's own already).
        if CLAIMING_HERE.try_with(Cell::get).unwrap_or(false) {
            return Claim::Failed;
        }
        wait_for_claim();
        return Claim::Busy;
    }
    if STATE.0.load(Ordering::Acquire) >> USED_BITS != generation
        || READY.load(Ordering::Relaxed) == generation + 1
    {
        end_claim();
        return Claim::Busy;
    }
    let added = add_chunk(generation, need, false);
    end_claim();
    if added { Claim::Done } else { Claim::Failed }
}

/// Takes `CLAIMING` if it is free.
fn take_claim() -> bool {
    let taken = CLAIMING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_ok();
    if taken {
        let _ = CLAIMING_HERE.try_with(|here| here.set(true));
    }
    taken
}

/// Lets `CLAIMING` go and wakes the writers waiting for it.
fn end_claim() {
    let _ = CLAIMING_HERE.try_with(|here| here.set(false));
    CLAIMING.store(false, Ordering::SeqCst);
    CLAIMED.fetch_add(1, Ordering::SeqCst);
    // A writer counted itself before it sleeps, and sleeps only while `CLAIMED` is the value
    // it read before it saw `CLAIMING` held: either it is counted here, or it does not sleep.
    if SLEEPERS.load(Ordering::SeqCst) > 0 {
        // SAFETY: a futex wake on our own static word; it only wakes waiters.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                CLAIMED.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            )
        };
    }
}

/// Sleeps until the claim under way ends (or a millisecond passes: a bound, should a wake-up
/// be missed).
fn wait_for_claim() {
    let seen = CLAIMED.load(Ordering::SeqCst);
    if !CLAIMING.load(Ordering::SeqCst) {
        return;
    }
    SLEEPERS.fetch_add(1, Ordering::SeqCst);
    let timeout = libc::timespec {
        tv_sec: 0,
        tv_nsec: 1_000_000,
    };
    // SAFETY: a futex wait on our own static word, with a valid timeout; it returns at once
    // when the word is no longer `seen`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            CLAIMED.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            seen,
            &timeout as *const libc::timespec,
        )
    };
    SLEEPERS.fetch_sub(1, Ordering::SeqCst);
}

/// Appends at least `need` bytes of padding to the file, with `CLAIMING` held and the current
/// chunk that of `generation` with none claimed ahead. When the file still ends where the
/// current chunk ends, the padding makes that chunk longer, current at once (no rest left
/// behind, a record may span the old end; what other threads reserved stays used). Otherwise
/// it is a new chunk: current at once when the current one is full (`ahead` false), else
/// published for when it is (`READY`). False when the file takes no more.
fn add_chunk(generation: u64, need: u64, ahead: bool) -> bool {
    let current = &CHUNKS[(generation % 4) as usize];
    let (start, size) = (
        current.start.load(Ordering::Relaxed),
        current.size.load(Ordering::Relaxed),
    );
    let fd = FD.load(Ordering::Relaxed);
    let grow = NEXT_SIZE.load(Ordering::Relaxed).max(need);
    let claimed = with_file_locked(fd, |eof| {
        let end = eof.checked_add(grow)?;
        if end > REGION.load(Ordering::Relaxed) as u64 || end > mapped_log::file_size_limit() as u64
        {
            return None;
        }
        append_padding(fd, grow).then_some(eof)
    })
    .flatten();
    let Some(eof) = claimed else {
        return false;
    };
    let extends = size > 0 && eof == start + size;
    let next = generation + 1;
    let slot = &CHUNKS[(next % 4) as usize];
    let (next_start, next_size) = if extends {
        (start, size + grow)
    } else {
        (eof, grow)
    };
    slot.start.store(next_start, Ordering::Relaxed);
    slot.size.store(next_size, Ordering::Relaxed);
    // Half of what was added is left to fill when the next chunk is claimed: enough for the
    // claiming thread's system calls, even when it has to wait for a core; not all of it, so
    // that a process that writes little (one record before it execs) claims no more.
    slot.ahead.store(next_size - grow / 2, Ordering::Relaxed);
    NEXT_SIZE.store((grow * CHUNK_GROWTH).min(CHUNK_MAX), Ordering::Relaxed);
    if ahead && !extends {
        READY.store(next, Ordering::Release);
    } else {
        publish(next, extends);
    }
    // Only once writers may use the chunk: a writer waiting for it waits for fewer system
    // calls, and populating pages that records are written to changes nothing in them.
    prefault(eof, grow);
    true
}

/// Makes the chunk of `next` current. Other threads may still be reserving in the current
/// chunk: when `next` extends it, what they reserved stays used in the longer one. (Only a
/// claim, under `CLAIMING`, changes the generation while no chunk is ready.)
fn publish(next: u64, extends: bool) {
    let mut state = STATE.0.load(Ordering::Relaxed);
    loop {
        let used = if extends { state & USED_MASK } else { 0 };
        match STATE.0.compare_exchange_weak(
            state,
            next << USED_BITS | used,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => state = now,
        }
    }
}

/// At exit: the current chunk is closed, and its unused rest given back when it is the end of
/// the file (after a chunk claimed ahead and never used, given back too), so that a log that
/// ran to completion has no trailing blank line. A record written later (another thread still
/// running) is written with `write(2)`.
pub fn give_back_rest() {
    if !active() {
        return;
    }
    let mut busy = 0;
    while !take_claim() {
        if busy == BUSY_MAX || CLAIMING_HERE.try_with(Cell::get).unwrap_or(false) {
            // Interrupted in a claim of its own (see `claim`): the rest stays as padding.
            return;
        }
        busy += 1;
        wait_for_claim();
    }
    FINISHED.store(true, Ordering::Relaxed);
    // Writers may still reserve, or make the chunk claimed ahead current: the current chunk
    // is the one the exchange below closes.
    let (chunk, ready, used) = loop {
        let state = STATE.0.load(Ordering::Acquire);
        let generation = state >> USED_BITS;
        let chunk = chunk_of(generation);
        let ready =
            (READY.load(Ordering::Acquire) == generation + 1).then(|| chunk_of(generation + 1));
        // Two on, past the one claimed ahead: no writer reserves in an empty chunk, nor
        // makes another current.
        let closed = generation + 2;
        let slot = &CHUNKS[(closed % 4) as usize];
        slot.start.store(0, Ordering::Relaxed);
        slot.size.store(0, Ordering::Relaxed);
        slot.ahead.store(0, Ordering::Relaxed);
        if STATE
            .0
            .compare_exchange(
                state,
                closed << USED_BITS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            break (chunk, ready, state & USED_MASK);
        }
    };
    let (start, size) = chunk;
    if size == 0 && ready.is_none() {
        // No chunk was ever claimed (only records written directly): nothing to give back.
        end_claim();
        return;
    }
    let fd = FD.load(Ordering::Relaxed);
    with_file_locked(fd, |mut eof| {
        if let Some((ready_start, ready_size)) = ready
            && eof == ready_start + ready_size
        {
            // SAFETY: our descriptor; only padding no record was written in goes.
            unsafe { libc::ftruncate(fd, ready_start as libc::off_t) };
            eof = ready_start;
        }
        if used < size && eof == start + size {
            // SAFETY: our descriptor; only the padding after the last record goes.
            unsafe { libc::ftruncate(fd, (start + used) as libc::off_t) };
        }
    });
    end_claim();
}

/// The chunk of `generation` as `(start, size)`.
fn chunk_of(generation: u64) -> (u64, u64) {
    let chunk = &CHUNKS[(generation % 4) as usize];
    (
        chunk.start.load(Ordering::Relaxed),
        chunk.size.load(Ordering::Relaxed),
    )
}

/// A record written with `write(2)`, under the lock, so that no other process's claim takes
/// the file's end for its chunk meanwhile.
#[cold]
fn write_locked(bytes: &[u8]) {
    let fd = FD.load(Ordering::Relaxed);
    if with_file_locked(fd, |_| crate::platform::sink::write_fd(fd, bytes)).is_none() {
        crate::platform::sink::write_fd(fd, bytes);
    }
}

/// Runs `f` with the file's end, holding a write lock on the whole file; `None` when the lock
/// or the size cannot be had. POSIX locks belong to the process: a forked child never holds
/// its parent's, and a killed process's lock is released by the kernel.
fn with_file_locked<T>(fd: c_int, f: impl FnOnce(u64) -> T) -> Option<T> {
    if !lock(fd, libc::F_WRLCK) {
        return None;
    }
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable; a bad descriptor is an error return.
    let result = (unsafe { libc::fstat(fd, &mut st) } == 0).then(|| f(st.st_size as u64));
    lock(fd, libc::F_UNLCK);
    result
}

fn lock(fd: c_int, kind: c_int) -> bool {
    // SAFETY: an all-zero `flock` is a valid value; the fields that matter are set below.
    let mut range: libc::flock = unsafe { core::mem::zeroed() };
    range.l_type = kind as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    // Start 0, length 0: the whole file, however long it grows.
    loop {
        // SAFETY: `range` is a valid `flock`; a bad descriptor is an error return.
        if unsafe { libc::fcntl(fd, libc::F_SETLKW, &range) } == 0 {
            return true;
        }
        if crate::platform::errno::get() != libc::EINTR {
            return false;
        }
    }
}

/// Appends `size` bytes of padding, spaces then one newline (the descriptor is `O_APPEND`):
/// where no record is written, the file reads as one blank line. Whether all was written.
fn append_padding(fd: c_int, size: u64) -> bool {
    static SPACES: [u8; 4096] = [b' '; 4096];
    const PER_CALL: usize = 64;
    let mut left = size as usize;
    while left > 0 {
        let mut iov = [libc::iovec {
            iov_base: SPACES.as_ptr() as *mut libc::c_void,
            iov_len: 0,
        }; PER_CALL + 1];
        let mut n = 0;
        let mut total = 0;
        while n < PER_CALL && total < left - 1 {
            iov[n].iov_len = (left - 1 - total).min(SPACES.len());
            total += iov[n].iov_len;
            n += 1;
        }
        if total == left - 1 {
            iov[n].iov_base = c"\n".as_ptr() as *mut libc::c_void;
            iov[n].iov_len = 1;
            n += 1;
        }
        // SAFETY: `iov[..n]` point into static bytes, readable; the kernel only reads them.
        let w = unsafe { libc::writev(fd, iov.as_ptr(), n as c_int) };
        if w < 0 {
            if crate::platform::errno::get() == libc::EINTR {
                continue;
            }
            return false;
        }
        if w == 0 {
            return false;
        }
        left -= w as usize;
    }
    true
}

/// Maps the new chunk's pages writable in one system call rather than one fault per page as
/// records reach them (Linux 5.14+; older kernels refuse, and faults happen as before).
fn prefault(start: u64, size: u64) {
    const MADV_POPULATE_WRITE: c_int = 23;
    let base = BASE.load(Ordering::Relaxed);
    let from = start & !4095;
    // SAFETY: `[from, start + size)` is file space inside our mapping (the chunk, and the part
    // of its first page before it, which the file holds too); populating writes nothing.
    unsafe {
        libc::madvise(
            base.add(from as usize).cast(),
            (start + size - from) as usize,
            MADV_POPULATE_WRITE,
        )
    };
}

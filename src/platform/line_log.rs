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
//! one line of spaces.
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
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::platform::mapped_log;

/// The first chunk a process claims, and the largest: each claim doubles the size, so a busy
/// process makes few claims and a short one leaves a small rest.
const CHUNK_MIN: u64 = 4 << 10;
const CHUNK_MAX: u64 = 1 << 20;

/// The file's mapping; null when records are written with `write(2)`.
static BASE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static REGION: AtomicUsize = AtomicUsize::new(0);
static FD: AtomicI32 = AtomicI32::new(-1);

/// The current chunk and how much of it is used: `generation << USED_BITS | used`. The
/// chunk of generation `g` is `CHUNKS[g % 4]`, published before `STATE` moves to `g`; a writer
/// that read a slot since reused finds `STATE` changed and tries again.
static STATE: AtomicU64 = AtomicU64::new(0);
const USED_BITS: u32 = 40;
const USED_MASK: u64 = (1 << USED_BITS) - 1;

struct Chunk {
    start: AtomicU64,
    size: AtomicU64,
}

static CHUNKS: [Chunk; 4] = [const {
    Chunk {
        start: AtomicU64::new(0),
        size: AtomicU64::new(0),
    }
}; 4];
/// Held by the thread claiming a chunk or giving its rest back.
static CLAIMING: AtomicBool = AtomicBool::new(false);
static NEXT_SIZE: AtomicU64 = AtomicU64::new(CHUNK_MIN);
/// Set once the process has given its rest back at exit: a record written after that (a
/// thread still running, a late destructor) is one `write(2)`, so that it leaves no padding.
static FINISHED: AtomicBool = AtomicBool::new(false);

pub fn active() -> bool {
    !BASE.load(Ordering::Relaxed).is_null()
}

/// The log's mapping as `(start, len)`, if one is open: the shim's own memory.
pub fn mapping() -> Option<(usize, usize)> {
    let base = BASE.load(Ordering::Acquire);
    (!base.is_null()).then(|| (base as usize, REGION.load(Ordering::Relaxed)))
}

/// Writes records to `fd` through a mapping, if it is a regular file opened for reading and
/// writing that can be mapped; otherwise they go on with `write(2)` on it.
pub fn open(fd: c_int) -> bool {
    let Some((base, region)) = mapped_log::map_region(fd) else {
        return false;
    };
    FD.store(fd, Ordering::Relaxed);
    REGION.store(region, Ordering::Relaxed);
    no_chunk();
    BASE.store(base, Ordering::Release);
    true
}

/// In a forked child (async-signal-safe: atomics only). The parent goes on with its chunk;
/// the child claims its own when it writes.
pub fn continue_in_child() {
    no_chunk();
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

/// No current chunk: the next record claims one. Only where no other thread can claim (at
/// open, in a forked child) or with `CLAIMING` held.
fn no_chunk() {
    let next = (STATE.load(Ordering::Relaxed) >> USED_BITS) + 1;
    let slot = &CHUNKS[(next % 4) as usize];
    slot.start.store(0, Ordering::Relaxed);
    slot.size.store(0, Ordering::Relaxed);
    STATE.store(next << USED_BITS, Ordering::Release);
    NEXT_SIZE.store(CHUNK_MIN, Ordering::Relaxed);
    FINISHED.store(false, Ordering::Relaxed);
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
        let state = STATE.load(Ordering::Acquire);
        let generation = state >> USED_BITS;
        let used = state & USED_MASK;
        let chunk = &CHUNKS[(generation % 4) as usize];
        let start = chunk.start.load(Ordering::Relaxed);
        let size = chunk.size.load(Ordering::Relaxed);
        if used + len <= size {
            if STATE
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
                return;
            }
            continue;
        }
        if FINISHED.load(Ordering::Relaxed) {
            return write_locked(bytes);
        }
        match claim(generation, len) {
            Claim::Done => continue,
            // A claim takes well under a millisecond. One that never ends is this very
            // thread's, interrupted by a signal handler that writes (`_exit` there): the
            // record goes with write(2) (the file lock is this process's own already).
            Claim::Busy if busy < BUSY_MAX => busy += 1,
            Claim::Busy | Claim::Failed => return write_locked(bytes),
        }
    }
}

/// How often a writer finds another thread claiming before it writes with `write(2)`.
const BUSY_MAX: u32 = 100_000;

enum Claim {
    /// A new chunk is current.
    Done,
    /// Another thread is claiming, or just did: look again.
    Busy,
    /// The file takes no more chunks: write with `write(2)`.
    Failed,
}

/// Appends at least `need` bytes of padding to the file and makes them current, if the
/// current chunk is still that of `generation`: as a longer current chunk when the file still
/// ends where it ends (no rest left behind, the record may span the old end), else as a new
/// chunk.
#[cold]
fn claim(generation: u64, need: u64) -> Claim {
    if CLAIMING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // The claiming thread may be descheduled (few cores, many threads): let it run.
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
        return Claim::Busy;
    }
    if STATE.load(Ordering::Acquire) >> USED_BITS != generation {
        CLAIMING.store(false, Ordering::Release);
        return Claim::Busy;
    }
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
        CLAIMING.store(false, Ordering::Release);
        return Claim::Failed;
    };
    prefault(eof, grow);
    let extends = size > 0 && eof == start + size;
    let next = generation + 1;
    let slot = &CHUNKS[(next % 4) as usize];
    if extends {
        slot.start.store(start, Ordering::Relaxed);
        slot.size.store(size + grow, Ordering::Relaxed);
    } else {
        slot.start.store(eof, Ordering::Relaxed);
        slot.size.store(grow, Ordering::Relaxed);
    }
    // Other threads may still be reserving in the current chunk: what they reserved stays
    // used in the longer one.
    let mut state = STATE.load(Ordering::Relaxed);
    loop {
        let used = if extends { state & USED_MASK } else { 0 };
        match STATE.compare_exchange_weak(
            state,
            next << USED_BITS | used,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => state = now,
        }
    }
    NEXT_SIZE.store((grow * 2).min(CHUNK_MAX), Ordering::Relaxed);
    CLAIMING.store(false, Ordering::Release);
    Claim::Done
}

/// At exit: the current chunk is closed, and its unused rest given back when it is the end of
/// the file, so that a log that ran to completion has no trailing blank line. A record
/// written later (another thread still running) is written with `write(2)`.
pub fn give_back_rest() {
    if !active() {
        return;
    }
    let mut busy = 0;
    while CLAIMING
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        if busy == BUSY_MAX {
            // Interrupted in a claim of its own (see `append`): the rest stays as padding.
            return;
        }
        busy += 1;
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    let generation = STATE.load(Ordering::Relaxed) >> USED_BITS;
    let chunk = &CHUNKS[(generation % 4) as usize];
    let (start, size) = (
        chunk.start.load(Ordering::Relaxed),
        chunk.size.load(Ordering::Relaxed),
    );
    let next = generation + 1;
    let slot = &CHUNKS[(next % 4) as usize];
    slot.start.store(0, Ordering::Relaxed);
    slot.size.store(0, Ordering::Relaxed);
    // From here no record is reserved in the old chunk: those reserved are below `used`.
    FINISHED.store(true, Ordering::Relaxed);
    let used = STATE.swap(next << USED_BITS, Ordering::AcqRel) & USED_MASK;
    if used < size {
        let fd = FD.load(Ordering::Relaxed);
        with_file_locked(fd, |eof| {
            if eof == start + size {
                // SAFETY: our descriptor; only the padding after the last record goes.
                unsafe { libc::ftruncate(fd, (start + used) as libc::off_t) };
            }
        });
    }
    CLAIMING.store(false, Ordering::Release);
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

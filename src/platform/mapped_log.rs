//! The binary log (`SHMTRACE_FORMAT=binary`): a file mapped `MAP_SHARED`, into which each
//! call's record is written in place, with no system call.
//!
//! Why it is durable: the pages of a shared file mapping belong to the file, not to the
//! process, so everything stored before a `SIGKILL` is in the file. A call's record is
//! reserved and written when the call starts (state "started") and completed in place when it
//! returns (state "done", stored last with release ordering), so after a kill every call that
//! returned is there and a call in progress reads as started.
//!
//! Why it never faults: the file only grows by space reserved with `fallocate` *before* any
//! record is written there, so a full disk is an error code at a chunk boundary (one warning,
//! recording stops) rather than a `SIGBUS` in the middle of the program. The mapping itself is
//! one large reservation of address space made once, so growing never moves it. The file is
//! grown ahead, by one thread, while its last quarter fills, so writers wait only when they
//! reach the end of the file before that growth is done.
//!
//! Several processes may share one file (a path without `%p`): the cursor lives in the
//! mapped header and is advanced with an atomic add, which works across processes too, and
//! `fallocate` of an already allocated range is harmless. See `trace::binary` for the layout.

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    compiler_fence,
};

use crate::platform::{clock, config, errno, process};
use shmtrace_core::trace::binary::{self, HEADER_SIZE};
use shmtrace_core::trace::binary_v4::{self, Fields, Writer};
use shmtrace_core::trace::event::{Event, Func, Phase, SemOp, Timeout};

/// Address space reserved for the log, tried in this order (under an `RLIMIT_AS`, only sizes
/// up to a sixteenth of it). Records stop, with one warning, when a file reaches it.
const REGION_SIZES: [usize; 3] = [16 << 30, 1 << 30, 64 << 20];
/// The file grows by at least this much, and by at most `GROW_MAX`: by its own size between
/// the two, so a long run makes few `fallocate` calls and a short one leaves a small file.
/// Every page of the file costs the kernel a fault, zeroing and a write-back, paid when the
/// file grows (see `prefault`): a smaller largest step keeps the call that grows it short and
/// leaves less faulted in for nothing at exit.
const GROW_MIN: usize = 64 << 10;
const GROW_MAX: usize = 4 << 20;
/// A new file's size: its header and the first records of a short-lived process (a forked
/// worker's whole log: its fork record, a few calls, its exit report). Its first store faults
/// the file's pages into the page cache by readahead, as many as the file holds: a larger file
/// cost such a process a page allocated and zeroed for each page it never wrote.
const START_SIZE: usize = 8 << 10;

/// The mapping; null when no binary log is open.
static BASE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static REGION: AtomicUsize = AtomicUsize::new(0);
static FD: AtomicI32 = AtomicI32::new(-1);
/// The file's identity (device, inode), checked before growing: a program that closes
/// descriptors it does not own may have closed ours, and the number may now be another file.
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);
/// Bytes of the file known to be allocated (records may be written below this).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
/// Set when the file cannot grow: no record is reserved any more.
static STOPPED: AtomicBool = AtomicBool::new(false);
/// The size from which growing ahead failed (a full disk): not retried ahead from there.
static AHEAD_FAILED_AT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Held by the thread growing the file.
static GROWING: AtomicBool = AtomicBool::new(false);

/// `Chunk::current` for a call whose start could not be stored (the log is full).
const NOT_STORED: usize = usize::MAX;

#[inline]
pub fn active() -> bool {
    !BASE.load(Ordering::Relaxed).is_null()
}

/// The log's mapping as `(start, len)`, if one is open: the shim's own memory.
pub fn mapping() -> Option<(usize, usize)> {
    let base = BASE.load(Ordering::Acquire);
    (!base.is_null()).then(|| (base as usize, REGION.load(Ordering::Relaxed)))
}

/// Opens (or continues: after an `exec`, or when another process writes the same file) the
/// binary log at `path` (NUL-terminated). On failure returns the errno and changes nothing.
pub fn open(path: &[u8]) -> Result<(), i32> {
    let OpenedLog {
        fd,
        base,
        region,
        allocated,
        identity: (dev, ino),
    } = map_file(path)?;
    DEV.store(dev, Ordering::Relaxed);
    INO.store(ino, Ordering::Relaxed);
    FD.store(fd, Ordering::Relaxed);
    REGION.store(region, Ordering::Relaxed);
    ALLOCATED.store(allocated, Ordering::Relaxed);
    STOPPED.store(false, Ordering::Relaxed);
    GROWING.store(false, Ordering::Relaxed);
    AHEAD_FAILED_AT.store(usize::MAX, Ordering::Relaxed);
    choose_clock(base);
    OPENED.fetch_add(1, Ordering::Relaxed);
    BASE.store(base, Ordering::Release);
    Ok(())
}

/// In a forked child with a per-pid log (async-signal-safe: system calls only): drops the
/// parent's file and opens its own at `path`; on failure the child records nothing.
pub fn reopen_in_child(path: Option<&[u8]>) {
    let old_base = BASE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    let old_region = REGION.load(Ordering::Relaxed);
    let old_fd = FD.swap(-1, Ordering::Relaxed);
    // The parent's other threads may have been growing it: they do not exist here.
    GROWING.store(false, Ordering::Relaxed);
    if !old_base.is_null() {
        // SAFETY: the parent's mapping, inherited; nothing in this process refers to it any
        // more (BASE was cleared, and the child has no other thread).
        unsafe { libc::syscall(libc::SYS_munmap, old_base, old_region) };
    }
    if old_fd >= 0 {
        // SAFETY: the parent's log descriptor, inherited and owned by the shim.
        unsafe { libc::close(old_fd) };
    }
    OPENED.fetch_add(1, Ordering::Relaxed);
    if let Some(path) = path {
        let _ = open(path);
    }
}

/// In a forked child sharing its parent's log: only the grow lock, which a parent thread may
/// have held at the fork, needs resetting.
pub fn continue_in_child() {
    GROWING.store(false, Ordering::Relaxed);
    // The forking thread's chunk is its parent's: the child takes its own.
    OPENED.fetch_add(1, Ordering::Relaxed);
}

/// A log file opened and mapped.
struct OpenedLog {
    fd: c_int,
    base: *mut u8,
    region: usize,
    /// Bytes of the file allocated.
    allocated: usize,
    /// (device, inode), from the `fstat` that checked the file.
    identity: (u64, u64),
}

fn map_file(path: &[u8]) -> Result<OpenedLog, i32> {
    let flags =
        libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    // SAFETY: `path` is NUL-terminated (the caller's contract); mode 0600 because a log may
    // reveal a program's keys, ids and addresses.
    let fd = unsafe { libc::open(path.as_ptr().cast(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(errno::get());
    }
    let fail = |e: i32| {
        // SAFETY: `fd` was opened above and is not published.
        unsafe { libc::close(fd) };
        Err(e)
    };
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return fail(errno::get());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        // A FIFO or device cannot be mapped as a growing file.
        return fail(libc::EINVAL);
    }
    let size = usize::try_from(st.st_size).unwrap_or(0);
    if !starts_like_a_log(fd, size) {
        // A text log from an earlier run, say: not to be touched.
        return fail(libc::EILSEQ);
    }
    let mut allocated = size;
    if size < START_SIZE {
        if let Err(e) = allocate(fd, size, START_SIZE) {
            return fail(e);
        }
        allocated = START_SIZE;
    }
    let Some((base, region)) = map_region(fd) else {
        return fail(libc::ENOMEM);
    };
    // SAFETY: the header lies in the first page, which is allocated in the file.
    let magic = unsafe { &*base.cast::<AtomicU64>() };
    let ours = u64::from_ne_bytes(binary::MAGIC);
    // The first process to map a new file stamps it; a file that is not a binary log (a text
    // log from an earlier run, say) is left alone.
    let stamped = magic.compare_exchange(0, ours, Ordering::AcqRel, Ordering::Acquire);
    if stamped.is_err() && stamped != Err(ours) {
        // SAFETY: the region mapped above, not published.
        unsafe { libc::syscall(libc::SYS_munmap, base, region) };
        return fail(libc::EILSEQ);
    }
    Ok(OpenedLog {
        fd,
        base,
        region,
        allocated: allocated.min(region),
        identity: (st.st_dev, st.st_ino),
    })
}

/// Whether the file is empty, or starts with the magic (or with zeros: being created by
/// another process right now).
fn starts_like_a_log(fd: c_int, size: usize) -> bool {
    if size == 0 {
        // A new file (each forked child's, with `%p`): nothing to read.
        return true;
    }
    let mut head = [0u8; 8];
    let want = size.min(head.len());
    // SAFETY: `head` is writable for `want` <= 8 bytes.
    let got = unsafe { libc::pread(fd, head.as_mut_ptr().cast(), want, 0) };
    if got != want as isize {
        return false;
    }
    head[..want] == binary::MAGIC[..want] || head[..want].iter().all(|&b| b == 0)
}

pub(super) fn map_region(fd: c_int) -> Option<(*mut u8, usize)> {
    // Under an address-space limit, the log takes at most a sixteenth of it: the program's
    // own mappings come first.
    let mut limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is writable.
    let room = if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY
    {
        usize::try_from(limit.rlim_cur / 16).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    };
    let last = REGION_SIZES[REGION_SIZES.len() - 1];
    for region in REGION_SIZES.into_iter().filter(|&r| r <= room.max(last)) {
        // SAFETY: a new shared mapping of `fd`; pages beyond the end of the file are never
        // touched (records are written only below `ALLOCATED`). The raw system call, because
        // this library's own `mmap` is the hook.
        let addr = unsafe {
            libc::syscall(
                libc::SYS_mmap,
                0usize,
                region,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd,
                0usize,
            )
        };
        if addr != -1 {
            return Some((addr as *mut u8, region));
        }
    }
    None
}

/// Makes `[from, to)` of the file real disk space (zeros), so a store there never faults.
fn allocate(fd: c_int, from: usize, to: usize) -> Result<(), i32> {
    loop {
        // SAFETY: fallocate on our own descriptor; mode 0 also extends the file size.
        let rc = unsafe { libc::fallocate(fd, 0, from as libc::off_t, (to - from) as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        match errno::get() {
            libc::EINTR => continue,
            libc::EOPNOTSUPP => return fill_with_zeros(fd, to),
            e => return Err(e),
        }
    }
}

/// For file systems without `fallocate`: writes zeros from the end of the file to `to`, which
/// allocates the blocks just as well (only beyond the end: never over records).
fn fill_with_zeros(fd: c_int, to: usize) -> Result<(), i32> {
    static ZEROS: [u8; 4096] = [0; 4096];
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(errno::get());
    }
    let mut at = usize::try_from(st.st_size).unwrap_or(0);
    while at < to {
        let n = (to - at).min(ZEROS.len());
        // SAFETY: `ZEROS` is readable for `n` bytes.
        let w = unsafe { libc::pwrite(fd, ZEROS.as_ptr().cast(), n, at as libc::off_t) };
        if w < 0 {
            match errno::get() {
                libc::EINTR => continue,
                e => return Err(e),
            }
        }
        at += w as usize;
    }
    Ok(())
}

/// Reserves `size` bytes for a record; its offset, or `None` when the log is full.
fn reserve(base: *mut u8, size: usize) -> Option<usize> {
    if STOPPED.load(Ordering::Relaxed) {
        count_lost(base);
        return None;
    }
    // SAFETY: the header lies in the first page, always allocated; the cursor is only ever
    // accessed atomically (by every process mapping the file).
    let cursor = unsafe { &*base.add(binary::CURSOR_OFFSET).cast::<AtomicU64>() };
    let at = HEADER_SIZE + cursor.fetch_add(size as u64, Ordering::Relaxed) as usize;
    let end = at + size;
    let allocated = ALLOCATED.load(Ordering::Acquire);
    if end > allocated {
        if !grow_to(end) {
            count_lost(base);
            return None;
        }
    } else if allocated - end < allocated / 4 {
        grow_ahead(allocated);
    }
    Some(at)
}

/// Grows the file before it is needed, when its last quarter is being filled, so that other
/// threads rarely wait at a chunk boundary: one thread pays for the growth, the others go on
/// writing meanwhile (and skip this if a thread is already growing it).
#[cold]
fn grow_ahead(allocated: usize) {
    if STOPPED.load(Ordering::Relaxed)
        || AHEAD_FAILED_AT.load(Ordering::Relaxed) == allocated
        || GROWING
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    if ALLOCATED.load(Ordering::Acquire) == allocated && allocated < REGION.load(Ordering::Relaxed)
    {
        grow(allocated, allocated + 1, true);
    }
    GROWING.store(false, Ordering::Release);
}

fn count_lost(base: *mut u8) {
    // SAFETY: as for the cursor in `reserve`.
    let lost = unsafe { &*base.add(binary::LOST_OFFSET).cast::<AtomicU64>() };
    lost.fetch_add(1, Ordering::Relaxed);
}

/// Waits until the file is allocated up to `end`, growing it if no other thread is; false
/// when it cannot grow (recording has then stopped, with one warning).
#[cold]
fn grow_to(end: usize) -> bool {
    let mut spins = 0u32;
    loop {
        let allocated = ALLOCATED.load(Ordering::Acquire);
        if end <= allocated {
            return true;
        }
        if STOPPED.load(Ordering::Relaxed) {
            return false;
        }
        if GROWING
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let allocated = ALLOCATED.load(Ordering::Acquire);
            if end > allocated {
                grow(allocated, end, false);
            }
            GROWING.store(false, Ordering::Release);
            continue;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) {
            // The growing thread may be descheduled (few cores, many threads): let it run.
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Grows the file from `allocated` to hold at least `end`. Ahead of need, a failure only means
/// that this size is not retried ahead: the records that still fit are written first, and the
/// warning comes when one does not.
fn grow(allocated: usize, end: usize, ahead: bool) {
    let region = REGION.load(Ordering::Relaxed);
    if end > region {
        stop(format_args!(
            "the binary log reached its {} MiB limit",
            region >> 20
        ));
        return;
    }
    let step = allocated.clamp(GROW_MIN, GROW_MAX);
    let target = (allocated + step)
        .max(end)
        .next_multiple_of(GROW_MIN)
        .min(region);
    let fd = FD.load(Ordering::Relaxed);
    if identity(fd) != Some((DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed))) {
        stop(format_args!(
            "the binary log's descriptor was closed or replaced by the program"
        ));
        return;
    }
    // Beyond RLIMIT_FSIZE, fallocate raises SIGXFSZ, which kills by default.
    if target > file_size_limit() {
        if ahead {
            AHEAD_FAILED_AT.store(allocated, Ordering::Relaxed);
            return;
        }
        stop(format_args!(
            "the binary log reached the file size limit (RLIMIT_FSIZE)"
        ));
        return;
    }
    match allocate(fd, allocated, target) {
        Ok(()) => {
            prefault(allocated, target);
            ALLOCATED.store(target, Ordering::Release)
        }
        Err(_) if ahead => AHEAD_FAILED_AT.store(allocated, Ordering::Relaxed),
        Err(e) => stop(format_args!(
            "cannot grow the binary log ({})",
            shmtrace_core::trace::errnos::message(e).unwrap_or("unknown error")
        )),
    }
}

/// Maps the new chunk's pages in one system call rather than one page fault per page as
/// records reach them (Linux 5.14+; older kernels refuse, and faults happen as before).
fn prefault(from: usize, to: usize) {
    const MADV_POPULATE_WRITE: c_int = 23;
    let base = BASE.load(Ordering::Relaxed);
    if base.is_null() {
        return;
    }
    // SAFETY: `[from, to)` is allocated file space inside our mapping; populating writes
    // nothing, it only maps the pages.
    unsafe { libc::madvise(base.add(from).cast(), to - from, MADV_POPULATE_WRITE) };
}

fn identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is writable; a bad descriptor is an error return.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

pub(super) fn file_size_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is writable.
    if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return usize::MAX;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Stops recording, with one warning per process. The program goes on unaffected.
fn stop(why: core::fmt::Arguments<'_>) {
    if !STOPPED.swap(true, Ordering::AcqRel) {
        config::warn_line(format_args!(
            "{why}; recording stops here (the log keeps every record written so far)"
        ));
    }
}

/// `size` bytes of the log at `at`.
///
/// # Safety
/// `[at, at + size)` was reserved by `reserve` for the calling thread alone and lies below
/// `ALLOCATED`.
unsafe fn bytes<'a>(base: *mut u8, at: usize, size: usize) -> &'a mut [u8] {
    // SAFETY: the caller's contract: allocated file space no one else writes.
    unsafe { core::slice::from_raw_parts_mut(base.add(at), size) }
}

/// What a record's end goes after: the bytes of the thread's chunk before `to` (for the names
/// it may refer to), and where the end lies in the chunk.
///
/// # Safety
/// `chunk.start <= to <= at`, all in this thread's chunk; nothing writes below `to` while
/// the slice lives.
unsafe fn before<'a>(base: *mut u8, chunk: &Chunk, to: usize, at: usize) -> binary_v4::Chunk<'a> {
    // SAFETY: the caller's contract: written bytes of this thread's chunk, not written again.
    let before = unsafe { core::slice::from_raw_parts(base.add(chunk.start), to - chunk.start) };
    binary_v4::Chunk {
        before,
        at: at - chunk.start,
    }
}

/// Stores a record's head byte, last, with release ordering: whoever reads it sees the fields
/// stored before it (and a kill before it leaves the record without a head).
fn set_head(base: *mut u8, at: usize, head: u8) {
    compiler_fence(Ordering::SeqCst);
    // SAFETY: `at` is inside this thread's chunk (allocated, mapped); a byte is always aligned.
    let byte = unsafe { AtomicU8::from_ptr(base.add(at)) };
    byte.store(head, Ordering::Release);
}

/// The chunk of the file this thread appends its call records to (see `trace::binary_v4`).
#[derive(Clone, Copy)]
struct Chunk {
    /// `OPENED` when the chunk was taken: a chunk of an earlier log (before a fork that opened
    /// the child's own) is never written again.
    opened: u32,
    pid: i32,
    /// Its records count TSC ticks (else nanoseconds).
    tsc: bool,
    /// Its start, next byte to write, its end (offsets in the file; `pos == end == 0`:
    /// none).
    start: usize,
    pos: usize,
    end: usize,
    /// Size of the thread's next chunk: small for a thread that makes few calls, larger for a
    /// busy one.
    next_size: usize,
    /// Ticks at the last calibration of the chunk's clock.
    calibrated: u64,
    regs: binary_v4::Registers,
    /// The record of the call in progress (0: none, `NOT_STORED`: not stored), and the length
    /// of its start.
    current: usize,
    current_len: usize,
}

const NO_CHUNK: Chunk = Chunk {
    opened: 0,
    pid: 0,
    tsc: false,
    start: 0,
    pos: 0,
    end: 0,
    next_size: CHUNK_MIN,
    calibrated: 0,
    regs: binary_v4::Registers::new(0),
    current: 0,
    current_len: 0,
};

/// A thread's first chunk, and the largest: a thread that makes one call takes little of the
/// file, a busy one reserves (one atomic add) rarely.
const CHUNK_MIN: usize = 512;
const CHUNK_MAX: usize = 16 << 10;

/// Bumped whenever a log is opened: chunks taken before belong to another log (or process).
static OPENED: AtomicU32 = AtomicU32::new(1);

thread_local! {
    // Const and without Drop, so no TLS destructor is registered.
    static CHUNK: UnsafeCell<Chunk> = const { UnsafeCell::new(NO_CHUNK) };
}

/// Runs `f` on this thread's chunk (not once the thread's TLS is gone).
#[inline(always)]
fn with_chunk(f: impl FnOnce(&mut Chunk)) {
    let _ = CHUNK.try_with(|cell| {
        // SAFETY: a thread's `CHUNK` is reached only by that thread, from inside a traced call
        // (the re-entrancy guard is held, so a signal handler's calls are forwarded untraced
        // and never get here meanwhile): no other reference to it is live.
        f(unsafe { &mut *cell.get() });
    });
}

/// Decides the log's clock: TSC ticks where usable, at the rate the log's first process
/// measured (kept in the header) or this process's, else nanoseconds until the rate is
/// measured (`clock::advance`, as chunks are taken).
fn choose_clock(base: *mut u8) {
    let known = header_hz(base).load(Ordering::Acquire);
    let hz = clock::start(known);
    if hz != 0 {
        publish_hz(base, hz);
    }
}

fn header_hz<'a>(base: *mut u8) -> &'a AtomicU64 {
    // SAFETY: the header lies in the first page, always allocated; accessed atomically by
    // every process mapping the file.
    unsafe { &*base.add(binary_v4::HZ_OFFSET).cast::<AtomicU64>() }
}

/// The TSC's rate is known: in the header for the log's other processes.
fn publish_hz(base: *mut u8, hz: u64) {
    let _ = header_hz(base).compare_exchange(0, hz, Ordering::AcqRel, Ordering::Acquire);
}

#[inline(always)]
fn counts_tsc(ticks: u64) -> bool {
    ticks & clock::TSC_TAG != 0
}

/// Takes a new chunk for this thread with room for `need` bytes of record; false when the
/// log is full (the call is counted as lost). The chunk has the thread's tid: its records do
/// not (an event for the binary log carries none).
fn new_chunk(base: *mut u8, chunk: &mut Chunk, ev: &impl Logged, need: usize) -> bool {
    let (pid, tid, tsc) = (ev.pid(), process::tid(), counts_tsc(ev.ticks()));
    // The thread's chunks in an earlier log (its parent's, before the fork that opened this
    // one) say nothing of this log: a forked worker's one call takes a small chunk, not the
    // largest, which would grow its new file at once.
    let next_size = if chunk.opened == OPENED.load(Ordering::Relaxed) {
        chunk.next_size
    } else {
        CHUNK_MIN
    };
    let size = next_size
        .max(binary_v4::CHUNK_HEAD + need)
        .next_multiple_of(8);
    let Some(at) = reserve(base, size) else {
        return false;
    };
    let (ns, ticks) = clock::pair(tsc);
    let hz = if tsc {
        clock::tsc_hz()
    } else {
        binary_v4::NS_HZ
    };
    // SAFETY: just reserved for this thread.
    let head = unsafe { bytes(base, at, binary_v4::CHUNK_HEAD) };
    binary_v4::write_chunk_head(head, pid, tid, ns, ticks, hz);
    compiler_fence(Ordering::SeqCst);
    // SAFETY: chunks are reserved in multiples of 8 after a 64-byte header of a page-aligned
    // mapping: the word is aligned.
    let word = unsafe { AtomicU64::from_ptr(base.add(at).cast()) };
    word.store(binary_v4::chunk_word(size), Ordering::Release);
    // The writer's registers count in the event's `ticks()`, tagged like them.
    let ticks = if tsc { ticks | clock::TSC_TAG } else { ticks };
    *chunk = Chunk {
        opened: OPENED.load(Ordering::Relaxed),
        pid,
        tsc,
        start: at,
        pos: at + binary_v4::CHUNK_HEAD,
        end: at + size,
        next_size: (size * 2).min(CHUNK_MAX),
        calibrated: ticks,
        regs: binary_v4::Registers::new(ticks),
        current: 0,
        current_len: 0,
    };
    if !tsc && let Some(hz) = clock::advance(ns) {
        publish_hz(base, hz);
    }
    true
}

/// Makes room for `need` bytes of record at `chunk.pos` for a call started at `ticks`: in the
/// thread's chunk, or a new one (a new thread, process or log, or a full chunk); with a
/// calibration first when the last is too old. False when the log is full.
#[inline]
fn room(base: *mut u8, chunk: &mut Chunk, ev: &impl Logged, need: usize) -> bool {
    // Once the log is full, no thread writes on in what is left of its chunk: the records of
    // each thread stop at the same call. The chunk is thread-local, so it is this thread's
    // unless the process changed under it (a fork's child, a vfork's child on its parent's
    // TLS, or its parent after it): the pid tells.
    let fits = chunk.opened == OPENED.load(Ordering::Relaxed)
        && !STOPPED.load(Ordering::Relaxed)
        && chunk.pid == ev.pid()
        && chunk.tsc == counts_tsc(ev.ticks())
        && chunk.pos + need <= chunk.end;
    if !fits {
        return new_chunk(base, chunk, ev, need);
    }
    if chunk.tsc && ev.ticks().wrapping_sub(chunk.calibrated) > clock::tsc_millisecond() {
        return recalibrate(base, chunk, ev, need);
    }
    true
}

#[cold]
fn recalibrate(base: *mut u8, chunk: &mut Chunk, ev: &impl Logged, need: usize) -> bool {
    if chunk.pos + binary_v4::CALIBRATION_SIZE + need > chunk.end {
        return new_chunk(base, chunk, ev, need);
    }
    let (ns, ticks) = clock::pair(true);
    // SAFETY: inside this thread's chunk.
    let rec = unsafe { bytes(base, chunk.pos, binary_v4::CALIBRATION_SIZE) };
    binary_v4::write_calibration(rec, ns, ticks);
    set_head(base, chunk.pos, binary_v4::HEAD_CALIBRATION);
    chunk.pos += binary_v4::CALIBRATION_SIZE;
    chunk.calibrated = ticks | clock::TSC_TAG;
    true
}

/// What the log needs of a call besides its record's fields: the process it runs in (its
/// chunk's) and how long it took, in the ticks of its start.
pub trait Logged: Fields {
    fn pid(&self) -> i32;
    fn dur(&self) -> u64;
}

impl Logged for Event {
    #[inline(always)]
    fn pid(&self) -> i32 {
        self.pid
    }
    #[inline(always)]
    fn dur(&self) -> u64 {
        self.dur_ns
    }
}

/// A call written without an event (`hooks/mapping.rs`): the mapping calls, which carry no
/// frames, operations, timeout or creation, only what their hook has at hand: its start
/// before the call, its result after it. Its record's bytes are those of the event the
/// general path would have filled in.
#[derive(Clone, Copy)]
pub struct BareCall<'a> {
    pub pid: i32,
    /// `clock::ticks()` at the start.
    pub ticks: u64,
    pub caller: u64,
    pub args: &'a [u64; 6],
    pub ret: i64,
    /// The real call's errno if it failed (its function's failure value), else 0.
    pub errno: i32,
    pub dur: u64,
    /// The object an `mmap` maps, or empty.
    pub name: &'a [u8],
}

impl Fields for BareCall<'_> {
    #[inline(always)]
    fn ticks(&self) -> u64 {
        self.ticks
    }
    #[inline(always)]
    fn caller(&self) -> u64 {
        self.caller
    }
    #[inline(always)]
    fn args(&self) -> &[u64; 6] {
        self.args
    }
    #[inline(always)]
    fn frames(&self) -> &[u64] {
        &[]
    }
    #[inline(always)]
    fn operations(&self) -> &[SemOp] {
        &[]
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
        false
    }
    #[inline(always)]
    fn timeout(&self) -> Option<Timeout> {
        None
    }
    #[inline(always)]
    fn name(&self) -> &[u8] {
        self.name
    }
}

impl Logged for BareCall<'_> {
    #[inline(always)]
    fn pid(&self) -> i32 {
        self.pid
    }
    #[inline(always)]
    fn dur(&self) -> u64 {
        self.dur
    }
}

/// [`call_started`] for a mapping call without an event. Inlined: the hook knows its function,
/// and keeps only its writer.
#[inline(always)]
pub fn bare_started(func: Func, call: &BareCall) {
    match func {
        Func::Mmap => started::<{ Func::Mmap as u8 }>(call, true),
        Func::Mmap64 => started::<{ Func::Mmap64 as u8 }>(call, true),
        Func::Munmap => started::<{ Func::Munmap as u8 }>(call, true),
        Func::Mremap => started::<{ Func::Mremap as u8 }>(call, true),
        // Their records have fields a bare call lacks: they are written from their events.
        _ => {}
    }
}

/// [`call_returned`] for a mapping call without an event.
#[inline(always)]
pub fn bare_returned(func: Func, call: &BareCall) {
    match func {
        Func::Mmap => returned::<{ Func::Mmap as u8 }>(call),
        Func::Mmap64 => returned::<{ Func::Mmap64 as u8 }>(call),
        Func::Munmap => returned::<{ Func::Munmap as u8 }>(call),
        Func::Mremap => returned::<{ Func::Mremap as u8 }>(call),
        _ => {}
    }
}

/// `call_started` and `call_returned`: each function's own, so that its record's writer and
/// bounds inline into it.
macro_rules! recorders_by_func {
    ($($variant:ident $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty
        { group: $group:ident, pointer: $pointer:literal, blocks: $blocks:literal
            $(, failure: $failure:literal)? })*) => {
        /// Writes the record of a call that is starting, and remembers it for
        /// `call_returned`.
        pub fn call_started(ev: &Event) {
            call_started_as(ev.func, ev)
        }

        /// Completes the record `call_started` wrote for this call, or writes a whole one if
        /// there is none (the call started before the log was open, or its start could not
        /// be stored).
        pub fn call_returned(ev: &Event) {
            call_returned_as(ev.func, ev)
        }

        /// [`call_started`] for an event of `func`: where `func` is a constant (a hook's own
        /// path), only that function's writer is left, inlined.
        #[inline(always)]
        pub fn call_started_as(func: Func, ev: &Event) {
            match func {
                $(Func::$variant =>
                    started::<{ Func::$variant as u8 }>(ev, ev.phase == Phase::Enter)),*
            }
        }

        /// [`call_returned`] for an event of `func`, as [`call_started_as`].
        #[inline(always)]
        pub fn call_returned_as(func: Func, ev: &Event) {
            match func {
                $(Func::$variant => returned::<{ Func::$variant as u8 }>(ev)),*
            }
        }
    };
}

shmtrace_core::hook_table!(recorders_by_func);

/// `waiting`: written as the call starts (a call that may wait: as it starts to wait), rather
/// than as a whole record's start.
#[inline(always)]
fn started<const F: u8>(ev: &impl Logged, waiting: bool) {
    let base = BASE.load(Ordering::Acquire);
    if base.is_null() {
        return;
    }
    with_chunk(|chunk| {
        let start = Writer::<F>::start_bound(ev);
        if !room(base, chunk, ev, start + Writer::<F>::END_BOUND) {
            // Counted as lost once: its return is not to be stored (nor counted) either.
            chunk.current = NOT_STORED;
            return;
        }
        let at = chunk.pos;
        // SAFETY: inside this thread's chunk, with room for the record's start and end.
        let rec = unsafe { bytes(base, at, start) };
        let len = Writer::<F>::write_start(rec, &mut chunk.regs, ev, waiting);
        if len == 0 {
            chunk.current = NOT_STORED;
            return;
        }
        set_head(base, at, binary_v4::HEAD_STARTED);
        chunk.pos = at + len;
        chunk.current = at;
        chunk.current_len = len;
    });
}

#[inline(always)]
fn returned<const F: u8>(ev: &impl Logged) {
    let base = BASE.load(Ordering::Acquire);
    if base.is_null() {
        return;
    }
    with_chunk(|chunk| {
        let started = core::mem::replace(&mut chunk.current, 0);
        if started == NOT_STORED {
            return;
        }
        let (dur, at_ns) = duration(ev);
        let end = Writer::<F>::END_BOUND;
        // The start is the last thing in the chunk (a thread has one traced call at a time),
        // its end goes right after it.
        let in_place = started != 0
            && chunk.opened == OPENED.load(Ordering::Relaxed)
            && chunk.pos == started + chunk.current_len
            && chunk.pos + end <= chunk.end
            // SAFETY: `started` is in this thread's chunk (checked just above).
            && unsafe { *base.add(started) } == binary_v4::HEAD_STARTED;
        if in_place {
            // Only a call that may wait is ever logged as waiting: the others never read it.
            let waiting = Func::ALL[F as usize].may_block() && is_waiting(base, started);
            // SAFETY: inside this thread's chunk, with room for the end (checked above), and
            // the chunk before it.
            let (rec, names) = unsafe {
                (
                    bytes(base, chunk.pos, end),
                    before(base, chunk, chunk.pos, chunk.pos),
                )
            };
            let len =
                Writer::<F>::write_end(rec, &mut chunk.regs, names, ev, (waiting, dur, at_ns));
            // SAFETY: the record's start, in this thread's chunk.
            let head = unsafe { bytes(base, started, binary_v4::CALL_HEAD) };
            compiler_fence(Ordering::SeqCst);
            binary_v4::set_size(head, chunk.current_len + len);
            set_head(base, started, binary_v4::HEAD_DONE);
            chunk.pos += len;
            return;
        }
        whole::<F>(base, chunk, ev, (dur, at_ns));
    });
}

/// A call's whole record at once, when it returns: a call that may wait and did not, or one
/// whose start is not in the chunk.
fn whole<const F: u8>(
    base: *mut u8,
    chunk: &mut Chunk,
    ev: &impl Logged,
    (dur, at_ns): (u64, bool),
) {
    let start = Writer::<F>::start_bound(ev);
    let end = Writer::<F>::END_BOUND;
    if !room(base, chunk, ev, start + end) {
        return;
    }
    let at = chunk.pos;
    // SAFETY: inside this thread's chunk, with room for the whole record.
    let rec = unsafe { bytes(base, at, start + end) };
    let len = Writer::<F>::write_start(rec, &mut chunk.regs, ev, false);
    let (head, tail) = rec.split_at_mut(len);
    // SAFETY: the chunk before the record, whose end goes after its start.
    let names = unsafe { before(base, chunk, at, at + len) };
    let len = len + Writer::<F>::write_end(tail, &mut chunk.regs, names, ev, (false, dur, at_ns));
    binary_v4::set_size(head, len);
    set_head(base, at, binary_v4::HEAD_DONE);
    chunk.pos = at + len;
}

/// Whether the record at `at` was written as its call started to wait.
fn is_waiting(base: *mut u8, at: usize) -> bool {
    // SAFETY: the record's start, in this thread's chunk.
    binary_v4::started_waiting(unsafe { bytes(base, at, binary_v4::CALL_HEAD) })
}

/// The call's duration as stored: ticks, or for a call longer than a calibration lasts, the
/// wall-clock time now (so a long wait is measured against the wall clock, not the rate).
fn duration(ev: &impl Logged) -> (u64, bool) {
    if counts_tsc(ev.ticks()) && ev.dur() > clock::tsc_millisecond() {
        (clock::now_ns(), true)
    } else {
        (ev.dur(), false)
    }
}

/// Stores a record that is not a call, as rendered in each format.
pub fn other(kind: u32, text: &[u8], json: &[u8]) {
    let base = BASE.load(Ordering::Acquire);
    if base.is_null() {
        return;
    }
    let size = binary_v4::blob_size(text.len(), json.len());
    if u32::try_from(size).is_err() {
        return;
    }
    let Some(at) = reserve(base, size) else {
        return;
    };
    // SAFETY: just reserved for this thread.
    let rec = unsafe { bytes(base, at, size) };
    binary_v4::write_blob(rec, kind, clock::now_ns(), text, json);
    compiler_fence(Ordering::SeqCst);
    // SAFETY: blobs are 8-aligned like chunks; the state word is aligned.
    let state = unsafe { AtomicU32::from_ptr(base.add(at + binary_v4::BLOB_STATE).cast()) };
    state.store(binary::STATE_DONE, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmtrace_core::trace::binary::{Item, Reader};
    use shmtrace_core::trace::event::{Func, Phase};

    /// An event as a hook has it for the binary log: no tid (its chunk has it).
    fn event(func: Func, seq: u64) -> Event {
        let mut ev = Event::new(Phase::Enter, func);
        ev.pid = 1;
        ev.ts_ns = seq;
        ev.args[1] = seq;
        ev
    }

    /// The log is process-wide state: one test at a time writes it.
    static LOG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn threads_write_in_place_across_chunks_and_everything_reads_back() {
        let _log = LOG.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!("shmtrace-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.bin");
        let _ = std::fs::remove_file(&path);
        let mut cpath = path.to_str().unwrap().as_bytes().to_vec();
        cpath.push(0);
        open(&cpath).unwrap();
        const THREADS: i32 = 4;
        const CALLS: u64 = 20_000; // 4 x 20000 x about 12 bytes: several chunks of file
        // Every worker is alive when it gives its tid: no two can have the same.
        let all_alive = std::sync::Arc::new(std::sync::Barrier::new(THREADS as usize));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let all_alive = all_alive.clone();
                std::thread::spawn(move || {
                    for seq in 0..CALLS {
                        let mut ev = event(Func::Munmap, seq);
                        call_started(&ev);
                        ev.phase = Phase::Exit;
                        ev.ret = seq as i64;
                        call_returned(&ev);
                    }
                    // Left in progress, as if killed here.
                    call_started(&event(Func::Mmap, CALLS));
                    all_alive.wait();
                    (process::tid(), t as usize)
                })
            })
            .collect();
        let threads: std::collections::HashMap<i32, usize> =
            workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert_eq!(threads.len(), THREADS as usize);
        other(binary::KIND_REPORT, b"text\n", b"{}\n");
        let data = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut reader = Reader::new(&data).unwrap();
        let mut next = [0u64; THREADS as usize];
        let mut in_progress = 0;
        let mut blobs = 0;
        for item in reader.by_ref() {
            match item {
                Item::Call(ev) | Item::Waited(ev) if ev.phase == Phase::Exit => {
                    let t = threads[&ev.tid];
                    assert_eq!((ev.args[1], ev.ret), (next[t], next[t] as i64));
                    next[t] += 1;
                }
                Item::Call(ev) | Item::Waited(ev) => {
                    assert_eq!((ev.func, ev.args[1]), (Func::Mmap, CALLS));
                    in_progress += 1;
                }
                Item::Blob { text, json, kind } => {
                    assert_eq!((kind, text, json), (3, &b"text\n"[..], &b"{}\n"[..]));
                    blobs += 1;
                }
            }
        }
        assert_eq!(next, [CALLS; THREADS as usize]);
        assert_eq!((in_progress, blobs), (THREADS, 1));
        assert!(!reader.damaged && reader.unfinished == 0 && reader.lost() == 0);
        assert!(data.len() > 4 * GROW_MIN, "the file grew");
    }

    /// A mapping call as a hook has it, and how its record is written.
    #[derive(Clone, Copy)]
    struct Case {
        func: Func,
        args: [u64; 6],
        ret: i64,
        errno: i32,
        name: &'static [u8],
        /// Written without an event (`bare_started`, `bare_returned`), else from the event the
        /// general path fills in.
        bare: bool,
    }

    impl Case {
        const TICKS: u64 = 5_000;
        const CALLER: u64 = 0x55d0_c0a0_1234;
        const DUR: u64 = 700;

        fn bare(&self) -> BareCall<'_> {
            BareCall {
                pid: 1,
                ticks: Self::TICKS,
                caller: Self::CALLER,
                args: &self.args,
                ret: self.ret,
                errno: self.errno,
                dur: Self::DUR,
                name: self.name,
            }
        }

        /// The event as `traced::begin` stamps it for the binary log (no tid: its chunk has it).
        fn event(&self) -> Event {
            let mut ev = Event::new(Phase::Enter, self.func);
            ev.pid = 1;
            ev.ts_ns = Self::TICKS;
            ev.caller = Self::CALLER;
            ev.args = self.args;
            ev
        }

        /// The event once `traced::finish` and the hook's `after` have filled it in.
        fn finished(&self) -> Event {
            let mut ev = self.event();
            ev.phase = Phase::Exit;
            ev.ret = self.ret;
            ev.errno = self.errno;
            ev.dur_ns = Self::DUR;
            ev.name = shmtrace_core::trace::event::Name::from_bytes(self.name);
            ev
        }

        fn start(&self) {
            if self.bare {
                bare_started(self.func, &self.bare());
            } else {
                call_started(&self.event());
            }
        }

        fn end(&self) {
            if self.bare {
                bare_returned(self.func, &self.bare());
            } else {
                call_returned(&self.finished());
            }
        }
    }

    /// Writes `before` (from its event) and then `case` into a new log at `path`: the bytes of
    /// `case`'s record once started and once returned (as many as its record may take), and
    /// the whole file.
    fn record_of(path: &std::path::Path, before: Case, case: Case) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let _ = std::fs::remove_file(path);
        let mut cpath = path.to_str().unwrap().as_bytes().to_vec();
        cpath.push(0);
        open(&cpath).unwrap();
        before.start();
        before.end();
        // The first record of the thread's new chunk: its size is in its head.
        let first = HEADER_SIZE + binary_v4::CHUNK_HEAD;
        let data = std::fs::read(path).unwrap();
        assert_eq!(data[first], binary_v4::HEAD_DONE);
        let at = first + usize::from(u16::from_ne_bytes([data[first + 1], data[first + 2]]));
        let bytes = |data: &[u8]| data[at..at + 128].to_vec();
        case.start();
        let started = bytes(&std::fs::read(path).unwrap());
        case.end();
        let data = std::fs::read(path).unwrap();
        (started, bytes(&data), data)
    }

    /// The record a mapping call writes without an event is, byte for byte, the one the general
    /// path writes from its event: its start (what a kill in the call leaves) and its whole, for
    /// each mapping function, successful and failed, and an object named in full or by a
    /// reference to the record before it.
    #[test]
    fn a_mapping_call_without_an_event_writes_the_bytes_its_event_does() {
        let _log = LOG.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(format!("shmtrace-bare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let anon = [0, 1 << 20, 3, 0x22, -1i64 as u64, 0];
        let file = [0x7f00_0000_0000, 8192, 1, 0x01, 7, 4096];
        let old = 0x7f00_0010_0000;
        let case = |func: Func, args: [u64; 6], ok: i64, name: &'static [u8]| {
            let done = Case {
                func,
                args,
                ret: ok,
                errno: 0,
                name,
                bare: false,
            };
            let failed = Case {
                ret: func.failure_value(),
                errno: libc::EINVAL,
                name: b"",
                ..done
            };
            [done, failed]
        };
        let object: &[u8] = b"/dev/shm/shmtrace-bare";
        let cases = [
            case(Func::Mmap, anon, 0x7f00_0020_0000, b""),
            case(Func::Mmap64, anon, 0x7f00_0020_0000, b""),
            case(Func::Mmap, file, 0x7f00_0000_0000, object),
            case(Func::Mmap64, file, 0x7f00_0000_0000, object),
            case(Func::Munmap, [old, 4096, 0, 0, 0, 0], 0, b""),
            case(
                Func::Mremap,
                [old, 4096, 8192, 1, 0, 0],
                0x7f00_0030_0000,
                b"",
            ),
            case(
                Func::Mremap,
                [old, 4096, 8192, 3, 0x7f00_0040_0000, 0],
                0x7f00_0040_0000,
                b"",
            ),
        ];
        // The record before: another thread's registers, and for a file mapping its object's
        // name in full, so that the case's refers to it.
        let unnamed = Case {
            func: Func::Munmap,
            args: [0x7e00_0000_0000, 4096, 0, 0, 0, 0],
            ret: 0,
            errno: 0,
            name: b"",
            bare: false,
        };
        let named = Case {
            func: Func::Mmap,
            args: file,
            ret: 0x7e00_0000_0000,
            name: object,
            ..unnamed
        };
        let mut compared = 0;
        for case in cases.iter().flatten() {
            for before in [unnamed, named] {
                let bare = Case {
                    bare: true,
                    ..*case
                };
                let (started, done, log) = record_of(&dir.join("event.bin"), before, *case);
                let (bare_started, bare_done, _) = record_of(&dir.join("bare.bin"), before, bare);
                let what = format!("{:?} ret {} after {:?}", case.func, case.ret, before.func);
                assert_eq!(started[0], binary_v4::HEAD_STARTED, "{what}");
                assert_eq!(done[0], binary_v4::HEAD_DONE, "{what}");
                assert_eq!(bare_started, started, "started: {what}");
                assert_eq!(bare_done, done, "returned: {what}");
                // What both wrote is the call, as the reader reads it.
                let calls: Vec<Event> = Reader::new(&log)
                    .unwrap()
                    .filter_map(|item| match item {
                        Item::Call(ev) => Some(ev),
                        _ => None,
                    })
                    .collect();
                let ev = calls.last().unwrap();
                assert_eq!(
                    (ev.func, ev.args, ev.ret, ev.errno, ev.name(), ev.caller),
                    (
                        case.func,
                        case.args,
                        case.ret,
                        case.errno,
                        case.name,
                        Case::CALLER
                    ),
                    "{what}"
                );
                compared += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(compared, 2 * 2 * cases.len());
    }
}

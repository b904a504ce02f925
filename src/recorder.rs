//! The process's ledger and what happens to a completed call: it updates the ledger, then is
//! logged. Also the report at exit and the CI verdict.

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::deferred;
use crate::ledger::{
    Call, Candidate, Facts, KernelView, KernelVma, Ledger, NameKind, ObjectKind, Report, Stats,
    Taken, Unsure,
};
use crate::platform::modules::MapsOnce;
use crate::platform::spinlock::{SpinGuard, SpinLock};
use crate::platform::{clock, config, kernel, maps, modules, process, shm_fds, shm_name, sink};
use crate::scan::{self, StackRoots};
use shmtrace_core::trace::binary;
use shmtrace_core::trace::event::{Event, Func, Phase};
use shmtrace_core::trace::format::{self, Format};
use shmtrace_core::trace::linebuf::LineBuf;
use shmtrace_core::trace::start::{self, Fork, Loaded, ModuleInfo, Start};

static LEDGER: SpinLock<Ledger> = SpinLock::new(Ledger::new());
static PAGE_SIZE: AtomicU64 = AtomicU64::new(4096);
static REPORTED: AtomicBool = AtomicBool::new(false);
/// `shmtrace_pause`: calls are forwarded untracked and unlogged until `shmtrace_resume`.
static PAUSED: AtomicBool = AtomicBool::new(false);
/// `SHMTRACE_LEAKS=all`: still reachable attachments and mappings count as leaks too.
static COUNT_REACHABLE: AtomicBool = AtomicBool::new(false);

/// True once the settings are in force (see `config::ensure`); the audit and the report have
/// their part of them before any call is tracked.
#[inline(always)]
pub fn configured() -> bool {
    config::ensure(|above| {
        COUNT_REACHABLE.store(above.count_reachable, Ordering::Relaxed);
        crate::audit::configure(above.audit);
        if !sink::enabled() && config::stack_depth() == 0 {
            // Released after everything configured so far: a hook that sees the bit clear
            // skips `configured` and its acquire.
            UNQUIET.fetch_and(!UNQUIET_SETTINGS, Ordering::Release);
        }
    })
}

/// Why a call may not go unlogged without a stack (`hooks/mapping.rs`), one bit each: the
/// settings (not in force yet, or a log or stacks asked for) and `shmtrace_pause`. One load
/// then decides what four did. The settings bit is cleared once, by the configuration: a log
/// that is off then stays off (a forked child inherits it, there is no call that opens one)
/// and the stack depth never changes. A clear word is always right; a set bit only sends the
/// call to the checks in full (`quiet_settled`), which decide as before.
static UNQUIET: AtomicU8 = AtomicU8::new(UNQUIET_SETTINGS);
const UNQUIET_SETTINGS: u8 = 1;
const UNQUIET_PAUSED: u8 = 2;

/// Whether a call is tracked, logged nowhere and recorded without a stack, as known without
/// asking further: false may still mean yes (before the settings are in force).
#[inline(always)]
pub fn quiet_settled() -> bool {
    UNQUIET.load(Ordering::Acquire) == 0
}

pub fn set_paused(paused: bool) {
    // The bit first when pausing and last when resuming: a clear word never hides a pause.
    if paused {
        UNQUIET.fetch_or(UNQUIET_PAUSED, Ordering::Relaxed);
        PAUSED.store(true, Ordering::Relaxed);
    } else {
        PAUSED.store(false, Ordering::Relaxed);
        UNQUIET.fetch_and(!UNQUIET_PAUSED, Ordering::Relaxed);
    }
}

pub fn paused() -> bool {
    PAUSED.load(Ordering::Relaxed)
}

pub fn init() {
    PAGE_SIZE.store(kernel::page_size(), Ordering::Relaxed);
}

pub fn page_size() -> u64 {
    PAGE_SIZE.load(Ordering::Relaxed)
}

pub fn facts() -> Facts {
    Facts::new(PAGE_SIZE.load(Ordering::Relaxed))
}

/// Where the modules the start record listed begin (the first `START_COUNT`), to tell at the
/// end which were loaded since. Written once, by the constructor.
static START_MODULES: [AtomicU64; 512] = [const { AtomicU64::new(0) }; 512];
static START_COUNT: AtomicUsize = AtomicUsize::new(0);

fn infos(modules: &[modules::Module]) -> Vec<ModuleInfo<'_>> {
    modules
        .iter()
        .map(|m| ModuleInfo {
            path: &m.path,
            base: m.base,
            start: m.start,
            end: m.end,
        })
        .collect()
}

fn at_start(start: u64) -> bool {
    let n = START_COUNT.load(Ordering::Acquire);
    START_MODULES[..n]
        .iter()
        .any(|s| s.load(Ordering::Relaxed) == start)
}

/// Opens this process image's log with who it is and what is loaded where (for symbolizing
/// call sites after the run). Runs once per image, from the constructor.
pub fn announce_start() {
    if !sink::enabled() {
        return;
    }
    let modules = modules::loaded();
    for (slot, m) in START_MODULES.iter().zip(&modules) {
        slot.store(m.start, Ordering::Relaxed);
    }
    START_COUNT.store(modules.len().min(START_MODULES.len()), Ordering::Release);
    let infos = infos(&modules);
    let exe = modules::exe_path();
    let start = Start {
        pid: process::pid(),
        // SAFETY: getppid has no preconditions.
        ppid: unsafe { libc::getppid() },
        ts_ns: clock::now_ns(),
        exe: &exe,
        modules: &infos,
    };
    sink::write_other(binary::KIND_START, |format, out: &mut String| {
        let _ = match format {
            Format::Text => start::write_text(&start, out),
            Format::Json => start::write_json(&start, out),
        };
    });
}

/// Before the report: the modules loaded since the start record (`dlopen`ed meanwhile), when
/// there are any, so the call sites inside them can be symbolized. From `/proc/self/maps`,
/// never the loader: a forked child whose parent had a thread inside `dl_iterate_phdr` at the
/// fork would wait forever for the loader's lock.
fn announce_modules_at_exit(maps: &mut MapsOnce) {
    if !sink::enabled() {
        return;
    }
    let Some(text) = maps.text() else {
        return;
    };
    let modules = modules::modules_in(text, |start| !at_start(start));
    if modules.is_empty() {
        return;
    }
    let infos = infos(&modules);
    let loaded = Loaded {
        pid: process::pid(),
        ts_ns: clock::now_ns(),
        modules: &infos,
    };
    sink::write_other(binary::KIND_MODULES, |format, out: &mut String| {
        let _ = match format {
            Format::Text => start::write_loaded_text(&loaded, out),
            Format::Json => start::write_loaded_json(&loaded, out),
        };
    });
}

/// Opens a forked child's log with its parent (async-signal-safe: stack buffer, one write).
pub fn announce_fork(parent: i32) {
    if !sink::enabled() {
        return;
    }
    let fork = Fork {
        pid: process::pid(),
        ppid: parent,
        ts_ns: clock::now_ns(),
    };
    sink::write_other(binary::KIND_FORK, |format, line: &mut LineBuf| {
        let _ = match format {
            Format::Text => start::write_fork_text(&fork, line),
            Format::Json => start::write_fork_json(&fork, line),
        };
    });
}

/// Where a completed call is entered: the ledger, held, or while a fork is being prepared a
/// place in the deferred queue (the forking thread holds the ledger across `fork`, and waiting
/// for it could deadlock: an allocator's fork handler may wait for a lock our caller holds).
pub enum Entry {
    Ledger(SpinGuard<'static, Ledger>),
    Deferred(deferred::Place),
}

/// Takes the ledger, or a place in the queue if a fork is being prepared. Never takes the
/// ledger once the gate is open, even when it is free for a moment: the queue is entered after
/// whatever is entered directly, so a thread with a call in the queue must not enter its next
/// call directly.
#[inline(always)]
pub fn entry() -> Entry {
    // Nearly always: no fork being prepared, the ledger free.
    if let Some(held) = LEDGER.lock_unless(deferred::is_open) {
        return Entry::Ledger(held);
    }
    entry_waiting()
}

/// [`entry`] when the ledger was busy or a fork is being prepared.
#[cold]
#[inline(never)]
fn entry_waiting() -> Entry {
    loop {
        if let Some(held) = LEDGER.lock_unless(deferred::is_open) {
            return Entry::Ledger(held);
        }
        if let Some(place) = deferred::claim() {
            return Entry::Deferred(place);
        }
        // The gate closed in between: the parent handler is draining; wait for the ledger.
    }
}

/// Calls the ledger only counts ([`Ledger::counts_only`]), counted here instead, so that they
/// never wait for the ledger (nor, while a fork is prepared, take a place in the queue).
static COUNTED: [AtomicU64; Func::COUNT] = [const { AtomicU64::new(0) }; Func::COUNT];

/// One more completed call of a function the ledger only counts ([`Ledger::counts_only`]).
#[inline(always)]
pub fn count(func: Func) {
    if let Some(n) = COUNTED.get(func as usize) {
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// A completed call into the ledger (only counted, for a function the ledger only counts);
/// the caller logs it then ([`emit_as`]).
pub fn completed(event: &Event, facts: &Facts) {
    if Ledger::counts_only(event.func) && event.phase == Phase::Exit {
        count(event.func);
        return;
    }
    completed_into(entry(), event, facts);
}

/// The size of a segment this process created with `shmget` and has not removed, from the
/// ledger, which spares `shmat` an `IPC_STAT`. `None` when the ledger does not know it, or
/// while a fork is prepared (the forking thread holds the ledger then): ask the kernel.
///
/// The ledger's record can be stale only if another process removed the segment and the
/// kernel then gave its id to a new one. A SysV id is an index plus a 16-bit sequence number,
/// so that takes 65 536 creations in the IPC namespace meanwhile (64 x 65 536 on kernels that
/// allocate indices cyclically), a checkpoint/restore tool writing `kernel.shm_next_id`, or
/// the process moving to another IPC namespace (docs/kernel-semantics.md): the same trust the
/// ledger already puts in an id between `shmget` and `IPC_RMID`.
pub fn created_segment_size(shmid: i32) -> Option<u64> {
    LEDGER
        .lock_unless(deferred::is_open)?
        .created_segment_size(shmid)
}

/// The ledger's live figures, with the calls counted outside it.
pub fn stats() -> Stats {
    let mut stats = with_ledger(Ledger::stats);
    for (n, counted) in stats.calls.iter_mut().zip(&COUNTED) {
        *n = n.saturating_add(counted.load(Ordering::Relaxed));
    }
    stats
}

/// A completed call into the entry taken for it, which it releases (before the caller logs
/// the call: [`emit_as`]).
pub fn completed_into(entry: Entry, event: &Event, facts: &Facts) {
    match entry {
        Entry::Ledger(mut ledger) => {
            enter(&mut ledger, event, facts);
            drop(ledger);
        }
        Entry::Deferred(place) => place.fill(event, facts),
    }
}

/// A completed call that is not logged, and has no event (see `hooks/mapping.rs`): into the
/// ledger.
#[inline(always)]
pub fn entered(call: &Call, facts: &Facts) {
    entered_into(entry(), call, facts);
}

/// [`entered`] into the entry taken for it.
#[inline(always)]
pub fn entered_into(entry: Entry, call: &Call, facts: &Facts) {
    match entry {
        Entry::Ledger(mut ledger) => {
            enter_call(&mut ledger, call, facts);
            drop(ledger);
        }
        Entry::Deferred(place) => defer(place, call, facts),
    }
}

/// Before a `munmap`, with the ledger its entry holds: the region it releases when the ledger
/// knows exactly that one, taken out ([`Ledger::take_unmapped`]); `None` otherwise.
#[inline(always)]
pub fn take_unmapped(held: &mut Ledger, addr: u64, len: u64) -> Option<Taken> {
    held.take_unmapped(addr, len, page_size())
}

/// [`entered_into`] for a call a region was taken for before it ([`take_unmapped`]).
#[inline(always)]
pub fn entered_taken(entry: Entry, taken: Taken, call: &Call, facts: &Facts) {
    match entry {
        Entry::Ledger(mut ledger) => {
            ledger.apply_taken(taken, call, facts);
            if let Some(unsure) = ledger.take_unsure() {
                resync(&mut ledger, &unsure, call);
            }
            drop(ledger);
        }
        // Never made from a place in the queue.
        Entry::Deferred(place) => defer(place, call, facts),
    }
}

/// The queue kept while a fork is prepared holds events; only the ledger reads this one, and
/// it reads no errno.
#[cold]
fn defer(place: deferred::Place, call: &Call, facts: &Facts) {
    place.fill(&call.to_event(process::pid(), 0), facts);
}

/// A completed call into the ledger, and the kernel's word for what it could not predict. A
/// call kept aside during a fork is resynchronised when the queue is drained, from the address
/// space as it is then.
fn enter(ledger: &mut Ledger, event: &Event, facts: &Facts) {
    if let Some(call) = Call::of(event) {
        enter_call(ledger, &call, facts);
    }
}

/// [`enter`] for a completed call; inlined, so that a hook that knows its function keeps only
/// its own part of the ledger's dispatch.
#[inline(always)]
fn enter_call(ledger: &mut Ledger, call: &Call, facts: &Facts) {
    ledger.apply_call(call, facts);
    if let Some(unsure) = ledger.take_unsure() {
        resync(ledger, &unsure, call);
    }
}

#[cold]
fn resync(ledger: &mut Ledger, unsure: &Unsure, call: &Call) {
    let read = unsure.ranges.map(|(start, end)| maps::mapped(start, end));
    let [Some(target), Some(source)] = &read else {
        return;
    };
    let mut copied = [(0, 0); maps::MAX_SPANS];
    let n = match unsure.moved {
        Some((old, new, _)) if unsure.copies => source.copied_to(target, old, new, &mut copied),
        _ => 0,
    };
    let mut vmas = [[KernelVma::default(); maps::MAX_SPANS]; 2];
    for (out, m) in vmas.iter_mut().zip([target, source]) {
        for (slot, v) in out.iter_mut().zip(m.vmas()) {
            *slot = KernelVma {
                start: v.start,
                end: v.end,
                begins: v.begins,
                prot: v.prot(),
                shmid: v.sysv.then_some(v.inode as i32),
            };
        }
    }
    let views = [(target, &vmas[0]), (source, &vmas[1])].map(|(m, v)| KernelView {
        start: m.start,
        end: m.end,
        mapped: m.spans(),
        vmas: &v[..m.vmas().len()],
    });
    ledger.resync(unsure, &views, &copied[..n], call);
}

/// A record into the log, if logging is on.
#[inline(always)]
pub fn emit(event: &Event) {
    // With the log off, tests inlined into the hook: no call, no frame. The binary log's
    // record is written with one call (its function's writer is picked inside).
    if sink::binary() {
        sink::call(event);
    } else if sink::enabled() {
        emit_line(event);
    }
}

/// [`emit`] where the caller knows the function (a hook's own path): the binary log's writer
/// of that one function inlines there, without the dispatch over every function and its
/// frame (tens of instructions a record).
#[inline(always)]
pub fn emit_as(func: Func, event: &Event) {
    if sink::binary() {
        sink::call_as(func, event);
    } else if sink::enabled() {
        emit_line(event);
    }
}

/// Kept apart so that the common paths above do not set up its 2 KiB stack frame.
#[inline(never)]
fn emit_line(event: &Event) {
    let mut line = LineBuf::new();
    format::write(config::format(), event, &mut line);
    sink::write_record(line.finish_line());
}

pub fn with_ledger<T>(f: impl FnOnce(&Ledger) -> T) -> T {
    f(&LEDGER.lock())
}

/// Fork prepare handler: the ledger is held across `fork` so that the child inherits it
/// consistent; calls completing meanwhile go to the deferred queue instead of waiting.
pub fn lock_for_fork() {
    deferred::open();
    LEDGER.lock_raw();
}

/// # Safety
/// Once, after `lock_for_fork`, in the parent, with the private heap usable again.
pub unsafe fn unlock_after_fork_in_parent() {
    // SAFETY: we hold the lock (taken in `lock_for_fork`).
    let ledger = unsafe { &mut *LEDGER.data_ptr() };
    deferred::close_and_drain(|event, facts| enter(ledger, event, facts));
    // SAFETY: paired with `lock_for_fork`.
    unsafe { LEDGER.unlock_raw() };
}

/// In the child: the calls kept aside before the instant of `fork` are entered, then everything
/// it holds is marked inherited (the parent acquired it).
///
/// # Safety
/// Once, after `lock_for_fork`, in the child, where no other thread exists, with the private
/// heap usable again (entering calls may allocate; the heap uses no libc lock).
pub unsafe fn after_fork_in_child() {
    // SAFETY: we hold the lock (taken in `lock_for_fork`), and the child has one thread.
    unsafe {
        let ledger = &mut *LEDGER.data_ptr();
        deferred::drain_in_child(|event, facts| enter(ledger, event, facts));
        ledger.after_fork_in_child();
        LEDGER.unlock_raw();
        for n in &COUNTED {
            // Written only where non-zero: each page written is copied from the parent's.
            if n.load(Ordering::Relaxed) != 0 {
                n.store(0, Ordering::Relaxed);
            }
        }
        crate::audit::after_fork_in_child();
    }
    REPORTED.store(false, Ordering::Relaxed);
}

/// Writes the report (once per process) to the log, and returns whether it was clean.
/// `stack` says which of this thread's frames are roots of the scan.
pub fn report_at_exit(stack: StackRoots) -> bool {
    if REPORTED.swap(true, Ordering::AcqRel) {
        return true;
    }
    let open = with_ledger(|ledger| ledger.semaphores_open());
    crate::audit::at_exit(&open);
    let mut maps = MapsOnce::new();
    announce_modules_at_exit(&mut maps);
    let report = report_now_with(stack, &mut maps);
    if sink::binary() {
        sink::write_other(binary::KIND_REPORT, |format, out: &mut String| {
            render(&report, format, out);
        });
    } else if sink::enabled() {
        let mut text = String::new();
        render(&report, config::format(), &mut text);
        sink::write_record(text.as_bytes());
        sink::finish();
    }
    report.is_clean()
}

/// The report as of now; the kernel says which created objects still exist.
pub fn report_now(stack: StackRoots) -> Report {
    report_now_with(stack, &mut MapsOnce::new())
}

/// [`report_now`] with the address space's map read at most once, into `maps`.
fn report_now_with(stack: StackRoots, maps: &mut MapsOnce) -> Report {
    let mut report = report_since_with(0, stack, maps);
    // POSIX names carry no checkpoint epoch: only the whole-run report holds them.
    report.names = with_ledger(|ledger| {
        ledger.names_left(|kind, name| match kind {
            NameKind::Shm => shm_name::inode_of_name(name),
            NameKind::Sem => shm_name::inode_of_sem_name(name),
        })
    });
    (report.findings, report.finding_totals) = crate::audit::summary();
    report
}

/// Starts a new checkpoint epoch (see `Ledger::checkpoint`).
pub fn checkpoint() -> u32 {
    LEDGER.lock().checkpoint()
}

/// The report of what was acquired in checkpoint epoch `since` or later and is still held,
/// attachments and mappings classified by a pointer scan of the process; without findings.
pub fn report_since(since: u32, stack: StackRoots) -> Report {
    report_since_with(since, stack, &mut MapsOnce::new())
}

/// [`report_since`] with the address space's map read at most once, into `maps`.
fn report_since_with(since: u32, stack: StackRoots, maps: &mut MapsOnce) -> Report {
    let candidates = with_ledger(Ledger::leak_candidates);
    // The allocators' ranges only ever set candidates aside (and the report's mappings are
    // candidates): with none, the map is not read for them.
    let allocators = if candidates.is_empty() {
        Vec::new()
    } else {
        allocator_modules(maps)
    };
    let allocator = |addr: u64| {
        // A return address is one past its call instruction: the call is in the module when
        // the byte before the address is.
        let call = addr.checked_sub(1)?;
        allocators
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&call))
            .map(|(_, _, path)| path.as_str())
    };
    // An allocator's mappings are its heap: roots of the scan, never candidates.
    let candidates: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| {
            core::iter::once(c.site)
                .chain(c.stack.as_slice().iter().copied())
                .all(|addr| allocator(addr).is_none())
        })
        .collect();
    // No scan (the memory map is unreadable): everything counts as lost, as before scans.
    let (lost, scanned) = match scan::lost(&candidates, stack, maps) {
        Some((lost, scanned)) => (Some(lost), Some(scanned)),
        None => (None, None),
    };
    // Mappings whose object the hooks left pending are named as the kernel shows them now.
    let objects = if with_ledger(|ledger| ledger.names_pending()) {
        maps.text().map(shm_fds::objects_in).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut report = with_ledger(|ledger| {
        ledger.report_named(
            |kind, id| match kind {
                // Marked by another process's IPC_RMID: it dies when the last attachment goes.
                ObjectKind::Segment => {
                    kernel::segment_stat(id).is_some_and(|s| !s.marked_for_removal)
                }
                ObjectKind::SemaphoreSet => kernel::semaphore_count(id).is_some(),
            },
            since,
            // Regions mapped after the scan are not judged: still reachable.
            |start| {
                lost.as_ref()
                    .is_none_or(|l| l.binary_search(&start).is_ok())
            },
            |start| shm_fds::object_at(&objects, start),
        )
    });
    report.queues = with_ledger(|ledger| {
        ledger.queues_left(since, |id| {
            kernel::queue_stat(id).map(|q| (q.messages, q.bytes))
        })
    });
    report.scanned = scanned;
    report.count_reachable = COUNT_REACHABLE.load(Ordering::Relaxed);
    report.set_aside_retained(allocator);
    report
}

/// The loaded allocator modules (jemalloc keeps its address space until exit) as (start, end,
/// path). Here, at report time, never in a hook (where looking an address up with the loader,
/// `dladdr`, could wait for the loader's lock held by our own caller).
fn allocator_modules(maps: &mut MapsOnce) -> Vec<(u64, u64, String)> {
    use shmtrace_core::allocators::Allocators;
    // A malformed value was warned about at start and is not kept: the built-in list.
    let allocators = Allocators::parse(config::allocators()).unwrap_or_default();
    if !allocators.enabled() {
        return Vec::new();
    }
    // The file mappings rather than the loader's list: the loader's lock may never be free
    // again in a forked child (see `modules::mapped_files`).
    let files: Vec<(u64, u64, Vec<u8>)> = match maps.text() {
        Some(text) => modules::files_in(text, |path| allocators.is_allocator(path))
            .into_iter()
            .map(|f| (f.start, f.end, f.path))
            .collect(),
        None => modules::loaded()
            .into_iter()
            .map(|m| (m.start, m.end, m.path))
            .collect(),
    };
    files
        .into_iter()
        .filter(|(_, _, path)| allocators.is_allocator(path))
        .map(|(start, end, path)| (start, end, String::from_utf8_lossy(&path).into_owned()))
        .collect()
}

/// Renders the report as of now into `out`; returns whether it is clean.
pub fn write_report(out: &mut String, format: Format, stack: StackRoots) -> bool {
    let report = report_now(stack);
    render(&report, format, out);
    report.is_clean()
}

pub fn render(report: &Report, format: Format, out: &mut String) {
    let pid = process::pid();
    let _ = match format {
        Format::Text => crate::ledger::write_text(report, pid, out),
        Format::Json => crate::ledger::write_json(report, pid, out),
    };
}

/// The exit status to force when the report is not clean, if `SHMTRACE_EXITCODE` asks for one.
pub fn verdict_exit_code(clean: bool) -> Option<i32> {
    match config::exit_code() {
        0 => None,
        _ if clean => None,
        code => Some(code),
    }
}

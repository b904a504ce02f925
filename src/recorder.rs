//! The process's ledger and what happens to a completed call: it updates the ledger, then is
//! logged. Also the report at exit and the CI verdict.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::deferred;
use crate::ledger::{Facts, Ledger, ObjectKind, Report};
use crate::platform::spinlock::{SpinGuard, SpinLock};
use crate::platform::{clock, config, kernel, modules, process, sink};
use shmtrace_core::trace::binary;
use shmtrace_core::trace::event::Event;
use shmtrace_core::trace::format::{self, Format};
use shmtrace_core::trace::linebuf::LineBuf;
use shmtrace_core::trace::start::{self, Fork, ModuleInfo, Start};

static LEDGER: SpinLock<Ledger> = SpinLock::new(Ledger::new());
static PAGE_SIZE: AtomicU64 = AtomicU64::new(4096);
static REPORTED: AtomicBool = AtomicBool::new(false);
/// `shmtrace_pause`: calls are forwarded untracked and unlogged until `shmtrace_resume`.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// True once the settings are in force (see `config::ensure`); the audit has its part of them
/// before any call is tracked.
#[inline(always)]
pub fn configured() -> bool {
    config::ensure(crate::audit::configure)
}

pub fn set_paused(paused: bool) {
    PAUSED.store(paused, Ordering::Relaxed);
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

/// Opens this process image's log with who it is and what is loaded where (for symbolizing
/// call sites after the run). Runs once per image, from the constructor.
pub fn announce_start() {
    if !sink::enabled() {
        return;
    }
    let modules = modules::loaded();
    let infos: Vec<ModuleInfo<'_>> = modules
        .iter()
        .map(|m| ModuleInfo {
            path: &m.path,
            base: m.base,
            start: m.start,
            end: m.end,
        })
        .collect();
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
pub fn entry() -> Entry {
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

/// A completed call: into the ledger, then into the log.
pub fn completed(event: &Event, facts: &Facts) {
    completed_into(entry(), event, facts);
}

/// A completed call into the entry taken for it (released before logging).
pub fn completed_into(entry: Entry, event: &Event, facts: &Facts) {
    match entry {
        Entry::Ledger(mut ledger) => {
            ledger.apply(event, facts);
            drop(ledger);
        }
        Entry::Deferred(place) => place.fill(event, facts),
    }
    emit(event);
}

/// A record into the log, if logging is on.
#[inline]
pub fn emit(event: &Event) {
    if sink::binary() {
        sink::call(event);
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
    deferred::close_and_drain(|event, facts| {
        ledger.apply(event, facts);
    });
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
        deferred::drain_in_child(|event, facts| {
            ledger.apply(event, facts);
        });
        ledger.after_fork_in_child();
        LEDGER.unlock_raw();
        crate::audit::after_fork_in_child();
    }
    REPORTED.store(false, Ordering::Relaxed);
}

/// Writes the report (once per process) to the log, and returns whether it was clean.
pub fn report_at_exit() -> bool {
    if REPORTED.swap(true, Ordering::AcqRel) {
        return true;
    }
    crate::audit::at_exit();
    let mut text = String::new();
    let clean = write_report(&mut text, config::format());
    if sink::binary() {
        sink::write_other(binary::KIND_REPORT, |format, out: &mut String| {
            write_report(out, format);
        });
    } else if sink::enabled() {
        sink::write_record(text.as_bytes());
    }
    clean
}

/// The report as of now; the kernel says which created objects still exist.
pub fn report_now() -> Report {
    let mut report = with_ledger(|ledger| {
        let mut report = ledger.report(|kind, id| match kind {
            // Marked by another process's IPC_RMID: it dies when the last attachment goes.
            ObjectKind::Segment => kernel::segment_stat(id).is_some_and(|s| !s.marked_for_removal),
            ObjectKind::SemaphoreSet => kernel::semaphore_count(id).is_some(),
        });
        report.names = ledger.names_left(crate::platform::shm_name::inode_of_name);
        report
    });
    (report.findings, report.finding_totals) = crate::audit::summary();
    set_aside_allocators(&mut report);
    report
}

/// Moves the mappings a known allocator made (jemalloc keeps its address space until exit)
/// out of the leaks. Here, at report time, never in a hook (where looking an address up with
/// the loader, `dladdr`, could wait for the loader's lock held by our own caller).
fn set_aside_allocators(report: &mut Report) {
    use shmtrace_core::allocators::Allocators;
    if report.mappings.is_empty() {
        return;
    }
    // A malformed value was warned about at start and is not kept: the built-in list.
    let allocators = Allocators::parse(config::allocators()).unwrap_or_default();
    if !allocators.enabled() {
        return;
    }
    // The file mappings rather than the loader's list: the loader's lock may never be free
    // again in a forked child (see `modules::mapped_files`).
    let files: Vec<(u64, u64, Vec<u8>)> = match modules::mapped_files() {
        Some(files) => files
            .into_iter()
            .map(|f| (f.start, f.end, f.path))
            .collect(),
        None => modules::loaded()
            .into_iter()
            .map(|m| (m.start, m.end, m.path))
            .collect(),
    };
    let found: Vec<(u64, u64, String)> = files
        .into_iter()
        .filter(|(_, _, path)| allocators.is_allocator(path))
        .map(|(start, end, path)| (start, end, String::from_utf8_lossy(&path).into_owned()))
        .collect();
    if found.is_empty() {
        return;
    }
    // A return address is one past its call instruction: the call is in the module when the
    // byte before the address is.
    report.set_aside_retained(|addr| {
        let call = addr.checked_sub(1)?;
        found
            .iter()
            .find(|(start, end, _)| (*start..*end).contains(&call))
            .map(|(_, _, path)| path.as_str())
    });
}

/// Renders the report as of now into `out`; returns whether it is clean.
pub fn write_report(out: &mut String, format: Format) -> bool {
    let report = report_now();
    let pid = process::pid();
    let _ = match format {
        Format::Text => crate::ledger::write_text(&report, pid, out),
        Format::Json => crate::ledger::write_json(&report, pid, out),
    };
    report.is_clean()
}

/// The exit status to force when the report is not clean, if `SHMTRACE_EXITCODE` asks for one.
pub fn verdict_exit_code(clean: bool) -> Option<i32> {
    match config::exit_code() {
        0 => None,
        _ if clean => None,
        code => Some(code),
    }
}

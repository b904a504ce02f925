//! The library's lifecycle: the constructor, the fork handlers, and the three ways a process
//! ends with a report (return from `main` or `exit`, which run our destructor; `_exit`/`_Exit`,
//! which we hook).

use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::platform::guard::{self, Guard};
use crate::platform::shield::shield;
use crate::platform::{address_space, config, process, real, shm_fds, sink};
use crate::recorder;
use crate::scan::{self, StackRoots};

// Runs when the library is loaded (preloaded or linked), after libc is initialised but possibly
// after another library's constructor already called a hook.
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

// Runs from `exit` after the program's own atexit handlers and the destructors of everything
// loaded after us, i.e. once the program has released what it meant to release.
#[used]
#[unsafe(link_section = ".fini_array")]
static DESTRUCTOR: extern "C" fn() = destructor;

/// The next `_exit` (glibc's `_Exit` is the same function); 0 until resolved.
static NEXT_EXIT: AtomicUsize = AtomicUsize::new(0);
/// The next `exit`; 0 until resolved.
static NEXT_EXIT_FULL: AtomicUsize = AtomicUsize::new(0);

extern "C" fn constructor() {
    // Whatever dlsym or an allocator maps while we resolve is theirs, not the program's.
    let _guard = Guard::enter();
    shield(|| {
        process::remember_pid();
        real::resolve_all();
        real::resolve_vfork();
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
        let next_exit = unsafe { libc::dlsym(libc::RTLD_NEXT, c"_exit".as_ptr()) };
        NEXT_EXIT.store(next_exit as usize, Ordering::Release);
        // SAFETY: as above.
        let next_exit_full = unsafe { libc::dlsym(libc::RTLD_NEXT, c"exit".as_ptr()) };
        NEXT_EXIT_FULL.store(next_exit_full as usize, Ordering::Release);
        recorder::configured();
        recorder::init();
        recorder::announce_start();
        if sink::enabled() {
            process::remember_main_stack();
        }
        // SAFETY: registering handlers with static lifetime; pthread_atfork has no other
        // precondition.
        unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(in_parent_after_fork),
                Some(in_child_after_fork),
            )
        };
    });
}

/// The child must inherit the ledger and the private heap consistent, so both are held across
/// `fork` (ledger first, the order calls take them). Hooks running meanwhile never wait for
/// them (see `recorder::entry`): another library's fork handler may be waiting for one.
extern "C" fn before_fork() {
    shield(|| {
        guard::hold();
        recorder::lock_for_fork();
        crate::HEAP.lock_for_fork();
    });
}

extern "C" fn in_parent_after_fork() {
    shield(|| {
        // SAFETY: each paired with `before_fork` in this process; the heap first, since
        // entering the calls kept aside during the fork may allocate.
        unsafe {
            crate::HEAP.unlock_after_fork();
            recorder::unlock_after_fork_in_parent();
        }
        guard::release();
    });
}

/// Only async-signal-safe work: the child of a multithreaded parent may run nothing else.
extern "C" fn in_child_after_fork() {
    shield(|| {
        // SAFETY: each paired with `before_fork`, whose locks the child inherited.
        unsafe {
            crate::HEAP.unlock_after_fork();
            recorder::after_fork_in_child();
        }
        shm_fds::after_fork_in_child();
        let parent = process::pid();
        process::remember_pid();
        sink::reopen_after_fork();
        recorder::announce_fork(parent);
        guard::release();
    });
}

extern "C" fn destructor() {
    let _guard = Guard::enter();
    if let Some(code) = shield(|| report(StackRoots::AtExit)).flatten() {
        // The program's exit continues no further: flush its stdio as exit would have.
        // SAFETY: fflush(NULL) flushes every open output stream; nothing else is running.
        unsafe { libc::fflush(core::ptr::null_mut()) };
        exit_now(code);
    }
}

/// The exit report; the status to exit with instead of the program's, if any.
fn report(stack: StackRoots) -> Option<c_int> {
    // Nothing written and no status to decide: nobody would see it, and a short-lived process
    // (a forked worker doing one thing) would pay for the address space's reads and its scan.
    if !sink::enabled() && config::exit_code() == 0 {
        return None;
    }
    recorder::verdict_exit_code(recorder::report_at_exit(stack))
}

/// Reports (unless this is a vfork child, which shares its parent's memory and ledger), then
/// ends the process with `status`, or with `SHMTRACE_EXITCODE` if the report is not clean.
fn report_then_exit(status: c_int) -> ! {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != process::pid() {
        // A vfork child: its TLS is its parent's thread's, so it must not even take the guard
        // (it would never be released, and the parent would trace nothing more).
        exit_now(status);
    }
    let _guard = Guard::enter();
    let code = address_space::with_registers_on_stack(|low| {
        shield(|| report(StackRoots::From(low))).flatten()
    });
    exit_now(code.unwrap_or(status))
}

/// Only notes where the program's frames end (its locals are roots of the exit report's
/// scan; see `scan::StackRoots::AtExit`), then exits as usual.
#[unsafe(no_mangle)]
pub extern "C" fn exit(status: c_int) -> ! {
    let frame = 0u8;
    let sp = core::hint::black_box(&frame) as *const u8 as u64;
    let next = shield(|| {
        scan::exit_called_at(sp);
        match NEXT_EXIT_FULL.load(Ordering::Acquire) {
            // Called before our constructor (from another library's): resolve it now.
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
            0 => unsafe { libc::dlsym(libc::RTLD_NEXT, c"exit".as_ptr()) as usize },
            next => next,
        }
    })
    .unwrap_or(0);
    if next == 0 {
        report_then_exit(status);
    }
    // SAFETY: dlsym gave the address of `exit`, whose prototype this is.
    let real_exit: extern "C" fn(c_int) -> ! = unsafe { core::mem::transmute(next) };
    real_exit(status)
}

fn exit_now(status: c_int) -> ! {
    let next = NEXT_EXIT.load(Ordering::Acquire);
    if next != 0 {
        // SAFETY: dlsym gave the address of `_exit`, whose prototype this is.
        let real_exit: extern "C" fn(c_int) -> ! = unsafe { core::mem::transmute(next) };
        real_exit(status);
    }
    // SAFETY: exit_group ends the process; it has no other precondition.
    unsafe { libc::syscall(libc::SYS_exit_group, status) };
    // SAFETY: exit_group does not return.
    unsafe { core::hint::unreachable_unchecked() }
}

/// `_exit` skips atexit handlers and destructors, so the report is written here.
#[unsafe(no_mangle)]
pub extern "C" fn _exit(status: c_int) -> ! {
    report_then_exit(status)
}

#[unsafe(no_mangle)]
pub extern "C" fn _Exit(status: c_int) -> ! {
    report_then_exit(status)
}

//! The constructor and the fork handler.

use crate::platform::{config, guard::Guard, process, real, sink};

// Runs when the library is loaded (preloaded or linked), after libc is initialised but possibly
// after another library's constructor already called a hook.
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

extern "C" fn constructor() {
    // Whatever dlsym or an allocator maps while we resolve is theirs, not the program's.
    let _guard = Guard::enter();
    process::remember_pid();
    real::resolve_all();
    config::ensure();
    // SAFETY: registering handlers with static lifetime; pthread_atfork has no other
    // precondition.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(in_parent_after_fork),
            Some(in_child_after_fork),
        )
    };
}

/// No other thread may be inside the private heap when the address space is copied.
extern "C" fn before_fork() {
    crate::HEAP.lock_for_fork();
}

extern "C" fn in_parent_after_fork() {
    // SAFETY: paired with `before_fork` in this process.
    unsafe { crate::HEAP.unlock_after_fork() };
}

/// Only async-signal-safe work: the child of a multithreaded parent may run nothing else.
extern "C" fn in_child_after_fork() {
    // SAFETY: paired with `before_fork`, whose lock the child inherited.
    unsafe { crate::HEAP.unlock_after_fork() };
    process::remember_pid();
    sink::reopen_after_fork();
}

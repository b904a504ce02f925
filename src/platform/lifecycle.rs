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
    // SAFETY: registering a handler with static lifetime; pthread_atfork has no other
    // precondition.
    unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
}

/// Only async-signal-safe work: the child of a multithreaded parent may run nothing else.
extern "C" fn in_child_after_fork() {
    process::remember_pid();
    sink::reopen_after_fork();
}

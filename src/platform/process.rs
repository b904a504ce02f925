//! Process and thread ids for records.
//!
//! The pid is cached, but only by the constructor and the fork handler, never by a hook: a
//! `vfork` child runs in its parent's memory, and a hook there must not overwrite the parent's
//! cache. The thread id is asked of the kernel each time for the same reason (a vfork child
//! shares its parent's thread-local storage too).

use core::sync::atomic::{AtomicI32, Ordering};

static PID: AtomicI32 = AtomicI32::new(0);

/// Called by the constructor and, in a forked child, by the fork handler.
pub fn remember_pid() {
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

pub fn pid() -> i32 {
    match PID.load(Ordering::Relaxed) {
        // SAFETY: getpid has no preconditions.
        0 => unsafe { libc::getpid() },
        pid => pid,
    }
}

pub fn tid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

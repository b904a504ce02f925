//! Process and thread ids for records.
//!
//! The pid is cached, but only by the constructor and the fork handler, never by a hook: a
//! `vfork` child runs in its parent's memory, and a hook there must not overwrite the parent's
//! cache. The thread id is asked of the kernel each time for the same reason (a vfork child
//! shares its parent's thread-local storage too).

use core::cell::Cell;
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

thread_local! {
    // Set in the thread that calls vfork, just before it does. The vfork child runs on that
    // thread's stack and TLS, so it sees the flag too; no other thread pays for the check.
    static VFORKED: Cell<bool> = const { Cell::new(false) };
}

/// Called by the `vfork` trampoline before the real vfork.
pub fn vfork_starting() {
    let _ = VFORKED.try_with(|f| f.set(true));
}

/// `Some(own pid)` when this call runs in a vfork child, which shares its parent's memory: it
/// must not touch the parent's ledger. Costs a syscall only in a thread that called vfork, and
/// only until its first hook back in the parent.
pub fn in_vfork_child() -> Option<i32> {
    if !VFORKED.try_with(Cell::get).unwrap_or(false) {
        return None;
    }
    // SAFETY: getpid has no preconditions.
    let now = unsafe { libc::getpid() };
    let parent = PID.load(Ordering::Relaxed);
    if parent == 0 || now == parent {
        // Back in the parent: the child has exec'd or exited.
        let _ = VFORKED.try_with(|f| f.set(false));
        None
    } else {
        Some(now)
    }
}

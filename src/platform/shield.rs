//! The one panic boundary. A panic must never unwind into the host (through an `extern "C"`
//! function it aborts the program), so every way in from outside (the hooks, the C API, the
//! constructor, the fork handlers, the destructor, `exit` and `_exit`) runs its work inside
//! [`shield`].

use core::sync::atomic::{AtomicU64, Ordering};
use std::panic::{AssertUnwindSafe, catch_unwind};

static FAILURES: AtomicU64 = AtomicU64::new(0);

/// Runs `work`; if it panics, counts the failure and returns `None`.
pub fn shield<T>(work: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => Some(value),
        Err(_) => {
            FAILURES.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// How many panics [`shield`] caught in this process.
pub fn failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

//! The calling thread's `errno`, read and restored around everything the shim does itself.

pub fn get() -> i32 {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno for as long as the
    // thread lives; reading an int through it has no other precondition.
    unsafe { *libc::__errno_location() }
}

pub fn set(value: i32) {
    // SAFETY: as in `get`; writing restores what the real call left there.
    unsafe { *libc::__errno_location() = value }
}

/// This thread's `errno`, located once: a hook reads and writes it several times, and each
/// [`get`] or [`set`] is a call into libc.
#[derive(Clone, Copy)]
pub struct Slot(*mut i32);

impl Slot {
    pub fn here() -> Slot {
        // SAFETY: __errno_location has no preconditions.
        Slot(unsafe { libc::__errno_location() })
    }

    pub fn get(self) -> i32 {
        // SAFETY: this thread's errno, valid for as long as the thread lives (a `Slot` is used
        // within the hook that made it).
        unsafe { self.0.read() }
    }

    pub fn set(self, value: i32) {
        // SAFETY: as in `get`.
        unsafe { self.0.write(value) }
    }
}

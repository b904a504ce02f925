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

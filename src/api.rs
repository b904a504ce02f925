//! The C API declared in `include/shmtrace.h`. Every function here is safe to call at any time,
//! from any thread, before or after the shim's constructor.

use core::ffi::c_char;

/// The library's version, `MAJOR.MINOR.PATCH`, as a static NUL-terminated string.
///
/// Compare it with the header's `SHMTRACE_VERSION` to detect a header/library mismatch.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use core::ffi::CStr;

    #[test]
    fn header_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/shmtrace.h"));
        let committed = include_str!("../include/shmtrace.h");
        assert!(
            committed == generated,
            "include/shmtrace.h differs from what build.rs generates: run `make header`"
        );
    }

    #[test]
    fn header_declares_no_libc_prototype() {
        let header = include_str!("../include/shmtrace.h");
        for name in [
            "shmget",
            "shmat",
            "shmdt",
            "shmctl",
            "semget",
            "semop",
            "semtimedop",
            "semctl",
            "mmap",
            "mmap64",
            "munmap",
            "mremap",
        ] {
            assert!(!header.contains(&format!(" {name}(")), "{name} declared");
            assert!(!header.contains(&format!("*{name}(")), "{name} declared");
        }
    }

    #[test]
    fn version_matches_the_manifest() {
        // SAFETY: shmtrace_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(super::shmtrace_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}

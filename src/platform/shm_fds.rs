//! Which descriptors may be shared memory objects, so that an `mmap` can name the object it
//! maps (`/dev/shm/NAME`, `memfd:NAME`) without a system call for any other file.
//!
//! `shm_open` and `memfd_create` mark the descriptor they return in a bitmap of descriptor
//! numbers, taken modulo its size: a filter, lock-free, inherited by `fork` like the
//! descriptors themselves. An `mmap` of a marked number asks the kernel what the descriptor
//! is now (`readlink` of `/proc/self/fd/N`: the path `/proc/self/maps` shows for the mapping);
//! an anonymous mapping or any other file's pays one bit test. The kernel's answer is the
//! truth whatever became of the number since (closed and reused by `open`, replaced by
//! `dup2`): a marked number that now holds a regular file gets no name, never a wrong one.
//! `close` is not hooked, so a bit is never cleared; a stale one costs a `readlink` per
//! `mmap` of that number. A copy made by `dup` has another number and is not marked: its
//! mappings are not named.

use core::ffi::c_int;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU64, Ordering};

use shmtrace_core::trace::event::Name;

const BITS: usize = 1024;
static MARKS: [AtomicU64; BITS / 64] = [const { AtomicU64::new(0) }; BITS / 64];

fn slot(fd: c_int) -> (usize, u64) {
    let n = fd as u32 as usize % BITS;
    (n / 64, 1 << (n % 64))
}

/// `fd` was returned by `shm_open` or `memfd_create`.
pub fn mark(fd: c_int) {
    if fd >= 0 {
        let (word, bit) = slot(fd);
        MARKS[word].fetch_or(bit, Ordering::Relaxed);
    }
}

/// Whether `fd` may be a shared memory object (false: it certainly was never marked).
#[inline]
pub fn marked(fd: c_int) -> bool {
    let (word, bit) = slot(fd);
    fd >= 0 && MARKS[word].load(Ordering::Relaxed) & bit != 0
}

/// The shared memory object `fd` refers to now: `/dev/shm/NAME` (as the kernel shows it, with
/// ` (deleted)` once unlinked) or `memfd:NAME`; `None` for anything else, or when
/// `/proc/self/fd` cannot be read.
pub fn object_of(fd: c_int) -> Option<Name> {
    // "/proc/self/fd/" and up to 10 digits, NUL-terminated.
    let mut path = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = [0u8; 10];
    let mut n = fd as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        path[14 + i] = *d;
    }
    // Left uninitialised: the kernel writes what it returns, and nothing else is read.
    let mut target = [MaybeUninit::<u8>::uninit(); 512];
    // SAFETY: a NUL-terminated path and a buffer of ours; the raw call neither allocates nor
    // enters a hook.
    let got = unsafe {
        libc::syscall(
            libc::SYS_readlinkat,
            libc::AT_FDCWD,
            path.as_ptr(),
            target.as_mut_ptr(),
            target.len(),
        )
    };
    let got = usize::try_from(got).ok()?.min(target.len());
    // SAFETY: readlinkat wrote the first `got` bytes; `MaybeUninit<u8>` has the layout of `u8`.
    let target = unsafe { core::slice::from_raw_parts(target.as_ptr().cast::<u8>(), got) };
    object_name(target).map(Name::from_bytes)
}

/// What `readlink` of a descriptor says, as the object it names, if it is one.
fn object_name(target: &[u8]) -> Option<&[u8]> {
    if target.starts_with(b"/dev/shm/") {
        return Some(target);
    }
    // A memfd is never linked anywhere: the kernel always shows it deleted.
    let memfd = target.strip_prefix(b"/")?;
    memfd
        .starts_with(b"memfd:")
        .then(|| memfd.strip_suffix(b" (deleted)").unwrap_or(memfd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shm_and_memfd_paths_name_an_object() {
        assert_eq!(object_name(b"/dev/shm/psm_1"), Some(&b"/dev/shm/psm_1"[..]));
        assert_eq!(
            object_name(b"/dev/shm/psm_1 (deleted)"),
            Some(&b"/dev/shm/psm_1 (deleted)"[..])
        );
        assert_eq!(
            object_name(b"/memfd:ring (deleted)"),
            Some(&b"memfd:ring"[..])
        );
        assert_eq!(
            object_name(b"/memfd:a (deleted) (deleted)"),
            Some(&b"memfd:a (deleted)"[..])
        );
        assert_eq!(object_name(b"/tmp/memfd:x"), None);
        assert_eq!(object_name(b"/dev/zero"), None);
        assert_eq!(object_name(b"anon_inode:[eventfd]"), None);
        assert_eq!(object_name(b""), None);
    }

    #[test]
    fn marks_are_per_number_and_never_for_negative_ones() {
        assert!(!marked(-1));
        mark(-1);
        assert!(!marked(-1));
        // A number far above any the test harness holds.
        let fd = 1000;
        assert!(!marked(fd));
        mark(fd);
        assert!(marked(fd) && marked(fd + BITS as c_int) && !marked(fd + 1));
    }

    #[test]
    fn the_kernel_names_a_memfd_and_nothing_for_a_plain_file() {
        // SAFETY: a literal name; the descriptors are closed below.
        let memfd = unsafe { libc::memfd_create(c"shmtrace-unit".as_ptr(), 0) };
        assert!(memfd >= 0);
        assert_eq!(
            object_of(memfd).map(|n| n.as_bytes().to_vec()),
            Some(b"memfd:shmtrace-unit".to_vec())
        );
        // SAFETY: as above.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(null >= 0);
        assert_eq!(object_of(null), None);
        assert_eq!(object_of(-1), None);
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(memfd);
            libc::close(null);
        }
    }
}

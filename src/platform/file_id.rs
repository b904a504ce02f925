//! Which file a descriptor or a path is (device, inode, links), asked so that the kernel does
//! no more work afterwards than it would have without the question.
//!
//! `fstat` and `stat` ask for every field, the change time among them, and on a file system
//! with multigrain timestamps (tmpfs, hence `/dev/shm`, since Linux 6.13) a read of the change
//! time marks the inode's ctime as seen: the file's next change then takes a fine-grained clock
//! read (and moves the system-wide coarse-time floor) instead of the coarse tick, and that
//! newer mtime makes the next `mmap` or read update the access time (`touch_atime`, the inode
//! marked dirty). A program that runs `shm_open`, `ftruncate`, `mmap` paid for all of that
//! because the hook had stat'ed the new object. `statx` with only `STATX_INO | STATX_NLINK`
//! requested leaves the change time unread, so the inode's timestamps evolve exactly as they
//! would without the shim. (The device is always filled in.)
//!
//! A descriptor is asked with a NULL path (`AT_EMPTY_PATH`), which Linux 6.11 and later answer
//! without copying a path from user memory; an older kernel faults on it (`EFAULT`), and gets
//! `""` from then on. A kernel without `statx` (before 4.11) or a seccomp filter that refuses it
//! gets the `fstat` family instead. Each fallback is decided once per process.
use core::ffi::{c_char, c_int};
use core::mem::MaybeUninit;
use core::ptr;
use core::sync::atomic::{AtomicU8, Ordering};

/// What the hooks need to know to tell one file from another.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileId {
    /// As `st_dev` encodes it.
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

/// How this kernel is asked: [`NULL_PATH`] until it faults on that, [`EMPTY_PATH`], or
/// [`NO_STATX`] once `statx` was refused (`ENOSYS`, or `EPERM` from a seccomp filter).
static HOW: AtomicU8 = AtomicU8::new(NULL_PATH);
const NULL_PATH: u8 = 0;
const EMPTY_PATH: u8 = 1;
const NO_STATX: u8 = 2;

/// The fields asked of `statx`: nothing with a timestamp in it.
const MASK: u32 = libc::STATX_INO | libc::STATX_NLINK;

/// The file `fd` refers to (raw calls: neither hooked nor allocating).
pub fn of_fd(fd: c_int) -> Option<FileId> {
    loop {
        let how = HOW.load(Ordering::Relaxed);
        let path = match how {
            NULL_PATH => ptr::null(),
            EMPTY_PATH => c"".as_ptr(),
            _ => return fstat(fd),
        };
        match statx(fd, path, libc::AT_EMPTY_PATH) {
            Ok(id) => return Some(id),
            // Only the path can fault: the buffer is ours.
            Err(libc::EFAULT) if how == NULL_PATH => HOW.store(EMPTY_PATH, Ordering::Relaxed),
            Err(e) if refused(e) => HOW.store(NO_STATX, Ordering::Relaxed),
            Err(_) => return None,
        }
    }
}

fn fstat(fd: c_int) -> Option<FileId> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `st` is a writable stat owned by this frame; the kernel validates `fd`.
    let rc = unsafe { libc::syscall(libc::SYS_fstat, fd, st.as_mut_ptr()) };
    // SAFETY: fstat succeeded and filled the structure (zeroed besides).
    (rc == 0).then(|| from_stat(&unsafe { st.assume_init() }))
}

/// The file `path` names now, following symbolic links as `stat` does.
///
/// # Safety
/// `path` is a readable NUL-terminated string.
pub unsafe fn of_path(path: *const c_char) -> Option<FileId> {
    if HOW.load(Ordering::Relaxed) != NO_STATX {
        match statx(libc::AT_FDCWD, path, 0) {
            Ok(id) => return Some(id),
            Err(e) if !refused(e) => return None,
            Err(_) => HOW.store(NO_STATX, Ordering::Relaxed),
        }
    }
    // SAFETY: the caller's contract.
    unsafe { stat(path) }
}

/// # Safety
/// As for [`of_path`].
unsafe fn stat(path: *const c_char) -> Option<FileId> {
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: the caller's path and our own stat buffer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            libc::AT_FDCWD,
            path,
            st.as_mut_ptr(),
            0,
        )
    };
    // SAFETY: the call succeeded and filled the structure (zeroed besides).
    (rc == 0).then(|| from_stat(&unsafe { st.assume_init() }))
}

/// Whether `statx` failed because it is not there or not allowed (rather than for the file).
fn refused(errno: c_int) -> bool {
    errno == libc::ENOSYS || errno == libc::EPERM
}

/// One raw `statx`, or its errno.
fn statx(dirfd: c_int, path: *const c_char, flags: c_int) -> Result<FileId, c_int> {
    // Left uninitialised: a successful statx writes the whole structure.
    let mut stx = MaybeUninit::<libc::statx>::uninit();
    // SAFETY: `path` is NULL (with `AT_EMPTY_PATH`) or NUL-terminated (callers' contract or a
    // literal), and `stx` a writable statx owned by this frame, as large as the kernel's.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_statx,
            dirfd,
            path,
            flags | libc::AT_STATX_SYNC_AS_STAT,
            MASK,
            stx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(crate::platform::errno::get());
    }
    // SAFETY: statx succeeded: the kernel copied out its whole `struct statx`.
    let stx = unsafe { stx.assume_init() };
    Ok(FileId {
        dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        ino: stx.stx_ino,
        nlink: u64::from(stx.stx_nlink),
    })
}

fn from_stat(st: &libc::stat) -> FileId {
    FileId {
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's identity by statx is what fstat says of it (same device encoding, inode and
    /// links), by descriptor (NULL or empty path) and by path, and the fallbacks give the same.
    #[test]
    fn agrees_with_fstat() {
        let path =
            std::ffi::CString::new(format!("/dev/shm/shmtrace-file-id-{}", std::process::id()))
                .unwrap();
        // SAFETY: a NUL-terminated path; the descriptor is ours and closed below.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                0o600,
            )
        };
        assert!(fd >= 0, "open: {}", std::io::Error::last_os_error());
        let mut st = MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: our descriptor and our buffer.
        let rc = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
        let by_fd = of_fd(fd);
        let by_empty_path = statx(fd, c"".as_ptr(), libc::AT_EMPTY_PATH).ok();
        let by_fstat = fstat(fd);
        // SAFETY: a NUL-terminated path.
        let (by_path, by_stat) = unsafe { (of_path(path.as_ptr()), stat(path.as_ptr())) };
        // SAFETY: our own name, removed before any assertion can fail.
        unsafe { libc::unlink(path.as_ptr()) };
        let unlinked = of_fd(fd);
        // SAFETY: a NUL-terminated path.
        let no_path = unsafe { of_path(path.as_ptr()) };
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        assert_eq!(rc, 0);
        // SAFETY: fstat succeeded.
        let want = from_stat(&unsafe { st.assume_init() });
        assert_eq!(want.nlink, 1);
        assert_eq!(by_fd, Some(want));
        assert_eq!(by_empty_path, Some(want));
        assert_eq!(by_fstat, Some(want));
        assert_eq!(by_path, Some(want));
        assert_eq!(by_stat, Some(want));
        // Unlinked: the descriptor still is the file, with no link left; the path is nothing.
        assert_eq!(unlinked, Some(FileId { nlink: 0, ..want }));
        assert_eq!(no_path, None);
        assert_eq!(of_fd(-1), None);
    }
}

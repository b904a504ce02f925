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

    /// Runs `check` in a child whose seccomp filter answers `statx` with `errno` (only when its
    /// path argument is NULL, if `null_path_only`: how a kernel before 6.11 answers a NULL
    /// path); `check`'s result is the child's exit status.
    fn in_child_refusing_statx(errno: c_int, null_path_only: bool, check: fn() -> bool) -> bool {
        const fn stmt(code: u32, k: u32) -> libc::sock_filter {
            libc::sock_filter {
                code: code as u16,
                jt: 0,
                jf: 0,
                k,
            }
        }
        const fn jeq(k: u32, jf: u8) -> libc::sock_filter {
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 0,
                jf,
                k,
            }
        }
        let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
        let ret = libc::BPF_RET | libc::BPF_K;
        // seccomp_data: nr at 0, args from 16, 8 bytes each (little-endian halves).
        let arg1 = |half: u32| 16 + 8 + 4 * half;
        let mut prog = vec![stmt(load, 0), jeq(libc::SYS_statx as u32, 0)];
        if null_path_only {
            prog[1].jf = 5;
            prog.extend([
                stmt(load, arg1(0)),
                jeq(0, 3),
                stmt(load, arg1(1)),
                jeq(0, 1),
            ]);
        } else {
            prog[1].jf = 1;
        }
        prog.push(stmt(ret, libc::SECCOMP_RET_ERRNO | errno as u32));
        prog.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: the child only makes raw calls, runs `check` (no allocation) and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: a filter program of ours, alive until the child exits.
            let ok = unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                    && libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &fprog as *const libc::sock_fprog,
                    ) == 0
            };
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(if ok && check() { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }

    /// What the child checks: `of_fd` and `of_path` of `/dev/null` agree with `fstat`, and the
    /// way of asking ended as `want`.
    fn answers_as_fstat_and_ends(want: u8) -> bool {
        // SAFETY: a literal path; the descriptor dies with the child.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        let truth = fstat(fd);
        truth.is_some()
            && of_fd(fd) == truth
            // SAFETY: a literal path.
            && unsafe { of_path(c"/dev/null".as_ptr()) } == truth
            && HOW.load(Ordering::Relaxed) == want
    }

    /// Without `statx` (refused by a seccomp filter, or missing: `ENOSYS`) the `fstat` family
    /// answers; a kernel that faults on a NULL path is asked with `""`.
    #[test]
    fn falls_back_when_statx_is_refused_or_a_null_path_faults() {
        assert!(in_child_refusing_statx(libc::EPERM, false, || {
            answers_as_fstat_and_ends(NO_STATX)
        }));
        assert!(in_child_refusing_statx(libc::ENOSYS, false, || {
            answers_as_fstat_and_ends(NO_STATX)
        }));
        assert!(in_child_refusing_statx(libc::EFAULT, true, || {
            answers_as_fstat_and_ends(EMPTY_PATH)
        }));
    }
}

//! Where glibc keeps a POSIX shared memory object: `/dev/shm/` followed by the name without
//! its leading slashes; and a named semaphore: `/dev/shm/sem.` followed by the same. Built on
//! the stack, so the hooks can ask about a name without allocating.

use core::ffi::{CStr, c_char, c_int};

use crate::platform::file_id;

const DIR: &[u8] = b"/dev/shm/";
/// What glibc puts before a semaphore's name.
const SEM_PREFIX: &[u8] = b"sem.";
/// `NAME_MAX`: glibc refuses longer names before any system call.
const NAME_MAX: usize = 255;

/// A NUL-terminated `/dev/shm/NAME` or `/dev/shm/sem.NAME`.
pub struct ShmPath {
    buf: [u8; DIR.len() + SEM_PREFIX.len() + NAME_MAX + 1],
}

impl ShmPath {
    /// The path of `name` as glibc's `shm_open` and `shm_unlink` form it, or the errno they
    /// answer an invalid name with (`EINVAL`: empty, too long, or a `/` after the leading
    /// ones).
    ///
    /// # Safety
    /// `name` is a readable NUL-terminated string (libc reads it the same way).
    pub unsafe fn of(name: *const c_char) -> Result<ShmPath, c_int> {
        // SAFETY: the caller's contract.
        let rest = unsafe { rest_of(name) }?;
        // glibc counts the terminating NUL against NAME_MAX.
        if rest.len() + 1 >= NAME_MAX {
            return Err(libc::EINVAL);
        }
        Ok(ShmPath::join(b"", rest))
    }

    /// The path of a semaphore `name` as glibc's `sem_open` and `sem_unlink` form it, or
    /// `EINVAL` for an invalid name (empty, a `/` after the leading ones, or longer than
    /// `NAME_MAX`; a name whose `sem.NAME` is longer is left to the kernel's `ENAMETOOLONG`,
    /// as glibc leaves it).
    ///
    /// # Safety
    /// As for [`ShmPath::of`].
    pub unsafe fn of_sem(name: *const c_char) -> Result<ShmPath, c_int> {
        // SAFETY: the caller's contract.
        let rest = unsafe { rest_of(name) }?;
        if rest.len() > NAME_MAX {
            return Err(libc::EINVAL);
        }
        Ok(ShmPath::join(SEM_PREFIX, rest))
    }

    fn join(prefix: &[u8], rest: &[u8]) -> ShmPath {
        let mut path = ShmPath {
            buf: [0; DIR.len() + SEM_PREFIX.len() + NAME_MAX + 1],
        };
        let (dir, tail) = path.buf.split_at_mut(DIR.len());
        dir.copy_from_slice(DIR);
        tail[..prefix.len()].copy_from_slice(prefix);
        tail[prefix.len()..prefix.len() + rest.len()].copy_from_slice(rest);
        path
    }

    pub fn as_ptr(&self) -> *const c_char {
        self.buf.as_ptr().cast()
    }

    /// Whether the name exists now (raw `faccessat`: neither hooked nor allocating).
    pub fn exists(&self) -> bool {
        // SAFETY: a NUL-terminated path in our own buffer.
        unsafe {
            libc::syscall(
                libc::SYS_faccessat,
                libc::AT_FDCWD,
                self.as_ptr(),
                libc::F_OK,
                0,
            ) == 0
        }
    }
}

/// The name without its leading slashes, or `EINVAL` when it is NULL, empty or holds another
/// slash.
///
/// # Safety
/// `name` is NULL or a readable NUL-terminated string.
unsafe fn rest_of<'a>(name: *const c_char) -> Result<&'a [u8], c_int> {
    if name.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: the caller's contract.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    let rest = &bytes[bytes.iter().take_while(|&&b| b == b'/').count()..];
    if rest.is_empty() || rest.contains(&b'/') {
        return Err(libc::EINVAL);
    }
    Ok(rest)
}

/// The inode `/dev/shm/NAME` (the name as `shm_open` was given it) refers to now, if any.
pub fn inode_of_name(name: &[u8]) -> Option<u64> {
    inode_of_path(name, false)
}

/// The inode `/dev/shm/sem.NAME` (the name as `sem_open` was given it) refers to now, if any.
pub fn inode_of_sem_name(name: &[u8]) -> Option<u64> {
    inode_of_path(name, true)
}

fn inode_of_path(name: &[u8], sem: bool) -> Option<u64> {
    let mut cstr = [0u8; NAME_MAX + 2];
    let n = name.len().min(NAME_MAX);
    cstr[..n].copy_from_slice(&name[..n]);
    // SAFETY: a NUL-terminated string in our own buffer.
    let path = unsafe {
        if sem {
            ShmPath::of_sem(cstr.as_ptr().cast())
        } else {
            ShmPath::of(cstr.as_ptr().cast())
        }
    }
    .ok()?;
    path.inode()
}

impl ShmPath {
    /// The inode the path refers to now, if it exists (a raw `statx` that leaves the file's
    /// timestamps unread: see `platform::file_id`).
    pub fn inode(&self) -> Option<u64> {
        // SAFETY: a NUL-terminated path in our own buffer.
        unsafe { file_id::of_path(self.as_ptr()) }.map(|id| id.ino)
    }
}

//! Where records go: a file descriptor written with one `write(2)` per record, so records from
//! threads and forked children never interleave (`O_APPEND` makes each write land whole at the
//! end of a file; a pipe or terminal keeps writes under `PIPE_BUF` whole).

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::platform::errno;

/// Longest `SHMTRACE_LOG` path accepted, NUL excluded.
pub const PATH_MAX: usize = 4096;

/// -1: logging off.
static FD: AtomicI32 = AtomicI32::new(-1);

/// The path as configured, `%p` unexpanded, kept so a forked child can open its own file.
struct Template {
    bytes: UnsafeCell<[u8; PATH_MAX]>,
    len: AtomicUsize,
}

// SAFETY: `bytes` is written only by `use_path`, which runs once during configuration before
// any reader can see a non-zero `len` (Release/Acquire on `len`), and afterwards only read.
unsafe impl Sync for Template {}

static TEMPLATE: Template = Template {
    bytes: UnsafeCell::new([0; PATH_MAX]),
    len: AtomicUsize::new(0),
};

pub fn use_stderr() {
    FD.store(libc::STDERR_FILENO, Ordering::Release);
}

pub fn disable() {
    FD.store(-1, Ordering::Release);
}

pub fn enabled() -> bool {
    FD.load(Ordering::Relaxed) >= 0
}

/// Opens the log file named by `template`; on failure returns the errno and changes nothing.
pub fn use_path(template: &[u8]) -> Result<(), i32> {
    if template.len() >= PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    // SAFETY: see `impl Sync for Template`: this is the single configuration-time writer.
    unsafe { (&mut *TEMPLATE.bytes.get())[..template.len()].copy_from_slice(template) };
    TEMPLATE.len.store(template.len(), Ordering::Release);
    let fd = open_template()?;
    FD.store(fd, Ordering::Release);
    Ok(())
}

fn template() -> &'static [u8] {
    let len = TEMPLATE.len.load(Ordering::Acquire);
    // SAFETY: the first `len` bytes were written before `len` was published and never change.
    unsafe { &(&*TEMPLATE.bytes.get())[..len.min(PATH_MAX)] }
}

/// In a forked child (async-signal-safe work only): a per-pid log gets a file of its own.
pub fn reopen_after_fork() {
    let template = template();
    if !template.windows(2).any(|w| w == b"%p") {
        return;
    }
    let old = FD.load(Ordering::Acquire);
    match open_template() {
        Ok(fd) => FD.store(fd, Ordering::Release),
        Err(_) => use_stderr(),
    }
    if old > libc::STDERR_FILENO {
        // SAFETY: `old` is the parent's log descriptor, inherited and owned by the shim.
        unsafe { libc::close(old) };
    }
}

fn open_template() -> Result<c_int, i32> {
    let mut path = [0u8; 2 * PATH_MAX];
    let len =
        expand(template(), crate::platform::process::pid(), &mut path).ok_or(libc::ENAMETOOLONG)?;
    if len >= path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    path[len] = 0;
    // O_NONBLOCK only for the open: a FIFO nobody reads would otherwise block the program
    // forever (it fails with ENXIO instead, and the log falls back to stderr).
    let flags = libc::O_WRONLY
        | libc::O_CREAT
        | libc::O_APPEND
        | libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK;
    // SAFETY: `path` is NUL-terminated; mode 0600 because a log may reveal a program's keys,
    // ids and addresses.
    let fd = unsafe { libc::open(path.as_ptr().cast(), flags, 0o600 as libc::c_uint) };
    if fd < 0 {
        return Err(errno::get());
    }
    // SAFETY: `fd` was just opened here; F_SETFL only changes its status flags.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_APPEND) };
    Ok(fd)
}

/// Writes `template` into `out` with every `%p` replaced by `pid`; `None` if it does not fit.
pub fn expand(template: &[u8], pid: i32, out: &mut [u8]) -> Option<usize> {
    let mut digits = [0u8; 12];
    let pid_text = decimal(pid, &mut digits);
    let mut len = 0;
    let mut rest = template;
    while let Some((&byte, tail)) = rest.split_first() {
        let piece: &[u8] = if byte == b'%' && tail.first() == Some(&b'p') {
            rest = &tail[1..];
            pid_text
        } else {
            rest = tail;
            core::slice::from_ref(&byte)
        };
        out.get_mut(len..len + piece.len())?.copy_from_slice(piece);
        len += piece.len();
    }
    Some(len)
}

fn decimal(value: i32, buf: &mut [u8; 12]) -> &[u8] {
    let mut n = value.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Writes one record to the configured log, if any.
pub fn write_record(bytes: &[u8]) {
    let fd = FD.load(Ordering::Acquire);
    if fd >= 0 {
        write_fd(fd, bytes);
    }
}

/// Writes all of `bytes`, retrying on `EINTR` and short writes; gives up on any other error
/// (a full disk or a closed descriptor must not disturb the program) and says whether all of
/// it was written.
pub fn write_fd(fd: c_int, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if errno::get() == libc::EINTR {
                continue;
            }
            return false;
        }
        bytes = bytes.get(n as usize..).unwrap_or(&[]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(template: &[u8], pid: i32) -> Option<String> {
        let mut out = [0u8; 64];
        let n = expand(template, pid, &mut out)?;
        Some(String::from_utf8(out[..n].to_vec()).unwrap())
    }

    #[test]
    fn percent_p_becomes_the_pid_everywhere() {
        assert_eq!(expanded(b"/tmp/log.%p", 4242).unwrap(), "/tmp/log.4242");
        assert_eq!(expanded(b"%p-%p", 7).unwrap(), "7-7");
        assert_eq!(expanded(b"plain", 7).unwrap(), "plain");
        assert_eq!(expanded(b"100%", 7).unwrap(), "100%");
    }

    #[test]
    fn too_long_expansion_is_refused() {
        let long = [b'x'; 70];
        assert_eq!(expanded(&long, 1), None);
    }
}

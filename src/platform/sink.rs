//! Where records go: a text or JSON log in a regular file is written through a shared mapping
//! of the file (`line_log`: one copy per record, no system call; records from threads and
//! processes never interleave, each has its own range of the file); stderr, a pipe or a
//! terminal gets one `write(2)` per record (a pipe or terminal keeps writes under `PIPE_BUF`
//! whole; `O_APPEND` keeps a file's whole); or, with `SHMTRACE_FORMAT=binary`, the binary log
//! mapped into memory (`mapped_log`).

use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use crate::platform::{errno, line_log, mapped_log};
use shmtrace_core::trace::event::{Event, Func, Phase};
use shmtrace_core::trace::format::Format;
use shmtrace_core::trace::linebuf::LineBuf;

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

#[inline]
pub fn enabled() -> bool {
    FD.load(Ordering::Relaxed) >= 0 || mapped_log::active()
}

/// Whether calls go to the binary log: then every call is recorded when it starts (see
/// [`call`]), not only the calls that may block.
#[inline]
pub fn binary() -> bool {
    mapped_log::active()
}

/// A call into the binary log: `Phase::Enter` when it starts, `Phase::Exit` when it returned
/// (completing the record its start wrote).
#[inline]
pub fn call(event: &Event) {
    match event.phase {
        Phase::Enter => mapped_log::call_started(event),
        Phase::Exit => mapped_log::call_returned(event),
    }
}

/// [`call`] for an event of `func`, with that function's writer alone inlined (see
/// `recorder::emit_as`).
#[inline(always)]
pub fn call_as(func: Func, event: &Event) {
    match event.phase {
        Phase::Enter => mapped_log::call_started_as(func, event),
        Phase::Exit => mapped_log::call_returned_as(func, event),
    }
}

/// A mapping call into the binary log without an event, as it starts (see [`call`]).
#[inline(always)]
pub fn bare_started(func: Func, call: &mapped_log::BareCall) {
    mapped_log::bare_started(func, call);
}

/// The end of a mapping call [`bare_started`] wrote the start of.
#[inline(always)]
pub fn bare_returned(func: Func, call: &mapped_log::BareCall) {
    mapped_log::bare_returned(func, call);
}

/// Opens the binary log named by `template` (`%p` for the pid); on failure returns the errno
/// and changes nothing.
pub fn use_binary_path(template: &[u8]) -> Result<(), i32> {
    set_template(template)?;
    with_expanded_path(mapped_log::open)
}

/// Opens the log file named by `template`; on failure returns the errno and changes nothing.
pub fn use_path(template: &[u8]) -> Result<(), i32> {
    set_template(template)?;
    use_file(open_template()?);
    Ok(())
}

/// Records go to `fd`: through a mapping when it is a regular file (see `open_template`).
fn use_file((fd, regular): (c_int, bool)) {
    if regular {
        line_log::open(fd, per_pid());
    }
    FD.store(fd, Ordering::Release);
}

fn set_template(template: &[u8]) -> Result<(), i32> {
    if template.len() >= PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    // SAFETY: see `impl Sync for Template`: this is the single configuration-time writer.
    unsafe { (&mut *TEMPLATE.bytes.get())[..template.len()].copy_from_slice(template) };
    TEMPLATE.len.store(template.len(), Ordering::Release);
    Ok(())
}

/// Whether the path names each process's own file (`%p`).
fn per_pid() -> bool {
    template().windows(2).any(|w| w == b"%p")
}

fn template() -> &'static [u8] {
    let len = TEMPLATE.len.load(Ordering::Acquire);
    // SAFETY: the first `len` bytes were written before `len` was published and never change.
    unsafe { &(&*TEMPLATE.bytes.get())[..len.min(PATH_MAX)] }
}

/// In a forked child (async-signal-safe work only): a per-pid log gets a file of its own.
pub fn reopen_after_fork() {
    let per_pid = per_pid();
    if mapped_log::active() {
        // Without `%p`, parent and child share the file: its cursor is shared memory.
        if !per_pid {
            mapped_log::continue_in_child();
            return;
        }
        if with_expanded_path(|path| {
            mapped_log::reopen_in_child(Some(path));
            Ok(())
        })
        .is_err()
        {
            mapped_log::reopen_in_child(None);
        }
        if !mapped_log::active() {
            use_stderr();
        }
        return;
    }
    if !per_pid {
        // Parent and child share the file; each writes in chunks of its own.
        line_log::continue_in_child();
        return;
    }
    let old = FD.load(Ordering::Acquire);
    line_log::drop_in_child();
    match open_template() {
        Ok(opened) => use_file(opened),
        Err(_) => use_stderr(),
    }
    if old > libc::STDERR_FILENO {
        // SAFETY: `old` is the parent's log descriptor, inherited and owned by the shim.
        unsafe { libc::close(old) };
    }
}

/// Calls `f` with the template, `%p` expanded, NUL-terminated (the NUL included).
fn with_expanded_path<T>(f: impl FnOnce(&[u8]) -> Result<T, i32>) -> Result<T, i32> {
    // A short path in a small buffer: a forked child runs this on its parent's stack pages,
    // and each page a large buffer touched (zeroing it, or the frame's stack probes) was a
    // page copied.
    let mut short = [0u8; 256];
    match expanded_into(&mut short) {
        Some(len) => f(&short[..=len]),
        None => with_long_path(f),
    }
}

#[inline(never)]
fn with_long_path<T>(f: impl FnOnce(&[u8]) -> Result<T, i32>) -> Result<T, i32> {
    let mut path = [0u8; 2 * PATH_MAX];
    let len = expanded_into(&mut path).ok_or(libc::ENAMETOOLONG)?;
    f(&path[..=len])
}

/// The template with `%p` expanded, NUL-terminated in `path`; its length without the NUL, or
/// `None` when it does not fit.
fn expanded_into(path: &mut [u8]) -> Option<usize> {
    let len = expand(template(), crate::platform::process::pid(), path)?;
    *path.get_mut(len)? = 0;
    Some(len)
}

/// Opens the log file; the descriptor, and whether it is a regular file opened for reading
/// too (what a shared mapping needs).
fn open_template() -> Result<(c_int, bool), i32> {
    with_expanded_path(open_path)
}

fn open_path(path: &[u8]) -> Result<(c_int, bool), i32> {
    // O_NONBLOCK only for the open: a FIFO nobody reads would otherwise block the program
    // forever (it fails with ENXIO instead, and the log falls back to stderr).
    let flags =
        libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    // A regular file is opened for reading and writing, to be mapped; anything else (a FIFO,
    // which O_RDWR would open without a reader, a device, a file we may only write) as before.
    let fd = open_log(path, flags | libc::O_RDWR);
    if fd >= 0 {
        if is_regular(fd) {
            return Ok((fd, true));
        }
        // SAFETY: opened just above, not published.
        unsafe { libc::close(fd) };
    }
    let fd = open_log(path, flags | libc::O_WRONLY);
    if fd < 0 {
        return Err(errno::get());
    }
    Ok((fd, false))
}

fn open_log(path: &[u8], flags: c_int) -> c_int {
    // SAFETY: `path` is NUL-terminated; mode 0600 because a log may reveal a program's keys,
    // ids and addresses.
    let fd = unsafe { libc::open(path.as_ptr().cast(), flags, 0o600 as libc::c_uint) };
    if fd >= 0 {
        // SAFETY: `fd` was just opened here; F_SETFL only changes its status flags (the
        // non-blocking mode was for the open only).
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_APPEND) };
    }
    fd
}

fn is_regular(fd: c_int) -> bool {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `fd` is open and `st` writable.
    unsafe { libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG }
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

/// Writes one record to the configured log, if any. The binary log keeps it as a record of
/// kind [`KIND_OTHER`](shmtrace_core::trace::binary::KIND_OTHER) shown as it is in both formats;
/// [`write_other`] gives it its proper rendering in each.
pub fn write_record(bytes: &[u8]) {
    if mapped_log::active() {
        mapped_log::other(shmtrace_core::trace::binary::KIND_OTHER, bytes, bytes);
        return;
    }
    write_line(bytes);
}

/// One text or JSON record (or report) to the log file or descriptor.
fn write_line(bytes: &[u8]) {
    if line_log::active() {
        line_log::append(bytes);
        return;
    }
    let fd = FD.load(Ordering::Acquire);
    if fd >= 0 {
        write_fd(fd, bytes);
    }
}

/// At exit: a log file is left without blank lines after the last record where it can be.
pub fn finish() {
    line_log::give_back_rest();
}

/// A buffer a record is rendered into: a `String` (any length, private heap) or a `LineBuf`
/// (fixed, on the stack: for async-signal-safe paths).
pub trait RecordBuf: core::fmt::Write {
    fn empty() -> Self;
    fn bytes(&self) -> &[u8];
}

impl RecordBuf for String {
    fn empty() -> Self {
        String::new()
    }
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl RecordBuf for LineBuf {
    fn empty() -> Self {
        LineBuf::new()
    }
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A record that is not a call (start, fork, report, an audit finding...): `render` writes it,
/// newline-terminated, in the format asked. A text or JSON log gets it in its own format; the
/// binary log keeps both renderings under `kind` (see `trace::binary::KIND_*`; a new kind
/// needs no new layout), so `shmtrace decode` can print either. Nothing happens when logging
/// is off.
pub fn write_other<B: RecordBuf>(kind: u32, mut render: impl FnMut(Format, &mut B)) {
    if mapped_log::active() {
        let mut text = B::empty();
        render(Format::Text, &mut text);
        let mut json = B::empty();
        render(Format::Json, &mut json);
        mapped_log::other(kind, text.bytes(), json.bytes());
        return;
    }
    if FD.load(Ordering::Acquire) >= 0 {
        let mut out = B::empty();
        render(crate::platform::config::format(), &mut out);
        write_line(out.bytes());
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

    /// The only test that sets the template (a global).
    #[test]
    fn paths_short_and_long_expand_whole_with_their_nul() {
        let pid = crate::platform::process::pid();
        let expanded = |template: &[u8]| {
            set_template(template).unwrap();
            with_expanded_path(|p| Ok(p.to_vec()))
        };
        let short = b"/tmp/log.%p".to_vec();
        let long = [&[b'd'; 300][..], b"/log.%p"].concat();
        for template in [short, long] {
            let pid_text = pid.to_string();
            let text = String::from_utf8(template.clone()).unwrap();
            let mut want = text.replace("%p", &pid_text).into_bytes();
            want.push(0);
            assert_eq!(expanded(&template), Ok(want), "{}", template.len());
        }
        let too_long = [
            &[b'd'; PATH_MAX - 1][..],
            b"%p%p%p%p%p%p%p%p%p%p%p%p%p%p%p%p",
        ]
        .concat();
        assert!(set_template(&too_long).is_err());
        // As long as it fits with its NUL in twice PATH_MAX, whatever the pid's digits.
        let fills = [&[b'%', b'p'][..]; 2047].concat();
        let len = 2047 * pid.to_string().len();
        let want = if len < 2 * PATH_MAX {
            Ok(len + 1)
        } else {
            Err(libc::ENAMETOOLONG)
        };
        assert_eq!(expanded(&fills).map(|p| p.len()), want);
    }

    #[test]
    fn too_long_expansion_is_refused() {
        let long = [b'x'; 70];
        assert_eq!(expanded(&long, 1), None);
    }
}

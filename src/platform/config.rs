//! Settings from the environment. Bad values never abort: one warning line, then the default.
//!
//! Configuration happens once, by the constructor or by the first hook that runs before it
//! (another library's constructor may call `mmap` first); hooks running while it is under way
//! forward untracked rather than wait.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::platform::sink;
use shmtrace_core::trace::event::STACK_MAX;
use shmtrace_core::trace::format::Format;
use shmtrace_core::trace::linebuf::LineBuf;

/// Where the log goes, as parsed from `SHMTRACE_LOG`.
#[derive(Debug, PartialEq, Eq)]
pub enum Log<'a> {
    Stderr,
    Off,
    /// A path in which `%p` stands for the pid.
    Path(&'a [u8]),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Settings<'a> {
    pub log: Log<'a>,
    pub format: Format,
    /// `SHMTRACE_FORMAT=binary` (with a file to write): calls go to the binary log, which
    /// `shmtrace decode` turns into `format`'s records (text here: the fallback's format).
    pub binary: bool,
    /// `SHMTRACE_EXITCODE`: the exit status of a process whose report is not clean; 0 = leave
    /// the status alone.
    pub exit_code: i32,
    /// `SHMTRACE_STACK`: how many return addresses above the caller each record keeps
    /// (0..=[`STACK_MAX`]); 0 = none, and no unwinding at all.
    pub stack: u8,
}

/// Why a setting was not taken as given.
#[derive(Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    UnknownFormat(&'a [u8]),
    BinaryNeedsFile,
    BadExitCode(&'a [u8]),
    BadStack(&'a [u8]),
    PathTooLong,
    SecureExecution,
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownFormat(v) => write!(
                f,
                "SHMTRACE_FORMAT={} is not text, json or binary; using text",
                Lossy(v)
            ),
            Warning::BinaryNeedsFile => f.write_str(
                "SHMTRACE_FORMAT=binary needs a file (SHMTRACE_LOG=PATH); using text on stderr",
            ),
            Warning::BadExitCode(v) => write!(
                f,
                "SHMTRACE_EXITCODE={} is not a number from 1 to 255; the exit status is left alone",
                Lossy(v)
            ),
            Warning::BadStack(v) => write!(
                f,
                "SHMTRACE_STACK={} is not a number from 0 to {STACK_MAX}; no stacks are recorded",
                Lossy(v)
            ),
            Warning::PathTooLong => write!(
                f,
                "SHMTRACE_LOG is longer than {} bytes; logging to stderr",
                sink::PATH_MAX
            ),
            Warning::SecureExecution => f.write_str(
                "SHMTRACE_LOG is ignored in a setuid/setcap (secure-execution) program; logging to stderr",
            ),
        }
    }
}

/// Bytes from the environment shown as text, non-UTF-8 bytes as `?`.
pub struct Lossy<'a>(pub &'a [u8]);

impl fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_char('?')?;
            }
        }
        Ok(())
    }
}

/// Interprets the raw variable values. `secure` is true in setuid/setcap programs, where an
/// environment-chosen path could make a privileged program write where its user cannot.
pub fn parse<'a>(
    log: Option<&'a [u8]>,
    format: Option<&'a [u8]>,
    exit_code: Option<&'a [u8]>,
    stack: Option<&'a [u8]>,
    secure: bool,
    mut warn: impl FnMut(Warning<'a>),
) -> Settings<'a> {
    let mut binary = false;
    let format = match format {
        None | Some(b"") | Some(b"text") => Format::Text,
        Some(b"json") => Format::Json,
        Some(b"binary") => {
            binary = true;
            Format::Text
        }
        Some(other) => {
            warn(Warning::UnknownFormat(other));
            Format::Text
        }
    };
    let log_var = log;
    let log = match log {
        None | Some(b"") | Some(b"stderr") => Log::Stderr,
        Some(b"off") => Log::Off,
        Some(_) if secure => {
            warn(Warning::SecureExecution);
            Log::Stderr
        }
        Some(path) if path.len() >= sink::PATH_MAX => {
            warn(Warning::PathTooLong);
            Log::Stderr
        }
        Some(path) => Log::Path(path),
    };
    if binary && !matches!(log, Log::Path(_)) {
        // Off needs no file; stderr gets text. A path refused above has had its warning.
        if matches!(log_var, None | Some(b"") | Some(b"stderr")) {
            warn(Warning::BinaryNeedsFile);
        }
        binary = false;
    }
    let exit_code = match exit_code {
        None | Some(b"") => 0,
        Some(v) => match core::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u8>().ok())
        {
            Some(code) => i32::from(code),
            None => {
                warn(Warning::BadExitCode(v));
                0
            }
        },
    };
    let stack = match stack {
        None | Some(b"") => 0,
        Some(v) => match core::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u8>().ok())
            .filter(|n| usize::from(*n) <= STACK_MAX)
        {
            Some(n) => n,
            None => {
                warn(Warning::BadStack(v));
                0
            }
        },
    };
    Settings {
        log,
        format,
        binary,
        exit_code,
        stack,
    }
}

const UNCONFIGURED: u8 = 0;
const CONFIGURING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNCONFIGURED);
static FORMAT: AtomicU8 = AtomicU8::new(0);
static EXIT_CODE: AtomicI32 = AtomicI32::new(0);
static STACK: AtomicU8 = AtomicU8::new(0);

/// What the audit reads from the environment, handed to the layer above by [`ensure`] (the
/// audit checks the values itself).
pub struct AuditEnv {
    pub block_warn_ms: Option<&'static [u8]>,
    pub suppress: Option<&'static [u8]>,
    /// A setuid/setcap program: files named by the environment are not read.
    pub secure: bool,
}

/// The settings the layers above apply themselves, handed up by [`ensure`].
pub struct Above {
    pub audit: AuditEnv,
    /// `SHMTRACE_LEAKS=all`: still reachable attachments and mappings count as leaks too.
    pub count_reachable: bool,
}

/// True once settings are in force. The first caller configures, and hands the settings of the
/// layers above to `apply` before any other caller sees them in force; concurrent callers get
/// false and forward untracked meanwhile (configuration takes microseconds and never blocks).
#[inline(always)]
pub fn ensure(apply: impl FnOnce(Above)) -> bool {
    match STATE.load(Ordering::Acquire) {
        READY => true,
        CONFIGURING => false,
        _ => {
            if STATE
                .compare_exchange(
                    UNCONFIGURED,
                    CONFIGURING,
                    Ordering::Acquire,
                    Ordering::Acquire,
                )
                .is_err()
            {
                return STATE.load(Ordering::Acquire) == READY;
            }
            apply(configure());
            STATE.store(READY, Ordering::Release);
            true
        }
    }
}

pub fn exit_code() -> i32 {
    EXIT_CODE.load(Ordering::Relaxed)
}

/// `SHMTRACE_STACK`: frames to record above each caller; 0 (the default) means none. One
/// relaxed load: the whole cost of the feature for a hook when it is off.
#[inline(always)]
pub fn stack_depth() -> usize {
    usize::from(STACK.load(Ordering::Relaxed))
}

pub fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == 1 {
        Format::Json
    } else {
        Format::Text
    }
}

fn configure() -> Above {
    let secure = {
        // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process.
        unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
    };
    let settings = parse(
        env(c"SHMTRACE_LOG"),
        env(c"SHMTRACE_FORMAT"),
        env(c"SHMTRACE_EXITCODE"),
        env(c"SHMTRACE_STACK"),
        secure,
        warn,
    );
    FORMAT.store(u8::from(settings.format == Format::Json), Ordering::Relaxed);
    EXIT_CODE.store(settings.exit_code, Ordering::Relaxed);
    STACK.store(settings.stack, Ordering::Relaxed);
    allocators_configure(env(c"SHMTRACE_ALLOCATORS"));
    match settings.log {
        Log::Stderr => sink::use_stderr(),
        Log::Off => sink::disable(),
        Log::Path(path) if settings.binary => {
            if let Err(errno) = sink::use_binary_path(path) {
                let why = match errno {
                    libc::EILSEQ => "it is not a shmtrace binary log of this version",
                    e => shmtrace_core::trace::errnos::message(e).unwrap_or("unknown error"),
                };
                warn_line(format_args!(
                    "cannot open SHMTRACE_LOG={} as a binary log ({why}); logging text to stderr",
                    Lossy(path),
                ));
                sink::use_stderr();
            }
        }
        Log::Path(path) => {
            if let Err(errno) = sink::use_path(path) {
                warn_line(format_args!(
                    "cannot open SHMTRACE_LOG={} ({}); logging to stderr",
                    Lossy(path),
                    shmtrace_core::trace::errnos::message(errno).unwrap_or("unknown error")
                ));
                sink::use_stderr();
            }
        }
    }
    let leaks = env(c"SHMTRACE_LEAKS");
    let count_reachable = leaks_all(leaks).unwrap_or_else(|value| {
        warn_line(format_args!(
            "SHMTRACE_LEAKS={} is not `lost` or `all`; only lost attachments and mappings count \
             as leaks",
            Lossy(value)
        ));
        false
    });
    Above {
        audit: AuditEnv {
            block_warn_ms: env(c"SHMTRACE_BLOCK_WARN_MS"),
            suppress: env(c"SHMTRACE_SUPPRESS"),
            secure,
        },
        count_reachable,
    }
}

/// `SHMTRACE_ALLOCATORS` as given, kept for the report (which parses it again, off the hot
/// path); a malformed value gets its warning now and is dropped.
static ALLOCATORS_PTR: core::sync::atomic::AtomicPtr<u8> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());
static ALLOCATORS_LEN: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

fn allocators_configure(value: Option<&'static [u8]>) {
    use shmtrace_core::allocators::{Allocators, MALFORMED};
    let Some(value) = value else { return };
    if Allocators::parse(Some(value)).is_err() {
        warn_line(format_args!(
            "SHMTRACE_ALLOCATORS={} {MALFORMED}",
            Lossy(value)
        ));
        return;
    }
    ALLOCATORS_LEN.store(value.len(), Ordering::Relaxed);
    ALLOCATORS_PTR.store(value.as_ptr().cast_mut(), Ordering::Release);
}

/// `SHMTRACE_LEAKS`: true for `all`, false for `lost` (or unset, or empty); anything else is
/// returned for the warning.
fn leaks_all(value: Option<&[u8]>) -> Result<bool, &[u8]> {
    match value.map(<[u8]>::trim_ascii) {
        None | Some(b"" | b"lost") => Ok(false),
        Some(b"all") => Ok(true),
        Some(_) => Err(value.unwrap_or_default()),
    }
}

/// `SHMTRACE_ALLOCATORS` if set and well-formed.
pub fn allocators() -> Option<&'static [u8]> {
    let ptr = ALLOCATORS_PTR.load(Ordering::Acquire);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: ptr and len were stored together from one environment string, which lives as
    // long as `env` assumes (see there); the length was stored before the pointer.
    Some(unsafe { core::slice::from_raw_parts(ptr, ALLOCATORS_LEN.load(Ordering::Relaxed)) })
}

fn env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: getenv reads the environment without allocating; the returned string lives as
    // long as the environment entry, which the program does not free behind our back in
    // practice (setenv keeps old strings alive).
    let value = unsafe { libc::getenv(name.as_ptr()) };
    if value.is_null() {
        return None;
    }
    // SAFETY: a non-NULL getenv result is a NUL-terminated string.
    Some(unsafe { core::ffi::CStr::from_ptr(value) }.to_bytes())
}

fn warn(w: Warning<'_>) {
    warn_line(format_args!("{w}"));
}

/// One warning line on stderr, one `write(2)`.
pub fn warn_line(args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new();
    let _ = line.write_str("shmtrace: warning: ");
    let _ = line.write_fmt(args);
    sink::write_fd(libc::STDERR_FILENO, line.finish_line());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_collect<'a>(
        log: Option<&'a [u8]>,
        format: Option<&'a [u8]>,
        secure: bool,
    ) -> (Settings<'a>, Vec<Warning<'a>>) {
        let mut warnings = Vec::new();
        let s = parse(log, format, None, None, secure, |w| warnings.push(w));
        (s, warnings)
    }

    #[test]
    fn defaults_are_stderr_and_text() {
        let (s, w) = parse_collect(None, None, false);
        assert_eq!(
            s,
            Settings {
                log: Log::Stderr,
                format: Format::Text,
                binary: false,
                exit_code: 0,
                stack: 0,
            }
        );
        assert!(w.is_empty());
    }

    #[test]
    fn recognised_values() {
        let (s, w) = parse_collect(Some(b"off"), Some(b"json"), false);
        assert_eq!(
            s,
            Settings {
                log: Log::Off,
                format: Format::Json,
                binary: false,
                exit_code: 0,
                stack: 0,
            }
        );
        assert!(w.is_empty());
        let (s, _) = parse_collect(Some(b"/tmp/t.%p.log"), Some(b"text"), false);
        assert_eq!(s.log, Log::Path(b"/tmp/t.%p.log"));
    }

    #[test]
    fn unknown_format_warns_once_and_uses_text() {
        let (s, w) = parse_collect(None, Some(b"xml"), false);
        assert_eq!(s.format, Format::Text);
        assert_eq!(w, vec![Warning::UnknownFormat(b"xml")]);
        let mut line = String::new();
        write!(line, "{}", w[0]).unwrap();
        assert_eq!(
            line,
            "SHMTRACE_FORMAT=xml is not text, json or binary; using text"
        );
    }

    #[test]
    fn binary_needs_a_file_else_one_warning_and_text() {
        let (s, w) = parse_collect(Some(b"/tmp/t.%p.bin"), Some(b"binary"), false);
        assert!(s.binary && w.is_empty());
        assert_eq!(s.log, Log::Path(b"/tmp/t.%p.bin"));
        for log in [None, Some(&b"stderr"[..]), Some(b"")] {
            let (s, w) = parse_collect(log, Some(b"binary"), false);
            assert_eq!(
                (s.binary, s.format, &s.log),
                (false, Format::Text, &Log::Stderr)
            );
            assert_eq!(w, vec![Warning::BinaryNeedsFile], "{log:?}");
        }
        let (s, w) = parse_collect(Some(b"off"), Some(b"binary"), false);
        assert!(!s.binary && w.is_empty() && s.log == Log::Off);
        // One warning, not two, when the path itself is refused.
        let (s, w) = parse_collect(Some(b"/x"), Some(b"binary"), true);
        assert!(!s.binary);
        assert_eq!(w, vec![Warning::SecureExecution]);
    }

    #[test]
    fn secure_execution_ignores_paths_but_honours_off() {
        let (s, w) = parse_collect(Some(b"/etc/evil"), None, true);
        assert_eq!(s.log, Log::Stderr);
        assert_eq!(w, vec![Warning::SecureExecution]);
        let (s, w) = parse_collect(Some(b"off"), None, true);
        assert_eq!(s.log, Log::Off);
        assert!(w.is_empty());
    }

    #[test]
    fn overlong_path_falls_back_to_stderr() {
        let long = vec![b'a'; sink::PATH_MAX];
        let (s, w) = parse_collect(Some(&long), None, false);
        assert_eq!(s.log, Log::Stderr);
        assert_eq!(w, vec![Warning::PathTooLong]);
    }

    #[test]
    fn exit_code_is_a_status_from_1_to_255_or_a_warning() {
        let code = |v: &'static [u8]| {
            let mut warnings = Vec::new();
            let s = parse(None, None, Some(v), None, false, |w| warnings.push(w));
            (s.exit_code, warnings.len())
        };
        assert_eq!(code(b"42"), (42, 0));
        assert_eq!(code(b"0"), (0, 0));
        assert_eq!(code(b"256"), (0, 1));
        assert_eq!(code(b"-1"), (0, 1));
        assert_eq!(code(b"yes"), (0, 1));
    }

    #[test]
    fn stack_depth_is_0_to_16_or_one_warning_and_none() {
        let depth = |v: Option<&'static [u8]>| {
            let mut warnings = Vec::new();
            let s = parse(None, None, None, v, false, |w| warnings.push(w));
            (s.stack, warnings)
        };
        assert_eq!(depth(None), (0, vec![]));
        assert_eq!(depth(Some(b"")), (0, vec![]));
        assert_eq!(depth(Some(b"0")), (0, vec![]));
        assert_eq!(depth(Some(b"1")), (1, vec![]));
        assert_eq!(depth(Some(b"16")), (16, vec![]));
        for bad in [&b"17"[..], b"-1", b"256", b"3 ", b"deep", b"0x4", b"\xff"] {
            assert_eq!(
                depth(Some(bad)),
                (0, vec![Warning::BadStack(bad)]),
                "{bad:?}"
            );
        }
        let mut line = String::new();
        write!(line, "{}", Warning::BadStack(b"17")).unwrap();
        assert_eq!(
            line,
            "SHMTRACE_STACK=17 is not a number from 0 to 16; no stacks are recorded"
        );
    }

    #[test]
    fn non_utf8_values_are_shown_readably() {
        let mut out = String::new();
        write!(out, "{}", Lossy(b"a\xffb")).unwrap();
        assert_eq!(out, "a?b");
    }

    #[test]
    fn leaks_is_lost_or_all_else_refused() {
        assert_eq!(leaks_all(Some(b"all")), Ok(true));
        assert_eq!(leaks_all(Some(b" lost ")), Ok(false));
        assert_eq!(leaks_all(None), Ok(false), "unset is lost");
        assert_eq!(leaks_all(Some(b"")), Ok(false));
        assert_eq!(leaks_all(Some(b"some")), Err(&b"some"[..]));
    }
}

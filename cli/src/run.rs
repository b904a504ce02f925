//! Running a program under the shim: find the library, make the run directory, start the
//! program with the shim's environment, wait for it like system(3) does (SIGINT and SIGQUIT
//! ignored here, so that a Ctrl-C reaches the program and the report still follows).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::args::{RunOptions, display};
use crate::runinfo::{RunInfo, Status, now_micros};

/// A failure before the program ran, with the exit status it warrants.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub status: i32,
}

impl Failure {
    fn usage(message: String) -> Failure {
        Failure { message, status: 2 }
    }
}

/// What the run left for the report.
pub struct Finished {
    pub run_dir: PathBuf,
    /// The run directory as the user named it (or the default, relative), for messages.
    pub run_dir_shown: PathBuf,
    pub info: RunInfo,
    pub status: Status,
}

/// `--lib`, else `DIR_OF_EXE/libshmtrace.so`, else `DIR_OF_EXE/../lib/libshmtrace.so.0`.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    let chosen = match explicit {
        Some(path) => {
            if !path.is_file() {
                return Err(Failure::usage(format!(
                    "--lib {}: no such file",
                    path.display()
                )));
            }
            path.to_path_buf()
        }
        None => {
            let exe = std::env::current_exe().map_err(|e| {
                Failure::usage(format!("cannot locate the shmtrace executable: {e}"))
            })?;
            let dir = exe.parent().unwrap_or(Path::new("/"));
            let beside = dir.join("libshmtrace.so");
            let installed = dir.join("../lib/libshmtrace.so.0");
            if beside.is_file() {
                beside
            } else if installed.is_file() {
                installed
            } else {
                return Err(Failure::usage(format!(
                    "cannot find libshmtrace.so: looked for {} and {}; build it with \
                     `make lib` or name it with --lib PATH",
                    beside.display(),
                    installed.display()
                )));
            }
        }
    };
    let lib = chosen
        .canonicalize()
        .map_err(|e| Failure::usage(format!("{}: {e}", chosen.display())))?;
    let text = lib.to_string_lossy();
    if text.contains([' ', ':', '\t', '\n']) {
        return Err(Failure::usage(format!(
            "{}: LD_PRELOAD cannot carry a path with spaces or colons; link or copy the \
             library to another path and use --lib",
            lib.display()
        )));
    }
    Ok(lib)
}

/// Creates the run directory (mode 0700). An existing directory is accepted only if it holds
/// no log yet: the shim appends, and old logs would mix with the new run's.
fn make_run_dir(out: Option<&Path>) -> Result<(PathBuf, PathBuf, bool), Failure> {
    let shown = match out {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from(format!("shmtrace.{}", std::process::id())),
    };
    let existed = shown.exists();
    let made = fs::DirBuilder::new()
        .recursive(out.is_some())
        .mode(0o700)
        .create(&shown);
    if let Err(e) = made
        && !(existed && e.kind() == io::ErrorKind::AlreadyExists)
    {
        let hint = if out.is_none() {
            " (choose one with --out DIR)"
        } else {
            ""
        };
        return Err(Failure::usage(format!(
            "cannot create the run directory {}: {e}{hint}",
            shown.display()
        )));
    }
    let created = !existed;
    if !shown.is_dir() {
        return Err(Failure::usage(format!(
            "{}: exists and is not a directory",
            shown.display()
        )));
    }
    let logs = crate::logs::jsonl_in(&shown)
        .map_err(|e| Failure::usage(format!("{}: {e}", shown.display())))?;
    if !logs.is_empty() {
        return Err(Failure::usage(format!(
            "{}: already holds logs of another run; choose an empty directory with --out",
            shown.display()
        )));
    }
    let abs = shown
        .canonicalize()
        .map_err(|e| Failure::usage(format!("{}: {e}", shown.display())))?;
    if abs.to_string_lossy().contains('%') {
        return Err(Failure::usage(format!(
            "{}: the shim expands %p in log paths; choose a directory without '%'",
            abs.display()
        )));
    }
    Ok((abs, shown, created))
}

/// SIGINT and SIGQUIT ignored in shmtrace while the program runs; restored on drop.
struct IgnoreInterrupts {
    saved: [(libc::c_int, libc::sigaction); 2],
}

impl IgnoreInterrupts {
    fn new() -> IgnoreInterrupts {
        let mut saved = [libc::SIGINT, libc::SIGQUIT].map(|sig| {
            // SAFETY: an all-zero sigaction is a valid value to be overwritten.
            (sig, unsafe { std::mem::zeroed::<libc::sigaction>() })
        });
        for (sig, old) in &mut saved {
            // SAFETY: as above.
            let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
            ignore.sa_sigaction = libc::SIG_IGN;
            // SAFETY: valid signal number and pointers to initialised sigaction structs.
            unsafe { libc::sigaction(*sig, &ignore, old) };
        }
        IgnoreInterrupts { saved }
    }

    /// The signals the program must get with their default action (not those shmtrace itself
    /// was started with ignored: those stay ignored, as they would without shmtrace).
    fn to_reset_in_child(&self) -> Vec<libc::c_int> {
        self.saved
            .iter()
            .filter(|(_, old)| old.sa_sigaction != libc::SIG_IGN)
            .map(|(sig, _)| *sig)
            .collect()
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        for (sig, old) in &self.saved {
            // SAFETY: restores the disposition saved by `new` for the same signal.
            unsafe { libc::sigaction(*sig, old, std::ptr::null_mut()) };
        }
    }
}

fn preload_value(lib: &Path) -> OsString {
    let mut value = lib.as_os_str().to_os_string();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        value.push(" ");
        value.push(existing);
    }
    value
}

fn status_of(status: ExitStatus) -> Status {
    match (status.code(), status.signal()) {
        (Some(code), _) => Status::Exited(code),
        (None, Some(signo)) => Status::Signaled {
            signo,
            core_dumped: status.core_dumped(),
        },
        // Stopped or continued: `wait` does not report those.
        (None, None) => Status::Exited(0),
    }
}

/// Runs the program to its end. Its stdin, stdout and stderr are shmtrace's.
pub fn run(opts: &RunOptions) -> Result<Finished, Failure> {
    let lib = find_library(opts.lib.as_deref())?;
    let (run_dir, shown, created) = make_run_dir(opts.out.as_deref())?;
    let mut info = RunInfo {
        shmtrace_pid: std::process::id() as i32,
        root_pid: None,
        program: opts.program.iter().map(|a| display(a)).collect(),
        lib: lib.display().to_string(),
        started: Some(now_micros()),
        ended: None,
        status: None,
    };
    let write_info = |info: &RunInfo| {
        if let Err(e) = info.write(&run_dir) {
            eprintln!(
                "shmtrace: warning: cannot write {}: {e}",
                run_dir.join(crate::runinfo::FILE_NAME).display()
            );
        }
    };
    write_info(&info);

    let mut log = run_dir.clone().into_os_string();
    log.push("/%p.bin");
    let mut command = Command::new(&opts.program[0]);
    command
        .args(&opts.program[1..])
        .env("LD_PRELOAD", preload_value(&lib))
        .env("SHMTRACE_LOG", log)
        .env("SHMTRACE_FORMAT", "binary")
        .env_remove("SHMTRACE_EXITCODE");
    if let Some(depth) = opts.stack {
        command.env("SHMTRACE_STACK", depth.to_string());
    }

    let interrupts = IgnoreInterrupts::new();
    let reset = interrupts.to_reset_in_child();
    // SAFETY: the closure runs in the child between fork and exec and only calls sigaction,
    // which is async-signal-safe; it allocates nothing (`reset` was built before the fork).
    unsafe {
        command.pre_exec(move || {
            for &sig in &reset {
                // SAFETY: an all-zero sigaction (empty mask, no flags) is valid; SIG_DFL
                // makes it the default action.
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                // SAFETY: valid signal number and pointer; async-signal-safe.
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            drop(interrupts);
            if created {
                let _ = fs::remove_file(run_dir.join(crate::runinfo::FILE_NAME));
                let _ = fs::remove_dir(&run_dir);
            }
            let status = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(Failure {
                message: format!("cannot run {}: {e}", display(&opts.program[0])),
                status,
            });
        }
    };
    info.root_pid = Some(child.id() as i32);
    write_info(&info);
    let waited = child.wait();
    drop(interrupts);
    let status = match waited {
        Ok(status) => status_of(status),
        Err(e) => {
            return Err(Failure {
                message: format!("waiting for {}: {e}", display(&opts.program[0])),
                status: 2,
            });
        }
    };
    info.ended = Some(now_micros());
    info.status = Some(status);
    write_info(&info);
    Ok(Finished {
        run_dir,
        run_dir_shown: shown,
        info,
        status,
    })
}

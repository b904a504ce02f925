//! Running a program under the shim: find the library, make the run directory, start the
//! program with the shim's environment, and wait for its whole tree (`supervise`).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::args::{RunOptions, display};
use crate::kernel;
use crate::runinfo::{RunInfo, Status, now_micros};
use crate::supervise::{self, Signals};
use crate::watch::Watch;

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
    /// Still installed while the report is made: a signal that processes the tree left
    /// running send their group must not cut it short.
    pub _signals: Signals,
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

    let mut kernel_start = kernel::Start::now(info.started.unwrap_or_default());
    let write_kernel_start = |start: &kernel::Start| {
        if let Err(e) = start.write(&run_dir) {
            eprintln!(
                "shmtrace: warning: cannot write {}: {e}",
                run_dir.join(kernel::START_FILE).display()
            );
        }
    };
    write_kernel_start(&kernel_start);
    // Before the spawn: a signal the tree sends its group right away must find the handlers.
    let signals = Signals::install().map_err(|e| Failure {
        message: format!("cannot set up signal handling: {e}"),
        status: 2,
    })?;
    if let Err(e) = supervise::become_subreaper() {
        eprintln!(
            "shmtrace: warning: cannot become the subreaper of the run ({e}): descendants \
             that outlive their parents are not waited for"
        );
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            drop(signals);
            if created {
                let _ = fs::remove_file(run_dir.join(crate::runinfo::FILE_NAME));
                let _ = fs::remove_file(run_dir.join(kernel::START_FILE));
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
    let root = child.id() as i32;
    info.root_pid = Some(root);
    write_info(&info);
    let program = display(&opts.program[0]);
    let watch = Watch::from_env(&run_dir);
    let ended = supervise::wait_for_tree(&signals, root, opts.wait, &run_dir, &program, watch);
    kernel_start.reaped = ended.reaped;
    write_kernel_start(&kernel_start);
    let status = status_of(ExitStatus::from_raw(ended.root_status));
    info.ended = Some(now_micros());
    info.status = Some(status);
    write_info(&info);
    Ok(Finished {
        run_dir,
        run_dir_shown: shown,
        info,
        status,
        _signals: signals,
    })
}

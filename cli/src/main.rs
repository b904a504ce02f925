//! `shmtrace`: runs a program (and every process it forks and execs) under `libshmtrace.so`,
//! then merges the per-process logs into one report; `shmtrace report` does the same from
//! saved logs. The hooks are never linked into this binary: it only preloads the library into
//! the program it runs.

mod args;
mod binlog;
mod json;
mod kernel;
mod logs;
mod merge;
mod pictures;
mod render;
mod run;
mod runinfo;
mod semaphores;
mod supervise;
mod symbols;
mod timeline;
mod watch;

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use args::{ColorChoice, Command, ReportOptions, RunOptions, ViewOptions};
use merge::{Report, Sources};
use runinfo::RunInfo;

/// Usage errors and unreadable input.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    match args::parse(args) {
        Ok(Command::Help) => {
            print!("{}", args::HELP);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("shmtrace {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Run(opts)) => run_program(&opts),
        Ok(Command::Report(opts)) => report_logs(&opts),
        Ok(Command::Decode(opts)) => match binlog::print(&opts.path, opts.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shmtrace: {e}");
                ExitCode::from(USAGE)
            }
        },
        Err(message) => {
            eprintln!("shmtrace: {message}");
            eprintln!("Try 'shmtrace --help'.");
            ExitCode::from(USAGE)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

fn run_program(opts: &RunOptions) -> ExitCode {
    let finished = match run::run(opts) {
        Ok(f) => f,
        Err(failure) => {
            eprintln!("shmtrace: {}", failure.message);
            return exit_code(failure.status);
        }
    };
    let inputs = match logs::gather(std::slice::from_ref(&finished.run_dir)) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("shmtrace: {e}");
            return exit_code(finished.status.exit_code());
        }
    };
    let mut program_status = finished.status.exit_code();
    if inputs.files.is_empty() {
        // The kernel's tables still tell what it left behind.
        eprintln!(
            "shmtrace: {} wrote no log: it is statically linked or setuid (the loader ignores \
             LD_PRELOAD for those), or the library could not be loaded",
            args::display(&opts.program[0])
        );
    }
    let sources = Sources {
        inputs: &inputs,
        run: Some(finished.info.clone()),
        run_dir: Some(finished.run_dir_shown.clone()),
    };
    let report = match merge::build(sources, &opts.view) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shmtrace: {e}");
            return exit_code(program_status);
        }
    };
    let stderr = io::stderr();
    let tty = stderr.is_terminal();
    if let Err(e) = emit(&report, &opts.view, Box::new(stderr), tty, true) {
        eprintln!("shmtrace: {e}");
    }
    if let Err(e) = pictures::write(&report, &opts.view, &inputs.files) {
        eprintln!("shmtrace: {e}");
    }
    if let Some(code) = opts.view.error_exitcode
        && report.verdict.fails()
    {
        program_status = i32::from(code);
    }
    exit_code(program_status)
}

fn report_logs(opts: &ReportOptions) -> ExitCode {
    let inputs = match logs::gather(&opts.paths) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("shmtrace: {e}");
            return ExitCode::from(USAGE);
        }
    };
    if inputs.files.is_empty() {
        eprintln!(
            "shmtrace: no .jsonl log (nor binary .bin log) in {}",
            opts.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(USAGE);
    }
    // The run's own facts (root pid and status), when exactly one run directory has them.
    let mut runs: Vec<(PathBuf, RunInfo)> = Vec::new();
    for dir in &inputs.dirs {
        match RunInfo::read(dir) {
            Ok(Some(info)) => runs.push((dir.clone(), info)),
            Ok(None) => {}
            Err(e) => eprintln!("shmtrace: warning: {e}"),
        }
    }
    let (run, run_dir) = match runs.len() {
        1 => {
            let (dir, info) = runs.remove(0);
            (Some(info), Some(dir))
        }
        _ => (None, None),
    };
    let sources = Sources {
        inputs: &inputs,
        run,
        run_dir,
    };
    let report = match merge::build(sources, &opts.view) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shmtrace: {e}");
            return ExitCode::from(USAGE);
        }
    };
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    if let Err(e) = emit(&report, &opts.view, Box::new(stdout), tty, false) {
        eprintln!("shmtrace: {e}");
        return ExitCode::from(USAGE);
    }
    if let Err(e) = pictures::write(&report, &opts.view, &inputs.files) {
        eprintln!("shmtrace: {e}");
        return ExitCode::from(USAGE);
    }
    match opts.view.error_exitcode {
        Some(code) if report.verdict.fails() => ExitCode::from(code),
        _ => ExitCode::SUCCESS,
    }
}

/// Writes the report (text or JSON) to `--output FILE` or to `default`.
fn emit(
    report: &Report,
    view: &ViewOptions,
    default: Box<dyn Write>,
    default_is_tty: bool,
    announce_dir: bool,
) -> Result<(), String> {
    let (mut out, tty): (Box<dyn Write>, bool) = match &view.output {
        Some(path) => (
            Box::new(
                File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?,
            ),
            false,
        ),
        None => (default, default_is_tty),
    };
    let text = if view.json {
        let mut doc = json::document(report, view).to_string();
        doc.push('\n');
        doc
    } else {
        let color = match view.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        let mut shown = report.clone();
        if !announce_dir {
            shown.run_dir = None;
        }
        render::text(&shown, view, render::Style { color })
    };
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`): the reader has what it wanted.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing the report: {e}")),
    }
}

//! The command line: `shmtrace [OPTIONS] [--] PROGRAM [ARGS...]` and
//! `shmtrace report [OPTIONS] PATH...`. Hand-written: there are few options, and the program's
//! own arguments must pass through untouched (as `OsString`, never re-encoded).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

pub const HELP: &str = "\
shmtrace: run a program (and every process it forks or execs) under libshmtrace.so, then
explain its System V shared memory, semaphores and mappings in one merged report.

USAGE
    shmtrace [OPTIONS] [--] PROGRAM [ARGS...]
    shmtrace report [OPTIONS] PATH...
    shmtrace decode FILE [--format text|json]

  The first form runs PROGRAM with libshmtrace.so preloaded, one binary log per process in
  a run directory (durable even if the program is killed), and prints the merged report on stderr (the program's stdout stays its
  own). shmtrace exits with the program's exit status (128+N if a signal N killed it).
  SIGINT and SIGQUIT are ignored by shmtrace while the program runs, so Ctrl-C reaches the
  program and the report is still printed. Options go before PROGRAM: every argument from
  PROGRAM on is the program's. Write `--` before a PROGRAM whose name starts with '-' or is
  `report`.

  `shmtrace report` prints the same report on stdout from saved run directories, .bin or
  .jsonl logs (for example those of a run that was killed or crashed).

  `shmtrace decode` prints a binary log (SHMTRACE_FORMAT=binary) on stdout as the text
  (default) or JSON records docs/log-format.md describes.

OPTIONS (running a program)
    --lib PATH           the libshmtrace.so to preload; by default the one beside this
                         executable (DIR/libshmtrace.so), else the installed one
                         (DIR/../lib/libshmtrace.so.0)
    --out DIR            the run directory (created; must hold no .bin or .jsonl yet):
                         one PID.bin log per process (`shmtrace decode` prints one as
                         text or JSON) and run.json (the command and how it
                         ended); default ./shmtrace.PID (PID of shmtrace)
    --stack N            also record, for every call, the return addresses of the N frames
                         above its call site (0..16; sets SHMTRACE_STACK=N for the program;
                         default: none, or SHMTRACE_STACK as already set). The report then
                         shows under each site the functions that led there, as
                         `called from function (file:line)` lines

OPTIONS (both forms)
    --error-exitcode N   exit with N (1..255) when the merged verdict finds leaks
                         or audit findings of severity error
    --leaks lost|all     which attachments and mappings left at exit are leaks: those
                         nothing points into any more (lost, the default), or also those
                         still reachable (all); the verdict and --error-exitcode follow it
    --json               the report as one JSON document (schema: cli/README.md,
                         installed as share/doc/shmtrace/shmtrace-command.md)
    -o, --output FILE    write the report to FILE instead of stderr (run) or stdout (report)
    --calls LIST         comma-separated groups (shm, sem, mmap) or function names
                         (shmget shmat shmdt shmctl semget semop semtimedop semctl mmap
                         mmap64 munmap mremap): limits the call statistics and the calls
                         that never returned
    --pid N              show only process N (repeatable); leaks, attachments, mappings,
                         calls and statistics of other processes are left out, the verdict
                         still covers the whole tree
    --color WHEN         auto (default: colour on a terminal unless NO_COLOR is set),
                         always, or never
    -h, --help           this help
    -V, --version        the version

ENVIRONMENT GIVEN TO THE PROGRAM
    Unchanged, except LD_PRELOAD (the library, then any LD_PRELOAD already set),
    SHMTRACE_LOG=RUNDIR/%p.bin, SHMTRACE_FORMAT=binary, SHMTRACE_STACK=N with --stack N, and
    SHMTRACE_EXITCODE removed (the program's own status is kept; use --error-exitcode).

EXIT STATUS
    the program's status (run), 0 (report), or the --error-exitcode value when there are
    leaks; 2 for a usage error or unreadable input; 126/127 when PROGRAM cannot be started.
";

/// The function names the shim hooks, by group.
pub const GROUPS: [(&str, &[&str]); 3] = [
    ("shm", &["shmget", "shmat", "shmdt", "shmctl"]),
    ("sem", &["semget", "semop", "semtimedop", "semctl"]),
    ("mmap", &["mmap", "mmap64", "munmap", "mremap"]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// What the report shows and how; shared by both forms.
#[derive(Clone, Debug)]
pub struct ViewOptions {
    pub json: bool,
    pub output: Option<PathBuf>,
    /// `None`: every function.
    pub calls: Option<BTreeSet<String>>,
    /// Empty: every process.
    pub pids: BTreeSet<i32>,
    pub color: ColorChoice,
    pub error_exitcode: Option<u8>,
    /// `--leaks all`: still reachable attachments and mappings count as leaks too.
    pub count_reachable: bool,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            json: false,
            output: None,
            calls: None,
            pids: BTreeSet::new(),
            color: ColorChoice::Auto,
            error_exitcode: None,
            count_reachable: false,
        }
    }
}

impl ViewOptions {
    pub fn shows_pid(&self, pid: i32) -> bool {
        self.pids.is_empty() || self.pids.contains(&pid)
    }

    pub fn shows_fn(&self, name: &str) -> bool {
        self.calls.as_ref().is_none_or(|set| set.contains(name))
    }
}

/// The most frames `--stack` asks for (the shim's `SHMTRACE_STACK` limit).
pub const STACK_MAX: u8 = 16;

#[derive(Debug)]
pub struct RunOptions {
    pub lib: Option<PathBuf>,
    pub out: Option<PathBuf>,
    /// `--stack N`: `SHMTRACE_STACK` for the program; `None` leaves the environment's.
    pub stack: Option<u8>,
    pub view: ViewOptions,
    /// PROGRAM and its arguments; never empty.
    pub program: Vec<OsString>,
}

#[derive(Debug)]
pub struct ReportOptions {
    pub view: ViewOptions,
    pub paths: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct DecodeOptions {
    pub path: PathBuf,
    pub json: bool,
}

#[derive(Debug)]
pub enum Command {
    Run(RunOptions),
    Report(ReportOptions),
    Decode(DecodeOptions),
    Help,
    Version,
}

/// Parses the arguments after the command name. `Err` is a usage error message.
pub fn parse(args: Vec<OsString>) -> Result<Command, String> {
    if args.first().is_some_and(|a| a == "decode") {
        return parse_decode(&args[1..]);
    }
    let mut args = args.into_iter().peekable();
    let report = args.peek().is_some_and(|a| a == "report");
    if report {
        args.next();
    }
    let mut view = ViewOptions::default();
    let mut lib = None;
    let mut out = None;
    let mut stack = None;
    let mut positional: Vec<OsString> = Vec::new();

    while let Some(arg) = args.next() {
        if arg == "--" {
            positional.extend(args.by_ref());
            break;
        }
        let is_option = arg.as_encoded_bytes().first() == Some(&b'-') && arg.len() > 1;
        if !is_option {
            positional.push(arg);
            if !report {
                // The program starts here: everything after it is its own.
                positional.extend(args.by_ref());
                break;
            }
            continue;
        }
        let Some(text) = arg.to_str() else {
            return Err(format!("unknown option {}", arg.to_string_lossy()));
        };
        let (name, inline) = match text.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (text.to_string(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            match args.next() {
                Some(v) => v
                    .into_string()
                    .map_err(|v| format!("{name}: {what} is not valid UTF-8: {v:?}")),
                None => Err(format!("{name} needs {what}")),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--json" => view.json = true,
            "-o" | "--output" => view.output = Some(PathBuf::from(value("a file")?)),
            "--calls" => {
                let list = value("a list")?;
                let set = view.calls.get_or_insert_with(BTreeSet::new);
                set.extend(parse_calls(&list)?);
            }
            "--pid" => {
                let v = value("a process id")?;
                let pid = v
                    .parse::<i32>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("--pid: not a process id: {v}"))?;
                view.pids.insert(pid);
            }
            "--color" | "--colour" => {
                view.color = match value("auto, always or never")?.as_str() {
                    "auto" => ColorChoice::Auto,
                    "always" => ColorChoice::Always,
                    "never" => ColorChoice::Never,
                    other => {
                        return Err(format!(
                            "--color: expected auto, always or never, not {other}"
                        ));
                    }
                }
            }
            "--error-exitcode" => {
                let v = value("a number")?;
                let code = v
                    .parse::<u8>()
                    .ok()
                    .filter(|c| *c > 0)
                    .ok_or_else(|| format!("--error-exitcode: expected 1..255, not {v}"))?;
                view.error_exitcode = Some(code);
            }
            "--leaks" => {
                view.count_reachable = match value("lost or all")?.as_str() {
                    "lost" => false,
                    "all" => true,
                    other => return Err(format!("--leaks: expected lost or all, not {other}")),
                }
            }
            "--lib" if !report => lib = Some(PathBuf::from(value("a path")?)),
            "--out" if !report => out = Some(PathBuf::from(value("a directory")?)),
            "--stack" if !report => {
                let v = value("a number of frames")?;
                let depth = v
                    .parse::<u8>()
                    .ok()
                    .filter(|n| *n <= STACK_MAX)
                    .ok_or_else(|| format!("--stack: expected 0..{STACK_MAX}, not {v}"))?;
                stack = Some(depth);
            }
            "--lib" | "--out" | "--stack" => {
                return Err(format!("{name} is for running a program"));
            }
            _ => return Err(format!("unknown option {name}")),
        }
    }

    if report {
        if positional.is_empty() {
            return Err("report needs at least one run directory or log file".into());
        }
        let paths = positional.into_iter().map(PathBuf::from).collect();
        Ok(Command::Report(ReportOptions { view, paths }))
    } else {
        if positional.is_empty() {
            return Err("no program to run".into());
        }
        Ok(Command::Run(RunOptions {
            lib,
            out,
            stack,
            view,
            program: positional,
        }))
    }
}

/// `decode FILE [--format text|json]` (the options anywhere).
fn parse_decode(args: &[OsString]) -> Result<Command, String> {
    let mut path = None;
    let mut json = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_str().unwrap_or("");
        let format = if text == "--format" {
            Some(rest.next().and_then(|v| v.to_str()).unwrap_or(""))
        } else {
            text.strip_prefix("--format=")
        };
        match format {
            Some("text") => json = false,
            Some("json") => json = true,
            Some(other) => return Err(format!("--format: expected text or json, not {other:?}")),
            None if text == "-h" || text == "--help" => return Ok(Command::Help),
            None if text.starts_with('-') && text != "-" => {
                return Err(format!("decode: unknown option {text}"));
            }
            None if path.is_some() => return Err("decode takes one file".into()),
            None => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path.ok_or("decode needs a binary log file")?;
    Ok(Command::Decode(DecodeOptions { path, json }))
}

/// `shm,semop` to the set of function names.
fn parse_calls(list: &str) -> Result<BTreeSet<String>, String> {
    let mut set = BTreeSet::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some((_, fns)) = GROUPS.iter().find(|(g, _)| *g == item) {
            set.extend(fns.iter().map(|f| f.to_string()));
        } else if GROUPS.iter().any(|(_, fns)| fns.contains(&item)) {
            set.insert(item.to_string());
        } else {
            return Err(format!(
                "--calls: unknown group or function {item:?} (groups: shm, sem, mmap)"
            ));
        }
    }
    if set.is_empty() {
        return Err("--calls: empty list".into());
    }
    Ok(set)
}

/// For messages: a program name as the user wrote it.
pub fn display(arg: &OsStr) -> String {
    arg.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn program_without_dashes_keeps_its_options() {
        let Ok(Command::Run(run)) = parse_strs(&["--json", "ls", "-l", "--json"]) else {
            panic!("not a run");
        };
        assert!(run.view.json);
        assert_eq!(run.program, vec!["ls", "-l", "--json"]);
    }

    #[test]
    fn double_dash_and_inline_values() {
        let Ok(Command::Run(run)) = parse_strs(&["--lib=/x.so", "--pid", "7", "--", "-prog"])
        else {
            panic!("not a run");
        };
        assert_eq!(run.lib, Some(PathBuf::from("/x.so")));
        assert!(run.view.pids.contains(&7));
        assert_eq!(run.program, vec!["-prog"]);
    }

    #[test]
    fn report_takes_paths_and_options_anywhere() {
        let Ok(Command::Report(r)) = parse_strs(&["report", "a", "--calls", "sem,mmap", "b"])
        else {
            panic!("not a report");
        };
        assert_eq!(r.paths.len(), 2);
        let calls = r.view.calls.unwrap();
        assert!(calls.contains("semop") && calls.contains("mremap") && !calls.contains("shmat"));
    }

    #[test]
    fn usage_errors() {
        assert!(parse_strs(&[]).is_err());
        assert!(parse_strs(&["report"]).is_err());
        let Ok(Command::Decode(d)) = parse_strs(&["decode", "--format", "json", "f.bin"]) else {
            panic!("decode");
        };
        assert_eq!((d.path, d.json), (PathBuf::from("f.bin"), true));
        let Ok(Command::Decode(d)) = parse_strs(&["decode", "f.bin", "--format=text"]) else {
            panic!("decode");
        };
        assert!(!d.json);
        assert!(parse_strs(&["decode"]).is_err());
        assert!(parse_strs(&["decode", "a", "b"]).is_err());
        assert!(parse_strs(&["decode", "a", "--format", "xml"]).is_err());
        assert!(parse_strs(&["--calls", "bogus", "ls"]).is_err());
        assert!(parse_strs(&["--error-exitcode", "0", "ls"]).is_err());
        assert!(parse_strs(&["--error-exitcode", "256", "ls"]).is_err());
        assert!(parse_strs(&["--pid", "x", "ls"]).is_err());
        assert!(parse_strs(&["--leaks", "some", "ls"]).is_err());
        let Ok(Command::Run(run)) = parse_strs(&["--leaks", "all", "ls"]) else {
            panic!("not a run");
        };
        assert!(run.view.count_reachable);
        let Ok(Command::Run(run)) = parse_strs(&["--leaks", "lost", "ls"]) else {
            panic!("not a run");
        };
        assert!(!run.view.count_reachable);
        assert!(parse_strs(&["report", "--lib", "x", "d"]).is_err());
        assert!(parse_strs(&["--frobnicate", "ls"]).is_err());
        assert!(parse_strs(&["--lib"]).is_err());
        assert!(parse_strs(&["--stack", "17", "ls"]).is_err());
        assert!(parse_strs(&["--stack", "-1", "ls"]).is_err());
        assert!(parse_strs(&["--stack", "x", "ls"]).is_err());
        assert!(parse_strs(&["--stack"]).is_err());
        assert!(parse_strs(&["report", "--stack", "3", "d"]).is_err());
    }

    #[test]
    fn stack_depth_for_the_program() {
        let depth = |args: &[&str]| match parse_strs(args) {
            Ok(Command::Run(run)) => run.stack,
            other => panic!("not a run: {other:?}"),
        };
        assert_eq!(depth(&["ls"]), None);
        assert_eq!(depth(&["--stack", "3", "ls"]), Some(3));
        assert_eq!(depth(&["--stack=16", "ls"]), Some(16));
        assert_eq!(depth(&["--stack", "0", "ls"]), Some(0));
        // After PROGRAM it is the program's.
        let Ok(Command::Run(run)) = parse_strs(&["ls", "--stack", "3"]) else {
            panic!("not a run");
        };
        assert_eq!((run.stack, run.program.len()), (None, 3));
    }
}

//! The command line: `shmtrace [OPTIONS] [--] PROGRAM [ARGS...]`, `shmtrace report [OPTIONS]
//! PATH...` and `shmtrace decode FILE`. Options are split by `lexopt` (which leaves the
//! program's own arguments untouched, as `OsString`); the help is written by hand.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lexopt::prelude::*;

use shmtrace_core::trace::event::{Func, Group};

pub const HELP: &str = "\
shmtrace: run a program (and every process it forks or execs) under libshmtrace.so, then
explain its System V shared memory, semaphores and mappings in one merged report.

USAGE
    shmtrace [OPTIONS] [--] PROGRAM [ARGS...]
    shmtrace report [OPTIONS] PATH...
    shmtrace decode FILE [--format text|json]

  The first form runs PROGRAM with libshmtrace.so preloaded, one binary log per process in
  a run directory (durable even if the program is killed), and prints the merged report on stderr (the program's stdout stays its
  own). shmtrace waits for every process of the tree, also those that outlive PROGRAM
  (see --wait), and exits with PROGRAM's exit status (128+N if a signal N killed it).
  Signals the program's processes send to their process group never stop shmtrace; SIGTERM,
  SIGHUP, SIGUSR1 and SIGUSR2 sent to shmtrace reach PROGRAM; Ctrl-C reaches PROGRAM through
  the terminal. The report is printed in every case. Options go before PROGRAM: every argument from
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
    --wait SECONDS       after PROGRAM ended, wait at most SECONDS for the processes it
                         left running (a daemon) before reporting; 0: do not wait.
                         Default: until the last one ends (Ctrl-C reports at once)

OPTIONS (both forms)
    --error-exitcode N   exit with N (1..255) when the merged verdict finds leaks
                         or audit findings of severity error
    --leaks lost|all     which attachments and mappings left at exit are leaks: those
                         nothing points into any more (lost, the default), or also those
                         still reachable (all); the verdict and --error-exitcode follow it
    --json               the report as one JSON document (schema: docs/command.md,
                         installed as share/doc/shmtrace/shmtrace-command.md)
    -o, --output FILE    write the report to FILE instead of stderr (run) or stdout (report)
    --html FILE          also write the report as one self-contained HTML page: a timeline
                         per process, leaks, findings and call statistics (opens offline)
    --trace-json FILE    also write every call, counter, leak and finding in the Trace Event
                         Format, for ui.perfetto.dev or chrome://tracing
    --calls LIST         comma-separated groups (shm, sem, mmap) or function names
                         (shmget shmat shmdt shmctl semget semop semtimedop semctl mmap
                         mmap64 munmap mremap shm_open shm_unlink memfd_create sem_open
                         sem_close sem_unlink): limits the call statistics and the calls that
                         never returned
    --pid N              show only process N (repeatable); leaks, attachments, mappings,
                         calls and statistics of other processes are left out, the verdict
                         still covers the whole tree
    --all-processes      list every process, also those that made no tracked call
                         (folded into one line by default)
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
    pub html: Option<PathBuf>,
    pub trace_json: Option<PathBuf>,
    /// `None`: every function.
    pub calls: Option<BTreeSet<String>>,
    /// Empty: every process.
    pub pids: BTreeSet<i32>,
    pub color: ColorChoice,
    pub error_exitcode: Option<u8>,
    /// `--leaks all`: still reachable attachments and mappings count as leaks too.
    pub count_reachable: bool,
    /// `--all-processes`: list processes that made no tracked call too.
    pub all_processes: bool,
}

impl Default for ViewOptions {
    fn default() -> Self {
        ViewOptions {
            json: false,
            output: None,
            html: None,
            trace_json: None,
            calls: None,
            pids: BTreeSet::new(),
            color: ColorChoice::Auto,
            error_exitcode: None,
            count_reachable: false,
            all_processes: false,
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
    /// `--wait SECONDS`: how long to wait for descendants after the program ended; `None`:
    /// until the last one ends.
    pub wait: Option<Duration>,
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
pub fn parse(mut args: Vec<OsString>) -> Result<Command, String> {
    let first = args.first().and_then(|a| a.to_str());
    let (report, decode) = (first == Some("report"), first == Some("decode"));
    if report || decode {
        args.remove(0);
    }
    let parser = lexopt::Parser::from_args(args);
    let parsed = if decode {
        parse_decode(parser)
    } else {
        parse_main(parser, report)
    };
    parsed.map_err(|e| e.to_string())
}

/// Running a program, or `report` (then `--lib`, `--out`, `--stack` and `--wait` are refused,
/// and options may follow the paths).
fn parse_main(mut parser: lexopt::Parser, report: bool) -> Result<Command, lexopt::Error> {
    let mut view = ViewOptions::default();
    let (mut lib, mut out, mut stack, mut wait) = (None, None, None, None);
    let mut positional: Vec<OsString> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("json") => view.json = true,
            Short('o') | Long("output") => view.output = Some(parser.value()?.into()),
            Long("html") => view.html = Some(parser.value()?.into()),
            Long("trace-json") => view.trace_json = Some(parser.value()?.into()),
            Long("calls") => {
                let set = view.calls.get_or_insert_with(BTreeSet::new);
                set.extend(parse_calls(&parser.value()?.string()?)?);
            }
            Long("pid") => {
                let pid = number(&mut parser, "--pid", "a process id", |p| *p > 0)?;
                view.pids.insert(pid);
            }
            Long("color" | "colour") => {
                view.color = match parser.value()?.string()?.as_str() {
                    "auto" => ColorChoice::Auto,
                    "always" => ColorChoice::Always,
                    "never" => ColorChoice::Never,
                    other => return Err(expected("--color", "auto, always or never", other)),
                }
            }
            Long("error-exitcode") => {
                let code = number(&mut parser, "--error-exitcode", "1..255", |c| *c > 0)?;
                view.error_exitcode = Some(code);
            }
            Long("leaks") => {
                view.count_reachable = match parser.value()?.string()?.as_str() {
                    "lost" => false,
                    "all" => true,
                    other => return Err(expected("--leaks", "lost or all", other)),
                }
            }
            Long("all-processes") => view.all_processes = true,
            Long(name @ ("lib" | "out" | "stack" | "wait")) if report => {
                return Err(format!("--{name} is for running a program").into());
            }
            Long("lib") => lib = Some(parser.value()?.into()),
            Long("out") => out = Some(parser.value()?.into()),
            Long("stack") => {
                let range = format!("0..{STACK_MAX}");
                stack = Some(number(&mut parser, "--stack", &range, |n| *n <= STACK_MAX)?);
            }
            Long("wait") => {
                let valid = |s: &f64| s.is_finite() && *s >= 0.0;
                let secs = number(&mut parser, "--wait", "a number of seconds", valid)?;
                wait = Some(Duration::from_secs_f64(secs.min(1e9)));
            }
            Value(path) if report => positional.push(path),
            Value(program) => {
                // The program starts here: everything after it is its own.
                positional.push(program);
                positional.extend(parser.raw_args()?);
            }
            _ => return Err(arg.unexpected()),
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
            wait,
            view,
            program: positional,
        }))
    }
}

/// `decode FILE [--format text|json]` (the options anywhere).
fn parse_decode(mut parser: lexopt::Parser) -> Result<Command, lexopt::Error> {
    let mut path = None;
    let mut json = false;
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("format") => {
                json = match parser.value()?.string()?.as_str() {
                    "text" => false,
                    "json" => true,
                    other => return Err(expected("--format", "text or json", other)),
                }
            }
            Value(file) if path.is_none() => path = Some(PathBuf::from(file)),
            Value(_) => return Err("decode takes one file".into()),
            _ => return Err(arg.unexpected()),
        }
    }
    let path = path.ok_or("decode needs a binary log file")?;
    Ok(Command::Decode(DecodeOptions { path, json }))
}

/// The option's value as a number that `valid` accepts.
fn number<T: FromStr>(
    parser: &mut lexopt::Parser,
    option: &str,
    what: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, lexopt::Error> {
    let value = parser.value()?.string()?;
    match value.parse::<T>() {
        Ok(n) if valid(&n) => Ok(n),
        _ => Err(expected(option, what, &value)),
    }
}

fn expected(option: &str, what: &str, value: &str) -> lexopt::Error {
    format!("{option}: expected {what}, not {value:?}").into()
}

/// `shm,semop` to the set of function names.
fn parse_calls(list: &str) -> Result<BTreeSet<String>, lexopt::Error> {
    let mut set = BTreeSet::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let selects = |f: &&Func| f.group().name() == item || f.name() == item;
        if !Func::ALL.iter().any(|f| selects(&f)) {
            let groups: Vec<_> = Group::ALL.iter().map(|g| g.name()).collect();
            let funcs: Vec<_> = Func::ALL.iter().map(|f| f.name()).collect();
            return Err(format!(
                "--calls: unknown group or function {item:?} (groups: {}; functions: {})",
                groups.join(", "),
                funcs.join(", ")
            )
            .into());
        }
        set.extend(
            Func::ALL
                .iter()
                .filter(selects)
                .map(|f| f.name().to_string()),
        );
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
    fn calls_take_function_names_and_list_them_when_unknown() {
        let calls = parse_calls("shmat, sem").unwrap();
        let expected = [
            "sem_close",
            "sem_open",
            "sem_unlink",
            "semctl",
            "semget",
            "semop",
            "semtimedop",
            "shmat",
        ];
        assert_eq!(calls.iter().collect::<Vec<_>>(), expected);
        let err = parse_calls("shmat,msgsnd").unwrap_err().to_string();
        assert!(
            err.contains("\"msgsnd\"") && err.contains("shm, sem, mmap"),
            "{err}"
        );
        assert!(
            err.contains("shmget, shmat") && err.contains("munmap, mremap"),
            "{err}"
        );
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
        assert!(parse_strs(&["--json=yes", "ls"]).is_err());
        assert!(parse_strs(&["-prog"]).is_err());
    }

    #[test]
    fn usage_messages_name_the_option_and_the_value() {
        let message = |args: &[&str]| parse_strs(args).unwrap_err();
        assert_eq!(
            message(&["--pid", "x", "ls"]),
            "--pid: expected a process id, not \"x\""
        );
        assert_eq!(
            message(&["report", "--lib", "x", "d"]),
            "--lib is for running a program"
        );
        assert_eq!(message(&["--bogus", "ls"]), "invalid option '--bogus'");
        assert_eq!(message(&["--out"]), "missing argument for option '--out'");
    }

    #[test]
    fn help_names_every_hooked_function() {
        let words: BTreeSet<&str> = HELP
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        let groups = Group::ALL.iter().map(|g| g.name());
        for name in groups.chain(Func::ALL.iter().map(|f| f.name())) {
            assert!(words.contains(name), "--help does not name {name}");
        }
    }

    #[test]
    fn wait_and_all_processes() {
        let run = |args: &[&str]| match parse_strs(args) {
            Ok(Command::Run(run)) => run,
            other => panic!("not a run: {other:?}"),
        };
        assert_eq!(run(&["ls"]).wait, None);
        assert_eq!(run(&["--wait", "0", "ls"]).wait, Some(Duration::ZERO));
        assert_eq!(
            run(&["--wait=1.5", "ls"]).wait,
            Some(Duration::from_millis(1500))
        );
        assert!(run(&["--all-processes", "ls"]).view.all_processes);
        assert!(parse_strs(&["--wait", "-1", "ls"]).is_err());
        assert!(parse_strs(&["--wait", "soon", "ls"]).is_err());
        assert!(parse_strs(&["--wait", "inf", "ls"]).is_err());
        assert!(parse_strs(&["report", "--wait", "1", "d"]).is_err());
        let Ok(Command::Report(r)) = parse_strs(&["report", "--all-processes", "d"]) else {
            panic!("not a report");
        };
        assert!(r.view.all_processes);
    }

    #[test]
    fn html_and_trace_json_in_both_forms() {
        let Ok(Command::Run(run)) = parse_strs(&["--html", "a.html", "--trace-json=t.json", "ls"])
        else {
            panic!("not a run");
        };
        assert_eq!(run.view.html, Some(PathBuf::from("a.html")));
        assert_eq!(run.view.trace_json, Some(PathBuf::from("t.json")));
        let Ok(Command::Report(r)) = parse_strs(&["report", "d", "--html=p.html"]) else {
            panic!("not a report");
        };
        assert_eq!(
            (r.view.html, r.view.trace_json),
            (Some(PathBuf::from("p.html")), None)
        );
        assert!(parse_strs(&["report", "d", "--html"]).is_err());
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

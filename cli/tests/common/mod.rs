//! Shared by the integration tests: build the C programs in `tests/programs/` into a scratch
//! directory, run the `shmtrace` binary on them with the release library, read its JSON report,
//! and remove every SysV object a test created, even when it fails.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const SHMTRACE: &str = env!("CARGO_BIN_EXE_shmtrace");

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The library the tests preload: `target/release/libshmtrace.so` of this repository.
pub fn lib() -> PathBuf {
    let lib = manifest_dir().join("../target/release/libshmtrace.so");
    assert!(
        lib.is_file(),
        "{} is missing: run `make lib` (in the repository root) before `cargo test -p shmtrace-cli`",
        lib.display()
    );
    lib
}

/// A directory of its own for one test; removed when the test passes, kept (and named) when
/// it fails, for a look at the logs.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("shmtrace-cli-test-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Compiles `tests/programs/NAME.c` with `-g -Wall -Wextra -Werror` (and `extra` flags).
    pub fn compile_with(&self, name: &str, output: &str, extra: &[&str]) -> PathBuf {
        let source = manifest_dir().join(format!("tests/programs/{name}.c"));
        let out = self.path(output);
        let status = Command::new("gcc")
            .args(["-g", "-Wall", "-Wextra", "-Werror"])
            .args(extra)
            .arg("-o")
            .arg(&out)
            .arg(&source)
            .status()
            .expect("running gcc");
        assert!(status.success(), "gcc failed on {}", source.display());
        out
    }

    pub fn compile(&self, name: &str) -> PathBuf {
        self.compile_with(name, name, &[])
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The line of `tests/programs/NAME.c` that carries the comment `/* LINE:marker */`.
pub fn line_of(name: &str, marker: &str) -> u64 {
    let source = fs::read_to_string(manifest_dir().join(format!("tests/programs/{name}.c")))
        .expect("test program source");
    let tag = format!("/* LINE:{marker} */");
    let index = source
        .lines()
        .position(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("{name}.c has no {tag}"));
    index as u64 + 1
}

/// Removes, when dropped, every SysV object the run directories' logs say was created and
/// every id added by hand (`ipcrm` by id; errors ignored: most are already gone).
pub struct IpcGuard {
    dirs: Vec<PathBuf>,
    segments: Vec<i64>,
    sets: Vec<i64>,
}

impl IpcGuard {
    pub fn new(dirs: &[&Path]) -> IpcGuard {
        IpcGuard {
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            segments: Vec::new(),
            sets: Vec::new(),
        }
    }

    /// Reads `shm ID` and `sem ID` lines of a program's stdout.
    pub fn add_from_output(&mut self, stdout: &str) {
        for line in stdout.lines() {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(id)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(id) = id.parse() else { continue };
            match kind {
                "shm" => self.segments.push(id),
                "sem" => self.sets.push(id),
                _ => {}
            }
        }
    }

    pub fn add_set(&mut self, id: i64) {
        self.sets.push(id);
    }

    /// Also reads the logs of this run directory when dropped.
    pub fn watch(&mut self, dir: &Path) {
        self.dirs.push(dir.to_path_buf());
    }

    fn add_from_logs(&mut self) {
        for dir in &self.dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(text) = log_text(&entry.path()) else {
                    continue;
                };
                for line in text.lines() {
                    let Ok(v) = serde_json::from_str::<Value>(line) else {
                        continue;
                    };
                    let Some(id) = v.get("ret").and_then(Value::as_i64) else {
                        continue;
                    };
                    if id < 0 || v["created"] == Value::Bool(false) {
                        continue;
                    }
                    match v["fn"].as_str() {
                        Some("shmget") => self.segments.push(id),
                        Some("semget") => self.sets.push(id),
                        _ => {}
                    }
                }
            }
        }
    }
}

impl Drop for IpcGuard {
    fn drop(&mut self) {
        self.add_from_logs();
        self.segments.sort_unstable();
        self.segments.dedup();
        self.sets.sort_unstable();
        self.sets.dedup();
        for (flag, ids) in [("-m", &self.segments), ("-s", &self.sets)] {
            for id in ids {
                let _ = Command::new("ipcrm")
                    .arg(flag)
                    .arg(id.to_string())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

/// What a scenario test sets up: a scratch directory, its run directory (`run`, for
/// `shmtrace --out`) and a guard removing every SysV object the runs create.
pub struct Scenario {
    // Dropped first: the guard reads the runs' logs before the scratch directory goes.
    pub guard: IpcGuard,
    pub scratch: Scratch,
    pub run_dir: PathBuf,
}

impl Scenario {
    pub fn new(test: &str) -> Scenario {
        let scratch = Scratch::new(test);
        let run_dir = scratch.path("run");
        Scenario {
            guard: IpcGuard::new(&[&run_dir]),
            scratch,
            run_dir,
        }
    }

    pub fn compile(&self, name: &str) -> PathBuf {
        self.scratch.compile(name)
    }

    /// `shmtrace --lib LIB --out RUN_DIR ARGS... -- PROGRAM...`, to adjust before `output`.
    pub fn command(&self, args: &[&str], program: &[&Path]) -> Command {
        shmtrace_run(&self.run_dir, args, program)
    }

    /// Runs `command` to the end; the SysV ids it prints (`shm ID`, `sem ID`) join the guard.
    pub fn output(&mut self, command: &mut Command) -> Output {
        let out = command.output().expect("running shmtrace");
        self.guard.add_from_output(&text(&out.stdout));
        out
    }

    /// `shmtrace ... -- PROGRAM` in the run directory, to the end.
    pub fn run(&mut self, args: &[&str], program: &[&Path]) -> Output {
        self.output(&mut self.command(args, program))
    }

    /// The same in another run directory (under the scratch directory), guarded too.
    pub fn run_in(&mut self, dir: &str, args: &[&str], program: &[&Path]) -> (PathBuf, Output) {
        let dir = self.scratch.path(dir);
        self.guard.watch(&dir);
        let out = self.output(&mut shmtrace_run(&dir, args, program));
        (dir, out)
    }
}

/// `shmtrace --lib LIB --out DIR ARGS...`
pub fn shmtrace_run(dir: &Path, args: &[&str], program: &[&Path]) -> Command {
    let mut cmd = Command::new(SHMTRACE);
    cmd.arg("--lib")
        .arg(lib())
        .arg("--out")
        .arg(dir)
        .args(args)
        .arg("--")
        .args(program)
        .env_remove("NO_COLOR")
        .env_remove("LD_PRELOAD");
    cmd
}

/// A log's records as JSON lines: binary logs (`*.bin`, what `shmtrace` run writes) through
/// `shmtrace decode`, other files as they are; `None` if unreadable.
pub fn log_text(path: &Path) -> Option<String> {
    if path.extension().is_some_and(|e| e == "bin") {
        let out = Command::new(SHMTRACE)
            .args(["decode", "--format", "json"])
            .arg(path)
            .output()
            .ok()?;
        out.status.success().then(|| text(&out.stdout))
    } else {
        fs::read_to_string(path).ok()
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `shmtrace report --json PATH` as JSON (the command must succeed).
pub fn report_json(path: &Path, extra: &[&str]) -> Value {
    let out = Command::new(SHMTRACE)
        .arg("report")
        .arg("--json")
        .args(extra)
        .arg(path)
        .output()
        .expect("running shmtrace report");
    assert!(
        out.status.success(),
        "shmtrace report failed: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("shmtrace report --json prints JSON")
}

pub fn exit_code(out: &Output) -> i32 {
    out.status.code().expect("shmtrace exited (not killed)")
}

/// Shows the whole text when the piece is missing.
#[track_caller]
pub fn assert_has(text: &str, piece: impl AsRef<str>) {
    assert!(text.contains(piece.as_ref()), "{text}");
}

/// A JSON string that ends with `suffix`.
pub fn ends_with(v: &Value, suffix: &str) -> bool {
    v.as_str().is_some_and(|s| s.ends_with(suffix))
}

/// Entries of a JSON array field.
pub fn items<'a>(doc: &'a Value, key: &str) -> &'a Vec<Value> {
    doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key:?} in {doc}"))
}

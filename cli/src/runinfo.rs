//! `RUNDIR/run.json`: what only the `shmtrace` that ran the program knows (the root pid, the
//! command, how the root process ended), so that `shmtrace report RUNDIR` says it too. Written
//! when the program starts (status null: a run that shmtrace did not see end) and again when it
//! ended.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

pub const FILE_NAME: &str = "run.json";

/// How the root process ended, as `wait` said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled { signo: i32, core_dumped: bool },
}

impl Status {
    /// `exit 3`, `killed by SIGKILL`, `killed by SIGSEGV (core dumped)`.
    pub fn describe(&self) -> String {
        match *self {
            Status::Exited(code) => format!("exit {code}"),
            Status::Signaled { signo, core_dumped } => format!(
                "killed by {}{}",
                signal_name(signo),
                if core_dumped { " (core dumped)" } else { "" }
            ),
        }
    }

    /// What a shell would report: the code, or 128+N for signal N.
    pub fn exit_code(&self) -> i32 {
        match *self {
            Status::Exited(code) => code,
            Status::Signaled { signo, .. } => 128 + signo,
        }
    }

    fn to_json(self) -> Value {
        match self {
            Status::Exited(code) => json!({"exit": code}),
            Status::Signaled { signo, core_dumped } => json!({
                "signal": signo, "name": signal_name(signo), "core_dumped": core_dumped
            }),
        }
    }

    fn from_json(v: &Value) -> Option<Status> {
        if let Some(code) = v.get("exit").and_then(Value::as_i64) {
            return Some(Status::Exited(i32::try_from(code).ok()?));
        }
        let signo = i32::try_from(v.get("signal")?.as_i64()?).ok()?;
        let core_dumped = v
            .get("core_dumped")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Some(Status::Signaled { signo, core_dumped })
    }
}

/// `SIGSEGV` for 11; `SIGRTMIN+2`, `signal 99` for the others.
pub fn signal_name(signo: i32) -> String {
    let name = match signo {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSTKFLT => "SIGSTKFLT",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSYS => "SIGSYS",
        n if (34..=64).contains(&n) => return format!("SIGRTMIN+{}", n - 34),
        n => return format!("signal {n}"),
    };
    name.to_string()
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunInfo {
    pub shmtrace_pid: i32,
    pub root_pid: Option<i32>,
    pub program: Vec<String>,
    pub lib: String,
    /// Microseconds since the epoch.
    pub started: Option<i64>,
    pub ended: Option<i64>,
    pub status: Option<Status>,
}

impl RunInfo {
    pub fn to_json(&self) -> Value {
        json!({
            "shmtrace_run": 1,
            "shmtrace_pid": self.shmtrace_pid,
            "root_pid": self.root_pid,
            "program": self.program,
            "lib": self.lib,
            "started_us": self.started,
            "ended_us": self.ended,
            "status": self.status.map(Status::to_json),
        })
    }

    pub fn from_json(v: &Value) -> Option<RunInfo> {
        v.get("shmtrace_run")?;
        let int = |k: &str| {
            v.get(k)
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        };
        Some(RunInfo {
            shmtrace_pid: int("shmtrace_pid").unwrap_or(0),
            root_pid: int("root_pid"),
            program: v
                .get("program")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            lib: v
                .get("lib")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            started: v.get("started_us").and_then(Value::as_i64),
            ended: v.get("ended_us").and_then(Value::as_i64),
            status: v.get("status").and_then(Status::from_json),
        })
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(".run.json.tmp");
        fs::write(&tmp, format!("{}\n", self.to_json()))?;
        fs::rename(&tmp, dir.join(FILE_NAME))
    }

    /// `Ok(None)` when the directory has no `run.json`; `Err` when it has an unreadable one.
    pub fn read(dir: &Path) -> Result<Option<RunInfo>, String> {
        let path = dir.join(FILE_NAME);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        serde_json::from_str::<Value>(&text)
            .ok()
            .as_ref()
            .and_then(RunInfo::from_json)
            .map(Some)
            .ok_or_else(|| format!("{}: not a shmtrace run file", path.display()))
    }
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(Status::Exited(3).describe(), "exit 3");
        assert_eq!(Status::Exited(3).exit_code(), 3);
        let segv = Status::Signaled {
            signo: 11,
            core_dumped: true,
        };
        assert_eq!(segv.describe(), "killed by SIGSEGV (core dumped)");
        assert_eq!(segv.exit_code(), 139);
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(36), "SIGRTMIN+2");
    }

    #[test]
    fn round_trip() {
        let info = RunInfo {
            shmtrace_pid: 10,
            root_pid: Some(11),
            program: vec!["./a".into(), "b".into()],
            lib: "/x/libshmtrace.so".into(),
            started: Some(5),
            ended: None,
            status: Some(Status::Signaled {
                signo: 9,
                core_dumped: false,
            }),
        };
        assert_eq!(RunInfo::from_json(&info.to_json()), Some(info));
    }
}

//! Reading what the shim wrote: run directories and `.jsonl` logs, one record per line
//! (docs/log-format.md), and binary logs (`SHMTRACE_FORMAT=binary`, usually `.bin`), read as
//! the JSON lines `shmtrace decode --format json` prints for them. Parsing is tolerant: a malformed line is reported and skipped, an
//! unparseable last line (torn by a SIGKILL mid-write) is ignored, unknown events and keys
//! are ignored, so that logs of crashed runs and of newer shims still give a report.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Where a record was read: file index (in the order files were gathered) and line (from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: usize,
    pub line: usize,
}

/// A timestamp in microseconds since the epoch (the log has 6 decimals).
pub type Micros = i64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub base: u64,
    pub start: u64,
    pub end: u64,
}

/// Adds to `modules` those of `more` it lacks (the same file at the same place).
pub fn add_modules(modules: &mut Vec<Module>, more: &[Module]) {
    for m in more {
        if !modules
            .iter()
            .any(|k| k.start == m.start && k.path == m.path)
        {
            modules.push(m.clone());
        }
    }
}

/// What was loaded when a process image ended, written only when it loaded modules after its
/// start (`dlopen`): call sites inside them are symbolized with these.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub pid: i32,
    pub ts: Micros,
    pub modules: Vec<Module>,
}

/// A process image starts (program start, or after an exec).
#[derive(Clone, Debug)]
pub struct Start {
    pub pid: i32,
    pub ppid: Option<i32>,
    pub ts: Micros,
    pub exe: Option<String>,
    pub modules: Vec<Module>,
}

/// A forked child announces its parent (not written by every shim version).
#[derive(Clone, Debug)]
pub struct Fork {
    pub pid: i32,
    pub ppid: i32,
    pub ts: Micros,
}

/// An `enter` (no result yet) or `call` record.
#[derive(Clone, Debug)]
pub struct Call {
    pub pid: i32,
    pub tid: i32,
    pub ts: Micros,
    pub func: String,
    pub args: Map<String, Value>,
    /// `call` only.
    pub ret: Option<Value>,
    /// `call` only: `None` on success.
    pub errno: Option<String>,
    pub dur_ns: u64,
    pub caller: Option<u64>,
    /// Return addresses of the frames above `caller`, innermost first (`SHMTRACE_STACK`);
    /// empty when not recorded.
    pub stack: Vec<u64>,
    /// Successful `shmget`/`semget` only, in shims that record it.
    pub created: Option<bool>,
}

impl Call {
    pub fn arg_i64(&self, key: &str) -> Option<i64> {
        self.args.get(key).and_then(Value::as_i64)
    }

    pub fn arg_str(&self, key: &str) -> Option<&str> {
        self.args.get(key).and_then(Value::as_str)
    }

    pub fn ret_i64(&self) -> Option<i64> {
        self.ret.as_ref().and_then(Value::as_i64)
    }

    pub fn succeeded(&self) -> bool {
        self.errno.is_none()
    }
}

#[derive(Clone, Debug)]
pub struct ReportAttachment {
    pub shmid: i64,
    pub addr: u64,
    pub size: u64,
    pub readonly: bool,
    pub site: Option<u64>,
    pub stack: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct ReportMappings {
    pub site: Option<u64>,
    pub stack: Vec<u64>,
    /// The shared memory object mapped (`/dev/shm/NAME`, `memfd:NAME`), when named.
    pub object: Option<String>,
    pub count: u64,
    pub bytes: u64,
}

/// Mappings the shim set aside as an allocator's (`"retained"`, newer shims).
#[derive(Clone, Debug)]
pub struct ReportRetained {
    pub module: String,
    pub count: u64,
    pub bytes: u64,
}

/// A process's exit report.
#[derive(Clone, Debug)]
pub struct ExitReport {
    pub pid: i32,
    /// The shmids of the segments it created and left in the kernel.
    pub segments: Vec<i64>,
    /// The semids of the semaphore sets it created and left in the kernel.
    pub semaphores: Vec<i64>,
    pub attachments: Vec<ReportAttachment>,
    pub mappings: Vec<ReportMappings>,
    pub retained: Vec<ReportRetained>,
    /// Attachments and mappings something still pointed into (`"reachable_attachments"`,
    /// `"reachable"`; shims before the pointer scan count all as lost).
    pub reachable_attachments: Vec<ReportAttachment>,
    pub reachable: Vec<ReportMappings>,
    /// Bytes the pointer scan read, and its nanoseconds (`"scan"`).
    pub scanned: (u64, u64),
}

/// An audit finding, as logged when it happened (docs/log-format.md, "Findings").
#[derive(Clone, Debug)]
pub struct Finding {
    pub pid: i32,
    pub ts: Micros,
    pub code: String,
    pub name: String,
    pub severity: String,
    pub func: String,
    pub site: Option<u64>,
    pub message: String,
}

#[derive(Clone, Debug)]
pub enum Record {
    Start(Start),
    Fork(Fork),
    Enter(Call),
    Call(Call),
    Report(ExitReport),
    Finding(Finding),
    Modules(Loaded),
}

/// What reading one file found besides its records.
#[derive(Debug, Default)]
pub struct FileSummary {
    /// Malformed lines (line number, reason), the torn last line excluded.
    pub malformed: Vec<(usize, String)>,
    /// The last line could not be parsed (a process killed while writing it).
    pub torn_last_line: bool,
    pub records: usize,
}

/// The log files to read, found from the paths given on the command line.
#[derive(Debug, Default)]
pub struct Inputs {
    pub files: Vec<PathBuf>,
    /// Run directories given (they may hold `run.json`).
    pub dirs: Vec<PathBuf>,
}

/// Directories contribute their `*.jsonl` and `*.bin` files (by pid order), files are taken as
/// they are.
pub fn gather(paths: &[PathBuf]) -> Result<Inputs, String> {
    let mut inputs = Inputs::default();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| format!("{}: {}", path.display(), e))?;
        if meta.is_dir() {
            let mut found = jsonl_in(path).map_err(|e| format!("{}: {}", path.display(), e))?;
            found.sort_by_key(|p| log_order_key(p));
            inputs.files.extend(found);
            inputs.dirs.push(path.clone());
        } else {
            inputs.files.push(path.clone());
        }
    }
    // A file named twice (itself and through its directory) is read once.
    let mut seen = std::collections::HashSet::new();
    inputs
        .files
        .retain(|f| seen.insert(f.canonicalize().unwrap_or_else(|_| f.clone())));
    Ok(inputs)
}

/// The `*.jsonl` and `*.bin` (binary) regular files directly in `dir`.
pub fn jsonl_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "jsonl" || e == "bin")
            && entry.file_type()?.is_file()
        {
            found.push(path);
        }
    }
    Ok(found)
}

/// `123.jsonl` before `1000.jsonl`; other names after, by name.
fn log_order_key(path: &Path) -> (u64, String) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let stem = stem.unwrap_or_default();
    (stem.parse().unwrap_or(u64::MAX), stem)
}

/// Reads one log, handing each record to `sink` in file order.
pub fn read_file(
    path: &Path,
    file: usize,
    sink: &mut impl FnMut(Pos, Record),
) -> io::Result<FileSummary> {
    let mut opened = BufReader::new(File::open(path)?);
    let decoded;
    let reader: &mut dyn BufRead = if crate::binlog::is_binary(opened.fill_buf()?) {
        let mut data = Vec::new();
        opened.read_to_end(&mut data)?;
        let mut lines = Vec::new();
        crate::binlog::write_records(&data, true, &mut lines)?;
        decoded = lines;
        &mut decoded.as_slice()
    } else {
        &mut opened
    };
    let mut summary = FileSummary::default();
    let mut buf = Vec::new();
    let mut line = 0usize;
    let mut last_failed = None;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            last_failed = None;
            continue;
        }
        match parse_line(text) {
            Ok(Some(record)) => {
                summary.records += 1;
                last_failed = None;
                sink(Pos { file, line }, record);
            }
            Ok(None) => last_failed = None,
            Err(reason) => {
                summary.malformed.push((line, reason));
                last_failed = Some(line);
            }
        }
    }
    if last_failed.is_some() && last_failed == Some(line) {
        summary.malformed.pop();
        summary.torn_last_line = true;
    }
    Ok(summary)
}

/// One line: `Ok(None)` for a well-formed record of an event this version does not use.
pub fn parse_line(text: &str) -> Result<Option<Record>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let Value::Object(obj) = value else {
        return Err("not a JSON object".into());
    };
    let event = obj
        .get("event")
        .and_then(Value::as_str)
        .ok_or("no \"event\"")?;
    let record = match event {
        "start" => Record::Start(Start {
            pid: pid_of(&obj, "pid")?,
            ppid: obj.get("ppid").and_then(Value::as_i64).and_then(to_i32),
            ts: ts_of(&obj)?,
            exe: obj.get("exe").and_then(Value::as_str).map(str::to_string),
            modules: match obj.get("modules") {
                Some(Value::Array(items)) => items.iter().filter_map(module_of).collect(),
                _ => Vec::new(),
            },
        }),
        "fork" => Record::Fork(Fork {
            pid: pid_of(&obj, "pid")?,
            ppid: pid_of(&obj, "ppid")?,
            ts: ts_of(&obj)?,
        }),
        "enter" => Record::Enter(call_of(obj)?),
        "call" => Record::Call(call_of(obj)?),
        "report" => Record::Report(report_of(&obj)?),
        "finding" => Record::Finding(finding_of(&obj)?),
        "modules" => Record::Modules(Loaded {
            pid: pid_of(&obj, "pid")?,
            ts: ts_of(&obj)?,
            modules: match obj.get("modules") {
                Some(Value::Array(items)) => items.iter().filter_map(module_of).collect(),
                _ => Vec::new(),
            },
        }),
        _ => return Ok(None),
    };
    Ok(Some(record))
}

fn to_i32(v: i64) -> Option<i32> {
    i32::try_from(v).ok()
}

fn pid_of(obj: &Map<String, Value>, key: &str) -> Result<i32, String> {
    obj.get(key)
        .and_then(Value::as_i64)
        .and_then(to_i32)
        .ok_or_else(|| format!("no valid \"{key}\""))
}

fn ts_of(obj: &Map<String, Value>) -> Result<Micros, String> {
    let ts = obj
        .get("ts")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e12)
        .ok_or("no valid \"ts\"")?;
    // 1e12 s is far beyond any clock; the product fits in i64.
    Ok((ts * 1e6).round() as i64)
}

/// `"0x7f..."` to a number; `None` for null, absent or not hex.
pub fn hex(value: Option<&Value>) -> Option<u64> {
    let text = value?.as_str()?;
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    u64::from_str_radix(digits, 16).ok()
}

/// `["0x55d0c0a01300", ...]` to addresses; entries that are not hex are skipped, an absent or
/// malformed key is no stack.
pub fn stack_of(value: Option<&Value>) -> Vec<u64> {
    value
        .and_then(Value::as_array)
        .map(|frames| frames.iter().filter_map(|f| hex(Some(f))).collect())
        .unwrap_or_default()
}

fn module_of(value: &Value) -> Option<Module> {
    let obj = value.as_object()?;
    Some(Module {
        path: obj.get("path")?.as_str()?.to_string(),
        base: hex(obj.get("base"))?,
        start: hex(obj.get("start"))?,
        end: hex(obj.get("end"))?,
    })
}

fn call_of(mut obj: Map<String, Value>) -> Result<Call, String> {
    let args = match obj.remove("args") {
        Some(Value::Object(args)) => args,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err("\"args\" is not an object".into()),
    };
    Ok(Call {
        pid: pid_of(&obj, "pid")?,
        tid: pid_of(&obj, "tid").or_else(|_| pid_of(&obj, "pid"))?,
        ts: ts_of(&obj)?,
        func: obj
            .get("fn")
            .and_then(Value::as_str)
            .ok_or("no \"fn\"")?
            .to_string(),
        args,
        ret: obj.remove("ret"),
        errno: obj.get("errno").and_then(Value::as_str).map(str::to_string),
        dur_ns: obj.get("dur_ns").and_then(Value::as_u64).unwrap_or(0),
        caller: hex(obj.get("caller")),
        stack: stack_of(obj.get("stack")),
        created: obj.get("created").and_then(Value::as_bool),
    })
}

fn items<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    obj.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn num(obj: &Map<String, Value>, key: &str) -> u64 {
    obj.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn finding_of(obj: &Map<String, Value>) -> Result<Finding, String> {
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(Finding {
        pid: pid_of(obj, "pid")?,
        ts: ts_of(obj)?,
        code: text("code").ok_or("no \"code\"")?,
        name: text("name").unwrap_or_default(),
        severity: text("severity").unwrap_or_default(),
        func: text("fn").unwrap_or_default(),
        site: hex(obj.get("site")),
        message: text("message").unwrap_or_default(),
    })
}

fn report_of(obj: &Map<String, Value>) -> Result<ExitReport, String> {
    let id = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_i64).unwrap_or(-1);
    let attachments = |key: &str| {
        items(obj, key)
            .map(|o| ReportAttachment {
                shmid: id(o, "shmid"),
                addr: hex(o.get("addr")).unwrap_or(0),
                size: num(o, "size"),
                readonly: o.get("readonly").and_then(Value::as_bool).unwrap_or(false),
                site: hex(o.get("site")),
                stack: stack_of(o.get("stack")),
            })
            .collect()
    };
    let mappings = |key: &str| {
        items(obj, key)
            .map(|o| ReportMappings {
                site: hex(o.get("site")),
                stack: stack_of(o.get("stack")),
                object: o.get("object").and_then(Value::as_str).map(str::to_string),
                count: num(o, "count"),
                bytes: num(o, "bytes"),
            })
            .collect()
    };
    let scan = obj.get("scan").and_then(Value::as_object);
    Ok(ExitReport {
        pid: pid_of(obj, "pid")?,
        segments: items(obj, "segments").map(|o| id(o, "shmid")).collect(),
        semaphores: items(obj, "semaphores").map(|o| id(o, "semid")).collect(),
        attachments: attachments("attachments"),
        mappings: mappings("mappings"),
        reachable_attachments: attachments("reachable_attachments"),
        reachable: mappings("reachable"),
        scanned: scan.map_or((0, 0), |s| (num(s, "bytes"), num(s, "ns"))),
        retained: items(obj, "retained")
            .map(|o| ReportRetained {
                module: o
                    .get("module")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
                count: num(o, "count"),
                bytes: num(o, "bytes"),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_record() {
        let line = r#"{"event":"call","pid":4242,"tid":4243,"ts":1764168062.123456,"fn":"shmget","args":{"key":"IPC_PRIVATE","size":4096,"shmflg":"IPC_CREAT|0600"},"ret":65538,"errno":null,"dur_ns":12034,"caller":"0x55d0c0a01234","created":true}"#;
        let Ok(Some(Record::Call(c))) = parse_line(line) else {
            panic!("not a call");
        };
        assert_eq!((c.pid, c.tid, c.ts), (4242, 4243, 1_764_168_062_123_456));
        assert_eq!(c.func, "shmget");
        assert_eq!(c.ret_i64(), Some(65538));
        assert_eq!(c.caller, Some(0x55d0c0a01234));
        assert_eq!(c.created, Some(true));
        assert!(c.succeeded());
        assert_eq!(c.arg_str("key"), Some("IPC_PRIVATE"));
        assert!(c.stack.is_empty(), "no stack key, no stack");
    }

    #[test]
    fn stacks_in_calls_and_exit_reports() {
        let line = r#"{"event":"enter","pid":1,"tid":1,"ts":1.0,"fn":"semop","args":{},"caller":"0x10","stack":["0x20","0x30"]}"#;
        let Ok(Some(Record::Enter(c))) = parse_line(line) else {
            panic!("not an enter");
        };
        assert_eq!(c.stack, [0x20, 0x30]);
        let line = r#"{"event":"report","pid":1,"clean":false,"segments":[],"semaphores":[],"attachments":[{"shmid":5,"addr":"0x7f0000000000","size":4096,"readonly":false,"site":"0x10","stack":["0x20"]}],"mappings":[{"site":"0x10","stack":["0x40","bad",7],"count":1,"bytes":4096},{"site":"0x10","count":1,"bytes":4096}]}"#;
        let Ok(Some(Record::Report(r))) = parse_line(line) else {
            panic!("not a report");
        };
        assert_eq!(r.attachments[0].stack, [0x20]);
        assert_eq!(
            r.mappings[0].stack,
            [0x40],
            "frames that are not hex are skipped"
        );
        assert!(r.mappings[1].stack.is_empty());
    }

    #[test]
    fn start_record() {
        let line = r#"{"event":"start","pid":7,"ppid":1,"ts":1.5,"exe":"/bin/x","modules":[{"path":"/bin/x","base":"0x0","start":"0x400000","end":"0x401000"},{"bad":1}]}"#;
        let Ok(Some(Record::Start(s))) = parse_line(line) else {
            panic!("not a start");
        };
        assert_eq!(s.ppid, Some(1));
        assert_eq!(s.ts, 1_500_000);
        assert_eq!(s.modules.len(), 1);
        assert_eq!(s.modules[0].start, 0x400000);
    }

    #[test]
    fn bad_lines() {
        assert!(parse_line("{").is_err());
        assert!(parse_line("[]").is_err());
        assert!(parse_line(r#"{"event":"call"}"#).is_err());
        assert!(parse_line(r#"{"event":"future","x":1}"#).unwrap().is_none());
    }

    #[test]
    fn torn_last_line_is_not_an_error() {
        let dir = std::env::temp_dir().join(format!("shmtrace-logs-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("1.jsonl");
        fs::write(
            &path,
            "garbage\n{\"event\":\"report\",\"pid\":1,\"clean\":true}\n{\"event\":\"ca",
        )
        .unwrap();
        let mut n = 0;
        let summary = read_file(&path, 0, &mut |_, _| n += 1).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(n, 1);
        assert!(summary.torn_last_line);
        assert_eq!(summary.malformed.len(), 1);
        assert_eq!(summary.malformed[0].0, 1);
    }
}

//! The records that say where a process came from: `start` opens each process image's log
//! (who it is, what is loaded where), `fork` opens a forked child's (who its parent is).

use core::fmt::{self, Write};

/// One loaded object, as the start record shows it.
pub struct ModuleInfo<'a> {
    pub path: &'a [u8],
    pub base: u64,
    pub start: u64,
    pub end: u64,
}

pub struct Start<'a> {
    pub pid: i32,
    pub ppid: i32,
    pub ts_ns: u64,
    pub exe: &'a [u8],
    pub modules: &'a [ModuleInfo<'a>],
}

/// `shmtrace[PID] start: EXE (parent PPID)`: modules are for machines, in the JSON form only.
pub fn write_text(start: &Start<'_>, out: &mut impl Write) -> fmt::Result {
    write!(out, "shmtrace[{}] start: ", start.pid)?;
    for chunk in start.exe.utf8_chunks() {
        out.write_str(chunk.valid())?;
        if !chunk.invalid().is_empty() {
            out.write_char('?')?;
        }
    }
    writeln!(out, " (parent {})", start.ppid)
}

pub fn write_json(start: &Start<'_>, out: &mut impl Write) -> fmt::Result {
    write!(
        out,
        "{{\"event\":\"start\",\"pid\":{},\"ppid\":{},\"ts\":{}.{:06},\"exe\":",
        start.pid,
        start.ppid,
        start.ts_ns / 1_000_000_000,
        start.ts_ns % 1_000_000_000 / 1_000
    )?;
    json_string(out, start.exe)?;
    write_modules(out, start.modules)?;
    out.write_str("}\n")
}

/// `,"modules":[{"path":...,"base":...,"start":...,"end":...},...]`
fn write_modules(out: &mut impl Write, modules: &[ModuleInfo<'_>]) -> fmt::Result {
    out.write_str(",\"modules\":[")?;
    for (i, m) in modules.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        out.write_str("{\"path\":")?;
        json_string(out, m.path)?;
        write!(
            out,
            ",\"base\":\"{:#x}\",\"start\":\"{:#x}\",\"end\":\"{:#x}\"}}",
            m.base, m.start, m.end
        )?;
    }
    out.write_char(']')
}

/// The modules a process image loaded after its start (`dlopen`, as Python imports extension
/// modules), written when it ends, before its report, when there are any, so that call sites
/// inside them can be symbolized too.
pub struct Loaded<'a> {
    pub pid: i32,
    pub ts_ns: u64,
    pub modules: &'a [ModuleInfo<'a>],
}

/// `shmtrace[PID] modules: N loaded since start`: the list is for machines, in the JSON form
/// only.
pub fn write_loaded_text(loaded: &Loaded<'_>, out: &mut impl Write) -> fmt::Result {
    writeln!(
        out,
        "shmtrace[{}] modules: {} loaded since start",
        loaded.pid,
        loaded.modules.len()
    )
}

pub fn write_loaded_json(loaded: &Loaded<'_>, out: &mut impl Write) -> fmt::Result {
    write!(
        out,
        "{{\"event\":\"modules\",\"pid\":{},\"ts\":{}.{:06}",
        loaded.pid,
        loaded.ts_ns / 1_000_000_000,
        loaded.ts_ns % 1_000_000_000 / 1_000
    )?;
    write_modules(out, loaded.modules)?;
    out.write_str("}\n")
}

/// A forked child's first record. `ts_ns` is when the child began.
pub struct Fork {
    pub pid: i32,
    pub ppid: i32,
    pub ts_ns: u64,
}

pub fn write_fork_text(fork: &Fork, out: &mut impl Write) -> fmt::Result {
    writeln!(out, "shmtrace[{}] fork: parent {}", fork.pid, fork.ppid)
}

pub fn write_fork_json(fork: &Fork, out: &mut impl Write) -> fmt::Result {
    writeln!(
        out,
        "{{\"event\":\"fork\",\"pid\":{},\"ppid\":{},\"ts\":{}.{:06}}}",
        fork.pid,
        fork.ppid,
        fork.ts_ns / 1_000_000_000,
        fork.ts_ns % 1_000_000_000 / 1_000
    )
}

/// A JSON string from raw bytes (paths need not be UTF-8: other bytes become U+FFFD).
pub(crate) fn json_string(out: &mut impl Write, bytes: &[u8]) -> fmt::Result {
    out.write_char('"')?;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.write_str("\\\"")?,
                '\\' => out.write_str("\\\\")?,
                c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32)?,
                c => out.write_char(c)?,
            }
        }
        if !chunk.invalid().is_empty() {
            out.write_char('\u{fffd}')?;
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(exe: &'a [u8], modules: &'a [ModuleInfo<'a>]) -> Start<'a> {
        Start {
            pid: 42,
            ppid: 7,
            ts_ns: 1_764_168_062_123_456_789,
            exe,
            modules,
        }
    }

    #[test]
    fn json_names_the_program_and_its_modules() {
        let modules = [ModuleInfo {
            path: b"/lib/libc.so.6",
            base: 0x7f00_0000_0000,
            start: 0x7f00_0002_8000,
            end: 0x7f00_001f_0000,
        }];
        let mut out = String::new();
        write_json(&sample(b"/usr/bin/app", &modules), &mut out).unwrap();
        assert_eq!(
            out,
            "{\"event\":\"start\",\"pid\":42,\"ppid\":7,\"ts\":1764168062.123456,\
             \"exe\":\"/usr/bin/app\",\"modules\":[{\"path\":\"/lib/libc.so.6\",\
             \"base\":\"0x7f0000000000\",\"start\":\"0x7f0000028000\",\"end\":\"0x7f00001f0000\"}]}\n"
        );
    }

    #[test]
    fn odd_paths_stay_valid_json() {
        let mut out = String::new();
        write_json(&sample(b"/tmp/a\"b\\c\n\xff", &[]), &mut out).unwrap();
        assert!(out.contains(
            r#""exe":"/tmp/a\"b\\c\u000a\u{fffd}""#.replace("\\u{fffd}", "\u{fffd}").as_str()
        ));
    }

    /// The modules of the documented examples: the program, libc, and (loaded later) Python's
    /// `_posixshmem`.
    fn doc_modules() -> [ModuleInfo<'static>; 3] {
        [
            ModuleInfo {
                path: b"/usr/local/bin/app",
                base: 0x55d0_c0a0_0000,
                start: 0x55d0_c0a0_0000,
                end: 0x55d0_c0a0_5078,
            },
            ModuleInfo {
                path: b"/lib/x86_64-linux-gnu/libc.so.6",
                base: 0x7f3a_2bc0_0000,
                start: 0x7f3a_2bc0_0000,
                end: 0x7f3a_2bdf_1000,
            },
            ModuleInfo {
                path:
                    b"/usr/lib/python3.11/lib-dynload/_posixshmem.cpython-311-x86_64-linux-gnu.so",
                base: 0x7f3a_2c40_0000,
                start: 0x7f3a_2c40_0000,
                end: 0x7f3a_2c40_5010,
            },
        ]
    }

    fn assert_documented(lines: [String; 2]) {
        let doc = include_str!("../../../../docs/log-format.md");
        for line in lines {
            let line = line.trim_end();
            assert!(
                doc.contains(&format!("    {line}\n")),
                "not in the doc: {line}"
            );
        }
    }

    #[test]
    fn the_examples_in_the_log_format_doc_are_what_we_write() {
        let modules = doc_modules();
        let start = Start {
            pid: 4242,
            ppid: 4100,
            ts_ns: 1_764_168_062_120_001_000,
            exe: b"/usr/local/bin/app",
            modules: &modules[..2],
        };
        let (mut text, mut json) = (String::new(), String::new());
        write_text(&start, &mut text).unwrap();
        write_json(&start, &mut json).unwrap();
        assert_documented([text, json]);
    }

    #[test]
    fn the_modules_record_at_exit_is_documented() {
        let loaded = Loaded {
            pid: 4242,
            ts_ns: 1_764_168_062_990_001_000,
            modules: &doc_modules()[2..],
        };
        let (mut text, mut json) = (String::new(), String::new());
        write_loaded_text(&loaded, &mut text).unwrap();
        write_loaded_json(&loaded, &mut json).unwrap();
        assert_documented([text, json]);
    }

    #[test]
    fn fork_records() {
        let fork = Fork {
            pid: 43,
            ppid: 42,
            ts_ns: 1_764_168_062_500_000_000,
        };
        let (mut text, mut json) = (String::new(), String::new());
        write_fork_text(&fork, &mut text).unwrap();
        write_fork_json(&fork, &mut json).unwrap();
        assert_eq!(text, "shmtrace[43] fork: parent 42\n");
        let doc = include_str!("../../../../docs/log-format.md");
        let example = Fork {
            pid: 4243,
            ppid: 4242,
            ts_ns: 1_764_168_062_130_002_000,
        };
        let (mut t, mut j) = (String::new(), String::new());
        write_fork_text(&example, &mut t).unwrap();
        write_fork_json(&example, &mut j).unwrap();
        for line in [t, j] {
            assert!(
                doc.contains(&format!("    {line}")),
                "not in the doc: {line}"
            );
        }
        assert_eq!(
            json,
            "{\"event\":\"fork\",\"pid\":43,\"ppid\":42,\"ts\":1764168062.500000}\n"
        );
    }

    #[test]
    fn text_is_one_line() {
        let mut out = String::new();
        write_text(&sample(b"/usr/bin/app", &[]), &mut out).unwrap();
        assert_eq!(out, "shmtrace[42] start: /usr/bin/app (parent 7)\n");
    }
}

//! What the kernel holds: `/proc/sysvipc/shm` and `/proc/sysvipc/sem` now (each object's key,
//! size or nsems, creation time, and for segments the creator pid and the `SHM_DEST` bit), the
//! files of POSIX names in `/dev/shm`, the
//! same tables when a run started (`RUNDIR/kernel.json`, with the pids shmtrace reaped), the
//! SysV segments a live process has mapped, and which processes of a run are still running.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::logs::Micros;

/// `SHM_DEST` in a segment's mode: removed (IPC_RMID) but still attached somewhere.
const SHM_DEST: u32 = 0o1000;

/// What the kernel knew when a run started, and the processes it reaped, in the run directory.
pub const START_FILE: &str = "kernel.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// The object the logs recorded exists: same key, size or nsems, creation time (and for a
    /// segment, creator).
    Exists,
    /// Removed with IPC_RMID but still attached: the kernel frees it at the last detach.
    MarkedForRemoval,
    /// No object with this id any more.
    Gone,
    /// The id names another object now: the logged one was removed outside our view.
    Reused,
    /// `/proc/sysvipc` could not be read.
    Unknown,
}

/// A SysV object as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub id: i64,
    /// The key's 32 bits.
    pub key: u32,
    /// Bytes for a segment, semaphores for a set.
    pub size: u64,
    /// Segments only: the creator.
    pub cpid: Option<i32>,
    pub mode: u32,
    /// Seconds since the epoch: creation, or the last IPC_SET (SETVAL/SETALL for a set).
    pub ctime: i64,
}

/// What the logs say an object is.
pub struct Identity<'a> {
    /// `IPC_PRIVATE` or the key in hex, as logged.
    pub key: &'a str,
    pub size: u64,
    pub creator: i32,
    pub created: Micros,
}

impl Object {
    /// Whether this is the object the logs recorded: its creation time cannot precede the
    /// logged creation (one second of slack: the kernel keeps seconds).
    fn is(&self, who: &Identity<'_>) -> bool {
        let key_fits = parse_key(who.key).is_none_or(|k| k == self.key);
        key_fits
            && self.size == who.size
            && self.cpid.is_none_or(|c| c == who.creator)
            && self.ctime >= who.created.div_euclid(1_000_000) - 1
    }
}

/// A key as the logs show it: `IPC_PRIVATE` or `0x1234abcd`.
pub fn key_text(key: u32) -> String {
    if key == 0 {
        "IPC_PRIVATE".into()
    } else {
        format!("{key:#x}")
    }
}

/// `IPC_PRIVATE` or `0x1234abcd` as logged.
fn parse_key(text: &str) -> Option<u32> {
    if text == "IPC_PRIVATE" {
        return Some(0);
    }
    u32::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

#[derive(Debug, Default)]
pub struct Kernel {
    pub segments: Option<HashMap<i64, Object>>,
    pub sets: Option<HashMap<i64, Object>>,
}

impl Kernel {
    /// Reads both tables now; a table that cannot be read makes its answers `Unknown`.
    pub fn read() -> Kernel {
        Kernel {
            segments: fs::read_to_string("/proc/sysvipc/shm")
                .ok()
                .map(|t| parse_table(&t, true)),
            sets: fs::read_to_string("/proc/sysvipc/sem")
                .ok()
                .map(|t| parse_table(&t, false)),
        }
    }

    pub fn segment(&self, shmid: i64, who: &Identity<'_>) -> Presence {
        match self.segments.as_ref().map(|s| s.get(&shmid)) {
            None => Presence::Unknown,
            Some(None) => Presence::Gone,
            Some(Some(s)) if !s.is(who) => Presence::Reused,
            Some(Some(s)) if s.mode & SHM_DEST != 0 => Presence::MarkedForRemoval,
            Some(Some(_)) => Presence::Exists,
        }
    }

    pub fn semaphore_set(&self, semid: i64, who: &Identity<'_>) -> Presence {
        match self.sets.as_ref().map(|s| s.get(&semid)) {
            None => Presence::Unknown,
            Some(None) => Presence::Gone,
            Some(Some(s)) if !s.is(who) => Presence::Reused,
            Some(Some(_)) => Presence::Exists,
        }
    }
}

/// Whether `/dev/shm` holds the file of a name the logs say the tree created at `created`:
/// `Reused` when the file there was born more than a second after that (removed and made again
/// outside the tree; a file system without birth times never says so), `Unknown` when the
/// question fails for another reason than its absence.
pub fn dev_shm_file(path: &str, created: Micros) -> Presence {
    match fs::symlink_metadata(path) {
        Ok(meta) => {
            let born = meta
                .created()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            match born {
                Some(b) if b.as_micros() as i64 > created.saturating_add(1_000_000) => {
                    Presence::Reused
                }
                _ => Presence::Exists,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Presence::Gone,
        Err(_) => Presence::Unknown,
    }
}

/// `key id perms size|nsems ...`: segments have `cpid` in column 4 and `ctime` in 13, sets
/// `ctime` in 9.
fn parse_table(text: &str, segments: bool) -> HashMap<i64, Object> {
    rows(text)
        .filter_map(|cols| {
            let id = cols.get(1)?.parse().ok()?;
            let ctime_col = if segments { 13 } else { 9 };
            let object = Object {
                id,
                // Printed as a signed int.
                key: cols.first()?.parse::<i64>().ok()? as u32,
                size: cols.get(3)?.parse().ok()?,
                cpid: if segments {
                    Some(cols.get(4)?.parse().ok()?)
                } else {
                    None
                },
                mode: u32::from_str_radix(cols.get(2)?, 8).ok()?,
                ctime: cols.get(ctime_col)?.parse().ok()?,
            };
            Some((id, object))
        })
        .collect()
}

/// Data rows (the header skipped), split on whitespace.
fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
}

/// A process's parent, from `/proc/PID/stat`.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ppid ...`: the fields after the last ')'.
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The kernel's SysV tables when a run started (ids and creation times), and the pids
/// shmtrace reaped during it (processes of the tree, logged or not).
#[derive(Debug, Default)]
pub struct Start {
    pub segments: HashSet<(i64, i64)>,
    pub sets: HashSet<(i64, i64)>,
    pub started_s: i64,
    pub reaped: BTreeSet<i32>,
}

impl Start {
    /// Now, before the program starts.
    pub fn now(started: Micros) -> Start {
        let k = Kernel::read();
        let ids = |t: Option<HashMap<i64, Object>>| {
            t.into_iter()
                .flat_map(|m| m.into_values().map(|o| (o.id, o.ctime)))
                .collect()
        };
        Start {
            segments: ids(k.segments),
            sets: ids(k.sets),
            started_s: started.div_euclid(1_000_000),
            reaped: BTreeSet::new(),
        }
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let pairs =
            |s: &HashSet<(i64, i64)>| s.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>();
        let doc = json!({
            "segments": pairs(&self.segments),
            "sets": pairs(&self.sets),
            "started_s": self.started_s,
            "reaped": self.reaped,
        });
        fs::write(dir.join(START_FILE), format!("{doc}\n"))
    }

    /// `None` for runs without the file (older versions, or a log directory).
    pub fn read(dir: &Path) -> Option<Start> {
        let doc: Value =
            serde_json::from_str(&fs::read_to_string(dir.join(START_FILE)).ok()?).ok()?;
        let pairs = |key: &str| -> HashSet<(i64, i64)> {
            doc[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p.get(0)?.as_i64()?, p.get(1)?.as_i64()?)))
                .collect()
        };
        Some(Start {
            segments: pairs("segments"),
            sets: pairs("sets"),
            started_s: doc["started_s"].as_i64()?,
            reaped: doc["reaped"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| i32::try_from(p.as_i64()?).ok())
                .collect(),
        })
    }
}

/// The SysV segments `pid` has mapped now (`/SYSV<key>` lines of its maps: the inode column is
/// the shmid).
pub fn mapped_segments(pid: i32) -> BTreeSet<i64> {
    let Ok(maps) = fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return BTreeSet::new();
    };
    maps.lines()
        .filter(|l| l.contains("/SYSV"))
        .filter_map(|l| l.split_whitespace().nth(4)?.parse().ok())
        .collect()
}

/// The last process that operated on each semaphore of a set (`GETPID`), known pids only.
pub fn set_operators(semid: i64, nsems: u64) -> BTreeSet<i32> {
    let Ok(semid) = libc::c_int::try_from(semid) else {
        return BTreeSet::new();
    };
    (0..nsems.min(256))
        .filter_map(|n| {
            // SAFETY: GETPID takes no fourth argument; a wrong id just fails.
            let pid = unsafe { libc::semctl(semid, n as libc::c_int, libc::GETPID) };
            (pid > 0).then_some(pid)
        })
        .collect()
}

/// Whether a process of a run is still running: alive, not a zombie, and with this run's log
/// in its environment (so a recycled pid is not mistaken for it).
pub struct LiveCheck {
    templates: Vec<Vec<u8>>,
}

impl LiveCheck {
    pub fn new(files: &[PathBuf], run_dir: Option<&Path>) -> LiveCheck {
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .chain(run_dir.map(Path::to_path_buf))
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        dirs.sort();
        dirs.dedup();
        // Binary logs since runs record in binary; JSON logs of runs by earlier versions.
        let templates = dirs
            .iter()
            .flat_map(|d| {
                [&b"/%p.bin"[..], b"/%p.jsonl"].map(|name| {
                    let mut t = b"SHMTRACE_LOG=".to_vec();
                    t.extend_from_slice(d.as_os_str().as_encoded_bytes());
                    t.extend_from_slice(name);
                    t
                })
            })
            .collect();
        LiveCheck { templates }
    }

    pub fn running(&self, pid: i32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // `pid (comm) S ...`: the state follows the last ')'.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if matches!(state, Some("Z" | "X" | "x") | None) {
            return false;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            return false;
        };
        environ
            .split(|b| *b == 0)
            .any(|var| self.templates.iter().any(|t| var == t.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_not_id() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                   0   33095728  1600                  4096 13481     0      1     0     0     0     0          0          0 1795707153                     0                     0\n\
                   0   33095729   600                  4096 13481     0      1     0     0     0     0          0          0 1795707153                     0                     0\n";
        let sem = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n\
                   -383728207          5   644          1     0     0     0     0          0 1795707153\n";
        let k = Kernel {
            segments: Some(parse_table(shm, true)),
            sets: Some(parse_table(sem, false)),
        };
        let created = 1_795_707_153_250_000;
        let who = |key, size, creator| Identity {
            key,
            size,
            creator,
            created,
        };
        let private = who("IPC_PRIVATE", 4096, 13481);
        assert_eq!(k.segment(33095728, &private), Presence::MarkedForRemoval);
        assert_eq!(k.segment(33095729, &private), Presence::Exists);
        assert_eq!(
            k.segment(33095729, &who("IPC_PRIVATE", 4096, 1)),
            Presence::Reused
        );
        assert_eq!(
            k.segment(33095729, &who("IPC_PRIVATE", 8192, 13481)),
            Presence::Reused
        );
        assert_eq!(k.segment(1, &private), Presence::Gone);
        // -383728207 is 0xe920c5b1.
        let set = who("0xe920c5b1", 1, 13481);
        assert_eq!(k.semaphore_set(5, &set), Presence::Exists);
        assert_eq!(
            k.semaphore_set(5, &who("0xe920c5b2", 1, 13481)),
            Presence::Reused
        );
        assert_eq!(
            k.semaphore_set(5, &who("0xe920c5b1", 3, 13481)),
            Presence::Reused
        );
        // Created after the kernel's object: not the same one.
        let later = Identity {
            created: created + 10_000_000,
            ..set
        };
        assert_eq!(k.semaphore_set(5, &later), Presence::Reused);
        assert_eq!(k.semaphore_set(6, &set), Presence::Gone);
        assert_eq!(Kernel::default().semaphore_set(5, &set), Presence::Unknown);
    }
}

//! What the kernel holds now: `/proc/sysvipc/shm` and `/proc/sysvipc/sem` (the id column; for
//! segments also the creator pid and the `SHM_DEST` bit of the mode), and which processes of a
//! run are still running.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `SHM_DEST` in a segment's mode: removed (IPC_RMID) but still attached somewhere.
const SHM_DEST: u32 = 0o1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// The id exists (and, for a segment, was created by the same pid).
    Exists,
    /// Removed with IPC_RMID but still attached: the kernel frees it at the last detach.
    MarkedForRemoval,
    /// No object with this id any more.
    Gone,
    /// The id exists but names an object another process created.
    Reused,
    /// `/proc/sysvipc` could not be read.
    Unknown,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    cpid: i32,
    mode: u32,
}

#[derive(Debug, Default)]
pub struct Kernel {
    segments: Option<HashMap<i64, Segment>>,
    sets: Option<HashSet<i64>>,
}

impl Kernel {
    /// Reads both tables now; a table that cannot be read makes its answers `Unknown`.
    pub fn read() -> Kernel {
        Kernel {
            segments: fs::read_to_string("/proc/sysvipc/shm")
                .ok()
                .map(|t| parse_segments(&t)),
            sets: fs::read_to_string("/proc/sysvipc/sem")
                .ok()
                .map(|t| parse_sets(&t)),
        }
    }

    /// The segment `shmid` that `creator` created.
    pub fn segment(&self, shmid: i64, creator: i32) -> Presence {
        let Some(segments) = &self.segments else {
            return Presence::Unknown;
        };
        match segments.get(&shmid) {
            None => Presence::Gone,
            Some(s) if s.cpid != creator => Presence::Reused,
            Some(s) if s.mode & SHM_DEST != 0 => Presence::MarkedForRemoval,
            Some(_) => Presence::Exists,
        }
    }

    pub fn semaphore_set(&self, semid: i64) -> Presence {
        match &self.sets {
            None => Presence::Unknown,
            Some(sets) if sets.contains(&semid) => Presence::Exists,
            Some(_) => Presence::Gone,
        }
    }
}

/// `key shmid perms size cpid ...`: id to creator pid and mode.
fn parse_segments(text: &str) -> HashMap<i64, Segment> {
    rows(text)
        .filter_map(|cols| {
            let id = cols.get(1)?.parse().ok()?;
            let mode = u32::from_str_radix(cols.get(2)?, 8).ok()?;
            let cpid = cols.get(4)?.parse().ok()?;
            Some((id, Segment { cpid, mode }))
        })
        .collect()
}

/// `key semid perms nsems ...`: the ids.
fn parse_sets(text: &str) -> HashSet<i64> {
    rows(text)
        .filter_map(|cols| cols.get(1)?.parse().ok())
        .collect()
}

/// Data rows (the header skipped), split on whitespace.
fn rows(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
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
    fn parses_tables() {
        let shm = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                   0   33095728  1600                  4096 13481     0      1     0     0     0     0          0          0 1795707153                     0                     0\n\
                   0   33095729   600                  4096 13481     0      1     0     0     0     0          0          0 1795707153                     0                     0\n";
        let sem = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n\
                   -383728207          5   644          1     0     0     0     0          0 1795707153\n";
        let k = Kernel {
            segments: Some(parse_segments(shm)),
            sets: Some(parse_sets(sem)),
        };
        assert_eq!(k.segment(33095728, 13481), Presence::MarkedForRemoval);
        assert_eq!(k.segment(33095729, 13481), Presence::Exists);
        assert_eq!(k.segment(33095729, 1), Presence::Reused);
        assert_eq!(k.segment(1, 1), Presence::Gone);
        assert_eq!(k.semaphore_set(5), Presence::Exists);
        assert_eq!(k.semaphore_set(6), Presence::Gone);
        assert_eq!(Kernel::default().semaphore_set(5), Presence::Unknown);
    }
}

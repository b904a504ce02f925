//! What the merge produces: the report of a process tree and everything in it. Every merge
//! step fills these types and nothing else defines them, so the steps depend on this module
//! and never on each other's.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::args::ViewOptions;
use crate::kernel::Presence;
use crate::logs::Micros;
use crate::runinfo::{RunInfo, Status};
use crate::symbols::Symbol;

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It wrote its exit report.
    Exited,
    /// No exit report, and it is gone: killed or crashed (or it exec'd an untraced program).
    NotNormally,
    /// No exit report yet: it is still running (it outlived the root process).
    StillRunning,
}

impl Ending {
    pub fn label(&self) -> &'static str {
        match self {
            Ending::Exited => "exited",
            Ending::NotNormally => "did not exit normally",
            Ending::StillRunning => "still running",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentSource {
    /// Written by the shim (start or fork record), or the command that ran it.
    Recorded,
    /// Recognised from the code addresses it inherited (no record says it).
    Inferred,
}

#[derive(Clone, Debug)]
pub struct Process {
    pub pid: i32,
    pub ppid: Option<i32>,
    pub parent_source: ParentSource,
    /// Programs in order: what it inherited at fork (if it made calls before any exec), then
    /// one per exec.
    pub exes: Vec<Option<String>>,
    /// The first program was inherited from the parent at fork.
    pub forked: bool,
    pub ending: Ending,
    /// The root process of a run: how `wait` said it ended.
    pub status: Option<Status>,
    /// Depth in the tree (0 for a root), for display.
    pub depth: usize,
    pub records: u64,
    /// Tracked calls it made (returned or not).
    pub calls: u64,
}

#[derive(Clone, Debug)]
pub struct Attachment {
    pub pid: i32,
    pub shmid: i64,
    pub addr: u64,
    pub size: u64,
    pub readonly: bool,
    pub site: Option<Symbol>,
    /// The frames above `site`, innermost first (`--stack`); empty when not recorded.
    pub stack: Vec<Symbol>,
}

#[derive(Clone, Debug)]
pub struct Mappings {
    pub pid: i32,
    pub count: u64,
    pub bytes: u64,
    /// The shared memory object mapped (`/dev/shm/NAME`, `memfd:NAME`), when named.
    pub object: Option<String>,
    pub site: Option<Symbol>,
    /// With `--stack`, one site reached through different stacks is that many entries.
    pub stack: Vec<Symbol>,
}

/// Attachments (one each) or mappings (by call site) something in the process still pointed
/// into at its exit: exit released them and nothing was lost.
#[derive(Clone, Debug)]
pub struct Reachable {
    pub pid: i32,
    /// The segment of an attachment; `None` for mappings.
    pub shmid: Option<i64>,
    /// The shared memory object a mapping maps, when named.
    pub object: Option<String>,
    pub count: u64,
    pub bytes: u64,
    pub site: Option<Symbol>,
    pub stack: Vec<Symbol>,
}

/// Mappings a process's allocator made and kept (its call site, or a frame above it, inside a
/// known allocator's module): address space kept for reuse, not leaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    pub pid: i32,
    /// The allocator's file, as the process's module map names it.
    pub module: String,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug)]
pub struct Blocked {
    pub pid: i32,
    pub tid: i32,
    pub func: String,
    pub args: Map<String, Value>,
    pub site: Option<Symbol>,
    pub stack: Vec<Symbol>,
    pub since: Micros,
    /// The process is still running: the call may still return.
    pub still_waiting: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallStat {
    pub func: String,
    pub calls: u64,
    pub failed: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

/// The verdict, always over the whole tree (filters do not change it).
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub segments: u64,
    pub semaphore_sets: u64,
    /// POSIX shared memory and semaphore names created and never unlinked.
    pub names: u64,
    pub attachments: u64,
    pub mappings: u64,
    pub mapping_bytes: u64,
    /// Mappings set aside as allocators' (not leaks, not in `mappings`).
    pub retained_mappings: u64,
    pub retained_bytes: u64,
    /// Attachments and mappings still pointed into at exit (not in `attachments`, `mappings`).
    pub reachable: u64,
    pub reachable_bytes: u64,
    /// `--leaks all`: they count as leaks.
    pub count_reachable: bool,
    /// What the processes' pointer scans read, and their nanoseconds, summed.
    pub scanned_bytes: u64,
    pub scan_ns: u64,
    /// Processes without an exit report: their attachments and mappings are unknown.
    pub unreported: u64,
    /// Audit findings after `SHMTRACE_SUPPRESS`.
    pub findings: FindingTotals,
    /// Cycles of processes blocked in semop, each waiting for what the next holds.
    pub deadlocks: u64,
    /// Objects left behind but still used by a running process of the tree: not leaks.
    pub in_use: u64,
    /// Processes of the tree still running when the report was made.
    pub still_running: u64,
    /// Objects and attachments the kernel holds that no log recorded (leaks).
    pub not_seen: u64,
}

impl Verdict {
    pub fn leaks(&self) -> u64 {
        let lost = self.segments
            + self.semaphore_sets
            + self.names
            + self.attachments
            + self.mappings
            + self.not_seen;
        if self.count_reachable {
            lost + self.reachable
        } else {
            lost
        }
    }

    /// What `--error-exitcode` fails on: a leak, or a finding of severity error.
    pub fn fails(&self) -> bool {
        self.leaks() > 0 || self.findings.errors > 0 || self.deadlocks > 0
    }
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub run: Option<RunInfo>,
    pub run_dir: Option<PathBuf>,
    pub files: Vec<PathBuf>,
    /// All processes of the tree (the `--pid` filter applies to the lists below, not here).
    pub processes: Vec<Process>,
    pub leaks: Vec<SysvLeak>,
    /// POSIX shared memory and semaphore names created and never unlinked, and whether
    /// `/dev/shm` still holds them.
    pub names: Vec<NameLeak>,
    /// Objects left behind that running processes of the tree still use.
    pub in_use: Vec<SysvLeak>,
    /// What the kernel holds that no log recorded.
    pub not_seen: Vec<Unseen>,
    pub attachments: Vec<Attachment>,
    pub mappings: Vec<Mappings>,
    /// By process (tree order), then module.
    pub retained: Vec<Retained>,
    /// By process (tree order), attachments first, then mappings by bytes.
    pub reachable: Vec<Reachable>,
    pub blocked: Vec<Blocked>,
    /// Who the blocked semops wait for, and the deadlocks (over the whole tree).
    pub hangs: super::Hangs,
    pub findings: Vec<MergedFinding>,
    pub calls: Vec<CallStat>,
    pub sysv: SysvSummary,
    pub verdict: Verdict,
    /// The earliest record (or the run's start): "since" times are shown relative to it.
    pub first_ts: Option<Micros>,
    pub warnings: Vec<String>,
    /// Filters in effect, for the footer.
    pub filtered_pids: Vec<i32>,
    pub filtered_calls: Option<Vec<String>>,
}

impl Report {
    /// The processes the `--pid` filter shows.
    pub fn shown_processes<'a>(
        &'a self,
        view: &'a ViewOptions,
    ) -> impl Iterator<Item = &'a Process> {
        self.processes.iter().filter(|p| view.shows_pid(p.pid))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Segment,
    SemaphoreSet,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Segment => "segment",
            Kind::SemaphoreSet => "semaphore set",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SysvLeak {
    pub kind: Kind,
    pub id: i64,
    pub key: String,
    /// Bytes for a segment, semaphores for a set.
    pub size: u64,
    pub pid: i32,
    pub exe: Option<String>,
    pub site: Symbol,
    /// The frames above `site`, innermost first (`--stack`); empty when not recorded.
    pub stack: Vec<Symbol>,
    pub ts: Micros,
    pub presence: Presence,
    /// Processes of the tree still running that have it attached (a segment) or have used it
    /// (a set): an object in use, not a leak. Empty for a leak.
    pub users: Vec<User>,
}

/// Which call made a POSIX name: `shm_open` (`/dev/shm/NAME`) or `sem_open`
/// (`/dev/shm/sem.NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NameKind {
    Shm,
    Semaphore,
}

impl NameKind {
    /// As the report's text names it.
    pub fn name(self) -> &'static str {
        match self {
            NameKind::Shm => "shm name",
            NameKind::Semaphore => "semaphore name",
        }
    }

    /// As the JSON report's `kind` has it.
    pub fn key(self) -> &'static str {
        match self {
            NameKind::Shm => "shm",
            NameKind::Semaphore => "sem",
        }
    }
}

/// A POSIX shared memory or semaphore name created in the tree and never unlinked by it.
#[derive(Clone, Debug)]
pub struct NameLeak {
    pub kind: NameKind,
    /// As `shm_open` or `sem_open` was given it.
    pub name: String,
    /// Its file, `/dev/shm/NAME` (`/dev/shm/sem.NAME` for a semaphore).
    pub path: String,
    /// The process that created it last.
    pub pid: i32,
    pub exe: Option<String>,
    pub site: Symbol,
    pub stack: Vec<Symbol>,
    pub ts: Micros,
    /// Whether `/dev/shm` holds it now: `Exists`, `Gone` (removed outside the tree), `Reused`
    /// (the file there was made after the logged creation: removed and made again outside
    /// the tree) or `Unknown`.
    pub presence: Presence,
}

/// A running process that holds an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub pid: i32,
    /// Its current program.
    pub exe: Option<String>,
}

/// Something the kernel holds that no log recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unseen {
    pub what: UnseenKind,
    pub id: i64,
    /// The key's 32 bits (objects).
    pub key: Option<u32>,
    /// Bytes for a segment, semaphores for a set.
    pub size: u64,
    /// The creator (a segment), or the process that has it attached (an attachment).
    pub pid: Option<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnseenKind {
    Segment,
    SemaphoreSet,
    Attachment,
}

impl UnseenKind {
    pub fn name(self) -> &'static str {
        match self {
            UnseenKind::Segment => "segment",
            UnseenKind::SemaphoreSet => "semaphore set",
            UnseenKind::Attachment => "attachment",
        }
    }
}

/// SysV objects over the whole tree.
#[derive(Clone, Debug, Default)]
pub struct SysvSummary {
    pub created: u64,
    pub removed: u64,
    /// Removed by another process than the one that created it.
    pub removed_elsewhere: u64,
}

/// One finding, by code and call site, over every process that hit it.
#[derive(Clone, Debug)]
pub struct MergedFinding {
    pub code: String,
    pub name: String,
    pub severity: String,
    pub func: String,
    pub site: Option<Symbol>,
    pub count: u64,
    pub pids: Vec<i32>,
    /// The first occurrence's explanation.
    pub message: String,
    pub first_ts: Micros,
}

/// Findings by severity after suppression (each occurrence), and how many were suppressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FindingTotals {
    pub errors: u64,
    pub warnings: u64,
    pub info: u64,
    pub suppressed: u64,
}

impl FindingTotals {
    pub fn any(&self) -> bool {
        self.errors + self.warnings + self.info > 0
    }
}

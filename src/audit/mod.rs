//! Audit findings: mistakes and dangers in how the program uses these calls, each with a
//! stable code, a severity, the call site and one sentence with the fix (docs/findings.md).
//!
//! Detection happens around the one traced path: [`before`] asks the ledger, while it is held
//! across a call that replaces or releases address space, what that call is about to act on;
//! [`after`] looks at the completed call. Every finding goes out through [`report_finding`],
//! which applies the code suppressions, counts it for the exit report, and logs it.
//!
//! Cost when nothing is found: a few flag tests per call; the audit's own lock only for the
//! SysV object calls, `shmat`/`shmdt`, and `semop`s without `SEM_UNDO` (their holdings), and
//! a kernel question only where a finding is likely (a `munmap` of a range the ledger does not
//! know, a get that opened an object by key).

pub mod blocking;
pub mod codes;
pub mod detect;
mod probe;
pub mod record;
pub mod state;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::ledger::{Ledger, OpenSemaphore};
use crate::platform::config::{self, AuditEnv, Lossy};
use crate::platform::spinlock::SpinLock;
use crate::platform::{clock, process, sink};
use shmtrace_core::suppress;
use shmtrace_core::trace::binary::KIND_FINDING;
use shmtrace_core::trace::event::{Event, Func, Phase, SemOp};
use shmtrace_core::trace::linebuf::LineBuf;

use codes::what;
pub use codes::{Code, Finding, Severity};
pub use detect::Pre;
use state::{RemovedFilter, State};

static STATE: SpinLock<State> = SpinLock::new(State::new());
/// Codes suppressed by a rule without a site (bit `Code::bit`).
static SUPPRESSED: AtomicU32 = AtomicU32::new(0);
/// `SHMTRACE_BLOCK_WARN_MS`, 0 = off.
static BLOCK_WARN_MS: AtomicU64 = AtomicU64::new(0);
/// Which SysV ids this process may have removed (the state's own table, published after each
/// change): a use of any other cannot be "after remove".
static REMOVED: RemovedFilter = RemovedFilter::new();

/// The longest suppression file read (a longer one is read up to this).
const SUPPRESS_MAX: usize = 64 * 1024;

/// Takes `SHMTRACE_BLOCK_WARN_MS` and `SHMTRACE_SUPPRESS` from the configuration step.
pub fn configure(env: AuditEnv) {
    let AuditEnv {
        block_warn_ms,
        suppress,
        secure,
    } = env;
    match block_warn_ms {
        None | Some(b"") => {}
        Some(v) => match core::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        {
            Some(ms) => BLOCK_WARN_MS.store(ms, Ordering::Relaxed),
            None => config::warn_line(format_args!(
                "SHMTRACE_BLOCK_WARN_MS={} is not a number of milliseconds; blocked semops and message queue calls are not reported",
                Lossy(v)
            )),
        },
    }
    match suppress {
        None | Some(b"") => {}
        Some(_) if secure => config::warn_line(format_args!(
            "SHMTRACE_SUPPRESS is ignored in a setuid/setcap (secure-execution) program"
        )),
        Some(path) => load_suppressions(path),
    }
}

fn load_suppressions(path: &[u8]) {
    let mut buf = vec![0u8; SUPPRESS_MAX];
    let Some(len) = read_file(path, &mut buf) else {
        config::warn_line(format_args!(
            "cannot read SHMTRACE_SUPPRESS={}; nothing is suppressed",
            Lossy(path)
        ));
        return;
    };
    let text = String::from_utf8_lossy(buf.get(..len).unwrap_or(&[]));
    let mut bits = 0u32;
    for (line, rule) in suppress::parse(&text, |w| Code::parse(w).is_some()) {
        match rule {
            // Rules with a site need symbols: the `shmtrace` command applies them.
            Ok(suppress::Rule {
                code: Some(code),
                site: None,
            }) => bits |= Code::parse(code).map_or(0, Code::bit),
            Ok(_) => {}
            Err(e) => config::warn_line(format_args!(
                "{}:{line}: ignored: {}",
                Lossy(path),
                e.reason()
            )),
        }
    }
    SUPPRESSED.store(bits, Ordering::Relaxed);
}

/// The file's first bytes, with raw syscalls (the constructor may run before libc's stdio).
fn read_file(path: &[u8], buf: &mut [u8]) -> Option<usize> {
    let mut c_path = [0u8; sink::PATH_MAX];
    c_path.get_mut(..path.len())?.copy_from_slice(path);
    if path.len() >= c_path.len() || path.contains(&0) {
        return None;
    }
    // SAFETY: `c_path` is NUL-terminated (zeroed beyond `path`).
    let fd = unsafe { libc::open(c_path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < buf.len() {
        let rest = buf.get_mut(len..)?;
        // SAFETY: `rest` is writable for its length.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    Some(len)
}

pub fn suppressed(code: Code) -> bool {
    SUPPRESSED.load(Ordering::Relaxed) & code.bit() != 0
}

/// `SHMTRACE_BLOCK_WARN_MS`, or 0 when off or the finding is suppressed.
#[inline(always)]
pub fn block_warn_ms() -> u64 {
    warn_ms_unless(Code::SemopBlocked)
}

/// `SHMTRACE_BLOCK_WARN_MS` for `msgsnd`/`msgrcv` (`MsgBlocked`), or 0.
#[inline(always)]
pub fn msg_block_warn_ms() -> u64 {
    warn_ms_unless(Code::MsgBlocked)
}

#[inline(always)]
fn warn_ms_unless(code: Code) -> u64 {
    match BLOCK_WARN_MS.load(Ordering::Relaxed) {
        0 => 0,
        _ if suppressed(code) => 0,
        ms => ms,
    }
}

/// The one way out for a finding: suppressed by code, or counted for the exit report and
/// written to the log as one record.
pub fn report_finding(finding: Finding) {
    if suppressed(finding.code) {
        return;
    }
    STATE.lock().count(finding);
    if !sink::enabled() {
        return;
    }
    let rec = record::Record {
        pid: process::pid(),
        tid: process::tid(),
        ts_ns: clock::now_ns(),
        finding: &finding,
    };
    sink::write_other(KIND_FINDING, |format, line: &mut LineBuf| {
        record::write(format, &rec, line);
        line.finish_line();
    });
}

/// Before a call that replaces or releases address space, with the ledger held: what it is
/// about to act on. May clobber errno (the hook restores the caller's before the call).
/// Inlined: a hook that knows its function keeps only its own arm.
#[inline(always)]
pub fn before(func: Func, args: &[u64; 6], ledger: &Ledger, page: u64) -> Pre {
    let mut pre = Pre::default();
    let round = |len: u64| round_to_page(len, page);
    let arg_int = |i: usize| args[i] as i32;
    match func {
        Func::Mmap | Func::Mmap64 => {
            let flags = arg_int(3);
            if flags & libc::MAP_FIXED != 0 && flags & libc::MAP_FIXED_NOREPLACE == 0 {
                let addr = args[0];
                pre.replaced = ledger.live_use_in(addr, addr.saturating_add(round(args[1])));
            }
        }
        Func::Shmat if arg_int(2) & libc::SHM_REMAP != 0 => {
            let addr = args[1];
            if let Some(size) = probe::segment_size(arg_int(0)) {
                pre.replaced = ledger.live_use_in(addr, addr.saturating_add(round(size)));
            }
        }
        Func::Mremap => {
            let old = args[0];
            let both = libc::PROT_WRITE | libc::PROT_EXEC;
            pre.source_wx = ledger.prot_at(old).is_some_and(|prot| prot & both == both);
            if arg_int(3) & libc::MREMAP_FIXED != 0 {
                let new = args[4];
                pre.replaced = ledger.live_use_in(new, new.saturating_add(round(args[2])));
            }
        }
        Func::Munmap => {
            let (addr, len) = (args[0], round(args[1]));
            let end = addr.saturating_add(len);
            pre.never_mapped = !ledger.knows_any(addr, end) && probe::has_hole(addr, len);
        }
        // A failed `shmdt` changed nothing: asked afterwards, only then (`after_failure`).
        Func::Shmat
        | Func::Shmdt
        | Func::Shmget
        | Func::Shmctl
        | Func::Semget
        | Func::Semop
        | Func::Semtimedop
        | Func::Semctl
        | Func::ShmOpen
        | Func::ShmUnlink
        | Func::MemfdCreate
        | Func::SemOpen
        | Func::SemClose
        | Func::SemUnlink
        | Func::Msgget
        | Func::Msgsnd
        | Func::Msgrcv
        | Func::Msgctl => {}
    }
    pre
}

/// `len` rounded up to a multiple of `page`, `u64::MAX` past the top. The page is a power of
/// two (the kernel's): a mask, where a multiple of any number would take a division on every
/// `munmap`.
#[inline(always)]
fn round_to_page(len: u64, page: u64) -> u64 {
    if page.is_power_of_two() {
        len.checked_add(page - 1)
            .map_or(u64::MAX, |end| end & !(page - 1))
    } else {
        len.checked_next_multiple_of(page.max(1))
            .unwrap_or(u64::MAX)
    }
}

/// After a call [`before`] looked at, the ledger still held and the call not yet entered:
/// what only a failure needs, asked only then, since a failed call changed nothing and the
/// ledger is as it was before the call (`shmdt` of an address inside an attachment).
#[inline(always)]
pub fn after_failure(ev: &Event, ledger: &Ledger, pre: &mut Pre) {
    if ev.func == Func::Shmdt && ev.failed() && ev.errno == libc::EINVAL {
        pre.inside_attachment = inside_attachment(ledger, ev.args[0]);
    }
}

/// The start of the attachment `addr` lies inside (not at its start), or 0.
#[cold]
fn inside_attachment(ledger: &Ledger, addr: u64) -> u64 {
    ledger
        .attachment_containing(addr)
        .map_or(0, |att| if att.addr != addr { att.addr } else { 0 })
}

/// What [`after`] has to do for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    /// Nothing can be found in it, and there is nothing to remember (the common case: no lock).
    Nothing,
    /// A `semop` that can show no finding now (no id was removed yet), whose operations without
    /// `SEM_UNDO` change what this process holds: only the holdings to update.
    Holdings,
    /// Detection in full.
    Detect,
}

#[inline(always)]
fn work(ev: &Event, pre: &Pre) -> Work {
    match ev.func {
        Func::Mmap | Func::Mmap64 | Func::Munmap | Func::Mremap => {
            if mapping_detects(ev.func, &ev.args, Some(pre)) {
                Work::Detect
            } else {
                Work::Nothing
            }
        }
        Func::Semop | Func::Semtimedop => {
            if REMOVED.may_hold(what::SEMAPHORE_SET, ev.arg_int(0)) {
                Work::Detect
            } else if ev.failed() || !ev.sops().iter().any(detect::changes_holdings) {
                Work::Nothing
            } else {
                Work::Holdings
            }
        }
        Func::Shmget | Func::Shmat | Func::Shmdt | Func::Shmctl | Func::Semget | Func::Semctl => {
            Work::Detect
        }
        Func::ShmOpen | Func::SemOpen if ev.failed() => Work::Nothing,
        Func::ShmOpen | Func::SemOpen => Work::Detect,
        Func::ShmUnlink | Func::MemfdCreate | Func::SemClose | Func::SemUnlink => Work::Nothing,
        Func::Msgget | Func::Msgctl => Work::Detect,
        // A use of a removed queue is all there is to find in them.
        Func::Msgsnd | Func::Msgrcv if REMOVED.may_hold(what::MESSAGE_QUEUE, ev.arg_int(0)) => {
            Work::Detect
        }
        Func::Msgsnd | Func::Msgrcv => Work::Nothing,
    }
}

/// Whether a completed mapping call (`mmap`, `mmap64`, `munmap`, `mremap`) needs detection
/// in full: its arguments and what [`before`] found decide, so a call that is not logged
/// builds an event only then.
#[inline(always)]
pub fn mapping_detects(func: Func, args: &[u64; 6], pre: Option<&Pre>) -> bool {
    let both = libc::PROT_WRITE | libc::PROT_EXEC;
    let wx = matches!(func, Func::Mmap | Func::Mmap64) && args[2] as i32 & both == both;
    wx || pre.is_some_and(Pre::found_anything)
}

/// What the audit needs of a call the ledger only counts, while no event is built for a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Nothing can be found in it.
    Nothing,
    /// A successful `semop` before any id was removed: only the holdings of its operations
    /// ([`holdings_of`]).
    Holdings,
    /// Detection in full, from the call's event ([`after`]).
    Detect,
}

/// [`after`]'s decision for the calls of `Ledger::counts_only`, from the function, its first
/// argument (the id) and whether it succeeded (the operations, which only a `semop`'s holdings
/// need, are read afterwards).
#[inline(always)]
pub fn counted_work(func: Func, id: i32, ok: bool) -> Counted {
    match func {
        Func::Semop | Func::Semtimedop if REMOVED.may_hold(what::SEMAPHORE_SET, id) => {
            Counted::Detect
        }
        Func::Msgsnd | Func::Msgrcv if REMOVED.may_hold(what::MESSAGE_QUEUE, id) => Counted::Detect,
        Func::Semop | Func::Semtimedop if ok => Counted::Holdings,
        _ => Counted::Nothing,
    }
}

/// A successful `semop` of `semid` at `caller` with these operations (the first
/// `SOPS_KEPT`), before any id was removed: what it took or gave back without `SEM_UNDO`.
/// One pass; the audit's lock only from the first that changes the holdings.
#[inline(always)]
pub fn holdings_of(semid: i32, ops: impl Iterator<Item = SemOp>, caller: u64) {
    let mut state = None;
    for op in ops.filter(detect::changes_holdings) {
        state
            .get_or_insert_with(|| STATE.lock())
            .adjusted(semid, op.num, op.op, caller);
    }
}

/// After a completed call (not in a vfork child): its findings, reported. `queued` is what
/// `msgctl(IPC_RMID)` found in the queue just before the call. The common cases are decided
/// inline, in the hook; detection in full has its own frame.
#[inline(always)]
pub fn after(ev: &Event, pre: &Pre, page: u64, queued: Option<(u64, u64)>) {
    if ev.phase != Phase::Exit {
        return;
    }
    match work(ev, pre) {
        Work::Nothing => {}
        Work::Holdings => detect::holdings(&mut STATE.lock(), ev),
        Work::Detect => detect_after(ev, pre, page, queued),
    }
}

#[inline(never)]
fn detect_after(ev: &Event, pre: &Pre, page: u64, queued: Option<(u64, u64)>) {
    let mut asked = detect::Asked {
        creator_uid: None,
        my_uid: 0,
        page_size: page,
        queued,
    };
    if detect::opened_by_key(ev) {
        let kind = detect::get_kind(ev.func);
        asked.creator_uid = probe::creator_uid(kind, ev.ret as i32);
        asked.my_uid = probe::effective_uid();
    }
    let mut found = detect::Out::default();
    {
        let mut state = STATE.lock();
        detect::find(&mut state, ev, pre, &asked, &mut found);
        state.publish_removed(&REMOVED);
    }
    for finding in found.iter() {
        report_finding(finding);
    }
}

/// At exit, before the report: semaphores still held without `SEM_UNDO`, and the named
/// semaphores the process opened and never closed (`open`, from the ledger).
pub fn at_exit(open: &[OpenSemaphore]) {
    let held: Vec<Finding> = {
        let state = STATE.lock();
        detect::at_exit(&state, probe::semaphore_value).collect()
    };
    for finding in held.into_iter().chain(detect::not_closed(open)) {
        report_finding(finding);
    }
}

/// One line of the exit report's findings: a finding, how often it happened at its site.
pub fn summary() -> (Vec<crate::ledger::FindingEntry>, [u64; 3]) {
    let state = STATE.lock();
    let mut entries: Vec<crate::ledger::FindingEntry> = state
        .found()
        .map(|f| {
            let mut message = String::new();
            let _ = f.finding.write_message(&mut message);
            crate::ledger::FindingEntry {
                code: f.finding.code.code(),
                name: f.finding.code.name(),
                severity: f.finding.severity().name(),
                error: f.finding.severity() == Severity::Error,
                func: f.finding.func.name(),
                site: f.finding.site,
                count: f.count,
                message,
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        b.error
            .cmp(&a.error)
            .then(a.code.cmp(b.code))
            .then(a.site.cmp(&b.site))
    });
    let totals = [
        state.total(Severity::Error),
        state.total(Severity::Warning),
        state.total(Severity::Info),
    ];
    (entries, totals)
}

/// In a fork child (one thread; a lock another thread held at fork is simply dropped): the
/// child's findings and holdings are its own, from nothing.
///
/// # Safety
/// Only in the child of `fork`, before any other thread exists.
pub unsafe fn after_fork_in_child() {
    // SAFETY: no other thread exists, so nobody else can touch the state; resetting it in
    // place allocates nothing, and the lock is then released whoever held it.
    unsafe {
        let state = &mut *STATE.data_ptr();
        state.clear();
        state.publish_removed(&REMOVED);
        STATE.unlock_raw();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_warn_ms_is_off_when_suppressed() {
        BLOCK_WARN_MS.store(5, Ordering::Relaxed);
        assert_eq!(block_warn_ms(), 5);
        SUPPRESSED.store(Code::SemopBlocked.bit(), Ordering::Relaxed);
        assert_eq!(block_warn_ms(), 0);
        SUPPRESSED.store(0, Ordering::Relaxed);
        BLOCK_WARN_MS.store(0, Ordering::Relaxed);
    }

    /// Marks `(kind, id)` removed as a successful `IPC_RMID` would, runs `f`, and forgets it
    /// again as a get returning the id would.
    fn with_removed<T>(kind: u64, id: i32, f: impl FnOnce() -> T) -> T {
        let change = |removed: bool| {
            let mut state = STATE.lock();
            if removed {
                state.removed(kind, id);
            } else {
                state.id_reused(kind, id);
            }
            state.publish_removed(&REMOVED);
        };
        change(true);
        let out = f();
        change(false);
        out
    }

    /// An id no other test uses, and its neighbour.
    const REMOVED_ID: i32 = 0x5eed_0001;

    /// Called from the test below, which also marks ids removed.
    fn a_counted_call_without_its_event_gets_the_work_it_would_get_with_it() {
        for func in Func::ALL
            .iter()
            .copied()
            .filter(|&f| Ledger::counts_only(f))
        {
            let kind = match func {
                Func::Msgsnd | Func::Msgrcv => what::MESSAGE_QUEUE,
                _ => what::SEMAPHORE_SET,
            };
            for removed in [false, true] {
                for id in [REMOVED_ID, REMOVED_ID + 1] {
                    for ret in [0, func.failure_value()] {
                        for flg in [0, libc::SEM_UNDO as i16] {
                            let mut ev = Event::new(Phase::Exit, func);
                            ev.args[0] = id as u64;
                            ev.ret = ret;
                            ev.sops[0].op = -1;
                            ev.sops[0].flg = flg;
                            ev.sops_read = 1;
                            let both = || {
                                let with_event = work(&ev, &Pre::default());
                                let without = match counted_work(func, id, !ev.failed()) {
                                    Counted::Holdings
                                        if !ev.sops().iter().any(detect::changes_holdings) =>
                                    {
                                        Work::Nothing
                                    }
                                    Counted::Holdings => Work::Holdings,
                                    Counted::Nothing => Work::Nothing,
                                    Counted::Detect => Work::Detect,
                                };
                                (with_event, without)
                            };
                            let (with_event, without) = if removed {
                                with_removed(kind, REMOVED_ID, both)
                            } else {
                                both()
                            };
                            assert_eq!(
                                with_event, without,
                                "{func:?} removed {removed} id {id:#x} ret {ret}"
                            );
                            let use_after_remove =
                                removed && id == REMOVED_ID && !matches!(func, Func::MemfdCreate);
                            if use_after_remove {
                                assert_eq!(without, Work::Detect, "{func:?} ret {ret}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lengths_round_to_the_page_as_a_multiple_would() {
        for page in [0, 1, 3, 4096, 65536, 1 << 21] {
            for len in [
                0,
                1,
                4095,
                4096,
                4097,
                1 << 40,
                u64::MAX - 4096,
                u64::MAX - 1,
                u64::MAX,
            ] {
                let want = len
                    .checked_next_multiple_of(page.max(1))
                    .unwrap_or(u64::MAX);
                assert_eq!(round_to_page(len, page), want, "{len:#x} to {page}");
            }
        }
    }

    #[test]
    fn anything_found_before_a_mapping_call_means_detection() {
        let found = [
            Pre {
                replaced: Some((0x1000, false)),
                ..Pre::default()
            },
            Pre {
                never_mapped: true,
                ..Pre::default()
            },
            Pre {
                inside_attachment: 0x1000,
                ..Pre::default()
            },
            Pre {
                source_wx: true,
                ..Pre::default()
            },
        ];
        let rw = [
            0,
            4096,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            0,
            0,
            0,
        ];
        for func in [Func::Mmap, Func::Mmap64, Func::Munmap, Func::Mremap] {
            assert!(
                !mapping_detects(func, &rw, Some(&Pre::default())),
                "{func:?}"
            );
            assert!(!mapping_detects(func, &rw, None), "{func:?}");
            for pre in &found {
                assert!(pre.found_anything());
                assert!(mapping_detects(func, &rw, Some(pre)), "{func:?} {pre:?}");
            }
        }
        let wx = [
            0,
            4096,
            (libc::PROT_WRITE | libc::PROT_EXEC) as u64,
            0,
            0,
            0,
        ];
        assert!(mapping_detects(Func::Mmap, &wx, None));
        assert!(!mapping_detects(Func::Munmap, &wx, Some(&Pre::default())));
    }

    #[test]
    fn the_common_calls_need_no_lock_and_a_semop_only_its_holdings() {
        let mut ev = Event::new(Phase::Exit, Func::Mmap);
        ev.args[2] = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        assert_eq!(work(&ev, &Pre::default()), Work::Nothing);
        ev.args[2] = (libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        assert_eq!(work(&ev, &Pre::default()), Work::Detect);
        let mut op = Event::new(Phase::Exit, Func::Semop);
        op.sops[0].op = -1;
        op.sops[0].flg = libc::SEM_UNDO as i16;
        op.sops_read = 1;
        assert_eq!(work(&op, &Pre::default()), Work::Nothing);
        op.sops[0].flg = 0;
        assert_eq!(work(&op, &Pre::default()), Work::Holdings);
        op.ret = -1;
        assert_eq!(work(&op, &Pre::default()), Work::Nothing);
        op.ret = 0;
        op.args[0] = REMOVED_ID as u64;
        let after_its_removal = with_removed(what::SEMAPHORE_SET, REMOVED_ID, || {
            work(&op, &Pre::default())
        });
        assert_eq!(
            after_its_removal,
            Work::Detect,
            "a use after remove may show"
        );
        let other_set = with_removed(what::SEMAPHORE_SET, REMOVED_ID + 1, || {
            work(&op, &Pre::default())
        });
        assert_eq!(other_set, Work::Holdings, "only its own removal matters");
        a_counted_call_without_its_event_gets_the_work_it_would_get_with_it();
    }
}

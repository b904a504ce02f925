//! The calls the ledger only counts (`semop`, `semtimedop`, `msgsnd`, `msgrcv`,
//! `memfd_create`: `Ledger::counts_only`) while nothing is logged: no event, no clock, no
//! call site, no ledger; one relaxed counter add, and the audit's work decided from the
//! function and the result. Only a detection in full (after this process removed an id)
//! builds the event the logged path would have built.

use crate::audit::{self, Counted, Pre};
use crate::ledger::{Facts, Ledger};
use crate::platform::errno;
use crate::platform::process;
use crate::platform::shield::shield;
use crate::platform::sink;
use crate::recorder;
use libc::sembuf;
use shmtrace_core::trace::event::{Event, Func, Phase, SOPS_KEPT, SemOp};

use super::traced::Started;

/// Whether this call takes the path here: a call the ledger only counts, no log to write it
/// to, and tracked (settings in force, not paused). Once settled, one load says so (as for
/// the mapping calls); before, the log first: a logged call then pays one test for this path.
/// Before the settings are read no log is open, so the order changes no answer.
#[inline(always)]
pub(super) fn quietly(func: Func) -> bool {
    Ledger::counts_only(func)
        && (recorder::quiet_settled()
            || (!sink::enabled() && recorder::configured() && !recorder::paused()))
}

/// Makes the call (the caller's errno in place) and counts it; the audit looks at what it
/// needs. Returns the call's result with its errno in place.
#[inline(always)]
pub(super) fn count(
    func: Func,
    caller: usize,
    args: [u64; 6],
    errno_at: errno::Slot,
    mut started: Started,
    call: impl FnOnce(&mut Started) -> i64,
    after: impl FnOnce(&mut Event, &mut Facts),
) -> i64 {
    let ret = call(&mut started);
    let call_errno = errno_at.get();
    recorder::count(func);
    match audit::counted_work(func, args[0] as i32, ret != func.failure_value()) {
        Counted::Nothing => {}
        Counted::Holdings => {
            shield(|| holdings(&args, caller));
        }
        Counted::Detect => {
            shield(|| detect(func, caller, args, ret, call_errno, after));
        }
    }
    errno_at.set(call_errno);
    ret
}

/// A successful `semop`/`semtimedop`: the operations it made, as the event would keep them
/// (the first `SOPS_KEPT`), for the holdings.
#[inline(always)]
fn holdings(args: &[u64; 6], caller: usize) {
    let sops = args[1] as usize as *const sembuf;
    // The kernel takes nsops as an unsigned int: that is how many entries it read.
    let n = (args[2] as u32 as usize).min(SOPS_KEPT);
    let op = |i: usize| {
        // SAFETY: the call succeeded, so the kernel copied all `nsops` entries from `sops`
        // during it: the first `n <= nsops` are mapped and readable, and the caller cannot
        // free them before we return.
        let op = unsafe { sops.add(i).read_unaligned() };
        SemOp {
            num: op.sem_num,
            op: op.sem_op,
            flg: op.sem_flg,
        }
    };
    // One operation, the common call (a P or a V), without the loop's set-up.
    if n == 1 {
        audit::holdings_of(args[0] as i32, core::iter::once(op(0)), caller as u64);
    } else {
        audit::holdings_of(args[0] as i32, (0..n).map(op), caller as u64);
    }
}

/// Detection in full needs the event: built as the logged path builds it, without what only
/// a record shows (thread, time, duration, stack).
#[cold]
fn detect(
    func: Func,
    caller: usize,
    args: [u64; 6],
    ret: i64,
    call_errno: i32,
    after: impl FnOnce(&mut Event, &mut Facts),
) {
    let mut ev = Event::new(Phase::Exit, func);
    ev.pid = process::pid();
    ev.caller = caller as u64;
    ev.args = args;
    ev.ret = ret;
    ev.errno = if ret == func.failure_value() {
        call_errno
    } else {
        0
    };
    let mut facts = recorder::facts();
    after(&mut ev, &mut facts);
    audit::after(&ev, &Pre::default(), facts.page_size, facts.queued);
}

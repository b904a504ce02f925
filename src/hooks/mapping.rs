//! The mapping calls (`mmap`, `mmap64`, `munmap`, `mremap`) while nothing is logged and no
//! stack is recorded: no event. The ledger gets a [`Call`] of a few words, entered through a
//! dispatch inlined for the one function the hook knows it is; the audit decides from the
//! function, the arguments and what it found before the call whether there is anything to
//! find, and only then is the event the logged path would have built made (`detect`). The
//! order of the steps is the logged path's (`traced::logged`): the entry taken before a call
//! that frees address space, the audit's look before it, the real call with the caller's
//! errno in place, the ledger, the audit's look after. One step is shared: a `munmap` of
//! exactly one region the ledger knows takes it out before the call, which is the audit's
//! answer and leaves the entry after it nothing to look up.

use crate::audit;
use crate::ledger::{Call, Facts};
use crate::platform::shield::shield;
use crate::platform::{config, errno, process, sink};
use crate::recorder;

use super::traced::releases_address_space;
use shmtrace_core::trace::event::Func;

/// Whether this call takes the path here: no log, no stack asked for, and tracked (settings
/// in force, not paused). Nearly always one load says so (`recorder::quiet_settled`); the
/// checks in full otherwise, the settings first: before they are read no log is open yet.
#[inline(always)]
pub(super) fn quietly() -> bool {
    recorder::quiet_settled() || quietly_in_full()
}

#[inline(always)]
fn quietly_in_full() -> bool {
    recorder::configured() && !sink::enabled() && config::stack_depth() == 0 && !recorder::paused()
}

/// Makes the call (the caller's errno in place) and enters it; `facts` says what the ledger
/// needs from the kernel given the result. Returns the call's result with its errno in place.
#[inline(always)]
pub(super) fn traced(
    func: Func,
    caller: usize,
    args: [u64; 6],
    (errno_at, caller_errno): (errno::Slot, i32),
    call: impl FnOnce() -> i64,
    facts: impl FnOnce(i64, &mut Facts),
) -> i64 {
    let page = recorder::page_size();
    // As on the logged path: the entry first for a call that frees address space, and what the
    // call is about to act on for the audit, the ledger held. A `munmap` of exactly one
    // region the ledger knows takes it out now: the ledger knew something there, which is
    // all the audit asks, and entering the call needs no second look.
    let mut entry = releases_address_space(func, &args).then(recorder::entry);
    let mut taken = None;
    let pre = match &mut entry {
        Some(recorder::Entry::Ledger(held)) => shield(|| {
            if func == Func::Munmap
                && let Some(region) = recorder::take_unmapped(held, args[0], args[1])
            {
                taken = Some(region);
                return audit::Pre::default();
            }
            audit::before(func, &args, held, page)
        }),
        _ => None,
    };
    errno_at.set(caller_errno);
    let ret = call();
    let call_errno = errno_at.get();
    shield(|| {
        let mut known = recorder::facts();
        facts(ret, &mut known);
        let done = Call::new(func, &args, ret, caller as u64);
        match (entry.take(), taken) {
            (Some(held), Some(region)) => recorder::entered_taken(held, region, &done, &known),
            (Some(held), None) => recorder::entered_into(held, &done, &known),
            (None, _) => recorder::entered(&done, &known),
        }
        // Nothing looked at before the call (no entry, or a fork being prepared) found nothing.
        if audit::mapping_detects(func, &args, pre.as_ref()) {
            detect(&done, call_errno, &pre.unwrap_or_default(), &known);
        }
    });
    drop(entry);
    errno_at.set(call_errno);
    ret
}

/// Detection in full needs the event: built as the logged path builds it, without what only
/// a record shows (thread, time, duration).
#[cold]
#[inline(never)]
fn detect(done: &Call, call_errno: i32, pre: &audit::Pre, facts: &Facts) {
    let ev = done.to_event(process::pid(), call_errno);
    audit::after(&ev, pre, facts.page_size, facts.queued);
}

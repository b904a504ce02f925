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
//!
//! With the binary log alone (`recorded`) the same steps write the call's record from what the
//! hook has at hand (`mapped_log::BareCall`: a few words, in the bytes its event would have
//! given): its start before anything else (durable if the process dies in the call), its end
//! once the ledger has the call, as on the logged path. The ledger gets the object a mapping
//! maps as the logged path gives it (named at the call, for the record), and detection in full
//! an event only when the audit asks.

use crate::audit;
use crate::ledger::{Call, Facts};
use crate::platform::mapped_log::BareCall;
use crate::platform::shield::shield;
use crate::platform::{clock, config, errno, process, shm_fds, sink};
use crate::recorder;

use super::traced::{Mapping, releases_address_space};
use shmtrace_core::trace::event::{Func, Name};

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

/// Makes the call (the caller's errno in place) and enters it; `M::facts` says what the ledger
/// needs from the kernel given the result. Returns the call's result with its errno in place.
#[inline(always)]
pub(super) fn traced<M: Mapping>(
    func: Func,
    caller: usize,
    args: &[u64; 6],
    (errno_at, caller_errno): (errno::Slot, i32),
) -> i64 {
    let page = recorder::page_size();
    // As on the logged path: the entry first for a call that frees address space, and what the
    // call is about to act on for the audit, the ledger held. A `munmap` of exactly one
    // region the ledger knows takes it out now: the ledger knew something there, which is
    // all the audit asks, and entering the call needs no second look.
    let mut entry = releases_address_space(func, args).then(recorder::entry);
    let mut taken = None;
    let pre = match &mut entry {
        Some(recorder::Entry::Ledger(held)) => shield(|| {
            if func == Func::Munmap
                && let Some(region) = recorder::take_unmapped(held, args[0], args[1])
            {
                taken = Some(region);
                return audit::Pre::default();
            }
            audit::before(func, args, held, page)
        }),
        _ => None,
    };
    errno_at.set(caller_errno);
    let ret = M::call(args);
    let call_errno = errno_at.get();
    shield(|| {
        let mut known = recorder::facts();
        M::facts(ret, args, &mut known);
        let done = Call::new(func, args, ret, caller as u64);
        match (entry.take(), taken) {
            (Some(held), Some(region)) => recorder::entered_taken(held, region, &done, &known),
            (Some(held), None) => recorder::entered_into(held, &done, &known),
            (None, _) => recorder::entered(&done, &known),
        }
        // Nothing looked at before the call (no entry, or a fork being prepared) found nothing.
        if audit::mapping_detects(func, args, pre.as_ref()) {
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

/// Whether this call takes [`recorded`]: tracked, no stack asked for, and the binary log the
/// one written.
#[inline(always)]
pub(super) fn into_binary_log() -> bool {
    sink::binary() && config::stack_depth() == 0 && recorder::configured() && !recorder::paused()
}

/// [`traced`] with the binary log: the record's start and end around the same steps, but for
/// the `munmap` of exactly one region, entered as any other call (the ledger's search and
/// removal inlined into the hook's own path a second time had the compiler call parts of them
/// out of line from there). Out of line: the hook's own code stays the path without a log.
#[inline(never)]
pub(super) fn recorded<M: Mapping>(
    func: Func,
    caller: usize,
    args: &[u64; 6],
    (errno_at, caller_errno): (errno::Slot, i32),
) -> i64 {
    // As the logged path's `begin` stamps the event for the binary log and writes it.
    let mut record = BareCall {
        pid: process::pid(),
        ticks: clock::ticks(),
        caller: caller as u64,
        args,
        ret: 0,
        errno: 0,
        dur: 0,
        name: &[],
    };
    shield(|| sink::bare_started(func, &record));
    let entry = releases_address_space(func, args).then(recorder::entry);
    let pre = match &entry {
        Some(recorder::Entry::Ledger(held)) => {
            shield(|| audit::before(func, args, held, recorder::page_size()))
        }
        _ => None,
    };
    errno_at.set(caller_errno);
    let ret = M::call(args);
    let call_errno = errno_at.get();
    shield(|| {
        // As the logged path's `finish`: the end first, in the clock of the start.
        record.dur = clock::ticks_like(record.ticks).saturating_sub(record.ticks);
        record.ret = ret;
        let mut known = recorder::facts();
        M::facts(ret, args, &mut known);
        // The record names the object now, and the ledger has that name, as on the logged path.
        let object = if known.object_pending {
            known.object_pending = false;
            object_mapped(args[4] as i32)
        } else {
            Name::new()
        };
        let mut done = Call::new(func, args, ret, caller as u64);
        done.name = &object;
        record.errno = if done.failed() { call_errno } else { 0 };
        match entry {
            Some(held) => recorder::entered_into(held, &done, &known),
            None => recorder::entered(&done, &known),
        }
        sink::bare_returned(
            func,
            &BareCall {
                name: object.as_bytes(),
                ..record
            },
        );
        if audit::mapping_detects(func, args, pre.as_ref()) {
            detect(&done, call_errno, &pre.unwrap_or_default(), &known);
        }
    });
    errno_at.set(call_errno);
    ret
}

/// The shared memory object a mapping maps, as the logged path names it: out of line, most
/// mappings never get here.
#[inline(never)]
fn object_mapped(fd: i32) -> Name {
    shm_fds::known_object(fd)
        .or_else(|| shm_fds::object_of(fd))
        .unwrap_or_default()
}

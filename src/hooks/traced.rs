//! The one path every tracked call takes: enter the guard, stamp the event, call the real
//! function with the caller's errno in place, record the outcome, hand back the real errno.

use super::{counted, mapping};
use crate::audit;
use crate::ledger::Facts;
use crate::platform::shield::shield;
use crate::platform::{backtrace, clock, config, errno, guard::Guard, process, sink};
use crate::recorder;
use shmtrace_core::trace::event::{Event, Func, Phase};

/// Runs `call` (the real function, returning its result widened to i64, pointers included) and
/// records it. `after` may read caller memory the kernel has validated into the event, and ask
/// the kernel what the ledger needs to know into the facts.
#[inline(always)]
pub fn traced(
    func: Func,
    caller: usize,
    args: [u64; 6],
    call: impl FnOnce() -> i64,
    after: impl FnOnce(&mut Event, &mut Facts),
) -> i64 {
    traced_waiting(func, caller, args, |_| call(), after)
}

/// What a call that may wait is handed: the way to log it as started, once it knows it waits.
pub struct Started<'a> {
    /// The call's event while records are written; `None` once logged, or when untracked.
    event: Option<&'a mut Event>,
    caller_errno: i32,
}

impl Started<'_> {
    /// Whether the call is logged (then it should find out whether it waits before waiting).
    pub fn logged(&self) -> bool {
        self.event.is_some()
    }

    /// The call is about to wait: its enter record, with what `describe` adds (memory the
    /// kernel has read by now), so that a process that hangs or dies here shows where. The
    /// caller's errno is back in place afterwards.
    pub fn waiting(&mut self, describe: impl FnOnce(&mut Event)) {
        if let Some(event) = self.event.take() {
            // Described in place (a copy of the event costs more than the record): what
            // `describe` fills in, the call's end fills in again from what the kernel read.
            shield(|| {
                describe(event);
                recorder::emit(event);
            });
        }
        errno::set(self.caller_errno);
    }
}

/// [`traced`] for a call that may wait: `call` logs it as started ([`Started::waiting`]) when
/// it finds it has to wait, not before, so a call that never waits writes one record.
#[inline(always)]
pub fn traced_waiting(
    func: Func,
    caller: usize,
    args: [u64; 6],
    call: impl FnOnce(&mut Started) -> i64,
    after: impl FnOnce(&mut Event, &mut Facts),
) -> i64 {
    let errno_at = errno::Slot::here();
    let caller_errno = errno_at.get();
    let Some(_guard) = Guard::enter() else {
        return call(&mut Started {
            event: None,
            caller_errno,
        });
    };
    let vfork_child = process::in_vfork_child();
    if vfork_child.is_none() && counted::quietly(func) {
        errno_at.set(caller_errno);
        let started = Started {
            event: None,
            caller_errno,
        };
        return counted::count(func, caller, args, errno_at, started, call, after);
    }
    logged(
        func,
        caller,
        args,
        vfork_child,
        (errno_at, caller_errno),
        call,
        after,
    )
}

/// [`traced`] for the mapping calls (`mmap`, `mmap64`, `munmap`, `mremap`), whose real call is
/// `M`'s: while nothing is logged and no stack is recorded they take `mapping::traced`'s path,
/// where `M::facts` says what the ledger needs to know from the kernel given the call's result;
/// with the binary log alone, `mapping::recorded`; otherwise `after`, as for [`traced`].
#[inline(always)]
pub fn traced_mapping<M: Mapping>(
    func: Func,
    caller: usize,
    args: [u64; 6],
    after: impl FnOnce(&mut Event, &mut Facts),
) -> i64 {
    let errno_at = errno::Slot::here();
    let caller_errno = errno_at.get();
    let Some(_guard) = Guard::enter() else {
        return M::call(&args);
    };
    let vfork_child = process::in_vfork_child();
    if vfork_child.is_none() && mapping::quietly() {
        return mapping::traced::<M>(func, caller, &args, (errno_at, caller_errno));
    }
    if vfork_child.is_none() && mapping::into_binary_log() {
        return mapping::recorded::<M>(func, caller, &args, (errno_at, caller_errno));
    }
    logged(
        func,
        caller,
        args,
        vfork_child,
        (errno_at, caller_errno),
        |_| M::call(&args),
        after,
    )
}

/// What a mapping call's hook gives the paths without an event, from the arguments' words (each
/// converts back to the argument it was packed from): the real call, and what the ledger needs
/// from the kernel given its result. Functions, not closures: only a function can be inlined
/// by force, and each path must have them inlined whatever the number of paths calling them.
pub trait Mapping {
    fn call(args: &[u64; 6]) -> i64;
    fn facts(ret: i64, args: &[u64; 6], facts: &mut Facts);
}

/// The path of a call with its event: inside the guard, the caller's errno saved.
#[inline(always)]
fn logged(
    func: Func,
    caller: usize,
    args: [u64; 6],
    vfork_child: Option<i32>,
    (errno_at, caller_errno): (errno::Slot, i32),
    call: impl FnOnce(&mut Started) -> i64,
    after: impl FnOnce(&mut Event, &mut Facts),
) -> i64 {
    // Built in place (an event is a few hundred bytes: moving it costs measurably).
    let mut event = Event::new(Phase::Enter, func);
    let tracked = shield(|| {
        let tracked = begin(&mut event, caller, args, vfork_child);
        // The binary log records every call as it starts (durable if the process dies in
        // it); a call that may wait does so itself when it finds it waits (`Started`).
        if tracked && sink::binary() && !func.may_block() {
            recorder::emit_as(func, &event);
        }
        tracked
    })
    .unwrap_or(false);
    // A call that frees address space takes its entry (the ledger, or a place in the queue
    // while a fork is prepared) before any other thread's call can reuse that space, or the
    // two would be entered in the wrong order.
    let mut entry = if tracked && vfork_child.is_none() && releases_address_space(func, &args) {
        Some(recorder::entry())
    } else {
        None
    };
    // What a call that replaces or releases address space is about to act on, for the audit
    // (not while a fork is prepared: the ledger is the forking thread's then).
    let mut pre = match &entry {
        Some(recorder::Entry::Ledger(held)) => {
            shield(|| audit::before(func, &event.args, held, recorder::page_size()))
        }
        _ => None,
    }
    .unwrap_or_default();
    errno_at.set(caller_errno);
    let mut started = Started {
        event: (tracked && sink::enabled() && func.may_block()).then_some(&mut event),
        caller_errno,
    };
    let ret = call(&mut started);
    let call_errno = errno_at.get();
    if tracked {
        shield(|| {
            finish(&mut event, ret, call_errno);
            let mut facts = recorder::facts();
            after(&mut event, &mut facts);
            if vfork_child.is_some() {
                // Logged, but the ledger in this memory is the parent's.
                recorder::emit_as(func, &event);
                return;
            }
            if let Some(recorder::Entry::Ledger(held)) = &entry {
                audit::after_failure(&event, held, &mut pre);
            }
            match entry.take() {
                Some(taken) => recorder::completed_into(taken, &event, &facts),
                None => recorder::completed(&event, &facts),
            }
            // Logged once the ledger is released.
            recorder::emit_as(func, &event);
            audit::after(&event, &pre, facts.page_size, facts.queued);
        });
    }
    drop(entry);
    errno_at.set(call_errno);
    ret
}

/// Calls after which another thread's mmap may get the address space this one gave up.
#[inline(always)]
pub(super) fn releases_address_space(func: Func, args: &[u64; 6]) -> bool {
    match func {
        Func::Munmap | Func::Mremap | Func::Shmdt => true,
        Func::Mmap | Func::Mmap64 => args[3] as i32 & libc::MAP_FIXED != 0,
        Func::Shmat => args[2] as i32 & libc::SHM_REMAP != 0,
        Func::Shmget
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
        | Func::Msgctl => false,
    }
}

/// Fills in what is known before the call; false if the call is not to be tracked.
fn begin(event: &mut Event, caller: usize, args: [u64; 6], vfork_child: Option<i32>) -> bool {
    if !recorder::configured() || recorder::paused() {
        return false;
    }
    event.pid = vfork_child.unwrap_or_else(process::pid);
    event.caller = caller as u64;
    event.args = args;
    // Deeper stacks: off by default, and then this load is their whole cost.
    let depth = config::stack_depth();
    if depth > 0 {
        backtrace::capture(event.caller, depth, &mut event.stack);
    }
    // Thread, time and duration appear only in records; the ledger needs none of them, and
    // they cost a syscall and two clock reads (two `rdtsc` for the binary log).
    if sink::enabled() {
        // The binary log stamps a thread's chunk with its tid, not each record.
        if !sink::binary() {
            event.tid = process::tid();
        }
        // The binary log counts in its clock's ticks (its records say how to convert them).
        event.ts_ns = if sink::binary() {
            clock::ticks()
        } else {
            clock::now_ns()
        };
    }
    true
}

fn finish(event: &mut Event, ret: i64, call_errno: i32) {
    event.phase = Phase::Exit;
    event.ret = ret;
    event.errno = if ret == event.func.failure_value() {
        call_errno
    } else {
        0
    };
    if event.ts_ns != 0 {
        // The clock the start was read with (the binary log's may have changed since).
        let now = if sink::binary() {
            clock::ticks_like(event.ts_ns)
        } else {
            clock::now_ns()
        };
        event.dur_ns = now.saturating_sub(event.ts_ns);
    }
}

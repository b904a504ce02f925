//! Calls completed while a fork is being prepared, kept aside without allocating until the
//! parent can enter them in the ledger (see `recorder::completed`).
//!
//! Producers are hook threads; the one consumer is the forking thread's parent handler, which
//! first closes the gate and waits for producers already inside to finish.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

use crate::ledger::Facts;
use crate::trace::event::Event;

/// Threads hammering hooks while a big process forks can complete thousands of calls in one
/// fork; the table is static and costs resident memory only when a fork storm uses it.
const SLOTS: usize = 4096;

struct Slot {
    ready: AtomicBool,
    value: UnsafeCell<MaybeUninit<(Event, Facts)>>,
}

// SAFETY: a slot's value is written only by the producer that claimed its index (`CLAIMED`),
// before `ready` is set, and read only by the consumer after seeing `ready`.
unsafe impl Sync for Slot {}

static QUEUE: [Slot; SLOTS] = [const {
    Slot {
        ready: AtomicBool::new(false),
        value: UnsafeCell::new(MaybeUninit::uninit()),
    }
}; SLOTS];
static OPEN: AtomicBool = AtomicBool::new(false);
static CLAIMED: AtomicUsize = AtomicUsize::new(0);
static INSIDE: AtomicUsize = AtomicUsize::new(0);
static OVERFLOW: AtomicU64 = AtomicU64::new(0);

/// A fork is being prepared: calls that cannot get the ledger go here instead of waiting.
pub fn open() {
    OPEN.store(true, SeqCst);
}

pub fn is_open() -> bool {
    OPEN.load(SeqCst)
}

/// Keeps a completed call for later; false if the gate closed meanwhile (the caller then
/// takes the ledger as usual, which is safe again).
pub fn push(event: &Event, facts: &Facts) -> bool {
    INSIDE.fetch_add(1, SeqCst);
    if !OPEN.load(SeqCst) {
        INSIDE.fetch_sub(1, SeqCst);
        return false;
    }
    let index = CLAIMED.fetch_add(1, SeqCst);
    match QUEUE.get(index) {
        Some(slot) => {
            // SAFETY: this thread alone claimed `index` (see `impl Sync for Slot`).
            unsafe { (*slot.value.get()).write((*event, *facts)) };
            slot.ready.store(true, SeqCst);
        }
        None => {
            OVERFLOW.fetch_add(1, SeqCst);
        }
    }
    INSIDE.fetch_sub(1, SeqCst);
    true
}

/// In the parent after fork: closes the gate and hands every kept call to `apply`, in order.
pub fn close_and_drain(mut apply: impl FnMut(&Event, &Facts)) {
    OPEN.store(false, SeqCst);
    while INSIDE.load(SeqCst) != 0 {
        core::hint::spin_loop();
    }
    let kept = CLAIMED.load(SeqCst).min(SLOTS);
    for slot in QUEUE.iter().take(kept) {
        while !slot.ready.load(SeqCst) {
            core::hint::spin_loop();
        }
        // SAFETY: `ready` says the producer finished writing this slot.
        let (event, facts) = unsafe { (*slot.value.get()).assume_init_ref() };
        apply(event, facts);
        slot.ready.store(false, SeqCst);
    }
    CLAIMED.store(0, SeqCst);
}

/// In the child after fork: its memory is the parent's at the instant of `fork`, so the calls
/// kept by then (fully written) are exactly those whose effects it inherited; they are handed
/// to `apply`, the rest (written after the instant, or in progress) does not exist here.
pub fn drain_in_child(mut apply: impl FnMut(&Event, &Facts)) {
    OPEN.store(false, SeqCst);
    let kept = CLAIMED.load(SeqCst).min(SLOTS);
    for slot in QUEUE.iter().take(kept) {
        if slot.ready.load(SeqCst) {
            // SAFETY: `ready` was set after the slot was written, before the fork.
            let (event, facts) = unsafe { (*slot.value.get()).assume_init_ref() };
            apply(event, facts);
            slot.ready.store(false, SeqCst);
        }
    }
    CLAIMED.store(0, SeqCst);
    INSIDE.store(0, SeqCst);
}

/// Calls that found the queue full (left out of the ledger).
pub fn overflowed() -> u64 {
    OVERFLOW.load(SeqCst)
}

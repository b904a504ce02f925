//! Calls completed while a fork is being prepared, kept aside without allocating until the
//! parent can enter them in the ledger (see `recorder::entry`).
//!
//! While the gate is open every tracked call goes here, none into the ledger directly: a
//! thread whose call was kept aside and whose next call found the ledger free for a moment
//! (before the forking thread took it) had the two entered in the wrong order, since the queue
//! is replayed after. Queue order is claim order, so a call that frees address space claims its
//! place before its real call, like the direct path holds the ledger across it: another
//! thread's call that reuses the space claims a later place.
//!
//! The gate can stay open for milliseconds (the forking thread descheduled before or after the
//! `fork` itself), and busy threads complete thousands of calls meanwhile, so the queue grows
//! in chunks mapped on demand with the raw system call (no allocator, no lock), kept for the
//! next fork. Only beyond `CHUNKS` chunks is a call left out of the ledger (counted).
//!
//! Producers are hook threads; the one consumer is the forking thread's parent handler, which
//! first closes the gate and waits for producers holding a place to fill it.

use core::cell::UnsafeCell;
use core::mem::{MaybeUninit, size_of};
use core::ptr::null_mut;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering::SeqCst,
};

use crate::ledger::Facts;
use crate::platform::alloc;
use shmtrace_core::trace::event::Event;

/// Slots per chunk (a chunk is about 1.3 MiB of address space; pages are resident only once
/// a fork storm writes them).
const CHUNK: usize = 4096;
/// At most this many chunks: 262144 calls in one fork.
const CHUNKS: usize = 64;

/// A slot's state: claimed (or unused), written, or given up by its holder. A fresh mapping is
/// zeroed: every slot starts EMPTY.
const EMPTY: u8 = 0;
const READY: u8 = 1;
const ABANDONED: u8 = 2;

struct Slot {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<(Event, Facts)>>,
}

// SAFETY: a slot's value is written only by the holder of the `Place` that claimed its index
// (`CLAIMED`), before `state` becomes READY, and read only by the consumer after seeing READY.
unsafe impl Sync for Slot {}

static TABLE: [AtomicPtr<Slot>; CHUNKS] = [const { AtomicPtr::new(null_mut()) }; CHUNKS];
static OPEN: AtomicBool = AtomicBool::new(false);
static CLAIMED: AtomicUsize = AtomicUsize::new(0);
/// Places claimed and not yet filled or given up.
static HELD: AtomicUsize = AtomicUsize::new(0);
static OVERFLOW: AtomicU64 = AtomicU64::new(0);

/// A fork is being prepared: from now on calls go here instead of into the ledger.
pub fn open() {
    OPEN.store(true, SeqCst);
}

pub fn is_open() -> bool {
    OPEN.load(SeqCst)
}

/// A claimed place in the queue, to be filled with one completed call (`slot` is `None` when
/// the queue is full). Dropped unfilled (the bookkeeping panicked), it is given up, so the
/// consumer never waits for it.
pub struct Place {
    slot: Option<&'static Slot>,
    filled: bool,
}

/// The next place in the queue, or `None` if the gate is closed (the caller then takes the
/// ledger as usual, which is safe again).
pub fn claim() -> Option<Place> {
    HELD.fetch_add(1, SeqCst);
    if !OPEN.load(SeqCst) {
        HELD.fetch_sub(1, SeqCst);
        return None;
    }
    let index = CLAIMED.fetch_add(1, SeqCst);
    Some(Place {
        slot: slot_to_write(index),
        filled: false,
    })
}

impl Place {
    /// Keeps a completed call in this place.
    pub fn fill(mut self, event: &Event, facts: &Facts) {
        match self.slot {
            Some(slot) => {
                // SAFETY: this place alone owns its slot (see `impl Sync for Slot`).
                unsafe { (*slot.value.get()).write((*event, *facts)) };
                slot.state.store(READY, SeqCst);
            }
            None => {
                OVERFLOW.fetch_add(1, SeqCst);
            }
        }
        self.filled = true;
        HELD.fetch_sub(1, SeqCst);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.filled {
            return;
        }
        if let Some(slot) = self.slot {
            slot.state.store(ABANDONED, SeqCst);
        }
        HELD.fetch_sub(1, SeqCst);
    }
}

/// The slot of `index`, its chunk mapped if need be; `None` past the last chunk or when the
/// kernel refuses memory.
fn slot_to_write(index: usize) -> Option<&'static Slot> {
    let (chunk, offset) = (index / CHUNK, index % CHUNK);
    let entry = TABLE.get(chunk)?;
    let mut base = entry.load(SeqCst);
    if base.is_null() {
        let fresh = map_chunk()?;
        base = match entry.compare_exchange(null_mut(), fresh, SeqCst, SeqCst) {
            Ok(_) => fresh,
            Err(theirs) => {
                unmap_chunk(fresh);
                theirs
            }
        };
    }
    // SAFETY: `base` points to a live mapping of CHUNK slots (never unmapped once published)
    // and `offset < CHUNK`.
    Some(unsafe { &*base.add(offset) })
}

/// The slot of `index` if its chunk exists (for the consumers).
fn slot_to_read(index: usize) -> Option<&'static Slot> {
    let base = TABLE.get(index / CHUNK)?.load(SeqCst);
    if base.is_null() {
        return None;
    }
    // SAFETY: as in `slot_to_write`.
    Some(unsafe { &*base.add(index % CHUNK) })
}

const CHUNK_BYTES: usize = CHUNK * size_of::<Slot>();

fn map_chunk() -> Option<*mut Slot> {
    // Zero-filled: every slot EMPTY, which is a valid `Slot`.
    let p = alloc::map_pages(CHUNK_BYTES);
    (!p.is_null()).then_some(p.cast::<Slot>())
}

fn unmap_chunk(chunk: *mut Slot) {
    // SAFETY: `chunk` is a mapping of `map_chunk`'s that was never published.
    unsafe { alloc::unmap_pages(chunk.cast(), CHUNK_BYTES) };
}

/// Hands the kept calls among the first `claimed` places to `apply`, in order, and empties
/// their slots.
fn replay(claimed: usize, mut apply: impl FnMut(&Event, &Facts)) {
    for index in 0..claimed.min(CHUNK * CHUNKS) {
        let Some(slot) = slot_to_read(index) else {
            continue;
        };
        if slot.state.load(SeqCst) == READY {
            // SAFETY: READY says the holder finished writing this slot.
            let (event, facts) = unsafe { (*slot.value.get()).assume_init_ref() };
            apply(event, facts);
        }
        slot.state.store(EMPTY, SeqCst);
    }
    CLAIMED.store(0, SeqCst);
}

/// In the parent after fork: closes the gate and hands every kept call to `apply`, in order.
///
/// Waits for places still held: their holders are at most inside one real call that frees
/// address space (`munmap`, `mremap`, `shmdt`, a fixed `mmap`), which waits for nothing this
/// thread holds.
pub fn close_and_drain(apply: impl FnMut(&Event, &Facts)) {
    OPEN.store(false, SeqCst);
    while HELD.load(SeqCst) != 0 {
        core::hint::spin_loop();
    }
    // Every place was filled or given up before HELD reached 0.
    replay(CLAIMED.load(SeqCst), apply);
}

/// In the child after fork: the calls kept by the time its memory was copied (fully written)
/// are handed to `apply`, in order. A place claimed but not filled then belongs to a call
/// still in progress at the fork: whether the kernel had completed it before the child's
/// address space was copied is unknown here, so it is left out (docs/limits.md).
pub fn drain_in_child(apply: impl FnMut(&Event, &Facts)) {
    OPEN.store(false, SeqCst);
    replay(CLAIMED.load(SeqCst), apply);
    HELD.store(0, SeqCst);
}

/// Calls that found the queue full (left out of the ledger).
pub fn overflowed() -> u64 {
    OVERFLOW.load(SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{self, Entry};
    use shmtrace_core::trace::event::{Func, Phase};

    /// Marks this test's events apart from the hooked calls other tests make meanwhile (the
    /// test binary exports the hooks too, and they queue while the gate is open).
    const MARK: u64 = 0x5eed_f0e4_0000_0000;

    fn event(thread: u64, seq: u64) -> Event {
        let mut ev = Event::new(Phase::Exit, Func::Munmap);
        ev.args[0] = MARK | thread;
        ev.args[1] = seq;
        ev
    }

    #[test]
    fn kept_calls_replay_in_claim_order_past_one_chunk_and_the_ledger_stays_closed() {
        let facts = Facts::new(4096);
        open();
        // The ledger is free (no fork holds it), yet an open gate sends calls to the queue.
        assert!(matches!(recorder::entry(), Entry::Deferred(_)));
        let per_thread = (CHUNK as u64) / 2 + 100;
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                std::thread::spawn(move || {
                    for seq in 0..per_thread {
                        let place = claim().expect("the gate is open");
                        if seq == 7 {
                            drop(place); // given up: never replayed, never waited for
                        } else {
                            place.fill(&event(t, seq), &facts);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let overflow_before = overflowed();
        let mut seen: Vec<Vec<u64>> = vec![Vec::new(); 3];
        close_and_drain(|ev, _| {
            if ev.args[0] & !0xff == MARK {
                seen[(ev.args[0] & 0xff) as usize].push(ev.args[1]);
            }
        });
        assert!(!is_open());
        assert!(claim().is_none(), "a closed gate hands out no place");
        let want: Vec<u64> = (0..per_thread).filter(|&s| s != 7).collect();
        for got in &seen {
            assert_eq!(got, &want);
        }
        assert_eq!(overflowed(), overflow_before);
    }
}

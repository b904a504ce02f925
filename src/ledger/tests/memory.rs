//! What a live mapping costs, measured: a counting wrapper around the system allocator, active
//! only on a thread that asks for it, so the figure is this test's allocations and nothing else
//! the test binary does in parallel.
//!
//! This `#[global_allocator]` exists only in the unit-test binary; the shim's own private
//! allocator must therefore stay out of `cfg(test)` builds (which it should anyway: the test
//! harness is not a host to protect).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

struct Counting;

thread_local! {
    // `const` and no `Drop`: reading it from inside the allocator never allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Set once any thread counts, so other tests pay nothing until then.
static ENABLED: AtomicBool = AtomicBool::new(false);

fn note(delta: i64, allocates: bool) {
    if ENABLED.load(Ordering::Relaxed) && COUNTING.with(Cell::get) {
        LIVE.with(|l| l.set(l.get() + delta));
        if allocates {
            CALLS.with(|c| c.set(c.get() + 1));
        }
    }
}

/// Blocks the private heap (`platform/alloc.rs`) puts on a cache line: the ledger's tree nodes,
/// aligned here too so that timings in this binary (`scale`) see the shim's layout.
fn as_heap(layout: Layout) -> Layout {
    if layout.size() >= 512 {
        layout.align_to(64).expect("64 is a valid alignment")
    } else {
        layout
    }
}

// SAFETY: every method forwards to `System` with the caller's size, and an alignment at least
// the caller's (`as_heap`, the same for a block's allocation and release); the bookkeeping
// touches only const thread-locals, which neither allocate nor unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64, true);
        // SAFETY: a valid layout at least as aligned as the caller's; the caller upholds the rest.
        unsafe { System.alloc(as_heap(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64), false);
        // SAFETY: `ptr` came from `System` through this wrapper with this layout, so `as_heap`
        // gives the layout it was allocated with.
        unsafe { System.dealloc(ptr, as_heap(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() >= 512 || new_size >= 512 {
            // Across the line-alignment threshold: a fresh block, so its alignment is the one
            // `dealloc` will assume.
            let new = Layout::from_size_align(new_size, layout.align()).expect("the caller's");
            // SAFETY: `alloc` and `dealloc` above with the caller's layouts; the copy is of the
            // smaller of the two blocks, which do not overlap.
            unsafe {
                let p = self.alloc(new);
                if !p.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                return p;
            }
        }
        note(new_size as i64 - layout.size() as i64, true);
        // SAFETY: as for `dealloc` (both sizes under 512: the caller's own alignment), and the
        // caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns (net bytes still allocated by it, allocations and reallocations).
fn measure<R>(f: impl FnOnce() -> R) -> (R, i64, u64) {
    ENABLED.store(true, Ordering::Relaxed);
    LIVE.with(|l| l.set(0));
    CALLS.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, LIVE.with(Cell::get), CALLS.with(Cell::get))
}

const N: u64 = 1_000_000;

/// Maps N pages one apart (so no two are adjacent), in the order given, each from one of 64
/// call sites, and returns the bytes the ledger holds per live mapping.
fn bytes_per_mapping(order: impl Iterator<Item = u64>) -> f64 {
    let (ledger, bytes, _) = measure(|| {
        let mut l = Ledger::new();
        for i in order {
            let addr = 0x1000_0000_0000 + i * 2 * PAGE;
            l.mmap(addr, PAGE, PRIV_ANON, 0x5555_0000 + (i % 64) * 16);
        }
        l
    });
    assert_eq!(ledger.stats().mappings, N);
    bytes as f64 / N as f64
}

#[test]
fn a_live_mapping_costs_at_most_64_bytes() {
    // The kernel hands out addresses top-down, so descending is the common case; ascending and
    // scattered orders fill B-tree nodes differently.
    let descending = bytes_per_mapping((0..N).rev());
    let ascending = bytes_per_mapping(0..N);
    // A fixed permutation: i * k mod N with k coprime to N.
    let scattered = bytes_per_mapping((0..N).map(|i| (i * 7_919) % N));
    println!(
        "bytes per live mapping: descending {descending:.1}, ascending {ascending:.1}, \
         scattered {scattered:.1}"
    );
    for figure in [descending, ascending, scattered] {
        assert!(figure <= 64.0, "{figure} bytes per mapping");
    }
}

#[test]
fn after_fork_in_child_does_not_allocate() {
    let mut l = Ledger::new();
    for i in 0..10_000u64 {
        l.mmap(0x1000_0000 + i * 2 * PAGE, PAGE, PRIV_ANON, 0x10 + i % 7);
    }
    l.shmget(1, 0, PAGE, true, 0x10);
    l.semget(2, 0, 1, true, 0x10);
    l.shmat(1, 0x9000_0000, 0, PAGE, 0x10);
    let ((), _, calls) = measure(|| l.after_fork_in_child());
    assert_eq!(calls, 0);
    assert!(l.regions().all(|r| r.inherited));
}

#[test]
fn apply_allocates_only_what_the_map_needs() {
    let mut l = Ledger::new();
    let site = 0x5555_0000;
    l.mmap(0x1000_0000, PAGE, PRIV_ANON, site);
    // Per round: a mapping, a split, a shrink, a removal, from a site seen before.
    let rounds = 10_000u64;
    let mut worst = 0;
    let mut total = 0;
    for i in 1..rounds {
        let a = 0x1000_0000 + i * 8 * PAGE;
        let (_, _, allocs) = measure(|| {
            l.mmap(a, 4 * PAGE, PRIV_ANON, site);
            l.munmap(a + PAGE, PAGE);
            l.mremap(a, PAGE, PAGE / 2, 0, a, site);
            l.munmap(a + 2 * PAGE, 2 * PAGE)
        });
        worst = worst.max(allocs);
        total += allocs;
    }
    println!(
        "allocations per round of 4 calls: worst {worst}, mean {:.3}",
        total as f64 / rounds as f64
    );
    // Only B-tree node splits allocate: a few nodes (the tree is 5 levels deep here) in a rare
    // round; one round in three on average, since each round leaves one more region.
    assert!(worst <= 8, "{worst} allocations for four calls");
    assert!(total * 2 < rounds, "{total} allocations in {rounds} rounds");
}

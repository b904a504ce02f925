//! The shim's private heap: every Rust allocation in this library comes from pages it maps with
//! the raw `mmap` system call, never from the host's allocator.
//!
//! jemalloc, tcmalloc and mimalloc call `mmap` through the PLT, sometimes holding their own
//! locks; a hook that called back into them could deadlock (docs/ARCHITECTURE.md: hot path).
//! The heap is size-classed free lists (16-byte steps up to 1 KiB, enough for the ledger's tree
//! nodes) carved from 256 KiB chunks, 2 MiB transparent huge pages once 512 KiB are mapped;
//! larger blocks are mapped one by one. No page of the shim's shares a memory area with the
//! program's (`keep_apart`). Memory of freed
//! small blocks is reused, never returned: the shim's footprint follows its peak of live
//! objects, not the number of calls.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::platform::spinlock::SpinLock;

const GRANULE: usize = 16;
/// Blocks of at least this size (the ledger's tree nodes) are cache-line sized and aligned, so
/// a node's first line holds its header and each run of 64 bytes in it is one line: a cold
/// search reads no line it does not need.
const LINE_FROM: usize = 512;
const LINE: usize = 64;
const SMALL_MAX: usize = 1024;
const CLASSES: usize = SMALL_MAX / GRANULE;
const CHUNK: usize = 256 * 1024;
const PAGE: usize = 4096;
/// A transparent huge page: the chunk size once the heap is large (`HUGE_FROM`).
const HUGE: usize = 2 << 20;
/// From this much mapped on, chunks are huge pages. The ledger's tree is most of a large heap
/// and a random `munmap` reads a node in any part of it: with 4 KiB pages that is a TLB miss
/// (a two-level walk in a virtual machine) per node, where 2 MiB pages make the whole tree of
/// a million regions 18 TLB entries. Below it (the shim's first two chunks, about 14k
/// mappings' worth of ledger), a huge page would be mostly unused memory; from it on, the
/// page's unused part stays under the memory target (64 bytes per live mapping plus 2 MiB).
const HUGE_FROM: u64 = 512 << 10;

struct Heap {
    /// Head of each class's free list; a free block's first word points to the next.
    free: [usize; CLASSES],
    /// The unused tail of the current chunk.
    bump: usize,
    bump_end: usize,
}

pub struct PrivateHeap {
    heap: SpinLock<Heap>,
}

impl PrivateHeap {
    pub const fn new() -> PrivateHeap {
        PrivateHeap {
            heap: SpinLock::new(Heap {
                free: [0; CLASSES],
                bump: 0,
                bump_end: 0,
            }),
        }
    }

    /// Held across `fork` (see `lifecycle`), so a child never inherits it mid-update.
    pub fn lock_for_fork(&self) {
        self.heap.lock_raw();
    }

    /// # Safety
    /// Only after `lock_for_fork`, once, in the parent or the child.
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: the caller pairs this with `lock_for_fork`.
        unsafe { self.heap.unlock_raw() };
    }
}

impl Default for PrivateHeap {
    fn default() -> Self {
        Self::new()
    }
}

fn class_of(layout: Layout) -> Option<usize> {
    let mut size = layout.size().max(1);
    if layout.align() > GRANULE || size >= LINE_FROM {
        if layout.align() > LINE {
            return None;
        }
        size = size.max(LINE_FROM).next_multiple_of(LINE);
    }
    if size > SMALL_MAX {
        return None;
    }
    Some(size.div_ceil(GRANULE) - 1)
}

/// Bytes the heap has mapped from the kernel and not returned: the shim's own memory.
static MAPPED: AtomicU64 = AtomicU64::new(0);

pub fn mapped_bytes() -> u64 {
    MAPPED.load(Ordering::Relaxed)
}

/// Fresh zero-filled pages of the shim's own (counted in `mapped_bytes`), or null; for the
/// heap and for other tables of the shim that must not come from the host.
pub fn map_pages(len: usize) -> *mut u8 {
    let Some(p) = fresh_mapping(len) else {
        return null_mut();
    };
    keep_apart(p, len);
    MAPPED.fetch_add(len as u64, Ordering::Relaxed);
    remember(p, len);
    p as *mut u8
}

/// A fresh anonymous read-write mapping of `len` bytes at a kernel-chosen address.
fn fresh_mapping(len: usize) -> Option<usize> {
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches no existing
    // memory; the raw system call never reaches our own hooks or the host's allocator.
    let p = unsafe {
        libc::syscall(
            libc::SYS_mmap,
            0usize,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1i32,
            0usize,
        )
    };
    (p != -1).then_some(p as usize)
}

/// A fresh chunk for the size classes and its length: a huge page once the heap is large,
/// else (or if the kernel refuses) `CHUNK` bytes.
fn new_chunk() -> (*mut u8, usize) {
    if mapped_bytes() >= HUGE_FROM {
        let p = map_huge();
        if !p.is_null() {
            return (p, HUGE);
        }
    }
    (map_pages(CHUNK), CHUNK)
}

/// `HUGE` bytes aligned to `HUGE`, advised `MADV_HUGEPAGE` (which also keeps them apart from
/// the program's areas, see `keep_apart`), or null.
fn map_huge() -> *mut u8 {
    // Twice the size, so that an aligned huge page lies inside it.
    let Some(p) = fresh_mapping(2 * HUGE) else {
        return null_mut();
    };
    let (p, at) = (p, p.next_multiple_of(HUGE));
    // SAFETY: the head and tail cut off are parts of the mapping just made, never handed out;
    // the advice is on the part kept, ours alone.
    unsafe {
        if at > p {
            libc::syscall(libc::SYS_munmap, p, at - p);
        }
        if p + HUGE > at {
            libc::syscall(libc::SYS_munmap, at + HUGE, p + HUGE - at);
        }
        libc::syscall(libc::SYS_madvise, at, HUGE, libc::MADV_HUGEPAGE);
    }
    MAPPED.fetch_add(HUGE as u64, Ordering::Relaxed);
    remember(at, HUGE);
    at as *mut u8
}

/// Keeps the shim's pages out of the program's memory areas. The kernel places a new mapping
/// next to the program's latest one and merges the two when their flags match, as they would
/// here (private, anonymous, read-write). The shim then writes its pages, which gives the
/// merged area an `anon_vma`, and the program's untouched mappings that later merge into it
/// share that `anon_vma`: from then on every `munmap` that splits such an area copies the
/// chain and inserts into the `anon_vma`'s interval tree, whose size is the number of those
/// areas (`anon_vma_clone`, `anon_vma_interval_tree_insert`: about 2 us per `munmap` with
/// 100k live mappings that would otherwise have had no `anon_vma`). A flag the program's
/// mappings do not carry keeps the shim's areas apart: `VM_NOHUGEPAGE`, which costs the shim
/// only transparent huge pages its scattered 256 KiB chunks would seldom get. A failure
/// changes nothing but the merging, so it is ignored.
fn keep_apart(p: usize, len: usize) {
    // SAFETY: advice on pages just mapped by this library, which the program has no pointer
    // to; MADV_NOHUGEPAGE neither moves nor frees them.
    unsafe { libc::syscall(libc::SYS_madvise, p, len, libc::MADV_NOHUGEPAGE) };
}

/// # Safety
/// `p` and `len` are exactly a mapping `map_pages` returned, no longer used.
pub unsafe fn unmap_pages(p: *mut u8, len: usize) {
    // Unlisted first: once unmapped, the address may be mapped again and listed by another
    // thread.
    forget(p as usize);
    // SAFETY: per the contract, the mapping is ours and unused.
    unsafe { libc::syscall(libc::SYS_munmap, p as usize, len) };
    MAPPED.fetch_sub(len as u64, Ordering::Relaxed);
}

/// Where the shim's pages are, so that the reachability scan never takes them for roots (the
/// ledger points at everything). A fixed table in the library's data, without a lock: pages
/// are mapped while another thread forks (the deferred queue), when no lock may be waited for.
/// A slot is claimed by its start, then published by its length.
const OWN_SLOTS: usize = 4096;
static OWN_START: [AtomicUsize; OWN_SLOTS] = [const { AtomicUsize::new(0) }; OWN_SLOTS];
static OWN_LEN: [AtomicUsize; OWN_SLOTS] = [const { AtomicUsize::new(0) }; OWN_SLOTS];
/// Mappings not in the table because it was full: the scan then sees some of the shim's pages
/// as roots, which can only make a lost mapping look reachable, never the reverse.
static OWN_UNLISTED: AtomicU64 = AtomicU64::new(0);

fn remember(start: usize, len: usize) {
    let claimed = OWN_START.iter().zip(&OWN_LEN).find(|(s, _)| {
        s.compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    });
    match claimed {
        Some((_, l)) => l.store(len, Ordering::Release),
        None => {
            OWN_UNLISTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn forget(start: usize) {
    if let Some((s, l)) = OWN_START
        .iter()
        .zip(&OWN_LEN)
        .find(|(s, _)| s.load(Ordering::Acquire) == start)
    {
        l.store(0, Ordering::Release);
        s.store(0, Ordering::Release);
    }
}

/// The shim's live pages as `(start, len)`, and how many mappings the table could not list
/// (a mapping being listed or unlisted meanwhile may be missed either way).
pub fn own_pages() -> (Vec<(usize, usize)>, u64) {
    let out = OWN_START
        .iter()
        .zip(&OWN_LEN)
        .map(|(s, l)| (s.load(Ordering::Acquire), l.load(Ordering::Acquire)))
        .filter(|&(s, l)| s != 0 && l != 0)
        .collect();
    (out, OWN_UNLISTED.load(Ordering::Relaxed))
}

fn large_len(layout: Layout) -> usize {
    layout.size().max(1).div_ceil(PAGE) * PAGE
}

// SAFETY: blocks handed out are disjoint, at least `layout.size()` long and 16-aligned (class
// sizes are multiples of 16 carved from page-aligned chunks; classes of `LINE_FROM` bytes and
// more, which every layout aligned to 32 or 64 falls in, are carved at multiples of 64; layouts
// needing more alignment get whole pages), and each returns to the free list of the class it came from.
unsafe impl GlobalAlloc for PrivateHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            if layout.align() > PAGE {
                return null_mut();
            }
            return map_pages(large_len(layout));
        };
        let size = (class + 1) * GRANULE;
        let mut heap = self.heap.lock();
        let head = heap.free[class];
        if head != 0 {
            // SAFETY: `head` is a free block of this class; its first word is the next link.
            heap.free[class] = unsafe { *(head as *const usize) };
            return head as *mut u8;
        }
        if size >= LINE_FROM {
            // The skipped bytes (under 64) are lost: such blocks are few and long-lived.
            heap.bump = heap.bump.next_multiple_of(LINE).min(heap.bump_end);
        }
        if heap.bump_end - heap.bump < size {
            let (chunk, len) = new_chunk();
            if chunk.is_null() {
                return null_mut();
            }
            heap.bump = chunk as usize;
            heap.bump_end = chunk as usize + len;
        }
        // Every class size is a multiple of 16 and chunks are page-aligned: blocks stay aligned
        // (to 64 from `LINE_FROM` on, by the rounding above).
        let block = heap.bump;
        heap.bump += size;
        block as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: large blocks are whole mappings of exactly `large_len(layout)` bytes.
            unsafe { unmap_pages(ptr, large_len(layout)) };
            return;
        };
        let mut heap = self.heap.lock();
        // SAFETY: the block is at least 16 bytes, ours, and no longer used by its owner.
        unsafe { *(ptr as *mut usize) = heap.free[class] };
        heap.free[class] = ptr as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The area of `/proc/self/maps` that contains `addr`: (start, end).
    fn area_of(addr: usize) -> (usize, usize) {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter_map(|line| {
                let (range, _) = line.split_once(' ')?;
                let (a, b) = range.split_once('-')?;
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            })
            .find(|&(a, b)| a <= addr && addr < b)
            .expect("a mapped address")
    }

    /// A huge chunk is one aligned area of its own, listed with the shim's pages (so the scan
    /// never takes the ledger in it for roots), and nothing around it is left mapped.
    #[test]
    fn huge_chunks_are_aligned_listed_and_apart() {
        let at = map_huge() as usize;
        assert_ne!(at, 0);
        assert_eq!(at % HUGE, 0);
        assert!(own_pages().0.contains(&(at, HUGE)));
        // SAFETY: the chunk is this test's, read-write, HUGE bytes.
        unsafe {
            (at as *mut u8).write_volatile(1);
            ((at + HUGE - 1) as *mut u8).write_volatile(2);
        }
        // Another huge chunk of a test running meanwhile may lie next to it: both advised
        // alike, they may merge, but never with an area of other flags.
        let (a, b) = area_of(at);
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        let maps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let advised = maps
            .split_inclusive('\n')
            .skip_while(|line| !line.starts_with(&format!("{a:x}-{b:x} ")))
            .find(|line| line.starts_with("VmFlags:"))
            .expect("the area's flags");
        // A kernel without transparent huge pages refuses the advice (and has no flag to
        // keep the chunk apart with).
        assert!(advised.contains(" hg") || !thp, "{advised}");
        // The head and tail cut off the mapping were unmapped, unless another mapping took
        // their place since.
        assert!(a <= at && at + HUGE <= b);
        // SAFETY: a chunk this test mapped and no longer uses.
        unsafe { unmap_pages(at as *mut u8, HUGE) };
        assert!(!own_pages().0.contains(&(at, HUGE)));
    }

    /// The kernel is the oracle: a program mapping placed right next to the shim's pages, with
    /// the same flags, stays an area of its own after both are written.
    #[test]
    fn own_pages_never_merge_with_the_programs() {
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE;
        // A page of the program's right below the shim's pages (where the kernel puts the
        // program's next mapping), or above; another test thread may have taken both, so a
        // chunk without a free neighbour is kept (the next one lands elsewhere) and another
        // one tried.
        let mut tried = Vec::new();
        let (own, theirs) = loop {
            assert!(tried.len() < 16, "no chunk with a free page next to it");
            let own = map_pages(CHUNK) as usize;
            assert_ne!(own, 0);
            tried.push(own);
            let free = [own - PAGE, own + CHUNK].into_iter().find(|&at| {
                // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping: it maps free space or
                // fails.
                let p = unsafe { libc::mmap(at as *mut _, PAGE, rw, flags, -1, 0) };
                if p != libc::MAP_FAILED && p as usize != at {
                    // SAFETY: a kernel older than 4.17 took the address as a hint: ours.
                    unsafe { libc::munmap(p, PAGE) };
                }
                p as usize == at
            });
            if let Some(theirs) = free {
                break (own, theirs);
            }
        };
        // SAFETY: both mappings are this test's, read-write, at least a page long.
        unsafe {
            (own as *mut u8).write_volatile(1);
            (theirs as *mut u8).write_volatile(2);
        }
        // Another test's chunk may have merged with this one (both the shim's): only the
        // program's page must be apart.
        let (a, b) = area_of(own);
        // SAFETY: mappings this test made and no longer uses.
        unsafe {
            libc::munmap(theirs as *mut _, PAGE);
            for chunk in tried {
                unmap_pages(chunk as *mut u8, CHUNK);
            }
        }
        assert!(
            theirs < a || theirs >= b,
            "{theirs:#x} merged into {a:#x}-{b:#x}"
        );
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused() {
        let heap = PrivateHeap::new();
        let layout = Layout::from_size_align(40, 8).unwrap();
        // SAFETY: test of the allocator contract with matching layouts.
        unsafe {
            let a = heap.alloc(layout);
            let b = heap.alloc(layout);
            assert!(!a.is_null() && !b.is_null());
            assert_eq!(a as usize % 16, 0);
            assert!((b as usize).abs_diff(a as usize) >= 48);
            a.write_bytes(0xaa, 40);
            heap.dealloc(a, layout);
            assert_eq!(heap.alloc(layout), a);
            let big = Layout::from_size_align(100_000, 64).unwrap();
            let c = heap.alloc(big);
            assert_eq!(c as usize % PAGE, 0);
            c.write_bytes(1, 100_000);
            heap.dealloc(c, big);
        }
    }

    #[test]
    fn small_classes_cover_every_size_up_to_the_limit() {
        for size in 1..=SMALL_MAX {
            let class = class_of(Layout::from_size_align(size, 8).unwrap()).unwrap();
            assert!((class + 1) * GRANULE >= size && class < CLASSES);
        }
        assert_eq!(
            class_of(Layout::from_size_align(SMALL_MAX + 1, 8).unwrap()),
            None
        );
        assert_eq!(class_of(Layout::from_size_align(64, 128).unwrap()), None);
    }

    #[test]
    fn line_sized_blocks_start_on_a_cache_line() {
        let heap = PrivateHeap::new();
        let small = Layout::from_size_align(48, 8).unwrap();
        let node = Layout::from_size_align(784, 8).unwrap();
        let aligned = Layout::from_size_align(64, 64).unwrap();
        // SAFETY: test of the allocator contract with matching layouts.
        unsafe {
            for _ in 0..3 {
                // A small block first, so the bump pointer is off a line.
                let s = heap.alloc(small);
                let a = heap.alloc(node);
                let b = heap.alloc(aligned);
                assert_eq!(a as usize % LINE, 0);
                assert_eq!(b as usize % LINE, 0);
                a.write_bytes(1, 784);
                b.write_bytes(2, 64);
                assert!((b as usize).abs_diff(a as usize) >= 784);
                assert!((s as usize) + 48 <= a as usize || s as usize >= a as usize + 832);
            }
        }
    }
}

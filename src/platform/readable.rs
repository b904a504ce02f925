//! Memory a hook may read with plain loads, known to be mapped and readable without asking the
//! kernel: the calling thread's own stack between the current stack pointer and its top (the
//! live frames of this thread, ours and our callers'), and the executable's loaded segments
//! (its static data), mapped for the life of the process. A `sembuf` array there can be copied
//! directly instead of through the kernel (`process_vm_readv`, which costs about two
//! microseconds on a virtual machine: five times a `semop`). Elsewhere (the heap, a shared
//! library's data), the caller goes through the kernel.
//!
//! The stack is found once per thread, as the VMA of `/proc/self/maps` holding the stack
//! pointer (plain system calls, no allocation), and kept in a `const` thread-local without
//! `Drop`. A call running elsewhere (a signal handler on an alternate stack outside that VMA,
//! a stack that grew below what was seen) is answered from the executable's segments only.
//! Those come from the program headers the kernel points the auxiliary vector at (no loader
//! lock, no system call).

use core::cell::Cell;

use crate::platform::{errno, maps};

thread_local! {
    /// `(start, top)` of this thread's stack; `(0, 0)` not looked up yet, `(1, 1)` not found.
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

const NOT_FOUND: (usize, usize) = (1, 1);

/// Whether `[addr, addr + len)` can be read with plain loads: it lies on this thread's live
/// stack or in one of the executable's readable segments. May read `/proc/self/maps` the first
/// time in a thread; errno is left as it was.
pub fn holds(addr: usize, len: usize) -> bool {
    on_own_stack(addr, len) || in_executable(addr, len)
}

/// Whether `[addr, addr + len)` lies between the current stack pointer and the top of this
/// thread's stack, the stack pointer being on that stack.
#[inline(never)]
fn on_own_stack(addr: usize, len: usize) -> bool {
    let marker = 0u8;
    // Our own frame: everything from here up to the top of the stack is live frames.
    let sp = core::ptr::addr_of!(marker) as usize;
    let Ok((start, top)) = STACK.try_with(|s| match s.get() {
        (0, 0) => {
            let found = find(sp).unwrap_or(NOT_FOUND);
            s.set(found);
            found
        }
        known => known,
    }) else {
        return false;
    };
    let top = narrowed(sp, top);
    (start..top).contains(&sp) && sp <= addr && addr.checked_add(len).is_some_and(|end| end <= top)
}

/// A thread made by glibc has its descriptor (`pthread_self()`) at the top of its stack block,
/// above its frames: below it, the block is stack and nothing else, whatever the VMA was merged
/// with. The initial thread's descriptor lies elsewhere, and its stack VMA (`[stack]`) merges
/// with nothing.
fn narrowed(sp: usize, top: usize) -> usize {
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() } as usize;
    if sp < me && me < top { me } else { top }
}

/// `p_flags` of a readable segment.
const PF_R: u32 = 4;

/// Whether `[addr, addr + len)` lies inside one readable loaded segment of the executable.
#[cfg(target_pointer_width = "64")]
fn in_executable(addr: usize, len: usize) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process.
    let (phdr, phnum) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR) as usize,
            libc::getauxval(libc::AT_PHNUM) as usize,
        )
    };
    if phdr == 0 || phnum == 0 {
        return false;
    }
    // SAFETY: AT_PHDR is the address of the executable's program headers, mapped with its first
    // segment for the life of the process; AT_PHNUM is their number.
    let headers = unsafe { core::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum) };
    // Where the executable was loaded: its headers' address less where they said they would be.
    let Some(bias) = headers
        .iter()
        .find(|h| h.p_type == libc::PT_PHDR)
        .map(|h| phdr.wrapping_sub(h.p_vaddr as usize))
    else {
        return false;
    };
    headers.iter().any(|h| {
        let start = bias.wrapping_add(h.p_vaddr as usize);
        h.p_type == libc::PT_LOAD
            && h.p_flags & PF_R != 0
            && start <= addr
            && start
                .checked_add(h.p_memsz as usize)
                .is_some_and(|top| end <= top)
    })
}

#[cfg(not(target_pointer_width = "64"))]
fn in_executable(_addr: usize, _len: usize) -> bool {
    false
}

#[cold]
fn find(sp: usize) -> Option<(usize, usize)> {
    let saved = errno::get();
    let found = vma_containing(sp as u64);
    errno::set(saved);
    found.and_then(|(start, end)| Some((usize::try_from(start).ok()?, usize::try_from(end).ok()?)))
}

/// The VMA holding `addr`, from `/proc/self/maps` (each line starts "start-end ").
fn vma_containing(addr: u64) -> Option<(u64, u64)> {
    let mut found = None;
    let mut line = LineStart::default();
    let mut buf = [0u8; 1024];
    let read = maps::read_chunks(&mut buf, |chunk| {
        for &b in chunk {
            if let Some((start, end)) = line.feed(b)
                && (start..end).contains(&addr)
            {
                found = Some((start, end));
                return false;
            }
        }
        true
    });
    if read { found } else { None }
}

/// Parses the two hex numbers at the start of each line, a byte at a time.
#[derive(Default)]
struct LineStart {
    /// 0 the start, 1 the end, 2 the rest of the line.
    field: u8,
    start: u64,
    end: u64,
}

impl LineStart {
    /// The line's `(start, end)` once its end address is complete.
    fn feed(&mut self, b: u8) -> Option<(u64, u64)> {
        match (self.field, b) {
            (_, b'\n') => *self = LineStart::default(),
            (0, b'-') => self.field = 1,
            (1, b' ') => {
                self.field = 2;
                return Some((self.start, self.end));
            }
            (0 | 1, _) => {
                let digit = u64::from(char::from(b).to_digit(16)?);
                let n = if self.field == 0 {
                    &mut self.start
                } else {
                    &mut self.end
                };
                *n = n.wrapping_shl(4) | digit;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_array_is_on_the_stack_and_other_memory_is_not() {
        let local = [7u8; 48];
        let addr = local.as_ptr() as usize;
        assert!(holds(addr, local.len()));
        let heap = Box::new([0u8; 48]);
        assert!(!on_own_stack(heap.as_ptr() as usize, heap.len()));
        assert!(!holds(heap.as_ptr() as usize, heap.len()));
        // Below the current frame (free stack, possibly unmapped), and past the top.
        assert!(!holds(addr - (1 << 20), 8));
        assert!(!holds(usize::MAX - 4, 8));
        assert!(!holds(0, 8));
    }

    #[test]
    fn the_executables_static_data_is_readable() {
        static DATA: [u8; 8] = [0; 8];
        static mut WRITABLE: [u16; 24] = [0; 24];
        assert!(holds(DATA.as_ptr() as usize, DATA.len()));
        assert!(!on_own_stack(DATA.as_ptr() as usize, DATA.len()));
        let writable = core::ptr::addr_of!(WRITABLE) as usize;
        assert!(holds(writable, 48));
        // A mapping of its own is not part of the executable.
        let page = 4096;
        // SAFETY: a new anonymous mapping, unmapped below.
        let other = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(other, libc::MAP_FAILED);
        assert!(!holds(other as usize, 8));
        // SAFETY: mapped above.
        unsafe { libc::munmap(other, page) };
    }

    #[test]
    fn every_thread_finds_its_own_stack() {
        let other = std::thread::spawn(|| {
            let local = [1u16; 24];
            holds(local.as_ptr() as usize, 48)
        });
        assert!(other.join().unwrap());
    }

    #[test]
    fn the_maps_line_start_is_parsed() {
        let mut line = LineStart::default();
        let text = b"55d0c0a00000-55d0c0a21000 r--p 00000000 08:01 42 /bin/x\n7ffd0-7ffe0 rw-p";
        let found: Vec<_> = text.iter().filter_map(|&b| line.feed(b)).collect();
        assert_eq!(
            found,
            vec![(0x55d0_c0a0_0000, 0x55d0_c0a2_1000), (0x7ffd0, 0x7ffe0)]
        );
    }
}

//! The process's memory as the reachability scan sees it: its regions (`/proc/self/maps`), a
//! reader that returns an error where a load would fault, and the shim's own memory, which is
//! never a root because it points at everything the ledger tracks.

use core::ffi::c_int;

use crate::platform::{alloc, errno, line_log, mapped_log, modules};

/// One line of `/proc/self/maps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Area {
    pub start: u64,
    pub end: u64,
    /// Readable and writable now, and ordinary memory: not the kernel's `[vvar]`/`[vsyscall]`
    /// pages, not a device's (I/O memory). Only such areas hold pointers worth following.
    pub scannable: bool,
}

/// Every region of the process now, in address order (`None` if the maps cannot be read).
pub fn areas() -> Option<Vec<Area>> {
    Some(areas_in(&modules::read_proc_maps()?))
}

/// The regions listed in a `/proc/self/maps` text.
pub fn areas_in(text: &[u8]) -> Vec<Area> {
    text.split(|&b| b == b'\n').filter_map(parse_area).collect()
}

/// `START-END PERMS OFFSET DEV INODE [PATH]`.
fn parse_area(line: &[u8]) -> Option<Area> {
    let mut fields = line.splitn(6, |&b| b == b' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let path = fields.nth(3).unwrap_or(&[]).trim_ascii();
    let dash = range.iter().position(|&b| b == b'-')?;
    let hex = |s: &[u8]| u64::from_str_radix(core::str::from_utf8(s).ok()?, 16).ok();
    let kernel = path.starts_with(b"[vvar") || path.starts_with(b"[vsyscall");
    let device = path.starts_with(b"/dev/")
        && !path.starts_with(b"/dev/shm/")
        && !path.starts_with(b"/dev/zero");
    Some(Area {
        start: hex(range.get(..dash)?)?,
        end: hex(range.get(dash + 1..)?)?,
        scannable: perms.starts_with(b"rw") && !kernel && !device,
    })
}

/// Reads this process's memory without ever faulting: `process_vm_readv` on itself (the
/// kernel returns `EFAULT` for an unmapped page, a `PROT_NONE` one, or one beyond the end of a
/// truncated file), or `/proc/self/mem` where that system call is refused. Pages never touched
/// (neither present nor swapped out, says `/proc/self/pagemap`) are not read: reading would
/// populate them, and a reservation of gigabytes would cost seconds. Restores `errno` when
/// dropped.
pub struct Reader {
    pid: i32,
    mem: c_int,
    pagemap: c_int,
    page: u64,
    vm_refused: bool,
    saved_errno: i32,
}

/// What one read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// The start of the buffer holds this many bytes; 0 when the first one is unreadable.
    Bytes(usize),
    /// This many bytes from the address were never touched: nothing to read.
    Untouched(u64),
}

/// Pagemap entries looked at per read (one `pread` of 512 bytes).
const PAGEMAP_BATCH: usize = 64;
const PAGE_PRESENT: u64 = 1 << 63;
const PAGE_SWAPPED: u64 = 1 << 62;

impl Default for Reader {
    fn default() -> Self {
        Self::new()
    }
}

impl Reader {
    pub fn new() -> Reader {
        let saved_errno = errno::get();
        // SAFETY: a NUL-terminated path; the descriptor is closed on drop.
        let pagemap = unsafe {
            libc::open(
                c"/proc/self/pagemap".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: sysconf has no preconditions.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        Reader {
            // SAFETY: getpid has no preconditions.
            pid: unsafe { libc::getpid() },
            mem: -1,
            pagemap,
            page: if page.is_power_of_two() { page } else { 4096 },
            vm_refused: false,
            saved_errno,
        }
    }

    /// Reads memory at `addr` into `buf`, never past the pages that hold something.
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> Piece {
        let mut len = buf.len();
        if let Some((touched, run)) = self.touched_run(addr, len as u64) {
            if !touched {
                return Piece::Untouched(run);
            }
            len = len.min(usize::try_from(run).unwrap_or(len));
        }
        Piece::Bytes(self.read_bytes(addr, buf.get_mut(..len).unwrap_or(&mut [])))
    }

    /// Whether the page holding `addr` was ever touched (present or swapped out), and how many
    /// bytes from `addr`, up to `len`, are in the same state; `None` when the pagemap cannot
    /// say.
    fn touched_run(&mut self, addr: u64, len: u64) -> Option<(bool, u64)> {
        if self.pagemap < 0 {
            return None;
        }
        let first = addr / self.page;
        let pages = (addr % self.page + len)
            .div_ceil(self.page)
            .clamp(1, PAGEMAP_BATCH as u64);
        let mut entries = [0u64; PAGEMAP_BATCH];
        let offset = i64::try_from(first.checked_mul(8)?).ok()?;
        // SAFETY: reads at most `pages * 8` bytes into `entries`, which holds that many.
        let n = unsafe {
            libc::pread64(
                self.pagemap,
                entries.as_mut_ptr().cast(),
                usize::try_from(pages).ok()? * 8,
                offset,
            )
        };
        let got = usize::try_from(n).ok()? / 8;
        let touched = |e: &u64| e & (PAGE_PRESENT | PAGE_SWAPPED) != 0;
        let state = touched(entries.first().filter(|_| got > 0)?);
        let same = entries
            .get(..got)?
            .iter()
            .take_while(|e| touched(e) == state)
            .count() as u64;
        let run = ((first + same) * self.page).saturating_sub(addr).min(len);
        Some((state, run.max(1)))
    }

    /// Fills the start of `buf` from `addr`; returns the bytes read, 0 if the first is not
    /// readable.
    fn read_bytes(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        if !self.vm_refused {
            let local = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let remote = libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: buf.len(),
            };
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and reads the
            // remote range through the page tables, failing with EFAULT instead of faulting.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_process_vm_readv,
                    self.pid,
                    &local as *const libc::iovec,
                    1usize,
                    &remote as *const libc::iovec,
                    1usize,
                    0usize,
                )
            };
            if n >= 0 {
                return usize::try_from(n).unwrap_or(0);
            }
            if matches!(errno::get(), libc::EFAULT | libc::ESRCH | libc::ENOMEM) {
                return 0;
            }
            // ENOSYS, EPERM (a seccomp filter): the file reads the same pages.
            self.vm_refused = true;
        }
        self.read_mem_file(addr, buf)
    }

    fn read_mem_file(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        if self.mem < 0 {
            // SAFETY: a NUL-terminated path; the descriptor is closed on drop.
            self.mem =
                unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if self.mem < 0 {
                return 0;
            }
        }
        let Ok(offset) = i64::try_from(addr) else {
            return 0;
        };
        // SAFETY: reads at most `buf.len()` bytes into `buf`; an unreadable page is EIO.
        let n = unsafe { libc::pread64(self.mem, buf.as_mut_ptr().cast(), buf.len(), offset) };
        usize::try_from(n).unwrap_or(0)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        for fd in [self.mem, self.pagemap] {
            if fd >= 0 {
                // SAFETY: our descriptor, closed once.
                unsafe { libc::close(fd) };
            }
        }
        errno::set(self.saved_errno);
    }
}

/// The shim's own memory as `(start, end)` ranges: its private heap, its log mapping, and the
/// writable data of its module (the ledger's statics, the deferred queue). Also how many heap
/// mappings could not be listed (see `alloc::own_pages`).
pub fn own_memory() -> (Vec<(u64, u64)>, u64) {
    let (pages, unlisted) = alloc::own_pages();
    let mut own: Vec<(u64, u64)> = pages
        .into_iter()
        .chain(mapped_log::mapping())
        .chain(line_log::mapping())
        .map(|(start, len)| (start as u64, start.saturating_add(len) as u64))
        .collect();
    own.extend(module_data());
    (own, unlisted)
}

unsafe extern "C" {
    // The linker defines it in every ELF object it links: this module's own ELF header, at
    // the start of its first loaded segment.
    static __ehdr_start: libc::Elf64_Ehdr;
}

/// This module's writable segments (data, bss, the relocated read-only data), page-rounded,
/// read from its program headers in memory (no loader lock, usable in any forked child).
fn module_data() -> Vec<(u64, u64)> {
    let header = &raw const __ehdr_start;
    // SAFETY: the linker-defined header of this very object, mapped as long as it is loaded.
    let ehdr = unsafe { &*header };
    let phdrs = (header as usize).wrapping_add(ehdr.e_phoff as usize) as *const libc::Elf64_Phdr;
    // SAFETY: the program headers lie in the first loaded segment, right after the header,
    // `e_phnum` of them (the ELF layout every linker produces for a loadable object).
    let phdrs = unsafe { core::slice::from_raw_parts(phdrs, usize::from(ehdr.e_phnum)) };
    // The header is at the load address of the segment with file offset 0.
    let Some(first) = phdrs
        .iter()
        .find(|p| p.p_type == libc::PT_LOAD && p.p_offset == 0)
    else {
        return Vec::new();
    };
    let bias = (header as u64).wrapping_sub(first.p_vaddr);
    let page = 4096u64;
    phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W != 0)
        .map(|p| {
            let start = bias.wrapping_add(p.p_vaddr);
            let end = start.wrapping_add(p.p_memsz);
            (start & !(page - 1), end.next_multiple_of(page))
        })
        .collect()
}

/// Runs `f` with the caller's callee-saved registers spilled into this frame, passing the
/// lowest address of the caller's part of the stack: a pointer the program holds only in a
/// register is then in memory the scan reads, and the shim's own frames below are left out.
#[inline(never)]
pub fn with_registers_on_stack<R>(f: impl FnOnce(u64) -> R) -> R {
    let mut regs = [0u64; 8];
    #[cfg(target_arch = "x86_64")]
    // SAFETY: stores six registers into the eight-word array; nothing else is touched.
    unsafe {
        core::arch::asm!(
            "mov [{p}], rbx",
            "mov [{p} + 8], rbp",
            "mov [{p} + 16], r12",
            "mov [{p} + 24], r13",
            "mov [{p} + 32], r14",
            "mov [{p} + 40], r15",
            p = in(reg) regs.as_mut_ptr(),
            options(nostack, preserves_flags),
        );
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: stores eight registers into the eight-word array; nothing else is touched.
    unsafe {
        core::arch::asm!(
            "stp x19, x20, [{p}]",
            "stp x21, x22, [{p}, #16]",
            "stp x23, x24, [{p}, #32]",
            "stp x25, x26, [{p}, #48]",
            p = in(reg) regs.as_mut_ptr(),
            options(nostack, preserves_flags),
        );
    }
    let low = regs.as_ptr() as u64;
    let result = f(low);
    core::hint::black_box(&regs);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_say_what_may_be_scanned() {
        let yes = |l: &[u8]| parse_area(l).unwrap().scannable;
        assert!(yes(
            b"55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0          [heap]"
        ));
        assert!(yes(b"7f00c0a00000-7f00c0a21000 rw-p 00000000 00:00 0 "));
        assert!(yes(
            b"7f00c0a00000-7f00c0a21000 rw-s 00000000 00:01 5 /dev/shm/x"
        ));
        assert!(yes(
            b"7f00c0a00000-7f00c0a21000 rw-s 00000000 00:01 5 /SYSV00000000 (deleted)"
        ));
        assert!(!yes(
            b"7f00c0a00000-7f00c0a21000 r--p 00000000 08:01 5 /usr/lib/libc.so.6"
        ));
        assert!(!yes(b"7f00c0a00000-7f00c0a21000 ---p 00000000 00:00 0 "));
        assert!(!yes(b"7ffd0000-7ffd4000 rw-p 00000000 00:00 0 [vvar]"));
        assert!(!yes(
            b"7f00c0a00000-7f00c0a21000 rw-s 10000000 00:05 9 /dev/dri/card0"
        ));
        let a = parse_area(b"1000-3000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!((a.start, a.end), (0x1000, 0x3000));
        assert_eq!(parse_area(b""), None);
    }

    #[test]
    fn the_reader_returns_short_instead_of_faulting() {
        // SAFETY: a fresh anonymous mapping, unmapped below.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                4 * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let at = |page: u64| p as u64 + page * 4096;
        // Pages 0 and 1 touched, page 1 then made inaccessible; pages 2 and 3 never touched.
        // SAFETY: within the mapping.
        unsafe {
            p.cast::<u64>().write(0x1234_5678);
            p.cast::<u8>().add(4096).write(1);
            libc::mprotect(p.cast::<u8>().add(4096).cast(), 4096, libc::PROT_NONE);
        }
        let mut reader = Reader::new();
        let mut buf = vec![0u8; 4 * 4096];
        assert_eq!(reader.read(at(0), &mut buf), Piece::Bytes(4096));
        assert_eq!(
            u64::from_ne_bytes(buf[..8].try_into().unwrap()),
            0x1234_5678
        );
        assert_eq!(reader.read(at(1), &mut buf), Piece::Bytes(0));
        // The stretch goes on past the mapping's end, as far as the buffer: nothing there.
        assert!(matches!(reader.read(at(2), &mut buf), Piece::Untouched(n) if n >= 2 * 4096));
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, 4 * 4096) };
        assert!(matches!(
            reader.read(at(0), &mut buf),
            Piece::Bytes(0) | Piece::Untouched(_)
        ));
    }

    #[test]
    fn this_modules_data_is_its_own() {
        static MARK: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);
        let at = &MARK as *const _ as u64;
        assert!(
            module_data().iter().any(|&(s, e)| (s..e).contains(&at)),
            "a static of this module is not in its writable segments"
        );
        let (own, _) = own_memory();
        assert!(own.iter().any(|&(s, e)| (s..e).contains(&at)));
    }
}

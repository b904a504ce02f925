//! What the kernel has mapped in a range, from `/proc/self/maps`: read with plain system calls
//! into a stack buffer (no allocator, no lock a fork in progress could hold).

use core::ffi::c_void;

const PAGE: u64 = 4096;
const SYSV: &[u8] = b"/SYSV";

/// At most this many mapped spans per range; beyond, the range read is cut short.
pub const MAX_SPANS: usize = 32;

/// One VMA, clipped to the range read: what tells a moved copy from other contents.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// The file offset (or anonymous page offset) of `start`, in pages.
    pub pgoff: u64,
    pub inode: u64,
    pub dev: u64,
    /// The `rwxp`/`rwxs` field, packed.
    pub perms: u32,
    /// The VMA starts within the range read (it was not clipped at the range's start).
    pub begins: bool,
    /// A System V attachment (`/SYSV<key>`; its inode is the shmid).
    pub sysv: bool,
}

/// The mapped spans of `[start, end)`, sorted, disjoint, adjacent ones merged, and the VMAs
/// they are made of. `end` is where the reading stopped: the range's end, or earlier when the
/// VMAs ran out of room.
pub struct Mapped {
    pub start: u64,
    pub end: u64,
    pub spans: [(u64, u64); MAX_SPANS],
    pub len: usize,
    pub vmas: [Vma; MAX_SPANS],
    pub nvmas: usize,
}

impl Vma {
    /// Its `PROT_*` bits.
    pub fn prot(&self) -> i32 {
        let [r, w, x, _] = self.perms.to_be_bytes();
        (if r == b'r' { libc::PROT_READ } else { 0 })
            | (if w == b'w' { libc::PROT_WRITE } else { 0 })
            | (if x == b'x' { libc::PROT_EXEC } else { 0 })
    }
}

impl Mapped {
    fn empty(start: u64, end: u64) -> Mapped {
        Mapped {
            start,
            end,
            spans: [(0, 0); MAX_SPANS],
            len: 0,
            vmas: [Vma::default(); MAX_SPANS],
            nvmas: 0,
        }
    }

    pub fn spans(&self) -> &[(u64, u64)] {
        &self.spans[..self.len]
    }

    pub fn vmas(&self) -> &[Vma] {
        &self.vmas[..self.nvmas]
    }

    /// Adds a VMA (they come in address order). False once nothing more is needed.
    fn add(&mut self, vma: Vma) -> bool {
        if vma.start >= self.end {
            return false;
        }
        let (s, e) = (vma.start.max(self.start), vma.end.min(self.end));
        if s >= e {
            return true;
        }
        if self.nvmas == MAX_SPANS {
            self.end = s;
            return false;
        }
        self.vmas[self.nvmas] = Vma {
            start: s,
            end: e,
            begins: vma.start == s,
            pgoff: vma.pgoff.wrapping_add((s - vma.start) / PAGE),
            ..vma
        };
        self.nvmas += 1;
        match self.spans[..self.len].last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => {
                self.spans[self.len] = (s, e);
                self.len += 1;
            }
        }
        true
    }

    /// The parts of the source `[old, old + len)` (in `self`) whose VMA now also lies at the
    /// same distance from `new` (in `target`): the same file at the same offset, or private
    /// anonymous memory, with the same permissions, as a move that keeps its source leaves it.
    /// Returns how many parts were written to `out`.
    pub fn copied_to(&self, target: &Mapped, old: u64, new: u64, out: &mut [(u64, u64)]) -> usize {
        let mut n = 0;
        for t in target.vmas() {
            for s in self.vmas() {
                let a = s.start.max(old.wrapping_add(t.start.wrapping_sub(new)));
                let b = s.end.min(old.wrapping_add(t.end.wrapping_sub(new)));
                if a >= b || n == out.len() {
                    continue;
                }
                let pgoff_s = s.pgoff.wrapping_add((a - s.start) / PAGE);
                let at_t = new.wrapping_add(a - old);
                let pgoff_t = t.pgoff.wrapping_add(at_t.wrapping_sub(t.start) / PAGE);
                // Private anonymous memory shows no offset: its permissions must do.
                let anonymous = s.inode == 0;
                if (anonymous || pgoff_s == pgoff_t)
                    && (s.inode, s.dev, s.perms) == (t.inode, t.dev, t.perms)
                {
                    out[n] = (a, b);
                    n += 1;
                }
            }
        }
        n
    }
}

/// Reads what is mapped in `[start, end)` now; `None` if `/proc/self/maps` cannot be read.
/// Clobbers errno; the hooks restore it.
pub fn mapped(start: u64, end: u64) -> Option<Mapped> {
    let mut out = Mapped::empty(start, end);
    if start >= end {
        return Some(out);
    }
    let mut parser = Parser::default();
    let mut buf = [0u8; 1024];
    read_chunks(&mut buf, |chunk| parser.feed(chunk, &mut out)).then_some(out)
}

/// Reads `/proc/self/maps` through `buf` with plain system calls, handing each chunk to `take`
/// until it returns false or the file ends. False if the file could not be read.
pub fn read_chunks(buf: &mut [u8], mut take: impl FnMut(&[u8]) -> bool) -> bool {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let ok = loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
        match usize::try_from(n) {
            Ok(0) => break true,
            Ok(n) => {
                if !take(buf.get(..n).unwrap_or(&[])) {
                    break true;
                }
            }
            Err(_) if crate::platform::errno::get() == libc::EINTR => {}
            Err(_) => break false,
        }
    };
    // SAFETY: the descriptor opened above, closed once.
    unsafe { libc::close(fd) };
    ok
}

/// Reads the fields of each line up to the inode, a byte at a time across reads.
#[derive(Default)]
struct Parser {
    /// 0 start, 1 end, 2 perms, 3 offset, 4 device, 5 inode, 6 the rest of the line.
    field: u8,
    vma: Vma,
    offset: u64,
    /// How much of the path matched "/SYSV" so far (`u8::MAX`: it does not).
    sysv: u8,
}

impl Parser {
    /// Returns false once the VMAs are past the range.
    fn feed(&mut self, bytes: &[u8], out: &mut Mapped) -> bool {
        for &b in bytes {
            if b == b'\n' {
                let vma = Vma {
                    pgoff: self.offset / PAGE,
                    sysv: usize::from(self.sysv) == SYSV.len(),
                    ..self.vma
                };
                if self.field >= 5 && !out.add(vma) {
                    return false;
                }
                *self = Parser::default();
                continue;
            }
            if matches!((self.field, b), (0, b'-') | (1..=5, b' ')) {
                if self.field < 6 {
                    self.field += 1;
                }
                continue;
            }
            let hex = match b {
                b'0'..=b'9' => u64::from(b - b'0'),
                b'a'..=b'f' => u64::from(b - b'a' + 10),
                _ => 0,
            };
            match self.field {
                0 => self.vma.start = (self.vma.start << 4) | hex,
                1 => self.vma.end = (self.vma.end << 4) | hex,
                2 => self.vma.perms = (self.vma.perms << 8) | u32::from(b),
                3 => self.offset = (self.offset << 4) | hex,
                4 if b != b':' => self.vma.dev = (self.vma.dev << 4) | hex,
                5 => self.vma.inode = self.vma.inode * 10 + hex,
                6 if b != b' ' => {
                    self.sysv = match SYSV.get(usize::from(self.sysv)) {
                        Some(&want) if want == b => self.sysv + 1,
                        Some(_) => u8::MAX,
                        None => self.sysv,
                    }
                }
                _ => {}
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Mapped::empty(start, end);
        let mut p = Parser::default();
        // Fed in odd pieces, as reads may cut lines anywhere.
        for chunk in text.as_bytes().chunks(7) {
            if !p.feed(chunk, &mut out) {
                break;
            }
        }
        out.spans().to_vec()
    }

    #[test]
    fn spans_are_clipped_merged_and_stop_past_the_range() {
        let maps = "1000-3000 rw-p 00000000 00:00 0\n\
                    3000-4000 r--p 00000000 08:01 12 /usr/lib/x\n\
                    6000-8000 rw-s 00000000 00:01 7 /SYSV00000000 (deleted)\n\
                    9000-a000 rw-p 00000000 00:00 0 [heap]\n";
        assert_eq!(
            parse(maps, 0x2000, 0x7000),
            [(0x2000, 0x4000), (0x6000, 0x7000)]
        );
        assert_eq!(parse(maps, 0x4000, 0x6000), []);
        assert_eq!(parse(maps, 0, u64::MAX).len(), 3);
    }

    #[test]
    fn too_many_spans_cut_the_range_short() {
        let maps: String = (0..100u64)
            .map(|i| {
                format!(
                    "{:x}-{:x} rw-p 0 00:00 0\n",
                    i * 0x2000,
                    i * 0x2000 + 0x1000
                )
            })
            .collect();
        let mut out = Mapped::empty(0, u64::MAX);
        Parser::default().feed(maps.as_bytes(), &mut out);
        assert_eq!(out.nvmas, MAX_SPANS);
        assert_eq!(out.end, MAX_SPANS as u64 * 0x2000);
    }

    #[test]
    fn a_copy_is_the_same_vma_at_the_same_distance() {
        let maps = "1000-3000 rw-s 00002000 00:01 7 /SYSV00000000 (deleted)\n\
                    9000-a000 rw-s 00003000 00:01 7 /SYSV00000000 (deleted)\n\
                    a000-b000 rw-s 00002000 00:01 7 /SYSV00000000 (deleted)\n\
                    b000-c000 rw-p 0000000b 00:00 0\n";
        let read = |start, end| {
            let mut out = Mapped::empty(start, end);
            Parser::default().feed(maps.as_bytes(), &mut out);
            out
        };
        let (src, dst) = (read(0x1000, 0x4000), read(0x8000, 0xb000));
        assert_eq!(src.vmas()[0].pgoff, 2);
        assert!(src.vmas()[0].sysv && src.vmas()[0].begins);
        assert_eq!(src.vmas()[0].perms, u32::from_be_bytes(*b"rw-s"));
        let mut out = [(0, 0); 4];
        // Page 0x2000 (offset 3) is at 0x9000 with offset 3; page 0x1000 (offset 2) would be
        // at 0x8000, which is unmapped; 0xa000 has offset 2 where offset 4 would be a copy.
        assert_eq!(src.copied_to(&dst, 0x1000, 0x8000, &mut out), 1);
        assert_eq!(out[0], (0x2000, 0x3000));
    }

    #[test]
    fn this_process_has_its_stack_mapped() {
        let local = 0u64;
        let addr = &local as *const u64 as u64;
        let m = mapped(addr & !0xfff, (addr & !0xfff) + 0x1000).unwrap();
        assert_eq!(m.spans(), [(addr & !0xfff, (addr & !0xfff) + 0x1000)]);
    }
}

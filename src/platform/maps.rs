//! What the kernel has mapped in a range, from `/proc/self/maps`: read with plain system calls
//! into a stack buffer (no allocator, no lock a fork in progress could hold).

use core::ffi::c_void;

/// At most this many mapped spans per range; beyond, the range read is cut short.
pub const MAX_SPANS: usize = 64;

/// The mapped spans of `[start, end)`, sorted, disjoint, adjacent ones merged. `end` is where
/// the reading stopped: the range's end, or earlier when the spans ran out of room.
pub struct Mapped {
    pub start: u64,
    pub end: u64,
    pub spans: [(u64, u64); MAX_SPANS],
    pub len: usize,
}

impl Mapped {
    pub fn spans(&self) -> &[(u64, u64)] {
        &self.spans[..self.len]
    }

    /// Adds the VMA `[s, e)` (VMAs come in address order). False once nothing more is needed.
    fn add(&mut self, s: u64, e: u64) -> bool {
        if s >= self.end {
            return false;
        }
        let (s, e) = (s.max(self.start), e.min(self.end));
        if s >= e {
            return true;
        }
        if let Some(last) = self.spans[..self.len].last_mut()
            && last.1 == s
        {
            last.1 = e;
            return true;
        }
        if self.len == MAX_SPANS {
            self.end = s;
            return false;
        }
        self.spans[self.len] = (s, e);
        self.len += 1;
        true
    }
}

/// Reads what is mapped in `[start, end)` now; `None` if `/proc/self/maps` cannot be read.
/// Clobbers errno; the hooks restore it.
pub fn mapped(start: u64, end: u64) -> Option<Mapped> {
    let mut out = Mapped {
        start,
        end,
        spans: [(0, 0); MAX_SPANS],
        len: 0,
    };
    if start >= end {
        return Some(out);
    }
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut parser = Parser::default();
    let mut buf = [0u8; 1024];
    let ok = loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast::<c_void>(), buf.len()) };
        if n < 0 {
            if crate::platform::errno::get() == libc::EINTR {
                continue;
            }
            break false;
        }
        if n == 0 {
            break true;
        }
        if !parser.feed(&buf[..n as usize], &mut out) {
            break true;
        }
    };
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    ok.then_some(out)
}

/// Reads the leading `start-end` of each line, a byte at a time across reads.
#[derive(Default)]
struct Parser {
    /// 0: the start, 1: the end, 2: the rest of the line.
    field: u8,
    start: u64,
    end: u64,
}

impl Parser {
    /// Returns false once the VMAs are past the range.
    fn feed(&mut self, bytes: &[u8], out: &mut Mapped) -> bool {
        for &b in bytes {
            match (self.field, b) {
                (_, b'\n') => {
                    if self.field == 2 && !out.add(self.start, self.end) {
                        return false;
                    }
                    *self = Parser::default();
                }
                (0, b'-') => self.field = 1,
                (1, b' ') => self.field = 2,
                (0 | 1, _) => {
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        _ => 0,
                    };
                    let v = if self.field == 0 {
                        &mut self.start
                    } else {
                        &mut self.end
                    };
                    *v = (*v << 4) | u64::from(digit);
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
        let mut out = Mapped {
            start,
            end,
            spans: [(0, 0); MAX_SPANS],
            len: 0,
        };
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
        let mut out = Mapped {
            start: 0,
            end: u64::MAX,
            spans: [(0, 0); MAX_SPANS],
            len: 0,
        };
        Parser::default().feed(maps.as_bytes(), &mut out);
        assert_eq!(out.len, MAX_SPANS);
        assert_eq!(out.end, MAX_SPANS as u64 * 0x2000);
    }

    #[test]
    fn this_process_has_its_stack_mapped() {
        let local = 0u64;
        let addr = &local as *const u64 as u64;
        let m = mapped(addr & !0xfff, (addr & !0xfff) + 0x1000).unwrap();
        assert_eq!(m.spans(), [(addr & !0xfff, (addr & !0xfff) + 0x1000)]);
    }
}

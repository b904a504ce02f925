//! Lost or still reachable: a conservative pointer scan, as LeakSanitizer and valgrind do for
//! heap blocks, applied to the mappings and attachments the ledger would report.
//!
//! Pure: memory is read through the closure the caller passes, which must return an error (a
//! short count) rather than fault. Roots are the readable, writable memory that is not itself a
//! candidate (the caller subtracts candidates and its own memory with [`subtract`]); every
//! aligned word in them that points into a candidate, at any byte, makes that candidate
//! reachable, and reachable candidates are scanned in turn. What no chain from a root reaches
//! is lost, cycles included.
//!
//! Allocates only through the caller's global allocator (the shim's private heap).

/// A half-open address range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

/// One thing that may be lost: a live region the report would list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub span: Span,
    /// Whether its own words are scanned once it is found reachable (readable and writable
    /// now; a read-only file mapping holds file data, not pointers).
    pub scan: bool,
}

/// What one call of the reader did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Filled the start of the buffer with this many bytes; 0 when the first byte cannot be
    /// read (its page is then skipped).
    Read(usize),
    /// These bytes from the address hold nothing (pages never touched): no need to read.
    Empty(u64),
}

/// What a scan read, for the report and `make bench`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Bytes read and searched for pointers (roots and reachable candidates).
    pub bytes: u64,
    /// Bytes that could not be read (unmapped meanwhile, beyond a truncated file's end).
    pub unreadable: u64,
    pub nanos: u64,
}

/// Bytes read per call of the reader: big enough that the call is cheap next to the search.
const CHUNK: usize = 256 << 10;
/// Skipped as a whole when the reader cannot read its first byte.
const PAGE: u64 = 4096;

/// `ranges` minus every hole, in address order; both inputs in any order.
pub fn subtract(ranges: &[Span], holes: &[Span]) -> Vec<Span> {
    let mut holes: Vec<Span> = holes.iter().copied().filter(|h| h.start < h.end).collect();
    holes.sort_unstable();
    let mut ranges: Vec<Span> = ranges.iter().copied().filter(|r| r.start < r.end).collect();
    ranges.sort_unstable();
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let mut from = r.start;
        // Holes are sorted by start: only those ending after `from` can cut this range.
        let first = holes.partition_point(|h| h.end <= r.start);
        for h in holes.get(first..).unwrap_or(&[]) {
            if h.start >= r.end {
                break;
            }
            if h.start > from {
                out.push(Span {
                    start: from,
                    end: h.start,
                });
            }
            from = from.max(h.end);
            if from >= r.end {
                break;
            }
        }
        if from < r.end {
            out.push(Span {
                start: from,
                end: r.end,
            });
        }
    }
    out
}

/// Which candidates are reachable from `roots`, by index into `candidates` (sorted by start,
/// disjoint). `read(addr, buf)` reads memory at `addr` into `buf` (see [`Chunk`]); `now` is a
/// clock in nanoseconds.
pub fn reachable(
    candidates: &[Candidate],
    roots: &[Span],
    mut read: impl FnMut(u64, &mut [u8]) -> Chunk,
    now: impl Fn() -> u64,
) -> (Vec<bool>, Cost) {
    let started = now();
    let mut marked = vec![false; candidates.len()];
    let mut cost = Cost::default();
    let mut words = vec![0u64; CHUNK / 8];
    let mut work: Vec<usize> = Vec::new();
    let (low, span_len) = match (candidates.first(), candidates.last()) {
        (Some(f), Some(l)) => (f.span.start, l.span.end - f.span.start),
        _ => return (marked, cost),
    };
    let mut search = |span: Span, marked: &mut [bool], work: &mut Vec<usize>, cost: &mut Cost| {
        let mut addr = span.start.next_multiple_of(8);
        while addr < span.end {
            let want = usize::try_from(span.end - addr).unwrap_or(CHUNK).min(CHUNK);
            // SAFETY: the byte view covers exactly the words' memory, which any bytes fill
            // validly; `words` is not otherwise borrowed meanwhile.
            let bytes = unsafe {
                core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8)
            };
            let got = match read(addr, bytes.get_mut(..want).unwrap_or(&mut [])) {
                Chunk::Read(n) => n,
                Chunk::Empty(n) => {
                    addr = addr.saturating_add(n.max(1)).min(span.end);
                    continue;
                }
            };
            if got == 0 {
                let next = (addr / PAGE + 1).saturating_mul(PAGE).min(span.end);
                cost.unreadable += next - addr;
                addr = next;
                continue;
            }
            cost.bytes += got as u64;
            for &value in words.get(..got / 8).unwrap_or(&[]) {
                // One comparison rules out almost every word: most are not addresses at all.
                if value.wrapping_sub(low) >= span_len {
                    continue;
                }
                if let Some(i) = hit(candidates, value)
                    && let Some(m) = marked.get_mut(i)
                    && !*m
                {
                    *m = true;
                    work.push(i);
                }
            }
            addr += got as u64;
        }
    };
    for &root in roots {
        search(root, &mut marked, &mut work, &mut cost);
    }
    while let Some(i) = work.pop() {
        if let Some(c) = candidates.get(i).filter(|c| c.scan) {
            search(c.span, &mut marked, &mut work, &mut cost);
        }
    }
    cost.nanos = now().saturating_sub(started);
    (marked, cost)
}

/// The candidate holding `value`, if it points at one of its bytes.
#[inline]
fn hit(candidates: &[Candidate], value: u64) -> Option<usize> {
    let i = candidates
        .partition_point(|c| c.span.start <= value)
        .checked_sub(1)?;
    (value < candidates.get(i)?.span.end).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    /// A fake address space: words at addresses, everything else unreadable.
    struct Memory(Vec<(u64, Vec<u64>)>);

    impl Memory {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Chunk {
            Chunk::Read(self.read_bytes(addr, buf))
        }

        fn read_bytes(&self, addr: u64, buf: &mut [u8]) -> usize {
            for (base, words) in &self.0 {
                let end = base + 8 * words.len() as u64;
                if (*base..end).contains(&addr) {
                    let n = (buf.len() as u64).min(end - addr) as usize;
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        let at = addr - base + i as u64;
                        *b = words[(at / 8) as usize].to_ne_bytes()[(at % 8) as usize];
                    }
                    return n;
                }
            }
            0
        }
    }

    fn candidate(start: u64, end: u64) -> Candidate {
        Candidate {
            span: span(start, end),
            scan: true,
        }
    }

    #[test]
    fn subtraction_cuts_holes_anywhere() {
        let out = subtract(
            &[span(100, 200), span(0, 50), span(300, 400)],
            &[span(120, 130), span(190, 320), span(0, 10), span(140, 150)],
        );
        assert_eq!(
            out,
            vec![
                span(10, 50),
                span(100, 120),
                span(130, 140),
                span(150, 190),
                span(320, 400)
            ]
        );
        assert_eq!(subtract(&[span(0, 10)], &[span(0, 10)]), vec![]);
        assert_eq!(subtract(&[span(5, 5)], &[]), vec![]);
    }

    #[test]
    fn chains_cycles_and_interior_pointers() {
        // Root at 0x1000 points into the middle of A; A points at B's start; C and D point
        // only at each other; E is pointed at by nothing; F only by an unscanned candidate.
        let cands = [
            candidate(0x10000, 0x11000), // A
            candidate(0x20000, 0x21000), // B
            candidate(0x30000, 0x31000), // C
            candidate(0x40000, 0x41000), // D
            candidate(0x50000, 0x51000), // E
            candidate(0x60000, 0x61000), // F
            Candidate {
                span: span(0x70000, 0x71000),
                scan: false,
            }, // G
        ];
        let mem = Memory(vec![
            (0x1000, vec![7, 0x10800, 0x70000, 0x11000]),
            (0x10000, vec![0, 0x20000]),
            (0x20000, vec![0x20000]),
            (0x30000, vec![0x40008]),
            (0x40000, vec![0x30ff8]),
            (0x70000, vec![0x60000]),
        ]);
        let (marked, cost) =
            reachable(&cands, &[span(0x1000, 0x1020)], |a, b| mem.read(a, b), || 0);
        assert_eq!(marked, [true, true, false, false, false, false, true]);
        // The root, A (first two words, then unreadable), B (one word).
        assert_eq!(cost.bytes, 32 + 16 + 8);
        assert!(cost.unreadable > 0);
    }

    #[test]
    fn unreadable_memory_is_skipped_page_by_page() {
        let cands = [Candidate {
            span: span(0x90000, 0x91000),
            scan: false,
        }];
        let mem = Memory(vec![(0x3000, vec![0x90010])]);
        // Pages 0x1000 and 0x2000 are holes; the pointer is on the third page.
        let (marked, cost) =
            reachable(&cands, &[span(0x1000, 0x3008)], |a, b| mem.read(a, b), || 0);
        assert_eq!(marked, [true]);
        assert_eq!(cost.unreadable, 0x2000);
        assert_eq!(cost.bytes, 8);
    }

    #[test]
    fn empty_stretches_are_skipped_unread() {
        let cands = [candidate(0x90000, 0x91000)];
        let mem = Memory(vec![(0x5000, vec![0x90010])]);
        let mut asked = Vec::new();
        let (marked, cost) = reachable(
            &cands,
            &[span(0x1000, 0x5008)],
            |a, b| {
                asked.push(a);
                if a < 0x5000 {
                    Chunk::Empty(0x5000 - a)
                } else {
                    mem.read(a, b)
                }
            },
            || 0,
        );
        assert_eq!(marked, [true]);
        assert_eq!(
            asked[..2],
            [0x1000, 0x5000],
            "one call for the whole empty stretch"
        );
        assert_eq!(
            (cost.bytes, cost.unreadable),
            (8, 4096),
            "the candidate itself is unreadable"
        );
    }

    #[test]
    fn one_past_the_end_is_not_a_pointer_into_it() {
        let cands = [candidate(0x10000, 0x11000)];
        let mem = Memory(vec![(0x1000, vec![0x11000, 0xffff])]);
        let (marked, _) = reachable(&cands, &[span(0x1000, 0x1010)], |a, b| mem.read(a, b), || 0);
        assert_eq!(marked, [false]);
    }
}

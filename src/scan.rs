//! The pointer scan of this process at report time: which of the ledger's attachments and
//! mappings are lost. Roots are the readable, writable memory that is neither a candidate nor
//! the shim's own (its heap, its log mapping, its module's data, its frames on this thread's
//! stack); see `reach` for the search and `platform::address_space` for the memory.

use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::ledger::{Candidate, Scanned};
use crate::platform::address_space::{self, Piece, Reader};
use crate::platform::modules::MapsOnce;
use crate::platform::{clock, process};
use crate::reach::{self, Chunk, Span};

/// Which frames of the reporting thread's stack are roots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackRoots {
    /// Those from this address up: the shim's caller's and above (the C API, `_exit`), whose
    /// locals live on; see `address_space::with_registers_on_stack`.
    From(u64),
    /// At exit, from the shim's destructor: those of the program's `exit` call and above if
    /// it went through the interposer, none when `main` returned (its frames are gone, and
    /// the exit handlers' frames now there still hold stale copies of old call results).
    AtExit,
}

/// The stack address of the program's `exit` call, and the thread that made it (0: none).
static EXIT_SP: AtomicU64 = AtomicU64::new(0);
static EXIT_TID: AtomicI32 = AtomicI32::new(0);

/// Called by the `exit` interposer with an address in its frame.
#[cfg_attr(test, allow(dead_code))]
pub fn exit_called_at(sp: u64) {
    EXIT_TID.store(process::tid(), Ordering::Relaxed);
    EXIT_SP.store(sp, Ordering::Relaxed);
}

/// The starts of the lost candidates (given in address order, as the ledger lists them), and
/// what the scan cost; `None` when this process's memory map cannot be read. With no
/// candidates there is nothing to look for: nothing is read, and the scan cost nothing.
pub fn lost(
    candidates: &[Candidate],
    stack: StackRoots,
    maps: &mut MapsOnce,
) -> Option<(Vec<u64>, Scanned)> {
    if candidates.is_empty() {
        return Some((Vec::new(), Scanned { bytes: 0, nanos: 0 }));
    }
    let here = 0u8;
    let stack_low = match stack {
        StackRoots::From(low) => low,
        StackRoots::AtExit => core::hint::black_box(&here) as *const u8 as u64,
    };
    {
        let areas = address_space::areas_in(maps.text()?);
        let span = |start: u64, end: u64| Span { start, end };
        let (own, _) = address_space::own_memory();
        let mut holes: Vec<Span> = own.into_iter().map(|(s, e)| span(s, e)).collect();
        holes.extend(candidates.iter().map(|c| span(c.start, c.end)));
        if let Some(area) = areas.iter().find(|a| (a.start..a.end).contains(&stack_low)) {
            let exit_sp = EXIT_SP.load(Ordering::Relaxed);
            let roots_from = match stack {
                StackRoots::From(low) => low,
                StackRoots::AtExit
                    if EXIT_TID.load(Ordering::Relaxed) == process::tid()
                        && (stack_low..area.end).contains(&exit_sp) =>
                {
                    exit_sp
                }
                StackRoots::AtExit => area.end,
            };
            holes.push(span(area.start, roots_from));
        }
        let scannable: Vec<Span> = areas
            .iter()
            .filter(|a| a.scannable)
            .map(|a| span(a.start, a.end))
            .collect();
        let roots = reach::subtract(&scannable, &holes);
        let overlaps_scannable = |c: &Candidate| {
            let i = scannable.partition_point(|s| s.end <= c.start);
            scannable.get(i).is_some_and(|s| s.start < c.end)
        };
        let search: Vec<reach::Candidate> = candidates
            .iter()
            .map(|c| reach::Candidate {
                span: span(c.start, c.end),
                scan: overlaps_scannable(c),
            })
            .collect();
        let mut reader = Reader::new();
        let read = |addr, buf: &mut [u8]| match reader.read(addr, buf) {
            Piece::Bytes(n) => Chunk::Read(n),
            Piece::Untouched(n) => Chunk::Empty(n),
        };
        let (reached, cost) = reach::reachable(&search, &roots, read, clock::now_ns);
        let lost = candidates
            .iter()
            .zip(reached)
            .filter(|(_, reached)| !reached)
            .map(|(c, _)| c.start)
            .collect();
        Some((
            lost,
            Scanned {
                bytes: cost.bytes,
                nanos: cost.nanos,
            },
        ))
    }
}

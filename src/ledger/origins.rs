//! Where the pieces of attachments that `mremap` moved or duplicated have their origin.
//!
//! A piece's origin is the address at which offset 0 of its segment would lie in it: its start
//! minus its offset in the segment. `shmdt(addr)` detaches exactly the pieces whose origin is
//! `addr` (the kernel compares a VMA's distance from `addr` with its page offset). A piece
//! `shmat` placed, however split, has its attachment's address as origin and lies within the
//! attachment's range; only pieces `mremap` moved, copied or grew are kept here (they may lie
//! anywhere), so the map is empty in every program that does not `mremap` an attachment.
//!
//! Origins are a function of the address: splitting a piece keeps its origin, so this is an
//! interval map of disjoint `[start, end)` ranges, cut by every unmap like the regions are.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Origins {
    /// start -> (end, origin)
    map: BTreeMap<u64, (u64, u64)>,
}

impl Origins {
    pub const fn new() -> Origins {
        Origins {
            map: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The origin recorded for the piece containing `addr`.
    pub fn get(&self, addr: u64) -> Option<u64> {
        let (_, &(end, origin)) = self.map.range(..=addr).next_back()?;
        (end > addr).then_some(origin)
    }

    /// Records `[start, end)` as having `origin`; the caller has removed what was there.
    pub fn insert(&mut self, start: u64, end: u64, origin: u64) {
        if start < end {
            self.map.insert(start, (end, origin));
        }
    }

    /// Forgets `[start, end)`, keeping what lies either side of it.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if let Some((&s, &(e, origin))) = self.map.range(..start).next_back()
            && e > start
        {
            self.map.insert(s, (start, origin));
            if e > end {
                self.map.insert(end, (e, origin));
                return;
            }
        }
        while let Some((&s, &(e, origin))) = self.map.range(start..end).next() {
            self.map.remove(&s);
            if e > end {
                self.map.insert(end, (e, origin));
            }
        }
    }

    /// Starts of the recorded ranges whose origin is `origin`, in address order (a scan: moved
    /// attachment pieces are rare).
    pub fn with_origin(&self, origin: u64) -> impl Iterator<Item = u64> + '_ {
        self.map
            .iter()
            .filter(move |(_, (_, o))| *o == origin)
            .map(|(&s, _)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_keeps_the_origin_of_what_remains() {
        let mut o = Origins::new();
        o.insert(0x1000, 0x5000, 0x9000);
        o.insert(0x6000, 0x7000, 0x1000);
        o.remove(0x2000, 0x3000);
        assert_eq!(o.get(0x1000), Some(0x9000));
        assert_eq!(o.get(0x2000), None);
        assert_eq!(o.get(0x4fff), Some(0x9000));
        o.remove(0x4000, 0x6800);
        assert_eq!(o.get(0x3000), Some(0x9000));
        assert_eq!(o.get(0x4000), None);
        assert_eq!(o.get(0x6800), Some(0x1000));
        assert_eq!(o.with_origin(0x9000).collect::<Vec<_>>(), [0x1000, 0x3000]);
        o.remove(0, u64::MAX);
        assert!(o.is_empty());
    }
}

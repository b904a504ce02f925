//! What one process holds while the timeline is replayed: its mapped ranges (page-rounded, as
//! the kernel keeps them, split by partial unmaps) and its SysV attachments.

use std::collections::BTreeMap;

const PAGE: u64 = 4096;

fn pages(len: u64) -> u64 {
    len.div_ceil(PAGE).saturating_mul(PAGE)
}

#[derive(Clone, Debug, Default)]
pub(super) struct Held {
    /// start -> (end, a `MAP_SHARED` mapping of a file); never overlapping.
    ranges: BTreeMap<u64, (u64, bool)>,
    /// Attachment address -> segment bytes.
    attachments: BTreeMap<u64, u64>,
    pub(super) mapped: u64,
    pub(super) attached: u64,
    pub(super) shared_files: u32,
}

impl Held {
    pub(super) fn map(&mut self, addr: u64, len: u64, shared_file: bool) {
        let end = addr.saturating_add(pages(len));
        // A new mapping over old ones replaces them (MAP_FIXED, or ranges the log missed).
        self.unmap(addr, end - addr);
        self.ranges.insert(addr, (end, shared_file));
        self.mapped += end - addr;
        self.shared_files += u32::from(shared_file);
    }

    /// Removes `[addr, addr+len)`; what lies outside it of a range it cuts stays mapped.
    pub(super) fn unmap(&mut self, addr: u64, len: u64) {
        let end = addr.saturating_add(pages(len));
        let cut: Vec<(u64, (u64, bool))> = self
            .ranges
            .range(..end)
            .rev()
            .take_while(|(_, (e, _))| *e > addr)
            .map(|(s, v)| (*s, *v))
            .collect();
        for (start, (stop, file)) in cut {
            self.ranges.remove(&start);
            self.mapped -= stop - start;
            self.shared_files -= u32::from(file);
            if start < addr {
                self.ranges.insert(start, (addr, file));
                self.mapped += addr - start;
                self.shared_files += u32::from(file);
            }
            if stop > end {
                self.ranges.insert(end, (stop, file));
                self.mapped += stop - end;
                self.shared_files += u32::from(file);
            }
        }
    }

    pub(super) fn remap(&mut self, old: u64, old_len: u64, new: u64, new_len: u64, keep_old: bool) {
        let shared = self
            .ranges
            .range(..=old)
            .next_back()
            .is_some_and(|(_, (end, file))| *end > old && *file);
        if !keep_old {
            self.unmap(old, old_len);
        }
        self.map(new, new_len, shared);
    }

    pub(super) fn attach(&mut self, addr: u64, size: u64) {
        self.detach(addr);
        self.attachments.insert(addr, pages(size));
        self.attached += pages(size);
    }

    pub(super) fn detach(&mut self, addr: u64) {
        if let Some(size) = self.attachments.remove(&addr) {
            self.attached -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_unmaps_split_ranges_like_the_kernel() {
        let mut h = Held::default();
        h.map(0x10000, 5 * PAGE, false);
        h.unmap(0x10000 + PAGE, PAGE);
        assert_eq!(h.mapped, 4 * PAGE);
        assert_eq!(h.ranges.len(), 2, "one hole splits the range in two");
        // One unmap across the hole and both pieces' edges.
        h.unmap(0x10000, 3 * PAGE);
        assert_eq!(h.mapped, 2 * PAGE);
        assert_eq!(
            h.ranges.keys().copied().collect::<Vec<_>>(),
            [0x10000 + 3 * PAGE]
        );
        // Lengths are rounded up to pages.
        h.unmap(0x10000 + 3 * PAGE, 1);
        assert_eq!(h.mapped, PAGE);
    }

    #[test]
    fn mapping_over_a_range_replaces_it() {
        let mut h = Held::default();
        h.map(0x10000, 4 * PAGE, true);
        h.map(0x10000 + PAGE, PAGE, false);
        assert_eq!(h.mapped, 4 * PAGE);
        assert_eq!(
            h.shared_files, 2,
            "the shared file mapping is cut in two pieces"
        );
        h.unmap(0, u64::MAX / 2);
        assert_eq!((h.mapped, h.shared_files), (0, 0));
    }

    #[test]
    fn remap_moves_and_keeps_the_kind() {
        let mut h = Held::default();
        h.map(0x10000, PAGE, true);
        h.remap(0x10000, PAGE, 0x90000, 3 * PAGE, false);
        assert_eq!((h.mapped, h.shared_files), (3 * PAGE, 1));
        h.remap(0x90000, 3 * PAGE, 0x20000, PAGE, true);
        assert_eq!(h.mapped, 4 * PAGE, "MREMAP_DONTUNMAP keeps the old range");
    }

    #[test]
    fn attachments_by_address() {
        let mut h = Held::default();
        h.attach(0x7000_0000, 100);
        h.attach(0x7100_0000, 2 * PAGE);
        h.detach(0x7000_0000);
        h.detach(0x7000_0000);
        assert_eq!(h.attached, 2 * PAGE);
    }
}

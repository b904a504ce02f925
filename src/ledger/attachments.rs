//! System V shm attachments: one record per successful `shmat`, alive while any piece of it is
//! mapped.
//!
//! Records live in a slab whose slot number is packed into each piece's region metadata, so a
//! piece finds its attachment in O(1) and a region value stays 16 bytes. Slots are reused, so
//! each attachment also gets a serial `id` that is never reused.

use std::collections::BTreeSet;

use super::regions::MAX_SLOTS;

/// One attachment, as `shmat` made it, and how much of it is still mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Serial number in this ledger, never reused.
    pub id: u64,
    pub shmid: i32,
    /// The address `shmat` returned: the one `shmdt` needs.
    pub addr: u64,
    /// The attached length, rounded up to the page size.
    pub size: u64,
    /// The huge page of a `SHM_HUGETLB` segment; 0 for the base page.
    pub page: u64,
    pub readonly: bool,
    pub site: u64,
    /// The stack above `site` (a stack id of the ledger's site table; 0: none recorded).
    pub stack: u32,
    /// Held before the last fork: the parent's, not this process's.
    pub inherited: bool,
    /// Live regions belonging to this attachment (splits and `mremap` copies add some).
    pub pieces: u32,
    /// Bytes of it still mapped.
    pub mapped: u64,
    /// The ledger's checkpoint epoch when it was made (see `Ledger::checkpoint`).
    pub epoch: u32,
}

enum Slot {
    Free { next: u32 },
    Used(Attachment),
}

const NONE: u32 = u32::MAX;

pub struct Attachments {
    slots: Vec<Slot>,
    free: u32,
    live: usize,
    next_id: u64,
    /// `(addr, slot)` of the attachments in slots from `SCANNED` on: `shmdt` looks
    /// attachments up by their start address. The first slots are scanned instead, which
    /// spares the common program (a few attachments at a time; free slots are reused lowest
    /// first) a tree insertion and removal per attachment.
    by_addr: BTreeSet<(u64, u32)>,
}

/// Slots looked through rather than indexed by address.
const SCANNED: u32 = 16;

impl Default for Attachments {
    fn default() -> Self {
        Self::new()
    }
}

impl Attachments {
    pub const fn new() -> Attachments {
        Attachments {
            slots: Vec::new(),
            free: NONE,
            live: 0,
            next_id: 1,
            by_addr: BTreeSet::new(),
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Records a new attachment with no piece yet; `None` when every slot is taken.
    pub fn add(
        &mut self,
        shmid: i32,
        addr: u64,
        size: u64,
        readonly: bool,
        site: u64,
        stack: u32,
    ) -> Option<u32> {
        let att = Attachment {
            id: self.next_id,
            shmid,
            addr,
            size,
            page: 0,
            readonly,
            site,
            stack,
            inherited: false,
            pieces: 0,
            mapped: 0,
            epoch: 0,
        };
        let slot = if self.free != NONE {
            let slot = self.free;
            let entry = self.slots.get_mut(slot as usize)?;
            let Slot::Free { next } = *entry else {
                return None;
            };
            self.free = next;
            *entry = Slot::Used(att);
            slot
        } else {
            let slot = u32::try_from(self.slots.len())
                .ok()
                .filter(|&s| s < MAX_SLOTS)?;
            self.slots.push(Slot::Used(att));
            slot
        };
        self.next_id = self.next_id.saturating_add(1);
        self.live += 1;
        if slot >= SCANNED {
            self.by_addr.insert((addr, slot));
        }
        Some(slot)
    }

    /// Stamps the checkpoint epoch of a new attachment.
    pub fn set_epoch(&mut self, slot: u32, epoch: u32) {
        if let Some(Slot::Used(a)) = self.slots.get_mut(slot as usize) {
            a.epoch = epoch;
        }
    }

    /// Sets the page size of a `SHM_HUGETLB` attachment (0 until then: the base page).
    pub fn set_page(&mut self, slot: u32, page: u64) {
        if let Some(Slot::Used(a)) = self.slots.get_mut(slot as usize) {
            a.page = page;
        }
    }

    pub fn get(&self, slot: u32) -> Option<&Attachment> {
        match self.slots.get(slot as usize) {
            Some(Slot::Used(a)) => Some(a),
            _ => None,
        }
    }

    /// Accounts for pieces added to or removed from an attachment. Returns the attachment when
    /// its last piece went: it has ended and its slot is free again.
    pub fn account(
        &mut self,
        slot: u32,
        added: u64,
        removed: u64,
        pieces: i32,
    ) -> Option<Attachment> {
        let Some(Slot::Used(a)) = self.slots.get_mut(slot as usize) else {
            return None;
        };
        a.mapped = a.mapped.saturating_add(added).saturating_sub(removed);
        a.pieces = a.pieces.saturating_add_signed(pieces);
        if a.pieces > 0 {
            return None;
        }
        let ended = *a;
        self.release(slot);
        Some(ended)
    }

    /// Frees a slot whose attachment never got a piece.
    pub fn release(&mut self, slot: u32) {
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return;
        };
        if let Slot::Used(a) = entry {
            if slot >= SCANNED {
                self.by_addr.remove(&(a.addr, slot));
            }
            *entry = Slot::Free { next: self.free };
            self.free = slot;
            self.live = self.live.saturating_sub(1);
        }
    }

    /// Slots of the live attachments that `shmat` placed at `addr`.
    pub fn at_addr(&self, addr: u64) -> impl Iterator<Item = u32> + '_ {
        let scanned = self
            .slots
            .iter()
            .take(SCANNED as usize)
            .zip(0..)
            .filter_map(move |(s, slot)| match s {
                Slot::Used(a) if a.addr == addr => Some(slot),
                _ => None,
            });
        let indexed = self
            .by_addr
            .range((addr, 0)..=(addr, u32::MAX))
            .map(|&(_, slot)| slot);
        scanned.chain(indexed)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Attachment> + '_ {
        self.slots.iter().filter_map(|s| match s {
            Slot::Used(a) => Some(a),
            Slot::Free { .. } => None,
        })
    }

    /// No allocation: see `Ledger::after_fork_in_child`.
    pub fn mark_all_inherited(&mut self) {
        for s in &mut self.slots {
            if let Slot::Used(a) = s {
                a.inherited = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_ids_are_not() {
        let mut t = Attachments::new();
        let a = t.add(7, 0x1000, 0x2000, false, 0x55, 0).unwrap();
        assert_eq!(t.account(a, 0x2000, 0, 1), None);
        let b = t.add(7, 0x9000, 0x1000, true, 0x56, 0).unwrap();
        assert_eq!(t.at_addr(0x1000).collect::<Vec<_>>(), [a]);
        let ended = t.account(a, 0, 0x2000, -1).unwrap();
        assert_eq!((ended.id, ended.mapped, ended.pieces), (1, 0, 0));
        assert_eq!(t.at_addr(0x1000).count(), 0);
        let c = t.add(8, 0x1000, 0x1000, false, 0x57, 0).unwrap();
        assert_eq!(c, a);
        assert_eq!(t.get(c).unwrap().id, 3);
        assert_eq!(t.live(), 2);
        t.release(b);
        assert_eq!(t.live(), 1);
        assert_eq!(t.get(b), None);
        // Accounting a free slot is harmless.
        assert_eq!(t.account(b, 1, 0, 1), None);
    }

    #[test]
    fn found_by_address_in_scanned_and_indexed_slots_alike() {
        let mut t = Attachments::new();
        let n = SCANNED as u64 * 2;
        let slots: Vec<u32> = (0..n)
            .map(|i| t.add(7, 0x1000 * (i % 3), 0x1000, false, 0x55, 0).unwrap())
            .collect();
        for addr in [0, 0x1000, 0x2000] {
            let mut found: Vec<u32> = t.at_addr(addr).collect();
            found.sort_unstable();
            let want: Vec<u32> = (0..n)
                .filter(|i| 0x1000 * (i % 3) == addr)
                .map(|i| slots[i as usize])
                .collect();
            assert_eq!(found, want, "at {addr:#x}");
        }
        for &slot in &slots {
            t.release(slot);
        }
        assert_eq!(t.at_addr(0x1000).count(), 0, "released from both");
        assert!(t.by_addr.is_empty());
    }
}

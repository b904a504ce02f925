//! Call sites, deduplicated, so a region stores a 4-byte index instead of an 8-byte address.
//!
//! A site is a caller's return address and, with `SHMTRACE_STACK`, the stack above it: the same
//! call reached through two call chains is two sites, so that the report can tell them apart.
//! Stacks are interned too (a 4-byte id, 0 for none) for the records that keep their own site
//! address (SysV objects, attachments).
//!
//! `BTreeMap`s rather than `HashMap`s: std's hasher seeds itself with `getrandom`, a syscall
//! this pure module must not make from inside a hook.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Sites {
    /// Per site index: its address and stack id.
    sites: Vec<(u64, u32)>,
    index: BTreeMap<(u64, u32), u32>,
    /// Stack id `n` (from 1) is `stacks[n - 1]`.
    stacks: Vec<Box<[u64]>>,
    stack_index: BTreeMap<Box<[u64]>, u32>,
    /// The last site interned, `(addr, stack, index)`: a program maps from a few call sites,
    /// most often from the same one as just before. Indexes never change, so it never goes
    /// stale.
    last: Option<(u64, u32, u32)>,
}

/// The index given when the table is full; it reads back as site 0 ("unknown").
const OVERFLOW: u32 = u32::MAX;

/// The stack id of "no stack" (and of a stack that did not fit in the table).
pub const NO_STACK: u32 = 0;

impl Sites {
    pub const fn new() -> Sites {
        Sites {
            sites: Vec::new(),
            index: BTreeMap::new(),
            stacks: Vec::new(),
            stack_index: BTreeMap::new(),
            last: None,
        }
    }

    /// The id of `frames`; [`NO_STACK`] for none.
    pub fn intern_stack(&mut self, frames: &[u64]) -> u32 {
        if frames.is_empty() {
            return NO_STACK;
        }
        if let Some(&id) = self.stack_index.get(frames) {
            return id;
        }
        let Some(id) = u32::try_from(self.stacks.len())
            .ok()
            .and_then(|n| n.checked_add(1))
        else {
            return NO_STACK;
        };
        let frames: Box<[u64]> = frames.into();
        self.stacks.push(frames.clone());
        self.stack_index.insert(frames, id);
        id
    }

    /// The frames of stack `id` (empty for [`NO_STACK`] or an unknown id).
    pub fn stack(&self, id: u32) -> &[u64] {
        id.checked_sub(1)
            .and_then(|i| self.stacks.get(i as usize))
            .map_or(&[][..], |frames| &frames[..])
    }

    /// The index of the site `addr` reached through stack `stack` (an id from
    /// [`Sites::intern_stack`]).
    pub fn intern(&mut self, addr: u64, stack: u32) -> u32 {
        if let Some((a, s, i)) = self.last
            && (a, s) == (addr, stack)
        {
            return i;
        }
        let i = self.intern_new(addr, stack);
        if i != OVERFLOW {
            self.last = Some((addr, stack, i));
        }
        i
    }

    fn intern_new(&mut self, addr: u64, stack: u32) -> u32 {
        if let Some(&i) = self.index.get(&(addr, stack)) {
            return i;
        }
        let Ok(i) = u32::try_from(self.sites.len()) else {
            return OVERFLOW;
        };
        if i == OVERFLOW {
            return OVERFLOW;
        }
        self.sites.push((addr, stack));
        self.index.insert((addr, stack), i);
        i
    }

    pub fn addr(&self, index: u32) -> u64 {
        self.sites.get(index as usize).map_or(0, |s| s.0)
    }

    /// The stack id of site `index`.
    pub fn stack_of(&self, index: u32) -> u32 {
        self.sites.get(index as usize).map_or(NO_STACK, |s| s.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_dedups() {
        let mut s = Sites::new();
        let a = s.intern(0x55d0_c0a0_1234, NO_STACK);
        let b = s.intern(0x55d0_c0a0_1248, NO_STACK);
        assert_ne!(a, b);
        assert_eq!(s.intern(0x55d0_c0a0_1234, NO_STACK), a);
        assert_eq!(
            s.intern(0x55d0_c0a0_1234, NO_STACK),
            a,
            "the same site again"
        );
        assert_eq!(s.intern(0x55d0_c0a0_1234, 1), s.intern(0x55d0_c0a0_1234, 1));
        assert_ne!(
            s.intern(0x55d0_c0a0_1234, 1),
            a,
            "the same caller, another stack"
        );
        assert_eq!(s.addr(a), 0x55d0_c0a0_1234);
        assert_eq!(s.addr(b), 0x55d0_c0a0_1248);
        assert_eq!(s.addr(OVERFLOW), 0);
        assert_eq!(s.stack_of(OVERFLOW), NO_STACK);
    }

    #[test]
    fn one_caller_through_two_stacks_is_two_sites() {
        let mut s = Sites::new();
        assert_eq!(s.intern_stack(&[]), NO_STACK);
        let x = s.intern_stack(&[0x10, 0x20]);
        let y = s.intern_stack(&[0x30, 0x20]);
        assert!(x != NO_STACK && y != NO_STACK && x != y);
        assert_eq!(s.intern_stack(&[0x10, 0x20]), x);
        assert_eq!(s.stack(x), &[0x10, 0x20]);
        assert_eq!(s.stack(y), &[0x30, 0x20]);
        assert_eq!(s.stack(NO_STACK), &[] as &[u64]);
        assert_eq!(s.stack(99), &[] as &[u64]);

        let plain = s.intern(0x1234, NO_STACK);
        let via_x = s.intern(0x1234, x);
        let via_y = s.intern(0x1234, y);
        assert!(plain != via_x && via_x != via_y && plain != via_y);
        assert_eq!(s.intern(0x1234, x), via_x);
        for i in [plain, via_x, via_y] {
            assert_eq!(s.addr(i), 0x1234);
        }
        assert_eq!(s.stack_of(via_y), y);
        assert_eq!(s.stack_of(plain), NO_STACK);
    }
}

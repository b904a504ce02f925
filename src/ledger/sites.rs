//! Call sites, deduplicated, so a region stores a 4-byte index instead of an 8-byte address.
//!
//! A site is a caller's return address and, with `SHMTRACE_STACK`, the stack above it: the same
//! call reached through two call chains is two sites, so that the report can tell them apart.
//! Stacks are interned too (a 4-byte id, 0 for none) for the records that keep their own site
//! address (SysV objects, attachments). A mapping of a shared memory object has the object in
//! its site (`/dev/shm/NAME`, `memfd:NAME`, interned the same way), so the report names it and
//! one call site mapping two objects is two entries, at no cost to a region. While calls are
//! not logged the hook does not ask which object a marked descriptor is: the site then says
//! the name is pending ([`PENDING_OBJECT`]) and the report asks `/proc/self/maps` for it.
//!
//! `BTreeMap`s rather than `HashMap`s: std's hasher seeds itself with `getrandom`, a syscall
//! this pure module must not make from inside a hook.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Sites {
    /// Per site index: its address, stack id and object id.
    sites: Vec<(u64, u32, u32)>,
    /// Sites that map no object, which every anonymous mapping looks up: the key stays small.
    index: BTreeMap<(u64, u32), u32>,
    object_index: BTreeMap<(u64, u32, u32), u32>,
    /// Stack id `n` (from 1) is `stacks[n - 1]`.
    stacks: Vec<Box<[u64]>>,
    stack_index: BTreeMap<Box<[u64]>, u32>,
    /// Object id `n` (from 1) is `objects[n - 1]`.
    objects: Vec<Box<[u8]>>,
    object_ids: BTreeMap<Box<[u8]>, u32>,
    /// Some site has [`PENDING_OBJECT`]: the report has names to ask the kernel for.
    pending: bool,
    /// Sites interned lately, `((addr, stack, object), index)`, each in the slot its address
    /// hashes to: a program maps from a few call sites, so nearly every call finds its own
    /// here, without a look in the index. Indexes never change, so an entry never goes stale.
    recent: [Option<(SiteKey, u32)>; RECENT],
}

/// A site: the caller's address, its stack id and its object id.
type SiteKey = (u64, u32, u32);

/// Slots of [`Sites::recent`].
const RECENT: usize = 16;

/// The slot of [`Sites::recent`] for a caller's address (a multiplicative hash: return
/// addresses differ mostly in their low bits).
#[inline(always)]
fn recent_slot(addr: u64) -> usize {
    (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60) as usize % RECENT
}

/// The index given when the table is full; it reads back as site 0 ("unknown").
const OVERFLOW: u32 = u32::MAX;

/// The stack id of "no stack" (and of a stack that did not fit in the table).
pub const NO_STACK: u32 = 0;

/// The object id of a mapping of no shared memory object.
pub const NO_OBJECT: u32 = 0;

/// The object id of a mapping of a descriptor `shm_open` or `memfd_create` returned, whose
/// object was not named at the call: what the mapping maps is asked of the kernel when a
/// report needs it. Never an index into the object table (ids count up from 1).
pub const PENDING_OBJECT: u32 = u32::MAX;

impl Sites {
    pub const fn new() -> Sites {
        Sites {
            sites: Vec::new(),
            index: BTreeMap::new(),
            stacks: Vec::new(),
            stack_index: BTreeMap::new(),
            object_index: BTreeMap::new(),
            objects: Vec::new(),
            object_ids: BTreeMap::new(),
            pending: false,
            recent: [None; RECENT],
        }
    }

    /// The id of the object named `name`; [`NO_OBJECT`] for none.
    pub fn intern_object(&mut self, name: &[u8]) -> u32 {
        if name.is_empty() {
            return NO_OBJECT;
        }
        if let Some(&id) = self.object_ids.get(name) {
            return id;
        }
        let Some(id) = u32::try_from(self.objects.len())
            .ok()
            .and_then(|n| n.checked_add(1))
            .filter(|&id| id != PENDING_OBJECT)
        else {
            return NO_OBJECT;
        };
        let name: Box<[u8]> = name.into();
        self.objects.push(name.clone());
        self.object_ids.insert(name, id);
        id
    }

    /// Whether site `index` maps an object whose name is pending.
    pub fn object_pending(&self, index: u32) -> bool {
        self.sites
            .get(index as usize)
            .is_some_and(|s| s.2 == PENDING_OBJECT)
    }

    /// Whether any site maps an object whose name is pending.
    pub fn any_pending(&self) -> bool {
        self.pending
    }

    /// The object site `index` maps (empty for none, or a pending name).
    pub fn object_of(&self, index: u32) -> &[u8] {
        self.sites
            .get(index as usize)
            .and_then(|s| s.2.checked_sub(1))
            .and_then(|i| self.objects.get(i as usize))
            .map_or(&[][..], |name| &name[..])
    }

    /// The id of `frames`; [`NO_STACK`] for none.
    #[inline(always)]
    pub fn intern_stack(&mut self, frames: &[u64]) -> u32 {
        if frames.is_empty() {
            return NO_STACK;
        }
        self.intern_frames(frames)
    }

    #[inline(never)]
    fn intern_frames(&mut self, frames: &[u64]) -> u32 {
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
    /// [`Sites::intern_stack`]) mapping `object` (an id from [`Sites::intern_object`]).
    #[inline(always)]
    pub fn intern(&mut self, addr: u64, stack: u32, object: u32) -> u32 {
        let key = (addr, stack, object);
        let slot = recent_slot(addr);
        if let Some((k, i)) = self.recent[slot]
            && k == key
        {
            return i;
        }
        let i = self.intern_new(key);
        if i != OVERFLOW {
            self.recent[slot] = Some((key, i));
        }
        i
    }

    #[inline(never)]
    fn intern_new(&mut self, key: SiteKey) -> u32 {
        let (addr, stack, object) = key;
        let known = if object == NO_OBJECT {
            self.index.get(&(addr, stack))
        } else {
            self.object_index.get(&key)
        };
        if let Some(&i) = known {
            return i;
        }
        let Ok(i) = u32::try_from(self.sites.len()) else {
            return OVERFLOW;
        };
        if i == OVERFLOW {
            return OVERFLOW;
        }
        self.sites.push(key);
        self.pending |= object == PENDING_OBJECT;
        if object == NO_OBJECT {
            self.index.insert((addr, stack), i);
        } else {
            self.object_index.insert(key, i);
        }
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
        let a = s.intern(0x55d0_c0a0_1234, NO_STACK, NO_OBJECT);
        let b = s.intern(0x55d0_c0a0_1248, NO_STACK, NO_OBJECT);
        assert_ne!(a, b);
        assert_eq!(s.intern(0x55d0_c0a0_1234, NO_STACK, NO_OBJECT), a);
        assert_eq!(
            s.intern(0x55d0_c0a0_1234, NO_STACK, NO_OBJECT),
            a,
            "the same site again"
        );
        assert_eq!(
            s.intern(0x55d0_c0a0_1234, 1, NO_OBJECT),
            s.intern(0x55d0_c0a0_1234, 1, NO_OBJECT)
        );
        assert_ne!(
            s.intern(0x55d0_c0a0_1234, 1, NO_OBJECT),
            a,
            "the same caller, another stack"
        );
        assert_ne!(
            s.intern(0x55d0_c0a0_1234, 1, 1),
            s.intern(0x55d0_c0a0_1234, 1, NO_OBJECT),
            "the same caller and stack, another object"
        );
        assert_eq!(s.addr(a), 0x55d0_c0a0_1234);
        assert_eq!(s.addr(b), 0x55d0_c0a0_1248);
        assert_eq!(s.addr(OVERFLOW), 0);
        assert_eq!(s.stack_of(OVERFLOW), NO_STACK);
    }

    #[test]
    fn many_callers_sharing_the_recent_slots_keep_their_own_sites() {
        let mut s = Sites::new();
        // More callers than slots, many in the same slot: each keeps the index it first got,
        // whichever caller came just before.
        let callers: Vec<u64> = (0..200u64).map(|i| 0x55d0_c0a0_0000 + i * 0x40).collect();
        let first: Vec<u32> = callers
            .iter()
            .map(|&a| s.intern(a, NO_STACK, NO_OBJECT))
            .collect();
        for round in 0..3 {
            for (k, &a) in callers.iter().enumerate().rev() {
                let i = s.intern(a, NO_STACK, NO_OBJECT);
                assert_eq!(i, first[k], "caller {a:#x}, round {round}");
                assert_eq!(s.addr(i), a);
                // The same caller with a stack or an object is another site, in the same slot.
                assert_ne!(s.intern(a, 1, NO_OBJECT), i);
                assert_ne!(s.intern(a, NO_STACK, PENDING_OBJECT), i);
            }
        }
        let mut distinct = first.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), callers.len());
        assert!(
            callers
                .iter()
                .any(|&a| recent_slot(a) == recent_slot(callers[0]) && a != callers[0]),
            "no two callers shared a slot: the test proves nothing"
        );
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

        let plain = s.intern(0x1234, NO_STACK, NO_OBJECT);
        let via_x = s.intern(0x1234, x, NO_OBJECT);
        let via_y = s.intern(0x1234, y, NO_OBJECT);
        assert!(plain != via_x && via_x != via_y && plain != via_y);
        assert_eq!(s.intern(0x1234, x, NO_OBJECT), via_x);
        for i in [plain, via_x, via_y] {
            assert_eq!(s.addr(i), 0x1234);
        }
        assert_eq!(s.stack_of(via_y), y);
        assert_eq!(s.stack_of(plain), NO_STACK);
    }

    #[test]
    fn one_caller_mapping_two_objects_is_two_sites() {
        let mut s = Sites::new();
        assert_eq!(s.intern_object(b""), NO_OBJECT);
        let ring = s.intern_object(b"memfd:ring");
        let psm = s.intern_object(b"/dev/shm/psm_1");
        assert!(ring != NO_OBJECT && psm != NO_OBJECT && ring != psm);
        assert_eq!(s.intern_object(b"memfd:ring"), ring);
        let plain = s.intern(0x1234, NO_STACK, NO_OBJECT);
        let of_ring = s.intern(0x1234, NO_STACK, ring);
        let of_psm = s.intern(0x1234, NO_STACK, psm);
        assert!(plain != of_ring && of_ring != of_psm && plain != of_psm);
        assert_eq!(s.intern(0x1234, NO_STACK, ring), of_ring);
        assert_eq!(s.object_of(of_ring), b"memfd:ring");
        assert_eq!(s.object_of(of_psm), b"/dev/shm/psm_1");
        assert_eq!(s.object_of(plain), b"");
        assert_eq!(s.object_of(OVERFLOW), b"");
        assert_eq!(s.addr(of_psm), 0x1234);
    }

    #[test]
    fn a_pending_object_is_its_own_site_and_has_no_name_yet() {
        let mut s = Sites::new();
        let ring = s.intern_object(b"memfd:ring");
        let of_ring = s.intern(0x1234, NO_STACK, ring);
        assert!(!s.any_pending());
        let pending = s.intern(0x1234, NO_STACK, PENDING_OBJECT);
        let plain = s.intern(0x1234, NO_STACK, NO_OBJECT);
        assert!(pending != of_ring && pending != plain);
        assert_eq!(s.intern(0x1234, NO_STACK, PENDING_OBJECT), pending);
        assert!(s.any_pending());
        assert!(s.object_pending(pending));
        assert!(!s.object_pending(of_ring) && !s.object_pending(plain));
        assert!(!s.object_pending(OVERFLOW));
        assert_eq!(s.object_of(pending), b"");
        assert_eq!(s.addr(pending), 0x1234);
    }
}

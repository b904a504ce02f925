//! Call sites, deduplicated, so a region stores a 4-byte index instead of an 8-byte address.
//!
//! A `BTreeMap` rather than a `HashMap`: std's hasher seeds itself with `getrandom`, a syscall
//! this pure module must not make from inside a hook.

use std::collections::BTreeMap;

#[derive(Default)]
pub struct Sites {
    addrs: Vec<u64>,
    index: BTreeMap<u64, u32>,
}

/// The index given when the table is full; it reads back as site 0 ("unknown").
const OVERFLOW: u32 = u32::MAX;

impl Sites {
    pub const fn new() -> Sites {
        Sites {
            addrs: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    pub fn intern(&mut self, addr: u64) -> u32 {
        if let Some(&i) = self.index.get(&addr) {
            return i;
        }
        let Ok(i) = u32::try_from(self.addrs.len()) else {
            return OVERFLOW;
        };
        if i == OVERFLOW {
            return OVERFLOW;
        }
        self.addrs.push(addr);
        self.index.insert(addr, i);
        i
    }

    pub fn addr(&self, index: u32) -> u64 {
        self.addrs.get(index as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_dedups() {
        let mut s = Sites::new();
        let a = s.intern(0x55d0_c0a0_1234);
        let b = s.intern(0x55d0_c0a0_1248);
        assert_ne!(a, b);
        assert_eq!(s.intern(0x55d0_c0a0_1234), a);
        assert_eq!(s.addr(a), 0x55d0_c0a0_1234);
        assert_eq!(s.addr(b), 0x55d0_c0a0_1248);
        assert_eq!(s.addr(OVERFLOW), 0);
    }
}

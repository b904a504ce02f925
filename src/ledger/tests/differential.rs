//! Randomized differential test: thousands of random calls applied both to the ledger and to a
//! deliberately naive model that keeps one owner per page, compared page by page after each.
//!
//! The test plays the kernel: it picks the addresses a non-fixed call gets (free pages in the
//! model) and only issues calls the kernel would accept, plus failed calls, which must change
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::ledger::{Call, KernelView};

const BASE: u64 = 0x1000_0000;
const PAGES: u64 = 192;
const SITES: [u64; 4] = [0x100, 0x200, 0x300, 0x400];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    kind: RegionKind,
    prot: i32,
    shared: bool,
    site: u64,
    inherited: bool,
    attachment: Option<u64>,
    origin: Option<u64>,
    /// The kernel VMA an attachment page is part of (pages of one piece are contiguous):
    /// not part of the ledger's view, ignored in comparisons.
    piece: u64,
}

#[derive(Default)]
struct Model {
    pages: BTreeMap<u64, Owner>,
    /// Attachment id -> (first page, pages), for every attachment ever made.
    attachments: BTreeMap<u64, (u64, u64)>,
    pieces: u64,
    /// During one mremap: the piece each source piece became.
    moved: BTreeMap<u64, u64>,
}

impl Model {
    fn free(&self, p: u64, n: u64) -> bool {
        p + n <= PAGES && (p..p + n).all(|q| !self.pages.contains_key(&q))
    }

    /// A free run of `n` pages, searched from a random page, as the kernel would choose.
    fn find_free(&self, rng: &mut Rng, n: u64, avoid: (u64, u64)) -> Option<u64> {
        let first = rng.below(PAGES);
        (0..PAGES)
            .map(|i| (first + i) % PAGES)
            .find(|&p| self.free(p, n) && (p + n <= avoid.0 || p >= avoid.1))
    }

    fn clear(&mut self, p: u64, n: u64) {
        for q in p..p + n {
            self.pages.remove(&q);
        }
    }

    fn set(&mut self, p: u64, n: u64, owner: Owner) {
        for q in p..p + n {
            self.pages.insert(q, owner);
        }
    }

    fn new_piece(&mut self) -> u64 {
        self.pieces += 1;
        self.pieces
    }

    /// An attachment page copied `delta` pages away by mremap: a new piece, the same offset.
    fn relocate(&mut self, o: Owner, delta: u64) -> Owner {
        if o.attachment.is_none() {
            return o;
        }
        let piece = match self.moved.get(&o.piece) {
            Some(&p) => p,
            None => {
                let p = self.new_piece();
                self.moved.insert(o.piece, p);
                p
            }
        };
        Owner {
            origin: o.origin.map(|a| a.wrapping_add(delta.wrapping_mul(PAGE))),
            piece,
            ..o
        }
    }

    /// The kernel's shmdt walk (see `Ledger::on_shmdt`), over pieces as runs of pages.
    fn shmdt(&mut self, p: u64) -> bool {
        let origin = Some(addr(p));
        let first = self
            .pages
            .range(p..)
            .find(|(_, o)| o.attachment.is_some() && o.origin == origin)
            .map(|(&q, &o)| (q, o));
        let Some((q, first)) = first else {
            return false;
        };
        let id = first.attachment;
        let lim = p + self.attachments[&id.unwrap()].1;
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        for (&page, o) in self.pages.range(q..) {
            if o.attachment != id || o.origin != origin {
                continue;
            }
            match runs.last_mut() {
                Some((piece, _, end)) if *piece == o.piece && *end == page => *end += 1,
                _ => runs.push((o.piece, page, page + 1)),
            }
        }
        for (i, (_, start, end)) in runs.into_iter().enumerate() {
            if i == 0 || end <= lim {
                self.clear(start, end - start);
            }
        }
        true
    }

    fn live_attachments(&self) -> BTreeMap<u64, u64> {
        let mut live = BTreeMap::new();
        for o in self.pages.values() {
            if let Some(id) = o.attachment {
                *live.entry(id).or_insert(0) += PAGE;
            }
        }
        live
    }
}

fn addr(page: u64) -> u64 {
    BASE + page * PAGE
}

/// A length in bytes covering `n` pages, sometimes not a page multiple.
fn bytes(rng: &mut Rng, n: u64) -> u64 {
    if n > 0 && rng.chance(30) {
        (n - 1) * PAGE + rng.range(1, PAGE)
    } else {
        n * PAGE
    }
}

fn unknown(site: u64, shared: bool) -> Owner {
    Owner {
        kind: RegionKind::Unknown,
        prot: 0,
        shared,
        site,
        inherited: false,
        attachment: None,
        origin: None,
        piece: 0,
    }
}

fn compare(l: &Ledger, m: &Model, step: usize, what: &str) {
    let mut pages = BTreeMap::new();
    for r in l.regions() {
        let owner = Owner {
            kind: r.kind,
            prot: r.prot,
            shared: r.shared,
            site: r.site,
            inherited: r.inherited,
            attachment: r.attachment,
            origin: r.origin,
            piece: 0,
        };
        let mut a = r.start;
        while a < r.end {
            assert!(
                a >= BASE,
                "step {step} ({what}): region below the arena {r:?}"
            );
            pages.insert((a - BASE) / PAGE, owner);
            a += PAGE;
        }
    }
    let model: BTreeMap<u64, Owner> = m
        .pages
        .iter()
        .map(|(&k, &o)| (k, Owner { piece: 0, ..o }))
        .collect();
    if pages != model {
        let keys: BTreeSet<_> = pages.keys().chain(m.pages.keys()).collect();
        for k in keys {
            let (got, want) = (pages.get(k), model.get(k));
            assert_eq!(got, want, "step {step} ({what}): page {k}");
        }
    }
    let live: BTreeMap<u64, u64> = l.attachments().map(|a| (a.id, a.mapped)).collect();
    assert_eq!(
        live,
        m.live_attachments(),
        "step {step} ({what}): attachments"
    );
    check_invariants(l);
}

/// Hands the ledger the kernel's view (the model's) of what it was unsure of.
fn settle(l: &mut Ledger, m: &Model, site: u64) {
    let Some(unsure) = l.take_unsure() else {
        return;
    };
    let mapped = unsure.ranges.map(|(a, b)| {
        let mut spans: Vec<(u64, u64)> = Vec::new();
        for (&q, _) in m.pages.range(..PAGES) {
            let (s, e) = (addr(q).max(a), (addr(q) + PAGE).min(b));
            if s >= e {
                continue;
            }
            match spans.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => spans.push((s, e)),
            }
        }
        spans
    });
    let views = [0, 1].map(|i| KernelView {
        start: unsure.ranges[i].0,
        end: unsure.ranges[i].1,
        mapped: &mapped[i],
        vmas: &[],
    });
    let ev = call(Func::Mremap, &[], 0, site);
    l.resync(
        &unsure,
        &views,
        &[],
        &Call::of(&ev).expect("a completed call"),
    );
}

/// Runs `steps` random calls and counts how often each kind of call was compared.
fn run(seed: u64, steps: usize, seen: &mut BTreeMap<&'static str, usize>) {
    let mut rng = Rng(seed | 1);
    let mut l = Ledger::new();
    let mut m = Model::default();
    let mut shmid = 1i32;
    for step in 0..steps {
        let site = SITES[rng.below(4) as usize];
        let what = match rng.below(100) {
            0..=19 => {
                // mmap, the kernel choosing the address.
                let n = rng.range(1, 8);
                let Some(p) = m.find_free(&mut rng, n, (0, 0)) else {
                    continue;
                };
                let flags = if rng.chance(50) {
                    PRIV_ANON
                } else {
                    SHARED_ANON
                };
                assert_eq!(
                    l.mmap(addr(p), bytes(&mut rng, n), flags, site),
                    Outcome::Recorded
                );
                let owner = Owner {
                    kind: RegionKind::Anon,
                    prot: RW as i32,
                    shared: flags == SHARED_ANON,
                    site,
                    inherited: false,
                    attachment: None,
                    origin: None,
                    piece: 0,
                };
                m.set(p, n, owner);
                "mmap"
            }
            20..=29 => {
                // MAP_FIXED anywhere, or MAP_FIXED_NOREPLACE (which fails over anything).
                let n = rng.range(1, 8);
                let p = rng.below(PAGES - n);
                let noreplace = rng.chance(30);
                let flags = if noreplace {
                    libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE
                } else {
                    libc::MAP_SHARED | libc::MAP_FIXED
                } as u64;
                if !noreplace && rng.chance(10) {
                    // It fails after discarding its range (MAP_HUGETLB without huge pages).
                    let ev = call(Func::Mmap, &[addr(p), n * PAGE, RW, flags, 3, 0], -1, site);
                    assert_eq!(l.apply(&ev, &facts()), Outcome::NoEffect);
                    m.clear(p, n);
                    "failed MAP_FIXED"
                } else if noreplace && !m.free(p, n) {
                    let ev = call(Func::Mmap, &[addr(p), n * PAGE, RW, flags, 3, 0], -1, site);
                    assert_eq!(l.apply(&ev, &facts()), Outcome::NoEffect);
                    "failed MAP_FIXED_NOREPLACE"
                } else {
                    assert_eq!(l.mmap(addr(p), n * PAGE, flags, site), Outcome::Recorded);
                    let owner = Owner {
                        kind: RegionKind::File,
                        prot: RW as i32,
                        shared: true,
                        site,
                        inherited: false,
                        attachment: None,
                        origin: None,
                        piece: 0,
                    };
                    m.clear(p, n);
                    m.set(p, n, owner);
                    "mmap fixed"
                }
            }
            30..=47 => {
                let n = rng.range(1, 16);
                let p = rng.below(PAGES);
                let any = (p..(p + n).min(PAGES)).any(|q| m.pages.contains_key(&q));
                let len = bytes(&mut rng, n);
                // Half of them as the hook enters them while nothing is logged: the region
                // taken out before the call when it is exactly one.
                let got = if rng.chance(50) {
                    let ev = call(Func::Munmap, &[addr(p), len], 0, site);
                    match l.take_unmapped(addr(p), len, PAGE) {
                        Some(region) => {
                            *seen.entry("munmap taken").or_default() += 1;
                            l.apply_taken(region, &Call::of(&ev).unwrap(), &facts())
                        }
                        None => l.apply(&ev, &facts()),
                    }
                } else {
                    l.munmap(addr(p), len)
                };
                let want = if any {
                    Outcome::Recorded
                } else {
                    Outcome::UnmappedUnknown
                };
                assert_eq!(got, want, "step {step}");
                m.clear(p, n.min(PAGES - p));
                "munmap"
            }
            48..=69 => mremap(&mut rng, &mut l, &mut m, site),
            70..=81 => {
                let n = rng.range(1, 4);
                let remap = rng.chance(30);
                let p = if remap {
                    rng.below(PAGES - n)
                } else {
                    match m.find_free(&mut rng, n, (0, 0)) {
                        Some(p) => p,
                        None => continue,
                    }
                };
                let readonly = rng.chance(30);
                let mut flags = if remap { libc::SHM_REMAP } else { 0 };
                if readonly {
                    flags |= libc::SHM_RDONLY;
                }
                shmid += 1;
                assert_eq!(
                    l.shmat(shmid, addr(p), flags, bytes(&mut rng, n), site),
                    Outcome::Recorded
                );
                let id = l
                    .regions()
                    .find(|r| r.start == addr(p))
                    .unwrap()
                    .attachment
                    .unwrap();
                let prot = if readonly {
                    libc::PROT_READ
                } else {
                    libc::PROT_READ | libc::PROT_WRITE
                };
                let owner = Owner {
                    kind: RegionKind::Shm,
                    prot,
                    shared: true,
                    site,
                    inherited: false,
                    attachment: Some(id),
                    origin: Some(addr(p)),
                    piece: m.new_piece(),
                };
                m.clear(p, n);
                m.set(p, n, owner);
                m.attachments.insert(id, (p, n));
                "shmat"
            }
            82..=93 => {
                // shmdt of a live attachment's address, of a moved piece's origin, or of any
                // page.
                let live = m.live_attachments();
                let origins: Vec<u64> = m.pages.values().filter_map(|o| o.origin).collect();
                let p = if !live.is_empty() && rng.chance(60) {
                    let i = rng.below(live.len() as u64) as usize;
                    let id = *live.keys().nth(i).unwrap();
                    m.attachments[&id].0
                } else if !origins.is_empty() && rng.chance(50) {
                    let a = origins[rng.below(origins.len() as u64) as usize];
                    match a.checked_sub(BASE) {
                        Some(off) if off / PAGE < PAGES => off / PAGE,
                        _ => continue,
                    }
                } else {
                    rng.below(PAGES)
                };
                let got = l.shmdt(addr(p));
                let want = if m.shmdt(p) {
                    Outcome::Recorded
                } else {
                    Outcome::UnmappedUnknown
                };
                assert_eq!(got, want, "step {step}");
                "shmdt"
            }
            94..=95 => {
                l.after_fork_in_child();
                for o in m.pages.values_mut() {
                    o.inherited = true;
                }
                "fork"
            }
            _ => {
                // Failed calls of every kind change nothing.
                let func = Func::ALL[rng.below(Func::COUNT as u64) as usize];
                let a = addr(rng.below(PAGES));
                let ev = call(func, &[a, PAGE, 0, 0, 0, 0], func.failure_value(), site);
                // A failed munmap whose region was taken out before the call gives it back.
                let taken = (func == Func::Munmap)
                    .then(|| l.take_unmapped(a, PAGE, PAGE))
                    .flatten();
                let got = match taken {
                    Some(region) => {
                        *seen.entry("failed munmap taken").or_default() += 1;
                        l.apply_taken(region, &Call::of(&ev).unwrap(), &facts())
                    }
                    None => l.apply(&ev, &facts()),
                };
                assert_eq!(got, Outcome::NoEffect);
                "failed call"
            }
        };
        settle(&mut l, &m, site);
        compare(&l, &m, step, what);
        *seen.entry(what).or_default() += 1;
    }
}

/// Every mremap mode, on a source that is mapped in the model or, sometimes, partly mapped by
/// something the ledger cannot see.
fn mremap(rng: &mut Rng, l: &mut Ledger, m: &mut Model, site: u64) -> &'static str {
    let visible = rng.chance(80);
    let (p, k) = if visible {
        let Some((&p, _)) = m.pages.range(rng.below(PAGES)..).next() else {
            return "no mremap";
        };
        let run = (p..PAGES).take_while(|q| m.pages.contains_key(q)).count() as u64;
        (p, rng.range(1, run.min(8)))
    } else {
        let k = rng.range(1, 6);
        (rng.below(PAGES - k), k)
    };
    let src: Vec<Option<Owner>> = (p..p + k).map(|q| m.pages.get(&q).copied()).collect();
    let src_owner = |i: u64| src[i as usize].unwrap_or(unknown(site, false));
    m.moved.clear();
    let mode = rng.below(6);
    let maymove = libc::MREMAP_MAYMOVE;
    match mode {
        0 => {
            // Shrink in place.
            if k < 2 {
                return "no mremap";
            }
            let n = rng.range(1, k - 1);
            let flags = if rng.chance(50) { maymove } else { 0 };
            l.mremap(addr(p), bytes(rng, k), bytes(rng, n), flags, addr(p), site);
            m.clear(p + n, k - n);
            "mremap shrink"
        }
        1 => {
            // Grow in place, if the pages after are free.
            let n = k + rng.range(1, 4);
            if !m.free(p + k, n - k) {
                return "no mremap";
            }
            l.mremap(addr(p), k * PAGE, n * PAGE, 0, addr(p), site);
            let last = src_owner(k - 1);
            let last = if src[(k - 1) as usize].is_some() {
                last
            } else {
                unknown(site, false)
            };
            m.set(p + k, n - k, last);
            "mremap grow"
        }
        2 | 3 => {
            // Move: where the kernel likes (MAYMOVE) or where the caller says (FIXED).
            let fixed = mode == 3;
            let n = if fixed && rng.chance(50) {
                k
            } else {
                rng.range(1, 8)
            };
            let dest = if fixed {
                let d = rng.below(PAGES - n);
                if d < p + k && p < d + n {
                    return "no mremap";
                }
                d
            } else {
                match m.find_free(rng, n, (p, p + k)) {
                    Some(d) => d,
                    None => return "no mremap",
                }
            };
            let flags = if fixed {
                maymove | libc::MREMAP_FIXED
            } else {
                maymove
            };
            let old_len = bytes(rng, k);
            if fixed && rng.chance(15) {
                // It fails after unmapping its target (old_size 2^60).
                let args = [addr(p), 1 << 60, n * PAGE, flags as u64, addr(dest)];
                l.apply(&call(Func::Mremap, &args, -1, site), &facts());
                m.clear(dest, n);
                return "failed mremap fixed";
            }
            l.mremap(addr(p), old_len, n * PAGE, flags, addr(dest), site);
            if fixed && n == k && src.contains(&None) {
                // Moved VMA by VMA (Linux 6.17): the target facing a hole stays as it was.
                for i in 0..k {
                    if let Some(o) = src[i as usize] {
                        let o = m.relocate(o, dest.wrapping_sub(p));
                        m.pages.insert(dest + i, o);
                    }
                }
                m.clear(p, k);
                return "mremap fixed across a hole";
            }
            m.clear(dest, n);
            for i in 0..k.min(n) {
                let o = m.relocate(src_owner(i), dest.wrapping_sub(p));
                m.pages.insert(dest + i, o);
            }
            m.clear(p, k);
            if n > k {
                let last = m.pages[&(dest + k - 1)];
                m.set(dest + k, n - k, last);
            }
            if fixed {
                "mremap fixed"
            } else {
                "mremap maymove"
            }
        }
        4 => {
            // MREMAP_DONTUNMAP: same size, the source stays.
            let Some(dest) = m.find_free(rng, k, (p, p + k)) else {
                return "no mremap";
            };
            let flags = maymove | libc::MREMAP_DONTUNMAP;
            l.mremap(addr(p), k * PAGE, k * PAGE, flags, addr(dest), site);
            for i in 0..k {
                let o = m.relocate(src_owner(i), dest.wrapping_sub(p));
                m.pages.insert(dest + i, o);
            }
            "mremap dontunmap"
        }
        _ => {
            // old_size == 0 on a shared mapping: the same pages mapped again.
            let shared = src[0].is_none_or(|o| o.shared);
            if !shared {
                return "no mremap";
            }
            let n = rng.range(1, 4);
            let Some(dest) = m.find_free(rng, n, (p, p + 1)) else {
                return "no mremap";
            };
            l.mremap(addr(p), 0, n * PAGE, maymove, addr(dest), site);
            let owner = match src[0] {
                Some(o) if o.kind == RegionKind::Shm => Owner {
                    site,
                    ..m.relocate(o, dest.wrapping_sub(p))
                },
                Some(o) => Owner {
                    site,
                    inherited: false,
                    ..o
                },
                None => unknown(site, true),
            };
            m.set(dest, n, owner);
            "mremap dup"
        }
    }
}

#[test]
fn ledger_matches_a_page_model_over_random_calls() {
    let mut seen = BTreeMap::new();
    for seed in 1..=40u64 {
        run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 2500, &mut seen);
    }
    println!("{seen:?}");
    // Every kind of call was exercised, so a pass means something.
    for what in [
        "mmap",
        "mmap fixed",
        "failed MAP_FIXED_NOREPLACE",
        "failed MAP_FIXED",
        "munmap",
        "mremap shrink",
        "mremap grow",
        "mremap maymove",
        "mremap fixed",
        "failed mremap fixed",
        "mremap dontunmap",
        "mremap dup",
        "shmat",
        "shmdt",
        "fork",
        "failed call",
    ] {
        assert!(
            seen.get(what).copied().unwrap_or(0) >= 500,
            "{what}: {seen:?}"
        );
    }
    assert!(seen.get("munmap taken").copied().unwrap_or(0) >= 100);
    assert!(seen.get("failed munmap taken").copied().unwrap_or(0) >= 10);
    // Rarer by nature: a same-size fixed move of a source with a gap.
    assert!(seen.get("mremap fixed across a hole").copied().unwrap_or(0) >= 100);
}

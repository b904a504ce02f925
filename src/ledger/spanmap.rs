//! An ordered map from `u64` keys to small `Copy` values, built for the interval map of live
//! regions (`regions.rs`): a B+tree with wide leaves.
//!
//! Why not `std::collections::BTreeMap`: its nodes hold 11 entries, so a million regions make a
//! tree seven levels deep, and a random `munmap` misses the cache at nearly every level. Here a
//! leaf holds 32 entries (keys and values in separate arrays, so a search reads keys only) and
//! an inner node 48 children with keys only, so a million entries make four levels; a node is
//! searched without branches on the keys (unused key slots hold `u64::MAX`). Leaves split
//! unevenly when a key lands at either end of a full one, so the common orders (the kernel
//! hands out addresses top down) leave them full: a node is 832 bytes, one size class of the
//! shim's private heap, which puts it on a cache-line boundary. A node's first line holds its
//! tag, its length and the last key of each block of 8 (`sum`), so a cold search reads that
//! line, one line of keys and the line with the value or child: at most three misses per
//! level, where the summary-less layout at a 16-byte offset could touch five lines of keys.
//!
//! Invariants: no node but the root is empty; in an inner node, `seps[j]` is greater than every
//! key under `kids[j]` and at most every key under `kids[j + 1]` (not necessarily the least,
//! so a removal never walks back up to fix one). A node that drops below a quarter full is
//! merged with a neighbour when the two fit in one.

use std::array;

/// Entries per leaf.
const LEAF: usize = 32;
/// Children per inner node: as many as fill the leaf's size, so a million entries make four
/// levels, not five.
const FAN: usize = 48;
/// Keys per block of a search; a block is one cache line when the keys start on one.
const BLOCK: usize = 8;
/// Room for the last key of every block but the last, in the node's first cache line.
const SUMS: usize = 6;

/// `repr(C)` for the layout the cache sees: the node's tag (8 bytes), `len` and `sum` fill
/// its first 64 bytes, so the keys start on a line of their own (the heap aligns the node's
/// size class to 64) and a search reads the first line, then one line of keys.
#[repr(C)]
struct Leaf<V> {
    len: usize,
    /// `sum[b]` is `keys[BLOCK * b + BLOCK - 1]`: which block to read, from the first line.
    sum: [u64; SUMS],
    keys: [u64; LEAF],
    vals: [V; LEAF],
}

#[repr(C)]
struct Inner<V> {
    /// Children in use; `seps[..len - 1]` separate them, the rest are `u64::MAX`.
    len: usize,
    /// As in `Leaf`, for `seps`.
    sum: [u64; SUMS],
    seps: [u64; FAN],
    kids: [Option<Box<Node<V>>>; FAN],
}

/// Always behind a `Box`, one heap size class for both kinds: boxing the leaf inside would
/// cost one more pointer to follow per search. `repr(u64)`: the tag is the first 8 bytes and
/// each kind follows it, the layout `Leaf` and `Inner` are cut for.
#[allow(clippy::large_enum_variant)]
#[repr(u64)]
enum Node<V> {
    Leaf(Leaf<V>),
    Inner(Inner<V>),
}

/// How many of `keys` are `<= x`, for sorted keys padded with `u64::MAX`: a scan of the
/// blocks of 8 by their last key (copied to `sum`, in the node's first cache line), then of
/// the one block, so at most 13 comparisons and two
/// branches that can go either way. Branches, not conditional moves: the same key comes
/// again and again (an `mmap`+`munmap` cycle), and predicted branches let the next search
/// start before this one ends, where a branchless binary search is a chain of dependent loads.
#[inline(always)]
fn rank<const N: usize>(sum: &[u64; SUMS], keys: &[u64; N], x: u64) -> usize {
    const { assert!(N.is_multiple_of(BLOCK) && N / BLOCK - 1 <= SUMS) };
    let mut base = 0;
    while base + BLOCK < N && sum[base / BLOCK] <= x {
        base += BLOCK;
    }
    let end = (base + BLOCK).min(N);
    let mut i = base;
    while i < end && keys[i] <= x {
        i += 1;
    }
    i
}

/// Asks for every line of `node` but its first at once, before the search reads the first.
/// A cold search reads three lines per node, each address known only once the line before it
/// is in (summary, then keys, then the value or child): with the lines already on their way
/// they arrive together rather than one after another (a third less time in this search with
/// 100k live mappings, where the first line and the TLB still cost most). These are the
/// searches a `munmap` makes first (`le`, the audit's look at what it releases, and
/// `leaf_mut`, the descent that takes out exactly one region before the call): with many live
/// mappings their nodes below the top two levels were last touched long ago, and the kernel's
/// own work in between has evicted them.
#[inline(always)]
fn prefetch<V>(node: &Node<V>) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let at = (node as *const Node<V>).cast::<i8>();
        let mut off = 64;
        while off < size_of::<Node<V>>() {
            // SAFETY: `at + off` lies inside the node (off < its size); a prefetch reads
            // nothing into the program and cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at.add(off)) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = node;
}

/// Refreshes `sum` after `keys` changed: every block, a few unrolled moves, cheaper than
/// finding the blocks that changed.
#[inline(always)]
fn summarize<const N: usize>(sum: &mut [u64; SUMS], keys: &[u64; N]) {
    for b in 0..N / BLOCK - 1 {
        sum[b] = keys[BLOCK * b + BLOCK - 1];
    }
}

impl<V: Copy + Default> Leaf<V> {
    fn new() -> Leaf<V> {
        Leaf {
            len: 0,
            sum: [u64::MAX; SUMS],
            keys: [u64::MAX; LEAF],
            vals: [V::default(); LEAF],
        }
    }

    /// Entries with a key `<= x` (padding counts when `x` is `u64::MAX`: clamped).
    fn rank(&self, x: u64) -> usize {
        rank(&self.sum, &self.keys, x).min(self.len)
    }

    fn insert_at(&mut self, at: usize, key: u64, val: V) {
        let len = self.len;
        self.keys.copy_within(at..len, at + 1);
        self.vals.copy_within(at..len, at + 1);
        self.keys[at] = key;
        self.vals[at] = val;
        self.len += 1;
        self.resum();
    }

    fn remove_at(&mut self, at: usize) -> V {
        let len = self.len;
        let val = self.vals[at];
        self.keys.copy_within(at + 1..len, at);
        self.vals.copy_within(at + 1..len, at);
        self.keys[len - 1] = u64::MAX;
        self.len -= 1;
        self.resum();
        val
    }

    fn append(&mut self, right: &Leaf<V>) {
        let (len, n) = (self.len, right.len);
        self.keys[len..len + n].copy_from_slice(&right.keys[..n]);
        self.vals[len..len + n].copy_from_slice(&right.vals[..n]);
        self.len += n;
        self.resum();
    }

    fn resum(&mut self) {
        summarize(&mut self.sum, &self.keys);
    }
}

impl<V> Inner<V> {
    fn new() -> Inner<V> {
        Inner {
            len: 0,
            sum: [u64::MAX; SUMS],
            seps: [u64::MAX; FAN],
            kids: array::from_fn(|_| None),
        }
    }

    /// The child whose keys `x` would lie among.
    fn child(&self, x: u64) -> usize {
        rank(&self.sum, &self.seps, x).min(self.len - 1)
    }

    fn kid(&self, i: usize) -> &Node<V> {
        self.kids[i].as_deref().expect("a child in use")
    }

    fn kid_mut(&mut self, i: usize) -> &mut Node<V> {
        self.kids[i].as_deref_mut().expect("a child in use")
    }

    /// Puts `kid` right after child `at`, `sep` between them.
    fn insert_after(&mut self, at: usize, sep: u64, kid: Box<Node<V>>) {
        let len = self.len;
        self.seps.copy_within(at..len - 1, at + 1);
        self.seps[at] = sep;
        self.kids[at + 1..=len].rotate_right(1);
        self.kids[at + 1] = Some(kid);
        self.len += 1;
        self.resum();
    }

    fn resum(&mut self) {
        summarize(&mut self.sum, &self.seps);
    }

    /// Takes child `at` out with the separator on its left (on its right for the first).
    fn remove_kid(&mut self, at: usize) -> Box<Node<V>> {
        let len = self.len;
        if len >= 2 {
            let sep = at.saturating_sub(1);
            self.seps.copy_within(sep + 1..len - 1, sep);
            self.seps[len - 2] = u64::MAX;
            self.resum();
        }
        let kid = self.kids[at].take().expect("a child in use");
        self.kids[at..len].rotate_left(1);
        self.len -= 1;
        kid
    }

    /// Appends `right`'s children, `sep` separating the two.
    fn append(&mut self, sep: u64, right: &mut Inner<V>) {
        let (len, n) = (self.len, right.len);
        self.seps[len - 1] = sep;
        self.seps[len..len + n - 1].copy_from_slice(&right.seps[..n - 1]);
        for (dst, src) in self.kids[len..len + n].iter_mut().zip(&mut right.kids) {
            *dst = src.take();
        }
        self.len += n;
        right.len = 0;
        self.resum();
    }
}

impl<V> Node<V> {
    fn len(&self) -> usize {
        match self {
            Node::Leaf(l) => l.len,
            Node::Inner(n) => n.len,
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Node::Leaf(_) => LEAF,
            Node::Inner(_) => FAN,
        }
    }
}

/// How many of the `cap + 1` entries of a full node that gets one more at `at` stay on the
/// left. At either end (a run of ascending or descending keys), the side that keeps growing
/// gets a quarter of the node plus the new entry and the other side stays three quarters
/// full: fuller than halves, and the new entry's removal leaves its node a quarter full, so
/// an insertion and removal at the edge of a full node (an `mmap`+`munmap` cycle next to
/// the lowest mapping) cannot split and merge it on every call.
fn split_point(at: usize, cap: usize) -> usize {
    if at == 0 {
        cap / 4 + 1
    } else if at >= cap {
        cap - cap / 4
    } else {
        cap.div_ceil(2)
    }
}

pub struct SpanMap<V> {
    root: Option<Box<Node<V>>>,
    len: usize,
}

impl<V: Copy + Default> Default for SpanMap<V> {
    fn default() -> Self {
        SpanMap::new()
    }
}

impl<V: Copy + Default> SpanMap<V> {
    pub const fn new() -> SpanMap<V> {
        SpanMap { root: None, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<V> {
        let mut node = self.root.as_deref()?;
        loop {
            match node {
                Node::Inner(n) => node = n.kid(n.child(key)),
                Node::Leaf(l) => {
                    let r = l.rank(key);
                    return (r > 0 && l.keys[r - 1] == key).then(|| l.vals[r - 1]);
                }
            }
        }
    }

    #[inline]
    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let mut node = self.root.as_deref_mut()?;
        loop {
            match node {
                Node::Inner(n) => {
                    let i = n.child(key);
                    node = n.kid_mut(i);
                }
                Node::Leaf(l) => {
                    let r = l.rank(key);
                    return (r > 0 && l.keys[r - 1] == key).then(|| &mut l.vals[r - 1]);
                }
            }
        }
    }

    /// The entry with the greatest key `<= x`.
    #[inline]
    pub fn le(&self, x: u64) -> Option<(u64, V)> {
        let mut node = self.root.as_deref()?;
        // The nearest subtree left of the path: where the answer is when the leaf has none.
        let mut left = None;
        loop {
            match node {
                Node::Inner(n) => {
                    let i = n.child(x);
                    if i > 0 {
                        left = Some(n.kid(i - 1));
                    }
                    node = n.kid(i);
                    prefetch(node);
                }
                Node::Leaf(l) => {
                    let r = l.rank(x);
                    if r > 0 {
                        return Some((l.keys[r - 1], l.vals[r - 1]));
                    }
                    break;
                }
            }
        }
        let mut node = left?;
        loop {
            match node {
                Node::Inner(n) => node = n.kid(n.len - 1),
                Node::Leaf(l) => return Some((l.keys[l.len - 1], l.vals[l.len - 1])),
            }
        }
    }

    /// The entry with the greatest key `< x`.
    #[inline]
    pub fn lt(&self, x: u64) -> Option<(u64, V)> {
        self.le(x.checked_sub(1)?)
    }

    /// The leaf and position of the entry with the least key `>= x`.
    #[inline]
    fn ge_pos(&self, x: u64) -> Option<(&Leaf<V>, usize)> {
        let mut node = self.root.as_deref()?;
        let mut right = None;
        loop {
            match node {
                Node::Inner(n) => {
                    let i = n.child(x);
                    if i + 1 < n.len {
                        right = Some(n.kid(i + 1));
                    }
                    node = n.kid(i);
                }
                Node::Leaf(l) => {
                    let r = l.rank(x);
                    if r > 0 && l.keys[r - 1] == x {
                        return Some((l, r - 1));
                    }
                    if r < l.len {
                        return Some((l, r));
                    }
                    break;
                }
            }
        }
        let mut node = right?;
        loop {
            match node {
                Node::Inner(n) => node = n.kid(0),
                Node::Leaf(l) => return Some((l, 0)),
            }
        }
    }

    /// The entry with the least key `>= x`.
    #[inline]
    pub fn ge(&self, x: u64) -> Option<(u64, V)> {
        self.ge_pos(x).map(|(l, i)| (l.keys[i], l.vals[i]))
    }

    /// Every entry in key order; one descent per leaf.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter {
            map: self,
            at: self.ge_pos(0),
        }
    }

    /// Every value in place, in key order: no allocation.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut V)) {
        fn walk<V>(node: &mut Node<V>, f: &mut impl FnMut(&mut V)) {
            match node {
                Node::Leaf(l) => l.vals[..l.len].iter_mut().for_each(f),
                Node::Inner(n) => {
                    for kid in n.kids[..n.len].iter_mut().flatten() {
                        walk(kid, f);
                    }
                }
            }
        }
        if let Some(root) = self.root.as_deref_mut() {
            walk(root, &mut f);
        }
    }

    /// The leaf where `key` is or would go.
    #[inline]
    fn leaf_mut(&mut self, key: u64) -> Option<&mut Leaf<V>> {
        let mut node = self.root.as_deref_mut()?;
        loop {
            match node {
                Node::Inner(n) => {
                    let i = n.child(key);
                    node = n.kid_mut(i);
                    prefetch(node);
                }
                Node::Leaf(l) => return Some(l),
            }
        }
    }

    /// Inserts `key`, absent, when its neighbours as the leaf where it goes shows them let it:
    /// `fits(before, after)` gets the value of the greatest key below `key` (`None`: there is
    /// none) and a bound the least key above it is at least (`None`: there is none). Returns
    /// false and changes nothing when `key` is present, when the entry before it is in another
    /// leaf, when the leaf is full or when `fits` says no: the caller then takes the long way.
    /// One descent, where a look at the neighbours and an insertion make two.
    #[inline]
    pub fn insert_between(
        &mut self,
        key: u64,
        val: V,
        fits: impl FnOnce(Option<&V>, Option<u64>) -> bool,
    ) -> bool {
        let Some(mut node) = self.root.as_deref_mut() else {
            return false;
        };
        // Whether the path went down the left edge (no leaf before this one), and the nearest
        // separator on its right (every key in the leaves after this one is at least that).
        let (mut leftmost, mut bound) = (true, None);
        let inserted = loop {
            match node {
                Node::Inner(n) => {
                    let i = n.child(key);
                    leftmost &= i == 0;
                    if i + 1 < n.len {
                        bound = Some(n.seps[i]);
                    }
                    node = n.kid_mut(i);
                }
                Node::Leaf(l) => {
                    let r = l.rank(key);
                    if l.len == LEAF || (r > 0 && l.keys[r - 1] == key) {
                        break false;
                    }
                    let before = match r {
                        0 if leftmost => None,
                        0 => break false,
                        r => Some(&l.vals[r - 1]),
                    };
                    let after = if r < l.len { Some(l.keys[r]) } else { bound };
                    if !fits(before, after) {
                        break false;
                    }
                    l.insert_at(r, key, val);
                    break true;
                }
            }
        };
        if inserted {
            self.len += 1;
        }
        inserted
    }

    /// Inserts or replaces; returns the value replaced.
    ///
    /// Nearly always the leaf has room: one descent and no recursion. The recursive path
    /// returns its result through memory, which costs a store-forwarding stall per level.
    pub fn insert(&mut self, key: u64, val: V) -> Option<V> {
        if let Some(leaf) = self.leaf_mut(key) {
            let r = leaf.rank(key);
            if r > 0 && leaf.keys[r - 1] == key {
                return Some(std::mem::replace(&mut leaf.vals[r - 1], val));
            }
            if leaf.len < LEAF {
                leaf.insert_at(r, key, val);
                self.len += 1;
                return None;
            }
        }
        self.insert_slow(key, val)
    }

    #[cold]
    fn insert_slow(&mut self, key: u64, val: V) -> Option<V> {
        let Some(root) = self.root.as_deref_mut() else {
            self.root = Some(first_leaf(key, val));
            self.len = 1;
            return None;
        };
        let (old, split) = insert_into(root, key, val);
        if let Some((sep, right)) = split {
            self.root = Some(new_root(self.root.take(), sep, right));
        }
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes and returns the value at `key`. Nearly always the leaf stays over a quarter
    /// full: one descent and no recursion, as for `insert`.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<V> {
        self.remove_if(key, |_| true)
    }

    /// [`SpanMap::remove`] only when `wanted` says yes to the value at `key` (else nothing
    /// changes): a look and a removal in one descent.
    pub fn remove_if(&mut self, key: u64, wanted: impl FnOnce(&V) -> bool) -> Option<V> {
        // A root leaf is never merged, only dropped when it empties.
        let least = match self.root.as_deref() {
            Some(Node::Leaf(_)) => 1,
            _ => LEAF / 4,
        };
        let leaf = self.leaf_mut(key)?;
        let r = leaf.rank(key);
        if r == 0 || leaf.keys[r - 1] != key || !wanted(&leaf.vals[r - 1]) {
            return None;
        }
        if leaf.len > least {
            let val = leaf.remove_at(r - 1);
            self.len -= 1;
            return Some(val);
        }
        self.remove_slow(key)
    }

    #[cold]
    fn remove_slow(&mut self, key: u64) -> Option<V> {
        let root = self.root.as_deref_mut()?;
        let val = remove_from(root, key)?;
        self.len -= 1;
        // An empty root goes; an inner root with one child hands over to it.
        loop {
            match self.root.as_deref_mut() {
                Some(node) if node.len() == 0 => self.root = None,
                Some(Node::Inner(n)) if n.len == 1 => self.root = n.kids[0].take(),
                _ => break,
            }
        }
        Some(val)
    }
}

/// Returns the value replaced, and the separator and new right sibling when `node` split.
#[allow(clippy::type_complexity)]
fn insert_into<V: Copy + Default>(
    node: &mut Node<V>,
    key: u64,
    val: V,
) -> (Option<V>, Option<(u64, Box<Node<V>>)>) {
    match node {
        Node::Leaf(l) => {
            let r = l.rank(key);
            if r > 0 && l.keys[r - 1] == key {
                return (Some(std::mem::replace(&mut l.vals[r - 1], val)), None);
            }
            if l.len < LEAF {
                l.insert_at(r, key, val);
                return (None, None);
            }
            (None, Some(split_leaf(l, r, key, val)))
        }
        Node::Inner(n) => {
            let i = n.child(key);
            let (old, split) = insert_into(n.kid_mut(i), key, val);
            let Some((sep, kid)) = split else {
                return (old, None);
            };
            if n.len < FAN {
                n.insert_after(i, sep, kid);
                return (old, None);
            }
            (old, Some(split_inner(n, i, sep, kid)))
        }
    }
}

/// A full leaf with the entry for position `r`, cut in two: the separator and the right half.
/// Out of line, so that the arrays it builds are not in every frame of the recursion (a hook
/// can run on a small stack).
#[inline(never)]
fn split_leaf<V: Copy + Default>(
    l: &mut Leaf<V>,
    r: usize,
    key: u64,
    val: V,
) -> (u64, Box<Node<V>>) {
    // The full leaf with the new entry at `r`, then cut in two.
    let mut keys = [0u64; LEAF + 1];
    let mut vals = [V::default(); LEAF + 1];
    keys[..r].copy_from_slice(&l.keys[..r]);
    vals[..r].copy_from_slice(&l.vals[..r]);
    keys[r] = key;
    vals[r] = val;
    keys[r + 1..].copy_from_slice(&l.keys[r..]);
    vals[r + 1..].copy_from_slice(&l.vals[r..]);
    let at = split_point(r, LEAF);
    let mut right = Leaf::new();
    right.keys[..LEAF + 1 - at].copy_from_slice(&keys[at..]);
    right.vals[..LEAF + 1 - at].copy_from_slice(&vals[at..]);
    right.len = LEAF + 1 - at;
    right.resum();
    l.keys[..at].copy_from_slice(&keys[..at]);
    l.vals[..at].copy_from_slice(&vals[..at]);
    l.keys[at..].fill(u64::MAX);
    l.len = at;
    l.resum();
    (right.keys[0], Box::new(Node::Leaf(right)))
}

/// A full inner node with `kid` after child `i`, cut in two: the separator that goes up and
/// the right half. Out of line, as `split_leaf`.
#[inline(never)]
fn split_inner<V: Copy + Default>(
    n: &mut Inner<V>,
    i: usize,
    sep: u64,
    kid: Box<Node<V>>,
) -> (u64, Box<Node<V>>) {
    // The full node with the new child after child `i`, then cut in two.
    let mut seps = [0u64; FAN];
    seps[..i].copy_from_slice(&n.seps[..i]);
    seps[i] = sep;
    seps[i + 1..].copy_from_slice(&n.seps[i..FAN - 1]);
    let mut kid = Some(kid);
    let mut kids: [Option<Box<Node<V>>>; FAN + 1] = array::from_fn(|j| match j {
        j if j <= i => n.kids[j].take(),
        j if j == i + 1 => kid.take(),
        j => n.kids[j - 1].take(),
    });
    // The new child sits at `i + 1`: at an end of the node when the child that split
    // is the first (a descending run) or the last (an ascending one).
    let at = match i {
        0 => split_point(0, FAN),
        i if i == FAN - 1 => split_point(FAN, FAN),
        _ => split_point(i + 1, FAN),
    };
    let mut right = Inner::new();
    right.seps[..FAN - at].copy_from_slice(&seps[at..]);
    for (dst, src) in right.kids.iter_mut().zip(&mut kids[at..]) {
        *dst = src.take();
    }
    right.len = FAN + 1 - at;
    right.resum();
    let up = seps[at - 1];
    n.seps = [u64::MAX; FAN];
    n.seps[..at - 1].copy_from_slice(&seps[..at - 1]);
    for (dst, src) in n.kids.iter_mut().zip(&mut kids[..at]) {
        *dst = src.take();
    }
    n.len = at;
    n.resum();
    (up, Box::new(Node::Inner(right)))
}

/// Nodes are built in place on the heap as far as the compiler lets them; these two are out
/// of line so that a temporary node is never in a frame of the insertion path.
#[inline(never)]
fn first_leaf<V: Copy + Default>(key: u64, val: V) -> Box<Node<V>> {
    let mut leaf = Leaf::new();
    leaf.insert_at(0, key, val);
    Box::new(Node::Leaf(leaf))
}

#[inline(never)]
fn new_root<V: Copy + Default>(
    left: Option<Box<Node<V>>>,
    sep: u64,
    right: Box<Node<V>>,
) -> Box<Node<V>> {
    let mut top = Inner::new();
    top.kids[0] = left;
    top.len = 1;
    top.insert_after(0, sep, right);
    Box::new(Node::Inner(top))
}

fn remove_from<V: Copy + Default>(node: &mut Node<V>, key: u64) -> Option<V> {
    match node {
        Node::Leaf(l) => {
            let r = l.rank(key);
            (r > 0 && l.keys[r - 1] == key).then(|| l.remove_at(r - 1))
        }
        Node::Inner(n) => {
            let i = n.child(key);
            let val = remove_from(n.kid_mut(i), key)?;
            rebalance(n, i);
            Some(val)
        }
    }
}

/// After a removal under child `i`: an empty child goes, one under a quarter full merges with
/// a neighbour when both fit in one node.
fn rebalance<V: Copy + Default>(n: &mut Inner<V>, i: usize) {
    let kid = n.kid(i);
    let (len, cap) = (kid.len(), kid.capacity());
    if len == 0 {
        n.remove_kid(i);
        return;
    }
    if len >= cap / 4 || n.len < 2 {
        return;
    }
    let j = if i + 1 < n.len && (i == 0 || n.kid(i + 1).len() <= n.kid(i - 1).len()) {
        i + 1
    } else {
        i - 1
    };
    let (l, r) = (i.min(j), i.max(j));
    if n.kid(l).len() + n.kid(r).len() > cap {
        return;
    }
    let sep = n.seps[l];
    let mut right = n.remove_kid(r);
    match (n.kid_mut(l), &mut *right) {
        (Node::Leaf(a), Node::Leaf(b)) => a.append(b),
        (Node::Inner(a), Node::Inner(b)) => a.append(sep, b),
        _ => unreachable!("siblings are at the same depth"),
    }
}

pub struct Iter<'a, V> {
    map: &'a SpanMap<V>,
    at: Option<(&'a Leaf<V>, usize)>,
}

impl<V: Copy + Default> Iterator for Iter<'_, V> {
    type Item = (u64, V);

    fn next(&mut self) -> Option<(u64, V)> {
        let (leaf, i) = self.at?;
        let item = (leaf.keys[i], leaf.vals[i]);
        self.at = if i + 1 < leaf.len {
            Some((leaf, i + 1))
        } else {
            item.0.checked_add(1).and_then(|next| self.map.ge_pos(next))
        };
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// xorshift64: deterministic and independent of any crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn sums_agree<const N: usize>(sum: &[u64; SUMS], keys: &[u64; N]) {
        for b in 0..N / BLOCK - 1 {
            assert_eq!(sum[b], keys[BLOCK * b + BLOCK - 1], "a stale block summary");
        }
    }

    #[test]
    fn keys_start_a_cache_line_and_both_kinds_fill_one_size_class() {
        use std::mem::{offset_of, size_of};
        // The tag, `len` and `sum` are the first line; the heap aligns this size to 64.
        assert_eq!(8 + offset_of!(Leaf<[u64; 2]>, keys), 64);
        assert_eq!(8 + offset_of!(Inner<[u64; 2]>, seps), 64);
        assert_eq!(size_of::<Node<[u64; 2]>>(), 832);
        assert_eq!(size_of::<Leaf<[u64; 2]>>(), size_of::<Inner<[u64; 2]>>());
    }

    /// Checks every invariant of the tree and returns its depth and node count.
    fn check(map: &SpanMap<u64>) -> (usize, usize) {
        fn walk(
            node: &Node<u64>,
            lo: u64,
            hi: Option<u64>,
            root: bool,
            keys: &mut Vec<u64>,
        ) -> (usize, usize) {
            assert!(root || node.len() > 0, "an empty node below the root");
            match node {
                Node::Leaf(l) => {
                    assert!(l.len <= LEAF);
                    assert!(l.keys[l.len..].iter().all(|&k| k == u64::MAX), "padding");
                    sums_agree(&l.sum, &l.keys);
                    for &k in &l.keys[..l.len] {
                        assert!(k >= lo && hi.is_none_or(|h| k < h), "key out of its bounds");
                        keys.push(k);
                    }
                    (1, 1)
                }
                Node::Inner(n) => {
                    assert!(n.len <= FAN);
                    assert!(n.seps[n.len.max(1) - 1..].iter().all(|&k| k == u64::MAX));
                    assert!(n.kids[n.len..].iter().all(Option::is_none));
                    sums_agree(&n.sum, &n.seps);
                    let mut depth = None;
                    let mut nodes = 1;
                    for i in 0..n.len {
                        let klo = if i == 0 { lo } else { n.seps[i - 1] };
                        let khi = if i + 1 == n.len { hi } else { Some(n.seps[i]) };
                        let (d, c) = walk(n.kid(i), klo, khi, false, keys);
                        assert!(depth.is_none_or(|x| x == d), "leaves at different depths");
                        depth = Some(d);
                        nodes += c;
                    }
                    (depth.unwrap_or(0) + 1, nodes)
                }
            }
        }
        let mut keys = Vec::new();
        let shape = map
            .root
            .as_deref()
            .map_or((0, 0), |r| walk(r, 0, None, true, &mut keys));
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys out of order");
        assert_eq!(keys.len(), map.len());
        if let Some(Node::Inner(n)) = map.root.as_deref() {
            assert!(n.len >= 2, "an inner root with one child");
        }
        shape
    }

    fn same(map: &SpanMap<u64>, model: &BTreeMap<u64, u64>) {
        assert_eq!(map.len(), model.len());
        assert!(map.iter().eq(model.iter().map(|(&k, &v)| (k, v))));
    }

    /// Every query answers as the standard map does, at keys present, absent and at the ends.
    fn queries_agree(map: &SpanMap<u64>, model: &BTreeMap<u64, u64>, rng: &mut Rng, span: u64) {
        for x in (0..64)
            .map(|_| rng.below(span + 2))
            .chain([0, u64::MAX, u64::MAX - 1])
        {
            let le = model.range(..=x).next_back().map(|(&k, &v)| (k, v));
            let ge = model.range(x..).next().map(|(&k, &v)| (k, v));
            let lt = model.range(..x).next_back().map(|(&k, &v)| (k, v));
            assert_eq!(map.le(x), le, "le {x}");
            assert_eq!(map.ge(x), ge, "ge {x}");
            assert_eq!(map.lt(x), lt, "lt {x}");
            assert_eq!(map.get(x), model.get(&x).copied(), "get {x}");
        }
    }

    #[test]
    fn random_operations_match_a_reference_map() {
        for (seed, span, rounds) in [(1, 100, 20_000), (7, 5_000, 60_000), (99, 1 << 40, 60_000)] {
            let mut rng = Rng(seed);
            let mut map = SpanMap::new();
            let mut model = BTreeMap::new();
            for round in 0..rounds {
                // Phases of growth and shrinkage, so nodes split and merge over and over.
                let growing = (round / 5_000) % 2 == 0;
                let k = rng.below(span);
                match rng.below(10) {
                    0..=5 if growing => assert_eq!(map.insert(k, round), model.insert(k, round)),
                    0..=1 => assert_eq!(map.insert(k, round), model.insert(k, round)),
                    6..=7 => {
                        // Remove a key that is there, when there is one near.
                        let at = model.range(k..).next().map(|(&k, _)| k).unwrap_or(k);
                        assert_eq!(map.remove(at), model.remove(&at));
                    }
                    _ => assert_eq!(map.remove(k), model.remove(&k)),
                }
                if round % 997 == 0 {
                    check(&map);
                    queries_agree(&map, &model, &mut rng, span);
                }
                if let Some(v) = map.get_mut(k) {
                    *v ^= 1;
                    *model.get_mut(&k).expect("in both") ^= 1;
                }
            }
            check(&map);
            same(&map, &model);
            queries_agree(&map, &model, &mut rng, span);
        }
    }

    #[test]
    fn insertion_between_neighbours_sees_them_as_the_reference_map_does() {
        for (seed, span) in [(3, 300), (5, 1 << 30)] {
            let mut rng = Rng(seed);
            let mut map = SpanMap::new();
            let mut model = BTreeMap::new();
            let (mut asked, mut inserted) = (0, 0);
            for round in 0..40_000u64 {
                let k = rng.below(span);
                if rng.below(3) == 0 {
                    let at = model.range(k..).next().map(|(&k, _)| k).unwrap_or(k);
                    assert_eq!(map.remove(at), model.remove(&at));
                    continue;
                }
                let before = model.range(..k).next_back().map(|(_, &v)| v);
                let after = model.range(k + 1..).next().map(|(&k, _)| k);
                let answer = rng.below(4) != 0;
                let mut seen = None;
                let done = map.insert_between(k, round, |b, a| {
                    seen = Some((b.copied(), a));
                    answer
                });
                if let Some((b, a)) = seen {
                    asked += 1;
                    assert!(!model.contains_key(&k), "asked about a key present");
                    assert_eq!(b, before, "the entry before {k}");
                    // The least key after it, or a bound below it (the next leaf's separator).
                    match (a, after) {
                        (Some(a), Some(after)) => assert!(a <= after && a > k, "after {k}"),
                        (None, after) => assert_eq!(after, None, "after {k}"),
                        (Some(a), None) => assert!(a > k, "after {k}"),
                    }
                }
                assert_eq!(done, seen.is_some() && answer, "inserted without asking");
                if done {
                    inserted += 1;
                    model.insert(k, round);
                } else if let Some(&v) = model.get(&k) {
                    assert_eq!(map.get(k), Some(v));
                } else if rng.below(2) == 0 {
                    // Not between its neighbours in one descent: the long way.
                    assert_eq!(map.insert(k, round), None);
                    model.insert(k, round);
                }
                if round % 4_999 == 0 {
                    check(&map);
                    same(&map, &model);
                }
            }
            check(&map);
            same(&map, &model);
            assert!(
                asked > 10_000 && inserted > 5_000,
                "{asked} asked, {inserted} inserted"
            );
        }
    }

    #[test]
    fn runs_in_either_direction_fill_the_leaves() {
        let n = 100_000u64;
        for descending in [false, true] {
            let mut map = SpanMap::new();
            for i in 0..n {
                let k = if descending { n - i } else { i } * 4096;
                map.insert(k, i);
            }
            let (depth, nodes) = check(&map);
            // Leaves three quarters full, and the inner nodes above them.
            assert!(
                nodes as u64 <= n / (LEAF - LEAF / 4) as u64 * 105 / 100,
                "{nodes} nodes, descending {descending}"
            );
            assert!(depth <= 4, "depth {depth}");
        }
    }

    #[test]
    fn emptying_the_map_in_any_order_frees_every_node() {
        let n = 20_000u64;
        for order in 0..3 {
            let mut map = SpanMap::new();
            let mut model = BTreeMap::new();
            for i in 0..n {
                map.insert(i * 3, i);
                model.insert(i * 3, i);
            }
            let mut keys: Vec<u64> = (0..n).map(|i| i * 3).collect();
            match order {
                0 => {}
                1 => keys.reverse(),
                _ => {
                    let mut rng = Rng(5);
                    for i in (1..keys.len()).rev() {
                        keys.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                }
            }
            for (i, &k) in keys.iter().enumerate() {
                assert_eq!(map.remove(k), model.remove(&k));
                assert_eq!(map.remove(k), None);
                if i % 1_000 == 0 {
                    let (_, nodes) = check(&map);
                    // Merging keeps the nodes at least about a quarter full on average.
                    assert!(nodes <= map.len() / (LEAF / 4) + 8, "{nodes} nodes");
                    same(&map, &model);
                }
            }
            assert!(map.root.is_none());
            assert_eq!(map.len(), 0);
        }
    }

    #[test]
    fn a_million_entries() {
        let n = 1_000_000u64;
        let mut map = SpanMap::new();
        for i in 0..n {
            let k = (i * 7_919) % n;
            map.insert(k * 2, k);
        }
        // Four levels: one cold miss fewer per search than with 32-child inner nodes.
        let (depth, _) = check(&map);
        assert!(depth <= 4, "depth {depth}");
        let mut top_down = SpanMap::new();
        let mut rng = Rng(11);
        for i in (0..n).rev() {
            top_down.insert(i * 2, i);
        }
        // And scattered removals, which leave leaves and inner nodes part full.
        for _ in 0..n / 4 {
            top_down.remove(rng.below(n) * 2);
        }
        assert!(check(&top_down).0 <= 4, "depth {}", check(&top_down).0);
        drop(top_down);
        assert_eq!(map.len(), n as usize);
        assert_eq!(map.iter().count(), n as usize);
        assert_eq!(map.le(2 * n + 1), Some(((n - 1) * 2, n - 1)));
        assert_eq!(map.ge(1).map(|(k, _)| k), Some(2));
        let mut seen = 0;
        map.for_each_mut(|v| {
            *v += 1;
            seen += 1;
        });
        assert_eq!(seen, n);
        for i in 0..n {
            assert_eq!(map.remove(i * 2), Some(i + 1));
        }
        assert!(map.root.is_none());
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    fn leaves(map: &SpanMap<u64>) -> usize {
        fn count(node: &Node<u64>) -> usize {
            match node {
                Node::Leaf(_) => 1,
                Node::Inner(n) => n.kids[..n.len].iter().flatten().map(|k| count(k)).sum(),
            }
        }
        map.root.as_deref().map_or(0, count)
    }

    #[test]
    fn inserting_and_removing_at_the_edge_of_full_leaves_does_not_split_every_time() {
        // Exactly full leaves, as a descending run of a multiple of the leaf size leaves them.
        for below in [true, false] {
            let mut map = SpanMap::new();
            let n = 4 * LEAF as u64 * 1_000;
            for i in 0..n {
                map.insert(if below { n - i } else { i + 1 } * 16, i);
            }
            let edge = if below { 0 } else { (n + 2) * 16 };
            map.insert(edge, 0);
            map.remove(edge);
            let settled = leaves(&map);
            for _ in 0..100 {
                map.insert(edge, 0);
                assert_eq!(leaves(&map), settled, "a split");
                assert_eq!(map.remove(edge), Some(0));
                assert_eq!(leaves(&map), settled, "a merge");
            }
        }
    }
}

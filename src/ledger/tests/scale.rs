//! The `scale` teardown without the kernel: N live pages, then `munmap` of each in random
//! order, a large buffer written between timed calls to evict the caches as the kernel's own
//! `munmap` does. Wall time, so ignored by default; run alone on a quiet machine:
//! `cargo test --release -p shmtrace scale_teardown -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use super::*;

/// Larger than the L2 cache a call's working set would otherwise stay in.
const EVICT: usize = 8 << 20;
/// Timed calls per size; the others run untimed, without eviction.
const SAMPLES: u64 = 20_000;

fn evict(buf: &mut [u8]) {
    for line in buf.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    black_box(buf);
}

/// Nanoseconds per cold `munmap` with `n` live pages.
fn cold_munmap_ns(n: u64) -> f64 {
    let mut l = Ledger::new();
    let base = 0x7000_0000_0000u64;
    // Top down, as the kernel hands addresses out, one page apart so no two merge.
    for i in (0..n).rev() {
        l.mmap(
            base + i * 2 * PAGE,
            PAGE,
            PRIV_ANON,
            0x5555_0000 + (i % 64) * 16,
        );
    }
    let mut order: Vec<u64> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    unmap_all(&mut l, base, &order)
}

/// Out of line, so a cache simulator can count its misses alone (`--toggle-collect=*unmap_all*`).
#[inline(never)]
fn unmap_all(l: &mut Ledger, base: u64, order: &[u64]) -> f64 {
    let n = order.len() as u64;
    let samples = std::env::var("SCALE_SAMPLES").map_or(SAMPLES, |s| s.parse().expect("a count"));
    let mut buf = vec![0u8; EVICT];
    let every = (n / samples).max(1);
    let (mut timed, mut ns) = (0u64, 0u128);
    for (k, &i) in order.iter().enumerate() {
        if (k as u64).is_multiple_of(every) {
            evict(&mut buf);
            let t = Instant::now();
            black_box(l.munmap(base + i * 2 * PAGE, PAGE));
            ns += t.elapsed().as_nanos();
            timed += 1;
        } else {
            l.munmap(base + i * 2 * PAGE, PAGE);
        }
    }
    assert_eq!(l.stats().mappings, 0);
    ns as f64 / timed as f64
}

#[test]
#[ignore = "wall time: run alone, see the module comment"]
fn scale_teardown() {
    let sizes: Vec<u64> = std::env::var("SCALE_SIZES")
        .map_or(vec![1_000, 100_000, 1_000_000], |s| {
            s.split(',').map(|n| n.parse().expect("a count")).collect()
        });
    let small = cold_munmap_ns(1_000);
    for n in sizes {
        let ns = cold_munmap_ns(n);
        println!(
            "{n:>9} live: {ns:7.1} ns per cold munmap, {:.2}x the 1k figure",
            ns / small
        );
    }
}

//! Time stamps from the vDSO clock: no syscall, no allocation. The binary log's records count
//! time in TSC ticks where that is reliable (`ticks`).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Wall-clock nanoseconds since the Unix epoch (0 if the clock is unreadable).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Whether call records count time in TSC ticks (the binary log, on a CPU whose TSC runs at a
/// constant rate, in sync across CPUs: see `tsc_usable`); else in nanoseconds.
static TSC: AtomicBool = AtomicBool::new(false);
/// Ticks per second of `ticks()`.
static HZ: AtomicU64 = AtomicU64::new(1_000_000_000);

/// The binary log's clock: one `rdtsc` where the TSC is usable (a third of a vDSO
/// `clock_gettime`, which reads the TSC too and then scales it), else `now_ns()`. Converted to
/// wall-clock time by calibrations stored with the records (`pair`).
#[inline]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if TSC.load(Ordering::Relaxed) {
        // SAFETY: rdtsc has no preconditions; `tsc_usable` checked that the CPU has it.
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    now_ns()
}

pub fn hz() -> u64 {
    HZ.load(Ordering::Relaxed)
}

/// Whether `ticks()` counts TSC ticks.
pub fn counts_tsc() -> bool {
    TSC.load(Ordering::Relaxed)
}

/// Wall-clock ns and `ticks()` read together (the ticks half-way through the wall-clock read,
/// retried a few times if a preemption came in between).
pub fn pair() -> (u64, u64) {
    let (ns, ticks, _) = pair_and_spread();
    (ns, ticks)
}

/// `pair`, and how many ticks the wall-clock read took (the pair's uncertainty).
fn pair_and_spread() -> (u64, u64, u64) {
    if !counts_tsc() {
        let ns = now_ns();
        return (ns, ns, 0);
    }
    // Under 2 us is a read that was not preempted (about 0.1 us when undisturbed).
    let good = HZ.load(Ordering::Relaxed) / 500_000;
    let mut best = (0, 0, u64::MAX);
    for _ in 0..8 {
        let before = ticks();
        let ns = now_ns();
        let after = ticks();
        let spread = after.wrapping_sub(before);
        if spread < best.2 {
            best = (ns, before + spread / 2, spread);
        }
        if spread < good {
            break;
        }
    }
    best
}

/// Counts `ticks()` in TSC ticks, `hz` a second (0: measure it, over two milliseconds);
/// returns the rate in use. Nanoseconds (and 0) when the TSC is not usable.
pub fn use_tsc(hz: u64) -> u64 {
    if !tsc_usable() {
        TSC.store(false, Ordering::Relaxed);
        HZ.store(1_000_000_000, Ordering::Relaxed);
        return 0;
    }
    let hz = if hz != 0 { hz } else { measure_tsc() };
    if hz == 0 {
        return 0;
    }
    HZ.store(hz, Ordering::Relaxed);
    TSC.store(true, Ordering::Relaxed);
    hz
}

/// The TSC's rate against the wall clock, over a sleep of two milliseconds; 0 when the
/// readings were too disturbed to give it to a thousandth (then the log counts nanoseconds).
fn measure_tsc() -> u64 {
    TSC.store(true, Ordering::Relaxed);
    // Until the rate is known, "a good read" is judged against 1 GHz.
    HZ.store(1_000_000_000, Ordering::Relaxed);
    let (ns0, t0, spread0) = pair_and_spread();
    let pause = libc::timespec {
        tv_sec: 0,
        tv_nsec: 2_000_000,
    };
    // SAFETY: `pause` is a valid timespec; no remainder is asked for.
    unsafe { libc::nanosleep(&pause, core::ptr::null_mut()) };
    let (ns1, t1, spread1) = pair_and_spread();
    TSC.store(false, Ordering::Relaxed);
    let (dns, dt) = (ns1.saturating_sub(ns0), t1.saturating_sub(t0));
    if dns < 1_000_000 || spread0.saturating_add(spread1) > dt / 1000 {
        return 0;
    }
    (u128::from(dt) * 1_000_000_000 / u128::from(dns)) as u64
}

/// The TSC is usable when it ticks at a constant rate whatever the CPU's frequency and sleep
/// states (`constant_tsc`, `nonstop_tsc`) and the kernel itself keeps time with it (its
/// clocksource is `tsc`: it found the CPUs' counters in sync).
fn tsc_usable() -> bool {
    if !cfg!(target_arch = "x86_64") {
        return false;
    }
    let mut buf = [0u8; 64];
    let source = read_start(
        c"/sys/devices/system/clocksource/clocksource0/current_clocksource",
        &mut buf,
    );
    if source != b"tsc\n" {
        return false;
    }
    let mut info = [0u8; 8192];
    let info = read_start(c"/proc/cpuinfo", &mut info);
    let Some(flags) = info
        .split(|&b| b == b'\n')
        .find(|line| line.starts_with(b"flags"))
    else {
        return false;
    };
    let has = |name: &[u8]| flags.split(|&b| b == b' ' || b == b'\t').any(|f| f == name);
    has(b"constant_tsc") && has(b"nonstop_tsc")
}

/// The first bytes of a file (as many as fit), empty when it cannot be read.
fn read_start<'a>(path: &core::ffi::CStr, buf: &'a mut [u8]) -> &'a [u8] {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return &[];
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: the rest of `buf` is writable.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: `fd` was opened above.
    unsafe { libc::close(fd) };
    &buf[..len]
}

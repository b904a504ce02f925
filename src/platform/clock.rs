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
/// constant rate, in sync across CPUs: see `tsc_usable`, once the rate is known); else in
/// nanoseconds.
static TSC: AtomicBool = AtomicBool::new(false);
/// Ticks per second of the TSC, once known (0 before), and a millisecond's worth.
static HZ: AtomicU64 = AtomicU64::new(0);
static MILLISECOND: AtomicU64 = AtomicU64::new(u64::MAX);
/// `USABLE` was decided (by this process or the parent it was forked from).
static CHECKED: AtomicBool = AtomicBool::new(false);
/// Whether the TSC is usable here, and a first (wall clock, TSC) pair to measure its rate
/// from once enough time has passed (`MEASURE_NS`), with no wait.
static USABLE: AtomicBool = AtomicBool::new(false);
static FIRST_NS: AtomicU64 = AtomicU64::new(0);
static FIRST_TSC: AtomicU64 = AtomicU64::new(0);
static FIRST_SPREAD: AtomicU64 = AtomicU64::new(0);
/// The rate is taken over at least this long: a pair's read is known to about 0.1 us, so the
/// rate to 1e-5 or better.
const MEASURE_NS: u64 = 10_000_000;

/// The top bit of a `ticks()` value that counts the TSC (a TSC reaches it after a century,
/// the wall clock in ns in 2262): a call's start says which clock it was read with, so the
/// clock can change between calls of other threads without a call mixing the two.
pub const TSC_TAG: u64 = 1 << 63;

#[inline(always)]
fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: rdtsc has no preconditions; `tsc_usable` checked that the CPU has it.
    return unsafe { core::arch::x86_64::_rdtsc() };
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// The binary log's clock: one `rdtsc` where the TSC is usable and its rate known (a third of
/// a vDSO `clock_gettime`, which reads the TSC too and then scales it), tagged with
/// `TSC_TAG`; else `now_ns()`. Converted to wall-clock time by calibrations stored with the
/// records (`pair`).
#[inline]
pub fn ticks() -> u64 {
    if TSC.load(Ordering::Relaxed) {
        return rdtsc() | TSC_TAG;
    }
    now_ns()
}

/// `ticks()` of the clock `start` (a `ticks()` value) was read with: a call's end.
#[inline]
pub fn ticks_like(start: u64) -> u64 {
    if start & TSC_TAG != 0 {
        return rdtsc() | TSC_TAG;
    }
    now_ns()
}

/// Ticks per second of the TSC (0 while unknown).
pub fn tsc_hz() -> u64 {
    HZ.load(Ordering::Acquire)
}

/// TSC ticks in a millisecond (set before any `ticks()` counts the TSC).
#[inline]
pub fn tsc_millisecond() -> u64 {
    MILLISECOND.load(Ordering::Relaxed)
}

fn count_tsc(hz: u64) {
    HZ.store(hz, Ordering::Release);
    MILLISECOND.store(hz / 1000, Ordering::Release);
    TSC.store(true, Ordering::Release);
}

/// Wall-clock ns and the clock of `tsc` read together: TSC ticks (untagged) half-way through
/// the wall-clock read, retried a few times if a preemption came in between; or the ns twice.
pub fn pair(tsc: bool) -> (u64, u64) {
    if !tsc {
        let ns = now_ns();
        return (ns, ns);
    }
    let (ns, ticks, _) = tsc_pair();
    (ns, ticks)
}

/// A (wall clock ns, TSC) pair and how many ticks the wall-clock read took (its uncertainty).
fn tsc_pair() -> (u64, u64, u64) {
    // Under 0.2 us (at a few GHz) is a read that was not disturbed (about 0.1 us usually).
    let good = 500;
    let mut best = (0, 0, u64::MAX);
    for _ in 0..32 {
        let before = rdtsc();
        let ns = now_ns();
        let after = rdtsc();
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

/// Called as the binary log opens: counts TSC ticks at once if the rate is known (`hz`, from
/// the log's header, or this process's), else starts measuring it (`advance`). Returns the
/// rate in use (0: nanoseconds for now).
pub fn start(hz: u64) -> u64 {
    if TSC.load(Ordering::Relaxed) {
        // A forked child opening its own log: the machine, and so the rate, are its parent's.
        return tsc_hz();
    }
    // Asked once per program: a forked child (a worker forked before the parent's rate was
    // measured) has its parent's answer, and the machine's (its clocksource, its CPU's
    // flags: two files read) is the same.
    let usable = if CHECKED.load(Ordering::Relaxed) {
        USABLE.load(Ordering::Relaxed)
    } else {
        let usable = tsc_usable();
        CHECKED.store(true, Ordering::Relaxed);
        usable
    };
    USABLE.store(usable, Ordering::Relaxed);
    if !usable {
        TSC.store(false, Ordering::Relaxed);
        return 0;
    }
    let known = if hz != 0 { hz } else { tsc_hz() };
    if known != 0 {
        count_tsc(known);
        return known;
    }
    if FIRST_NS.load(Ordering::Relaxed) == 0 {
        let (ns, tsc, spread) = tsc_pair();
        FIRST_TSC.store(tsc, Ordering::Relaxed);
        FIRST_SPREAD.store(spread, Ordering::Relaxed);
        FIRST_NS.store(ns, Ordering::Release);
    }
    0
}

/// Once `MEASURE_NS` have passed since `start`, measures the TSC's rate and from then on counts
/// TSC ticks; returns the rate when it was just measured (to keep in the log's header).
/// Called where the log reads the clock anyway (a thread taking a new chunk).
pub fn advance(now_ns: u64) -> Option<u64> {
    if TSC.load(Ordering::Relaxed) || !USABLE.load(Ordering::Relaxed) {
        return None;
    }
    let first_ns = FIRST_NS.load(Ordering::Acquire);
    if first_ns == 0 || now_ns.saturating_sub(first_ns) < MEASURE_NS {
        return None;
    }
    let (ns, tsc, spread) = tsc_pair();
    let (dns, dt) = (
        ns.saturating_sub(first_ns),
        tsc.wrapping_sub(FIRST_TSC.load(Ordering::Relaxed)),
    );
    // Disturbed reads, now (another chunk will try again) or at the start (then the log keeps
    // counting nanoseconds): the rate must be good to 1e-5 (10 ns over the millisecond between
    // calibrations), which a longer time since the first pair makes easier.
    let spreads = spread.saturating_add(FIRST_SPREAD.load(Ordering::Relaxed));
    if dns < MEASURE_NS || spreads > dt / 100_000 {
        return None;
    }
    let hz = (u128::from(dt) * 1_000_000_000 / u128::from(dns)) as u64;
    if hz == 0 {
        return None;
    }
    count_tsc(hz);
    Some(hz)
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

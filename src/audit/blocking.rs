//! `SHMTRACE_BLOCK_WARN_MS`: a `semop` blocked longer than the threshold is reported while it
//! is still blocked, without a watchdog thread; a `msgsnd` or `msgrcv`, which has no timed
//! form, when it returns ([`reporting_after`]).
//!
//! The hook waits in slices: it calls the real `semtimedop` with a timeout of the threshold (or
//! the caller's remaining timeout, if shorter). A `semop` is all or nothing, so a slice that
//! times out has changed nothing and the call can simply be made again; the first time one
//! does, the finding is reported, and the rest of the wait is one plain call. What the caller
//! sees is what the native call gives: its result, its errno (EAGAIN when its own timeout
//! expires, EINTR on a signal), the caller's errno untouched on success.

use libc::{sembuf, timespec};

use crate::platform::{errno, real};

const NS_PER_S: u64 = 1_000_000_000;

fn monotonic_ns() -> u64 {
    let mut ts = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(NS_PER_S)
        .saturating_add(ts.tv_nsec as u64)
}

fn timespec_of(ns: u64) -> timespec {
    timespec {
        tv_sec: (ns / NS_PER_S) as libc::time_t,
        tv_nsec: (ns % NS_PER_S) as libc::c_long,
    }
}

/// The caller's timeout, if the kernel can read it and it is valid. The kernel copies the
/// timeout before anything else and checks `nsops` right after, so a call with `nsops == 0`
/// tells whether the pointer is readable (EINVAL) or not (EFAULT) and does nothing else.
fn caller_timeout(semid: i32, sops: *mut sembuf, timeout: *const timespec) -> Option<u64> {
    // SAFETY: nsops 0: the kernel reads the timeout, then rejects the call; nothing is done.
    let rc = unsafe { real::semtimedop(semid, sops, 0, timeout) };
    if rc != -1 || errno::get() == libc::EFAULT {
        return None;
    }
    // SAFETY: the kernel read this timespec just now without faulting.
    let t = unsafe { timeout.read_unaligned() };
    if t.tv_sec < 0 || !(0..NS_PER_S as libc::c_long).contains(&t.tv_nsec) {
        return None;
    }
    Some(
        (t.tv_sec as u64)
            .saturating_mul(NS_PER_S)
            .saturating_add(t.tv_nsec as u64),
    )
}

/// Whether any of the operations asked not to wait. Read only after the kernel accepted the
/// array (it returned EAGAIN, which it does only after copying every entry).
fn any_nowait(sops: *const sembuf, nsops: usize) -> bool {
    (0..nsops as u32 as usize).any(|i| {
        // SAFETY: see above: the kernel copied all `nsops` entries during the call.
        let op = unsafe { sops.add(i).read_unaligned() };
        op.sem_flg & libc::IPC_NOWAIT as i16 != 0
    })
}

/// `call` (a `msgsnd` or `msgrcv`) made as it is; `warn` is called with the milliseconds it
/// took when that is more than `threshold_ms`, once it has returned (errno kept for the
/// caller).
pub fn reporting_after(
    threshold_ms: u64,
    call: impl FnOnce() -> i64,
    warn: impl FnOnce(u64),
) -> i64 {
    let start = monotonic_ns();
    let ret = call();
    let took_ms = monotonic_ns().saturating_sub(start) / 1_000_000;
    if took_ms > threshold_ms {
        let saved = errno::get();
        warn(took_ms);
        errno::set(saved);
    }
    ret
}

/// `semop` (`timeout` NULL) or `semtimedop`, waiting in slices of `threshold_ms`; `warn` is
/// called once, when the call has waited that long and still waits.
///
/// # Safety
/// The contract of `semtimedop`: the pointers are the program's own arguments.
pub unsafe fn wait(
    semid: i32,
    sops: *mut sembuf,
    nsops: usize,
    timeout: *const timespec,
    threshold_ms: u64,
    warn: impl FnOnce(),
) -> i32 {
    let caller_errno = errno::get();
    let plain = |t: *const timespec| {
        errno::set(caller_errno);
        // SAFETY: the program's own arguments (or a timeout of ours), forwarded.
        unsafe { real::semtimedop(semid, sops, nsops, t) }
    };
    let limit = if timeout.is_null() {
        None
    } else {
        match caller_timeout(semid, sops, timeout) {
            Some(ns) => Some(ns),
            // Unreadable or invalid: the native call fails the same way at once.
            None => return plain(timeout),
        }
    };
    let threshold = threshold_ms.saturating_mul(1_000_000);
    let start = monotonic_ns();
    let mut warn = Some(warn);
    loop {
        let waited = monotonic_ns().saturating_sub(start);
        let left = limit.map(|l| l.saturating_sub(waited));
        if warn.is_none() {
            // Reported: the rest of the wait is the native call's.
            return match left {
                None => plain(core::ptr::null()),
                Some(ns) => plain(&timespec_of(ns)),
            };
        }
        let slice = threshold.saturating_sub(waited).max(1);
        let slice = left.map_or(slice, |l| l.min(slice));
        let attempt = monotonic_ns();
        let rc = plain(&timespec_of(slice));
        if rc != -1 {
            errno::set(caller_errno);
            return rc;
        }
        if errno::get() != libc::EAGAIN {
            return rc;
        }
        let now = monotonic_ns();
        // EAGAIN is also IPC_NOWAIT's answer: a slice that ended early was that.
        if now.saturating_sub(attempt) < slice && any_nowait(sops, nsops) {
            errno::set(libc::EAGAIN);
            return rc;
        }
        if limit.is_some_and(|l| now.saturating_sub(start) >= l) {
            errno::set(libc::EAGAIN);
            return rc;
        }
        if now.saturating_sub(start) >= threshold
            && let Some(warn) = warn.take()
        {
            warn();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    /// A private one-semaphore set at 0, removed when dropped (even if the test fails).
    struct Set(i32);

    impl Set {
        fn new() -> Set {
            // SAFETY: plain semget of a private set.
            let id = unsafe { libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600) };
            assert!(id >= 0, "semget");
            Set(id)
        }
    }

    impl Drop for Set {
        fn drop(&mut self) {
            // SAFETY: removes the set this test created.
            unsafe { libc::semctl(self.0, 0, libc::IPC_RMID) };
        }
    }

    fn take(flg: i16) -> sembuf {
        sembuf {
            sem_num: 0,
            sem_op: -1,
            sem_flg: flg,
        }
    }

    #[test]
    fn nowait_fails_at_once_without_a_finding() {
        let set = Set::new();
        let mut op = take(libc::IPC_NOWAIT as i16);
        let warned = Cell::new(0);
        // SAFETY: a valid sembuf and set.
        let rc = unsafe {
            wait(set.0, &mut op, 1, core::ptr::null(), 60_000, || {
                warned.set(1)
            })
        };
        assert_eq!((rc, errno::get(), warned.get()), (-1, libc::EAGAIN, 0));
    }

    #[test]
    fn the_callers_timeout_wins_when_shorter_and_success_keeps_errno() {
        let set = Set::new();
        let mut op = take(0);
        let zero = timespec_of(0);
        let warned = Cell::new(0);
        // SAFETY: valid pointers.
        let rc = unsafe { wait(set.0, &mut op, 1, &zero, 60_000, || warned.set(1)) };
        assert_eq!((rc, errno::get(), warned.get()), (-1, libc::EAGAIN, 0));
        let mut give = sembuf {
            sem_num: 0,
            sem_op: 1,
            sem_flg: 0,
        };
        errno::set(1234);
        // SAFETY: valid pointers.
        let rc = unsafe { wait(set.0, &mut give, 1, core::ptr::null(), 60_000, || {}) };
        assert_eq!((rc, errno::get()), (0, 1234));
    }

    #[test]
    fn a_wait_past_the_threshold_is_reported_once_then_ends_as_natively() {
        let set = Set::new();
        let mut op = take(0);
        // The slice is the 1 ms threshold; the caller's own 30 ms timeout then expires.
        let limit = timespec_of(30_000_000);
        let warned = Cell::new(0);
        // SAFETY: valid pointers.
        let rc = unsafe {
            wait(set.0, &mut op, 1, &limit, 1, || {
                warned.set(warned.get() + 1)
            })
        };
        assert_eq!((rc, errno::get(), warned.get()), (-1, libc::EAGAIN, 1));
    }

    #[test]
    fn a_call_longer_than_the_threshold_is_reported_after_with_errno_kept() {
        let warned = Cell::new(0);
        let slow = || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            errno::set(libc::EINTR);
            -1
        };
        let rc = reporting_after(5, slow, |ms| warned.set(ms));
        assert_eq!((rc, errno::get()), (-1, libc::EINTR));
        assert!(warned.get() >= 30, "{}", warned.get());
        warned.set(0);
        let rc = reporting_after(60_000, || 7, |ms| warned.set(ms));
        assert_eq!((rc, warned.get()), (7, 0));
    }

    #[test]
    fn an_unreadable_timeout_fails_as_natively() {
        let set = Set::new();
        let mut op = take(0);
        let bad = 16 as *const timespec; // in the never-mapped first page
        // SAFETY: the kernel checks the bad pointer and fails with EFAULT.
        let rc = unsafe { wait(set.0, &mut op, 1, bad, 1, || {}) };
        assert_eq!((rc, errno::get()), (-1, libc::EFAULT));
    }
}

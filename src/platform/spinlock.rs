//! A lock that needs nothing from the host: no allocation, no futex wrapper state, safe to hold
//! across `fork` (taken in the prepare handler, released in parent and child).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialised by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub fn lock(&self) -> SpinGuard<'_, T> {
        self.lock_raw();
        SpinGuard { lock: self }
    }

    /// Like `lock`, but gives up (`None`) whenever `give_up()` says so, before the first attempt
    /// as well as while waiting: a free lock is not taken once `give_up()` holds.
    #[inline(always)]
    pub fn lock_unless(&self, give_up: impl Fn() -> bool) -> Option<SpinGuard<'_, T>> {
        // Lazily: a guard built and dropped on failure would unlock someone else's lock.
        self.acquire(give_up).then(|| SpinGuard { lock: self })
    }

    /// Takes the lock without a guard (for the fork handlers).
    pub fn lock_raw(&self) {
        self.acquire(|| false);
    }

    #[inline(always)]
    fn acquire(&self, give_up: impl Fn() -> bool) -> bool {
        // Nearly always free: one load and one compare-and-swap, inlined.
        if give_up() {
            return false;
        }
        if self.try_take() {
            return true;
        }
        self.acquire_waiting(give_up)
    }

    /// Takes the lock if it is free. A waiter only reads the word until it looks free: a
    /// failed compare-and-swap takes the cache line from the holder, a load shares it.
    #[inline(always)]
    fn try_take(&self) -> bool {
        !self.locked.load(Ordering::Relaxed)
            && self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    #[cold]
    #[inline(never)]
    fn acquire_waiting(&self, give_up: impl Fn() -> bool) -> bool {
        let mut spins = 0u32;
        loop {
            if give_up() {
                return false;
            }
            if self.try_take() {
                return true;
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                // The holder may be descheduled (2 cores, many threads): let it run.
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            } else {
                core::hint::spin_loop();
            }
        }
    }

    /// The protected value, for a holder of `lock_raw`.
    pub fn data_ptr(&self) -> *mut T {
        self.value.get()
    }

    /// # Safety
    /// The caller took the lock with `lock_raw` and holds no guard.
    pub unsafe fn unlock_raw(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;
    use std::sync::Arc;

    #[test]
    fn giving_up_leaves_the_holders_lock_taken() {
        let lock = SpinLock::new(0u8);
        let held = lock.lock();
        assert!(lock.lock_unless(|| true).is_none());
        assert!(
            lock.lock_unless(|| true).is_none(),
            "the first give-up released the lock"
        );
        drop(held);
        assert!(lock.lock_unless(|| false).is_some());
    }

    #[test]
    fn a_free_lock_is_not_taken_once_giving_up_holds() {
        let lock = SpinLock::new(0u8);
        assert!(lock.lock_unless(|| true).is_none());
        assert!(lock.lock_unless(|| false).is_some());
    }

    #[test]
    fn serialises_increments_across_threads() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }
}

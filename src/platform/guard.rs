//! The one re-entrancy guard: a call made while this thread is already inside a hook (our own
//! work, a signal handler, an allocator called from libc) is forwarded untracked.

use std::cell::Cell;

thread_local! {
    // `const` and `Cell<bool>` (no `Drop`): accessing it never allocates and never registers a
    // TLS destructor, which would call `calloc`.
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Held for the duration of one tracked call; dropping it leaves the hook.
pub struct Guard(());

impl Guard {
    /// `None` when this thread is already inside a hook, or its TLS is gone (thread teardown):
    /// the caller must then forward without tracking.
    pub fn enter() -> Option<Guard> {
        IN_HOOK
            .try_with(|inside| {
                if inside.replace(true) {
                    None
                } else {
                    Some(Guard(()))
                }
            })
            .ok()
            .flatten()
    }
}

/// For the fork handlers, which cannot keep a `Guard` across functions: from `hold` (prepare)
/// to `release` (parent and child), a signal handler's hooked call on the forking thread is
/// forwarded untracked instead of waiting for the ledger its own thread holds.
pub fn hold() {
    let _ = IN_HOOK.try_with(|inside| inside.set(true));
}

pub fn release() {
    let _ = IN_HOOK.try_with(|inside| inside.set(false));
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = IN_HOOK.try_with(|inside| inside.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::Guard;

    #[test]
    fn second_entry_on_same_thread_is_refused_until_the_first_leaves() {
        let outer = Guard::enter();
        assert!(outer.is_some());
        assert!(Guard::enter().is_none());
        drop(outer);
        assert!(Guard::enter().is_some());
    }

    #[test]
    fn other_threads_are_independent() {
        let _held = Guard::enter();
        let other = std::thread::spawn(|| Guard::enter().is_some())
            .join()
            .unwrap();
        assert!(other);
    }
}

//! Process and thread ids for records.
//!
//! The pid is cached, but only by the constructor and the fork handler, never by a hook: a
//! `vfork` child runs in its parent's memory, and a hook there must not overwrite the parent's
//! cache. The thread id is cached per thread (a system call per record costs more than the rest
//! of the record), except in a thread that called vfork: a vfork child shares its parent's
//! thread-local storage too.

use core::cell::Cell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

static PID: AtomicI32 = AtomicI32::new(0);

/// The main thread's stack as the constructor found it (the region of `/proc/self/maps` that
/// holds glibc's `__libc_stack_end`): memory that stays mapped as long as the process lives
/// (the kernel only ever grows it), so a `sembuf` array inside it can be read without asking
/// the kernel. 0, 0: not known.
static MAIN_STACK: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// Called by the constructor, where the log is on (only logged semops read their arrays).
pub fn remember_main_stack() {
    // SAFETY: dlsym with a NUL-terminated name; no other precondition.
    let end = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_stack_end".as_ptr()) };
    if end.is_null() {
        return;
    }
    // SAFETY: glibc's variable, a pointer set before any constructor runs.
    let inside = unsafe { end.cast::<usize>().read() } as u64;
    let areas = super::address_space::areas().unwrap_or_default();
    if let Some(area) = areas.iter().find(|a| a.start <= inside && inside < a.end) {
        MAIN_STACK[0].store(area.start as usize, Ordering::Relaxed);
        MAIN_STACK[1].store(area.end as usize, Ordering::Relaxed);
    }
}

/// Called by the constructor and, in a forked child, by the fork handler.
pub fn remember_pid() {
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
    // In a forked child, the forking thread's cached id is its parent's.
    let _ = TID.try_with(|t| t.set(0));
}

pub fn pid() -> i32 {
    match PID.load(Ordering::Relaxed) {
        // SAFETY: getpid has no preconditions.
        0 => unsafe { libc::getpid() },
        pid => pid,
    }
}

pub fn tid() -> i32 {
    // A thread that called vfork may be running as the vfork child, on the parent thread's
    // TLS: ask the kernel, and cache nothing there.
    if VFORKED.try_with(Cell::get).unwrap_or(true) {
        return gettid();
    }
    match TID.try_with(Cell::get) {
        Ok(0) => {
            let tid = gettid();
            let _ = TID.try_with(|t| t.set(tid));
            tid
        }
        Ok(tid) => tid,
        Err(_) => gettid(),
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

thread_local! {
    // This thread's id, 0 until asked (const, no Drop: no TLS destructor is registered).
    static TID: Cell<i32> = const { Cell::new(0) };
    // Set in the thread that calls vfork, just before it does. The vfork child runs on that
    // thread's stack and TLS, so it sees the flag too; no other thread pays for the check.
    static VFORKED: Cell<bool> = const { Cell::new(false) };
}

/// Called by the `vfork` trampoline before the real vfork.
pub fn vfork_starting() {
    let _ = VFORKED.try_with(|f| f.set(true));
}

/// `Some(own pid)` when this call runs in a vfork child, which shares its parent's memory: it
/// must not touch the parent's ledger. Costs a syscall only in a thread that called vfork, and
/// only until its first hook back in the parent.
pub fn in_vfork_child() -> Option<i32> {
    if !VFORKED.try_with(Cell::get).unwrap_or(false) {
        return None;
    }
    // SAFETY: getpid has no preconditions.
    let now = unsafe { libc::getpid() };
    let parent = PID.load(Ordering::Relaxed);
    if parent == 0 || now == parent {
        // Back in the parent: the child has exec'd or exited.
        let _ = VFORKED.try_with(|f| f.set(false));
        None
    } else {
        Some(now)
    }
}

/// Copies `out.len()` `sembuf`s from `src` in this process's own memory: directly where memory
/// is known to stay mapped and readable (the main thread's stack; this thread's live stack and
/// the executable's static data, `readable::holds`: where nearly every program keeps them),
/// elsewhere through the kernel (`process_vm_readv`), so an unmapped or unreadable address is
/// an error (`EFAULT`), never a fault; `out`, filled, with `add_flags` set in each `sem_flg`.
/// `Err(errno)` also when the call is not allowed (a seccomp filter, say). `out` need not be
/// initialised: a semop that does not wait pays for no more than the copy.
#[inline(always)]
pub fn read_sembufs(
    src: usize,
    out: &mut [MaybeUninit<libc::sembuf>],
    add_flags: i16,
) -> Result<&mut [libc::sembuf], i32> {
    let stack = [&MAIN_STACK[0], &MAIN_STACK[1]].map(|a| a.load(Ordering::Relaxed));
    let len = core::mem::size_of_val(out);
    // The main thread's stack first: two loads, no thread-local lookup.
    let direct = within(stack, src, len) || super::readable::holds(src, len);
    copy_sembufs(direct, src, out, add_flags)
}

/// Whether `[src, src + len)` lies inside `[start, end]`.
#[inline(always)]
fn within([start, end]: [usize; 2], src: usize, len: usize) -> bool {
    start <= src && src.checked_add(len).is_some_and(|past| past <= end)
}

/// [`read_sembufs`], `direct` saying the memory is known to be mapped and readable.
#[inline(always)]
fn copy_sembufs(
    direct: bool,
    src: usize,
    out: &mut [MaybeUninit<libc::sembuf>],
    add_flags: i16,
) -> Result<&mut [libc::sembuf], i32> {
    let len = core::mem::size_of_val(out);
    if direct {
        // Most arrays are a local of the caller, or static: a copy, no system call.
        for (i, slot) in out.iter_mut().enumerate() {
            // SAFETY: mapped and readable (`direct`, above); any bytes are a valid `sembuf`.
            let mut op = unsafe { (src as *const libc::sembuf).add(i).read_unaligned() };
            op.sem_flg |= add_flags;
            slot.write(op);
        }
        // SAFETY: every element was just written.
        return Ok(unsafe { &mut *(out as *mut [_] as *mut [libc::sembuf]) });
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: src as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` is `out`, writable for `len` bytes; the kernel checks `remote` itself.
    let got = unsafe { libc::process_vm_readv(pid(), &local, 1, &remote, 1, 0) };
    match got {
        -1 => Err(super::errno::get()),
        // The kernel wrote all `len` bytes, and any bytes are a valid `sembuf` (three
        // integers).
        n if n as usize == len => {
            // SAFETY: as above.
            let ops = unsafe { &mut *(out as *mut [_] as *mut [libc::sembuf]) };
            for op in ops.iter_mut() {
                op.sem_flg |= add_flags;
            }
            Ok(ops)
        }
        _ => Err(libc::EFAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(num: u16, delta: i16, flg: i16) -> libc::sembuf {
        libc::sembuf {
            sem_num: num,
            sem_op: delta,
            sem_flg: flg,
        }
    }

    fn fields(ops: &[libc::sembuf]) -> Vec<(u16, i16, i16)> {
        ops.iter()
            .map(|o| (o.sem_num, o.sem_op, o.sem_flg))
            .collect()
    }

    #[test]
    fn sembufs_read_directly_inside_the_stack_and_through_the_kernel_elsewhere() {
        const UNDO: i16 = libc::SEM_UNDO as i16;
        const NOWAIT: i16 = libc::IPC_NOWAIT as i16;
        let asked = [op(0, -1, 0), op(3, 2, UNDO)];
        let src = asked.as_ptr() as usize;
        let len = size_of_val(&asked);
        let range = [src, src + len];
        assert!(within(range, src, len));
        assert!(
            !within([src, range[1] - 1], src, len),
            "one byte short of the always-mapped range"
        );
        assert!(!within([0, 0], src, len));
        let want = vec![(0, -1, NOWAIT), (3, 2, UNDO | NOWAIT)];
        for direct in [true, false] {
            let mut out = [MaybeUninit::uninit(); 2];
            let got = copy_sembufs(direct, src, &mut out, NOWAIT).map(|ops| fields(ops));
            assert_eq!(got, Ok(want.clone()), "direct {direct}");
        }
        // This thread's stack: read directly, whatever the main thread's.
        assert!(crate::platform::readable::holds(src, len));
        let mut out = [MaybeUninit::uninit(); 2];
        let got = read_sembufs(src, &mut out, 0).map(|ops| fields(ops));
        assert_eq!(got, Ok(fields(&asked)));
        // An unmapped address: an error, never a fault.
        let mut out = [MaybeUninit::uninit(); 1];
        assert_eq!(read_sembufs(16, &mut out, 0).err(), Some(libc::EFAULT));
        assert_eq!(
            copy_sembufs(false, 16, &mut out, 0).err(),
            Some(libc::EFAULT)
        );
    }
}

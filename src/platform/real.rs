//! The real functions: the next definition after ours (`dlsym(RTLD_NEXT)`), resolved eagerly by
//! the constructor; until then, and while resolving, the raw system call.
//!
//! Everything the shim itself needs of these calls goes through here too: our `.so` exports
//! `mmap`, so `libc::mmap` from inside the shim would bind back to our own hook.

// The safety contract of every forwarder is stated once, below, rather than at each.
#![allow(clippy::missing_safety_doc)]

use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use shmtrace_core::trace::event::Func;

use super::errno;
use super::shm_name::ShmPath;

/// Resolved addresses, indexed by `Func as usize`; 0 = not resolved (use the syscall).
static NEXT: [AtomicUsize; Func::COUNT] = [const { AtomicUsize::new(0) }; Func::COUNT];

/// Looks up every next definition. Hooks that run meanwhile (dlsym may allocate, and an
/// allocator may map memory) still see 0 and take the syscall path.
pub fn resolve_all() {
    for func in Func::ALL {
        // SAFETY: RTLD_NEXT with a NUL-terminated name is dlsym's documented use; the result is
        // either NULL or the address of a function with this name's libc prototype.
        let addr = unsafe { libc::dlsym(libc::RTLD_NEXT, func.symbol().as_ptr()) } as usize;
        // Never store our own definition: that would make a hook call itself forever.
        if addr != 0 && !is_ours(addr) {
            NEXT[func as usize].store(addr, Ordering::Release);
        }
    }
}

/// The next `vfork`, or 0: kept apart from `NEXT` because it is no traced function.
static NEXT_VFORK: AtomicUsize = AtomicUsize::new(0);

pub fn resolve_vfork() {
    // SAFETY: as in `resolve_all`.
    let addr = unsafe { libc::dlsym(libc::RTLD_NEXT, c"vfork".as_ptr()) } as usize;
    if addr != 0 && !is_ours(addr) {
        NEXT_VFORK.store(addr, Ordering::Release);
    }
}

/// Where the `vfork` trampoline jumps: the real vfork, or, before it is resolved, `fork`, which
/// POSIX allows as an implementation of vfork.
pub fn vfork_target() -> usize {
    match NEXT_VFORK.load(Ordering::Acquire) {
        0 => libc::fork as *const () as usize,
        addr => addr,
    }
}

/// Whether `addr` lies inside this library (the shim linked twice, or preloaded and linked).
fn is_ours(addr: usize) -> bool {
    let mut here = core::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let mut there = core::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the loader's tables and writes the Dl_info we own.
    let ok = unsafe {
        libc::dladdr(resolve_all as *const c_void, here.as_mut_ptr()) != 0
            && libc::dladdr(addr as *const c_void, there.as_mut_ptr()) != 0
    };
    // SAFETY: both were zero-initialised and dladdr filled them on success.
    ok && unsafe { here.assume_init().dli_fbase == there.assume_init().dli_fbase }
}

// Every forwarder below is `unsafe` with the contract of the libc function it stands for: the
// pointers are the host's, handed on unchanged, and e.g. `munmap` or `MAP_FIXED` can destroy
// any memory. The hooks call them with exactly the arguments the program passed.

fn next(func: Func) -> usize {
    NEXT[func as usize].load(Ordering::Acquire)
}

/// Calls the next definition when there is one, else the system call; both report failure the
/// same way (-1 and errno), so callers cannot tell them apart.
macro_rules! forward {
    ($func:expr, fn($($ty:ty),*) -> $ret:ty, $args:tt, $syscall:expr) => {
        forward!(@call $func, unsafe extern "C" fn($($ty),*) -> $ret, $args, $syscall)
    };
    // `semctl` and `mremap`: the optional argument is handed on as the variadic one it was.
    ($func:expr, variadic fn($($ty:ty),*) -> $ret:ty, $args:tt, $syscall:expr) => {
        forward!(@call $func, unsafe extern "C" fn($($ty),*, ...) -> $ret, $args, $syscall)
    };
    (@call $func:expr, $fn_type:ty, ($($arg:expr),*), $syscall:expr) => {{
        let addr = next($func);
        if addr == 0 {
            $syscall
        } else {
            // SAFETY: `addr` came from dlsym for this exact symbol, whose C prototype is the
            // type written here.
            let real: $fn_type = unsafe { core::mem::transmute(addr) };
            // SAFETY: the arguments are the caller's, passed through unchanged (see above).
            unsafe { real($($arg),*) }
        }
    }};
}

fn sys(nr: c_long, a: [c_long; 6]) -> c_long {
    // SAFETY: a raw system call takes integer arguments and reports errors as -1 with errno;
    // the kernel validates every pointer among them.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

pub unsafe fn shmget(key: libc::key_t, size: usize, shmflg: c_int) -> c_int {
    forward!(
        Func::Shmget,
        fn(libc::key_t, usize, c_int) -> c_int,
        (key, size, shmflg),
        sys(
            libc::SYS_shmget,
            [key as c_long, size as c_long, shmflg as c_long, 0, 0, 0]
        ) as c_int
    )
}

pub unsafe fn shmat(shmid: c_int, shmaddr: *const c_void, shmflg: c_int) -> *mut c_void {
    forward!(
        Func::Shmat,
        fn(c_int, *const c_void, c_int) -> *mut c_void,
        (shmid, shmaddr, shmflg),
        sys(
            libc::SYS_shmat,
            [
                shmid as c_long,
                shmaddr as c_long,
                shmflg as c_long,
                0,
                0,
                0
            ]
        ) as *mut c_void
    )
}

pub unsafe fn shmdt(shmaddr: *const c_void) -> c_int {
    forward!(
        Func::Shmdt,
        fn(*const c_void) -> c_int,
        (shmaddr),
        sys(libc::SYS_shmdt, [shmaddr as c_long, 0, 0, 0, 0, 0]) as c_int
    )
}

pub unsafe fn shmctl(shmid: c_int, cmd: c_int, buf: *mut libc::shmid_ds) -> c_int {
    forward!(
        Func::Shmctl,
        fn(c_int, c_int, *mut libc::shmid_ds) -> c_int,
        (shmid, cmd, buf),
        sys(
            libc::SYS_shmctl,
            [shmid as c_long, cmd as c_long, buf as c_long, 0, 0, 0]
        ) as c_int
    )
}

pub unsafe fn semget(key: libc::key_t, nsems: c_int, semflg: c_int) -> c_int {
    forward!(
        Func::Semget,
        fn(libc::key_t, c_int, c_int) -> c_int,
        (key, nsems, semflg),
        sys(
            libc::SYS_semget,
            [key as c_long, nsems as c_long, semflg as c_long, 0, 0, 0]
        ) as c_int
    )
}

pub unsafe fn semop(semid: c_int, sops: *mut libc::sembuf, nsops: usize) -> c_int {
    forward!(
        Func::Semop,
        fn(c_int, *mut libc::sembuf, usize) -> c_int,
        (semid, sops, nsops),
        sys(
            libc::SYS_semtimedop,
            [semid as c_long, sops as c_long, nsops as c_long, 0, 0, 0]
        ) as c_int
    )
}

pub unsafe fn semtimedop(
    semid: c_int,
    sops: *mut libc::sembuf,
    nsops: usize,
    timeout: *const libc::timespec,
) -> c_int {
    forward!(
        Func::Semtimedop,
        fn(c_int, *mut libc::sembuf, usize, *const libc::timespec) -> c_int,
        (semid, sops, nsops, timeout),
        sys(
            libc::SYS_semtimedop,
            [
                semid as c_long,
                sops as c_long,
                nsops as c_long,
                timeout as c_long,
                0,
                0
            ]
        ) as c_int
    )
}

/// `arg` is the `union semun` exactly as the caller passed it (one integer register on every
/// supported ABI), handed on as the variadic argument it was.
pub unsafe fn semctl(semid: c_int, semnum: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    forward!(
        Func::Semctl,
        variadic fn(c_int, c_int, c_int) -> c_int,
        (semid, semnum, cmd, arg),
        sys(
            libc::SYS_semctl,
            [semid as c_long, semnum as c_long, cmd as c_long, arg as c_long, 0, 0]
        ) as c_int
    )
}

pub unsafe fn mmap(
    func: Func,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    off: i64,
) -> *mut c_void {
    forward!(
        func,
        fn(*mut c_void, usize, c_int, c_int, c_int, i64) -> *mut c_void,
        (addr, len, prot, flags, fd, off),
        sys(
            libc::SYS_mmap,
            [
                addr as c_long,
                len as c_long,
                prot as c_long,
                flags as c_long,
                fd as c_long,
                off as c_long
            ]
        ) as *mut c_void
    )
}

pub unsafe fn munmap(addr: *mut c_void, len: usize) -> c_int {
    forward!(
        Func::Munmap,
        fn(*mut c_void, usize) -> c_int,
        (addr, len),
        sys(
            libc::SYS_munmap,
            [addr as c_long, len as c_long, 0, 0, 0, 0]
        ) as c_int
    )
}

/// `new_address` is passed on whatever the flags, as the caller passed it.
pub unsafe fn mremap(
    old: *mut c_void,
    old_size: usize,
    new_size: usize,
    flags: c_int,
    new_address: *mut c_void,
) -> *mut c_void {
    forward!(
        Func::Mremap,
        variadic fn(*mut c_void, usize, usize, c_int) -> *mut c_void,
        (old, old_size, new_size, flags, new_address),
        sys(
            libc::SYS_mremap,
            [old as c_long, old_size as c_long, new_size as c_long, flags as c_long,
             new_address as c_long, 0]
        ) as *mut c_void
    )
}

/// Before `shm_open` is resolved, what glibc's does: open `/dev/shm/NAME`.
pub unsafe fn shm_open(name: *const c_char, oflag: c_int, mode: libc::mode_t) -> c_int {
    forward!(
        Func::ShmOpen,
        fn(*const c_char, c_int, libc::mode_t) -> c_int,
        (name, oflag, mode),
        // SAFETY: the caller's string, read as libc would read it.
        match unsafe { ShmPath::of(name) } {
            Ok(path) => sys(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as c_long,
                    path.as_ptr() as c_long,
                    (oflag | libc::O_NOFOLLOW | libc::O_CLOEXEC) as c_long,
                    mode as c_long,
                    0,
                    0
                ]
            ) as c_int,
            Err(e) => {
                errno::set(e);
                -1
            }
        }
    )
}

/// Before `shm_unlink` is resolved, what glibc's does: unlink `/dev/shm/NAME`.
pub unsafe fn shm_unlink(name: *const c_char) -> c_int {
    forward!(
        Func::ShmUnlink,
        fn(*const c_char) -> c_int,
        (name),
        // SAFETY: the caller's string, read as libc would read it.
        match unsafe { ShmPath::of(name) } {
            Ok(path) => unlink_as_glibc(&path),
            // glibc's shm_unlink answers an invalid name as one that does not exist.
            Err(_) => {
                errno::set(libc::ENOENT);
                -1
            }
        }
    )
}

/// glibc's `memfd_create` is the system call itself, so the fallback is exact.
pub unsafe fn memfd_create(name: *const c_char, flags: libc::c_uint) -> c_int {
    forward!(
        Func::MemfdCreate,
        fn(*const c_char, libc::c_uint) -> c_int,
        (name, flags),
        sys(
            libc::SYS_memfd_create,
            [name as c_long, flags as c_long, 0, 0, 0, 0]
        ) as c_int
    )
}

/// `sem_open` and `sem_close` make no one system call: glibc keeps the process's semaphores
/// in a table of its own (one mapping per name, with a count of opens) that only its
/// functions know, so a stand-in would leave glibc's `sem_close` unable to close what it
/// opened. Before the constructor has resolved them (a hook called from a constructor that
/// runs before ours), they are resolved here on first use instead, with no lock of the shim
/// held; only when there is no next definition at all do they fail, with `ENOSYS`.
fn resolve_now(func: Func) -> bool {
    // SAFETY: as in `resolve_all`.
    let addr = unsafe { libc::dlsym(libc::RTLD_NEXT, func.symbol().as_ptr()) } as usize;
    if addr == 0 || is_ours(addr) {
        errno::set(libc::ENOSYS);
        return false;
    }
    NEXT[func as usize].store(addr, Ordering::Release);
    true
}

/// `mode` and `value` are handed on as the variadic arguments they were, whatever `oflag`.
pub unsafe fn sem_open(
    name: *const c_char,
    oflag: c_int,
    mode: libc::mode_t,
    value: c_uint,
) -> *mut libc::sem_t {
    forward!(
        Func::SemOpen,
        variadic fn(*const c_char, c_int) -> *mut libc::sem_t,
        (name, oflag, mode, value),
        if resolve_now(Func::SemOpen) {
            // SAFETY: resolved now, so this calls the next definition.
            unsafe { sem_open(name, oflag, mode, value) }
        } else {
            core::ptr::null_mut()
        }
    )
}

pub unsafe fn sem_close(sem: *mut libc::sem_t) -> c_int {
    forward!(
        Func::SemClose,
        fn(*mut libc::sem_t) -> c_int,
        (sem),
        if resolve_now(Func::SemClose) {
            // SAFETY: resolved now, so this calls the next definition.
            unsafe { sem_close(sem) }
        } else {
            -1
        }
    )
}

/// Before `sem_unlink` is resolved, what glibc's does: unlink `/dev/shm/sem.NAME`.
pub unsafe fn sem_unlink(name: *const c_char) -> c_int {
    forward!(
        Func::SemUnlink,
        fn(*const c_char) -> c_int,
        (name),
        // SAFETY: the caller's string, read as libc would read it.
        match unsafe { ShmPath::of_sem(name) } {
            Ok(path) => unlink_as_glibc(&path),
            // glibc's sem_unlink answers an invalid name as one that does not exist.
            Err(_) => {
                errno::set(libc::ENOENT);
                -1
            }
        }
    )
}

/// `unlink` of a `/dev/shm` path, with `EPERM` answered as `EACCES` as glibc's `shm_unlink` and
/// `sem_unlink` do (POSIX specifies `EACCES`).
fn unlink_as_glibc(path: &ShmPath) -> c_int {
    let rc = sys(
        libc::SYS_unlinkat,
        [
            libc::AT_FDCWD as c_long,
            path.as_ptr() as c_long,
            0,
            0,
            0,
            0,
        ],
    ) as c_int;
    if rc == -1 && errno::get() == libc::EPERM {
        errno::set(libc::EACCES);
    }
    rc
}

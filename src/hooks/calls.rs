//! The tracked implementations behind the trampolines: each packs its arguments into an event,
//! forwards to `real`, and says which caller memory may be read once the call returned.

use core::ffi::{CStr, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use core::mem::MaybeUninit;
use libc::{key_t, mode_t, msqid_ds, sem_t, sembuf, shmid_ds, timespec};

use core::ptr;

use super::traced::{Mapping, Started, traced, traced_mapping, traced_waiting};
use crate::audit::{self, Code, Finding};
use crate::ledger::Facts;
use crate::platform::shm_fds;
use crate::platform::shm_name::ShmPath;
use crate::platform::{errno, file_id, kernel, process, real, sink};
use shmtrace_core::trace::decode;
use shmtrace_core::trace::event::{Event, Func, NAME_KEPT, Name, SOPS_KEPT, SemOp, Timeout};

/// A C `int` argument, sign-extended as `Event::args` expects.
fn int(v: c_int) -> u64 {
    i64::from(v) as u64
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

fn nothing_to_read(_: &mut Event, _: &mut Facts) {}

/// Whether the flags alone guarantee that a successful get created the object.
fn always_creates(key: key_t, flags: c_int) -> bool {
    let both = libc::IPC_CREAT | libc::IPC_EXCL;
    key == libc::IPC_PRIVATE || flags & both == both
}

/// Whether a successful get may have created the object or opened an existing one: only the
/// kernel's state before the call can tell.
fn may_create(key: key_t, flags: c_int) -> bool {
    !always_creates(key, flags) && flags & libc::IPC_CREAT != 0
}

pub unsafe extern "C" fn shmget(key: key_t, size: usize, shmflg: c_int, caller: usize) -> c_int {
    let args = [int(key), size as u64, int(shmflg), 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::shmget(key, size, shmflg) });
    // Creation is whether the key was free just before the call: the creator pid cannot tell,
    // since this process may be re-opening a segment it created itself.
    let key_was_free = may_create(key, shmflg) && {
        let saved = errno::get();
        let free = !kernel::segment_key_exists(key);
        errno::set(saved);
        free
    };
    let after = |ev: &mut Event, facts: &mut Facts| {
        if ev.failed() {
            return;
        }
        facts.created = always_creates(key, shmflg) || key_was_free;
        facts.segment_size = if facts.created {
            // A new segment's size is exactly the size asked for: no need to ask the kernel.
            size as u64
        } else {
            // Opening again a segment this process created: the ledger knows its size.
            crate::recorder::created_segment_size(ev.ret as c_int)
                .or_else(|| kernel::segment_stat(ev.ret as c_int).map(|s| s.size))
                .unwrap_or(0)
        };
        ev.created = facts.created;
    };
    traced(Func::Shmget, caller, args, call, after) as c_int
}

pub unsafe extern "C" fn shmat(
    shmid: c_int,
    shmaddr: *const c_void,
    shmflg: c_int,
    caller: usize,
) -> *mut c_void {
    let args = [int(shmid), ptr(shmaddr), int(shmflg), 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || unsafe { real::shmat(shmid, shmaddr, shmflg) } as i64;
    let after = |ev: &mut Event, facts: &mut Facts| {
        if !ev.failed() {
            // A segment this process created has the size it asked for: no IPC_STAT. With
            // SHM_REMAP this thread holds the ledger already (taken before the call).
            let created = (shmflg & libc::SHM_REMAP == 0)
                .then(|| crate::recorder::created_segment_size(shmid))
                .flatten();
            facts.segment_size = created
                .or_else(|| kernel::segment_stat(shmid).map(|s| s.size))
                .unwrap_or(0);
        }
    };
    traced(Func::Shmat, caller, args, call, after) as *mut c_void
}

pub unsafe extern "C" fn shmdt(shmaddr: *const c_void, caller: usize) -> c_int {
    let args = [ptr(shmaddr), 0, 0, 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::shmdt(shmaddr) });
    traced(Func::Shmdt, caller, args, call, nothing_to_read) as c_int
}

pub unsafe extern "C" fn shmctl(
    shmid: c_int,
    cmd: c_int,
    buf: *mut shmid_ds,
    caller: usize,
) -> c_int {
    let args = [int(shmid), int(cmd), ptr(buf), 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::shmctl(shmid, cmd, buf) });
    traced(Func::Shmctl, caller, args, call, nothing_to_read) as c_int
}

pub unsafe extern "C" fn semget(key: key_t, nsems: c_int, semflg: c_int, caller: usize) -> c_int {
    let args = [int(key), int(nsems), int(semflg), 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::semget(key, nsems, semflg) });
    // Sets record no creator pid: whether IPC_CREAT alone creates is asked before the call.
    let key_was_free = may_create(key, semflg) && {
        let saved = errno::get();
        let free = !kernel::semaphore_key_exists(key);
        errno::set(saved);
        free
    };
    let after = |ev: &mut Event, facts: &mut Facts| {
        if !ev.failed() {
            facts.created = always_creates(key, semflg) || key_was_free;
            ev.created = facts.created;
            // A set this call surely created has the number asked for (the kernel refuses
            // to create one of 0): no IPC_STAT. `key_was_free` is not sure enough, since
            // another process may have created the key in between.
            facts.nsems = if always_creates(key, semflg) {
                0
            } else {
                kernel::semaphore_count(ev.ret as c_int).unwrap_or(0)
            };
        }
    };
    traced(Func::Semget, caller, args, call, after) as c_int
}

pub unsafe extern "C" fn semop(
    semid: c_int,
    sops: *mut sembuf,
    nsops: usize,
    caller: usize,
) -> c_int {
    let args = [int(semid), ptr(sops), nsops as u64, 0, 0, 0];
    let warn_ms = audit::block_warn_ms();
    let call = |started: &mut Started| {
        if started.logged()
            // SAFETY: the program's own arguments, as the hook received them.
            && let Some(done) = unsafe { without_waiting(started, semid, sops, nsops) }
        {
            return done;
        }
        i64::from(if warn_ms == 0 {
            // SAFETY: the program's own arguments, forwarded unchanged to the real function.
            unsafe { real::semop(semid, sops, nsops) }
        } else {
            // SAFETY: the program's own arguments, as the hook received them.
            unsafe {
                wait_reporting(
                    Func::Semop,
                    semid,
                    sops,
                    nsops,
                    ptr::null(),
                    warn_ms,
                    caller,
                )
            }
        })
    };
    traced_waiting(Func::Semop, caller, args, call, |ev, _| {
        read_sops(ev, sops, nsops)
    }) as c_int
}

pub unsafe extern "C" fn semtimedop(
    semid: c_int,
    sops: *mut sembuf,
    nsops: usize,
    timeout: *const timespec,
    caller: usize,
) -> c_int {
    let args = [int(semid), ptr(sops), nsops as u64, ptr(timeout), 0, 0];
    let warn_ms = audit::block_warn_ms();
    let call = |started: &mut Started| {
        if timeout.is_null() {
            if started.logged()
                // SAFETY: the program's own arguments, as the hook received them.
                && let Some(done) = unsafe { without_waiting(started, semid, sops, nsops) }
            {
                return done;
            }
        } else {
            // A try with a timeout of ours would skip the kernel's checks of the caller's
            // timeout: logged as started, operations unread.
            started.waiting(|_| {});
        }
        i64::from(if warn_ms == 0 {
            // SAFETY: the program's own arguments, forwarded unchanged to the real function.
            unsafe { real::semtimedop(semid, sops, nsops, timeout) }
        } else {
            // SAFETY: the program's own arguments, as the hook received them.
            unsafe {
                wait_reporting(
                    Func::Semtimedop,
                    semid,
                    sops,
                    nsops,
                    timeout,
                    warn_ms,
                    caller,
                )
            }
        })
    };
    let after = |ev: &mut Event, _: &mut Facts| {
        read_sops(ev, sops, nsops);
        read_timeout(ev, timeout);
    };
    traced_waiting(Func::Semtimedop, caller, args, call, after) as c_int
}

/// How many operations a semop's try copies; a longer array is logged as started unread.
const TRY_OPS: usize = 16;

/// While calls are logged, a semop is first tried without waiting: its operations, copied
/// through the kernel (never a fault on a bad pointer), with `IPC_NOWAIT` on each. The kernel
/// then never counts it as a waiter: a program watching `GETNCNT`, and a signal sent when it
/// sees one, meet the real wait only. Most calls complete at once, and that try is then the
/// call itself; one that would wait is logged as started, with the operations it waits with,
/// and then waits. `None`: it has still to be made (logged as started where it may wait).
/// Called only while the call is logged; kept out of line, so that its copy of the operations
/// costs nothing when calls are not logged.
///
/// # Safety
/// The contract of `semtimedop`: the pointers are the program's own arguments.
#[inline(never)]
unsafe fn without_waiting(
    started: &mut Started,
    semid: c_int,
    sops: *mut sembuf,
    nsops: usize,
) -> Option<i64> {
    const NOWAIT: i16 = libc::IPC_NOWAIT as i16;
    // The kernel takes nsops as an unsigned int.
    let n = nsops as u32 as usize;
    if n == 0 || n > TRY_OPS {
        // Refused at once (none), or too long to copy here: made as it is.
        if n > TRY_OPS {
            started.waiting(|_| {});
        }
        return None;
    }
    let mut copy = [MaybeUninit::<libc::sembuf>::uninit(); TRY_OPS];
    let ops = match process::read_sembufs(sops as usize, &mut copy[..n], NOWAIT) {
        Ok(ops) => ops,
        // Unreadable: the call fails at once with EFAULT, as it will.
        Err(libc::EFAULT) => return None,
        Err(_) => {
            started.waiting(|_| {});
            return None;
        }
    };
    // SAFETY: our copy of the program's operations, for its own set.
    let rc = unsafe { real::semtimedop(semid, ops.as_mut_ptr(), n, ptr::null()) };
    if rc != -1 || errno::get() != libc::EAGAIN {
        return Some(i64::from(rc));
    }
    would_wait(started, sops, n)
}

/// The try found the semop would wait: unless the program asked every operation not to
/// (then EAGAIN is its answer), it is logged as started, with the operations as the program
/// wrote them (read again: the common path keeps no second copy), and `None`: to be made.
#[cold]
#[inline(never)]
fn would_wait(started: &mut Started, sops: *mut sembuf, n: usize) -> Option<i64> {
    const NOWAIT: i16 = libc::IPC_NOWAIT as i16;
    let mut copy = [MaybeUninit::<libc::sembuf>::uninit(); TRY_OPS];
    let Ok(asked) = process::read_sembufs(sops as usize, &mut copy[..n], 0) else {
        started.waiting(|_| {});
        return None;
    };
    if asked.iter().all(|op| op.sem_flg & NOWAIT != 0) {
        errno::set(libc::EAGAIN);
        return Some(-1);
    }
    started.waiting(|ev| {
        for (slot, op) in ev.sops.iter_mut().zip(asked.iter()) {
            *slot = SemOp {
                num: op.sem_num,
                op: op.sem_op,
                flg: op.sem_flg,
            };
        }
        ev.sops_read = n.min(SOPS_KEPT) as u8;
    });
    None
}

pub unsafe extern "C" fn semctl(
    semid: c_int,
    semnum: c_int,
    cmd: c_int,
    arg: c_ulong,
    caller: usize,
) -> c_int {
    let args = [int(semid), int(semnum), int(cmd), arg, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::semctl(semid, semnum, cmd, arg) });
    traced(Func::Semctl, caller, args, call, nothing_to_read) as c_int
}

/// `mmap64` when `MMAP64`. Inlined into each, one copy per function (the constant makes
/// them two, each with its closures inlined): a call of its own moved all eight arguments
/// again.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn mmap_any<const MMAP64: bool>(
    addr: *mut c_void,
    length: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: i64,
    caller: usize,
) -> *mut c_void {
    let func = if MMAP64 { Func::Mmap64 } else { Func::Mmap };
    let args = [
        ptr(addr),
        length as u64,
        int(prot),
        int(flags),
        int(fd),
        offset as u64,
    ];
    let after = |ev: &mut Event, facts: &mut Facts| {
        // Only a record needs the name now: the report asks the kernel when it needs it.
        if mapping_facts(ev.ret, flags, fd, facts) {
            if sink::enabled() {
                name_object(ev, fd);
            } else {
                facts.object_pending = true;
            }
        }
    };
    traced_mapping::<MmapAny<MMAP64>>(func, caller, args, after) as *mut c_void
}

/// `mmap` (`mmap64` when `MMAP64`) for the paths without an event.
struct MmapAny<const MMAP64: bool>;

impl<const MMAP64: bool> Mapping for MmapAny<MMAP64> {
    #[inline(always)]
    fn call(args: &[u64; 6]) -> i64 {
        let func = if MMAP64 { Func::Mmap64 } else { Func::Mmap };
        let [addr, length, prot, flags, fd, offset] = *args;
        // SAFETY: the program's own arguments, forwarded unchanged to the real function.
        let ret = unsafe {
            real::mmap(
                func,
                addr as *mut c_void,
                length as usize,
                prot as c_int,
                flags as c_int,
                fd as c_int,
                offset as i64,
            )
        };
        ret as i64
    }

    /// With no log the report names the object a descriptor maps, if still mapped then.
    #[inline(always)]
    fn facts(ret: i64, args: &[u64; 6], facts: &mut Facts) {
        facts.object_pending = mapping_facts(ret, args[3] as c_int, args[4] as c_int, facts);
    }
}

/// What the ledger needs from the kernel about an `mmap` that returned `ret`, into `facts`;
/// true when it maps a descriptor `shm_open` or `memfd_create` returned, whose object is then
/// to be named (only such a descriptor is worth asking about).
#[inline(always)]
fn mapping_facts(ret: i64, flags: c_int, fd: c_int, facts: &mut Facts) -> bool {
    if flags & libc::MAP_ANONYMOUS != 0 {
        return false;
    }
    if ret == Func::Mmap.failure_value() {
        // A MAP_FIXED call that failed may have unmapped its range first, rounded to the
        // file's page: a hugetlbfs file's (a MFD_HUGETLB memfd's) huge page.
        if flags & libc::MAP_FIXED != 0 {
            facts.file_page_size = kernel::hugetlbfs_page_size(fd).unwrap_or(0);
        }
        return false;
    }
    // A file on hugetlbfs has huge pages without MAP_HUGETLB. The kernel places such a
    // mapping on a huge page boundary: only then is the file worth a system call.
    if (ret as u64).is_multiple_of(kernel::MIN_HUGE_PAGE) {
        facts.file_page_size = kernel::hugetlbfs_page_size(fd).unwrap_or(0);
    }
    shm_fds::marked(fd)
}

/// The shared memory object a mapping maps, out of line: most mappings never get here. An
/// statx tells whether the descriptor is still the file shm_open or memfd_create returned;
/// anything else is asked of /proc.
#[inline(never)]
fn name_object(ev: &mut Event, fd: c_int) {
    if let Some(object) = shm_fds::known_object(fd).or_else(|| shm_fds::object_of(fd)) {
        ev.name = object;
    }
}

pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    length: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: i64,
    caller: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract is mmap's.
    unsafe { mmap_any::<false>(addr, length, prot, flags, fd, offset, caller) }
}

pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    length: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: i64,
    caller: usize,
) -> *mut c_void {
    // SAFETY: the caller's contract is mmap64's.
    unsafe { mmap_any::<true>(addr, length, prot, flags, fd, offset, caller) }
}

pub unsafe extern "C" fn munmap(addr: *mut c_void, length: usize, caller: usize) -> c_int {
    let args = [ptr(addr), length as u64, 0, 0, 0, 0];
    traced_mapping::<Munmap>(Func::Munmap, caller, args, nothing_to_read) as c_int
}

struct Munmap;

impl Mapping for Munmap {
    #[inline(always)]
    fn call(args: &[u64; 6]) -> i64 {
        // SAFETY: the program's own arguments, forwarded unchanged to the real function.
        i64::from(unsafe { real::munmap(args[0] as *mut c_void, args[1] as usize) })
    }

    #[inline(always)]
    fn facts(_: i64, _: &[u64; 6], _: &mut Facts) {}
}

pub unsafe extern "C" fn mremap(
    old_address: *mut c_void,
    old_size: usize,
    new_size: usize,
    flags: c_int,
    new_address: *mut c_void,
    caller: usize,
) -> *mut c_void {
    let args = [
        ptr(old_address),
        old_size as u64,
        new_size as u64,
        int(flags),
        ptr(new_address),
        0,
    ];
    traced_mapping::<Mremap>(Func::Mremap, caller, args, nothing_to_read) as *mut c_void
}

struct Mremap;

impl Mapping for Mremap {
    #[inline(always)]
    fn call(args: &[u64; 6]) -> i64 {
        let [old_address, old_size, new_size, flags, new_address, _] = *args;
        // SAFETY: the program's own arguments, forwarded unchanged to the real function.
        let ret = unsafe {
            real::mremap(
                old_address as *mut c_void,
                old_size as usize,
                new_size as usize,
                flags as c_int,
                new_address as *mut c_void,
            )
        };
        ret as i64
    }

    #[inline(always)]
    fn facts(_: i64, _: &[u64; 6], _: &mut Facts) {}
}

pub unsafe extern "C" fn shm_open(
    name: *const c_char,
    oflag: c_int,
    mode: mode_t,
    caller: usize,
) -> c_int {
    let args = [ptr(name), int(oflag), u64::from(mode), 0, 0, 0];
    // SAFETY: shm_open reads `name` as a string whatever the flags; so do we.
    let name_was_free = free_before(oflag, || unsafe { ShmPath::of(name) });
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(marked(unsafe { real::shm_open(name, oflag, mode) }));
    let after = |ev: &mut Event, facts: &mut Facts| {
        read_name(ev, name);
        if ev.failed() {
            return;
        }
        facts.created = created(oflag, name_was_free);
        ev.created = facts.created;
        // The inode tells at exit whether the name is still the object created; while calls
        // are logged, the file is remembered so that its mappings are named with a statx.
        let logged = sink::enabled();
        if !facts.created && !logged {
            return;
        }
        let fd = ev.ret as c_int;
        let Some(id) = file_id::of_fd(fd) else {
            return;
        };
        if facts.created {
            facts.inode = id.ino;
        }
        if logged && !name.is_null() {
            // SAFETY: libc read this NUL-terminated string during the call (it succeeded).
            let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
            // glibc opened /dev/shm/ and the name without its leading slashes.
            let rest = &bytes[bytes.iter().take_while(|&&b| b == b'/').count()..];
            shm_fds::remember(fd, shm_fds::Kind::Shm, rest, &id);
        }
    };
    traced(Func::ShmOpen, caller, args, call, after) as c_int
}

pub unsafe extern "C" fn shm_unlink(name: *const c_char, caller: usize) -> c_int {
    let args = [ptr(name), 0, 0, 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::shm_unlink(name) });
    traced(Func::ShmUnlink, caller, args, call, |ev, _| {
        read_name(ev, name)
    }) as c_int
}

pub unsafe extern "C" fn memfd_create(name: *const c_char, flags: c_uint, caller: usize) -> c_int {
    let args = [ptr(name), u64::from(flags), 0, 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(marked(unsafe { real::memfd_create(name, flags) }));
    let after = |ev: &mut Event, _: &mut Facts| {
        // The kernel checks the flags before it reads the name: only a success says it read
        // the whole string (249 bytes at most).
        if ev.failed() {
            return;
        }
        read_name(ev, name);
        // While calls are logged, the file is remembered so that its mappings are named with
        // a statx.
        let fd = ev.ret as c_int;
        if sink::enabled()
            && !name.is_null()
            && let Some(id) = file_id::of_fd(fd)
        {
            // SAFETY: the kernel read this NUL-terminated string during the call.
            let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
            shm_fds::remember(fd, shm_fds::Kind::Memfd, bytes, &id);
        }
    };
    traced(Func::MemfdCreate, caller, args, call, after) as c_int
}

pub unsafe extern "C" fn sem_open(
    name: *const c_char,
    oflag: c_int,
    mode: mode_t,
    value: c_uint,
    caller: usize,
) -> *mut sem_t {
    let args = [
        ptr(name),
        int(oflag),
        u64::from(mode),
        u64::from(value),
        0,
        0,
    ];
    // SAFETY: sem_open reads `name` as a string whatever the flags; so do we.
    let name_was_free = free_before(oflag, || unsafe { ShmPath::of_sem(name) });
    // SAFETY: the program's own arguments, forwarded unchanged to the real function (`mode`
    // and `value` as the variadic arguments they were).
    let call = || unsafe { real::sem_open(name, oflag, mode, value) } as i64;
    let after = |ev: &mut Event, facts: &mut Facts| {
        read_name(ev, name);
        if !ev.failed() {
            facts.created = created(oflag, name_was_free);
            ev.created = facts.created;
            // sem_open gives no descriptor: the file is asked by name, just after the call.
            if facts.created {
                // SAFETY: libc has read the string (the call succeeded).
                let path = unsafe { ShmPath::of_sem(name) };
                facts.inode = path.ok().and_then(|p| p.inode()).unwrap_or(0);
            }
        }
    };
    traced(Func::SemOpen, caller, args, call, after) as *mut sem_t
}

pub unsafe extern "C" fn sem_close(sem: *mut sem_t, caller: usize) -> c_int {
    let args = [ptr(sem), 0, 0, 0, 0, 0];
    // SAFETY: the program's own argument, forwarded unchanged; glibc only compares it with the
    // semaphores it opened (an unknown one fails with EINVAL), and so does the shim.
    let call = || i64::from(unsafe { real::sem_close(sem) });
    traced(Func::SemClose, caller, args, call, nothing_to_read) as c_int
}

pub unsafe extern "C" fn sem_unlink(name: *const c_char, caller: usize) -> c_int {
    let args = [ptr(name), 0, 0, 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::sem_unlink(name) });
    traced(Func::SemUnlink, caller, args, call, |ev, _| {
        read_name(ev, name)
    }) as c_int
}

pub unsafe extern "C" fn msgget(key: key_t, msgflg: c_int, caller: usize) -> c_int {
    let args = [int(key), int(msgflg), 0, 0, 0, 0];
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::msgget(key, msgflg) });
    // Queues record no creator pid: whether IPC_CREAT alone creates is asked before the call.
    let key_was_free = may_create(key, msgflg) && {
        let saved = errno::get();
        let free = !kernel::queue_key_exists(key);
        errno::set(saved);
        free
    };
    let after = |ev: &mut Event, facts: &mut Facts| {
        if !ev.failed() {
            facts.created = always_creates(key, msgflg) || key_was_free;
            ev.created = facts.created;
        }
    };
    traced(Func::Msgget, caller, args, call, after) as c_int
}

pub unsafe extern "C" fn msgsnd(
    msqid: c_int,
    msgp: *const c_void,
    msgsz: usize,
    msgflg: c_int,
    caller: usize,
) -> c_int {
    let args = [int(msqid), ptr(msgp), msgsz as u64, int(msgflg), 0, 0];
    let warn_ms = audit::msg_block_warn_ms();
    let call = |started: &mut Started| {
        // SAFETY: the program's own arguments; the try adds only IPC_NOWAIT.
        let send = |flags| i64::from(unsafe { real::msgsnd(msqid, msgp, msgsz, flags) });
        if started.logged() && msgflg & libc::IPC_NOWAIT == 0 {
            // A full queue is the only reason to wait, and the try's EAGAIN says so: a try
            // that fails otherwise or succeeds is the call itself.
            let done = send(msgflg | libc::IPC_NOWAIT);
            if done != -1 || errno::get() != libc::EAGAIN {
                return done;
            }
            started.waiting(|_| {});
        }
        timed(Func::Msgsnd, msqid, warn_ms, caller, || send(msgflg))
    };
    traced_waiting(Func::Msgsnd, caller, args, call, nothing_to_read) as c_int
}

/// `MSG_COPY` (linux/msg.h; not in `libc`): without `IPC_NOWAIT` the kernel refuses it, so it
/// must never be tried with one.
const MSG_COPY: c_int = 0o40000;

pub unsafe extern "C" fn msgrcv(
    msqid: c_int,
    msgp: *mut c_void,
    msgsz: usize,
    msgtyp: c_long,
    msgflg: c_int,
    caller: usize,
) -> isize {
    let args = [
        int(msqid),
        ptr(msgp),
        msgsz as u64,
        msgtyp as u64,
        int(msgflg),
        0,
    ];
    let warn_ms = audit::msg_block_warn_ms();
    let call = |started: &mut Started| {
        // SAFETY: the program's own arguments; the try adds only IPC_NOWAIT.
        let receive = |flags| unsafe { real::msgrcv(msqid, msgp, msgsz, msgtyp, flags) } as i64;
        if started.logged() && msgflg & (libc::IPC_NOWAIT | MSG_COPY) == 0 {
            // No message of the type asked for is the only reason to wait (ENOMSG to a try).
            let done = receive(msgflg | libc::IPC_NOWAIT);
            if done != -1 || errno::get() != libc::ENOMSG {
                return done;
            }
            started.waiting(|_| {});
        }
        timed(Func::Msgrcv, msqid, warn_ms, caller, || receive(msgflg))
    };
    traced_waiting(Func::Msgrcv, caller, args, call, nothing_to_read) as isize
}

/// `SHMTRACE_BLOCK_WARN_MS` for msgsnd/msgrcv (`MsgBlocked`), which have no timed form to wait
/// in slices with: made as they are, and reported once returned if blocked longer.
fn timed(func: Func, msqid: c_int, warn_ms: u64, caller: usize, call: impl FnOnce() -> i64) -> i64 {
    if warn_ms == 0 {
        return call();
    }
    audit::blocking::reporting_after(warn_ms, call, |took_ms| {
        let detail = [int(msqid), warn_ms, took_ms];
        audit::report_finding(Finding::new(Code::MsgBlocked, func, caller as u64, detail));
    })
}

pub unsafe extern "C" fn msgctl(
    msqid: c_int,
    cmd: c_int,
    buf: *mut msqid_ds,
    caller: usize,
) -> c_int {
    let args = [int(msqid), int(cmd), ptr(buf), 0, 0, 0];
    // What a removal discards, asked just before it (the kernel keeps no trace after).
    let queued = if cmd & !decode::IPC_64 == libc::IPC_RMID {
        kernel::queue_stat(msqid).map(|q| (q.messages, q.bytes))
    } else {
        None
    };
    // SAFETY: the program's own arguments, forwarded unchanged to the real function.
    let call = || i64::from(unsafe { real::msgctl(msqid, cmd, buf) });
    let after = |_: &mut Event, facts: &mut Facts| facts.queued = queued;
    traced(Func::Msgctl, caller, args, call, after) as c_int
}

/// `shm_open`, `sem_open`: with `O_CREAT` alone, whether the name's file did not exist just
/// before the call (asked then, as for semget, since only the answer before tells whether
/// the call created it); with other flags the flags say it, and nothing is asked. Only then
/// is the name read first; a name libc cannot read faults here as it would in libc.
fn free_before(oflag: c_int, path: impl FnOnce() -> Result<ShmPath, c_int>) -> bool {
    if oflag & (libc::O_CREAT | libc::O_EXCL) != libc::O_CREAT {
        return false;
    }
    let saved = errno::get();
    let free = path().is_ok_and(|p| !p.exists());
    errno::set(saved);
    free
}

/// Whether a successful `shm_open` or `sem_open` created its name.
fn created(oflag: c_int, free_before: bool) -> bool {
    let both = libc::O_CREAT | libc::O_EXCL;
    oflag & both == both || free_before
}

/// A descriptor `shm_open` or `memfd_create` returned, marked so that its mappings are named,
/// also when the call is not recorded (paused, or made from inside another hook).
fn marked(fd: c_int) -> c_int {
    shm_fds::mark(fd);
    fd
}

/// Copies the name once libc has read it: having returned at all, it read the whole string
/// (libc faults on an unreadable one; only NULL is answered without reading, by our fallback).
fn read_name(ev: &mut Event, name: *const c_char) {
    if name.is_null() {
        return;
    }
    // SAFETY: libc read this NUL-terminated string during the call (see above).
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    ev.name = Name::from_bytes(&bytes[..bytes.len().min(NAME_KEPT)]);
}

/// `SHMTRACE_BLOCK_WARN_MS`: the call, reporting `SemopBlocked` while it is still blocked.
///
/// # Safety
/// The contract of `semtimedop`.
unsafe fn wait_reporting(
    func: Func,
    semid: c_int,
    sops: *mut sembuf,
    nsops: usize,
    timeout: *const timespec,
    warn_ms: u64,
    caller: usize,
) -> c_int {
    let warn = || {
        let detail = [int(semid), warn_ms, 0];
        audit::report_finding(Finding::new(
            Code::SemopBlocked,
            func,
            caller as u64,
            detail,
        ));
    };
    // SAFETY: the program's own arguments, as the hook received them.
    unsafe { audit::blocking::wait(semid, sops, nsops, timeout, warn_ms, warn) }
}

/// Copies the operations out once the kernel has read them itself. It had not when the call
/// failed with EFAULT (unreadable), E2BIG (too many) or ENOMEM (no room to copy them).
fn read_sops(ev: &mut Event, sops: *const sembuf, nsops: usize) {
    // None, unless read now: the record of the call's start may have left some.
    ev.sops_read = 0;
    if sops.is_null()
        || (ev.failed() && matches!(ev.errno, libc::EFAULT | libc::E2BIG | libc::ENOMEM))
    {
        return;
    }
    // The kernel takes nsops as an unsigned int: that is how many entries it read.
    let n = (nsops as u32 as usize).min(SOPS_KEPT);
    for (i, slot) in ev.sops.iter_mut().take(n).enumerate() {
        // SAFETY: the kernel copied `nsops` entries from `sops` during this call, so the first
        // `n <= nsops` are mapped and readable; the caller cannot free them before we return.
        let op = unsafe { sops.add(i).read_unaligned() };
        *slot = SemOp {
            num: op.sem_num,
            op: op.sem_op,
            flg: op.sem_flg,
        };
    }
    ev.sops_read = n as u8;
}

/// The kernel reads the timeout before anything else, so any outcome but EFAULT validated it.
fn read_timeout(ev: &mut Event, timeout: *const timespec) {
    if timeout.is_null() || (ev.failed() && ev.errno == libc::EFAULT) {
        return;
    }
    // SAFETY: the kernel copied this timespec during the call (see above).
    let ts = unsafe { timeout.read_unaligned() };
    ev.timeout = Some(Timeout {
        sec: ts.tv_sec,
        nsec: ts.tv_nsec,
    });
}

//! The few questions detection asks the kernel, through the real functions (never our hooks).
//! Each runs only when a finding is possible, never on a call's common path.

use core::mem::MaybeUninit;

use super::codes::what;
use crate::platform::{errno, real};

/// The uid that created a segment or semaphore set (`IPC_STAT`'s `cuid`). Keeps errno.
pub fn creator_uid(kind: u64, id: i32) -> Option<u32> {
    let saved = errno::get();
    let uid = if kind == what::MESSAGE_QUEUE {
        crate::platform::kernel::queue_stat(id).map(|q| q.creator_uid)
    } else if kind == what::SEGMENT {
        let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
        // SAFETY: `ds` is a writable shmid_ds owned by this frame.
        let rc = unsafe { real::shmctl(id, libc::IPC_STAT, ds.as_mut_ptr()) };
        // SAFETY: IPC_STAT succeeded and filled the (zeroed) structure.
        (rc == 0).then(|| unsafe { ds.assume_init() }.shm_perm.cuid)
    } else {
        let mut ds = MaybeUninit::<libc::semid_ds>::zeroed();
        // SAFETY: IPC_STAT writes one semid_ds through the union's `buf`, passed here.
        let rc = unsafe { real::semctl(id, 0, libc::IPC_STAT, ds.as_mut_ptr() as libc::c_ulong) };
        // SAFETY: IPC_STAT succeeded and filled the (zeroed) structure.
        (rc == 0).then(|| unsafe { ds.assume_init() }.sem_perm.cuid)
    };
    errno::set(saved);
    uid
}

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A semaphore's value now (`GETVAL`), if the set still exists. Keeps errno.
pub fn semaphore_value(semid: i32, num: u16) -> Option<i32> {
    let saved = errno::get();
    // SAFETY: GETVAL takes no fourth argument.
    let v = unsafe { real::semctl(semid, i32::from(num), libc::GETVAL, 0) };
    errno::set(saved);
    (v >= 0).then_some(v)
}

/// Whether some page of `[addr, addr + len)` is not mapped at all. `msync` with no flags
/// writes nothing back and changes nothing; it fails with ENOMEM on a hole. Clobbers errno
/// (the hook restores the caller's before the real call).
pub fn has_hole(addr: u64, len: u64) -> bool {
    if len == 0 || !addr.is_multiple_of(4096) {
        return false;
    }
    // SAFETY: msync only inspects the address range; it never dereferences it for us.
    let rc = unsafe { libc::msync(addr as usize as *mut libc::c_void, len as usize, 0) };
    rc == -1 && errno::get() == libc::ENOMEM
}

/// A segment's size, for the range `SHM_REMAP` will replace. Keeps errno.
pub fn segment_size(shmid: i32) -> Option<u64> {
    let saved = errno::get();
    let size = crate::platform::kernel::segment_stat(shmid).map(|s| s.size);
    errno::set(saved);
    size
}

//! Questions the ledger cannot answer from the calls alone, asked of the kernel through the real
//! functions (never our hooks, so they are neither logged nor counted).

use core::mem::MaybeUninit;

use crate::platform::real;

/// What `IPC_STAT` says of a segment.
pub struct SegmentStat {
    pub size: u64,
    /// `IPC_RMID` was called (by anyone): the segment dies at its last detach.
    pub marked_for_removal: bool,
}

/// `SHM_DEST` in `shm_perm.mode` (linux/shm.h).
const SHM_DEST: u32 = 0o1000;

pub fn segment_stat(shmid: i32) -> Option<SegmentStat> {
    let mut ds = MaybeUninit::<libc::shmid_ds>::zeroed();
    // SAFETY: `ds` is a writable shmid_ds owned by this frame.
    let rc = unsafe { real::shmctl(shmid, libc::IPC_STAT, ds.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: IPC_STAT succeeded and filled the structure (it was zeroed besides).
    let ds = unsafe { ds.assume_init() };
    Some(SegmentStat {
        size: ds.shm_segsz as u64,
        marked_for_removal: u32::from(ds.shm_perm.mode) & SHM_DEST != 0,
    })
}

/// The number of semaphores in a set, if it exists.
pub fn semaphore_count(semid: i32) -> Option<u32> {
    let mut ds = MaybeUninit::<libc::semid_ds>::zeroed();
    // SAFETY: IPC_STAT writes one semid_ds through the `buf` member of the union, which is the
    // pointer passed here as the variadic argument.
    let rc = unsafe { real::semctl(semid, 0, libc::IPC_STAT, ds.as_mut_ptr() as libc::c_ulong) };
    if rc != 0 {
        return None;
    }
    // SAFETY: IPC_STAT succeeded and filled the structure.
    Some(unsafe { ds.assume_init() }.sem_nsems as u32)
}

/// Whether a semaphore set with this key exists now (asked just before an `IPC_CREAT` without
/// `IPC_EXCL`, to tell creating from opening; the kernel records no creator pid for sets).
/// Clobbers errno; the hooks restore the caller's.
pub fn semaphore_key_exists(key: libc::key_t) -> bool {
    // SAFETY: semget with nsems 0 and no flags only looks the key up.
    let found = unsafe { real::semget(key, 0, 0) >= 0 };
    // EACCES and the like mean it exists but is not ours to open.
    found || crate::platform::errno::get() != libc::ENOENT
}

/// Whether a segment with this key exists now (asked just before an `IPC_CREAT` without
/// `IPC_EXCL`, to tell creating from opening). Clobbers errno; the hooks restore the caller's.
pub fn segment_key_exists(key: libc::key_t) -> bool {
    // SAFETY: shmget with size 0 and no flags only looks the key up.
    let found = unsafe { real::shmget(key, 0, 0) >= 0 };
    // EACCES and the like mean it exists but is not ours to open.
    found || crate::platform::errno::get() != libc::ENOENT
}

/// What `IPC_STAT` says of a message queue.
pub struct QueueStat {
    /// Messages in the queue (`msg_qnum`).
    pub messages: u64,
    /// Bytes of message text in the queue (`msg_cbytes`).
    pub bytes: u64,
    pub creator_uid: u32,
}

/// `IPC_STAT` of a message queue, if it exists and we may read it. Keeps errno.
pub fn queue_stat(msqid: i32) -> Option<QueueStat> {
    let saved = crate::platform::errno::get();
    let mut ds = MaybeUninit::<libc::msqid_ds>::zeroed();
    // SAFETY: `ds` is a writable msqid_ds owned by this frame.
    let rc = unsafe { real::msgctl(msqid, libc::IPC_STAT, ds.as_mut_ptr()) };
    crate::platform::errno::set(saved);
    if rc != 0 {
        return None;
    }
    // SAFETY: IPC_STAT succeeded and filled the (zeroed) structure.
    let ds = unsafe { ds.assume_init() };
    Some(QueueStat {
        messages: ds.msg_qnum,
        bytes: ds.__msg_cbytes,
        creator_uid: ds.msg_perm.cuid,
    })
}

/// Whether a message queue with this key exists now (asked just before an `IPC_CREAT` without
/// `IPC_EXCL`, to tell creating from opening). Clobbers errno; the hooks restore the caller's.
pub fn queue_key_exists(key: libc::key_t) -> bool {
    // SAFETY: msgget without flags only looks the key up.
    let found = unsafe { real::msgget(key, 0) >= 0 };
    // EACCES and the like mean it exists but is not ours to open.
    found || crate::platform::errno::get() != libc::ENOENT
}

/// The smallest huge page of this architecture: a hugetlb mapping always starts on a multiple of
/// it (2 MiB on x86-64; 64 KiB covers arm64's contiguous-PTE sizes and the others).
#[cfg(target_arch = "x86_64")]
pub const MIN_HUGE_PAGE: u64 = 2 << 20;
#[cfg(not(target_arch = "x86_64"))]
pub const MIN_HUGE_PAGE: u64 = 64 << 10;

/// `HUGETLBFS_MAGIC` (linux/magic.h).
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// The page size of the file `fd` when it lives on hugetlbfs. Preserves errno.
pub fn hugetlbfs_page_size(fd: i32) -> Option<u64> {
    let saved = crate::platform::errno::get();
    let mut st = MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is a writable statfs owned by this frame; a bad fd is an error return.
    let rc = unsafe { libc::fstatfs(fd, st.as_mut_ptr()) };
    crate::platform::errno::set(saved);
    if rc != 0 {
        return None;
    }
    // SAFETY: fstatfs succeeded and filled the structure.
    let st = unsafe { st.assume_init() };
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    let f_type = st.f_type as i64;
    (f_type == HUGETLBFS_MAGIC).then_some(st.f_bsize as u64)
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

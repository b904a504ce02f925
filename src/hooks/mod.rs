//! The export list: the twelve functions this library interposes, with libc's prototypes.
//! `semctl` and `mremap` are variadic in C; see `trampoline.rs` for how their optional argument
//! is carried.

#[macro_use]
mod trampoline;
mod calls;
mod traced;
mod vfork;

use core::ffi::{c_int, c_ulong, c_void};
use libc::{key_t, sembuf, shmid_ds, timespec};

export_hooks! {
    fn shmget(key: key_t, size: usize, shmflg: c_int) -> c_int => calls::shmget [3];
    fn shmat(shmid: c_int, shmaddr: *const c_void, shmflg: c_int) -> *mut c_void => calls::shmat [3];
    fn shmdt(shmaddr: *const c_void) -> c_int => calls::shmdt [1];
    fn shmctl(shmid: c_int, cmd: c_int, buf: *mut shmid_ds) -> c_int => calls::shmctl [3];
    fn semget(key: key_t, nsems: c_int, semflg: c_int) -> c_int => calls::semget [3];
    fn semop(semid: c_int, sops: *mut sembuf, nsops: usize) -> c_int => calls::semop [3];
    fn semtimedop(semid: c_int, sops: *mut sembuf, nsops: usize, timeout: *const timespec) -> c_int
        => calls::semtimedop [4];
    fn semctl(semid: c_int, semnum: c_int, cmd: c_int, arg: c_ulong) -> c_int => calls::semctl [4];
    fn mmap(addr: *mut c_void, length: usize, prot: c_int, flags: c_int, fd: c_int, offset: i64)
        -> *mut c_void => calls::mmap [6];
    fn mmap64(addr: *mut c_void, length: usize, prot: c_int, flags: c_int, fd: c_int, offset: i64)
        -> *mut c_void => calls::mmap64 [6];
    fn munmap(addr: *mut c_void, length: usize) -> c_int => calls::munmap [2];
    fn mremap(old_address: *mut c_void, old_size: usize, new_size: usize, flags: c_int,
        new_address: *mut c_void) -> *mut c_void => calls::mremap [5];
}

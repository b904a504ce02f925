//! The hooked functions, each listed once: its C prototype and what differs per function.
//! Everything that enumerates the hooks is generated from this list: `Func` and its
//! properties, the shim's exported entry points and its `dlsym` names, the C header's
//! `SHMTRACE_CALL_*` indexes and `SHMTRACE_FUNCTIONS`, and the command's `--calls` names.

/// Hands the list of hooked functions to the macro `$then`, in export order: the order of
/// `Func`, of the C API's `SHMTRACE_CALL_*` indexes and of the function numbers in binary
/// logs, so a new hook goes at the end.
///
/// An entry is `Variant name(C parameters) -> C return type { properties }`:
/// - `group`: the family `--calls` selects it by ([`Group`](crate::trace::event::Group));
/// - `pointer`: it returns a pointer, so failure is `(void *) -1` rather than `-1`;
/// - `blocks`: it can wait indefinitely, so it gets an enter record before it starts;
/// - `failure` (optional, last): the value that means failure when it is not `-1` or
///   `(void *) -1`, as `SEM_FAILED` (NULL in glibc) for `sem_open`.
///
/// The parameter types are resolved where the list is expanded (the shim imports
/// `core::ffi` and `libc` names); a variadic argument is written as the named integer
/// parameter it travels as (see the shim's trampolines).
#[macro_export]
macro_rules! hook_table {
    ($then:ident) => {
        $then! {
            Shmget shmget(key: key_t, size: usize, shmflg: c_int) -> c_int
                { group: Shm, pointer: false, blocks: false }
            Shmat shmat(shmid: c_int, shmaddr: *const c_void, shmflg: c_int) -> *mut c_void
                { group: Shm, pointer: true, blocks: false }
            Shmdt shmdt(shmaddr: *const c_void) -> c_int
                { group: Shm, pointer: false, blocks: false }
            Shmctl shmctl(shmid: c_int, cmd: c_int, buf: *mut shmid_ds) -> c_int
                { group: Shm, pointer: false, blocks: false }
            Semget semget(key: key_t, nsems: c_int, semflg: c_int) -> c_int
                { group: Sem, pointer: false, blocks: false }
            Semop semop(semid: c_int, sops: *mut sembuf, nsops: usize) -> c_int
                { group: Sem, pointer: false, blocks: true }
            Semtimedop semtimedop(semid: c_int, sops: *mut sembuf, nsops: usize,
                timeout: *const timespec) -> c_int
                { group: Sem, pointer: false, blocks: true }
            Semctl semctl(semid: c_int, semnum: c_int, cmd: c_int, arg: c_ulong) -> c_int
                { group: Sem, pointer: false, blocks: false }
            Mmap mmap(addr: *mut c_void, length: usize, prot: c_int, flags: c_int, fd: c_int,
                offset: i64) -> *mut c_void
                { group: Mmap, pointer: true, blocks: false }
            Mmap64 mmap64(addr: *mut c_void, length: usize, prot: c_int, flags: c_int,
                fd: c_int, offset: i64) -> *mut c_void
                { group: Mmap, pointer: true, blocks: false }
            Munmap munmap(addr: *mut c_void, length: usize) -> c_int
                { group: Mmap, pointer: false, blocks: false }
            Mremap mremap(old_address: *mut c_void, old_size: usize, new_size: usize,
                flags: c_int, new_address: *mut c_void) -> *mut c_void
                { group: Mmap, pointer: true, blocks: false }
            ShmOpen shm_open(name: *const c_char, oflag: c_int, mode: mode_t) -> c_int
                { group: Shm, pointer: false, blocks: false }
            ShmUnlink shm_unlink(name: *const c_char) -> c_int
                { group: Shm, pointer: false, blocks: false }
            MemfdCreate memfd_create(name: *const c_char, flags: c_uint) -> c_int
                { group: Shm, pointer: false, blocks: false }
            SemOpen sem_open(name: *const c_char, oflag: c_int, mode: mode_t, value: c_uint)
                -> *mut sem_t
                { group: Sem, pointer: true, blocks: false, failure: 0 }
            SemClose sem_close(sem: *mut sem_t) -> c_int
                { group: Sem, pointer: false, blocks: false }
            SemUnlink sem_unlink(name: *const c_char) -> c_int
                { group: Sem, pointer: false, blocks: false }
        }
    };
}

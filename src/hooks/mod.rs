//! The export list: every function of the hook table, with libc's prototype. `semctl`,
//! `mremap`, `shm_open` and `sem_open` are variadic in C; see `trampoline.rs` for how their
//! optional arguments are carried.

#[macro_use]
mod trampoline;
mod calls;
mod counted;
mod mapping;
mod traced;
mod vfork;

use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use libc::{key_t, mode_t, msqid_ds, sem_t, sembuf, shmid_ds, timespec};

shmtrace_core::hook_table!(export_hooks);

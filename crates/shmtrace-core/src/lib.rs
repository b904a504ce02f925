//! What the shim (`libshmtrace.so`) and the `shmtrace` command share, so that both read and
//! write the same things the same way: the list of hooked functions (`hook_table`), the event
//! of one call and its text, JSON and binary forms (`trace`), which mappings belong to memory
//! allocators (`allocators`), and the suppression file (`suppress`).
//!
//! Pure: no FFI, no I/O, no global state. The shim calls into it from inside hooks, so the
//! event and format code never allocates.

pub mod allocators;
pub mod hook_table;
pub mod suppress;
pub mod trace;

//! What a call was, and how it reads as text, JSON or binary. No FFI, no I/O. (The `shmtrace`
//! command uses these modules too, so that `shmtrace decode` prints exactly what the shim
//! would have written.)

pub mod binary;
pub mod binary_v4;
pub mod decode;
pub mod errnos;
pub mod event;
pub mod format;
pub mod linebuf;
pub mod start;

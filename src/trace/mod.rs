//! The pure part: what a call was, and how it reads as text, JSON or binary. No FFI, no I/O.
//! (The `shmtrace` command compiles these modules too, to decode binary logs.)

pub mod binary;
pub mod decode;
pub mod errnos;
pub mod event;
pub mod format;
pub mod linebuf;
pub mod start;

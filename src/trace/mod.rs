//! The pure part: what a call was, and how it reads as text or JSON. No FFI, no I/O.

pub mod decode;
pub mod errnos;
pub mod event;
pub mod format;
pub mod linebuf;
pub mod start;

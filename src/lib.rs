//! shmtrace: an LD_PRELOAD shim that logs and audits System V shared memory, semaphores and
//! memory mappings. See README.md for use and `docs/log-format.md` for the log.
//!
//! Layers, each calling only downwards: `hooks` (the export list and the tracked calls) →
//! `trace` (pure: events, decoding, formatting) and `platform` (real symbols, syscalls, errno,
//! environment, log sink, lifecycle). `api` is the C API and uses the same layers.

pub mod api;
// Unit tests run inside a Rust test binary: interposing its mmap would trace the harness.
#[cfg(not(test))]
mod hooks;
pub mod platform;
pub mod trace;

/// Every allocation of this library, std's included, comes from its private heap.
#[cfg(not(test))]
#[global_allocator]
static HEAP: platform::alloc::PrivateHeap = platform::alloc::PrivateHeap::new();

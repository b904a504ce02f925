//! shmtrace: an LD_PRELOAD shim that logs and audits System V shared memory, semaphores and
//! memory mappings. See README.md for use and `docs/log-format.md` for the log.
//!
//! Layers, each calling only downwards: `hooks` (the export list and the tracked calls) and
//! `lifecycle` (constructor, fork, exit) → `recorder` (the process's ledger, the log, the exit
//! report) → `ledger` and `trace` (pure: the model, events, decoding, formatting) and
//! `platform` (real symbols, syscalls, errno, environment, log sink). `api` is the C API.

pub mod api;
pub mod audit;
mod deferred;
// Unit tests run inside a Rust test binary: interposing its mmap (or its exit) would trace
// the harness.
#[cfg(not(test))]
mod hooks;
pub mod ledger;
#[cfg(not(test))]
mod lifecycle;
pub mod platform;
pub mod reach;
pub mod recorder;
mod scan;
pub mod trace;

/// Every allocation of this library, std's included, comes from its private heap.
#[cfg(not(test))]
#[global_allocator]
static HEAP: platform::alloc::PrivateHeap = platform::alloc::PrivateHeap::new();

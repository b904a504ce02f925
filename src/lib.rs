//! shmtrace: an LD_PRELOAD shim that logs and audits System V shared memory, semaphores and
//! memory mappings. See README.md for use and `docs/log-format.md` for the log.
//!
//! Layers, each calling only downwards: `hooks` (the export list and the tracked calls),
//! `lifecycle` (constructor, fork, exit) and `api` (the C API) → `recorder` (the process's
//! ledger, the log, the exit report; it hands the configuration to `audit`) → `audit` and
//! `ledger` (the model) → `platform` (real symbols, syscalls, errno, environment, log sink,
//! the one panic boundary `platform::shield`) → the `shmtrace-core` crate (pure, shared with
//! the command: the hook table, events, decoding, formatting).

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

/// Every allocation of this library, std's included, comes from its private heap.
#[cfg(not(test))]
#[global_allocator]
static HEAP: platform::alloc::PrivateHeap = platform::alloc::PrivateHeap::new();

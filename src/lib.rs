//! shmtrace: an LD_PRELOAD shim that logs and audits System V shared memory, semaphores and
//! memory mappings. See README.md for use and `docs/log-format.md` for the log.

pub mod trace;

//! Everything that touches the process: real symbols, raw syscalls, errno, clocks, the
//! environment, the log descriptor, and the library's lifecycle.

pub mod address_space;
pub mod alloc;
pub mod backtrace;
pub mod clock;
pub mod config;
pub mod errno;
pub mod file_id;
pub mod guard;
pub mod kernel;
pub mod line_log;
pub mod mapped_log;
pub mod maps;
pub mod modules;
pub mod process;
pub mod readable;
pub mod real;
pub mod shield;
pub mod shm_fds;
pub mod shm_name;
pub mod sink;
pub mod spinlock;

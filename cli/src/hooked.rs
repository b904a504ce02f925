//! The functions the shim hooks, by group: what `--calls` accepts, and the order of the call
//! statistics.

pub const GROUPS: [(&str, &[&str]); 3] = [
    ("shm", &["shmget", "shmat", "shmdt", "shmctl"]),
    ("sem", &["semget", "semop", "semtimedop", "semctl"]),
    ("mmap", &["mmap", "mmap64", "munmap", "mremap"]),
];

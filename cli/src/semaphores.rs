//! What the kernel says now of a semaphore and of a thread blocked in `semop`.
//!
//! Read only when a report is made, never during the run: the value of a semaphore
//! (`semctl GETVAL`), and the operations a still-blocked thread waits with, from the system
//! call it sleeps in (`/proc/PID/task/TID/syscall`: its number and arguments) and the
//! `sembuf` array in its memory (`/proc/PID/mem`).

use std::fs;
use std::os::unix::fs::FileExt;

use crate::merge::SemOp;

/// The semaphore's value, or `None` if the set is gone or not readable by us.
pub fn value(semid: i64, num: u16) -> Option<i64> {
    let semid = i32::try_from(semid).ok()?;
    // SAFETY: GETVAL takes no fourth argument and writes no memory of ours.
    let v = unsafe { libc::semctl(semid, i32::from(num), libc::GETVAL) };
    (v >= 0).then_some(i64::from(v))
}

const SEMOP_CALLS: [i64; 2] = [libc::SYS_semop, libc::SYS_semtimedop];

/// The semop or semtimedop thread `tid` of `pid` is in now: (semid, sops, nsops).
pub fn blocked_call(pid: i32, tid: i32) -> Option<(u64, u64, u64)> {
    let syscall = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    parse_syscall(&syscall)
}

/// The operations thread `tid` of `pid` is blocked with, if it sleeps in semop/semtimedop now.
pub fn blocked_ops(pid: i32, tid: i32) -> Option<Vec<SemOp>> {
    let (_, sops, nsops) = blocked_call(pid, tid)?;
    let mem = fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    // The kernel takes at most SEMOPM (500) operations; more would have failed with E2BIG.
    let n = usize::try_from(nsops).ok()?.min(500);
    let mut bytes = vec![0u8; n * 6];
    mem.read_exact_at(&mut bytes, sops).ok()?;
    Some(bytes.chunks_exact(6).map(sembuf).collect())
}

/// `NR arg1 arg2 arg3 ...` (hex arguments): the `semid`, `sops` pointer and `nsops` of a
/// semop or semtimedop.
fn parse_syscall(line: &str) -> Option<(u64, u64, u64)> {
    let mut fields = line.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if !SEMOP_CALLS.contains(&nr) {
        return None;
    }
    let hex = |f: Option<&str>| u64::from_str_radix(f?.trim_start_matches("0x"), 16).ok();
    let semid = hex(fields.next())?;
    let sops = hex(fields.next())?;
    let nsops = hex(fields.next())?;
    Some((semid, sops, nsops))
}

/// `struct sembuf { unsigned short sem_num; short sem_op; short sem_flg; }`, native order.
fn sembuf(b: &[u8]) -> SemOp {
    let flg = i16::from_ne_bytes([b[4], b[5]]);
    SemOp {
        num: u16::from_ne_bytes([b[0], b[1]]),
        op: i16::from_ne_bytes([b[2], b[3]]),
        undo: flg & libc::SEM_UNDO as i16 != 0,
        nowait: flg & libc::IPC_NOWAIT as i16 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_semop_in_progress_gives_its_array_and_count() {
        let line = format!(
            "{} 0x3 0x7ffd1234 0x2 0x0 0x0 0x0 0x7ffd0000 0x7f00\n",
            libc::SYS_semop
        );
        assert_eq!(parse_syscall(&line), Some((3, 0x7ffd1234, 2)));
    }

    #[test]
    fn other_system_calls_and_running_threads_give_nothing() {
        assert_eq!(parse_syscall("0 0x3 0x1 0x2 0x0 0x0 0x0 0x0 0x0"), None);
        assert_eq!(parse_syscall("running"), None);
        assert_eq!(parse_syscall("-1 0x7ffd0000 0x7f00"), None);
    }

    #[test]
    fn sembuf_fields_in_native_order() {
        let mut b = Vec::new();
        b.extend_from_slice(&2u16.to_ne_bytes());
        b.extend_from_slice(&(-1i16).to_ne_bytes());
        b.extend_from_slice(&(libc::SEM_UNDO as i16).to_ne_bytes());
        assert_eq!(
            sembuf(&b),
            SemOp {
                num: 2,
                op: -1,
                undo: true,
                nowait: false
            }
        );
    }
}

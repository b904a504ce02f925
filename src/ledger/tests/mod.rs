//! Ledger tests: one per rule of the kernel semantics in docs/kernel-semantics.md (`rules`), a
//! randomized differential test against a page-level model (`differential`), the report and
//! its rendering (`rendering`), the memory cost of a live mapping (`memory`), and the cost of a
//! cold `munmap` among many live mappings (`scale`, wall time, ignored by default).

mod differential;
mod json;
mod memory;
mod names;
mod objects;
mod queues;
mod reachability;
mod rendering;
mod resync;
mod rules;
mod scale;

use super::{Facts, Ledger, Outcome, RegionKind};
use shmtrace_core::trace::event::{Event, Func, Phase};

pub const PAGE: u64 = 4096;
pub const RW: u64 = (libc::PROT_READ | libc::PROT_WRITE) as u64;
pub const PRIV_ANON: u64 = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
pub const SHARED_ANON: u64 = (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64;
pub const FIXED: u64 = libc::MAP_FIXED as u64;

/// A completed call.
pub fn call(func: Func, args: &[u64], ret: i64, caller: u64) -> Event {
    let mut ev = Event::new(Phase::Exit, func);
    for (slot, &a) in ev.args.iter_mut().zip(args) {
        *slot = a;
    }
    ev.ret = ret;
    ev.caller = caller;
    ev
}

pub fn facts() -> Facts {
    Facts::new(PAGE)
}

/// Thin call wrappers: each applies one successful call as the kernel would report it.
pub trait Calls {
    fn mmap(&mut self, ret: u64, len: u64, flags: u64, site: u64) -> Outcome;
    fn munmap(&mut self, addr: u64, len: u64) -> Outcome;
    fn mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: i32,
        ret: u64,
        site: u64,
    ) -> Outcome;
    fn shmget(&mut self, shmid: i32, key: i32, size: u64, created: bool, site: u64) -> Outcome;
    fn shmat(&mut self, shmid: i32, ret: u64, flags: i32, size: u64, site: u64) -> Outcome;
    fn shmdt(&mut self, addr: u64) -> Outcome;
    fn shmctl_rmid(&mut self, shmid: i32) -> Outcome;
    fn semget(&mut self, semid: i32, key: i32, nsems: u32, created: bool, site: u64) -> Outcome;
    fn semctl_rmid(&mut self, semid: i32) -> Outcome;
}

impl Calls for Ledger {
    fn mmap(&mut self, ret: u64, len: u64, flags: u64, site: u64) -> Outcome {
        let fd = if flags & libc::MAP_ANONYMOUS as u64 != 0 {
            u64::MAX
        } else {
            3
        };
        let ev = call(Func::Mmap, &[ret, len, RW, flags, fd, 0], ret as i64, site);
        self.apply(&ev, &facts())
    }

    fn munmap(&mut self, addr: u64, len: u64) -> Outcome {
        self.apply(&call(Func::Munmap, &[addr, len], 0, 0x1), &facts())
    }

    fn mremap(
        &mut self,
        old: u64,
        old_len: u64,
        new_len: u64,
        flags: i32,
        ret: u64,
        site: u64,
    ) -> Outcome {
        let args = [old, old_len, new_len, flags as u64, ret];
        self.apply(&call(Func::Mremap, &args, ret as i64, site), &facts())
    }

    fn shmget(&mut self, shmid: i32, key: i32, size: u64, created: bool, site: u64) -> Outcome {
        let flags = (libc::IPC_CREAT | 0o600) as u64;
        let ev = call(
            Func::Shmget,
            &[key as u64, size, flags],
            i64::from(shmid),
            site,
        );
        self.apply(&ev, &Facts { created, ..facts() })
    }

    fn shmat(&mut self, shmid: i32, ret: u64, flags: i32, size: u64, site: u64) -> Outcome {
        let ev = call(
            Func::Shmat,
            &[shmid as u64, 0, flags as u64],
            ret as i64,
            site,
        );
        self.apply(
            &ev,
            &Facts {
                segment_size: size,
                ..facts()
            },
        )
    }

    fn shmdt(&mut self, addr: u64) -> Outcome {
        self.apply(&call(Func::Shmdt, &[addr], 0, 0x2), &facts())
    }

    fn shmctl_rmid(&mut self, shmid: i32) -> Outcome {
        let ev = call(
            Func::Shmctl,
            &[shmid as u64, libc::IPC_RMID as u64, 0],
            0,
            0x3,
        );
        self.apply(&ev, &facts())
    }

    fn semget(&mut self, semid: i32, key: i32, nsems: u32, created: bool, site: u64) -> Outcome {
        let flags = (libc::IPC_CREAT | 0o600) as u64;
        let ev = call(
            Func::Semget,
            &[key as u64, u64::from(nsems), flags],
            i64::from(semid),
            site,
        );
        self.apply(&ev, &Facts { created, ..facts() })
    }

    fn semctl_rmid(&mut self, semid: i32) -> Outcome {
        let ev = call(
            Func::Semctl,
            &[semid as u64, 0, libc::IPC_RMID as u64, 0],
            0,
            0x4,
        );
        self.apply(&ev, &facts())
    }
}

/// Live regions as `(start, end, kind, site)`, in address order.
pub fn spans(l: &Ledger) -> Vec<(u64, u64, RegionKind, u64)> {
    l.regions()
        .map(|r| (r.start, r.end, r.kind, r.site))
        .collect()
}

/// Checks the invariants every ledger state must satisfy.
pub fn check_invariants(l: &Ledger) {
    let regions: Vec<_> = l.regions().collect();
    let mut prev_end = 0;
    let mut bytes = 0;
    for r in &regions {
        assert!(r.start < r.end, "empty region {r:?}");
        assert!(r.start >= prev_end, "overlap at {r:?}");
        assert_eq!(r.start % PAGE, 0);
        assert_eq!(r.end % PAGE, 0);
        prev_end = r.end;
        bytes += r.end - r.start;
        assert_eq!(r.kind == RegionKind::Shm, r.attachment.is_some(), "{r:?}");
    }
    let stats = l.stats();
    assert_eq!(stats.bytes_mapped, bytes);
    assert_eq!(stats.mappings, regions.len() as u64);
    assert!(stats.peak_bytes_mapped >= bytes);
    assert_eq!(stats.attachments, l.attachments().count() as u64);
    for a in l.attachments() {
        let pieces: Vec<_> = regions
            .iter()
            .filter(|r| r.attachment == Some(a.id))
            .collect();
        assert!(!pieces.is_empty(), "attachment {a:?} has no piece");
        assert_eq!(a.pieces as usize, pieces.len(), "{a:?}");
        assert_eq!(
            a.mapped,
            pieces.iter().map(|r| r.end - r.start).sum::<u64>()
        );
    }
}

//! The ledger: what this process holds, modelled from the calls it completed, and at exit the
//! report of what it acquired and never released.
//!
//! Pure: no FFI, no syscalls. The hook layer feeds it each completed call ([`Ledger::apply`]
//! with its event, or [`Ledger::apply_call`] with a [`Call`] when it built no event) with the
//! few [`Facts`] only the kernel can tell (did this `shmget` create the segment? how
//! big is the segment being attached?), and at exit asks it for a [`Report`], answering its
//! questions about which objects still exist. The kernel's rules it follows, with the versions
//! that have them, are in `docs/kernel-semantics.md`; where the ledger's view and a successful
//! call disagree, the call wins, because the kernel is the truth and our view can be stale (raw
//! syscalls, glibc internals). Calls that change the address space in ways their result does not
//! tell leave an [`Unsure`] for the hook layer to resolve from the kernel ([`Ledger::resync`]).
//!
//! Concurrency is the caller's business: the ledger is a plain value behind whatever lock the
//! hook layer holds.
//!
//! Cost: `apply` is O(log n) in live mappings per region it touches, and allocates only what its
//! trees need (a node now and then, a site the first time it is seen, an attachment record). A
//! live mapping is one entry of 24 bytes (start; end, site index, packed flags) in the regions'
//! B+tree (`spanmap`); with node overhead that measures 36 to 43 bytes per mapping over a
//! million of them (`tests/memory.rs` prints the figure and fails above 64).
//!
//! What this module cannot know and the hook layer must handle: whether a `shmget`/`semget`
//! created its object and the size of a segment being attached ([`Facts`]); whether an object
//! still exists at report time (the oracle passed to [`Ledger::report`]); not applying events
//! in a vfork child; calling [`Ledger::after_fork_in_child`] in a fork child. Invisible to it:
//! `mprotect` (a region keeps the protection it was mapped with), mappings made without the
//! hooked symbols (their `munmap` returns [`Outcome::UnmappedUnknown`]), and the huge page size
//! of a `SHM_HUGETLB` segment another process created (its attachments are rounded to the base
//! page).

mod attachments;
mod call;
mod ipc;
mod memory;
mod names;
mod objects;
mod origins;
mod queries;
mod regions;
mod render;
mod report;
mod resync;
mod sites;
mod spanmap;
#[cfg(test)]
mod tests;

pub use attachments::Attachment;
pub use call::Call;
pub use memory::Taken;
pub use objects::{MessageQueue, ObjectKind, Segment, SemaphoreSet};
pub use regions::Kind as RegionKind;
pub use render::{write_json, write_text};
pub use report::{
    AttachmentLeak, Candidate, FindingEntry, MappingLeak, NameLeak, OpenSemaphore, QueueLeak,
    Report, Retained, Scanned, SegmentLeak, SemaphoreLeak,
};
pub use resync::{KernelView, KernelVma, Unsure};

use shmtrace_core::trace::event::{Event, Func};

use attachments::Attachments;
pub use names::NameKind;
use names::Names;
use objects::Objects;
use origins::Origins;
use regions::{MAX_EPOCH, Regions};
use sites::Sites;

/// What the hook layer learnt from the kernel about one call, beyond the call's own arguments
/// and result. Build it with [`Facts::new`] and set the fields that apply to the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The base page size (`sysconf(_SC_PAGESIZE)`, read once at start-up): lengths are rounded
    /// up to it. Anything not a power of two is taken as 4096.
    pub page_size: u64,
    /// The default huge page size (`Hugepagesize` in `/proc/meminfo`), used for `MAP_HUGETLB`
    /// and `SHM_HUGETLB` without an explicit `*_HUGE_*` size. 0 means 2 MiB.
    pub huge_page_size: u64,
    /// `shmget`/`semget`: this call created the object (`IPC_PRIVATE`, `IPC_CREAT|IPC_EXCL`, or
    /// `IPC_CREAT` on a key that did not exist). When unsure, leave it false: an object wrongly
    /// thought opened is a missed leak, one wrongly thought created is a false one.
    pub created: bool,
    /// `shmget`: the segment's real size (`shm_segsz` from `IPC_STAT`), which differs from the
    /// requested size when an existing segment is opened; 0 means "use the requested size".
    /// `shmat`: the size of the segment attached (`IPC_STAT`); 0 means "use the size this
    /// ledger knows from `shmget`", and an attachment of unknown size is not tracked.
    pub segment_size: u64,
    /// `semget`: the set's real number of semaphores (`sem_nsems` from `IPC_STAT`), which the
    /// caller may pass as 0 when opening; 0 means "use the requested number".
    pub nsems: u32,
    /// `shm_open`: the inode of the object opened (`fstat`), to tell at exit whether the name
    /// still refers to it; 0 when unknown.
    pub inode: u64,
    /// `mmap` of a file on hugetlbfs: its page size (`f_bsize` from `fstatfs`); 0 otherwise.
    pub file_page_size: u64,
    /// `mmap` of a descriptor `shm_open` or `memfd_create` returned, not named at the call
    /// (calls are not logged): which object it maps is asked of the kernel
    /// (`/proc/self/maps`) only when a report needs it.
    pub object_pending: bool,
    /// `msgctl(IPC_RMID)`: the messages and bytes the queue held just before the call
    /// (`IPC_STAT`), for the audit; `None` otherwise.
    pub queued: Option<(u64, u64)>,
}

impl Facts {
    /// Facts for a call that needs nothing but the page size (the `mmap` family, `shmdt`,
    /// `shmctl`, `semctl`, `semop`).
    pub const fn new(page_size: u64) -> Facts {
        Facts {
            page_size,
            huge_page_size: 0,
            created: false,
            segment_size: 0,
            nsems: 0,
            inode: 0,
            file_page_size: 0,
            object_pending: false,
            queued: None,
        }
    }

    fn page(&self) -> u64 {
        if self.page_size.is_power_of_two() {
            self.page_size
        } else {
            4096
        }
    }

    fn huge_page(&self) -> u64 {
        if self.huge_page_size.is_power_of_two() {
            self.huge_page_size
        } else {
            2 << 20
        }
    }
}

/// What [`Ledger::apply`] made of a call, beyond updating the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An enter record, a failed call, or a call that holds nothing (`semop`, `IPC_STAT`).
    NoEffect,
    /// The model now reflects the call.
    Recorded,
    /// `munmap` or `shmdt` succeeded but released nothing the ledger knew of: the range was
    /// mapped by something it cannot see (glibc internals, raw syscalls) or never mapped.
    UnmappedUnknown,
    /// The call's result overlapped regions the ledger believed live although the call cannot
    /// replace anything (a non-fixed `mmap`, `MAP_FIXED_NOREPLACE`, `shmat` without
    /// `SHM_REMAP`, an `mremap` destination chosen by the kernel): those were already gone
    /// behind the ledger's back and are dropped.
    Stale { bytes: u64 },
    /// `mremap` moved or grew pages the ledger never saw mapped: they are tracked from now on
    /// as [`RegionKind::Unknown`], which is never reported as a leak.
    UnknownSource { bytes: u64 },
    /// `shmctl`/`semctl`/`msgctl(IPC_RMID)` on an object this process never got from a get.
    UnknownObject,
    /// The call succeeded but cannot be modelled: `shmat` of a segment of unknown size, or
    /// more live attachments than the ledger can index (2^24).
    Untracked,
}

/// Live figures for the C API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Live regions, attachment pieces included (a partial `munmap` can leave two).
    pub mappings: u64,
    pub bytes_mapped: u64,
    /// Since start, or since the fork that made this process.
    pub peak_bytes_mapped: u64,
    pub attachments: u64,
    /// Created by this process, not removed by it (whether another process removed them is
    /// only known when the report asks the kernel).
    pub segments: u64,
    pub semaphore_sets: u64,
    /// Completed calls (failed ones included), indexed by `Func as usize`: those applied to
    /// this ledger (the shim counts the calls of [`Ledger::counts_only`] itself).
    pub calls: [u64; Func::COUNT],
    /// `munmap`/`shmdt` calls that released nothing the ledger knew of.
    pub unknown_unmaps: u64,
    /// Bytes dropped because a call showed the ledger's view was stale.
    pub stale_bytes: u64,
    /// Successful calls the ledger could not model.
    pub untracked: u64,
}

/// One live region, as the ledger sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
    pub prot: i32,
    pub shared: bool,
    pub site: u64,
    pub inherited: bool,
    /// For a `RegionKind::Shm` piece, the [`Attachment::id`] it belongs to.
    pub attachment: Option<u64>,
    /// For a `RegionKind::Shm` piece, where offset 0 of its segment would lie: the address
    /// `shmdt` must be given to detach it (the attachment's address unless `mremap` moved it).
    pub origin: Option<u64>,
}

pub struct Ledger {
    regions: Regions,
    attachments: Attachments,
    /// Origins of attachment pieces `mremap` moved or duplicated (empty otherwise).
    origins: Origins,
    objects: Objects,
    names: Names,
    sites: Sites,
    /// What the last call left for the kernel to say (see `resync`).
    unsure: Option<Unsure>,
    calls: [u64; Func::COUNT],
    unknown_unmaps: u64,
    stale_bytes: u64,
    untracked: u64,
    /// Stamped on everything acquired, so a report can be limited to what came after a
    /// checkpoint.
    epoch: u32,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

impl Ledger {
    /// An empty ledger; `const` so it can live in a `static` without lazy initialisation.
    pub const fn new() -> Ledger {
        Ledger {
            regions: Regions::new(),
            attachments: Attachments::new(),
            origins: Origins::new(),
            objects: Objects::new(),
            names: Names::new(),
            sites: Sites::new(),
            unsure: None,
            calls: [0; Func::COUNT],
            unknown_unmaps: 0,
            stale_bytes: 0,
            untracked: 0,
            epoch: 0,
        }
    }

    /// Starts a new epoch and returns it: [`Ledger::report_scoped`] with it as `since` speaks
    /// only of what is acquired from now on. After 2^18 - 1 checkpoints the epoch stays at its
    /// maximum, and later checkpoints include what the last ones did.
    pub fn checkpoint(&mut self) -> u32 {
        self.epoch = (self.epoch + 1).min(MAX_EPOCH);
        self.epoch
    }

    /// Calls the model holds nothing for: [`Ledger::apply`] would only count them, so the hook
    /// layer may count them itself without taking the ledger (whatever their outcome: a failed
    /// one leaves nothing to resynchronise either).
    pub fn counts_only(func: Func) -> bool {
        match func {
            Func::Semop | Func::Semtimedop | Func::MemfdCreate | Func::Msgsnd | Func::Msgrcv => {
                true
            }
            Func::Mmap
            | Func::Mmap64
            | Func::Munmap
            | Func::Mremap
            | Func::Shmat
            | Func::Shmdt
            | Func::Shmget
            | Func::Shmctl
            | Func::Semget
            | Func::Semctl
            | Func::ShmOpen
            | Func::ShmUnlink
            | Func::SemOpen
            | Func::SemClose
            | Func::SemUnlink
            | Func::Msgget
            | Func::Msgctl => false,
        }
    }

    /// Updates the model from one completed call. Enter records and failed calls (`ret == -1`,
    /// which is also `MAP_FAILED`; `SEM_FAILED` for `sem_open`) change nothing but the call
    /// count (enter records not even that).
    pub fn apply(&mut self, ev: &Event, facts: &Facts) -> Outcome {
        match Call::of(ev) {
            Some(call) => self.apply_call(&call, facts),
            None => Outcome::NoEffect,
        }
    }

    /// [`Ledger::apply`] for a completed call. Inlined, so that a hook that knows its function
    /// at compile time keeps only its own arm of the dispatch.
    #[inline(always)]
    pub fn apply_call(&mut self, ev: &Call, facts: &Facts) -> Outcome {
        self.count_call(ev.func);
        if ev.failed() {
            self.note_failure(ev, facts);
            return Outcome::NoEffect;
        }
        let outcome = match ev.func {
            Func::Mmap | Func::Mmap64 => self.on_mmap(ev, facts),
            Func::Munmap => self.on_munmap(ev, facts),
            Func::Mremap => self.on_mremap(ev, facts),
            Func::Shmat => self.on_shmat(ev, facts),
            Func::Shmdt => self.on_shmdt(ev),
            Func::Shmget => self.on_shmget(ev, facts),
            Func::Shmctl => self.on_shmctl(ev),
            Func::Semget => self.on_semget(ev, facts),
            Func::Semctl => self.on_semctl(ev),
            Func::Semop | Func::Semtimedop => Outcome::NoEffect,
            Func::ShmOpen => self.on_name_created(NameKind::Shm, ev, facts),
            Func::ShmUnlink => self.on_name_unlinked(NameKind::Shm, ev),
            Func::SemOpen => self.on_sem_open(ev, facts),
            Func::SemClose => self.on_sem_close(ev),
            Func::SemUnlink => self.on_name_unlinked(NameKind::Sem, ev),
            // A memfd has no name that outlives the process; its mappings are mappings.
            Func::MemfdCreate => Outcome::NoEffect,
            Func::Msgget => self.on_msgget(ev, facts),
            Func::Msgctl => self.on_msgctl(ev),
            Func::Msgsnd | Func::Msgrcv => Outcome::NoEffect,
        };
        match outcome {
            Outcome::UnmappedUnknown => self.unknown_unmaps = self.unknown_unmaps.saturating_add(1),
            Outcome::Untracked => self.untracked = self.untracked.saturating_add(1),
            _ => {}
        }
        outcome
    }

    #[inline(always)]
    fn count_call(&mut self, func: Func) {
        if let Some(n) = self.calls.get_mut(func as usize) {
            *n = n.saturating_add(1);
        }
    }

    /// In a forked child: everything held so far becomes inherited (the parent acquired it), so
    /// the child's report speaks only of what the child acquires itself. Call counts and the
    /// peak restart, since they describe this process.
    ///
    /// Must not allocate: it may run in the child of a multithreaded parent, where another
    /// thread may have held the allocator's lock at `fork` time. It only walks the maps and
    /// flips flags in place.
    pub fn after_fork_in_child(&mut self) {
        self.regions.mark_all_inherited();
        self.attachments.mark_all_inherited();
        self.objects.mark_all_inherited();
        self.names.mark_all_inherited();
        self.regions.reset_peak();
        self.calls = [0; Func::COUNT];
        self.unknown_unmaps = 0;
        self.stale_bytes = 0;
        self.untracked = 0;
    }

    pub fn stats(&self) -> Stats {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Stats {
            mappings: count(self.regions.len()),
            bytes_mapped: self.regions.bytes(),
            peak_bytes_mapped: self.regions.peak(),
            attachments: count(self.attachments.live()),
            segments: count(
                self.objects
                    .segments()
                    .filter(|s| s.is_leak_candidate())
                    .count(),
            ),
            semaphore_sets: count(
                self.objects
                    .sets()
                    .filter(|s| s.is_leak_candidate())
                    .count(),
            ),
            calls: self.calls,
            unknown_unmaps: self.unknown_unmaps,
            stale_bytes: self.stale_bytes,
            untracked: self.untracked,
        }
    }

    /// Live regions in address order.
    pub fn regions(&self) -> impl Iterator<Item = RegionInfo> + '_ {
        self.regions.iter().map(|(start, v)| self.info(start, v))
    }

    /// The live region containing `addr`, if any.
    pub fn region_at(&self, addr: u64) -> Option<RegionInfo> {
        self.regions
            .containing(addr)
            .map(|(start, v)| self.info(start, v))
    }

    /// The attachment a region belongs to.
    pub fn attachment(&self, id: u64) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.id == id)
    }

    fn info(&self, start: u64, v: regions::Val) -> RegionInfo {
        RegionInfo {
            start,
            end: v.end,
            kind: v.meta.kind(),
            prot: v.meta.prot(),
            shared: v.meta.shared(),
            site: self.sites.addr(v.site),
            inherited: v.meta.inherited(),
            attachment: v
                .meta
                .slot()
                .and_then(|slot| self.attachments.get(slot))
                .map(|a| a.id),
            origin: self.origin_of(start, v.meta),
        }
    }

    /// Live attachments, in no particular order.
    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> + '_ {
        self.attachments.iter()
    }

    /// Segments this process got and has not seen go, by shmid.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> + '_ {
        self.objects.segments()
    }

    /// Semaphore sets this process got and has not removed, by semid.
    pub fn semaphore_sets(&self) -> impl Iterator<Item = &SemaphoreSet> + '_ {
        self.objects.sets()
    }

    /// Message queues this process got and has not removed, by msqid.
    pub fn message_queues(&self) -> impl Iterator<Item = &MessageQueue> + '_ {
        self.objects.queues()
    }
}

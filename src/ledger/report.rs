//! The leak report: what this process acquired itself and never released.
//!
//! Built at exit (or on demand through the C API), so it may allocate. Sections come in order
//! of harm: objects that outlive the process in the kernel, then attachments and mappings,
//! which exit releases silently but which show a missing cleanup. Attachments and mappings are
//! lost (nothing points at them any more) or still reachable (listed apart, leaks only when the
//! user asks), as the caller's pointer scan decides.

use std::collections::BTreeMap;

use super::regions::Kind;
use super::{Ledger, NameKind, ObjectKind};
use shmtrace_core::trace::event::{Name, Stack};

/// A segment this process created, never removed, and the kernel still has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLeak {
    pub shmid: i32,
    pub key: i32,
    pub size: u64,
    pub site: u64,
    /// The frames above `site` when `SHMTRACE_STACK` recorded them.
    pub stack: Stack,
}

/// A semaphore set this process created, never removed, and the kernel still has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemaphoreLeak {
    pub semid: i32,
    pub key: i32,
    pub nsems: u32,
    pub site: u64,
    pub stack: Stack,
}

/// A message queue this process created, never removed, and the kernel still has, with what
/// it still holds (`IPC_STAT` at report time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLeak {
    pub msqid: i32,
    pub key: i32,
    /// Messages still queued (`msg_qnum`).
    pub messages: u64,
    /// Bytes of message text still queued (`msg_cbytes`).
    pub bytes: u64,
    pub site: u64,
    pub stack: Stack,
}

/// A POSIX shared memory or semaphore name this process created, never unlinked, and
/// `/dev/shm` still has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameLeak {
    pub kind: NameKind,
    /// As `shm_open` or `sem_open` was given it (`/NAME`).
    pub name: Name,
    pub site: u64,
    pub stack: Stack,
}

impl NameLeak {
    /// Where glibc keeps it: `/dev/shm/NAME`, or `/dev/shm/sem.NAME` for a semaphore (bytes
    /// outside printable ASCII escaped).
    pub fn path(&self) -> String {
        let name = self.name.as_bytes().escape_ascii().to_string();
        let prefix = self.kind.file_prefix();
        format!("/dev/shm/{prefix}{}", name.trim_start_matches('/'))
    }
}

/// A named semaphore this process opened and never closed (as often as it opened it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenSemaphore {
    /// The address `sem_open` returned.
    pub addr: u64,
    /// `sem_open` calls not matched by a `sem_close`.
    pub opens: u64,
    /// The first `sem_open`.
    pub site: u64,
}

/// An attachment this process made and never detached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentLeak {
    pub shmid: i32,
    /// The address `shmat` returned (what `shmdt` needs).
    pub addr: u64,
    /// The attached size, page-rounded.
    pub size: u64,
    /// How much of it is still mapped (less than `size` after a partial `munmap`).
    pub mapped: u64,
    pub readonly: bool,
    pub site: u64,
    pub stack: Stack,
}

/// The mappings one call site made and never unmapped. With `SHMTRACE_STACK`, a call site
/// reached through different stacks is that many entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MappingLeak {
    pub site: u64,
    pub stack: Stack,
    /// The shared memory object mapped (`/dev/shm/NAME`, `memfd:NAME`); empty for anonymous
    /// memory and other files. One site mapping two objects is two entries.
    pub object: Name,
    /// Live regions: a mapping split by a partial `munmap` counts as two, as in
    /// `/proc/self/maps`.
    pub count: u64,
    pub bytes: u64,
}

/// Mappings left at exit by a memory allocator's own calls (a call site, or with
/// `SHMTRACE_STACK` any recorded frame, inside the allocator's module): address space it keeps
/// for reuse, shown apart and not counted as leaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retained {
    /// The allocator's file, as `/proc/self/maps` names it.
    pub module: String,
    pub count: u64,
    pub bytes: u64,
}

/// One audit finding of this process, by code and call site (filled in by the audit layer;
/// the ledger finds none itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindingEntry {
    /// `SHM001`..
    pub code: &'static str,
    pub name: &'static str,
    /// `error`, `warning` or `info`.
    pub severity: &'static str,
    pub error: bool,
    /// The call that showed it.
    pub func: &'static str,
    pub site: u64,
    /// Times it happened at this site.
    pub count: u64,
    /// The first occurrence's explanation.
    pub message: String,
}

/// A live region the report would list, for the pointer scan to classify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub start: u64,
    pub end: u64,
    pub site: u64,
    pub stack: Stack,
}

/// What the pointer scan read and how long it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub bytes: u64,
    pub nanos: u64,
}

/// Segments and sets by id, attachments by address, mappings by bytes (largest first, then
/// by site); findings errors first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub segments: Vec<SegmentLeak>,
    pub semaphores: Vec<SemaphoreLeak>,
    /// Filled by the caller of [`Ledger::report`] from [`Ledger::queues_left`].
    pub queues: Vec<QueueLeak>,
    /// Filled by the caller of [`Ledger::report`] from [`Ledger::names_left`].
    pub names: Vec<NameLeak>,
    /// Lost attachments: nothing in the process points into them.
    pub attachments: Vec<AttachmentLeak>,
    /// Lost mappings.
    pub mappings: Vec<MappingLeak>,
    /// Attachments and mappings something still points into: exit releases them and nothing
    /// is lost, so they count only with `count_reachable`.
    pub reachable_attachments: Vec<AttachmentLeak>,
    pub reachable: Vec<MappingLeak>,
    /// `SHMTRACE_LEAKS=all`: still reachable ones are leaks too.
    pub count_reachable: bool,
    /// The scan that told lost from reachable; `None` when none ran (everything is lost).
    pub scanned: Option<Scanned>,
    /// Mappings set aside as an allocator's (largest first); not in `mappings`, not leaks.
    pub retained: Vec<Retained>,
    pub findings: Vec<FindingEntry>,
    /// Findings by severity (error, warning, info), each occurrence, including those beyond
    /// the distinct ones listed.
    pub finding_totals: [u64; 3],
}

impl Report {
    /// No leak and no error finding (what `SHMTRACE_EXITCODE` asks).
    pub fn is_clean(&self) -> bool {
        self.leaks() == 0 && self.finding_totals[0] == 0
    }

    pub fn has_findings(&self) -> bool {
        self.finding_totals.iter().any(|&n| n > 0)
    }

    /// Leaked things: each segment, set and lost attachment, and each lost mapping (not each
    /// site); the still reachable ones too with `count_reachable`.
    pub fn leaks(&self) -> u64 {
        let n = |len: usize| u64::try_from(len).unwrap_or(u64::MAX);
        let lost = n(self.segments.len())
            .saturating_add(n(self.semaphores.len()))
            .saturating_add(n(self.queues.len()))
            .saturating_add(n(self.names.len()))
            .saturating_add(n(self.attachments.len()))
            .saturating_add(self.mapping_count());
        if self.count_reachable {
            lost.saturating_add(self.reachable_count())
        } else {
            lost
        }
    }

    pub fn mapping_count(&self) -> u64 {
        count(&self.mappings)
    }

    pub fn mapping_bytes(&self) -> u64 {
        bytes(&self.mappings)
    }

    /// Still reachable attachments and mappings (each mapping, not each site).
    pub fn reachable_count(&self) -> u64 {
        let n = u64::try_from(self.reachable_attachments.len()).unwrap_or(u64::MAX);
        n.saturating_add(count(&self.reachable))
    }

    pub fn reachable_bytes(&self) -> u64 {
        self.reachable_attachments
            .iter()
            .fold(bytes(&self.reachable), |n, a| n.saturating_add(a.mapped))
    }

    /// Moves the mappings an allocator made out of the leaks, grouped by module. `allocator`
    /// names the allocator module an address (a return address) lies in, if any; the call
    /// site is asked first, then the recorded frames innermost first.
    pub fn set_aside_retained<'a>(&mut self, allocator: impl Fn(u64) -> Option<&'a str>) {
        let mut groups: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let mut set_aside = |m: &MappingLeak| {
            let owner = core::iter::once(m.site)
                .chain(m.stack.as_slice().iter().copied())
                .find_map(&allocator);
            let Some(module) = owner else {
                return true;
            };
            let g = groups.entry(module).or_default();
            g.0 = g.0.saturating_add(m.count);
            g.1 = g.1.saturating_add(m.bytes);
            false
        };
        self.mappings.retain(&mut set_aside);
        self.reachable.retain(&mut set_aside);
        for (module, (count, bytes)) in groups {
            match self.retained.iter_mut().find(|r| r.module == module) {
                Some(r) => {
                    r.count = r.count.saturating_add(count);
                    r.bytes = r.bytes.saturating_add(bytes);
                }
                None => self.retained.push(Retained {
                    module: module.to_string(),
                    count,
                    bytes,
                }),
            }
        }
        self.retained
            .sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.module.cmp(&b.module)));
    }

    pub fn retained_count(&self) -> u64 {
        self.retained
            .iter()
            .fold(0u64, |n, r| n.saturating_add(r.count))
    }

    pub fn retained_bytes(&self) -> u64 {
        self.retained
            .iter()
            .fold(0u64, |n, r| n.saturating_add(r.bytes))
    }
}

/// A call site's address, its stack id and the object its mappings map (empty for none).
type SiteObject = (u64, u32, Vec<u8>);

fn count(mappings: &[MappingLeak]) -> u64 {
    mappings.iter().fold(0u64, |n, m| n.saturating_add(m.count))
}

fn bytes(mappings: &[MappingLeak]) -> u64 {
    mappings.iter().fold(0u64, |n, m| n.saturating_add(m.bytes))
}

impl Ledger {
    pub(super) fn stack(&self, id: u32) -> Stack {
        Stack::from_slice(self.sites.stack(id))
    }

    /// The report of what this process acquired and still holds, every attachment and mapping
    /// counted as lost. `alive` is the kernel oracle: asked only about objects this process
    /// created and never removed, it says whether the object still exists (`IPC_STAT` succeeds
    /// and, for a segment, `SHM_DEST` is not set, since another process may have removed it
    /// while this one still has it attached).
    pub fn report(&self, alive: impl Fn(ObjectKind, i32) -> bool) -> Report {
        self.report_scoped(alive, 0, |_| true)
    }

    /// The message queues this process created in epoch `since` or later and never removed
    /// that the kernel still has, by msqid. `stat` asks the kernel (`IPC_STAT`): `None` when
    /// the queue is gone, else the messages and bytes it still holds.
    pub fn queues_left(
        &self,
        since: u32,
        stat: impl Fn(i32) -> Option<(u64, u64)>,
    ) -> Vec<QueueLeak> {
        self.objects
            .queues()
            .filter(|q| q.epoch >= since && q.is_leak_candidate())
            .filter_map(|q| {
                let (messages, bytes) = stat(q.msqid)?;
                Some(QueueLeak {
                    msqid: q.msqid,
                    key: q.key,
                    messages,
                    bytes,
                    site: q.site,
                    stack: self.stack(q.stack),
                })
            })
            .collect()
    }

    /// The regions the report would list as attachments or mappings, in address order: what
    /// a pointer scan must classify.
    pub fn leak_candidates(&self) -> Vec<Candidate> {
        self.regions
            .iter()
            .filter(|(_, v)| self.is_candidate(v))
            .map(|(start, v)| Candidate {
                start,
                end: v.end,
                site: self.sites.addr(v.site),
                stack: self.stack(self.sites.stack_of(v.site)),
            })
            .collect()
    }

    fn is_candidate(&self, v: &super::regions::Val) -> bool {
        match v.meta.kind() {
            Kind::Unknown => false,
            Kind::Shm => v
                .meta
                .slot()
                .and_then(|slot| self.attachments.get(slot))
                .is_some_and(|a| !a.inherited),
            Kind::Anon | Kind::File => !v.meta.inherited(),
        }
    }

    /// [`Ledger::report`] limited to what was acquired in epoch `since` or later (see
    /// [`Ledger::checkpoint`]; 0 is everything), with attachments and mappings split by `lost`:
    /// asked about the start of each live region, it says whether the scan found nothing
    /// pointing into it. An attachment is lost when all its pieces are. Mappings whose object
    /// is pending get no name (see [`Ledger::report_named`]).
    pub fn report_scoped(
        &self,
        alive: impl Fn(ObjectKind, i32) -> bool,
        since: u32,
        lost: impl Fn(u64) -> bool,
    ) -> Report {
        self.report_named(alive, since, lost, |_| Name::new())
    }

    /// Whether some mapping's object is pending: only then does [`Ledger::report_named`] need
    /// names from the kernel.
    pub fn names_pending(&self) -> bool {
        self.sites.any_pending()
    }

    /// [`Ledger::report_scoped`], asking `object_at` the object a live mapping whose object is
    /// pending maps, by the mapping's start (the kernel's `/proc/self/maps` is the oracle: an
    /// empty name when it shows no shared memory object there). Such mappings of one site are
    /// as many entries as the objects they turn out to map.
    pub fn report_named(
        &self,
        alive: impl Fn(ObjectKind, i32) -> bool,
        since: u32,
        lost: impl Fn(u64) -> bool,
        object_at: impl Fn(u64) -> Name,
    ) -> Report {
        let segments = self
            .objects
            .segments()
            .filter(|s| s.epoch >= since && s.is_leak_candidate())
            .filter(|s| alive(ObjectKind::Segment, s.shmid))
            .map(|s| SegmentLeak {
                shmid: s.shmid,
                key: s.key,
                size: s.size,
                site: s.site,
                stack: self.stack(s.stack),
            })
            .collect();
        let semaphores = self
            .objects
            .sets()
            .filter(|s| s.epoch >= since && s.is_leak_candidate())
            .filter(|s| alive(ObjectKind::SemaphoreSet, s.semid))
            .map(|s| SemaphoreLeak {
                semid: s.semid,
                key: s.key,
                nsems: s.nsems,
                site: s.site,
                stack: self.stack(s.stack),
            })
            .collect();

        // Attachment ids with a piece something points into.
        let mut reached: Vec<u64> = Vec::new();
        // Per call site, stack and object: (count, bytes) lost, then still reachable. A site
        // whose object was pending and one that named it the same are one entry.
        let mut by_site: BTreeMap<SiteObject, [(u64, u64); 2]> = BTreeMap::new();
        for (start, v) in self.regions.iter() {
            if !self.is_candidate(&v) {
                continue;
            }
            let is_lost = lost(start);
            if let Some(a) = v.meta.slot().and_then(|slot| self.attachments.get(slot)) {
                if !is_lost {
                    reached.push(a.id);
                }
                continue;
            }
            if v.meta.epoch() < since {
                continue;
            }
            let object = if self.sites.object_pending(v.site) {
                object_at(start).as_bytes().to_vec()
            } else {
                self.sites.object_of(v.site).to_vec()
            };
            let key = (self.sites.addr(v.site), self.sites.stack_of(v.site), object);
            let e = &mut by_site.entry(key).or_default()[usize::from(!is_lost)];
            e.0 = e.0.saturating_add(1);
            e.1 = e.1.saturating_add(v.end.saturating_sub(start));
        }

        let (mut attachments, mut reachable_attachments) = (Vec::new(), Vec::new());
        for a in self.attachments.iter() {
            if a.inherited || a.epoch < since {
                continue;
            }
            let leak = AttachmentLeak {
                shmid: a.shmid,
                addr: a.addr,
                size: a.size,
                mapped: a.mapped,
                readonly: a.readonly,
                site: a.site,
                stack: self.stack(a.stack),
            };
            if reached.contains(&a.id) {
                reachable_attachments.push(leak);
            } else {
                attachments.push(leak);
            }
        }
        attachments.sort_by_key(|a| (a.addr, a.shmid));
        reachable_attachments.sort_by_key(|a| (a.addr, a.shmid));

        let group = |which: usize| -> Vec<MappingLeak> {
            let mut out: Vec<MappingLeak> = by_site
                .iter()
                .map(|(key, groups)| (key, groups[which]))
                .filter(|(_, (count, _))| *count > 0)
                .map(|((site, stack, object), (count, bytes))| MappingLeak {
                    site: *site,
                    stack: self.stack(*stack),
                    object: Name::from_bytes(object),
                    count,
                    bytes,
                })
                .collect();
            out.sort_by(|a, b| {
                b.bytes
                    .cmp(&a.bytes)
                    .then(a.site.cmp(&b.site))
                    .then_with(|| a.stack.as_slice().cmp(b.stack.as_slice()))
                    .then_with(|| a.object.as_bytes().cmp(b.object.as_bytes()))
            });
            out
        };

        Report {
            segments,
            semaphores,
            names: Vec::new(),
            attachments,
            mappings: group(0),
            reachable_attachments,
            reachable: group(1),
            ..Report::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(site: u64, stack: &[u64], count: u64, bytes: u64) -> MappingLeak {
        MappingLeak {
            site,
            stack: Stack::from_slice(stack),
            object: Name::new(),
            count,
            bytes,
        }
    }

    /// jemalloc's text at 0x7f00_0000_0000.., the program's at 0x5500_0000_0000..
    fn owner(addr: u64) -> Option<&'static str> {
        (0x7f00_0000_0000..0x7f00_0010_0000)
            .contains(&addr)
            .then_some("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    }

    #[test]
    fn an_allocators_mappings_are_retained_not_leaks() {
        let mut report = Report {
            mappings: vec![
                mapping(0x7f00_0000_4b5a, &[], 3, 8 << 20),
                mapping(0x5500_0000_1234, &[], 1, 4096),
                // Reached through jemalloc (its frame above a wrapper in the program).
                mapping(
                    0x5500_0000_2000,
                    &[0x7f00_0000_9000, 0x5500_0000_3000],
                    2,
                    1 << 20,
                ),
                // The program called by jemalloc? No: only frames decide, and none is there.
                mapping(0x5500_0000_4000, &[0x5500_0000_5000], 1, 8192),
            ],
            ..Report::default()
        };
        assert_eq!(report.leaks(), 7);
        report.set_aside_retained(owner);
        assert_eq!(
            report.retained,
            vec![Retained {
                module: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".into(),
                count: 5,
                bytes: (8 << 20) + (1 << 20),
            }]
        );
        assert_eq!(report.leaks(), 2, "the program's own two remain");
        assert_eq!(report.mapping_bytes(), 4096 + 8192);
        assert_eq!(
            (report.retained_count(), report.retained_bytes()),
            (5, 9 << 20)
        );
        assert!(!report.is_clean());

        report
            .mappings
            .retain(|m| m.site != 0x5500_0000_1234 && m.site != 0x5500_0000_4000);
        assert!(report.is_clean(), "retained mappings alone are clean");
    }

    #[test]
    fn without_allocators_nothing_moves() {
        let mut report = Report {
            mappings: vec![mapping(0x7f00_0000_4b5a, &[], 3, 8 << 20)],
            ..Report::default()
        };
        let before = report.clone();
        report.set_aside_retained(|_| None);
        assert_eq!(report, before);
        assert!(!report.is_clean());
    }
}

//! The C API declared in `include/shmtrace.h`, in the manner of rustls-ffi: stable numbered
//! result codes, NULL checks, and nothing unwinds across the boundary. Every function may be
//! called at any time from any thread, before or after the shim's constructor, but not from a
//! signal handler (they take the ledger's lock).

use core::ffi::{c_char, c_int, c_void};

use crate::ledger::RegionKind;
use crate::platform::shield::{self, shield};
use crate::platform::{address_space, alloc, guard::Guard, sink};
use crate::recorder;
use crate::scan::StackRoots;
use shmtrace_core::trace::event::Func;
use shmtrace_core::trace::format::Format;

/// Result codes of the `shmtrace_*` functions. The numbers are stable.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum shmtrace_result {
    SHMTRACE_OK = 0,
    /// A required pointer argument was NULL.
    SHMTRACE_NULL_ARGUMENT = 1,
    /// Nothing matched (`shmtrace_mapping_at`: no live mapping the shim knows of there).
    SHMTRACE_NOT_FOUND = 2,
    /// Writing to the file descriptor failed (see errno).
    SHMTRACE_IO_ERROR = 3,
    /// An argument was out of range (an unknown format).
    SHMTRACE_INVALID_ARGUMENT = 4,
    /// The shim failed internally; nothing was done.
    SHMTRACE_INTERNAL_ERROR = 5,
}

use shmtrace_result::*;

/// `format` values for `shmtrace_write_report`.
pub const SHMTRACE_FORMAT_TEXT: c_int = 0;
pub const SHMTRACE_FORMAT_JSON: c_int = 1;

/// The number of hooked functions. The header's `#define` (and the `SHMTRACE_CALL_*` indexes
/// into `shmtrace_stats.calls`) are written by build.rs from the hook table.
pub const SHMTRACE_FUNCTIONS: usize = Func::COUNT;

/// `shmtrace_mapping.kind` values.
pub const SHMTRACE_MAPPING_ANONYMOUS: c_int = 0;
pub const SHMTRACE_MAPPING_FILE: c_int = 1;
/// A piece of a System V shared-memory attachment (`shmat`).
pub const SHMTRACE_MAPPING_SHM: c_int = 2;
/// Pages an `mremap` brought in from a range the shim never saw mapped.
pub const SHMTRACE_MAPPING_UNKNOWN: c_int = 3;

/// What the ledger holds now, for this process.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmtrace_stats {
    /// Live mappings (an attachment split by a partial munmap counts once per piece).
    pub mappings: u64,
    pub bytes_mapped: u64,
    /// The most bytes mapped at once, since start or since the fork that made this process.
    pub peak_bytes_mapped: u64,
    /// Live shmat attachments.
    pub attachments: u64,
    /// Segments and semaphore sets this process created and has not removed.
    pub segments: u64,
    pub semaphore_sets: u64,
    /// Completed calls per function (failed ones included), indexed by `SHMTRACE_CALL_*`.
    pub calls: [u64; SHMTRACE_FUNCTIONS],
    /// munmap/shmdt calls that released nothing the shim knew of.
    pub unknown_unmaps: u64,
    /// Successful calls the ledger could not model (e.g. shmat of a segment of unknown size), or
    /// could not keep while another thread was forking (more than 262144 during one fork).
    pub untracked: u64,
    /// Failures inside the shim (a hooked call's bookkeeping: the call was still forwarded; or
    /// an API call, the lifecycle's work at start, fork or exit).
    pub internal_failures: u64,
    /// Memory the shim itself holds from the kernel, in bytes.
    pub shim_heap_bytes: u64,
}

/// One live mapping as the shim's ledger sees it.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug)]
pub struct shmtrace_mapping {
    /// `[start, end)`, page-aligned.
    pub start: usize,
    pub end: usize,
    /// `PROT_*` as mapped (mprotect is not tracked).
    pub prot: c_int,
    /// `SHMTRACE_MAPPING_*`.
    pub kind: c_int,
    /// The shmid for `SHMTRACE_MAPPING_SHM`, else -1.
    pub shmid: c_int,
    /// MAP_SHARED (or an attachment).
    pub shared: bool,
    /// Made before the fork that created this process (the parent's).
    pub inherited: bool,
    /// Return address of the call that created it.
    pub site: usize,
}

/// Runs `work` with the re-entrancy guard held, inside the panic boundary.
fn boundary<T>(on_panic: T, work: impl FnOnce() -> T) -> T {
    let _guard = Guard::enter();
    shield(work).unwrap_or(on_panic)
}

/// `boundary` for the functions that scan memory for pointers: the caller's registers and
/// frames are roots of the scan, the shim's own frames below them are not.
fn scanning_boundary<T>(on_panic: T, work: impl FnOnce(StackRoots) -> T) -> T {
    address_space::with_registers_on_stack(|low| boundary(on_panic, || work(StackRoots::From(low))))
}

/// The library's version, `MAJOR.MINOR.PATCH`, as a static NUL-terminated string.
///
/// Compare it with the header's `SHMTRACE_VERSION` to detect a header/library mismatch.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Fills `*out` with the ledger's live figures.
///
/// Returns SHMTRACE_NULL_ARGUMENT if `out` is NULL.
///
/// # Safety
/// `out` is NULL or points to writable memory for one `shmtrace_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmtrace_get_stats(out: *mut shmtrace_stats) -> shmtrace_result {
    if out.is_null() {
        return SHMTRACE_NULL_ARGUMENT;
    }
    boundary(SHMTRACE_INTERNAL_ERROR, || {
        let s = recorder::stats();
        let stats = shmtrace_stats {
            mappings: s.mappings,
            bytes_mapped: s.bytes_mapped,
            peak_bytes_mapped: s.peak_bytes_mapped,
            attachments: s.attachments,
            segments: s.segments,
            semaphore_sets: s.semaphore_sets,
            calls: s.calls,
            unknown_unmaps: s.unknown_unmaps,
            untracked: s.untracked + crate::deferred::overflowed(),
            internal_failures: shield::failures(),
            shim_heap_bytes: alloc::mapped_bytes(),
        };
        // SAFETY: `out` is non-NULL and, per the header, points to a writable shmtrace_stats.
        unsafe { out.write(stats) };
        SHMTRACE_OK
    })
}

/// Looks up the live mapping containing `addr` and fills `*out`.
///
/// Returns SHMTRACE_NOT_FOUND when the shim knows no live mapping there (memory mapped by
/// glibc itself, by raw syscalls, or before the shim was loaded is invisible to it), and
/// SHMTRACE_NULL_ARGUMENT if `out` is NULL. `addr` is only compared, never read.
///
/// # Safety
/// `out` is NULL or points to writable memory for one `shmtrace_mapping`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmtrace_mapping_at(
    addr: *const c_void,
    out: *mut shmtrace_mapping,
) -> shmtrace_result {
    if out.is_null() {
        return SHMTRACE_NULL_ARGUMENT;
    }
    boundary(SHMTRACE_INTERNAL_ERROR, || {
        let found = recorder::with_ledger(|ledger| {
            let region = ledger.region_at(addr as u64)?;
            let shmid = region
                .attachment
                .and_then(|id| ledger.attachment(id))
                .map_or(-1, |a| a.shmid);
            Some(shmtrace_mapping {
                start: region.start as usize,
                end: region.end as usize,
                prot: region.prot,
                kind: match region.kind {
                    RegionKind::Anon => SHMTRACE_MAPPING_ANONYMOUS,
                    RegionKind::File => SHMTRACE_MAPPING_FILE,
                    RegionKind::Shm => SHMTRACE_MAPPING_SHM,
                    RegionKind::Unknown => SHMTRACE_MAPPING_UNKNOWN,
                },
                shmid,
                shared: region.shared,
                inherited: region.inherited,
                site: region.site as usize,
            })
        });
        match found {
            Some(mapping) => {
                // SAFETY: `out` is non-NULL and, per the header, points to a writable
                // shmtrace_mapping.
                unsafe { out.write(mapping) };
                SHMTRACE_OK
            }
            None => SHMTRACE_NOT_FOUND,
        }
    })
}

/// The number of live attachments of segment `shmid` in this process, or -1 on an internal
/// failure. It equals the kernel's `shm_nattch` only when no other process attaches the
/// segment and no attachment was split (a partial munmap or MAP_FIXED inside one): the kernel
/// counts mapped pieces, this counts `shmat` calls not yet undone.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_attachments_of(shmid: c_int) -> i64 {
    boundary(-1, || {
        let n = recorder::with_ledger(|l| l.attachments().filter(|a| a.shmid == shmid).count());
        i64::try_from(n).unwrap_or(i64::MAX)
    })
}

/// The number of leaks the exit report would name if the process ended now: segments and
/// semaphore sets created here, never removed and still in the kernel, and attachments never
/// detached and mappings never unmapped that nothing points into any more (with
/// SHMTRACE_LEAKS=all, those still pointed into too). -1 on an internal failure.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_leak_count() -> i64 {
    scanning_boundary(-1, |stack| {
        i64::try_from(recorder::report_now(stack).leaks()).unwrap_or(i64::MAX)
    })
}

/// Writes the report as of now to file descriptor `fd`, in `SHMTRACE_FORMAT_TEXT` or
/// `SHMTRACE_FORMAT_JSON`. The report at exit is still written as usual.
///
/// Returns SHMTRACE_INVALID_ARGUMENT for another format, SHMTRACE_IO_ERROR if the write
/// failed.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_write_report(fd: c_int, format: c_int) -> shmtrace_result {
    let format = match format {
        SHMTRACE_FORMAT_TEXT => Format::Text,
        SHMTRACE_FORMAT_JSON => Format::Json,
        _ => return SHMTRACE_INVALID_ARGUMENT,
    };
    scanning_boundary(SHMTRACE_INTERNAL_ERROR, |stack| {
        let mut text = String::new();
        recorder::write_report(&mut text, format, stack);
        if sink::write_fd(fd, text.as_bytes()) {
            SHMTRACE_OK
        } else {
            SHMTRACE_IO_ERROR
        }
    })
}

/// Call sites `shmtrace_leak_summary` names at most.
pub const SHMTRACE_SUMMARY_SITES: usize = 8;

/// What was acquired after a checkpoint and is still held (see `shmtrace_leaks_since`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default)]
pub struct shmtrace_leak_summary {
    /// The leaks as the exit verdict counts them: segments and semaphore sets still in the
    /// kernel, lost attachments and mappings, and with SHMTRACE_LEAKS=all the still
    /// reachable ones too.
    pub leaks: u64,
    pub segments: u64,
    pub semaphore_sets: u64,
    /// Attachments and mappings nothing in the process points into any more.
    pub lost_attachments: u64,
    pub lost_mappings: u64,
    pub lost_bytes: u64,
    /// Attachments and mappings something still points into.
    pub reachable_attachments: u64,
    pub reachable_mappings: u64,
    pub reachable_bytes: u64,
    /// Return addresses of the calls that acquired the leaks counted, in report order (at
    /// most `SHMTRACE_SUMMARY_SITES`; `dladdr` or addr2line names them).
    pub sites: [usize; SHMTRACE_SUMMARY_SITES],
    pub site_count: u32,
}

/// Starts a checkpoint and returns it: `shmtrace_leaks_since` with it speaks only of what the
/// process acquires from now on (0 on an internal failure, which is "since the start"). For a
/// test harness: take one before each test case, ask after it.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_checkpoint() -> u64 {
    boundary(0, || u64::from(recorder::checkpoint()))
}

/// Fills `*out` with what was acquired after `checkpoint` (from `shmtrace_checkpoint`; 0 means
/// since the start) and is still held, attachments and mappings told lost or still reachable
/// by a scan of the process's memory (the caller's locals count as references).
///
/// Returns SHMTRACE_NULL_ARGUMENT if `out` is NULL.
///
/// # Safety
/// `out` is NULL or points to writable memory for one `shmtrace_leak_summary`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn shmtrace_leaks_since(
    checkpoint: u64,
    out: *mut shmtrace_leak_summary,
) -> shmtrace_result {
    if out.is_null() {
        return SHMTRACE_NULL_ARGUMENT;
    }
    scanning_boundary(SHMTRACE_INTERNAL_ERROR, |stack| {
        let since = u32::try_from(checkpoint).unwrap_or(u32::MAX);
        let r = recorder::report_since(since, stack);
        let n = |len: usize| u64::try_from(len).unwrap_or(u64::MAX);
        let mut summary = shmtrace_leak_summary {
            leaks: r.leaks(),
            segments: n(r.segments.len()),
            semaphore_sets: n(r.semaphores.len()),
            lost_attachments: n(r.attachments.len()),
            lost_mappings: r.mapping_count(),
            lost_bytes: r
                .attachments
                .iter()
                .fold(r.mapping_bytes(), |b, a| b.saturating_add(a.mapped)),
            reachable_attachments: n(r.reachable_attachments.len()),
            reachable_mappings: r.reachable_count() - n(r.reachable_attachments.len()),
            reachable_bytes: r.reachable_bytes(),
            ..shmtrace_leak_summary::default()
        };
        let mut sites: Vec<u64> = r.segments.iter().map(|s| s.site).collect();
        sites.extend(r.semaphores.iter().map(|s| s.site));
        sites.extend(r.attachments.iter().map(|a| a.site));
        sites.extend(r.mappings.iter().map(|m| m.site));
        if r.count_reachable {
            sites.extend(r.reachable_attachments.iter().map(|a| a.site));
            sites.extend(r.reachable.iter().map(|m| m.site));
        }
        for (slot, site) in summary.sites.iter_mut().zip(sites) {
            *slot = site as usize;
            summary.site_count += 1;
        }
        // SAFETY: `out` is non-NULL and, per the header, points to a writable
        // shmtrace_leak_summary.
        unsafe { out.write(summary) };
        SHMTRACE_OK
    })
}

/// Writes the report of what was acquired after `checkpoint` and is still held to file
/// descriptor `fd`, as `shmtrace_write_report` does for the whole process (findings aside).
///
/// Returns SHMTRACE_INVALID_ARGUMENT for an unknown format, SHMTRACE_IO_ERROR if the write
/// failed.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_write_leaks_since(
    checkpoint: u64,
    fd: c_int,
    format: c_int,
) -> shmtrace_result {
    let format = match format {
        SHMTRACE_FORMAT_TEXT => Format::Text,
        SHMTRACE_FORMAT_JSON => Format::Json,
        _ => return SHMTRACE_INVALID_ARGUMENT,
    };
    scanning_boundary(SHMTRACE_INTERNAL_ERROR, |stack| {
        let since = u32::try_from(checkpoint).unwrap_or(u32::MAX);
        let report = recorder::report_since(since, stack);
        let mut text = String::new();
        recorder::render(&report, format, &mut text);
        if sink::write_fd(fd, text.as_bytes()) {
            SHMTRACE_OK
        } else {
            SHMTRACE_IO_ERROR
        }
    })
}

/// Stops recording in this process: calls are still forwarded, but neither logged nor entered
/// in the ledger, until `shmtrace_resume`. Releasing while paused what was acquired before
/// (or the reverse) leaves the ledger out of step with the kernel for those objects.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_pause() {
    recorder::set_paused(true);
}

/// Resumes recording after `shmtrace_pause`.
#[unsafe(no_mangle)]
pub extern "C" fn shmtrace_resume() {
    recorder::set_paused(false);
}

#[cfg(test)]
mod tests {
    use core::ffi::CStr;

    use shmtrace_core::trace::event::Func;

    #[test]
    fn header_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/shmtrace.h"));
        let committed = include_str!("../include/shmtrace.h");
        assert!(
            committed == generated,
            "include/shmtrace.h differs from what build.rs generates: run `make header`"
        );
    }

    #[test]
    fn header_declares_no_libc_prototype() {
        let header = include_str!("../include/shmtrace.h");
        for func in Func::ALL {
            let name = func.name();
            assert!(!header.contains(&format!(" {name}(")), "{name} declared");
            assert!(!header.contains(&format!("*{name}(")), "{name} declared");
        }
    }

    /// C programs (and the C test runners) learn the hook list from these lines.
    #[test]
    fn header_indexes_every_hook_in_table_order() {
        let header = include_str!("../include/shmtrace.h");
        let defines: Vec<(&str, &str)> = header
            .lines()
            .filter_map(|line| line.strip_prefix("#define SHMTRACE_"))
            .filter_map(|rest| rest.split_once(' '))
            .collect();
        let calls: Vec<String> = defines
            .iter()
            .filter_map(|(name, value)| Some(format!("{}={value}", name.strip_prefix("CALL_")?)))
            .collect();
        let expected: Vec<String> = Func::ALL
            .iter()
            .map(|f| format!("{}={}", f.name().to_uppercase(), *f as usize))
            .collect();
        assert_eq!(calls, expected);
        let count = Func::COUNT.to_string();
        assert!(
            defines.contains(&("FUNCTIONS", count.as_str())),
            "{defines:?}"
        );
        assert!(header.contains("uint64_t calls[SHMTRACE_FUNCTIONS];"));
    }

    #[test]
    fn null_and_bad_arguments_are_refused() {
        use super::*;
        let mut m = core::mem::MaybeUninit::<shmtrace_mapping>::uninit();
        // SAFETY: NULL is allowed by both contracts; `m` is writable for one shmtrace_mapping.
        unsafe {
            assert_eq!(
                shmtrace_get_stats(core::ptr::null_mut()),
                SHMTRACE_NULL_ARGUMENT
            );
            let nowhere = core::ptr::null_mut();
            assert_eq!(
                shmtrace_mapping_at(core::ptr::null(), nowhere),
                SHMTRACE_NULL_ARGUMENT
            );
            let found = shmtrace_mapping_at(core::ptr::null(), m.as_mut_ptr());
            assert_eq!(found, SHMTRACE_NOT_FOUND);
        }
        assert_eq!(shmtrace_write_report(-1, 7), SHMTRACE_INVALID_ARGUMENT);
        let bad_fd = shmtrace_write_report(-1, SHMTRACE_FORMAT_TEXT);
        assert_eq!(bad_fd, SHMTRACE_IO_ERROR);
    }

    #[test]
    fn version_matches_the_manifest() {
        // SAFETY: shmtrace_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(super::shmtrace_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}

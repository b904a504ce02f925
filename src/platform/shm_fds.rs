//! Which descriptors may be shared memory objects, so that an `mmap` can name the object it
//! maps (`/dev/shm/NAME`, `memfd:NAME`) without a system call for any other file.
//!
//! `shm_open` and `memfd_create` mark the descriptor they return in a bitmap of descriptor
//! numbers, taken modulo its size: a filter, lock-free, inherited by `fork` like the
//! descriptors themselves. An anonymous mapping or any other file's pays one bit test.
//! `close` is not hooked, so a bit is never cleared. A copy made by `dup` has another number
//! and is not marked: its mappings are not named.
//!
//! While calls are not logged, an `mmap` of a marked number asks nothing: the ledger keeps the
//! object pending and the report names it from `/proc/self/maps` ([`objects_mapped`]). While
//! they are logged, the record needs the name at the call. The kernel's answer is the truth
//! whatever became of the number since (closed and reused by `open`, replaced by `dup2`):
//! `readlink` of `/proc/self/fd/N` ([`object_of`]) gives the path `/proc/self/maps` shows
//! for the mapping, and a marked number that now holds a regular file gets no name, never a
//! wrong one. That walk of `/proc` is costly, so the hooks also remember, per number, which
//! file `shm_open` or `memfd_create` returned (its device and inode, and its name;
//! [`remember`]); the `mmap` then asks only `statx` whether the number is still that file
//! ([`known_object`]), and names it as the kernel does: ` (deleted)` once no name links it
//! (a link count of 0; a memfd always). Anything else (another file at the number, a file with
//! several links, a slot another thread is writing) falls back to `readlink`.
use core::ffi::c_int;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};

use shmtrace_core::trace::event::{NAME_KEPT, Name};

use crate::platform::file_id::{self, FileId};

const BITS: usize = 1024;
static MARKS: [AtomicU64; BITS / 64] = [const { AtomicU64::new(0) }; BITS / 64];

fn slot(fd: c_int) -> (usize, u64) {
    let n = fd as u32 as usize % BITS;
    (n / 64, 1 << (n % 64))
}

/// `fd` was returned by `shm_open` or `memfd_create`.
pub fn mark(fd: c_int) {
    if fd >= 0 {
        let (word, bit) = slot(fd);
        MARKS[word].fetch_or(bit, Ordering::Relaxed);
    }
}

/// Whether `fd` may be a shared memory object (false: it certainly was never marked).
#[inline]
pub fn marked(fd: c_int) -> bool {
    let (word, bit) = slot(fd);
    fd >= 0 && MARKS[word].load(Ordering::Relaxed) & bit != 0
}

/// What a descriptor number held when `shm_open` or `memfd_create` returned it: written
/// under a sequence count (odd while written), read by copying and checking the count did
/// not move, so that neither side ever waits (a signal handler may map too).
struct Slot {
    seq: AtomicU32,
    fd: AtomicI32,
    dev: AtomicU64,
    ino: AtomicU64,
    kind: AtomicU8,
    len: AtomicU8,
    /// The name's first `NAME_KEPT` bytes, eight to a word.
    name: [AtomicU64; WORDS],
}

const WORDS: usize = (NAME_KEPT + 1) / 8;

const SLOTS: usize = 256;
static SLOTS_TABLE: [Slot; SLOTS] = [const {
    Slot {
        seq: AtomicU32::new(0),
        fd: AtomicI32::new(-1),
        dev: AtomicU64::new(0),
        ino: AtomicU64::new(0),
        kind: AtomicU8::new(0),
        len: AtomicU8::new(0),
        name: [const { AtomicU64::new(0) }; WORDS],
    }
}; SLOTS];

/// The object a remembered descriptor was returned for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `shm_open`: `/dev/shm/NAME`, ` (deleted)` once unlinked.
    Shm = 1,
    /// `memfd_create`: `memfd:NAME`, never linked anywhere.
    Memfd = 2,
}

/// Whether the kernel was seen to show each kind's names as [`known_object`] builds them (the
/// first time, both are asked and compared): 0 not yet, 1 yes, 2 no (then always `readlink`:
/// `/dev/shm` a link elsewhere, a root that does not see it).
static CHECKED: [AtomicU8; 3] = [const { AtomicU8::new(0) }; 3];

/// `fd` was just returned by `shm_open` (`kind` Shm, `name` the name without its leading
/// slashes: glibc opened `/dev/shm/NAME`) or `memfd_create` (Memfd, `name` its argument):
/// remembers which file it is, `id` (asked just after the call). Gives up silently when another
/// thread is writing the same slot (its number then falls back to `readlink`).
pub fn remember(fd: c_int, kind: Kind, name: &[u8], id: &FileId) {
    if fd < 0 {
        return;
    }
    let slot = &SLOTS_TABLE[fd as u32 as usize % SLOTS];
    let seq = slot.seq.load(Ordering::Relaxed);
    if seq & 1 != 0
        || slot
            .seq
            .compare_exchange(
                seq,
                seq.wrapping_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
    {
        return;
    }
    fence(Ordering::Release);
    let prefix: &[u8] = match kind {
        Kind::Shm => b"/dev/shm/",
        Kind::Memfd => b"memfd:",
    };
    let mut bytes = [0u8; WORDS * 8];
    let rest = name.len().min(NAME_KEPT - prefix.len());
    bytes[..prefix.len()].copy_from_slice(prefix);
    bytes[prefix.len()..prefix.len() + rest].copy_from_slice(&name[..rest]);
    for (word, chunk) in slot.name.iter().zip(bytes.chunks_exact(8)) {
        let chunk: [u8; 8] = chunk.try_into().unwrap_or_default();
        word.store(u64::from_ne_bytes(chunk), Ordering::Relaxed);
    }
    slot.len
        .store((prefix.len() + rest) as u8, Ordering::Relaxed);
    slot.kind.store(kind as u8, Ordering::Relaxed);
    slot.dev.store(id.dev, Ordering::Relaxed);
    slot.ino.store(id.ino, Ordering::Relaxed);
    slot.fd.store(fd, Ordering::Relaxed);
    slot.seq.store(seq.wrapping_add(2), Ordering::Release);
}

/// In a `fork` child (one thread, async-signal-safe work only): a slot another thread of the
/// parent was writing at the fork would stay odd, and unused, for ever; it is forgotten.
pub fn after_fork_in_child() {
    for slot in &SLOTS_TABLE {
        let seq = slot.seq.load(Ordering::Relaxed);
        if seq & 1 != 0 {
            slot.fd.store(-1, Ordering::Relaxed);
            slot.seq.store(seq.wrapping_add(1), Ordering::Release);
        }
    }
}

/// The object `fd` refers to now, named as `readlink` of `/proc/self/fd/N` would name it
/// ([`object_of`]), when `fd` is still the file [`remember`] saw: one `statx`. `None` when
/// that cannot be told (not remembered, another file now, several links, a slot being
/// written): ask [`object_of`].
pub fn known_object(fd: c_int) -> Option<Name> {
    let (kind, dev, ino, mut full, len) = remembered(fd)?;
    if CHECKED[kind as usize].load(Ordering::Relaxed) == 2 {
        return None;
    }
    let now = file_id::of_fd(fd)?;
    if (now.dev, now.ino) != (dev, ino) {
        return None;
    }
    let deleted = match (kind, now.nlink) {
        (Kind::Memfd, 0) | (Kind::Shm, 1) => false,
        (Kind::Shm, 0) => true,
        // Linked under several names (or a memfd linked somewhere): only the kernel knows
        // which the descriptor's.
        _ => return None,
    };
    let len = if deleted {
        full[len..len + DELETED.len()].copy_from_slice(DELETED);
        len + DELETED.len()
    } else {
        len
    };
    let named = Name::from_bytes(&full[..len]);
    if CHECKED[kind as usize].load(Ordering::Relaxed) == 0 {
        let agrees = object_of(fd).is_some_and(|k| k.as_bytes() == named.as_bytes());
        CHECKED[kind as usize].store(if agrees { 1 } else { 2 }, Ordering::Relaxed);
        if !agrees {
            return None;
        }
    }
    Some(named)
}

const DELETED: &[u8] = b" (deleted)";

/// A name as remembered, with room for ` (deleted)` after it.
type Remembered = [u8; WORDS * 8 + DELETED.len()];

/// A consistent copy of what the slot of `fd` remembers of `fd`, if it does: its kind, device,
/// inode, and name (the first `len` bytes).
fn remembered(fd: c_int) -> Option<(Kind, u64, u64, Remembered, usize)> {
    if fd < 0 {
        return None;
    }
    let slot = &SLOTS_TABLE[fd as u32 as usize % SLOTS];
    let seq = slot.seq.load(Ordering::Acquire);
    if seq & 1 != 0 || slot.fd.load(Ordering::Relaxed) != fd {
        return None;
    }
    let kind = match slot.kind.load(Ordering::Relaxed) {
        1 => Kind::Shm,
        2 => Kind::Memfd,
        _ => return None,
    };
    let dev = slot.dev.load(Ordering::Relaxed);
    let ino = slot.ino.load(Ordering::Relaxed);
    let len = usize::from(slot.len.load(Ordering::Relaxed)).min(NAME_KEPT);
    let mut bytes = [0u8; WORDS * 8 + DELETED.len()];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(&slot.name) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
    }
    fence(Ordering::Acquire);
    if slot.seq.load(Ordering::Relaxed) != seq {
        return None;
    }
    Some((kind, dev, ino, bytes, len))
}

/// The shared memory object `fd` refers to now: `/dev/shm/NAME` (as the kernel shows it, with
/// ` (deleted)` once unlinked) or `memfd:NAME`; `None` for anything else, or when
/// `/proc/self/fd` cannot be read.
pub fn object_of(fd: c_int) -> Option<Name> {
    // "/proc/self/fd/" and up to 10 digits, NUL-terminated.
    let mut path = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0";
    let mut digits = [0u8; 10];
    let mut n = fd as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        path[14 + i] = *d;
    }
    // Left uninitialised: the kernel writes what it returns, and nothing else is read.
    let mut target = [MaybeUninit::<u8>::uninit(); 512];
    // SAFETY: a NUL-terminated path and a buffer of ours; the raw call neither allocates nor
    // enters a hook.
    let got = unsafe {
        libc::syscall(
            libc::SYS_readlinkat,
            libc::AT_FDCWD,
            path.as_ptr(),
            target.as_mut_ptr(),
            target.len(),
        )
    };
    let got = usize::try_from(got).ok()?.min(target.len());
    // SAFETY: readlinkat wrote the first `got` bytes; `MaybeUninit<u8>` has the layout of `u8`.
    let target = unsafe { core::slice::from_raw_parts(target.as_ptr().cast::<u8>(), got) };
    object_name(target).map(Name::from_bytes)
}

/// The shared memory objects mapped now, as `/proc/self/maps` shows them: `(start, end,
/// object)` in address order, the object named as [`object_of`] names it; `None` when the maps
/// cannot be read. For the report, which names mappings whose object the hook left pending
/// (it allocates).
pub fn objects_mapped() -> Option<Vec<(u64, u64, Name)>> {
    Some(objects_in(&crate::platform::modules::read_proc_maps()?))
}

/// [`objects_mapped`] from a `/proc/self/maps` text.
pub fn objects_in(maps: &[u8]) -> Vec<(u64, u64, Name)> {
    let files = crate::platform::modules::files_in(maps, |path| {
        path.starts_with(b"/dev/shm/") || path.starts_with(b"/memfd:")
    });
    let mut objects: Vec<(u64, u64, Name)> = files
        .iter()
        .filter_map(|f| {
            let path = unescape_newlines(&f.path);
            let name = object_name(&path)?;
            Some((f.start, f.end, Name::from_bytes(name)))
        })
        .collect();
    objects.sort_by_key(|o| o.0);
    objects
}

/// The object mapped at `addr` among `objects` (from [`objects_mapped`]); an empty name for
/// none.
pub fn object_at(objects: &[(u64, u64, Name)], addr: u64) -> Name {
    let i = objects.partition_point(|o| o.0 <= addr);
    match i.checked_sub(1).map(|i| &objects[i]) {
        Some(&(start, end, name)) if (start..end).contains(&addr) => name,
        _ => Name::new(),
    }
}

/// `/proc/self/maps` writes a newline in a path as `\012` (`readlink` gives it as it is).
fn unescape_newlines(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix(b"\\012") {
            out.push(b'\n');
            rest = tail;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// What `readlink` of a descriptor says (or `/proc/self/maps` of a mapping), as the object it
/// names, if it is one.
fn object_name(target: &[u8]) -> Option<&[u8]> {
    if target.starts_with(b"/dev/shm/") {
        return Some(target);
    }
    // A memfd is never linked anywhere: the kernel always shows it deleted.
    let memfd = target.strip_prefix(b"/")?;
    memfd
        .starts_with(b"memfd:")
        .then(|| memfd.strip_suffix(b" (deleted)").unwrap_or(memfd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shm_and_memfd_paths_name_an_object() {
        assert_eq!(object_name(b"/dev/shm/psm_1"), Some(&b"/dev/shm/psm_1"[..]));
        assert_eq!(
            object_name(b"/dev/shm/psm_1 (deleted)"),
            Some(&b"/dev/shm/psm_1 (deleted)"[..])
        );
        assert_eq!(
            object_name(b"/memfd:ring (deleted)"),
            Some(&b"memfd:ring"[..])
        );
        assert_eq!(
            object_name(b"/memfd:a (deleted) (deleted)"),
            Some(&b"memfd:a (deleted)"[..])
        );
        assert_eq!(object_name(b"/tmp/memfd:x"), None);
        assert_eq!(object_name(b"/dev/zero"), None);
        assert_eq!(object_name(b"anon_inode:[eventfd]"), None);
        assert_eq!(object_name(b""), None);
    }

    #[test]
    fn marks_are_per_number_and_never_for_negative_ones() {
        assert!(!marked(-1));
        mark(-1);
        assert!(!marked(-1));
        // A number far above any the test harness holds.
        let fd = 1000;
        assert!(!marked(fd));
        mark(fd);
        assert!(marked(fd) && marked(fd + BITS as c_int) && !marked(fd + 1));
    }

    #[test]
    fn the_kernel_names_a_memfd_and_nothing_for_a_plain_file() {
        // SAFETY: a literal name; the descriptors are closed below.
        let memfd = unsafe { libc::memfd_create(c"shmtrace-unit".as_ptr(), 0) };
        assert!(memfd >= 0);
        assert_eq!(
            object_of(memfd).map(|n| n.as_bytes().to_vec()),
            Some(b"memfd:shmtrace-unit".to_vec())
        );
        // SAFETY: as above.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        assert!(null >= 0);
        assert_eq!(object_of(null), None);
        assert_eq!(object_of(-1), None);
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(memfd);
            libc::close(null);
        }
    }

    /// A `/dev/shm` name of this test, unlinked when dropped (a failed assertion included).
    struct TestName(std::ffi::CString);

    impl TestName {
        fn new(tag: &str) -> TestName {
            let name = format!("/shmtrace-unit-{}-{tag}", std::process::id());
            TestName(std::ffi::CString::new(name).unwrap())
        }

        fn path(&self) -> Vec<u8> {
            let mut p = b"/dev/shm".to_vec();
            p.extend_from_slice(self.0.as_bytes());
            p
        }

        fn open(&self) -> c_int {
            // SAFETY: a NUL-terminated name of ours.
            let fd = unsafe {
                libc::shm_open(
                    self.0.as_ptr(),
                    libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )
            };
            assert!(fd >= 0, "shm_open {:?}", self.0);
            fd
        }
    }

    impl Drop for TestName {
        fn drop(&mut self) {
            // SAFETY: as in `open`; a name already gone is fine.
            unsafe { libc::shm_unlink(self.0.as_ptr()) };
        }
    }

    fn remembered_as(fd: c_int, kind: Kind, name: &[u8]) {
        remember(fd, kind, name, &file_id::of_fd(fd).expect("statx"));
    }

    #[test]
    fn a_long_name_is_kept_as_far_as_an_event_keeps_it() {
        // SAFETY: a literal path; the descriptor is closed below.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        let long = [b'n'; 100];
        remembered_as(fd, Kind::Shm, &long);
        let (kind, _, _, name, len) = remembered(fd).expect("remembered");
        assert_eq!(kind, Kind::Shm);
        let mut want = b"/dev/shm/".to_vec();
        want.extend_from_slice(&long);
        assert_eq!(&name[..len], &want[..NAME_KEPT]);
        remembered_as(fd, Kind::Memfd, b"ring");
        let (kind, _, _, name, len) = remembered(fd).expect("remembered");
        assert_eq!((kind, &name[..len]), (Kind::Memfd, &b"memfd:ring"[..]));
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }

    fn bytes(name: Option<Name>) -> Option<Vec<u8>> {
        name.map(|n| n.as_bytes().to_vec())
    }

    #[test]
    fn a_remembered_descriptor_is_named_as_the_kernel_names_it() {
        let a = TestName::new("known-a");
        let b = TestName::new("known-b");
        let fd = a.open();
        remembered_as(fd, Kind::Shm, &a.0.as_bytes()[1..]);
        assert_eq!(bytes(known_object(fd)), Some(a.path()));
        assert_eq!(bytes(known_object(fd)), bytes(object_of(fd)));

        // Another name linking the same file: only the kernel can tell which is the
        // descriptor's.
        let mut c_path = b.path();
        c_path.push(0);
        let mut a_path = a.path();
        a_path.push(0);
        // SAFETY: NUL-terminated paths of ours.
        let linked = unsafe { libc::link(a_path.as_ptr().cast(), c_path.as_ptr().cast()) };
        assert_eq!(linked, 0);
        assert_eq!(known_object(fd), None, "two links");
        // SAFETY: as above.
        unsafe { libc::unlink(c_path.as_ptr().cast()) };

        // Unlinked: the kernel says deleted, and so does the statx.
        drop(a);
        let mut deleted = a_path[..a_path.len() - 1].to_vec();
        deleted.extend_from_slice(b" (deleted)");
        assert_eq!(bytes(known_object(fd)), Some(deleted.clone()));
        assert_eq!(bytes(object_of(fd)), Some(deleted));

        // Another shm object put at the number by dup2: not the remembered file any more.
        let other = b.open();
        // SAFETY: our own descriptors.
        assert_eq!(unsafe { libc::dup2(other, fd) }, fd);
        assert_eq!(known_object(fd), None);
        assert_eq!(bytes(object_of(fd)), Some(b.path()));

        // A regular file at the number: neither names anything.
        // SAFETY: a literal path; our own descriptors.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::dup2(null, fd) }, fd);
        assert_eq!(known_object(fd), None);
        assert_eq!(object_of(fd), None);
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(null);
            libc::close(other);
            libc::close(fd);
        }
    }

    #[test]
    fn a_slot_written_at_a_fork_is_forgotten_in_the_child() {
        // SAFETY: a literal name; the descriptor is closed below.
        let fd = unsafe { libc::memfd_create(c"shmtrace-unit-fork".as_ptr(), 0) };
        assert!(fd >= 0);
        remembered_as(fd, Kind::Memfd, b"shmtrace-unit-fork");
        assert!(remembered(fd).is_some());
        // A writer of the parent stopped half way: the slot reads as being written.
        let slot = &SLOTS_TABLE[fd as usize % SLOTS];
        slot.seq.fetch_add(1, Ordering::Relaxed);
        assert!(remembered(fd).is_none());
        remember(fd, Kind::Memfd, b"x", &file_id::of_fd(fd).unwrap());
        assert!(remembered(fd).is_none(), "a busy slot is left alone");
        after_fork_in_child();
        assert!(remembered(fd).is_none(), "forgotten, not half written");
        remembered_as(fd, Kind::Memfd, b"shmtrace-unit-fork");
        assert_eq!(
            bytes(known_object(fd)),
            Some(b"memfd:shmtrace-unit-fork".to_vec()),
            "usable again"
        );
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_remembered_memfd_is_named_as_the_kernel_names_it() {
        // SAFETY: a literal name; the descriptor is closed below.
        let fd = unsafe { libc::memfd_create(c"shmtrace-unit-known".as_ptr(), 0) };
        assert!(fd >= 0);
        remembered_as(fd, Kind::Memfd, b"shmtrace-unit-known");
        assert_eq!(
            bytes(known_object(fd)),
            Some(b"memfd:shmtrace-unit-known".to_vec())
        );
        assert_eq!(bytes(known_object(fd)), bytes(object_of(fd)));
        // Another descriptor number is not what was remembered.
        assert_eq!(known_object(fd + 1), None);
        assert_eq!(known_object(-1), None);
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn the_maps_name_objects_as_readlink_does() {
        assert_eq!(unescape_newlines(b"/dev/shm/a\\012b"), b"/dev/shm/a\nb");
        assert_eq!(unescape_newlines(b"/dev/shm/a\\01"), b"/dev/shm/a\\01");
        // SAFETY: a literal name; the descriptor is closed below.
        let fd = unsafe { libc::memfd_create(c"shmtrace-unit-maps".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: our own descriptor; the mapping is unmapped below.
        let p = unsafe {
            assert_eq!(libc::ftruncate(fd, 8192), 0);
            libc::mmap(
                core::ptr::null_mut(),
                8192,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let objects = objects_mapped().expect("/proc/self/maps");
        let addr = p as u64;
        assert_eq!(
            object_at(&objects, addr + 4096).as_bytes(),
            b"memfd:shmtrace-unit-maps"
        );
        let here = the_maps_name_objects_as_readlink_does as *const () as u64;
        assert_eq!(object_at(&objects, here).as_bytes(), b"");
        assert_eq!(object_at(&[], addr).as_bytes(), b"");
        // SAFETY: our own mapping and descriptor.
        unsafe {
            libc::munmap(p, 8192);
            libc::close(fd);
        }
    }
}

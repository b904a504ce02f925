//! The process's loaded objects, so that recorded return addresses can be symbolized after the
//! run (by `shmtrace`), never by the traced program.

use core::ffi::{CStr, c_int, c_void};

/// One loaded object: its file, load bias, and the address range of its loaded segments.
pub struct Module {
    pub path: Vec<u8>,
    pub base: u64,
    pub start: u64,
    pub end: u64,
}

/// Every object loaded now, the program first (named by `/proc/self/exe`).
pub fn loaded() -> Vec<Module> {
    let mut modules = Vec::new();
    // SAFETY: the callback only reads the dl_phdr_info it is given and pushes into the Vec
    // passed as `data`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut modules as *mut Vec<Module>).cast()) };
    modules
}

unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info and our `data` (see `loaded`).
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let mut low = u64::MAX;
    let mut high = 0u64;
    for i in 0..usize::from(info.dlpi_phnum) {
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers.
        let ph = unsafe { &*info.dlpi_phdr.add(i) };
        if ph.p_type == libc::PT_LOAD {
            low = low.min(ph.p_vaddr);
            high = high.max(ph.p_vaddr.saturating_add(ph.p_memsz));
        }
    }
    if low > high {
        return 0;
    }
    let name = if info.dlpi_name.is_null() {
        &[][..]
    } else {
        // SAFETY: a non-NULL dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes()
    };
    // The program itself comes first, with an empty name.
    let path = if name.is_empty() && modules.is_empty() {
        exe_path()
    } else {
        name.to_vec()
    };
    let base = info.dlpi_addr;
    modules.push(Module {
        path,
        base,
        start: base.wrapping_add(low),
        end: base.wrapping_add(high),
    });
    0
}

/// The running program's path (`/proc/self/exe`), empty if unreadable.
pub fn exe_path() -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: readlink writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::readlink(
            c"/proc/self/exe".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    buf.truncate(usize::try_from(n).unwrap_or(0));
    buf
}

/// One file mapping of this process: its address range and the file's path.
pub struct MappedFile {
    pub start: u64,
    pub end: u64,
    pub path: Vec<u8>,
    /// Its offset in the file.
    pub offset: u64,
    pub executable: bool,
}

/// The objects loaded now, from `/proc/self/maps` (`None` if it cannot be read): each file
/// with an executable mapping, its base the address of its mapping at offset 0 (true of
/// shared objects, whose first segment is at address 0) and its range all its mappings'. Takes
/// no lock of the loader, like [`mapped_files`].
pub fn mapped_modules() -> Option<Vec<Module>> {
    Some(modules_in(&read_proc_maps()?, |_| true))
}

/// The objects loaded, as [`mapped_modules`] finds them, in a `/proc/self/maps` text; only
/// those whose start `keep` accepts (asked before anything is copied).
pub fn modules_in(text: &[u8], keep: impl Fn(u64) -> bool) -> Vec<Module> {
    // Sized at once (the private heap maps a large block anew at each step of a growth): the
    // kernel writes at least 40 bytes a line (addresses of 8 digits or more).
    let mut files: Vec<MapsLine<'_>> = Vec::with_capacity(text.len() / 40 + 1);
    files.extend(maps_lines(text));
    // Each file's mappings side by side, in address order among themselves (a stable sort of
    // the line numbers by path): one sort rather than a search of every line per object.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| files[i].path);
    let mut found: Vec<(usize, Module)> = Vec::new();
    for same in order.chunk_by(|&a, &b| files[a].path == files[b].path) {
        let lines = || same.iter().map(|&i| &files[i]);
        let Some(&first_exec) = same.iter().find(|&&i| files[i].executable) else {
            continue;
        };
        let Some(base) = lines().find(|g| g.offset == 0).map(|g| g.start) else {
            continue;
        };
        let start = lines().map(|g| g.start).min().unwrap_or(base);
        if !keep(start) {
            continue;
        }
        let end = lines().map(|g| g.end).max().unwrap_or(base);
        let path = files[first_exec].path.to_vec();
        found.push((
            first_exec,
            Module {
                path,
                base,
                start,
                end,
            },
        ));
    }
    // In the order of their first executable mapping, as the maps list them.
    found.sort_by_key(|&(i, _)| i);
    found.into_iter().map(|(_, m)| m).collect()
}

/// Every file mapped now, from `/proc/self/maps` (`None` if it cannot be read). Unlike
/// [`loaded`], takes no lock of the loader: usable at exit even in a forked child whose
/// parent had another thread inside `dl_iterate_phdr` at the fork (its lock is never reset
/// in the child).
pub fn mapped_files() -> Option<Vec<MappedFile>> {
    mapped_files_where(|_| true)
}

/// [`mapped_files`], only those whose path `keep` accepts (asked before anything is copied).
pub fn mapped_files_where(keep: impl Fn(&[u8]) -> bool) -> Option<Vec<MappedFile>> {
    Some(files_in(&read_proc_maps()?, keep))
}

/// The file mappings that `keep` accepts among the lines of a `/proc/self/maps` text.
pub fn files_in(text: &[u8], keep: impl Fn(&[u8]) -> bool) -> Vec<MappedFile> {
    maps_lines(text)
        .filter(|line| keep(line.path))
        .map(|line| MappedFile {
            start: line.start,
            end: line.end,
            path: line.path.to_vec(),
            offset: line.offset,
            executable: line.executable,
        })
        .collect()
}

/// A file mapping's line of `/proc/self/maps`, its path borrowed from the text: what is
/// looked at before anything is copied (the exit report of a short-lived process reads every
/// line, and keeps few).
struct MapsLine<'a> {
    start: u64,
    end: u64,
    path: &'a [u8],
    offset: u64,
    executable: bool,
}

fn maps_lines(text: &[u8]) -> impl Iterator<Item = MapsLine<'_>> {
    lines(text).filter_map(parse_maps_line)
}

/// The lines of `text`, found with the C library's `memchr` (vectorised: a process's maps are
/// some tens of kilobytes, and a forked worker's exit report reads them all).
fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text);
    core::iter::from_fn(move || {
        let now = rest?;
        // SAFETY: `now` is readable for its whole length.
        let nl = unsafe { libc::memchr(now.as_ptr().cast(), i32::from(b'\n'), now.len()) };
        if nl.is_null() {
            rest = None;
            return Some(now);
        }
        let at = nl as usize - now.as_ptr() as usize;
        rest = now.get(at + 1..);
        now.get(..at)
    })
}

/// `/proc/self/maps`, read at its first use and then kept: the exit report's parts (the
/// modules loaded since the start record, the allocators' ranges, the scan's areas, the
/// shared memory objects mapped) look at one reading rather than each at its own. A reading
/// goes stale only where the shim's own heap mapped or unmapped since, which the scan never
/// reads as a root either way (a range gone reads as unreadable).
#[derive(Default)]
pub struct MapsOnce {
    text: Option<Option<Vec<u8>>>,
}

impl MapsOnce {
    pub fn new() -> MapsOnce {
        MapsOnce::default()
    }

    /// The text, read now if not yet; `None` when it cannot be read.
    pub fn text(&mut self) -> Option<&[u8]> {
        self.text.get_or_insert_with(read_proc_maps).as_deref()
    }
}

/// Room for a typical process's maps in one allocation of the private heap (which maps large
/// blocks one by one: growing by doubling cost a mapping and an unmapping per step).
const MAPS_GUESS: usize = 32 << 10;

pub fn read_proc_maps() -> Option<Vec<u8>> {
    let mut text = Vec::with_capacity(MAPS_GUESS);
    let mut chunk = [0u8; 8192];
    let ok = crate::platform::maps::read_chunks(&mut chunk, |bytes| {
        text.extend_from_slice(bytes);
        true
    });
    ok.then_some(text)
}

/// `START-END PERMS OFFSET DEV INODE PATH`; only lines naming a file (an absolute path).
fn parse_maps_line(line: &[u8]) -> Option<MapsLine<'_>> {
    let mut rest = line;
    let mut field = || {
        let text = rest.trim_ascii_start();
        let end = text
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(text.len());
        let (word, tail) = text.split_at(end);
        rest = tail;
        word
    };
    let range = field();
    let perms = field();
    let offset = field();
    field();
    field();
    let path = rest.trim_ascii();
    if !path.starts_with(b"/") {
        return None;
    }
    let dash = range.iter().position(|&b| b == b'-')?;
    Some(MapsLine {
        start: hex(range.get(..dash)?)?,
        end: hex(range.get(dash + 1..)?)?,
        path,
        offset: hex(offset)?,
        executable: perms.get(2) == Some(&b'x'),
    })
}

/// A hexadecimal number of 1 to 16 digits, as the kernel writes addresses and offsets.
fn hex(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some(n << 4 | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_name_their_files() {
        let m = parse_maps_line(
            b"7f6a1c894000-7f6a1c92c000 r-xp 00094000 08:01 1315 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
        )
        .unwrap();
        assert_eq!((m.start, m.end), (0x7f6a_1c89_4000, 0x7f6a_1c92_c000));
        assert_eq!(m.path, b"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
        assert_eq!((m.offset, m.executable), (0x94000, true));
        let spaced =
            parse_maps_line(b"1000-2000 r-xp 0 08:01 7  /tmp/my lib.so (deleted)").unwrap();
        assert_eq!(spaced.path, b"/tmp/my lib.so (deleted)");
        for other in [
            &b"7ffd5a1e0000-7ffd5a201000 rw-p 00000000 00:00 0   [stack]"[..],
            b"7f6a1c000000-7f6a1c200000 rw-p 00000000 00:00 0 ",
            b"",
        ] {
            assert!(parse_maps_line(other).is_none());
        }
    }

    #[test]
    fn this_process_maps_its_own_test_binary() {
        let files = mapped_files().expect("/proc/self/maps");
        let here = maps_line_fn_addr();
        assert!(
            files.iter().any(|f| (f.start..f.end).contains(&here)),
            "no file mapping holds this test's code"
        );
    }

    #[test]
    fn the_maps_give_each_loaded_object_as_the_loader_does() {
        let from_maps = mapped_modules().expect("/proc/self/maps");
        let here = maps_line_fn_addr();
        let mine = from_maps
            .iter()
            .find(|m| (m.start..m.end).contains(&here))
            .expect("a module holds this test's code");
        let loaded = loaded();
        let same = loaded
            .iter()
            .find(|m| (m.start..m.end).contains(&here))
            .expect("the loader knows it");
        assert_eq!((mine.base, mine.start), (same.base, same.start));
    }

    #[test]
    fn modules_from_a_maps_text_and_only_those_kept() {
        let text = b"1000-2000 r--p 00000000 08:01 7 /lib/a.so
2000-3000 r-xp 00001000 08:01 7 /lib/a.so
3000-4000 rw-p 00002000 08:01 7 /lib/a.so
5000-6000 r-xp 00000000 08:01 8 /lib/b.so
7000-8000 rw-p 00000000 00:00 0
9000-a000 r-xp 00001000 08:01 9 /lib/no-base.so
";
        let all = modules_in(text, |_| true);
        let got: Vec<_> = all
            .iter()
            .map(|m| (m.path.as_slice(), m.base, m.start, m.end))
            .collect();
        assert_eq!(
            got,
            [
                (&b"/lib/a.so"[..], 0x1000, 0x1000, 0x4000),
                (&b"/lib/b.so"[..], 0x5000, 0x5000, 0x6000)
            ]
        );
        let kept = modules_in(text, |start| start != 0x1000);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].path, b"/lib/b.so");
    }

    #[test]
    fn lines_split_as_split_does() {
        for text in [&b""[..], b"a", b"a\n", b"a\nbc\n\nd", b"\n\n"] {
            let want: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
            assert_eq!(lines(text).collect::<Vec<_>>(), want, "{:?}", text);
        }
    }

    /// The plain search `modules_in` replaced (every line looked at for each object): the
    /// same objects, in the same order, from this process's own maps.
    #[test]
    fn modules_in_finds_what_a_search_of_every_line_finds() {
        let text = read_proc_maps().expect("/proc/self/maps");
        let files = files_in(&text, |_| true);
        let mut want: Vec<(Vec<u8>, u64, u64, u64)> = Vec::new();
        for f in &files {
            if !f.executable || want.iter().any(|m| m.0 == f.path) {
                continue;
            }
            let same = files.iter().filter(|g| g.path == f.path);
            let Some(base) = same.clone().find(|g| g.offset == 0).map(|g| g.start) else {
                continue;
            };
            let start = same.clone().map(|g| g.start).min().unwrap_or(base);
            let end = same.map(|g| g.end).max().unwrap_or(base);
            want.push((f.path.clone(), base, start, end));
        }
        let got: Vec<_> = modules_in(&text, |_| true)
            .into_iter()
            .map(|m| (m.path, m.base, m.start, m.end))
            .collect();
        assert!(got.len() >= 2, "the test binary and libc at least: {got:?}");
        assert_eq!(got, want);
    }

    #[test]
    fn hex_takes_what_the_kernel_writes_and_nothing_else() {
        assert_eq!(hex(b"7f6a1c894000"), Some(0x7f6a_1c89_4000));
        assert_eq!(hex(b"ffffffffffffffff"), Some(u64::MAX));
        assert_eq!(hex(b"0"), Some(0));
        for bad in [&b""[..], b"10000000000000000", b"12g4", b"-1", b"+1"] {
            assert_eq!(hex(bad), None, "{:?}", bad);
        }
    }

    fn maps_line_fn_addr() -> u64 {
        maps_line_fn_addr as *const () as usize as u64
    }
}

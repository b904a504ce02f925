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
    let files = mapped_files()?;
    let mut modules: Vec<Module> = Vec::new();
    for f in &files {
        if !f.executable {
            continue;
        }
        if modules.iter().any(|m| m.path == f.path) {
            continue;
        }
        let same = files.iter().filter(|g| g.path == f.path);
        let Some(base) = same.clone().find(|g| g.offset == 0).map(|g| g.start) else {
            continue;
        };
        modules.push(Module {
            path: f.path.clone(),
            base,
            start: same.clone().map(|g| g.start).min().unwrap_or(base),
            end: same.map(|g| g.end).max().unwrap_or(base),
        });
    }
    Some(modules)
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
    let text = read_proc_maps()?;
    Some(
        text.split(|&b| b == b'\n')
            .filter_map(|line| parse_maps_line(line, &keep))
            .collect(),
    )
}

pub fn read_proc_maps() -> Option<Vec<u8>> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 8192];
    let ok = crate::platform::maps::read_chunks(&mut chunk, |bytes| {
        text.extend_from_slice(bytes);
        true
    });
    ok.then_some(text)
}

/// `START-END PERMS OFFSET DEV INODE PATH`; only lines naming a file (an absolute path).
fn parse_maps_line(line: &[u8], keep: impl Fn(&[u8]) -> bool) -> Option<MappedFile> {
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
    if !path.starts_with(b"/") || !keep(path) {
        return None;
    }
    let dash = range.iter().position(|&b| b == b'-')?;
    let hex = |s: &[u8]| u64::from_str_radix(core::str::from_utf8(s).ok()?, 16).ok();
    Some(MappedFile {
        start: hex(range.get(..dash)?)?,
        end: hex(range.get(dash + 1..)?)?,
        path: path.to_vec(),
        offset: hex(offset)?,
        executable: perms.get(2) == Some(&b'x'),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_name_their_files() {
        let m = parse_maps_line(
            b"7f6a1c894000-7f6a1c92c000 r-xp 00094000 08:01 1315 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
            |_| true,
        )
        .unwrap();
        assert_eq!((m.start, m.end), (0x7f6a_1c89_4000, 0x7f6a_1c92_c000));
        assert_eq!(m.path, b"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
        assert_eq!((m.offset, m.executable), (0x94000, true));
        let spaced = parse_maps_line(
            b"1000-2000 r-xp 0 08:01 7  /tmp/my lib.so (deleted)",
            |_| true,
        )
        .unwrap();
        assert_eq!(spaced.path, b"/tmp/my lib.so (deleted)");
        for other in [
            &b"7ffd5a1e0000-7ffd5a201000 rw-p 00000000 00:00 0   [stack]"[..],
            b"7f6a1c000000-7f6a1c200000 rw-p 00000000 00:00 0 ",
            b"",
        ] {
            assert!(parse_maps_line(other, |_| true).is_none());
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

    fn maps_line_fn_addr() -> u64 {
        maps_line_fn_addr as *const () as usize as u64
    }
}

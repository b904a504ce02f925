//! Call sites symbolized offline: a recorded return address, the module map of the process
//! image that made the call (its `start` record), and the module's file on disk give
//! `function (file:line)` with debug information (the file's own, or a separate debug file
//! found by build id or debug link), else `function+0xoff (module)` from the symbol table (the
//! dynamic one of a stripped file), else the raw address. C++ and Rust names are demangled.
//! One loader per module file, kept for the whole report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::logs::Module;

/// A symbolized address. Every field but `addr` may be unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    /// The module file the address belongs to.
    pub module: Option<String>,
    /// `addr - base`: the address in the module file.
    pub module_offset: Option<u64>,
    pub function: Option<String>,
    /// From the start of `function` (symbol table), when known.
    pub function_offset: Option<u64>,
    /// Source file as the debug information names it.
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Symbol {
    pub fn raw(addr: u64) -> Symbol {
        Symbol {
            addr,
            ..Symbol::default()
        }
    }

    /// `function (file.c:12)`, `function+0x1a (libfoo.so)`, `0x55d0c0a01234 (prog+0x1234)`
    /// or `0x55d0c0a01234`.
    pub fn text(&self) -> String {
        let base = |p: &str| {
            Path::new(p)
                .file_name()
                .map_or_else(|| p.to_string(), |n| n.to_string_lossy().into_owned())
        };
        match (&self.function, &self.file, self.line, &self.module) {
            (Some(f), Some(file), Some(line), _) => format!("{f} ({}:{line})", base(file)),
            (Some(f), _, _, module) => {
                let off = self
                    .function_offset
                    .map_or(String::new(), |o| format!("+{o:#x}"));
                match module {
                    Some(m) => format!("{f}{off} ({})", base(m)),
                    None => format!("{f}{off}"),
                }
            }
            (None, _, _, Some(m)) => match self.module_offset {
                Some(o) => format!("{:#x} ({}+{o:#x})", self.addr, base(m)),
                None => format!("{:#x} ({})", self.addr, base(m)),
            },
            _ => format!("{:#x}", self.addr),
        }
    }
}

/// What is known about one module file, found once.
struct Found {
    function: Option<String>,
    function_offset: Option<u64>,
    file: Option<String>,
    line: Option<u32>,
}

#[derive(Default)]
pub struct Symbolizer {
    /// `None`: the file could not be loaded (missing, not ELF, vdso...); not retried.
    loaders: HashMap<String, Option<addr2line::Loader>>,
    found: HashMap<(String, u64), Option<FoundShared>>,
}

type FoundShared = std::rc::Rc<Found>;

impl Symbolizer {
    pub fn new() -> Symbolizer {
        Symbolizer::default()
    }

    /// `addr` (a return address) in the image whose modules are `modules` (`None`: unknown).
    pub fn symbolize(&mut self, addr: u64, modules: Option<&[Module]>) -> Symbol {
        let mut symbol = Symbol::raw(addr);
        let Some(module) =
            modules.and_then(|ms| ms.iter().find(|m| m.start <= addr && addr < m.end))
        else {
            return symbol;
        };
        let offset = addr.wrapping_sub(module.base);
        symbol.module = Some(module.path.clone());
        symbol.module_offset = Some(offset);
        if let Some(found) = self.find(&module.path, offset) {
            symbol.function = found.function.clone();
            symbol.function_offset = found.function_offset;
            symbol.file = found.file.clone();
            symbol.line = found.line;
        }
        symbol
    }

    /// Each of `addrs` (return addresses, like a call site: the stack above one), in order.
    pub fn symbolize_all(&mut self, addrs: &[u64], modules: Option<&[Module]>) -> Vec<Symbol> {
        addrs.iter().map(|&a| self.symbolize(a, modules)).collect()
    }

    fn find(&mut self, path: &str, offset: u64) -> Option<FoundShared> {
        let key = (path.to_string(), offset);
        if let Some(found) = self.found.get(&key) {
            return found.clone();
        }
        let loader = self
            .loaders
            .entry(path.to_string())
            .or_insert_with(|| load(path));
        let found = loader
            .as_ref()
            .and_then(|l| lookup(l, offset))
            .map(std::rc::Rc::new);
        self.found.insert(key, found.clone());
        found
    }
}

fn load(path: &str) -> Option<addr2line::Loader> {
    // Only real files: the vdso and other pseudo-modules have no file.
    if !path.starts_with('/') {
        return None;
    }
    separate_debug_file(Path::new(path))
        .and_then(|debug| addr2line::Loader::new(debug).ok())
        .or_else(|| addr2line::Loader::new(path).ok())
}

/// Where the debug information of a file without any lives, when it is installed: by build id
/// (`/usr/lib/debug/.build-id/ab/cdef....debug`), else by `.gnu_debuglink` (beside the file,
/// in `.debug/` beside it, or under `/usr/lib/debug` + its directory), as gdb looks.
fn separate_debug_file(path: &Path) -> Option<PathBuf> {
    use object::{Object, ObjectSection};
    let file = std::fs::File::open(path).ok()?;
    let cache = object::ReadCache::new(file);
    let elf = object::File::parse(&cache).ok()?;
    if elf
        .section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0)
    {
        return None;
    }
    let root = Path::new(DEBUG_ROOT);
    let by_id = elf.build_id().ok().flatten().and_then(|id| {
        let (first, rest) = id.split_first()?;
        let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
        Some(root.join(format!(".build-id/{first:02x}/{hex}.debug")))
    });
    let by_link = elf.gnu_debuglink().ok().flatten().and_then(|(name, _crc)| {
        let name = Path::new(std::str::from_utf8(name).ok()?);
        let dir = path.parent()?;
        let under_root = root.join(dir.strip_prefix("/").ok()?).join(name);
        Some([dir.join(name), dir.join(".debug").join(name), under_root])
    });
    by_id
        .into_iter()
        .chain(by_link.into_iter().flatten())
        .find(|candidate| candidate.is_file() && candidate != path)
}

/// Where distributions install separate debug files.
const DEBUG_ROOT: &str = "/usr/lib/debug";

/// The call instruction ends at the return address: look up the byte before it, so that the
/// line is the call's, not the next statement's.
fn lookup(loader: &addr2line::Loader, return_offset: u64) -> Option<Found> {
    let probe = return_offset.checked_sub(1)?;
    let mut found = Found {
        function: None,
        function_offset: None,
        file: None,
        line: None,
    };
    if let Ok(mut frames) = loader.find_frames(probe) {
        // The first frame is the innermost: the inlined function that made the call, if any.
        if let Ok(Some(frame)) = frames.next() {
            found.function = frame
                .function
                .as_ref()
                .and_then(|f| f.demangle().ok())
                .map(|n| n.into_owned());
            if let Some(loc) = frame.location {
                found.file = loc.file.map(str::to_string);
                found.line = loc.line;
            }
        }
    }
    if found.file.is_none()
        && let Ok(Some(loc)) = loader.find_location(probe)
    {
        found.file = loc.file.map(str::to_string);
        found.line = loc.line;
    }
    if let Some(sym) = loader.find_symbol_info(probe) {
        let name = addr2line::demangle_auto(sym.name().into(), None).into_owned();
        found.function_offset = return_offset.checked_sub(sym.address());
        found.function.get_or_insert(name);
    }
    if found.function.is_none() && found.file.is_none() {
        return None;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        let mut s = Symbol::raw(0x55d0c0a01234);
        assert_eq!(s.text(), "0x55d0c0a01234");
        s.module = Some("/usr/bin/prog".into());
        s.module_offset = Some(0x1234);
        assert_eq!(s.text(), "0x55d0c0a01234 (prog+0x1234)");
        s.function = Some("make".into());
        s.function_offset = Some(0x1a);
        assert_eq!(s.text(), "make+0x1a (prog)");
        s.file = Some("/src/prog.c".into());
        s.line = Some(12);
        assert_eq!(s.text(), "make (prog.c:12)");
    }

    #[test]
    fn unknown_module_or_file() {
        let mut sym = Symbolizer::new();
        assert_eq!(sym.symbolize(0x1000, None), Symbol::raw(0x1000));
        let modules = [Module {
            path: "/nonexistent/libx.so".into(),
            base: 0x7000,
            start: 0x7000,
            end: 0x9000,
        }];
        let s = sym.symbolize(0x8000, Some(&modules));
        assert_eq!(s.text(), "0x8000 (libx.so+0x1000)");
        assert_eq!(sym.symbolize(0x6000, Some(&modules)), Symbol::raw(0x6000));
    }

    #[test]
    fn symbolizes_this_test_binary() {
        // The running test executable: a function of ours, by its address.
        let exe = std::env::current_exe().unwrap();
        let here = texts as fn() as usize as u64;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exe_text = exe.to_string_lossy();
        // Base: the lowest mapping of the executable with file offset 0.
        let base = maps
            .lines()
            .filter(|l| l.ends_with(exe_text.as_ref()))
            .filter_map(|l| {
                let mut cols = l.split_whitespace();
                let range = cols.next()?;
                let offset = u64::from_str_radix(cols.nth(1)?, 16).ok()?;
                let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
                (offset == 0).then_some(start)
            })
            .min()
            .unwrap();
        let modules = [Module {
            path: exe_text.into_owned(),
            base,
            start: base,
            end: u64::MAX,
        }];
        let s = Symbolizer::new().symbolize(here + 1, Some(&modules));
        let f = s.function.unwrap_or_default();
        assert!(f.contains("texts"), "function {f:?}");
    }
}

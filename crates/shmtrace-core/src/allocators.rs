//! Which loaded modules are memory allocators, whose mappings left at exit are address space
//! they keep for reuse (jemalloc never unmaps), not leaks of the program.
//!
//! The shim and the `shmtrace` command both use this, so that they classify the same mappings
//! the same way.

/// Built-in allocators by file name: a prefix, and whether the name must also contain `.so`
/// after it (the `libtcmalloc*.so*` kind of pattern).
const BUILT_IN: &[(&str, bool)] = &[
    ("libjemalloc.so", false),
    ("libtcmalloc", true),
    ("libmimalloc.so", false),
    ("libsnmalloc", false),
    ("libhoard", false),
    ("libtbbmalloc", true),
];

/// Which modules count as allocators, from `SHMTRACE_ALLOCATORS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allocators {
    /// `none`: no mapping is set aside; everything counts as a leak.
    Off,
    /// The built-in list plus these file-name prefixes.
    Known(Vec<Vec<u8>>),
}

impl Default for Allocators {
    fn default() -> Allocators {
        Allocators::Known(Vec::new())
    }
}

/// A `SHMTRACE_ALLOCATORS` value that is refused (the built-in list is used instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// Why a `SHMTRACE_ALLOCATORS` value was refused, after `SHMTRACE_ALLOCATORS=VALUE `.
pub const MALFORMED: &str = "is not `none` or a comma-separated list of file-name prefixes \
                             (no `/`, no wildcards, no empty names); only the built-in allocators \
                             are recognised";

impl Allocators {
    /// The value of `SHMTRACE_ALLOCATORS` (unset or empty: the built-in list). `Err` for a
    /// malformed value, which the caller warns about and replaces with the default.
    pub fn parse(value: Option<&[u8]>) -> Result<Allocators, Malformed> {
        let Some(value) = value.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) else {
            return Ok(Allocators::default());
        };
        if value == b"none" {
            return Ok(Allocators::Off);
        }
        let mut extra = Vec::new();
        for name in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let bad =
                |b: &u8| matches!(b, b'/' | b'*' | b'?' | b'[' | b']') || b.is_ascii_control();
            if name.is_empty() || name == b"none" || name.iter().any(bad) {
                return Err(Malformed);
            }
            extra.push(name.to_vec());
        }
        Ok(Allocators::Known(extra))
    }

    pub fn enabled(&self) -> bool {
        !matches!(self, Allocators::Off)
    }

    /// Whether the module at `path` (a loaded object's path, or just its file name) is an
    /// allocator.
    pub fn is_allocator(&self, path: &[u8]) -> bool {
        let Allocators::Known(extra) = self else {
            return false;
        };
        let name = file_name(path);
        let built_in = BUILT_IN.iter().any(|&(prefix, needs_so)| {
            name.strip_prefix(prefix.as_bytes())
                .is_some_and(|rest| !needs_so || rest.windows(3).any(|w| w == b".so"))
        });
        built_in || extra.iter().any(|p| name.starts_with(p))
    }
}

/// The last component of a path.
pub fn file_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_match_by_file_name() {
        let a = Allocators::default();
        for yes in [
            &b"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"[..],
            b"libjemalloc.so",
            b"/opt/lib/libtcmalloc_minimal.so.4",
            b"libtcmalloc.so.4.5.10",
            b"libtcmalloc_minimal_debug.so.4",
            b"/x/libmimalloc.so.2.0",
            b"libsnmallocshim.so",
            b"libhoard.so",
            b"libtbbmalloc_proxy.so.2",
        ] {
            assert!(a.is_allocator(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"/usr/lib/x86_64-linux-gnu/libc.so.6"[..],
            b"/home/me/prog",
            b"/home/libjemalloc.so.2/prog",
            b"libjemalloc_pic.a",
            b"libtcmalloc",
            b"libmimalloc-debug.so",
            b"",
        ] {
            assert!(!a.is_allocator(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn the_variable_adds_prefixes_or_turns_it_off() {
        assert_eq!(Allocators::parse(None), Ok(Allocators::default()));
        assert_eq!(Allocators::parse(Some(b" ")), Ok(Allocators::default()));
        let off = Allocators::parse(Some(b"none")).unwrap();
        assert!(!off.enabled());
        assert!(!off.is_allocator(b"/usr/lib/libjemalloc.so.2"));
        let more = Allocators::parse(Some(b"libmyalloc, librpmalloc.so")).unwrap();
        assert!(more.enabled());
        assert!(more.is_allocator(b"/opt/libmyalloc-2.1.so"));
        assert!(more.is_allocator(b"librpmalloc.so.1"));
        assert!(more.is_allocator(b"libjemalloc.so.2"), "the built-ins stay");
        assert!(!more.is_allocator(b"librpmalloc_test"));
        for bad in [
            &b"libfoo,"[..],
            b",libfoo",
            b"a,,b",
            b"/usr/lib/libfoo.so",
            b"libfoo*.so",
            b"lib?",
            b"none,libfoo",
        ] {
            assert_eq!(
                Allocators::parse(Some(bad)),
                Err(Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

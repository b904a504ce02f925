//! Generates the C header from `src/api.rs` into OUT_DIR. The committed `include/shmtrace.h`
//! must equal it: `make header` copies it over, and the `header_is_current` test fails on a
//! stale copy, so the header users compile against always matches the library.
//!
//! cbindgen does not expand macros, so the hook indexes (`SHMTRACE_CALL_*`) and their count
//! (`SHMTRACE_FUNCTIONS`) are written here from the hook table in `shmtrace-core`.

use std::env;
use std::fmt::Write;
use std::path::PathBuf;

use shmtrace_core::trace::event::Func;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets this")).join("shmtrace.h");
    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets this");
    let part = |name: &str| env::var(name).expect("cargo sets the version parts");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let mut defines = format!(
        "\n#define SHMTRACE_VERSION \"{version}\"\n#define SHMTRACE_VERSION_MAJOR {}\n\
         #define SHMTRACE_VERSION_MINOR {}\n#define SHMTRACE_VERSION_PATCH {}\n",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    );
    defines.push_str("\n// Indexes into `shmtrace_stats.calls`, one per hooked function.\n");
    for func in Func::ALL {
        let name = func.name().to_uppercase();
        writeln!(defines, "#define SHMTRACE_CALL_{name} {}", func as usize).expect("in memory");
    }
    defines
        .push_str("\n// The number of hooked functions (the length of `shmtrace_stats.calls`).\n");
    writeln!(defines, "#define SHMTRACE_FUNCTIONS {}", Func::COUNT).expect("in memory");
    config.after_includes = Some(defines);
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/api.rs"))
        .generate()
        .expect("the C API in src/api.rs is expressible in C")
        .write_to_file(&out);

    // A proper soname: programs linked with -lshmtrace then depend on libshmtrace.so.MAJOR,
    // and `make install` provides it with the usual symlinks.
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmtrace.so.{}",
        part("CARGO_PKG_VERSION_MAJOR")
    );
    println!("cargo:rerun-if-changed=src/api.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // The hook table is a build dependency: cargo reruns this script when it changes.
}

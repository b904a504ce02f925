//! Generates the C header from `src/api.rs` into OUT_DIR. The committed `include/shmtrace.h`
//! must equal it: `make header` copies it over, and the `header_is_current` test fails on a
//! stale copy, so the header users compile against always matches the library.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets this")).join("shmtrace.h");
    let version = env::var("CARGO_PKG_VERSION").expect("cargo sets this");
    let part = |name: &str| env::var(name).expect("cargo sets the version parts");

    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    config.after_includes = Some(format!(
        "\n#define SHMTRACE_VERSION \"{version}\"\n#define SHMTRACE_VERSION_MAJOR {}\n\
         #define SHMTRACE_VERSION_MINOR {}\n#define SHMTRACE_VERSION_PATCH {}\n",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    ));
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
}

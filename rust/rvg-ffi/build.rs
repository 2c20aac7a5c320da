//! Generates the Rust side of the FFI contract from `c-shim/rust-vgpu-ffi.h`,
//! so rustc checks every signature against the header the shim compiles with.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let header = manifest.join("../../c-shim/rust-vgpu-ffi.h");
    println!("cargo:rerun-if-changed={}", header.display());

    let bindings = bindgen::Builder::default()
        .header(header.to_str().expect("header path is UTF-8"))
        .allowlist_type("Rvg.*")
        .allowlist_var("RVG_.*")
        // Enums arrive from C and may hold any value: newtypes, never Rust enums.
        .default_enum_style(bindgen::EnumVariation::NewType {
            is_bitfield: false,
            is_global: false,
        })
        .derive_default(true)
        .generate()
        .expect("bindgen could not parse c-shim/rust-vgpu-ffi.h");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("ffi.rs");
    bindings.write_to_file(out).expect("writing bindings");
}

//! bindgen's translation of `c-shim/rust-vgpu-ffi.h`.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
// bindgen's generated `Default` impls zero plain C structs without a
// comment; the header holds only fixed-width types and pointers, for which
// all-zero is valid.
#![allow(clippy::undocumented_unsafe_blocks)]

include!(concat!(env!("OUT_DIR"), "/ffi.rs"));

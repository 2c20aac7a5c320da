//! The staticlib QEMU links: the Rust half of `c-shim/rust-vgpu-ffi.h`.
//!
//! This is the only crate with `unsafe` FFI code. Each `extern "C"` entry point
//! turns the opaque pointer into `&FfiDevice`, runs the model inside the panic
//! guard, and applies the returned effects through the host services after
//! every device lock is released.

mod backend;
mod bql;
mod device;
mod guard;
mod host;
mod migration;
mod ops;
pub mod sys;

pub use ops::rvg_ops;

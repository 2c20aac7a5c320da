//! The mediator: the vGPU a guest drives, over a GPU reached only through
//! the VFIO device contract (`rvg-vfio`). Safe Rust only: memory that
//! others write concurrently (guest RAM, VRAM) is reached through the
//! contract's safe accessors, whose owners made the promises.

#![forbid(unsafe_code)]

pub mod display;
pub mod error;
pub mod guest_gfx;
pub mod guest_mem;
pub mod pin_cache;
pub mod scan;
pub mod shadow;
pub mod shared;
pub mod vgpu;

pub use guest_mem::MemKind;
pub use shared::SharedGpu;
pub use vgpu::{GpuWrite, LoadError, SaveError, SavedVgpu, Vgpu, VgpuConfig, QUIESCE_TIMEOUT};

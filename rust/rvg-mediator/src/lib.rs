//! The mediator: the vGPU a guest drives, over a GPU reached only through
//! the VFIO device contract (`rvg-vfio`).

pub mod guest_mem;
pub mod pin_cache;
pub mod shadow;
pub mod vgpu;

pub use guest_mem::MemKind;
pub use vgpu::{Vgpu, VgpuConfig};

//! The physical RVG-1 GPU at run time: what `rust-vgpu-hw` exposes raw and
//! what the soft backend runs behind the VFIO contract.
//!
//! `rvg-model` says what the hardware does; this crate gives it a body:
//! VRAM in host memory shared with the guest, graphics memory through the
//! GTT (`GfxMem`, the engine's `GfxMemory`), and the engine's worker thread.
//! The `unsafe` these need (the VRAM mapping, fills) is here.

pub mod arbiter;
mod fill;
pub mod gfx_mem;
pub mod gpu;
pub mod partition;
pub mod vram;

pub use gpu::{Gpu, IrqSink, GTT_ENTRIES};
pub use partition::{Partition, MAX_VFS};
pub use rvg_model::config::GpuConfig;

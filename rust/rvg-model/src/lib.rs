//! The RVG-1 GPU model: what `docs/hardware.md` specifies, as plain Rust.
//!
//! Nothing here knows about QEMU, VFIO or FFI. `Gpu` is the physical GPU;
//! the register blocks and interrupt logic are shared with the mediator's
//! virtual GPU.

pub mod access;
pub mod block;
pub mod cmd;
pub mod config;
pub mod copy_rect;
pub mod dma;
pub mod effects;
pub mod engine;
pub mod gfx_mem;
pub mod global;
pub mod gpu;
pub mod gtt;
pub mod irq;
pub mod regs;
pub mod vram;

pub use config::ConfigError;
pub use effects::{Diag, Effects};
pub use gpu::{Gpu, GpuConfig};
pub use irq::{IntSource, IrqLine};

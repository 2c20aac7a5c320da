//! The RVG-1 GPU model: what `docs/hardware.md` specifies, as plain Rust.
//!
//! Nothing here knows about QEMU, VFIO, FFI, threads or host memory: the
//! register blocks, the access rule, interrupt logic, GTT entries, the
//! command table and the engine's semantics over a `GfxMemory`. The
//! physical GPU that runs them (`rvg-gpu`) and the mediator's virtual GPU
//! share it.

#![forbid(unsafe_code)]

pub mod access;
pub mod block;
pub mod cmd;
pub mod config;
pub mod copy_rect;
pub mod dma;
pub mod effects;
pub mod engine;
pub mod global;
pub mod gtt;
pub mod irq;
pub mod memory;
pub mod rect_exec;
pub mod regs;
mod table;

#[cfg(test)]
mod test_mem;

pub use config::{ConfigError, GpuConfig};
pub use effects::{Diag, Effects};
pub use irq::{IntSource, IrqLine};
pub use memory::{Fault, GfxMemory};

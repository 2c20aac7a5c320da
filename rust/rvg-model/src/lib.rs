//! The RVG-1 GPU model: what `docs/hardware.md` specifies, as plain safe Rust.
//!
//! Nothing here knows about QEMU or FFI; the staticlib (`rvg-ffi`) adapts it.

pub mod access;
pub mod config;
pub mod device;
pub mod irq;
pub mod regs;

pub use config::{ConfigError, DeviceConfig, ModelKind};
pub use device::{Device, IrqLine};

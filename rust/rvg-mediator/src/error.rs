//! The mediator's errors: why a GPU cannot be taken over, why a vGPU
//! cannot attach to it. Text is made where a person reads it (the FFI
//! layer reports these through QEMU's `Error`).

use std::io;

use rvg_model::config::{human_size, ConfigError};
use rvg_model::regs::{bar2, pci, RVG_ID};

/// A call through the VFIO contract that failed, and what it was for.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ContractError {
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

/// `map_err(contract("reading the GPU's ID"))`: an io::Error from the
/// contract, with what it was for.
pub fn contract(what: &'static str) -> impl FnOnce(io::Error) -> ContractError {
    move |source| ContractError { what, source }
}

/// Why a GPU has no room for another vGPU.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    #[error("the GPU's GTT holds {capacity} vGPUs and all are in use")]
    GttFull { capacity: usize },
    #[error(
        "the GPU's GTT has {available} entries for vGPUs and gfx-size {} needs {wanted}: \
         a smaller gfx-size fits",
        human_size(u64::from(*wanted) << 12)
    )]
    GttTooSmall { available: u32, wanted: u32 },
    #[error(
        "the GPU's VRAM has no free {} slice ({} of {} in use by {users} vGPUs)",
        human_size(*wanted),
        human_size(*used),
        human_size(*total)
    )]
    VramFull {
        wanted: u64,
        used: u64,
        total: u64,
        users: usize,
    },
}

/// Why a device cannot be the vGPUs' GPU.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Contract(#[from] ContractError),
    #[error(
        "not an RVG-1 GPU: {vendor:04x}:{device:04x} subsystem {subsystem_vendor:04x}:{subsystem:04x} \
         (RVG-1 has subsystem {:04x}:{:04x})",
        pci::SUBSYSTEM_VENDOR_ID,
        pci::SUBSYSTEM_ID
    )]
    NotRvg1 {
        vendor: u16,
        device: u16,
        subsystem_vendor: u16,
        subsystem: u16,
    },
    #[error("BAR2 region is not a read-write {} byte region", bar2::SIZE)]
    Bar2Unusable,
    #[error("the GPU's ID register reads {id:#x}, not RVG1 ({RVG_ID:#x})")]
    BadId { id: u32 },
    #[error(
        "the GPU is too small for the mediator ({gtt_entries} GTT entries, {vram_size:#x} bytes of VRAM)"
    )]
    TooSmall { gtt_entries: u32, vram_size: u64 },
    #[error("the GPU offers none of MSI-X, MSI and INTx through eventfds")]
    NoInterrupt,
}

/// Why a vGPU cannot attach to its GPU.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    NoRoom(#[from] NoRoom),
    #[error(transparent)]
    Contract(#[from] ContractError),
}

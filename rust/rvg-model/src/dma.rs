//! How the GPU reaches system memory: DMA addresses from its GTT, resolved by
//! whoever hosts it (QEMU's PCI DMA API for `rust-vgpu-hw`, the soft
//! backend's DMA mapping table behind the VFIO contract).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaError {
    pub addr: u64,
    pub len: u64,
}

impl fmt::Display for DmaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DMA of {} bytes at {:#x} is not mapped",
            self.len, self.addr
        )
    }
}

pub trait DmaSpace: Send + Sync {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError>;
}

/// A GPU with nothing mapped: every access fails.
pub struct NoDma;

impl DmaSpace for NoDma {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        Err(DmaError {
            addr,
            len: buf.len() as u64,
        })
    }
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        Err(DmaError {
            addr,
            len: data.len() as u64,
        })
    }
}

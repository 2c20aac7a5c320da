//! The VFIO device contract between the mediator and a GPU, and the soft
//! backend: the RVG-1 model in-process behind that contract.

pub mod contract;
pub mod dma_table;
pub mod soft;

pub use contract::{Region, VfioDevice};
pub use soft::SoftGpu;

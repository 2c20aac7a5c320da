//! The VFIO device contract between the mediator and a GPU, the soft
//! backend (the RVG-1 model in-process behind that contract) and the kernel
//! backend (a host VFIO device).

pub mod contract;
pub mod dma_table;
pub mod host_mem;
pub mod kernel;
pub mod soft;

pub use contract::{Region, VfioDevice};
pub use host_mem::{DmaMapping, HostRange, Mapping, OutOfRange};
pub use kernel::KernelDevice;
pub use soft::SoftGpu;

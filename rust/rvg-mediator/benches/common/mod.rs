//! What the benchmarks share: a vGPU on a private soft GPU, and busy ones.

#![allow(dead_code)]

pub mod busy;

use std::sync::Arc;

use rvg_mediator::shared::SchedConfig;
use rvg_mediator::{SharedGpu, Vgpu, VgpuConfig};
use rvg_model::GpuConfig;
use rvg_vfio::SoftGpu;

/// A vGPU with `vram` bytes of VRAM alone on a soft GPU, on the heap as
/// the device layer holds it (a vGPU is a few hundred bytes of state, and
/// where it sits moves a microsecond-scale figure).
pub fn private_vgpu(vram: u64) -> Box<Vgpu> {
    let config = VgpuConfig::new(vram);
    let soft = SoftGpu::new(
        GpuConfig {
            vram_size: config.private_gpu_vram(),
        },
        Box::new(|m| panic!("{m}")),
    )
    .expect("soft GPU");
    let gpu = SharedGpu::new(
        Arc::new(soft),
        SchedConfig::default(),
        Arc::new(|m| panic!("{m}")),
    )
    .expect("shared GPU");
    Box::new(Vgpu::new(config, Arc::new(gpu)).expect("vGPU"))
}

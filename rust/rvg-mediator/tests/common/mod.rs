//! What the integration tests share: a soft GPU, and a guest driving one
//! vGPU through its registers and VRAM.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rvg_mediator::shared::{SchedConfig, TIMESLICE_DEFAULT};
use rvg_mediator::{SharedGpu, Vgpu, VgpuConfig};
use rvg_model::cmd::Command;
use rvg_model::engine::ring_ctl;
use rvg_model::gtt::GttEntry;
use rvg_model::irq::IntSource;
use rvg_model::regs::{bar2, EngineReg, GlobalReg, Register};
use rvg_model::GpuConfig;
use rvg_vfio::SoftGpu;

pub const VRAM: u64 = 4 << 20;
pub const PAGE: u64 = 4096;
/// Graphics addresses of the guest's ring and batch: VRAM pages 0 and 1.
pub const RING: u64 = 0;
pub const BATCH: u64 = 0x1000;

pub fn gpu(vram: u64, timeslice: Duration) -> (Arc<SharedGpu>, Arc<SoftGpu>) {
    let soft = Arc::new(
        SoftGpu::new(
            GpuConfig { vram_size: vram },
            Box::new(|m| panic!("soft GPU: {m}")),
        )
        .unwrap(),
    );
    let shared = SharedGpu::new(
        soft.clone(),
        SchedConfig {
            timeslice,
            ..SchedConfig::default()
        },
        Arc::new(|m| panic!("scheduler: {m}")),
    );
    (Arc::new(shared.unwrap()), soft)
}

/// A guest's view of one vGPU: its registers and its VRAM.
pub struct Guest {
    pub v: Vgpu,
    pub tail: u32,
}

pub fn eng(r: EngineReg) -> u64 {
    bar2::ENGINE + r.offset()
}

impl Guest {
    pub fn new(v: Vgpu) -> Guest {
        let mut g = Guest { v, tail: 0 };
        // As a driver does: bus mastering on before the GPU touches RAM.
        g.v.set_bus_master(true);
        // Graphics pages 0..256 on the first MiB of the VRAM slice.
        for i in 0..256u64 {
            g.v.mmio_write(bar2::GTT + 8 * i, GttEntry::new(i * PAGE, true).0, 8);
        }
        g.v.mmio_write(
            bar2::GLOBAL + GlobalReg::IntEnable.offset(),
            u64::from(IntSource::all().bits()),
            4,
        );
        g.v.mmio_write(eng(EngineReg::RingBase), RING, 8);
        g.v.mmio_write(eng(EngineReg::RingSize), PAGE, 4);
        g.v.mmio_write(eng(EngineReg::RingCtl), u64::from(ring_ctl::ENABLE), 4);
        g
    }

    pub fn write(&self, offset: u64, bytes: &[u8]) {
        assert!(offset + bytes.len() as u64 <= VRAM);
        // SAFETY: inside the slice mapping, which lives as long as `v`.
        unsafe {
            let dst = self.v.vram_ptr().add(offset as usize);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len())
        }
    }

    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        assert!(offset + len as u64 <= VRAM);
        let mut out = vec![0; len];
        // SAFETY: as for `write`.
        unsafe {
            let src = self.v.vram_ptr().add(offset as usize);
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), len)
        }
        out
    }

    pub fn put(&self, offset: u64, cmds: &[Command]) -> u32 {
        let bytes: Vec<u8> = cmds
            .iter()
            .flat_map(|c| c.encode())
            .flat_map(|d| d.to_le_bytes())
            .collect();
        self.write(offset, &bytes);
        bytes.len() as u32
    }

    pub fn u32_at(&self, offset: u64) -> u32 {
        u32::from_le_bytes(self.read(offset, 4).try_into().unwrap())
    }

    /// Append to the ring and write the tail.
    pub fn submit(&mut self, cmds: &[Command]) {
        let n = self.put(RING + u64::from(self.tail), cmds);
        self.tail = (self.tail + n) % PAGE as u32;
        self.v
            .mmio_write(eng(EngineReg::RingTail), u64::from(self.tail), 4);
    }

    pub fn reg(&mut self, r: EngineReg) -> u64 {
        self.v.mmio_read(eng(r), r.width() as u32).unwrap()
    }

    /// Wait until the virtual head reaches the tail or the engine stops.
    pub fn wait_idle(&mut self) {
        let start = Instant::now();
        while self.reg(EngineReg::RingHead) != u64::from(self.tail)
            && self.reg(EngineReg::Error) == 0
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "engine stuck:\n{}",
                self.v.describe()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

pub fn guest() -> (Guest, Arc<SoftGpu>) {
    let config = VgpuConfig::new(VRAM);
    let (gpu, soft) = gpu(config.private_gpu_vram(), TIMESLICE_DEFAULT);
    (Guest::new(Vgpu::new(config, gpu).unwrap()), soft)
}

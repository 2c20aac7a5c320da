//! The mediator on SR-IOV VFs: each VF of one GPU, behind its own
//! contract, is a whole GPU to its mediator. Its vGPU takes a slice of the
//! VF's partition, and what its guest runs lands in that partition only.
//! Density: 16 vGPUs on one in-process GPU.

mod common;

use std::sync::Arc;

use common::{gpu, Guest, VRAM};
use rvg_gpu::Gpu;
use rvg_mediator::shared::{SchedConfig, TIMESLICE_DEFAULT};
use rvg_mediator::{SharedGpu, Vgpu, VgpuConfig};
use rvg_model::cmd::Command;
use rvg_model::engine::error;
use rvg_model::regs::{bar2, EngineReg, GlobalReg, Register};
use rvg_model::GpuConfig;
use rvg_vfio::SoftGpu;

const MIB: u64 = 1 << 20;

/// The mediator's GPU on VF `index` of `pf`.
fn on_vf(pf: &Gpu, index: u16) -> Arc<SharedGpu> {
    let soft = SoftGpu::on(pf.vf(index).unwrap(), Box::new(|m| panic!("VF: {m}")));
    let shared = SharedGpu::private(
        Arc::new(soft),
        SchedConfig::default(),
        Arc::new(|m| panic!("scheduler: {m}")),
    );
    Arc::new(shared.unwrap())
}

fn config(gfx_size: u64) -> VgpuConfig {
    VgpuConfig {
        gfx_size,
        ..VgpuConfig::new(VRAM)
    }
}

fn fill(color: u32) -> Command {
    Command::FillRect {
        dst: 0x10000,
        pitch: 4096,
        width: 1024,
        height: 32,
        color,
    }
}

#[test]
fn a_vgpu_on_each_vf_draws_into_its_own_partition() {
    // 4 VFs of 16 MiB and 32768 GTT entries each.
    let pf = Gpu::with_vfs(
        GpuConfig {
            vram_size: 64 * MIB,
        },
        4,
    )
    .unwrap();
    let err = Vgpu::new(config(128 * MIB), on_vf(&pf, 0)).err().unwrap();
    assert_eq!(
        err.to_string(),
        "the GPU's GTT has 31744 entries for vGPUs and gfx-size 134217728 (128 MiB) \
         needs 32768: a smaller gfx-size fits"
    );
    let mut a = Guest::new(Vgpu::new(config(64 * MIB), on_vf(&pf, 1)).unwrap());
    let mut b = Guest::new(Vgpu::new(config(64 * MIB), on_vf(&pf, 2)).unwrap());
    let gtt_entries = bar2::GLOBAL + GlobalReg::GttEntries.offset();
    assert_eq!(a.v.mmio_read(gtt_entries, 4).unwrap(), 16384);
    a.submit(&[
        fill(0xaaaa_aaaa),
        Command::Fence {
            seqno: 1,
            interrupt: true,
        },
    ]);
    b.submit(&[
        fill(0xbbbb_bbbb),
        Command::Fence {
            seqno: 2,
            interrupt: true,
        },
    ]);
    a.wait_idle();
    b.wait_idle();
    assert_eq!(a.reg(EngineReg::Seqno), 1);
    assert_eq!(b.reg(EngineReg::Seqno), 2);
    assert_eq!(a.reg(EngineReg::Error), u64::from(error::NONE));
    assert_eq!(a.u32_at(0x10000 + 31 * 4096), 0xaaaa_aaaa);
    assert_eq!(b.u32_at(0x10000), 0xbbbb_bbbb);
    // In the GPU's VRAM each fill is inside its VF's partition, in the
    // vGPU's slice of it (above the mediator's 1 MiB: at 4 MiB).
    let at = |partition: u64| {
        let mut px = [0u8; 4];
        pf.vram()
            .read(partition * 16 * MIB + 4 * MIB + 0x10000, &mut px)
            .unwrap();
        u32::from_le_bytes(px)
    };
    assert_eq!(
        (at(0), at(1), at(2), at(3)),
        (0, 0xaaaa_aaaa, 0xbbbb_bbbb, 0)
    );
}

/// Density: 16 vGPUs of 16 MiB graphics space and 1 MiB VRAM share one
/// GPU's engine; each one's work completes with its own result.
#[test]
fn sixteen_vgpus_share_one_gpu() {
    let (shared, _soft) = gpu(32 * MIB, TIMESLICE_DEFAULT);
    let mut guests: Vec<Guest> = (0..16)
        .map(|_| {
            let cfg = VgpuConfig {
                gfx_size: 16 * MIB,
                ..VgpuConfig::new(MIB)
            };
            Guest::new(Vgpu::new(cfg, shared.clone()).unwrap())
        })
        .collect();
    assert_eq!(shared.occupancy(), (16, 31));
    for (i, g) in guests.iter_mut().enumerate() {
        g.submit(&[
            Command::FillRect {
                dst: 0x10000,
                pitch: 4096,
                width: 1024,
                height: 16,
                color: i as u32,
            },
            Command::Fence {
                seqno: 100 + i as u32,
                interrupt: true,
            },
        ]);
    }
    for (i, g) in guests.iter_mut().enumerate() {
        g.wait_idle();
        assert_eq!(g.reg(EngineReg::Seqno), 100 + i as u64);
        assert_eq!(g.u32_at(0x10000 + 15 * 4096), i as u32);
    }
}

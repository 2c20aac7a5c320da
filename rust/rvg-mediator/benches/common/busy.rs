//! A vGPU kept busy: its ring always holds 4 MiB fills, each with a fence
//! that counts it.

use std::sync::Arc;

use rvg_mediator::{SharedGpu, Vgpu, VgpuConfig};
use rvg_model::cmd::Command;
use rvg_model::engine::ring_ctl;
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, EngineReg, Register};

const PAGE: u64 = 4096;
pub const RING: u32 = 64 << 10;
/// A 4 MiB fill past the ring, then a fence with its number.
const ROWS: u32 = 1024;
/// Fills kept queued per vGPU: about 5 ms of this machine's engine.
const QUEUED: u32 = 64;

pub fn eng(r: EngineReg) -> u64 {
    bar2::ENGINE + r.offset()
}

pub struct Busy {
    pub v: Vgpu,
    tail: u32,
    emitted: u32,
}

impl Busy {
    /// A vGPU of `config` on `gpu`, its VRAM mapped 1:1 from graphics 0.
    pub fn new(gpu: &Arc<SharedGpu>, config: VgpuConfig) -> Busy {
        let pages = config.vram_size.min(config.gfx_size) / PAGE;
        let mut v = Vgpu::new(config, gpu.clone()).expect("vGPU");
        for i in 0..pages {
            v.mmio_write(bar2::GTT + 8 * i, GttEntry::new(i * PAGE, true).0, 8);
        }
        v.mmio_write(eng(EngineReg::RingSize), u64::from(RING), 4);
        v.mmio_write(eng(EngineReg::RingCtl), u64::from(ring_ctl::ENABLE), 4);
        Busy {
            v,
            tail: 0,
            emitted: 0,
        }
    }

    pub fn done(&mut self) -> u32 {
        self.v.mmio_read(eng(EngineReg::Seqno), 4).unwrap() as u32
    }

    /// Top the ring up to `QUEUED` fills.
    pub fn feed(&mut self) {
        assert_eq!(self.v.mmio_read(eng(EngineReg::Error), 4), Ok(0));
        let queued = self.emitted - self.done();
        if queued > QUEUED / 2 {
            return;
        }
        for _ in queued..QUEUED {
            self.emitted += 1;
            let cmds = [
                Command::FillRect {
                    dst: u64::from(RING),
                    pitch: 4096,
                    width: 1024,
                    height: ROWS,
                    color: self.emitted,
                },
                Command::Fence {
                    seqno: self.emitted,
                    interrupt: false,
                },
            ];
            for d in cmds.iter().flat_map(|c| c.encode()) {
                // SAFETY: the ring lies inside the VRAM slice, which lives
                // as long as `v`.
                unsafe {
                    let at = self.v.vram_ptr().add(self.tail as usize).cast::<u32>();
                    at.write_unaligned(d.to_le());
                }
                self.tail = (self.tail + 4) % RING;
            }
        }
        self.v
            .mmio_write(eng(EngineReg::RingTail), u64::from(self.tail), 4);
    }
}

//! The physical RVG-1 GPU: what `rust-vgpu-hw` exposes raw and what the soft
//! backend runs behind the VFIO contract. Full GTT, all registers, no
//! mediation: whoever drives it is trusted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::block::{RegError, RegFile};
use crate::config::{check_vram_size, ConfigError};
use crate::dma::{DmaSpace, NoDma};
use crate::effects::Effects;
use crate::global::{GlobalBlock, GlobalWrite};
use crate::gtt::GttEntry;
use crate::irq::IrqLine;
use crate::regs::{bar2, Bar2Target, DisplayReg, EngineReg};
use crate::vram::Vram;

/// Entries of the physical GTT: the whole BAR2 window, 512 MiB of graphics
/// address space.
pub const GTT_ENTRIES: u32 = bar2::GTT_WINDOW_ENTRIES;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuConfig {
    pub vram_size: u64,
}

#[derive(Debug, Default)]
struct GpuState {
    global: Option<GlobalBlock>,
    engine: RegFile<EngineReg>,
    display: RegFile<DisplayReg>,
}

pub struct Gpu {
    config: GpuConfig,
    vram: Vram,
    gtt: Box<[AtomicU64]>,
    state: Mutex<GpuState>,
    dma: RwLock<Arc<dyn DmaSpace>>,
}

impl Gpu {
    pub fn new(config: GpuConfig) -> Result<Gpu, ConfigError> {
        check_vram_size(config.vram_size)?;
        let vram = Vram::new(config.vram_size).map_err(|e| {
            ConfigError::Host(format!(
                "cannot allocate {} bytes of VRAM: {e}",
                config.vram_size
            ))
        })?;
        let gtt = (0..GTT_ENTRIES).map(|_| AtomicU64::new(0)).collect();
        let gpu = Gpu {
            vram,
            gtt,
            state: Mutex::new(GpuState::default()),
            dma: RwLock::new(Arc::new(NoDma)),
            config,
        };
        gpu.state.lock().global = Some(GlobalBlock::new(gpu.config.vram_size, GTT_ENTRIES));
        Ok(gpu)
    }

    pub fn config(&self) -> &GpuConfig {
        &self.config
    }

    pub fn vram(&self) -> &Vram {
        &self.vram
    }

    /// Install how DMA addresses reach memory.
    pub fn set_dma(&self, dma: Arc<dyn DmaSpace>) {
        *self.dma.write() = dma;
    }

    pub fn dma(&self) -> Arc<dyn DmaSpace> {
        self.dma.read().clone()
    }

    /// A whole-entry write to the GTT window (`BAR2 + GTT + 8 * index`):
    /// what an aligned 8-byte MMIO write there does, without the decoding.
    /// Returns false for an index past the GTT.
    pub fn set_gtt_entry(&self, index: u32, entry: GttEntry) -> bool {
        match self.gtt.get(index as usize) {
            Some(slot) => {
                slot.store(entry.0, Ordering::Release);
                true
            }
            None => false,
        }
    }

    pub fn gtt_entry(&self, index: u32) -> Option<GttEntry> {
        self.gtt
            .get(index as usize)
            .map(|e| GttEntry(e.load(Ordering::Acquire)))
    }

    pub fn irq_line(&self) -> IrqLine {
        self.global_irq(|g| g.irq.current())
    }

    fn global_irq<T>(&self, f: impl FnOnce(&mut GlobalBlock) -> T) -> T {
        f(self.state.lock().global.as_mut().expect("set in new"))
    }

    /// Power-on state: registers and GTT cleared. VRAM keeps its contents,
    /// as memory does across a reset.
    pub fn reset(&self) -> Effects {
        for e in self.gtt.iter() {
            e.store(0, Ordering::Release);
        }
        let mut st = self.state.lock();
        st.global.as_mut().expect("set in new").reset();
        st.engine = RegFile::default();
        st.display = RegFile::default();
        Effects {
            irq: Some(st.global.as_ref().expect("set in new").irq.current()),
            diags: Vec::new(),
        }
    }

    pub fn mmio_read(&self, offset: u64, size: u32) -> (u64, Effects) {
        let mut fx = Effects::default();
        // The raw model has no bochs-compatible block: only a vGPU needs one.
        let result = match Bar2Target::decode(offset) {
            Bar2Target::Global(rel) => self.global_irq(|g| g.read(rel, size)),
            Bar2Target::Engine(rel) => self.state.lock().engine.read(rel, size),
            Bar2Target::Display(rel) => self.state.lock().display.read(rel, size),
            Bar2Target::Gtt { index, within } => self.gtt_read(index, within, size),
            _ => Err(RegError::NoRegister { offset, size }),
        };
        let value = fx.read_value(offset, result);
        (value, fx)
    }

    pub fn mmio_write(&self, offset: u64, value: u64, size: u32) -> Effects {
        let mut fx = Effects::default();
        let result = match Bar2Target::decode(offset) {
            Bar2Target::Global(rel) => match self.global_irq(|g| g.write(rel, value, size)) {
                Ok(GlobalWrite::Reset) => return self.reset(),
                Ok(GlobalWrite::Trigger(src)) => {
                    fx.irq = Some(self.global_irq(|g| g.irq.raise(src)));
                    return fx;
                }
                Ok(GlobalWrite::Done(line)) => {
                    fx.irq = Some(line);
                    return fx;
                }
                Err(e) => Err(e),
            },
            Bar2Target::Engine(rel) => self.state.lock().engine.write(rel, value, size).map(|_| ()),
            Bar2Target::Display(rel) => self
                .state
                .lock()
                .display
                .write(rel, value, size)
                .map(|_| ()),
            Bar2Target::Gtt { index, within } => self.gtt_write(index, within, value, size),
            _ => Err(RegError::NoRegister { offset, size }),
        };
        fx.check_write(offset, value, result);
        fx
    }

    fn gtt_slot(&self, index: u64, within: u64, size: u32) -> Result<&AtomicU64, RegError> {
        let slot = self.gtt.get(index as usize).ok_or(RegError::NoRegister {
            offset: bar2::GTT + index * 8 + within,
            size,
        })?;
        crate::access::Lane::new(within, size, 0, 8)
            .ok()
            .filter(|l| l.size >= 4)
            .map(|_| slot)
            .ok_or(RegError::Access {
                reg: "GTT",
                err: crate::access::AccessError::Value {
                    value: u64::from(size),
                    expected: "GTT entries take aligned 4- or 8-byte accesses",
                },
            })
    }

    fn gtt_read(&self, index: u64, within: u64, size: u32) -> Result<u64, RegError> {
        let slot = self.gtt_slot(index, within, size)?;
        let lane = crate::access::Lane::new(within, size, 0, 8).expect("checked");
        Ok(lane.extract(slot.load(Ordering::Acquire)))
    }

    /// The physical GTT takes 4-byte halves as they come: only trusted
    /// software (the mediator, a host driver) writes it.
    fn gtt_write(&self, index: u64, within: u64, value: u64, size: u32) -> Result<(), RegError> {
        let slot = self.gtt_slot(index, within, size)?;
        let lane = crate::access::Lane::new(within, size, 0, 8).expect("checked");
        if size == 8 {
            slot.store(value, Ordering::Release);
        } else {
            let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(lane.merge(old, value))
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::irq::IntSource;
    use crate::regs::{GlobalReg, Register, RVG_ID};

    fn gpu() -> Gpu {
        Gpu::new(GpuConfig {
            vram_size: 16 << 20,
        })
        .unwrap()
    }

    fn g(r: GlobalReg) -> u64 {
        bar2::GLOBAL + r.offset()
    }

    #[test]
    fn identity_and_sizes() {
        let gpu = gpu();
        assert_eq!(gpu.mmio_read(g(GlobalReg::Id), 4).0, u64::from(RVG_ID));
        assert_eq!(gpu.mmio_read(g(GlobalReg::VramSize), 8).0, 16 << 20);
        assert_eq!(
            gpu.mmio_read(g(GlobalReg::GttEntries), 4).0,
            u64::from(GTT_ENTRIES)
        );
    }

    #[test]
    fn gtt_window_full_and_half_writes() {
        let gpu = gpu();
        let at = bar2::GTT + 5 * 8;
        gpu.mmio_write(at, 0x1234_5003, 8);
        assert_eq!(gpu.gtt_entry(5), Some(GttEntry(0x1234_5003)));
        gpu.mmio_write(at + 4, 0x9, 4);
        assert_eq!(gpu.mmio_read(at, 8).0, 0x9_1234_5003);
        let fx = gpu.mmio_write(at + 2, 0, 2);
        assert_eq!(fx.diags.len(), 1);
        let last = bar2::GTT + u64::from(GTT_ENTRIES - 1) * 8;
        gpu.mmio_write(last, 0x3, 8);
        assert_eq!(gpu.gtt_entry(GTT_ENTRIES - 1), Some(GttEntry(3)));
    }

    #[test]
    fn software_interrupt_and_reset() {
        let gpu = gpu();
        let sw = u64::from(IntSource::SOFTWARE.bits());
        gpu.mmio_write(g(GlobalReg::IntEnable), sw, 4);
        let fx = gpu.mmio_write(g(GlobalReg::IntTrigger), sw, 4);
        assert_eq!(
            fx.irq,
            Some(IrqLine {
                asserted: true,
                message: true
            })
        );
        gpu.mmio_write(bar2::GTT, 0x3, 8);
        gpu.vram().write(0, &[7]).unwrap();
        let fx = gpu.mmio_write(g(GlobalReg::Reset), u64::from(crate::regs::RESET_MAGIC), 4);
        assert_eq!(fx.irq, Some(IrqLine::default()));
        assert_eq!(gpu.gtt_entry(0), Some(GttEntry(0)));
        let mut b = [0];
        gpu.vram().read(0, &mut b).unwrap();
        assert_eq!(b, [7], "VRAM survives reset");
    }

    #[test]
    fn engine_and_display_blocks_store_values() {
        let gpu = gpu();
        gpu.mmio_write(bar2::ENGINE, 0x10_0000, 8);
        assert_eq!(gpu.mmio_read(bar2::ENGINE, 8).0, 0x10_0000);
        gpu.mmio_write(bar2::DISPLAY + 0x10, 1024, 4);
        assert_eq!(gpu.mmio_read(bar2::DISPLAY + 0x10, 4).0, 1024);
        let (v, fx) = gpu.mmio_read(0x8000, 4);
        assert_eq!((v, fx.diags.len()), (0, 1));
    }
}

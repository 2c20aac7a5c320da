//! The vGPU: the device a guest drives, mediated onto a GPU it reaches only
//! through the VFIO device contract.
//!
//! Guest-visible state (config aside, which QEMU's PCI core holds) lives
//! here: the virtual register blocks, the guest's GTT. What reaches the GPU:
//! shadowed GTT entries in the vGPU's slice of the physical GTT, forwarded
//! software interrupts, DMA mappings of guest RAM. Physical interrupts come
//! back on an eventfd and update the virtual interrupt status.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use parking_lot::Mutex;
use rvg_model::block::{decode, RegError, RegFile};
use rvg_model::config::{check_vgpu_vram_size, ConfigError};
use rvg_model::effects::Effects;
use rvg_model::global::{GlobalBlock, GlobalWrite};
use rvg_model::gtt::{gfx_addr, GttEntry, PAGE_SIZE};
use rvg_model::irq::{IntSource, IrqLine};
use rvg_model::regs::{
    bar2, pci, Bar2Target, DispiReg, DisplayReg, EngineReg, GlobalReg, QemuExtReg, Register,
    DISPI_ID5, QEXT_LITTLE_ENDIAN, RVG_ID,
};
use rvg_vfio::contract::{
    DmaFlags, IrqSet, Mapping, Region, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR2_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
};
use rvg_vfio::VfioDevice;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::guest_mem::{GuestMemory, GuestRange, MemKind};
use crate::shadow::{EntryState, GttShadow, PhysGtt, ShadowStats, SliceLayout, WriteOutcome};

/// GTT entries of a vGPU: 128 MiB of graphics address space.
pub const VGPU_GTT_ENTRIES: u32 = 32768;
/// Physical GTT entries kept for the mediator itself, before any slice.
pub const RESERVED_GTT_ENTRIES: u32 = 1024;
/// Physical VRAM kept for the mediator (the scratch page first), before any slice.
pub const RESERVED_VRAM: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgpuConfig {
    pub vram_size: u64,
}

impl VgpuConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_vgpu_vram_size(self.vram_size)
    }

    /// A GPU of its own: twice the vGPU's VRAM, the slice in the upper half,
    /// the reserved area (scratch page) at the bottom.
    pub fn private_gpu_vram(&self) -> u64 {
        2 * self.vram_size
    }

    pub fn private_layout(&self) -> SliceLayout {
        SliceLayout {
            gtt_base: RESERVED_GTT_ENTRIES,
            gtt_entries: VGPU_GTT_ENTRIES,
            vram_base: self.vram_size,
            vram_size: self.vram_size,
            scratch: 0,
        }
    }
}

/// The interrupt sources the vGPU takes from the physical GPU.
const PHYS_SOURCES: IntSource = IntSource::all();

/// How the physical interrupt reaches us.
struct PhysIrq {
    eventfd: EventFd,
    /// The VFIO IRQ index in use: MSI-X, or INTx, which needs an unmask
    /// after each assertion (AUTOMASKED).
    index: u32,
}

/// The physical GTT through the contract: entries in BAR2's GTT window.
struct ContractGtt<'a>(&'a Region);

impl PhysGtt for ContractGtt<'_> {
    fn write(&mut self, index: u32, entry: GttEntry) -> io::Result<()> {
        self.0.write_u64(bar2::GTT + u64::from(index) * 8, entry.0)
    }
    fn read(&mut self, index: u32) -> io::Result<GttEntry> {
        self.0
            .read_u64(bar2::GTT + u64::from(index) * 8)
            .map(GttEntry)
    }
}

/// The virtual register blocks: everything a reset puts back.
struct Regs {
    global: GlobalBlock,
    engine: RegFile<EngineReg>,
    display: RegFile<DisplayReg>,
    dispi: RegFile<DispiReg>,
    qext_endian: u32,
    vga_ports: [u8; bar2::VGA_PORTS_SIZE as usize],
}

impl Regs {
    fn new(config: &VgpuConfig, layout: &SliceLayout) -> Regs {
        Regs {
            global: GlobalBlock::new(config.vram_size, layout.gtt_entries),
            engine: RegFile::default(),
            display: RegFile::default(),
            dispi: RegFile::default(),
            qext_endian: QEXT_LITTLE_ENDIAN,
            vga_ports: [0; bar2::VGA_PORTS_SIZE as usize],
        }
    }
}

struct State {
    regs: Regs,
    gtt: GttShadow,
    /// Guest memory and its DMA mappings outlive a device reset.
    mem: GuestMemory,
    phys_events: u64,
}

pub struct Vgpu {
    config: VgpuConfig,
    dev: Arc<dyn VfioDevice>,
    bar2: Region,
    vram: Mapping,
    irq: PhysIrq,
    state: Mutex<State>,
}

fn ctx(what: &str) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Vgpu {
    /// Attach a vGPU to `dev` at `layout`: check the device is an RVG-1 GPU
    /// with room for the slice, map the VRAM slice, wire the physical
    /// interrupt, point the slice at the scratch page.
    pub fn new(
        config: VgpuConfig,
        dev: Arc<dyn VfioDevice>,
        layout: SliceLayout,
    ) -> Result<Vgpu, String> {
        config.validate().map_err(|e| e.to_string())?;
        check_identity(&dev)?;
        let bar2 = Region::new(dev.clone(), VFIO_PCI_BAR2_REGION_INDEX)
            .map_err(ctx("BAR2 region info"))?;
        if !bar2.info.readable() || !bar2.info.writable() || bar2.info.size < bar2::SIZE {
            return Err(format!(
                "BAR2 region is not a read-write {} byte region",
                bar2::SIZE
            ));
        }
        let reg = |r: GlobalReg| bar2::GLOBAL + r.offset();
        let id = bar2
            .read_u32(reg(GlobalReg::Id))
            .map_err(ctx("reading the GPU's ID"))?;
        if id != RVG_ID {
            return Err(format!(
                "the GPU's ID register reads {id:#x}, not RVG1 ({RVG_ID:#x})"
            ));
        }
        let phys_entries = bar2
            .read_u32(reg(GlobalReg::GttEntries))
            .map_err(ctx("reading GTT_ENTRIES"))?;
        let phys_vram = bar2
            .read_u64(reg(GlobalReg::VramSize))
            .map_err(ctx("reading VRAM_SIZE"))?;
        if u64::from(layout.gtt_base) + u64::from(layout.gtt_entries) > u64::from(phys_entries)
            || layout.vram_base + layout.vram_size > phys_vram
            || layout.scratch + PAGE_SIZE > phys_vram
        {
            return Err(format!(
                "the GPU has no room for the slice (GTT {}+{} of {phys_entries}, VRAM {:#x}+{:#x} of {phys_vram:#x})",
                layout.gtt_base, layout.gtt_entries, layout.vram_base, layout.vram_size
            ));
        }
        let vram = Region::new(dev.clone(), VFIO_PCI_BAR0_REGION_INDEX)
            .and_then(|r| r.mmap(layout.vram_base, layout.vram_size))
            .map_err(ctx("mapping the VRAM slice from BAR0"))?;
        let irq = wire_interrupt(&dev)?;
        // Take every physical source; masking is done on the virtual side.
        bar2.write_u32(reg(GlobalReg::IntMask), 0)
            .and_then(|_| bar2.write_u32(reg(GlobalReg::IntEnable), PHYS_SOURCES.bits()))
            .map_err(ctx("enabling the GPU's interrupts"))?;
        let state = State {
            regs: Regs::new(&config, &layout),
            gtt: GttShadow::new(layout),
            mem: GuestMemory::default(),
            phys_events: 0,
        };
        state
            .gtt
            .fill_scratch(&mut ContractGtt(&bar2))
            .map_err(ctx("initialising the GTT slice"))?;
        Ok(Vgpu {
            state: Mutex::new(state),
            config,
            dev,
            bar2,
            vram,
            irq,
        })
    }

    pub fn config(&self) -> &VgpuConfig {
        &self.config
    }

    /// Host address of the VRAM slice, for the guest's BAR0.
    pub fn vram_ptr(&self) -> *mut u8 {
        self.vram.as_ptr()
    }

    /// The fd to watch for physical interrupts; call `phys_irq_event` when
    /// it is readable.
    pub fn phys_irq_fd(&self) -> RawFd {
        self.irq.eventfd.as_raw_fd()
    }

    pub fn irq_line(&self) -> IrqLine {
        self.state.lock().regs.global.irq.current()
    }

    pub fn mmio_read(&self, offset: u64, size: u32) -> (u64, Effects) {
        let mut fx = Effects::default();
        let st = self.state.lock();
        let r = &st.regs;
        let result = match Bar2Target::decode(offset) {
            // No EDID blob yet: all zeros, which drivers read as "none".
            Bar2Target::Edid(_) => Ok(0),
            Bar2Target::VgaPorts(rel) => vga_read(&r.vga_ports, rel, size),
            Bar2Target::Dispi(rel) => {
                r.dispi
                    .read(rel, size)
                    .map(|v| match DispiReg::containing(rel) {
                        Some(DispiReg::Id) => u64::from(DISPI_ID5),
                        Some(DispiReg::VideoMemory64k) => self.config.vram_size >> 16,
                        _ => v,
                    })
            }
            Bar2Target::QemuExt(rel) => decode::<QemuExtReg>(rel, size).map(|(reg, lane)| {
                lane.extract(match reg {
                    QemuExtReg::Size => bar2::QEMU_EXT_SIZE,
                    QemuExtReg::Endian => u64::from(r.qext_endian),
                })
            }),
            Bar2Target::Global(rel) => r.global.read(rel, size),
            Bar2Target::Engine(rel) => r.engine.read(rel, size),
            Bar2Target::Display(rel) => r.display.read(rel, size),
            Bar2Target::Gtt { index, within } => st
                .gtt
                .read(index, within, size)
                .map_err(|e| RegError::Refused(e.to_string())),
            Bar2Target::Unassigned => Err(RegError::NoRegister { offset, size }),
        };
        let value = fx.read_value(offset, result);
        (value, fx)
    }

    pub fn mmio_write(&self, offset: u64, value: u64, size: u32) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let State { regs, gtt, mem, .. } = &mut *st;
        let result = match Bar2Target::decode(offset) {
            Bar2Target::Edid(_) => Err(RegError::ReadOnly { reg: "EDID", value }),
            Bar2Target::VgaPorts(rel) => vga_write(&mut regs.vga_ports, rel, value, size),
            Bar2Target::Dispi(rel) => regs.dispi.write(rel, value, size).map(|_| ()),
            Bar2Target::QemuExt(rel) => {
                decode::<QemuExtReg>(rel, size).and_then(|(reg, lane)| match reg {
                    QemuExtReg::Size => Err(RegError::ReadOnly {
                        reg: reg.name(),
                        value,
                    }),
                    QemuExtReg::Endian => {
                        regs.qext_endian = lane.merge(u64::from(regs.qext_endian), value) as u32;
                        Ok(())
                    }
                })
            }
            Bar2Target::Global(rel) => match regs.global.write(rel, value, size) {
                Ok(GlobalWrite::Done(line)) => {
                    fx.irq = Some(line);
                    Ok(())
                }
                Ok(GlobalWrite::Trigger(src)) => {
                    // Through the GPU and back: the physical interrupt raises
                    // the virtual source when its eventfd fires.
                    let at = bar2::GLOBAL + GlobalReg::IntTrigger.offset();
                    if let Err(e) = self.bar2.write_u32(at, src.bits()) {
                        fx.host_error(format!("forwarding INT_TRIGGER to the GPU: {e}"));
                    }
                    Ok(())
                }
                Ok(GlobalWrite::Reset) => {
                    drop(st);
                    return self.reset();
                }
                Err(e) => Err(e),
            },
            Bar2Target::Engine(rel) => regs.engine.write(rel, value, size).map(|_| ()),
            Bar2Target::Display(rel) => regs.display.write(rel, value, size).map(|_| ()),
            Bar2Target::Gtt { index, within } => {
                match gtt.write(
                    index,
                    within,
                    value,
                    size,
                    mem,
                    &mut ContractGtt(&self.bar2),
                ) {
                    Ok(Ok(WriteOutcome::Rejected(reason))) => {
                        fx.guest_error(format!(
                            "GTT entry {index} = {:#x} rejected (FAULT_REASON {reason:#x}); scratch page mapped",
                            gtt.entry(index as u32).map_or(0, |e| e.0)
                        ));
                        fx.irq = Some(regs.global.fault(
                            gfx_addr(index as u32),
                            reason,
                            IntSource::GTT_FAULT,
                        ));
                        Ok(())
                    }
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => {
                        fx.host_error(format!("writing shadow GTT entry {index}: {e}"));
                        Ok(())
                    }
                    Err(e) => Err(RegError::Refused(e.to_string())),
                }
            }
            Bar2Target::Unassigned => Err(RegError::NoRegister { offset, size }),
        };
        fx.check_write(offset, value, result);
        fx
    }

    /// Power-on state for everything the guest sees; every pin released and
    /// the GTT slice back on the scratch page. The physical GPU is not reset:
    /// it may serve other vGPUs.
    pub fn reset(&self) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        st.regs = Regs::new(&self.config, st.gtt.layout());
        if let Err(e) = st.gtt.reset(&mut ContractGtt(&self.bar2)) {
            fx.host_error(format!("resetting the GTT slice: {e}"));
        }
        fx.irq = Some(st.regs.global.irq.current());
        fx
    }

    /// The memory listener saw a new range of guest-physical memory.
    pub fn guest_ram_add(&self, gpa: u64, size: u64, hva: u64, kind: MemKind) -> Effects {
        let mut fx = Effects::default();
        let range = GuestRange {
            gpa,
            size,
            hva,
            kind,
            // The GPU sees guest RAM at its guest-physical address.
            iova: gpa,
        };
        let mut st = self.state.lock();
        if let Err(e) = st.mem.add(range) {
            fx.host_error(format!(
                "guest memory [{gpa:#x}, +{size:#x}) ignored: {e:?}"
            ));
            return fx;
        }
        if kind == MemKind::Ram {
            if let Err(e) = self
                .dev
                .dma_map(range.iova, size, hva, DmaFlags::READ_WRITE)
            {
                st.mem.remove(gpa, size);
                fx.host_error(format!("DMA map of guest RAM [{gpa:#x}, +{size:#x}): {e}"));
            }
        }
        fx
    }

    /// Guest-physical memory went away: re-point every GTT entry that used
    /// it at the scratch page, then remove its DMA mapping.
    pub fn guest_ram_del(&self, gpa: u64, size: u64) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let State { gtt, mem, regs, .. } = &mut *st;
        for range in mem.remove(gpa, size) {
            if range.kind != MemKind::Ram {
                continue;
            }
            match gtt.invalidate(range.gpa, range.size, &mut ContractGtt(&self.bar2)) {
                Ok(hit) if !hit.is_empty() => {
                    fx.guest_error(format!(
                        "guest RAM [{:#x}, +{:#x}) removed under {} GTT entries; scratch page mapped",
                        range.gpa,
                        range.size,
                        hit.len()
                    ));
                    fx.irq = Some(regs.global.fault(
                        gfx_addr(hit[0]),
                        rvg_model::regs::fault::GTT_RAM_REMOVED,
                        IntSource::GTT_FAULT,
                    ));
                }
                Ok(_) => {}
                Err(e) => fx.host_error(format!("invalidating GTT entries: {e}")),
            }
            if let Err(e) = self.dev.dma_unmap(range.iova, range.size) {
                fx.host_error(format!(
                    "DMA unmap of [{:#x}, +{:#x}): {e}",
                    range.gpa, range.size
                ));
            }
        }
        fx
    }

    /// The physical interrupt fired: collect and acknowledge the GPU's
    /// status, raise the same sources on the virtual side.
    pub fn phys_irq_event(&self) -> Effects {
        let mut fx = Effects::default();
        // Reading resets the counter; nothing pending is not an error.
        if self.irq.eventfd.read().is_err() {
            return fx;
        }
        let at = bar2::GLOBAL + GlobalReg::IntStatus.offset();
        let status = match self
            .bar2
            .read_u32(at)
            .and_then(|s| self.bar2.write_u32(at, s).map(|_| s))
        {
            Ok(s) => s,
            Err(e) => {
                fx.host_error(format!("reading the GPU's INT_STATUS: {e}"));
                return fx;
            }
        };
        if self.irq.index == VFIO_PCI_INTX_IRQ_INDEX {
            if let Err(e) = self.dev.set_irqs(&IrqSet::intx_unmask()) {
                fx.host_error(format!("unmasking the GPU's INTx: {e}"));
            }
        }
        let mut st = self.state.lock();
        st.phys_events += 1;
        fx.irq = Some(
            st.regs
                .global
                .irq
                .raise(IntSource::from_bits_truncate(status)),
        );
        fx
    }

    pub fn shadow_stats(&self) -> ShadowStats {
        self.state.lock().gtt.stats()
    }

    /// A report for `info rust-vgpu`.
    pub fn describe(&self) -> String {
        let st = self.state.lock();
        let l = st.gtt.layout();
        let s = st.gtt.stats();
        let reg = |r: GlobalReg| {
            st.regs
                .global
                .read(r.offset(), r.width() as u32)
                .unwrap_or(0)
        };
        format!(
            "  backend: {}\n\
             \x20 gtt-slice: base={} entries={}\n\
             \x20 vram-slice: offset={:#x} size={:#x}\n\
             \x20 pinned-pages: {}\n\
             \x20 shadowed-entries: {} (local={} system={})\n\
             \x20 unmapped-entries: {}\n\
             \x20 rejected-entries: {} (total={})\n\
             \x20 invalidated-entries: {}\n\
             \x20 pin-cache: hits={} misses={}\n\
             \x20 faults: {} (last reason={:#x} addr={:#x})\n\
             \x20 physical-interrupts: {}\n",
            self.dev.describe(),
            l.gtt_base,
            l.gtt_entries,
            l.vram_base,
            l.vram_size,
            s.pinned_pages,
            s.local + s.system,
            s.local,
            s.system,
            s.unmapped,
            s.rejected,
            s.rejected_total,
            s.invalidated_total,
            s.pin_hits,
            s.pin_misses,
            reg(GlobalReg::GttFaults),
            reg(GlobalReg::FaultReason),
            reg(GlobalReg::FaultAddr),
            st.phys_events,
        )
    }

    /// Entries `[first, first + count)`: the guest's value, the shadow read
    /// back from the physical GTT through the contract, and the state.
    pub fn gtt_dump(&self, first: u32, count: u32) -> Result<String, String> {
        let st = self.state.lock();
        let l = *st.gtt.layout();
        let end = first
            .checked_add(count)
            .filter(|&e| e <= l.gtt_entries)
            .ok_or_else(|| {
                format!(
                    "entries {first}+{count} are outside the vGPU's {} GTT entries",
                    l.gtt_entries
                )
            })?;
        let mut out = String::new();
        for i in first..end {
            let (guest, state) = st.gtt.entry(i).expect("in range");
            let shadow = ContractGtt(&self.bar2)
                .read(l.gtt_base + i)
                .map_err(ctx("reading the physical GTT"))?;
            let state = match state {
                EntryState::Unmapped => "unmapped".to_string(),
                EntryState::Local => "local".to_string(),
                EntryState::System { .. } => "system".to_string(),
                EntryState::Rejected(r) => format!("rejected:{r:#x}"),
            };
            out += &format!(
                "{i}: guest={guest:#018x} shadow={:#018x} phys-index={} {state}\n",
                shadow.0,
                l.gtt_base + i
            );
        }
        Ok(out)
    }
}

impl Drop for Vgpu {
    fn drop(&mut self) {
        // Leave the GPU as found: interrupts torn down, DMA unmapped, the
        // slice on the scratch page.
        let _ = self.dev.set_irqs(&IrqSet::teardown(self.irq.index));
        let mut st = self.state.lock();
        let _ = st.gtt.reset(&mut ContractGtt(&self.bar2));
        for r in st.mem.iter().filter(|r| r.kind == MemKind::Ram) {
            let _ = self.dev.dma_unmap(r.iova, r.size);
        }
    }
}

/// The VGA port block: byte registers the bochs driver pokes (attribute
/// index, to unblank); stored and read back.
fn vga_read(ports: &[u8], rel: u64, size: u32) -> Result<u64, RegError> {
    let lane = rvg_model::access::Lane::new(rel, size, rel & !7, 8)
        .map_err(|err| RegError::Access { reg: "VGA", err })?;
    let base = (rel & !7) as usize;
    let mut word = [0u8; 8];
    let n = (ports.len() - base).min(8);
    word[..n].copy_from_slice(&ports[base..base + n]);
    Ok(lane.extract(u64::from_le_bytes(word)))
}

fn vga_write(ports: &mut [u8], rel: u64, value: u64, size: u32) -> Result<(), RegError> {
    rvg_model::access::Lane::new(rel, size, rel & !7, 8)
        .map_err(|err| RegError::Access { reg: "VGA", err })?;
    let at = rel as usize;
    ports[at..at + size as usize].copy_from_slice(&value.to_le_bytes()[..size as usize]);
    Ok(())
}

/// Refuse a device that is not an RVG-1 GPU, from its config space.
fn check_identity(dev: &Arc<dyn VfioDevice>) -> Result<(), String> {
    let cfg = Region::new(dev.clone(), VFIO_PCI_CONFIG_REGION_INDEX)
        .map_err(ctx("config space region info"))?;
    let ids = cfg
        .read_u32(0)
        .map_err(ctx("reading vendor and device IDs"))?;
    let sub = cfg.read_u32(0x2c).map_err(ctx("reading subsystem IDs"))?;
    let (vendor, device) = (ids as u16, (ids >> 16) as u16);
    let (svendor, sdevice) = (sub as u16, (sub >> 16) as u16);
    if vendor != pci::VENDOR_ID
        || svendor != pci::SUBSYSTEM_VENDOR_ID
        || sdevice != pci::SUBSYSTEM_ID
    {
        return Err(format!(
            "not an RVG-1 GPU: {vendor:04x}:{device:04x} subsystem {svendor:04x}:{sdevice:04x} \
             (RVG-1 has subsystem {:04x}:{:04x})",
            pci::SUBSYSTEM_VENDOR_ID,
            pci::SUBSYSTEM_ID
        ));
    }
    Ok(())
}

/// MSI-X vector 0 if the device offers it, else INTx.
fn wire_interrupt(dev: &Arc<dyn VfioDevice>) -> Result<PhysIrq, String> {
    let eventfd = EventFd::new(EFD_NONBLOCK).map_err(ctx("creating the interrupt eventfd"))?;
    let msix = dev
        .irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
        .map_err(ctx("MSI-X interrupt info"))?;
    let index = if msix.count > 0 && msix.eventfd() {
        VFIO_PCI_MSIX_IRQ_INDEX
    } else {
        let info = dev
            .irq_info(VFIO_PCI_INTX_IRQ_INDEX)
            .map_err(ctx("INTx interrupt info"))?;
        if info.count == 0 || !info.eventfd() {
            return Err("the GPU offers neither MSI-X nor INTx through eventfds".into());
        }
        VFIO_PCI_INTX_IRQ_INDEX
    };
    dev.set_irqs(&IrqSet::eventfds(index, 0, &[eventfd.as_raw_fd()]))
        .map_err(ctx("installing the interrupt eventfd"))?;
    Ok(PhysIrq { eventfd, index })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvg_model::regs::fault;
    use rvg_model::GpuConfig;
    use rvg_vfio::SoftGpu;

    const VRAM: u64 = 4 << 20;

    fn attach() -> (Vgpu, Arc<SoftGpu>) {
        let config = VgpuConfig { vram_size: VRAM };
        let soft = Arc::new(
            SoftGpu::new(
                GpuConfig {
                    vram_size: config.private_gpu_vram(),
                },
                Box::new(|m| panic!("physical side complained: {m}")),
            )
            .unwrap(),
        );
        let layout = config.private_layout();
        (Vgpu::new(config, soft.clone(), layout).unwrap(), soft)
    }

    fn greg(r: GlobalReg) -> u64 {
        bar2::GLOBAL + r.offset()
    }

    fn gtt(i: u64) -> u64 {
        bar2::GTT + 8 * i
    }

    /// A vGPU with `pages` of guest RAM at 1 MiB: page-aligned host memory
    /// standing in for it, reported as the memory listener would.
    fn attach_with_ram(pages: u64) -> (Vgpu, Arc<SoftGpu>, rvg_model::vram::Vram) {
        let (v, soft) = attach();
        let ram = rvg_model::vram::Vram::new(pages * 4096).unwrap();
        let fx = v.guest_ram_add(
            0x10_0000,
            pages * 4096,
            ram.host_ptr(0).unwrap() as u64,
            MemKind::Ram,
        );
        assert!(fx.diags.is_empty(), "{:?}", fx.diags);
        (v, soft, ram)
    }

    #[test]
    fn virtual_identity_and_sizes() {
        let (v, _) = attach();
        assert_eq!(v.mmio_read(greg(GlobalReg::Id), 4).0, u64::from(RVG_ID));
        assert_eq!(v.mmio_read(greg(GlobalReg::VramSize), 8).0, VRAM);
        assert_eq!(
            v.mmio_read(greg(GlobalReg::GttEntries), 4).0,
            u64::from(VGPU_GTT_ENTRIES)
        );
        assert_eq!(v.mmio_read(bar2::DISPI, 2).0, u64::from(DISPI_ID5));
        assert_eq!(v.mmio_read(bar2::DISPI + 0x14, 2).0, VRAM >> 16);
        assert_eq!(v.mmio_read(bar2::QEMU_EXT, 4).0, 8);
        assert_eq!(
            v.mmio_read(bar2::QEMU_EXT + 4, 4).0,
            u64::from(QEXT_LITTLE_ENDIAN)
        );
    }

    #[test]
    fn blocks_store_guest_values() {
        let (v, soft) = attach();
        v.mmio_write(bar2::ENGINE, 0x40_0000, 8);
        v.mmio_write(bar2::DISPLAY + 0x10, 1280, 4);
        v.mmio_write(bar2::DISPI + 2, 1024, 2);
        v.mmio_write(bar2::VGA_PORTS, 0x20, 1);
        assert_eq!(v.mmio_read(bar2::ENGINE, 8).0, 0x40_0000);
        assert_eq!(v.mmio_read(bar2::DISPLAY + 0x10, 4).0, 1280);
        assert_eq!(v.mmio_read(bar2::DISPI + 2, 2).0, 1024);
        assert_eq!(v.mmio_read(bar2::VGA_PORTS, 1).0, 0x20);
        // None of it reached the physical GPU's registers.
        assert_eq!(soft.gpu().mmio_read(bar2::ENGINE, 8).0, 0);
        let fx = v.mmio_write(bar2::ENGINE + 0x0c, 1, 4);
        assert_eq!(fx.diags.len(), 1, "RING_HEAD is read-only");
    }

    #[test]
    fn gtt_entries_are_shadowed_into_the_slice() {
        let (v, soft) = attach();
        v.mmio_write(gtt(5), 0x3000 | GttEntry::LOCAL | GttEntry::VALID, 8);
        let phys = soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES + 5).unwrap();
        assert_eq!(phys, GttEntry::new(VRAM + 0x3000, true));
        assert_eq!(v.mmio_read(gtt(5), 8).0, 0x3003);
        // Untouched entries of the slice map the scratch page.
        let scratch = soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES + 6).unwrap();
        assert_eq!(scratch, GttEntry::invalid_to(0, true));
        // Nothing outside the slice was written.
        assert_eq!(soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES - 1).unwrap().0, 0);
        assert_eq!(
            soft.gpu()
                .gtt_entry(RESERVED_GTT_ENTRIES + VGPU_GTT_ENTRIES)
                .unwrap()
                .0,
            0
        );
    }

    #[test]
    fn rejected_entries_fault_and_are_reported() {
        let (v, _) = attach();
        v.mmio_write(
            greg(GlobalReg::IntEnable),
            u64::from(IntSource::GTT_FAULT.bits()),
            4,
        );
        let fx = v.mmio_write(gtt(9), 0x5000_0000 | GttEntry::VALID, 8);
        assert_eq!(
            fx.irq,
            Some(IrqLine {
                asserted: true,
                message: true
            })
        );
        assert_eq!(fx.diags.len(), 1);
        assert_eq!(
            v.mmio_read(greg(GlobalReg::FaultReason), 4).0,
            u64::from(fault::GTT_NOT_GUEST_RAM)
        );
        assert_eq!(v.mmio_read(greg(GlobalReg::FaultAddr), 8).0, gfx_addr(9));
        assert_eq!(v.mmio_read(greg(GlobalReg::GttFaults), 4).0, 1);
        assert_eq!(v.shadow_stats().rejected, 1);
    }

    #[test]
    fn guest_ram_is_dma_mapped_pinned_and_invalidated() {
        let (v, soft, ram) = attach_with_ram(16);
        v.mmio_write(gtt(0), 0x10_2000 | GttEntry::VALID, 8);
        v.mmio_write(gtt(1), 0x10_2000 | GttEntry::VALID, 8);
        assert_eq!(
            soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES).unwrap(),
            GttEntry::new(0x10_2000, false)
        );
        assert_eq!(v.shadow_stats().pinned_pages, 1);
        // The GPU reaches that page through its DMA mapping.
        soft.gpu().dma().write(0x10_2000, &[0xab]).unwrap();
        let mut b = [0u8];
        ram.read(0x2000, &mut b).unwrap();
        assert_eq!(b, [0xab]);
        // The memory goes away: entries re-pointed, DMA unmapped.
        let fx = v.guest_ram_del(0x10_0000, 16 * 4096);
        assert_eq!(fx.diags.len(), 1);
        assert_eq!(
            soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES).unwrap(),
            GttEntry::invalid_to(0, true)
        );
        assert_eq!(v.shadow_stats().pinned_pages, 0);
        assert!(soft.gpu().dma().write(0x10_2000, &[0]).is_err());
        ram.read(0x2000, &mut b).unwrap();
        assert_eq!(b, [0xab]);
    }

    #[test]
    fn software_interrupt_goes_through_the_gpu() {
        let (v, _) = attach();
        let sw = u64::from(IntSource::SOFTWARE.bits());
        v.mmio_write(greg(GlobalReg::IntEnable), sw, 4);
        v.mmio_write(greg(GlobalReg::IntTrigger), sw, 4);
        // Not yet: the virtual source rises when the physical interrupt is handled.
        assert_eq!(v.mmio_read(greg(GlobalReg::IntStatus), 4).0, 0);
        let fx = v.phys_irq_event();
        assert_eq!(
            fx.irq,
            Some(IrqLine {
                asserted: true,
                message: true
            })
        );
        assert_eq!(v.mmio_read(greg(GlobalReg::IntStatus), 4).0, sw);
        // Spurious wakeups change nothing.
        assert_eq!(v.phys_irq_event().irq, None);
    }

    #[test]
    fn reset_releases_everything_but_guest_memory() {
        let (v, soft, _ram) = attach_with_ram(4);
        v.mmio_write(gtt(3), 0x10_1000 | GttEntry::VALID, 8);
        v.mmio_write(greg(GlobalReg::Scratch), 77, 8);
        v.mmio_write(
            greg(GlobalReg::Reset),
            u64::from(rvg_model::regs::RESET_MAGIC),
            4,
        );
        assert_eq!(v.mmio_read(greg(GlobalReg::Scratch), 8).0, 0);
        assert_eq!(v.mmio_read(gtt(3), 8).0, 0);
        assert_eq!(v.shadow_stats().pinned_pages, 0);
        assert_eq!(
            soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES + 3).unwrap(),
            GttEntry::invalid_to(0, true)
        );
        // The RAM is still mapped, so the guest can map it again.
        v.mmio_write(gtt(3), 0x10_1000 | GttEntry::VALID, 8);
        assert_eq!(v.shadow_stats().system, 1);
    }

    #[test]
    fn detach_leaves_the_gpu_clean() {
        let (v, soft, _ram) = attach_with_ram(4);
        v.mmio_write(gtt(0), 0x10_0000 | GttEntry::VALID, 8);
        drop(v);
        assert!(soft.gpu().dma().read(0x10_0000, &mut [0]).is_err());
        assert_eq!(
            soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES).unwrap(),
            GttEntry::invalid_to(0, true)
        );
    }

    #[test]
    fn a_slice_that_does_not_fit_is_refused() {
        let config = VgpuConfig { vram_size: VRAM };
        let soft = Arc::new(SoftGpu::new(GpuConfig { vram_size: VRAM }, Box::new(|_| {})).unwrap());
        let err = Vgpu::new(config.clone(), soft, config.private_layout())
            .err()
            .unwrap();
        assert!(err.contains("no room"), "{err}");
    }
}

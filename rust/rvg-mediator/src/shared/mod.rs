//! One GPU, reached through the VFIO contract, shared by the vGPUs attached
//! to it: their slices, the DMA mappings of their guest's RAM, and the
//! scheduler that time-shares the engine.

mod dma_refs;
pub mod sched;
pub mod slices;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rvg_model::gtt::{GttEntry, PAGE_SIZE};
use rvg_model::irq::IntSource;
use rvg_model::regs::{bar2, pci, GlobalReg, Register, RVG_ID};
use rvg_vfio::contract::{
    IrqSet, Region, VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_BAR2_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
};
use rvg_vfio::{HostRange, VfioDevice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::error::{contract, GpuError, NoRoom};
use crate::shadow::SliceLayout;
use dma_refs::DmaRefs;
pub use sched::{
    CtxId, CtxStats, HostLog, PhysRing, Policy, Progress, ProgressSink, SchedConfig, Scheduler,
    StillRunning,
};
use slices::{Slices, RESERVED_GTT_ENTRIES, RESERVED_VRAM};

/// The mediator's ring: 64 KiB of the reserved VRAM after the scratch
/// page's 64 KiB, at graphics address 0 through the first reserved entries.
pub const PHYS_RING: PhysRing = PhysRing {
    gfx_base: 0,
    vram_offset: 64 << 10,
    size: 64 << 10,
};

/// Default scheduler time slice.
pub const TIMESLICE_DEFAULT: Duration = Duration::from_millis(1);

/// Default watchdog: far longer than any chunk of legitimate work takes
/// (32 commands, each at most one 128 MiB rectangle).
pub const WATCHDOG_DEFAULT: Duration = Duration::from_secs(5);

/// Default preemption timeout: several times the longest command the
/// engine cannot preempt inside (a 128 MiB copy between overlapping
/// rectangles of different pitches), so only a stuck engine reaches it.
pub const PREEMPT_TIMEOUT_DEFAULT: Duration = Duration::from_millis(250);

impl Default for SchedConfig {
    fn default() -> SchedConfig {
        SchedConfig {
            timeslice: TIMESLICE_DEFAULT,
            watchdog: WATCHDOG_DEFAULT,
            preempt_timeout: PREEMPT_TIMEOUT_DEFAULT,
            policy: Policy::default(),
        }
    }
}

const PCI_COMMAND_OFFSET: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

const _: () = assert!(PHYS_RING.vram_offset + PHYS_RING.size as u64 <= RESERVED_VRAM);
const _: () = assert!((PHYS_RING.size as u64 / PAGE_SIZE) <= RESERVED_GTT_ENTRIES as u64);

pub struct SharedGpu {
    // Stopped first (in Drop): the scheduler thread ends before anything
    // it uses goes.
    sched: Scheduler,
    dev: Arc<dyn VfioDevice>,
    bar2: Region,
    config: Region,
    irq_index: u32,
    /// The GPU belongs to one vGPU, which resets it along with itself.
    private: bool,
    /// The device offers VFIO_DEVICE_RESET.
    resettable: bool,
    /// Completed resets of the GPU since it was taken over.
    resets: AtomicU64,
    slices: Mutex<Slices>,
    dma: Mutex<DmaRefs>,
}

impl SharedGpu {
    /// Take over `dev` for any number of vGPUs: check it is an RVG-1 GPU,
    /// set up the mediator's ring and the physical interrupt, start the
    /// scheduler.
    pub fn new(
        dev: Arc<dyn VfioDevice>,
        sched: SchedConfig,
        log: HostLog,
    ) -> Result<SharedGpu, GpuError> {
        SharedGpu::open(dev, sched, log, false)
    }

    /// Take over `dev` for one vGPU, which resets the GPU (when the device
    /// offers a reset) whenever it is reset itself, and on unplug.
    pub fn private(
        dev: Arc<dyn VfioDevice>,
        sched: SchedConfig,
        log: HostLog,
    ) -> Result<SharedGpu, GpuError> {
        SharedGpu::open(dev, sched, log, true)
    }

    fn open(
        dev: Arc<dyn VfioDevice>,
        sched: SchedConfig,
        log: HostLog,
        private: bool,
    ) -> Result<SharedGpu, GpuError> {
        let info = dev.device_info().map_err(contract("device info"))?;
        let config = Region::new(dev.clone(), VFIO_PCI_CONFIG_REGION_INDEX)
            .map_err(contract("config space region info"))?;
        check_identity(&config)?;
        let bar2 = Region::new(dev.clone(), VFIO_PCI_BAR2_REGION_INDEX)
            .map_err(contract("BAR2 region info"))?;
        if !bar2.info.readable() || !bar2.info.writable() || bar2.info.size < bar2::SIZE {
            return Err(GpuError::Bar2Unusable);
        }
        let bar0 = Region::new(dev.clone(), VFIO_PCI_BAR0_REGION_INDEX)
            .map_err(contract("BAR0 region info"))?;
        let reg = |r: GlobalReg| bar2::GLOBAL + r.offset();
        let id = bar2
            .read_u32(reg(GlobalReg::Id))
            .map_err(contract("reading the GPU's ID"))?;
        if id != RVG_ID {
            return Err(GpuError::BadId { id });
        }
        let gtt_entries = bar2
            .read_u32(reg(GlobalReg::GttEntries))
            .map_err(contract("reading GTT_ENTRIES"))?;
        let vram_size = bar2
            .read_u64(reg(GlobalReg::VramSize))
            .map_err(contract("reading VRAM_SIZE"))?;
        if gtt_entries < RESERVED_GTT_ENTRIES || vram_size < RESERVED_VRAM {
            return Err(GpuError::TooSmall {
                gtt_entries,
                vram_size,
            });
        }
        let (irq, irq_index, intx_automasked) = wire_interrupt(&dev)?;
        init_gpu(&config, &bar2)?;
        let sched_bar2 = Region::new(dev.clone(), VFIO_PCI_BAR2_REGION_INDEX)
            .map_err(contract("BAR2 region info"))?;
        let sched = Scheduler::start(
            bar0,
            sched_bar2,
            PHYS_RING,
            irq,
            intx_automasked,
            sched,
            log,
        )
        .map_err(contract("starting the scheduler"))
        .inspect_err(|_| {
            let _ = dev.set_irqs(&IrqSet::teardown(irq_index));
        })?;
        Ok(SharedGpu {
            slices: Mutex::new(Slices::new(gtt_entries, vram_size)),
            dma: Mutex::new(DmaRefs::default()),
            resettable: info.flags & VFIO_DEVICE_FLAGS_RESET != 0,
            resets: AtomicU64::new(0),
            private,
            dev,
            bar2,
            config,
            irq_index,
            sched,
        })
    }

    /// Whether resetting the vGPU resets the GPU.
    pub fn resets_with_vgpu(&self) -> bool {
        self.private && self.resettable
    }

    /// Reset the GPU (VFIO_DEVICE_RESET) with the scheduler parked, and set
    /// it up for the mediator again. Only for a private GPU whose vGPU has
    /// already reset its engine context: whatever the ring held is lost.
    pub fn reset_device(&self) -> Result<(), GpuError> {
        self.sched.with_engine_parked(|| {
            self.dev.reset().map_err(contract("VFIO_DEVICE_RESET"))?;
            self.resets.fetch_add(1, Ordering::Relaxed);
            init_gpu(&self.config, &self.bar2)
        })
    }

    /// How many times the GPU was reset ([`SharedGpu::reset_device`]).
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    pub fn device(&self) -> &Arc<dyn VfioDevice> {
        &self.dev
    }

    /// BAR2 of the GPU: registers and the physical GTT.
    pub fn bar2(&self) -> &Region {
        &self.bar2
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// Room for one more vGPU with `gtt_entries` GTT entries (its
    /// graphics space) and `vram_size` bytes of VRAM.
    pub fn alloc_slice(&self, gtt_entries: u32, vram_size: u64) -> Result<SliceLayout, NoRoom> {
        self.slices.lock().alloc(gtt_entries, vram_size)
    }

    pub fn free_slice(&self, layout: &SliceLayout) {
        self.slices.lock().free(layout)
    }

    /// `(attached, capacity)` in vGPUs.
    pub fn occupancy(&self) -> (usize, usize) {
        let s = self.slices.lock();
        (s.in_use(), s.capacity())
    }

    /// Guest RAM for the GPU's DMA, shared by every vGPU that reports it.
    pub fn dma_map(&self, iova: u64, host: &Arc<HostRange>) -> io::Result<()> {
        self.dma.lock().map(&self.dev, iova, host)
    }

    /// Let go of `host`'s share of the mapping at `iova`.
    pub fn dma_unmap(&self, iova: u64, host: &Arc<HostRange>) -> io::Result<()> {
        self.dma.lock().unmap(iova, host)
    }
}

impl Drop for SharedGpu {
    fn drop(&mut self) {
        self.sched.stop();
        // Leave the GPU's interrupt as found, and a private GPU reset.
        let _ = self.dev.set_irqs(&IrqSet::teardown(self.irq_index));
        if self.resets_with_vgpu() {
            let _ = self.dev.reset();
        }
    }
}

/// Set the GPU up for the mediator, after it was opened or reset: decode
/// and bus mastering on, the ring's GTT entries, every interrupt source.
fn init_gpu(config: &Region, bar2: &Region) -> Result<(), GpuError> {
    let mut command = [0u8; 2];
    config
        .read(PCI_COMMAND_OFFSET, &mut command)
        .map_err(contract("reading the GPU's command register"))?;
    let command = u16::from_le_bytes(command);
    // The GPU reaches guest RAM (through the IOMMU) and signals MSI-X only
    // with Bus Master Enable set; BAR access needs Memory Space.
    config
        .write(
            PCI_COMMAND_OFFSET,
            &(command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER).to_le_bytes(),
        )
        .map_err(contract(
            "enabling the GPU's memory decode and bus mastering",
        ))?;
    // The ring's pages, then every other reserved entry on scratch.
    let ring_pages = u64::from(PHYS_RING.size) / PAGE_SIZE;
    for i in 0..u64::from(RESERVED_GTT_ENTRIES) {
        let entry = if i < ring_pages {
            GttEntry::new(PHYS_RING.vram_offset + i * PAGE_SIZE, true)
        } else {
            GttEntry::invalid_to(slices::SCRATCH_PAGE, true)
        };
        bar2.write_u64(bar2::GTT + 8 * i, entry.0)
            .map_err(contract("mapping the mediator's ring"))?;
    }
    // Take every physical source; masking is done on the virtual side.
    let reg = |r: GlobalReg| bar2::GLOBAL + r.offset();
    bar2.write_u32(reg(GlobalReg::IntMask), 0)
        .and_then(|_| bar2.write_u32(reg(GlobalReg::IntEnable), IntSource::all().bits()))
        .map_err(contract("enabling the GPU's interrupts"))?;
    Ok(())
}

/// Refuse a device that is not an RVG-1 GPU, from its config space.
fn check_identity(cfg: &Region) -> Result<(), GpuError> {
    let ids = cfg
        .read_u32(0)
        .map_err(contract("reading vendor and device IDs"))?;
    let sub = cfg
        .read_u32(0x2c)
        .map_err(contract("reading subsystem IDs"))?;
    let (vendor, device) = (ids as u16, (ids >> 16) as u16);
    let (svendor, sdevice) = (sub as u16, (sub >> 16) as u16);
    if vendor != pci::VENDOR_ID
        || svendor != pci::SUBSYSTEM_VENDOR_ID
        || sdevice != pci::SUBSYSTEM_ID
    {
        return Err(GpuError::NotRvg1 {
            vendor,
            device,
            subsystem_vendor: svendor,
            subsystem: sdevice,
        });
    }
    Ok(())
}

/// The GPU's interrupt, through an eventfd: MSI-X vector 0 if the device
/// offers MSI-X, else MSI, else INTx. Returns the eventfd, the VFIO IRQ
/// index and whether it is INTx the device automasks (then the handler
/// unmasks it).
fn wire_interrupt(dev: &Arc<dyn VfioDevice>) -> Result<(EventFd, u32, bool), GpuError> {
    let eventfd = EventFd::new(EFD_NONBLOCK).map_err(contract("creating the interrupt eventfd"))?;
    let mut chosen = None;
    for index in [
        VFIO_PCI_MSIX_IRQ_INDEX,
        VFIO_PCI_MSI_IRQ_INDEX,
        VFIO_PCI_INTX_IRQ_INDEX,
    ] {
        let info = dev
            .irq_info(index)
            .map_err(contract("interrupt info (VFIO_DEVICE_GET_IRQ_INFO)"))?;
        if info.count > 0 && info.eventfd() {
            chosen = Some(info);
            break;
        }
    }
    let info = chosen.ok_or(GpuError::NoInterrupt)?;
    dev.set_irqs(&IrqSet::eventfds(info.index, 0, &[eventfd.as_raw_fd()]))
        .map_err(contract("installing the interrupt eventfd"))?;
    let automasked = info.index == VFIO_PCI_INTX_IRQ_INDEX && info.automasked();
    Ok((eventfd, info.index, automasked))
}

//! The soft backend: the RVG-1 GPU model in-process, behind the VFIO device
//! contract, reporting what a kernel driver would for `rust-vgpu-hw`:
//!
//! | index | region | flags |
//! |---|---|---|
//! | 0 | BAR0, VRAM | READ, WRITE, MMAP, sparse-mmap capability (all of it) |
//! | 2 | BAR2, registers and GTT | READ, WRITE (trapped: no MMAP) |
//! | 4 | BAR4, MSI-X table and PBA | READ, WRITE (the user virtualizes MSI-X) |
//! | 7 | PCI config space | READ, WRITE |
//!
//! Region offsets in the fd space are `(index + 1) << 36`, deliberately not
//! vfio-pci's `index << 40`: users must use the offsets reported.
//!
//! Interrupts: INTx (1, maskable, automasked), MSI (1), MSI-X (4), all
//! eventfd-signalled; one index active at a time, as vfio-pci allows.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::Mutex;
use rvg_gpu::{Gpu, GpuConfig};
use rvg_model::block::refused_read;
use rvg_model::effects::{Diag, Effects};
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, pci};
use rvg_model::IrqLine;
use vmm_sys_util::eventfd::EventFd;

use crate::contract::*;
use crate::dma_table::DmaTable;

const REGION_SHIFT: u32 = 36;
/// The longest stream a tail write runs in the writer's thread.
const INLINE_STREAM_DWORDS: u32 = 16;
const CONFIG_SIZE: u64 = 256;
const MSIX_BAR_SIZE: u64 = 4096;

fn region_offset(index: u32) -> u64 {
    (u64::from(index) + 1) << REGION_SHIFT
}

/// Split a device-fd offset into (region index, offset inside it).
fn split_offset(offset: u64) -> Option<(u32, u64)> {
    let index = (offset >> REGION_SHIFT).checked_sub(1)?;
    let index = u32::try_from(index).ok()?;
    Some((index, offset - region_offset(index)))
}

#[derive(Default)]
struct Vector {
    trigger: Option<EventFd>,
}

#[derive(Default)]
struct IrqState {
    /// The index whose triggers are installed, if any.
    active: Option<u32>,
    vectors: Vec<Vector>,
    /// INTx: masked by the automask on assertion or by ACTION_MASK.
    intx_masked: bool,
    /// INTx: the level last seen from the GPU.
    intx_level: bool,
}

/// Receives what the physical side has to say about misuse of it; such
/// messages point at a bug in whoever drives the GPU, not at a guest.
pub type SoftLog = Box<dyn Fn(&str) + Send + Sync>;

pub struct SoftGpu {
    gpu: Arc<Gpu>,
    dma: Arc<DmaTable>,
    irq: Arc<Mutex<IrqState>>,
    config: Mutex<[u8; CONFIG_SIZE as usize]>,
    log: SoftLog,
}

impl SoftGpu {
    pub fn new(config: GpuConfig, log: SoftLog) -> Result<SoftGpu, rvg_model::ConfigError> {
        Ok(SoftGpu::on(Gpu::new(config)?, log))
    }

    /// The contract over a GPU function made elsewhere: an SR-IOV VF of a
    /// GPU, which a mediator then drives as it would a whole GPU.
    pub fn on(gpu: Gpu, log: SoftLog) -> SoftGpu {
        let gpu = Arc::new(gpu);
        // Behind the contract the tail writer is a mediator's scheduler
        // thread: a short stream (a fence or a store and a fence, closed by
        // the scheduler's own fence) runs right there.
        gpu.set_inline_dwords(INLINE_STREAM_DWORDS);
        let dma = Arc::new(DmaTable::default());
        gpu.set_dma(dma.clone());
        let irq = Arc::new(Mutex::new(IrqState::default()));
        let engine_irq = irq.clone();
        gpu.set_irq_sink(Arc::new(move |line| deliver(&engine_irq, line)));
        SoftGpu {
            config: Mutex::new(config_space()),
            gpu,
            dma,
            irq,
            log,
        }
    }

    /// The model itself, for tests that check the physical side.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Log the model's messages and deliver its interrupt output.
    fn apply(&self, fx: Effects) {
        for d in &fx.diags {
            let (Diag::GuestError(m) | Diag::Unimplemented(m) | Diag::HostError(m)) = d;
            (self.log)(&format!("physical GPU: {m}"));
        }
        if let Some(line) = fx.irq {
            deliver(&self.irq, line);
        }
    }

    fn irq_count(index: u32) -> u32 {
        match index {
            i if i == VFIO_PCI_INTX_IRQ_INDEX => 1,
            i if i == VFIO_PCI_MSI_IRQ_INDEX => pci::MSI_VECTORS,
            i if i == VFIO_PCI_MSIX_IRQ_INDEX => pci::MSIX_VECTORS,
            _ => 0,
        }
    }

    /// One MMIO access of `size` bytes (1, 2, 4 or 8) at `offset` in BAR2.
    fn mmio_access(&self, offset: u64, piece: Buf<'_>) {
        let size = piece.len();
        match piece {
            Buf::Write(data) => {
                let mut v = [0u8; 8];
                v[..size].copy_from_slice(data);
                let fx = self
                    .gpu
                    .mmio_write(offset, u64::from_le_bytes(v), size as u32);
                self.apply(fx);
            }
            Buf::Read(out) => {
                let v = self.gpu.mmio_read(offset, size as u32).unwrap_or_else(|e| {
                    (self.log)(&format!("physical GPU: {}", refused_read(offset, &e)));
                    0
                });
                out.copy_from_slice(&v.to_le_bytes()[..size]);
            }
        }
    }

    /// As vfio-pci does for MMIO BARs: naturally aligned pieces of 8, 4, 2
    /// or 1 bytes, each one device access.
    fn mmio_rw(&self, mut offset: u64, mut buf: Buf<'_>) {
        while buf.len() > 0 {
            let size = [8usize, 4, 2, 1]
                .into_iter()
                .find(|&s| s <= buf.len() && offset.is_multiple_of(s as u64))
                .expect("size 1 always fits");
            let (piece, rest) = buf.split_at(size);
            self.mmio_access(offset, piece);
            buf = rest;
            offset += size as u64;
        }
    }

    fn rw(&self, buf: Buf<'_>, offset: u64) -> io::Result<usize> {
        let (index, off) = split_offset(offset).ok_or_else(|| errno(libc::EINVAL))?;
        let len = buf.len();
        let size = self.region_info(index)?.size;
        if off.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(errno(libc::EINVAL));
        }
        let vram = self.gpu.vram();
        match (index, buf) {
            (VFIO_PCI_BAR0_REGION_INDEX, Buf::Write(data)) => {
                vram.write(off, data).map_err(|_| errno(libc::EINVAL))?
            }
            (VFIO_PCI_BAR0_REGION_INDEX, Buf::Read(out)) => {
                vram.read(off, out).map_err(|_| errno(libc::EINVAL))?
            }
            (VFIO_PCI_BAR2_REGION_INDEX, buf) => self.mmio_rw(off, buf),
            (VFIO_PCI_BAR4_REGION_INDEX, Buf::Read(out)) => out.fill(0),
            (VFIO_PCI_BAR4_REGION_INDEX, Buf::Write(_)) => {}
            (VFIO_PCI_CONFIG_REGION_INDEX, buf) => {
                let mut cfg = self.config.lock();
                let range = off as usize..off as usize + len;
                match buf {
                    // Only the command register is writable here.
                    Buf::Write(data) => {
                        for (i, b) in range.zip(data) {
                            if i == 4 || i == 5 {
                                cfg[i] = *b;
                            }
                        }
                    }
                    Buf::Read(out) => out.copy_from_slice(&cfg[range]),
                }
            }
            _ => return Err(errno(libc::EINVAL)),
        }
        Ok(len)
    }
}

/// The two directions of a transfer, without copying the written data.
enum Buf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl<'a> Buf<'a> {
    fn len(&self) -> usize {
        match self {
            Buf::Read(b) => b.len(),
            Buf::Write(b) => b.len(),
        }
    }

    fn split_at(self, at: usize) -> (Buf<'a>, Buf<'a>) {
        match self {
            Buf::Read(b) => {
                let (x, y) = b.split_at_mut(at);
                (Buf::Read(x), Buf::Read(y))
            }
            Buf::Write(b) => {
                let (x, y) = b.split_at(at);
                (Buf::Write(x), Buf::Write(y))
            }
        }
    }
}

/// The GPU's interrupt output, as the active VFIO IRQ index signals it:
/// INTx follows the level (automasked on assertion), MSI and MSI-X send on
/// each message.
fn deliver(irq: &Mutex<IrqState>, line: IrqLine) {
    let mut irq = irq.lock();
    match irq.active {
        Some(i) if i == VFIO_PCI_INTX_IRQ_INDEX => {
            irq.intx_level = line.asserted;
            if line.asserted && !irq.intx_masked {
                irq.intx_masked = true;
                signal(&irq.vectors[0]);
            }
        }
        Some(_) if line.message => signal(&irq.vectors[0]),
        _ => {}
    }
}

fn signal(v: &Vector) {
    if let Some(fd) = &v.trigger {
        // An eventfd write only fails when the counter would overflow, and
        // then the reader has a signal pending anyway.
        let _ = fd.write(1);
    }
}

/// The physical model's config header: identity and BAR types.
fn config_space() -> [u8; CONFIG_SIZE as usize] {
    let mut c = [0u8; CONFIG_SIZE as usize];
    let put16 = |c: &mut [u8], at: usize, v: u16| c[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 = |c: &mut [u8], at: usize, v: u32| c[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put16(&mut c, 0x00, pci::VENDOR_ID);
    put16(&mut c, 0x02, pci::DEVICE_ID_HW);
    put32(
        &mut c,
        0x08,
        (pci::CLASS_CODE << 8) | u32::from(pci::REVISION),
    );
    put32(&mut c, 0x10, 0xc); // BAR0: 64-bit prefetchable memory
    put32(&mut c, 0x18, 0x4); // BAR2: 64-bit memory
    put32(&mut c, 0x20, 0x0); // BAR4: 32-bit memory
    put16(&mut c, 0x2c, pci::SUBSYSTEM_VENDOR_ID);
    put16(&mut c, 0x2e, pci::SUBSYSTEM_ID);
    c[0x3d] = 1; // INTA
    c
}

impl VfioDevice for SoftGpu {
    fn device_info(&self) -> io::Result<DeviceInfo> {
        Ok(DeviceInfo {
            flags: VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET,
            num_regions: VFIO_PCI_NUM_REGIONS,
            num_irqs: VFIO_PCI_NUM_IRQS,
        })
    }

    fn region_info(&self, index: u32) -> io::Result<RegionInfo> {
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        let (flags, size, caps) = match index {
            i if i == VFIO_PCI_BAR0_REGION_INDEX => {
                let size = self.gpu.vram().len();
                (
                    rw | VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS,
                    size,
                    vec![RegionCap::SparseMmap(vec![SparseArea { offset: 0, size }])],
                )
            }
            i if i == VFIO_PCI_BAR2_REGION_INDEX => (rw, bar2::SIZE, vec![]),
            i if i == VFIO_PCI_BAR4_REGION_INDEX => (rw, MSIX_BAR_SIZE, vec![]),
            i if i == VFIO_PCI_CONFIG_REGION_INDEX => (rw, CONFIG_SIZE, vec![]),
            i if i < VFIO_PCI_NUM_REGIONS => (0, 0, vec![]),
            _ => return Err(errno(libc::EINVAL)),
        };
        Ok(RegionInfo {
            index,
            flags,
            size,
            offset: region_offset(index),
            caps,
        })
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.rw(Buf::Read(buf), offset)
    }

    fn pwrite(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        // The mediator's hot path: one aligned 8-byte GTT entry. Same effect
        // as the general path (an MMIO write of the entry), minus decoding.
        if let (Ok(bytes), Some((VFIO_PCI_BAR2_REGION_INDEX, off))) =
            (<[u8; 8]>::try_from(buf), split_offset(offset))
        {
            if off >= bar2::GTT && off % 8 == 0 {
                let index = ((off - bar2::GTT) / 8) as u32;
                if self
                    .gpu
                    .set_gtt_entry(index, GttEntry(u64::from_le_bytes(bytes)))
                {
                    return Ok(8);
                }
            }
        }
        self.rw(Buf::Write(buf), offset)
    }

    fn mmap(&self, offset: u64, size: u64) -> io::Result<Mapping> {
        let (index, off) = split_offset(offset).ok_or_else(|| errno(libc::EINVAL))?;
        let info = self.region_info(index)?;
        if !info.can_mmap(off, size) || off % 4096 != 0 || size == 0 {
            return Err(errno(libc::EINVAL));
        }
        let ptr = self
            .gpu
            .vram()
            .host_ptr(off)
            .map_err(|_| errno(libc::EINVAL))?;
        let ptr = NonNull::new(ptr).ok_or_else(|| errno(libc::EINVAL))?;
        // SAFETY: `[off, off + size)` lies in the model's VRAM (`can_mmap`
        // checked it against the region, which is all of VRAM); the VRAM
        // stays allocated while the Gpu lives, and the Mapping holds it. The
        // model touches VRAM through raw copies only.
        Ok(unsafe { Mapping::new(ptr, size, self.gpu.clone()) })
    }

    fn irq_info(&self, index: u32) -> io::Result<IrqInfo> {
        if index >= VFIO_PCI_NUM_IRQS {
            return Err(errno(libc::EINVAL));
        }
        let flags = match index {
            i if i == VFIO_PCI_INTX_IRQ_INDEX => {
                VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
            }
            i if i == VFIO_PCI_MSI_IRQ_INDEX || i == VFIO_PCI_MSIX_IRQ_INDEX => {
                VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE
            }
            _ => 0,
        };
        Ok(IrqInfo {
            index,
            flags,
            count: Self::irq_count(index),
        })
    }

    fn set_irqs(&self, set: &IrqSet<'_>) -> io::Result<()> {
        let info = self.irq_info(set.index)?;
        set.validate(&info)?;
        let mut irq = self.irq.lock();
        let selected = |i: usize| match set.data {
            IrqData::Bool(b) => b[i],
            _ => true,
        };
        match (set.action, set.data) {
            (IrqAction::Trigger, IrqData::EventFd(fds)) => {
                if irq.active.is_some_and(|a| a != set.index) {
                    return Err(errno(libc::EINVAL));
                }
                if irq.active.is_none() {
                    irq.vectors = (0..info.count).map(|_| Vector::default()).collect();
                    irq.intx_masked = false;
                }
                for (i, &fd) in fds.iter().enumerate() {
                    irq.vectors[set.start as usize + i].trigger = dup_eventfd(fd)?;
                }
                irq.active = Some(set.index);
                if irq.vectors.iter().all(|v| v.trigger.is_none()) {
                    irq.active = None;
                }
            }
            (IrqAction::Trigger, _) if set.count == 0 => {
                // DATA_NONE with count 0: tear the index down.
                if irq.active == Some(set.index) {
                    *irq = IrqState::default();
                }
            }
            (IrqAction::Trigger, _) => {
                if irq.active != Some(set.index) {
                    return Err(errno(libc::EINVAL));
                }
                for i in 0..set.count as usize {
                    if selected(i) {
                        signal(&irq.vectors[set.start as usize + i]);
                    }
                }
            }
            (IrqAction::Mask | IrqAction::Unmask, _) => {
                if !info.maskable() || irq.active != Some(set.index) || !selected(0) {
                    return Err(errno(libc::EINVAL));
                }
                if matches!(set.data, IrqData::EventFd(_)) {
                    // Resample fds are for a kernel irqfd; nothing to resample here.
                    return Err(errno(libc::EINVAL));
                }
                irq.intx_masked = set.action == IrqAction::Mask;
                if !irq.intx_masked && irq.intx_level {
                    // Still asserted: signal again and re-arm the automask.
                    irq.intx_masked = true;
                    signal(&irq.vectors[0]);
                }
            }
        }
        Ok(())
    }

    fn reset(&self) -> io::Result<()> {
        let fx = self.gpu.reset();
        *self.config.lock() = config_space();
        self.apply(fx);
        Ok(())
    }

    unsafe fn dma_map(&self, iova: u64, size: u64, vaddr: u64, flags: DmaFlags) -> io::Result<()> {
        // SAFETY: the caller's promise for these bytes is the table's.
        unsafe { self.dma.map(iova, size, vaddr, flags) }
    }

    fn dma_unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        self.dma.unmap(iova, size).map(|_| ())
    }

    fn describe(&self) -> String {
        format!(
            "soft (in-process RVG-1, {} MiB VRAM)",
            self.gpu.vram().len() >> 20
        )
    }
}

/// Take our own reference to an eventfd, as the kernel does with
/// `eventfd_ctx_fdget`: the caller may close its fd afterwards. -1 clears.
fn dup_eventfd(fd: RawFd) -> io::Result<Option<EventFd>> {
    if fd < 0 {
        return Ok(None);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a caller-provided descriptor only creates a
    // new descriptor (or fails with EBADF); no memory is touched.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor we own.
    let efd = unsafe { EventFd::from_raw_fd(new) };
    // Refuse descriptors that are not eventfds, as the kernel does: a write
    // to a regular file would succeed and hide the mistake.
    let link = std::fs::read_link(format!("/proc/self/fd/{}", efd.as_raw_fd())).unwrap_or_default();
    if link.to_string_lossy() != "anon_inode:[eventfd]" {
        return Err(errno(libc::EINVAL));
    }
    Ok(Some(efd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvg_model::irq::IntSource;
    use rvg_model::regs::{GlobalReg, Register, RVG_ID};
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    fn soft() -> Arc<SoftGpu> {
        Arc::new(
            SoftGpu::new(
                GpuConfig { vram_size: 8 << 20 },
                Box::new(|m| panic!("unexpected log: {m}")),
            )
            .unwrap(),
        )
    }

    fn global(r: GlobalReg) -> u64 {
        bar2::GLOBAL + r.offset()
    }

    #[test]
    fn regions_report_kernel_like_layout() {
        let s = soft();
        let bar0 = s.region_info(VFIO_PCI_BAR0_REGION_INDEX).unwrap();
        assert!(bar0.mmappable() && bar0.can_mmap(0, 8 << 20));
        let bar2 = s.region_info(VFIO_PCI_BAR2_REGION_INDEX).unwrap();
        assert!(!bar2.mmappable() && bar2.readable() && bar2.writable());
        assert_ne!(bar2.offset, u64::from(VFIO_PCI_BAR2_REGION_INDEX) << 40);
        assert_eq!(
            s.region_info(VFIO_PCI_BAR0_REGION_INDEX + 1).unwrap().size,
            0
        );
        assert!(s.region_info(VFIO_PCI_NUM_REGIONS).is_err());
    }

    #[test]
    fn register_and_gtt_access_through_regions() {
        let s = soft();
        let bar2 = Region::new(s.clone(), VFIO_PCI_BAR2_REGION_INDEX).unwrap();
        assert_eq!(bar2.read_u32(global(GlobalReg::Id)).unwrap(), RVG_ID);
        bar2.write_u64(bar2::GTT + 8 * 1000, 0xabc003).unwrap();
        assert_eq!(s.gpu().gtt_entry(1000).unwrap().0, 0xabc003);
        // A 16-byte write is split into two 8-byte accesses.
        let mut two = [0u8; 16];
        two[..8].copy_from_slice(&1u64.to_le_bytes());
        two[8..].copy_from_slice(&2u64.to_le_bytes());
        bar2.write(bar2::GTT, &two).unwrap();
        assert_eq!(
            (
                s.gpu().gtt_entry(0).unwrap().0,
                s.gpu().gtt_entry(1).unwrap().0
            ),
            (1, 2)
        );
        let cfg = Region::new(s.clone(), VFIO_PCI_CONFIG_REGION_INDEX).unwrap();
        assert_eq!(cfg.read_u32(0).unwrap(), 0x5256_1234);
        assert_eq!(cfg.read_u32(0x2c).unwrap(), 0x5256_1234);
    }

    #[test]
    fn vram_mmap_is_the_model_memory() {
        let s = soft();
        let bar0 = Region::new(s.clone(), VFIO_PCI_BAR0_REGION_INDEX).unwrap();
        let m = bar0.mmap(0x1000, 0x2000).unwrap();
        m.write(0, &[0x5a]).unwrap();
        let mut b = [0u8];
        bar0.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [0x5a]);
        assert!(bar0.mmap(0x1000, 8 << 20).is_err());
        assert!(Region::new(s.clone(), VFIO_PCI_BAR2_REGION_INDEX)
            .unwrap()
            .mmap(0, 4096)
            .is_err());
    }

    #[test]
    fn msix_interrupt_reaches_the_eventfd() {
        let s = soft();
        let efd = EventFd::new(EFD_NONBLOCK).unwrap();
        s.set_irqs(&IrqSet::eventfds(
            VFIO_PCI_MSIX_IRQ_INDEX,
            0,
            &[efd.as_raw_fd()],
        ))
        .unwrap();
        let bar2 = Region::new(s.clone(), VFIO_PCI_BAR2_REGION_INDEX).unwrap();
        let sw = IntSource::SOFTWARE.bits();
        bar2.write_u32(global(GlobalReg::IntEnable), sw).unwrap();
        assert!(efd.read().is_err(), "nothing yet");
        bar2.write_u32(global(GlobalReg::IntTrigger), sw).unwrap();
        assert_eq!(efd.read().unwrap(), 1);
        // INTx cannot be enabled while MSI-X is.
        let other = EventFd::new(EFD_NONBLOCK).unwrap();
        let other_fd = [other.as_raw_fd()];
        let intx = IrqSet::eventfds(VFIO_PCI_INTX_IRQ_INDEX, 0, &other_fd);
        assert!(s.set_irqs(&intx).is_err());
        // Teardown, then INTx works.
        s.set_irqs(&IrqSet::teardown(VFIO_PCI_MSIX_IRQ_INDEX))
            .unwrap();
        s.set_irqs(&intx).unwrap();
    }

    #[test]
    fn intx_automasks_until_unmasked() {
        let s = soft();
        let efd = EventFd::new(EFD_NONBLOCK).unwrap();
        s.set_irqs(&IrqSet::eventfds(
            VFIO_PCI_INTX_IRQ_INDEX,
            0,
            &[efd.as_raw_fd()],
        ))
        .unwrap();
        let bar2 = Region::new(s.clone(), VFIO_PCI_BAR2_REGION_INDEX).unwrap();
        let sw = IntSource::SOFTWARE.bits();
        bar2.write_u32(global(GlobalReg::IntEnable), sw).unwrap();
        bar2.write_u32(global(GlobalReg::IntTrigger), sw).unwrap();
        assert_eq!(efd.read().unwrap(), 1);
        // Level still high but automasked: scratch writes signal nothing.
        bar2.write_u64(global(GlobalReg::Scratch), 1).unwrap();
        assert!(efd.read().is_err());
        let unmask = IrqSet::intx_unmask();
        // Unmasked while still asserted: signalled again.
        s.set_irqs(&unmask).unwrap();
        assert_eq!(efd.read().unwrap(), 1);
        // Cause cleared, unmask: quiet.
        bar2.write_u32(global(GlobalReg::IntStatus), sw).unwrap();
        s.set_irqs(&unmask).unwrap();
        assert!(efd.read().is_err());
    }

    #[test]
    fn non_eventfd_triggers_are_refused() {
        let s = soft();
        let file = std::fs::File::open("/dev/null").unwrap();
        let file_fd = [file.as_raw_fd()];
        let set = IrqSet::eventfds(VFIO_PCI_MSIX_IRQ_INDEX, 0, &file_fd);
        assert_eq!(
            s.set_irqs(&set).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        let bad = IrqSet {
            data: IrqData::EventFd(&[9999]),
            ..set
        };
        assert_eq!(
            s.set_irqs(&bad).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }

    #[test]
    fn bad_offsets_fail_cleanly() {
        let s = soft();
        let mut b = [0u8; 8];
        assert!(s.pread(&mut b, 0).is_err());
        assert!(s
            .pread(
                &mut b,
                region_offset(VFIO_PCI_BAR2_REGION_INDEX) + bar2::SIZE - 4
            )
            .is_err());
        assert!(s.pread(&mut b, u64::MAX).is_err());
        assert!(s.pread(&mut b, region_offset(5)).is_err());
    }
}

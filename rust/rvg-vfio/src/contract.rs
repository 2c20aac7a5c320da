//! The VFIO device contract: what the mediator may ask of a GPU, shaped after
//! the Linux VFIO device uapi (`linux/vfio.h`). A kernel device fd and the
//! in-process soft GPU both implement [`VfioDevice`]; the mediator uses
//! nothing else.
//!
//! The methods mirror the uapi one for one, including its sharp edges:
//! `pread`/`pwrite` take the *device-fd offset* (a region's reported
//! `offset` plus the offset inside it) and may transfer less than asked, as
//! the syscalls may. [`Region`] wraps that into whole, bounds-checked
//! transfers.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

pub use crate::host_mem::Mapping;
pub use vfio_bindings::bindings::vfio::{
    VFIO_DEVICE_FLAGS_CAPS, VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET,
    VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_INFO_NORESIZE, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR2_REGION_INDEX,
    VFIO_PCI_BAR4_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS,
    VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, VFIO_REGION_INFO_CAP_SPARSE_MMAP,
    VFIO_REGION_INFO_CAP_TYPE, VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

/// One `vfio_region_sparse_mmap_area`: a part of a region that may be mmap'd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SparseArea {
    pub offset: u64,
    pub size: u64,
}

/// An entry of a region's capability chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionCap {
    SparseMmap(Vec<SparseArea>),
    Type {
        ty: u32,
        subtype: u32,
    },
    MsixMappable,
    /// A capability this contract does not interpret, kept so callers can
    /// tell it was there.
    Unknown {
        id: u16,
        version: u16,
    },
}

/// `VFIO_DEVICE_GET_REGION_INFO`, capability chain parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    pub index: u32,
    pub flags: u32,
    pub size: u64,
    /// Where the region starts in the device fd's offset space.
    pub offset: u64,
    pub caps: Vec<RegionCap>,
}

impl RegionInfo {
    pub fn readable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_WRITE != 0
    }
    pub fn mmappable(&self) -> bool {
        self.flags & VFIO_REGION_INFO_FLAG_MMAP != 0
    }

    /// The parts that may be mmap'd: the sparse areas if the region has that
    /// capability, else the whole region if it is mmap-able, else none.
    pub fn mmap_areas(&self) -> Vec<SparseArea> {
        if !self.mmappable() {
            return Vec::new();
        }
        for cap in &self.caps {
            if let RegionCap::SparseMmap(areas) = cap {
                return areas.clone();
            }
        }
        vec![SparseArea {
            offset: 0,
            size: self.size,
        }]
    }

    /// Whether `[offset, offset + size)` lies inside one mmap-able area.
    pub fn can_mmap(&self, offset: u64, size: u64) -> bool {
        let Some(end) = offset.checked_add(size) else {
            return false;
        };
        self.mmap_areas()
            .iter()
            .any(|a| offset >= a.offset && end <= a.offset.saturating_add(a.size))
    }
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqInfo {
    pub index: u32,
    pub flags: u32,
    pub count: u32,
}

impl IrqInfo {
    pub fn eventfd(&self) -> bool {
        self.flags & VFIO_IRQ_INFO_EVENTFD != 0
    }
    pub fn maskable(&self) -> bool {
        self.flags & VFIO_IRQ_INFO_MASKABLE != 0
    }
    pub fn automasked(&self) -> bool {
        self.flags & VFIO_IRQ_INFO_AUTOMASKED != 0
    }
}

/// The action of a `VFIO_DEVICE_SET_IRQS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqAction {
    Mask,
    Unmask,
    Trigger,
}

/// The data of a `VFIO_DEVICE_SET_IRQS`, one element per vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqData<'a> {
    /// DATA_NONE: act on every vector in the range.
    None,
    /// DATA_BOOL: act on the vectors whose flag is true.
    Bool(&'a [bool]),
    /// DATA_EVENTFD: with TRIGGER, install these eventfds (-1 removes one);
    /// with UNMASK, a resample fd for level interrupts.
    EventFd(&'a [RawFd]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqSet<'a> {
    pub index: u32,
    pub action: IrqAction,
    pub start: u32,
    pub count: u32,
    pub data: IrqData<'a>,
}

impl<'a> IrqSet<'a> {
    /// TRIGGER with eventfds for vectors `start..start + fds.len()`.
    pub fn eventfds(index: u32, start: u32, fds: &'a [RawFd]) -> IrqSet<'a> {
        IrqSet {
            index,
            action: IrqAction::Trigger,
            start,
            count: fds.len() as u32,
            data: IrqData::EventFd(fds),
        }
    }

    /// TRIGGER, DATA_NONE, count 0: tear down every trigger of `index`.
    pub fn teardown(index: u32) -> IrqSet<'a> {
        IrqSet {
            index,
            action: IrqAction::Trigger,
            start: 0,
            count: 0,
            data: IrqData::None,
        }
    }

    /// UNMASK the INTx line, after an automasked assertion was handled.
    pub fn intx_unmask() -> IrqSet<'a> {
        IrqSet {
            index: VFIO_PCI_INTX_IRQ_INDEX,
            action: IrqAction::Unmask,
            start: 0,
            count: 1,
            data: IrqData::None,
        }
    }

    /// Check the data length against `count`, as the kernel does.
    pub fn validate(&self, info: &IrqInfo) -> io::Result<()> {
        let len = match self.data {
            IrqData::None => self.count as usize,
            IrqData::Bool(b) => b.len(),
            IrqData::EventFd(f) => f.len(),
        };
        let end = self.start.checked_add(self.count);
        if len != self.count as usize || end.is_none_or(|e| e > info.count) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if self.count == 0
            && !matches!(
                (self.action, self.data),
                (IrqAction::Trigger, IrqData::None)
            )
        {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }
}

/// Access rights of a DMA mapping (`VFIO_DMA_MAP_FLAG_READ/WRITE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFlags {
    pub read: bool,
    pub write: bool,
}

impl DmaFlags {
    pub const READ_WRITE: DmaFlags = DmaFlags {
        read: true,
        write: true,
    };
}

/// A VFIO device: the GPU as the mediator sees it.
pub trait VfioDevice: Send + Sync {
    fn device_info(&self) -> io::Result<DeviceInfo>;
    fn region_info(&self, index: u32) -> io::Result<RegionInfo>;
    /// pread(2) on the device fd. May transfer fewer bytes than asked.
    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// pwrite(2) on the device fd. May transfer fewer bytes than asked.
    fn pwrite(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// mmap(2) of `size` bytes at device-fd `offset` (inside an mmap area).
    fn mmap(&self, offset: u64, size: u64) -> io::Result<Mapping>;
    fn irq_info(&self, index: u32) -> io::Result<IrqInfo>;
    fn set_irqs(&self, set: &IrqSet<'_>) -> io::Result<()>;
    fn reset(&self) -> io::Result<()>;
    /// Map `size` bytes of host memory at `vaddr` for the device at `iova`.
    /// Safe code maps memory through [`HostRange::dma_map`], which makes
    /// the promise below for it.
    ///
    /// # Safety
    ///
    /// The `size` bytes at `vaddr` stay mapped, readable and (if
    /// `flags.write`) writable, until `dma_unmap` of this IOVA range has
    /// returned or the device is dropped: until then the device may read
    /// and write them at any time, concurrently with anyone else, so no
    /// Rust reference may cover them either.
    ///
    /// [`HostRange::dma_map`]: crate::host_mem::HostRange::dma_map
    unsafe fn dma_map(&self, iova: u64, size: u64, vaddr: u64, flags: DmaFlags) -> io::Result<()>;
    fn dma_unmap(&self, iova: u64, size: u64) -> io::Result<()>;
    /// A short human description ("soft", "vfio 0000:00:03.0") for logs and
    /// introspection.
    fn describe(&self) -> String;
}

/// The error a syscall would give with `e` in errno: the contract's
/// backends fail the way the kernel's VFIO driver does.
pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// One region of a device, with whole, bounds-checked transfers.
#[derive(Clone)]
pub struct Region {
    dev: Arc<dyn VfioDevice>,
    pub info: RegionInfo,
}

impl Region {
    pub fn new(dev: Arc<dyn VfioDevice>, index: u32) -> io::Result<Region> {
        Ok(Region {
            info: dev.region_info(index)?,
            dev,
        })
    }

    pub fn device(&self) -> &Arc<dyn VfioDevice> {
        &self.dev
    }

    fn fd_offset(&self, offset: u64, len: usize) -> io::Result<u64> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.info.size => Ok(self.info.offset + offset),
            _ => Err(errno(libc::EINVAL)),
        }
    }

    /// Read all of `buf` at `offset` in the region: short reads continue,
    /// EINTR retries, a zero-length read is an error (EIO).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if !self.info.readable() {
            return Err(errno(libc::EACCES));
        }
        read_exact_at(&*self.dev, buf, self.fd_offset(offset, buf.len())?)
    }

    /// Write all of `buf` at `offset` in the region, as `read` does.
    #[inline]
    pub fn write(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if !self.info.writable() {
            return Err(errno(libc::EACCES));
        }
        let at = self.fd_offset(offset, buf.len())?;
        // Almost every write is whole at the first call (a GTT entry, a
        // register): only a short or interrupted one needs the loop.
        match self.dev.pwrite(buf, at) {
            Ok(n) if n == buf.len() => Ok(()),
            first => write_rest(&*self.dev, buf, at, first),
        }
    }

    pub fn read_u32(&self, offset: u64) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_u64(&self, offset: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.read(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_u32(&self, offset: u64, value: u32) -> io::Result<()> {
        self.write(offset, &value.to_le_bytes())
    }

    pub fn write_u64(&self, offset: u64, value: u64) -> io::Result<()> {
        self.write(offset, &value.to_le_bytes())
    }

    /// mmap `size` bytes at `offset` in the region, if an mmap area covers them.
    pub fn mmap(&self, offset: u64, size: u64) -> io::Result<Mapping> {
        if !self.info.can_mmap(offset, size) {
            return Err(errno(libc::EINVAL));
        }
        self.dev.mmap(self.info.offset + offset, size)
    }
}

/// pread until `buf` is full.
pub fn read_exact_at(dev: &dyn VfioDevice, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match dev.pread(buf, offset) {
            Ok(0) => return Err(errno(libc::EIO)),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `Region::write` after a first pwrite that did not write all of `buf`:
/// the rest, from where that one stopped.
#[cold]
fn write_rest(
    dev: &dyn VfioDevice,
    buf: &[u8],
    offset: u64,
    first: io::Result<usize>,
) -> io::Result<()> {
    let done = match first {
        Ok(0) => return Err(errno(libc::EIO)),
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
        Err(e) => return Err(e),
    };
    write_all_at(dev, &buf[done..], offset + done as u64)
}

/// pwrite until all of `buf` is written.
pub fn write_all_at(dev: &dyn VfioDevice, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match dev.pwrite(buf, offset) {
            Ok(0) => return Err(errno(libc::EIO)),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A device whose pread/pwrite move at most `chunk` bytes and fail with
    /// EINTR every other call, as a signal-heavy host might.
    struct Choppy {
        chunk: usize,
        calls: AtomicUsize,
        data: parking_lot::Mutex<Vec<u8>>,
        /// Bytes pwrite has written, for checking none is written twice.
        written: AtomicUsize,
    }

    impl Choppy {
        /// `first_call` 0 fails the first transfer with EINTR, 1 makes it
        /// a short one.
        fn new(chunk: usize, first_call: usize) -> Arc<Choppy> {
            Arc::new(Choppy {
                chunk,
                calls: AtomicUsize::new(first_call),
                data: parking_lot::Mutex::new(vec![0; 64]),
                written: AtomicUsize::new(0),
            })
        }
    }

    impl VfioDevice for Choppy {
        fn device_info(&self) -> io::Result<DeviceInfo> {
            Ok(DeviceInfo {
                flags: 0,
                num_regions: 1,
                num_irqs: 0,
            })
        }
        fn region_info(&self, index: u32) -> io::Result<RegionInfo> {
            Ok(RegionInfo {
                index,
                flags: VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE,
                size: 64,
                offset: 0x1000,
                caps: vec![],
            })
        }
        fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            if self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                return Err(errno(libc::EINTR));
            }
            let n = buf.len().min(self.chunk);
            let at = (offset - 0x1000) as usize;
            buf[..n].copy_from_slice(&self.data.lock()[at..at + n]);
            Ok(n)
        }
        fn pwrite(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
            if self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
                return Err(errno(libc::EINTR));
            }
            let n = buf.len().min(self.chunk);
            let at = (offset - 0x1000) as usize;
            self.data.lock()[at..at + n].copy_from_slice(&buf[..n]);
            self.written.fetch_add(n, Ordering::Relaxed);
            Ok(n)
        }
        fn mmap(&self, _: u64, _: u64) -> io::Result<Mapping> {
            Err(errno(libc::EINVAL))
        }
        fn irq_info(&self, _: u32) -> io::Result<IrqInfo> {
            Err(errno(libc::EINVAL))
        }
        fn set_irqs(&self, _: &IrqSet<'_>) -> io::Result<()> {
            Err(errno(libc::EINVAL))
        }
        fn reset(&self) -> io::Result<()> {
            Ok(())
        }
        unsafe fn dma_map(&self, _: u64, _: u64, _: u64, _: DmaFlags) -> io::Result<()> {
            Ok(())
        }
        fn dma_unmap(&self, _: u64, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn describe(&self) -> String {
            "choppy".into()
        }
    }

    #[test]
    fn short_transfers_and_eintr_are_completed() {
        // The first transfer interrupted, then short; or short at once.
        for first_call in [0, 1] {
            let dev = Choppy::new(3, first_call);
            let region = Region::new(dev.clone(), 0).unwrap();
            region.write(8, &(0u8..20).collect::<Vec<_>>()).unwrap();
            // Each byte written once: a register's side effect happens once.
            assert_eq!(dev.written.load(Ordering::Relaxed), 20);
            let mut back = [0u8; 20];
            region.read(8, &mut back).unwrap();
            assert_eq!(back.to_vec(), (0u8..20).collect::<Vec<_>>());
            assert_eq!(
                region.read_u64(8).unwrap(),
                u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7])
            );
        }
    }

    #[test]
    fn region_bounds_and_rights_are_checked() {
        let dev = Choppy::new(64, 1);
        let mut region = Region::new(dev, 0).unwrap();
        assert_eq!(
            region.read_u64(60).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            region.read_u64(u64::MAX - 2).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        region.info.flags = VFIO_REGION_INFO_FLAG_READ;
        assert_eq!(
            region.write_u32(0, 1).unwrap_err().raw_os_error(),
            Some(libc::EACCES)
        );
        assert_eq!(
            region.mmap(0, 4096).err().unwrap().raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn mmap_areas_follow_flags_and_sparse_caps() {
        let mut info = RegionInfo {
            index: 0,
            flags: VFIO_REGION_INFO_FLAG_READ,
            size: 0x10000,
            offset: 0,
            caps: vec![],
        };
        assert!(info.mmap_areas().is_empty());
        info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
        assert!(info.can_mmap(0, 0x10000));
        info.caps = vec![RegionCap::SparseMmap(vec![SparseArea {
            offset: 0x4000,
            size: 0x4000,
        }])];
        assert!(info.can_mmap(0x4000, 0x4000));
        assert!(!info.can_mmap(0, 0x1000));
        assert!(!info.can_mmap(0x6000, 0x4000));
        assert!(!info.can_mmap(u64::MAX, 2));
    }

    #[test]
    fn irq_set_lengths_are_checked() {
        let info = IrqInfo {
            index: 2,
            flags: VFIO_IRQ_INFO_EVENTFD,
            count: 4,
        };
        let ok = IrqSet {
            index: 2,
            action: IrqAction::Trigger,
            start: 0,
            count: 2,
            data: IrqData::EventFd(&[3, 4]),
        };
        assert!(ok.validate(&info).is_ok());
        let short = IrqSet {
            data: IrqData::EventFd(&[3]),
            ..ok
        };
        assert!(short.validate(&info).is_err());
        let beyond = IrqSet { start: 3, ..ok };
        assert!(beyond.validate(&info).is_err());
        let teardown = IrqSet {
            count: 0,
            data: IrqData::None,
            ..ok
        };
        assert!(teardown.validate(&info).is_ok());
    }
}

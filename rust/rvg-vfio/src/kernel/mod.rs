//! The kernel backend: [`KernelDevice`], a [`VfioDevice`] over a real VFIO
//! device fd, opened through the legacy group/container interface or
//! through iommufd and the device's cdev.
//!
//! Module per concern: `sysfs` finds and checks the device, `container`
//! and `iommufd` are the two ways in, `caps` and `irq` build and parse ioctl
//! buffers (pure), `ioctl` and `mmap` hold the unsafe calls.

mod caps;
mod container;
mod ioctl;
mod iommufd;
mod irq;
mod mmap;
mod sysfs;

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

pub use caps::{parse_region_info, CapError};
pub use irq::set_irqs_buffer;
pub use sysfs::Paths;

use crate::contract::{
    DeviceInfo, DmaFlags, IrqInfo, IrqSet, Mapping, RegionInfo, VfioDevice, VFIO_DEVICE_FLAGS_PCI,
    VFIO_DEVICE_FLAGS_RESET,
};
use container::Group;
use iommufd::Iommufd;
use mmap::DeviceMmap;
use sysfs::Chosen;

/// How to reach the device's IOMMU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IommuBackend {
    /// iommufd if the kernel and the device offer it, else legacy.
    #[default]
    Auto,
    /// /dev/vfio/N in a Type1v2 container.
    Legacy,
    /// /dev/iommu and /dev/vfio/devices/vfioX.
    Iommufd,
}

impl IommuBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            IommuBackend::Auto => "auto",
            IommuBackend::Legacy => "legacy",
            IommuBackend::Iommufd => "iommufd",
        }
    }
}

impl fmt::Display for IommuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IommuBackend {
    type Err = OpenError;

    fn from_str(s: &str) -> Result<IommuBackend, OpenError> {
        match s {
            "auto" => Ok(IommuBackend::Auto),
            "legacy" => Ok(IommuBackend::Legacy),
            "iommufd" => Ok(IommuBackend::Iommufd),
            _ => Err(OpenError::new(
                "not an IOMMU backend (expected auto, legacy or iommufd)",
            )),
        }
    }
}

/// Which device to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A PCI address, `[domain:]bus:slot.function` in hex.
    Host(String),
    /// A sysfs device directory: a PCI function or an mdev.
    Sysfs(PathBuf),
}

/// Why a device could not be opened: the cause alone, for the caller to
/// prefix with the property and value that named the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenError(String);

impl OpenError {
    pub(crate) fn new(msg: impl Into<String>) -> OpenError {
        OpenError(msg.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// The way the device was opened, which owns what its fd depends on.
enum Backend {
    Legacy(Arc<Group>),
    Iommufd { iommufd: Iommufd, cdev: PathBuf },
}

/// A VFIO device of the host kernel.
pub struct KernelDevice {
    // Fields drop in declaration order: the device fd must close before
    // the group or iommufd it was opened through.
    device: File,
    backend: Backend,
    info: DeviceInfo,
    name: String,
}

impl KernelDevice {
    /// Open the device `spec` names through `backend`, with the real /sys
    /// and /dev.
    pub fn open(spec: &DeviceSpec, backend: IommuBackend) -> Result<KernelDevice, OpenError> {
        KernelDevice::open_with(spec, backend, &Paths::default())
    }

    /// [`KernelDevice::open`] with sysfs and /dev where `paths` says.
    pub fn open_with(
        spec: &DeviceSpec,
        backend: IommuBackend,
        paths: &Paths,
    ) -> Result<KernelDevice, OpenError> {
        let dev = sysfs::resolve(spec, paths)?;
        let (device, backend) = match sysfs::choose_backend(backend, paths, &dev)? {
            Chosen::Legacy => {
                let group = Group::get(paths, dev.iommu_group)?;
                (group.device_fd(&dev.name)?, Backend::Legacy(group))
            }
            Chosen::Iommufd => {
                let cdev = dev.cdev.as_deref().map(|c| paths.cdev(c)).ok_or_else(|| {
                    OpenError::new(format!(
                        "the device has no VFIO device cdev ({})",
                        dev.dir.join("vfio-dev").display()
                    ))
                })?;
                let iommufd = Iommufd::open(paths)?;
                (
                    iommufd.open_device(&cdev)?,
                    Backend::Iommufd { iommufd, cdev },
                )
            }
        };
        // Assembled before anything else can fail, so any failure from here
        // on drops the fds in the right order.
        let mut kd = KernelDevice {
            device,
            backend,
            info: DeviceInfo {
                flags: 0,
                num_regions: 0,
                num_irqs: 0,
            },
            name: dev.name,
        };
        let info = ioctl::device_get_info(&kd.device).map_err(|e| {
            OpenError::new(format!("VFIO_DEVICE_GET_INFO on {} failed: {e}", kd.name))
        })?;
        // An mdev reports the PCI flag too when it presents a PCI device.
        if info.flags & VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(OpenError::new(format!(
                "not a PCI device (VFIO device flags {:#x})",
                info.flags
            )));
        }
        kd.info = DeviceInfo {
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        };
        Ok(kd)
    }

    /// The backend in use: `Legacy` or `Iommufd`, never `Auto`.
    pub fn backend(&self) -> IommuBackend {
        match self.backend {
            Backend::Legacy(_) => IommuBackend::Legacy,
            Backend::Iommufd { .. } => IommuBackend::Iommufd,
        }
    }

    /// The name VFIO knows the device by, e.g. "0000:00:03.0".
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for KernelDevice {
    /// The device fd, e.g. for KVM's VFIO device.
    fn as_raw_fd(&self) -> RawFd {
        self.device.as_raw_fd()
    }
}

impl fmt::Debug for KernelDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelDevice")
            .field("name", &self.name)
            .field("backend", &self.backend())
            .field("info", &self.info)
            .finish()
    }
}

fn invalid_data(e: CapError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl VfioDevice for KernelDevice {
    fn device_info(&self) -> io::Result<DeviceInfo> {
        // Fixed for the life of the fd; read once at open.
        Ok(self.info)
    }

    fn region_info(&self, index: u32) -> io::Result<RegionInfo> {
        let mut argsz = caps::HEADER_SIZE;
        // Ask with room for the header; if the chain did not fit, the kernel
        // says how much it needs. Only a driver whose chain keeps growing
        // between calls needs more than two rounds.
        for _ in 0..4 {
            // At most MAX_REGION_INFO_SIZE, so it fits in u32.
            let request = caps::region_info_request(index, argsz as u32);
            let mut words = ioctl::to_words(&request);
            ioctl::device_get_region_info(&self.device, &mut words)?;
            let reply = ioctl::to_bytes(&words, argsz);
            match caps::retry_size(&reply).map_err(invalid_data)? {
                Some(needed) => argsz = needed,
                None => return caps::parse_region_info(&reply).map_err(invalid_data),
            }
        }
        Err(io::Error::other(format!(
            "{}: region {index} info keeps growing",
            self.name
        )))
    }

    fn pread(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        // Short counts and EINTR (ErrorKind::Interrupted) pass through as the
        // contract asks.
        self.device.read_at(buf, offset)
    }

    fn pwrite(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.device.write_at(buf, offset)
    }

    fn mmap(&self, offset: u64, size: u64) -> io::Result<Mapping> {
        let area = Arc::new(DeviceMmap::new(&self.device, offset, size)?);
        let ptr = area
            .ptr()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        // SAFETY: `area` is a fresh shared mapping of `size` readable and
        // writable bytes, unmapped only when its last Arc (the Mapping's)
        // goes; nothing in Rust references it.
        Ok(unsafe { Mapping::new(ptr, size, area) })
    }

    fn irq_info(&self, index: u32) -> io::Result<IrqInfo> {
        let info = ioctl::device_get_irq_info(&self.device, index)?;
        Ok(IrqInfo {
            index: info.index,
            flags: info.flags,
            count: info.count,
        })
    }

    fn set_irqs(&self, set: &IrqSet<'_>) -> io::Result<()> {
        irq::check(set)?;
        let buf = irq::set_irqs_buffer(set);
        ioctl::device_set_irqs(&self.device, &ioctl::to_words(&buf))
    }

    fn reset(&self) -> io::Result<()> {
        if self.info.flags & VFIO_DEVICE_FLAGS_RESET == 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOTTY));
        }
        ioctl::device_reset(&self.device)
    }

    unsafe fn dma_map(&self, iova: u64, size: u64, vaddr: u64, flags: DmaFlags) -> io::Result<()> {
        // SAFETY: the caller's promise, passed on: the device's mapping goes
        // with `dma_unmap` or with the device fd, which closes before the
        // group or iommufd (field order).
        unsafe {
            match &self.backend {
                Backend::Legacy(group) => group.dma_map(iova, size, vaddr, flags),
                Backend::Iommufd { iommufd, .. } => iommufd.dma_map(iova, size, vaddr, flags),
            }
        }
    }

    fn dma_unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        match &self.backend {
            Backend::Legacy(group) => group.dma_unmap(iova, size),
            Backend::Iommufd { iommufd, .. } => iommufd.dma_unmap(iova, size),
        }
    }

    fn describe(&self) -> String {
        match &self.backend {
            Backend::Legacy(group) => format!(
                "vfio {} (legacy container, IOMMU group {})",
                self.name,
                group.id()
            ),
            Backend::Iommufd { cdev, .. } => {
                format!("vfio {} (iommufd, {})", self.name, cdev.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sysfs::tests::TempTree;
    use super::*;

    fn open_err(spec: &DeviceSpec, backend: IommuBackend, paths: &Paths) -> String {
        KernelDevice::open_with(spec, backend, paths)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn backend_names() {
        for b in [
            IommuBackend::Auto,
            IommuBackend::Legacy,
            IommuBackend::Iommufd,
        ] {
            assert_eq!(b.to_string().parse::<IommuBackend>(), Ok(b));
        }
        assert_eq!(IommuBackend::default(), IommuBackend::Auto);
        assert_eq!(
            "vfio".parse::<IommuBackend>().unwrap_err().to_string(),
            "not an IOMMU backend (expected auto, legacy or iommufd)"
        );
    }

    #[test]
    fn open_reports_sysfs_problems() {
        let t = TempTree::new();
        let paths = t.paths();
        assert_eq!(
            open_err(
                &DeviceSpec::Host("00:09.0".into()),
                IommuBackend::Auto,
                &paths
            ),
            format!(
                "no such PCI device ({} does not exist)",
                t.0.join("sys/bus/pci/devices/0000:00:09.0").display()
            )
        );
        t.pci_device("0000:00:03.0", Some("e1000e"), Some(5));
        assert_eq!(
            open_err(
                &DeviceSpec::Host("0000:00:03.0".into()),
                IommuBackend::Legacy,
                &paths
            ),
            "not bound to vfio-pci (bound to 'e1000e')"
        );
    }

    #[test]
    fn auto_without_iommufd_goes_legacy() {
        let t = TempTree::new();
        let paths = t.paths();
        t.pci_device("0000:00:03.0", Some("vfio-pci"), Some(42));
        assert_eq!(
            open_err(
                &DeviceSpec::Host("00:03.0".into()),
                IommuBackend::Auto,
                &paths
            ),
            format!(
                "{} does not exist (is vfio loaded?)",
                t.0.join("dev/vfio/42").display()
            )
        );
        assert_eq!(
            open_err(
                &DeviceSpec::Host("00:03.0".into()),
                IommuBackend::Iommufd,
                &paths
            ),
            format!(
                "the kernel offers no iommufd ({} does not exist)",
                t.0.join("dev/iommu").display()
            )
        );
    }

    #[test]
    fn auto_with_iommufd_and_a_cdev_goes_iommufd() {
        let t = TempTree::new();
        let paths = t.paths();
        t.pci_device("0000:00:03.0", Some("vfio-pci"), Some(43));
        t.mkdir("sys/devices/pci0000:00/0000:00:03.0/vfio-dev/vfio0");
        let iommu = t.touch("dev/iommu");
        let err = open_err(
            &DeviceSpec::Host("00:03.0".into()),
            IommuBackend::Auto,
            &paths,
        );
        assert!(
            err.starts_with(&format!("IOMMU_IOAS_ALLOC on {} failed:", iommu.display())),
            "{err}"
        );
    }
}

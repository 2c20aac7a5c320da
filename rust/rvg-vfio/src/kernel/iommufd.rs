//! The iommufd interface: an iommufd (/dev/iommu) with one IO address space
//! (IOAS), and the device's own cdev (/dev/vfio/devices/vfioX) bound to it
//! and attached to that IOAS. Each device gets its own iommufd: nothing is
//! shared, and closing the iommufd destroys the IOAS and its mappings.

use std::fs::File;
use std::io;
use std::path::Path;

use iommufd_bindings::{
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA as IOMMU_IOAS_MAP_FIXED_IOVA,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE as IOMMU_IOAS_MAP_READABLE,
    iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE as IOMMU_IOAS_MAP_WRITEABLE,
};

use super::container::{check_unmapped, open_dev};
use super::ioctl;
use super::sysfs::Paths;
use super::OpenError;
use crate::contract::DmaFlags;

pub(crate) struct Iommufd {
    fd: File,
    ioas_id: u32,
}

impl Iommufd {
    /// Open /dev/iommu and allocate an IOAS in it.
    pub(crate) fn open(paths: &Paths) -> Result<Iommufd, OpenError> {
        let path = paths.iommufd();
        let fd = open_dev(&path, " (is iommufd loaded?)", || {
            format!("{} is busy", path.display())
        })?;
        let ioas_id = ioctl::ioas_alloc(&fd).map_err(|e| {
            OpenError::new(format!(
                "IOMMU_IOAS_ALLOC on {} failed: {e}",
                path.display()
            ))
        })?;
        Ok(Iommufd { fd, ioas_id })
    }

    /// Open the device cdev at `cdev`, bind it to this iommufd and attach it
    /// to the IOAS. Until the bind the kernel refuses every other use of it.
    pub(crate) fn open_device(&self, cdev: &Path) -> Result<File, OpenError> {
        let device = open_dev(cdev, "", || format!("{} is in use", cdev.display()))?;
        ioctl::device_bind_iommufd(&device, &self.fd).map_err(|e| {
            OpenError::new(match e.raw_os_error() {
                // vfio_device_block_group: the group is open the legacy way.
                Some(libc::EBUSY) => format!(
                    "VFIO_DEVICE_BIND_IOMMUFD on {} failed: the device's IOMMU group is in use",
                    cdev.display()
                ),
                _ => format!("VFIO_DEVICE_BIND_IOMMUFD on {} failed: {e}", cdev.display()),
            })
        })?;
        ioctl::device_attach_iommufd_pt(&device, self.ioas_id).map_err(|e| {
            OpenError::new(format!(
                "VFIO_DEVICE_ATTACH_IOMMUFD_PT of {} to IOAS {} failed: {e}",
                cdev.display(),
                self.ioas_id
            ))
        })?;
        Ok(device)
    }

    /// Map `[vaddr, vaddr + size)` for the device at `iova`.
    ///
    /// # Safety
    ///
    /// As for [`VfioDevice::dma_map`](crate::VfioDevice::dma_map).
    pub(crate) unsafe fn dma_map(
        &self,
        iova: u64,
        size: u64,
        vaddr: u64,
        flags: DmaFlags,
    ) -> io::Result<()> {
        // SAFETY: the caller's promise for the bytes, passed on.
        unsafe { ioctl::ioas_map(&self.fd, self.ioas_id, iova, size, vaddr, map_flags(flags)) }
    }

    /// Unmap exactly `[iova, iova + size)`, as the legacy backend does.
    pub(crate) fn dma_unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        let unmapped = ioctl::ioas_unmap(&self.fd, self.ioas_id, iova, size)?;
        check_unmapped(iova, size, unmapped)
    }
}

/// IOMMU_IOAS_MAP flags: always at the IOVA asked, rights as given.
fn map_flags(flags: DmaFlags) -> u32 {
    let mut f = IOMMU_IOAS_MAP_FIXED_IOVA;
    if flags.read {
        f |= IOMMU_IOAS_MAP_READABLE;
    }
    if flags.write {
        f |= IOMMU_IOAS_MAP_WRITEABLE;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::super::sysfs::tests::TempTree;
    use super::*;

    #[test]
    fn map_flags_follow_dma_flags() {
        assert_eq!(map_flags(DmaFlags::READ_WRITE), 1 | 2 | 4);
        let ro = DmaFlags {
            read: true,
            write: false,
        };
        assert_eq!(map_flags(ro), 1 | 4);
    }

    #[test]
    fn open_failures_name_the_node() {
        let t = TempTree::new();
        let err = Iommufd::open(&t.paths()).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "{} does not exist (is iommufd loaded?)",
                t.0.join("dev/iommu").display()
            )
        );
        let path = t.touch("dev/iommu");
        let err = Iommufd::open(&t.paths()).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!("IOMMU_IOAS_ALLOC on {} failed:", path.display())),
            "{err}"
        );
    }
}

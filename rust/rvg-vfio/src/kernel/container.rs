//! The legacy interface: an IOMMU group (/dev/vfio/N) in a Type1v2
//! container (/dev/vfio/vfio), device fds got from the group by name.
//!
//! A group's fd can be open once system-wide (a second open is EBUSY), so
//! a process-wide registry hands every device of a group the same [`Group`],
//! which owns the group fd and its container; the last device to go closes
//! them. Each group gets a container of its own: devices of one group share
//! one IOMMU domain (and so its DMA mappings) anyway.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::{Condvar, Mutex};
use vfio_bindings::bindings::vfio::{
    VFIO_TYPE1v2_IOMMU, VFIO_API_VERSION, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_GROUP_FLAGS_VIABLE,
};

use super::ioctl;
use super::sysfs::Paths;
use super::OpenError;
use crate::contract::DmaFlags;

/// Open groups by /dev path. An entry whose Weak is dead belongs to a group
/// still closing its fds; [`RELEASED`] is signalled when it is gone.
static GROUPS: Mutex<Vec<(PathBuf, Weak<Group>)>> = Mutex::new(Vec::new());
static RELEASED: Condvar = Condvar::new();

const VFIO_MISSING: &str = " (is vfio loaded?)";

/// Open a VFIO character device read-write, naming the cause of a failure
/// the way a user can act on it.
/// `missing` is appended to "PATH does not exist".
pub(crate) fn open_dev(
    path: &Path,
    missing: &str,
    busy: impl FnOnce() -> String,
) -> Result<File, OpenError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            OpenError::new(match e.raw_os_error() {
                Some(libc::ENOENT) => format!("{} does not exist{missing}", path.display()),
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    format!("permission denied opening {}", path.display())
                }
                Some(libc::EBUSY) => busy(),
                _ => format!("cannot open {}: {e}", path.display()),
            })
        })
}

/// An open group, set in a Type1v2 container.
pub(crate) struct Group {
    id: u32,
    // Field order is drop order: the group leaves its container when its fd
    // closes, then the container goes, then the registry forgets the group.
    group: File,
    container: File,
    _registered: Registered,
}

/// Removes the group's registry entry once its fds are closed.
struct Registered(PathBuf);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut groups = GROUPS.lock();
        groups.retain(|(path, g)| !(*path == self.0 && g.strong_count() == 0));
        RELEASED.notify_all();
    }
}

impl Group {
    /// The group `id`, opened and set in a container if no device of this
    /// process holds it yet.
    pub(crate) fn get(paths: &Paths, id: u32) -> Result<Arc<Group>, OpenError> {
        let path = paths.group(id);
        let mut groups = GROUPS.lock();
        while let Some((_, g)) = groups.iter().find(|(p, _)| *p == path) {
            match g.upgrade() {
                Some(g) => return Ok(g),
                // Its last device is closing it: wait, or our open would
                // see EBUSY.
                None => RELEASED.wait(&mut groups),
            }
        }
        // The Group is built only once everything has succeeded: dropping
        // one while GROUPS is locked would deadlock in Registered's drop.
        let (group, container) = open_group(paths, &path, id)?;
        let group = Arc::new(Group {
            id,
            group,
            container,
            _registered: Registered(path.clone()),
        });
        groups.push((path, Arc::downgrade(&group)));
        Ok(group)
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// VFIO_GROUP_GET_DEVICE_FD for the device VFIO knows as `name`.
    pub(crate) fn device_fd(&self, name: &str) -> Result<File, OpenError> {
        let cname =
            CString::new(name).map_err(|_| OpenError::new(format!("bad device name '{name}'")))?;
        ioctl::group_get_device_fd(&self.group, &cname).map_err(|e| {
            OpenError::new(format!(
                "VFIO_GROUP_GET_DEVICE_FD for {name} in IOMMU group {} failed: {e}",
                self.id
            ))
        })
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
        let mut f = 0;
        if flags.read {
            f |= VFIO_DMA_MAP_FLAG_READ;
        }
        if flags.write {
            f |= VFIO_DMA_MAP_FLAG_WRITE;
        }
        // SAFETY: the caller's promise for the bytes, passed on.
        unsafe { ioctl::iommu_map_dma(&self.container, iova, size, vaddr, f) }
    }

    /// Unmap exactly `[iova, iova + size)`: type1 unmaps whole mappings
    /// only, so a different size unmapped means the caller's idea of the
    /// mappings was wrong, which must not pass silently.
    pub(crate) fn dma_unmap(&self, iova: u64, size: u64) -> io::Result<()> {
        let unmapped = ioctl::iommu_unmap_dma(&self.container, iova, size)?;
        check_unmapped(iova, size, unmapped)
    }
}

pub(crate) fn check_unmapped(iova: u64, size: u64, unmapped: u64) -> io::Result<()> {
    if unmapped != size {
        return Err(io::Error::other(format!(
            "DMA unmap at {iova:#x} unmapped {unmapped:#x} bytes, not the {size:#x} asked"
        )));
    }
    Ok(())
}

/// Open group `id` at `path`, check it is viable, and set it in a new
/// Type1v2 container.
fn open_group(paths: &Paths, path: &Path, id: u32) -> Result<(File, File), OpenError> {
    let group = open_dev(path, VFIO_MISSING, || {
        format!("IOMMU group {id} is already in use")
    })?;
    let status = ioctl::group_get_status(&group).map_err(|e| {
        OpenError::new(format!(
            "VFIO_GROUP_GET_STATUS on {} failed: {e}",
            path.display()
        ))
    })?;
    if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
        return Err(OpenError::new(format!(
            "IOMMU group {id} is not viable: every device in it must be bound to vfio-pci or unbound"
        )));
    }
    let container = open_container(paths)?;
    ioctl::group_set_container(&group, &container).map_err(|e| {
        OpenError::new(format!(
            "VFIO_GROUP_SET_CONTAINER for IOMMU group {id} failed: {e}"
        ))
    })?;
    // The IOMMU model is set once per container, after its first group is
    // in; this container only ever has this group.
    ioctl::set_iommu(&container, VFIO_TYPE1v2_IOMMU).map_err(|e| {
        OpenError::new(format!(
            "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU) for IOMMU group {id} failed: {e}"
        ))
    })?;
    Ok((group, container))
}

/// A new container, checked to speak our API version and Type1v2.
fn open_container(paths: &Paths) -> Result<File, OpenError> {
    let path = paths.container();
    let container = open_dev(&path, VFIO_MISSING, || {
        format!("{} is busy", path.display())
    })?;
    let version = ioctl::get_api_version(&container).map_err(|e| {
        OpenError::new(format!(
            "VFIO_GET_API_VERSION on {} failed: {e}",
            path.display()
        ))
    })?;
    if u32::try_from(version) != Ok(VFIO_API_VERSION) {
        return Err(OpenError::new(format!(
            "{} speaks VFIO API version {version}, not {VFIO_API_VERSION}",
            path.display()
        )));
    }
    match ioctl::check_extension(&container, VFIO_TYPE1v2_IOMMU) {
        Ok(n) if n > 0 => Ok(container),
        Ok(_) => Err(OpenError::new(
            "the VFIO container offers no Type1v2 IOMMU (is vfio_iommu_type1 loaded?)",
        )),
        Err(e) => Err(OpenError::new(format!(
            "VFIO_CHECK_EXTENSION on {} failed: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::sysfs::tests::TempTree;
    use super::*;

    #[test]
    fn missing_group_node() {
        let t = TempTree::new();
        let paths = t.paths();
        let err = Group::get(&paths, 5).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "{} does not exist (is vfio loaded?)",
                t.0.join("dev/vfio/5").display()
            )
        );
        // Nothing was registered by the failure.
        assert!(GROUPS.lock().iter().all(|(p, _)| *p != paths.group(5)));
    }

    #[test]
    fn a_group_node_that_is_no_group() {
        let t = TempTree::new();
        t.touch("dev/vfio/6");
        let err = Group::get(&t.paths(), 6).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "VFIO_GROUP_GET_STATUS on {} failed:",
                t.0.join("dev/vfio/6").display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_container_node_that_is_no_container() {
        let t = TempTree::new();
        let path = t.touch("dev/vfio/vfio");
        let err = open_container(&t.paths()).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "VFIO_GET_API_VERSION on {} failed:",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn unmap_size_must_match() {
        assert!(check_unmapped(0x1000, 0x2000, 0x2000).is_ok());
        let err = check_unmapped(0x1000, 0x2000, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DMA unmap at 0x1000 unmapped 0x0 bytes, not the 0x2000 asked"
        );
    }
}

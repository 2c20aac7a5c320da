//! The VFIO and iommufd ioctls the kernel backend issues, one safe function
//! each. This file and `mmap.rs` hold all of the backend's `unsafe`.
//!
//! Every VFIO and iommufd ioctl is `_IO(';', nr)`: no size or direction is
//! encoded, the structure carries its own size (`argsz` / `size`), and the
//! kernel reads and writes at most that many bytes. So each wrapper builds
//! its structure itself, with the size field equal to the memory passed.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::raw::{c_int, c_ulong};

use iommufd_bindings::{
    iommu_ioas_alloc, iommu_ioas_map, iommu_ioas_unmap, IOMMUFD_CMD_IOAS_ALLOC,
    IOMMUFD_CMD_IOAS_MAP, IOMMUFD_CMD_IOAS_UNMAP, IOMMUFD_TYPE,
};
use vfio_bindings::bindings::vfio::{
    vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_info, vfio_group_status,
    vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_irq_info, vfio_irq_set,
    vfio_region_info,
};
use vmm_sys_util::ioctl::{
    ioctl, ioctl_with_mut_ptr, ioctl_with_mut_ref, ioctl_with_ptr, ioctl_with_ref, ioctl_with_val,
};
use vmm_sys_util::ioctl_io_nr;

/// `VFIO_TYPE` in linux/vfio.h.
const VFIO_TYPE: u32 = b';' as u32;
/// `VFIO_BASE` in linux/vfio.h.
const VFIO_BASE: u32 = 100;
/// `IOMMUFD_TYPE` in linux/iommufd.h: the same ';' as VFIO, commands from 0x80.
const IOMMU_TYPE: u32 = IOMMUFD_TYPE as u32;

// linux/vfio.h: container (/dev/vfio/vfio).
ioctl_io_nr!(VFIO_GET_API_VERSION, VFIO_TYPE, VFIO_BASE);
ioctl_io_nr!(VFIO_CHECK_EXTENSION, VFIO_TYPE, VFIO_BASE + 1);
ioctl_io_nr!(VFIO_SET_IOMMU, VFIO_TYPE, VFIO_BASE + 2);
// Group (/dev/vfio/N).
ioctl_io_nr!(VFIO_GROUP_GET_STATUS, VFIO_TYPE, VFIO_BASE + 3);
ioctl_io_nr!(VFIO_GROUP_SET_CONTAINER, VFIO_TYPE, VFIO_BASE + 4);
ioctl_io_nr!(VFIO_GROUP_GET_DEVICE_FD, VFIO_TYPE, VFIO_BASE + 6);
// Device.
ioctl_io_nr!(VFIO_DEVICE_GET_INFO, VFIO_TYPE, VFIO_BASE + 7);
ioctl_io_nr!(VFIO_DEVICE_GET_REGION_INFO, VFIO_TYPE, VFIO_BASE + 8);
ioctl_io_nr!(VFIO_DEVICE_GET_IRQ_INFO, VFIO_TYPE, VFIO_BASE + 9);
ioctl_io_nr!(VFIO_DEVICE_SET_IRQS, VFIO_TYPE, VFIO_BASE + 10);
ioctl_io_nr!(VFIO_DEVICE_RESET, VFIO_TYPE, VFIO_BASE + 11);
// Type1 IOMMU, on the container.
ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);
// Device cdev (/dev/vfio/devices/vfioX).
ioctl_io_nr!(VFIO_DEVICE_BIND_IOMMUFD, VFIO_TYPE, VFIO_BASE + 18);
ioctl_io_nr!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_TYPE, VFIO_BASE + 19);
// linux/iommufd.h (/dev/iommu).
ioctl_io_nr!(IOMMU_IOAS_ALLOC, IOMMU_TYPE, IOMMUFD_CMD_IOAS_ALLOC);
ioctl_io_nr!(IOMMU_IOAS_MAP, IOMMU_TYPE, IOMMUFD_CMD_IOAS_MAP);
ioctl_io_nr!(IOMMU_IOAS_UNMAP, IOMMU_TYPE, IOMMUFD_CMD_IOAS_UNMAP);

/// An ioctl's return value, with errno on failure.
fn check(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// The size of a uapi structure, for its `argsz`/`size` field.
fn argsz<T>() -> u32 {
    // Every uapi structure here is a few dozen bytes.
    size_of::<T>() as u32
}

/// Copy bytes into 8-byte words (zero-padded), the alignment the uapi
/// structures with `__aligned_u64` fields need.
pub(crate) fn to_words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_ne_bytes(w)
        })
        .collect()
}

/// The first `len` bytes of `words`, as the kernel left them.
pub(crate) fn to_bytes(words: &[u64], len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    bytes.truncate(len);
    bytes
}

/// The leading `argsz` of a buffer, checked to lie within it and to cover
/// at least `min` bytes: what the kernel will read and write.
fn buffer_argsz(buf: &[u64], min: usize) -> io::Result<usize> {
    let first = buf.first().ok_or_else(einval)?.to_ne_bytes();
    let argsz = u32::from_ne_bytes([first[0], first[1], first[2], first[3]]) as usize;
    if argsz < min || argsz > buf.len() * 8 {
        return Err(einval());
    }
    Ok(argsz)
}

pub(crate) fn get_api_version(container: &File) -> io::Result<c_int> {
    // SAFETY: VFIO_GET_API_VERSION takes no argument and touches no memory
    // of ours.
    check(unsafe { ioctl(container, VFIO_GET_API_VERSION()) })
}

pub(crate) fn check_extension(container: &File, extension: u32) -> io::Result<c_int> {
    // SAFETY: VFIO_CHECK_EXTENSION takes its argument by value.
    check(unsafe { ioctl_with_val(container, VFIO_CHECK_EXTENSION(), c_ulong::from(extension)) })
}

pub(crate) fn set_iommu(container: &File, iommu_type: u32) -> io::Result<()> {
    // SAFETY: VFIO_SET_IOMMU takes its argument by value.
    check(unsafe { ioctl_with_val(container, VFIO_SET_IOMMU(), c_ulong::from(iommu_type)) })
        .map(drop)
}

pub(crate) fn group_get_status(group: &File) -> io::Result<vfio_group_status> {
    let mut status = vfio_group_status {
        argsz: argsz::<vfio_group_status>(),
        flags: 0,
    };
    // SAFETY: the kernel writes at most `argsz` bytes, the size of `status`.
    check(unsafe { ioctl_with_mut_ref(group, VFIO_GROUP_GET_STATUS(), &mut status) })?;
    Ok(status)
}

pub(crate) fn group_set_container(group: &File, container: &File) -> io::Result<()> {
    let fd: c_int = container.as_raw_fd();
    // SAFETY: the kernel reads one int (the container fd) from the pointer.
    check(unsafe { ioctl_with_ref(group, VFIO_GROUP_SET_CONTAINER(), &fd) }).map(drop)
}

pub(crate) fn group_get_device_fd(group: &File, name: &CStr) -> io::Result<File> {
    // SAFETY: the kernel reads a NUL-terminated string, which a CStr is.
    let fd = check(unsafe { ioctl_with_ptr(group, VFIO_GROUP_GET_DEVICE_FD(), name.as_ptr()) })?;
    // SAFETY: on success the ioctl returns a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub(crate) fn device_get_info(device: &File) -> io::Result<vfio_device_info> {
    let mut info = vfio_device_info {
        argsz: argsz::<vfio_device_info>(),
        ..Default::default()
    };
    // SAFETY: the kernel writes at most `argsz` bytes, the size of `info`
    // (with no room for a capability chain it leaves cap_offset 0).
    check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_GET_INFO(), &mut info) })?;
    Ok(info)
}

/// VFIO_DEVICE_GET_REGION_INFO into `buf`, which starts with a
/// `vfio_region_info` whose `argsz` and `index` the caller has set.
pub(crate) fn device_get_region_info(device: &File, buf: &mut [u64]) -> io::Result<()> {
    buffer_argsz(buf, size_of::<vfio_region_info>())?;
    // SAFETY: the kernel writes the header and, if it fits, the capability
    // chain, never more than `argsz` bytes, which was checked to lie in `buf`;
    // `buf` is 8-byte aligned as `vfio_region_info` requires.
    check(unsafe { ioctl_with_mut_ptr(device, VFIO_DEVICE_GET_REGION_INFO(), buf.as_mut_ptr()) })
        .map(drop)
}

pub(crate) fn device_get_irq_info(device: &File, index: u32) -> io::Result<vfio_irq_info> {
    let mut info = vfio_irq_info {
        argsz: argsz::<vfio_irq_info>(),
        index,
        ..Default::default()
    };
    // SAFETY: the kernel writes at most `argsz` bytes, the size of `info`.
    check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_GET_IRQ_INFO(), &mut info) })?;
    Ok(info)
}

/// VFIO_DEVICE_SET_IRQS with `buf`: a `vfio_irq_set` and its data, `argsz`
/// bytes in all.
pub(crate) fn device_set_irqs(device: &File, buf: &[u64]) -> io::Result<()> {
    buffer_argsz(buf, size_of::<vfio_irq_set>())?;
    // SAFETY: the kernel only reads, at most `argsz` bytes, which was
    // checked to lie in `buf`.
    check(unsafe { ioctl_with_ptr(device, VFIO_DEVICE_SET_IRQS(), buf.as_ptr()) }).map(drop)
}

pub(crate) fn device_reset(device: &File) -> io::Result<()> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    check(unsafe { ioctl(device, VFIO_DEVICE_RESET()) }).map(drop)
}

/// VFIO_IOMMU_MAP_DMA. The kernel pins the pages at `vaddr` (EFAULT if
/// unmapped) and writes nothing of ours; the device may then write them.
///
/// # Safety
///
/// As for [`VfioDevice::dma_map`](crate::VfioDevice::dma_map): the bytes are
/// the device's to read and write until they are unmapped.
pub(crate) unsafe fn iommu_map_dma(
    container: &File,
    iova: u64,
    size: u64,
    vaddr: u64,
    flags: u32,
) -> io::Result<()> {
    let map = vfio_iommu_type1_dma_map {
        argsz: argsz::<vfio_iommu_type1_dma_map>(),
        flags,
        vaddr,
        iova,
        size,
    };
    // SAFETY: the kernel reads `argsz` bytes, the size of `map`.
    check(unsafe { ioctl_with_ref(container, VFIO_IOMMU_MAP_DMA(), &map) }).map(drop)
}

/// VFIO_IOMMU_UNMAP_DMA; returns the size the kernel unmapped.
pub(crate) fn iommu_unmap_dma(container: &File, iova: u64, size: u64) -> io::Result<u64> {
    let mut unmap = vfio_iommu_type1_dma_unmap {
        argsz: argsz::<vfio_iommu_type1_dma_unmap>(),
        flags: 0,
        iova,
        size,
        ..Default::default()
    };
    // SAFETY: with flags 0 there is no data[]: the kernel reads and writes
    // `argsz` bytes, the size of `unmap`.
    check(unsafe { ioctl_with_mut_ref(container, VFIO_IOMMU_UNMAP_DMA(), &mut unmap) })?;
    Ok(unmap.size)
}

/// VFIO_DEVICE_BIND_IOMMUFD; returns the device id in the iommufd.
pub(crate) fn device_bind_iommufd(device: &File, iommufd: &File) -> io::Result<u32> {
    let mut bind = vfio_device_bind_iommufd {
        argsz: argsz::<vfio_device_bind_iommufd>(),
        flags: 0,
        iommufd: iommufd.as_raw_fd(),
        ..Default::default()
    };
    // SAFETY: the kernel reads at most `argsz` bytes of `bind` and writes
    // only `out_devid`; no token flag, so no pointer is followed.
    check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_BIND_IOMMUFD(), &mut bind) })?;
    Ok(bind.out_devid)
}

/// VFIO_DEVICE_ATTACH_IOMMUFD_PT; returns the id of the page table attached.
pub(crate) fn device_attach_iommufd_pt(device: &File, pt_id: u32) -> io::Result<u32> {
    let mut attach = vfio_device_attach_iommufd_pt {
        argsz: argsz::<vfio_device_attach_iommufd_pt>(),
        flags: 0,
        pt_id,
        pasid: 0,
    };
    // SAFETY: the kernel reads at most `argsz` bytes of `attach` and writes
    // only `pt_id`.
    check(unsafe { ioctl_with_mut_ref(device, VFIO_DEVICE_ATTACH_IOMMUFD_PT(), &mut attach) })?;
    Ok(attach.pt_id)
}

/// IOMMU_IOAS_ALLOC; returns the new IOAS id.
pub(crate) fn ioas_alloc(iommufd: &File) -> io::Result<u32> {
    let mut alloc = iommu_ioas_alloc {
        size: argsz::<iommu_ioas_alloc>(),
        flags: 0,
        out_ioas_id: 0,
    };
    // SAFETY: the kernel reads and writes `size` bytes, the size of `alloc`.
    check(unsafe { ioctl_with_mut_ref(iommufd, IOMMU_IOAS_ALLOC(), &mut alloc) })?;
    Ok(alloc.out_ioas_id)
}

/// IOMMU_IOAS_MAP, as [`iommu_map_dma`] for an IOAS.
///
/// # Safety
///
/// As for [`iommu_map_dma`].
pub(crate) unsafe fn ioas_map(
    iommufd: &File,
    ioas_id: u32,
    iova: u64,
    length: u64,
    user_va: u64,
    flags: u32,
) -> io::Result<()> {
    let mut map = iommu_ioas_map {
        size: argsz::<iommu_ioas_map>(),
        flags,
        ioas_id,
        __reserved: 0,
        user_va,
        length,
        iova,
    };
    // SAFETY: the kernel reads and writes `size` bytes, the size of `map`
    // (it writes back `iova`).
    check(unsafe { ioctl_with_mut_ref(iommufd, IOMMU_IOAS_MAP(), &mut map) }).map(drop)
}

/// IOMMU_IOAS_UNMAP; returns the length the kernel unmapped.
pub(crate) fn ioas_unmap(iommufd: &File, ioas_id: u32, iova: u64, length: u64) -> io::Result<u64> {
    let mut unmap = iommu_ioas_unmap {
        size: argsz::<iommu_ioas_unmap>(),
        ioas_id,
        iova,
        length,
    };
    // SAFETY: the kernel reads and writes `size` bytes, the size of `unmap`.
    check(unsafe { ioctl_with_mut_ref(iommufd, IOMMU_IOAS_UNMAP(), &mut unmap) })?;
    Ok(unmap.length)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_IO(type, nr)`: no direction, no size.
    fn io(ty: u8, nr: u32) -> c_ulong {
        (c_ulong::from(ty) << 8) | c_ulong::from(nr)
    }

    #[test]
    fn numbers_match_the_uapi_headers() {
        let vfio = [
            (VFIO_GET_API_VERSION(), 100),
            (VFIO_CHECK_EXTENSION(), 101),
            (VFIO_SET_IOMMU(), 102),
            (VFIO_GROUP_GET_STATUS(), 103),
            (VFIO_GROUP_SET_CONTAINER(), 104),
            (VFIO_GROUP_GET_DEVICE_FD(), 106),
            (VFIO_DEVICE_GET_INFO(), 107),
            (VFIO_DEVICE_GET_REGION_INFO(), 108),
            (VFIO_DEVICE_GET_IRQ_INFO(), 109),
            (VFIO_DEVICE_SET_IRQS(), 110),
            (VFIO_DEVICE_RESET(), 111),
            (VFIO_IOMMU_MAP_DMA(), 113),
            (VFIO_IOMMU_UNMAP_DMA(), 114),
            (VFIO_DEVICE_BIND_IOMMUFD(), 118),
            (VFIO_DEVICE_ATTACH_IOMMUFD_PT(), 119),
            (IOMMU_IOAS_ALLOC(), 0x81),
            (IOMMU_IOAS_MAP(), 0x85),
            (IOMMU_IOAS_UNMAP(), 0x86),
        ];
        for (got, nr) in vfio {
            assert_eq!(got, io(b';', nr), "nr {nr:#x}");
        }
        assert_eq!(VFIO_GET_API_VERSION(), 0x3b64);
    }

    #[test]
    fn words_round_trip_and_pad() {
        let bytes: Vec<u8> = (1..=11).collect();
        let words = to_words(&bytes);
        assert_eq!(words.len(), 2);
        assert_eq!(to_bytes(&words, 11), bytes);
        assert_eq!(to_bytes(&words, 16)[11..], [0u8; 5]);
    }

    #[test]
    fn buffer_argsz_must_fit() {
        let mut bytes = vec![0u8; 24];
        bytes[..4].copy_from_slice(&24u32.to_ne_bytes());
        assert_eq!(buffer_argsz(&to_words(&bytes), 20).unwrap(), 24);
        bytes[..4].copy_from_slice(&25u32.to_ne_bytes());
        assert!(buffer_argsz(&to_words(&bytes), 20).is_err());
        bytes[..4].copy_from_slice(&16u32.to_ne_bytes());
        assert!(buffer_argsz(&to_words(&bytes), 20).is_err());
        assert!(buffer_argsz(&[], 0).is_err());
    }

    #[test]
    fn ioctls_on_a_plain_file_fail_cleanly() {
        let file = File::open("/proc/self/status").unwrap();
        let err = group_get_status(&file).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        assert!(device_get_irq_info(&file, 0).is_err());
    }
}

//! A shared mapping of part of the device fd, unmapped when dropped.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull};

/// Owns one mmap of the device fd. Holds the address as an integer so it is
/// Send + Sync without ceremony: nothing here dereferences it.
pub(crate) struct DeviceMmap {
    addr: usize,
    len: usize,
}

impl DeviceMmap {
    /// mmap(MAP_SHARED, PROT_READ | PROT_WRITE) of `size` bytes at device-fd
    /// `offset`. The kernel checks the offset lies in an mmap-able area.
    pub(crate) fn new(fd: &File, offset: u64, size: u64) -> io::Result<DeviceMmap> {
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let len = usize::try_from(size)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(einval)?;
        let off = libc::off_t::try_from(offset).map_err(|_| einval())?;
        // SAFETY: a new mapping at an address of the kernel's choosing
        // (no MAP_FIXED), so it replaces nothing of ours; it stays owned by
        // this DeviceMmap until drop unmaps it.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(DeviceMmap {
            addr: ptr as usize,
            len,
        })
    }

    pub(crate) fn ptr(&self) -> Option<NonNull<u8>> {
        NonNull::new(self.addr as *mut u8)
    }
}

impl Drop for DeviceMmap {
    fn drop(&mut self) {
        // SAFETY: exactly the range this DeviceMmap mapped and still owns;
        // every Mapping handed out holds an Arc of it, so none outlives this.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_file_and_rejects_bad_arguments() {
        let path = std::env::temp_dir().join(format!("rvg-vfio-mmap-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(8192).unwrap();
        let m = DeviceMmap::new(&file, 4096, 4096).unwrap();
        assert!(m.ptr().is_some());
        drop(m);
        assert!(DeviceMmap::new(&file, 0, 0).is_err());
        assert!(DeviceMmap::new(&file, u64::MAX, 4096).is_err());
        // Not page aligned.
        assert!(DeviceMmap::new(&file, 1, 4096).is_err());
    }
}

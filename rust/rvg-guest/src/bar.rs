//! A PCI BAR mapped into our address space through its sysfs `resourceN`
//! file, with volatile accesses of the exact width the device expects.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;

use crate::error::{bail, Context, Result};

pub struct MappedBar {
    base: NonNull<u8>,
    len: usize,
}

impl MappedBar {
    /// Map all `len` bytes of `path` shared, read-write. Fails on a kernel
    /// with strict devmem while a driver holds the BAR unless it was booted
    /// with `iomem=relaxed`.
    pub fn map(path: &Path, len: u64) -> Result<MappedBar> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_SYNC)
            .open(path)
            .with_context(|| format!("opening {} (root needed)", path.display()))?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if file_len != len {
            bail!("{} is {file_len} bytes, the BAR is {len}", path.display());
        }
        let len = usize::try_from(len).context("BAR size")?;
        // SAFETY: a fresh shared mapping of a file we opened; the kernel picks
        // the address, so nothing of ours is overlapped.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            let hint = if e.raw_os_error() == Some(libc::EINVAL) {
                " (a bound driver and strict devmem: boot with iomem=relaxed)"
            } else {
                ""
            };
            bail!("mmap of {}: {e}{hint}", path.display());
        }
        Ok(MappedBar {
            base: NonNull::new(addr.cast()).context("mmap returned null")?,
            len,
        })
    }

    /// Pointer to a naturally aligned `T` at `offset`, valid while self
    /// lives. Out of range or misaligned offsets are bugs in this program,
    /// so they panic.
    pub fn at<T>(&self, offset: u64) -> *mut T {
        let size = std::mem::size_of::<T>();
        let off = usize::try_from(offset).expect("offset fits usize");
        assert!(
            off.is_multiple_of(size) && off.checked_add(size).is_some_and(|end| end <= self.len),
            "BAR access of {size} bytes at {offset:#x} outside {:#x} bytes or misaligned",
            self.len
        );
        // SAFETY: `off + size <= len`, so the result stays inside the mapping.
        unsafe { self.base.as_ptr().add(off).cast() }
    }

    pub fn read16(&self, offset: u64) -> u16 {
        // SAFETY: `at` checked bounds and alignment; the mapping lives as long as self.
        unsafe { self.at::<u16>(offset).read_volatile() }
    }

    pub fn read32(&self, offset: u64) -> u32 {
        // SAFETY: as in read16.
        unsafe { self.at::<u32>(offset).read_volatile() }
    }

    pub fn read64(&self, offset: u64) -> u64 {
        // SAFETY: as in read16; one 8-byte load, as the device wants for
        // 64-bit registers and GTT entries.
        unsafe { self.at::<u64>(offset).read_volatile() }
    }

    pub fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as in read16.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }

    pub fn write64(&self, offset: u64, value: u64) {
        // SAFETY: as in read64: one 8-byte store, so a GTT entry takes effect at once.
        unsafe { self.at::<u64>(offset).write_volatile(value) }
    }
}

impl Drop for MappedBar {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped; no references into it
        // outlive self (all accesses copy values out).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

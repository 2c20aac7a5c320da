//! Memory the device can reach by DMA: anonymous pages, locked in RAM, with
//! the guest-physical address of each page from `/proc/self/pagemap`. Each
//! 4 KiB page gets a GTT entry of its own, so they need not be contiguous.
//!
//! mlock keeps the pages resident; the kernel may still migrate locked pages
//! (compaction), so `check_unmoved` re-reads the addresses at the end.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;

use crate::error::{bail, Context, Result};

pub const PAGE_SIZE: usize = 4096;

/// What a pagemap entry says about a virtual page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFrame {
    /// Resident at this page frame number.
    Present(u64),
    /// Resident, but the PFN is hidden from us (no CAP_SYS_ADMIN).
    Hidden,
    Swapped,
    NotPresent,
}

const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;

/// Decode one 64-bit entry of `/proc/PID/pagemap`
/// (Documentation/admin-guide/mm/pagemap.rst): bit 63 present, bit 62
/// swapped, bits 0-54 the PFN (zero unless the reader has CAP_SYS_ADMIN).
pub fn decode_pagemap_entry(entry: u64) -> PageFrame {
    if entry & PAGEMAP_PRESENT != 0 {
        match entry & PAGEMAP_PFN_MASK {
            0 => PageFrame::Hidden,
            pfn => PageFrame::Present(pfn),
        }
    } else if entry & PAGEMAP_SWAPPED != 0 {
        PageFrame::Swapped
    } else {
        PageFrame::NotPresent
    }
}

/// Number of physically contiguous runs in a list of page addresses.
pub fn contiguous_runs(phys: &[u64]) -> usize {
    if phys.is_empty() {
        return 0;
    }
    1 + phys
        .windows(2)
        .filter(|w| w[1] != w[0] + PAGE_SIZE as u64)
        .count()
}

pub struct DmaBuffer {
    base: NonNull<u8>,
    pages: usize,
    phys: Vec<u64>,
}

impl DmaBuffer {
    /// `pages` zeroed pages, locked and resident, with their addresses.
    pub fn alloc(pages: usize) -> Result<DmaBuffer> {
        let len = pages * PAGE_SIZE;
        // SAFETY: a fresh private anonymous mapping; the kernel picks the address.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_LOCKED | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            bail!(
                "mmap of {pages} locked pages: {}",
                std::io::Error::last_os_error()
            );
        }
        let mut buf = DmaBuffer {
            base: NonNull::new(addr.cast()).context("mmap returned null")?,
            pages,
            phys: Vec::new(),
        };
        // MAP_LOCKED does not report failure to lock; mlock does.
        // SAFETY: locking the range we just mapped.
        if unsafe { libc::mlock(addr, len) } != 0 {
            bail!(
                "mlock of {pages} pages: {}",
                std::io::Error::last_os_error()
            );
        }
        // Write every byte so each page is a private page of its own (not
        // the shared zero page) before we ask where it is.
        for off in (0..len).step_by(4) {
            buf.write_u32(off, 0);
        }
        buf.phys = buf.lookup_phys()?;
        Ok(buf)
    }

    pub fn pages(&self) -> usize {
        self.pages
    }

    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    /// Guest-physical address of each page, in order.
    pub fn phys(&self) -> &[u64] {
        &self.phys
    }

    /// Ask `/proc/self/pagemap` where each page is now.
    pub fn lookup_phys(&self) -> Result<Vec<u64>> {
        let pagemap = File::open("/proc/self/pagemap").context("opening /proc/self/pagemap")?;
        let first_vpn = self.base.as_ptr() as u64 / PAGE_SIZE as u64;
        let mut raw = vec![0u8; self.pages * 8];
        pagemap
            .read_exact_at(&mut raw, first_vpn * 8)
            .context("reading /proc/self/pagemap")?;
        raw.chunks_exact(8)
            .enumerate()
            .map(|(i, e)| {
                match decode_pagemap_entry(u64::from_le_bytes(e.try_into().expect("8 bytes"))) {
                    PageFrame::Present(pfn) => Ok(pfn * PAGE_SIZE as u64),
                    PageFrame::Hidden => {
                        bail!("pagemap hides physical addresses: run as root (CAP_SYS_ADMIN)")
                    }
                    other => bail!("DMA page {i} is not resident ({other:?}) although locked"),
                }
            })
            .collect()
    }

    /// The pages are still where they were when the GTT was programmed.
    pub fn check_unmoved(&self) -> Result<()> {
        let now = self.lookup_phys()?;
        if let Some(i) = (0..self.pages).find(|&i| now[i] != self.phys[i]) {
            bail!(
                "DMA page {i} moved from {:#x} to {:#x} while mapped (page migration)",
                self.phys[i],
                now[i]
            );
        }
        Ok(())
    }

    fn at(&self, offset: usize) -> *mut u32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len(),
            "DMA access at {offset:#x} outside {:#x} bytes or misaligned",
            self.len()
        );
        // SAFETY: in bounds, checked above.
        unsafe { self.base.as_ptr().add(offset).cast() }
    }

    /// Volatile, like every access here: the device reads and writes this
    /// memory behind the compiler's back.
    pub fn write_u32(&mut self, offset: usize, value: u32) {
        // SAFETY: `at` checked bounds and alignment; the mapping lives as long as self.
        unsafe { self.at(offset).write_volatile(value) }
    }

    pub fn read_u32(&self, offset: usize) -> u32 {
        // SAFETY: as in write_u32.
        unsafe { self.at(offset).read_volatile() }
    }

    pub fn write_u32s(&mut self, offset: usize, values: &[u32]) {
        for (i, &v) in values.iter().enumerate() {
            self.write_u32(offset + 4 * i, v);
        }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `alloc` mapped; no references into
        // it outlive self. munmap also unlocks.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_entries() {
        assert_eq!(
            decode_pagemap_entry(PAGEMAP_PRESENT | 0x1234),
            PageFrame::Present(0x1234)
        );
        // Bits 55-61 are flags (soft-dirty, exclusive, ...), not PFN bits.
        assert_eq!(
            decode_pagemap_entry(PAGEMAP_PRESENT | (1 << 55) | (1 << 61) | 0x7_ffff_ffff_ffff),
            PageFrame::Present(0x7_ffff_ffff_ffff)
        );
        assert_eq!(
            decode_pagemap_entry(PAGEMAP_PRESENT | (1 << 55)),
            PageFrame::Hidden
        );
        assert_eq!(
            decode_pagemap_entry(PAGEMAP_SWAPPED | 0x55),
            PageFrame::Swapped
        );
        assert_eq!(decode_pagemap_entry(0), PageFrame::NotPresent);
    }

    #[test]
    fn runs() {
        assert_eq!(contiguous_runs(&[]), 0);
        assert_eq!(contiguous_runs(&[0x1000, 0x2000, 0x3000]), 1);
        assert_eq!(contiguous_runs(&[0x1000, 0x3000, 0x4000, 0x2000]), 3);
    }

    #[test]
    fn buffer_reads_back_and_knows_its_pages_when_allowed() {
        // Without root the PFNs are hidden and alloc says so; either way
        // the error is explicit.
        match DmaBuffer::alloc(3) {
            Ok(mut b) => {
                assert_eq!(b.phys().len(), 3);
                b.write_u32s(4096 - 4, &[1, 2]);
                assert_eq!(
                    (b.read_u32(4092), b.read_u32(4096), b.read_u32(8)),
                    (1, 2, 0)
                );
                b.check_unmoved().unwrap();
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("root") || e.contains("lock"), "{e}");
            }
        }
    }
}

//! The soft backend's IOMMU: DMA mappings (IOVA -> host address) made through
//! `dma_map`, with the type1 rules (page-aligned, no overlap, unmap removes
//! whole mappings only). Every GPU access to system memory resolves here, so
//! the GPU can reach nothing but what was mapped for it.

use crate::contract::errno;
use std::collections::BTreeMap;
use std::io;

use parking_lot::RwLock;
use rvg_model::dma::{DmaError, DmaSpace};

use crate::contract::DmaFlags;

const PAGE: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DmaMapping {
    size: u64,
    vaddr: u64,
    flags: DmaFlags,
}

#[derive(Default)]
pub struct DmaTable {
    // Readers (GPU accesses) hold the lock for the whole copy, so an unmap
    // waits for accesses in flight before the memory may go away.
    maps: RwLock<BTreeMap<u64, DmaMapping>>,
}

impl DmaTable {
    /// Let the GPU reach `size` bytes at host address `vaddr` at `iova`.
    ///
    /// # Safety
    ///
    /// As for [`VfioDevice::dma_map`](crate::VfioDevice::dma_map): the bytes
    /// stay mapped, readable and (if `flags.write`) writable until `unmap`
    /// or `clear` removed them or the table is dropped; the GPU copies to
    /// and from them at any time until then.
    pub unsafe fn map(&self, iova: u64, size: u64, vaddr: u64, flags: DmaFlags) -> io::Result<()> {
        if size == 0
            || !iova.is_multiple_of(PAGE)
            || !size.is_multiple_of(PAGE)
            || !vaddr.is_multiple_of(PAGE)
        {
            return Err(errno(libc::EINVAL));
        }
        let end = iova.checked_add(size).ok_or_else(|| errno(libc::EINVAL))?;
        vaddr.checked_add(size).ok_or_else(|| errno(libc::EINVAL))?;
        let mut maps = self.maps.write();
        let overlaps = maps
            .range(..end)
            .next_back()
            .is_some_and(|(&start, m)| start + m.size > iova);
        if overlaps {
            return Err(errno(libc::EEXIST));
        }
        maps.insert(iova, DmaMapping { size, vaddr, flags });
        Ok(())
    }

    /// Remove every mapping inside `[iova, iova + size)`. A mapping that
    /// straddles either end cannot be split: EINVAL, nothing removed.
    /// Returns the bytes unmapped.
    pub fn unmap(&self, iova: u64, size: u64) -> io::Result<u64> {
        let end = iova.checked_add(size).ok_or_else(|| errno(libc::EINVAL))?;
        let mut maps = self.maps.write();
        let straddles = |at: u64| {
            maps.range(..at)
                .next_back()
                .is_some_and(|(&start, m)| start < at && start + m.size > at)
        };
        if straddles(iova) || straddles(end) {
            return Err(errno(libc::EINVAL));
        }
        let inside: Vec<u64> = maps.range(iova..end).map(|(&k, _)| k).collect();
        Ok(inside
            .iter()
            .map(|k| maps.remove(k).expect("listed").size)
            .sum())
    }

    pub fn clear(&self) {
        self.maps.write().clear();
    }

    pub fn len(&self) -> usize {
        self.maps.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run `f` on the host address of `[addr, addr + len)` if one mapping
    /// with the needed right covers it all, holding the table for the call.
    fn with_host<R>(
        &self,
        addr: u64,
        len: u64,
        write: bool,
        f: impl FnOnce(*mut u8) -> R,
    ) -> Result<R, DmaError> {
        let err = DmaError { addr, len };
        let end = addr.checked_add(len).ok_or(err)?;
        let maps = self.maps.read();
        let (&start, m) = maps.range(..=addr).next_back().ok_or(err)?;
        let allowed = if write { m.flags.write } else { m.flags.read };
        if end > start + m.size || !allowed {
            return Err(err);
        }
        Ok(f((m.vaddr + (addr - start)) as *mut u8))
    }
}

impl DmaSpace for DmaTable {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.with_host(addr, buf.len() as u64, false, |src| {
            // SAFETY: `src..src+len` lies inside one DMA mapping (checked
            // under the read lock, which unmap must wait for), whose bytes
            // `map`'s caller promised stay mapped until the unmap; `buf` is
            // Rust-owned, and that promise keeps Rust references off them.
            unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) }
        })
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.with_host(addr, data.len() as u64, true, |dst| {
            // SAFETY: as in `read`, with the mapping's write right checked.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(align(4096))]
    struct Pages([u8; 3 * 4096]);

    #[test]
    fn maps_resolve_and_nothing_else_does() {
        let mut mem = Box::new(Pages([0; 3 * 4096]));
        let base = mem.0.as_mut_ptr() as u64;
        let t = DmaTable::default();
        // SAFETY: `mem` (two pages of it) outlives `t`, declared after it.
        unsafe { t.map(0x10_0000, 2 * PAGE, base, DmaFlags::READ_WRITE) }.unwrap();
        t.write(0x10_0ffc, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut b = [0u8; 8];
        t.read(0x10_0ffc, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(mem.0[0xffc..0x1004], [1, 2, 3, 4, 5, 6, 7, 8]);
        // Past the end of the mapping, before it, and wrapping: refused.
        assert!(t.read(0x10_1ffc, &mut b).is_err());
        assert!(t.read(0x0f_fffc, &mut b).is_err());
        assert!(t.read(u64::MAX - 3, &mut b).is_err());
    }

    #[test]
    fn type1_rules() {
        let t = DmaTable::default();
        let va = 0x7000_0000_0000;
        let map = |iova, size, va, flags| {
            // SAFETY: nothing reads or writes through this table: only its
            // bookkeeping is tested, and `va` is never dereferenced.
            unsafe { t.map(iova, size, va, flags) }
        };
        assert_eq!(
            map(0x1000, 0, va, DmaFlags::READ_WRITE)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            map(0x1001, PAGE, va, DmaFlags::READ_WRITE)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL)
        );
        map(0x4000, 4 * PAGE, va, DmaFlags::READ_WRITE).unwrap();
        assert_eq!(
            map(0x7000, PAGE, va, DmaFlags::READ_WRITE)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EEXIST)
        );
        assert_eq!(
            map(0x3000, 2 * PAGE, va, DmaFlags::READ_WRITE)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EEXIST)
        );
        map(0x8000, PAGE, va, DmaFlags::READ_WRITE).unwrap();
        // Unmapping half of a mapping would split it.
        assert_eq!(
            t.unmap(0x4000, 2 * PAGE).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(t.unmap(0x0, 0x10000).unwrap(), 5 * PAGE);
        assert!(t.is_empty());
    }

    #[test]
    fn read_only_mappings_refuse_writes() {
        let mut mem = Box::new(Pages([0; 3 * 4096]));
        let t = DmaTable::default();
        // SAFETY: `mem` outlives `t`, declared after it.
        unsafe {
            t.map(
                0,
                PAGE,
                mem.0.as_mut_ptr() as u64,
                DmaFlags {
                    read: true,
                    write: false,
                },
            )
        }
        .unwrap();
        assert!(t.write(0, &[1]).is_err());
        assert!(t.read(0, &mut [0]).is_ok());
    }
}

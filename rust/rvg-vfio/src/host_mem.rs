//! Host memory reached through a raw address: a region's mmap
//! ([`Mapping`]), guest RAM as QEMU reports it ([`HostRange`]), and guest
//! RAM mapped for a device's DMA ([`DmaMapping`]).
//!
//! The memory is shared with others (vCPUs write guest RAM and VRAM, the
//! device reads and writes what is mapped for it), so nothing here makes a
//! Rust reference over it: every access is a bounds-checked raw copy, a
//! snapshot of plain bytes. The promise that the memory is there at all is
//! made once, where the address arrives: in the `unsafe` constructors.

use std::fmt;
use std::io;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::contract::{DmaFlags, VfioDevice};

/// An access that does not lie inside the memory it was asked of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("[{offset:#x}, +{len:#x}) is outside the {size:#x} bytes of host memory")]
pub struct OutOfRange {
    pub offset: u64,
    pub len: u64,
    pub size: u64,
}

/// `offset` as an index if `len` bytes from it fit in `size`.
fn check(offset: u64, len: usize, size: u64) -> Result<usize, OutOfRange> {
    let err = OutOfRange {
        offset,
        len: len as u64,
        size,
    };
    match offset.checked_add(len as u64) {
        // `size` fits in usize (the constructors check), so `offset` does.
        Some(end) if end <= size => Ok(offset as usize),
        _ => Err(err),
    }
}

/// Whether `len` bytes from `ptr` form a range a pointer offset may cover.
fn fits(ptr: NonNull<u8>, len: u64) -> bool {
    usize::try_from(len)
        .is_ok_and(|l| l <= isize::MAX as usize && (ptr.as_ptr() as usize).checked_add(l).is_some())
}

/// Copy `buf.len()` bytes at `offset` out of the `size` bytes at `base`.
///
/// # Safety
///
/// The `size` bytes at `base` are mapped and readable for the call.
unsafe fn copy_out(
    base: NonNull<u8>,
    size: u64,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), OutOfRange> {
    let at = check(offset, buf.len(), size)?;
    // SAFETY: bytes `[at, at + buf.len())` of the `size` readable bytes at
    // `base` (bounds checked above; the caller promises they are mapped)
    // into `buf`, which is ours. `copy`, not `copy_nonoverlapping`: nothing
    // promises `buf` is not itself inside that memory.
    unsafe { ptr::copy(base.as_ptr().add(at), buf.as_mut_ptr(), buf.len()) };
    Ok(())
}

/// Copy `data` to `offset` in the `size` bytes at `base`.
///
/// # Safety
///
/// The `size` bytes at `base` are mapped and writable for the call.
unsafe fn copy_in(
    base: NonNull<u8>,
    size: u64,
    offset: u64,
    data: &[u8],
) -> Result<(), OutOfRange> {
    let at = check(offset, data.len(), size)?;
    // SAFETY: `data` into bytes `[at, at + data.len())` of the `size`
    // writable bytes at `base` (bounds checked above; the caller promises
    // they are mapped); no Rust reference covers them.
    unsafe { ptr::copy(data.as_ptr(), base.as_ptr().add(at), data.len()) };
    Ok(())
}

/// Host memory mapped from a region, valid while the mapping lives.
pub struct Mapping {
    ptr: NonNull<u8>,
    len: u64,
    /// Keeps whatever owns the memory alive as long as the mapping.
    _owner: Arc<dyn Send + Sync>,
}

// SAFETY: a Mapping is an address range plus its owner (itself Send + Sync);
// the memory is shared with the guest and accessed only through raw copies,
// which are as sound from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: `&Mapping` gives raw copies only.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Memory owned by `owner`. (A kernel backend's owner is its mmap,
    /// whose drop unmaps.)
    ///
    /// # Safety
    ///
    /// The `len` bytes at `ptr` are mapped, readable and writable, for as
    /// long as `owner` lives, and no Rust reference covers them meanwhile
    /// (others may read and write them through raw accesses).
    ///
    /// # Panics
    ///
    /// If the range wraps the address space or exceeds `isize::MAX` bytes.
    pub unsafe fn new(ptr: NonNull<u8>, len: u64, owner: Arc<dyn Send + Sync>) -> Mapping {
        assert!(fits(ptr, len), "mapping of {len:#x} bytes at {ptr:p} wraps");
        Mapping {
            ptr,
            len,
            _owner: owner,
        }
    }

    /// The address, for whoever must hand it on (the guest's BAR0 RAM block).
    /// Reads and writes go through [`Mapping::read`] and [`Mapping::write`].
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy `buf.len()` bytes at `offset` in the mapping into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        // SAFETY: `new`'s promise: the bytes are mapped while `_owner` lives.
        unsafe { copy_out(self.ptr, self.len, offset, buf) }
    }

    /// Copy `data` to `offset` in the mapping.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), OutOfRange> {
        // SAFETY: `new`'s promise: the bytes are mapped while `_owner` lives.
        unsafe { copy_in(self.ptr, self.len, offset, data) }
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mapping({:p}, {:#x})", self.ptr, self.len)
    }
}

/// Anonymous memory a [`HostRange`] owns, unmapped on drop.
struct Anon {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for Anon {
    fn drop(&mut self) {
        // SAFETY: exactly the range `HostRange::anonymous` mapped; the
        // HostRange that owns this is being dropped, and any DMA mapping of
        // it held an Arc of that HostRange, so it is unmapped already.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A range of host memory that others share: guest RAM (vCPUs write it
/// while the mediator reads it) which may be mapped for a device's DMA.
/// It is not `Clone`: its memory is promised for the life of this value,
/// so there is exactly one value to outlive; share it in an `Arc`.
pub struct HostRange {
    ptr: NonNull<u8>,
    len: u64,
    _owner: Owner,
}

/// What keeps a HostRange's memory mapped.
enum Owner {
    /// The caller of `HostRange::new`, by its promise.
    Promised,
    Anon(#[allow(dead_code)] Anon),
    Alias(#[allow(dead_code)] Arc<HostRange>),
}

// SAFETY: a HostRange is an address range (and maybe the anonymous mapping
// it owns); `&HostRange` gives raw copies only, as sound from any thread.
unsafe impl Send for HostRange {}
// SAFETY: as for Send.
unsafe impl Sync for HostRange {}

impl HostRange {
    /// The `len` bytes at `ptr`, e.g. guest RAM that QEMU's memory listener
    /// reported.
    ///
    /// # Safety
    ///
    /// The `len` bytes at `ptr` are mapped, readable and writable, and stay
    /// so until this value is dropped (for guest RAM: the listener's
    /// `region_del` for it, whose handler must drop it). Others may read and
    /// write them at any time through raw accesses (vCPUs, a device), but no
    /// Rust reference covers them meanwhile.
    ///
    /// # Panics
    ///
    /// If the range wraps the address space or exceeds `isize::MAX` bytes.
    pub unsafe fn new(ptr: NonNull<u8>, len: u64) -> HostRange {
        assert!(
            fits(ptr, len),
            "host range of {len:#x} bytes at {ptr:p} wraps"
        );
        HostRange {
            ptr,
            len,
            _owner: Owner::Promised,
        }
    }

    /// `len` bytes of fresh, zeroed, page-aligned anonymous memory that the
    /// value owns (for tests and benchmarks that need guest RAM).
    pub fn anonymous(len: u64) -> io::Result<HostRange> {
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let size = usize::try_from(len)
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(einval)?;
        // SAFETY: a new private anonymous mapping where the kernel chooses
        // (no MAP_FIXED), so it replaces nothing; `Anon` owns it from here.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or_else(einval)?;
        Ok(HostRange {
            ptr,
            len,
            _owner: Owner::Anon(Anon { ptr, len: size }),
        })
    }

    /// Another HostRange over the same bytes, which keeps this one alive
    /// (as a second report of the same guest RAM would be).
    pub fn alias(self: &Arc<Self>) -> HostRange {
        HostRange {
            ptr: self.ptr,
            len: self.len,
            _owner: Owner::Alias(self.clone()),
        }
    }

    /// The host virtual address of the first byte.
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copy `buf.len()` bytes at `offset` in the range into `buf`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        // SAFETY: `new`'s promise (or our own mapping): mapped while we live.
        unsafe { copy_out(self.ptr, self.len, offset, buf) }
    }

    /// Copy `data` to `offset` in the range.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), OutOfRange> {
        // SAFETY: `new`'s promise (or our own mapping): mapped while we live.
        unsafe { copy_in(self.ptr, self.len, offset, data) }
    }

    /// Map the whole range for `dev`'s DMA at `iova`. The mapping holds
    /// this range (and the device) until it is unmapped, so the memory
    /// outlives the device's access to it.
    pub fn dma_map(
        self: &Arc<Self>,
        dev: &Arc<dyn VfioDevice>,
        iova: u64,
        flags: DmaFlags,
    ) -> io::Result<DmaMapping> {
        // SAFETY: the bytes are mapped, readable and writable while this
        // HostRange lives (`new`'s promise), and the DmaMapping returned
        // keeps it alive until `dma_unmap` of exactly this IOVA range.
        unsafe { dev.dma_map(iova, self.len, self.addr(), flags)? };
        Ok(DmaMapping {
            dev: dev.clone(),
            iova,
            host: self.clone(),
            mapped: true,
        })
    }
}

impl fmt::Debug for HostRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostRange({:#x}, {:#x})", self.addr(), self.len)
    }
}

/// A [`HostRange`] mapped for a device's DMA. Unmapped by [`DmaMapping::unmap`]
/// (which reports a failure) or when dropped; until then it keeps the range,
/// and so its memory, alive.
pub struct DmaMapping {
    dev: Arc<dyn VfioDevice>,
    iova: u64,
    host: Arc<HostRange>,
    mapped: bool,
}

impl DmaMapping {
    pub fn iova(&self) -> u64 {
        self.iova
    }

    pub fn len(&self) -> u64 {
        self.host.len
    }

    pub fn is_empty(&self) -> bool {
        self.host.is_empty()
    }

    /// The range whose promise the mapping rests on.
    pub fn host(&self) -> &Arc<HostRange> {
        &self.host
    }

    /// Rest the mapping on `other` instead, which names the same bytes
    /// (another listener's report of the same guest RAM), so the current
    /// one may go. `other` comes back if it names different bytes.
    pub fn rebind(&mut self, other: Arc<HostRange>) -> Result<(), Arc<HostRange>> {
        if (other.addr(), other.len) != (self.host.addr(), self.host.len) {
            return Err(other);
        }
        self.host = other;
        Ok(())
    }

    /// `dma_unmap` the range. If that fails the device may keep reaching the
    /// memory, which nothing here can prevent; the error says so to whoever
    /// reports it.
    pub fn unmap(mut self) -> io::Result<()> {
        self.mapped = false;
        self.dev.dma_unmap(self.iova, self.host.len)
    }
}

impl Drop for DmaMapping {
    fn drop(&mut self) {
        if self.mapped {
            // No one to report to; `unmap` is the path that reports.
            let _ = self.dev.dma_unmap(self.iova, self.host.len);
        }
    }
}

impl fmt::Debug for DmaMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DmaMapping({:#x} -> {:?})", self.iova, self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SoftGpu;
    use rvg_model::GpuConfig;

    #[test]
    fn host_range_copies_are_bounds_checked() {
        let r = HostRange::anonymous(8192).unwrap();
        assert_eq!(r.len(), 8192);
        assert_eq!(r.addr() % 4096, 0);
        r.write(8190, &[1, 2]).unwrap();
        let mut b = [0u8; 4];
        r.read(8188, &mut b).unwrap();
        assert_eq!(b, [0, 0, 1, 2]);
        // One byte past the end, far past it, and wrapping: refused, whole.
        assert_eq!(
            r.write(8191, &[9, 9]),
            Err(OutOfRange {
                offset: 8191,
                len: 2,
                size: 8192
            })
        );
        assert!(r.read(8192, &mut [0]).is_err());
        assert!(r.read(u64::MAX, &mut b).is_err());
        assert!(r.write(u64::MAX - 1, &[0; 4]).is_err());
        r.read(8188, &mut b).unwrap();
        assert_eq!(b, [0, 0, 1, 2]);
        // An empty access at the end is inside.
        assert!(r.read(8192, &mut []).is_ok());
        assert_eq!(
            r.write(1 << 20, &[0]).unwrap_err().to_string(),
            "[0x100000, +0x1) is outside the 0x2000 bytes of host memory"
        );
    }

    #[test]
    fn anonymous_needs_a_length() {
        assert!(HostRange::anonymous(0).is_err());
    }

    #[test]
    fn an_alias_keeps_its_original_alive() {
        let a = Arc::new(HostRange::anonymous(4096).unwrap());
        let b = a.alias();
        assert_eq!((b.addr(), b.len()), (a.addr(), a.len()));
        drop(a);
        b.write(0, &[3]).unwrap();
        let mut x = [0u8];
        b.read(0, &mut x).unwrap();
        assert_eq!(x, [3]);
    }

    #[test]
    fn borrowed_host_range_sees_the_owner_s_bytes() {
        let owner = HostRange::anonymous(4096).unwrap();
        let ptr = NonNull::new(owner.addr() as *mut u8).unwrap();
        // SAFETY: `owner` keeps the page mapped and outlives `view`.
        let view = unsafe { HostRange::new(ptr, 4096) };
        owner.write(100, &[7]).unwrap();
        let mut b = [0u8];
        view.read(100, &mut b).unwrap();
        assert_eq!(b, [7]);
        drop(view);
    }

    #[test]
    #[should_panic(expected = "wraps")]
    fn wrapping_ranges_are_refused() {
        let ptr = NonNull::new(usize::MAX as *mut u8).unwrap();
        // SAFETY: never accessed: the constructor refuses the range.
        let _ = unsafe { HostRange::new(ptr, 2) };
    }

    #[test]
    fn mapping_copies_are_bounds_checked() {
        let owner = Arc::new(HostRange::anonymous(4096).unwrap());
        let ptr = NonNull::new(owner.addr() as *mut u8).unwrap();
        // SAFETY: `owner` keeps the page mapped while the Mapping holds it.
        let m = unsafe { Mapping::new(ptr, 4096, owner.clone()) };
        m.write(4092, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        owner.read(4092, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(m.write(4093, &[0; 4]).is_err());
        assert!(m.read(u64::MAX - 2, &mut b).is_err());
        assert!(m.read(0, &mut [0; 4097]).is_err());
    }

    #[test]
    fn dma_mapping_reaches_the_range_until_unmapped() {
        let soft =
            Arc::new(SoftGpu::new(GpuConfig { vram_size: 2 << 20 }, Box::new(|_| {})).unwrap());
        let dev: Arc<dyn VfioDevice> = soft.clone();
        let ram = Arc::new(HostRange::anonymous(1 << 16).unwrap());
        let m = ram.dma_map(&dev, 0x10_0000, DmaFlags::READ_WRITE).unwrap();
        assert_eq!((m.iova(), m.len()), (0x10_0000, 1 << 16));
        soft.gpu().dma().write(0x10_0010, &[0xab]).unwrap();
        let mut b = [0u8];
        ram.read(0x10, &mut b).unwrap();
        assert_eq!(b, [0xab]);
        // The same IOVA again: refused by the contract.
        assert!(ram.dma_map(&dev, 0x10_0000, DmaFlags::READ_WRITE).is_err());
        m.unmap().unwrap();
        assert!(soft.gpu().dma().read(0x10_0010, &mut b).is_err());
        // Dropped without unmap: unmapped all the same.
        let m = ram.dma_map(&dev, 0x20_0000, DmaFlags::READ_WRITE).unwrap();
        assert_eq!(Arc::strong_count(&ram), 2);
        drop(m);
        assert_eq!(Arc::strong_count(&ram), 1);
        assert!(soft.gpu().dma().read(0x20_0000, &mut b).is_err());
    }

    #[test]
    fn rebind_takes_only_the_same_bytes() {
        let soft: Arc<dyn VfioDevice> =
            Arc::new(SoftGpu::new(GpuConfig { vram_size: 2 << 20 }, Box::new(|_| {})).unwrap());
        let a = Arc::new(HostRange::anonymous(8192).unwrap());
        let ptr = NonNull::new(a.addr() as *mut u8).unwrap();
        // SAFETY: `a` keeps both pages mapped; the views are dropped first.
        let same = Arc::new(unsafe { HostRange::new(ptr, 8192) });
        // SAFETY: as above.
        let shorter = Arc::new(unsafe { HostRange::new(ptr, 4096) });
        let mut m = a.dma_map(&soft, 0, DmaFlags::READ_WRITE).unwrap();
        assert!(m.rebind(shorter.clone()).is_err());
        m.rebind(same.clone()).unwrap();
        assert!(Arc::ptr_eq(m.host(), &same));
        assert_eq!(Arc::strong_count(&a), 1);
        m.unmap().unwrap();
        drop((same, shorter));
    }
}

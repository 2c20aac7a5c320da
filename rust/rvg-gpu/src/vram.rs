//! VRAM: page-aligned host memory the GPU owns, shared with the guest's BAR
//! mapping. Accessed only through raw copies, never through Rust references,
//! because the guest writes it concurrently (as it would real VRAM).

use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::fill;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub offset: u64,
    pub len: u64,
}

/// VRAM, or a window of it (an SR-IOV function's partition): offsets are
/// relative to the window, which every access stays inside.
pub struct Vram {
    /// The window's first byte, inside `mapping`.
    ptr: NonNull<u8>,
    len: usize,
    /// The whole mapping, unmapped when its last window goes.
    mapping: Arc<Mapping>,
}

/// One anonymous mapping, as `mmap` returned it.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this object for its whole
// life; all accesses are bounds-checked raw copies.
unsafe impl Send for Vram {}
// SAFETY: as for Send: `&Vram` gives raw copies only.
unsafe impl Sync for Vram {}
// SAFETY: only its address is kept, to unmap it; nothing is accessed.
unsafe impl Send for Mapping {}
// SAFETY: as for Send.
unsafe impl Sync for Mapping {}

impl Vram {
    /// Map `len` bytes of zeroed anonymous memory (allocated on first touch).
    pub fn new(len: u64) -> io::Result<Vram> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr as *mut u8).expect("mmap never returns NULL on success");
        Ok(Vram {
            ptr,
            len,
            mapping: Arc::new(Mapping { ptr, len }),
        })
    }

    /// The `len` bytes at `offset` as VRAM of their own, sharing this
    /// memory: what an SR-IOV function's BAR0 and engine see.
    pub fn window(&self, offset: u64, len: u64) -> Result<Vram, OutOfRange> {
        self.check(offset, len)?;
        Ok(Vram {
            // SAFETY: `offset + len <= self.len` (checked): the window is
            // inside this one, hence inside the mapping it keeps alive.
            ptr: unsafe { self.ptr.add(offset as usize) },
            len: len as usize,
            mapping: self.mapping.clone(),
        })
    }

    /// Zero the whole window: what a function reset does to a partition,
    /// so its next tenant sees nothing of the last.
    pub fn scrub(&self) {
        // SAFETY: the `len` bytes from `ptr` are this window, inside the
        // mapping; written through the raw pointer only (see `fill32`).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, self.len) };
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host address of byte `offset`, for mapping into the guest.
    pub fn host_ptr(&self, offset: u64) -> Result<*mut u8, OutOfRange> {
        self.check(offset, 0)?;
        // SAFETY: offset <= len, checked above.
        Ok(unsafe { self.ptr.as_ptr().add(offset as usize) })
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), OutOfRange> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len as u64 => Ok(()),
            _ => Err(OutOfRange { offset, len }),
        }
    }

    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        self.check(offset, buf.len() as u64)?;
        // SAFETY: the source range is inside the mapping (checked) and cannot
        // overlap `buf`, which Rust owns.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset as usize),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), OutOfRange> {
        self.check(offset, data.len() as u64)?;
        // SAFETY: the destination range is inside the mapping (checked).
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.ptr.as_ptr().add(offset as usize),
                data.len(),
            )
        };
        Ok(())
    }
}

impl Vram {
    /// Fill `len` bytes at `offset` with the little-endian `value` repeated.
    /// Both must be multiples of 4.
    pub fn fill32(&self, offset: u64, len: u64, value: u32) -> Result<(), OutOfRange> {
        self.check(offset, len)?;
        if !offset.is_multiple_of(4) || !len.is_multiple_of(4) {
            return Err(OutOfRange { offset, len });
        }
        // SAFETY: `offset <= len` (checked), so the pointer stays inside
        // the mapping.
        let dst = unsafe { self.ptr.as_ptr().add(offset as usize) }.cast::<u32>();
        // SAFETY: the `len` bytes from `dst` are inside the mapping (checked)
        // and 4-aligned (the mapping is page-aligned, `offset` a multiple of
        // 4). They are written through the raw pointer only: no Rust
        // reference to VRAM exists. A concurrent guest access through BAR0
        // races like a CPU against a blitter: it may see any mix of old and
        // new pixels, never memory outside VRAM.
        unsafe { fill::fill32(dst, (len / 4) as usize, value.to_le()) };
        Ok(())
    }

    /// memmove inside VRAM: the ranges may overlap.
    pub fn copy_within(&self, src: u64, dst: u64, len: u64) -> Result<(), OutOfRange> {
        self.check(src, len)?;
        self.check(dst, len)?;
        // SAFETY: both ranges are inside the mapping (checked); ptr::copy
        // handles overlap.
        unsafe {
            std::ptr::copy(
                self.ptr.as_ptr().add(src as usize),
                self.ptr.as_ptr().add(dst as usize),
                len as usize,
            )
        };
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `Vram::new`; no
        // window refers to it any more (each holds this `Arc`).
        unsafe { libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let v = Vram::new(1 << 20).unwrap();
        v.write(0xffffc, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        v.read(0xffffc, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(v.write(0xffffd, &[0; 4]).is_err());
        assert!(v.read(u64::MAX, &mut b).is_err());
        assert!(v.host_ptr(1 << 20).is_ok());
        assert!(v.host_ptr((1 << 20) + 1).is_err());
        assert_eq!(v.host_ptr(0).unwrap() as usize % 4096, 0);
    }

    #[test]
    fn fill_and_overlapping_copy() {
        let v = Vram::new(1 << 20).unwrap();
        v.fill32(0x100, 16, 0xa1b2c3d4).unwrap();
        let mut b = [0u8; 8];
        v.read(0x104, &mut b).unwrap();
        assert_eq!(b, [0xd4, 0xc3, 0xb2, 0xa1, 0xd4, 0xc3, 0xb2, 0xa1]);
        assert!(v.fill32(0x101, 4, 0).is_err());
        assert!(v.fill32((1 << 20) - 4, 8, 0).is_err());
        v.write(0, &[1, 2, 3, 4, 5, 6]).unwrap();
        v.copy_within(0, 2, 6).unwrap();
        let mut c = [0u8; 8];
        v.read(0, &mut c).unwrap();
        assert_eq!(c, [1, 2, 1, 2, 3, 4, 5, 6]);
        assert!(v.copy_within(0, (1 << 20) - 2, 4).is_err());
    }

    #[test]
    fn a_window_sees_only_its_part_and_outlives_its_parent() {
        let v = Vram::new(1 << 20).unwrap();
        v.fill32(0, 1 << 20, 0x5555_5555).unwrap();
        let w = v.window(0x4000, 0x2000).unwrap();
        assert!(v.window(0xff000, 0x2000).is_err());
        drop(v);
        assert_eq!(w.len(), 0x2000);
        assert!(w.write(0x1ffc, &[0; 8]).is_err());
        w.write(0, &[1, 2, 3, 4]).unwrap();
        w.scrub();
        let mut b = [0xffu8; 4];
        w.read(0x1ffc, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        let inner = w.window(0x1000, 0x1000).unwrap();
        inner.fill32(0, 4, 7).unwrap();
        w.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [7, 0, 0, 0]);
    }
}

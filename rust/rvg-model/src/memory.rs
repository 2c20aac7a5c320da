//! Graphics memory as the engine's semantics need it: byte ranges at
//! graphics addresses, which fault where the GTT maps nothing. Whoever runs
//! the engine provides it (the physical GPU: GTT, VRAM and DMA).

/// A graphics address that maps no memory (index past the GTT, entry
/// invalid, VRAM offset past VRAM) or whose DMA failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub addr: u64,
}

/// The engine's view of graphics memory. Every operation either completes
/// or faults; a fault names the first graphics address that did not map.
pub trait GfxMemory {
    /// Fill `buf` from graphics address `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault>;

    /// Write `data` at graphics address `addr`.
    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault>;

    /// Fill `len` bytes (a multiple of 4) at `addr` with the little-endian
    /// 32-bit `color` repeated.
    fn fill32(&self, addr: u64, len: u64, color: u32) -> Result<(), Fault>;

    /// Copy `len` bytes from `src` to `dst` with the result of reading all
    /// of the source first: the ranges may overlap.
    fn copy(&self, src: u64, dst: u64, len: u64) -> Result<(), Fault>;

    /// Check that `[addr, addr + len)` is mapped throughout.
    fn check(&self, addr: u64, len: u64) -> Result<(), Fault>;

    /// Check that each of `height` rows of `row` bytes, `pitch` bytes
    /// apart from `base`, is mapped (what lies between them need not be);
    /// the fault is the first row's that fails. A memory that can tell at
    /// once that the whole span is mapped skips the rows.
    fn check_rows(&self, base: u64, pitch: u64, row: u64, height: u64) -> Result<(), Fault> {
        check_each_row(self, base, pitch, row, height)
    }

    /// Fill `height` rows of `row` bytes, `pitch` bytes apart from `dst`,
    /// with `color`, the rows already checked. A memory that holds the
    /// whole span in one stretch fills it without translating each row.
    fn fill_rows(
        &self,
        dst: u64,
        pitch: u64,
        row: u64,
        height: u64,
        color: u32,
    ) -> Result<(), Fault> {
        fill_each_row(self, dst, pitch, row, height, color)
    }

    fn read_u32(&self, addr: u64) -> Result<u32, Fault> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// [`GfxMemory::check_rows`] row by row: what every memory can do.
pub fn check_each_row<M: GfxMemory + ?Sized>(
    mem: &M,
    base: u64,
    pitch: u64,
    row: u64,
    height: u64,
) -> Result<(), Fault> {
    (0..height).try_for_each(|y| mem.check(base + y * pitch, row))
}

/// [`GfxMemory::fill_rows`] row by row: what every memory can do.
pub fn fill_each_row<M: GfxMemory + ?Sized>(
    mem: &M,
    dst: u64,
    pitch: u64,
    row: u64,
    height: u64,
    color: u32,
) -> Result<(), Fault> {
    (0..height).try_for_each(|y| mem.fill32(dst + y * pitch, row, color))
}

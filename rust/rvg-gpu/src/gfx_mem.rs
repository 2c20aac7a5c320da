//! Graphics memory as the engine sees it: graphics addresses translated
//! through the GTT to VRAM or to DMA addresses, in runs of pages that are
//! contiguous behind the GTT, so rectangles move at memory speed.

use std::sync::atomic::{AtomicU64, Ordering};

use rvg_model::dma::DmaSpace;
use rvg_model::gtt::{GttEntry, PAGE_SHIFT, PAGE_SIZE};
use rvg_model::memory::{check_each_row, fill_each_row, Fault, GfxMemory};

use crate::vram::Vram;

/// Where a graphics address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// VRAM offset.
    Vram(u64),
    /// DMA address in system memory.
    System(u64),
}

pub struct GfxMem<'a> {
    pub gtt: &'a [AtomicU64],
    pub vram: &'a Vram,
    pub dma: &'a dyn DmaSpace,
}

/// Bytes of a run, at most, so one translation never covers unbounded work.
const MAX_RUN: u64 = 1 << 30;

impl GfxMem<'_> {
    /// The backing of the page holding `addr`.
    pub fn page(&self, addr: u64) -> Result<Backing, Fault> {
        let fault = Fault { addr };
        let slot = usize::try_from(addr >> PAGE_SHIFT)
            .ok()
            .and_then(|i| self.gtt.get(i))
            .ok_or(fault)?;
        let entry = GttEntry(slot.load(Ordering::Acquire));
        if !entry.valid() {
            return Err(fault);
        }
        let within = addr & (PAGE_SIZE - 1);
        if entry.local() {
            if entry.addr() + PAGE_SIZE > self.vram.len() {
                return Err(fault);
            }
            Ok(Backing::Vram(entry.addr() + within))
        } else {
            Ok(Backing::System(entry.addr() + within))
        }
    }

    /// The longest run from `addr`, at most `len` bytes, that is contiguous
    /// behind the GTT: returns its backing and length (> 0 for len > 0).
    pub fn run(&self, addr: u64, len: u64) -> Result<(Backing, u64), Fault> {
        let first = self.page(addr)?;
        let want = len.min(MAX_RUN);
        let mut got = (PAGE_SIZE - (addr & (PAGE_SIZE - 1))).min(want);
        while got < want {
            let next = addr.checked_add(got).ok_or(Fault { addr })?;
            let contiguous = match (first, self.page(next)) {
                (Backing::Vram(a), Ok(Backing::Vram(b))) => b == a + got,
                (Backing::System(a), Ok(Backing::System(b))) => b == a + got,
                _ => false,
            };
            if !contiguous {
                break;
            }
            got = (got + PAGE_SIZE).min(want);
        }
        Ok((first, got))
    }

    /// The VRAM offset of `[addr, addr + len)` if it is one contiguous
    /// stretch of VRAM behind the GTT.
    fn vram_span(&self, addr: u64, len: u64) -> Option<u64> {
        match self.run(addr, len) {
            Ok((Backing::Vram(at), n)) if n == len => Some(at),
            _ => None,
        }
    }

    /// The VRAM offset of a rectangle (`height` rows of `row` bytes,
    /// `pitch` apart from `base`) whose whole span is one stretch of VRAM.
    fn rows_in_vram(&self, base: u64, pitch: u64, row: u64, height: u64) -> Option<u64> {
        let span = pitch
            .checked_mul(height.checked_sub(1)?)?
            .checked_add(row)?;
        self.vram_span(base, span)
    }

    /// Visit `[addr, addr + len)` run by run: `f(offset into the range,
    /// backing, run length)`.
    fn walk(
        &self,
        addr: u64,
        len: u64,
        mut f: impl FnMut(u64, Backing, u64) -> Result<(), Fault>,
    ) -> Result<(), Fault> {
        addr.checked_add(len).ok_or(Fault { addr })?;
        let mut done = 0;
        while done < len {
            let (backing, n) = self.run(addr + done, len - done)?;
            f(done, backing, n)?;
            done += n;
        }
        Ok(())
    }
}

impl GfxMemory for GfxMem<'_> {
    /// Check that `[addr, addr + len)` is mapped throughout.
    fn check(&self, addr: u64, len: u64) -> Result<(), Fault> {
        self.walk(addr, len, |_, _, _| Ok(()))
    }

    /// A rectangle in one stretch of VRAM (a surface, as drivers lay them
    /// out) is mapped row for row: one translation for all of it.
    fn check_rows(&self, base: u64, pitch: u64, row: u64, height: u64) -> Result<(), Fault> {
        if self.rows_in_vram(base, pitch, row, height).is_some() {
            return Ok(());
        }
        check_each_row(self, base, pitch, row, height)
    }

    /// Rows in one stretch of VRAM are filled straight from its offset,
    /// with no translation per row.
    fn fill_rows(
        &self,
        dst: u64,
        pitch: u64,
        row: u64,
        height: u64,
        color: u32,
    ) -> Result<(), Fault> {
        if let Some(at) = self.rows_in_vram(dst, pitch, row, height) {
            return (0..height).try_for_each(|y| {
                self.vram
                    .fill32(at + y * pitch, row, color)
                    .map_err(|_| Fault {
                        addr: dst + y * pitch,
                    })
            });
        }
        fill_each_row(self, dst, pitch, row, height, color)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        self.walk(addr, buf.len() as u64, |off, backing, n| {
            let part = &mut buf[off as usize..(off + n) as usize];
            match backing {
                Backing::Vram(v) => self
                    .vram
                    .read(v, part)
                    .map_err(|_| Fault { addr: addr + off }),
                Backing::System(d) => self
                    .dma
                    .read(d, part)
                    .map_err(|_| Fault { addr: addr + off }),
            }
        })
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        self.walk(addr, data.len() as u64, |off, backing, n| {
            let part = &data[off as usize..(off + n) as usize];
            match backing {
                Backing::Vram(v) => self
                    .vram
                    .write(v, part)
                    .map_err(|_| Fault { addr: addr + off }),
                Backing::System(d) => self
                    .dma
                    .write(d, part)
                    .map_err(|_| Fault { addr: addr + off }),
            }
        })
    }

    /// Fill `len` bytes (a multiple of 4) at `addr` with the 32-bit `color`.
    fn fill32(&self, addr: u64, len: u64, color: u32) -> Result<(), Fault> {
        // Only DMA needs the pattern in memory; a VRAM fill (every row of a
        // pitched rectangle) must not pay for building it.
        let mut pattern = Vec::new();
        self.walk(addr, len, |off, backing, n| match backing {
            Backing::Vram(v) => self
                .vram
                .fill32(v, n, color)
                .map_err(|_| Fault { addr: addr + off }),
            Backing::System(d) => {
                if pattern.is_empty() {
                    pattern = color.to_le_bytes().repeat(1024);
                }
                let mut at = 0;
                while at < n {
                    let k = (n - at).min(pattern.len() as u64);
                    self.dma
                        .write(d + at, &pattern[..k as usize])
                        .map_err(|_| Fault {
                            addr: addr + off + at,
                        })?;
                    at += k;
                }
                Ok(())
            }
        })
    }

    /// Copy `len` bytes from `src` to `dst`; the ranges may overlap (in
    /// graphics addresses, or through aliasing GTT entries).
    fn copy(&self, src: u64, dst: u64, len: u64) -> Result<(), Fault> {
        // One VRAM run each: a memmove inside VRAM.
        if let (Ok((Backing::Vram(s), ns)), Ok((Backing::Vram(d), nd))) =
            (self.run(src, len), self.run(dst, len))
        {
            if ns == len && nd == len {
                return self
                    .vram
                    .copy_within(s, d, len)
                    .map_err(|_| Fault { addr: dst });
            }
        }
        // Otherwise stage through a buffer, which overlap cannot corrupt.
        let mut buf = vec![0u8; len as usize];
        self.read(src, &mut buf)?;
        self.write(dst, &buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvg_model::dma::NoDma;

    fn gtt_with(entries: &[(usize, GttEntry)], size: usize) -> Vec<AtomicU64> {
        let gtt: Vec<AtomicU64> = (0..size).map(|_| AtomicU64::new(0)).collect();
        for &(i, e) in entries {
            gtt[i].store(e.0, Ordering::Relaxed);
        }
        gtt
    }

    /// Rows filled in one stretch of VRAM, and across a mapping that is not
    /// one stretch, give the same pixels as row by row; a row on a page the
    /// GTT does not map faults at that row, before anything is filled.
    #[test]
    fn rectangles_fill_alike_whether_or_not_they_are_one_stretch() {
        let vram = Vram::new(1 << 20).unwrap();
        let contiguous: Vec<(usize, GttEntry)> = (0..8)
            .map(|i| (i, GttEntry::new(0x10000 + i as u64 * 0x1000, true)))
            .collect();
        let scattered: Vec<(usize, GttEntry)> = (0..8)
            .map(|i| (i, GttEntry::new(0x80000 - i as u64 * 0x1000, true)))
            .collect();
        let (pitch, row, height) = (0x600, 0x500, 20);
        for entries in [contiguous, scattered] {
            let gtt = gtt_with(&entries, 16);
            let m = GfxMem {
                gtt: &gtt,
                vram: &vram,
                dma: &NoDma,
            };
            m.check_rows(0x40, pitch, row, height).unwrap();
            m.fill_rows(0x40, pitch, row, height, 0x1234_5678).unwrap();
            let mut px = [0u8; 4];
            for y in 0..height {
                for x in [0, row - 4] {
                    m.read(0x40 + y * pitch + x, &mut px).unwrap();
                    assert_eq!(u32::from_le_bytes(px), 0x1234_5678, "row {y} byte {x}");
                }
                let gap = 0x40 + y * pitch + row;
                if y + 1 < height {
                    m.read(gap, &mut px).unwrap();
                    assert_eq!(px, [0; 4], "between rows {y} and {}", y + 1);
                }
            }
            // Two rows more: the last would reach page 8, which nothing maps.
            assert_eq!(
                m.check_rows(0x40, pitch, row, height + 2),
                Err(Fault { addr: 0x8000 })
            );
        }
    }

    #[test]
    fn runs_coalesce_contiguous_vram_pages() {
        let vram = Vram::new(1 << 20).unwrap();
        // Pages 0-2 map VRAM 0x10000.. contiguously, page 3 jumps, page 4 is invalid.
        let gtt = gtt_with(
            &[
                (0, GttEntry::new(0x10000, true)),
                (1, GttEntry::new(0x11000, true)),
                (2, GttEntry::new(0x12000, true)),
                (3, GttEntry::new(0x40000, true)),
            ],
            8,
        );
        let m = GfxMem {
            gtt: &gtt,
            vram: &vram,
            dma: &NoDma,
        };
        assert_eq!(
            m.run(0x10, 0x10000),
            Ok((Backing::Vram(0x10010), 0x3000 - 0x10))
        );
        assert_eq!(m.run(0x3000, 0x10000), Ok((Backing::Vram(0x40000), 0x1000)));
        assert_eq!(m.run(0x4000, 4), Err(Fault { addr: 0x4000 }));
        assert_eq!(m.check(0x2ff0, 0x1020), Err(Fault { addr: 0x4000 }));
        assert_eq!(m.page(0x8000), Err(Fault { addr: 0x8000 }), "past the GTT");
    }

    #[test]
    fn local_entries_past_vram_fault() {
        let vram = Vram::new(1 << 20).unwrap();
        let gtt = gtt_with(&[(0, GttEntry::new(1 << 20, true))], 1);
        let m = GfxMem {
            gtt: &gtt,
            vram: &vram,
            dma: &NoDma,
        };
        assert_eq!(m.page(0), Err(Fault { addr: 0 }));
    }

    #[test]
    fn writes_cross_pages_and_copies_overlap() {
        let vram = Vram::new(1 << 20).unwrap();
        // Graphics pages 0 and 1 are VRAM pages 5 and 2: not contiguous.
        let gtt = gtt_with(
            &[
                (0, GttEntry::new(0x5000, true)),
                (1, GttEntry::new(0x2000, true)),
            ],
            2,
        );
        let m = GfxMem {
            gtt: &gtt,
            vram: &vram,
            dma: &NoDma,
        };
        let data: Vec<u8> = (0..32u8).collect();
        m.write(0xff0, &data).unwrap();
        let mut back = [0u8; 32];
        m.read(0xff0, &mut back).unwrap();
        assert_eq!(back.to_vec(), data);
        let mut raw = [0u8; 16];
        vram.read(0x2000, &mut raw).unwrap();
        assert_eq!(raw.to_vec(), (16..32u8).collect::<Vec<_>>());
        // Overlapping copy across the page boundary, forwards.
        m.copy(0xff0, 0xff4, 28).unwrap();
        m.read(0xff0, &mut back).unwrap();
        assert_eq!(back[4..32].to_vec(), (0..28u8).collect::<Vec<_>>());
        m.fill32(0xffc, 8, 0x11223344).unwrap();
        assert_eq!(m.read_u32(0xffc), Ok(0x11223344));
        assert_eq!(m.read_u32(0x1000), Ok(0x11223344));
    }
}

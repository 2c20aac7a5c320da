//! Where everything lives in graphics address space: a plan of GTT
//! regions (system pages of our DMA buffer, local VRAM pages), each
//! followed by an unmapped guard page so an overrun faults instead of
//! landing in a neighbour; then programming and clearing those entries.
//!
//! bochs-drm does not use the GTT, so any indexes are free for us; we take
//! a range starting at `FIRST_INDEX` and own all of it while we run.

use rvg_model::gtt::{gfx_addr, GttEntry, PAGE_SIZE};

use crate::device::Device;
use crate::error::{bail, Result};

/// First GTT index we use: graphics address 16 MiB.
pub const FIRST_INDEX: u32 = 0x1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Pages of our DMA buffer, starting at this page of it.
    System { first_page: usize },
    /// VRAM from this page-aligned offset on.
    Local { vram_offset: u64 },
    /// Deliberately unmapped: commands touching it must fault.
    Unmapped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GttRegion {
    pub name: &'static str,
    pub index: u32,
    pub pages: u32,
    pub backing: Backing,
}

impl GttRegion {
    /// Graphics address of the region's first byte.
    pub fn gfx(&self) -> u64 {
        gfx_addr(self.index)
    }

    /// Byte offset of the region in the DMA buffer (system regions only).
    pub fn dma_offset(&self) -> usize {
        match self.backing {
            Backing::System { first_page } => first_page * PAGE_SIZE as usize,
            _ => panic!("{} is not in system memory", self.name),
        }
    }

    pub fn bytes(&self) -> u64 {
        u64::from(self.pages) * PAGE_SIZE
    }
}

#[derive(Debug)]
pub struct GttPlan {
    first: u32,
    next: u32,
    limit: u32,
    dma_pages: usize,
    regions: Vec<GttRegion>,
}

impl GttPlan {
    /// A plan using indexes `first..limit` (limit: the GTT's size).
    pub fn new(first: u32, limit: u32) -> GttPlan {
        GttPlan {
            first,
            next: first,
            limit,
            dma_pages: 0,
            regions: Vec::new(),
        }
    }

    fn add(&mut self, name: &'static str, pages: u32, backing: Backing) -> Result<GttRegion> {
        // The region, then one guard page.
        let end = self.next.checked_add(pages).and_then(|e| e.checked_add(1));
        match end {
            Some(end) if end <= self.limit => {
                let region = GttRegion {
                    name,
                    index: self.next,
                    pages,
                    backing,
                };
                self.regions.push(region);
                self.next = end;
                Ok(region)
            }
            _ => bail!(
                "GTT region {name} ({pages} pages) does not fit: {} of {} entries used",
                self.next,
                self.limit
            ),
        }
    }

    /// `bytes` of our DMA buffer, whole pages.
    pub fn system(&mut self, name: &'static str, bytes: u64) -> Result<GttRegion> {
        let pages = bytes.div_ceil(PAGE_SIZE) as u32;
        let first_page = self.dma_pages;
        let r = self.add(name, pages, Backing::System { first_page })?;
        self.dma_pages += pages as usize;
        Ok(r)
    }

    /// VRAM `[offset, offset + bytes)`, widened to whole pages. Returns the
    /// region and the graphics address of `offset` itself.
    pub fn local(
        &mut self,
        name: &'static str,
        offset: u64,
        bytes: u64,
    ) -> Result<(GttRegion, u64)> {
        let first = offset & !(PAGE_SIZE - 1);
        let pages = (offset + bytes - first).div_ceil(PAGE_SIZE) as u32;
        let r = self.add(name, pages, Backing::Local { vram_offset: first })?;
        Ok((r, r.gfx() + (offset - first)))
    }

    /// One page left invalid on purpose.
    pub fn unmapped(&mut self, name: &'static str) -> Result<GttRegion> {
        self.add(name, 1, Backing::Unmapped)
    }

    pub fn regions(&self) -> &[GttRegion] {
        &self.regions
    }

    /// Pages of DMA memory the system regions need.
    pub fn dma_pages(&self) -> usize {
        self.dma_pages
    }

    /// Indexes this plan owns (regions and guards).
    pub fn indexes(&self) -> std::ops::Range<u32> {
        self.first..self.next
    }

    /// The value of every entry we own, given the DMA pages' addresses:
    /// mapped pages valid, guards and unmapped pages zero.
    pub fn entries(&self, dma_phys: &[u64]) -> Vec<(u32, GttEntry)> {
        let mut out: Vec<(u32, GttEntry)> = self.indexes().map(|i| (i, GttEntry(0))).collect();
        for r in &self.regions {
            for k in 0..r.pages {
                let entry = match r.backing {
                    Backing::System { first_page } => {
                        GttEntry::new(dma_phys[first_page + k as usize], false)
                    }
                    Backing::Local { vram_offset } => {
                        GttEntry::new(vram_offset + u64::from(k) * PAGE_SIZE, true)
                    }
                    Backing::Unmapped => GttEntry(0),
                };
                out[(r.index + k - self.first) as usize].1 = entry;
            }
        }
        out
    }
}

/// Counts for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Programmed {
    pub local: u32,
    pub system: u32,
    pub cleared: u32,
}

/// Entries we wrote; zeroes them again when dropped, so the vGPU lets go
/// of our pages before the process frees them.
pub struct GttMapping<'d> {
    dev: &'d Device,
    indexes: std::ops::Range<u32>,
}

impl<'d> GttMapping<'d> {
    /// Write every entry of the plan (8-byte writes: each takes effect at
    /// once) and read them all back.
    pub fn program(
        dev: &'d Device,
        plan: &GttPlan,
        dma_phys: &[u64],
    ) -> Result<(GttMapping<'d>, Programmed)> {
        let entries = plan.entries(dma_phys);
        let mapping = GttMapping {
            dev,
            indexes: plan.indexes(),
        };
        let mut counts = Programmed::default();
        for &(index, entry) in &entries {
            dev.set_gtt(index, entry);
            match (entry.valid(), entry.local()) {
                (false, _) => counts.cleared += 1,
                (true, true) => counts.local += 1,
                (true, false) => counts.system += 1,
            }
        }
        for &(index, entry) in &entries {
            let got = dev.gtt(index);
            if got != entry {
                bail!(
                    "GTT entry {index} reads back {:#018x}, wrote {:#018x}",
                    got.0,
                    entry.0
                );
            }
        }
        Ok((mapping, counts))
    }

    /// Zero the entries now; returns how many.
    pub fn clear(&mut self) -> u32 {
        let n = self.indexes.len() as u32;
        for index in self.indexes.clone() {
            self.dev.set_gtt(index, GttEntry(0));
        }
        self.indexes = 0..0;
        n
    }
}

impl Drop for GttMapping<'_> {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_follow_each_other_with_guards() {
        let mut p = GttPlan::new(FIRST_INDEX, 32768);
        let ring = p.system("ring", 16384).unwrap();
        let results = p.system("results", 100).unwrap();
        let hole = p.unmapped("hole").unwrap();
        let (fb, at) = p.local("fb", 0x1_0040, 3 * 4096).unwrap();
        assert_eq!(
            (ring.index, ring.pages, ring.gfx()),
            (FIRST_INDEX, 4, 16 << 20)
        );
        assert_eq!((results.index, results.pages), (FIRST_INDEX + 5, 1));
        assert_eq!(results.dma_offset(), 4 * 4096);
        assert_eq!(hole.index, FIRST_INDEX + 7);
        // 0x10040 + 3 pages straddles 4 pages.
        assert_eq!(
            (fb.index, fb.pages, fb.backing),
            (
                FIRST_INDEX + 9,
                4,
                Backing::Local {
                    vram_offset: 0x1_0000
                }
            )
        );
        assert_eq!(at, fb.gfx() + 0x40);
        assert_eq!(p.dma_pages(), 5);
        assert_eq!(p.indexes(), FIRST_INDEX..FIRST_INDEX + 14);
    }

    #[test]
    fn entries_map_pages_and_clear_the_rest() {
        let mut p = GttPlan::new(10, 100);
        p.system("a", 2 * 4096).unwrap();
        p.unmapped("hole").unwrap();
        p.local("fb", 0x2000, 4096).unwrap();
        let phys = [0x7000_0000, 0x1234_5000];
        let e = p.entries(&phys);
        let values: Vec<u64> = e.iter().map(|(_, v)| v.0).collect();
        assert_eq!(e.first().unwrap().0, 10);
        assert_eq!(values, vec![0x7000_0001, 0x1234_5001, 0, 0, 0, 0x2003, 0]);
    }

    #[test]
    fn plans_stay_inside_the_gtt() {
        let mut p = GttPlan::new(0, 10);
        p.system("a", 8 * 4096).unwrap();
        // 8 pages + guard used 9 of 10: one more page (plus guard) is too many.
        let e = p.system("b", 1).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
    }
}

//! The pin/translate cache: one entry per guest page that some GTT entry
//! maps, holding the page's DMA address and how many GTT entries use it.
//!
//! A hit (the page is already in use) costs a hash lookup and an increment;
//! a miss resolves the page against the guest memory map. The entry goes
//! when its last user does, or at once when its memory goes away.

use rustc_hash::FxHashMap;

use crate::guest_mem::{GuestMemory, MemKind};
use rvg_model::gtt::{PAGE_MASK, PAGE_SHIFT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pin {
    iova: u64,
    refs: u32,
}

/// Why a page cannot be pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinError {
    /// Not guest RAM: what it is instead, or None for nothing at all.
    NotRam(Option<MemKind>),
}

#[derive(Default, Debug)]
pub struct PinCache {
    pins: FxHashMap<u64, Pin>,
    hits: u64,
    misses: u64,
}

impl PinCache {
    /// Pin the guest page at `gpa` for one more user; returns its DMA address.
    pub fn pin(&mut self, gpa: u64, mem: &GuestMemory) -> Result<u64, PinError> {
        let gfn = gpa >> PAGE_SHIFT;
        if let Some(pin) = self.pins.get_mut(&gfn) {
            pin.refs += 1;
            self.hits += 1;
            return Ok(pin.iova);
        }
        let range = mem.lookup(gpa & PAGE_MASK).ok_or(PinError::NotRam(None))?;
        if range.kind != MemKind::Ram {
            return Err(PinError::NotRam(Some(range.kind)));
        }
        let iova = range.iova + ((gpa & PAGE_MASK) - range.gpa);
        self.pins.insert(gfn, Pin { iova, refs: 1 });
        self.misses += 1;
        Ok(iova)
    }

    /// One user of the page at `gpa` is gone; the entry goes with the last.
    pub fn unpin(&mut self, gpa: u64) {
        let gfn = gpa >> PAGE_SHIFT;
        if let Some(pin) = self.pins.get_mut(&gfn) {
            pin.refs -= 1;
            if pin.refs == 0 {
                self.pins.remove(&gfn);
            }
        }
    }

    /// Drop every entry in `[gpa, gpa + size)` whatever its users; returns
    /// how many went. The caller re-points those users.
    pub fn invalidate(&mut self, gpa: u64, size: u64) -> usize {
        let (first, last) = (gpa >> PAGE_SHIFT, gpa.saturating_add(size) >> PAGE_SHIFT);
        let before = self.pins.len();
        self.pins.retain(|&gfn, _| !(first..last).contains(&gfn));
        before - self.pins.len()
    }

    pub fn clear(&mut self) {
        self.pins.clear();
    }

    pub fn pinned_pages(&self) -> usize {
        self.pins.len()
    }

    /// The DMA address of a pinned page, without taking a reference.
    pub fn iova(&self, gpa: u64) -> Option<u64> {
        self.pins.get(&(gpa >> PAGE_SHIFT)).map(|p| p.iova)
    }

    pub fn refs(&self, gpa: u64) -> u32 {
        self.pins.get(&(gpa >> PAGE_SHIFT)).map_or(0, |p| p.refs)
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn misses(&self) -> u64 {
        self.misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_mem::GuestRange;

    fn mem() -> GuestMemory {
        let mut m = GuestMemory::default();
        m.add(GuestRange {
            gpa: 0x10_0000,
            size: 0x10_0000,
            host: Some(crate::guest_mem::stand_in(0x10_0000)),
            kind: MemKind::Ram,
            iova: 0x8000_0000,
        })
        .unwrap();
        m.add(GuestRange {
            gpa: 0xfff0_0000,
            size: 0x10_0000,
            host: None,
            kind: MemKind::Rom,
            iova: 0,
        })
        .unwrap();
        m
    }

    #[test]
    fn one_translation_shared_by_every_user() {
        let m = mem();
        let mut c = PinCache::default();
        assert_eq!(c.pin(0x10_3000, &m), Ok(0x8000_3000));
        assert_eq!(c.pin(0x10_3abc, &m), Ok(0x8000_3000));
        assert_eq!(
            (c.pinned_pages(), c.refs(0x10_3000), c.hits(), c.misses()),
            (1, 2, 1, 1)
        );
        c.unpin(0x10_3000);
        assert_eq!(c.refs(0x10_3000), 1);
        c.unpin(0x10_3000);
        assert_eq!(c.pinned_pages(), 0, "released with its last user");
    }

    #[test]
    fn only_guest_ram_pins() {
        let m = mem();
        let mut c = PinCache::default();
        assert_eq!(
            c.pin(0xfff0_0000, &m),
            Err(PinError::NotRam(Some(MemKind::Rom)))
        );
        assert_eq!(c.pin(0xfe00_0000, &m), Err(PinError::NotRam(None)));
        assert_eq!(c.pin(0x20_0000, &m), Err(PinError::NotRam(None)));
        assert_eq!(c.pinned_pages(), 0);
    }

    #[test]
    fn invalidation_ignores_refcounts_and_reset_clears() {
        let m = mem();
        let mut c = PinCache::default();
        for page in 0..4u64 {
            for _ in 0..3 {
                c.pin(0x10_0000 + page * 0x1000, &m).unwrap();
            }
        }
        assert_eq!(c.invalidate(0x10_1000, 0x2000), 2);
        assert_eq!(c.refs(0x10_1000), 0);
        assert_eq!(c.refs(0x10_3000), 3);
        c.clear();
        assert_eq!(c.pinned_pages(), 0);
    }
}

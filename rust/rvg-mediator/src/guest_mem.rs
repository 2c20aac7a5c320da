//! The guest's physical memory map, as QEMU's memory listener reports it:
//! which ranges are RAM the GPU may be pointed at, and where they are mapped
//! for DMA.

use std::collections::BTreeMap;
use std::sync::Arc;

use rvg_model::gtt::PAGE_SIZE;
use rvg_vfio::HostRange;

/// What a range of guest-physical addresses is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemKind {
    /// Guest RAM: the only memory a GTT entry may point at.
    Ram,
    /// ROM or read-only RAM.
    Rom,
    /// RAM that belongs to a device (a BAR, including this vGPU's VRAM).
    Device,
}

#[derive(Clone, Debug)]
pub struct GuestRange {
    pub gpa: u64,
    pub size: u64,
    /// For guest RAM, the host memory behind `[gpa, gpa + size)`, `size`
    /// bytes of it, valid until the range is removed (and dropped). None
    /// for ROM and device memory: the mediator only tells those apart from
    /// RAM, and never reads, writes or maps them.
    pub host: Option<Arc<HostRange>>,
    pub kind: MemKind,
    /// DMA address of `gpa` for the GPU (RAM only).
    pub iova: u64,
}

impl GuestRange {
    pub fn end(&self) -> u64 {
        self.gpa + self.size
    }

    pub fn contains(&self, gpa: u64) -> bool {
        (self.gpa..self.end()).contains(&gpa)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddError {
    /// Not page-aligned: the GPU maps whole pages only.
    Unaligned,
    /// Overlaps a range already present.
    Overlap,
    /// Guest RAM without `size` bytes of host memory (`host` is its
    /// length, 0 for none), or other memory with some.
    HostSize { size: u64, host: u64 },
}

#[derive(Default, Debug)]
pub struct GuestMemory {
    ranges: BTreeMap<u64, GuestRange>,
}

impl GuestMemory {
    pub fn add(&mut self, range: GuestRange) -> Result<(), AddError> {
        if !range.gpa.is_multiple_of(PAGE_SIZE)
            || !range.size.is_multiple_of(PAGE_SIZE)
            || range.size == 0
        {
            return Err(AddError::Unaligned);
        }
        let host = range.host.as_ref().map_or(0, |h| h.len());
        if (range.kind == MemKind::Ram) != range.host.is_some()
            || range.host.is_some() && host != range.size
        {
            return Err(AddError::HostSize {
                size: range.size,
                host,
            });
        }
        let end = range
            .gpa
            .checked_add(range.size)
            .ok_or(AddError::Unaligned)?;
        if self
            .ranges
            .range(..end)
            .next_back()
            .is_some_and(|(_, r)| r.end() > range.gpa)
        {
            return Err(AddError::Overlap);
        }
        self.ranges.insert(range.gpa, range);
        Ok(())
    }

    /// Remove every range inside `[gpa, gpa + size)` and return them.
    pub fn remove(&mut self, gpa: u64, size: u64) -> Vec<GuestRange> {
        let end = gpa.saturating_add(size);
        let keys: Vec<u64> = self
            .ranges
            .range(..end)
            .filter(|(_, r)| r.end() > gpa)
            .map(|(&k, _)| k)
            .collect();
        keys.iter().filter_map(|k| self.ranges.remove(k)).collect()
    }

    pub fn lookup(&self, gpa: u64) -> Option<&GuestRange> {
        self.ranges
            .range(..=gpa)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.contains(gpa))
    }

    pub fn iter(&self) -> impl Iterator<Item = &GuestRange> {
        self.ranges.values()
    }
}

/// Zeroed memory standing in for `size` bytes of guest RAM in tests.
#[cfg(test)]
pub(crate) fn stand_in(size: u64) -> Arc<HostRange> {
    Arc::new(HostRange::anonymous(size).expect("guest RAM stand-in"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(gpa: u64, size: u64) -> GuestRange {
        GuestRange {
            gpa,
            size,
            host: Some(stand_in(size)),
            kind: MemKind::Ram,
            iova: gpa,
        }
    }

    #[test]
    fn lookup_add_remove() {
        let mut m = GuestMemory::default();
        m.add(ram(0, 0xa0000)).unwrap();
        m.add(ram(0x10_0000, 0x10_0000)).unwrap();
        assert_eq!(m.add(ram(0x1f_f000, 0x2000)), Err(AddError::Overlap));
        assert_eq!(m.add(ram(0x30_0800, 0x1000)), Err(AddError::Unaligned));
        let short = GuestRange {
            host: Some(stand_in(0x1000)),
            ..ram(0x40_0000, 0x2000)
        };
        assert_eq!(
            m.add(short),
            Err(AddError::HostSize {
                size: 0x2000,
                host: 0x1000
            })
        );
        assert_eq!(m.lookup(0x10_0fff).unwrap().gpa, 0x10_0000);
        assert!(m.lookup(0xa0000).is_none());
        assert!(m.lookup(0x20_0000).is_none());
        let gone = m.remove(0x10_0000, 0x10_0000);
        assert_eq!(gone.len(), 1);
        assert!(m.lookup(0x10_0000).is_none());
        assert!(m.lookup(0x1000).is_some());
    }
}

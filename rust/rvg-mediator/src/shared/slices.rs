//! Which parts of the physical GPU belong to which vGPU: GTT slices of a
//! fixed size, VRAM slices aligned to their own (power-of-two) size, both
//! above the area the mediator keeps for itself.

use crate::error::NoRoom;
use crate::shadow::SliceLayout;

/// GTT entries of a vGPU: 128 MiB of graphics address space.
pub const VGPU_GTT_ENTRIES: u32 = 32768;
/// Physical GTT entries kept for the mediator (its ring), before any slice.
pub const RESERVED_GTT_ENTRIES: u32 = 1024;
/// Physical VRAM kept for the mediator (scratch page, ring), before any slice.
pub const RESERVED_VRAM: u64 = 1 << 20;
/// Where the scratch page sits in physical VRAM.
pub const SCRATCH_PAGE: u64 = 0;

#[derive(Debug)]
pub struct Slices {
    gtt_used: Vec<bool>,
    /// `(base, size)` of every VRAM slice handed out.
    vram_used: Vec<(u64, u64)>,
    vram_size: u64,
}

impl Slices {
    pub fn new(gtt_entries: u32, vram_size: u64) -> Slices {
        let slots = gtt_entries.saturating_sub(RESERVED_GTT_ENTRIES) / VGPU_GTT_ENTRIES;
        Slices {
            gtt_used: vec![false; slots as usize],
            vram_used: Vec::new(),
            vram_size,
        }
    }

    /// How many vGPUs are attached.
    pub fn in_use(&self) -> usize {
        self.gtt_used.iter().filter(|&&u| u).count()
    }

    /// How many vGPUs fit in the GTT.
    pub fn capacity(&self) -> usize {
        self.gtt_used.len()
    }

    /// A GTT slice and a `vram_size` VRAM slice, or why there is no room.
    pub fn alloc(&mut self, vram_size: u64) -> Result<SliceLayout, NoRoom> {
        let slot = self
            .gtt_used
            .iter()
            .position(|&u| !u)
            .ok_or(NoRoom::GttFull {
                capacity: self.capacity(),
            })?;
        let vram_base = (1..)
            .map(|k| k * vram_size)
            .take_while(|&base| base + vram_size <= self.vram_size)
            .find(|&base| {
                base >= RESERVED_VRAM
                    && self
                        .vram_used
                        .iter()
                        .all(|&(b, s)| base + vram_size <= b || b + s <= base)
            })
            .ok_or_else(|| NoRoom::VramFull {
                wanted: vram_size,
                used: self.vram_used.iter().map(|&(_, s)| s).sum(),
                total: self.vram_size,
                users: self.vram_used.len(),
            })?;
        self.gtt_used[slot] = true;
        self.vram_used.push((vram_base, vram_size));
        Ok(SliceLayout {
            gtt_base: RESERVED_GTT_ENTRIES + slot as u32 * VGPU_GTT_ENTRIES,
            gtt_entries: VGPU_GTT_ENTRIES,
            vram_base,
            vram_size,
            scratch: SCRATCH_PAGE,
        })
    }

    pub fn free(&mut self, layout: &SliceLayout) {
        let slot = ((layout.gtt_base - RESERVED_GTT_ENTRIES) / VGPU_GTT_ENTRIES) as usize;
        self.gtt_used[slot] = false;
        self.vram_used
            .retain(|&(b, s)| (b, s) != (layout.vram_base, layout.vram_size));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn slices_never_overlap_and_are_reused() {
        let mut s = Slices::new(RESERVED_GTT_ENTRIES + 3 * VGPU_GTT_ENTRIES, 256 * MIB);
        let a = s.alloc(64 * MIB).unwrap();
        let b = s.alloc(32 * MIB).unwrap();
        let c = s.alloc(64 * MIB).unwrap();
        assert_eq!(
            (a.vram_base, b.vram_base, c.vram_base),
            (64 * MIB, 32 * MIB, 128 * MIB)
        );
        assert_eq!(
            [a.gtt_base, b.gtt_base, c.gtt_base],
            [1024, 1024 + 32768, 1024 + 65536]
        );
        let err = s.alloc(MIB).unwrap_err();
        assert_eq!(err, NoRoom::GttFull { capacity: 3 });
        assert_eq!(
            err.to_string(),
            "the GPU's GTT holds 3 vGPUs and all are in use"
        );
        s.free(&b);
        assert_eq!(s.in_use(), 2);
        let d = s.alloc(16 * MIB).unwrap();
        assert_eq!((d.gtt_base, d.vram_base), (b.gtt_base, 16 * MIB));
    }

    #[test]
    fn vram_exhaustion_is_explained() {
        let mut s = Slices::new(RESERVED_GTT_ENTRIES + 3 * VGPU_GTT_ENTRIES, 128 * MIB);
        s.alloc(64 * MIB).unwrap();
        let err = s.alloc(64 * MIB).unwrap_err().to_string();
        assert!(err.contains("no free 67108864 (64 MiB) slice"), "{err}");
        // The reserved area is never handed out: the first slice of a
        // private GPU sits at its size.
        let mut p = Slices::new(RESERVED_GTT_ENTRIES + VGPU_GTT_ENTRIES, 2 * MIB);
        assert_eq!(p.alloc(MIB).unwrap().vram_base, MIB);
    }
}

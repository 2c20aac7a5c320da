//! Which parts of the physical GPU belong to which vGPU: GTT slices of the
//! vGPU's graphics space, VRAM slices aligned to their own (power-of-two)
//! size, both above the area the mediator keeps for itself.

use crate::error::NoRoom;
use crate::shadow::SliceLayout;

/// GTT entries of a vGPU by default: 128 MiB of graphics address space.
pub const VGPU_GTT_ENTRIES: u32 = 32768;
/// Physical GTT entries kept for the mediator (its ring), before any slice.
pub const RESERVED_GTT_ENTRIES: u32 = 1024;
/// Physical VRAM kept for the mediator (scratch page, ring), before any slice.
pub const RESERVED_VRAM: u64 = 1 << 20;
/// Where the scratch page sits in physical VRAM.
pub const SCRATCH_PAGE: u64 = 0;

#[derive(Debug)]
pub struct Slices {
    gtt_entries: u32,
    /// `(base, entries)` of every GTT slice handed out.
    gtt_used: Vec<(u32, u32)>,
    /// `(base, size)` of every VRAM slice handed out.
    vram_used: Vec<(u64, u64)>,
    vram_size: u64,
}

impl Slices {
    pub fn new(gtt_entries: u32, vram_size: u64) -> Slices {
        Slices {
            gtt_entries,
            gtt_used: Vec::new(),
            vram_used: Vec::new(),
            vram_size,
        }
    }

    /// How many vGPUs are attached.
    pub fn in_use(&self) -> usize {
        self.gtt_used.len()
    }

    /// How many vGPUs fit in the GTT: of the first one's graphics space,
    /// or the default's while there is none.
    pub fn capacity(&self) -> usize {
        let entries = self.gtt_used.first().map_or(VGPU_GTT_ENTRIES, |&(_, n)| n);
        self.capacity_for(entries)
    }

    fn capacity_for(&self, entries: u32) -> usize {
        (self.gtt_entries.saturating_sub(RESERVED_GTT_ENTRIES) / entries) as usize
    }

    /// A GTT slice of `gtt_entries` (> 0) and a `vram_size` VRAM slice, or
    /// why there is no room.
    pub fn alloc(&mut self, gtt_entries: u32, vram_size: u64) -> Result<SliceLayout, NoRoom> {
        if self.capacity_for(gtt_entries) == 0 {
            return Err(NoRoom::GttTooSmall {
                available: self.gtt_entries.saturating_sub(RESERVED_GTT_ENTRIES),
                wanted: gtt_entries,
            });
        }
        let gtt_base = (0..)
            .map(|k| RESERVED_GTT_ENTRIES + k * gtt_entries)
            .take_while(|&base| base + gtt_entries <= self.gtt_entries)
            .find(|&base| {
                self.gtt_used
                    .iter()
                    .all(|&(b, n)| base + gtt_entries <= b || b + n <= base)
            })
            .ok_or(NoRoom::GttFull {
                capacity: self.capacity_for(gtt_entries),
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
        self.gtt_used.push((gtt_base, gtt_entries));
        self.vram_used.push((vram_base, vram_size));
        Ok(SliceLayout {
            gtt_base,
            gtt_entries,
            vram_base,
            vram_size,
            scratch: SCRATCH_PAGE,
        })
    }

    pub fn free(&mut self, layout: &SliceLayout) {
        self.gtt_used
            .retain(|&(b, n)| (b, n) != (layout.gtt_base, layout.gtt_entries));
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
        let a = s.alloc(VGPU_GTT_ENTRIES, 64 * MIB).unwrap();
        let b = s.alloc(VGPU_GTT_ENTRIES, 32 * MIB).unwrap();
        let c = s.alloc(VGPU_GTT_ENTRIES, 64 * MIB).unwrap();
        assert_eq!(
            (a.vram_base, b.vram_base, c.vram_base),
            (64 * MIB, 32 * MIB, 128 * MIB)
        );
        assert_eq!(
            [a.gtt_base, b.gtt_base, c.gtt_base],
            [1024, 1024 + 32768, 1024 + 65536]
        );
        let err = s.alloc(VGPU_GTT_ENTRIES, MIB).unwrap_err();
        assert_eq!(err, NoRoom::GttFull { capacity: 3 });
        assert_eq!(
            err.to_string(),
            "the GPU's GTT holds 3 vGPUs and all are in use"
        );
        s.free(&b);
        assert_eq!(s.in_use(), 2);
        let d = s.alloc(VGPU_GTT_ENTRIES, 16 * MIB).unwrap();
        assert_eq!((d.gtt_base, d.vram_base), (b.gtt_base, 16 * MIB));
    }

    /// Graphics spaces of any size share the GTT; the room is counted in
    /// slices of the size asked for.
    #[test]
    fn slices_of_other_graphics_space_sizes_fit_between() {
        let mut s = Slices::new(32768, 16 * MIB);
        let small = 4096;
        let slices: Vec<_> = (0..7).map(|_| s.alloc(small, MIB).unwrap()).collect();
        assert_eq!(slices[6].gtt_base, RESERVED_GTT_ENTRIES + 6 * small);
        assert_eq!(s.capacity(), 7);
        assert_eq!(s.alloc(small, MIB), Err(NoRoom::GttFull { capacity: 7 }));
        s.free(&slices[2]);
        assert_eq!(
            s.alloc(2 * small, MIB),
            Err(NoRoom::GttFull { capacity: 3 }),
            "one free slice of 4096 does not hold 8192"
        );
        assert_eq!(s.alloc(small, MIB).unwrap().gtt_base, slices[2].gtt_base);
        // The default graphics space does not fit a VF's 32768 entries.
        let mut vf = Slices::new(32768, 16 * MIB);
        assert_eq!(vf.capacity(), 0);
        assert_eq!(
            vf.alloc(VGPU_GTT_ENTRIES, MIB).unwrap_err().to_string(),
            "the GPU's GTT has 31744 entries for vGPUs and gfx-size 134217728 (128 MiB) \
             needs 32768: a smaller gfx-size fits"
        );
    }

    #[test]
    fn vram_exhaustion_is_explained() {
        let mut s = Slices::new(RESERVED_GTT_ENTRIES + 3 * VGPU_GTT_ENTRIES, 128 * MIB);
        s.alloc(VGPU_GTT_ENTRIES, 64 * MIB).unwrap();
        let err = s.alloc(VGPU_GTT_ENTRIES, 64 * MIB).unwrap_err().to_string();
        assert!(err.contains("no free 67108864 (64 MiB) slice"), "{err}");
        // The reserved area is never handed out: the first slice of a
        // private GPU sits at its size.
        let mut p = Slices::new(RESERVED_GTT_ENTRIES + VGPU_GTT_ENTRIES, 2 * MIB);
        assert_eq!(p.alloc(VGPU_GTT_ENTRIES, MIB).unwrap().vram_base, MIB);
    }
}

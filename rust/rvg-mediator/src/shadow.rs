//! GTT shadowing: the guest's GTT as it wrote it, and the entries the GPU
//! really uses, written into the vGPU's slice of the physical GTT.
//!
//! Every guest entry is validated before it is shadowed:
//! - VALID clear: unmapped, the shadow points at the scratch page;
//! - reserved bits set: rejected;
//! - LOCAL: the page must lie inside the vGPU's VRAM slice, and is relocated
//!   to where that slice sits in physical VRAM;
//! - system memory: the page must be guest RAM (not MMIO, ROM, a device BAR
//!   or nothing), and is translated to its DMA address through the pin cache.
//!
//! A rejected entry maps the scratch page too, is counted, and is reported
//! to the guest as a GTT fault by the caller.

use std::io;

use rustc_hash::FxHashMap;
use rvg_model::gtt::{GttEntry, PAGE_MASK};
use rvg_model::regs::fault;

use crate::guest_mem::GuestMemory;
use crate::pin_cache::{PinCache, PinError};

/// Where a vGPU lives on the physical GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceLayout {
    /// Physical GTT index of the vGPU's entry 0.
    pub gtt_base: u32,
    pub gtt_entries: u32,
    /// Physical VRAM offset of the vGPU's VRAM offset 0.
    pub vram_base: u64,
    pub vram_size: u64,
    /// Physical VRAM offset of the scratch page, outside every slice.
    pub scratch: u64,
}

impl SliceLayout {
    /// The vGPU's graphics address space in bytes: what its GTT maps.
    pub fn gfx_space(&self) -> u64 {
        u64::from(self.gtt_entries) << rvg_model::gtt::PAGE_SHIFT
    }
}

impl SliceLayout {
    /// What every entry that maps nothing points at.
    pub fn scratch_entry(&self) -> GttEntry {
        GttEntry::invalid_to(self.scratch, true)
    }
}

/// The physical GTT, as the shadow writes it.
pub trait PhysGtt {
    /// Write physical GTT entry `index`.
    fn write(&mut self, index: u32, entry: GttEntry) -> io::Result<()>;
    /// Read it back (introspection).
    fn read(&mut self, index: u32) -> io::Result<GttEntry>;
}

/// What a guest entry currently shadows as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// VALID clear (or never written).
    Unmapped,
    /// A page of the VRAM slice, `offset` bytes into it.
    Local { offset: u64 },
    /// A guest RAM page, pinned at `gpa`.
    System { gpa: u64 },
    /// Refused; the reason is a `FAULT_REASON` code.
    Rejected(u32),
}

/// Result of a guest write to the GTT window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Half an entry: kept in the guest copy, shadow unchanged until the
    /// other half arrives.
    Pending,
    Shadowed(GttEntry),
    /// Refused with this `FAULT_REASON`; the scratch page is mapped.
    Rejected(u32),
}

/// A guest access the GTT window refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GttAccessError {
    /// Past the vGPU's entries.
    #[error("GTT entry {index} is beyond the GTT")]
    OutOfRange { index: u64 },
    /// Not an aligned 4- or 8-byte access.
    #[error(
        "{size}-byte GTT access at byte {within} of an entry: entries take aligned 4- or 8-byte accesses"
    )]
    BadAccess { within: u64, size: u32 },
}

/// A guest GTT write that did not take effect as written.
#[derive(Debug, thiserror::Error)]
pub enum GttWriteError {
    /// The guest's access itself is refused: nothing changed.
    #[error(transparent)]
    Access(#[from] GttAccessError),
    /// The guest's value is kept, but its shadow could not be written to
    /// the physical GTT (a host-side failure).
    #[error("writing shadow GTT entry {index}: {source}")]
    Shadow { index: u32, source: io::Error },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShadowStats {
    pub pinned_pages: usize,
    pub local: u32,
    pub system: u32,
    pub unmapped: u32,
    pub rejected: u32,
    pub rejected_total: u64,
    pub invalidated_total: u64,
    pub pin_hits: u64,
    pub pin_misses: u64,
}

pub struct GttShadow {
    layout: SliceLayout,
    guest: Vec<u64>,
    state: Vec<EntryState>,
    /// Entries with one half written since the last rebuild: bit 0 low, bit 1 high.
    partial: FxHashMap<u32, u8>,
    pins: PinCache,
    rejected_total: u64,
    invalidated_total: u64,
    /// Whether the GPU may reach guest RAM: the vGPU's Bus Master Enable.
    /// While it is off, system entries keep their pins and guest values
    /// but their shadows point at the scratch page.
    system_access: bool,
    /// Counts every change to what the GTT maps, for the display.
    generation: u64,
}

impl GttShadow {
    pub fn new(layout: SliceLayout) -> GttShadow {
        GttShadow {
            guest: vec![0; layout.gtt_entries as usize],
            state: vec![EntryState::Unmapped; layout.gtt_entries as usize],
            partial: FxHashMap::default(),
            pins: PinCache::default(),
            rejected_total: 0,
            invalidated_total: 0,
            system_access: false,
            generation: 0,
            layout,
        }
    }

    /// Moves on with every guest write and every change to what the
    /// shadows map (reset, memory removal, Bus Master Enable).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Let the GPU reach guest RAM through system entries, or stop it:
    /// every system entry's shadow is rewritten (its translation, or the
    /// scratch page). Nothing is re-validated or re-pinned.
    pub fn set_system_access(&mut self, on: bool, phys: &mut dyn PhysGtt) -> io::Result<()> {
        if self.system_access == on {
            return Ok(());
        }
        self.system_access = on;
        self.generation += 1;
        for i in 0..self.layout.gtt_entries {
            if let EntryState::System { gpa } = self.state[i as usize] {
                let iova = self.pins.iova(gpa).expect("a system entry holds a pin");
                phys.write(self.layout.gtt_base + i, self.system_entry(iova))?;
            }
        }
        Ok(())
    }

    pub fn system_access(&self) -> bool {
        self.system_access
    }

    /// The shadow of a system entry whose page the GPU reaches at `iova`:
    /// the scratch page while guest RAM is out of reach.
    fn system_entry(&self, iova: u64) -> GttEntry {
        if self.system_access {
            GttEntry::new(iova, false)
        } else {
            self.layout.scratch_entry()
        }
    }

    pub fn layout(&self) -> &SliceLayout {
        &self.layout
    }

    /// Point every physical entry of the slice at the scratch page.
    pub fn fill_scratch(&self, phys: &mut dyn PhysGtt) -> io::Result<()> {
        let scratch = self.layout.scratch_entry();
        (0..self.layout.gtt_entries).try_for_each(|i| phys.write(self.layout.gtt_base + i, scratch))
    }

    fn check(&self, index: u64, within: u64, size: u32) -> Result<u32, GttAccessError> {
        if index >= u64::from(self.layout.gtt_entries) {
            return Err(GttAccessError::OutOfRange { index });
        }
        if !matches!((within, size), (0, 8) | (0, 4) | (4, 4)) {
            return Err(GttAccessError::BadAccess { within, size });
        }
        Ok(index as u32)
    }

    /// Guest read: what the guest wrote.
    pub fn read(&self, index: u64, within: u64, size: u32) -> Result<u64, GttAccessError> {
        let i = self.check(index, within, size)?;
        let v = self.guest[i as usize];
        Ok(if size == 8 {
            v
        } else {
            (v >> (within * 8)) & 0xffff_ffff
        })
    }

    /// Guest write to entry `index`, byte `within`, `size` bytes.
    #[inline]
    pub fn write(
        &mut self,
        index: u64,
        within: u64,
        value: u64,
        size: u32,
        mem: &GuestMemory,
        phys: &mut dyn PhysGtt,
    ) -> Result<WriteOutcome, GttWriteError> {
        let i = self.check(index, within, size)?;
        self.generation += 1;
        let slot = &mut self.guest[i as usize];
        if size == 8 {
            *slot = value;
            if !self.partial.is_empty() {
                self.partial.remove(&i);
            }
        } else {
            let shift = within * 8;
            *slot = (*slot & !(0xffff_ffffu64 << shift)) | ((value & 0xffff_ffff) << shift);
            let halves = self.partial.entry(i).or_insert(0);
            *halves |= if within == 0 { 1 } else { 2 };
            if *halves != 3 {
                return Ok(WriteOutcome::Pending);
            }
            self.partial.remove(&i);
        }
        self.rebuild(i, mem, phys)
            .map_err(|source| GttWriteError::Shadow { index: i, source })
    }

    /// Validate the guest's entry `i` and write its shadow.
    #[inline(always)]
    fn rebuild(
        &mut self,
        i: u32,
        mem: &GuestMemory,
        phys: &mut dyn PhysGtt,
    ) -> io::Result<WriteOutcome> {
        let entry = GttEntry(self.guest[i as usize]);
        // Pin the new page before releasing the old one, so rewriting an
        // entry with the page it already maps is a cache hit.
        let (state, shadow) = self.translate(entry, mem);
        let old = std::mem::replace(&mut self.state[i as usize], state);
        if let EntryState::System { gpa } = old {
            self.pins.unpin(gpa);
        }
        // The physical entry follows from the state (and from system
        // access, whose change rewrites every system entry): a rewrite
        // with the same meaning, such as clearing a clear entry, leaves it.
        if state != old {
            phys.write(self.layout.gtt_base + i, shadow)?;
        }
        Ok(match state {
            EntryState::Rejected(reason) => {
                self.rejected_total += 1;
                WriteOutcome::Rejected(reason)
            }
            _ => WriteOutcome::Shadowed(shadow),
        })
    }

    fn translate(&mut self, entry: GttEntry, mem: &GuestMemory) -> (EntryState, GttEntry) {
        let scratch = self.layout.scratch_entry();
        if !entry.valid() {
            return (EntryState::Unmapped, scratch);
        }
        if entry.reserved_bits() != 0 {
            return (EntryState::Rejected(fault::GTT_RESERVED_BITS), scratch);
        }
        let addr = entry.addr();
        if entry.local() {
            if addr >= self.layout.vram_size {
                return (EntryState::Rejected(fault::GTT_OUTSIDE_VRAM), scratch);
            }
            return (
                EntryState::Local { offset: addr },
                GttEntry::new(self.layout.vram_base + addr, true),
            );
        }
        match self.pins.pin(addr, mem) {
            Ok(iova) => (
                EntryState::System {
                    gpa: addr & PAGE_MASK,
                },
                self.system_entry(iova),
            ),
            Err(PinError::NotRam(_)) => (EntryState::Rejected(fault::GTT_NOT_GUEST_RAM), scratch),
        }
    }

    /// Guest RAM `[gpa, gpa + size)` went away: every entry that maps it
    /// is re-pointed at the scratch page and its pin dropped, whatever the
    /// refcount. Returns the entries affected.
    pub fn invalidate(
        &mut self,
        gpa: u64,
        size: u64,
        phys: &mut dyn PhysGtt,
    ) -> io::Result<Vec<u32>> {
        self.generation += 1;
        let end = gpa.saturating_add(size);
        let hit: Vec<u32> = (0..self.layout.gtt_entries)
            .filter(|&i| matches!(self.state[i as usize], EntryState::System { gpa: p } if (gpa..end).contains(&p)))
            .collect();
        self.pins.invalidate(gpa, size);
        let scratch = self.layout.scratch_entry();
        for &i in &hit {
            self.state[i as usize] = EntryState::Rejected(fault::GTT_RAM_REMOVED);
            phys.write(self.layout.gtt_base + i, scratch)?;
        }
        self.invalidated_total += hit.len() as u64;
        Ok(hit)
    }

    /// Power-on: guest GTT zero, every pin released, the slice on scratch.
    pub fn reset(&mut self, phys: &mut dyn PhysGtt) -> io::Result<()> {
        self.generation += 1;
        self.guest.fill(0);
        self.state.fill(EntryState::Unmapped);
        self.partial.clear();
        self.pins.clear();
        self.fill_scratch(phys)
    }

    /// The guest's entries, and those with one half written since:
    /// (index, halves), bit 0 the low half, in index order.
    pub fn guest_entries(&self) -> (Vec<u64>, Vec<(u32, u8)>) {
        let mut partial: Vec<(u32, u8)> = self.partial.iter().map(|(&i, &h)| (i, h)).collect();
        partial.sort_unstable();
        (self.guest.clone(), partial)
    }

    /// Take the guest's entries from a migration stream: each whole entry
    /// validated, pinned and shadowed as if the guest had just written it
    /// (a rejected one maps the scratch page and raises nothing: the
    /// stream carries the fault registers). A half-written entry keeps its
    /// value and maps the scratch page until its other half is written.
    /// `guest` has an entry for every one of the slice, `partial` indices
    /// inside it.
    pub fn restore(
        &mut self,
        guest: &[u64],
        partial: &[(u32, u8)],
        mem: &GuestMemory,
        phys: &mut dyn PhysGtt,
    ) -> io::Result<()> {
        assert_eq!(guest.len(), self.guest.len(), "one value per entry");
        self.generation += 1;
        self.guest.copy_from_slice(guest);
        self.partial = partial.iter().copied().collect();
        for i in 0..self.layout.gtt_entries {
            if !self.partial.contains_key(&i) {
                self.rebuild(i, mem, phys)?;
                continue;
            }
            let old = std::mem::replace(&mut self.state[i as usize], EntryState::Unmapped);
            if let EntryState::System { gpa } = old {
                self.pins.unpin(gpa);
            }
            if old != EntryState::Unmapped {
                phys.write(self.layout.gtt_base + i, self.layout.scratch_entry())?;
            }
        }
        Ok(())
    }

    pub fn entry(&self, index: u32) -> Option<(u64, EntryState)> {
        Some((*self.guest.get(index as usize)?, self.state[index as usize]))
    }

    pub fn stats(&self) -> ShadowStats {
        let mut s = ShadowStats {
            pinned_pages: self.pins.pinned_pages(),
            rejected_total: self.rejected_total,
            invalidated_total: self.invalidated_total,
            pin_hits: self.pins.hits(),
            pin_misses: self.pins.misses(),
            ..Default::default()
        };
        for st in &self.state {
            match st {
                EntryState::Unmapped => s.unmapped += 1,
                EntryState::Local { .. } => s.local += 1,
                EntryState::System { .. } => s.system += 1,
                EntryState::Rejected(_) => s.rejected += 1,
            }
        }
        s
    }

    pub fn pin_refs(&self, gpa: u64) -> u32 {
        self.pins.refs(gpa)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::guest_mem::{GuestRange, MemKind};

    /// A physical GTT in a vector, as the GPU would hold it, and how many
    /// entries were written to it.
    #[derive(Default)]
    pub struct VecGtt(pub Vec<u64>, pub usize);

    impl PhysGtt for VecGtt {
        fn write(&mut self, index: u32, entry: GttEntry) -> io::Result<()> {
            let i = index as usize;
            if i >= self.0.len() {
                self.0.resize(i + 1, 0);
            }
            self.0[i] = entry.0;
            self.1 += 1;
            Ok(())
        }
        fn read(&mut self, index: u32) -> io::Result<GttEntry> {
            Ok(self.get(index))
        }
    }

    impl VecGtt {
        pub fn get(&self, index: u32) -> GttEntry {
            GttEntry(self.0.get(index as usize).copied().unwrap_or(0))
        }
    }

    pub const LAYOUT: SliceLayout = SliceLayout {
        gtt_base: 1024,
        gtt_entries: 256,
        vram_base: 16 << 20,
        vram_size: 16 << 20,
        scratch: 0,
    };

    pub fn mem() -> GuestMemory {
        let mut m = GuestMemory::default();
        let mut add = |gpa, size, kind, iova| {
            m.add(GuestRange {
                gpa,
                size,
                host: (kind == MemKind::Ram).then(|| crate::guest_mem::stand_in(size)),
                kind,
                iova,
            })
            .unwrap()
        };
        add(0, 0xa_0000, MemKind::Ram, 0);
        add(0x10_0000, 0x100_0000, MemKind::Ram, 0x10_0000);
        add(0xfe00_0000, 0x100_0000, MemKind::Device, 0);
        add(0xfffc_0000, 0x4_0000, MemKind::Rom, 0);
        m
    }

    /// A shadow with Bus Master on, its slice on scratch.
    fn setup() -> (GttShadow, GuestMemory, VecGtt) {
        let mut s = GttShadow::new(LAYOUT);
        let mut phys = VecGtt::default();
        s.fill_scratch(&mut phys).unwrap();
        s.set_system_access(true, &mut phys).unwrap();
        (s, mem(), phys)
    }

    #[test]
    fn without_system_access_system_entries_shadow_scratch() {
        let (mut s, m, mut p) = setup();
        let scratch = LAYOUT.scratch_entry();
        put(&mut s, &m, &mut p, 1, 0x20_0000 | GttEntry::VALID);
        put(
            &mut s,
            &m,
            &mut p,
            2,
            0x3000 | GttEntry::LOCAL | GttEntry::VALID,
        );
        let system = p.get(LAYOUT.gtt_base + 1);
        let local = p.get(LAYOUT.gtt_base + 2);
        assert_ne!(system, scratch);
        // Bus mastering off: system entries go to scratch, local ones stay.
        s.set_system_access(false, &mut p).unwrap();
        assert_eq!(p.get(LAYOUT.gtt_base + 1), scratch);
        assert_eq!(p.get(LAYOUT.gtt_base + 2), local);
        // Written while off: validated and pinned, but shadowed on scratch.
        put(&mut s, &m, &mut p, 3, 0x20_0000 | GttEntry::VALID);
        assert_eq!(p.get(LAYOUT.gtt_base + 3), scratch);
        assert_eq!(s.entry(3).unwrap().1, EntryState::System { gpa: 0x20_0000 });
        assert_eq!(s.pin_refs(0x20_0000), 2);
        // Back on: both map the page again.
        s.set_system_access(true, &mut p).unwrap();
        assert_eq!(p.get(LAYOUT.gtt_base + 1), system);
        assert_eq!(p.get(LAYOUT.gtt_base + 3), system);
    }

    fn put(
        s: &mut GttShadow,
        m: &GuestMemory,
        p: &mut VecGtt,
        index: u64,
        value: u64,
    ) -> WriteOutcome {
        s.write(index, 0, value, 8, m, p).unwrap()
    }

    #[test]
    fn local_entries_are_relocated_into_the_slice() {
        let (mut s, m, mut p) = setup();
        let out = put(
            &mut s,
            &m,
            &mut p,
            3,
            0x5000 | GttEntry::LOCAL | GttEntry::VALID,
        );
        let expect = GttEntry::new((16 << 20) + 0x5000, true);
        assert_eq!(out, WriteOutcome::Shadowed(expect));
        assert_eq!(p.0[1024 + 3], expect.0, "written at slice_base + index");
        assert_eq!(s.read(3, 0, 8), Ok(0x5003), "guest reads its own value");
    }

    #[test]
    fn a_rewrite_with_the_same_meaning_leaves_the_physical_entry() {
        let (mut s, m, mut p) = setup();
        let mut writes = |s: &mut GttShadow, value| {
            let before = p.1;
            put(s, &m, &mut p, 7, value);
            p.1 - before
        };
        let local = 0x5000 | GttEntry::LOCAL | GttEntry::VALID;
        let system = 0x20_0000 | GttEntry::VALID;
        let counts: Vec<_> = [0, 0, local, local, system, system]
            .into_iter()
            .map(|value| writes(&mut s, value))
            .collect();
        assert_eq!(counts, [0, 0, 1, 0, 1, 0]);
        assert_eq!(s.pin_refs(0x20_0000), 1, "the same page, pinned once");
        assert_eq!(writes(&mut s, 0x7000 | GttEntry::VALID), 1);
        assert_eq!(writes(&mut s, 0), 1);
        assert_eq!(p.0[1024 + 7], LAYOUT.scratch_entry().0);
    }

    #[test]
    fn system_entries_translate_through_the_pin_cache() {
        let (mut s, m, mut p) = setup();
        put(&mut s, &m, &mut p, 0, 0x20_0000 | GttEntry::VALID);
        put(&mut s, &m, &mut p, 1, 0x20_0000 | GttEntry::VALID);
        assert_eq!(p.0[1024], GttEntry::new(0x20_0000, false).0);
        assert_eq!(s.pin_refs(0x20_0000), 2);
        // Rewriting entry 0 with another page releases one reference.
        put(&mut s, &m, &mut p, 0, 0x30_0000 | GttEntry::VALID);
        assert_eq!(s.pin_refs(0x20_0000), 1);
        put(&mut s, &m, &mut p, 1, 0);
        assert_eq!(s.pin_refs(0x20_0000), 0);
        assert_eq!(s.stats().pinned_pages, 1);
        assert_eq!(p.0[1025], LAYOUT.scratch_entry().0);
    }

    #[test]
    fn every_bad_entry_kind_is_rejected_onto_scratch() {
        let (mut s, m, mut p) = setup();
        let v = GttEntry::VALID;
        let cases = [
            (0x20_0000 | v | 0x4, fault::GTT_RESERVED_BITS),
            (0x20_0000 | v | 0x800, fault::GTT_RESERVED_BITS),
            ((16 << 20) | v | GttEntry::LOCAL, fault::GTT_OUTSIDE_VRAM),
            (!0xffc, fault::GTT_OUTSIDE_VRAM),
            (0xfe00_0000 | v, fault::GTT_NOT_GUEST_RAM), // a device BAR
            (0xfffc_0000 | v, fault::GTT_NOT_GUEST_RAM), // ROM
            (0xa_0000 | v, fault::GTT_NOT_GUEST_RAM),    // a hole
            (0x7fff_ffff_f000 | v, fault::GTT_NOT_GUEST_RAM),
        ];
        for (i, (value, reason)) in cases.into_iter().enumerate() {
            assert_eq!(
                put(&mut s, &m, &mut p, i as u64, value),
                WriteOutcome::Rejected(reason),
                "{value:#x}"
            );
            assert_eq!(p.0[1024 + i], LAYOUT.scratch_entry().0);
        }
        let st = s.stats();
        assert_eq!((st.rejected, st.rejected_total, st.pinned_pages), (8, 8, 0));
    }

    #[test]
    fn half_writes_shadow_only_when_complete() {
        let (mut s, m, mut p) = setup();
        let value: u64 = 0x1_0000_0000 | 0x4000 | GttEntry::VALID;
        let mut m2 = m;
        m2.add(GuestRange {
            gpa: 0x1_0000_0000,
            size: 0x10_0000,
            host: Some(crate::guest_mem::stand_in(0x10_0000)),
            kind: MemKind::Ram,
            iova: 0x1_0000_0000,
        })
        .unwrap();
        let w = |s: &mut GttShadow, p: &mut VecGtt, within, v| {
            s.write(7, within, v, 4, &m2, p).unwrap()
        };
        assert_eq!(
            w(&mut s, &mut p, 0, value & 0xffff_ffff),
            WriteOutcome::Pending
        );
        assert_eq!(s.read(7, 0, 8), Ok(0x4001));
        assert_eq!(
            p.0[1024 + 7],
            LAYOUT.scratch_entry().0,
            "shadow untouched by half an entry"
        );
        assert!(matches!(
            w(&mut s, &mut p, 4, value >> 32),
            WriteOutcome::Shadowed(_)
        ));
        assert_eq!(p.0[1024 + 7], GttEntry::new(0x1_0000_4000, false).0);
        // High half first works the same.
        assert_eq!(w(&mut s, &mut p, 4, 0), WriteOutcome::Pending);
        assert!(matches!(
            w(&mut s, &mut p, 0, 0x5001),
            WriteOutcome::Shadowed(_)
        ));
        assert_eq!(p.0[1024 + 7], GttEntry::new(0x5000, false).0);
    }

    #[test]
    fn bad_accesses_are_refused() {
        let (mut s, m, mut p) = setup();
        assert!(matches!(
            s.write(256, 0, 1, 8, &m, &mut p),
            Err(GttWriteError::Access(GttAccessError::OutOfRange {
                index: 256
            }))
        ));
        assert!(matches!(
            s.write(0, 2, 1, 2, &m, &mut p),
            Err(GttWriteError::Access(GttAccessError::BadAccess { .. }))
        ));
        assert!(matches!(
            s.write(0, 4, 1, 8, &m, &mut p),
            Err(GttWriteError::Access(GttAccessError::BadAccess { .. }))
        ));
        assert!(matches!(
            s.read(0, 1, 1),
            Err(GttAccessError::BadAccess { .. })
        ));
        assert_eq!(p.0.len(), 1024 + 256, "nothing written outside the slice");
    }

    #[test]
    fn ram_removal_invalidates_every_user_regardless_of_refcount() {
        let (mut s, m, mut p) = setup();
        for i in 0..4 {
            put(&mut s, &m, &mut p, i, 0x40_0000 | GttEntry::VALID);
        }
        put(&mut s, &m, &mut p, 4, 0x80_0000 | GttEntry::VALID);
        let hit = s.invalidate(0x40_0000, 0x1000, &mut p).unwrap();
        assert_eq!(hit, vec![0, 1, 2, 3]);
        assert!((0..4).all(|i| p.0[1024 + i] == LAYOUT.scratch_entry().0));
        assert_eq!(
            s.entry(0).unwrap().1,
            EntryState::Rejected(fault::GTT_RAM_REMOVED)
        );
        assert_eq!(s.pin_refs(0x40_0000), 0);
        assert_eq!(s.pin_refs(0x80_0000), 1);
        assert_eq!(s.read(0, 0, 8), Ok(0x40_0001), "guest copy kept");
        s.reset(&mut p).unwrap();
        assert_eq!(s.stats().pinned_pages, 0);
        assert_eq!(s.read(4, 0, 8), Ok(0));
        assert!((0..256).all(|i| p.0[1024 + i] == LAYOUT.scratch_entry().0));
    }
}

//! The GTT write path: arbitrary guest writes and reads of the GTT window,
//! Bus Master Enable flips, guest RAM going away and coming back, resets,
//! through `GttShadow` against a physical GTT in a vector, all checked
//! against a simple model after every step:
//! - the guest reads back what it wrote;
//! - a complete entry is validated as the model says (unmapped, local,
//!   system, or rejected for the model's reason), a half-written one keeps
//!   its previous shadow;
//! - every shadow entry is the scratch page, a page of the VRAM slice, or
//!   the DMA address of guest RAM (while Bus Master is on); nothing is
//!   written outside the vGPU's slice of the physical GTT;
//! - the pin cache holds exactly one reference per system entry.
#![no_main]

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rvg_mediator::guest_mem::{GuestMemory, GuestRange, MemKind};
use rvg_mediator::shadow::{EntryState, GttShadow, PhysGtt, SliceLayout, WriteOutcome};
use rvg_model::gtt::{GttEntry, PAGE_MASK};
use rvg_model::regs::fault;
use rvg_vfio::HostRange;

const LAYOUT: SliceLayout = SliceLayout {
    gtt_base: 1024,
    gtt_entries: 64,
    vram_base: 16 << 20,
    vram_size: 16 << 20,
    scratch: 0,
};

/// A physical GTT in a vector; counts writes outside the slice.
struct VecGtt {
    entries: Vec<u64>,
    outside: usize,
}

impl PhysGtt for VecGtt {
    fn write(&mut self, index: u32, entry: GttEntry) -> io::Result<()> {
        match index
            .checked_sub(LAYOUT.gtt_base)
            .filter(|&i| i < LAYOUT.gtt_entries)
        {
            Some(i) => self.entries[i as usize] = entry.0,
            None => self.outside += 1,
        }
        Ok(())
    }
    fn read(&mut self, index: u32) -> io::Result<GttEntry> {
        Ok(GttEntry(self.entries[(index - LAYOUT.gtt_base) as usize]))
    }
}

/// The guest's memory map: (gpa, size, kind, iova).
const RANGES: [(u64, u64, MemKind, u64); 5] = [
    (0, 0xa_0000, MemKind::Ram, 0x8000_0000),
    (0x10_0000, 0x10_0000, MemKind::Ram, 0x10_0000),
    (0x1_0000_0000, 0x1_0000, MemKind::Ram, 0x2_0000_0000),
    (0xfe00_0000, 0x100_0000, MemKind::Device, 0),
    (0xfffc_0000, 0x4_0000, MemKind::Rom, 0),
];

fn range(i: usize) -> GuestRange {
    static HOST: OnceLock<Vec<Option<Arc<HostRange>>>> = OnceLock::new();
    let host = HOST.get_or_init(|| {
        RANGES
            .iter()
            .map(|&(_, size, kind, _)| {
                (kind == MemKind::Ram).then(|| Arc::new(HostRange::anonymous(size).unwrap()))
            })
            .collect()
    });
    let (gpa, size, kind, iova) = RANGES[i];
    GuestRange {
        gpa,
        size,
        host: host[i].clone(),
        kind,
        iova,
    }
}

#[derive(Debug, Arbitrary)]
enum Value {
    Raw(u64),
    /// A VRAM page (maybe past the slice), with these low bits.
    Local(u16, u16),
    /// A page of guest memory: one of RANGES, page and offset within.
    System(u8, u16, u16),
}

impl Value {
    fn get(&self) -> u64 {
        match *self {
            Value::Raw(v) => v,
            Value::Local(page, low) => {
                (u64::from(page) << 12) | u64::from(low & 0xfff) | GttEntry::LOCAL
            }
            Value::System(r, page, low) => {
                let (gpa, size, ..) = RANGES[r as usize % RANGES.len()];
                // Now and then a page just past the range.
                (gpa + (u64::from(page) << 12) % (size + 0x1000)) | u64::from(low & 0xfff)
            }
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    Write {
        index: u8,
        within: u8,
        value: Value,
        size: u8,
    },
    Read {
        index: u8,
        within: u8,
        size: u8,
    },
    BusMaster(bool),
    /// Guest RAM range `n` goes away (QEMU's memory listener), or back.
    Ram(u8),
    Reset,
}

/// What the model says entry `value` shadows as, in `mem`.
fn validate(value: u64, mem: &GuestMemory) -> EntryState {
    let addr = value & PAGE_MASK;
    if value & GttEntry::VALID == 0 {
        EntryState::Unmapped
    } else if value & GttEntry::RESERVED != 0 {
        EntryState::Rejected(fault::GTT_RESERVED_BITS)
    } else if value & GttEntry::LOCAL != 0 {
        if addr < LAYOUT.vram_size {
            EntryState::Local { offset: addr }
        } else {
            EntryState::Rejected(fault::GTT_OUTSIDE_VRAM)
        }
    } else {
        match mem.iter().find(|r| r.contains(addr)) {
            Some(r) if r.kind == MemKind::Ram => EntryState::System { gpa: addr },
            _ => EntryState::Rejected(fault::GTT_NOT_GUEST_RAM),
        }
    }
}

fn iova(gpa: u64) -> u64 {
    RANGES
        .iter()
        .find(|r| (r.0..r.0 + r.1).contains(&gpa))
        .map(|r| r.3 + gpa - r.0)
        .unwrap()
}

/// An op's index, byte and size as the GTT window sees them (bytes and
/// sizes up to 15, so misplaced and odd accesses come up often), and
/// whether the window accepts the access on `entries` entries: a whole
/// entry, or either half.
fn access(index: u8, within: u8, size: u8, entries: usize) -> (u64, u64, u32, bool) {
    let (index, within, size) = (
        u64::from(index),
        u64::from(within % 16),
        u32::from(size % 16),
    );
    let ok = index < entries as u64 && matches!((within, size), (0, 8) | (0, 4) | (4, 4));
    (index, within, size, ok)
}

fuzz_target!(|ops: Vec<Op>| {
    let n = LAYOUT.gtt_entries as usize;
    let mut mem = GuestMemory::default();
    let mut present = [true; RANGES.len()];
    for i in 0..RANGES.len() {
        mem.add(range(i)).unwrap();
    }
    let mut phys = VecGtt {
        entries: vec![0; n],
        outside: 0,
    };
    let mut s = GttShadow::new(LAYOUT);
    s.fill_scratch(&mut phys).unwrap();
    // The model: guest values, halves written, states, Bus Master.
    let mut guest = vec![0u64; n];
    let mut halves = vec![0u8; n];
    let mut state = vec![EntryState::Unmapped; n];
    let mut bus_master = false;
    let scratch = LAYOUT.scratch_entry().0;

    for op in ops.iter().take(256) {
        match *op {
            Op::Write {
                index,
                within,
                ref value,
                size,
            } => {
                let (index, within, size, ok) = access(index, within, size, n);
                let value = value.get();
                let before = phys.entries.clone();
                let out = s.write(index, within, value, size, &mem, &mut phys);
                if !ok {
                    assert!(out.is_err(), "{op:?} accepted");
                    assert_eq!(phys.entries, before, "a refused access changes nothing");
                    continue;
                }
                let out = out.expect("an accepted access");
                let i = index as usize;
                if size == 8 {
                    guest[i] = value;
                    halves[i] = 0;
                } else {
                    let shift = within * 8;
                    guest[i] =
                        (guest[i] & !(0xffff_ffff << shift)) | ((value & 0xffff_ffff) << shift);
                    halves[i] |= if within == 0 { 1 } else { 2 };
                    if halves[i] != 3 {
                        assert_eq!(out, WriteOutcome::Pending);
                        assert_eq!(phys.entries, before, "half an entry shadows nothing");
                        continue;
                    }
                    halves[i] = 0;
                }
                state[i] = validate(guest[i], &mem);
                match state[i] {
                    EntryState::Rejected(reason) => assert_eq!(out, WriteOutcome::Rejected(reason)),
                    _ => assert_eq!(out, WriteOutcome::Shadowed(GttEntry(phys.entries[i]))),
                }
            }
            Op::Read {
                index,
                within,
                size,
            } => {
                let (index, within, size, ok) = access(index, within, size, n);
                match s.read(index, within, size) {
                    Ok(v) => {
                        assert!(ok);
                        let g = guest[index as usize];
                        assert_eq!(
                            v,
                            if size == 8 {
                                g
                            } else {
                                (g >> (within * 8)) & 0xffff_ffff
                            }
                        );
                    }
                    Err(_) => assert!(!ok, "{op:?} refused"),
                }
            }
            Op::BusMaster(on) => {
                s.set_system_access(on, &mut phys).unwrap();
                bus_master = on;
            }
            Op::Ram(r) => {
                let r = r as usize % RANGES.len();
                let g = range(r);
                if present[r] {
                    let removed = mem.remove(g.gpa, g.size);
                    assert_eq!(removed.len(), 1);
                    let hit = s.invalidate(g.gpa, g.size, &mut phys).unwrap();
                    let mut expect = Vec::new();
                    for (i, st) in state.iter_mut().enumerate() {
                        if matches!(*st, EntryState::System { gpa } if g.contains(gpa)) {
                            *st = EntryState::Rejected(fault::GTT_RAM_REMOVED);
                            expect.push(i as u32);
                        }
                    }
                    assert_eq!(hit, expect);
                } else {
                    mem.add(g).unwrap();
                }
                present[r] = !present[r];
            }
            Op::Reset => {
                s.reset(&mut phys).unwrap();
                guest.fill(0);
                halves.fill(0);
                state.fill(EntryState::Unmapped);
            }
        }
        // After every step: the shadow as the model says.
        assert_eq!(phys.outside, 0, "a write outside the vGPU's slice");
        let mut refs: HashMap<u64, u32> = HashMap::new();
        for i in 0..n {
            assert_eq!(s.entry(i as u32), Some((guest[i], state[i])), "entry {i}");
            let p = phys.entries[i];
            match state[i] {
                EntryState::Unmapped | EntryState::Rejected(_) => assert_eq!(p, scratch),
                EntryState::Local { offset } => {
                    assert!(offset < LAYOUT.vram_size);
                    assert_eq!(p, GttEntry::new(LAYOUT.vram_base + offset, true).0);
                }
                EntryState::System { gpa } => {
                    *refs.entry(gpa).or_default() += 1;
                    let want = if bus_master {
                        GttEntry::new(iova(gpa), false).0
                    } else {
                        scratch
                    };
                    assert_eq!(p, want, "entry {i} of {gpa:#x}");
                }
            }
        }
        assert_eq!(
            s.stats().pinned_pages,
            refs.len(),
            "one pin per page in use"
        );
        for (gpa, r) in refs {
            assert_eq!(s.pin_refs(gpa), r, "pin of {gpa:#x}");
        }
    }
});

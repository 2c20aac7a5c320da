//! The command scanner over an arbitrary guest ring and batch: it never
//! panics, and every stream it accepts holds only commands that stay inside
//! the vGPU's relocated slice, no privileged or control command, and a
//! fence mark for each fence: the model check of the scanner's proptest
//! (`accepted_streams_stay_in_the_slice`), on inputs libFuzzer steers.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rvg_mediator::scan::{GuestGfx, Scanner};
use rvg_model::cmd::{self, Command};
use rvg_model::engine::{ring_ctl, EngineState};

const SPACE: u64 = 16 << 20;
const RELOC: u64 = 0x40_0000_0000;
const PAGE: u64 = 4096;

/// Guest graphics memory: zero pages but those written, and a hole of
/// pages the guest GTT leaves unmapped.
struct SparseGfx {
    pages: HashMap<u64, Box<[u8; PAGE as usize]>>,
    hole: std::ops::Range<u64>,
}

impl SparseGfx {
    fn put(&mut self, addr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let a = addr + i as u64;
            let page = self
                .pages
                .entry(a / PAGE)
                .or_insert_with(|| Box::new([0; PAGE as usize]));
            page[(a % PAGE) as usize] = *b;
        }
    }
}

impl GuestGfx for SparseGfx {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        let end = addr.checked_add(buf.len() as u64).ok_or(addr)?;
        if addr < self.hole.end && self.hole.start < end {
            return Err(addr.max(self.hole.start));
        }
        if end > SPACE {
            return Err(addr.max(SPACE));
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            *b = self
                .pages
                .get(&(a / PAGE))
                .map_or(0, |p| p[(a % PAGE) as usize]);
        }
        Ok(())
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Ring base, in pages (or anything, past 0xff00).
    base: u16,
    /// log2 of the ring size (or anything, when `raw_size`).
    size_log2: u8,
    raw_size: Option<u32>,
    head: u32,
    /// Tail: after the ring's commands, or this.
    tail: Option<u32>,
    hole: Option<(u8, u8)>,
    ring: Vec<u32>,
    /// Put at 0x8000 for BATCH_STARTs to find.
    batch: Vec<u32>,
}

fuzz_target!(|inp: Input| {
    let ring_base = if inp.base > 0xff00 {
        u64::from(inp.base) * 0x1_0001
    } else {
        u64::from(inp.base) * PAGE
    };
    let ring_size = inp.raw_size.unwrap_or(1u32 << (inp.size_log2 % 21));
    let mut mem = SparseGfx {
        pages: HashMap::new(),
        hole: 0..0,
    };
    let batch: Vec<u8> = inp.batch.iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.put(0x8000, &batch);
    let head = if ring_size.is_power_of_two() {
        inp.head & (ring_size - 1) & !3
    } else {
        inp.head
    };
    let mut off = head;
    if ring_size.is_power_of_two()
        && ring_size <= 1 << 20
        && ring_base + u64::from(ring_size) <= SPACE
    {
        for d in inp
            .ring
            .iter()
            .take((ring_size as usize / 4).saturating_sub(1))
        {
            mem.put(ring_base + u64::from(off), &d.to_le_bytes());
            off = (off + 4) & (ring_size - 1);
        }
    }
    if let Some((start, pages)) = inp.hole {
        let start = u64::from(start) * PAGE;
        mem.hole = start..start + u64::from(pages) * PAGE;
    }
    let ring = EngineState {
        ring_base,
        ring_size,
        head,
        tail: inp.tail.unwrap_or(off),
        ctl: ring_ctl::ENABLE,
        ..Default::default()
    };
    let scanner = Scanner {
        space: SPACE,
        reloc: RELOC,
    };
    let Ok(work) = scanner.scan(&mem, &ring) else {
        return;
    };
    assert_eq!(work.tail, ring.tail);
    // In stream order; a command that emits nothing (an empty batch)
    // shares its place with the next, which `head_at` then reports.
    assert!(work.cmds.windows(2).all(|w| w[0].at <= w[1].at));
    for (i, c) in work.cmds.iter().enumerate() {
        let last_here = work.cmds.get(i + 1).is_none_or(|n| n.at > c.at);
        if last_here && c.at < work.dwords.len() {
            assert_eq!(work.head_at(c.at), c.head);
        }
    }
    assert!(work
        .cmds
        .iter()
        .all(|c| c.head < ring.ring_size && c.at <= work.dwords.len()));
    let mut i = 0;
    let mut fences = 0;
    while i < work.dwords.len() {
        let (c, n) = cmd::decode(&work.dwords[i..]).expect("the shadow stream decodes");
        let control = matches!(
            c,
            Command::LoadReg { .. } | Command::BatchStart { .. } | Command::BatchEnd
        );
        assert!(!control, "{c:?} in the shadow stream");
        assert!(!c.info().privileged);
        if let Command::Fence { interrupt, .. } = c {
            assert_eq!(work.fences[fences].at, i);
            assert!(interrupt, "every shadow fence interrupts");
            fences += 1;
        }
        for (addr, len) in c.data_spans().expect("accepted rectangles have spans") {
            assert!(
                addr >= RELOC && addr + len <= RELOC + SPACE,
                "{c:?} leaves the slice"
            );
        }
        i += n;
    }
    assert_eq!(i, work.dwords.len());
    assert_eq!(fences, work.fences.len());
});

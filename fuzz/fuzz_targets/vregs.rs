//! The virtual register file: arbitrary sequences of guest reads and
//! writes at any BAR2 offset, of any size from 0 to 16 bytes, with any
//! value. Nothing panics; every access in the GTT window goes to the
//! shadow as `RegRead::Gtt` / `RegWrite::Gtt` with its entry and byte;
//! the register path's shortcuts (`read_register`, `store`) agree with the
//! whole path; the display settings the registers end up with are a
//! surface the display may show, or refused.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rvg_mediator::display::scanout::{self, Choice, Source};
use rvg_mediator::vgpu::{RegRead, RegWrite, VirtRegs};
use rvg_model::regs::bar2;

const VRAM: u64 = 16 << 20;
const GTT_ENTRIES: u32 = 32768;

#[derive(Debug, Arbitrary)]
enum Op {
    Read { offset: u32, size: u8 },
    Write { offset: u32, value: u64, size: u8 },
    Reset,
}

/// Most offsets in the register blocks, some anywhere in (and past) BAR2.
fn offset(o: u32) -> u64 {
    if o & 0x8000_0000 != 0 {
        u64::from(o & 0x7fff_ffff)
    } else {
        u64::from(o) % 0x4000
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut r = VirtRegs::new(VRAM, GTT_ENTRIES, (1024, 768));
    for op in ops.iter().take(512) {
        let gtt =
            |off: u64| (off >= bar2::GTT).then(|| ((off - bar2::GTT) / 8, (off - bar2::GTT) % 8));
        match *op {
            Op::Read { offset: o, size } => {
                let (off, size) = (offset(o), u32::from(size % 17));
                let got = r.read(off, size);
                if let Some(v) = r.read_register(off, size) {
                    assert_eq!(got, Ok(RegRead::Value(v)));
                }
                match gtt(off) {
                    Some((index, within)) => assert_eq!(got, Ok(RegRead::Gtt { index, within })),
                    None => assert!(!matches!(got, Ok(RegRead::Gtt { .. }))),
                }
            }
            Op::Write {
                offset: o,
                value,
                size,
            } => {
                let (off, size) = (offset(o), u32::from(size % 17));
                let mut shortcut = r.clone();
                let stored = shortcut.store(off, value, size);
                let got = r.write(off, value, size);
                if stored {
                    let nothing_more = RegWrite::Engine {
                        reset: false,
                        enabled: None,
                        kick: false,
                    };
                    assert!(matches!(got, Ok(w) if w == RegWrite::Done || w == nothing_more));
                    assert_eq!(shortcut, r);
                }
                match gtt(off) {
                    Some((index, within)) => assert_eq!(got, Ok(RegWrite::Gtt { index, within })),
                    None => assert!(!matches!(got, Ok(RegWrite::Gtt { .. }))),
                }
            }
            Op::Reset => r.reset(),
        }
    }
    let (plane, dispi) = r.scanout();
    let gfx_space = u64::from(GTT_ENTRIES) << 12;
    if let Choice::On(s) = scanout::choose(&plane, &dispi, VRAM, gfx_space) {
        let (start, limit) = match s.source {
            Source::Vram { offset } => (offset, VRAM),
            Source::Gfx { base } => (base, gfx_space),
        };
        assert!(start + s.extent() <= limit, "{s}");
    }
});

use super::*;
use proptest::prelude::*;
use rvg_model::cmd::opcode;
use rvg_model::engine::{ring_ctl, BATCH_LEN_MAX};
use std::cell::RefCell;

pub const SPACE: u64 = 16 << 20;
const RELOC: u64 = 0x40_0000_0000;

/// Guest graphics memory: a flat buffer with a hole of unmapped pages.
pub struct FlatGfx {
    pub bytes: RefCell<Vec<u8>>,
    pub hole: std::ops::Range<u64>,
}

impl FlatGfx {
    pub fn new(len: usize) -> FlatGfx {
        FlatGfx {
            bytes: RefCell::new(vec![0; len]),
            hole: 0..0,
        }
    }

    pub fn put(&self, addr: u64, cmds: &[Command]) -> u32 {
        let mut b = self.bytes.borrow_mut();
        let mut at = addr as usize;
        for dw in cmds.iter().flat_map(|c| c.encode()) {
            b[at..at + 4].copy_from_slice(&dw.to_le_bytes());
            at += 4;
        }
        (at - addr as usize) as u32
    }
}

impl GuestGfx for FlatGfx {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        let end = addr + buf.len() as u64;
        if addr < self.hole.end && self.hole.start < end {
            return Err(addr.max(self.hole.start));
        }
        let b = self.bytes.borrow();
        buf.copy_from_slice(b.get(addr as usize..end as usize).ok_or(addr)?);
        Ok(())
    }
}

fn scanner() -> Scanner {
    Scanner {
        space: SPACE,
        reloc: RELOC,
    }
}

/// A 4 KiB ring at 0x1000 holding `cmds` from offset `head`.
fn ring_with(mem: &FlatGfx, head: u32, cmds: &[Command]) -> EngineState {
    let mut dw: Vec<u32> = cmds.iter().flat_map(|c| c.encode()).collect();
    let mut off = head;
    for d in dw.drain(..) {
        mem.bytes.borrow_mut()[0x1000 + off as usize..][..4].copy_from_slice(&d.to_le_bytes());
        off = (off + 4) % 4096;
    }
    EngineState {
        ring_base: 0x1000,
        ring_size: 4096,
        head,
        tail: off,
        ctl: ring_ctl::ENABLE,
        ..Default::default()
    }
}

fn scan(cmds: &[Command]) -> Result<Work, EngineError> {
    let mem = FlatGfx::new(SPACE as usize);
    let ring = ring_with(&mem, 0, cmds);
    scanner().scan(&mem, &ring)
}

fn fill(dst: u64, w: u32, h: u32) -> Command {
    Command::FillRect {
        dst,
        pitch: 4 * w,
        width: w,
        height: h,
        color: 0xff,
    }
}

#[test]
fn addresses_are_relocated_and_fences_marked() {
    let work = scan(&[
        Command::StoreDw {
            addr: 0x2000,
            value: 7,
        },
        Command::Fence {
            seqno: 9,
            interrupt: false,
        },
        Command::CopyRect {
            src: 0x3000,
            src_pitch: 64,
            dst: 0x5000,
            dst_pitch: 64,
            width: 16,
            height: 2,
        },
    ])
    .unwrap();
    let (c0, n0) = cmd::decode(&work.dwords).unwrap();
    assert_eq!(
        c0,
        Command::StoreDw {
            addr: RELOC + 0x2000,
            value: 7
        }
    );
    assert_eq!(
        work.fences,
        vec![FenceMark {
            at: n0,
            seqno: 9,
            interrupt: false
        }]
    );
    let (c2, _) = cmd::decode(&work.dwords[n0 + 2..]).unwrap();
    assert!(
        matches!(c2, Command::CopyRect { src, dst, .. } if src == RELOC + 0x3000 && dst == RELOC + 0x5000)
    );
    assert_eq!(
        work.cmds.iter().map(|c| c.head).collect::<Vec<_>>(),
        [0, 16, 24]
    );
    assert_eq!((work.tail, work.guest_commands), (60, 3));
}

/// Found by the `scan` fuzz target: a batch that emits nothing (here of
/// length 0) shares its place in the stream with the next command, and
/// that place belongs to the next command: the batch has already run.
#[test]
fn an_empty_batch_leaves_its_place_to_the_next_command() {
    let mem = FlatGfx::new(SPACE as usize);
    let ring = ring_with(
        &mem,
        0,
        &[
            Command::BatchStart {
                addr: 0x8000,
                len: 0,
            },
            Command::StoreDw {
                addr: 0x100,
                value: 1,
            },
        ],
    );
    let work = scanner().scan(&mem, &ring).unwrap();
    assert_eq!(
        work.cmds,
        [CmdOrigin { at: 0, head: 0 }, CmdOrigin { at: 0, head: 16 }]
    );
    assert_eq!(work.head_at(0), 16, "the store is the next to run");
    assert_eq!(work.head_at(work.dwords.len()), work.tail);
}

#[test]
fn batches_are_flattened_and_keep_the_ring_head() {
    let mem = FlatGfx::new(SPACE as usize);
    let len = mem.put(
        0x8000,
        &[
            fill(0x10000, 4, 4),
            Command::Fence {
                seqno: 1,
                interrupt: true,
            },
            Command::BatchEnd,
            // Past BATCH_END: never scanned.
            Command::LoadReg { reg: 0, value: 0 },
        ],
    );
    let ring = ring_with(
        &mem,
        4092,
        &[Command::BatchStart { addr: 0x8000, len }, Command::Noop],
    );
    let work = scanner().scan(&mem, &ring).unwrap();
    assert_eq!(work.guest_commands, 5);
    // The fill, the fence, the NOOP: no BATCH_START or BATCH_END left.
    assert_eq!(work.dwords.len(), 7 + 2 + 1);
    assert_eq!(
        work.head_at(7),
        4092,
        "inside the batch: head on BATCH_START"
    );
    assert_eq!(work.head_at(9), (4092 + 16) % 4096);
    assert_eq!(work.head_at(10), work.tail);
}

#[test]
fn every_rule_has_its_error() {
    let e = |code, addr| Err(EngineError::at(code, addr));
    let header = |op: u8| u32::from(op) << 24;
    assert_eq!(
        scan(&[Command::LoadReg {
            reg: 0x14,
            value: 1
        }]),
        e(error::PRIVILEGED, 0x1000)
    );
    assert_eq!(
        scan(&[Command::Noop, Command::BatchEnd]),
        e(error::BATCH_NESTING, 0x1004)
    );
    assert_eq!(
        scan(&[Command::StoreDw { addr: 6, value: 0 }]),
        e(error::MISALIGNED, 6)
    );
    assert_eq!(
        scan(&[Command::StoreDw {
            addr: SPACE,
            value: 0
        }]),
        e(error::BAD_ADDRESS, SPACE)
    );
    assert_eq!(
        scan(&[Command::StoreDw {
            addr: u64::MAX - 3,
            value: 0
        }]),
        e(error::BAD_ADDRESS, u64::MAX - 3)
    );
    // A rectangle whose last row leaves the space.
    assert_eq!(
        scan(&[fill(SPACE - 1024, 256, 2)]),
        e(error::BAD_ADDRESS, SPACE)
    );
    assert_eq!(
        scan(&[Command::FillRect {
            dst: 0,
            pitch: 4,
            width: 2,
            height: 2,
            color: 0
        }]),
        e(error::BAD_RECT, 0)
    );
    assert_eq!(
        scan(&[Command::BatchStart {
            addr: 0x8002,
            len: 4
        }]),
        e(error::MISALIGNED, 0x8002)
    );
    assert_eq!(
        scan(&[Command::BatchStart {
            addr: 0x8000,
            len: BATCH_LEN_MAX + 4
        }]),
        e(error::TRUNCATED, 0x8000)
    );
    assert_eq!(
        scan(&[Command::BatchStart {
            addr: SPACE - 4,
            len: 8
        }]),
        e(error::BAD_ADDRESS, SPACE)
    );
    // A batch that starts another.
    let mem = FlatGfx::new(SPACE as usize);
    let len = mem.put(
        0x8000,
        &[
            Command::Noop,
            Command::BatchStart {
                addr: 0x8000,
                len: 4,
            },
        ],
    );
    let ring = ring_with(&mem, 0, &[Command::BatchStart { addr: 0x8000, len }]);
    assert_eq!(scanner().scan(&mem, &ring), e(error::BATCH_NESTING, 0x8004));
    // Raw dwords: unknown opcode, reserved bits, a tail inside a command.
    let raw = |dw: &[u32], tail: u32| {
        let mem = FlatGfx::new(SPACE as usize);
        for (i, d) in dw.iter().enumerate() {
            mem.bytes.borrow_mut()[0x1000 + 4 * i..][..4].copy_from_slice(&d.to_le_bytes());
        }
        let ring = EngineState {
            ring_base: 0x1000,
            ring_size: 4096,
            tail,
            ..Default::default()
        };
        scanner().scan(&mem, &ring)
    };
    assert_eq!(raw(&[0xee00_0000], 4), e(error::UNKNOWN_OPCODE, 0x1000));
    assert_eq!(
        raw(&[header(opcode::NOOP) | 1], 4),
        e(error::RESERVED_BITS, 0x1000)
    );
    assert_eq!(
        raw(&[header(opcode::STORE_DW), 0], 8),
        e(error::TRUNCATED, 0x1000)
    );
}

#[test]
fn ring_registers_and_unmapped_pages() {
    let mem = FlatGfx::new(SPACE as usize);
    let mut ring = ring_with(&mem, 0, &[Command::Noop]);
    ring.ring_size = 3000;
    assert_eq!(
        scanner().scan(&mem, &ring),
        Err(EngineError::at(error::BAD_RING, 0x1000))
    );
    let mut ring = ring_with(&mem, 0, &[Command::Noop]);
    ring.ring_base = SPACE - 2048;
    assert_eq!(
        scanner().scan(&mem, &ring),
        Err(EngineError::at(error::BAD_RING, SPACE - 2048))
    );
    // The ring's page, then a batch's, unmapped in the guest GTT.
    let mut mem = FlatGfx::new(SPACE as usize);
    mem.hole = 0x1000..0x2000;
    let ring = ring_with(&mem, 0, &[Command::Noop]);
    assert_eq!(
        scanner().scan(&mem, &ring),
        Err(EngineError::at(error::BAD_ADDRESS, 0x1000))
    );
    mem.hole = 0x9000..0xa000;
    let ring = ring_with(
        &mem,
        0,
        &[Command::BatchStart {
            addr: 0x8ff0,
            len: 64,
        }],
    );
    assert_eq!(
        scanner().scan(&mem, &ring),
        Err(EngineError::at(error::BAD_ADDRESS, 0x9000))
    );
}

#[test]
fn the_copy_is_what_runs() {
    // Scanning copies: rewriting guest memory afterwards changes nothing
    // in the work already produced.
    let mem = FlatGfx::new(SPACE as usize);
    let len = mem.put(0x8000, &[fill(0x10000, 4, 1)]);
    let ring = ring_with(&mem, 0, &[Command::BatchStart { addr: 0x8000, len }]);
    let work = scanner().scan(&mem, &ring).unwrap();
    mem.put(0x8000, &[Command::LoadReg { reg: 0, value: 0 }]);
    ring_with(&mem, 0, &[Command::LoadReg { reg: 0, value: 0 }]);
    assert_eq!(
        cmd::decode(&work.dwords).unwrap().0,
        fill(0x10000 + RELOC, 4, 1)
    );
}

/// Any command a guest can encode: addresses anywhere in 64 bits, with a
/// bias towards the space's edges.
fn any_command() -> impl Strategy<Value = Command> {
    let addr = prop_oneof![0..SPACE, (SPACE - 8192)..(SPACE + 8192), any::<u64>(),];
    let dim = prop_oneof![0u32..64, any::<u32>()];
    prop_oneof![
        Just(Command::Noop),
        (addr.clone(), any::<u32>()).prop_map(|(addr, value)| Command::StoreDw { addr, value }),
        (any::<u32>(), any::<bool>())
            .prop_map(|(seqno, interrupt)| Command::Fence { seqno, interrupt }),
        (addr.clone(), 0u32..512).prop_map(|(addr, len)| Command::BatchStart { addr, len }),
        Just(Command::BatchEnd),
        (
            addr.clone(),
            dim.clone(),
            dim.clone(),
            dim.clone(),
            any::<u32>()
        )
            .prop_map(|(dst, pitch, width, height, color)| Command::FillRect {
                dst,
                pitch,
                width,
                height,
                color
            }),
        (
            addr.clone(),
            dim.clone(),
            addr,
            dim.clone(),
            dim.clone(),
            dim
        )
            .prop_map(|(src, src_pitch, dst, dst_pitch, width, height)| {
                Command::CopyRect {
                    src,
                    src_pitch,
                    dst,
                    dst_pitch,
                    width,
                    height,
                }
            }),
        (any::<u32>(), any::<u32>()).prop_map(|(reg, value)| Command::LoadReg { reg, value }),
    ]
}

proptest! {
    /// Whatever a guest writes, an accepted stream holds only commands
    /// that stay inside the vGPU's relocated space, no privileged or
    /// control command, and as many fences as it marked.
    #[test]
    fn accepted_streams_stay_in_the_slice(
        cmds in prop::collection::vec(any_command(), 0..40),
        batch in prop::collection::vec(any_command(), 0..16),
    ) {
        let mem = FlatGfx::new(SPACE as usize);
        mem.put(0x8000, &batch);
        let ring = ring_with(&mem, 4000, &cmds);
        if let Ok(work) = scanner().scan(&mem, &ring) {
            let mut i = 0;
            let mut fences = 0;
            while i < work.dwords.len() {
                let (c, n) = cmd::decode(&work.dwords[i..]).expect("shadow decodes");
                let control = matches!(c, Command::LoadReg { .. } | Command::BatchStart { .. } | Command::BatchEnd);
                prop_assert!(!control, "{:?} in the shadow stream", c);
                if matches!(c, Command::Fence { .. }) {
                    prop_assert_eq!(work.fences[fences].at, i);
                    fences += 1;
                }
                for (addr, len) in c.data_spans().expect("accepted rectangles have spans") {
                    prop_assert!(addr >= RELOC && addr + len <= RELOC + SPACE, "{:?}", c);
                }
                i += n;
            }
            prop_assert_eq!(fences, work.fences.len());
        }
    }
}

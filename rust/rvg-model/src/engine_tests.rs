use super::*;
use crate::memory::GfxMemory;
use crate::test_mem::FlatMem;

/// 64 graphics pages of memory from graphics address 0, nothing mapped
/// after them; the ring at graphics 0, 4 KiB.
pub(crate) fn setup() -> FlatMem {
    FlatMem::new(64 * 4096)
}

pub(crate) fn engine() -> EngineState {
    EngineState {
        ring_base: 0,
        ring_size: 4096,
        ctl: ring_ctl::ENABLE,
        ..Default::default()
    }
}

/// Write `cmds` into the ring at head and move the tail past them.
pub(crate) fn submit(e: &mut EngineState, m: &dyn GfxMemory, cmds: &[Command]) {
    for c in cmds {
        for dw in c.encode() {
            m.write(e.ring_base + u64::from(e.tail), &dw.to_le_bytes())
                .unwrap();
            e.tail = (e.tail + 4) % e.ring_size;
        }
    }
}

#[test]
fn store_fence_and_fill() {
    let m = setup();
    let mut e = engine();
    submit(
        &mut e,
        &m,
        &[
            Command::StoreDw {
                addr: 0x8000,
                value: 0xcafe,
            },
            Command::FillRect {
                dst: 0x10000,
                pitch: 256,
                width: 16,
                height: 4,
                color: 0x00ff00,
            },
            Command::Fence {
                seqno: 5,
                interrupt: true,
            },
        ],
    );
    let out = e.run(&m, 100, &|| Signal::Run);
    assert_eq!(
        (out.commands, out.raise, e.head, e.seqno),
        (3, IntSource::FENCE, e.tail, 5)
    );
    assert_eq!(m.read_u32(0x8000), Ok(0xcafe));
    assert_eq!(m.read_u32(0x10000 + 3 * 256 + 60), Ok(0x00ff00));
    assert_eq!(
        m.read_u32(0x10000 + 3 * 256 + 64),
        Ok(0),
        "clipped to the width"
    );
}

#[test]
fn overlapping_copies_in_both_directions() {
    let m = setup();
    // A 4x4 rectangle of distinct pixels at (0,0), pitch 64.
    for i in 0..16u32 {
        m.write(
            0x20000 + u64::from(i / 4) * 64 + u64::from(i % 4) * 4,
            &i.to_le_bytes(),
        )
        .unwrap();
    }
    let mut e = engine();
    // Down and right by one pixel and one row, then back: each copy
    // must move the 4x4 block intact.
    for (src, dst) in [(0x20000, 0x20044), (0x20044, 0x20000)] {
        let copy = Command::CopyRect {
            src,
            src_pitch: 64,
            dst,
            dst_pitch: 64,
            width: 4,
            height: 4,
        };
        submit(&mut e, &m, &[copy]);
        e.run(&m, 10, &|| Signal::Run);
        for i in 0..16u32 {
            let at = dst + u64::from(i / 4) * 64 + u64::from(i % 4) * 4;
            assert_eq!(m.read_u32(at), Ok(i), "copy to {dst:#x}");
        }
    }
    assert_eq!(e.error, error::NONE);
}

#[test]
fn fences_complete_in_order_after_the_work_before_them() {
    let m = setup();
    let mut e = engine();
    let cmds = [
        Command::StoreDw {
            addr: 0x8000,
            value: 1,
        },
        Command::Fence {
            seqno: 1,
            interrupt: false,
        },
        Command::FillRect {
            dst: 0x9000,
            pitch: 64,
            width: 16,
            height: 8,
            color: 2,
        },
        Command::Fence {
            seqno: 2,
            interrupt: true,
        },
        Command::StoreDw {
            addr: 0x8004,
            value: 3,
        },
        Command::Fence {
            seqno: 3,
            interrupt: false,
        },
    ];
    submit(&mut e, &m, &cmds);
    // One command at a time: each fence is seen only once everything
    // before it is in memory, and SEQNO never goes back.
    let mut seen = vec![];
    while e.head != e.tail {
        let out = e.run(&m, 1, &|| Signal::Run);
        assert_eq!(out.commands, 1);
        seen.push(e.seqno);
        if e.seqno >= 1 {
            assert_eq!(m.read_u32(0x8000), Ok(1));
        }
        if e.seqno >= 2 {
            assert_eq!(m.read_u32(0x9000 + 7 * 64 + 60), Ok(2));
            assert_eq!(out.raise.contains(IntSource::FENCE), seen.len() == 4);
        }
        if e.seqno >= 3 {
            assert_eq!(m.read_u32(0x8004), Ok(3));
        }
    }
    assert_eq!(seen, [0, 1, 1, 2, 2, 3]);
}

#[test]
fn batches_run_and_return() {
    let m = setup();
    let batch: Vec<u8> = [
        Command::StoreDw {
            addr: 0x9000,
            value: 7,
        },
        Command::BatchEnd,
        Command::StoreDw {
            addr: 0x9004,
            value: 8,
        },
    ]
    .iter()
    .flat_map(|c| c.encode())
    .flat_map(|d| d.to_le_bytes())
    .collect();
    m.write(0x30000, &batch).unwrap();
    let mut e = engine();
    submit(
        &mut e,
        &m,
        &[
            Command::BatchStart {
                addr: 0x30000,
                len: batch.len() as u32,
            },
            Command::Fence {
                seqno: 1,
                interrupt: false,
            },
        ],
    );
    let out = e.run(&m, 100, &|| Signal::Run);
    assert_eq!(
        (m.read_u32(0x9000), m.read_u32(0x9004)),
        (Ok(7), Ok(0)),
        "stops at BATCH_END"
    );
    assert_eq!((e.seqno, e.error, out.commands), (1, error::NONE, 4));
}

fn error_of(cmds: &[Command], raw: &[u32]) -> (EngineState, RunOutcome) {
    let m = setup();
    let mut e = engine();
    submit(&mut e, &m, cmds);
    for &dw in raw {
        m.write(u64::from(e.tail), &dw.to_le_bytes()).unwrap();
        e.tail += 4;
    }
    let out = e.run(&m, 100, &|| Signal::Run);
    (e, out)
}

#[test]
fn every_error_stops_the_engine_with_code_and_address() {
    let fill = |dst, pitch, width, height| Command::FillRect {
        dst,
        pitch,
        width,
        height,
        color: 0,
    };
    let cases: Vec<(Vec<Command>, Vec<u32>, u32, u64)> = vec![
        (vec![], vec![0x7f00_0000], error::UNKNOWN_OPCODE, 0),
        (vec![], vec![0x0000_0001], error::RESERVED_BITS, 0),
        (
            vec![Command::Noop],
            vec![0x0500_0000, 0],
            error::TRUNCATED,
            4,
        ),
        (
            vec![Command::StoreDw {
                addr: 64 * 4096,
                value: 1,
            }],
            vec![],
            error::BAD_ADDRESS,
            64 * 4096,
        ),
        (
            vec![Command::StoreDw { addr: 2, value: 1 }],
            vec![],
            error::MISALIGNED,
            2,
        ),
        (
            vec![fill(0x10000, 8, 4, 2)],
            vec![],
            error::BAD_RECT,
            0x10000,
        ),
        (
            vec![fill(0x3f000, 4096, 1024, 2)],
            vec![],
            error::BAD_ADDRESS,
            0x40000,
        ),
        (vec![Command::BatchEnd], vec![], error::BATCH_NESTING, 0),
        (
            vec![Command::LoadReg { reg: 0, value: 1 }],
            vec![],
            error::BAD_REGISTER,
            0,
        ),
    ];
    for (cmds, raw, code, addr) in cases {
        let (e, out) = error_of(&cmds, &raw);
        assert_eq!((e.error, e.error_addr), (code, addr), "{cmds:?} {raw:x?}");
        assert!(out.raise.contains(IntSource::ENGINE_ERROR));
        assert_eq!(
            out.raise.contains(IntSource::GTT_FAULT),
            code == error::BAD_ADDRESS
        );
        assert!(!e.runnable(), "halted");
    }
}

#[test]
fn nested_batches_are_refused_and_reset_recovers() {
    let m = setup();
    let inner: Vec<u8> = Command::BatchStart {
        addr: 0x30000,
        len: 16,
    }
    .encode()
    .iter()
    .flat_map(|d| d.to_le_bytes())
    .collect();
    m.write(0x30000, &inner).unwrap();
    let mut e = engine();
    submit(
        &mut e,
        &m,
        &[Command::BatchStart {
            addr: 0x30000,
            len: 16,
        }],
    );
    e.run(&m, 10, &|| Signal::Run);
    assert_eq!((e.error, e.error_addr), (error::BATCH_NESTING, 0x30000));
    e.reset();
    e.tail = 0;
    submit(
        &mut e,
        &m,
        &[Command::Fence {
            seqno: 9,
            interrupt: false,
        }],
    );
    e.run(&m, 10, &|| Signal::Run);
    assert_eq!((e.error, e.seqno), (error::NONE, 9));
}

#[test]
fn registers_store_and_act() {
    let mut e = EngineState::default();
    let off = |r: EngineReg| r.offset();
    e.write(off(EngineReg::RingBase), 0x40_0000, 8).unwrap();
    e.write(off(EngineReg::RingSize), 4096, 4).unwrap();
    assert!(e.write(off(EngineReg::RingTail), 16, 4).unwrap().kick);
    assert_eq!(e.read(off(EngineReg::RingBase), 8), Ok(0x40_0000));
    assert!(matches!(
        e.write(off(EngineReg::RingHead), 4, 4),
        Err(RegError::ReadOnly { .. })
    ));
    e.head = 8;
    e.error = error::BAD_RING;
    let w = e
        .write(
            off(EngineReg::RingCtl),
            u64::from(ring_ctl::RESET | ring_ctl::ENABLE | 0x80),
            4,
        )
        .unwrap();
    assert!(w.reset && w.kick);
    assert_eq!((e.head, e.error, e.ctl), (0, error::NONE, ring_ctl::ENABLE));
}

#[test]
fn budget_and_bad_rings() {
    let m = setup();
    let mut e = engine();
    submit(&mut e, &m, &[Command::Noop, Command::Noop, Command::Noop]);
    let out = e.run(&m, 2, &|| Signal::Run);
    assert!(out.more && e.head == 8);
    let mut bad = engine();
    bad.ring_size = 3000;
    bad.tail = 4;
    assert_eq!(
        bad.run(&m, 10, &|| Signal::Run).raise,
        IntSource::ENGINE_ERROR
    );
    assert_eq!(bad.error, error::BAD_RING);
}

/// What the pending commands cost, from the command table: a fill's pixels
/// and a store's dword; nothing for a fence.
#[test]
fn pending_bytes_is_the_work_between_head_and_tail() {
    let m = setup();
    let mut e = engine();
    assert_eq!(e.pending_bytes(&m), 0);
    submit(
        &mut e,
        &m,
        &[
            Command::FillRect {
                dst: 0x8000,
                pitch: 4096,
                width: 1024,
                height: 16,
                color: 1,
            },
            Command::StoreDw {
                addr: 0x2000,
                value: 2,
            },
            Command::Fence {
                seqno: 3,
                interrupt: false,
            },
        ],
    );
    assert_eq!(e.pending_bytes(&m), (64 << 10) + 4);
    e.run(&m, 1, &|| Signal::Run);
    assert_eq!(e.pending_bytes(&m), 4, "the fill ran");
}

//! The vGPU's engine end to end: guest register writes, the scanner, the
//! shared GPU's scheduler, the soft GPU's engine, results in guest memory.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rvg_mediator::shared::TIMESLICE_DEFAULT;
use rvg_mediator::{SharedGpu, Vgpu, VgpuConfig};
use rvg_model::cmd::Command;
use rvg_model::engine::{error, ring_ctl};
use rvg_model::gtt::GttEntry;
use rvg_model::irq::IntSource;
use rvg_model::regs::{bar2, EngineReg, GlobalReg, Register};
use rvg_vfio::SoftGpu;

#[test]
fn store_fence_fill_copy() {
    let (mut g, _) = guest();
    g.submit(&[
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
        Command::CopyRect {
            src: 0x10000,
            src_pitch: 256,
            dst: 0x20000,
            dst_pitch: 128,
            width: 8,
            height: 4,
        },
        Command::Fence {
            seqno: 42,
            interrupt: true,
        },
    ]);
    g.wait_idle();
    assert_eq!(g.reg(EngineReg::Error), 0);
    assert_eq!(g.reg(EngineReg::Seqno), 42);
    assert_eq!(g.u32_at(0x8000), 0xcafe);
    assert_eq!(g.u32_at(0x10000 + 3 * 256 + 60), 0x00ff00);
    assert_eq!(g.u32_at(0x20000 + 3 * 128 + 28), 0x00ff00);
    assert_eq!(g.u32_at(0x20000 + 3 * 128 + 32), 0);
    let fx = g.v.event();
    assert!(fx.irq.is_some_and(|l| l.message && l.asserted));
}

/// A submission must get through however it falls against the scheduler
/// thread: while it still finishes the last one (its interrupt taken
/// without a sleep), just as it goes to sleep, or long after.
#[test]
fn submissions_get_through_however_they_are_spaced() {
    let (mut g, _) = guest();
    let gaps_us = [0u64, 5, 20, 45, 50, 55, 80, 200, 1000, 3000];
    let mut seqno = 0;
    for round in 0..20 {
        for &gap in &gaps_us {
            seqno += 1;
            let start = Instant::now();
            while start.elapsed() < Duration::from_micros(gap) {
                std::hint::spin_loop();
            }
            g.submit(&[Command::Fence {
                seqno,
                interrupt: false,
            }]);
            let start = Instant::now();
            while g.reg(EngineReg::Seqno) != u64::from(seqno) {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "round {round}, {gap} us after the last fence: seqno {seqno} never came\n{}",
                    g.v.describe()
                );
                std::hint::spin_loop();
            }
        }
    }
}

#[test]
fn batches_run_and_rewrites_after_the_tail_change_nothing() {
    let (mut g, soft) = guest();
    let len = g.put(
        BATCH,
        &[
            Command::StoreDw {
                addr: 0x9000,
                value: 1,
            },
            Command::Fence {
                seqno: 5,
                interrupt: false,
            },
            Command::BatchEnd,
        ],
    );
    // Stop the GPU's engine so nothing runs before the rewrite.
    let ctl = eng(EngineReg::RingCtl);
    soft.gpu().mmio_write(ctl, 0, 4);
    g.submit(&[
        Command::BatchStart { addr: BATCH, len },
        Command::StoreDw {
            addr: 0x9004,
            value: 2,
        },
    ]);
    // The guest rewrites its ring and its batch after the tail write.
    g.put(
        BATCH,
        &[Command::StoreDw {
            addr: 0x9000,
            value: 0xbad,
        }],
    );
    g.put(
        RING,
        &[Command::LoadReg {
            reg: 0x14,
            value: 0xbad,
        }],
    );
    soft.gpu().mmio_write(ctl, u64::from(ring_ctl::ENABLE), 4);
    g.wait_idle();
    assert_eq!(g.reg(EngineReg::Error), 0);
    assert_eq!((g.u32_at(0x9000), g.u32_at(0x9004)), (1, 2));
    assert_eq!(g.reg(EngineReg::Seqno), 5);
}

#[test]
fn a_rejected_stream_stops_the_virtual_engine_only() {
    let (mut g, soft) = guest();
    g.submit(&[Command::Fence {
        seqno: 1,
        interrupt: false,
    }]);
    g.wait_idle();
    let phys_tail = soft.gpu().engine_state().tail;
    g.submit(&[
        Command::StoreDw {
            addr: 0xa000,
            value: 3,
        },
        Command::LoadReg {
            reg: 0x14,
            value: 99,
        },
    ]);
    assert_eq!(g.reg(EngineReg::Error), u64::from(error::PRIVILEGED));
    assert_eq!(g.reg(EngineReg::ErrorAddr), RING + 8 + 16);
    let status =
        g.v.mmio_read(bar2::GLOBAL + GlobalReg::IntStatus.offset(), 4)
            .unwrap();
    assert_ne!(status & u64::from(IntSource::ENGINE_ERROR.bits()), 0);
    // Nothing of it reached the GPU, not even the valid store before it.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(soft.gpu().engine_state().tail, phys_tail);
    assert_eq!(g.u32_at(0xa000), 0);
    assert_eq!(g.reg(EngineReg::RingHead), 8);
    // Engine reset recovers: an empty ring (tail 0), then head back at 0.
    g.v.mmio_write(eng(EngineReg::RingTail), 0, 4);
    g.v.mmio_write(
        eng(EngineReg::RingCtl),
        u64::from(ring_ctl::RESET | ring_ctl::ENABLE),
        4,
    );
    assert_eq!(
        (g.reg(EngineReg::Error), g.reg(EngineReg::RingHead)),
        (0, 0)
    );
    g.tail = 0;
    g.submit(&[Command::Fence {
        seqno: 2,
        interrupt: false,
    }]);
    g.wait_idle();
    assert_eq!(g.reg(EngineReg::Seqno), 2);
}

#[test]
fn an_unmapped_page_faults_at_execution_with_the_guest_address() {
    let (mut g, _) = guest();
    // Page 0x300 is inside the guest's space but its GTT entry is invalid:
    // the scanner accepts the address, the engine faults on it.
    g.submit(&[
        Command::Fence {
            seqno: 1,
            interrupt: false,
        },
        Command::StoreDw {
            addr: 0x30_0010,
            value: 1,
        },
        Command::Fence {
            seqno: 2,
            interrupt: false,
        },
    ]);
    g.wait_idle();
    assert_eq!(g.reg(EngineReg::Error), u64::from(error::BAD_ADDRESS));
    assert_eq!(g.reg(EngineReg::ErrorAddr), 0x30_0010);
    assert_eq!(
        g.reg(EngineReg::RingHead),
        8,
        "head on the faulting command"
    );
    assert_eq!(g.reg(EngineReg::Seqno), 1);
    let status =
        g.v.mmio_read(bar2::GLOBAL + GlobalReg::IntStatus.offset(), 4)
            .unwrap();
    let want = IntSource::ENGINE_ERROR | IntSource::GTT_FAULT;
    assert_eq!(status & u64::from(want.bits()), u64::from(want.bits()));
}

/// Two vGPUs on one GPU: one shared GPU with room for both.
fn pair(timeslice: Duration) -> (Guest, Guest, Arc<SharedGpu>, Arc<SoftGpu>) {
    let (gpu, soft) = gpu(4 * VRAM, timeslice);
    let config = VgpuConfig::new(VRAM);
    let a = Guest::new(Vgpu::new(config.clone(), gpu.clone()).unwrap());
    let b = Guest::new(Vgpu::new(config.clone(), gpu.clone()).unwrap());
    let third = Vgpu::new(config.clone(), gpu.clone()).unwrap();
    let err = Vgpu::new(config, gpu.clone()).err().unwrap();
    assert!(err.to_string().contains("all are in use"), "{err}");
    drop(third);
    (a, b, gpu, soft)
}

#[test]
fn two_vgpus_cannot_reach_each_other() {
    let (mut a, b, _gpu, _soft) = pair(TIMESLICE_DEFAULT);
    let canary: Vec<u8> = (0..VRAM).map(|i| (i * 7 + 3) as u8).collect();
    b.write(0, &canary);
    // Everything A can express: its whole space, past its end, through
    // unmapped entries, huge rectangles.
    let space = rvg_mediator::vgpu::VGPU_GFX_SPACE;
    for cmds in [
        vec![Command::FillRect {
            dst: 0x10_0000,
            pitch: 4096,
            width: 1024,
            height: 32767,
            color: 0,
        }],
        vec![Command::StoreDw {
            addr: space - 4,
            value: 0,
        }],
        vec![Command::StoreDw {
            addr: space,
            value: 0,
        }],
        vec![Command::CopyRect {
            src: 0,
            src_pitch: 4096,
            dst: space - 4096,
            dst_pitch: 4096,
            width: 1024,
            height: 2,
        }],
        vec![Command::FillRect {
            dst: u64::MAX - 4095,
            pitch: 0,
            width: 1024,
            height: 1,
            color: 0,
        }],
    ] {
        a.submit(&cmds);
        a.wait_idle();
        assert_ne!(a.reg(EngineReg::Error), 0, "{cmds:?} must fail");
        a.v.mmio_write(eng(EngineReg::RingTail), 0, 4);
        a.v.mmio_write(
            eng(EngineReg::RingCtl),
            u64::from(ring_ctl::RESET | ring_ctl::ENABLE),
            4,
        );
        a.tail = 0;
    }
    // GTT entries of A pointing past its own slice are refused.
    a.v.mmio_write(bar2::GTT + 8 * 500, GttEntry::new(VRAM, true).0, 8);
    a.submit(&[Command::FillRect {
        dst: 500 * PAGE,
        pitch: 4096,
        width: 1024,
        height: 1,
        color: 0,
    }]);
    a.wait_idle();
    assert_eq!(a.reg(EngineReg::Error), u64::from(error::BAD_ADDRESS));
    assert!(b.read(0, VRAM as usize) == canary, "B's VRAM slice changed");
}

#[test]
fn two_busy_vgpus_both_make_progress() {
    let (mut a, mut b, _gpu, soft) = pair(Duration::from_micros(200));
    // Each ring: 100 fills of 256 KiB, each followed by a fence.
    let work: Vec<Command> = (1..=100u32)
        .flat_map(|i| {
            [
                Command::FillRect {
                    dst: 0x8_0000,
                    pitch: 1024,
                    width: 256,
                    height: 256,
                    color: i,
                },
                Command::Fence {
                    seqno: i,
                    interrupt: false,
                },
            ]
        })
        .collect();
    // Both have work before the engine runs any: however slowly this
    // thread gets from one to the other, neither has the GPU to itself.
    soft.gpu().set_engine_hold(true);
    for g in [&mut a, &mut b] {
        g.v.mmio_write(eng(EngineReg::RingCtl), 0, 4);
    }
    a.submit(&work);
    b.submit(&work);
    for g in [&mut a, &mut b] {
        g.v.mmio_write(eng(EngineReg::RingCtl), u64::from(ring_ctl::ENABLE), 4);
    }
    soft.gpu().set_engine_hold(false);
    let start = Instant::now();
    let (sa, sb) = loop {
        let (sa, sb) = (a.reg(EngineReg::Seqno), b.reg(EngineReg::Seqno));
        if sa == 100 || sb == 100 {
            break (sa, sb);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no progress: {sa} {sb}"
        );
        std::thread::sleep(Duration::from_micros(100));
    };
    // Round robin: when one finishes, the other is well under way.
    assert!(sa.min(sb) >= 25, "unfair: {sa} vs {sb}");
    a.wait_idle();
    b.wait_idle();
}

/// An engine reset right after long work is submitted, again and again,
/// between short streams: SEQNO after the reset is the last fence that
/// completed before it (or the one just submitted), never an older one.
#[test]
fn seqno_never_goes_back_across_resets_in_flight() {
    let (mut g, _soft) = guest();
    for n in 1..=500u32 {
        let seqno = 2 * n;
        g.submit(&[
            Command::StoreDw {
                addr: 0x8000,
                value: seqno - 1,
            },
            Command::Fence {
                seqno: seqno - 1,
                interrupt: true,
            },
        ]);
        g.wait_idle();
        assert_eq!(g.reg(EngineReg::Seqno), u64::from(seqno - 1), "round {n}");
        let done = seqno - 1;
        let long = Command::FillRect {
            dst: 0x10_0000,
            pitch: 4096,
            width: 1024,
            height: 200,
            color: n,
        };
        g.submit(&[
            long,
            long,
            long,
            long,
            Command::Fence {
                seqno,
                interrupt: true,
            },
        ]);
        // The guest's reset (docs/hardware.md): disable, an empty ring,
        // then RESET.
        g.v.mmio_write(eng(EngineReg::RingCtl), 0, 4);
        g.tail = 0;
        g.v.mmio_write(eng(EngineReg::RingTail), 0, 4);
        g.v.mmio_write(
            eng(EngineReg::RingCtl),
            u64::from(ring_ctl::RESET | ring_ctl::ENABLE),
            4,
        );
        let after = g.reg(EngineReg::Seqno) as u32;
        assert!(
            after == done || after == seqno,
            "round {n}: SEQNO {after} after the reset, last done {done}, submitted {seqno}"
        );
        std::thread::sleep(Duration::from_micros(200));
        let later = g.reg(EngineReg::Seqno) as u32;
        assert!(
            later == after,
            "round {n}: SEQNO moved from {after} to {later} after the reset"
        );
    }
}

use super::*;
use rvg_model::cmd::Command;
use rvg_model::engine::{error, ring_ctl};
use rvg_model::irq::IntSource;
use rvg_model::regs::{EngineReg, GlobalReg, Register, RVG_ID};

fn gpu() -> Gpu {
    Gpu::new(GpuConfig {
        vram_size: 16 << 20,
    })
    .unwrap()
}

fn g(r: GlobalReg) -> u64 {
    bar2::GLOBAL + r.offset()
}

#[test]
fn identity_and_sizes() {
    let gpu = gpu();
    assert_eq!(
        gpu.mmio_read(g(GlobalReg::Id), 4).unwrap(),
        u64::from(RVG_ID)
    );
    assert_eq!(gpu.mmio_read(g(GlobalReg::VramSize), 8).unwrap(), 16 << 20);
    assert_eq!(
        gpu.mmio_read(g(GlobalReg::GttEntries), 4).unwrap(),
        u64::from(GTT_ENTRIES)
    );
}

#[test]
fn gtt_window_full_and_half_writes() {
    let gpu = gpu();
    let at = bar2::GTT + 5 * 8;
    gpu.mmio_write(at, 0x1234_5003, 8);
    assert_eq!(gpu.gtt_entry(5), Some(GttEntry(0x1234_5003)));
    gpu.mmio_write(at + 4, 0x9, 4);
    assert_eq!(gpu.mmio_read(at, 8).unwrap(), 0x9_1234_5003);
    let fx = gpu.mmio_write(at + 2, 0, 2);
    assert_eq!(fx.diags.len(), 1);
    let last = bar2::GTT + u64::from(GTT_ENTRIES - 1) * 8;
    gpu.mmio_write(last, 0x3, 8);
    assert_eq!(gpu.gtt_entry(GTT_ENTRIES - 1), Some(GttEntry(3)));
}

#[test]
fn software_interrupt_and_reset() {
    let gpu = gpu();
    let sw = u64::from(IntSource::SOFTWARE.bits());
    gpu.mmio_write(g(GlobalReg::IntEnable), sw, 4);
    let fx = gpu.mmio_write(g(GlobalReg::IntTrigger), sw, 4);
    assert_eq!(
        fx.irq,
        Some(IrqLine {
            asserted: true,
            message: true
        })
    );
    gpu.mmio_write(bar2::GTT, 0x3, 8);
    gpu.vram().write(0, &[7]).unwrap();
    let fx = gpu.mmio_write(
        g(GlobalReg::Reset),
        u64::from(rvg_model::regs::RESET_MAGIC),
        4,
    );
    assert_eq!(fx.irq, Some(IrqLine::default()));
    assert_eq!(gpu.gtt_entry(0), Some(GttEntry(0)));
    let mut b = [0];
    gpu.vram().read(0, &mut b).unwrap();
    assert_eq!(b, [7], "VRAM survives reset");
}

fn e(r: EngineReg) -> u64 {
    bar2::ENGINE + r.offset()
}

/// 256 graphics pages mapped 1:1 onto VRAM, a 4 KiB ring at graphics 0
/// holding `cmds`, the engine enabled and kicked.
fn submit(gpu: &Gpu, cmds: &[Command]) {
    for i in 0..256u32 {
        gpu.set_gtt_entry(i, GttEntry::new(u64::from(i) * 4096, true));
    }
    let dw: Vec<u8> = cmds
        .iter()
        .flat_map(|c| c.encode())
        .flat_map(|d| d.to_le_bytes())
        .collect();
    gpu.vram().write(0, &dw).unwrap();
    gpu.mmio_write(e(EngineReg::RingBase), 0, 8);
    gpu.mmio_write(e(EngineReg::RingSize), 4096, 4);
    gpu.mmio_write(e(EngineReg::RingCtl), u64::from(ring_ctl::ENABLE), 4);
    gpu.mmio_write(e(EngineReg::RingTail), dw.len() as u64, 4);
}

/// Enable the FENCE interrupt and keep every line the GPU delivers.
fn record_fence_interrupts(gpu: &Gpu) -> Arc<parking_lot::Mutex<Vec<IrqLine>>> {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    gpu.set_irq_sink(Arc::new(move |line| log.lock().push(line)));
    gpu.mmio_write(
        g(GlobalReg::IntEnable),
        u64::from(IntSource::FENCE.bits()),
        4,
    );
    seen
}

#[test]
fn the_engine_runs_on_its_thread_and_interrupts() {
    let gpu = gpu();
    let seen = record_fence_interrupts(&gpu);
    submit(
        &gpu,
        &[
            Command::FillRect {
                dst: 0x10000,
                pitch: 4096,
                width: 1024,
                height: 16,
                color: 0x336699,
            },
            Command::Fence {
                seqno: 42,
                interrupt: true,
            },
        ],
    );
    gpu.wait_engine_idle();
    assert_eq!(gpu.mmio_read(e(EngineReg::Seqno), 4).unwrap(), 42);
    assert_eq!(
        gpu.mmio_read(e(EngineReg::RingHead), 4).unwrap(),
        4 * (7 + 2)
    );
    let mut px = [0u8; 4];
    gpu.vram()
        .read(0x10000 + 15 * 4096 + 4092, &mut px)
        .unwrap();
    assert_eq!(u32::from_le_bytes(px), 0x336699);
    assert_eq!(
        *seen.lock(),
        [IrqLine {
            asserted: true,
            message: true
        }]
    );
    assert_eq!(
        gpu.mmio_read(g(GlobalReg::IntStatus), 4).unwrap(),
        u64::from(IntSource::FENCE.bits())
    );
}

#[test]
fn an_engine_error_halts_until_reset() {
    let gpu = gpu();
    submit(
        &gpu,
        &[
            Command::StoreDw {
                addr: 300 * 4096,
                value: 1,
            },
            Command::Fence {
                seqno: 1,
                interrupt: false,
            },
        ],
    );
    gpu.wait_engine_idle();
    let st = gpu.engine_state();
    assert_eq!(
        (st.error, st.error_addr, st.head, st.seqno),
        (error::BAD_ADDRESS, 300 * 4096, 0, 0)
    );
    let status =
        IntSource::from_bits_truncate(gpu.mmio_read(g(GlobalReg::IntStatus), 4).unwrap() as u32);
    assert_eq!(status, IntSource::ENGINE_ERROR | IntSource::GTT_FAULT);
    // Reset the engine (disabled, so it stays put), then a new ring.
    gpu.mmio_write(e(EngineReg::RingCtl), u64::from(ring_ctl::RESET), 4);
    let st = gpu.engine_state();
    assert_eq!((st.error, st.head, st.ctl), (error::NONE, 0, 0));
    gpu.mmio_write(e(EngineReg::RingTail), 0, 4);
    submit(
        &gpu,
        &[Command::Fence {
            seqno: 3,
            interrupt: false,
        }],
    );
    gpu.wait_engine_idle();
    assert_eq!(gpu.engine_state().seqno, 3);
}

#[test]
fn reset_waits_for_a_run_and_stops_the_engine() {
    let gpu = gpu();
    let big = Command::FillRect {
        dst: 0x10000,
        pitch: 4096,
        width: 1024,
        height: 200,
        color: 1,
    };
    submit(
        &gpu,
        &[
            big,
            big,
            big,
            big,
            Command::Fence {
                seqno: 9,
                interrupt: false,
            },
        ],
    );
    let fx = gpu.reset();
    assert_eq!(fx.irq, Some(IrqLine::default()));
    gpu.wait_engine_idle();
    let st = gpu.engine_state();
    assert_eq!((st.ctl, st.head, st.tail, st.seqno), (0, 0, 0, 0));
}

#[test]
fn engine_and_display_blocks_store_values() {
    let gpu = gpu();
    gpu.mmio_write(bar2::ENGINE, 0x10_0000, 8);
    assert_eq!(gpu.mmio_read(bar2::ENGINE, 8).unwrap(), 0x10_0000);
    gpu.mmio_write(bar2::DISPLAY + 0x10, 1024, 4);
    assert_eq!(gpu.mmio_read(bar2::DISPLAY + 0x10, 4).unwrap(), 1024);
    assert_eq!(
        gpu.mmio_read(0x8000, 4),
        Err(RegError::NoRegister {
            offset: 0x8000,
            size: 4
        })
    );
}

/// A short stream on an idle engine with inline runs allowed has run, and
/// raised its interrupt, by the time the tail write returns: no thread was
/// woken for it.
#[test]
fn a_short_stream_runs_in_the_tail_writers_thread() {
    let gpu = gpu();
    gpu.set_inline_dwords(16);
    let seen = record_fence_interrupts(&gpu);
    submit(
        &gpu,
        &[
            Command::StoreDw {
                addr: 0x8000,
                value: 0xfeed,
            },
            Command::Fence {
                seqno: 5,
                interrupt: true,
            },
        ],
    );
    let st = gpu.engine_state();
    assert_eq!((st.seqno, st.head, st.error), (5, st.tail, error::NONE));
    assert_eq!(seen.lock().len(), 1, "the interrupt was delivered");
    let mut word = [0u8; 4];
    gpu.vram().read(0x8000, &mut word).unwrap();
    assert_eq!(u32::from_le_bytes(word), 0xfeed);
}

fn ctl(gpu: &Gpu) -> u32 {
    gpu.mmio_read(e(EngineReg::RingCtl), 4).unwrap() as u32
}

fn status(gpu: &Gpu) -> IntSource {
    IntSource::from_bits_truncate(gpu.mmio_read(g(GlobalReg::IntStatus), 4).unwrap() as u32)
}

fn write_ctl(gpu: &Gpu, value: u32) -> Effects {
    gpu.mmio_write(e(EngineReg::RingCtl), u64::from(value), 4)
}

/// Enable the PREEMPTED interrupt and keep every line the worker delivers.
fn record_preempted_interrupts(gpu: &Gpu) -> Arc<parking_lot::Mutex<Vec<IrqLine>>> {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    gpu.set_irq_sink(Arc::new(move |line| log.lock().push(line)));
    gpu.mmio_write(
        g(GlobalReg::IntEnable),
        u64::from(IntSource::PREEMPTED.bits()),
        4,
    );
    seen
}

const ASSERTED: IrqLine = IrqLine {
    asserted: true,
    message: true,
};

/// Ten rows of 64 KiB (four to a band) at 0x10000.
const TEN_ROWS: Command = Command::FillRect {
    dst: 0x10000,
    pitch: 64 << 10,
    width: 16 << 10,
    height: 10,
    color: 0x00ab_cdef,
};

fn pixel(gpu: &Gpu, at: u64) -> u32 {
    let mut px = [0u8; 4];
    gpu.vram().read(at, &mut px).unwrap();
    u32::from_le_bytes(px)
}

#[test]
fn preempt_on_an_idle_engine_is_answered_at_once() {
    let gpu = gpu();
    record_preempted_interrupts(&gpu);
    submit(
        &gpu,
        &[Command::Fence {
            seqno: 1,
            interrupt: false,
        }],
    );
    gpu.wait_engine_idle();
    let fx = write_ctl(&gpu, ring_ctl::ENABLE | ring_ctl::PREEMPT);
    assert_eq!(fx.irq, Some(ASSERTED), "answered in the write's effects");
    assert_eq!(ctl(&gpu), 0, "ENABLE and PREEMPT clear");
    assert_eq!(status(&gpu), IntSource::PREEMPTED);
    assert!(!gpu.core.preempt.load(Ordering::Acquire));
}

#[test]
fn a_held_engine_answers_when_released_then_resumes() {
    let gpu = gpu();
    let seen = record_preempted_interrupts(&gpu);
    gpu.set_engine_hold(true);
    let store = Command::StoreDw {
        addr: 0x8000,
        value: 0xfeed,
    };
    let fence = Command::Fence {
        seqno: 7,
        interrupt: false,
    };
    submit(&gpu, &[store, fence]);
    let fx = write_ctl(&gpu, ring_ctl::ENABLE | ring_ctl::PREEMPT);
    assert_eq!(fx.irq, None, "a held engine answers nothing");
    assert_eq!(ctl(&gpu), ring_ctl::ENABLE | ring_ctl::PREEMPT, "pending");
    // Writing 0 does not withdraw it.
    write_ctl(&gpu, ring_ctl::ENABLE);
    assert_eq!(ctl(&gpu), ring_ctl::ENABLE | ring_ctl::PREEMPT);
    assert!(status(&gpu).is_empty());

    gpu.set_engine_hold(false);
    gpu.wait_engine_idle();
    let st = gpu.engine_state();
    assert_eq!((st.ctl, st.head, st.resume, st.seqno), (0, 0, 0, 0));
    assert_eq!(pixel(&gpu, 0x8000), 0, "stopped before the first command");
    assert_eq!(status(&gpu), IntSource::PREEMPTED);
    assert_eq!(*seen.lock(), [ASSERTED]);

    write_ctl(&gpu, ring_ctl::ENABLE);
    gpu.wait_engine_idle();
    let st = gpu.engine_state();
    assert_eq!((st.ctl, st.head, st.seqno), (ring_ctl::ENABLE, st.tail, 7));
    assert_eq!(pixel(&gpu, 0x8000), 0xfeed);
}

#[test]
fn a_run_stops_for_a_request_that_came_while_it_ran() {
    let gpu = gpu();
    gpu.set_engine_hold(true);
    submit(&gpu, &[TEN_ROWS]);
    // What a RING_CTL write does while a run is in flight: the request
    // reaches the run through the atomic, not its copy of the registers.
    gpu.core.preempt.store(true, Ordering::Release);
    let st = gpu.core.state.lock();
    let st = gpu.core.run(st, RUN_BUDGET);
    assert_eq!((st.engine.ctl, st.engine.head), (0, 0));
    assert!(st.global.irq.status().contains(IntSource::PREEMPTED));
    drop(st);
    assert!(!gpu.core.preempt.load(Ordering::Acquire), "answered");
    assert_eq!(pixel(&gpu, 0x10000), 0);
}

#[test]
fn a_resumed_rectangle_skips_its_rows_done() {
    let gpu = gpu();
    gpu.set_engine_hold(true);
    submit(&gpu, &[TEN_ROWS]);
    // Where a preemption after one band leaves it.
    gpu.mmio_write(e(EngineReg::RingResume), 4, 4);
    gpu.set_engine_hold(false);
    gpu.wait_engine_idle();
    let st = gpu.engine_state();
    assert_eq!((st.head, st.resume, st.error), (st.tail, 0, error::NONE));
    let row = |y: u64| 0x10000 + y * (64 << 10);
    assert_eq!(pixel(&gpu, row(3) + 4092), 0, "rows done are not redone");
    assert_eq!(pixel(&gpu, row(4)), 0x00ab_cdef);
    assert_eq!(pixel(&gpu, row(9) + (64 << 10) - 4), 0x00ab_cdef);
    assert_eq!(gpu.mmio_read(e(EngineReg::RingResume), 4), Ok(0));
}

#[test]
fn resets_clear_a_pending_request_and_ring_resume() {
    let gpu = gpu();
    record_preempted_interrupts(&gpu);
    gpu.set_engine_hold(true);
    submit(&gpu, &[TEN_ROWS]);
    write_ctl(&gpu, ring_ctl::ENABLE | ring_ctl::PREEMPT);
    gpu.mmio_write(e(EngineReg::RingResume), 5, 4);
    write_ctl(&gpu, ring_ctl::RESET);
    assert_eq!(ctl(&gpu), 0);
    assert_eq!(gpu.mmio_read(e(EngineReg::RingResume), 4), Ok(0));
    assert!(!gpu.core.preempt.load(Ordering::Acquire));
    gpu.set_engine_hold(false);
    gpu.wait_engine_idle();
    assert!(status(&gpu).is_empty(), "nothing to answer");

    // The device reset too.
    gpu.set_engine_hold(true);
    write_ctl(&gpu, ring_ctl::PREEMPT);
    gpu.mmio_write(e(EngineReg::RingResume), 5, 4);
    gpu.core.preempt.store(true, Ordering::Release);
    gpu.reset();
    let st = gpu.engine_state();
    assert_eq!((st.ctl, st.resume), (0, 0));
    assert!(!gpu.core.preempt.load(Ordering::Acquire));
}

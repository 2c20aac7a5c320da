//! A vGPU saved on one GPU and loaded on another: what the guest sees
//! carries over, work goes on through the old GTT entries, and a stream a
//! guest could not have produced is refused with its field named.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rvg_mediator::shared::TIMESLICE_DEFAULT;
use rvg_mediator::vgpu::VGPU_GTT_ENTRIES;
use rvg_mediator::{LoadError, MemKind, SavedVgpu, Vgpu, VgpuConfig};
use rvg_model::cmd::Command;
use rvg_model::engine::error;
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, DispiReg, DisplayReg, EngineReg, GlobalReg, Register};
use rvg_vfio::{HostRange, SoftGpu};

/// Guest RAM at 1 MiB, as the memory listener reports it.
const RAM_GPA: u64 = 0x10_0000;
const RAM_PAGES: u64 = 16;
/// GTT entries of the scenario: a system page, a half-written entry, a
/// rejected one (all past the 256 local pages `Guest::new` maps).
const SYSTEM_ENTRY: u64 = 300;
const HALF_ENTRY: u64 = 400;
const REJECTED_ENTRY: u64 = 500;

fn with_ram(v: &mut Vgpu, ram: &Arc<HostRange>) {
    let fx = v.guest_ram_add(RAM_GPA, RAM_PAGES * PAGE, Some(ram.alias()), MemKind::Ram);
    assert!(fx.diags.is_empty(), "{:?}", fx.diags);
}

fn ram_u32(ram: &HostRange, offset: u64) -> u32 {
    let mut b = [0; 4];
    ram.read(offset, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn greg(r: GlobalReg) -> u64 {
    bar2::GLOBAL + r.offset()
}

fn gtt(i: u64) -> u64 {
    bar2::GTT + 8 * i
}

/// A vGPU in the middle of its life: registers of every block set, GTT
/// entries of every kind, work done with a fence whose interrupt is still
/// to be delivered.
fn busy_source() -> (Guest, Arc<HostRange>, Arc<SoftGpu>) {
    let (mut g, soft) = guest();
    let ram = Arc::new(HostRange::anonymous(RAM_PAGES * PAGE).unwrap());
    with_ram(&mut g.v, &ram);
    let v = &mut g.v;
    v.mmio_write(gtt(SYSTEM_ENTRY), GttEntry::new(RAM_GPA + PAGE, false).0, 8);
    v.mmio_write(
        gtt(HALF_ENTRY),
        GttEntry::new(0x5000, true).0 & 0xffff_ffff,
        4,
    );
    let fx = v.mmio_write(gtt(REJECTED_ENTRY), GttEntry::new(VRAM + PAGE, true).0, 8);
    assert_eq!(fx.diags.len(), 1, "the entry outside VRAM is rejected");
    v.mmio_write(greg(GlobalReg::Scratch), 0x5eed_0000_0000_0001, 8);
    v.mmio_write(greg(GlobalReg::IntMask), 0x8, 4);
    let plane = |r: DisplayReg| bar2::DISPLAY + r.offset();
    v.mmio_write(plane(DisplayReg::PlaneWidth), 640, 4);
    v.mmio_write(plane(DisplayReg::PlaneHeight), 480, 4);
    v.mmio_write(plane(DisplayReg::PlaneStride), 2560, 4);
    v.mmio_write(plane(DisplayReg::PlaneBase), 0x4_0000, 8);
    v.mmio_write(bar2::DISPI + 2 * DispiReg::Xres as u64, 800, 2);
    v.mmio_write(bar2::VGA_PORTS + 1, 0x20, 1);
    g.submit(&[
        Command::FillRect {
            dst: 0x1_0000,
            pitch: 256,
            width: 64,
            height: 16,
            color: 0x00aa_bbcc,
        },
        Command::FillRect {
            dst: SYSTEM_ENTRY * PAGE,
            pitch: 256,
            width: 64,
            height: 2,
            color: 0x0011_2233,
        },
        Command::Fence {
            seqno: 5,
            interrupt: true,
        },
    ]);
    g.wait_idle();
    assert_eq!(g.reg(EngineReg::Error), 0);
    (g, ram, soft)
}

/// A vGPU on a GPU of its own, with a copy of `ram` as its guest RAM and
/// `vram` copied into its VRAM slice, as QEMU's RAM migration leaves them.
fn destination(vram: &[u8], ram: &HostRange) -> (Guest, Arc<HostRange>) {
    let config = VgpuConfig::new(VRAM);
    let (gpu, _) = gpu(config.private_gpu_vram(), TIMESLICE_DEFAULT);
    let mut g = Guest {
        v: Vgpu::new(config, gpu).unwrap(),
        tail: 0,
    };
    g.write(0, vram);
    let copy = Arc::new(HostRange::anonymous(RAM_PAGES * PAGE).unwrap());
    let mut bytes = vec![0; (RAM_PAGES * PAGE) as usize];
    ram.read(0, &mut bytes).unwrap();
    copy.write(0, &bytes).unwrap();
    with_ram(&mut g.v, &copy);
    (g, copy)
}

/// Every register offset of the four blocks a guest reads.
fn register_offsets() -> Vec<(u64, u32)> {
    let mut out = Vec::new();
    let mut add = |base: u64, regs: &mut dyn Iterator<Item = (u64, u64)>| {
        out.extend(regs.map(|(off, width)| (base + off, width as u32)));
    };
    add(
        bar2::GLOBAL,
        &mut GlobalReg::ALL.iter().map(|r| (r.offset(), r.width())),
    );
    add(
        bar2::ENGINE,
        &mut EngineReg::ALL.iter().map(|r| (r.offset(), r.width())),
    );
    add(
        bar2::DISPLAY,
        &mut DisplayReg::ALL.iter().map(|r| (r.offset(), r.width())),
    );
    add(
        bar2::DISPI,
        &mut DispiReg::ALL.iter().map(|r| (2 * *r as u64, 2)),
    );
    out
}

#[test]
fn a_vgpu_carries_over_to_another_gpu_and_goes_on() {
    let (mut src, ram, _) = busy_source();
    src.v.quiesce(Duration::from_secs(2)).unwrap();
    let bytes = src.v.save().unwrap();
    let vram = src.read(0, VRAM as usize);
    let (mut dst, dst_ram) = destination(&vram, &ram);
    let fx = dst.v.load(&bytes, true).unwrap();
    assert!(fx.diags.is_empty(), "{:?}", fx.diags);

    for (offset, size) in register_offsets() {
        assert_eq!(
            dst.v.mmio_read(offset, size).ok(),
            src.v.mmio_read(offset, size).ok(),
            "register at {offset:#x}"
        );
    }
    for i in 0..u64::from(VGPU_GTT_ENTRIES) {
        assert_eq!(
            dst.v.mmio_read(gtt(i), 8),
            src.v.mmio_read(gtt(i), 8),
            "GTT {i}"
        );
    }
    for i in [1, SYSTEM_ENTRY, HALF_ENTRY, REJECTED_ENTRY] {
        let i = i as u32;
        assert_eq!(dst.v.gtt_dump(i, 1), src.v.gtt_dump(i, 1), "shadow of {i}");
    }
    let msg = dst.v.event();
    assert!(
        msg.irq.is_some_and(|l| l.message && l.asserted),
        "the fence's interrupt is still delivered: {msg:?}"
    );

    // Work goes on where the source stopped, through the old entries.
    dst.tail = src.tail;
    dst.submit(&[
        Command::CopyRect {
            src: 0x1_0000,
            src_pitch: 256,
            dst: 0x2_0000,
            dst_pitch: 256,
            width: 64,
            height: 16,
        },
        Command::StoreDw {
            addr: SYSTEM_ENTRY * PAGE + 0x800,
            value: 0xfeed,
        },
        Command::Fence {
            seqno: 6,
            interrupt: false,
        },
    ]);
    dst.wait_idle();
    assert_eq!(dst.reg(EngineReg::Error), 0);
    assert_eq!(dst.reg(EngineReg::Seqno), 6);
    assert_eq!(dst.u32_at(0x2_0000 + 15 * 256 + 252), 0x00aa_bbcc);
    assert_eq!(ram_u32(&dst_ram, PAGE + 256 + 252), 0x0011_2233);
    assert_eq!(ram_u32(&dst_ram, PAGE + 0x800), 0xfeed);
    assert_eq!(
        ram_u32(&ram, PAGE + 0x800),
        0,
        "the source's RAM is not touched"
    );
}

/// A stream with one field a guest of this vGPU could not have produced
/// is refused, naming the field, and the destination is left as it was.
#[test]
fn a_hostile_stream_is_refused_with_its_field_named() {
    let (mut src, ram, _) = busy_source();
    src.v.quiesce(Duration::from_secs(2)).unwrap();
    let good = SavedVgpu::decode(&src.v.save().unwrap(), VGPU_GTT_ENTRIES).unwrap();
    let plane_width = DisplayReg::PlaneWidth.index();
    type Corruption = (&'static str, Box<dyn Fn(&mut SavedVgpu)>);
    let corruptions: Vec<Corruption> = vec![
        ("vram_size", Box::new(|s| s.vram_size *= 2)),
        ("gtt_entries", Box::new(|s| s.gtt_entries -= 1)),
        ("gtt.count", Box::new(|s| _ = s.gtt.pop())),
        ("INT_STATUS", Box::new(|s| s.global.int_status |= 1 << 30)),
        ("INT_ENABLE", Box::new(|s| s.global.int_enable = u32::MAX)),
        ("FAULT_REASON", Box::new(|s| s.global.fault_reason = 0x99)),
        ("engine.ctl", Box::new(|s| s.engine.ctl |= 1 << 2)),
        (
            "engine.error",
            Box::new(|s| s.engine.error = error::MAX + 1),
        ),
        ("engine.head", Box::new(|s| s.engine.head += 2)),
        ("scan_head", Box::new(|s| s.scan_head += 0x40)),
        (
            "gtt_partial.index",
            Box::new(|s| s.gtt_partial = vec![(9, 1), (3, 1)]),
        ),
        (
            "gtt_partial.index",
            Box::new(|s| s.gtt_partial = vec![(VGPU_GTT_ENTRIES, 1)]),
        ),
        (
            "gtt_partial.halves",
            Box::new(|s| s.gtt_partial = vec![(3, 3)]),
        ),
        (
            "PLANE_WIDTH",
            Box::new(move |s| s.display[plane_width] = 1 << 40),
        ),
        ("display.count", Box::new(|s| _ = s.display.pop())),
        (
            "DISPI_XRES",
            Box::new(|s| s.dispi[DispiReg::Xres as usize] = 0x1_0000),
        ),
    ];
    let (mut dst, _) = destination(&[], &ram);
    for (field, corrupt) in &corruptions {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let Err(e) = dst.v.load(&bad.encode(), true) else {
            panic!("{field}: the stream was taken");
        };
        assert!(e.to_string().contains(field), "{field}: {e}");
        assert_eq!(
            dst.v.mmio_read(greg(GlobalReg::Scratch), 8),
            Ok(0),
            "{field}"
        );
        assert_eq!(dst.v.mmio_read(gtt(SYSTEM_ENTRY), 8), Ok(0), "{field}");
    }
    let bytes = good.encode();
    let e = dst.v.load(&bytes[..bytes.len() - 3], true).unwrap_err();
    assert_eq!(
        e,
        LoadError::Truncated {
            field: "rejected_streams"
        }
    );
    // The good stream still loads after all those refusals.
    dst.v.load(&bytes, true).unwrap();
    assert_eq!(
        dst.v.mmio_read(greg(GlobalReg::Scratch), 8),
        Ok(0x5eed_0000_0000_0001)
    );
}

/// A stopping vGPU waits for its work in the GPU; work that does not
/// finish in time is not saved half done.
#[test]
fn work_in_the_gpu_is_waited_for_and_never_saved_half_done() {
    let (mut g, soft) = guest();
    soft.gpu().set_engine_hold(true);
    g.submit(&[Command::Fence {
        seqno: 1,
        interrupt: false,
    }]);
    let e = g.v.quiesce(Duration::from_millis(30)).unwrap_err();
    assert_eq!(e.timeout, Duration::from_millis(30));
    let e = g.v.save().unwrap_err();
    assert!(e.to_string().contains("30ms"), "{e}");
    soft.gpu().set_engine_hold(false);
    g.v.quiesce(Duration::from_secs(2)).unwrap();
    let saved = SavedVgpu::decode(&g.v.save().unwrap(), VGPU_GTT_ENTRIES).unwrap();
    assert_eq!((saved.engine.seqno, saved.engine.head), (1, g.tail));
}

/// What the GPU may have written is reported only once its work ran, and
/// only the pages the vGPU's GTT maps.
#[test]
fn gpu_writes_are_the_mapped_pages_once_work_ran() {
    let (mut g, _) = guest();
    let ram = Arc::new(HostRange::anonymous(RAM_PAGES * PAGE).unwrap());
    with_ram(&mut g.v, &ram);
    g.v.mmio_write(
        gtt(SYSTEM_ENTRY),
        GttEntry::new(RAM_GPA + 2 * PAGE, false).0,
        8,
    );
    g.v.track_gpu_writes();
    assert_eq!(g.v.take_gpu_writes(), vec![], "nothing ran");
    g.submit(&[Command::Fence {
        seqno: 1,
        interrupt: false,
    }]);
    g.wait_idle();
    g.v.quiesce(Duration::from_secs(2)).unwrap();
    use rvg_mediator::GpuWrite;
    assert_eq!(
        g.v.take_gpu_writes(),
        vec![
            GpuWrite::Vram {
                offset: 0,
                len: 256 * PAGE
            },
            GpuWrite::GuestRam {
                gpa: RAM_GPA + 2 * PAGE,
                len: PAGE
            },
        ]
    );
    assert_eq!(g.v.take_gpu_writes(), vec![], "reported once");
}

/// Two vGPUs on one GPU, the engine held with the neighbour's work in
/// flight: a vGPU with nothing in the GPU quiesces and saves at once,
/// whatever its neighbour does; one with work queued behind the
/// neighbour's waits, and is refused while it does; once the engine runs,
/// both finish and the waiting one saves.
#[test]
fn a_neighbours_work_in_flight_neither_blocks_nor_is_dropped() {
    let config = VgpuConfig::new(VRAM);
    let (shared, soft) = gpu(4 * config.private_gpu_vram(), TIMESLICE_DEFAULT);
    let mut a = Guest::new(Vgpu::new(config.clone(), shared.clone()).unwrap());
    let mut b = Guest::new(Vgpu::new(config, shared).unwrap());
    soft.gpu().set_engine_hold(true);
    b.submit(&[Command::Fence {
        seqno: 1,
        interrupt: false,
    }]);
    a.v.quiesce(Duration::ZERO).unwrap();
    a.v.save().unwrap();

    a.submit(&[Command::Fence {
        seqno: 2,
        interrupt: false,
    }]);
    assert!(a.v.quiesce(Duration::from_millis(20)).is_err());
    assert!(a.v.save().is_err(), "work queued behind the neighbour's");
    soft.gpu().set_engine_hold(false);
    a.v.quiesce(Duration::from_secs(2)).unwrap();
    b.wait_idle();
    assert_eq!(a.reg(EngineReg::Seqno), 2);
    assert_eq!(b.reg(EngineReg::Seqno), 1);
    let saved = SavedVgpu::decode(&a.v.save().unwrap(), VGPU_GTT_ENTRIES).unwrap();
    assert_eq!((saved.engine.seqno, saved.engine.head), (2, a.tail));
}

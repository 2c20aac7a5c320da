//! SR-IOV functions: each VF's window on the GTT and VRAM, the engine they
//! take turns on, and what one VF's fault or reset does to the others.

use super::*;
use rvg_model::cmd::Command;
use rvg_model::engine::{error, ring_ctl, EngineState};
use rvg_model::irq::IntSource;
use rvg_model::regs::{EngineReg, GlobalReg, Register, SriovReg};

const MIB: u64 = 1 << 20;

/// A 64 MiB GPU with 4 VFs of 16 MiB and 32768 GTT entries each.
fn pf() -> Gpu {
    Gpu::with_vfs(
        GpuConfig {
            vram_size: 64 * MIB,
        },
        4,
    )
    .unwrap()
}

fn g(r: GlobalReg) -> u64 {
    bar2::GLOBAL + r.offset()
}

fn e(r: EngineReg) -> u64 {
    bar2::ENGINE + r.offset()
}

/// The function's first 256 graphics pages mapped 1:1 onto its VRAM, a
/// 4 KiB ring at graphics 0 holding `cmds`, the engine enabled and kicked.
fn submit(f: &Gpu, cmds: &[Command]) {
    map(f, 0..256);
    let dw: Vec<u8> = cmds
        .iter()
        .flat_map(|c| c.encode())
        .flat_map(|d| d.to_le_bytes())
        .collect();
    f.vram().write(0, &dw).unwrap();
    f.mmio_write(e(EngineReg::RingBase), 0, 8);
    f.mmio_write(e(EngineReg::RingSize), 4096, 4);
    f.mmio_write(e(EngineReg::RingCtl), u64::from(ring_ctl::ENABLE), 4);
    f.mmio_write(e(EngineReg::RingTail), dw.len() as u64, 4);
}

fn fill(dst: u64, color: u32) -> Command {
    Command::FillRect {
        dst,
        pitch: 4096,
        width: 1024,
        height: 64,
        color,
    }
}

fn pixel(vram: &Vram, at: u64) -> u32 {
    let mut px = [0u8; 4];
    vram.read(at, &mut px).unwrap();
    u32::from_le_bytes(px)
}

#[test]
fn a_vf_sees_its_partition_as_a_whole_gpu() {
    let pf = pf();
    let vf = pf.vf(2).unwrap();
    assert_eq!(vf.mmio_read(g(GlobalReg::VramSize), 8).unwrap(), 16 * MIB);
    assert_eq!(vf.mmio_read(g(GlobalReg::GttEntries), 4).unwrap(), 32768);
    assert_eq!(vf.vram().len(), 16 * MIB);
    assert_eq!(
        pf.mmio_read(g(GlobalReg::GttEntries), 4).unwrap(),
        u64::from(GTT_ENTRIES)
    );
    // Its GTT entry n is the GPU's entry base + n.
    vf.mmio_write(bar2::GTT + 5 * 8, 0x7003, 8);
    assert_eq!(pf.gtt_entry(2 * 32768 + 5), Some(GttEntry(0x7003)));
    assert_eq!(pf.gtt_entry(5), Some(GttEntry(0)));
    // Past its window there is no register: a write changes nothing.
    let past = bar2::GTT + 32768 * 8;
    let fx = vf.mmio_write(past, 0x3, 8);
    assert_eq!(fx.diags.len(), 1, "refused: {:?}", fx.diags);
    assert!(vf.mmio_read(past, 8).is_err());
    assert_eq!(pf.gtt_entry(3 * 32768), Some(GttEntry(0)));
    // Its VRAM offset 0 is the GPU's partition base.
    vf.vram().write(0, &[9]).unwrap();
    let mut b = [0];
    pf.vram().read(32 * MIB, &mut b).unwrap();
    assert_eq!(b, [9]);
    assert!(pf.vf(4).is_err(), "4 VFs: indexes 0 to 3");
    assert!(vf.vf(0).is_err(), "a VF has no VFs");
    // One function per VF: a second would share its place at the arbiter.
    let twice = pf.vf(2).err().unwrap().to_string();
    assert_eq!(
        twice,
        "property 'vf' is 2: that VF's function exists already"
    );
    drop(vf);
    assert!(pf.vf(2).is_ok(), "once it is gone, it can be made again");
}

#[test]
fn a_vf_engine_writes_only_its_partition_and_faults_past_it() {
    let pf = pf();
    let vf = pf.vf(1).unwrap();
    pf.vram().fill32(0, 64 * MIB, 0x5a5a_5a5a).unwrap();
    // A local entry at the partition's last page, and one just past it.
    vf.mmio_write(
        bar2::GTT + 300 * 8,
        GttEntry::new(16 * MIB - 4096, true).0,
        8,
    );
    vf.mmio_write(bar2::GTT + 301 * 8, GttEntry::new(16 * MIB, true).0, 8);
    submit(
        &vf,
        &[
            Command::StoreDw {
                addr: 300 * 4096,
                value: 0x1111,
            },
            Command::StoreDw {
                addr: 301 * 4096,
                value: 0x2222,
            },
        ],
    );
    vf.wait_engine_idle();
    let st = vf.engine_state();
    assert_eq!((st.error, st.error_addr), (error::BAD_ADDRESS, 301 * 4096));
    assert_eq!(pixel(pf.vram(), 32 * MIB - 4096), 0x1111);
    // Outside the partition nothing changed: the next partition's first
    // page, and everything below.
    assert_eq!(pixel(pf.vram(), 32 * MIB), 0x5a5a_5a5a);
    let mut all = vec![0u8; (64 * MIB) as usize];
    pf.vram().read(0, &mut all).unwrap();
    let changed: Vec<usize> = all
        .chunks(4)
        .enumerate()
        .filter(|(_, w)| *w != [0x5a; 4])
        .map(|(i, _)| i * 4)
        .collect();
    let ring = (16 * MIB) as usize..(16 * MIB + 4096) as usize;
    assert!(
        changed
            .iter()
            .all(|a| ring.contains(a) || *a == (32 * MIB - 4096) as usize),
        "{:x?}",
        &changed[..changed.len().min(8)]
    );
}

#[test]
fn two_vfs_share_the_engine_and_a_fault_stops_only_its_own() {
    let pf = pf();
    let (a, b) = (pf.vf(0).unwrap(), pf.vf(3).unwrap());
    let mut work: Vec<Command> = (0..20).map(|i| fill(0x10000, i)).collect();
    work.push(Command::Fence {
        seqno: 7,
        interrupt: false,
    });
    submit(&a, &work);
    submit(
        &b,
        &[Command::StoreDw {
            addr: 4000 * 4096,
            value: 1,
        }],
    );
    a.wait_engine_idle();
    b.wait_engine_idle();
    assert_eq!(a.engine_state().seqno, 7);
    assert_eq!(a.engine_state().error, error::NONE);
    assert_eq!(pixel(a.vram(), 0x10000 + 63 * 4096), 19);
    assert_eq!(b.engine_state().error, error::BAD_ADDRESS);
    let status = |f: &Gpu| f.mmio_read(g(GlobalReg::IntStatus), 4).unwrap();
    assert_ne!(status(&b), 0, "the faulting VF has its own error status");
    assert_eq!(status(&a), 0);
    assert!(a.engine_time() > Duration::ZERO);
}

/// A VF with a little work does not wait for a busy VF's long work: it
/// gets the engine after at most the busy one's quantum.
#[test]
fn a_vf_in_line_gets_its_turn_from_a_busy_one() {
    let pf = pf();
    let (busy, light) = (pf.vf(0).unwrap(), pf.vf(1).unwrap());
    // 100 fills of 8 MiB: far more than a quantum's work.
    let long: Vec<Command> = big_fills(100, 0x10000)
        .chain([Command::Fence {
            seqno: 1,
            interrupt: false,
        }])
        .collect();
    let short = [
        fill(0x10000, 0x77),
        Command::Fence {
            seqno: 1,
            interrupt: false,
        },
    ];
    busy.set_engine_hold(true);
    light.set_engine_hold(true);
    submit(&busy, &long);
    map(&busy, 256..4096);
    submit(&light, &short);
    busy.set_engine_hold(false);
    while pf.core.phys.arbiter.owner() != Some(busy.core.function) {
        std::thread::yield_now();
    }
    light.set_engine_hold(false);
    light.wait_engine_idle();
    assert_eq!(light.engine_state().seqno, 1);
    assert_eq!(pixel(light.vram(), 0x10000 + 63 * 4096), 0x77);
    // The busy one yielded: it is still at its work, not halted (as the
    // preemption timeout would have halted it).
    assert_eq!(busy.engine_state().seqno, 0, "the busy VF is still at it");
    assert_eq!(busy.engine_state().error, error::NONE);
    busy.mmio_write(e(EngineReg::RingCtl), u64::from(ring_ctl::RESET), 4);
    assert!(busy.engine_time() > Duration::ZERO && light.engine_time() > Duration::ZERO);
}

/// `n` fills of 8 MiB at `dst`, each its own colour.
fn big_fills(n: u32, dst: u64) -> impl Iterator<Item = Command> {
    (0..n).map(move |color| Command::FillRect {
        dst,
        pitch: 4096,
        width: 1024,
        height: 2048,
        color,
    })
}

/// A batch of `n` fills of 8 MiB at 0x100000, written at 0x2000 of `f`'s
/// VRAM with all of it mapped: the command that starts it.
fn batch_at_0x2000(f: &Gpu, n: u32) -> Command {
    let bytes: Vec<u8> = big_fills(n, 0x100000)
        .chain([Command::BatchEnd])
        .flat_map(|c| c.encode())
        .flat_map(|d| d.to_le_bytes())
        .collect();
    map(f, 0..4096);
    f.vram().write(0x2000, &bytes).unwrap();
    Command::BatchStart {
        addr: 0x2000,
        len: bytes.len() as u32,
    }
}

/// `hog` has the engine with a batch of minutes of work and no preemption
/// timeout, and `light` (a fill and fence 1) waits in line behind it:
/// however slow this thread, nothing moves until the test acts.
fn hog_with_one_in_line(pf: &Gpu, hog: &Gpu, light: &Gpu) {
    assert!(pf
        .mmio_write(sr(SriovReg::PreemptTimeoutUs), 0, 4)
        .diags
        .is_empty());
    hog.set_engine_hold(true);
    light.set_engine_hold(true);
    let batch = batch_at_0x2000(hog, 30000);
    submit(
        hog,
        &[
            batch,
            Command::Fence {
                seqno: 1,
                interrupt: false,
            },
        ],
    );
    submit(
        light,
        &[
            fill(0x10000, 0x66),
            Command::Fence {
                seqno: 1,
                interrupt: false,
            },
        ],
    );
    hog.set_engine_hold(false);
    while pf.core.phys.arbiter.owner() != Some(hog.core.function) {
        std::thread::yield_now();
    }
    light.set_engine_hold(false);
    while pf.core.phys.arbiter.waiting() == 0 {
        std::thread::yield_now();
    }
}

/// The worst moment for a reset: a VF's FLR while its batch is on the
/// engine and a neighbour waits for it. The reset stops the batch inside
/// (it does not wait for minutes of work), the neighbour gets the engine
/// and completes, and the reset VF is at its reset state, scrubbed.
#[test]
fn a_reset_of_the_owner_mid_batch_lets_the_one_in_line_run() {
    let pf = pf();
    let (hog, light) = (pf.vf(0).unwrap(), pf.vf(1).unwrap());
    hog_with_one_in_line(&pf, &hog, &light);
    assert_eq!(light.engine_state().seqno, 0, "still in line");
    hog.reset();
    light.wait_engine_idle();
    assert_eq!(
        (light.engine_state().seqno, light.engine_state().error),
        (1, error::NONE)
    );
    assert_eq!(pixel(light.vram(), 0x10000), 0x66);
    assert_eq!(hog.engine_state(), EngineState::default());
    assert_eq!(
        pixel(hog.vram(), 0x100000),
        0,
        "the old tenant's fills are gone"
    );
    assert_eq!(hog.gtt_entry(0), Some(GttEntry(0)));
}

/// The worst moment for an unplug: a VF going away while it waits in line
/// behind a batch of minutes. It leaves at once, out of line; the owner
/// goes on, and the engine passes to nobody stale.
#[test]
fn a_vf_unplugged_while_in_line_leaves_at_once() {
    let pf = pf();
    let (hog, light) = (pf.vf(0).unwrap(), pf.vf(1).unwrap());
    hog_with_one_in_line(&pf, &hog, &light);
    drop(light);
    assert_eq!(pf.core.phys.arbiter.waiting(), 0);
    assert_eq!(pf.core.phys.arbiter.owner(), Some(hog.core.function));
    assert_eq!(
        hog.engine_state().seqno,
        0,
        "the owner is still at its batch"
    );
    // Its place is free: a new VF 1 works once the owner is done.
    let again = pf.vf(1).unwrap();
    hog.reset();
    submit(
        &again,
        &[Command::Fence {
            seqno: 9,
            interrupt: false,
        }],
    );
    again.wait_engine_idle();
    assert_eq!(again.engine_state().seqno, 9);
}

fn map(f: &Gpu, pages: std::ops::Range<u32>) {
    for i in pages {
        f.mmio_write(
            bar2::GTT + u64::from(i) * 8,
            GttEntry::new(u64::from(i) * 4096, true).0,
            8,
        );
    }
}

#[test]
fn a_vf_reset_scrubs_its_partition_only_and_a_pf_reset_resets_every_vf() {
    let pf = pf();
    let (a, b) = (pf.vf(0).unwrap(), pf.vf(1).unwrap());
    a.vram().fill32(0, 16 * MIB, 0xaaaa_aaaa).unwrap();
    b.vram().fill32(0, 16 * MIB, 0xbbbb_bbbb).unwrap();
    a.mmio_write(bar2::GTT, 0x3, 8);
    b.mmio_write(bar2::GTT, 0x3, 8);
    a.reset();
    let mut buf = vec![0u8; (16 * MIB) as usize];
    a.vram().read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&x| x == 0), "the old tenant's VRAM is gone");
    assert_eq!(a.gtt_entry(0), Some(GttEntry(0)));
    assert_eq!(
        pixel(b.vram(), 16 * MIB - 4),
        0xbbbb_bbbb,
        "the neighbour's is kept"
    );
    assert_eq!(b.gtt_entry(0), Some(GttEntry(3)));
    // The PF's reset is the GPU's: the VFs too.
    pf.reset();
    assert_eq!(b.gtt_entry(0), Some(GttEntry(0)));
    assert_eq!(pixel(b.vram(), 16 * MIB - 4), 0);
}

fn sr(r: SriovReg) -> u64 {
    bar2::SRIOV + r.offset()
}

#[test]
fn the_pf_alone_has_the_sriov_block() {
    let pf = pf();
    let vf = pf.vf(0).unwrap();
    assert_eq!(pf.mmio_read(sr(SriovReg::TotalVfs), 4), Ok(4));
    assert_eq!(pf.mmio_read(sr(SriovReg::VfGttEntries), 4), Ok(32768));
    assert_eq!(pf.mmio_read(sr(SriovReg::VfVramSize), 8), Ok(16 * MIB));
    assert_eq!(pf.mmio_read(sr(SriovReg::QuantumVf2), 4), Ok(1000));
    // VF 3's quantum: 5 ms; 50 us is too short, VF 4 does not exist.
    assert!(pf
        .mmio_write(sr(SriovReg::QuantumVf3), 5000, 4)
        .diags
        .is_empty());
    assert_eq!(pf.mmio_read(sr(SriovReg::QuantumVf3), 4), Ok(5000));
    let fx = pf.mmio_write(sr(SriovReg::QuantumVf3), 50, 4);
    assert_eq!(fx.diags.len(), 1, "{:?}", fx.diags);
    assert_eq!(pf.mmio_read(sr(SriovReg::QuantumVf3), 4), Ok(5000));
    assert!(pf.mmio_read(sr(SriovReg::QuantumVf4), 4).is_err());
    assert_eq!(pf.mmio_write(sr(SriovReg::TotalVfs), 9, 4).diags.len(), 1);
    // A VF has none of it, and a write there changes nothing.
    assert!(vf.mmio_read(sr(SriovReg::TotalVfs), 4).is_err());
    assert_eq!(
        vf.mmio_write(sr(SriovReg::QuantumVf0), 100, 4).diags.len(),
        1
    );
    assert_eq!(pf.mmio_read(sr(SriovReg::QuantumVf0), 4), Ok(1000));
    // Nor has a GPU without VFs.
    let plain = Gpu::new(GpuConfig {
        vram_size: 16 * MIB,
    })
    .unwrap();
    assert!(plain.mmio_read(sr(SriovReg::TotalVfs), 4).is_err());
}

/// A VF whose batch goes on long past its quantum while another waits is
/// stopped inside the batch and halted with `PREEMPT_TIMEOUT`; the one
/// waiting gets the engine, and the halted one recovers by a ring reset.
#[test]
fn a_batch_past_the_preemption_timeout_is_halted_alone() {
    let pf = pf();
    let (hog, light) = (pf.vf(0).unwrap(), pf.vf(1).unwrap());
    assert!(pf
        .mmio_write(sr(SriovReg::PreemptTimeoutUs), 2000, 4)
        .diags
        .is_empty());
    assert_eq!(pf.mmio_read(sr(SriovReg::PreemptTimeoutUs), 4), Ok(2000));
    assert_eq!(
        pf.mmio_write(sr(SriovReg::PreemptTimeoutUs), 10, 4)
            .diags
            .len(),
        1
    );
    // A batch of 200 fills of 8 MiB at 0x100000 (far longer than 3 ms).
    let batch = batch_at_0x2000(&hog, 200);
    hog.set_engine_hold(true);
    light.set_engine_hold(true);
    submit(
        &hog,
        &[
            batch,
            Command::Fence {
                seqno: 1,
                interrupt: false,
            },
        ],
    );
    hog.mmio_write(
        g(GlobalReg::IntEnable),
        u64::from(IntSource::ENGINE_ERROR.bits()),
        4,
    );
    submit(
        &light,
        &[
            fill(0x10000, 0x66),
            Command::Fence {
                seqno: 1,
                interrupt: false,
            },
        ],
    );
    hog.set_engine_hold(false);
    while pf.core.phys.arbiter.owner() != Some(hog.core.function) {
        std::thread::yield_now();
    }
    light.set_engine_hold(false);
    light.wait_engine_idle();
    hog.wait_engine_idle();
    assert_eq!(light.engine_state().seqno, 1);
    let st = hog.engine_state();
    assert_eq!(
        (st.error, st.error_addr, st.head, st.seqno),
        (error::PREEMPT_TIMEOUT, 0, 0, 0)
    );
    assert_eq!(hog.preempt_timeouts(), 1);
    assert_eq!(
        hog.mmio_read(g(GlobalReg::IntStatus), 4),
        Ok(u64::from(IntSource::ENGINE_ERROR.bits()))
    );
    // A ring reset, and it runs again.
    hog.mmio_write(e(EngineReg::RingCtl), u64::from(ring_ctl::RESET), 4);
    submit(
        &hog,
        &[Command::Fence {
            seqno: 5,
            interrupt: false,
        }],
    );
    hog.wait_engine_idle();
    assert_eq!(
        (hog.engine_state().seqno, hog.engine_state().error),
        (5, error::NONE)
    );
}

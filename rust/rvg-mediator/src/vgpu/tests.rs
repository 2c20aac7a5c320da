use super::*;
use crate::display::edid;
use crate::error::NoRoom;
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, DisplayReg, GlobalReg, Register, DISPI_ID5, QEXT_LITTLE_ENDIAN};
use rvg_model::regs::{fault, RVG_ID};
use rvg_model::GpuConfig;
use rvg_vfio::SoftGpu;
use std::sync::Arc;

const VRAM: u64 = 4 << 20;

fn private_gpu(vram: u64) -> (Arc<SharedGpu>, Arc<SoftGpu>) {
    let soft = Arc::new(
        SoftGpu::new(
            GpuConfig { vram_size: vram },
            Box::new(|m| panic!("physical side complained: {m}")),
        )
        .unwrap(),
    );
    let gpu = SharedGpu::new(
        soft.clone(),
        crate::shared::SchedConfig::default(),
        Arc::new(|m| panic!("scheduler complained: {m}")),
    )
    .unwrap();
    (Arc::new(gpu), soft)
}

fn attach() -> (Vgpu, Arc<SoftGpu>) {
    let config = VgpuConfig::new(VRAM);
    let (gpu, soft) = private_gpu(config.private_gpu_vram());
    (Vgpu::new(config, gpu).unwrap(), soft)
}

fn greg(r: GlobalReg) -> u64 {
    bar2::GLOBAL + r.offset()
}

fn gtt(i: u64) -> u64 {
    bar2::GTT + 8 * i
}

/// A vGPU with `pages` of guest RAM at 1 MiB: page-aligned host memory
/// standing in for it, reported as the memory listener would.
fn attach_with_ram(pages: u64) -> (Vgpu, Arc<SoftGpu>, Arc<HostRange>) {
    let (mut v, soft) = attach();
    v.set_bus_master(true);
    let ram = Arc::new(HostRange::anonymous(pages * 4096).unwrap());
    let fx = v.guest_ram_add(0x10_0000, pages * 4096, Some(ram.alias()), MemKind::Ram);
    assert!(fx.diags.is_empty(), "{:?}", fx.diags);
    (v, soft, ram)
}

#[test]
fn virtual_identity_and_sizes() {
    let (mut v, _) = attach();
    assert_eq!(
        v.mmio_read(greg(GlobalReg::Id), 4).unwrap(),
        u64::from(RVG_ID)
    );
    assert_eq!(v.mmio_read(greg(GlobalReg::VramSize), 8).unwrap(), VRAM);
    assert_eq!(
        v.mmio_read(greg(GlobalReg::GttEntries), 4).unwrap(),
        u64::from(VGPU_GTT_ENTRIES)
    );
    assert_eq!(v.mmio_read(bar2::DISPI, 2).unwrap(), u64::from(DISPI_ID5));
    assert_eq!(v.mmio_read(bar2::DISPI + 0x14, 2).unwrap(), VRAM >> 16);
    assert_eq!(v.mmio_read(bar2::QEMU_EXT, 4).unwrap(), 8);
    assert_eq!(
        v.mmio_read(bar2::QEMU_EXT + 4, 4).unwrap(),
        u64::from(QEXT_LITTLE_ENDIAN)
    );
}

#[test]
fn blocks_store_guest_values() {
    let (mut v, soft) = attach();
    v.mmio_write(bar2::ENGINE, 0x40_0000, 8);
    v.mmio_write(bar2::DISPLAY + 0x10, 1280, 4);
    v.mmio_write(bar2::DISPI + 2, 1024, 2);
    v.mmio_write(bar2::VGA_PORTS, 0x20, 1);
    assert_eq!(v.mmio_read(bar2::ENGINE, 8).unwrap(), 0x40_0000);
    assert_eq!(v.mmio_read(bar2::DISPLAY + 0x10, 4).unwrap(), 1280);
    assert_eq!(v.mmio_read(bar2::DISPI + 2, 2).unwrap(), 1024);
    assert_eq!(v.mmio_read(bar2::VGA_PORTS, 1).unwrap(), 0x20);
    // None of it reached the physical GPU's registers.
    assert_eq!(soft.gpu().mmio_read(bar2::ENGINE, 8).unwrap(), 0);
    let fx = v.mmio_write(bar2::ENGINE + 0x0c, 1, 4);
    assert_eq!(fx.diags.len(), 1, "RING_HEAD is read-only");
}

#[test]
fn gtt_entries_are_shadowed_into_the_slice() {
    let (mut v, soft) = attach();
    v.mmio_write(gtt(5), 0x3000 | GttEntry::LOCAL | GttEntry::VALID, 8);
    let phys = soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES + 5).unwrap();
    assert_eq!(phys, GttEntry::new(VRAM + 0x3000, true));
    assert_eq!(v.mmio_read(gtt(5), 8).unwrap(), 0x3003);
    // Untouched entries of the slice map the scratch page.
    let scratch = soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES + 6).unwrap();
    assert_eq!(scratch, GttEntry::invalid_to(0, true));
    // Nothing outside the slice was written: the mediator's reserved
    // entries keep their scratch mapping, the entries after stay zero.
    assert_eq!(
        soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES - 1).unwrap(),
        GttEntry::invalid_to(0, true)
    );
    assert_eq!(
        soft.gpu()
            .gtt_entry(RESERVED_GTT_ENTRIES + VGPU_GTT_ENTRIES)
            .unwrap()
            .0,
        0
    );
}

#[test]
fn rejected_entries_fault_and_are_reported() {
    let (mut v, _) = attach();
    v.mmio_write(
        greg(GlobalReg::IntEnable),
        u64::from(IntSource::GTT_FAULT.bits()),
        4,
    );
    let fx = v.mmio_write(gtt(9), 0x5000_0000 | GttEntry::VALID, 8);
    assert_eq!(
        fx.irq,
        Some(IrqLine {
            asserted: true,
            message: true
        })
    );
    assert_eq!(fx.diags.len(), 1);
    assert_eq!(
        v.mmio_read(greg(GlobalReg::FaultReason), 4).unwrap(),
        u64::from(fault::GTT_NOT_GUEST_RAM)
    );
    assert_eq!(
        v.mmio_read(greg(GlobalReg::FaultAddr), 8).unwrap(),
        gfx_addr(9)
    );
    assert_eq!(v.mmio_read(greg(GlobalReg::GttFaults), 4).unwrap(), 1);
    assert_eq!(v.shadow_stats().rejected, 1);
}

#[test]
fn guest_ram_is_dma_mapped_pinned_and_invalidated() {
    let (mut v, soft, ram) = attach_with_ram(16);
    v.mmio_write(gtt(0), 0x10_2000 | GttEntry::VALID, 8);
    v.mmio_write(gtt(1), 0x10_2000 | GttEntry::VALID, 8);
    assert_eq!(
        soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES).unwrap(),
        GttEntry::new(0x10_2000, false)
    );
    assert_eq!(v.shadow_stats().pinned_pages, 1);
    // The GPU reaches that page through its DMA mapping.
    soft.gpu().dma().write(0x10_2000, &[0xab]).unwrap();
    let mut b = [0u8];
    ram.read(0x2000, &mut b).unwrap();
    assert_eq!(b, [0xab]);
    // The memory goes away: entries re-pointed, DMA unmapped.
    let fx = v.guest_ram_del(0x10_0000, 16 * 4096);
    assert_eq!(fx.diags.len(), 1);
    assert_eq!(
        soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES).unwrap(),
        GttEntry::invalid_to(0, true)
    );
    assert_eq!(v.shadow_stats().pinned_pages, 0);
    assert!(soft.gpu().dma().write(0x10_2000, &[0]).is_err());
    ram.read(0x2000, &mut b).unwrap();
    assert_eq!(b, [0xab]);
}

#[test]
fn software_interrupt_is_virtual() {
    let (mut v, soft) = attach();
    let sw = u64::from(IntSource::SOFTWARE.bits());
    v.mmio_write(greg(GlobalReg::IntEnable), sw, 4);
    let fx = v.mmio_write(greg(GlobalReg::IntTrigger), sw, 4);
    assert_eq!(
        fx.irq,
        Some(IrqLine {
            asserted: true,
            message: true
        })
    );
    assert_eq!(v.mmio_read(greg(GlobalReg::IntStatus), 4).unwrap(), sw);
    // The GPU, which other vGPUs may share, saw none of it.
    assert_eq!(
        soft.gpu().mmio_read(greg(GlobalReg::IntStatus), 4).unwrap() & sw,
        0
    );
}

/// Only writes that change what QEMU must do reach its interrupt code: a
/// message to send or a new INTx level.
#[test]
fn the_interrupt_line_is_driven_only_when_it_changes() {
    let (mut v, _soft) = attach();
    let sw = u64::from(IntSource::SOFTWARE.bits());
    assert_eq!(v.mmio_write(greg(GlobalReg::Scratch), 5, 4).irq, None);
    assert_eq!(v.mmio_write(greg(GlobalReg::IntEnable), sw, 4).irq, None);
    let raised = v.mmio_write(greg(GlobalReg::IntTrigger), sw, 4).irq;
    assert_eq!(
        raised,
        Some(IrqLine {
            asserted: true,
            message: true
        })
    );
    // Pending already: the level stays, no new message, nothing to do.
    assert_eq!(v.mmio_write(greg(GlobalReg::IntTrigger), sw, 4).irq, None);
    assert_eq!(v.mmio_write(greg(GlobalReg::Scratch), 6, 4).irq, None);
    // Cleared: the level drops.
    assert_eq!(
        v.mmio_write(greg(GlobalReg::IntStatus), sw, 4).irq,
        Some(IrqLine::default())
    );
    // Re-enabling a pending source sends its message.
    v.mmio_write(greg(GlobalReg::IntEnable), 0, 4);
    v.mmio_write(greg(GlobalReg::IntTrigger), sw, 4);
    let fx = v.mmio_write(greg(GlobalReg::IntEnable), sw, 4);
    assert_eq!(
        fx.irq,
        Some(IrqLine {
            asserted: true,
            message: true
        })
    );
}

#[test]
fn reset_releases_everything_but_guest_memory() {
    let (mut v, soft, _ram) = attach_with_ram(4);
    v.mmio_write(gtt(3), 0x10_1000 | GttEntry::VALID, 8);
    v.mmio_write(greg(GlobalReg::Scratch), 77, 8);
    v.mmio_write(
        greg(GlobalReg::Reset),
        u64::from(rvg_model::regs::RESET_MAGIC),
        4,
    );
    assert_eq!(v.mmio_read(greg(GlobalReg::Scratch), 8).unwrap(), 0);
    assert_eq!(v.mmio_read(gtt(3), 8).unwrap(), 0);
    assert_eq!(v.shadow_stats().pinned_pages, 0);
    assert_eq!(
        soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES + 3).unwrap(),
        GttEntry::invalid_to(0, true)
    );
    // The RAM is still mapped, so the guest can map it again.
    v.mmio_write(gtt(3), 0x10_1000 | GttEntry::VALID, 8);
    assert_eq!(v.shadow_stats().system, 1);
}

#[test]
fn detach_leaves_the_gpu_clean() {
    let (mut v, soft, _ram) = attach_with_ram(4);
    v.mmio_write(gtt(0), 0x10_0000 | GttEntry::VALID, 8);
    drop(v);
    assert!(soft.gpu().dma().read(0x10_0000, &mut [0]).is_err());
    assert_eq!(
        soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES).unwrap(),
        GttEntry::invalid_to(0, true)
    );
}

#[test]
fn display_properties_are_checked() {
    let bad = |xres, yres, vram_size| {
        VgpuConfig {
            xres,
            yres,
            ..VgpuConfig::new(vram_size)
        }
        .validate()
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        bad(5000, 768, 64 << 20),
        "property 'xres' is 5000: it must be 320 to 4000"
    );
    assert_eq!(
        bad(1024, 199, 64 << 20),
        "property 'yres' is 199: it must be 200 to 2400"
    );
    assert!(bad(1920, 1080, 4 << 20).contains("vram-size is 4194304 (4 MiB)"));
    assert_eq!(
        bad(1024, 0, 64 << 20),
        "property 'yres' is 0: set it with 'xres', or leave both unset"
    );
    // Unset, the preferred mode is the largest of the list that fits.
    for (vram, mode) in [
        (64 << 20, (1024, 768)),
        (2 << 20, (800, 600)),
        (1 << 20, (320, 240)),
    ] {
        let c = VgpuConfig::new(vram);
        assert!(c.validate().is_ok());
        assert_eq!(c.preferred_mode(), mode);
    }
}

#[test]
fn the_weight_is_checked() {
    let weight = |weight| {
        VgpuConfig {
            weight,
            ..VgpuConfig::new(64 << 20)
        }
        .validate()
        .map_err(|e| e.to_string())
    };
    assert_eq!(weight(1), Ok(()));
    assert_eq!(weight(10_000), Ok(()));
    assert_eq!(
        weight(0),
        Err("property 'weight' is 0: it must be 1 to 10000 (default 100)".to_string())
    );
}

#[test]
fn edid_reads_the_preferred_mode_and_ignores_writes() {
    let (mut v, _) = attach();
    let header = v.mmio_read(bar2::EDID, 8).unwrap();
    assert_eq!(header, 0x00ff_ffff_ffff_ff00);
    let blob: Vec<u8> = (0..128).map(|i| v.mmio_read(i, 1).unwrap() as u8).collect();
    assert_eq!(blob, edid::edid(1024, 768));
    assert_eq!(v.mmio_read(bar2::EDID + 0x200, 4).unwrap(), 0);
    assert_eq!(v.mmio_write(bar2::EDID, 0, 1).diags.len(), 1);
    assert_eq!(v.mmio_read(bar2::EDID, 1).unwrap(), 0);
}

#[test]
fn writing_the_plane_base_flips() {
    let (mut v, _) = attach();
    let flip = u64::from(IntSource::DISPLAY_FLIP.bits());
    let base = bar2::DISPLAY + DisplayReg::PlaneBase.offset();
    let count = |v: &mut Vgpu| {
        v.mmio_read(bar2::DISPLAY + DisplayReg::FlipCount.offset(), 4)
            .unwrap()
    };
    v.mmio_write(base + 4, 1, 4);
    assert_eq!(count(&mut v), 0, "the high half alone does not latch");
    v.mmio_write(base, 0x1000, 4);
    v.mmio_write(base, 0x2000, 8);
    assert_eq!(count(&mut v), 2);
    assert_eq!(v.mmio_read(greg(GlobalReg::IntStatus), 4).unwrap(), flip);
    assert_eq!(v.mmio_read(base, 8).unwrap(), 0x2000);
}

#[test]
fn a_slice_that_does_not_fit_is_refused() {
    let (gpu, _) = private_gpu(VRAM);
    let err = Vgpu::new(VgpuConfig::new(VRAM), gpu.clone()).err().unwrap();
    assert!(
        matches!(err, AttachError::NoRoom(NoRoom::VramFull { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("no free"), "{err}");
    assert_eq!(gpu.occupancy().0, 0, "nothing stays allocated");
}

/// The worst moment for the inbox: the scheduler has posted progress the
/// vGPU has not taken in yet when the guest resets its engine. What
/// completed before the reset still shows; what the old generation posts
/// after it is dropped.
#[test]
fn progress_posted_before_an_engine_reset_is_kept_and_after_it_dropped() {
    use rvg_model::engine::ring_ctl;
    use rvg_model::regs::EngineReg;
    let (mut v, _soft) = attach();
    let eng = |r: EngineReg| bar2::ENGINE + r.offset();
    let old = v.state.generation;
    let posted = |seqno| Progress {
        generation: old,
        seqno: Some(seqno),
        raise: IntSource::FENCE,
        ..Progress::default()
    };
    v.link.inbox.post(posted(7));
    v.mmio_write(eng(EngineReg::RingCtl), 0, 4);
    v.mmio_write(
        eng(EngineReg::RingCtl),
        u64::from(ring_ctl::RESET | ring_ctl::ENABLE),
        4,
    );
    assert_ne!(v.state.generation, old, "a new generation");
    v.link.inbox.post(posted(8));
    assert_eq!(v.mmio_read(eng(EngineReg::Seqno), 4).unwrap(), 7);
    assert!(v.link.inbox.is_empty(), "taken in, and dropped");
    assert_eq!(
        v.mmio_read(greg(GlobalReg::IntStatus), 4).unwrap(),
        u64::from(IntSource::FENCE.bits()),
        "the fence before the reset raised its source"
    );
}

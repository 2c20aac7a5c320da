//! The vGPU: the device a guest drives, mediated onto a GPU it reaches only
//! through the VFIO device contract.
//!
//! Guest-visible state (config aside, which QEMU's PCI core holds) lives
//! here: the virtual register blocks, the guest's GTT, the virtual engine.
//! What reaches the GPU: shadowed GTT entries in the vGPU's slice of the
//! physical GTT, scanned and relocated command streams through the shared
//! GPU's scheduler, DMA mappings of guest RAM. Progress comes back from the
//! scheduler thread and is turned into virtual interrupts on the main loop.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use parking_lot::Mutex;
use rvg_model::block::RegFile;
use rvg_model::block::{decode, RegError};
use rvg_model::config::{check_vgpu_vram_size, human_size, ConfigError};
use rvg_model::effects::Effects;
use rvg_model::engine::{error, ring_ctl, EngineState};
use rvg_model::global::{GlobalBlock, GlobalWrite};
use rvg_model::gtt::{gfx_addr, GttEntry, PAGE_SIZE};
use rvg_model::irq::{IntSource, IrqLine};
use rvg_model::regs::{
    bar2, Bar2Target, DispiReg, DisplayReg, GlobalReg, QemuExtReg, Register, DISPI_ID5,
    QEXT_LITTLE_ENDIAN,
};
use rvg_vfio::contract::{Mapping, Region, VFIO_PCI_BAR0_REGION_INDEX};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::display::edid::{self, EDID_BLOCK};
use crate::display::{scanout, DispiRegs, Display, DisplayHost, DisplayStats, Frame, PlaneRegs};
use crate::guest_gfx::GuestView;
use crate::guest_mem::{GuestMemory, GuestRange, MemKind};
use crate::scan::Scanner;
use crate::shadow::{EntryState, GttShadow, PhysGtt, ShadowStats, SliceLayout, WriteOutcome};
use crate::shared::{CtxId, Progress, SharedGpu};

pub use crate::shared::slices::{RESERVED_GTT_ENTRIES, RESERVED_VRAM, VGPU_GTT_ENTRIES};

/// Bytes of graphics address space a guest sees.
pub const VGPU_GFX_SPACE: u64 = VGPU_GTT_ENTRIES as u64 * PAGE_SIZE;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgpuConfig {
    pub vram_size: u64,
    /// The monitor's preferred mode, as its EDID says; 0 and 0 pick the
    /// first of [`AUTO_MODES`] that fits the VRAM.
    pub xres: u32,
    pub yres: u32,
}

/// Preferred modes to pick from when none is given, best first.
pub const AUTO_MODES: [(u32, u32); 4] = [(1024, 768), (800, 600), (640, 480), (320, 240)];

/// Bytes a mode takes at the 32 bits per pixel drivers use.
fn mode_bytes(xres: u32, yres: u32) -> u64 {
    u64::from(xres) * u64::from(yres) * 4
}

impl VgpuConfig {
    /// `vram_size` bytes of VRAM, the preferred mode picked to fit.
    pub fn new(vram_size: u64) -> VgpuConfig {
        VgpuConfig {
            vram_size,
            xres: 0,
            yres: 0,
        }
    }

    /// The EDID's preferred mode.
    pub fn preferred_mode(&self) -> (u32, u32) {
        if (self.xres, self.yres) != (0, 0) {
            return (self.xres, self.yres);
        }
        AUTO_MODES
            .into_iter()
            .find(|&(x, y)| mode_bytes(x, y) <= self.vram_size)
            .unwrap_or(AUTO_MODES[AUTO_MODES.len() - 1])
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check_vgpu_vram_size(self.vram_size)?;
        // 0 is "unset"; a value that is set must be in range.
        let side = |property, value: u32, min, max| {
            if value == 0 || (min..=max).contains(&value) {
                return Ok(());
            }
            Err(ConfigError::BadProperty {
                property,
                value: value.to_string(),
                expected: format!("it must be {min} to {max}"),
            })
        };
        side("xres", self.xres, edid::XRES_MIN, edid::XRES_MAX)?;
        side("yres", self.yres, edid::YRES_MIN, edid::YRES_MAX)?;
        if (self.xres == 0) != (self.yres == 0) {
            let (property, other) = match self.xres {
                0 => ("xres", "yres"),
                _ => ("yres", "xres"),
            };
            return Err(ConfigError::BadProperty {
                property,
                value: "0".into(),
                expected: format!("set it with '{other}', or leave both unset"),
            });
        }
        if (self.xres, self.yres) == (0, 0) {
            return Ok(());
        }
        // A driver sets the preferred mode at 32 bits per pixel.
        let bytes = mode_bytes(self.xres, self.yres);
        if bytes > self.vram_size {
            return Err(ConfigError::BadProperty {
                property: "xres",
                value: format!("{} (with yres {})", self.xres, self.yres),
                expected: format!(
                    "a {}x{} mode needs {bytes} bytes of VRAM at 32 bits per pixel; vram-size is {}",
                    self.xres,
                    self.yres,
                    human_size(self.vram_size)
                ),
            });
        }
        Ok(())
    }

    /// A GPU of its own: twice the vGPU's VRAM, the slice in the upper half,
    /// the reserved area (scratch page, ring) at the bottom.
    pub fn private_gpu_vram(&self) -> u64 {
        2 * self.vram_size
    }
}

/// The physical GTT through the contract: entries in BAR2's GTT window.
struct ContractGtt<'a>(&'a Region);

impl PhysGtt for ContractGtt<'_> {
    fn write(&mut self, index: u32, entry: GttEntry) -> io::Result<()> {
        self.0.write_u64(bar2::GTT + u64::from(index) * 8, entry.0)
    }
    fn read(&mut self, index: u32) -> io::Result<GttEntry> {
        self.0
            .read_u64(bar2::GTT + u64::from(index) * 8)
            .map(GttEntry)
    }
}

/// The virtual register blocks: everything a reset puts back.
struct Regs {
    global: GlobalBlock,
    engine: EngineState,
    display: RegFile<DisplayReg>,
    dispi: RegFile<DispiReg>,
    qext_endian: u32,
    vga_ports: [u8; bar2::VGA_PORTS_SIZE as usize],
}

impl Regs {
    fn new(config: &VgpuConfig, layout: &SliceLayout) -> Regs {
        Regs {
            global: GlobalBlock::new(config.vram_size, layout.gtt_entries),
            engine: EngineState::default(),
            display: RegFile::default(),
            dispi: RegFile::default(),
            qext_endian: QEXT_LITTLE_ENDIAN,
            vga_ports: [0; bar2::VGA_PORTS_SIZE as usize],
        }
    }
}

/// Command-stream counters for `info rust-vgpu`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub scanned_commands: u64,
    pub rejected_streams: u64,
}

struct State {
    regs: Regs,
    gtt: GttShadow,
    /// Guest memory and its DMA mappings outlive a device reset.
    mem: GuestMemory,
    /// Guest ring offset up to which commands were scanned and submitted.
    scan_head: u32,
    /// Bumped by every engine reset: progress of older work is dropped.
    generation: u64,
    /// The scheduler raised a source that wants a message sent.
    message_pending: bool,
    streams: StreamStats,
    /// Counts the engine's progress reports, for the display: the engine
    /// writes memory QEMU's dirty log does not see.
    engine_progress: u64,
    /// Counts GTT writes and invalidations, for the display.
    gtt_generation: u64,
}

impl State {
    /// What the scheduler reports about this vGPU's work; true if the
    /// interrupt output needs delivering.
    fn apply(&mut self, p: Progress) -> bool {
        if p.generation != self.generation {
            return false;
        }
        self.engine_progress += 1;
        let e = &mut self.regs.engine;
        if let Some(head) = p.head {
            e.head = head;
        }
        if let Some(seqno) = p.seqno {
            e.seqno = seqno;
        }
        if let Some(err) = p.error {
            e.error = err.code;
            e.error_addr = err.addr;
        }
        if p.raise.is_empty() {
            return false;
        }
        self.message_pending |= self.regs.global.irq.raise(p.raise).message;
        true
    }
}

pub struct Vgpu {
    config: VgpuConfig,
    gpu: Arc<SharedGpu>,
    layout: SliceLayout,
    ctx: CtxId,
    vram: Mapping,
    /// Signalled by the scheduler thread when the interrupt output changed;
    /// `event` delivers it on the main loop.
    events: Arc<EventFd>,
    state: Arc<Mutex<State>>,
    edid: [u8; EDID_BLOCK],
    /// Only the refresh on QEMU's main loop uses it.
    display: Mutex<Display>,
}

fn ctx(what: &str) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Vgpu {
    /// Attach a vGPU to `gpu`: take a slice, map its VRAM, point its GTT at
    /// the scratch page, open an engine context.
    pub fn new(config: VgpuConfig, gpu: Arc<SharedGpu>) -> Result<Vgpu, String> {
        config.validate().map_err(|e| e.to_string())?;
        let layout = gpu.alloc_slice(config.vram_size)?;
        let attached = (|| {
            let vram = Region::new(gpu.device().clone(), VFIO_PCI_BAR0_REGION_INDEX)
                .and_then(|r| r.mmap(layout.vram_base, layout.vram_size))
                .map_err(ctx("mapping the VRAM slice from BAR0"))?;
            let gtt = GttShadow::new(layout);
            gtt.fill_scratch(&mut ContractGtt(gpu.bar2()))
                .map_err(ctx("initialising the GTT slice"))?;
            let events =
                Arc::new(EventFd::new(EFD_NONBLOCK).map_err(ctx("creating the vGPU's eventfd"))?);
            Ok::<_, String>((vram, gtt, events))
        })();
        let (vram, gtt, events) = attached.inspect_err(|_| gpu.free_slice(&layout))?;
        let state = Arc::new(Mutex::new(State {
            regs: Regs::new(&config, &layout),
            gtt,
            mem: GuestMemory::default(),
            scan_head: 0,
            generation: 0,
            message_pending: false,
            streams: StreamStats::default(),
            engine_progress: 0,
            gtt_generation: 0,
        }));
        let sink_state = Arc::downgrade(&state);
        let sink_events = events.clone();
        let ctx = gpu.scheduler().add_context(
            Arc::new(move |p| {
                let Some(state) = sink_state.upgrade() else {
                    return;
                };
                if state.lock().apply(p) {
                    let _ = sink_events.write(1);
                }
            }),
            gfx_addr(layout.gtt_base),
            VGPU_GFX_SPACE,
        );
        Ok(Vgpu {
            edid: {
                let (xres, yres) = config.preferred_mode();
                edid::edid(xres, yres)
            },
            config,
            gpu,
            layout,
            ctx,
            vram,
            events,
            state,
            display: Mutex::new(Display::default()),
        })
    }

    pub fn config(&self) -> &VgpuConfig {
        &self.config
    }

    pub fn layout(&self) -> &SliceLayout {
        &self.layout
    }

    /// Host address of the VRAM slice, for the guest's BAR0.
    pub fn vram_ptr(&self) -> *mut u8 {
        self.vram.as_ptr()
    }

    /// Leave the GPU's engine for good: none of this vGPU's work stays
    /// queued or in the ring, and no progress reaches it (nor its eventfd)
    /// once this returns. For a device leaving the bus; its registers stay
    /// readable but its engine does nothing. Idempotent.
    pub fn detach(&self) {
        self.gpu.scheduler().remove_context(self.ctx);
    }

    /// The fd to watch; call `event` on the main loop when it is readable.
    pub fn event_fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }

    /// The scheduler changed the virtual interrupt status: deliver it.
    pub fn event(&self) -> Effects {
        let mut fx = Effects::default();
        // Reading resets the counter; nothing pending is not an error.
        if self.events.read().is_err() {
            return fx;
        }
        let mut st = self.state.lock();
        let message = std::mem::take(&mut st.message_pending);
        fx.irq = Some(IrqLine {
            message,
            ..st.regs.global.irq.current()
        });
        fx
    }

    pub fn irq_line(&self) -> IrqLine {
        self.state.lock().regs.global.irq.current()
    }

    pub fn mmio_read(&self, offset: u64, size: u32) -> (u64, Effects) {
        let mut fx = Effects::default();
        let st = self.state.lock();
        let r = &st.regs;
        let result = match Bar2Target::decode(offset) {
            Bar2Target::Edid(rel) => bytes_read("EDID", &self.edid, rel, size),
            Bar2Target::VgaPorts(rel) => bytes_read("VGA", &r.vga_ports, rel, size),
            Bar2Target::Dispi(rel) => {
                r.dispi
                    .read(rel, size)
                    .map(|v| match DispiReg::containing(rel) {
                        Some(DispiReg::Id) => u64::from(DISPI_ID5),
                        Some(DispiReg::VideoMemory64k) => self.config.vram_size >> 16,
                        _ => v,
                    })
            }
            Bar2Target::QemuExt(rel) => decode::<QemuExtReg>(rel, size).map(|(reg, lane)| {
                lane.extract(match reg {
                    QemuExtReg::Size => bar2::QEMU_EXT_SIZE,
                    QemuExtReg::Endian => u64::from(r.qext_endian),
                })
            }),
            Bar2Target::Global(rel) => r.global.read(rel, size),
            Bar2Target::Engine(rel) => r.engine.read(rel, size),
            Bar2Target::Display(rel) => r.display.read(rel, size),
            Bar2Target::Gtt { index, within } => st
                .gtt
                .read(index, within, size)
                .map_err(|e| RegError::Refused(e.to_string())),
            Bar2Target::Unassigned => Err(RegError::NoRegister { offset, size }),
        };
        let value = fx.read_value(offset, result);
        (value, fx)
    }

    pub fn mmio_write(&self, offset: u64, value: u64, size: u32) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        let result = match Bar2Target::decode(offset) {
            Bar2Target::Edid(_) => Err(RegError::ReadOnly { reg: "EDID", value }),
            Bar2Target::VgaPorts(rel) => vga_write(&mut st.regs.vga_ports, rel, value, size),
            Bar2Target::Dispi(rel) => st.regs.dispi.write(rel, value, size).map(|_| ()),
            Bar2Target::QemuExt(rel) => {
                decode::<QemuExtReg>(rel, size).and_then(|(reg, lane)| match reg {
                    QemuExtReg::Size => Err(RegError::ReadOnly {
                        reg: reg.name(),
                        value,
                    }),
                    QemuExtReg::Endian => {
                        let r = &mut st.regs;
                        r.qext_endian = lane.merge(u64::from(r.qext_endian), value) as u32;
                        Ok(())
                    }
                })
            }
            Bar2Target::Global(rel) => match st.regs.global.write(rel, value, size) {
                Ok(GlobalWrite::Done(line)) => {
                    fx.irq = Some(line);
                    Ok(())
                }
                Ok(GlobalWrite::Trigger(src)) => {
                    fx.irq = Some(st.regs.global.irq.raise(src));
                    Ok(())
                }
                Ok(GlobalWrite::Reset) => {
                    drop(st);
                    return self.reset();
                }
                Err(e) => Err(e),
            },
            Bar2Target::Engine(rel) => self.engine_write(&mut st, rel, value, size, &mut fx),
            Bar2Target::Display(rel) => match st.regs.display.write(rel, value, size) {
                // Writing the surface address (its low half, or all of it)
                // latches a new surface: a flip.
                Ok(DisplayReg::PlaneBase) if rel == DisplayReg::PlaneBase.offset() => {
                    let d = &mut st.regs.display;
                    let flips = d.get(DisplayReg::FlipCount);
                    d.set(DisplayReg::FlipCount, flips.wrapping_add(1));
                    fx.irq = Some(st.regs.global.irq.raise(IntSource::DISPLAY_FLIP));
                    Ok(())
                }
                other => other.map(|_| ()),
            },
            Bar2Target::Gtt { index, within } => {
                self.gtt_write(&mut st, index, within, value, size, &mut fx)
            }
            Bar2Target::Unassigned => Err(RegError::NoRegister { offset, size }),
        };
        fx.check_write(offset, value, result);
        fx
    }

    fn gtt_write(
        &self,
        st: &mut State,
        index: u64,
        within: u64,
        value: u64,
        size: u32,
        fx: &mut Effects,
    ) -> Result<(), RegError> {
        st.gtt_generation += 1;
        let State { regs, gtt, mem, .. } = st;
        match gtt.write(
            index,
            within,
            value,
            size,
            mem,
            &mut ContractGtt(self.gpu.bar2()),
        ) {
            Ok(Ok(WriteOutcome::Rejected(reason))) => {
                fx.guest_error(format!(
                    "GTT entry {index} = {:#x} rejected (FAULT_REASON {reason:#x}); scratch page mapped",
                    gtt.entry(index as u32).map_or(0, |e| e.0)
                ));
                fx.irq = Some(regs.global.fault(
                    gfx_addr(index as u32),
                    reason,
                    IntSource::GTT_FAULT,
                ));
                Ok(())
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                fx.host_error(format!("writing shadow GTT entry {index}: {e}"));
                Ok(())
            }
            Err(e) => Err(RegError::Refused(e.to_string())),
        }
    }

    /// The virtual engine's registers; a tail or control write may submit.
    fn engine_write(
        &self,
        st: &mut State,
        rel: u64,
        value: u64,
        size: u32,
        fx: &mut Effects,
    ) -> Result<(), RegError> {
        let was_enabled = st.regs.engine.ctl & ring_ctl::ENABLE;
        let w = st.regs.engine.write(rel, value, size)?;
        let sched = self.gpu.scheduler();
        if w.reset {
            st.generation = sched.reset_context(self.ctx);
            st.scan_head = 0;
        }
        let enabled = st.regs.engine.ctl & ring_ctl::ENABLE;
        if enabled != was_enabled {
            sched.set_enabled(self.ctx, enabled != 0);
        }
        if w.kick {
            self.submit(st, fx);
        }
        Ok(())
    }

    /// Scan what the guest added to its ring since the last submission and
    /// hand the shadow copy to the scheduler; or stop the virtual engine
    /// with the scanner's error. The physical GPU sees nothing of a
    /// rejected stream.
    fn submit(&self, st: &mut State, fx: &mut Effects) {
        let e = st.regs.engine;
        if e.ctl & ring_ctl::ENABLE == 0 || e.error != error::NONE || st.scan_head == e.tail {
            return;
        }
        let scanner = Scanner {
            space: VGPU_GFX_SPACE,
            reloc: gfx_addr(self.layout.gtt_base),
        };
        let view = GuestView {
            gtt: &st.gtt,
            mem: &st.mem,
            vram: &self.vram,
        };
        let ring = EngineState {
            head: st.scan_head,
            ..e
        };
        match scanner.scan(&view, &ring) {
            Ok(work) => {
                st.streams.scanned_commands += work.guest_commands;
                st.scan_head = e.tail;
                self.gpu.scheduler().submit(self.ctx, st.generation, work);
            }
            Err(err) => {
                st.streams.rejected_streams += 1;
                fx.guest_error(format!(
                    "command stream [{:#x}, {:#x}) of the ring rejected: ERROR {} at {:#x}",
                    st.scan_head, e.tail, err.code, err.addr
                ));
                let engine = &mut st.regs.engine;
                engine.error = err.code;
                engine.error_addr = err.addr;
                let mut raise = IntSource::ENGINE_ERROR;
                if err.code == error::BAD_ADDRESS {
                    raise |= IntSource::GTT_FAULT;
                }
                fx.irq = Some(st.regs.global.irq.raise(raise));
            }
        }
    }

    /// Power-on state for everything the guest sees; every pin released, the
    /// GTT slice back on the scratch page, the engine context emptied. The
    /// physical GPU is not reset: it may serve other vGPUs.
    pub fn reset(&self) -> Effects {
        let mut fx = Effects::default();
        let sched = self.gpu.scheduler();
        if self.gpu.resets_with_vgpu() {
            // The GPU is this vGPU's alone: reset it too, with none of our
            // work queued and no lock held that the scheduler's delivery of
            // progress takes.
            self.state.lock().generation = sched.reset_context(self.ctx);
            sched.set_enabled(self.ctx, false);
            if let Err(e) = self.gpu.reset_device() {
                fx.host_error(format!("resetting the GPU: {e}"));
            }
        }
        let mut st = self.state.lock();
        st.regs = Regs::new(&self.config, &self.layout);
        st.generation = sched.reset_context(self.ctx);
        sched.set_enabled(self.ctx, false);
        st.scan_head = 0;
        st.message_pending = false;
        st.gtt_generation += 1;
        if let Err(e) = st.gtt.reset(&mut ContractGtt(self.gpu.bar2())) {
            fx.host_error(format!("resetting the GTT slice: {e}"));
        }
        fx.irq = Some(st.regs.global.irq.current());
        fx
    }

    /// The memory listener saw a new range of guest-physical memory.
    pub fn guest_ram_add(&self, gpa: u64, size: u64, hva: u64, kind: MemKind) -> Effects {
        let mut fx = Effects::default();
        let range = GuestRange {
            gpa,
            size,
            hva,
            kind,
            // The GPU sees guest RAM at its guest-physical address.
            iova: gpa,
        };
        let mut st = self.state.lock();
        if let Err(e) = st.mem.add(range) {
            fx.host_error(format!(
                "guest memory [{gpa:#x}, +{size:#x}) ignored: {e:?}"
            ));
            return fx;
        }
        if kind == MemKind::Ram {
            if let Err(e) = self.gpu.dma_map(range.iova, size, hva) {
                st.mem.remove(gpa, size);
                fx.host_error(format!("DMA map of guest RAM [{gpa:#x}, +{size:#x}): {e}"));
            }
        }
        fx
    }

    /// Guest-physical memory went away: re-point every GTT entry that used
    /// it at the scratch page, then drop its DMA mapping.
    pub fn guest_ram_del(&self, gpa: u64, size: u64) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        st.gtt_generation += 1;
        let State { gtt, mem, regs, .. } = &mut *st;
        for range in mem.remove(gpa, size) {
            if range.kind != MemKind::Ram {
                continue;
            }
            match gtt.invalidate(range.gpa, range.size, &mut ContractGtt(self.gpu.bar2())) {
                Ok(hit) if !hit.is_empty() => {
                    fx.guest_error(format!(
                        "guest RAM [{:#x}, +{:#x}) removed under {} GTT entries; scratch page mapped",
                        range.gpa,
                        range.size,
                        hit.len()
                    ));
                    fx.irq = Some(regs.global.fault(
                        gfx_addr(hit[0]),
                        rvg_model::regs::fault::GTT_RAM_REMOVED,
                        IntSource::GTT_FAULT,
                    ));
                }
                Ok(_) => {}
                Err(e) => fx.host_error(format!("invalidating GTT entries: {e}")),
            }
            if let Err(e) = self.gpu.dma_unmap(range.iova, range.size) {
                fx.host_error(format!(
                    "DMA unmap of [{:#x}, +{:#x}): {e}",
                    range.gpa, range.size
                ));
            }
        }
        fx
    }

    pub fn shadow_stats(&self) -> ShadowStats {
        self.state.lock().gtt.stats()
    }

    pub fn stream_stats(&self) -> StreamStats {
        self.state.lock().streams
    }

    /// What the display shows now, from the guest's registers.
    fn frame(&self) -> Frame {
        let st = self.state.lock();
        let r = &st.regs;
        let p = |reg| r.display.get(reg);
        let plane = PlaneRegs {
            ctl: p(DisplayReg::PlaneCtl) as u32,
            format: p(DisplayReg::PlaneFormat) as u32,
            base: p(DisplayReg::PlaneBase),
            width: p(DisplayReg::PlaneWidth) as u32,
            height: p(DisplayReg::PlaneHeight) as u32,
            stride: p(DisplayReg::PlaneStride) as u32,
        };
        let v = |reg| r.dispi.get(reg) as u16;
        let dispi = DispiRegs {
            xres: v(DispiReg::Xres),
            yres: v(DispiReg::Yres),
            bpp: v(DispiReg::Bpp),
            enable: v(DispiReg::Enable),
            virt_width: v(DispiReg::VirtWidth),
            x_offset: v(DispiReg::XOffset),
            y_offset: v(DispiReg::YOffset),
            endian: r.qext_endian,
        };
        Frame {
            choice: scanout::choose(&plane, &dispi, self.config.vram_size, VGPU_GFX_SPACE),
            engine_progress: st.engine_progress,
            gtt_generation: st.gtt_generation,
        }
    }

    /// One display refresh, on QEMU's main loop: size the console for the
    /// guest's scanout and copy into it what changed. The console is
    /// resized and told about changes with no lock held; while locked, only
    /// the leaf services (`vram_dirty`, `surface`) are called.
    pub fn display_refresh(&self, host: &mut dyn DisplayHost) -> Effects {
        let mut fx = Effects::default();
        let frame = self.frame();
        let prepared = self.display.lock().prepare(&frame);
        if let Some((width, height)) = prepared.resize {
            host.resize(width, height);
        }
        if let Some(msg) = prepared.guest_error {
            fx.guest_error(msg);
        }
        let mut display = self.display.lock();
        let spans = {
            let st = self.state.lock();
            let view = GuestView {
                gtt: &st.gtt,
                mem: &st.mem,
                vram: &self.vram,
            };
            display.draw(&frame, &view, host)
        };
        drop(display);
        for (y, height) in spans {
            host.update(y, height);
        }
        fx
    }

    /// The command register's Bus Master Enable: while it is clear the
    /// vGPU reaches no guest RAM. System GTT entries shadow the scratch
    /// page (the engine faults there), the scanner cannot read a ring or
    /// batch in guest RAM, and the display shows such pages black. Power-on
    /// and bus resets clear it; the device layer reports every change.
    pub fn set_bus_master(&self, on: bool) -> Effects {
        let mut fx = Effects::default();
        let mut st = self.state.lock();
        if st.gtt.system_access() == on {
            return fx;
        }
        st.gtt_generation += 1;
        if let Err(e) = st
            .gtt
            .set_system_access(on, &mut ContractGtt(self.gpu.bar2()))
        {
            fx.host_error(format!("re-pointing system GTT entries: {e}"));
        }
        fx
    }

    /// A new console client: redraw everything at the next refresh.
    pub fn display_invalidate(&self) {
        self.display.lock().invalidate();
    }

    pub fn display_stats(&self) -> DisplayStats {
        self.display.lock().stats()
    }

    /// A report for `info rust-vgpu`.
    pub fn describe(&self) -> String {
        let st = self.state.lock();
        let l = &self.layout;
        let s = st.gtt.stats();
        let sched = self.gpu.scheduler();
        let c = sched.stats(self.ctx);
        let (attached, capacity) = self.gpu.occupancy();
        let display = self.display.lock();
        let ds = display.stats();
        let e = &st.regs.engine;
        let reg = |r: GlobalReg| {
            st.regs
                .global
                .read(r.offset(), r.width() as u32)
                .unwrap_or(0)
        };
        format!(
            "  backend: {}\n\
             \x20 gpu: {attached} vGPUs attached (GTT room for {capacity}), timeslice={}us resets={} watchdog={}ms watchdog-resets={}\n\
             \x20 gtt-slice: base={} entries={}\n\
             \x20 vram-slice: offset={:#x} size={:#x}\n\
             \x20 pinned-pages: {}\n\
             \x20 shadowed-entries: {} (local={} system={})\n\
             \x20 unmapped-entries: {}\n\
             \x20 rejected-entries: {} (total={})\n\
             \x20 invalidated-entries: {}\n\
             \x20 pin-cache: hits={} misses={}\n\
             \x20 faults: {} (last reason={:#x} addr={:#x})\n\
             \x20 engine: ctl={:#x} head={:#x} tail={:#x} seqno={} error={} error-addr={:#x}\n\
             \x20 commands: scanned={} rejected-streams={} shadow-dwords={} slices={} engine-faults={} hangs={}\n\
             \x20 display: {}\n\
             \x20 display-refresh: refreshes={} lines-compared={} lines-updated={}\n",
            self.gpu.device().describe(),
            sched.timeslice().as_micros(),
            self.gpu.resets(),
            sched.watchdog().as_millis(),
            sched.hangs(),
            l.gtt_base,
            l.gtt_entries,
            l.vram_base,
            l.vram_size,
            s.pinned_pages,
            s.local + s.system,
            s.local,
            s.system,
            s.unmapped,
            s.rejected,
            s.rejected_total,
            s.invalidated_total,
            s.pin_hits,
            s.pin_misses,
            reg(GlobalReg::GttFaults),
            reg(GlobalReg::FaultReason),
            reg(GlobalReg::FaultAddr),
            e.ctl,
            e.head,
            e.tail,
            e.seqno,
            e.error,
            e.error_addr,
            st.streams.scanned_commands,
            st.streams.rejected_streams,
            c.submitted,
            c.slices,
            c.faults,
            c.hangs,
            display.describe(),
            ds.refreshes,
            ds.lines_compared,
            ds.lines_updated,
        )
    }

    /// Entries `[first, first + count)`: the guest's value, the shadow read
    /// back from the physical GTT through the contract, and the state.
    pub fn gtt_dump(&self, first: u32, count: u32) -> Result<String, String> {
        let st = self.state.lock();
        let l = self.layout;
        let end = first
            .checked_add(count)
            .filter(|&e| e <= l.gtt_entries)
            .ok_or_else(|| {
                format!(
                    "entries {first}+{count} are outside the vGPU's {} GTT entries",
                    l.gtt_entries
                )
            })?;
        let mut out = String::new();
        for i in first..end {
            let (guest, state) = st.gtt.entry(i).expect("in range");
            let shadow = ContractGtt(self.gpu.bar2())
                .read(l.gtt_base + i)
                .map_err(ctx("reading the physical GTT"))?;
            let state = match state {
                EntryState::Unmapped => "unmapped".to_string(),
                EntryState::Local { .. } => "local".to_string(),
                EntryState::System { .. } => "system".to_string(),
                EntryState::Rejected(r) => format!("rejected:{r:#x}"),
            };
            out += &format!(
                "{i}: guest={guest:#018x} shadow={:#018x} phys-index={} {state}\n",
                shadow.0,
                l.gtt_base + i
            );
        }
        Ok(out)
    }
}

impl Drop for Vgpu {
    fn drop(&mut self) {
        // Off the engine first (its sink takes the state lock), then leave
        // the GPU as found: the slice on the scratch page, DMA released,
        // the slice free for another vGPU.
        self.detach();
        let mut st = self.state.lock();
        let _ = st.gtt.reset(&mut ContractGtt(self.gpu.bar2()));
        for r in st.mem.iter().filter(|r| r.kind == MemKind::Ram) {
            let _ = self.gpu.dma_unmap(r.iova, r.size);
        }
        drop(st);
        self.gpu.free_slice(&self.layout);
    }
}

/// A naturally aligned read of 1 to 8 bytes from a byte array block (the
/// EDID blob, the VGA ports); bytes past the array read as zero.
fn bytes_read(reg: &'static str, bytes: &[u8], rel: u64, size: u32) -> Result<u64, RegError> {
    let lane = rvg_model::access::Lane::new(rel, size, rel & !7, 8)
        .map_err(|err| RegError::Access { reg, err })?;
    let base = ((rel & !7) as usize).min(bytes.len());
    let mut word = [0u8; 8];
    let n = (bytes.len() - base).min(8);
    word[..n].copy_from_slice(&bytes[base..base + n]);
    Ok(lane.extract(u64::from_le_bytes(word)))
}

/// The VGA port block: byte registers the bochs driver pokes (attribute
/// index, to unblank); stored and read back.
fn vga_write(ports: &mut [u8], rel: u64, value: u64, size: u32) -> Result<(), RegError> {
    rvg_model::access::Lane::new(rel, size, rel & !7, 8)
        .map_err(|err| RegError::Access { reg: "VGA", err })?;
    let at = rel as usize;
    ports[at..at + size as usize].copy_from_slice(&value.to_le_bytes()[..size as usize]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn attach_with_ram(pages: u64) -> (Vgpu, Arc<SoftGpu>, rvg_gpu::vram::Vram) {
        let (v, soft) = attach();
        v.set_bus_master(true);
        let ram = rvg_gpu::vram::Vram::new(pages * 4096).unwrap();
        let fx = v.guest_ram_add(
            0x10_0000,
            pages * 4096,
            ram.host_ptr(0).unwrap() as u64,
            MemKind::Ram,
        );
        assert!(fx.diags.is_empty(), "{:?}", fx.diags);
        (v, soft, ram)
    }

    #[test]
    fn virtual_identity_and_sizes() {
        let (v, _) = attach();
        assert_eq!(v.mmio_read(greg(GlobalReg::Id), 4).0, u64::from(RVG_ID));
        assert_eq!(v.mmio_read(greg(GlobalReg::VramSize), 8).0, VRAM);
        assert_eq!(
            v.mmio_read(greg(GlobalReg::GttEntries), 4).0,
            u64::from(VGPU_GTT_ENTRIES)
        );
        assert_eq!(v.mmio_read(bar2::DISPI, 2).0, u64::from(DISPI_ID5));
        assert_eq!(v.mmio_read(bar2::DISPI + 0x14, 2).0, VRAM >> 16);
        assert_eq!(v.mmio_read(bar2::QEMU_EXT, 4).0, 8);
        assert_eq!(
            v.mmio_read(bar2::QEMU_EXT + 4, 4).0,
            u64::from(QEXT_LITTLE_ENDIAN)
        );
    }

    #[test]
    fn blocks_store_guest_values() {
        let (v, soft) = attach();
        v.mmio_write(bar2::ENGINE, 0x40_0000, 8);
        v.mmio_write(bar2::DISPLAY + 0x10, 1280, 4);
        v.mmio_write(bar2::DISPI + 2, 1024, 2);
        v.mmio_write(bar2::VGA_PORTS, 0x20, 1);
        assert_eq!(v.mmio_read(bar2::ENGINE, 8).0, 0x40_0000);
        assert_eq!(v.mmio_read(bar2::DISPLAY + 0x10, 4).0, 1280);
        assert_eq!(v.mmio_read(bar2::DISPI + 2, 2).0, 1024);
        assert_eq!(v.mmio_read(bar2::VGA_PORTS, 1).0, 0x20);
        // None of it reached the physical GPU's registers.
        assert_eq!(soft.gpu().mmio_read(bar2::ENGINE, 8).0, 0);
        let fx = v.mmio_write(bar2::ENGINE + 0x0c, 1, 4);
        assert_eq!(fx.diags.len(), 1, "RING_HEAD is read-only");
    }

    #[test]
    fn gtt_entries_are_shadowed_into_the_slice() {
        let (v, soft) = attach();
        v.mmio_write(gtt(5), 0x3000 | GttEntry::LOCAL | GttEntry::VALID, 8);
        let phys = soft.gpu().gtt_entry(RESERVED_GTT_ENTRIES + 5).unwrap();
        assert_eq!(phys, GttEntry::new(VRAM + 0x3000, true));
        assert_eq!(v.mmio_read(gtt(5), 8).0, 0x3003);
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
        let (v, _) = attach();
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
            v.mmio_read(greg(GlobalReg::FaultReason), 4).0,
            u64::from(fault::GTT_NOT_GUEST_RAM)
        );
        assert_eq!(v.mmio_read(greg(GlobalReg::FaultAddr), 8).0, gfx_addr(9));
        assert_eq!(v.mmio_read(greg(GlobalReg::GttFaults), 4).0, 1);
        assert_eq!(v.shadow_stats().rejected, 1);
    }

    #[test]
    fn guest_ram_is_dma_mapped_pinned_and_invalidated() {
        let (v, soft, ram) = attach_with_ram(16);
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
        let (v, soft) = attach();
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
        assert_eq!(v.mmio_read(greg(GlobalReg::IntStatus), 4).0, sw);
        // The GPU, which other vGPUs may share, saw none of it.
        assert_eq!(
            soft.gpu().mmio_read(greg(GlobalReg::IntStatus), 4).0 & sw,
            0
        );
    }

    #[test]
    fn reset_releases_everything_but_guest_memory() {
        let (v, soft, _ram) = attach_with_ram(4);
        v.mmio_write(gtt(3), 0x10_1000 | GttEntry::VALID, 8);
        v.mmio_write(greg(GlobalReg::Scratch), 77, 8);
        v.mmio_write(
            greg(GlobalReg::Reset),
            u64::from(rvg_model::regs::RESET_MAGIC),
            4,
        );
        assert_eq!(v.mmio_read(greg(GlobalReg::Scratch), 8).0, 0);
        assert_eq!(v.mmio_read(gtt(3), 8).0, 0);
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
        let (v, soft, _ram) = attach_with_ram(4);
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
                vram_size,
                xres,
                yres,
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
    fn edid_reads_the_preferred_mode_and_ignores_writes() {
        let (v, _) = attach();
        let header = v.mmio_read(bar2::EDID, 8).0;
        assert_eq!(header, 0x00ff_ffff_ffff_ff00);
        let blob: Vec<u8> = (0..128).map(|i| v.mmio_read(i, 1).0 as u8).collect();
        assert_eq!(blob, edid::edid(1024, 768));
        assert_eq!(v.mmio_read(bar2::EDID + 0x200, 4).0, 0);
        assert_eq!(v.mmio_write(bar2::EDID, 0, 1).diags.len(), 1);
        assert_eq!(v.mmio_read(bar2::EDID, 1).0, 0);
    }

    #[test]
    fn writing_the_plane_base_flips() {
        let (v, _) = attach();
        let flip = u64::from(IntSource::DISPLAY_FLIP.bits());
        let base = bar2::DISPLAY + DisplayReg::PlaneBase.offset();
        let count = || {
            v.mmio_read(bar2::DISPLAY + DisplayReg::FlipCount.offset(), 4)
                .0
        };
        v.mmio_write(base + 4, 1, 4);
        assert_eq!(count(), 0, "the high half alone does not latch");
        v.mmio_write(base, 0x1000, 4);
        v.mmio_write(base, 0x2000, 8);
        assert_eq!(count(), 2);
        assert_eq!(v.mmio_read(greg(GlobalReg::IntStatus), 4).0, flip);
        assert_eq!(v.mmio_read(base, 8).0, 0x2000);
    }

    #[test]
    fn a_slice_that_does_not_fit_is_refused() {
        let (gpu, _) = private_gpu(VRAM);
        let err = Vgpu::new(VgpuConfig::new(VRAM), gpu.clone()).err().unwrap();
        assert!(err.contains("no free"), "{err}");
        assert_eq!(gpu.occupancy().0, 0, "nothing stays allocated");
    }
}

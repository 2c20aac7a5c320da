//! The vGPU: the device a guest drives, mediated onto a GPU it reaches only
//! through the VFIO device contract.
//!
//! Guest-visible state (config aside, which QEMU's PCI core holds) lives
//! here: the virtual register file (`regs`), the guest's GTT, the virtual
//! engine. What reaches the GPU: shadowed GTT entries in the vGPU's slice
//! of the physical GTT, scanned and relocated command streams through the
//! shared GPU's scheduler, DMA mappings of guest RAM. Progress comes back
//! from the scheduler thread and is turned into virtual interrupts on the
//! main loop. `Vgpu` routes what the register file asks for; it decides
//! nothing a register means.

mod access;
mod config;
mod inbox;
mod link;
mod migrate;
mod regs;
mod report;
mod saved;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use rvg_model::config::ConfigError;
use rvg_model::effects::Effects;
use rvg_model::gtt::{gfx_addr, PAGE_SIZE};
use rvg_model::irq::{IntSource, IrqLine};
use rvg_vfio::contract::{Region, VFIO_PCI_BAR0_REGION_INDEX};
use rvg_vfio::HostRange;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::display::{scanout, Display, DisplayHost, DisplayStats, Frame};
use crate::error::{contract, AttachError, ContractError};
use crate::guest_gfx::GuestView;
use crate::guest_mem::{GuestMemory, GuestRange, MemKind};
use crate::shadow::{EntryState, GttShadow, PhysGtt, ShadowStats, SliceLayout};
use crate::shared::{Progress, SharedGpu};
use inbox::Inbox;
use link::{ContractGtt, Link};

pub use crate::shared::slices::{RESERVED_GTT_ENTRIES, RESERVED_VRAM, VGPU_GTT_ENTRIES};
pub use config::{check_weight, VgpuConfig, AUTO_MODES};
pub use migrate::{GpuWrite, MigrationStats, SaveError, QUIESCE_TIMEOUT};
pub use regs::{RegRead, RegWrite, VirtRegs};
pub use report::VgpuReport;
pub use saved::{LoadError, SavedVgpu, SAVED_MIN_VERSION, SAVED_VERSION};

/// Bytes of graphics address space a guest sees by default (`gfx-size`).
pub const VGPU_GFX_SPACE: u64 = VGPU_GTT_ENTRIES as u64 * PAGE_SIZE;

/// Command-stream counters for `info rust-vgpu`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub scanned_commands: u64,
    pub rejected_streams: u64,
}

struct State {
    regs: VirtRegs,
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
    /// The GPU ran some of this vGPU's work since a migration last looked
    /// (`Vgpu::take_gpu_writes`).
    gpu_wrote: bool,
    /// The last quiesce gave up waiting: saving is refused with this.
    unsettled: Option<crate::shared::StillRunning>,
    migration: MigrationStats,
}

impl State {
    /// What the scheduler reports about this vGPU's work; progress of an
    /// older generation (work dropped by an engine reset) is ignored.
    fn apply(&mut self, p: Progress) {
        if p.generation != self.generation {
            return;
        }
        self.engine_progress += 1;
        self.gpu_wrote = true;
        if let Some(line) = self.regs.apply_progress(&p) {
            self.message_pending |= line.message;
        }
    }
}

/// A vGPU. Every method that changes it takes `&mut self`: its state is
/// touched only by whoever owns it (QEMU's BQL, in the device layer); the
/// scheduler thread reaches it only through the inbox.
pub struct Vgpu {
    link: Link,
    state: State,
    display: Display,
}

impl Vgpu {
    /// Attach a vGPU to `gpu`: take a slice, map its VRAM, point its GTT at
    /// the scratch page, open an engine context.
    pub fn new(config: VgpuConfig, gpu: Arc<SharedGpu>) -> Result<Vgpu, AttachError> {
        config.validate()?;
        let layout = gpu.alloc_slice(config.gtt_entries(), config.vram_size)?;
        let attached = (|| {
            let vram = Region::new(gpu.device().clone(), VFIO_PCI_BAR0_REGION_INDEX)
                .and_then(|r| r.mmap(layout.vram_base, layout.vram_size))
                .map_err(contract("mapping the VRAM slice from BAR0"))?;
            let gtt = GttShadow::new(layout);
            gtt.fill_scratch(&mut ContractGtt(gpu.bar2()))
                .map_err(contract("initialising the GTT slice"))?;
            let events =
                EventFd::new(EFD_NONBLOCK).map_err(contract("creating the vGPU's eventfd"))?;
            Ok::<_, ContractError>((vram, gtt, Arc::new(events)))
        })();
        let (vram, gtt, events) = attached.inspect_err(|_| gpu.free_slice(&layout))?;
        let state = State {
            regs: VirtRegs::new(
                config.vram_size,
                layout.gtt_entries,
                config.preferred_mode(),
            ),
            gtt,
            mem: GuestMemory::default(),
            scan_head: 0,
            generation: 0,
            message_pending: false,
            streams: StreamStats::default(),
            engine_progress: 0,
            gpu_wrote: false,
            unsettled: None,
            migration: MigrationStats::default(),
        };
        let inbox = Arc::new(Inbox::default());
        let (sink_inbox, sink_events) = (inbox.clone(), events.clone());
        let ctx = gpu.scheduler().add_context(
            Arc::new(move |p: Progress| {
                let raised = !p.raise.is_empty();
                sink_inbox.post(p);
                if raised {
                    let _ = sink_events.write(1);
                }
            }),
            gfx_addr(layout.gtt_base),
            layout.gfx_space(),
        );
        gpu.scheduler().set_weight(ctx, config.weight);
        Ok(Vgpu {
            link: Link {
                config,
                gpu,
                layout,
                ctx,
                vram,
                events,
                inbox,
            },
            state,
            display: Display::default(),
        })
    }

    /// Take in what the scheduler reported since the last look. Every
    /// register access starts here: when nothing was posted it is one
    /// load and a branch.
    #[inline(always)]
    fn take_progress(&mut self) {
        if !self.link.inbox.is_empty() {
            self.take_posted();
        }
    }

    #[cold]
    fn take_posted(&mut self) {
        for p in self.link.inbox.take() {
            self.state.apply(p);
        }
    }

    pub fn config(&self) -> &VgpuConfig {
        &self.link.config
    }

    pub fn layout(&self) -> &SliceLayout {
        &self.link.layout
    }

    /// Host address of the VRAM slice, for the guest's BAR0.
    pub fn vram_ptr(&self) -> *mut u8 {
        self.link.vram.as_ptr()
    }

    /// Leave the GPU's engine for good: none of this vGPU's work stays
    /// queued or in the ring, and no progress reaches it (nor its eventfd)
    /// once this returns. For a device leaving the bus; its registers stay
    /// readable but its engine does nothing. Idempotent.
    pub fn detach(&self) {
        self.link.gpu.scheduler().remove_context(self.link.ctx);
    }

    /// The fd to watch; call `event` on the main loop when it is readable.
    pub fn event_fd(&self) -> RawFd {
        self.link.events.as_raw_fd()
    }

    /// The scheduler's progress raised an interrupt: deliver it.
    pub fn event(&mut self) -> Effects {
        let mut fx = Effects::default();
        // Reading resets the counter; nothing pending is not an error.
        if self.link.events.read().is_err() {
            return fx;
        }
        self.take_progress();
        let st = &mut self.state;
        let message = std::mem::take(&mut st.message_pending);
        fx.irq = Some(IrqLine {
            message,
            ..st.regs.irq_line()
        });
        fx
    }

    pub fn irq_line(&self) -> IrqLine {
        self.state.regs.irq_line()
    }
}

impl Vgpu {
    /// Power-on state for everything the guest sees; every pin released, the
    /// GTT slice back on the scratch page, the engine context emptied (a new
    /// generation: nothing of the old one reaches the new). A GPU shared
    /// with other vGPUs is not reset; a private one is.
    pub fn reset(&mut self) -> Effects {
        let mut fx = Effects::default();
        let Vgpu {
            link, state: st, ..
        } = self;
        let sched = link.gpu.scheduler();
        st.generation = sched.reset_context(link.ctx);
        sched.set_enabled(link.ctx, false);
        if link.gpu.resets_with_vgpu() {
            // The GPU is this vGPU's alone: reset it too.
            if let Err(e) = link.gpu.reset_device() {
                fx.host_error(format!("resetting the GPU: {e}"));
            }
        }
        // Progress of the old generation is dropped as it is taken in.
        self.take_progress();
        let Vgpu {
            link, state: st, ..
        } = self;
        st.regs.reset();
        st.scan_head = 0;
        st.message_pending = false;
        if let Err(e) = st.gtt.reset(&mut ContractGtt(link.gpu.bar2())) {
            fx.host_error(format!("resetting the GTT slice: {e}"));
        }
        fx.irq = Some(st.regs.irq_line());
        fx
    }

    /// The memory listener saw a new range of guest-physical memory:
    /// `size` bytes at `gpa` of `kind`, and for guest RAM its host memory.
    pub fn guest_ram_add(
        &mut self,
        gpa: u64,
        size: u64,
        host: Option<HostRange>,
        kind: MemKind,
    ) -> Effects {
        let mut fx = Effects::default();
        let host = host.map(Arc::new);
        // The GPU sees guest RAM at its guest-physical address.
        let iova = gpa;
        let range = GuestRange {
            gpa,
            size,
            host: host.clone(),
            kind,
            iova,
        };
        let st = &mut self.state;
        if let Err(e) = st.mem.add(range) {
            fx.host_error(format!(
                "guest memory [{gpa:#x}, +{size:#x}) ignored: {e:?}"
            ));
            return fx;
        }
        if let Some(host) = &host {
            if let Err(e) = self.link.gpu.dma_map(iova, host) {
                st.mem.remove(gpa, size);
                fx.host_error(format!("DMA map of guest RAM [{gpa:#x}, +{size:#x}): {e}"));
            }
        }
        fx
    }

    /// Guest-physical memory went away: re-point every GTT entry that used
    /// it at the scratch page, then drop its DMA mapping.
    pub fn guest_ram_del(&mut self, gpa: u64, size: u64) -> Effects {
        let mut fx = Effects::default();
        let gpu = &self.link.gpu;
        let State { gtt, mem, regs, .. } = &mut self.state;
        for range in mem.remove(gpa, size) {
            if range.kind != MemKind::Ram {
                continue;
            }
            match gtt.invalidate(range.gpa, range.size, &mut ContractGtt(gpu.bar2())) {
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
            let Some(host) = &range.host else { continue };
            if let Err(e) = gpu.dma_unmap(range.iova, host) {
                fx.host_error(format!(
                    "DMA unmap of [{:#x}, +{:#x}): {e}",
                    range.gpa, range.size
                ));
            }
        }
        fx
    }

    pub fn shadow_stats(&self) -> ShadowStats {
        self.state.gtt.stats()
    }

    pub fn stream_stats(&self) -> StreamStats {
        self.state.streams
    }

    /// What the display shows now, from the guest's registers.
    fn frame(&self) -> Frame {
        let st = &self.state;
        let (plane, dispi) = st.regs.scanout();
        Frame {
            choice: scanout::choose(
                &plane,
                &dispi,
                self.link.config.vram_size,
                self.link.layout.gfx_space(),
            ),
            engine_progress: st.engine_progress,
            gtt_generation: st.gtt.generation(),
        }
    }

    /// One display refresh, on QEMU's main loop: size the console for the
    /// guest's scanout and copy into it what changed. The console is
    /// resized and told about changes after the frame is chosen and the
    /// lines drawn; while drawing, only the leaf services (`vram_dirty`,
    /// `surface`) are called.
    pub fn display_refresh(&mut self, host: &mut dyn DisplayHost) -> Effects {
        let mut fx = Effects::default();
        self.take_progress();
        let frame = self.frame();
        let prepared = self.display.prepare(&frame);
        if let Some((width, height)) = prepared.resize {
            host.resize(width, height);
        }
        if let Some(msg) = prepared.guest_error {
            fx.guest_error(msg);
        }
        let view = GuestView {
            gtt: &self.state.gtt,
            mem: &self.state.mem,
            vram: &self.link.vram,
        };
        for (y, height) in self.display.draw(&frame, &view, host) {
            host.update(y, height);
        }
        fx
    }

    /// The command register's Bus Master Enable: while it is clear the
    /// vGPU reaches no guest RAM. System GTT entries shadow the scratch
    /// page (the engine faults there), the scanner cannot read a ring or
    /// batch in guest RAM, and the display shows such pages black. Power-on
    /// and bus resets clear it; the device layer reports every change.
    pub fn set_bus_master(&mut self, on: bool) -> Effects {
        let mut fx = Effects::default();
        let phys = &mut ContractGtt(self.link.gpu.bar2());
        if let Err(e) = self.state.gtt.set_system_access(on, phys) {
            fx.host_error(format!("re-pointing system GTT entries: {e}"));
        }
        fx
    }

    /// A new console client: redraw everything at the next refresh.
    pub fn display_invalidate(&mut self) {
        self.display.invalidate();
    }

    pub fn display_stats(&self) -> DisplayStats {
        self.display.stats()
    }

    /// What `info rust-vgpu` shows, the scheduler's latest progress taken
    /// in.
    pub fn report(&mut self) -> VgpuReport {
        self.take_progress();
        let Vgpu {
            link,
            state: st,
            display,
        } = self;
        let sched = link.gpu.scheduler();
        let (attached, capacity) = link.gpu.occupancy();
        VgpuReport {
            backend: link.gpu.device().describe(),
            attached,
            capacity,
            timeslice: sched.timeslice(),
            policy: sched.policy(),
            weight: link.config.weight,
            gpu_resets: link.gpu.resets(),
            watchdog: sched.watchdog(),
            watchdog_resets: sched.hangs(),
            preempt_timeout: sched.preempt_timeout(),
            preempt_timeouts: sched.preempt_timeouts(),
            layout: link.layout,
            shadow: st.gtt.stats(),
            global: report::GlobalReport::of(&st.regs.global),
            engine: st.regs.engine,
            streams: st.streams,
            sched: sched.stats(link.ctx),
            display: display.describe(),
            display_stats: display.stats(),
            migration: st.migration,
        }
    }

    /// Its engine share's weight under `fixed-share`, from now on.
    pub fn set_weight(&mut self, weight: u32) -> Result<(), ConfigError> {
        check_weight(weight)?;
        self.link.config.weight = weight;
        self.link.gpu.scheduler().set_weight(self.link.ctx, weight);
        Ok(())
    }

    /// The report for `info rust-vgpu`, as text.
    pub fn describe(&mut self) -> String {
        self.report().to_string()
    }

    /// Entries `[first, first + count)`: the guest's value, the shadow read
    /// back from the physical GTT through the contract, and the state.
    pub fn gtt_dump(&self, first: u32, count: u32) -> Result<String, String> {
        let st = &self.state;
        let l = self.link.layout;
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
            let shadow = ContractGtt(self.link.gpu.bar2())
                .read(l.gtt_base + i)
                .map_err(|e| contract("reading the physical GTT")(e).to_string())?;
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
        // Off the engine first (no progress reaches the inbox after it),
        // then leave the GPU as found: the slice on the scratch page, DMA
        // released, the slice free for another vGPU.
        self.detach();
        let gpu = &self.link.gpu;
        let _ = self.state.gtt.reset(&mut ContractGtt(gpu.bar2()));
        for r in self.state.mem.iter() {
            if let Some(host) = &r.host {
                let _ = gpu.dma_unmap(r.iova, host);
            }
        }
        gpu.free_slice(&self.link.layout);
    }
}

#[cfg(test)]
mod tests;

//! Migration: quiesce the vGPU, save it, and load a saved vGPU into this
//! one as if its guest had written every value.
//!
//! What the GPU holds for a vGPU is rebuilt, never carried: the shadow GTT
//! from the guest's entries (validated and pinned here), the engine
//! context from the virtual registers (nothing is in flight once the vGPU
//! quiesced). So the destination may be any GPU behind the contract.

use std::time::{Duration, Instant};

use rvg_model::block::RegFile;
use rvg_model::effects::Effects;
use rvg_model::engine::{error, ring_ctl, RING_SIZE_MAX};
use rvg_model::gtt::PAGE_SIZE;
use rvg_model::regs::{DispiReg, DisplayReg, Register};

use super::link::ContractGtt;
use super::saved::{LoadError, SavedVgpu};
use super::{StreamStats, Vgpu, VirtRegs};
use crate::shadow::EntryState;
use crate::shared::StillRunning;

/// How long a stopping vGPU waits for its work in the GPU to finish
/// before a migration gives up.
pub const QUIESCE_TIMEOUT: Duration = Duration::from_secs(2);

/// Memory the GPU may have written for a vGPU, which QEMU's dirty log did
/// not see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuWrite {
    /// `len` bytes of the vGPU's VRAM (its BAR0) at `offset`.
    Vram { offset: u64, len: u64 },
    /// `len` bytes of guest RAM at guest-physical `gpa`.
    GuestRam { gpa: u64, len: u64 },
}

/// What the vGPU's last migration steps cost, for `info rust-vgpu`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MigrationStats {
    /// The last quiesce's wait for work in the GPU.
    pub quiesce: Duration,
    /// Bytes the GPU may have written, reported dirty at the last quiesce.
    pub gpu_write_bytes: u64,
    /// The last save: its length and how long it took.
    pub saved_bytes: usize,
    pub save: Duration,
    /// The last load, checks, pins and shadows included.
    pub load: Duration,
}

/// Why a vGPU could not be saved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    #[error("the vGPU did not quiesce: {0}")]
    NotQuiesced(#[from] StillRunning),
}

impl Vgpu {
    /// Stop feeding the GPU: wait, at most `timeout`, until everything the
    /// vGPU submitted has run and its progress is in the registers. Work
    /// queued behind a disabled engine that never started is handed back
    /// to the guest's ring (it is scanned again when the engine runs). The
    /// guest must be stopped: nothing new is submitted meanwhile.
    pub fn quiesce(&mut self, timeout: Duration) -> Result<(), StillRunning> {
        let start = Instant::now();
        let result = self.link.gpu.scheduler().quiesce(self.link.ctx, timeout);
        self.state.migration.quiesce = start.elapsed();
        self.state.unsettled = result.err();
        let from = result?;
        self.take_posted();
        if let Some(from) = from {
            self.state.scan_head = from;
        }
        Ok(())
    }

    /// From now on, note whether the GPU runs this vGPU's work: a
    /// migration starts tracking what changes.
    pub fn track_gpu_writes(&mut self) {
        self.take_progress();
        self.state.gpu_wrote = false;
    }

    /// Where the GPU may have written since `track_gpu_writes`, once the
    /// vGPU quiesced: every page its GTT maps, if any of its work ran; then
    /// tracking starts over.
    pub fn take_gpu_writes(&mut self) -> Vec<GpuWrite> {
        self.take_progress();
        if !std::mem::take(&mut self.state.gpu_wrote) {
            return Vec::new();
        }
        let gtt = &self.state.gtt;
        let mut out: Vec<GpuWrite> = Vec::new();
        for i in 0..self.link.layout.gtt_entries {
            let page = match gtt.entry(i).map(|(_, s)| s) {
                Some(EntryState::Local { offset }) => GpuWrite::Vram {
                    offset: offset & !(PAGE_SIZE - 1),
                    len: PAGE_SIZE,
                },
                Some(EntryState::System { gpa }) => GpuWrite::GuestRam {
                    gpa,
                    len: PAGE_SIZE,
                },
                _ => continue,
            };
            // Entries mapping consecutive pages make one range.
            match (out.last_mut(), page) {
                (Some(GpuWrite::Vram { offset, len }), GpuWrite::Vram { offset: next, .. })
                    if *offset + *len == next =>
                {
                    *len += PAGE_SIZE
                }
                (Some(GpuWrite::GuestRam { gpa, len }), GpuWrite::GuestRam { gpa: next, .. })
                    if *gpa + *len == next =>
                {
                    *len += PAGE_SIZE
                }
                _ => out.push(page),
            }
        }
        self.state.migration.gpu_write_bytes = out
            .iter()
            .map(|w| match w {
                GpuWrite::Vram { len, .. } | GpuWrite::GuestRam { len, .. } => len,
            })
            .sum();
        out
    }

    /// The vGPU's state for a migration stream. It must have quiesced:
    /// work still in the GPU is refused, not saved half done.
    pub fn save(&mut self) -> Result<Vec<u8>, SaveError> {
        let start = Instant::now();
        let waited = self.state.unsettled.take();
        if let Err(now) = self.quiesce(Duration::ZERO) {
            return Err(SaveError::NotQuiesced(waited.unwrap_or(now)));
        }
        let st = &self.state;
        let regs = &st.regs;
        let (gtt, gtt_partial) = st.gtt.guest_entries();
        let saved = SavedVgpu {
            vram_size: self.link.config.vram_size,
            gtt_entries: self.link.layout.gtt_entries,
            global: regs.global.state(),
            engine: regs.engine,
            scan_head: st.scan_head,
            display: DisplayReg::ALL
                .iter()
                .map(|&r| regs.display.get(r))
                .collect(),
            dispi: DispiReg::ALL.iter().map(|&r| regs.dispi.get(r)).collect(),
            qext_endian: regs.qext_endian,
            vga_ports: regs.vga_ports,
            message_pending: st.message_pending,
            gtt,
            gtt_partial,
            scanned_commands: st.streams.scanned_commands,
            rejected_streams: st.streams.rejected_streams,
        };
        let bytes = saved.encode();
        self.state.migration.saved_bytes = bytes.len();
        self.state.migration.save = start.elapsed();
        Ok(bytes)
    }

    /// Become the vGPU saved in `bytes`: every value checked as the
    /// registers' own rules would check a guest's write (or, for what only
    /// the device sets, against what it could have set), the GTT validated,
    /// pinned and shadowed into this vGPU's slice, the engine context
    /// empty and enabled as the registers say. `bus_master` is the loaded
    /// command register's. On a refusal nothing has changed.
    pub fn load(&mut self, bytes: &[u8], bus_master: bool) -> Result<Effects, LoadError> {
        let start = Instant::now();
        let saved = SavedVgpu::decode(bytes, self.link.layout.gtt_entries)?;
        let regs = self.check(&saved)?;
        let mut fx = Effects::default();
        // Whatever this vGPU had in the GPU is dropped: a new generation.
        self.state.generation = self.link.gpu.scheduler().reset_context(self.link.ctx);
        self.take_progress();
        let Vgpu {
            link,
            state: st,
            display,
        } = self;
        st.regs = regs;
        st.scan_head = saved.scan_head;
        st.message_pending = saved.message_pending;
        st.streams = StreamStats {
            scanned_commands: saved.scanned_commands,
            rejected_streams: saved.rejected_streams,
        };
        let phys = &mut ContractGtt(link.gpu.bar2());
        let restored = st.gtt.set_system_access(bus_master, phys).and_then(|()| {
            st.gtt
                .restore(&saved.gtt, &saved.gtt_partial, &st.mem, phys)
        });
        if let Err(e) = restored {
            fx.host_error(format!("shadowing the loaded GTT: {e}"));
        }
        link.gpu
            .scheduler()
            .set_enabled(link.ctx, st.regs.engine_enabled());
        display.invalidate();
        if st.message_pending {
            // Delivered by `event` on the main loop, as the scheduler's is.
            let _ = link.events.write(1);
        }
        fx.irq = Some(st.regs.irq_line());
        st.migration.load = start.elapsed();
        Ok(fx)
    }

    /// The registers `saved` describes, on this vGPU's sizes and EDID, or
    /// the first field a guest of this vGPU could not have produced.
    fn check(&self, saved: &SavedVgpu) -> Result<VirtRegs, LoadError> {
        let l = self.link.layout;
        let same = |field, source_value: u64, here: u64| {
            (source_value == here)
                .then_some(())
                .ok_or(LoadError::Mismatch {
                    field,
                    source_value,
                    here,
                })
        };
        same("vram_size", saved.vram_size, self.link.config.vram_size)?;
        same(
            "gtt_entries",
            saved.gtt_entries.into(),
            l.gtt_entries.into(),
        )?;
        same("gtt.count", saved.gtt.len() as u64, l.gtt_entries.into())?;
        let mut last = None;
        for &(index, halves) in &saved.gtt_partial {
            if index >= l.gtt_entries || last.is_some_and(|p| p >= index) {
                return Err(LoadError::invalid(
                    "gtt_partial.index",
                    index,
                    "outside the GTT or out of order",
                ));
            }
            if !matches!(halves, 1 | 2) {
                return Err(LoadError::invalid(
                    "gtt_partial.halves",
                    halves,
                    "not one half (1: low, 2: high)",
                ));
            }
            last = Some(index);
        }

        let mut regs = self.state.regs.clone();
        regs.reset();
        regs.global
            .restore(&saved.global)
            .map_err(|b| LoadError::invalid(b.reg, b.value, "a value the device never reports"))?;
        let e = saved.engine;
        if e.ctl & !ring_ctl::ENABLE != 0 {
            return Err(LoadError::invalid(
                "engine.ctl",
                e.ctl,
                "bits other than ENABLE",
            ));
        }
        if e.error > error::MAX {
            return Err(LoadError::invalid("engine.error", e.error, "no such code"));
        }
        for (field, offset) in [("engine.head", e.head), ("scan_head", saved.scan_head)] {
            if offset % 4 != 0 || offset >= RING_SIZE_MAX {
                return Err(LoadError::invalid(
                    field,
                    offset,
                    "not a dword offset in a ring",
                ));
            }
        }
        if e.error == error::NONE && saved.scan_head != e.head {
            return Err(LoadError::invalid(
                "scan_head",
                saved.scan_head,
                "commands in flight: the source did not quiesce",
            ));
        }
        regs.engine = e;
        restore_block(&mut regs.display, "display.count", &saved.display)?;
        restore_block(&mut regs.dispi, "dispi.count", &saved.dispi)?;
        regs.qext_endian = saved.qext_endian;
        regs.vga_ports = saved.vga_ports;
        Ok(regs)
    }
}

/// A block's registers from `values`, one per register in `R::ALL` order,
/// each within its register's width.
fn restore_block<R: Register>(
    file: &mut RegFile<R>,
    count_field: &'static str,
    values: &[u64],
) -> Result<(), LoadError> {
    if values.len() != R::ALL.len() {
        return Err(LoadError::Mismatch {
            field: count_field,
            source_value: values.len() as u64,
            here: R::ALL.len() as u64,
        });
    }
    for (&reg, &v) in R::ALL.iter().zip(values) {
        if reg.width() < 8 && v >> (reg.width() * 8) != 0 {
            return Err(LoadError::invalid(reg.name(), v, "wider than the register"));
        }
        file.set(reg, v);
    }
    Ok(())
}

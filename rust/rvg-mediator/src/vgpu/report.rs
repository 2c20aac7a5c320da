//! What `info rust-vgpu` shows about a vGPU: gathered once, printed one
//! line per concern.

use std::fmt;
use std::time::Duration;

use rvg_model::engine::EngineState;
use rvg_model::global::GlobalBlock;
use rvg_model::regs::{GlobalReg, Register};

use super::{MigrationStats, StreamStats};
use crate::display::DisplayStats;
use crate::shadow::{ShadowStats, SliceLayout};
use crate::shared::{CtxStats, Policy};

/// The GTT fault registers of the vGPU's global block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalReport {
    pub gtt_faults: u64,
    pub fault_reason: u64,
    pub fault_addr: u64,
}

impl GlobalReport {
    pub fn of(global: &GlobalBlock) -> GlobalReport {
        let reg = |r: GlobalReg| global.read(r.offset(), r.width() as u32).unwrap_or(0);
        GlobalReport {
            gtt_faults: reg(GlobalReg::GttFaults),
            fault_reason: reg(GlobalReg::FaultReason),
            fault_addr: reg(GlobalReg::FaultAddr),
        }
    }
}

#[derive(Clone, Debug)]
pub struct VgpuReport {
    /// The GPU behind the contract, as its backend describes it.
    pub backend: String,
    /// vGPUs on the GPU, and how many its GTT has room for.
    pub attached: usize,
    pub capacity: usize,
    pub timeslice: Duration,
    pub policy: Policy,
    pub weight: u32,
    pub gpu_resets: u64,
    pub watchdog: Duration,
    pub watchdog_resets: u64,
    pub preempt_timeout: Duration,
    pub preempt_timeouts: u64,
    pub layout: SliceLayout,
    pub shadow: ShadowStats,
    pub global: GlobalReport,
    pub engine: EngineState,
    pub streams: StreamStats,
    pub sched: CtxStats,
    /// What the display shows, or why it is blank.
    pub display: String,
    pub display_stats: DisplayStats,
    pub migration: MigrationStats,
}

impl fmt::Display for VgpuReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, s, g, e) = (&self.layout, &self.shadow, &self.global, &self.engine);
        writeln!(f, "  backend: {}", self.backend)?;
        writeln!(
            f,
            "  gpu: {} vGPUs attached (GTT room for {}), policy={} timeslice={}us resets={} \
             watchdog={}ms watchdog-resets={} preempt-timeout={}ms preempt-timeouts={}",
            self.attached,
            self.capacity,
            self.policy,
            self.timeslice.as_micros(),
            self.gpu_resets,
            self.watchdog.as_millis(),
            self.watchdog_resets,
            self.preempt_timeout.as_millis(),
            self.preempt_timeouts
        )?;
        writeln!(
            f,
            "  gtt-slice: base={} entries={}",
            l.gtt_base, l.gtt_entries
        )?;
        writeln!(
            f,
            "  vram-slice: offset={:#x} size={:#x}",
            l.vram_base, l.vram_size
        )?;
        writeln!(f, "  pinned-pages: {}", s.pinned_pages)?;
        writeln!(
            f,
            "  shadowed-entries: {} (local={} system={})",
            s.local + s.system,
            s.local,
            s.system
        )?;
        writeln!(f, "  unmapped-entries: {}", s.unmapped)?;
        writeln!(
            f,
            "  rejected-entries: {} (total={})",
            s.rejected, s.rejected_total
        )?;
        writeln!(f, "  invalidated-entries: {}", s.invalidated_total)?;
        writeln!(
            f,
            "  pin-cache: hits={} misses={}",
            s.pin_hits, s.pin_misses
        )?;
        writeln!(
            f,
            "  faults: {} (last reason={:#x} addr={:#x})",
            g.gtt_faults, g.fault_reason, g.fault_addr
        )?;
        writeln!(
            f,
            "  engine: ctl={:#x} head={:#x} tail={:#x} seqno={} error={} error-addr={:#x}",
            e.ctl, e.head, e.tail, e.seqno, e.error, e.error_addr
        )?;
        writeln!(
            f,
            "  commands: scanned={} rejected-streams={} shadow-dwords={} slices={} \
             engine-faults={} hangs={} preemptions={} preempt-timeouts={}",
            self.streams.scanned_commands,
            self.streams.rejected_streams,
            self.sched.submitted,
            self.sched.slices,
            self.sched.faults,
            self.sched.hangs,
            self.sched.preemptions,
            self.sched.preempt_timeouts
        )?;
        writeln!(
            f,
            "  engine-share: weight={} engine-time={}us",
            self.weight,
            self.sched.engine_time.as_micros()
        )?;
        writeln!(f, "  display: {}", self.display)?;
        let d = &self.display_stats;
        writeln!(
            f,
            "  display-refresh: refreshes={} lines-compared={} lines-updated={}",
            d.refreshes, d.lines_compared, d.lines_updated
        )?;
        let m = &self.migration;
        writeln!(
            f,
            "  migration: quiesce={}us gpu-writes={}KiB saved={}B save={}us load={}us",
            m.quiesce.as_micros(),
            m.gpu_write_bytes >> 10,
            m.saved_bytes,
            m.save.as_micros(),
            m.load.as_micros()
        )
    }
}

//! A guest's accesses to BAR2: the registers (through `VirtRegs`), the GTT
//! window (through the shadow), and the shortcuts the device layer tries
//! first for the commonest ones.

use rvg_model::block::RegError;
use rvg_model::effects::Effects;
use rvg_model::gtt::gfx_addr;
use rvg_model::irq::{IntSource, IrqLine};
use rvg_model::regs::Bar2Target;

use super::link::ContractGtt;
use super::{RegRead, RegWrite, State, Vgpu};
use crate::shadow::{GttWriteError, WriteOutcome};

impl Vgpu {
    /// A guest read of BAR2. Reads change nothing, so there are no effects:
    /// the value, or why the access is refused (for the guest-error log;
    /// the guest reads 0).
    #[inline]
    pub fn mmio_read(&mut self, offset: u64, size: u32) -> Result<u64, RegError> {
        self.take_progress();
        match self.state.regs.read_register(offset, size) {
            Some(value) => Ok(value),
            None => self.read_other(offset, size),
        }
    }

    /// `mmio_read` for the common case only: a register of the global,
    /// engine or display block with no progress from the scheduler to take
    /// in first. None when the whole path is needed.
    #[inline]
    pub fn read_register(&self, offset: u64, size: u32) -> Option<u64> {
        if !self.link.inbox.is_empty() {
            return None;
        }
        self.state.regs.read_register(offset, size)
    }

    /// `mmio_write` for the common case only: a write whose stored value is
    /// all it changes (`VirtRegs::store`), with no scheduler progress to
    /// take in first. False, with nothing changed, when the whole path is
    /// needed.
    #[inline(always)]
    pub fn store_register(&mut self, offset: u64, value: u64, size: u32) -> bool {
        self.link.inbox.is_empty() && self.state.regs.store(offset, value, size)
    }

    /// The GTT window, the bochs-compatible areas, and refusals.
    #[inline(never)]
    fn read_other(&self, offset: u64, size: u32) -> Result<u64, RegError> {
        let st = &self.state;
        match st.regs.read(offset, size)? {
            RegRead::Value(v) => Ok(v),
            RegRead::Gtt { index, within } => st
                .gtt
                .read(index, within, size)
                .map_err(|e| RegError::Refused(e.to_string())),
        }
    }

    /// A guest write to BAR2. The interrupt line in the result is only
    /// there when the host must act on it (a message, a new level): most
    /// writes leave QEMU's interrupt code alone.
    #[inline]
    pub fn mmio_write(&mut self, offset: u64, value: u64, size: u32) -> Effects {
        // The GTT window holds no register: a write there is the shadow's
        // alone, and needs the register state only when it faults.
        if let Some((index, within)) = Bar2Target::gtt_slot(offset) {
            return self.write_gtt(index, within, offset, value, size);
        }
        self.take_progress();
        let before = self.state.regs.irq_line();
        match self.state.regs.write(offset, value, size) {
            // Most writes end in the register file.
            Ok(RegWrite::Done) => Effects::default(),
            Ok(RegWrite::Interrupt(line)) => Effects {
                irq: line.changed_from(before),
                ..Effects::default()
            },
            Ok(RegWrite::DeviceReset) => self.reset(),
            Ok(RegWrite::Gtt { index, within }) => {
                self.write_gtt(index, within, offset, value, size)
            }
            Ok(RegWrite::Engine {
                reset,
                enabled,
                kick,
            }) => self.engine_changed(reset, enabled, kick, offset, value, before),
            Err(e) => finish_write(Effects::default(), before, offset, value, Err(e)),
        }
    }

    /// A write to GTT entry `index`, byte `within`: the shadow validates
    /// and shadows it. Only a refused access, a rejected entry or a host
    /// failure has effects, made out of line.
    #[inline(never)]
    fn write_gtt(
        &mut self,
        index: u64,
        within: u64,
        offset: u64,
        value: u64,
        size: u32,
    ) -> Effects {
        let State { gtt, mem, .. } = &mut self.state;
        let mut phys = ContractGtt(self.link.gpu.bar2());
        match gtt.write(index, within, value, size, mem, &mut phys) {
            Ok(WriteOutcome::Pending | WriteOutcome::Shadowed(_)) => Effects::default(),
            outcome => self.gtt_write_failed(index, offset, value, outcome),
        }
    }

    /// A GTT write refused (logged as the guest's error), rejected (a GTT
    /// fault for the guest, with the scratch page mapped) or whose shadow
    /// could not be written (the host's error).
    #[cold]
    fn gtt_write_failed(
        &mut self,
        index: u64,
        offset: u64,
        value: u64,
        outcome: Result<WriteOutcome, GttWriteError>,
    ) -> Effects {
        let mut fx = Effects::default();
        match outcome {
            Ok(WriteOutcome::Rejected(reason)) => {
                self.take_progress();
                let st = &mut self.state;
                let before = st.regs.irq_line();
                fx.guest_error(format!(
                    "GTT entry {index} = {:#x} rejected (FAULT_REASON {reason:#x}); scratch page mapped",
                    st.gtt.entry(index as u32).map_or(0, |e| e.0)
                ));
                let line =
                    st.regs
                        .global
                        .fault(gfx_addr(index as u32), reason, IntSource::GTT_FAULT);
                fx.irq = line.changed_from(before);
            }
            Ok(WriteOutcome::Pending | WriteOutcome::Shadowed(_)) => {}
            Err(e @ GttWriteError::Shadow { .. }) => fx.host_error(e.to_string()),
            Err(GttWriteError::Access(e)) => {
                fx.check_write(offset, value, Err(RegError::Refused(e.to_string())))
            }
        }
        fx
    }

    /// An engine register changed: reset the context, tell the scheduler
    /// whether the engine is enabled, scan what the tail now covers.
    #[inline(never)]
    fn engine_changed(
        &mut self,
        reset: bool,
        enabled: Option<bool>,
        kick: bool,
        offset: u64,
        value: u64,
        before: IrqLine,
    ) -> Effects {
        let mut fx = Effects::default();
        let Vgpu {
            link, state: st, ..
        } = self;
        let sched = link.gpu.scheduler();
        if reset {
            st.generation = sched.reset_context(link.ctx);
            st.scan_head = 0;
        }
        if let Some(on) = enabled {
            sched.set_enabled(link.ctx, on);
        }
        if kick {
            link.submit(st, &mut fx);
        }
        finish_write(fx, before, offset, value, Ok(()))
    }
}

/// The effects of a write that went beyond the registers, or was refused:
/// the interrupt line only if the host must act on it, a refusal logged.
fn finish_write(
    mut fx: Effects,
    before: IrqLine,
    offset: u64,
    value: u64,
    result: Result<(), RegError>,
) -> Effects {
    if let Some(line) = fx.irq {
        fx.irq = line.changed_from(before);
    }
    fx.check_write(offset, value, result);
    fx
}

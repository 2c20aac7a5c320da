//! The global register block, shared by the physical GPU and the vGPU: the
//! same registers, with the sizes of whichever device owns it.

use crate::access::Lane;
use crate::block::{decode, RegError};
use crate::irq::{IntSource, Interrupts, IrqLine};
use crate::regs::{GlobalReg, RegKind, Register, RESET_MAGIC, RVG_ID, RVG_VERSION};

/// What a guest write to the global block asks of its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalWrite {
    /// A plain register took the value; nothing else changed.
    Stored,
    /// Handled inside the block; the interrupt line may have changed.
    Done(IrqLine),
    /// INT_TRIGGER: raise these sources.
    Trigger(IntSource),
    /// RESET with the reset value: reset the whole device.
    Reset,
}

/// What of the global block a migration carries: every register whose
/// value is state (the sizes are the device's, the rest constants).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalState {
    pub scratch: u64,
    pub int_status: u32,
    pub int_mask: u32,
    pub int_enable: u32,
    pub fault_addr: u64,
    pub fault_reason: u32,
    pub gtt_faults: u32,
}

/// A global register value no guest of this block could have caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadGlobal {
    pub reg: &'static str,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalBlock {
    vram_size: u64,
    gtt_entries: u32,
    scratch: u64,
    pub irq: Interrupts,
    fault_addr: u64,
    fault_reason: u32,
    gtt_faults: u32,
}

impl GlobalBlock {
    pub fn new(vram_size: u64, gtt_entries: u32) -> GlobalBlock {
        GlobalBlock {
            vram_size,
            gtt_entries,
            scratch: 0,
            irq: Interrupts::default(),
            fault_addr: 0,
            fault_reason: 0,
            gtt_faults: 0,
        }
    }

    /// Power-on state, sizes kept.
    pub fn reset(&mut self) {
        *self = GlobalBlock::new(self.vram_size, self.gtt_entries);
    }

    /// Record a fault for the guest to read and raise its source.
    pub fn fault(&mut self, addr: u64, reason: u32, source: IntSource) -> IrqLine {
        self.fault_addr = addr;
        self.fault_reason = reason;
        if source == IntSource::GTT_FAULT {
            self.gtt_faults = self.gtt_faults.saturating_add(1);
        }
        self.irq.raise(source)
    }

    pub fn state(&self) -> GlobalState {
        GlobalState {
            scratch: self.scratch,
            int_status: self.irq.status().bits(),
            int_mask: self.irq.mask().bits(),
            int_enable: self.irq.enable().bits(),
            fault_addr: self.fault_addr,
            fault_reason: self.fault_reason,
            gtt_faults: self.gtt_faults,
        }
    }

    /// Take `s` from a migration stream, checked as the registers' own
    /// rules would have it: defined interrupt sources only, a fault reason
    /// the device reports (or none). Nothing changes on a refusal.
    pub fn restore(&mut self, s: &GlobalState) -> Result<(), BadGlobal> {
        if s.fault_reason != 0 && !crate::regs::fault::ALL.contains(&s.fault_reason) {
            return Err(BadGlobal {
                reg: "FAULT_REASON",
                value: u64::from(s.fault_reason),
            });
        }
        let mut irq = Interrupts::default();
        irq.restore(s.int_status, s.int_mask, s.int_enable)
            .map_err(|b| BadGlobal {
                reg: b.reg,
                value: u64::from(b.value),
            })?;
        *self = GlobalBlock {
            scratch: s.scratch,
            irq,
            fault_addr: s.fault_addr,
            fault_reason: s.fault_reason,
            gtt_faults: s.gtt_faults,
            ..*self
        };
        Ok(())
    }

    pub fn fault_reason(&self) -> u32 {
        self.fault_reason
    }

    #[inline]
    pub fn read(&self, offset: u64, size: u32) -> Result<u64, RegError> {
        let (reg, lane) = decode::<GlobalReg>(offset, size)?;
        Ok(lane.extract(self.value(reg)))
    }

    /// The value of a global register, as a whole-register read sees it.
    #[inline(always)]
    pub fn value(&self, reg: GlobalReg) -> u64 {
        match reg {
            GlobalReg::Id => u64::from(RVG_ID),
            GlobalReg::Version => u64::from(RVG_VERSION),
            GlobalReg::Caps => 0,
            GlobalReg::VramSize => self.vram_size,
            GlobalReg::GttEntries => u64::from(self.gtt_entries),
            GlobalReg::Scratch => self.scratch,
            GlobalReg::IntStatus => u64::from(self.irq.status().bits()),
            GlobalReg::IntMask => u64::from(self.irq.mask().bits()),
            GlobalReg::IntEnable => u64::from(self.irq.enable().bits()),
            GlobalReg::FaultAddr => self.fault_addr,
            GlobalReg::FaultReason => u64::from(self.fault_reason),
            GlobalReg::GttFaults => u64::from(self.gtt_faults),
            GlobalReg::IntTrigger | GlobalReg::Reset => 0,
        }
    }

    /// Apply a guest write. Errors name the register and the reason; the
    /// caller logs them as guest errors.
    #[inline]
    pub fn write(&mut self, offset: u64, value: u64, size: u32) -> Result<GlobalWrite, RegError> {
        let (reg, lane) = decode::<GlobalReg>(offset, size)?;
        if self.store(reg, lane, value) {
            return Ok(GlobalWrite::Stored);
        }
        if reg.kind() == RegKind::ReadOnly {
            return Err(RegError::ReadOnly {
                reg: reg.name(),
                value,
            });
        }
        // Narrow writes to 32-bit registers act on the written bytes only.
        let bits = lane.place(value) as u32;
        let merge32 = |old: u32| lane.merge(u64::from(old), value) as u32;
        Ok(match reg {
            GlobalReg::IntStatus => GlobalWrite::Done(self.irq.write_status(bits)),
            GlobalReg::IntMask => {
                GlobalWrite::Done(self.irq.write_mask(merge32(self.irq.mask().bits())))
            }
            GlobalReg::IntEnable => {
                GlobalWrite::Done(self.irq.write_enable(merge32(self.irq.enable().bits())))
            }
            GlobalReg::IntTrigger => {
                let asked = IntSource::from_bits_truncate(bits);
                if asked - IntSource::SOFTWARE != IntSource::empty() || bits & !asked.bits() != 0 {
                    return Err(RegError::Access {
                        reg: "INT_TRIGGER",
                        err: crate::access::AccessError::Value {
                            value: u64::from(bits),
                            expected: "only SOFTWARE (0x80000000) can be triggered",
                        },
                    });
                }
                GlobalWrite::Trigger(asked)
            }
            GlobalReg::Reset => {
                if bits != RESET_MAGIC || lane.size != 4 {
                    return Err(RegError::Access {
                        reg: "RESET",
                        err: crate::access::AccessError::Value {
                            value,
                            expected: "a 4-byte write of 0x52560001",
                        },
                    });
                }
                GlobalWrite::Reset
            }
            _ => unreachable!("read-only and storage registers were handled above"),
        })
    }

    /// A write to a register whose value is all it changes (SCRATCH): done,
    /// and true. False, with nothing changed, for any other register.
    #[inline(always)]
    pub fn store(&mut self, reg: GlobalReg, lane: Lane, value: u64) -> bool {
        match reg {
            GlobalReg::Scratch => {
                self.scratch = lane.merge(self.scratch, value);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> GlobalBlock {
        GlobalBlock::new(64 << 20, 32768)
    }

    fn off(r: GlobalReg) -> u64 {
        r.offset()
    }

    #[test]
    fn identity_and_sizes() {
        let b = g();
        assert_eq!(b.read(off(GlobalReg::Id), 4), Ok(u64::from(RVG_ID)));
        assert_eq!(b.read(off(GlobalReg::VramSize), 8), Ok(64 << 20));
        assert_eq!(b.read(off(GlobalReg::VramSize) + 4, 4), Ok(0));
        assert_eq!(b.read(off(GlobalReg::GttEntries), 4), Ok(32768));
    }

    #[test]
    fn scratch_keeps_every_access_size() {
        let mut b = g();
        let at = off(GlobalReg::Scratch);
        b.write(at, 0x0123_4567_89ab_cdef, 8).unwrap();
        assert_eq!(b.read(at, 8), Ok(0x0123_4567_89ab_cdef));
        b.write(at + 4, 0xdead_beef, 4).unwrap();
        b.write(at + 2, 0x5a5a, 2).unwrap();
        b.write(at + 1, 0x11, 1).unwrap();
        assert_eq!(b.read(at, 8), Ok(0xdead_beef_5a5a_11ef));
        assert_eq!(b.read(at + 6, 2), Ok(0xdead));
        assert_eq!(b.read(at + 3, 1), Ok(0x5a));
    }

    #[test]
    fn read_only_holes_and_misaligned_are_refused() {
        let mut b = g();
        assert!(matches!(
            b.write(off(GlobalReg::Id), 0, 4),
            Err(RegError::ReadOnly { reg: "ID", .. })
        ));
        assert!(matches!(
            b.write(0x0c, 1, 4),
            Err(RegError::NoRegister { .. })
        ));
        assert!(matches!(
            b.read(off(GlobalReg::Scratch) + 1, 2),
            Err(RegError::Access { .. })
        ));
        assert!(matches!(
            b.read(off(GlobalReg::IntStatus), 8),
            Err(RegError::Access { .. })
        ));
    }

    #[test]
    fn trigger_and_reset_need_exact_values() {
        let mut b = g();
        let sw = u64::from(IntSource::SOFTWARE.bits());
        assert_eq!(
            b.write(off(GlobalReg::IntTrigger), sw, 4),
            Ok(GlobalWrite::Trigger(IntSource::SOFTWARE))
        );
        assert!(b
            .write(
                off(GlobalReg::IntTrigger),
                u64::from(IntSource::FENCE.bits()),
                4
            )
            .is_err());
        assert!(b.write(off(GlobalReg::IntTrigger), 0x100, 4).is_err());
        assert!(b.write(off(GlobalReg::Reset), 1, 4).is_err());
        assert!(b.write(off(GlobalReg::Reset) + 2, 0x5256, 2).is_err());
        assert_eq!(
            b.write(off(GlobalReg::Reset), u64::from(RESET_MAGIC), 4),
            Ok(GlobalWrite::Reset)
        );
    }

    #[test]
    fn interrupt_registers_drive_the_line() {
        let mut b = g();
        let sw = IntSource::SOFTWARE;
        b.write(off(GlobalReg::IntEnable), u64::from(sw.bits()), 4)
            .unwrap();
        let line = b.irq.raise(sw);
        assert!(line.asserted && line.message);
        assert_eq!(
            b.read(off(GlobalReg::IntStatus), 4),
            Ok(u64::from(sw.bits()))
        );
        let w = b
            .write(off(GlobalReg::IntStatus), u64::from(sw.bits()), 4)
            .unwrap();
        assert_eq!(w, GlobalWrite::Done(IrqLine::default()));
        assert_eq!(
            b.write(off(GlobalReg::Scratch), 1, 4),
            Ok(GlobalWrite::Stored)
        );
        // A byte write to the top byte of INT_STATUS clears bit 31 alone.
        b.irq.raise(sw | IntSource::FENCE);
        b.write(off(GlobalReg::IntStatus) + 3, 0x80, 1).unwrap();
        assert_eq!(b.irq.status(), IntSource::FENCE);
    }

    #[test]
    fn faults_are_recorded() {
        let mut b = g();
        b.fault(0x1000, 0x11, IntSource::GTT_FAULT);
        assert_eq!(b.read(off(GlobalReg::FaultAddr), 8), Ok(0x1000));
        assert_eq!(b.read(off(GlobalReg::FaultReason), 4), Ok(0x11));
        assert_eq!(b.read(off(GlobalReg::GttFaults), 4), Ok(1));
        b.reset();
        assert_eq!(b.read(off(GlobalReg::GttFaults), 4), Ok(0));
    }
}

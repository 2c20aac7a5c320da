//! The device state behind BAR2, driven by the FFI layer.
//!
//! Every entry point takes `&self` and returns the [`Effects`] the caller must
//! apply (interrupt line, log messages) once no lock is held any more, so no
//! callback into the host ever runs under a device borrow.

use parking_lot::Mutex;

use crate::access::Lane;
use crate::config::{ConfigError, DeviceConfig};
use crate::irq::{IntSource, Interrupts};
use crate::regs::{bar2, GlobalReg, RegKind, RESET_MAGIC, RVG_ID, RVG_VERSION};

pub use crate::irq::IrqLine;

/// Entries in the GTT window of BAR2.
pub const GTT_ENTRIES: u32 = ((bar2::SIZE - bar2::GTT) / 8) as u32;

/// A message for the host log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diag {
    /// The guest did something the hardware does not allow.
    GuestError(String),
    /// The guest used something the model does not implement yet.
    Unimplemented(String),
}

/// What an access asks of the host once it returns.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub irq: IrqLine,
    pub diags: Vec<Diag>,
}

#[derive(Debug, Default)]
struct State {
    scratch: u64,
    irq: Interrupts,
    fault_addr: u64,
    fault_reason: u32,
}

pub struct Device {
    config: DeviceConfig,
    state: Mutex<State>,
}

impl Device {
    pub fn new(config: DeviceConfig) -> Result<Device, ConfigError> {
        config.validate()?;
        Ok(Device {
            config,
            state: Mutex::new(State::default()),
        })
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    pub fn irq_line(&self) -> IrqLine {
        self.state.lock().irq.current()
    }

    /// Power-on state.
    pub fn reset(&self) -> Effects {
        let mut st = self.state.lock();
        *st = State::default();
        Effects {
            irq: st.irq.current(),
            diags: Vec::new(),
        }
    }

    pub fn mmio_read(&self, offset: u64, size: u32) -> (u64, Effects) {
        let mut fx = Effects::default();
        let value = match block_of(offset) {
            Some((bar2::GLOBAL, rel)) => self.global_read(rel, size, &mut fx),
            _ => {
                fx.diags.push(Diag::Unimplemented(format!(
                    "read of {size} bytes at BAR2 {offset:#x}: no register there"
                )));
                0
            }
        };
        fx.irq = self.irq_line();
        (value, fx)
    }

    pub fn mmio_write(&self, offset: u64, value: u64, size: u32) -> Effects {
        let mut fx = Effects::default();
        match block_of(offset) {
            Some((bar2::GLOBAL, rel)) => self.global_write(rel, value, size, &mut fx),
            _ => fx.diags.push(Diag::Unimplemented(format!(
                "write of {size} bytes ({value:#x}) at BAR2 {offset:#x}: no register there"
            ))),
        }
        if fx.irq == IrqLine::default() {
            fx.irq = self.irq_line();
        }
        fx
    }

    fn lane(reg_name: &str, rel: u64, size: u32, reg: GlobalReg, fx: &mut Effects) -> Option<Lane> {
        match Lane::new(rel, size, reg.offset(), reg.width()) {
            Ok(lane) => Some(lane),
            Err(e) => {
                fx.diags
                    .push(Diag::GuestError(format!("{reg_name}: {e}; access ignored")));
                None
            }
        }
    }

    fn global_read(&self, rel: u64, size: u32, fx: &mut Effects) -> u64 {
        let Some(reg) = GlobalReg::containing(rel) else {
            fx.diags.push(Diag::GuestError(format!(
                "global block: read at {rel:#x} hits no register"
            )));
            return 0;
        };
        let Some(lane) = Self::lane(reg.name(), rel, size, reg, fx) else {
            return 0;
        };
        let st = self.state.lock();
        let full = match reg {
            GlobalReg::Id => u64::from(RVG_ID),
            GlobalReg::Version => u64::from(RVG_VERSION),
            GlobalReg::Caps => 0,
            GlobalReg::VramSize => self.config.vram_size,
            GlobalReg::GttEntries => u64::from(GTT_ENTRIES),
            GlobalReg::Scratch => st.scratch,
            GlobalReg::IntStatus => u64::from(st.irq.status().bits()),
            GlobalReg::IntMask => u64::from(st.irq.mask().bits()),
            GlobalReg::IntEnable => u64::from(st.irq.enable().bits()),
            GlobalReg::FaultAddr => st.fault_addr,
            GlobalReg::FaultReason => u64::from(st.fault_reason),
            GlobalReg::IntTrigger | GlobalReg::Reset => 0,
        };
        lane.extract(full)
    }

    fn global_write(&self, rel: u64, value: u64, size: u32, fx: &mut Effects) {
        let Some(reg) = GlobalReg::containing(rel) else {
            fx.diags.push(Diag::GuestError(format!(
                "global block: write of {value:#x} at {rel:#x} hits no register"
            )));
            return;
        };
        let Some(lane) = Self::lane(reg.name(), rel, size, reg, fx) else {
            return;
        };
        if reg.kind() == RegKind::ReadOnly {
            fx.diags.push(Diag::GuestError(format!(
                "{} is read-only; write of {value:#x} ignored",
                reg.name()
            )));
            return;
        }
        if reg == GlobalReg::Reset {
            if lane.place(value) == u64::from(RESET_MAGIC) {
                *fx = self.reset();
            } else {
                fx.diags.push(Diag::GuestError(format!(
                    "RESET: {value:#x} is not the reset value {RESET_MAGIC:#x}; ignored"
                )));
            }
            return;
        }
        let mut st = self.state.lock();
        // Narrow writes to 32-bit registers act on the written bytes only.
        let bits = lane.place(value) as u32;
        fx.irq = match reg {
            GlobalReg::Scratch => {
                st.scratch = lane.merge(st.scratch, value);
                st.irq.current()
            }
            GlobalReg::IntStatus => st.irq.write_status(bits),
            GlobalReg::IntMask => {
                let merged = lane.merge(u64::from(st.irq.mask().bits()), value) as u32;
                st.irq.write_mask(merged)
            }
            GlobalReg::IntEnable => {
                let merged = lane.merge(u64::from(st.irq.enable().bits()), value) as u32;
                st.irq.write_enable(merged)
            }
            GlobalReg::IntTrigger => {
                let asked = IntSource::from_bits_truncate(bits);
                if asked != IntSource::SOFTWARE && !asked.is_empty() {
                    fx.diags.push(Diag::GuestError(format!(
                        "INT_TRIGGER: only SOFTWARE ({:#x}) can be triggered; {bits:#x} given",
                        IntSource::SOFTWARE.bits()
                    )));
                }
                st.irq.raise(asked & IntSource::SOFTWARE)
            }
            _ => unreachable!("read-only and reset handled above"),
        };
    }
}

/// Split a BAR2 offset into (block base, offset within block) for the
/// register blocks; None for the bochs block and the GTT.
fn block_of(offset: u64) -> Option<(u64, u64)> {
    let base = offset & !(bar2::BLOCK_SIZE - 1);
    match base {
        bar2::GLOBAL | bar2::ENGINE | bar2::DISPLAY => Some((base, offset - base)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelKind;

    fn dev() -> Device {
        Device::new(DeviceConfig {
            model: ModelKind::Vgpu,
            vram_size: 64 << 20,
        })
        .unwrap()
    }

    const G: u64 = bar2::GLOBAL;

    fn reg(r: GlobalReg) -> u64 {
        G + r.offset()
    }

    #[test]
    fn identity_registers() {
        let d = dev();
        assert_eq!(d.mmio_read(reg(GlobalReg::Id), 4).0, u64::from(RVG_ID));
        assert_eq!(d.mmio_read(reg(GlobalReg::VramSize), 8).0, 64 << 20);
        assert_eq!(d.mmio_read(reg(GlobalReg::GttEntries), 4).0, 128 * 1024);
    }

    #[test]
    fn scratch_keeps_every_access_size() {
        let d = dev();
        let at = reg(GlobalReg::Scratch);
        d.mmio_write(at, 0x0123_4567_89ab_cdef, 8);
        assert_eq!(d.mmio_read(at, 8).0, 0x0123_4567_89ab_cdef);
        d.mmio_write(at + 4, 0xdead_beef, 4);
        d.mmio_write(at + 2, 0x5a5a, 2);
        d.mmio_write(at + 1, 0x11, 1);
        assert_eq!(d.mmio_read(at, 8).0, 0xdead_beef_5a5a_11ef);
        assert_eq!(d.mmio_read(at + 6, 2).0, 0xdead);
        assert_eq!(d.mmio_read(at + 3, 1).0, 0x5a);
    }

    #[test]
    fn read_only_and_stray_writes_are_reported_not_applied() {
        let d = dev();
        let fx = d.mmio_write(reg(GlobalReg::Id), 0, 4);
        assert!(
            matches!(fx.diags.as_slice(), [Diag::GuestError(m)] if m.contains("ID is read-only"))
        );
        assert_eq!(d.mmio_read(reg(GlobalReg::Id), 4).0, u64::from(RVG_ID));
        let fx = d.mmio_write(G + 0x0c, 1, 4);
        assert_eq!(fx.diags.len(), 1);
        let (v, fx) = d.mmio_read(reg(GlobalReg::Scratch) + 1, 2);
        assert_eq!((v, fx.diags.len()), (0, 1));
    }

    #[test]
    fn software_interrupt_asserts_then_clears() {
        let d = dev();
        d.mmio_write(
            reg(GlobalReg::IntEnable),
            u64::from(IntSource::SOFTWARE.bits()),
            4,
        );
        let fx = d.mmio_write(
            reg(GlobalReg::IntTrigger),
            u64::from(IntSource::SOFTWARE.bits()),
            4,
        );
        assert_eq!(
            fx.irq,
            IrqLine {
                asserted: true,
                message: true
            }
        );
        assert_eq!(
            d.mmio_read(reg(GlobalReg::IntStatus), 4).0,
            u64::from(IntSource::SOFTWARE.bits())
        );
        let fx = d.mmio_write(
            reg(GlobalReg::IntStatus),
            u64::from(IntSource::SOFTWARE.bits()),
            4,
        );
        assert_eq!(fx.irq, IrqLine::default());
    }

    #[test]
    fn trigger_refuses_hardware_sources() {
        let d = dev();
        let fx = d.mmio_write(
            reg(GlobalReg::IntTrigger),
            u64::from(IntSource::FENCE.bits()),
            4,
        );
        assert_eq!(fx.diags.len(), 1);
        assert_eq!(d.mmio_read(reg(GlobalReg::IntStatus), 4).0, 0);
    }

    #[test]
    fn reset_register_needs_the_magic_value() {
        let d = dev();
        d.mmio_write(reg(GlobalReg::Scratch), 7, 8);
        d.mmio_write(reg(GlobalReg::Reset), 1, 4);
        assert_eq!(d.mmio_read(reg(GlobalReg::Scratch), 8).0, 7);
        d.mmio_write(reg(GlobalReg::Reset), u64::from(RESET_MAGIC), 4);
        assert_eq!(d.mmio_read(reg(GlobalReg::Scratch), 8).0, 0);
    }
}

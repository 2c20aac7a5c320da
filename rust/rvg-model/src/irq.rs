//! Interrupt status, mask and enable (`docs/hardware.md`, "Interrupts").
//!
//! An event whose source bit is set in `INT_MASK` is dropped. Otherwise it
//! latches into `INT_STATUS` until the guest writes 1 to that bit. The
//! interrupt is asserted while `INT_STATUS & INT_ENABLE` is non-zero; a
//! message (MSI or MSI-X) is sent for each enabled source that becomes
//! pending, so no event is lost while an earlier one is being handled.

use bitflags::bitflags;

bitflags! {
    /// Interrupt sources: bits of INT_STATUS, INT_MASK, INT_ENABLE.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct IntSource: u32 {
        const FENCE = 1 << 0;
        const ENGINE_ERROR = 1 << 1;
        const GTT_FAULT = 1 << 2;
        const DISPLAY_FLIP = 1 << 3;
        /// The engine stopped for a preemption request (physical GPU only).
        const PREEMPTED = 1 << 4;
        const SOFTWARE = 1 << 31;
    }
}

/// What the interrupt output should do after a change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqLine {
    /// Level for INTx: some enabled source is pending.
    pub asserted: bool,
    /// Send an MSI / MSI-X message now.
    pub message: bool,
}

impl IrqLine {
    /// This line, if the host must hear of it after the line was
    /// `before`: a message to send, or a new INTx level.
    pub fn changed_from(self, before: IrqLine) -> Option<IrqLine> {
        (self.message || self.asserted != before.asserted).then_some(self)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interrupts {
    status: IntSource,
    mask: IntSource,
    enable: IntSource,
}

impl Interrupts {
    pub fn status(&self) -> IntSource {
        self.status
    }
    pub fn mask(&self) -> IntSource {
        self.mask
    }
    pub fn enable(&self) -> IntSource {
        self.enable
    }

    fn line(&self, message: bool) -> IrqLine {
        IrqLine {
            asserted: self.status.intersects(self.enable),
            message,
        }
    }

    /// An event from `sources` happened.
    pub fn raise(&mut self, sources: IntSource) -> IrqLine {
        let latched = sources - self.mask;
        let newly = latched - self.status;
        self.status |= latched;
        self.line(newly.intersects(self.enable))
    }

    /// Guest write to INT_STATUS: each 1 clears that bit.
    pub fn write_status(&mut self, value: u32) -> IrqLine {
        self.status -= IntSource::from_bits_truncate(value);
        self.line(false)
    }

    /// Guest write to INT_MASK. Masking only stops future events.
    pub fn write_mask(&mut self, value: u32) -> IrqLine {
        self.mask = IntSource::from_bits_truncate(value);
        self.line(false)
    }

    /// Guest write to INT_ENABLE. Enabling a pending source sends a message.
    pub fn write_enable(&mut self, value: u32) -> IrqLine {
        let old = self.enable;
        self.enable = IntSource::from_bits_truncate(value);
        let newly = self.enable - old;
        self.line(newly.intersects(self.status))
    }

    pub fn current(&self) -> IrqLine {
        self.line(false)
    }

    /// Take the three registers from a migration stream. A bit no source
    /// defines is refused with the register's name: a guest could not
    /// have set it.
    pub fn restore(&mut self, status: u32, mask: u32, enable: u32) -> Result<(), BadBits> {
        let bits = |reg, value| IntSource::from_bits(value).ok_or(BadBits { reg, value });
        *self = Interrupts {
            status: bits("INT_STATUS", status)?,
            mask: bits("INT_MASK", mask)?,
            enable: bits("INT_ENABLE", enable)?,
        };
        Ok(())
    }
}

/// An interrupt register value with bits no source defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadBits {
    pub reg: &'static str,
    pub value: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_event_asserts_and_sends_one_message() {
        let mut irq = Interrupts::default();
        irq.write_enable(IntSource::SOFTWARE.bits());
        let line = irq.raise(IntSource::SOFTWARE);
        assert_eq!(
            line,
            IrqLine {
                asserted: true,
                message: true
            }
        );
        // The same source again while still pending: level stays, no new message.
        assert_eq!(
            irq.raise(IntSource::SOFTWARE),
            IrqLine {
                asserted: true,
                message: false
            }
        );
        // A second source while the first is pending sends its own message.
        irq.write_enable((IntSource::SOFTWARE | IntSource::FENCE).bits());
        assert!(irq.raise(IntSource::FENCE).message);
    }

    #[test]
    fn write_one_to_clear_drops_the_level_only_when_all_causes_go() {
        let mut irq = Interrupts::default();
        irq.write_enable(u32::MAX);
        irq.raise(IntSource::SOFTWARE | IntSource::FENCE);
        assert!(irq.write_status(IntSource::FENCE.bits()).asserted);
        assert!(!irq.write_status(IntSource::SOFTWARE.bits()).asserted);
        assert_eq!(irq.status(), IntSource::empty());
        // Writing zeros clears nothing.
        irq.raise(IntSource::FENCE);
        assert!(irq.write_status(0).asserted);
    }

    #[test]
    fn masked_events_are_not_recorded() {
        let mut irq = Interrupts::default();
        irq.write_enable(u32::MAX);
        irq.write_mask(IntSource::SOFTWARE.bits());
        assert_eq!(irq.raise(IntSource::SOFTWARE), IrqLine::default());
        assert_eq!(irq.status(), IntSource::empty());
    }

    #[test]
    fn disabled_events_latch_and_fire_when_enabled() {
        let mut irq = Interrupts::default();
        assert_eq!(irq.raise(IntSource::SOFTWARE), IrqLine::default());
        assert_eq!(irq.status(), IntSource::SOFTWARE);
        let line = irq.write_enable(IntSource::SOFTWARE.bits());
        assert_eq!(
            line,
            IrqLine {
                asserted: true,
                message: true
            }
        );
        assert!(!irq.write_enable(0).asserted);
    }

    #[test]
    fn reserved_bits_read_as_zero() {
        let mut irq = Interrupts::default();
        irq.write_enable(u32::MAX);
        irq.write_mask(0x0000_0100);
        assert_eq!(irq.enable().bits(), IntSource::all().bits());
        assert_eq!(irq.mask(), IntSource::empty());
    }
}

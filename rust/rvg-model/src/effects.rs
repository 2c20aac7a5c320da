//! What a device operation asks of its host once it returns. Operations
//! collect these instead of calling out, so no host callback ever runs while
//! a device lock is held.

use crate::irq::IrqLine;

/// A message for the host log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diag {
    /// The guest did something the hardware does not allow.
    GuestError(String),
    /// The guest used something the model does not implement.
    Unimplemented(String),
    /// The host side failed (a backend call returned an error): never the
    /// guest's doing.
    HostError(String),
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The interrupt output after the operation; None when it cannot have
    /// changed (reads, GTT writes), so the host has nothing to redo.
    pub irq: Option<IrqLine>,
    pub diags: Vec<Diag>,
}

impl Effects {
    pub fn guest_error(&mut self, msg: impl Into<String>) {
        self.diags.push(Diag::GuestError(msg.into()));
    }
    pub fn unimplemented(&mut self, msg: impl Into<String>) {
        self.diags.push(Diag::Unimplemented(msg.into()));
    }
    pub fn host_error(&mut self, msg: impl Into<String>) {
        self.diags.push(Diag::HostError(msg.into()));
    }
    /// Log a refused guest write.
    #[inline]
    pub fn check_write<E: std::fmt::Display>(
        &mut self,
        offset: u64,
        value: u64,
        result: Result<(), E>,
    ) {
        if let Err(e) = result {
            self.refused_write(offset, value, e);
        }
    }

    #[cold]
    fn refused_write<E: std::fmt::Display>(&mut self, offset: u64, value: u64, e: E) {
        self.guest_error(format!("BAR2 write of {value:#x} at {offset:#x}: {e}"));
    }
}

//! The object behind the opaque `RvgDevice` pointer.

use std::sync::atomic::{AtomicBool, Ordering};

use rvg_model::device::{Diag, Effects};
use rvg_model::Device;

use crate::host::{Host, LogKind};

pub struct FfiDevice {
    pub model: Device,
    pub host: Host,
    /// Set when a panic was caught: the device then reads as all ones and
    /// ignores writes, like a function that dropped off the bus, until reset.
    broken: AtomicBool,
}

impl FfiDevice {
    pub fn new(model: Device, host: Host) -> FfiDevice {
        FfiDevice {
            model,
            host,
            broken: AtomicBool::new(false),
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    pub fn set_broken(&self, why: &str) {
        self.broken.store(true, Ordering::Release);
        self.host.log(
            LogKind::Error,
            &format!("internal error, device disabled until reset: {why}"),
        );
    }

    pub fn clear_broken(&self) {
        self.broken.store(false, Ordering::Release);
    }

    /// Carry out what the model asked for; no model lock is held here.
    pub fn apply(&self, fx: Effects) {
        for diag in &fx.diags {
            match diag {
                Diag::GuestError(m) => self.host.log(LogKind::GuestError, m),
                Diag::Unimplemented(m) => self.host.log(LogKind::Unimplemented, m),
            }
        }
        self.host.drive_irq(fx.irq);
    }
}

//! The host-services table, checked once and wrapped in safe methods.

use std::ffi::CString;

use rvg_model::IrqLine;

use crate::sys;

/// Log classes, as [`sys::RvgLogKind`] names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    GuestError,
    Unimplemented,
    Error,
}

/// The host services with every entry known to be present.
#[derive(Clone, Copy)]
struct Services {
    irq_mode: unsafe extern "C" fn(*mut sys::RvgHost) -> sys::RvgIrqMode,
    msix_notify: unsafe extern "C" fn(*mut sys::RvgHost, u32),
    msi_notify: unsafe extern "C" fn(*mut sys::RvgHost, u32),
    intx_set: unsafe extern "C" fn(*mut sys::RvgHost, bool),
    log: unsafe extern "C" fn(*mut sys::RvgHost, sys::RvgLogKind, *const std::ffi::c_char),
}

pub struct Host {
    host: *mut sys::RvgHost,
    services: Services,
}

// SAFETY: the shim's services may be called from any thread (they take the
// BQL themselves where QEMU needs it), and `host` is only passed back to them.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

/// Make a C string out of a log message; an interior NUL would cut it short,
/// so it is replaced.
pub fn c_message(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced")
}

impl Host {
    /// Check that the shim filled every service the device uses.
    pub fn new(host: *mut sys::RvgHost, services: &sys::RvgHostServices) -> Result<Host, String> {
        let missing = |name: &str| format!("host service '{name}' is missing");
        Ok(Host {
            host,
            services: Services {
                irq_mode: services.irq_mode.ok_or_else(|| missing("irq_mode"))?,
                msix_notify: services.msix_notify.ok_or_else(|| missing("msix_notify"))?,
                msi_notify: services.msi_notify.ok_or_else(|| missing("msi_notify"))?,
                intx_set: services.intx_set.ok_or_else(|| missing("intx_set"))?,
                log: services.log.ok_or_else(|| missing("log"))?,
            },
        })
    }

    pub fn irq_mode(&self) -> sys::RvgIrqMode {
        // SAFETY: a present service called with the host pointer it was given with.
        unsafe { (self.services.irq_mode)(self.host) }
    }

    /// Deliver the interrupt output in the mode the guest configured. MSI and
    /// MSI-X are messages; INTx follows the level.
    pub fn drive_irq(&self, line: IrqLine) {
        let mode = self.irq_mode();
        // SAFETY (all three): present services called with their own host pointer.
        unsafe {
            if mode == sys::RvgIrqMode::RVG_IRQ_MSIX {
                if line.message {
                    (self.services.msix_notify)(self.host, 0);
                }
            } else if mode == sys::RvgIrqMode::RVG_IRQ_MSI {
                if line.message {
                    (self.services.msi_notify)(self.host, 0);
                }
            } else {
                (self.services.intx_set)(self.host, line.asserted);
            }
        }
    }

    /// The guest switched interrupt mode: INTx must not stay asserted under
    /// MSI or MSI-X, and must come back if a cause is pending on return to INTx.
    pub fn irq_mode_changed(&self, line: IrqLine) {
        let intx = self.irq_mode() == sys::RvgIrqMode::RVG_IRQ_INTX;
        // SAFETY: present service, own host pointer.
        unsafe { (self.services.intx_set)(self.host, intx && line.asserted) }
    }

    pub fn log(&self, kind: LogKind, msg: &str) {
        let kind = match kind {
            LogKind::GuestError => sys::RvgLogKind::RVG_LOG_GUEST_ERROR,
            LogKind::Unimplemented => sys::RvgLogKind::RVG_LOG_UNIMP,
            LogKind::Error => sys::RvgLogKind::RVG_LOG_ERROR,
        };
        let text = c_message(msg);
        // SAFETY: present service; `text` outlives the call.
        unsafe { (self.services.log)(self.host, kind, text.as_ptr()) }
    }
}

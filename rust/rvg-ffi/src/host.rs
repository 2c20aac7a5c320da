//! The host-services table, checked once and wrapped in safe methods.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rvg_mediator::display::{DisplayHost, Surface};
use rvg_model::dma::{DmaError, DmaSpace};
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
    bus_master: unsafe extern "C" fn(*mut sys::RvgHost) -> bool,
    msix_notify: unsafe extern "C" fn(*mut sys::RvgHost, u32),
    msi_notify: unsafe extern "C" fn(*mut sys::RvgHost, u32),
    intx_set: unsafe extern "C" fn(*mut sys::RvgHost, bool),
    log: unsafe extern "C" fn(*mut sys::RvgHost, sys::RvgLogKind, *const c_char),
    dma_rw: unsafe extern "C" fn(*mut sys::RvgHost, u64, *mut c_void, u64, bool) -> bool,
    watch_fd: unsafe extern "C" fn(*mut sys::RvgHost, c_int),
    unwatch_fd: unsafe extern "C" fn(*mut sys::RvgHost, c_int),
    text_append: unsafe extern "C" fn(*mut sys::RvgTextSink, *const c_char),
    bytes_append: unsafe extern "C" fn(*mut sys::RvgByteSink, *const u8, usize),
    mark_dirty: unsafe extern "C" fn(*mut sys::RvgHost, sys::RvgDirtyKind, u64, u64),
    vram_dirty: unsafe extern "C" fn(*mut sys::RvgHost, u64, u64) -> bool,
    display_resize: unsafe extern "C" fn(*mut sys::RvgHost, u32, u32),
    display_surface: unsafe extern "C" fn(*mut sys::RvgHost, *mut sys::RvgSurface) -> bool,
    display_update: unsafe extern "C" fn(*mut sys::RvgHost, u32, u32),
    set_error: unsafe extern "C" fn(*mut sys::RvgErrorSink, *const c_char),
}

/// Interrupts delivered, for introspection.
#[derive(Default)]
pub struct IrqCounts {
    pub msix: AtomicU64,
    pub msi: AtomicU64,
    pub intx: AtomicU64,
    intx_level: AtomicBool,
}

#[derive(Clone)]
pub struct Host {
    host: *mut sys::RvgHost,
    services: Services,
    pub counts: Arc<IrqCounts>,
    /// The device left the bus: nothing may reach the PCI device any more.
    /// Shared by every clone (the engine's interrupt sink, its DMA).
    closed: Arc<AtomicBool>,
}

// SAFETY: the shim's services may be called from any thread (they take the
// BQL themselves where QEMU needs it), and `host` is only passed back to them.
unsafe impl Send for Host {}
// SAFETY: as for Send: `&Host` only calls those thread-safe services.
unsafe impl Sync for Host {}

/// Make a C string out of a message; an interior NUL would cut it short,
/// so it is escaped.
pub fn c_message(msg: &str) -> CString {
    CString::new(msg.replace('\0', "\\0")).expect("NULs were replaced")
}

impl Host {
    /// Check that the shim filled every service the devices use.
    pub fn new(host: *mut sys::RvgHost, services: &sys::RvgHostServices) -> Result<Host, String> {
        let missing = |name: &str| format!("host service '{name}' is missing");
        Ok(Host {
            host,
            services: Services {
                irq_mode: services.irq_mode.ok_or_else(|| missing("irq_mode"))?,
                bus_master: services.bus_master.ok_or_else(|| missing("bus_master"))?,
                msix_notify: services.msix_notify.ok_or_else(|| missing("msix_notify"))?,
                msi_notify: services.msi_notify.ok_or_else(|| missing("msi_notify"))?,
                intx_set: services.intx_set.ok_or_else(|| missing("intx_set"))?,
                log: services.log.ok_or_else(|| missing("log"))?,
                dma_rw: services.dma_rw.ok_or_else(|| missing("dma_rw"))?,
                watch_fd: services.watch_fd.ok_or_else(|| missing("watch_fd"))?,
                unwatch_fd: services.unwatch_fd.ok_or_else(|| missing("unwatch_fd"))?,
                text_append: services.text_append.ok_or_else(|| missing("text_append"))?,
                bytes_append: services
                    .bytes_append
                    .ok_or_else(|| missing("bytes_append"))?,
                mark_dirty: services.mark_dirty.ok_or_else(|| missing("mark_dirty"))?,
                vram_dirty: services.vram_dirty.ok_or_else(|| missing("vram_dirty"))?,
                display_resize: services
                    .display_resize
                    .ok_or_else(|| missing("display_resize"))?,
                display_surface: services
                    .display_surface
                    .ok_or_else(|| missing("display_surface"))?,
                display_update: services
                    .display_update
                    .ok_or_else(|| missing("display_update"))?,
                set_error: services.set_error.ok_or_else(|| missing("set_error"))?,
            },
            counts: Arc::default(),
            closed: Arc::default(),
        })
    }

    /// The device is leaving the bus: from now on interrupts are dropped,
    /// DMA fails and the interrupt mode reads as INTx, whichever thread
    /// asks. (The shim refuses them too, under the BQL, for calls already
    /// on their way.)
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn irq_mode(&self) -> sys::RvgIrqMode {
        if self.is_closed() {
            return sys::RvgIrqMode::RVG_IRQ_INTX;
        }
        // SAFETY: a present service called with the host pointer it was given with.
        unsafe { (self.services.irq_mode)(self.host) }
    }

    /// The command register's Bus Master Enable.
    pub fn bus_master(&self) -> bool {
        if self.is_closed() {
            return false;
        }
        // SAFETY: a present service called with the host pointer it was given with.
        unsafe { (self.services.bus_master)(self.host) }
    }

    fn set_intx(&self, level: bool) {
        if level && !self.counts.intx_level.swap(true, Ordering::Relaxed) {
            self.counts.intx.fetch_add(1, Ordering::Relaxed);
        } else if !level {
            self.counts.intx_level.store(false, Ordering::Relaxed);
        }
        // SAFETY: present service, own host pointer.
        unsafe { (self.services.intx_set)(self.host, level) }
    }

    /// Deliver the interrupt output in the mode the guest configured. MSI and
    /// MSI-X are messages; INTx follows the level.
    pub fn drive_irq(&self, line: IrqLine) {
        if self.is_closed() {
            return;
        }
        let mode = self.irq_mode();
        if mode == sys::RvgIrqMode::RVG_IRQ_MSIX {
            if line.message {
                self.counts.msix.fetch_add(1, Ordering::Relaxed);
                // SAFETY: present service, own host pointer.
                unsafe { (self.services.msix_notify)(self.host, 0) }
            }
        } else if mode == sys::RvgIrqMode::RVG_IRQ_MSI {
            if line.message {
                self.counts.msi.fetch_add(1, Ordering::Relaxed);
                // SAFETY: present service, own host pointer.
                unsafe { (self.services.msi_notify)(self.host, 0) }
            }
        } else {
            self.set_intx(line.asserted);
        }
    }

    /// The guest switched interrupt mode: INTx must not stay asserted under
    /// MSI or MSI-X, and must come back if a cause is pending on return to INTx.
    pub fn irq_mode_changed(&self, line: IrqLine) {
        if self.is_closed() {
            return;
        }
        let intx = self.irq_mode() == sys::RvgIrqMode::RVG_IRQ_INTX;
        self.set_intx(intx && line.asserted);
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

    pub fn watch_fd(&self, fd: c_int) {
        // SAFETY: present service, own host pointer.
        unsafe { (self.services.watch_fd)(self.host, fd) }
    }

    pub fn unwatch_fd(&self, fd: c_int) {
        // SAFETY: present service, own host pointer.
        unsafe { (self.services.unwatch_fd)(self.host, fd) }
    }

    /// Fill the Error the shim passed in for the current call.
    pub fn set_error(&self, errp: *mut sys::RvgErrorSink, msg: &str) {
        let text = c_message(msg);
        // SAFETY: present service; `errp` is the sink of the current call,
        // `text` outlives it.
        unsafe { (self.services.set_error)(errp, text.as_ptr()) }
    }

    /// Append `text` to the report the shim passed in.
    pub fn append(&self, sink: *mut sys::RvgTextSink, text: &str) {
        let text = c_message(text);
        // SAFETY: present service; `sink` is the shim's for this call and
        // `text` outlives it.
        unsafe { (self.services.text_append)(sink, text.as_ptr()) }
    }

    /// Append `bytes` to the saved state the shim passed in.
    pub fn append_bytes(&self, sink: *mut sys::RvgByteSink, bytes: &[u8]) {
        // SAFETY: present service; `sink` is the shim's for this call and
        // the service copies `bytes` before returning.
        unsafe { (self.services.bytes_append)(sink, bytes.as_ptr(), bytes.len()) }
    }

    /// The GPU wrote `len` bytes of `kind` at `addr` behind QEMU's dirty
    /// log. Main loop, BQL held.
    pub fn mark_dirty(&self, kind: sys::RvgDirtyKind, addr: u64, len: u64) {
        if self.is_closed() {
            return;
        }
        // SAFETY: present service, own host pointer.
        unsafe { (self.services.mark_dirty)(self.host, kind, addr, len) }
    }
}

/// The console, for a vGPU's display refresh. Only made inside
/// `display_refresh`, where the shim's display services are valid.
pub struct HostDisplay<'a>(pub &'a Host);

impl DisplayHost for HostDisplay<'_> {
    fn vram_dirty(&mut self, offset: u64, len: u64) -> bool {
        // SAFETY: present service, own host pointer, inside a refresh.
        unsafe { (self.0.services.vram_dirty)(self.0.host, offset, len) }
    }

    fn resize(&mut self, width: u32, height: u32) {
        // SAFETY: present service, own host pointer, inside a refresh.
        unsafe { (self.0.services.display_resize)(self.0.host, width, height) }
    }

    fn surface(&mut self) -> Option<Surface<'_>> {
        let mut out = sys::RvgSurface {
            pixels: std::ptr::null_mut(),
            width: 0,
            height: 0,
            stride: 0,
        };
        // SAFETY: present service, own host pointer; `out` is writable.
        if !unsafe { (self.0.services.display_surface)(self.0.host, &mut out) }
            || out.pixels.is_null()
            || out.stride < out.width.checked_mul(4)?
        {
            return None;
        }
        let len = out.stride as usize * out.height as usize;
        // SAFETY: the shim's surface holds `stride * height` bytes that stay
        // allocated until the next resize, which needs `&mut self` and so
        // ends this borrow first; nothing else writes them during a refresh
        // (the console reads them only on the main loop, which is here).
        let pixels = unsafe { std::slice::from_raw_parts_mut(out.pixels, len) };
        Some(Surface {
            pixels,
            width: out.width,
            height: out.height,
            stride: out.stride,
        })
    }

    fn update(&mut self, y: u32, height: u32) {
        // SAFETY: present service, own host pointer, inside a refresh.
        unsafe { (self.0.services.display_update)(self.0.host, y, height) }
    }
}

/// DMA through QEMU's PCI DMA API: the raw model's bus-master accesses,
/// translated by an IOMMU when the machine has one.
pub struct HostDma(pub Host);

impl DmaSpace for HostDma {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len() as u64;
        if self.0.is_closed() {
            return Err(DmaError { addr, len });
        }
        // SAFETY: present service; `buf` is valid for `len` bytes of writes.
        let ok = unsafe {
            (self.0.services.dma_rw)(
                self.0.host,
                addr,
                buf.as_mut_ptr() as *mut c_void,
                len,
                false,
            )
        };
        ok.then_some(()).ok_or(DmaError { addr, len })
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let len = data.len() as u64;
        if self.0.is_closed() {
            return Err(DmaError { addr, len });
        }
        // SAFETY: present service; with is_write the shim only reads `data`.
        let ok = unsafe {
            (self.0.services.dma_rw)(self.0.host, addr, data.as_ptr() as *mut c_void, len, true)
        };
        ok.then_some(()).ok_or(DmaError { addr, len })
    }
}

//! Migration entry points: quiesce when the VM stops, the vGPU's section
//! of the migration stream out and in, and the GPU's writes reported to
//! QEMU's dirty log.

use rvg_mediator::{GpuWrite, QUIESCE_TIMEOUT};

use crate::device::{FfiDevice, Model};
use crate::ops::with_device;
use crate::sys;

impl FfiDevice {
    fn vgpu_op<R>(
        &self,
        what: &str,
        f: impl FnOnce(&mut rvg_mediator::Vgpu) -> R,
    ) -> Result<R, String> {
        match &self.model {
            Model::Vgpu(v) => Ok(f(&mut v.borrow_mut())),
            Model::Hw(_) => Err(format!("rust-vgpu-hw cannot {what}: only a vGPU migrates")),
        }
    }

    pub fn migration_begin(&self) {
        let _ = self.vgpu_op("migrate", |v| v.track_gpu_writes());
    }

    /// The VM stopped: wait for the vGPU's work, then report what the GPU
    /// wrote since the migration began. A timeout is kept for `save`.
    pub fn quiesce(&self) {
        let writes = self.vgpu_op("quiesce", |v| {
            v.quiesce(QUIESCE_TIMEOUT)
                .map(|()| v.take_gpu_writes())
                .unwrap_or_default()
        });
        for w in writes.unwrap_or_default() {
            match w {
                GpuWrite::Vram { offset, len } => {
                    self.host
                        .mark_dirty(sys::RvgDirtyKind::RVG_DIRTY_VRAM, offset, len)
                }
                GpuWrite::GuestRam { gpa, len } => {
                    self.host
                        .mark_dirty(sys::RvgDirtyKind::RVG_DIRTY_GUEST_RAM, gpa, len)
                }
            }
        }
    }

    pub fn save_state(&self, out: *mut sys::RvgByteSink, errp: *mut sys::RvgErrorSink) -> bool {
        let saved = self
            .vgpu_op("save its state", |v| v.save().map_err(|e| e.to_string()))
            .and_then(|r| r);
        match saved {
            Ok(bytes) => {
                self.host.append_bytes(out, &bytes);
                true
            }
            Err(msg) => {
                self.host.set_error(errp, &msg);
                false
            }
        }
    }

    pub fn load_state(&self, bytes: &[u8], errp: *mut sys::RvgErrorSink) -> bool {
        let bus_master = self.host.bus_master();
        let loaded = self
            .vgpu_op("load a state", |v| {
                v.load(bytes, bus_master).map_err(|e| e.to_string())
            })
            .and_then(|r| r);
        match loaded {
            Ok(fx) => {
                self.clear_broken();
                self.apply(fx);
                // The interrupt mode came with config space.
                self.host.irq_mode_changed(self.irq_line());
                true
            }
            Err(msg) => {
                // The shim reports it, with the device's name.
                self.host.set_error(errp, &msg);
                false
            }
        }
    }
}

pub(crate) unsafe extern "C" fn rvg_migration_begin(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.migration_begin()) }
}

pub(crate) unsafe extern "C" fn rvg_quiesce(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.quiesce()) }
}

pub(crate) unsafe extern "C" fn rvg_save_state(
    dev: *mut sys::RvgDevice,
    out: *mut sys::RvgByteSink,
    errp: *mut sys::RvgErrorSink,
) -> bool {
    // SAFETY: header contract.
    unsafe { with_device(dev, false, |d| d.save_state(out, errp)) }
}

pub(crate) unsafe extern "C" fn rvg_load_state(
    dev: *mut sys::RvgDevice,
    data: *const u8,
    len: usize,
    errp: *mut sys::RvgErrorSink,
) -> bool {
    let bytes = match len {
        0 => &[][..],
        // SAFETY: the header's contract: `data` holds `len` readable bytes
        // for the call (the shim's buffer of the loaded section).
        _ => unsafe { std::slice::from_raw_parts(data, len) },
    };
    // SAFETY: header contract.
    unsafe { with_device(dev, false, |d| d.load_state(bytes, errp)) }
}

//! `rvg_ops`: the entry points the shim calls.
//!
//! Safety contract (from the header): `dev` is a pointer returned by
//! `realize` and not yet passed to `unrealize`; the shim never calls two ops
//! of one device concurrently with `unrealize`.

use std::ffi::c_char;
use std::ptr;

use rvg_model::config::{DeviceConfig, ModelKind};
use rvg_model::regs::{bar2, pci};
use rvg_model::Device;

use crate::device::FfiDevice;
use crate::guard;
use crate::host::{c_message, Host};
use crate::sys;

/// The ops table the shim links against (`extern const RvgOps rvg_ops`).
#[no_mangle]
pub static rvg_ops: sys::RvgOps = sys::RvgOps {
    abi_version: sys::RVG_FFI_ABI_VERSION,
    realize: Some(rvg_realize),
    unrealize: Some(rvg_unrealize),
    reset: Some(rvg_reset),
    mmio_read: Some(rvg_mmio_read),
    mmio_write: Some(rvg_mmio_write),
    irq_config_changed: Some(rvg_irq_config_changed),
};

/// Turn the opaque pointer back into the device.
///
/// # Safety
/// `dev` must come from `rvg_realize` and not have been unrealized.
unsafe fn device<'a>(dev: *mut sys::RvgDevice) -> &'a FfiDevice {
    // SAFETY: per the function contract it points to a live FfiDevice; only
    // shared references are ever made from it.
    unsafe { &*(dev as *const FfiDevice) }
}

/// What a read of a disabled device returns: all ones, like an absent one.
fn all_ones(size: u32) -> u64 {
    match size {
        1..=7 => (1u64 << (size * 8)) - 1,
        _ => u64::MAX,
    }
}

fn report(services: &sys::RvgHostServices, errp: *mut sys::RvgErrorSink, msg: &str) {
    if let Some(set_error) = services.set_error {
        let text = c_message(msg);
        // SAFETY: the shim's own service with the sink it passed to realize.
        unsafe { set_error(errp, text.as_ptr() as *const c_char) }
    }
}

unsafe extern "C" fn rvg_realize(
    config: *const sys::RvgConfig,
    host: *mut sys::RvgHost,
    services: *const sys::RvgHostServices,
    info: *mut sys::RvgDeviceInfo,
    errp: *mut sys::RvgErrorSink,
) -> *mut sys::RvgDevice {
    // SAFETY: the shim passes valid pointers that live for the call
    // (`services` for the device's life).
    let (config, services, info) = unsafe { (&*config, &*services, &mut *info) };
    guard::catch(
        ptr::null_mut(),
        |why| report(services, errp, &format!("internal error in realize: {why}")),
        || {
            let model = if config.model == sys::RvgModelKind::RVG_MODEL_HW {
                ModelKind::Hw
            } else {
                ModelKind::Vgpu
            };
            let cfg = DeviceConfig {
                model,
                vram_size: config.vram_size,
            };
            let result = Host::new(host, services).and_then(|host| {
                Device::new(cfg)
                    .map(|model| FfiDevice::new(model, host))
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok(dev) => {
                    *info = device_info(dev.model.config());
                    Box::into_raw(Box::new(dev)) as *mut sys::RvgDevice
                }
                Err(msg) => {
                    report(services, errp, &msg);
                    ptr::null_mut()
                }
            }
        },
    )
}

fn device_info(cfg: &DeviceConfig) -> sys::RvgDeviceInfo {
    sys::RvgDeviceInfo {
        vendor_id: pci::VENDOR_ID,
        device_id: match cfg.model {
            ModelKind::Vgpu => pci::DEVICE_ID_VGPU,
            ModelKind::Hw => pci::DEVICE_ID_HW,
        },
        subsystem_vendor_id: pci::SUBSYSTEM_VENDOR_ID,
        subsystem_id: pci::SUBSYSTEM_ID,
        revision: pci::REVISION,
        class_code: pci::CLASS_CODE,
        vram_size: cfg.vram_size,
        mmio_size: bar2::SIZE,
        msix_vectors: pci::MSIX_VECTORS,
        msi_vectors: pci::MSI_VECTORS,
    }
}

unsafe extern "C" fn rvg_unrealize(dev: *mut sys::RvgDevice) {
    if dev.is_null() {
        return;
    }
    // SAFETY: `dev` came from Box::into_raw in rvg_realize and no other op
    // runs any more (header contract).
    let dev = unsafe { Box::from_raw(dev as *mut FfiDevice) };
    guard::catch((), |_| {}, move || drop(dev));
}

unsafe extern "C" fn rvg_reset(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    let d = unsafe { device(dev) };
    guard::catch(
        (),
        |why| d.set_broken(why),
        || {
            let fx = d.model.reset();
            d.clear_broken();
            d.apply(fx);
        },
    );
}

unsafe extern "C" fn rvg_mmio_read(dev: *mut sys::RvgDevice, offset: u64, size: u32) -> u64 {
    // SAFETY: header contract.
    let d = unsafe { device(dev) };
    if d.is_broken() {
        return all_ones(size);
    }
    guard::catch(
        all_ones(size),
        |why| d.set_broken(why),
        || {
            let (value, fx) = d.model.mmio_read(offset, size);
            d.apply(fx);
            value
        },
    )
}

unsafe extern "C" fn rvg_mmio_write(dev: *mut sys::RvgDevice, offset: u64, value: u64, size: u32) {
    // SAFETY: header contract.
    let d = unsafe { device(dev) };
    if d.is_broken() {
        return;
    }
    guard::catch(
        (),
        |why| d.set_broken(why),
        || {
            let fx = d.model.mmio_write(offset, value, size);
            d.apply(fx);
        },
    )
}

unsafe extern "C" fn rvg_irq_config_changed(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    let d = unsafe { device(dev) };
    guard::catch(
        (),
        |why| d.set_broken(why),
        || d.host.irq_mode_changed(d.model.irq_line()),
    )
}

#[cfg(test)]
mod tests {
    //! Round trips through the ops table with a recording host, as the shim
    //! would drive it.
    use super::*;
    use rvg_model::irq::IntSource;
    use rvg_model::regs::{GlobalReg, RVG_ID};
    use std::ffi::CStr;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        mode: u32,
        calls: Mutex<Vec<String>>,
    }

    fn rec<'a>(host: *mut sys::RvgHost) -> &'a Recorder {
        // SAFETY: tests pass a pointer to a live Recorder as the host.
        unsafe { &*(host as *const Recorder) }
    }

    unsafe extern "C" fn irq_mode(host: *mut sys::RvgHost) -> sys::RvgIrqMode {
        sys::RvgIrqMode(rec(host).mode)
    }
    unsafe extern "C" fn msix_notify(host: *mut sys::RvgHost, v: u32) {
        rec(host).calls.lock().unwrap().push(format!("msix {v}"));
    }
    unsafe extern "C" fn msi_notify(host: *mut sys::RvgHost, v: u32) {
        rec(host).calls.lock().unwrap().push(format!("msi {v}"));
    }
    unsafe extern "C" fn intx_set(host: *mut sys::RvgHost, level: bool) {
        rec(host)
            .calls
            .lock()
            .unwrap()
            .push(format!("intx {}", level as u8));
    }
    unsafe extern "C" fn log(host: *mut sys::RvgHost, kind: sys::RvgLogKind, msg: *const c_char) {
        // SAFETY: Host::log passes a valid C string.
        let msg = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        rec(host)
            .calls
            .lock()
            .unwrap()
            .push(format!("log{} {msg}", kind.0));
    }
    unsafe extern "C" fn set_error(errp: *mut sys::RvgErrorSink, msg: *const c_char) {
        // SAFETY: tests pass a String as the sink; msg is a valid C string.
        unsafe { *(errp as *mut String) = CStr::from_ptr(msg).to_string_lossy().into_owned() };
    }

    const SERVICES: sys::RvgHostServices = sys::RvgHostServices {
        irq_mode: Some(irq_mode),
        msix_notify: Some(msix_notify),
        msi_notify: Some(msi_notify),
        intx_set: Some(intx_set),
        log: Some(log),
        set_error: Some(set_error),
    };

    fn realize(
        host: &Recorder,
        vram_size: u64,
    ) -> (*mut sys::RvgDevice, sys::RvgDeviceInfo, String) {
        let config = sys::RvgConfig {
            model: sys::RvgModelKind::RVG_MODEL_VGPU,
            vram_size,
        };
        let mut info = sys::RvgDeviceInfo::default();
        let mut err = String::new();
        let realize = rvg_ops.realize.unwrap();
        // SAFETY: all pointers are live for the call; SERVICES is 'static.
        let dev = unsafe {
            realize(
                &config,
                host as *const Recorder as *mut sys::RvgHost,
                &SERVICES,
                &mut info,
                &mut err as *mut String as *mut sys::RvgErrorSink,
            )
        };
        (dev, info, err)
    }

    fn reg(r: GlobalReg) -> u64 {
        bar2::GLOBAL + r.offset()
    }

    #[test]
    fn realize_reports_a_bad_property_through_set_error() {
        let host = Recorder::default();
        let (dev, _, err) = realize(&host, 3 << 20);
        assert!(dev.is_null());
        assert!(
            err.contains("'vram-size'") && err.contains("3 MiB"),
            "{err}"
        );
    }

    #[test]
    fn mmio_and_msix_round_trip() {
        let host = Recorder {
            mode: sys::RvgIrqMode::RVG_IRQ_MSIX.0,
            ..Default::default()
        };
        let (dev, info, err) = realize(&host, 16 << 20);
        assert!(!dev.is_null(), "{err}");
        assert_eq!((info.vendor_id, info.device_id), (0x1234, 0x1111));
        assert_eq!(info.vram_size, 16 << 20);
        let ops = &rvg_ops;
        // SAFETY: `dev` is live until unrealize at the end.
        unsafe {
            assert_eq!(
                ops.mmio_read.unwrap()(dev, reg(GlobalReg::Id), 4),
                u64::from(RVG_ID)
            );
            let sw = u64::from(IntSource::SOFTWARE.bits());
            ops.mmio_write.unwrap()(dev, reg(GlobalReg::IntEnable), sw, 4);
            ops.mmio_write.unwrap()(dev, reg(GlobalReg::IntTrigger), sw, 4);
            ops.unrealize.unwrap()(dev);
        }
        assert_eq!(*host.calls.lock().unwrap(), ["msix 0"]);
    }

    #[test]
    fn intx_follows_the_level_and_guest_errors_are_logged() {
        let host = Recorder::default();
        let (dev, _, _) = realize(&host, 16 << 20);
        let ops = &rvg_ops;
        let sw = u64::from(IntSource::SOFTWARE.bits());
        // SAFETY: `dev` is live until unrealize at the end.
        unsafe {
            ops.mmio_write.unwrap()(dev, reg(GlobalReg::IntEnable), sw, 4);
            ops.mmio_write.unwrap()(dev, reg(GlobalReg::IntTrigger), sw, 4);
            ops.mmio_write.unwrap()(dev, reg(GlobalReg::IntStatus), sw, 4);
            ops.mmio_write.unwrap()(dev, reg(GlobalReg::Id), 0, 4);
            ops.unrealize.unwrap()(dev);
        }
        let calls = host.calls.lock().unwrap();
        assert_eq!(calls[..3], ["intx 0", "intx 1", "intx 0"]);
        assert!(calls[3].starts_with("log0 ID is read-only"), "{}", calls[3]);
    }
}

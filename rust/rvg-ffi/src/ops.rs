//! `rvg_ops`: the entry points the shim calls.
//!
//! Safety contract (from the header): `dev` is a pointer returned by
//! `realize` and not yet passed to `unrealize`; the shim never calls an op of
//! a device concurrently with `unrealize`.

use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use rvg_mediator::shared::{HostLog, TIMESLICE_DEFAULT};
use rvg_mediator::{MemKind, SharedGpu, Vgpu, VgpuConfig};
use rvg_model::regs::{bar2, pci};
use rvg_model::{Gpu, GpuConfig};
use rvg_vfio::SoftGpu;

use crate::backend::{c_property, kernel_gpu, Backend, GpuChoice};
use crate::device::{FfiDevice, Model};
use crate::guard;
use crate::host::{c_message, Host, HostDma, LogKind};
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
    config_changed: Some(rvg_config_changed),
    memory_add: Some(rvg_memory_add),
    memory_del: Some(rvg_memory_del),
    fd_ready: Some(rvg_fd_ready),
    describe: Some(rvg_describe),
    gtt_dump: Some(rvg_gtt_dump),
    gpu_new: Some(rvg_gpu_new),
    gpu_free: Some(rvg_gpu_free),
    display_refresh: Some(rvg_display_refresh),
    display_invalidate: Some(rvg_display_invalidate),
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

/// Run `f` on the device inside the panic guard; a panic disables the
/// device and yields `fallback`.
///
/// # Safety
/// As for [`device`].
unsafe fn with_device<R>(
    dev: *mut sys::RvgDevice,
    fallback: R,
    f: impl FnOnce(&FfiDevice) -> R,
) -> R {
    // SAFETY: forwarded contract.
    let d = unsafe { device(dev) };
    guard::catch(fallback, |why| d.set_broken(why), || f(d))
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
        unsafe { set_error(errp, text.as_ptr()) }
    }
}

/// Build the model `config` asks for.
fn build(config: &sys::RvgConfig, host: &Host) -> Result<Model, String> {
    if config.model == sys::RvgModelKind::RVG_MODEL_HW {
        let gpu = Gpu::new(GpuConfig {
            vram_size: config.vram_size,
        })
        .map_err(|e| e.to_string())?;
        gpu.set_dma(Arc::new(HostDma(host.clone())));
        let irq_host = host.clone();
        gpu.set_irq_sink(Arc::new(move |line| irq_host.drive_irq(line)));
        return Ok(Model::Hw(Arc::new(gpu)));
    }
    let cfg = VgpuConfig {
        vram_size: config.vram_size,
        xres: config.xres,
        yres: config.yres,
    };
    cfg.validate().map_err(|e| e.to_string())?;
    // SAFETY: the shim passes NULL or NUL-terminated property strings that
    // live for the call.
    let choice = unsafe {
        GpuChoice {
            shared: !config.gpu.is_null(),
            host: c_property(config.host),
            sysfsdev: c_property(config.sysfsdev),
            vfio_iommu: c_property(config.vfio_iommu),
        }
    };
    let log_host = host.clone();
    let log: HostLog = Arc::new(move |m| log_host.log(LogKind::Error, m));
    let gpu = match choice.backend()? {
        Backend::Soft => Arc::new(
            soft_gpu(cfg.private_gpu_vram(), TIMESLICE_DEFAULT, log, true)
                .map_err(|e| format!("soft GPU backend: {e}"))?,
        ),
        // SAFETY: a non-null `gpu` is a live handle from rvg_gpu_new (the
        // shim holds a reference to its object for the call).
        Backend::Shared => unsafe { &*(config.gpu as *const GpuHandle) }.0.clone(),
        Backend::Kernel {
            property,
            value,
            spec,
            iommu,
        } => Arc::new(kernel_gpu(property, &value, &spec, iommu, log)?),
    };
    let vgpu = Vgpu::new(cfg, gpu)?;
    host.watch_fd(vgpu.event_fd());
    Ok(Model::Vgpu(Box::new(vgpu)))
}

/// What an `RvgGpu` pointer points to.
struct GpuHandle(Arc<SharedGpu>);

/// A software GPU of `vram_size` bytes behind the contract: a vGPU's own
/// (`private`, reset with it) or one to share.
fn soft_gpu(
    vram_size: u64,
    timeslice: Duration,
    log: HostLog,
    private: bool,
) -> Result<SharedGpu, String> {
    let soft_log = log.clone();
    let soft = SoftGpu::new(GpuConfig { vram_size }, Box::new(move |m| soft_log(m)))
        .map_err(|e| e.to_string())?;
    if private {
        SharedGpu::private(Arc::new(soft), timeslice, log)
    } else {
        SharedGpu::new(Arc::new(soft), timeslice, log)
    }
}

/// Scheduler time slices a `rust-vgpu-gpu` accepts, microseconds.
const TIMESLICE_US: std::ops::RangeInclusive<u32> = 100..=1_000_000;

fn new_shared_gpu(config: &sys::RvgGpuConfig, log: HostLog) -> Result<SharedGpu, String> {
    rvg_model::config::check_vram_size(config.vram_size).map_err(|e| e.to_string())?;
    if !TIMESLICE_US.contains(&config.timeslice_us) {
        return Err(format!(
            "property 'timeslice-us' is {}: it must be from {} to {}",
            config.timeslice_us,
            TIMESLICE_US.start(),
            TIMESLICE_US.end()
        ));
    }
    let timeslice = Duration::from_micros(u64::from(config.timeslice_us));
    soft_gpu(config.vram_size, timeslice, log, false).map_err(|e| format!("soft GPU backend: {e}"))
}

unsafe extern "C" fn rvg_gpu_new(
    config: *const sys::RvgGpuConfig,
    log_error: Option<unsafe extern "C" fn(*const c_char)>,
    set_error: Option<unsafe extern "C" fn(*mut sys::RvgErrorSink, *const c_char)>,
    errp: *mut sys::RvgErrorSink,
) -> *mut sys::RvgGpu {
    let fail = |msg: &str| {
        if let Some(set_error) = set_error {
            let text = c_message(msg);
            // SAFETY: the shim's own service with the sink it passed in.
            unsafe { set_error(errp, text.as_ptr()) }
        }
        ptr::null_mut()
    };
    // SAFETY: the shim passes a valid config for the call.
    let config = unsafe { &*config };
    guard::catch(
        ptr::null_mut(),
        |why| {
            fail(&format!("internal error creating the GPU: {why}"));
        },
        || {
            let log: HostLog = Arc::new(move |m: &str| {
                if let Some(log_error) = log_error {
                    let text = c_message(m);
                    // SAFETY: a plain logging function callable from any thread.
                    unsafe { log_error(text.as_ptr()) }
                }
            });
            match new_shared_gpu(config, log) {
                Ok(gpu) => Box::into_raw(Box::new(GpuHandle(Arc::new(gpu)))) as *mut sys::RvgGpu,
                Err(msg) => fail(&msg),
            }
        },
    )
}

unsafe extern "C" fn rvg_gpu_free(gpu: *mut sys::RvgGpu) {
    if gpu.is_null() {
        return;
    }
    // SAFETY: `gpu` came from Box::into_raw in rvg_gpu_new, freed once.
    let gpu = unsafe { Box::from_raw(gpu as *mut GpuHandle) };
    guard::catch((), |_| {}, move || drop(gpu));
}

fn device_info(model: &Model) -> sys::RvgDeviceInfo {
    let (device_id, vram_size, vram_ptr) = match model {
        Model::Hw(gpu) => (
            pci::DEVICE_ID_HW,
            gpu.vram().len(),
            gpu.vram().host_ptr(0).expect("offset 0 is inside VRAM"),
        ),
        Model::Vgpu(v) => (pci::DEVICE_ID_VGPU, v.config().vram_size, v.vram_ptr()),
    };
    sys::RvgDeviceInfo {
        vendor_id: pci::VENDOR_ID,
        device_id,
        subsystem_vendor_id: pci::SUBSYSTEM_VENDOR_ID,
        subsystem_id: pci::SUBSYSTEM_ID,
        revision: pci::REVISION,
        class_code: pci::CLASS_CODE,
        vram_size,
        vram_ptr,
        mmio_size: bar2::SIZE,
        msix_vectors: pci::MSIX_VECTORS,
        msi_vectors: pci::MSI_VECTORS,
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
            let built =
                Host::new(host, services).and_then(|host| build(config, &host).map(|m| (m, host)));
            match built {
                Ok((model, host)) => {
                    *info = device_info(&model);
                    Box::into_raw(Box::new(FfiDevice::new(model, host))) as *mut sys::RvgDevice
                }
                Err(msg) => {
                    report(services, errp, &msg);
                    ptr::null_mut()
                }
            }
        },
    )
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
    unsafe { with_device(dev, (), |d| d.reset()) }
}

unsafe extern "C" fn rvg_mmio_read(dev: *mut sys::RvgDevice, offset: u64, size: u32) -> u64 {
    // SAFETY: header contract.
    unsafe {
        with_device(dev, all_ones(size), |d| {
            if d.is_broken() {
                all_ones(size)
            } else {
                d.mmio_read(offset, size)
            }
        })
    }
}

unsafe extern "C" fn rvg_mmio_write(dev: *mut sys::RvgDevice, offset: u64, value: u64, size: u32) {
    // SAFETY: header contract.
    unsafe {
        with_device(dev, (), |d| {
            if !d.is_broken() {
                d.mmio_write(offset, value, size)
            }
        })
    }
}

unsafe extern "C" fn rvg_config_changed(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.config_changed()) }
}

unsafe extern "C" fn rvg_memory_add(
    dev: *mut sys::RvgDevice,
    gpa: u64,
    size: u64,
    hva: *mut c_void,
    kind: sys::RvgMemKind,
) {
    let kind = match kind {
        sys::RvgMemKind::RVG_MEM_RAM => MemKind::Ram,
        sys::RvgMemKind::RVG_MEM_ROM => MemKind::Rom,
        _ => MemKind::Device,
    };
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.memory_add(gpa, size, hva as u64, kind)) }
}

unsafe extern "C" fn rvg_memory_del(dev: *mut sys::RvgDevice, gpa: u64, size: u64) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.memory_del(gpa, size)) }
}

unsafe extern "C" fn rvg_fd_ready(dev: *mut sys::RvgDevice, fd: c_int) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.fd_ready(fd)) }
}

unsafe extern "C" fn rvg_display_refresh(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.display_refresh()) }
}

unsafe extern "C" fn rvg_display_invalidate(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.display_invalidate()) }
}

unsafe extern "C" fn rvg_describe(dev: *mut sys::RvgDevice, sink: *mut sys::RvgTextSink) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.host.append(sink, &d.describe())) }
}

unsafe extern "C" fn rvg_gtt_dump(
    dev: *mut sys::RvgDevice,
    first: u32,
    count: u32,
    sink: *mut sys::RvgTextSink,
) -> bool {
    // SAFETY: header contract.
    unsafe {
        with_device(dev, false, |d| {
            let result = match &d.model {
                Model::Vgpu(v) => v.gtt_dump(first, count),
                Model::Hw(_) => Err("not a vGPU: rust-vgpu-hw has no mediated GTT".to_string()),
            };
            let ok = result.is_ok();
            d.host.append(sink, &result.unwrap_or_else(|e| e + "\n"));
            ok
        })
    }
}

#[cfg(test)]
mod tests {
    //! Round trips through the ops table with a recording host, as the shim
    //! would drive it.
    use super::*;
    use rvg_model::cmd::Command;
    use rvg_model::gtt::GttEntry;
    use rvg_model::irq::IntSource;
    use rvg_model::regs::{EngineReg, GlobalReg, Register, RVG_ID};
    use std::ffi::c_char;
    use std::ffi::CStr;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        mode: u32,
        bus_master: bool,
        calls: Mutex<Vec<String>>,
        watched: Mutex<Vec<c_int>>,
        /// The console surface: width, height, pixels.
        surface: Mutex<(u32, u32, Vec<u8>)>,
    }

    fn rec<'a>(host: *mut sys::RvgHost) -> &'a Recorder {
        // SAFETY: tests pass a pointer to a live Recorder as the host.
        unsafe { &*(host as *const Recorder) }
    }

    unsafe extern "C" fn irq_mode(host: *mut sys::RvgHost) -> sys::RvgIrqMode {
        sys::RvgIrqMode(rec(host).mode)
    }
    unsafe extern "C" fn bus_master(host: *mut sys::RvgHost) -> bool {
        rec(host).bus_master
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
    unsafe extern "C" fn dma_rw(
        _: *mut sys::RvgHost,
        _: u64,
        _: *mut c_void,
        _: u64,
        _: bool,
    ) -> bool {
        false
    }
    unsafe extern "C" fn watch_fd(host: *mut sys::RvgHost, fd: c_int) {
        rec(host).watched.lock().unwrap().push(fd);
    }
    unsafe extern "C" fn unwatch_fd(host: *mut sys::RvgHost, fd: c_int) {
        rec(host).watched.lock().unwrap().retain(|&f| f != fd);
    }
    unsafe extern "C" fn text_append(sink: *mut sys::RvgTextSink, text: *const c_char) {
        // SAFETY: tests pass a String as the sink; text is a valid C string.
        unsafe { (*(sink as *mut String)).push_str(&CStr::from_ptr(text).to_string_lossy()) };
    }

    unsafe extern "C" fn vram_dirty(_: *mut sys::RvgHost, _: u64, _: u64) -> bool {
        true
    }
    unsafe extern "C" fn display_resize(host: *mut sys::RvgHost, width: u32, height: u32) {
        let r = rec(host);
        r.calls
            .lock()
            .unwrap()
            .push(format!("resize {width}x{height}"));
        *r.surface.lock().unwrap() = (width, height, vec![0; (width * height * 4) as usize]);
    }
    unsafe extern "C" fn display_surface(
        host: *mut sys::RvgHost,
        out: *mut sys::RvgSurface,
    ) -> bool {
        let mut s = rec(host).surface.lock().unwrap();
        let (width, height) = (s.0, s.1);
        // SAFETY: `out` is the caller's; the Vec lives in the Recorder.
        unsafe {
            *out = sys::RvgSurface {
                pixels: s.2.as_mut_ptr(),
                width,
                height,
                stride: width * 4,
            }
        };
        width > 0
    }
    unsafe extern "C" fn display_update(host: *mut sys::RvgHost, y: u32, height: u32) {
        rec(host)
            .calls
            .lock()
            .unwrap()
            .push(format!("update {y}+{height}"));
    }

    const SERVICES: sys::RvgHostServices = sys::RvgHostServices {
        irq_mode: Some(irq_mode),
        bus_master: Some(bus_master),
        msix_notify: Some(msix_notify),
        msi_notify: Some(msi_notify),
        intx_set: Some(intx_set),
        log: Some(log),
        set_error: Some(set_error),
        dma_rw: Some(dma_rw),
        watch_fd: Some(watch_fd),
        unwatch_fd: Some(unwatch_fd),
        text_append: Some(text_append),
        vram_dirty: Some(vram_dirty),
        display_resize: Some(display_resize),
        display_surface: Some(display_surface),
        display_update: Some(display_update),
    };

    fn realize(
        host: &Recorder,
        model: sys::RvgModelKind,
        vram_size: u64,
    ) -> (*mut sys::RvgDevice, sys::RvgDeviceInfo, String) {
        let config = sys::RvgConfig {
            model,
            vram_size,
            gpu: ptr::null_mut(),
            xres: 640,
            yres: 480,
            host: ptr::null(),
            sysfsdev: ptr::null(),
            vfio_iommu: ptr::null(),
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

    const VGPU: sys::RvgModelKind = sys::RvgModelKind::RVG_MODEL_VGPU;

    #[test]
    fn realize_reports_a_bad_property_through_set_error() {
        let host = Recorder::default();
        let (dev, _, err) = realize(&host, VGPU, 3 << 20);
        assert!(dev.is_null());
        assert!(
            err.contains("'vram-size'") && err.contains("3 MiB"),
            "{err}"
        );
    }

    #[test]
    fn vgpu_fence_interrupt_goes_through_the_watched_eventfd() {
        let host = Recorder {
            mode: sys::RvgIrqMode::RVG_IRQ_MSIX.0,
            ..Default::default()
        };
        let (dev, info, err) = realize(&host, VGPU, 4 << 20);
        assert!(!dev.is_null(), "{err}");
        assert_eq!((info.vendor_id, info.device_id), (0x1234, 0x1111));
        assert_eq!(info.vram_size, 4 << 20);
        assert!(!info.vram_ptr.is_null());
        let fd = *host
            .watched
            .lock()
            .unwrap()
            .first()
            .expect("an eventfd is watched");
        let ops = &rvg_ops;
        let fence = u64::from(IntSource::FENCE.bits());
        let engine = |r: EngineReg| bar2::ENGINE + r.offset();
        // A one-page ring at graphics address 0, on VRAM page 0, holding a
        // FENCE with interrupt.
        let ring: Vec<u8> = Command::Fence {
            seqno: 7,
            interrupt: true,
        }
        .encode()
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect();
        // SAFETY: BAR0 memory of `info.vram_size` bytes, live until unrealize.
        unsafe { std::ptr::copy_nonoverlapping(ring.as_ptr(), info.vram_ptr, ring.len()) };
        // SAFETY: `dev` is live until unrealize at the end.
        unsafe {
            assert_eq!(
                ops.mmio_read.unwrap()(dev, reg(GlobalReg::Id), 4),
                u64::from(RVG_ID)
            );
            let write = ops.mmio_write.unwrap();
            write(dev, reg(GlobalReg::IntEnable), fence, 4);
            write(dev, bar2::GTT, GttEntry::new(0, true).0, 8);
            write(dev, engine(EngineReg::RingSize), 4096, 4);
            write(dev, engine(EngineReg::RingCtl), 1, 4);
            write(dev, engine(EngineReg::RingTail), ring.len() as u64, 4);
            assert!(
                host.calls.lock().unwrap().is_empty(),
                "not before the main loop sees the fd"
            );
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            assert_eq!(libc::poll(&mut pfd, 1, 10_000), 1, "the eventfd fires");
            ops.fd_ready.unwrap()(dev, fd);
            let seqno = ops.mmio_read.unwrap()(dev, engine(EngineReg::Seqno), 4);
            assert_eq!(seqno, 7);
            let mut report = String::new();
            ops.describe.unwrap()(dev, &mut report as *mut String as *mut sys::RvgTextSink);
            assert!(report.contains("seqno=7"), "{report}");
            assert!(report.contains("msix=1"), "{report}");
            ops.unrealize.unwrap()(dev);
        }
        assert_eq!(*host.calls.lock().unwrap(), ["msix 0"]);
        assert!(
            host.watched.lock().unwrap().is_empty(),
            "unwatched before close"
        );
    }

    #[test]
    fn hw_model_intx_follows_the_level_and_guest_errors_are_logged() {
        let host = Recorder::default();
        let (dev, info, _) = realize(&host, sys::RvgModelKind::RVG_MODEL_HW, 16 << 20);
        assert_eq!(info.device_id, 0x5256);
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
        assert!(
            calls[3].starts_with("log0 BAR2 write of 0x0 at 0x1000: ID is read-only"),
            "{}",
            calls[3]
        );
    }

    #[test]
    fn vgpu_display_refresh_fills_the_console() {
        let host = Recorder::default();
        let (dev, info, err) = realize(&host, VGPU, 4 << 20);
        assert!(!dev.is_null(), "{err}");
        let ops = &rvg_ops;
        let dispi = |index: u64| bar2::DISPI + 2 * index;
        // SAFETY: `dev` is live until unrealize; BAR0 holds 4 MiB.
        unsafe {
            // The EDID's header, then a 64x32 mode with one pixel drawn.
            assert_eq!(ops.mmio_read.unwrap()(dev, 0, 8), 0x00ff_ffff_ffff_ff00);
            let write = ops.mmio_write.unwrap();
            for (index, value) in [(1, 64), (2, 32), (3, 32), (6, 64), (4, 0x41)] {
                write(dev, dispi(index), value, 2);
            }
            let pixel = 0x00c0_ffeeu32.to_le_bytes();
            std::ptr::copy_nonoverlapping(pixel.as_ptr(), info.vram_ptr.add(4 * (64 + 3)), 4);
            ops.display_refresh.unwrap()(dev);
            ops.unrealize.unwrap()(dev);
        }
        assert_eq!(*host.calls.lock().unwrap(), ["resize 64x32", "update 0+32"]);
        let surface = host.surface.lock().unwrap();
        let at = 4 * (64 + 3);
        assert_eq!(surface.2[at..at + 4], 0x00c0_ffeeu32.to_le_bytes());
    }

    #[test]
    fn gtt_dump_rejects_a_bad_range() {
        let host = Recorder::default();
        let (dev, _, _) = realize(&host, VGPU, 4 << 20);
        let mut out = String::new();
        // SAFETY: `dev` is live until unrealize at the end.
        unsafe {
            let sink = &mut out as *mut String as *mut sys::RvgTextSink;
            assert!(!rvg_ops.gtt_dump.unwrap()(dev, 32760, 16, sink));
            rvg_ops.unrealize.unwrap()(dev);
        }
        assert!(
            out.contains("outside the vGPU's 32768 GTT entries"),
            "{out}"
        );
    }
}

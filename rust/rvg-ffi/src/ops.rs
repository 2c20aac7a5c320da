//! `rvg_ops`: the entry points the shim calls.
//!
//! Safety contract (from the header): `dev` is a pointer returned by
//! `realize` and not yet passed to `unrealize`; the shim never calls an op of
//! a device concurrently with `unrealize`.

use std::ffi::{c_char, c_int, c_void};
use std::ops::RangeInclusive;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::time::Duration;

use rvg_gpu::{Gpu, GpuConfig};
use rvg_mediator::shared::{HostLog, Policy, SchedConfig};
use rvg_mediator::{MemKind, SharedGpu, Vgpu, VgpuConfig};
use rvg_model::regs::{bar2, pci};
use rvg_vfio::{HostRange, SoftGpu};

use crate::backend::{c_property, kernel_gpu, Backend, GpuChoice};
use crate::bql::BqlCell;
use crate::device::{FfiDevice, Model};
use crate::guard;
use crate::host::{c_message, Host, HostDma, LogKind};
use crate::migration;
use crate::sys;

/// The ops table the shim links against (`extern const RvgOps rvg_ops`).
#[no_mangle]
pub static rvg_ops: sys::RvgOps = sys::RvgOps {
    abi_version: sys::RVG_FFI_ABI_VERSION,
    realize: Some(rvg_realize),
    unrealize: Some(rvg_unrealize),
    exit: Some(rvg_exit),
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
    gpu_set_engine_hold: Some(rvg_gpu_set_engine_hold),
    display_refresh: Some(rvg_display_refresh),
    display_invalidate: Some(rvg_display_invalidate),
    set_weight: Some(rvg_set_weight),
    gpu_set_policy: Some(rvg_gpu_set_policy),
    report: Some(rvg_report),
    migration_begin: Some(migration::rvg_migration_begin),
    quiesce: Some(migration::rvg_quiesce),
    save_state: Some(migration::rvg_save_state),
    load_state: Some(migration::rvg_load_state),
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
pub(crate) unsafe fn with_device<R>(
    dev: *mut sys::RvgDevice,
    fallback: R,
    f: impl FnOnce(&FfiDevice) -> R,
) -> R {
    // SAFETY: forwarded contract.
    let d = unsafe { device(dev) };
    // A device exists: realize, which made it, ran `catch`.
    guard::catch_hooked(fallback, |why| d.set_broken(why), || f(d))
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
        let gpu = Gpu::with_vfs(
            GpuConfig {
                vram_size: config.vram_size,
            },
            config.vfs,
        )
        .map_err(|e| e.to_string())?;
        return Ok(Model::Hw(Arc::new(wire_function(gpu, host))));
    }
    if config.model == sys::RvgModelKind::RVG_MODEL_HW_VF {
        // SAFETY: the shim passes its PF's live device, which outlives
        // its VFs (the PF unrealizes them first).
        let pf = unsafe { (config.pf as *const FfiDevice).as_ref() };
        let Some(Model::Hw(pf)) = pf.map(|d| &d.model) else {
            return Err("a VF needs its rust-vgpu-hw PF".to_string());
        };
        let vf = pf.vf(config.vf_index).map_err(|e| e.to_string())?;
        return Ok(Model::Hw(Arc::new(wire_function(vf, host))));
    }
    let cfg = VgpuConfig {
        vram_size: config.vram_size,
        gfx_size: config.gfx_size,
        xres: config.xres,
        yres: config.yres,
        weight: config.weight,
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
            soft_gpu(cfg.private_gpu_vram(), SchedConfig::default(), log, true)
                .map_err(|e| format!("soft GPU backend: {e}"))?
                .0,
        ),
        // SAFETY: a non-null `gpu` is a live handle from rvg_gpu_new (the
        // shim holds a reference to its object for the call).
        Backend::Shared => unsafe { &*(config.gpu as *const GpuHandle) }.shared.clone(),
        Backend::Kernel {
            property,
            value,
            spec,
            iommu,
        } => Arc::new(kernel_gpu(property, &value, &spec, iommu, log)?),
    };
    let vgpu = Vgpu::new(cfg, gpu).map_err(|e| e.to_string())?;
    host.watch_fd(vgpu.event_fd());
    Ok(Model::Vgpu(BqlCell::new(vgpu)))
}

/// A GPU function whose DMA and interrupts go through its own PCI
/// function in QEMU: its requester ID, its MSI-X table.
fn wire_function(gpu: Gpu, host: &Host) -> Gpu {
    gpu.set_dma(Arc::new(HostDma(host.clone())));
    let irq_host = host.clone();
    gpu.set_irq_sink(Arc::new(move |line| irq_host.drive_irq(line)));
    gpu
}

/// What an `RvgGpu` pointer points to: the GPU the vGPUs share, and its
/// soft backend (for the test hook).
struct GpuHandle {
    shared: Arc<SharedGpu>,
    soft: Arc<SoftGpu>,
}

/// A software GPU of `vram_size` bytes behind the contract: a vGPU's own
/// (`private`, reset with it) or one to share.
fn soft_gpu(
    vram_size: u64,
    sched: SchedConfig,
    log: HostLog,
    private: bool,
) -> Result<(SharedGpu, Arc<SoftGpu>), String> {
    let soft_log = log.clone();
    let soft = Arc::new(
        SoftGpu::new(GpuConfig { vram_size }, Box::new(move |m| soft_log(m)))
            .map_err(|e| e.to_string())?,
    );
    let shared = if private {
        SharedGpu::private(soft.clone(), sched, log)
    } else {
        SharedGpu::new(soft.clone(), sched, log)
    }
    .map_err(|e| e.to_string())?;
    Ok((shared, soft))
}

/// Scheduler time slices a `rust-vgpu-gpu` accepts, microseconds.
const TIMESLICE_US: RangeInclusive<u32> = 100..=1_000_000;
/// Watchdog times a `rust-vgpu-gpu` accepts, milliseconds.
const WATCHDOG_MS: RangeInclusive<u32> = 100..=600_000;
const PREEMPT_TIMEOUT_MS: RangeInclusive<u32> = 1..=600_000;

fn check_range(property: &str, value: u32, range: RangeInclusive<u32>) -> Result<u32, String> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(format!(
        "property '{property}' is {value}: it must be from {} to {}",
        range.start(),
        range.end()
    ))
}

fn new_shared_gpu(config: &sys::RvgGpuConfig, log: HostLog) -> Result<GpuHandle, String> {
    rvg_model::config::check_vram_size(config.vram_size).map_err(|e| e.to_string())?;
    let timeslice = check_range("timeslice-us", config.timeslice_us, TIMESLICE_US)?;
    let watchdog = check_range("watchdog-ms", config.watchdog_ms, WATCHDOG_MS)?;
    let preempt_timeout = check_range(
        "preempt-timeout-ms",
        config.preempt_timeout_ms,
        PREEMPT_TIMEOUT_MS,
    )?;
    // SAFETY: the shim passes NULL or a NUL-terminated string for the call.
    let policy = match unsafe { c_property(config.policy) } {
        Some(name) => name.parse::<Policy>().map_err(|e| e.to_string())?,
        None => Policy::default(),
    };
    let sched = SchedConfig {
        timeslice: Duration::from_micros(u64::from(timeslice)),
        watchdog: Duration::from_millis(u64::from(watchdog)),
        preempt_timeout: Duration::from_millis(u64::from(preempt_timeout)),
        policy,
    };
    let (shared, soft) = soft_gpu(config.vram_size, sched, log, false)
        .map_err(|e| format!("soft GPU backend: {e}"))?;
    Ok(GpuHandle {
        shared: Arc::new(shared),
        soft,
    })
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
                Ok(gpu) => Box::into_raw(Box::new(gpu)) as *mut sys::RvgGpu,
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

unsafe extern "C" fn rvg_gpu_set_engine_hold(gpu: *mut sys::RvgGpu, hold: bool) {
    if gpu.is_null() {
        return;
    }
    // SAFETY: a live handle from rvg_gpu_new (the shim's object owns it).
    let gpu = unsafe { &*(gpu as *const GpuHandle) };
    guard::catch((), |_| {}, || gpu.soft.gpu().set_engine_hold(hold));
}

unsafe extern "C" fn rvg_gpu_set_policy(
    gpu: *mut sys::RvgGpu,
    policy: *const c_char,
    set_error: Option<unsafe extern "C" fn(*mut sys::RvgErrorSink, *const c_char)>,
    errp: *mut sys::RvgErrorSink,
) -> bool {
    let fail = |msg: &str| {
        if let Some(set_error) = set_error {
            let text = c_message(msg);
            // SAFETY: the shim's own service with the sink it passed in.
            unsafe { set_error(errp, text.as_ptr()) }
        }
        false
    };
    // SAFETY: a live handle from rvg_gpu_new (the shim's object owns it);
    // `policy` is NULL or a NUL-terminated string for the call.
    let (gpu, name) = unsafe { (&*(gpu as *const GpuHandle), c_property(policy)) };
    guard::catch(
        false,
        |why| {
            fail(&format!("internal error setting the policy: {why}"));
        },
        || match name.unwrap_or_default().parse::<Policy>() {
            Ok(policy) => {
                gpu.shared.scheduler().set_policy(policy);
                true
            }
            Err(e) => fail(&e.to_string()),
        },
    )
}

unsafe extern "C" fn rvg_set_weight(
    dev: *mut sys::RvgDevice,
    weight: u32,
    errp: *mut sys::RvgErrorSink,
) -> bool {
    // SAFETY: header contract.
    unsafe { with_device(dev, false, |d| d.set_weight(weight, errp)) }
}

fn device_info(model: &Model) -> sys::RvgDeviceInfo {
    let vram = |gpu: &Gpu| {
        (
            gpu.vram().len(),
            gpu.vram().host_ptr(0).expect("offset 0 is inside VRAM"),
        )
    };
    let (device_id, (vram_size, vram_ptr)) = match model {
        Model::Hw(gpu) if gpu.is_vf() => (pci::DEVICE_ID_HW_VF, vram(gpu)),
        Model::Hw(gpu) => (pci::DEVICE_ID_HW, vram(gpu)),
        Model::Vgpu(v) => {
            let v = v.borrow_mut();
            (pci::DEVICE_ID_VGPU, (v.config().vram_size, v.vram_ptr()))
        }
    };
    let is_vf = matches!(model, Model::Hw(gpu) if gpu.is_vf());
    let vf_vram_size = match model {
        Model::Hw(gpu) => gpu.vf_partition_size(),
        _ => 0,
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
        // A VF signals by MSI-X alone.
        msi_vectors: if is_vf { 0 } else { pci::MSI_VECTORS },
        intx: !is_vf,
        vf_device_id: if vf_vram_size > 0 {
            pci::DEVICE_ID_HW_VF
        } else {
            0
        },
        vf_vram_size,
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

unsafe extern "C" fn rvg_exit(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.exit()) }
}

unsafe extern "C" fn rvg_reset(dev: *mut sys::RvgDevice) {
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.reset()) }
}

unsafe extern "C" fn rvg_mmio_read(dev: *mut sys::RvgDevice, offset: u64, size: u32) -> u64 {
    // The common read is answered by code that calls nothing (no register
    // to save, no result in memory); every other read takes the whole path.
    // SAFETY: header contract.
    match unsafe { with_device(dev, None, |d| d.read_register(offset, size)) } {
        Some(value) => value,
        // SAFETY: header contract.
        None => unsafe { mmio_read_whole(dev, offset, size) },
    }
}

/// # Safety
/// The header contract of `mmio_read`.
#[inline(never)]
unsafe fn mmio_read_whole(dev: *mut sys::RvgDevice, offset: u64, size: u32) -> u64 {
    // A broken device, or one that panics now, reads as all ones; worked
    // out only then, not on every read.
    // SAFETY: the caller's contract.
    unsafe {
        with_device(dev, None, |d| {
            (!d.is_broken()).then(|| d.mmio_read(offset, size))
        })
    }
    .unwrap_or_else(|| all_ones(size))
}

unsafe extern "C" fn rvg_mmio_write(dev: *mut sys::RvgDevice, offset: u64, value: u64, size: u32) {
    // As for reads: a write that only stores a register is done by code
    // that calls nothing; every other write takes the whole path. A GTT
    // entry never only stores: it goes there without trying.
    let stored = offset < bar2::GTT
        // SAFETY: header contract.
        && unsafe { with_device(dev, false, |d| d.store_register(offset, value, size)) };
    if !stored {
        // SAFETY: header contract.
        unsafe { mmio_write_whole(dev, offset, value, size) }
    }
}

/// # Safety
/// The header contract of `mmio_write`.
#[inline(never)]
unsafe fn mmio_write_whole(dev: *mut sys::RvgDevice, offset: u64, value: u64, size: u32) {
    // SAFETY: the caller's contract.
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
    // Only guest RAM is ever read, written or mapped for the GPU; ROM and
    // device memory (another device's BAR may be mapped read-only) are
    // reported with no host memory.
    let host = match NonNull::new(hva.cast::<u8>()) {
        Some(ptr) if kind == MemKind::Ram => {
            // SAFETY: the header's memory listener contract: `hva` is
            // QEMU's mapping of the section's `size` bytes of guest RAM
            // (readable and writable in QEMU's process; vCPUs and other
            // devices access it raw), and it stays mapped until
            // `memory_del` for the section has returned: QEMU frees a RAM
            // block only after its listeners' region_del. `memory_del`
            // drops the HostRange (the vGPU removes the range and its share
            // of the DMA mapping there); a vGPU that goes first drops it
            // with itself.
            Some(unsafe { HostRange::new(ptr, size) })
        }
        Some(_) => None,
        None => return,
    };
    // SAFETY: header contract.
    unsafe { with_device(dev, (), |d| d.memory_add(gpa, size, host, kind)) }
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

unsafe extern "C" fn rvg_report(
    dev: *mut sys::RvgDevice,
    out: *mut sys::RvgReport,
    backend: *mut sys::RvgTextSink,
) -> bool {
    // SAFETY: header contract: `out` is the shim's, valid for the call.
    let out = unsafe { &mut *out };
    // SAFETY: header contract.
    unsafe { with_device(dev, false, |d| d.report(out, backend)) }
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
                Model::Vgpu(v) => v.borrow_mut().gtt_dump(first, count),
                Model::Hw(_) => Err("not a vGPU: rust-vgpu-hw has no mediated GTT".to_string()),
            };
            let ok = result.is_ok();
            d.host.append(sink, &result.unwrap_or_else(|e| e + "\n"));
            ok
        })
    }
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;

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
unsafe extern "C" fn dma_rw(_: *mut sys::RvgHost, _: u64, _: *mut c_void, _: u64, _: bool) -> bool {
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
unsafe extern "C" fn bytes_append(sink: *mut sys::RvgByteSink, data: *const u8, len: usize) {
    // SAFETY: tests pass a Vec<u8> as the sink; `data` holds `len` bytes.
    unsafe { (*(sink as *mut Vec<u8>)).extend_from_slice(std::slice::from_raw_parts(data, len)) };
}
unsafe extern "C" fn mark_dirty(
    host: *mut sys::RvgHost,
    kind: sys::RvgDirtyKind,
    addr: u64,
    len: u64,
) {
    rec(host)
        .calls
        .lock()
        .unwrap()
        .push(format!("dirty{} {addr:#x}+{len:#x}", kind.0));
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
unsafe extern "C" fn display_surface(host: *mut sys::RvgHost, out: *mut sys::RvgSurface) -> bool {
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
    bytes_append: Some(bytes_append),
    mark_dirty: Some(mark_dirty),
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
    realize_on(host, model, vram_size, ptr::null_mut())
}

/// Realize on `gpu` (null: a GPU of its own).
fn realize_on(
    host: &Recorder,
    model: sys::RvgModelKind,
    vram_size: u64,
    gpu: *mut sys::RvgGpu,
) -> (*mut sys::RvgDevice, sys::RvgDeviceInfo, String) {
    let config = sys::RvgConfig {
        model,
        vram_size,
        gfx_size: 128 << 20,
        gpu,
        xres: 640,
        yres: 480,
        host: ptr::null(),
        sysfsdev: ptr::null(),
        vfio_iommu: ptr::null(),
        weight: 100,
        vfs: 0,
        pf: ptr::null_mut(),
        vf_index: 0,
    };
    realize_config(host, &config)
}

fn realize_config(
    host: &Recorder,
    config: &sys::RvgConfig,
) -> (*mut sys::RvgDevice, sys::RvgDeviceInfo, String) {
    let mut info = sys::RvgDeviceInfo::default();
    let mut err = String::new();
    let realize = rvg_ops.realize.unwrap();
    // SAFETY: all pointers are live for the call; SERVICES is 'static.
    let dev = unsafe {
        realize(
            config,
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

/// A PF with VFs says what its SR-IOV capability needs; a VF realized on
/// it reports its own identity and partition, and signals by MSI-X only.
#[test]
fn a_vf_is_realized_on_its_pf() {
    let host = Recorder::default();
    let hw = sys::RvgConfig {
        model: sys::RvgModelKind::RVG_MODEL_HW,
        vram_size: 16 << 20,
        vfs: 2,
        ..Default::default()
    };
    let (pf, pf_info, err) = realize_config(&host, &hw);
    assert!(!pf.is_null(), "{err}");
    assert_eq!(
        (pf_info.vf_device_id, pf_info.vf_vram_size),
        (0x5257, 8 << 20)
    );
    assert!(pf_info.intx && pf_info.msi_vectors == 1);
    let vf_config = |pf, vf_index| sys::RvgConfig {
        model: sys::RvgModelKind::RVG_MODEL_HW_VF,
        pf,
        vf_index,
        ..Default::default()
    };
    let (vf, info, err) = realize_config(&host, &vf_config(pf, 1));
    assert!(!vf.is_null(), "{err}");
    assert_eq!((info.device_id, info.vram_size), (0x5257, 8 << 20));
    assert_eq!(
        (info.intx, info.msi_vectors, info.vf_vram_size),
        (false, 0, 0)
    );
    let (none, _, err) = realize_config(&host, &vf_config(pf, 2));
    assert!(none.is_null());
    assert_eq!(err, "property 'vf' is 2: the PF offers 2 VFs");
    let (none, _, err) = realize_config(&host, &vf_config(ptr::null_mut(), 0));
    assert!(none.is_null());
    assert_eq!(err, "a VF needs its rust-vgpu-hw PF");
    // SAFETY: live devices, freed once: the VF first, as QEMU does.
    unsafe {
        let gtt = bar2::GTT_WINDOW_ENTRIES as u64 / 2;
        rvg_ops.mmio_write.unwrap()(vf, bar2::GTT, 0x3, 8);
        assert_eq!(rvg_ops.mmio_read.unwrap()(pf, bar2::GTT + gtt * 8, 8), 0x3);
        rvg_ops.unrealize.unwrap()(vf);
        rvg_ops.unrealize.unwrap()(pf);
    }
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

/// A GPU's configuration as `-object rust-vgpu-gpu` gives it by default.
fn gpu_config() -> sys::RvgGpuConfig {
    sys::RvgGpuConfig {
        vram_size: 32 << 20,
        timeslice_us: 1000,
        watchdog_ms: 5000,
        preempt_timeout_ms: 250,
        policy: ptr::null(),
    }
}

/// The scheduler's numbers are checked when the GPU is made, each error
/// naming the property and the value.
#[test]
fn a_gpu_with_bad_scheduler_numbers_is_refused() {
    let bad = [
        (
            sys::RvgGpuConfig {
                preempt_timeout_ms: 0,
                ..gpu_config()
            },
            "property 'preempt-timeout-ms' is 0: it must be from 1 to 600000",
        ),
        (
            sys::RvgGpuConfig {
                watchdog_ms: 99,
                ..gpu_config()
            },
            "property 'watchdog-ms' is 99: it must be from 100 to 600000",
        ),
    ];
    for (config, want) in bad {
        let (gpu, err) = gpu_new(&config);
        assert!(gpu.is_null());
        assert!(err.contains(want), "{err}");
    }
}

/// The GPU `config` makes (null if refused) and what was reported.
fn gpu_new(config: &sys::RvgGpuConfig) -> (*mut sys::RvgGpu, String) {
    let mut err = String::new();
    // SAFETY: valid config and sink for the call.
    let gpu = unsafe {
        rvg_ops.gpu_new.unwrap()(
            config,
            None,
            Some(set_error),
            &mut err as *mut String as *mut sys::RvgErrorSink,
        )
    };
    (gpu, err)
}

/// A GPU to share, as `-object rust-vgpu-gpu` makes it.
fn shared_gpu() -> *mut sys::RvgGpu {
    let (gpu, err) = gpu_new(&gpu_config());
    assert!(!gpu.is_null(), "{err}");
    gpu
}

/// Put a ring holding an interrupting FENCE with `seqno` on `dev` and
/// submit it, with the fence interrupt enabled.
///
/// # Safety
/// `dev` and its `info` are live.
unsafe fn submit_fence(dev: *mut sys::RvgDevice, info: &sys::RvgDeviceInfo, seqno: u32) {
    let ring: Vec<u8> = Command::Fence {
        seqno,
        interrupt: true,
    }
    .encode()
    .iter()
    .flat_map(|d| d.to_le_bytes())
    .collect();
    let engine = |r: EngineReg| bar2::ENGINE + r.offset();
    // SAFETY: per the contract, BAR0 holds `info.vram_size` bytes and `dev` is live.
    unsafe {
        std::ptr::copy_nonoverlapping(ring.as_ptr(), info.vram_ptr, ring.len());
        let write = rvg_ops.mmio_write.unwrap();
        let fence = u64::from(IntSource::FENCE.bits());
        write(dev, reg(GlobalReg::IntEnable), fence, 4);
        write(dev, bar2::GTT, GttEntry::new(0, true).0, 8);
        write(dev, engine(EngineReg::RingSize), 4096, 4);
        write(dev, engine(EngineReg::RingCtl), 1, 4);
        write(dev, engine(EngineReg::RingTail), ring.len() as u64, 4);
    }
}

fn readable_within(fd: c_int, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

/// The unplug rule: a vGPU with an interrupting fence in flight leaves the
/// bus (`exit`) before its work completes. Nothing reaches its host after
/// that: no eventfd watch, no progress, no interrupt. A neighbour that
/// stays, with the same work queued beside it, gets its interrupt.
#[test]
fn nothing_reaches_the_host_of_a_vgpu_after_exit() {
    let gpu = shared_gpu();
    let gone = Recorder::default();
    let stays = Recorder::default();
    let (a, a_info, err) = realize_on(&gone, VGPU, 4 << 20, gpu);
    assert!(!a.is_null(), "{err}");
    let (b, b_info, err) = realize_on(&stays, VGPU, 4 << 20, gpu);
    assert!(!b.is_null(), "{err}");
    let a_fd = gone.watched.lock().unwrap()[0];
    let b_fd = stays.watched.lock().unwrap()[0];
    // SAFETY: `a`, `b` and `gpu` are live until freed at the end.
    unsafe {
        let hold = rvg_ops.gpu_set_engine_hold.unwrap();
        hold(gpu, true);
        submit_fence(a, &a_info, 1);
        submit_fence(b, &b_info, 2);
        // Enabling the interrupt drove each line low; count from here.
        gone.calls.lock().unwrap().clear();
        stays.calls.lock().unwrap().clear();
        rvg_ops.exit.unwrap()(a);
        assert!(gone.watched.lock().unwrap().is_empty(), "unwatched at exit");
        hold(gpu, false);
        assert!(
            readable_within(b_fd, 10_000),
            "the neighbour's fence arrives"
        );
        rvg_ops.fd_ready.unwrap()(b, b_fd);
        assert!(!readable_within(a_fd, 200), "no progress after exit");
        // Even a main loop that calls anyway reaches nothing.
        rvg_ops.fd_ready.unwrap()(a, a_fd);
        rvg_ops.config_changed.unwrap()(a);
        let seqno = rvg_ops.mmio_read.unwrap()(a, bar2::ENGINE + EngineReg::Seqno.offset(), 4);
        assert_eq!(seqno, 0, "the work never ran for it");
        rvg_ops.unrealize.unwrap()(a);
        rvg_ops.unrealize.unwrap()(b);
        rvg_ops.gpu_free.unwrap()(gpu);
    }
    assert_eq!(*stays.calls.lock().unwrap(), ["intx 1"]);
    assert_eq!(*gone.calls.lock().unwrap(), Vec::<String>::new());
}

/// The raw model's engine raises interrupts from its own thread: after
/// `exit` they go nowhere.
#[test]
fn the_hw_model_raises_nothing_after_exit() {
    let host = Recorder::default();
    let (dev, _, _) = realize(&host, sys::RvgModelKind::RVG_MODEL_HW, 16 << 20);
    let sw = u64::from(IntSource::SOFTWARE.bits());
    // SAFETY: `dev` is live until unrealize at the end.
    unsafe {
        rvg_ops.mmio_write.unwrap()(dev, reg(GlobalReg::IntEnable), sw, 4);
        rvg_ops.exit.unwrap()(dev);
        rvg_ops.mmio_write.unwrap()(dev, reg(GlobalReg::IntTrigger), sw, 4);
        rvg_ops.unrealize.unwrap()(dev);
    }
    assert_eq!(*host.calls.lock().unwrap(), ["intx 0"]);
}

/// A GPU's policy and a vGPU's weight change at run time; a bad name or
/// weight is refused with the reason and changes nothing.
#[test]
fn policy_and_weight_change_at_run_time_and_bad_values_are_refused() {
    let gpu = shared_gpu();
    let host = Recorder::default();
    let (dev, _, err) = realize_on(&host, VGPU, 4 << 20, gpu);
    assert!(!dev.is_null(), "{err}");
    let ops = &rvg_ops;
    let report = || {
        let mut report = String::new();
        // SAFETY: a live device and a String sink for the call.
        unsafe { ops.describe.unwrap()(dev, &mut report as *mut String as *mut sys::RvgTextSink) };
        report
    };
    assert!(report().contains("policy=best-effort"), "{}", report());
    assert!(report().contains("weight=100 "), "{}", report());
    let set_policy = |name: &std::ffi::CStr| {
        let mut err = String::new();
        // SAFETY: a live GPU, a C string and a String sink for the call.
        let ok = unsafe {
            ops.gpu_set_policy.unwrap()(
                gpu,
                name.as_ptr(),
                Some(set_error),
                &mut err as *mut String as *mut sys::RvgErrorSink,
            )
        };
        (ok, err)
    };
    let set_weight = |weight| {
        let mut err = String::new();
        // SAFETY: a live device and a String sink for the call.
        let ok = unsafe {
            ops.set_weight.unwrap()(
                dev,
                weight,
                &mut err as *mut String as *mut sys::RvgErrorSink,
            )
        };
        (ok, err)
    };
    assert_eq!(set_policy(c"fixed-share"), (true, String::new()));
    assert_eq!(set_weight(300), (true, String::new()));
    assert!(report().contains("policy=fixed-share"), "{}", report());
    assert!(report().contains("weight=300 "), "{}", report());
    let (ok, err) = set_policy(c"fair");
    assert!(!ok && err.contains("'fair' is not one of"), "{err}");
    let (ok, err) = set_weight(0);
    assert!(!ok && err.contains("property 'weight' is 0"), "{err}");
    assert!(report().contains("policy=fixed-share"), "{}", report());
    assert!(report().contains("weight=300 "), "{}", report());
    // The same for tools, as x-query-rust-vgpu gets it.
    let mut out = sys::RvgReport::default();
    let mut backend = String::new();
    // SAFETY: a live device, a report and a String sink for the call.
    let ok = unsafe {
        ops.report.unwrap()(
            dev,
            &mut out,
            &mut backend as *mut String as *mut sys::RvgTextSink,
        )
    };
    assert!(ok);
    // SAFETY: the policy is a static C string.
    let policy = unsafe { CStr::from_ptr(out.policy) };
    assert_eq!(policy.to_str(), Ok("fixed-share"));
    assert_eq!(
        (out.weight, out.vgpus_on_gpu, out.engine_faults),
        (300, 1, 0)
    );
    assert!(backend.contains("soft"), "{backend}");
    // SAFETY: the device and GPU are live and dropped once.
    unsafe {
        ops.unrealize.unwrap()(dev);
        ops.gpu_free.unwrap()(gpu);
    }
}

//! What forwarding through a kernel VFIO device costs against the soft GPU:
//! a trapped register read (pread on the device fd) and a guest GTT entry
//! write through the whole mediator path (validation, the pin cache, the
//! shadow entry's pwrite), per operation.
//!
//!     vfio_forwarding                # the soft GPU only
//!     vfio_forwarding --host BDF     # and the kernel device at BDF
//!
//! The nested VFIO set-up runs it in its L1 guest, where BDF is
//! rust-vgpu-hw bound to vfio-pci: `python3 guest/vfio/bench.py`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use rvg_mediator::shared::{HostLog, SchedConfig};
use rvg_mediator::{MemKind, SharedGpu, Vgpu, VgpuConfig};
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, GlobalReg, Register};
use rvg_model::GpuConfig;
use rvg_vfio::kernel::{DeviceSpec, IommuBackend, KernelDevice};
use rvg_vfio::{HostRange, SoftGpu, VfioDevice};

const ROUNDS: usize = 9;
const READS: u32 = 20_000;
const ENTRIES: u32 = 4096;
/// Guest pages the GTT entries point at (all pinned after the first pass).
const PAGES: u64 = 64;
const RAM_BASE: u64 = 0x1_0000_0000;

/// Median ns per operation over ROUNDS passes of `ops` operations.
fn median_ns(ops: u32, mut pass: impl FnMut(usize)) -> f64 {
    let mut ns: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            let t = Instant::now();
            pass(round);
            t.elapsed().as_nanos() as f64 / f64::from(ops)
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    ns[ROUNDS / 2]
}

struct Figures {
    name: String,
    register_read_ns: f64,
    gtt_write_ns: f64,
}

fn measure(dev: Arc<dyn VfioDevice>) -> Figures {
    let name = dev.describe();
    let log: HostLog = Arc::new(|m| panic!("{m}"));
    let gpu = Arc::new(SharedGpu::private(dev, SchedConfig::default(), log).expect("the GPU"));
    let id = bar2::GLOBAL + GlobalReg::Id.offset();
    let register_read_ns = median_ns(READS, |_| {
        for _ in 0..READS {
            black_box(gpu.bar2().read_u32(id).expect("register read"));
        }
    });

    let mut vgpu = Vgpu::new(VgpuConfig::new(16 << 20), gpu).expect("vGPU");
    vgpu.set_bus_master(true);
    // Guest RAM stand-in, DMA-mapped for the GPU as the memory listener would.
    let ram = HostRange::anonymous(PAGES * 4096).expect("memory");
    let fx = vgpu.guest_ram_add(RAM_BASE, PAGES * 4096, Some(ram), MemKind::Ram);
    assert!(fx.diags.is_empty(), "{:?}", fx.diags);
    let gtt_write_ns = median_ns(ENTRIES, |round| {
        for i in 0..ENTRIES {
            let page = (u64::from(i) + round as u64) % PAGES;
            let entry = (RAM_BASE + page * 4096) | GttEntry::VALID;
            black_box(vgpu.mmio_write(bar2::GTT + 8 * u64::from(i), entry, 8));
        }
    });
    let stats = vgpu.shadow_stats();
    assert_eq!((stats.system, stats.rejected), (ENTRIES, 0));
    Figures {
        name,
        register_read_ns,
        gtt_write_ns,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = match args.as_slice() {
        [] => None,
        [flag, bdf] if flag == "--host" => Some(bdf.clone()),
        _ => {
            eprintln!("usage: vfio_forwarding [--host BDF]");
            std::process::exit(2);
        }
    };
    let soft = SoftGpu::new(
        GpuConfig {
            vram_size: VgpuConfig::new(16 << 20).private_gpu_vram(),
        },
        Box::new(|m| panic!("{m}")),
    )
    .expect("soft GPU");
    let mut all = vec![measure(Arc::new(soft))];
    if let Some(bdf) = host {
        let dev = KernelDevice::open(&DeviceSpec::Host(bdf.clone()), IommuBackend::Auto)
            .unwrap_or_else(|e| panic!("host={bdf}: {e}"));
        all.push(measure(Arc::new(dev)));
    }
    println!(
        "median of {ROUNDS} passes: {READS} register reads, {ENTRIES} GTT entry writes (pinned pages)"
    );
    for f in &all {
        println!(
            "{}: register read {:.0} ns, GTT entry write {:.0} ns",
            f.name, f.register_read_ns, f.gtt_write_ns
        );
    }
    if let [soft, vfio] = all.as_slice() {
        println!(
            "ratio kernel/soft: register read {:.1}x, GTT entry write {:.1}x",
            vfio.register_read_ns / soft.register_read_ns,
            vfio.gtt_write_ns / soft.gtt_write_ns
        );
    }
}

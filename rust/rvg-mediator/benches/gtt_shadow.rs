//! GTT shadow update cost per entry, in process, through the whole mediator
//! path: the guest's MMIO write to the GTT window, validation, the pin cache,
//! and the shadow entry written to the soft GPU's physical GTT through the
//! VFIO contract.
//!
//!     cargo bench -p rvg-mediator --bench gtt_shadow
//!
//! hit:  every write maps a guest page another entry already pins.
//! miss: every write maps a page nothing pins yet (and releases the one the
//!       entry mapped before, which nothing else pins either).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use rvg_mediator::guest_mem::{GuestMemory, GuestRange};
use rvg_mediator::shadow::{GttShadow, PhysGtt};
use rvg_mediator::shared::SchedConfig;
use rvg_mediator::vgpu::VGPU_GTT_ENTRIES;
use rvg_mediator::{MemKind, SharedGpu, Vgpu, VgpuConfig};
use rvg_model::gtt::GttEntry;
use rvg_model::regs::bar2;
use rvg_model::GpuConfig;
use rvg_vfio::{HostRange, SoftGpu};

const RAM_BASE: u64 = 0x1_0000_0000;
const RAM_PAGES: u64 = 2 * VGPU_GTT_ENTRIES as u64;
const HOLDERS: u32 = 64;
const ROUNDS: usize = 15;

/// A physical GTT in memory, for timing the shadow logic alone.
struct VecGtt(Vec<u64>);

impl PhysGtt for VecGtt {
    fn write(&mut self, index: u32, entry: GttEntry) -> std::io::Result<()> {
        self.0[index as usize] = entry.0;
        Ok(())
    }
    fn read(&mut self, index: u32) -> std::io::Result<GttEntry> {
        Ok(GttEntry(self.0[index as usize]))
    }
}

fn gtt(i: u32) -> u64 {
    bar2::GTT + 8 * u64::from(i)
}

fn page(n: u64) -> u64 {
    (RAM_BASE + n * 4096) | GttEntry::VALID
}

/// Median and best ns per entry over `ROUNDS` passes of `pass(round)`.
fn measure(entries: u32, mut pass: impl FnMut(usize)) -> (f64, f64) {
    let mut ns: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            let t = Instant::now();
            pass(round);
            t.elapsed().as_nanos() as f64 / f64::from(entries)
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    (ns[ROUNDS / 2], ns[0])
}

fn main() {
    let config = VgpuConfig::new(16 << 20);
    let soft = Arc::new(
        SoftGpu::new(
            GpuConfig {
                vram_size: config.private_gpu_vram(),
            },
            Box::new(|m| panic!("{m}")),
        )
        .expect("soft GPU"),
    );
    let gpu = SharedGpu::new(soft, SchedConfig::default(), Arc::new(|m| panic!("{m}")))
        .expect("shared GPU");
    // On the heap, as the device layer holds it.
    let mut vgpu = Box::new(Vgpu::new(config, Arc::new(gpu)).expect("vGPU"));
    vgpu.set_bus_master(true);
    let ram = Arc::new(HostRange::anonymous(RAM_PAGES * 4096).expect("guest RAM stand-in"));
    let fx = vgpu.guest_ram_add(RAM_BASE, RAM_PAGES * 4096, Some(ram.alias()), MemKind::Ram);
    assert!(fx.diags.is_empty(), "{:?}", fx.diags);

    // Holders keep pages 0..HOLDERS pinned for the hit pass.
    for i in 0..HOLDERS {
        vgpu.mmio_write(gtt(i), page(u64::from(i)), 8);
    }
    let bench = HOLDERS..VGPU_GTT_ENTRIES;
    let n = bench.len() as u32;

    let (hit_med, hit_best) = measure(n, |round| {
        for i in bench.clone() {
            let p = (u64::from(i) + round as u64) % u64::from(HOLDERS);
            black_box(vgpu.mmio_write(gtt(i), page(p), 8));
        }
    });
    let stats = vgpu.shadow_stats();
    assert_eq!(
        stats.pinned_pages, HOLDERS as usize,
        "hit pass pinned nothing new"
    );

    // Alternate between two disjoint sets of pages so every write misses.
    let (miss_med, miss_best) = measure(n, |round| {
        let base = if round % 2 == 0 {
            u64::from(HOLDERS)
        } else {
            u64::from(VGPU_GTT_ENTRIES)
        };
        for i in bench.clone() {
            black_box(vgpu.mmio_write(gtt(i), page(base + u64::from(i)), 8));
        }
    });
    let after = vgpu.shadow_stats();
    assert_eq!(after.system, VGPU_GTT_ENTRIES);
    assert_eq!(after.rejected, 0);

    // The same hit pass against the shadow alone, physical GTT in a vector:
    // what the mediator's own logic costs without the contract round trip.
    let layout = *vgpu.layout();
    let mut shadow = GttShadow::new(layout);
    let mut phys = VecGtt(vec![0; (layout.gtt_base + layout.gtt_entries) as usize]);
    shadow.set_system_access(true, &mut phys).unwrap();
    let mut mem = GuestMemory::default();
    mem.add(GuestRange {
        gpa: RAM_BASE,
        size: RAM_PAGES * 4096,
        host: Some(ram.clone()),
        kind: MemKind::Ram,
        iova: RAM_BASE,
    })
    .unwrap();
    for i in 0..HOLDERS {
        shadow
            .write(u64::from(i), 0, page(u64::from(i)), 8, &mem, &mut phys)
            .unwrap();
    }
    let (core_med, core_best) = measure(n, |round| {
        for i in bench.clone() {
            let p = (u64::from(i) + round as u64) % u64::from(HOLDERS);
            let _ = black_box(shadow.write(u64::from(i), 0, page(p), 8, &mem, &mut phys));
        }
    });

    println!(
        "GTT shadow update, {n} entries per pass, {ROUNDS} passes (median / best ns per entry):"
    );
    println!(
        "  pin-cache hit:  {hit_med:7.1} / {hit_best:7.1} ns  ({:.1} M entries/s)",
        1e3 / hit_med
    );
    println!(
        "  pin-cache miss: {miss_med:7.1} / {miss_best:7.1} ns  ({:.1} M entries/s)",
        1e3 / miss_med
    );
    println!("  hit, shadow logic alone (no contract): {core_med:7.1} / {core_best:7.1} ns");
    println!(
        "  pin cache: {} hits, {} misses; {} pages pinned at the end",
        after.pin_hits, after.pin_misses, after.pinned_pages
    );
}

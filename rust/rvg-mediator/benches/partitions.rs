//! Many vGPUs on one GPU, in process:
//!
//!     cargo bench -p rvg-mediator --bench partitions
//!
//! Two arrangements of one GPU's engine: each vGPU on an SR-IOV VF of its
//! own (`vfs=16`, a mediator per VF, the GPU's arbiter between them), and
//! every vGPU on one shared GPU (one mediator's scheduler between them).
//! Each busy vGPU keeps its ring full of 4 MiB fills. For 1, 2, 4 and 16
//! busy vGPUs: the fills per second of all together against one alone on
//! the same arrangement, and the least and most any one vGPU got against
//! its fair share. Then one vGPU's submission latency (a fence: the tail
//! write until SEQNO shows it) alone, and while three others keep the
//! engine busy. Rounds alternate the cases, medians are printed: this
//! machine's memory bandwidth drifts by a fifth from second to second.
//!
//! The soft GPU's engine is a host thread writing host memory: `n` busy
//! vGPUs fill `n` slices, a working set `n` times one's. Each round also
//! times one thread filling the same working set the same way, with no
//! GPU, vGPU or arbiter at all: the share of one alone that memory itself
//! allows, against which the arrangements' figures are read.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::busy::{Busy, RING};
use rvg_gpu::Gpu;
use rvg_mediator::shared::SchedConfig;
use rvg_mediator::{SharedGpu, VgpuConfig};
use rvg_model::cmd::Command;
use rvg_model::regs::{bar2, EngineReg, Register};
use rvg_model::GpuConfig;
use rvg_vfio::SoftGpu;

const MIB: u64 = 1 << 20;
/// The GPU: 16 VFs of 16 MiB and 8192 GTT entries each.
const GPU_VRAM: u64 = 256 * MIB;
const VFS: u16 = 16;
const SPAN: Duration = Duration::from_secs(1);
const ROUNDS: usize = 3;
const COUNTS: [usize; 4] = [1, 2, 4, 16];
const PROBES: usize = 300;

/// A vGPU that fits a VF: 8 MiB of VRAM, 16 MiB of graphics space.
fn config() -> VgpuConfig {
    VgpuConfig {
        gfx_size: 16 * MIB,
        ..VgpuConfig::new(8 * MIB)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Arrangement {
    /// Each vGPU on a VF of its own.
    Vfs,
    /// Every vGPU on one shared GPU.
    Shared,
}

/// `n` vGPUs. (A VF keeps its GPU's memory and engine alive: the PF
/// itself may go once they are made.)
fn vgpus(how: Arrangement, n: usize) -> Vec<Busy> {
    let log = || Arc::new(|m: &str| panic!("{m}"));
    match how {
        Arrangement::Vfs => {
            let pf = Gpu::with_vfs(
                GpuConfig {
                    vram_size: GPU_VRAM,
                },
                VFS,
            )
            .expect("GPU");
            (0..n)
                .map(|i| {
                    let soft =
                        SoftGpu::on(pf.vf(i as u16).expect("VF"), Box::new(|m| panic!("{m}")));
                    let gpu = SharedGpu::private(Arc::new(soft), SchedConfig::default(), log());
                    Busy::new(&Arc::new(gpu.expect("GPU on a VF")), config())
                })
                .collect()
        }
        Arrangement::Shared => {
            let soft = SoftGpu::new(
                GpuConfig {
                    vram_size: GPU_VRAM,
                },
                Box::new(|m| panic!("{m}")),
            );
            let gpu = SharedGpu::new(
                Arc::new(soft.expect("soft GPU")),
                SchedConfig::default(),
                log(),
            );
            let gpu = Arc::new(gpu.expect("shared GPU"));
            (0..n).map(|_| Busy::new(&gpu, config())).collect()
        }
    }
}

/// Fills per second of each of `n` busy vGPUs over `SPAN`.
fn measure(how: Arrangement, n: usize) -> Vec<f64> {
    let mut busy = vgpus(how, n);
    let warm = Instant::now() + Duration::from_millis(200);
    while Instant::now() < warm {
        busy.iter_mut().for_each(Busy::feed);
        std::thread::sleep(Duration::from_millis(1));
    }
    let before: Vec<u32> = busy.iter_mut().map(Busy::done).collect();
    let start = Instant::now();
    while start.elapsed() < SPAN {
        busy.iter_mut().for_each(Busy::feed);
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    busy.iter_mut()
        .zip(before)
        .map(|(b, was)| f64::from(b.done() - was) / secs)
        .collect()
}

/// Tail write to SEQNO, for `PROBES` fences on the first vGPU of
/// `1 + others`, the others busy: the median and the 99th percentile.
fn latency(how: Arrangement, others: usize) -> (Duration, Duration) {
    let mut busy = vgpus(how, 1 + others);
    let (probe, rest) = busy.split_first_mut().expect("a probe");
    let eng = |r: EngineReg| bar2::ENGINE + r.offset();
    let mut tail = 0;
    let mut samples = Vec::new();
    for seqno in 1..=PROBES as u32 {
        rest.iter_mut().for_each(Busy::feed);
        for d in (Command::Fence {
            seqno,
            interrupt: false,
        })
        .encode()
        {
            // SAFETY: the ring lies inside the vGPU's VRAM slice, which
            // lives as long as the vGPU.
            unsafe {
                probe
                    .v
                    .vram_ptr()
                    .add(tail as usize)
                    .cast::<u32>()
                    .write_unaligned(d.to_le())
            };
            tail = (tail + 4) % RING;
        }
        let start = Instant::now();
        probe
            .v
            .mmio_write(eng(EngineReg::RingTail), u64::from(tail), 4);
        while probe.v.mmio_read(eng(EngineReg::Seqno), 4) != Ok(u64::from(seqno)) {
            std::hint::spin_loop();
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "fence {seqno} never came"
            );
        }
        samples.push(start.elapsed());
        std::thread::sleep(Duration::from_millis(1));
    }
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// 4 MiB fills per second of one thread writing `n` 4 MiB buffers in turn:
/// the working set of `n` busy vGPUs, with nothing between.
fn memory_alone(n: usize) -> f64 {
    let mut bufs: Vec<Vec<u32>> = (0..n).map(|_| vec![0u32; 1 << 20]).collect();
    let mut fills = 0u64;
    let start = Instant::now();
    while start.elapsed() < SPAN {
        for b in bufs.iter_mut() {
            b.fill(fills as u32);
            fills += 1;
        }
    }
    std::hint::black_box(&bufs);
    fills as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut memory = vec![Vec::new(); COUNTS.len()];
    for _ in 0..ROUNDS {
        let one = memory_alone(1);
        for (i, &n) in COUNTS.iter().enumerate().skip(1) {
            memory[i].push(memory_alone(n) / one);
        }
    }
    println!("memory alone, one thread filling the working set of n vGPUs:");
    for (i, &n) in COUNTS.iter().enumerate().skip(1) {
        println!("  {n:>2}: {:.3} of one's", median(memory[i].clone()));
    }
    for how in [Arrangement::Vfs, Arrangement::Shared] {
        let name = match how {
            Arrangement::Vfs => "each on a VF of its own (vfs=16)",
            Arrangement::Shared => "all on one shared GPU",
        };
        let mut alone = Vec::new();
        let mut ratio = vec![Vec::new(); COUNTS.len()];
        let mut share = vec![Vec::new(); COUNTS.len()];
        for _ in 0..ROUNDS {
            let one: f64 = measure(how, 1).iter().sum();
            alone.push(one);
            for (i, &n) in COUNTS.iter().enumerate().skip(1) {
                let each = measure(how, n);
                let all: f64 = each.iter().sum();
                ratio[i].push(all / one);
                // Each vGPU's fills against its fair share of all of them.
                share[i].extend(each.iter().map(|f| f * n as f64 / all));
            }
        }
        println!(
            "vGPUs {name}: 1 busy alone {:.0} fills/s (4 MiB each), median of {ROUNDS}",
            median(alone)
        );
        for (i, &n) in COUNTS.iter().enumerate().skip(1) {
            let s = &share[i];
            println!(
                "  {n:>2} busy: {:.3} of one alone (median; {:.3}-{:.3}); each vGPU {:.2}-{:.2} of its fair share",
                median(ratio[i].clone()),
                ratio[i].iter().copied().fold(f64::MAX, f64::min),
                ratio[i].iter().copied().fold(0.0, f64::max),
                s.iter().copied().fold(f64::MAX, f64::min),
                s.iter().copied().fold(0.0, f64::max),
            );
        }
        let (alone_med, alone_p99) = latency(how, 0);
        let (busy_med, busy_p99) = latency(how, 3);
        println!(
            "  submission latency (fence): alone {alone_med:.1?} median, {alone_p99:.1?} p99; \
             with 3 busy {busy_med:.1?} median, {busy_p99:.1?} p99"
        );
    }
}

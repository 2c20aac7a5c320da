//! What sharing the engine costs, in process:
//!
//!     cargo bench -p rvg-mediator --bench sharing
//!
//! Each busy vGPU keeps its ring full of 4 MiB fills on one soft GPU
//! (1 ms slices). The engine's throughput (fills per second, all vGPUs
//! together) with three busy vGPUs, whose slices end by preemption inside
//! the fills, is held against one busy vGPU alone under best effort: what
//! is lost is what preemption (stopping, saving what is left, resetting the
//! engine, writing it back) and the accounting cost. Each vGPU's part of
//! the fills is printed too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rvg_mediator::shared::{Policy, SchedConfig};
use rvg_mediator::{SharedGpu, Vgpu, VgpuConfig};
use rvg_model::cmd::Command;
use rvg_model::engine::ring_ctl;
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, EngineReg, Register};
use rvg_model::GpuConfig;
use rvg_vfio::SoftGpu;

const VRAM: u64 = 16 << 20;
const PAGE: u64 = 4096;
const RING: u32 = 64 << 10;
/// A 4 MiB fill past the ring, then a fence with its number.
const ROWS: u32 = 1024;
/// Fills kept queued per vGPU: about 5 ms of this machine's engine.
const QUEUED: u32 = 64;
const SPAN: Duration = Duration::from_secs(1);
/// Rounds, each measuring one vGPU alone and then three under each policy:
/// this machine's memory bandwidth drifts by a fifth from second to
/// second, so only ratios taken side by side, and their medians, mean
/// anything.
const ROUNDS: usize = 7;

fn eng(r: EngineReg) -> u64 {
    bar2::ENGINE + r.offset()
}

struct Busy {
    v: Vgpu,
    tail: u32,
    emitted: u32,
}

impl Busy {
    fn new(gpu: &Arc<SharedGpu>) -> Busy {
        let mut v = Vgpu::new(VgpuConfig::new(VRAM), gpu.clone()).expect("vGPU");
        for i in 0..VRAM / PAGE {
            v.mmio_write(bar2::GTT + 8 * i, GttEntry::new(i * PAGE, true).0, 8);
        }
        v.mmio_write(eng(EngineReg::RingSize), u64::from(RING), 4);
        v.mmio_write(eng(EngineReg::RingCtl), u64::from(ring_ctl::ENABLE), 4);
        Busy {
            v,
            tail: 0,
            emitted: 0,
        }
    }

    fn done(&mut self) -> u32 {
        self.v.mmio_read(eng(EngineReg::Seqno), 4).unwrap() as u32
    }

    /// Top the ring up to `QUEUED` fills.
    fn feed(&mut self) {
        assert_eq!(self.v.mmio_read(eng(EngineReg::Error), 4), Ok(0));
        let queued = self.emitted - self.done();
        if queued > QUEUED / 2 {
            return;
        }
        for _ in queued..QUEUED {
            self.emitted += 1;
            let cmds = [
                Command::FillRect {
                    dst: u64::from(RING),
                    pitch: 4096,
                    width: 1024,
                    height: ROWS,
                    color: self.emitted,
                },
                Command::Fence {
                    seqno: self.emitted,
                    interrupt: false,
                },
            ];
            for d in cmds.iter().flat_map(|c| c.encode()) {
                // SAFETY: the ring lies inside the VRAM slice, which lives
                // as long as `v`.
                unsafe {
                    let at = self.v.vram_ptr().add(self.tail as usize).cast::<u32>();
                    at.write_unaligned(d.to_le());
                }
                self.tail = (self.tail + 4) % RING;
            }
        }
        self.v
            .mmio_write(eng(EngineReg::RingTail), u64::from(self.tail), 4);
    }
}

/// Fills per second over `SPAN` with `n` busy vGPUs under `policy`, all
/// together and each, and slices ended by preemption per second.
fn measure(policy: Policy, n: usize) -> (f64, Vec<f64>, f64) {
    let soft = SoftGpu::new(
        GpuConfig {
            vram_size: 256 << 20,
        },
        Box::new(|m| panic!("soft GPU: {m}")),
    )
    .expect("soft GPU");
    let config = SchedConfig {
        policy,
        timeslice: Duration::from_micros(
            std::env::var("SLICE_US").map_or(1000, |v| v.parse().unwrap()),
        ),
        ..SchedConfig::default()
    };
    let gpu =
        Arc::new(SharedGpu::new(Arc::new(soft), config, Arc::new(|m| panic!("{m}"))).expect("GPU"));
    let mut busy: Vec<Busy> = (0..n).map(|_| Busy::new(&gpu)).collect();
    // Warm up: every ring full, the scheduler in its stride.
    let warm = Instant::now() + Duration::from_millis(200);
    while Instant::now() < warm {
        busy.iter_mut().for_each(Busy::feed);
        std::thread::sleep(Duration::from_millis(1));
    }
    let before: Vec<u32> = busy.iter_mut().map(Busy::done).collect();
    let preempted = |busy: &mut [Busy]| -> u64 {
        busy.iter_mut()
            .map(|b| b.v.report().sched.preemptions)
            .sum()
    };
    let preempted_before = preempted(&mut busy);
    let start = Instant::now();
    while start.elapsed() < SPAN {
        busy.iter_mut().for_each(Busy::feed);
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let each: Vec<f64> = busy
        .iter_mut()
        .zip(before)
        .map(|(b, was)| f64::from(b.done() - was) / secs)
        .collect();
    let preemptions = (preempted(&mut busy) - preempted_before) as f64 / secs;
    (each.iter().sum(), each, preemptions)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut alone = Vec::new();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); Policy::ALL.len()];
    let mut parts: Vec<Vec<f64>> = vec![Vec::new(); Policy::ALL.len()];
    let mut preemptions: Vec<Vec<f64>> = vec![Vec::new(); Policy::ALL.len()];
    for _ in 0..ROUNDS {
        let (one, _, _) = measure(Policy::BestEffort, 1);
        alone.push(one);
        for (i, policy) in Policy::ALL.into_iter().enumerate() {
            let (all, each, preempted) = measure(policy, 3);
            ratios[i].push(all / one);
            parts[i].extend(each.iter().map(|f| f / all));
            preemptions[i].push(preempted);
        }
    }
    println!(
        "1 busy vGPU, best-effort: {:.0} fills/s median (4 MiB each), {ROUNDS} rounds",
        median(alone)
    );
    for (i, policy) in Policy::ALL.into_iter().enumerate() {
        let r = &ratios[i];
        let (lo, hi) = (
            r.iter().copied().fold(f64::MAX, f64::min),
            r.iter().copied().fold(0.0, f64::max),
        );
        let p = &parts[i];
        println!(
            "3 busy vGPUs, {:<11}: {:.3} of one alone, median ({lo:.3}-{hi:.3}); \
             each vGPU's part {:.2}-{:.2}; {:.0} preemptions/s",
            policy.name(),
            median(r.clone()),
            p.iter().copied().fold(f64::MAX, f64::min),
            p.iter().copied().fold(0.0, f64::max),
            median(preemptions[i].clone()),
        );
    }
}

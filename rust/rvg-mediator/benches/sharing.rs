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

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::busy::Busy;
use rvg_mediator::shared::{Policy, SchedConfig};
use rvg_mediator::{SharedGpu, VgpuConfig};
use rvg_model::GpuConfig;
use rvg_vfio::SoftGpu;

const VRAM: u64 = 16 << 20;
const SPAN: Duration = Duration::from_secs(1);
/// Rounds, each measuring one vGPU alone and then three under each policy:
/// this machine's memory bandwidth drifts by a fifth from second to
/// second, so only ratios taken side by side, and their medians, mean
/// anything.
const ROUNDS: usize = 7;

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
    let mut busy: Vec<Busy> = (0..n)
        .map(|_| Busy::new(&gpu, VgpuConfig::new(VRAM)))
        .collect();
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

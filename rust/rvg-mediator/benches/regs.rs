//! The vGPU's own cost of a trapped register access, in process: what the
//! mediator adds to QEMU's MMIO dispatch (guest/bench.py measures the
//! whole trap from a guest).
//!
//!     cargo bench -p rvg-mediator --bench regs
//!
//! read:   a 4-byte read of `SCRATCH` through `Vgpu::mmio_read`;
//! write:  a 4-byte write to its low half through `Vgpu::mmio_write`;
//! as `rvg-bench`'s `vgpu-read` and `vgpu-write` cases do from the guest.

mod common;

use std::hint::black_box;
use std::time::Instant;

use rvg_model::regs::{bar2, GlobalReg, Register};

const ACCESSES: u32 = 2_000_000;
const ROUNDS: usize = 15;

fn median_ns(mut f: impl FnMut(u32)) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..ACCESSES {
                f(i);
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(ACCESSES)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let mut v = common::private_vgpu(16 << 20);
    let scratch = bar2::GLOBAL + GlobalReg::Scratch.offset();
    let read = median_ns(|_| {
        black_box(v.mmio_read(black_box(scratch), 4).unwrap_or(0));
    });
    let write = median_ns(|i| {
        black_box(v.mmio_write(black_box(scratch), u64::from(i), 4));
    });
    println!("regs  SCRATCH read {read:.1} ns, write {write:.1} ns (median of {ROUNDS} rounds of {ACCESSES})");
}

//! The command path of a vGPU, in process:
//!
//!     cargo bench -p rvg-mediator --bench engine_path
//!
//! scanner:  guest commands per second the scanner reads, checks, relocates
//!           and copies, from a full 1 MiB ring of mixed commands (a batch
//!           of 64 commands among them).
//! latency:  from the guest's tail write of a one-command ring (a FENCE)
//!           to the guest reading the new seqno: scan, scheduler, shadow
//!           ring, the GPU's engine, progress back to the vGPU. Twice:
//!           back to back (the scheduler thread still watching for work)
//!           and 2 ms apart (the thread asleep).

mod common;

use std::time::{Duration, Instant};

use rvg_mediator::scan::{GuestGfx, Scanner};
use rvg_mediator::vgpu::VGPU_GFX_SPACE;
use rvg_model::cmd::Command;
use rvg_model::engine::{ring_ctl, EngineState, RING_SIZE_MAX};
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, EngineReg, Register};

/// Guest graphics memory as one flat buffer.
struct Flat(Vec<u8>);

impl GuestGfx for Flat {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        let at = addr as usize;
        buf.copy_from_slice(self.0.get(at..at + buf.len()).ok_or(addr)?);
        Ok(())
    }
}

fn put(mem: &mut Flat, at: u64, cmds: &[Command]) -> u32 {
    let bytes: Vec<u8> = cmds
        .iter()
        .flat_map(|c| c.encode())
        .flat_map(|d| d.to_le_bytes())
        .collect();
    mem.0[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
    bytes.len() as u32
}

fn scanner() {
    const BATCH: u64 = 2 << 20;
    let mut mem = Flat(vec![0; 4 << 20]);
    let mix = [
        Command::StoreDw {
            addr: 0x30_0000,
            value: 1,
        },
        Command::FillRect {
            dst: 0x30_0000,
            pitch: 4096,
            width: 64,
            height: 64,
            color: 7,
        },
        Command::CopyRect {
            src: 0x30_0000,
            src_pitch: 4096,
            dst: 0x34_0000,
            dst_pitch: 4096,
            width: 64,
            height: 64,
        },
        Command::Fence {
            seqno: 1,
            interrupt: false,
        },
        Command::Noop,
    ];
    let batch: Vec<Command> = mix
        .iter()
        .copied()
        .cycle()
        .take(63)
        .chain([Command::BatchEnd])
        .collect();
    let batch_len = put(&mut mem, BATCH, &batch);
    // The mix, with every 50th command a batch.
    let mut ring = Vec::new();
    let mut bytes = 0;
    for i in 0.. {
        let c = if i % 50 == 49 {
            Command::BatchStart {
                addr: BATCH,
                len: batch_len,
            }
        } else {
            mix[i % mix.len()]
        };
        let n = 4 * c.encode().len() as u32;
        if bytes + n >= RING_SIZE_MAX {
            break;
        }
        bytes += n;
        ring.push(c);
    }
    put(&mut mem, 0, &ring);
    let state = EngineState {
        ring_size: RING_SIZE_MAX,
        tail: bytes,
        ctl: ring_ctl::ENABLE,
        ..Default::default()
    };
    let s = Scanner {
        space: VGPU_GFX_SPACE,
        reloc: 1 << 32,
    };
    let mut rates: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let work = s.scan(&mem, &state).expect("valid ring");
            work.guest_commands as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let commands = s.scan(&mem, &state).unwrap().guest_commands;
    println!(
        "scanner  {:.1} M commands/s median, {:.1} M best ({commands} commands per 1 MiB ring, batches flattened)",
        rates[7] / 1e6,
        rates[14] / 1e6
    );
}

fn latency(what: &str, gap: Duration) {
    let mut v = common::private_vgpu(16 << 20);
    let eng = |r: EngineReg| bar2::ENGINE + r.offset();
    v.mmio_write(bar2::GTT, GttEntry::new(0, true).0, 8);
    v.mmio_write(eng(EngineReg::RingSize), 4096, 4);
    v.mmio_write(eng(EngineReg::RingCtl), u64::from(ring_ctl::ENABLE), 4);
    let mut tail = 0u32;
    let rounds = if gap.is_zero() { 3000 } else { 500 };
    let mut samples: Vec<Duration> = (1..=rounds)
        .map(|seqno| {
            std::thread::sleep(gap);
            let dw = Command::Fence {
                seqno,
                interrupt: false,
            }
            .encode();
            for d in &dw {
                // SAFETY: page 0 of the VRAM slice, which the ring uses.
                unsafe { (v.vram_ptr().add(tail as usize) as *mut u32).write_volatile(*d) };
                tail = (tail + 4) % 4096;
            }
            let t = Instant::now();
            v.mmio_write(eng(EngineReg::RingTail), u64::from(tail), 4);
            while v.mmio_read(eng(EngineReg::Seqno), 4).unwrap() != u64::from(seqno) {
                std::hint::spin_loop();
            }
            t.elapsed()
        })
        .collect();
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "latency  tail write to fence, {what}: median {:.1} us, p90 {:.1} us, p99 {:.1} us, best {:.1} us ({} submissions)",
        us(samples[samples.len() / 2]),
        us(samples[samples.len() * 9 / 10]),
        us(samples[samples.len() * 99 / 100]),
        us(samples[0]),
        samples.len()
    );
}

fn main() {
    scanner();
    latency("back to back", Duration::ZERO);
    latency("2 ms apart", Duration::from_millis(2));
}

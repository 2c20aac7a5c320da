//! Engine fill and copy bandwidth for a 1920x1080 rectangle of 32-bit
//! pixels, against memset and memcpy of the same bytes on the same machine.
//!
//!     cargo bench -p rvg-gpu --bench engine
//!
//! The engine runs the command as the GPU's worker does: decoded from a
//! ring, every row translated through the GTT (VRAM pages mapped 1:1), the
//! whole rectangle checked before the first byte is written.

use std::hint::black_box;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use rvg_gpu::gfx_mem::GfxMem;
use rvg_gpu::vram::Vram;
use rvg_model::cmd::Command;
use rvg_model::dma::NoDma;
use rvg_model::engine::{ring_ctl, EngineState, Signal};
use rvg_model::gtt::GttEntry;
use rvg_model::memory::GfxMemory;

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
const PITCH: u32 = WIDTH * 4;
const FRAME: u64 = PITCH as u64 * HEIGHT as u64;
/// Ring at 0, source frame at 16 MiB, destination at 32 MiB.
const SRC: u64 = 16 << 20;
const DST: u64 = 32 << 20;
const VRAM: u64 = 48 << 20;
const ROUNDS: usize = 31;

/// Median and best seconds of `ROUNDS` runs of `f`.
fn measure(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut s: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    s.sort_by(f64::total_cmp);
    (s[ROUNDS / 2], s[0])
}

fn gib_s(secs: f64) -> f64 {
    FRAME as f64 / secs / (1u64 << 30) as f64
}

/// Run one command from a fresh ring.
fn run(mem: &GfxMem, c: Command) {
    let dw = c.encode();
    for (i, d) in dw.iter().enumerate() {
        mem.write(4 * i as u64, &d.to_le_bytes()).unwrap();
    }
    let mut e = EngineState {
        ring_size: 4096,
        tail: 4 * dw.len() as u32,
        ctl: ring_ctl::ENABLE,
        ..Default::default()
    };
    let out = e.run(mem, 1, &|| Signal::Run);
    assert_eq!((out.commands, e.error), (1, 0));
}

fn report(what: &str, engine: (f64, f64), libc: (f64, f64), name: &str) {
    println!(
        "{what:5} engine {:6.2} GiB/s (median {:.3} ms, best {:.3} ms)  {name} {:6.2} GiB/s (median {:.3} ms)  ratio {:.2}",
        gib_s(engine.0),
        engine.0 * 1e3,
        engine.1 * 1e3,
        gib_s(libc.0),
        libc.0 * 1e3,
        libc.0 / engine.0
    );
}

fn main() {
    let vram = Vram::new(VRAM).expect("VRAM");
    let gtt: Vec<AtomicU64> = (0..VRAM / 4096)
        .map(|i| AtomicU64::new(GttEntry::new(i * 4096, true).0))
        .collect();
    let mem = GfxMem {
        gtt: &gtt,
        vram: &vram,
        dma: &NoDma,
    };
    let fill = measure(|| {
        run(
            &mem,
            Command::FillRect {
                dst: DST,
                pitch: PITCH,
                width: WIDTH,
                height: HEIGHT,
                color: 0x00a0_b0c0,
            },
        )
    });
    let copy = measure(|| {
        run(
            &mem,
            Command::CopyRect {
                src: SRC,
                src_pitch: PITCH,
                dst: DST,
                dst_pitch: PITCH,
                width: WIDTH,
                height: HEIGHT,
            },
        )
    });
    // Rows inside a wider surface (2048 pixels): one run per row.
    let wide = PITCH + 128 * 4;
    let fill_pitched = measure(|| {
        run(
            &mem,
            Command::FillRect {
                dst: DST - (8 << 20),
                pitch: wide,
                width: WIDTH,
                height: HEIGHT,
                color: 0x00a0_b0c0,
            },
        )
    });
    let copy_pitched = measure(|| {
        run(
            &mem,
            Command::CopyRect {
                src: SRC - (8 << 20),
                src_pitch: wide,
                dst: DST - (8 << 20),
                dst_pitch: wide,
                width: WIDTH,
                height: HEIGHT,
            },
        )
    });
    // The same bytes with libc, on buffers of the same kind (fresh
    // anonymous mappings, touched once before timing).
    let a = Vram::new(FRAME).expect("buffer");
    let b = Vram::new(FRAME).expect("buffer");
    let (pa, pb) = (a.host_ptr(0).unwrap(), b.host_ptr(0).unwrap());
    // SAFETY: both buffers are FRAME bytes long and distinct.
    let memset = measure(|| unsafe {
        libc::memset(black_box(pa).cast(), 0xa0, FRAME as usize);
    });
    // SAFETY: as above.
    let memcpy = measure(|| unsafe {
        libc::memcpy(black_box(pb).cast(), pa.cast(), FRAME as usize);
    });
    println!("{WIDTH}x{HEIGHT}x32 rectangle, {FRAME} bytes, {ROUNDS} rounds");
    report("fill", fill, memset, "memset");
    report("copy", copy, memcpy, "memcpy");
    println!("in a 2048-pixel-wide surface (row by row):");
    report("fill", fill_pitched, memset, "memset");
    report("copy", copy_pitched, memcpy, "memcpy");
}

//! Display refresh cost, in process, through `Vgpu::display_refresh`: the
//! scanout decision, the dirty checks, reading and comparing lines, and
//! writing the console surface (a buffer standing in for QEMU's).
//!
//!     cargo bench -p rvg-mediator --bench display
//!
//! idle:       a 1920x1080 DISPI mode in VRAM, nothing written since the
//!             last refresh (QEMU's dirty log says clean).
//! full:       a 1920x1080 page flip: the mode pans between two pictures,
//!             so every line is read, differs, and is copied.
//! guest RAM:  a 1920x1080 plane on guest-RAM pages, unchanged: the lines
//!             are compared at every refresh (they are not dirty-logged).

mod common;

use std::hint::black_box;
use std::time::Instant;

use rvg_mediator::display::{DisplayHost, Surface};
use rvg_mediator::{MemKind, Vgpu};
use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, plane_ctl, plane_format, DispiReg, DisplayReg, Register};
use rvg_vfio::HostRange;

const W: u32 = 1920;
const H: u32 = 1080;
const FRAME: u64 = W as u64 * H as u64 * 4;
const RAM_BASE: u64 = 0x1_0000_0000;

/// A console surface; `dirty` is what QEMU's dirty log would answer.
struct Console {
    pixels: Vec<u8>,
    size: (u32, u32),
    dirty: bool,
}

impl DisplayHost for Console {
    fn vram_dirty(&mut self, _: u64, _: u64) -> bool {
        self.dirty
    }
    fn resize(&mut self, width: u32, height: u32) {
        self.size = (width, height);
        self.pixels = vec![0; (width * height * 4) as usize];
    }
    fn surface(&mut self) -> Option<Surface<'_>> {
        Some(Surface {
            pixels: &mut self.pixels,
            width: self.size.0,
            height: self.size.1,
            stride: self.size.0 * 4,
        })
    }
    fn update(&mut self, _: u32, _: u32) {}
}

/// Median and best of `rounds` timings of `f`, in microseconds.
fn measure(rounds: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut us: Vec<f64> = (0..rounds)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_nanos() as f64 / 1000.0
        })
        .collect();
    us.sort_by(f64::total_cmp);
    (us[rounds / 2], us[0])
}

fn dispi(v: &mut Vgpu, reg: DispiReg, value: u64) {
    v.mmio_write(bar2::DISPI + reg.offset(), value, 2);
}

fn main() {
    let mut v = common::private_vgpu(32 << 20);
    v.set_bus_master(true);
    let mut con = Console {
        pixels: Vec::new(),
        size: (0, 0),
        dirty: false,
    };

    // Two different pictures, one above the other in VRAM.
    // SAFETY: the slice holds 32 MiB; two frames take 16.6 MB.
    let vram = unsafe { std::slice::from_raw_parts_mut(v.vram_ptr(), 2 * FRAME as usize) };
    for (i, b) in vram.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    for (reg, value) in [
        (DispiReg::Bpp, 32),
        (DispiReg::Xres, W.into()),
        (DispiReg::Yres, H.into()),
        (DispiReg::VirtWidth, W.into()),
        (DispiReg::Enable, 0x41),
    ] {
        dispi(&mut v, reg, value);
    }
    v.display_refresh(&mut con);
    assert_eq!(con.size, (W, H));

    let (idle, idle_best) = measure(2001, |_| {
        black_box(v.display_refresh(&mut con));
    });
    let before = v.display_stats();
    let (full, full_best) = measure(31, |i| {
        dispi(
            &mut v,
            DispiReg::YOffset,
            if i % 2 == 0 { H.into() } else { 0 },
        );
        black_box(v.display_refresh(&mut con));
    });
    let after = v.display_stats();
    assert_eq!(
        after.lines_updated - before.lines_updated,
        31 * u64::from(H),
        "every line of every flip was copied"
    );

    // The plane on guest RAM pages, mapped page by page.
    let ram = HostRange::anonymous(FRAME.next_multiple_of(4096)).expect("guest RAM stand-in");
    let ram_len = ram.len();
    let fx = v.guest_ram_add(RAM_BASE, ram_len, Some(ram), MemKind::Ram);
    assert!(fx.diags.is_empty(), "{:?}", fx.diags);
    for page in 0..ram_len / 4096 {
        let entry = (RAM_BASE + page * 4096) | GttEntry::VALID;
        v.mmio_write(bar2::GTT + 8 * page, entry, 8);
    }
    let mut plane = |reg: DisplayReg, value: u64| {
        v.mmio_write(bar2::DISPLAY + reg.offset(), value, reg.width() as u32);
    };
    plane(DisplayReg::PlaneFormat, plane_format::XRGB8888.into());
    plane(DisplayReg::PlaneWidth, W.into());
    plane(DisplayReg::PlaneHeight, H.into());
    plane(DisplayReg::PlaneStride, (W * 4).into());
    plane(DisplayReg::PlaneBase, 0);
    plane(DisplayReg::PlaneCtl, plane_ctl::ENABLE.into());
    v.display_refresh(&mut con);
    let before = v.display_stats();
    let (ram_idle, ram_best) = measure(31, |_| {
        black_box(v.display_refresh(&mut con));
    });
    let after = v.display_stats();
    assert_eq!(after.lines_updated, before.lines_updated, "nothing changed");

    println!("display refresh, 1920x1080 XRGB8888 (median / best):");
    println!("  idle, VRAM surface, nothing dirty:  {idle:8.2} us / {idle_best:8.2} us");
    println!("  full update (flip to a new frame):  {full:8.0} us / {full_best:8.0} us");
    println!("  guest-RAM plane, unchanged:         {ram_idle:8.0} us / {ram_best:8.0} us");
}

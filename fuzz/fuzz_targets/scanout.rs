//! What the display shows, from any plane and DISPI register values and
//! any VRAM and graphics space sizes: nothing panics, and a chosen surface
//! is 1 to MAX_DIM pixels a side, its lines at least a row apart, and lies
//! wholly inside VRAM (DISPI) or the graphics space the GTT maps (plane),
//! as `scanout::choose` promises. Converting a line of it works. The EDID
//! of any preferred mode the configuration allows is well formed.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rvg_mediator::display::edid::{self, XRES_MAX, XRES_MIN, YRES_MAX, YRES_MIN};
use rvg_mediator::display::scanout::{choose, Choice, DispiRegs, PlaneRegs, Source, MAX_DIM};

#[derive(Debug, Arbitrary)]
struct Input {
    plane: (u32, u32, u64, u32, u32, u32),
    dispi: (u16, u16, u16, u16, u16, u16, u16, u32),
    vram_size: u64,
    gfx_space: u64,
    mode: (u16, u16),
}

fuzz_target!(|inp: Input| {
    let (ctl, format, base, width, height, stride) = inp.plane;
    let plane = PlaneRegs {
        ctl,
        format,
        base,
        width,
        height,
        stride,
    };
    let (xres, yres, bpp, enable, virt_width, x_offset, y_offset, endian) = inp.dispi;
    let dispi = DispiRegs {
        xres,
        yres,
        bpp,
        enable,
        virt_width,
        x_offset,
        y_offset,
        endian,
    };
    if let Choice::On(s) = choose(&plane, &dispi, inp.vram_size, inp.gfx_space) {
        assert!(
            (1..=MAX_DIM).contains(&s.width) && (1..=MAX_DIM).contains(&s.height),
            "{s}"
        );
        assert!(u64::from(s.stride) >= s.row_bytes(), "{s}");
        let (start, limit) = match s.source {
            Source::Vram { offset } => (offset, inp.vram_size),
            Source::Gfx { base } => (base, inp.gfx_space),
        };
        let end = start
            .checked_add(s.extent())
            .expect("the surface's end is an address");
        assert!(end <= limit, "{s} past {limit:#x}");
        assert_eq!(s.line(s.height - 1) + s.row_bytes(), end);
        let row = vec![0xa5u8; s.row_bytes() as usize];
        let mut out = vec![0u8; 4 * s.width as usize];
        s.format.to_xrgb8888(&row, &mut out);
    }
    let x = XRES_MIN + u32::from(inp.mode.0) % (XRES_MAX - XRES_MIN + 1);
    let y = YRES_MIN + u32::from(inp.mode.1) % (YRES_MAX - YRES_MIN + 1);
    let e = edid::edid(x, y);
    assert_eq!(e[0..8], [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
    assert_eq!(
        e.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
        0,
        "EDID checksum for {x}x{y}"
    );
});

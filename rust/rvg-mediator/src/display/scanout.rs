//! Which surface the display shows: the native plane when it is enabled,
//! else the bochs DISPI mode, else nothing. Pure decisions on register
//! values; every value a guest can write is checked here.

use std::fmt;

use rvg_model::regs::{dispi_enable, plane_ctl, plane_format, QEXT_LITTLE_ENDIAN};

/// Largest surface side the console takes.
pub const MAX_DIM: u32 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// 32 bits x:R:G:B, little endian: the console's own format.
    Xrgb8888,
    /// 16 bits R:G:B 5:6:5, little endian.
    Rgb565,
}

impl PixelFormat {
    pub fn bytes_per_pixel(self) -> u32 {
        match self {
            PixelFormat::Xrgb8888 => 4,
            PixelFormat::Rgb565 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Xrgb8888 => "XRGB8888",
            PixelFormat::Rgb565 => "RGB565",
        }
    }

    /// Convert one row of `self` pixels into the console's XRGB8888.
    pub fn to_xrgb8888(self, src: &[u8], dst: &mut [u8]) {
        match self {
            PixelFormat::Xrgb8888 => dst.copy_from_slice(src),
            PixelFormat::Rgb565 => {
                for (s, d) in src.chunks_exact(2).zip(dst.chunks_exact_mut(4)) {
                    let p = u16::from_le_bytes([s[0], s[1]]);
                    let widen = |v: u16, bits: u32| {
                        let v = v as u32;
                        ((v << (8 - bits)) | (v >> (2 * bits - 8))) as u8
                    };
                    d[0] = widen(p & 0x1f, 5);
                    d[1] = widen((p >> 5) & 0x3f, 6);
                    d[2] = widen(p >> 11, 5);
                    d[3] = 0;
                }
            }
        }
    }
}

/// Where a surface's pixels are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// At an offset of the vGPU's VRAM (the bochs linear framebuffer).
    Vram { offset: u64 },
    /// At a graphics address, page by page through the guest's GTT.
    Gfx { base: u64 },
}

/// A surface to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanout {
    pub source: Source,
    pub width: u32,
    pub height: u32,
    /// Bytes from one line to the next.
    pub stride: u32,
    pub format: PixelFormat,
}

impl Scanout {
    pub fn row_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.format.bytes_per_pixel())
    }

    /// Bytes from the first pixel to one past the last.
    pub fn extent(&self) -> u64 {
        u64::from(self.height - 1) * u64::from(self.stride) + self.row_bytes()
    }

    fn start(&self) -> u64 {
        match self.source {
            Source::Vram { offset } => offset,
            Source::Gfx { base } => base,
        }
    }

    /// Address (VRAM offset or graphics address) of line `y`.
    pub fn line(&self, y: u32) -> u64 {
        self.start() + u64::from(y) * u64::from(self.stride)
    }
}

impl fmt::Display for Scanout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}x{} {} stride={} ",
            self.width,
            self.height,
            self.format.name(),
            self.stride
        )?;
        match self.source {
            Source::Vram { offset } => write!(f, "from dispi vram+{offset:#x}"),
            Source::Gfx { base } => write!(f, "from plane gfx {base:#x}"),
        }
    }
}

/// What the display shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Neither the plane nor DISPI is enabled: a blank screen.
    Off,
    /// The enabled source's settings are unusable: a blank screen, and the
    /// reason logged as a guest error.
    Invalid(String),
    On(Scanout),
}

/// The native plane's registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaneRegs {
    pub ctl: u32,
    pub format: u32,
    pub base: u64,
    pub width: u32,
    pub height: u32,
    pub stride: u32,
}

/// The bochs DISPI mode registers (and the QEMU extended endian register).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispiRegs {
    pub xres: u16,
    pub yres: u16,
    pub bpp: u16,
    pub enable: u16,
    pub virt_width: u16,
    pub x_offset: u16,
    pub y_offset: u16,
    pub endian: u32,
}

/// Decide what to show. `vram_size` bounds DISPI surfaces, `gfx_space` the
/// plane's graphics addresses.
pub fn choose(plane: &PlaneRegs, dispi: &DispiRegs, vram_size: u64, gfx_space: u64) -> Choice {
    if plane.ctl & plane_ctl::ENABLE != 0 {
        return from_plane(plane, gfx_space).map_or_else(Choice::Invalid, Choice::On);
    }
    if dispi.enable & dispi_enable::ENABLED != 0 {
        return from_dispi(dispi, vram_size).map_or_else(Choice::Invalid, Choice::On);
    }
    Choice::Off
}

fn check_size(what: &str, width: u32, height: u32) -> Result<(), String> {
    if width == 0 || height == 0 || width > MAX_DIM || height > MAX_DIM {
        return Err(format!(
            "{what} size {width}x{height}: each side must be 1 to {MAX_DIM}"
        ));
    }
    Ok(())
}

fn from_plane(p: &PlaneRegs, gfx_space: u64) -> Result<Scanout, String> {
    let format = match p.format {
        plane_format::XRGB8888 => PixelFormat::Xrgb8888,
        plane_format::RGB565 => PixelFormat::Rgb565,
        other => {
            return Err(format!(
                "PLANE_FORMAT {other:#010x} is not a supported format (XR24, RG16)"
            ))
        }
    };
    check_size("plane", p.width, p.height)?;
    let s = Scanout {
        source: Source::Gfx { base: p.base },
        width: p.width,
        height: p.height,
        stride: p.stride,
        format,
    };
    if u64::from(p.stride) < s.row_bytes() {
        return Err(format!(
            "PLANE_STRIDE {} is smaller than a line of {} pixels ({} bytes)",
            p.stride,
            p.width,
            s.row_bytes()
        ));
    }
    let bpp = u64::from(format.bytes_per_pixel());
    if !p.base.is_multiple_of(bpp) || !u64::from(p.stride).is_multiple_of(bpp) {
        return Err(format!(
            "PLANE_BASE {:#x} and PLANE_STRIDE {} must be multiples of the pixel size {bpp}",
            p.base, p.stride
        ));
    }
    if p.base
        .checked_add(s.extent())
        .is_none_or(|end| end > gfx_space)
    {
        return Err(format!(
            "plane surface at {:#x}, {} bytes, runs past the {gfx_space:#x} bytes the GTT maps",
            p.base,
            s.extent()
        ));
    }
    Ok(s)
}

fn from_dispi(d: &DispiRegs, vram_size: u64) -> Result<Scanout, String> {
    let format = match d.bpp {
        32 => PixelFormat::Xrgb8888,
        16 => PixelFormat::Rgb565,
        other => {
            return Err(format!(
                "DISPI_BPP {other} is not supported (32 and 16 are)"
            ))
        }
    };
    if d.endian != QEXT_LITTLE_ENDIAN {
        return Err(format!(
            "QEXT_ENDIAN {:#x}: only a little-endian framebuffer is shown",
            d.endian
        ));
    }
    let (width, height) = (u32::from(d.xres), u32::from(d.yres));
    check_size("DISPI", width, height)?;
    // As on bochs hardware, a virtual width below the mode's is the mode's.
    let stride = u32::from(d.virt_width.max(d.xres)) * format.bytes_per_pixel();
    let offset = u64::from(d.y_offset) * u64::from(stride)
        + u64::from(d.x_offset) * u64::from(format.bytes_per_pixel());
    let s = Scanout {
        source: Source::Vram { offset },
        width,
        height,
        stride,
        format,
    };
    if offset + s.extent() > vram_size {
        return Err(format!(
            "DISPI mode {width}x{height} at offset {offset:#x} (stride {stride}) runs past the {vram_size:#x} bytes of VRAM"
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VRAM: u64 = 16 << 20;
    const GFX: u64 = 128 << 20;

    fn dispi(xres: u16, yres: u16, bpp: u16) -> DispiRegs {
        DispiRegs {
            xres,
            yres,
            bpp,
            enable: dispi_enable::ENABLED | dispi_enable::LFB_ENABLED,
            virt_width: xres,
            endian: QEXT_LITTLE_ENDIAN,
            ..Default::default()
        }
    }

    fn plane(base: u64, width: u32, height: u32, stride: u32) -> PlaneRegs {
        PlaneRegs {
            ctl: plane_ctl::ENABLE,
            format: plane_format::XRGB8888,
            base,
            width,
            height,
            stride,
        }
    }

    fn invalid(c: Choice) -> String {
        match c {
            Choice::Invalid(why) => why,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn nothing_enabled_is_off() {
        assert_eq!(
            choose(&PlaneRegs::default(), &DispiRegs::default(), VRAM, GFX),
            Choice::Off
        );
    }

    #[test]
    fn dispi_mode_with_offsets() {
        let mut d = dispi(1024, 768, 32);
        d.virt_width = 1280;
        d.y_offset = 768;
        d.x_offset = 8;
        let Choice::On(s) = choose(&PlaneRegs::default(), &d, VRAM, GFX) else {
            panic!()
        };
        assert_eq!(s.stride, 5120);
        assert_eq!(
            s.source,
            Source::Vram {
                offset: 768 * 5120 + 32
            }
        );
        assert_eq!((s.width, s.height), (1024, 768));
        // A virtual width below xres counts as xres.
        let mut d = dispi(800, 600, 16);
        d.virt_width = 10;
        let Choice::On(s) = choose(&PlaneRegs::default(), &d, VRAM, GFX) else {
            panic!()
        };
        assert_eq!((s.stride, s.format), (1600, PixelFormat::Rgb565));
    }

    #[test]
    fn bad_dispi_settings_are_invalid() {
        let none = PlaneRegs::default();
        assert!(invalid(choose(&none, &dispi(640, 480, 8), VRAM, GFX)).contains("DISPI_BPP 8"));
        assert!(invalid(choose(&none, &dispi(0, 480, 32), VRAM, GFX)).contains("size 0x480"));
        assert!(invalid(choose(&none, &dispi(4097, 480, 32), VRAM, GFX)).contains("4096"));
        let mut d = dispi(1024, 768, 32);
        d.y_offset = 3500;
        assert!(invalid(choose(&none, &d, VRAM, GFX)).contains("past the"));
        let mut d = dispi(1024, 768, 32);
        d.endian = rvg_model::regs::QEXT_BIG_ENDIAN;
        assert!(invalid(choose(&none, &d, VRAM, GFX)).contains("little-endian"));
        // Exactly filling VRAM is fine.
        assert!(matches!(
            choose(&none, &dispi(2048, 2048, 32), VRAM, GFX),
            Choice::On(_)
        ));
    }

    #[test]
    fn the_plane_wins_over_dispi() {
        let p = plane(0x20_0000, 640, 480, 4096);
        let Choice::On(s) = choose(&p, &dispi(1024, 768, 32), VRAM, GFX) else {
            panic!()
        };
        assert_eq!(s.source, Source::Gfx { base: 0x20_0000 });
        assert_eq!(s.line(2), 0x20_0000 + 8192);
        assert_eq!(s.extent(), 479 * 4096 + 2560);
    }

    #[test]
    fn bad_plane_settings_are_invalid() {
        let d = DispiRegs::default();
        let why = |p: PlaneRegs| invalid(choose(&p, &d, VRAM, GFX));
        assert!(why(plane(0, 640, 480, 2556)).contains("smaller than a line"));
        assert!(why(plane(GFX - 4096, 640, 480, 2560)).contains("past the"));
        assert!(why(plane(u64::MAX - 3, 1, 1, 4)).contains("past the"));
        assert!(why(plane(2, 640, 480, 2560)).contains("multiples"));
        assert!(why(plane(0, 0, 480, 2560)).contains("size 0x480"));
        let mut p = plane(0, 640, 480, 2560);
        p.format = 0x1234;
        assert!(why(p).contains("PLANE_FORMAT 0x00001234"));
        // The last byte of the space is usable.
        let p = plane(GFX - 2560 * 480, 640, 480, 2560);
        assert!(matches!(choose(&p, &d, VRAM, GFX), Choice::On(_)));
    }

    #[test]
    fn rgb565_widens_to_full_range() {
        let mut out = [0u8; 8];
        PixelFormat::Rgb565.to_xrgb8888(&[0xff, 0xff, 0x00, 0xf8], &mut out);
        assert_eq!(out, [0xff, 0xff, 0xff, 0, 0x00, 0x00, 0xff, 0]);
        PixelFormat::Rgb565.to_xrgb8888(&[0xe0, 0x07, 0x1f, 0x00], &mut out);
        assert_eq!(out, [0, 0xff, 0, 0, 0xff, 0, 0, 0]);
    }
}

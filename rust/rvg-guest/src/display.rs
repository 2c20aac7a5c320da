//! The visible framebuffer, as bochs-drm programmed the DISPI registers:
//! 32 bpp pixels, rows `VIRT_WIDTH * 4` bytes apart, the top-left visible
//! pixel at `Y_OFFSET * pitch + X_OFFSET * 4` in VRAM.

use crate::error::{bail, Result};

/// DISPI `ENABLE` bit: the mode is set and scanned out.
pub const DISPI_ENABLED: u16 = 0x01;
const BYTES_PER_PIXEL: u64 = 4;

/// The DISPI registers this program reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispiRegs {
    pub id: u16,
    pub xres: u16,
    pub yres: u16,
    pub bpp: u16,
    pub enable: u16,
    pub virt_width: u16,
    pub x_offset: u16,
    pub y_offset: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DisplayMode {
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next.
    pub pitch: u32,
    /// VRAM offset of the top-left visible pixel.
    pub scanout: u64,
}

impl DisplayMode {
    pub fn from_dispi(d: &DispiRegs, vram_size: u64) -> Result<DisplayMode> {
        if d.enable & DISPI_ENABLED == 0 {
            bail!(
                "DISPI display is not enabled (ENABLE={:#06x}): is bochs-drm bound?",
                d.enable
            );
        }
        if d.bpp != 32 {
            bail!("DISPI mode is {} bpp; only 32 bpp is supported", d.bpp);
        }
        if d.xres == 0 || d.yres == 0 {
            bail!("DISPI mode is {}x{}", d.xres, d.yres);
        }
        if d.virt_width < d.xres {
            bail!(
                "DISPI VIRT_WIDTH {} is less than XRES {}",
                d.virt_width,
                d.xres
            );
        }
        let pitch = u64::from(d.virt_width) * BYTES_PER_PIXEL;
        let mode = DisplayMode {
            width: u32::from(d.xres),
            height: u32::from(d.yres),
            pitch: pitch as u32,
            scanout: u64::from(d.y_offset) * pitch + u64::from(d.x_offset) * BYTES_PER_PIXEL,
        };
        if mode.scanout + mode.span() > vram_size {
            bail!(
                "visible framebuffer [{:#x}, {:#x}) runs past VRAM ({vram_size:#x} bytes)",
                mode.scanout,
                mode.scanout + mode.span()
            );
        }
        Ok(mode)
    }

    /// Bytes from the first visible pixel to just past the last one.
    pub fn span(&self) -> u64 {
        u64::from(self.pitch) * u64::from(self.height - 1) + u64::from(self.width) * BYTES_PER_PIXEL
    }

    /// Offset of pixel (x, y) from the first visible pixel.
    pub fn pixel_offset(&self, x: u32, y: u32) -> u64 {
        u64::from(y) * u64::from(self.pitch) + u64::from(x) * BYTES_PER_PIXEL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bochs(xres: u16, yres: u16) -> DispiRegs {
        DispiRegs {
            id: 0xb0c5,
            xres,
            yres,
            bpp: 32,
            enable: 0x41,
            virt_width: xres,
            x_offset: 0,
            y_offset: 0,
        }
    }

    #[test]
    fn mode_from_registers() {
        let m = DisplayMode::from_dispi(&bochs(1024, 768), 64 << 20).unwrap();
        assert_eq!(
            (m.width, m.height, m.pitch, m.scanout),
            (1024, 768, 4096, 0)
        );
        assert_eq!(m.span(), 4096 * 768);
        assert_eq!(m.pixel_offset(3, 2), 2 * 4096 + 12);
    }

    #[test]
    fn panned_and_padded_framebuffer() {
        // bochs-drm pans by splitting a buffer's offset into X/Y offsets.
        let mut d = bochs(800, 600);
        d.virt_width = 832;
        d.y_offset = 600;
        d.x_offset = 16;
        let m = DisplayMode::from_dispi(&d, 64 << 20).unwrap();
        assert_eq!(m.pitch, 3328);
        assert_eq!(m.scanout, 600 * 3328 + 64);
    }

    #[test]
    fn refuses_what_it_cannot_draw_on() {
        let mut d = bochs(1024, 768);
        d.enable = 0;
        assert!(DisplayMode::from_dispi(&d, 64 << 20)
            .unwrap_err()
            .to_string()
            .contains("not enabled"));
        let mut d = bochs(1024, 768);
        d.bpp = 16;
        assert!(DisplayMode::from_dispi(&d, 64 << 20)
            .unwrap_err()
            .to_string()
            .contains("16 bpp"));
        let mut d = bochs(1024, 768);
        d.virt_width = 1000;
        assert!(DisplayMode::from_dispi(&d, 64 << 20).is_err());
        assert!(DisplayMode::from_dispi(&bochs(1024, 768), 2 << 20)
            .unwrap_err()
            .to_string()
            .contains("past VRAM"));
    }
}

//! The EDID blob of the vGPU's monitor (VESA E-EDID 1.4, base block only):
//! what a guest driver reads from BAR2 `0x000` to learn the modes it may
//! set. The preferred mode is the device's `xres` x `yres`.

/// Bytes in an EDID block.
pub const EDID_BLOCK: usize = 128;

/// Largest preferred mode a detailed timing describes within its pixel
/// clock field at 60 Hz (and 12-bit active fields).
pub const XRES_MAX: u32 = 4000;
pub const YRES_MAX: u32 = 2400;
pub const XRES_MIN: u32 = 320;
pub const YRES_MIN: u32 = 200;

/// Horizontal blanking (front porch, sync, back porch) of reduced-blanking
/// timings; what a virtual monitor uses matters only for its arithmetic.
const H_FRONT: u32 = 48;
const H_SYNC: u32 = 32;
const H_BLANK: u32 = 160;
const V_FRONT: u32 = 3;
const V_SYNC: u32 = 6;
const V_BLANK: u32 = 30;
const REFRESH_HZ: u32 = 60;
/// Physical size from a 96 dpi screen, in millimetres.
fn size_mm(pixels: u32) -> u32 {
    pixels * 254 / 960
}

/// Three letters packed as EDID manufacturer IDs are: 5 bits each, big endian.
fn manufacturer(id: &[u8; 3]) -> [u8; 2] {
    let v = id
        .iter()
        .fold(0u16, |acc, &c| (acc << 5) | u16::from(c - b'A' + 1));
    v.to_be_bytes()
}

/// Chromaticity coordinates as 10-bit fractions (sRGB primaries, D65 white).
fn chromaticity() -> [u8; 10] {
    let xy = [
        (0.640, 0.330),   // red
        (0.300, 0.600),   // green
        (0.150, 0.060),   // blue
        (0.3127, 0.3290), // white
    ];
    let bits: Vec<(u16, u16)> = xy
        .iter()
        .map(|&(x, y): &(f64, f64)| {
            (
                (x * 1024.0).round() as u16 & 0x3ff,
                (y * 1024.0).round() as u16 & 0x3ff,
            )
        })
        .collect();
    let lo = |v: u16| (v & 3) as u8;
    let [r, g, b, w] = [bits[0], bits[1], bits[2], bits[3]];
    [
        (lo(r.0) << 6) | (lo(r.1) << 4) | (lo(g.0) << 2) | lo(g.1),
        (lo(b.0) << 6) | (lo(b.1) << 4) | (lo(w.0) << 2) | lo(w.1),
        (r.0 >> 2) as u8,
        (r.1 >> 2) as u8,
        (g.0 >> 2) as u8,
        (g.1 >> 2) as u8,
        (b.0 >> 2) as u8,
        (b.1 >> 2) as u8,
        (w.0 >> 2) as u8,
        (w.1 >> 2) as u8,
    ]
}

/// An 18-byte detailed timing descriptor for `xres` x `yres` at 60 Hz.
fn detailed_timing(xres: u32, yres: u32) -> [u8; 18] {
    let clock_10khz = ((xres + H_BLANK) * (yres + V_BLANK) * REFRESH_HZ).div_ceil(10_000);
    let (w_mm, h_mm) = (size_mm(xres), size_mm(yres));
    let c = clock_10khz.to_le_bytes();
    let lo = |v: u32| (v & 0xff) as u8;
    let hi4 = |v: u32| ((v >> 8) & 0xf) as u8;
    [
        c[0],
        c[1],
        lo(xres),
        lo(H_BLANK),
        (hi4(xres) << 4) | hi4(H_BLANK),
        lo(yres),
        lo(V_BLANK),
        (hi4(yres) << 4) | hi4(V_BLANK),
        lo(H_FRONT),
        lo(H_SYNC),
        (((V_FRONT & 0xf) << 4) | (V_SYNC & 0xf)) as u8,
        (((H_FRONT >> 8) & 3) << 6 | ((H_SYNC >> 8) & 3) << 4) as u8,
        lo(w_mm),
        lo(h_mm),
        (hi4(w_mm) << 4) | hi4(h_mm),
        0,
        0,
        // Digital separate sync, horizontal sync positive.
        0x1a,
    ]
}

/// A display descriptor of `tag` holding `text` (newline-terminated,
/// space-padded to 13 bytes).
fn text_descriptor(tag: u8, text: &str) -> [u8; 18] {
    let mut d = [0u8; 18];
    d[3] = tag;
    let mut body = [b' '; 13];
    let n = text.len().min(12);
    body[..n].copy_from_slice(&text.as_bytes()[..n]);
    body[n] = b'\n';
    d[5..].copy_from_slice(&body);
    d
}

/// The EDID base block for a monitor whose preferred mode is `xres` x `yres`.
/// The caller checked the mode against the limits above.
pub fn edid(xres: u32, yres: u32) -> [u8; EDID_BLOCK] {
    debug_assert!((XRES_MIN..=XRES_MAX).contains(&xres));
    debug_assert!((YRES_MIN..=YRES_MAX).contains(&yres));
    let mut e = [0u8; EDID_BLOCK];
    e[0..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    e[8..10].copy_from_slice(&manufacturer(b"RVG"));
    e[10..12].copy_from_slice(&1u16.to_le_bytes()); // product code
    e[16] = 0; // week unspecified
    e[17] = (2026 - 1990) as u8;
    e[18] = 1; // EDID 1.4
    e[19] = 4;
    e[20] = 0x80; // digital input
    e[21] = (size_mm(xres) / 10) as u8;
    e[22] = (size_mm(yres) / 10) as u8;
    e[23] = 120; // gamma 2.2
    e[24] = 0x06; // sRGB, preferred timing is the native mode
    e[25..35].copy_from_slice(&chromaticity());
    // Established timings that fit inside the preferred mode.
    let fits = |w, h| w <= xres && h <= yres;
    if fits(640, 480) {
        e[35] |= 0x20;
    }
    if fits(800, 600) {
        e[35] |= 0x01;
    }
    if fits(1024, 768) {
        e[36] |= 0x08;
    }
    // No standard timings.
    for slot in e[38..54].chunks_mut(2) {
        slot.copy_from_slice(&[0x01, 0x01]);
    }
    e[54..72].copy_from_slice(&detailed_timing(xres, yres));
    e[72..90].copy_from_slice(&text_descriptor(0xfc, "RVG-1"));
    e[90..108].copy_from_slice(&text_descriptor(0xff, "0"));
    e[108..126].copy_from_slice(&{
        let mut dummy = [0u8; 18];
        dummy[3] = 0x10;
        dummy
    });
    e[126] = 0; // no extension blocks
    e[127] = 0u8.wrapping_sub(e[..127].iter().fold(0u8, |a, &b| a.wrapping_add(b)));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preferred mode as a driver decodes the first detailed timing.
    fn preferred(e: &[u8; EDID_BLOCK]) -> (u32, u32, u32) {
        let d = &e[54..72];
        let clock = u32::from(u16::from_le_bytes([d[0], d[1]])) * 10_000;
        let w = u32::from(d[2]) | (u32::from(d[4] >> 4) << 8);
        let hb = u32::from(d[3]) | (u32::from(d[4] & 0xf) << 8);
        let h = u32::from(d[5]) | (u32::from(d[7] >> 4) << 8);
        let vb = u32::from(d[6]) | (u32::from(d[7] & 0xf) << 8);
        (w, h, clock / ((w + hb) * (h + vb)))
    }

    #[test]
    fn header_version_and_checksum() {
        for (x, y) in [(1024, 768), (1920, 1080), (320, 200), (4000, 2400)] {
            let e = edid(x, y);
            assert_eq!(e[..8], [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
            assert_eq!((e[18], e[19]), (1, 4));
            assert_eq!(e.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
        }
    }

    #[test]
    fn preferred_mode_is_the_configured_one_at_60hz() {
        for (x, y) in [(1024, 768), (1280, 800), (1920, 1080), (4000, 2400)] {
            assert_eq!(preferred(&edid(x, y)), (x, y, 60));
        }
        // The pixel clock field holds the largest mode allowed.
        let d = detailed_timing(XRES_MAX, YRES_MAX);
        assert!(u16::from_le_bytes([d[0], d[1]]) < u16::MAX);
    }

    #[test]
    fn established_modes_fit_the_preferred_one() {
        let e = edid(800, 600);
        assert_eq!((e[35], e[36]), (0x21, 0));
        let e = edid(1920, 1080);
        assert_eq!((e[35], e[36]), (0x21, 0x08));
    }

    #[test]
    fn manufacturer_and_name() {
        let e = edid(1024, 768);
        // "RVG": R=18, V=22, G=7.
        assert_eq!(u16::from_be_bytes([e[8], e[9]]), (18 << 10) | (22 << 5) | 7);
        assert_eq!(e[75], 0xfc);
        assert_eq!(&e[77..83], b"RVG-1\n");
    }
}

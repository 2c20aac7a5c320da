use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

use super::*;

const VRAM: u64 = 4 << 20;

/// VRAM and guest-RAM pages behind a page table, like the vGPU's.
struct Mem {
    vram: Vec<u8>,
    pages: HashMap<u64, GfxPage>,
    /// Contents of guest RAM pages, by graphics page index.
    ram: HashMap<u64, Vec<u8>>,
    ram_reads: Cell<u64>,
}

impl Mem {
    fn new() -> Mem {
        Mem {
            vram: vec![0; VRAM as usize],
            pages: HashMap::new(),
            ram: HashMap::new(),
            ram_reads: Cell::new(0),
        }
    }

    fn poke_vram(&mut self, offset: u64, pixel: u32) {
        let o = offset as usize;
        self.vram[o..o + 4].copy_from_slice(&pixel.to_le_bytes());
    }
}

impl FrameMemory for Mem {
    fn gfx_page(&self, index: u64) -> GfxPage {
        *self.pages.get(&index).unwrap_or(&GfxPage::Unmapped)
    }
    fn read_vram(&self, offset: u64, buf: &mut [u8]) {
        buf.copy_from_slice(&self.vram[offset as usize..offset as usize + buf.len()]);
    }
    fn read_gfx(&self, mut addr: u64, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            let (index, within) = (addr / PAGE_SIZE, (addr % PAGE_SIZE) as usize);
            *b = match self.gfx_page(index) {
                GfxPage::Vram { offset } => self.vram[offset as usize + within],
                GfxPage::Ram => {
                    self.ram_reads.set(self.ram_reads.get() + 1);
                    self.ram[&index][within]
                }
                GfxPage::Unmapped => 0,
            };
            addr += 1;
        }
    }
}

/// A console: its surface, the VRAM pages CPU writes dirtied, what was
/// reported.
#[derive(Default)]
struct Console {
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    dirty: BTreeSet<u64>,
    dirty_checks: u64,
    resizes: Vec<(u32, u32)>,
    updates: Vec<(u32, u32)>,
}

impl Console {
    fn pixel(&self, x: u32, y: u32) -> u32 {
        let o = ((y * self.width + x) * 4) as usize;
        u32::from_le_bytes(self.pixels[o..o + 4].try_into().unwrap())
    }
}

impl DisplayHost for Console {
    fn vram_dirty(&mut self, offset: u64, len: u64) -> bool {
        self.dirty_checks += 1;
        (offset / PAGE_SIZE..(offset + len).div_ceil(PAGE_SIZE)).any(|p| self.dirty.contains(&p))
    }
    fn resize(&mut self, width: u32, height: u32) {
        // A new surface starts with garbage, not black: the display must
        // not rely on it.
        self.pixels = vec![0x5a; (width * height * 4) as usize];
        (self.width, self.height) = (width, height);
        self.resizes.push((width, height));
    }
    fn surface(&mut self) -> Option<Surface<'_>> {
        Some(Surface {
            pixels: &mut self.pixels,
            width: self.width,
            height: self.height,
            stride: self.width * 4,
        })
    }
    fn update(&mut self, y: u32, height: u32) {
        self.updates.push((y, height));
    }
}

/// A frame showing `source`, before any engine progress or GTT change.
fn frame(source: Source, width: u32, height: u32, stride: u32, format: PixelFormat) -> Frame {
    Frame {
        choice: Choice::On(Scanout {
            source,
            width,
            height,
            stride,
            format,
        }),
        engine_progress: 0,
        gtt_generation: 0,
    }
}

fn dispi_frame(width: u32, height: u32, offset: u64) -> Frame {
    frame(
        Source::Vram { offset },
        width,
        height,
        width * 4,
        PixelFormat::Xrgb8888,
    )
}

/// One refresh as the vGPU runs it.
fn refresh(d: &mut Display, f: &Frame, mem: &Mem, con: &mut Console) -> Option<String> {
    let prepared = d.prepare(f);
    if let Some((w, h)) = prepared.resize {
        con.resize(w, h);
    }
    let logged = prepared.guest_error;
    for (y, n) in d.draw(f, mem, con) {
        con.update(y, n);
    }
    logged
}

#[test]
fn first_refresh_sizes_the_console_and_copies_everything() {
    let mut mem = Mem::new();
    for i in 0..64 * 48 {
        mem.poke_vram(0x1000 + 4 * i, 0x0010_0000 + i as u32);
    }
    let (mut d, mut con) = (Display::default(), Console::default());
    refresh(&mut d, &dispi_frame(64, 48, 0x1000), &mem, &mut con);
    assert_eq!(con.resizes, [(64, 48)]);
    assert_eq!(con.updates, [(0, 48)]);
    assert_eq!(con.pixel(0, 0), 0x0010_0000);
    assert_eq!(con.pixel(63, 47), 0x0010_0000 + 64 * 48 - 1);
}

#[test]
fn an_unchanged_vram_surface_costs_one_dirty_check() {
    let mem = Mem::new();
    let (mut d, mut con) = (Display::default(), Console::default());
    let f = dispi_frame(640, 480, 0);
    refresh(&mut d, &f, &mem, &mut con);
    let (compared, checks) = (d.stats().lines_compared, con.dirty_checks);
    con.updates.clear();
    for _ in 0..10 {
        refresh(&mut d, &f, &mem, &mut con);
    }
    assert_eq!(d.stats().lines_compared, compared, "no line read");
    assert_eq!(con.dirty_checks - checks, 10, "one check per refresh");
    assert!(con.updates.is_empty());
    assert_eq!(d.stats().refreshes, 11);
}

#[test]
fn cpu_writes_redraw_their_lines_only() {
    let mut mem = Mem::new();
    let (mut d, mut con) = (Display::default(), Console::default());
    let f = dispi_frame(1024, 16, 0); // 4 KiB lines: one page each
    refresh(&mut d, &f, &mem, &mut con);
    let compared = d.stats().lines_compared;
    con.updates.clear();
    mem.poke_vram(5 * 4096 + 40, 0x00ff_8000);
    con.dirty.insert(5);
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(con.updates, [(5, 1)]);
    assert_eq!(d.stats().lines_compared - compared, 1);
    assert_eq!(con.pixel(10, 5), 0x00ff_8000);
}

#[test]
fn engine_progress_compares_everything_and_reports_what_differs() {
    let mut mem = Mem::new();
    let (mut d, mut con) = (Display::default(), Console::default());
    let mut f = dispi_frame(256, 100, 0);
    refresh(&mut d, &f, &mem, &mut con);
    con.updates.clear();
    // The engine filled lines 10-19: no dirty log saw it.
    for y in 10..20 {
        for x in 0..256 {
            mem.poke_vram((y * 256 + x) * 4, 0x0000_00ff);
        }
    }
    refresh(&mut d, &f, &mem, &mut con);
    assert!(con.updates.is_empty(), "nothing known to have changed");
    f.engine_progress = 1;
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(con.updates, [(10, 10)]);
    assert_eq!(con.pixel(255, 19), 0xff);
}

#[test]
fn plane_pages_in_vram_and_guest_ram() {
    let mut mem = Mem::new();
    // Graphics pages 16-17: VRAM page 3, then a guest RAM page.
    mem.pages.insert(16, GfxPage::Vram { offset: 0x3000 });
    mem.pages.insert(17, GfxPage::Ram);
    mem.ram.insert(17, vec![0; 4096]);
    mem.poke_vram(0x3000, 0x0011_2233);
    mem.ram.get_mut(&17).unwrap()[..4].copy_from_slice(&0x0044_5566u32.to_le_bytes());
    // Line 2 lies on an unmapped page.
    let f = frame(
        Source::Gfx { base: 16 * 4096 },
        1024,
        3,
        4096,
        PixelFormat::Xrgb8888,
    );
    let (mut d, mut con) = (Display::default(), Console::default());
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(con.pixel(0, 0), 0x0011_2233);
    assert_eq!(con.pixel(0, 1), 0x0044_5566);
    assert_eq!(con.pixel(0, 2), 0, "unmapped reads black");
    assert_eq!(con.pixel(1023, 2), 0);
    // Guest RAM is compared every refresh; the VRAM line is not re-read.
    let reads = mem.ram_reads.get();
    con.updates.clear();
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(mem.ram_reads.get() - reads, 4096);
    assert!(con.updates.is_empty());
    mem.ram.get_mut(&17).unwrap()[8] = 0x77;
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(con.updates, [(1, 1)]);
    assert_eq!(con.pixel(2, 1), 0x77);
}

#[test]
fn a_gtt_change_rereads_the_surface() {
    let mut mem = Mem::new();
    mem.pages.insert(0, GfxPage::Vram { offset: 0 });
    let mut f = frame(Source::Gfx { base: 0 }, 16, 1, 64, PixelFormat::Xrgb8888);
    let (mut d, mut con) = (Display::default(), Console::default());
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(con.pixel(0, 0), 0);
    mem.poke_vram(0x5000, 0xabcdef);
    mem.pages.insert(0, GfxPage::Vram { offset: 0x5000 });
    f.gtt_generation = 1;
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(con.pixel(0, 0), 0xabcdef);
}

#[test]
fn off_and_invalid_show_black_and_log_once() {
    let mut mem = Mem::new();
    mem.poke_vram(0, 0x00ff_ffff);
    let (mut d, mut con) = (Display::default(), Console::default());
    refresh(&mut d, &dispi_frame(32, 8, 0), &mem, &mut con);
    assert_eq!(con.pixel(0, 0), 0x00ff_ffff);
    let off = Frame {
        choice: Choice::Off,
        engine_progress: 0,
        gtt_generation: 0,
    };
    assert_eq!(refresh(&mut d, &off, &mem, &mut con), None);
    assert_eq!(con.resizes, [(32, 8)], "the size stays");
    assert!(con.pixels.iter().all(|&b| b == 0));
    assert_eq!(d.describe(), "off");
    let bad = Frame {
        choice: Choice::Invalid("PLANE_STRIDE 4 is smaller".into()),
        ..off.clone()
    };
    con.pixels.fill(9);
    let logged = refresh(&mut d, &bad, &mem, &mut con);
    assert_eq!(
        logged.as_deref(),
        Some("display blank: PLANE_STRIDE 4 is smaller")
    );
    assert!(con.pixels.iter().all(|&b| b == 0));
    assert_eq!(refresh(&mut d, &bad, &mem, &mut con), None, "logged once");
    // Power-on: a blank console of the default size.
    let (mut d, mut con) = (Display::default(), Console::default());
    refresh(&mut d, &off, &mem, &mut con);
    assert_eq!(con.resizes, [BLANK_SIZE]);
    assert!(con.pixels.iter().all(|&b| b == 0));
}

#[test]
fn mode_changes_resize_and_invalidate_redraws() {
    let mem = Mem::new();
    let (mut d, mut con) = (Display::default(), Console::default());
    refresh(&mut d, &dispi_frame(64, 32, 0), &mem, &mut con);
    refresh(&mut d, &dispi_frame(128, 64, 0), &mem, &mut con);
    assert_eq!(con.resizes, [(64, 32), (128, 64)]);
    con.updates.clear();
    let updated = d.stats().lines_updated;
    d.invalidate();
    refresh(&mut d, &dispi_frame(128, 64, 0), &mem, &mut con);
    assert_eq!(con.updates, [(0, 64)], "a new client gets every line");
    assert_eq!(d.stats().lines_updated, updated, "none of them differed");
}

#[test]
fn rgb565_plane_is_converted() {
    let mut mem = Mem::new();
    mem.pages.insert(0, GfxPage::Vram { offset: 0 });
    mem.vram[..4].copy_from_slice(&[0x00, 0xf8, 0xe0, 0x07]); // red, green
    let f = frame(Source::Gfx { base: 0 }, 2, 1, 4, PixelFormat::Rgb565);
    let (mut d, mut con) = (Display::default(), Console::default());
    refresh(&mut d, &f, &mem, &mut con);
    assert_eq!(
        (con.pixel(0, 0), con.pixel(1, 0)),
        (0x00ff_0000, 0x0000_ff00)
    );
}

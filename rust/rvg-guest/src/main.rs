//! rvg-demo: drives an RVG-1 vGPU's engine from Linux guest user space.
//!
//! Runs as root in a guest where bochs-drm drives the vGPU's display and the
//! kernel was booted with `iomem=relaxed` (so the BARs can be mapped beside
//! the bound driver). It finds the vGPU in sysfs, turns on bus mastering,
//! maps BAR0 (VRAM) and BAR2 (registers, GTT) through `resource0`/`resource2`,
//! maps its own locked guest pages and the visible framebuffer into the GTT,
//! runs command streams on the engine (stores, fences, a batch, fills and
//! copies, a ring that wraps, a deliberate fault), checks every result, and
//! leaves a picture drawn entirely by the engine in the lower-right part of
//! the screen. Usage: `rvg-demo [--device BDF] [--timeout SECONDS]`.
//!
//! # Output
//!
//! Everything goes to stdout, one fact per line, each line starting with
//! `rvg-demo: `. The last line is `rvg-demo: PASS` (exit status 0) or
//! `rvg-demo: FAIL <reason>` (exit status 1), the reason naming the first
//! thing that went wrong (for a pixel: where, expected, got).
//!
//! # Picture manifest
//!
//! Lines `rvg-demo: picture: ...` describe what was drawn, in screen
//! coordinates of the visible framebuffer (x right, y down, pixels), so a
//! host-side test can check a screenshot exactly. In order:
//!
//! - `picture: screen W H`: the visible mode.
//! - `picture: fill X Y W H RRGGBB`: a solid rectangle.
//! - `picture: copy X Y W H checker CELL RRGGBB RRGGBB`: a tile copied by the
//!   engine; pixel (x, y) relative to the tile's top-left corner is the
//!   first colour if `(x / CELL + y / CELL)` is even, else the second.
//! - `picture: copy X Y W H gradient`: a copied tile whose pixel (x, y)
//!   relative to its top-left corner has red `255 * x / (W - 1)`, green
//!   `255 * y / (H - 1)` (integer division) and blue `0x80`.
//! - `picture: end N`: N region lines came before it.
//!
//! Regions are listed in drawing order and later lines win where they
//! overlap (the panel's border and background come first, everything else
//! lies on the background without overlapping). Colours are 0xRRGGBB in
//! lower-case hex; in VRAM each pixel is XRGB8888, little endian (bytes B,
//! G, R, X), with X written as 0. Pixels outside the regions are not ours.

mod bar;
mod checks;
mod device;
mod display;
mod dma;
mod engine;
mod error;
mod glyph;
mod gtt;
mod picture;
mod ring;
mod sysfs;

use std::path::Path;
use std::time::Duration;

use rvg_model::cmd::{Command, PIXEL_BYTES};
use rvg_model::engine::error as engine_error;
use rvg_model::irq::IntSource;
use rvg_model::regs::{bar2, GlobalReg};

use crate::bar::MappedBar;
use crate::checks::{first_dword_mismatch, Canvas};
use crate::device::{Device, Identity};
use crate::display::DisplayMode;
use crate::dma::DmaBuffer;
use crate::engine::{error_name, Engine};
use crate::error::{bail, Context, Error, Result};
use crate::gtt::{Backing, GttMapping, GttPlan, GttRegion};
use crate::picture::{Pattern, Picture, Rect, Region, Source};

/// One line of output.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("rvg-demo: {}", format_args!($($arg)*))
    };
}

// After `say!`, which it uses.
mod redraw;

const RING_BYTES: u64 = 16 * 1024;
const BATCH_BYTES: u64 = 16 * 1024;
const RESULTS_BYTES: u64 = 4096;
/// Written into result slots before a test, so "unchanged" never passes.
const POISON: u32 = 0xdead_beef;

/// Results page slots (dwords).
const STORE_SLOTS: usize = 16;
const SLOT_BATCH_DONE: usize = 16;
const SLOT_PICTURE_DONE: usize = 17;
const WRAP_FIRST_SLOT: usize = 64;
const WRAP_SLOTS: usize = 256;

const USAGE: &str = "usage: rvg-demo [--device BDF] [--timeout SECONDS] [--redraw SECONDS]\n\
    Drives the RVG-1 vGPU's engine through sysfs (as root) and draws a picture;\n\
    --redraw clears and draws it again, checked each time, for that long.";

struct Options {
    device: Option<String>,
    timeout: Duration,
    redraw: Option<Duration>,
}

/// The value of `option`: a positive number of seconds.
fn seconds(option: &str, value: Option<String>) -> Result<Duration> {
    let v = value.with_context(|| format!("{option} needs seconds"))?;
    let secs: f64 = v
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0 && s.is_finite())
        .with_context(|| format!("{option} {v:?}: expected a positive number of seconds"))?;
    Ok(Duration::from_secs_f64(secs))
}

/// None: help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>> {
    let mut opts = Options {
        device: None,
        timeout: Duration::from_secs(10),
        redraw: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => opts.device = Some(args.next().context("--device needs a PCI address")?),
            "--timeout" => opts.timeout = seconds(&arg, args.next())?,
            "--redraw" => opts.redraw = Some(seconds(&arg, args.next())?),
            "-h" | "--help" => return Ok(None),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(opts))
}

fn main() {
    let status = match parse_args(std::env::args().skip(1)) {
        Ok(None) => {
            println!("{USAGE}");
            0
        }
        // A panic is a bug here, but still a FAIL line for whoever reads
        // the console; unwinding has stopped the engine and cleared the GTT.
        Ok(Some(opts)) => match std::panic::catch_unwind(|| run(&opts)) {
            Ok(Ok(())) => {
                say!("PASS");
                0
            }
            Ok(Err(e)) => {
                say!("FAIL {e}");
                1
            }
            Err(_) => {
                say!("FAIL internal error (panic, see above)");
                1
            }
        },
        Err(e) => {
            say!("FAIL {e}");
            1
        }
    };
    std::process::exit(status);
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

fn run(opts: &Options) -> Result<()> {
    let (dev, id) = open_device(opts)?;

    let dispi = dev.dispi();
    let mode = DisplayMode::from_dispi(&dispi, id.vram_size)?;
    say!(
        "display {}x{} 32 bpp, pitch {} bytes, scanout at VRAM offset {:#x} (DISPI ID {:#06x}, ENABLE {:#04x}, VIRT_WIDTH {}, X_OFFSET {}, Y_OFFSET {})",
        mode.width,
        mode.height,
        mode.pitch,
        mode.scanout,
        dispi.id,
        dispi.enable,
        dispi.virt_width,
        dispi.x_offset,
        dispi.y_offset
    );
    let picture = Picture::layout(mode.width, mode.height).map_err(Error::msg)?;
    let p = picture.panel;
    say!("picture panel {}x{} at ({}, {})", p.w, p.h, p.x, p.y);

    let (plan, layout) = plan_gtt(&picture, &mode, id.gtt_entries)?;
    let dma = DmaBuffer::alloc(plan.dma_pages())?;
    say!(
        "dma {} pages of guest RAM locked, {} physically contiguous runs, first page at {:#x}",
        dma.pages(),
        dma::contiguous_runs(dma.phys()),
        dma.phys()[0]
    );
    let gtt = program_gtt(&dev, &plan, &dma)?;

    let engine = Engine::start(&dev, &layout.ring, opts.timeout)?;
    say!(
        "ring {} at graphics address {:#x}: RING_CTL reset then enabled, head 0, SEQNO {}",
        mib(layout.ring.bytes()),
        layout.ring.gfx(),
        engine.seqno()
    );

    let mut demo = Demo {
        engine,
        gtt,
        dma,
        dev: &dev,
        mode,
        layout,
    };
    demo.store_dwords()?;
    demo.fills_and_copies(&picture)?;
    demo.ring_wrap()?;
    demo.draw_picture(&picture)?;
    if let Some(how_long) = opts.redraw {
        demo.redraw(&picture, how_long)?;
    }
    demo.fault_and_recover()?;
    demo.finish()
}

/// Find the vGPU, let it master the bus, map its BARs, check its identity.
fn open_device(opts: &Options) -> Result<(Device, Identity)> {
    let found = sysfs::find_vgpu(Path::new(sysfs::PCI_DEVICES), opts.device.as_deref())?;
    let pci = &found.device;
    say!("device {} {}", pci.bdf, pci.ids);
    for s in &found.skipped {
        say!("skipped {s}");
    }
    let (before, after) = sysfs::enable_memory_and_bus_master(pci)?;
    say!("command register {before:#06x} -> {after:#06x} (memory space and bus master on)");

    let resources = sysfs::read_resources(pci)?;
    let bar = |i: usize| -> Result<sysfs::Resource> {
        let r = *resources
            .get(i)
            .with_context(|| format!("{}: no BAR{i} in sysfs", pci.bdf))?;
        if !r.is_memory() || r.size == 0 {
            bail!("{}: BAR{i} is not an assigned memory BAR ({r:?})", pci.bdf);
        }
        Ok(r)
    };
    let (bar0, bar2_res) = (bar(0)?, bar(2)?);
    if bar2_res.size != bar2::SIZE {
        bail!(
            "BAR2 is {:#x} bytes, expected {:#x}",
            bar2_res.size,
            bar2::SIZE
        );
    }
    let vram = MappedBar::map(&pci.dir.join("resource0"), bar0.size)?;
    say!(
        "BAR0 VRAM at {:#x}, {}, {}: mapped",
        bar0.start,
        mib(bar0.size),
        bar0.describe()
    );
    let mmio = MappedBar::map(&pci.dir.join("resource2"), bar2_res.size)?;
    say!(
        "BAR2 registers and GTT at {:#x}, {}, {}: mapped",
        bar2_res.start,
        mib(bar2_res.size),
        bar2_res.describe()
    );
    let dev = Device { vram, mmio };

    let id = dev.identity();
    id.check(bar0.size)?;
    say!(
        "ID {:#010x} (RVG1), VERSION {}.{}, VRAM_SIZE {:#x} ({}), GTT_ENTRIES {}",
        id.id,
        id.version >> 16,
        id.version & 0xffff,
        id.vram_size,
        mib(id.vram_size),
        id.gtt_entries
    );
    Ok((dev, id))
}

/// Where things are in graphics address space.
struct Layout {
    ring: GttRegion,
    batch: GttRegion,
    results: GttRegion,
    /// One per `Picture::tiles` entry.
    tiles: Vec<GttRegion>,
    /// An unmapped page, for the fault check.
    hole: GttRegion,
    /// Graphics address of the top-left visible pixel.
    fb_gfx: u64,
}

/// Our pages, a hole, then the visible framebuffer.
fn plan_gtt(picture: &Picture, mode: &DisplayMode, gtt_entries: u32) -> Result<(GttPlan, Layout)> {
    let mut plan = GttPlan::new(gtt::FIRST_INDEX, gtt_entries);
    let ring = plan.system("ring", RING_BYTES)?;
    let batch = plan.system("batch", BATCH_BYTES)?;
    let results = plan.system("results", RESULTS_BYTES)?;
    let tiles = picture
        .tiles
        .iter()
        .map(|t| {
            let name = match t.pattern {
                Pattern::Checker { .. } => "checker tile",
                Pattern::Gradient => "gradient tile",
            };
            plan.system(name, t.bytes())
        })
        .collect::<Result<Vec<_>>>()?;
    let hole = plan.unmapped("hole")?;
    let (_, fb_gfx) = plan.local("framebuffer", mode.scanout, mode.span())?;
    let layout = Layout {
        ring,
        batch,
        results,
        tiles,
        hole,
        fb_gfx,
    };
    Ok((plan, layout))
}

/// Program the plan's entries; the vGPU must accept every one of them.
fn program_gtt<'d>(dev: &'d Device, plan: &GttPlan, dma: &DmaBuffer) -> Result<GttMapping<'d>> {
    let faults_before = dev.global(GlobalReg::GttFaults);
    let (mapping, counts) = GttMapping::program(dev, plan, dma.phys())?;
    for r in plan.regions() {
        let backing = match r.backing {
            Backing::System { first_page } => format!(
                "guest RAM (dma pages {first_page}-{})",
                first_page + r.pages as usize - 1
            ),
            Backing::Local { vram_offset } => {
                format!("VRAM [{vram_offset:#x}, {:#x})", vram_offset + r.bytes())
            }
            Backing::Unmapped => "left invalid".to_string(),
        };
        say!(
            "gtt {} at indexes {}-{}: graphics address {:#x}, {backing}",
            r.name,
            r.index,
            r.index + r.pages - 1,
            r.gfx()
        );
    }
    say!(
        "gtt programmed {} local + {} system entries, {} cleared (guards, hole), indexes {}..{}, read back ok",
        counts.local,
        counts.system,
        counts.cleared,
        plan.indexes().start,
        plan.indexes().end
    );
    let faults_after = dev.global(GlobalReg::GttFaults);
    if faults_after != faults_before {
        bail!(
            "GTT_FAULTS went from {faults_before} to {faults_after} while programming: FAULT_REASON {:#x}, FAULT_ADDR {:#x}",
            dev.global(GlobalReg::FaultReason),
            dev.global(GlobalReg::FaultAddr)
        );
    }
    say!("check gtt: GTT_FAULTS unchanged ({faults_after})");
    Ok(mapping)
}

/// Everything a run holds. Field order is drop order: the engine stops
/// before the GTT entries are cleared, and those go before our pages.
/// Marks the picture's batch and ring commands store when they ran.
const BATCH_MARK: u32 = 0xba7c_0001;
const PICTURE_MARK: u32 = 0x9c7e_0001;

struct Demo<'d> {
    engine: Engine<'d>,
    gtt: GttMapping<'d>,
    dma: DmaBuffer,
    dev: &'d Device,
    mode: DisplayMode,
    layout: Layout,
}

impl Demo<'_> {
    fn screen_gfx(&self, x: u32, y: u32) -> u64 {
        self.layout.fb_gfx + self.mode.pixel_offset(x, y)
    }

    /// A visible pixel, read back through BAR0.
    fn screen_pixel(&self, x: u32, y: u32) -> u32 {
        self.dev
            .vram_pixel(self.mode.scanout + self.mode.pixel_offset(x, y))
    }

    fn slot_gfx(&self, slot: usize) -> u64 {
        self.layout.results.gfx() + 4 * slot as u64
    }

    fn slot(&self, slot: usize) -> u32 {
        self.dma
            .read_u32(self.layout.results.dma_offset() + 4 * slot)
    }

    fn poison_slots(&mut self, slots: impl IntoIterator<Item = usize>) {
        let base = self.layout.results.dma_offset();
        for s in slots {
            self.dma.write_u32(base + 4 * s, POISON);
        }
    }

    fn fill(&self, r: Rect, color: u32) -> Command {
        Command::FillRect {
            dst: self.screen_gfx(r.x, r.y),
            pitch: self.mode.pitch,
            width: r.w,
            height: r.h,
            color,
        }
    }

    fn copy_on_screen(&self, sx: u32, sy: u32, dst: Rect) -> Command {
        Command::CopyRect {
            src: self.screen_gfx(sx, sy),
            src_pitch: self.mode.pitch,
            dst: self.screen_gfx(dst.x, dst.y),
            dst_pitch: self.mode.pitch,
            width: dst.w,
            height: dst.h,
        }
    }

    fn copy_from_tile(&self, tile: usize, width: u32, dst: Rect) -> Command {
        Command::CopyRect {
            src: self.layout.tiles[tile].gfx(),
            src_pitch: width * PIXEL_BYTES as u32,
            dst: self.screen_gfx(dst.x, dst.y),
            dst_pitch: self.mode.pitch,
            width: dst.w,
            height: dst.h,
        }
    }

    /// Submit `commands` plus a fence in the ring, wait for the fence.
    fn run_and_wait(&mut self, what: &str, mut commands: Vec<Command>) -> Result<()> {
        let (fence, seqno) = self.engine.next_fence();
        let count = commands.len() as u32 + 1;
        commands.push(fence);
        self.engine
            .submit(&mut self.dma, &ring::encode(&commands), count)?;
        let took = self.engine.wait(seqno).context(what)?;
        say!(
            "fence {seqno} reached in {:.1} ms ({what}: {count} commands in the ring)",
            took.as_secs_f64() * 1e3
        );
        Ok(())
    }

    /// STORE_DW into guest RAM, read back through our own mapping.
    fn store_dwords(&mut self) -> Result<()> {
        let expected: Vec<(usize, u32)> = (0..STORE_SLOTS)
            .map(|i| (i, 0x5354_0000 | (i as u32 * 0x1111)))
            .collect();
        self.poison_slots(0..STORE_SLOTS);
        let stores = expected
            .iter()
            .map(|&(slot, value)| Command::StoreDw {
                addr: self.slot_gfx(slot),
                value,
            })
            .collect();
        self.run_and_wait("store_dw", stores)?;
        if let Some((slot, want, got)) = first_dword_mismatch(&expected, |s| self.slot(s)) {
            bail!(
                "check store_dw: results slot {slot} (graphics address {:#x}): expected {want:#010x}, got {got:#010x}",
                self.slot_gfx(slot)
            );
        }
        say!("check store_dw: {STORE_SLOTS} dwords in the results page ok");
        Ok(())
    }

    /// Fills and copies in a scratch area of the panel (the picture covers
    /// it later), checked pixel by pixel against a model that started from
    /// what the area showed before: a guest RAM tile copied to VRAM,
    /// overlapping VRAM copies in both directions, 1-pixel rectangles.
    fn fills_and_copies(&mut self, picture: &Picture) -> Result<()> {
        let gradient = 1;
        let tile = picture.tiles[gradient];
        let t = tile.w;
        let (ax, ay) = (picture.panel.x, picture.panel.y);
        let area = Rect {
            x: ax,
            y: ay,
            w: t + 16,
            h: t + 16,
        };
        assert!(
            picture.panel.contains_rect(&area),
            "scratch area inside the panel"
        );
        self.dma
            .write_u32s(self.layout.tiles[gradient].dma_offset(), &tile.pixels());

        let mut model = Canvas::from_fn(area, |x, y| self.screen_pixel(x, y));
        let mut commands = Vec::new();
        let at = |dx: u32, dy: u32, w: u32, h: u32| Rect {
            x: ax + dx,
            y: ay + dy,
            w,
            h,
        };

        let dst = at(2, 2, t, t);
        commands.push(self.copy_from_tile(gradient, t, dst));
        model.paint(&Region::Copy {
            rect: dst,
            pattern: tile.pattern,
            source: Source::Tile(gradient),
        });
        let fills = [
            (at(2 + t / 4, 2 + t / 4, t / 2, t / 3), 0xc0ffee),
            (at(1, 1, 1, t + 8), 0x123456),
            (at(t + 14, t + 14, 1, 1), 0xfedcba),
        ];
        // Down-right onto itself, up-left onto itself, one row leftwards.
        let copies = [
            ((ax + 2, ay + 2), at(9, 7, t, t)),
            ((ax + 12, ay + 10), at(4, 3, t - 8, t - 8)),
            ((ax + 9, ay + 20), at(6, 20, t - 4, 1)),
        ];
        commands.push(self.fill(fills[0].0, fills[0].1));
        model.fill(fills[0].0, fills[0].1);
        for ((sx, sy), dst) in copies {
            commands.push(self.copy_on_screen(sx, sy, dst));
            model.copy(sx, sy, dst);
        }
        for &(r, color) in &fills[1..] {
            commands.push(self.fill(r, color));
            model.fill(r, color);
        }
        self.run_and_wait("fill and copy", commands)?;
        if let Some(m) = model.first_mismatch(|x, y| self.screen_pixel(x, y)) {
            bail!("check fill/copy: {m}");
        }
        say!(
            "check fill/copy: guest RAM -> VRAM copy, 3 fills, 3 overlapping VRAM -> VRAM copies: {}x{} pixels at ({}, {}) match",
            area.w,
            area.h,
            area.x,
            area.y
        );
        Ok(())
    }

    /// Enough submissions to go round the ring several times, each command
    /// a store into the results page; what each slot ends up holding says
    /// every command ran, including those that straddle the ring's end.
    fn ring_wrap(&mut self) -> Result<()> {
        let wraps_before = self.engine.ring().wraps();
        let straddles_before = self.engine.ring().straddles();
        self.poison_slots(WRAP_FIRST_SLOT..WRAP_FIRST_SLOT + WRAP_SLOTS);
        let pad = ring::pad_to_16(self.engine.ring().tail());
        let first_value = 0x5752_0000;
        let submissions = (4 * RING_BYTES as u32).div_ceil(ring::WRAP_SUBMISSION_BYTES);
        let mut last_seqno = 0;
        for n in 0..submissions {
            let mut cmds: Vec<Command> = ring::wrap_submission(
                n,
                if n == 0 { pad } else { 0 },
                WRAP_SLOTS as u32,
                first_value,
            )
            .into_iter()
            .map(|c| c.relocated(self.slot_gfx(WRAP_FIRST_SLOT)))
            .collect();
            let (fence, seqno) = self.engine.next_fence();
            cmds.push(fence);
            last_seqno = seqno;
            self.engine
                .submit(&mut self.dma, &ring::encode(&cmds), cmds.len() as u32)?;
        }
        // Each slot holds the last store's value to it.
        let stores = submissions * ring::WRAP_STORES;
        let mut expected: Vec<(usize, u32)> = (0..WRAP_SLOTS)
            .map(|s| (WRAP_FIRST_SLOT + s, POISON))
            .collect();
        for i in 0..stores {
            let slot = i as usize % WRAP_SLOTS;
            expected[slot] = (WRAP_FIRST_SLOT + slot, first_value + i);
        }
        let took = self.engine.wait(last_seqno).context("ring wrap")?;
        let wraps = self.engine.ring().wraps() - wraps_before;
        let straddles = self.engine.ring().straddles() - straddles_before;
        say!(
            "fence {last_seqno} reached in {:.1} ms (ring wrap: {submissions} submissions of {} commands)",
            took.as_secs_f64() * 1e3,
            ring::WRAP_STORES + 3
        );
        if let Some((slot, want, got)) = first_dword_mismatch(&expected, |s| self.slot(s)) {
            bail!(
                "check ring wrap: results slot {slot} (graphics address {:#x}): expected {want:#010x}, got {got:#010x}",
                self.slot_gfx(slot)
            );
        }
        if wraps < 2 || straddles == 0 {
            bail!("check ring wrap: the test itself went wrong: {wraps} wraps, {straddles} straddling commands");
        }
        say!("check ring wrap: {stores} stores ok; the ring wrapped {wraps} times, {straddles} commands straddled its end");
        Ok(())
    }

    /// The picture: fills in a batch, then the tiles copied in the ring.
    fn draw_picture(&mut self, picture: &Picture) -> Result<()> {
        let ring_cmds = self.picture_stream(picture)?;
        self.poison_slots([SLOT_BATCH_DONE, SLOT_PICTURE_DONE]);
        self.run_and_wait("picture", ring_cmds)?;
        self.check_picture(picture)?;
        for line in picture.manifest() {
            say!("picture: {line}");
        }
        let p = picture.panel;
        say!(
            "check picture: all {}x{} pixels of the panel read back through BAR0 match the manifest ({} regions)",
            p.w,
            p.h,
            picture.regions.len()
        );
        Ok(())
    }

    /// Put the tiles and the batch in guest RAM; the ring commands that
    /// draw the picture (the batch, then the rest), each ending with a
    /// store to its results slot.
    fn picture_stream(&mut self, picture: &Picture) -> Result<Vec<Command>> {
        for (i, tile) in picture.tiles.iter().enumerate() {
            self.dma
                .write_u32s(self.layout.tiles[i].dma_offset(), &tile.pixels());
        }
        // The leading fills go in the batch; the rest, in order, in the ring.
        let fills = picture
            .regions
            .iter()
            .take_while(|r| matches!(r, Region::Fill { .. }))
            .count();
        let region_command = |r: &Region| match *r {
            Region::Fill { rect, color } => self.fill(rect, color),
            Region::Copy {
                rect,
                source: Source::Tile(i),
                ..
            } => self.copy_from_tile(i, picture.tiles[i].w, rect),
            Region::Copy {
                rect,
                source: Source::Screen { x, y },
                ..
            } => self.copy_on_screen(x, y, rect),
        };
        let mut batch: Vec<Command> = picture.regions[..fills]
            .iter()
            .map(region_command)
            .collect();
        batch.push(Command::StoreDw {
            addr: self.slot_gfx(SLOT_BATCH_DONE),
            value: BATCH_MARK,
        });
        batch.push(Command::BatchEnd);
        let batch_dwords = ring::encode(&batch);
        let batch_len = 4 * batch_dwords.len() as u64;
        if batch_len > self.layout.batch.bytes() {
            bail!(
                "the picture's batch is {batch_len} bytes, more than its {} bytes",
                self.layout.batch.bytes()
            );
        }
        let mut ring_cmds = vec![Command::BatchStart {
            addr: self.layout.batch.gfx(),
            len: batch_len as u32,
        }];
        ring_cmds.extend(picture.regions[fills..].iter().map(region_command));
        ring_cmds.push(Command::StoreDw {
            addr: self.slot_gfx(SLOT_PICTURE_DONE),
            value: PICTURE_MARK,
        });
        self.dma
            .write_u32s(self.layout.batch.dma_offset(), &batch_dwords);
        self.engine.totals.batch_commands += batch.len() as u32;
        say!(
            "draw: submitting a batch of {} commands ({batch_len} bytes at graphics address {:#x}) and {} ring commands",
            batch.len(),
            self.layout.batch.gfx(),
            ring_cmds.len() + 1
        );
        Ok(ring_cmds)
    }

    /// The picture's stores ran and every pixel of its panel is right.
    fn check_picture(&self, picture: &Picture) -> Result<()> {
        let marks = [
            (SLOT_BATCH_DONE, BATCH_MARK),
            (SLOT_PICTURE_DONE, PICTURE_MARK),
        ];
        if let Some((slot, want, got)) = first_dword_mismatch(&marks, |s| self.slot(s)) {
            bail!("check picture: results slot {slot}: expected {want:#010x}, got {got:#010x}");
        }
        say!("check batch: its last command (a store) ran, and the ring's commands after it");
        let expected = Canvas::from_fn(picture.panel, |x, y| {
            picture.expected(x, y).expect("the panel is covered")
        });
        if let Some(m) = expected.first_mismatch(|x, y| self.screen_pixel(x, y)) {
            bail!("check picture: {m}");
        }
        Ok(())
    }

    /// A fill into the unmapped page must stop the engine with BAD_ADDRESS
    /// at that address; then RESET must bring it back.
    fn fault_and_recover(&mut self) -> Result<()> {
        let seqno_before = self.engine.seqno();
        let fill_at = self.engine.ring().tail();
        let (fence, seqno) = self.engine.next_fence();
        let cmds = [
            Command::FillRect {
                dst: self.layout.hole.gfx(),
                pitch: 64,
                width: 16,
                height: 1,
                color: 0xff0000,
            },
            fence,
        ];
        self.engine.submit(&mut self.dma, &ring::encode(&cmds), 2)?;
        let fault = self.engine.wait_fault()?;
        say!(
            "fault check: {fault}; GTT_FAULTS {}, FAULT_REASON {:#x}, FAULT_ADDR {:#x}",
            self.dev.global(GlobalReg::GttFaults),
            self.dev.global(GlobalReg::FaultReason),
            self.dev.global(GlobalReg::FaultAddr)
        );
        if fault.code != engine_error::BAD_ADDRESS || fault.addr != self.layout.hole.gfx() {
            bail!(
                "check fault: expected error {} ({}) at {:#x}, got {fault}",
                engine_error::BAD_ADDRESS,
                error_name(engine_error::BAD_ADDRESS),
                self.layout.hole.gfx()
            );
        }
        if fault.head != fill_at {
            bail!(
                "check fault: RING_HEAD {:#x}, expected {fill_at:#x}: the faulting fill's offset",
                fault.head
            );
        }
        let seqno_now = self.engine.seqno();
        if seqno_now != seqno_before {
            bail!("check fault: SEQNO moved from {seqno_before} to {seqno_now}: the fence {seqno} after the faulting fill ran");
        }
        let status = self.dev.global(GlobalReg::IntStatus) as u32;
        let ours = (IntSource::ENGINE_ERROR | IntSource::GTT_FAULT).bits();
        if status & ours != ours {
            bail!("check fault: INT_STATUS {status:#x} lacks ENGINE_ERROR|GTT_FAULT ({ours:#x})");
        }
        // Write 1 to clear what we raised.
        self.dev.set_global(GlobalReg::IntStatus, u64::from(ours));
        say!("check fault: engine stopped with BAD_ADDRESS at the hole, head on the fill, fence {seqno} not reached, INT_STATUS {status:#x} (cleared)");

        self.engine.restart();
        self.run_and_wait("after RESET", vec![Command::Noop])?;
        say!("check recovery: RING_CTL reset, the engine runs again");
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.dma.check_unmoved()?;
        say!(
            "check dma: all {} pages still at the guest-physical addresses in the GTT",
            self.dma.pages()
        );
        let t = self.engine.totals;
        let ring = self.engine.ring();
        say!(
            "submitted {} commands in {} ring submissions and {} in a batch; the ring wrapped {} times, {} commands straddled its end",
            t.ring_commands,
            t.submissions,
            t.batch_commands,
            ring.wraps(),
            ring.straddles()
        );
        self.engine.stop();
        let cleared = self.gtt.clear();
        say!("engine stopped, {cleared} GTT entries cleared; the picture stays on screen");
        Ok(())
    }
}

//! The vGPU's display: the guest's scanout composed into a QEMU console.
//!
//! A refresh (QEMU's display timer, or a `screendump`) decides what to show
//! ([`scanout::choose`]), keeps the console surface at that size, and
//! copies into it only lines that may have changed:
//!
//! - VRAM pages: lines that guest CPU writes dirtied (QEMU's dirty log of
//!   BAR0, asked through [`DisplayHost::vram_dirty`]);
//! - engine writes: QEMU does not see them, so after the engine made
//!   progress every line is compared with what the console holds;
//! - guest RAM pages (a plane surface in system memory): not dirty-logged,
//!   so their lines are compared at every refresh;
//! - a GTT change (a page re-pointed) compares every line once.
//!
//! Comparing means converting the line into a scratch buffer and copying it
//! only if it differs, so the console is told about changed lines alone.
//! Pages the GTT does not map show black; a display that is off or set up
//! wrongly shows a black surface, never memory outside the vGPU's own.

pub mod edid;
pub mod scanout;

use rvg_model::gtt::PAGE_SIZE;

pub use scanout::{Choice, DispiRegs, PixelFormat, PlaneRegs, Scanout, Source};

/// Console size while nothing is shown yet.
pub const BLANK_SIZE: (u32, u32) = (640, 480);

/// What backs one page of the guest's graphics address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GfxPage {
    /// A page of the vGPU's VRAM, at this offset.
    Vram { offset: u64 },
    /// A page of guest RAM.
    Ram,
    /// Nothing: reads as black.
    Unmapped,
}

/// The memory a surface is read from, as the vGPU sees it.
pub trait FrameMemory {
    fn gfx_page(&self, index: u64) -> GfxPage;
    /// Copy VRAM bytes at `offset`; the range was checked against its size.
    fn read_vram(&self, offset: u64, buf: &mut [u8]);
    /// Copy bytes at graphics address `addr`; unmapped pages read as zero.
    fn read_gfx(&self, addr: u64, buf: &mut [u8]);
}

/// The console surface: XRGB8888 pixels, `stride` bytes per line.
pub struct Surface<'a> {
    pub pixels: &'a mut [u8],
    pub width: u32,
    pub height: u32,
    pub stride: u32,
}

/// What QEMU provides to a refresh.
pub trait DisplayHost {
    /// Whether guest CPU writes touched VRAM `[offset, offset + len)` since
    /// the previous refresh.
    fn vram_dirty(&mut self, offset: u64, len: u64) -> bool;
    /// Replace the console's surface with one of `width` x `height`.
    fn resize(&mut self, width: u32, height: u32);
    /// The current surface, if there is one.
    fn surface(&mut self) -> Option<Surface<'_>>;
    /// Tell the console lines `[y, y + height)` changed.
    fn update(&mut self, y: u32, height: u32);
}

/// Everything a refresh reads from the vGPU, taken at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub choice: Choice,
    /// Counts the engine's progress reports: a change means it wrote.
    pub engine_progress: u64,
    /// Counts GTT changes: a change means pages may have been re-pointed.
    pub gtt_generation: u64,
}

/// Counters for `info rust-vgpu`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisplayStats {
    pub refreshes: u64,
    /// Lines read and compared with the console's copy.
    pub lines_compared: u64,
    /// Lines that differed and were copied to the console.
    pub lines_updated: u64,
}

/// The display's memory of what the console holds.
#[derive(Default)]
pub struct Display {
    size: Option<(u32, u32)>,
    shown: Option<Choice>,
    engine_seen: u64,
    gtt_seen: u64,
    /// The next refresh redraws everything (a new console client).
    invalid: bool,
    line: Vec<u8>,
    raw: Vec<u8>,
    stats: DisplayStats,
}

/// What [`Display::prepare`] asks of its caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Give the console a surface of this size.
    pub resize: Option<(u32, u32)>,
    pub guest_error: Option<String>,
}

impl Display {
    pub fn stats(&self) -> DisplayStats {
        self.stats
    }

    /// What the console shows, for `info rust-vgpu`.
    pub fn describe(&self) -> String {
        match &self.shown {
            None | Some(Choice::Off) => "off".to_string(),
            Some(Choice::Invalid(why)) => format!("blank: {why}"),
            Some(Choice::On(s)) => s.to_string(),
        }
    }

    /// Redraw everything at the next refresh.
    pub fn invalidate(&mut self) {
        self.invalid = true;
    }

    /// Take in what `frame` shows before its pixels are read. Returns the
    /// console size to switch to, if it changes (the caller resizes the
    /// console before [`Display::draw`]), and the guest error to log when
    /// the guest's settings became unusable.
    pub fn prepare(&mut self, frame: &Frame) -> Prepared {
        let want = match &frame.choice {
            Choice::On(s) => (s.width, s.height),
            _ => self.size.unwrap_or(BLANK_SIZE),
        };
        let mut out = Prepared::default();
        if self.size != Some(want) {
            out.resize = Some(want);
            self.size = Some(want);
            self.invalid = true;
        }
        if self.shown.as_ref() != Some(&frame.choice) {
            self.invalid = true;
            self.shown = Some(frame.choice.clone());
            if let Choice::Invalid(why) = &frame.choice {
                out.guest_error = Some(format!("display blank: {why}"));
            }
        }
        out
    }

    /// Copy what changed into the console surface; returns the changed
    /// line spans `(y, height)` to report with [`DisplayHost::update`].
    pub fn draw(
        &mut self,
        frame: &Frame,
        mem: &dyn FrameMemory,
        host: &mut dyn DisplayHost,
    ) -> Vec<(u32, u32)> {
        self.stats.refreshes += 1;
        let full = std::mem::take(&mut self.invalid);
        let engine_wrote = std::mem::replace(&mut self.engine_seen, frame.engine_progress)
            != frame.engine_progress;
        let gtt_changed =
            std::mem::replace(&mut self.gtt_seen, frame.gtt_generation) != frame.gtt_generation;
        let Choice::On(s) = &frame.choice else {
            return if full { self.clear(host) } else { Vec::new() };
        };
        let compare_all = full || engine_wrote || gtt_changed;
        let to_read = lines_to_read(s, mem, host, compare_all);
        if !to_read.contains(&true) {
            return Vec::new();
        }
        let Some(surface) = host.surface() else {
            return Vec::new();
        };
        if surface.width != s.width || surface.height != s.height {
            return Vec::new();
        }
        let row = s.row_bytes() as usize;
        self.line.resize(s.width as usize * 4, 0);
        self.raw.resize(row, 0);
        let mut spans: Vec<(u32, u32)> = Vec::new();
        for y in (0..s.height).filter(|&y| to_read[y as usize]) {
            match s.source {
                Source::Vram { .. } => mem.read_vram(s.line(y), &mut self.raw),
                Source::Gfx { .. } => mem.read_gfx(s.line(y), &mut self.raw),
            }
            let line: &[u8] = match s.format {
                // Already the console's format: compare what was read.
                PixelFormat::Xrgb8888 => &self.raw,
                other => {
                    other.to_xrgb8888(&self.raw, &mut self.line);
                    &self.line
                }
            };
            self.stats.lines_compared += 1;
            let at = y as usize * surface.stride as usize;
            let dst = &mut surface.pixels[at..at + line.len()];
            if dst != line {
                dst.copy_from_slice(line);
                self.stats.lines_updated += 1;
                match spans.last_mut() {
                    Some((first, n)) if *first + *n == y => *n += 1,
                    _ => spans.push((y, 1)),
                }
            }
        }
        if full {
            // A new console client needs every line, changed or not.
            return vec![(0, s.height)];
        }
        spans
    }

    /// Black out the whole surface (a blank display).
    fn clear(&mut self, host: &mut dyn DisplayHost) -> Vec<(u32, u32)> {
        let Some(surface) = host.surface() else {
            return Vec::new();
        };
        surface.pixels.fill(0);
        vec![(0, surface.height)]
    }
}

/// Which lines of `s` may have changed and must be read. Pure
/// bookkeeping: no pixel is touched.
fn lines_to_read(
    s: &Scanout,
    mem: &dyn FrameMemory,
    host: &mut dyn DisplayHost,
    compare_all: bool,
) -> Vec<bool> {
    let lines = s.height as usize;
    if compare_all {
        return vec![true; lines];
    }
    let row = s.row_bytes();
    match s.source {
        Source::Vram { offset } => {
            // One look at the whole surface settles the common case.
            if !host.vram_dirty(offset, s.extent()) {
                return vec![false; lines];
            }
            (0..s.height)
                .map(|y| host.vram_dirty(s.line(y), row))
                .collect()
        }
        Source::Gfx { .. } => (0..s.height)
            .map(|y| plane_line_may_differ(s.line(y), row, mem, host))
            .collect(),
    }
}

/// Whether a plane line of `len` bytes at graphics address `start` may
/// have changed: it lies on a guest-RAM page (not dirty-logged) or on a
/// VRAM page the guest's CPU dirtied. Unmapped pages stay black.
fn plane_line_may_differ(
    start: u64,
    len: u64,
    mem: &dyn FrameMemory,
    host: &mut dyn DisplayHost,
) -> bool {
    let end = start + len;
    let mut addr = start;
    while addr < end {
        let page_end = (addr / PAGE_SIZE + 1) * PAGE_SIZE;
        let changed = match mem.gfx_page(addr / PAGE_SIZE) {
            GfxPage::Ram => true,
            GfxPage::Vram { offset } => {
                host.vram_dirty(offset + addr % PAGE_SIZE, page_end.min(end) - addr)
            }
            GfxPage::Unmapped => false,
        };
        if changed {
            return true;
        }
        addr = page_end;
    }
    false
}

#[cfg(test)]
mod tests;

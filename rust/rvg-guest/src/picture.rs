//! The picture: where it goes on a screen of any size, what it is made of,
//! and its manifest. Pure layout; `main` turns regions into commands.
//!
//! The panel sits in the lower-right part of the screen, clear of the top
//! 12 text lines (16 px each) and of the left third, where the console
//! shows its login prompt. Inside it: "RVG-1" in block letters, eight
//! colour bars, and three tiles: a checkerboard and a gradient drawn by the
//! CPU in guest RAM and copied to the screen, and a copy of the checkerboard
//! made on the screen (VRAM to VRAM).

use crate::glyph;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    pub fn contains(&self, x: u32, y: u32) -> bool {
        (self.x..self.x + self.w).contains(&x) && (self.y..self.y + self.h).contains(&y)
    }

    pub fn contains_rect(&self, r: &Rect) -> bool {
        r.x >= self.x
            && r.y >= self.y
            && r.x + r.w <= self.x + self.w
            && r.y + r.h <= self.y + self.h
    }
}

/// A tile's content, described by a formula on the pixel's position
/// (x, y) relative to the tile's top-left corner. Colours are 0xRRGGBB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `a` where `(x / cell + y / cell)` is even, else `b`.
    Checker { cell: u32, a: u32, b: u32 },
    /// R = 255 * x / (w - 1), G = 255 * y / (h - 1) (integer division),
    /// B = 0x80.
    Gradient,
}

pub const GRADIENT_BLUE: u32 = 0x80;

impl Pattern {
    pub fn pixel(&self, x: u32, y: u32, w: u32, h: u32) -> u32 {
        match *self {
            Pattern::Checker { cell, a, b } => {
                if (x / cell + y / cell).is_multiple_of(2) {
                    a
                } else {
                    b
                }
            }
            Pattern::Gradient => {
                let ramp = |v: u32, n: u32| if n > 1 { 255 * v / (n - 1) } else { 0 };
                (ramp(x, w) << 16) | (ramp(y, h) << 8) | GRADIENT_BLUE
            }
        }
    }

    fn describe(&self) -> String {
        match *self {
            Pattern::Checker { cell, a, b } => format!("checker {cell} {a:06x} {b:06x}"),
            Pattern::Gradient => "gradient".to_string(),
        }
    }
}

/// A tile drawn by the CPU in guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub w: u32,
    pub h: u32,
    pub pattern: Pattern,
}

impl Tile {
    /// Its pixels, rows packed (pitch = 4 * w), XRGB8888 with X = 0.
    pub fn pixels(&self) -> Vec<u32> {
        (0..self.h)
            .flat_map(|y| (0..self.w).map(move |x| self.pattern.pixel(x, y, self.w, self.h)))
            .collect()
    }

    pub fn bytes(&self) -> u64 {
        4 * u64::from(self.w) * u64::from(self.h)
    }
}

/// Where a copied region's pixels come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `Picture::tiles[i]`, in guest RAM.
    Tile(usize),
    /// The screen itself at (x, y): a VRAM to VRAM copy.
    Screen { x: u32, y: u32 },
}

/// One manifest line: what a rectangle of the screen shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    Fill {
        rect: Rect,
        color: u32,
    },
    Copy {
        rect: Rect,
        pattern: Pattern,
        source: Source,
    },
}

impl Region {
    pub fn rect(&self) -> Rect {
        match *self {
            Region::Fill { rect, .. } | Region::Copy { rect, .. } => rect,
        }
    }

    /// The colour this region gives screen pixel (x, y) inside it.
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        match *self {
            Region::Fill { color, .. } => color,
            Region::Copy { rect, pattern, .. } => {
                pattern.pixel(x - rect.x, y - rect.y, rect.w, rect.h)
            }
        }
    }

    /// The manifest line, without the "picture: " prefix.
    pub fn manifest(&self) -> String {
        let r = self.rect();
        match *self {
            Region::Fill { color, .. } => {
                format!("fill {} {} {} {} {color:06x}", r.x, r.y, r.w, r.h)
            }
            Region::Copy { pattern, .. } => format!(
                "copy {} {} {} {} {}",
                r.x,
                r.y,
                r.w,
                r.h,
                pattern.describe()
            ),
        }
    }
}

pub const TEXT: &str = "RVG-1";
/// Console rows kept clear at the top: 12 text lines of 16 pixels.
pub const RESERVED_TOP: u32 = 12 * 16;
pub const MARGIN: u32 = 16;
const GAP: u32 = 8;
const PAD: u32 = 8;
const MAX_PANEL: (u32, u32) = (960, 640);
const MIN_PANEL: (u32, u32) = (320, 224);
const MAX_CELL: u32 = 32;

pub const BORDER: u32 = 0xe0e0e0;
pub const BACKGROUND: u32 = 0x203040;
pub const TEXT_COLOR: u32 = 0xffc020;
/// White, yellow, cyan, green, magenta, red, blue, black.
pub const BARS: [u32; 8] = [
    0xffffff, 0xffff00, 0x00ffff, 0x00ff00, 0xff00ff, 0xff0000, 0x0000ff, 0x000000,
];
pub const CHECKER_A: u32 = 0xff8000;
pub const CHECKER_B: u32 = 0x101010;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    /// Everything is drawn inside this rectangle.
    pub panel: Rect,
    pub tiles: Vec<Tile>,
    /// In drawing order; later regions win where they overlap.
    pub regions: Vec<Region>,
}

impl Picture {
    /// Lay the picture out for a `width` x `height` screen.
    pub fn layout(width: u32, height: u32) -> Result<Picture, String> {
        let x_min = (width.div_ceil(3) + MARGIN).next_multiple_of(8);
        let y_min = RESERVED_TOP + MARGIN;
        let room_w = width.saturating_sub(MARGIN + x_min);
        let room_h = height.saturating_sub(MARGIN + y_min);
        if room_w < MIN_PANEL.0 || room_h < MIN_PANEL.1 {
            return Err(format!(
                "screen {width}x{height} leaves {room_w}x{room_h} pixels beside the console; need {}x{}",
                MIN_PANEL.0, MIN_PANEL.1
            ));
        }
        let pw = room_w.min(MAX_PANEL.0) / 8 * 8;
        let ph = room_h.min(MAX_PANEL.1) / 8 * 8;
        let panel = Rect {
            x: width - MARGIN - pw,
            y: height - MARGIN - ph,
            w: pw,
            h: ph,
        };
        let border = (pw / 100).max(2);
        let inset = border + PAD;
        let inner = Rect {
            x: panel.x + inset,
            y: panel.y + inset,
            w: pw - 2 * inset,
            h: ph - 2 * inset,
        };

        let mut regions = vec![
            Region::Fill {
                rect: panel,
                color: BORDER,
            },
            Region::Fill {
                rect: Rect {
                    x: panel.x + border,
                    y: panel.y + border,
                    w: pw - 2 * border,
                    h: ph - 2 * border,
                },
                color: BACKGROUND,
            },
        ];

        // Text: about 30% of the height, centred.
        let (cells_w, _) = glyph::text_size(TEXT, 1);
        let scale = (inner.w / cells_w)
            .min(inner.h * 3 / 10 / glyph::GLYPH_H)
            .max(1);
        let (text_w, text_h) = glyph::text_size(TEXT, scale);
        let text_x = inner.x + (inner.w - text_w) / 2;
        let glyph_rects = glyph::render(TEXT, text_x, inner.y, scale)?;
        regions.extend(glyph_rects.into_iter().map(|rect| Region::Fill {
            rect,
            color: TEXT_COLOR,
        }));

        // Tiles: three square ones in a row at the bottom, a whole number
        // of checker cells (eight) across.
        let below_text = inner.h - text_h - 2 * GAP;
        let side_max = ((inner.w - 2 * GAP) / 3).min(below_text * 3 / 4);
        let cell = (side_max / 8).clamp(1, MAX_CELL);
        let side = 8 * cell;
        let bars_h = below_text - side;

        // Colour bars between text and tiles.
        let bar_w = inner.w / BARS.len() as u32;
        let bars_x = inner.x + (inner.w - bar_w * BARS.len() as u32) / 2;
        let bars_y = inner.y + text_h + GAP;
        regions.extend(BARS.iter().enumerate().map(|(i, &color)| Region::Fill {
            rect: Rect {
                x: bars_x + i as u32 * bar_w,
                y: bars_y,
                w: bar_w,
                h: bars_h,
            },
            color,
        }));

        let tiles = vec![
            Tile {
                w: side,
                h: side,
                pattern: Pattern::Checker {
                    cell,
                    a: CHECKER_A,
                    b: CHECKER_B,
                },
            },
            Tile {
                w: side,
                h: side,
                pattern: Pattern::Gradient,
            },
        ];
        let row_w = 3 * side + 2 * GAP;
        let tile_at = |i: u32| Rect {
            x: inner.x + (inner.w - row_w) / 2 + i * (side + GAP),
            y: inner.y + inner.h - side,
            w: side,
            h: side,
        };
        regions.push(Region::Copy {
            rect: tile_at(0),
            pattern: tiles[0].pattern,
            source: Source::Tile(0),
        });
        regions.push(Region::Copy {
            rect: tile_at(1),
            pattern: tiles[1].pattern,
            source: Source::Tile(1),
        });
        regions.push(Region::Copy {
            rect: tile_at(2),
            pattern: tiles[0].pattern,
            source: Source::Screen {
                x: tile_at(0).x,
                y: tile_at(0).y,
            },
        });

        Ok(Picture {
            width,
            height,
            panel,
            tiles,
            regions,
        })
    }

    /// The manifest, one line per region in drawing order between a
    /// `screen` and an `end` line (without the "picture: " prefix).
    pub fn manifest(&self) -> Vec<String> {
        let mut lines = vec![format!("screen {} {}", self.width, self.height)];
        lines.extend(self.regions.iter().map(Region::manifest));
        lines.push(format!("end {}", self.regions.len()));
        lines
    }

    /// The colour the manifest gives screen pixel (x, y): the last region
    /// covering it, if any.
    pub fn expected(&self, x: u32, y: u32) -> Option<u32> {
        self.regions
            .iter()
            .rev()
            .find(|r| r.rect().contains(x, y))
            .map(|r| r.pixel(x, y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: &Rect, b: &Rect) -> bool {
        b.x < a.x + a.w && a.x < b.x + b.w && b.y < a.y + a.h && a.y < b.y + b.h
    }

    const MODES: [(u32, u32); 7] = [
        (640, 480),
        (800, 600),
        (1024, 768),
        (1280, 720),
        (1280, 1024),
        (1920, 1080),
        (3840, 2160),
    ];

    #[test]
    fn fits_every_common_mode_and_keeps_clear_of_the_console() {
        for (w, h) in MODES {
            let p = Picture::layout(w, h).unwrap();
            assert!(
                p.panel.x >= w / 3 + MARGIN && p.panel.y >= RESERVED_TOP + MARGIN,
                "{w}x{h}: {:?}",
                p.panel
            );
            assert!(p.panel.x + p.panel.w <= w - MARGIN && p.panel.y + p.panel.h <= h - MARGIN);
            for r in &p.regions {
                assert!(
                    p.panel.contains_rect(&r.rect()),
                    "{w}x{h}: {r:?} outside the panel"
                );
                assert!(r.rect().w > 0 && r.rect().h > 0, "{w}x{h}: empty {r:?}");
            }
            // Rectangles are 4-byte aligned by construction (whole pixels);
            // the engine needs nothing more.
            assert!(p.regions.len() > 12, "{w}x{h}");
        }
    }

    #[test]
    fn regions_cover_the_panel_and_nothing_is_drawn_on_the_tiles() {
        for (w, h) in MODES {
            let p = Picture::layout(w, h).unwrap();
            assert_eq!(
                p.regions[0].rect(),
                p.panel,
                "the first region covers the panel"
            );
            let copies: Vec<Rect> = p
                .regions
                .iter()
                .filter(|r| matches!(r, Region::Copy { .. }))
                .map(Region::rect)
                .collect();
            assert_eq!(copies.len(), 3);
            // Tiles overlap neither each other nor the bars or text, so a
            // screenshot shows each whole.
            for (i, a) in p.regions.iter().enumerate().skip(2) {
                for b in &p.regions[i + 1..] {
                    assert!(
                        !overlaps(&a.rect(), &b.rect()),
                        "{w}x{h}: {a:?} overlaps {b:?}"
                    );
                }
            }
            // The on-screen copy's source is the first tile, drawn before it.
            let Region::Copy {
                source: Source::Screen { x, y },
                ..
            } = p.regions[p.regions.len() - 1]
            else {
                panic!("last region is the VRAM copy");
            };
            assert_eq!((x, y), (copies[0].x, copies[0].y));
        }
    }

    #[test]
    fn too_small_screens_are_refused() {
        let e = Picture::layout(320, 200).unwrap_err();
        assert!(e.contains("320x200"), "{e}");
        assert!(Picture::layout(640, 400).is_err());
    }

    #[test]
    fn layout_for_1024x768() {
        let p = Picture::layout(1024, 768).unwrap();
        assert_eq!(
            p.panel,
            Rect {
                x: 360,
                y: 208,
                w: 648,
                h: 544
            }
        );
        assert_eq!(p.tiles[0].w, 200);
        assert_eq!(
            p.tiles[0].pattern,
            Pattern::Checker {
                cell: 25,
                a: CHECKER_A,
                b: CHECKER_B
            }
        );
        let m = p.manifest();
        assert_eq!(m[0], "screen 1024 768");
        assert_eq!(m[1], "fill 360 208 648 544 e0e0e0");
        assert_eq!(m[2], "fill 366 214 636 532 203040");
        assert_eq!(m.last().unwrap(), &format!("end {}", p.regions.len()));
        assert!(m
            .iter()
            .any(|l| l.starts_with("copy ") && l.ends_with(" checker 25 ff8000 101010")));
        assert!(m
            .iter()
            .any(|l| l.starts_with("copy ") && l.ends_with(" 200 200 gradient")));
    }

    #[test]
    fn patterns() {
        let c = Pattern::Checker {
            cell: 4,
            a: 1,
            b: 2,
        };
        assert_eq!(
            (
                c.pixel(0, 0, 8, 8),
                c.pixel(4, 0, 8, 8),
                c.pixel(4, 4, 8, 8),
                c.pixel(3, 7, 8, 8)
            ),
            (1, 2, 1, 2)
        );
        let g = Pattern::Gradient;
        assert_eq!(g.pixel(0, 0, 100, 50), 0x000080);
        assert_eq!(g.pixel(99, 49, 100, 50), 0xffff80);
        assert_eq!(g.pixel(50, 0, 100, 50), (255 * 50 / 99) << 16 | 0x80);
        let t = Tile {
            w: 3,
            h: 2,
            pattern: c,
        };
        assert_eq!(t.pixels(), vec![1, 1, 1, 1, 1, 1]);
        assert_eq!(t.bytes(), 24);
    }

    #[test]
    fn later_regions_win() {
        let p = Picture::layout(800, 600).unwrap();
        let inner = p.regions[1].rect();
        assert_eq!(p.expected(p.panel.x, p.panel.y), Some(BORDER));
        assert_eq!(p.expected(inner.x, inner.y), Some(BACKGROUND));
        assert_eq!(p.expected(0, 0), None);
        let tile = p.regions.last().unwrap().rect();
        assert_eq!(p.expected(tile.x, tile.y), Some(CHECKER_A));
    }
}

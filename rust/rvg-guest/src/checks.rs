//! What the results should be, and finding the first place they are not:
//! a software model of a screen area (fills and overlapping copies, with
//! the engine's semantics) and comparisons against what we read back.

use crate::picture::{Rect, Region};

/// The expected content of a screen rectangle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canvas {
    area: Rect,
    px: Vec<u32>,
}

impl Canvas {
    /// `area` with each pixel from `f(x, y)` in screen coordinates.
    pub fn from_fn(area: Rect, mut f: impl FnMut(u32, u32) -> u32) -> Canvas {
        let mut px = Vec::with_capacity((area.w * area.h) as usize);
        for y in area.y..area.y + area.h {
            for x in area.x..area.x + area.w {
                px.push(f(x, y));
            }
        }
        Canvas { area, px }
    }

    fn index(&self, x: u32, y: u32) -> usize {
        assert!(
            self.area.contains(x, y),
            "({x},{y}) outside {:?}",
            self.area
        );
        ((y - self.area.y) * self.area.w + (x - self.area.x)) as usize
    }

    pub fn get(&self, x: u32, y: u32) -> u32 {
        self.px[self.index(x, y)]
    }

    pub fn fill(&mut self, r: Rect, color: u32) {
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                let i = self.index(x, y);
                self.px[i] = color;
            }
        }
    }

    /// COPY_RECT from (sx, sy) to `dst`: correct for overlapping
    /// rectangles, as if through a temporary copy.
    pub fn copy(&mut self, sx: u32, sy: u32, dst: Rect) {
        let src: Vec<u32> = (0..dst.h)
            .flat_map(|dy| (0..dst.w).map(move |dx| (sx + dx, sy + dy)))
            .map(|(x, y)| self.get(x, y))
            .collect();
        for (k, v) in src.into_iter().enumerate() {
            let (dx, dy) = (k as u32 % dst.w, k as u32 / dst.w);
            let i = self.index(dst.x + dx, dst.y + dy);
            self.px[i] = v;
        }
    }

    /// Draw a manifest region by its formula.
    pub fn paint(&mut self, region: &Region) {
        let r = region.rect();
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                let i = self.index(x, y);
                self.px[i] = region.pixel(x, y);
            }
        }
    }

    /// The first pixel (row by row) where `read` differs from the model.
    pub fn first_mismatch(&self, mut read: impl FnMut(u32, u32) -> u32) -> Option<Mismatch> {
        for y in self.area.y..self.area.y + self.area.h {
            for x in self.area.x..self.area.x + self.area.w {
                let (expected, got) = (self.get(x, y), read(x, y));
                if expected != got {
                    return Some(Mismatch {
                        x,
                        y,
                        expected,
                        got,
                    });
                }
            }
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub x: u32,
    pub y: u32,
    pub expected: u32,
    pub got: u32,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pixel ({}, {}): expected {:#010x}, got {:#010x}",
            self.x, self.y, self.expected, self.got
        )
    }
}

/// The first (slot, expected, got) where `read(slot)` differs.
pub fn first_dword_mismatch(
    expected: &[(usize, u32)],
    mut read: impl FnMut(usize) -> u32,
) -> Option<(usize, u32, u32)> {
    expected.iter().find_map(|&(slot, want)| {
        let got = read(slot);
        (got != want).then_some((slot, want, got))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picture::Pattern;

    fn area() -> Rect {
        Rect {
            x: 10,
            y: 20,
            w: 8,
            h: 6,
        }
    }

    fn numbered() -> Canvas {
        Canvas::from_fn(area(), |x, y| y * 100 + x)
    }

    #[test]
    fn fill_and_compare() {
        let mut c = numbered();
        c.fill(
            Rect {
                x: 11,
                y: 21,
                w: 2,
                h: 1,
            },
            7,
        );
        assert_eq!(
            (c.get(11, 21), c.get(12, 21), c.get(13, 21), c.get(11, 22)),
            (7, 7, 2113, 2211)
        );
        assert_eq!(c.first_mismatch(|x, y| c.get(x, y)), None);
        let m = c
            .first_mismatch(|x, y| if (x, y) == (12, 21) { 0 } else { c.get(x, y) })
            .unwrap();
        assert_eq!(
            m,
            Mismatch {
                x: 12,
                y: 21,
                expected: 7,
                got: 0
            }
        );
        assert_eq!(
            m.to_string(),
            "pixel (12, 21): expected 0x00000007, got 0x00000000"
        );
    }

    #[test]
    fn overlapping_copies_move_like_memmove() {
        // Down-right onto itself: a naive forward copy would smear.
        let mut c = numbered();
        c.copy(
            10,
            20,
            Rect {
                x: 11,
                y: 21,
                w: 4,
                h: 3,
            },
        );
        for dy in 0..3 {
            for dx in 0..4 {
                assert_eq!(c.get(11 + dx, 21 + dy), (20 + dy) * 100 + 10 + dx);
            }
        }
        // Up-left onto itself.
        let mut c = numbered();
        c.copy(
            12,
            22,
            Rect {
                x: 10,
                y: 20,
                w: 5,
                h: 4,
            },
        );
        assert_eq!((c.get(10, 20), c.get(14, 23)), (2212, 2516));
        // Same row, shifted right by one.
        let mut c = numbered();
        c.copy(
            10,
            20,
            Rect {
                x: 11,
                y: 20,
                w: 6,
                h: 1,
            },
        );
        assert_eq!(
            (c.get(11, 20), c.get(16, 20), c.get(17, 20)),
            (2010, 2015, 2017)
        );
    }

    #[test]
    fn painting_regions() {
        let mut c = numbered();
        c.paint(&Region::Fill {
            rect: area(),
            color: 5,
        });
        c.paint(&Region::Copy {
            rect: Rect {
                x: 12,
                y: 22,
                w: 4,
                h: 4,
            },
            pattern: Pattern::Checker {
                cell: 2,
                a: 1,
                b: 2,
            },
            source: crate::picture::Source::Tile(0),
        });
        assert_eq!(
            (
                c.get(10, 20),
                c.get(12, 22),
                c.get(14, 22),
                c.get(14, 24),
                c.get(13, 24)
            ),
            (5, 1, 2, 1, 2)
        );
    }

    #[test]
    fn dword_mismatches() {
        let mem = [0u32, 11, 22, 33];
        assert_eq!(first_dword_mismatch(&[(1, 11), (3, 33)], |i| mem[i]), None);
        assert_eq!(
            first_dword_mismatch(&[(1, 11), (2, 5), (3, 0)], |i| mem[i]),
            Some((2, 5, 22))
        );
    }
}

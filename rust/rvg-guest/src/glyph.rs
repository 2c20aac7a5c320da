//! Big block letters: a tiny 5x7 glyph table and text rendered as
//! rectangles (so the engine can draw it with FILL_RECTs).

use crate::picture::Rect;

pub const GLYPH_W: u32 = 5;
pub const GLYPH_H: u32 = 7;
/// Columns between letters.
pub const SPACING: u32 = 1;

/// Rows top to bottom, '#' set. Only what the demo writes, plus a few.
const GLYPHS: &[(char, [&str; 7])] = &[
    (
        'R',
        [
            "####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#",
        ],
    ),
    (
        'V',
        [
            "#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#..",
        ],
    ),
    (
        'G',
        [
            ".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####",
        ],
    ),
    (
        '-',
        [
            ".....", ".....", ".....", "#####", ".....", ".....", ".....",
        ],
    ),
    (
        '1',
        [
            "..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
    ),
    (
        'O',
        [
            ".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###.",
        ],
    ),
    (
        'K',
        [
            "#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#",
        ],
    ),
    (
        ' ',
        [
            ".....", ".....", ".....", ".....", ".....", ".....", ".....",
        ],
    ),
];

fn glyph(c: char) -> Option<&'static [&'static str; 7]> {
    GLYPHS.iter().find(|(g, _)| *g == c).map(|(_, rows)| rows)
}

/// Size in pixels of `text` drawn with `scale`-pixel cells.
pub fn text_size(text: &str, scale: u32) -> (u32, u32) {
    let n = text.chars().count() as u32;
    let cells = if n == 0 {
        0
    } else {
        n * GLYPH_W + (n - 1) * SPACING
    };
    (cells * scale, GLYPH_H * scale)
}

/// `text` at (x, y) as rectangles, each cell `scale` pixels square. Runs
/// of set cells in a row become one rectangle, and a run repeated in the
/// rows below grows downwards, so "1" is a few rectangles, not 13.
pub fn render(text: &str, x: u32, y: u32, scale: u32) -> Result<Vec<Rect>, String> {
    let mut rects = Vec::new();
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c).ok_or_else(|| format!("no glyph for {c:?}"))?;
        let gx = x + i as u32 * (GLYPH_W + SPACING) * scale;
        // Open rectangles of this glyph: (first column, columns, first row, rows).
        let mut open: Vec<(u32, u32, u32, u32)> = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let r = r as u32;
            let runs = runs(row);
            // Close rectangles whose run does not continue into this row.
            let (cont, done): (Vec<_>, Vec<_>) = open
                .into_iter()
                .partition(|o| runs.contains(&(o.0, o.1)) && o.2 + o.3 == r);
            rects.extend(done.into_iter().map(|o| cell_rect(gx, y, scale, o)));
            open = cont;
            for run in runs {
                match open.iter_mut().find(|o| (o.0, o.1) == run) {
                    Some(o) => o.3 += 1,
                    None => open.push((run.0, run.1, r, 1)),
                }
            }
        }
        rects.extend(open.into_iter().map(|o| cell_rect(gx, y, scale, o)));
    }
    Ok(rects)
}

/// Runs of '#' in a row: (first column, length).
fn runs(row: &str) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in row.chars().chain(std::iter::once('.')).enumerate() {
        match (c == '#', start) {
            (true, None) => start = Some(i as u32),
            (false, Some(s)) => {
                out.push((s, i as u32 - s));
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn cell_rect(gx: u32, y: u32, scale: u32, (col, cols, row, rows): (u32, u32, u32, u32)) -> Rect {
    Rect {
        x: gx + col * scale,
        y: y + row * scale,
        w: cols * scale,
        h: rows * scale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paint rectangles into a bitmap, counting how often each pixel is hit.
    fn paint(rects: &[Rect], w: u32, h: u32) -> Vec<u32> {
        let mut hits = vec![0; (w * h) as usize];
        for r in rects {
            for yy in r.y..r.y + r.h {
                for xx in r.x..r.x + r.w {
                    hits[(yy * w + xx) as usize] += 1;
                }
            }
        }
        hits
    }

    #[test]
    fn rectangles_cover_exactly_the_set_cells() {
        for text in ["RVG-1", "OK", "G", "1 1"] {
            for scale in [1, 3] {
                let (w, h) = text_size(text, scale);
                let rects = render(text, 0, 0, scale).unwrap();
                let hits = paint(&rects, w, h);
                for y in 0..h {
                    for x in 0..w {
                        let (cx, cy) = (x / scale, y / scale);
                        let (g, col) = (cx / (GLYPH_W + SPACING), cx % (GLYPH_W + SPACING));
                        let set = col < GLYPH_W
                            && glyph(text.chars().nth(g as usize).unwrap()).unwrap()[cy as usize]
                                .as_bytes()[col as usize]
                                == b'#';
                        assert_eq!(
                            hits[(y * w + x) as usize],
                            u32::from(set),
                            "{text:?} x{scale} at ({x},{y})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn vertical_runs_merge() {
        // "1": top, the stem's shoulder, stem, foot: far fewer than 13 cells.
        let rects = render("1", 0, 0, 1).unwrap();
        assert!(rects.len() <= 5, "{rects:?}");
        assert!(
            rects.contains(&Rect {
                x: 2,
                y: 2,
                w: 1,
                h: 4
            }),
            "{rects:?}"
        );
        // "-" is one bar.
        assert_eq!(
            render("-", 10, 20, 2).unwrap(),
            vec![Rect {
                x: 10,
                y: 26,
                w: 10,
                h: 2
            }]
        );
    }

    #[test]
    fn sizes_and_placement() {
        assert_eq!(text_size("RVG-1", 4), (29 * 4, 28));
        assert_eq!(text_size("", 4), (0, 28));
        let r = render("RV", 100, 50, 2).unwrap();
        assert!(r
            .iter()
            .all(|r| r.x >= 100 && r.y >= 50 && r.x + r.w <= 100 + 22 && r.y + r.h <= 64));
        assert!(render("RVG-2", 0, 0, 1).unwrap_err().contains("'2'"));
    }

    #[test]
    fn glyph_table_is_well_formed() {
        for (c, rows) in GLYPHS {
            assert!(rows.iter().all(|r| r.len() == GLYPH_W as usize && r.chars().all(|c| c == '#' || c == '.')), "{c:?}");
        }
    }
}

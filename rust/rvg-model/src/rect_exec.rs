//! Rectangles executed in bands of rows, so a preemption request or a reset
//! waits for one band rather than a whole rectangle: `FILL_RECT` here, the
//! banding `COPY_RECT` shares.
//!
//! A band is whole rows, at least one, about `PREEMPT_BAND_BYTES` of
//! pixels. Between two bands of a ring-level rectangle the engine asks
//! whether to stop; a rectangle stopped after `n` rows of its execution
//! order starts again with those rows skipped. Each band is one memory call
//! where the rows allow it, so banding costs a call per band, not per row.

use crate::engine::{check_rect, EngineError, Signal};
use crate::memory::{Fault, GfxMemory};

/// Pixel bytes in a band of rows: small enough that a band takes well under
/// a millisecond, large enough that the calls between bands cost nothing.
pub const PREEMPT_BAND_BYTES: u64 = 256 << 10;

/// Where a rectangle starts and whether it may stop inside.
#[derive(Clone, Copy)]
pub struct Bands<'a> {
    /// Rows of the execution order already done: skipped.
    pub skip: u64,
    /// Asked between bands: a ring-level rectangle. None inside a batch:
    /// the rectangle runs to its end, as one band.
    pub point: Option<&'a dyn Fn() -> Signal>,
}

impl Bands<'_> {
    /// From the first row, with no preemption point inside.
    pub const WHOLE: Bands<'static> = Bands {
        skip: 0,
        point: None,
    };
}

/// How a rectangle's execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RectEnd {
    /// Every row is done.
    Done,
    /// A preemption point said stop (`Preempt`, `Cancel`, `Yield`) after `rows`
    /// rows of the execution order.
    Stopped { rows: u64, signal: Signal },
}

/// Rows of `row` bytes (> 0) in a band: at least one.
pub fn band_rows(row: u64) -> u64 {
    (PREEMPT_BAND_BYTES / row).max(1)
}

/// Do rows `[at.skip, height)` of an execution order band by band:
/// `band(i, n)` does the `n` rows from execution index `i`. Between two
/// bands, `at.point` may stop it.
pub fn banded(
    height: u64,
    row: u64,
    at: &Bands,
    mut band: impl FnMut(u64, u64) -> Result<(), Fault>,
) -> Result<RectEnd, EngineError> {
    let per = match at.point {
        Some(_) => band_rows(row),
        None => height,
    };
    let mut i = at.skip.min(height);
    while i < height {
        let n = per.min(height - i);
        band(i, n)?;
        i += n;
        if i < height {
            if let Some(point) = at.point {
                match point() {
                    Signal::Run => {}
                    signal => return Ok(RectEnd::Stopped { rows: i, signal }),
                }
            }
        }
    }
    Ok(RectEnd::Done)
}

/// `FILL_RECT`: `width` x `height` pixels of `color` at `dst`, rows `pitch`
/// bytes apart, top-down. Every row is checked mapped before the first is
/// written, resumed or not.
pub fn fill_rect(
    mem: &dyn GfxMemory,
    dst: u64,
    pitch: u32,
    width: u32,
    height: u32,
    color: u32,
    at: &Bands,
) -> Result<RectEnd, EngineError> {
    let row = check_rect(dst, pitch, width, height)?;
    let (pitch, height) = (u64::from(pitch), u64::from(height));
    mem.check_rows(dst, pitch, row, height)?;
    if row == 0 {
        return Ok(RectEnd::Done);
    }
    banded(height, row, at, |y, n| {
        if pitch == row {
            // Rows back to back: one fill per band.
            mem.fill32(dst + y * pitch, row * n, color)
        } else {
            mem.fill_rows(dst + y * pitch, pitch, row, n, color)
        }
    })
}

#[cfg(test)]
#[path = "preempt_tests.rs"]
mod tests;

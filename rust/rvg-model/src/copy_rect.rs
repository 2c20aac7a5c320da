//! `COPY_RECT`: copy a rectangle of 32-bit pixels between two surfaces whose
//! rows may lie at different pitches, with the result of reading the whole
//! source before writing the destination, however the two overlap, and
//! with that result still when it is preempted between bands and resumed.

use std::ops::Range;

use crate::engine::{check_rect, EngineError, Signal};
use crate::memory::GfxMemory;
use crate::rect_exec::{band_rows, banded, Bands, RectEnd};

/// Copy `width` x `height` pixels from `src` (rows `src_pitch` bytes apart)
/// to `dst` (rows `dst_pitch` apart). Every row of both rectangles is
/// checked mapped before the first byte is written, resumed or not.
///
/// Execution orders, each of which never reads a source row a previous
/// band wrote, so stopping between bands and resuming gives the same
/// result: equal pitches (one row, rows back to back) bottom-up when the
/// destination lies after the source, else top-down; different pitches
/// top-down. A different-pitch copy whose source meets its destination is
/// not preemptible inside: its snapshot of the source would not survive a
/// stop, so it runs to its end.
#[allow(clippy::too_many_arguments)]
pub fn copy_rect(
    mem: &dyn GfxMemory,
    src: u64,
    src_pitch: u32,
    dst: u64,
    dst_pitch: u32,
    width: u32,
    height: u32,
    at: &Bands,
) -> Result<RectEnd, EngineError> {
    let row = check_rect(src, src_pitch, width, height)?;
    check_rect(dst, dst_pitch, width, height)?;
    let (sp, dp, h) = (
        u64::from(src_pitch),
        u64::from(dst_pitch),
        u64::from(height),
    );
    for y in 0..h {
        mem.check(src + y * sp, row)?;
        mem.check(dst + y * dp, row)?;
    }
    if row == 0 || h == 0 {
        return Ok(RectEnd::Done);
    }
    if h == 1 || sp == dp {
        // Equal pitches (or one row, where they do not matter): destination
        // row y can only meet source rows on the far side of y from the
        // source (y' >= y when the destination lies after it), so bottom-up
        // when it lies after, else top-down, never reads a row already
        // written; within a row, memmove. Rows back to back make each band
        // one memmove-like copy, which is right for the same reason.
        let up = dst > src;
        let packed = sp == row;
        return banded(h, row, at, |i, n| {
            let first = if up { h - i - n } else { i };
            if packed {
                return mem.copy(src + first * sp, dst + first * dp, n * row);
            }
            for k in 0..n {
                let y = if up { first + n - 1 - k } else { first + k };
                mem.copy(src + y * sp, dst + y * dp, row)?;
            }
            Ok(())
        });
    }
    // Different pitches: within one copy, some destination rows may meet
    // source rows above their own index and others below, so neither
    // top-down nor bottom-up is safe. Snapshot the source rows that meet the
    // destination span first, then write every row: snapshotted rows from
    // the buffer, the others straight from memory, which no destination
    // write can change since they lie outside the destination span. The
    // buffer holds at most one rectangle's bytes, all just checked mapped;
    // for a guest stream the mediator's scanner keeps each rectangle inside
    // the guest's 128 MiB of graphics space.
    let dst_end = dst + dp * (h - 1) + row;
    let snap = rows_meeting(src, sp, row, h, dst..dst_end);
    if snap.is_empty() {
        // No source row meets the destination: top-down, preemptible.
        return banded(h, row, at, |i, n| {
            (i..i + n).try_for_each(|y| mem.copy(src + y * sp, dst + y * dp, row))
        });
    }
    // Not preemptible inside: the snapshot would be lost at a stop, and
    // the rows it holds may be overwritten before the copy resumes. A reset
    // still stops it between bands: its results are dropped anyway. The
    // snapshot is taken a band at a time, so a reset never waits for more
    // than a band's memory to be set up either.
    let per = band_rows(row);
    let cancelled = || at.point.is_some_and(|point| point() == Signal::Cancel);
    const CANCELLED: RectEnd = RectEnd::Stopped {
        rows: 0,
        signal: Signal::Cancel,
    };
    let row_bytes = row as usize;
    let mut bands: Vec<Vec<u8>> = Vec::new();
    for first in snap.clone().step_by(per as usize) {
        if cancelled() {
            return Ok(CANCELLED);
        }
        let rows = per.min(snap.end - first);
        let mut band = vec![0u8; rows as usize * row_bytes];
        for (part, y) in band.chunks_exact_mut(row_bytes).zip(first..) {
            mem.read(src + y * sp, part)?;
        }
        bands.push(band);
    }
    for y in at.skip.min(h)..h {
        if y.is_multiple_of(per) && cancelled() {
            return Ok(CANCELLED);
        }
        let to = dst + y * dp;
        if snap.contains(&y) {
            let (band, within) = ((y - snap.start) / per, (y - snap.start) % per);
            let at = within as usize * row_bytes;
            mem.write(to, &bands[band as usize][at..at + row_bytes])?;
        } else {
            mem.copy(src + y * sp, to, row)?;
        }
    }
    Ok(RectEnd::Done)
}

/// The rows of a rectangle (`height` rows of `row` > 0 bytes, `pitch` >=
/// `row` apart from `base`) that share a byte with `span`: rows ascend, so
/// they form one range, empty when none do.
fn rows_meeting(base: u64, pitch: u64, row: u64, height: u64, span: Range<u64>) -> Range<u64> {
    // Row y meets the span iff base + y*pitch < span.end and
    // base + y*pitch + row > span.start.
    let first = if base + row > span.start {
        0
    } else {
        (span.start - base - row) / pitch + 1
    };
    let end = if base >= span.end {
        0
    } else {
        (span.end - base).div_ceil(pitch)
    };
    let first = first.min(height);
    first..end.clamp(first, height)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Command;
    use crate::engine::tests::{engine, setup, submit};
    use crate::engine::{error, EngineState};

    /// What `COPY_RECT` promises, plainly: read every source row of `mem`
    /// (graphics bytes from `base`), then write every destination row.
    fn reference(mem: &[u8], base: u64, c: Command) -> Vec<u8> {
        let Command::CopyRect {
            src,
            src_pitch,
            dst,
            dst_pitch,
            width,
            height,
        } = c
        else {
            unreachable!("a copy")
        };
        let row = width as usize * 4;
        let at = |a: u64| (a - base) as usize;
        let rows: Vec<Vec<u8>> = (0..u64::from(height))
            .map(|y| mem[at(src + y * u64::from(src_pitch))..][..row].to_vec())
            .collect();
        let mut out = mem.to_vec();
        for (y, r) in (0..).zip(&rows) {
            out[at(dst + y * u64::from(dst_pitch))..][..row].copy_from_slice(r);
        }
        out
    }

    /// Distinct dwords for the graphics bytes `region`.
    fn pattern(region: Range<u64>) -> Vec<u8> {
        (region.start / 4..region.end / 4)
            .flat_map(|i| (i as u32 ^ 0x5a00_0000).to_le_bytes())
            .collect()
    }

    /// Fill `region` with its pattern, run `c` through the engine and
    /// compare the whole region with the reference.
    fn check_copy(e: &mut EngineState, m: &dyn GfxMemory, region: Range<u64>, c: Command) {
        check_copy_from(e, m, region.start, &pattern(region), c);
    }

    /// `check_copy` with the pattern of the region at `base` already made.
    fn check_copy_from(
        e: &mut EngineState,
        m: &dyn GfxMemory,
        base: u64,
        before: &[u8],
        c: Command,
    ) {
        m.write(base, before).unwrap();
        submit(e, m, &[c]);
        e.run(m, 10, &|| crate::engine::Signal::Run);
        assert_eq!(e.error, error::NONE, "{c:x?}");
        let mut after = vec![0u8; before.len()];
        m.read(base, &mut after).unwrap();
        let want = reference(before, base, c);
        if let Some(i) = (0..want.len()).find(|&i| after[i] != want[i]) {
            panic!("{c:x?}: wrong from {:#x}", base + i as u64);
        }
    }

    fn copy(
        src: u64,
        src_pitch: u32,
        dst: u64,
        dst_pitch: u32,
        width: u32,
        height: u32,
    ) -> Command {
        Command::CopyRect {
            src,
            src_pitch,
            dst,
            dst_pitch,
            width,
            height,
        }
    }

    /// The reported case (source pitch 0x400, destination pitch 0x1000,
    /// destination 0x2000 either side of the source, rows packed or not)
    /// and its mirror.
    #[test]
    fn reported_case_and_its_mirror() {
        let m = setup();
        let mut e = engine();
        for (src_pitch, dst_pitch) in [(0x400, 0x1000), (0x1000, 0x400)] {
            for width in [0x100, 0x40, 0xc0] {
                for dst in [0x1e000, 0x22000] {
                    let c = copy(0x20000, src_pitch, dst, dst_pitch, width, 16);
                    check_copy(&mut e, &m, 0x1c000..0x34000, c);
                }
            }
        }
    }

    #[test]
    fn unequal_pitch_overlaps_above_below_equal_and_partial_rows() {
        let m = setup();
        let mut e = engine();
        let src = 0x21000u64;
        // Destination pitch smaller and larger than the source's; the
        // destination above, at, and below the source, by whole rows and by
        // parts of a row (4 bytes, half a row, a row and a bit).
        for (sp, dp) in [(0x40, 0x60), (0x60, 0x40), (0x20, 0x100), (0x100, 0x20)] {
            for delta in [
                -0x104i64, -0x84, -0x44, -0x10, -4, 0, 4, 0x10, 0x44, 0x84, 0x104,
            ] {
                let dst = src.checked_add_signed(delta).unwrap();
                check_copy(&mut e, &m, 0x20000..0x23000, copy(src, sp, dst, dp, 8, 6));
            }
        }
    }

    #[test]
    fn sweep_of_small_copies_matches_the_reference() {
        let m = setup();
        let mut e = engine();
        let src = 0x10100u64;
        let before = pattern(0x10000..0x10300);
        let mut cases = 0;
        for width in 1..=3u32 {
            let pitches: Vec<u32> = (width..=width + 3).chain([7, 11]).collect();
            for height in 1..=4 {
                for &sp in &pitches {
                    for &dp in &pitches {
                        for delta in -20i64..=20 {
                            let dst = src.checked_add_signed(4 * delta).unwrap();
                            let c = copy(src, 4 * sp, dst, 4 * dp, width, height);
                            check_copy_from(&mut e, &m, 0x10000, &before, c);
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert!(cases > 10_000);
    }

    #[test]
    fn unmapped_rows_fault_before_any_write() {
        let m = setup();
        let mut e = engine();
        let pattern: Vec<u8> = (0..0x5000u32).map(|i| i as u8).collect();
        m.write(0x3b000, &pattern).unwrap();
        // Overlapping, unequal pitches; the last destination row starts in
        // graphics page 64, which `setup` leaves unmapped.
        submit(
            &mut e,
            &m,
            &[copy(0x3c000, 0x400, 0x3cc00, 0x1000, 0x100, 5)],
        );
        e.run(&m, 10, &|| crate::engine::Signal::Run);
        assert_eq!((e.error, e.error_addr), (error::BAD_ADDRESS, 0x40c00));
        let mut after = vec![0u8; pattern.len()];
        m.read(0x3b000, &mut after).unwrap();
        assert!(after == pattern, "nothing written");
    }

    #[test]
    fn rows_meeting_a_span_match_brute_force() {
        for (pitch, row) in [(4, 4), (12, 8), (16, 4), (20, 20)] {
            for height in 1..=5 {
                for lo in 0..120 {
                    for len in 1..40 {
                        let span = lo..lo + len;
                        let want: Vec<u64> = (0..height)
                            .filter(|y| {
                                let r = 40 + y * pitch;
                                r < span.end && r + row > span.start
                            })
                            .collect();
                        let got = rows_meeting(40, pitch, row, height, span.clone());
                        assert_eq!(
                            got.collect::<Vec<_>>(),
                            want,
                            "{pitch} {row} {height} {span:?}"
                        );
                    }
                }
            }
        }
    }
}

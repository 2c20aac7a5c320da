//! Preemption: where the engine stops, what it has done when it stops, and
//! that stopping and resuming anywhere gives the uninterrupted result.

use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::cmd::Command;
use crate::engine::tests::submit;
use crate::engine::{error, ring_ctl, EngineState, RunOutcome};
use crate::irq::IntSource;
use crate::regs::{EngineReg, Register};
use crate::test_mem::FlatMem;

/// Graphics memory: the ring at 0, rectangles from `LO` up to `MEM`.
const MEM: u64 = 4 << 20;
const LO: u64 = 0x10000;
/// A row of 64 KiB: bands of 4 rows.
const WIDE: u32 = 16 << 10;
const WIDE_ROW: u64 = 64 << 10;

fn engine() -> EngineState {
    EngineState {
        ring_size: 4096,
        ctl: ring_ctl::ENABLE,
        ..Default::default()
    }
}

/// Distinct dwords over `[LO, MEM)`, zeros below.
fn pattern() -> Vec<u8> {
    (0..MEM / 4)
        .flat_map(|i| {
            let v = if i * 4 < LO {
                0
            } else {
                i as u32 ^ 0x5a00_0000
            };
            v.to_le_bytes()
        })
        .collect()
}

fn mem_with(bytes: &[u8]) -> FlatMem {
    let m = FlatMem::new(MEM as usize);
    m.write(0, bytes).unwrap();
    m
}

fn contents(m: &FlatMem) -> Vec<u8> {
    let mut b = vec![0u8; MEM as usize];
    m.read(0, &mut b).unwrap();
    b
}

/// Compare graphics memory from `LO` on (the ring below differs).
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    let lo = LO as usize;
    if let Some(i) = (lo..want.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: wrong from {i:#x}");
    }
}

/// `initial` with rows `rows` of rectangle `c` done as `c` does them
/// (a copy's rows from the initial source: what every safe order reads).
fn with_rows(initial: &[u8], c: Command, rows: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut out = initial.to_vec();
    for y in rows {
        match c {
            Command::FillRect {
                dst,
                pitch,
                width,
                color,
                ..
            } => {
                let at = (dst + y * u64::from(pitch)) as usize;
                for px in out[at..at + 4 * width as usize].chunks_exact_mut(4) {
                    px.copy_from_slice(&color.to_le_bytes());
                }
            }
            Command::CopyRect {
                src,
                src_pitch,
                dst,
                dst_pitch,
                width,
                ..
            } => {
                let from = (src + y * u64::from(src_pitch)) as usize;
                let to = (dst + y * u64::from(dst_pitch)) as usize;
                let row = 4 * width as usize;
                out[to..to + row].copy_from_slice(&initial[from..from + row]);
            }
            _ => unreachable!("a rectangle"),
        }
    }
    out
}

/// What running `cmds` without a stop leaves in memory.
fn uninterrupted(initial: &[u8], cmds: &[Command]) -> Vec<u8> {
    let m = mem_with(initial);
    let mut e = engine();
    submit(&mut e, &m, cmds);
    let out = e.run(&m, 100, &|| Signal::Run);
    assert_eq!(
        (out.preempted, e.head, e.error),
        (false, e.tail, error::NONE)
    );
    contents(&m)
}

/// A signal that counts its calls and says `answer` on call `n` (from 1).
fn on_call(n: usize, answer: Signal, calls: &Cell<usize>) -> impl Fn() -> Signal + '_ {
    move || {
        calls.set(calls.get() + 1);
        if calls.get() == n {
            answer
        } else {
            Signal::Run
        }
    }
}

/// A signal that says `answer` from call `n` (from 1) on: a request that
/// stands once made.
fn from_call(n: usize, answer: Signal, calls: &Cell<usize>) -> impl Fn() -> Signal + '_ {
    move || {
        calls.set(calls.get() + 1);
        if calls.get() >= n {
            answer
        } else {
            Signal::Run
        }
    }
}

/// Stopped for a preemption: the registers and the outcome say so.
fn assert_preempted(e: &EngineState, out: &RunOutcome, head: u32, resume: u32) {
    assert!(out.preempted && !out.more);
    assert!(out.raise.contains(IntSource::PREEMPTED));
    assert_eq!(e.ctl & (ring_ctl::ENABLE | ring_ctl::PREEMPT), 0);
    assert_eq!((e.head, e.resume, e.error), (head, resume, error::NONE));
}

/// Run rectangle `c` (`height` rows) preempted after `k` bands of `band`
/// rows, then after one more band, then to its end: each stop leaves
/// exactly the rows of the execution order done (`order` lists them), and
/// the end the uninterrupted result.
fn stop_twice_and_finish(c: Command, height: u64, band: u64, k: u64, order: &[u64]) {
    let initial = pattern();
    let m = mem_with(&initial);
    let mut e = engine();
    submit(&mut e, &m, &[c]);
    // Call 1 is the point before the command, call 1 + j the one after
    // band j.
    let calls = Cell::new(0);
    let out = e.run(&m, 10, &on_call(1 + k as usize, Signal::Preempt, &calls));
    let done = k * band;
    assert_preempted(&e, &out, 0, done as u32);
    let want = with_rows(&initial, c, order[..done as usize].iter().copied());
    assert_same(&contents(&m), &want, "first stop");

    e.ctl = ring_ctl::ENABLE;
    calls.set(0);
    let out = e.run(&m, 10, &on_call(2, Signal::Preempt, &calls));
    let done = (done + band).min(height);
    if done < height {
        assert_preempted(&e, &out, 0, done as u32);
        let want = with_rows(&initial, c, order[..done as usize].iter().copied());
        assert_same(&contents(&m), &want, "second stop");
        e.ctl = ring_ctl::ENABLE;
        e.run(&m, 10, &|| Signal::Run);
    }
    assert_eq!((e.head, e.resume, e.error), (e.tail, 0, error::NONE));
    let whole = uninterrupted(&initial, &[c]);
    assert_same(&contents(&m), &whole, "the end");
    assert_same(&whole, &with_rows(&initial, c, 0..height), "the reference");
}

fn fill(dst: u64, pitch: u32, width: u32, height: u32) -> Command {
    Command::FillRect {
        dst,
        pitch,
        width,
        height,
        color: 0x00c0_ffee,
    }
}

fn copy(src: u64, src_pitch: u32, dst: u64, dst_pitch: u32, width: u32, height: u32) -> Command {
    Command::CopyRect {
        src,
        src_pitch,
        dst,
        dst_pitch,
        width,
        height,
    }
}

#[test]
fn a_band_is_whole_rows_of_about_256_kib() {
    assert_eq!(band_rows(WIDE_ROW), 4);
    assert_eq!(band_rows(4), PREEMPT_BAND_BYTES / 4);
    assert_eq!(band_rows(PREEMPT_BAND_BYTES + 4), 1, "at least one row");
}

#[test]
fn fills_stop_between_bands_and_resume() {
    let top_down: Vec<u64> = (0..10).collect();
    for pitch in [WIDE_ROW as u32, WIDE_ROW as u32 + 0x100] {
        for k in [1, 2] {
            let c = fill(0x100000, pitch, WIDE, 10);
            stop_twice_and_finish(c, 10, 4, k, &top_down);
        }
    }
}

#[test]
fn overlapping_equal_pitch_copies_stop_and_resume_in_their_order() {
    let pitch = WIDE_ROW as u32 + 0x40;
    let src = 0x100000;
    let top_down: Vec<u64> = (0..10).collect();
    let bottom_up: Vec<u64> = (0..10).rev().collect();
    // The destination a row and a bit after the source: bottom-up; before
    // it: top-down.
    let after = copy(src, pitch, src + u64::from(pitch) + 8, pitch, WIDE, 10);
    stop_twice_and_finish(after, 10, 4, 1, &bottom_up);
    let before = copy(src, pitch, src - u64::from(pitch) - 8, pitch, WIDE, 10);
    stop_twice_and_finish(before, 10, 4, 1, &top_down);
}

#[test]
fn overlapping_back_to_back_copies_stop_and_resume() {
    let (src, row) = (0x100000, WIDE_ROW as u32);
    let top_down: Vec<u64> = (0..10).collect();
    let bottom_up: Vec<u64> = (0..10).rev().collect();
    for k in [1, 2] {
        let after = copy(src, row, src + 3 * WIDE_ROW + 4, row, WIDE, 10);
        stop_twice_and_finish(after, 10, 4, k, &bottom_up);
        let before = copy(src, row, src - 3 * WIDE_ROW - 4, row, WIDE, 10);
        stop_twice_and_finish(before, 10, 4, k, &top_down);
    }
}

#[test]
fn different_pitch_copies_apart_stop_and_resume_top_down() {
    let top_down: Vec<u64> = (0..10).collect();
    let c = copy(
        0x40000,
        WIDE_ROW as u32,
        0x200000,
        WIDE_ROW as u32 + 0x1000,
        WIDE,
        10,
    );
    stop_twice_and_finish(c, 10, 4, 1, &top_down);
    let c = copy(
        0x200000,
        WIDE_ROW as u32 + 0x1000,
        0x40000,
        WIDE_ROW as u32,
        WIDE,
        10,
    );
    stop_twice_and_finish(c, 10, 4, 2, &top_down);
}

/// Stop requested on call `n`, `cmds` run: the stop came at the tail,
/// after all of them, with the uninterrupted result.
fn runs_to_the_tail(cmds: &[Command], n: usize) {
    let initial = pattern();
    let m = mem_with(&initial);
    let mut e = engine();
    submit(&mut e, &m, cmds);
    let calls = Cell::new(0);
    let out = e.run(&m, 10, &from_call(n, Signal::Preempt, &calls));
    assert_preempted(&e, &out, e.tail, 0);
    assert!(calls.get() >= n, "the request was made inside");
    assert_same(&contents(&m), &uninterrupted(&initial, cmds), "result");
}

#[test]
fn overlapping_different_pitch_copies_and_one_row_run_to_their_end() {
    // The source meets the destination: the snapshot keeps it whole.
    let c = copy(
        0x100000,
        WIDE_ROW as u32,
        0x120000,
        WIDE_ROW as u32 * 2,
        WIDE,
        10,
    );
    runs_to_the_tail(&[c], 2);
    // A reset still stops it inside: what it did is dropped with it.
    let initial = pattern();
    let m = mem_with(&initial);
    let mut e = engine();
    submit(&mut e, &m, &[c]);
    let calls = Cell::new(0);
    let out = e.run(&m, 10, &from_call(2, Signal::Cancel, &calls));
    assert!(!out.preempted && out.raise.is_empty());
    assert_eq!((e.head, e.resume, e.ctl), (0, 0, ring_ctl::ENABLE));
    assert_ne!(
        contents(&m),
        uninterrupted(&initial, &[c]),
        "stopped inside"
    );
    // One row of 1 MiB is one band.
    runs_to_the_tail(&[fill(0x100000, 0, 256 << 10, 1)], 2);
    runs_to_the_tail(&[copy(0x100000, 0, 0x100100, 0, 256 << 10, 1)], 2);
}

/// An engine whose ring holds one batch of `cmds` (at 0x8000, over the
/// pattern): the engine, its memory, the memory before.
fn batch_of(cmds: &[Command]) -> (EngineState, FlatMem, Vec<u8>) {
    let bytes: Vec<u8> = cmds
        .iter()
        .chain([&Command::BatchEnd])
        .flat_map(|c| c.encode())
        .flat_map(|d| d.to_le_bytes())
        .collect();
    let initial = pattern();
    let m = mem_with(&initial);
    m.write(0x8000, &bytes).unwrap();
    let mut e = engine();
    let batch = Command::BatchStart {
        addr: 0x8000,
        len: bytes.len() as u32,
    };
    submit(&mut e, &m, &[batch]);
    (e, m, initial)
}

#[test]
fn a_batch_has_no_preemption_points() {
    let big = fill(0x100000, WIDE_ROW as u32, WIDE, 10);
    let (mut e, m, initial) = batch_of(&[big]);
    // A request standing from the first point inside the batch on (a
    // yield too) is answered only after it.
    let calls = Cell::new(0);
    let out = e.run(&m, 10, &from_call(2, Signal::Preempt, &calls));
    assert_preempted(&e, &out, e.tail, 0);
    assert_same(&contents(&m), &with_rows(&initial, big, 0..10), "result");
    assert!(
        calls.get() > 2,
        "the batch asked at its points: {}",
        calls.get()
    );
}

/// A reset (or an arbiter's preemption timeout) does not wait for a whole
/// batch: it stops at the next point inside, between bands of a rectangle.
#[test]
fn a_batch_stops_for_a_cancel_inside() {
    let big = fill(0x100000, WIDE_ROW as u32, WIDE, 10);
    let (mut e, m, initial) = batch_of(&[big, big]);
    let calls = Cell::new(0);
    // Call 1: the ring's point before the batch; 2: before its first
    // command; 3: after the first band of 4 rows.
    let out = e.run(&m, 10, &from_call(3, Signal::Cancel, &calls));
    assert_eq!(calls.get(), 3);
    assert!(!out.preempted && out.raise.is_empty());
    assert_eq!(
        (e.head, e.error),
        (0, error::NONE),
        "head stays on the batch"
    );
    assert_same(
        &contents(&m),
        &with_rows(&initial, big, 0..4),
        "one band done",
    );
}

#[test]
fn a_preemption_between_commands_leaves_head_on_the_next() {
    let m = mem_with(&pattern());
    let mut e = engine();
    let store = |addr, value| Command::StoreDw { addr, value };
    submit(&mut e, &m, &[store(0x8000, 1), store(0x8004, 2)]);
    let calls = Cell::new(0);
    let out = e.run(&m, 10, &on_call(2, Signal::Preempt, &calls));
    let first = 4 * store(0x8000, 1).encode().len() as u32;
    assert_preempted(&e, &out, first, 0);
    assert_eq!(out.commands, 1);
    assert_eq!((m.read_u32(0x8000), m.read_u32(0x8004)), (Ok(1), Ok(0)));
    e.ctl = ring_ctl::ENABLE;
    let out = e.run(&m, 10, &|| Signal::Run);
    assert!(!out.preempted && e.head == e.tail);
    assert_eq!(m.read_u32(0x8004), Ok(2));
}

#[test]
fn a_request_in_ctl_stops_the_run_before_its_first_command() {
    let m = mem_with(&pattern());
    let mut e = engine();
    submit(
        &mut e,
        &m,
        &[Command::StoreDw {
            addr: 0x8000,
            value: 1,
        }],
    );
    e.ctl |= ring_ctl::PREEMPT;
    let out = e.run(&m, 10, &|| Signal::Run);
    assert_preempted(&e, &out, 0, 0);
    assert_eq!((out.commands, m.read_u32(0x8000)), (0, Ok(0)));
    // A preempted rectangle stopped again before it starts keeps its rows.
    e.resume = 3;
    e.ctl = ring_ctl::ENABLE | ring_ctl::PREEMPT;
    let out = e.run(&m, 10, &|| Signal::Run);
    assert_preempted(&e, &out, 0, 3);
}

#[test]
fn a_request_at_the_tail_or_with_nothing_to_run_is_answered() {
    runs_to_the_tail(&[Command::Noop, Command::Noop], 3);
    // Idle, or halted on an error: the run answers at once.
    let m = mem_with(&pattern());
    let mut e = engine();
    e.ctl |= ring_ctl::PREEMPT;
    let out = e.run(&m, 10, &|| Signal::Run);
    assert_preempted(&e, &out, 0, 0);
    let mut e = engine();
    submit(&mut e, &m, &[Command::StoreDw { addr: 2, value: 1 }]);
    e.ctl |= ring_ctl::PREEMPT;
    e.ring_size = 3000;
    let out = e.run(&m, 10, &|| Signal::Run);
    assert!(out.preempted && out.raise.contains(IntSource::ENGINE_ERROR));
    assert_eq!((e.error, e.ctl), (error::BAD_RING, 0));
}

#[test]
fn cancel_inside_a_rectangle_returns_at_once() {
    let initial = pattern();
    let m = mem_with(&initial);
    let mut e = engine();
    let c = fill(0x100000, WIDE_ROW as u32, WIDE, 10);
    submit(&mut e, &m, &[c]);
    let calls = Cell::new(0);
    let out = e.run(&m, 10, &on_call(2, Signal::Cancel, &calls));
    assert!(!out.preempted && out.raise.is_empty());
    assert_eq!((e.head, e.resume, e.ctl), (0, 0, ring_ctl::ENABLE));
    assert_same(&contents(&m), &with_rows(&initial, c, 0..4), "one band");
}

#[test]
fn resume_is_for_rectangles_and_cleared_when_a_command_completes() {
    let initial = pattern();
    let m = mem_with(&initial);
    let mut e = engine();
    submit(
        &mut e,
        &m,
        &[Command::StoreDw {
            addr: 0x8000,
            value: 1,
        }],
    );
    e.resume = 5;
    e.run(&m, 10, &|| Signal::Run);
    assert_eq!((m.read_u32(0x8000), e.resume), (Ok(1), 0));
    // Past the height: nothing left to do, yet the whole rectangle is
    // checked first.
    let c = fill(0x100000, 64, 16, 4);
    submit(&mut e, &m, &[c]);
    e.resume = 9;
    e.run(&m, 10, &|| Signal::Run);
    assert_eq!((e.head, e.resume, e.error), (e.tail, 0, error::NONE));
    let untouched = u32::from_le_bytes(initial[0x100000..0x100004].try_into().unwrap());
    assert_eq!(m.read_u32(0x100000), Ok(untouched));
    let bad = fill(MEM - 64, 64, 16, 2);
    submit(&mut e, &m, &[bad]);
    e.resume = 1;
    e.run(&m, 10, &|| Signal::Run);
    assert_eq!((e.error, e.error_addr), (error::BAD_ADDRESS, MEM));
}

#[test]
fn preempt_is_a_request_and_reset_clears_it() {
    let mut e = EngineState::default();
    let ctl = EngineReg::RingCtl.offset();
    let w = e.write(ctl, u64::from(ring_ctl::PREEMPT), 4).unwrap();
    assert!(w.preempt);
    let w = e.write(ctl, u64::from(ring_ctl::ENABLE), 4).unwrap();
    assert!(!w.preempt);
    assert_eq!(e.ctl, ring_ctl::ENABLE | ring_ctl::PREEMPT, "not withdrawn");
    e.write(EngineReg::RingResume.offset(), 7, 4).unwrap();
    assert_eq!(e.read(EngineReg::RingResume.offset(), 4), Ok(7));
    e.write(ctl, u64::from(ring_ctl::RESET), 4).unwrap();
    assert_eq!((e.ctl, e.resume), (0, 0));
}

/// One rectangle placed in `[LO, MEM)`, often overlapping its source.
#[derive(Clone, Debug)]
struct Rect {
    fill: bool,
    width: u32,
    height: u32,
    src_extra: u32,
    dst_extra: Option<u32>,
    at: u64,
    rows_apart: i64,
    dwords_apart: i64,
}

impl Rect {
    fn command(&self) -> Command {
        let row = 4 * self.width;
        let sp = row + 4 * self.src_extra;
        let dp = self.dst_extra.map_or(sp, |x| row + 4 * x);
        let span = |p: u32| u64::from(p) * u64::from(self.height - 1) + u64::from(row);
        let place = |at: u64, span: u64| LO + (at - LO).min(MEM - LO - span) / 4 * 4;
        let src = place(LO + self.at % (MEM - LO), span(sp));
        let delta = self.rows_apart * i64::from(sp) + 4 * self.dwords_apart;
        let dst = place(src.saturating_add_signed(delta).max(LO), span(dp));
        if self.fill {
            Command::FillRect {
                dst,
                pitch: dp,
                width: self.width,
                height: self.height,
                color: 0xdead_0000 | self.width,
            }
        } else {
            copy(src, sp, dst, dp, self.width, self.height)
        }
    }
}

fn height_of(c: Command) -> u32 {
    match c {
        Command::FillRect { height, .. } | Command::CopyRect { height, .. } => height,
        _ => unreachable!("a rectangle"),
    }
}

fn rect() -> impl Strategy<Value = Rect> {
    (
        any::<bool>(),
        prop_oneof![1u32..64, 2048u32..12288],
        1u32..40,
        prop_oneof![Just(0u32), 1u32..2048],
        prop_oneof![Just(None), (0u32..2048).prop_map(Some)],
        any::<u64>(),
        -3i64..4,
        -40i64..40,
    )
        .prop_map(
            |(fill, width, height, src_extra, dst_extra, at, rows_apart, dwords_apart)| Rect {
                fill,
                width,
                height,
                src_extra,
                dst_extra,
                at,
                rows_apart,
                dwords_apart,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Two rectangles run with preemption requests and arbitration yields
    /// at random points (from the signal, and requests from `ctl` at the
    /// start of a run), enabled again after each preemption: the end is
    /// the uninterrupted result. A yield is unseen: the ring stays enabled
    /// and nothing is raised.
    #[test]
    fn any_preemptions_and_yields_give_the_uninterrupted_result(
        rects in proptest::collection::vec(rect(), 1..3),
        gaps in proptest::collection::vec(0usize..6, 0..8),
        yields in proptest::collection::vec(any::<bool>(), 8),
        in_ctl in proptest::collection::vec(any::<bool>(), 0..4),
    ) {
        let cmds: Vec<Command> = rects.iter().map(Rect::command).collect();
        let initial = pattern();
        // What the commands promise, one after the other; an uninterrupted
        // run gives it too.
        let want = cmds.iter().fold(initial.clone(), |before, &c| {
            with_rows(&before, c, 0..u64::from(height_of(c)))
        });
        let whole = uninterrupted(&initial, &cmds);
        prop_assert!(whole[LO as usize..] == want[LO as usize..], "{:x?}", cmds);
        let m = mem_with(&initial);
        let mut e = engine();
        submit(&mut e, &m, &cmds);
        let stops: BTreeMap<usize, Signal> = gaps
            .iter()
            .scan(0, |at, gap| {
                *at += gap + 1;
                Some(*at)
            })
            .zip(&yields)
            .map(|(at, &y)| (at, if y { Signal::Yield } else { Signal::Preempt }))
            .collect();
        let calls = Cell::new(0);
        let signal = || {
            calls.set(calls.get() + 1);
            stops.get(&calls.get()).copied().unwrap_or(Signal::Run)
        };
        let mut round = 0;
        while e.head != e.tail {
            prop_assert!(round < 20, "no progress");
            if e.ctl & ring_ctl::ENABLE == 0 {
                e.ctl = ring_ctl::ENABLE;
            }
            if in_ctl.get(round) == Some(&true) {
                e.ctl |= ring_ctl::PREEMPT;
            }
            let out = e.run(&m, 100, &signal);
            prop_assert_eq!(e.error, error::NONE);
            if out.preempted {
                prop_assert_eq!(e.ctl, 0);
                prop_assert!(out.raise.contains(IntSource::PREEMPTED));
                prop_assert!(!out.more);
            } else {
                prop_assert_eq!(e.ctl, ring_ctl::ENABLE);
                prop_assert!(out.raise.is_empty(), "{:?}", out.raise);
                prop_assert_eq!(out.more, e.head != e.tail, "a yield leaves work");
            }
            round += 1;
        }
        prop_assert_eq!(e.resume, 0);
        let got = contents(&m);
        let lo = LO as usize;
        prop_assert!(got[lo..] == want[lo..], "{:x?}", cmds);
    }
}

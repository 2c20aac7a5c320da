//! Slices that end by preemption, event by event: what is left of the
//! owner's work goes back to it and runs first on its next turn, nothing
//! completed twice and nothing lost; an engine that does not stop in time
//! costs its owner alone.

use super::tests::{core, fills, ran, submit, vgpu, work, PREEMPT_TIMEOUT, RING, SLICE};
use super::*;
use rvg_model::cmd::{self, Command};
use rvg_model::irq::IntSource;

/// The engine's registers once a preemption stopped it after `commands`
/// commands of `ring` (its chunks, oldest first), `resume` rows into the
/// next: `ENABLE` clear, `SEQNO` the last fence it passed (0 if none: tags
/// are never 0).
pub(super) fn stopped(ring: &[Chunk], commands: usize, resume: u32) -> EngineSnapshot {
    let first = ring.first().map_or(0, |c| c.at);
    let mut seqno = 0;
    let mut position = first;
    let mut left = commands;
    'chunks: for chunk in ring {
        let mut i = 0;
        while i < chunk.dwords.len() {
            if left == 0 {
                break 'chunks;
            }
            let (c, n) = cmd::decode(&chunk.dwords[i..]).expect("the scheduler's own stream");
            if let Command::Fence { seqno: s, .. } = c {
                seqno = s;
            }
            i += n;
            position += n as u64;
            left -= 1;
        }
    }
    EngineSnapshot {
        ctl: 0,
        seqno,
        head: ((position * 4) % u64::from(RING)) as u32,
        resume,
        ..EngineSnapshot::default()
    }
}

fn push(step: Step) -> Chunk {
    match step {
        Step::Push(c) => c,
        other => panic!("expected a push, got {other:?}"),
    }
}

/// `a` owns the ring with two chunks of 2 MiB fills in it (a chunk closes
/// at 8 MiB: four fills, then two and the guest's fence 7), `b` waits with
/// one fence, and `a`'s slice is over.
fn a_long_slice_b_waiting() -> (Core, CtxId, CtxId, Vec<Chunk>, Instant) {
    let mut c = core();
    let t0 = Instant::now();
    let a = vgpu(&mut c);
    let b = vgpu(&mut c);
    submit(&mut c, a, fills(6, 512, 7));
    let ring = vec![push(c.decide(t0)), push(c.decide(t0))];
    submit(&mut c, b, work(1, 9));
    (c, a, b, ring, t0 + SLICE)
}

#[test]
fn a_slice_over_inside_a_long_command_ends_by_preemption() {
    let (mut c, a, b, ring, t) = a_long_slice_b_waiting();
    assert_eq!(c.decide(t), Step::Preempt);
    // Asked once: nothing more is fed or asked while the engine stops.
    assert!(matches!(c.decide(t), Step::Wait(Some(d)) if d <= t + PREEMPT_TIMEOUT));
    // The engine stopped 100 rows into the second fill.
    let got = c.collect(stopped(&ring, 1, 100), t);
    assert!(
        got.reset_engine,
        "the engine is enabled again on an empty ring"
    );
    assert!(got.deliveries.is_empty(), "no fence passed");
    assert_eq!(c.owner(), None);
    assert!(!c.busy());
    assert_eq!(c.stats(a).unwrap().preemptions, 1);

    // `b` runs, then `a` again: its remainder first, at the ring's start.
    c.engine_was_reset();
    let mine = push(c.decide(t));
    assert_eq!(c.owner().unwrap().id, b);
    c.collect(ran(&mine), t);
    let again = push(c.decide(t + SLICE));
    assert_eq!(c.owner().unwrap().id, a);
    assert_eq!(
        again.resume, 100,
        "RING_RESUME: rows of its first command done"
    );
    let fill = &ring[0].dwords[7..14];
    assert_eq!(&again.dwords[..7], fill, "from the fill it stopped in");
    // Fills 2 to 6 of the 6, the guest's fence, two chunk fences.
    let decoded = |d: &[u32]| {
        let mut i = 0;
        let mut v = Vec::new();
        while i < d.len() {
            let (c, n) = cmd::decode(&d[i..]).unwrap();
            v.push(c);
            i += n;
        }
        v
    };
    let cmds = decoded(&again.dwords);
    let fills_left = cmds
        .iter()
        .filter(|c| matches!(c, Command::FillRect { .. }))
        .count();
    assert_eq!(fills_left, 5);
    assert_eq!(cmds.len(), 5 + 1 + 2);
    // Its fences carry new tags: the engine's SEQNO moved past the old.
    let got = c.collect(ran(&again), t + SLICE);
    let a_got: Vec<_> = got.deliveries.iter().filter(|d| d.ctx == a).collect();
    assert_eq!(
        a_got
            .iter()
            .filter_map(|d| d.progress.seqno)
            .collect::<Vec<_>>(),
        [7],
        "the guest's fence completes once"
    );
    assert_eq!(a_got.last().unwrap().progress.head, Some(6 * 28 + 8));
    assert!(c.ctx(a).unwrap().saved.is_none());
}

#[test]
fn completed_fences_before_the_stop_are_delivered_once() {
    let mut c = core();
    let t0 = Instant::now();
    let a = vgpu(&mut c);
    let b = vgpu(&mut c);
    for s in 1..=3 {
        submit(&mut c, a, work(4, s));
    }
    // A chunk per submission: 4 NOOPs, the guest's fence, the chunk's.
    let ring = vec![push(c.decide(t0)), push(c.decide(t0))];
    submit(&mut c, b, work(1, 9));
    let t = t0 + SLICE;
    assert_eq!(c.decide(t), Step::Preempt);
    // Stopped after the first chunk and two NOOPs of the second.
    let got = c.collect(stopped(&ring, 6 + 2, 0), t);
    let seqnos = |got: &Collected| -> Vec<u32> {
        got.deliveries
            .iter()
            .filter_map(|d| d.progress.seqno)
            .collect()
    };
    assert_eq!(seqnos(&got), [1]);
    c.engine_was_reset();
    let mine = push(c.decide(t));
    c.collect(ran(&mine), t);
    let again = push(c.decide(t + SLICE));
    assert_eq!(again.resume, 0);
    assert_eq!(
        again.dwords.len(),
        2 + 2 + 2,
        "two NOOPs and two fences left"
    );
    let got = c.collect(ran(&again), t + SLICE);
    assert_eq!(seqnos(&got), [2], "the rest of the second, once");
    assert_eq!(got.deliveries.last().unwrap().progress.head, Some(24));
    let last = push(c.decide(t + SLICE));
    assert_eq!(seqnos(&c.collect(ran(&last), t + SLICE)), [3]);
}

#[test]
fn an_engine_that_does_not_stop_in_time_costs_its_owner_alone() {
    let (mut c, a, b, ring, t) = a_long_slice_b_waiting();
    assert_eq!(c.decide(t), Step::Preempt);
    // The engine is seen on the second fill and stays there.
    let on_second = EngineSnapshot {
        ctl: ring_ctl::ENABLE | ring_ctl::PREEMPT,
        ..stopped(&ring, 1, 0)
    };
    c.collect(on_second, t);
    let late = t + PREEMPT_TIMEOUT;
    c.collect(on_second, late - Duration::from_millis(1));
    assert!(matches!(
        c.decide(late - Duration::from_millis(1)),
        Step::Wait(_)
    ));
    let Step::ResetEngine(Some(halt)) = c.decide(late) else {
        panic!("the preemption timeout fires");
    };
    assert_eq!(halt.ctx, a);
    assert_eq!(
        halt.progress.error,
        Some(EngineError::at(error::PREEMPT_TIMEOUT, 0))
    );
    assert_eq!(halt.progress.head, Some(28), "the guest command it sat on");
    assert_eq!(halt.progress.raise, IntSource::ENGINE_ERROR);
    assert_eq!(c.preempt_timeouts(), 1);
    assert_eq!(c.stats(a).unwrap().preempt_timeouts, 1);
    assert_eq!(c.stats(a).unwrap().faults, 1);
    assert!(c.ctx(a).unwrap().saved.is_none() && c.ctx(a).unwrap().queue.is_empty());
    assert_eq!(c.stats(b).unwrap().faults, 0);
    // The others go on.
    let next = push(c.decide(late));
    assert_eq!(c.owner().unwrap().id, b);
    let got = c.collect(ran(&next), late);
    assert_eq!(got.deliveries[0].progress.seqno, Some(9));
}

#[test]
fn a_preemption_answered_after_the_last_command_leaves_nothing_to_save() {
    let (mut c, a, b, ring, t) = a_long_slice_b_waiting();
    assert_eq!(c.decide(t), Step::Preempt);
    // Everything ran before the engine saw the request.
    let got = c.collect(ran(&ring[0]), t);
    assert!(!got.reset_engine);
    let got = c.collect(stopped(&ring, usize::MAX, 0), t);
    assert!(got.reset_engine);
    assert_eq!(
        got.deliveries.len(),
        2,
        "the guest's fence and the last chunk's"
    );
    assert!(c.ctx(a).unwrap().saved.is_none());
    assert_eq!(c.stats(a).unwrap().preemptions, 0, "nothing was cut short");
    c.engine_was_reset();
    push(c.decide(t));
    assert_eq!(c.owner().unwrap().id, b);
}

#[test]
fn a_context_reset_while_its_engine_stops_loses_its_remainder() {
    let (mut c, a, _b, ring, t) = a_long_slice_b_waiting();
    assert_eq!(c.decide(t), Step::Preempt);
    c.reset_ctx(a);
    assert_eq!(c.decide(t), Step::ResetEngine(None));
    // A late answer of the engine is nobody's.
    let got = c.collect(stopped(&ring, 1, 3), t);
    assert_eq!(got, Collected::default());
    assert!(c.ctx(a).unwrap().saved.is_none());
}

#[test]
fn an_error_while_stopping_is_the_owners_fault() {
    let (mut c, a, _b, ring, t) = a_long_slice_b_waiting();
    assert_eq!(c.decide(t), Step::Preempt);
    let fault = EngineSnapshot {
        error: rvg_model::engine::error::BAD_ADDRESS,
        error_addr: 1 << 27,
        ctl: ring_ctl::ENABLE,
        ..stopped(&ring, 1, 0)
    };
    let got = c.collect(fault, t);
    assert!(got.reset_engine);
    let halt = got.deliveries.last().unwrap();
    assert_eq!(halt.ctx, a);
    assert_eq!(halt.progress.head, Some(28));
    assert!(c.ctx(a).unwrap().saved.is_none());
    assert!(!c.watching(), "the request died with the engine reset");
}

#[test]
fn a_capped_context_out_of_credit_is_preempted() {
    let (mut c, a, b, _ring, t) = a_long_slice_b_waiting();
    c.set_policy(Policy::EqualShare);
    // Half its slice, but its credit is spent (a share of the time so
    // far is all it earned) and `b` has some.
    c.ctx(a).unwrap().credit = -1;
    c.ctx(b).unwrap().credit = 1_000_000;
    assert_eq!(c.decide(t - SLICE / 2), Step::Preempt);
}

#[test]
fn a_lone_context_is_not_preempted() {
    let mut c = core();
    let t0 = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, fills(6, 512, 7));
    push(c.decide(t0));
    push(c.decide(t0));
    assert!(matches!(c.decide(t0 + 10 * SLICE), Step::Wait(_)));
    assert_eq!(c.stats(a).unwrap().preemptions, 0);
}

#[test]
fn the_reset_after_a_timeout_is_charged_to_the_halted_context() {
    let (mut c, a, b, _ring, t) = a_long_slice_b_waiting();
    assert_eq!(c.decide(t), Step::Preempt);
    let late = t + PREEMPT_TIMEOUT;
    assert!(matches!(c.decide(late), Step::ResetEngine(Some(_))));
    let before = (
        c.stats(a).unwrap().engine_time,
        c.stats(b).unwrap().engine_time,
    );
    // The engine took 30 ms to stop the command under the reset.
    let after_reset = late + Duration::from_millis(30);
    push(c.decide(after_reset));
    assert_eq!(c.owner().unwrap().id, b);
    assert_eq!(
        c.stats(a).unwrap().engine_time - before.0,
        Duration::from_millis(30)
    );
    assert_eq!(c.stats(b).unwrap().engine_time, before.1);
}

#[test]
fn an_engine_that_stops_answering_is_still_the_watchdogs() {
    let mut c = super::tests::core();
    c.preempt_timeout = Duration::from_secs(3600);
    let t0 = Instant::now();
    let a = vgpu(&mut c);
    let b = vgpu(&mut c);
    submit(&mut c, a, fills(6, 512, 7));
    push(c.decide(t0));
    submit(&mut c, b, work(1, 9));
    assert_eq!(c.decide(t0 + SLICE), Step::Preempt);
    let mut t = t0 + SLICE;
    loop {
        match c.decide(t) {
            Step::Wait(Some(until)) => t = until,
            Step::ResetEngine(Some(halt)) => {
                assert_eq!(halt.progress.error.unwrap().code, error::HANG);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((c.hangs(), c.preempt_timeouts()), (1, 0));
    assert!(t < t0 + Duration::from_secs(1), "the watchdog's 500 ms");
}

//! The scheduler under random interleavings of everything that can happen
//! to it: guest submissions and resets, completions, faults, preemptions
//! answered at any command or never, time passing. Deterministic: proptest
//! replays a failing sequence and shrinks it.

use std::collections::BTreeMap;

use super::preempt_tests::stopped;
use super::tests::{core, ran, submit, vgpu, work, SLICE};
use super::*;

/// Whatever the order of events, under every policy: the ring is never
/// busy without an owner, never holds a stale owner's work after a
/// decision, is never left to an unplugged vGPU's context after one, and
/// never changes hands without the change being counted (what an unplug
/// waits for); an error reaches only the owner's generation; every guest
/// fence completes at most once and in order, however often its work was
/// preempted; and left alone, the scheduler finishes everything that was
/// not halted.
#[test]
fn ownership_and_progress_over_random_interleavings() {
    // A capped policy also leaves contexts without credit while their
    // neighbours' work is in the ring, reset, faulted or preempted.
    for policy in Policy::ALL {
        interleavings_under(policy);
    }
}

#[derive(Clone, Debug)]
enum Ev {
    Submit(usize, usize),
    Reset(usize),
    Decide,
    Complete,
    Fault,
    /// A preemption asked for stops the engine after this many commands
    /// (past the tail: at the tail), this many rows into the next.
    Stop(usize, u32),
    /// The scheduler reads the engine before it ran anything more.
    Look,
    /// The vGPU is unplugged (its context removed) whatever its work is
    /// doing: queued, in the ring, being preempted.
    Unplug(usize),
    Tick,
}

/// What a vGPU knows of its context's progress.
#[derive(Default)]
struct Guest {
    generation: u64,
    submitted: u32,
    /// The last seqno completed in this generation (or dropped by a halt:
    /// a fault or timeout drops what was queued).
    completed: u32,
    /// Unplugged: it hears nothing more.
    gone: bool,
}

/// Check what the scheduler delivered against what the guests expect.
fn seen(
    guests: &mut BTreeMap<CtxId, Guest>,
    c: &Core,
    deliveries: &[Delivery],
) -> Result<(), proptest::test_runner::TestCaseError> {
    use proptest::prelude::*;
    for d in deliveries {
        let g = guests.entry(d.ctx).or_default();
        if g.gone || d.progress.generation != g.generation {
            continue;
        }
        if let Some(s) = d.progress.seqno {
            prop_assert_eq!(s, g.completed + 1, "fences complete once, in order");
            g.completed = s;
        }
        if d.progress.error.is_some() {
            g.completed = g.submitted;
        }
    }
    prop_assert!(c.owner().is_some() || !c.busy(), "busy without an owner");
    Ok(())
}

fn interleavings_under(policy: Policy) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    // Unplugs are rarer than the rest, or most cases would soon have no
    // vGPU left.
    let ev = prop_oneof![
        8 => (0..3usize, 0..70usize).prop_map(|(v, n)| Ev::Submit(v, n)),
        8 => (0..3usize).prop_map(Ev::Reset),
        16 => Just(Ev::Decide),
        8 => Just(Ev::Complete),
        8 => Just(Ev::Fault),
        8 => (0..80usize, 0..3u32).prop_map(|(n, r)| Ev::Stop(n, r)),
        8 => Just(Ev::Look),
        8 => Just(Ev::Tick),
        1 => (0..3usize).prop_map(Ev::Unplug),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 256,
        ..Config::default()
    });
    // Work cut short by a preemption and run again, over every case.
    let preempted = std::cell::Cell::new(0);
    runner
        .run(&proptest::collection::vec(ev, 1..200), |events| {
            let mut c = core();
            c.set_policy(policy);
            let mut t = Instant::now();
            let ids: Vec<_> = (0..3).map(|_| vgpu(&mut c)).collect();
            let mut guests: BTreeMap<CtxId, Guest> = BTreeMap::new();
            let mut ring: Vec<Chunk> = Vec::new();
            let mut asked = false;
            // The engine's SEQNO: the last fence it ran.
            let mut seqno = 0;
            for e in events {
                let hands = (c.owner(), c.owner_changes());
                match e {
                    Ev::Submit(v, _) | Ev::Reset(v) | Ev::Unplug(v)
                        if guests.get(&ids[v]).is_some_and(|g| g.gone) => {}
                    Ev::Submit(v, n) => {
                        let g = guests.entry(ids[v]).or_default();
                        g.submitted += 1;
                        submit(&mut c, ids[v], work(n, g.submitted));
                    }
                    Ev::Reset(v) => {
                        let generation = c.reset_ctx(ids[v]).unwrap();
                        guests.insert(
                            ids[v],
                            Guest {
                                generation,
                                ..Guest::default()
                            },
                        );
                    }
                    Ev::Decide => {
                        match c.decide(t) {
                            Step::Push(chunk) => ring.push(chunk),
                            Step::Preempt => {
                                prop_assert!(!asked, "asked twice");
                                asked = true;
                            }
                            Step::ResetEngine(d) => {
                                ring.clear();
                                asked = false;
                                seen(&mut guests, &c, d.as_slice())?;
                            }
                            Step::Wait(_) => {}
                        }
                        prop_assert!(
                            c.owner().is_none_or(|o| c.stats(o.id).is_some()),
                            "the ring left to an unplugged vGPU"
                        );
                    }
                    Ev::Unplug(v) => {
                        c.remove(ids[v]);
                        guests.entry(ids[v]).or_default().gone = true;
                    }
                    Ev::Complete => {
                        if !ring.is_empty() {
                            let chunk = ring.remove(0);
                            let snap = ran(&chunk);
                            seqno = snap.seqno;
                            let got = c.collect(snap, t);
                            prop_assert!(!got.reset_engine);
                            seen(&mut guests, &c, &got.deliveries)?;
                        }
                    }
                    Ev::Fault => {
                        if let Some(chunk) = ring.first() {
                            let owner = c.owner();
                            let snap = EngineSnapshot {
                                ctl: ring_ctl::ENABLE,
                                error: error::MISALIGNED,
                                ..stopped(std::slice::from_ref(chunk), 0, 0)
                            };
                            let got = c.collect(snap, t);
                            prop_assert!(got.reset_engine);
                            ring.clear();
                            asked = false;
                            for d in got.deliveries.iter().filter(|d| d.progress.error.is_some()) {
                                let o = owner.expect("a fault has an owner");
                                prop_assert_eq!(d.ctx, o.id);
                                prop_assert_eq!(d.progress.generation, o.generation);
                            }
                            seen(&mut guests, &c, &got.deliveries)?;
                        }
                    }
                    Ev::Stop(n, rows) => {
                        if asked {
                            let mut snap = stopped(&ring, n, rows);
                            if snap.seqno == 0 {
                                snap.seqno = seqno;
                            }
                            seqno = snap.seqno;
                            let got = c.collect(snap, t);
                            prop_assert!(got.reset_engine, "the ring is given up");
                            prop_assert!(c.owner().is_none());
                            ring.clear();
                            asked = false;
                            c.engine_was_reset();
                            seen(&mut guests, &c, &got.deliveries)?;
                        }
                    }
                    Ev::Look => {
                        let snap = EngineSnapshot {
                            ctl: ring_ctl::ENABLE | if asked { ring_ctl::PREEMPT } else { 0 },
                            seqno,
                            ..stopped(&ring, 0, 0)
                        };
                        let got = c.collect(snap, t);
                        prop_assert_eq!(got, Collected::default(), "nothing ran");
                    }
                    Ev::Tick => t += SLICE,
                }
                prop_assert_eq!(c.busy(), !ring.is_empty());
                // Whoever waits for the ring to change hands hears of it.
                prop_assert!(
                    c.owner() == hands.0 || c.owner_changes() != hands.1,
                    "the ring changed hands unseen"
                );
            }
            // Left alone, with preemptions answered at once, the scheduler
            // finishes everything: nothing is lost.
            for _ in 0..10_000 {
                match c.decide(t) {
                    Step::Push(chunk) => ring.push(chunk),
                    Step::Preempt => {
                        let got = c.collect(stopped(&ring, 1, 1), t);
                        ring.clear();
                        c.engine_was_reset();
                        seen(&mut guests, &c, &got.deliveries)?;
                    }
                    Step::ResetEngine(d) => {
                        ring.clear();
                        seen(&mut guests, &c, d.as_slice())?;
                    }
                    // Nothing in the ring, but a context waits for credit.
                    Step::Wait(Some(until)) if ring.is_empty() => t = t.max(until),
                    Step::Wait(_) if ring.is_empty() => break,
                    Step::Wait(_) => {
                        let chunk = ring.remove(0);
                        let got = c.collect(ran(&chunk), t);
                        seen(&mut guests, &c, &got.deliveries)?;
                    }
                }
                t += SLICE;
            }
            for &id in &ids {
                let Some(ctx) = c.ctx(id) else {
                    continue;
                };
                prop_assert!(
                    ctx.queue.is_empty() && ctx.saved.is_none(),
                    "work left behind"
                );
                let g = guests.entry(id).or_default();
                prop_assert_eq!(g.completed, g.submitted, "every fence completed");
                preempted.set(preempted.get() + c.stats(id).unwrap().preemptions);
            }
            Ok(())
        })
        .unwrap();
    assert!(
        preempted.get() > 100,
        "{policy:?}: {} preemptions",
        preempted.get()
    );
}

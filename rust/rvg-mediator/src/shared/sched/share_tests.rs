//! Engine-time shares under each policy, over simulated time: an engine
//! that takes a fixed time per dword, contexts kept busy or left idle.

use std::collections::VecDeque;

use super::preempt_tests::stopped;
use super::tests::{core, ran, submit, vgpu, work};
use super::*;

/// The engine's time per dword of a chunk: a chunk of 32 NOOPs and its
/// fence takes tens of microseconds, against a 1 ms time slice.
const PER_DWORD: Duration = Duration::from_micros(1);

/// Drives a core and a simulated engine through time.
struct Sim {
    core: Core,
    now: Instant,
    /// Chunks in the ring, each with when the engine finishes it.
    ring: VecDeque<(Chunk, Instant)>,
    seqno: u32,
}

impl Sim {
    fn new(policy: Policy) -> Sim {
        let mut core = core();
        core.set_policy(policy);
        Sim {
            core,
            now: Instant::now(),
            ring: VecDeque::new(),
            seqno: 0,
        }
    }

    /// Run for `span`, topping up the work of every context in `busy`
    /// whenever its queue runs dry. Returns the engine time each context
    /// in `measured` used over the span, as a fraction of it.
    fn run(&mut self, busy: &[CtxId], span: Duration, measured: &[CtxId]) -> Vec<f64> {
        let used = |core: &Core| -> Vec<Duration> {
            measured
                .iter()
                .map(|&id| core.stats(id).unwrap().engine_time)
                .collect()
        };
        let before = used(&self.core);
        let end = self.now + span;
        while self.now < end {
            for &id in busy {
                if self.core.ctx(id).unwrap().queue.is_empty() {
                    self.seqno += 1;
                    submit(&mut self.core, id, work(64, self.seqno));
                }
            }
            match self.core.decide(self.now) {
                Step::Push(chunk) => {
                    let start = self.ring.back().map_or(self.now, |&(_, t)| t.max(self.now));
                    let done = start + PER_DWORD * chunk.dwords.len() as u32;
                    self.ring.push_back((chunk, done));
                }
                Step::Preempt => self.stop(),
                Step::Wait(deadline) => {
                    let finish = self.ring.front().map(|&(_, t)| t);
                    let next = [finish, deadline, Some(end)].into_iter().flatten().min();
                    self.now = next.unwrap().max(self.now);
                    while let Some((chunk, _)) = self.ring.front().filter(|(_, t)| *t <= self.now) {
                        let snap = ran(chunk);
                        self.core.collect(snap, self.now);
                        self.ring.pop_front();
                    }
                }
                Step::ResetEngine(d) => panic!("no engine error here, got a reset with {d:?}"),
            }
        }
        let after = used(&self.core);

        let span = (self.now - (end - span)).as_secs_f64();
        before
            .iter()
            .zip(after)
            .map(|(b, a)| (a - *b).as_secs_f64() / span)
            .collect()
    }
}

impl Sim {
    /// The engine answers a preemption at once: it finishes the command it
    /// is on and stops.
    fn stop(&mut self) {
        let mut at = self.ring.front().map_or(self.now, |&(ref c, done)| {
            done - PER_DWORD * c.dwords.len() as u32
        });
        let mut commands = 0;
        'ring: for (chunk, _) in &self.ring {
            let mut i = 0;
            while i < chunk.dwords.len() {
                if at > self.now {
                    break 'ring;
                }
                let n = rvg_model::cmd::header_info(chunk.dwords[i]).unwrap().len;
                at += PER_DWORD * n as u32;
                i += n;
                commands += 1;
            }
        }
        let chunks: Vec<Chunk> = self.ring.drain(..).map(|(c, _)| c).collect();
        self.core.collect(stopped(&chunks, commands, 0), self.now);
        self.core.engine_was_reset();
    }
}

const WARM_UP: Duration = Duration::from_millis(300);
const SPAN: Duration = Duration::from_millis(600);
/// Shares are met to within this fraction of the engine.
const TOLERANCE: f64 = 0.03;

fn assert_shares(got: &[f64], want: &[f64]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= TOLERANCE,
            "context {i}: {g:.3} of the engine, asked for {w:.3} (all: {got:.3?})"
        );
    }
}

#[test]
fn best_effort_shares_among_the_busy_and_gives_a_lone_one_everything() {
    let mut sim = Sim::new(Policy::BestEffort);
    let ids: Vec<CtxId> = (0..3).map(|_| vgpu(&mut sim.core)).collect();
    sim.run(&ids, WARM_UP, &ids);
    assert_shares(&sim.run(&ids, SPAN, &ids), &[1.0 / 3.0; 3]);
    assert_shares(&sim.run(&ids[..1], SPAN, &ids), &[1.0, 0.0, 0.0]);
}

#[test]
fn equal_share_holds_a_lone_busy_context_to_its_share() {
    let mut sim = Sim::new(Policy::EqualShare);
    let ids: Vec<CtxId> = (0..3).map(|_| vgpu(&mut sim.core)).collect();
    // Weights do not count under equal-share.
    sim.core.ctx(ids[0]).unwrap().weight = 1000;
    sim.run(&ids, WARM_UP, &ids);
    assert_shares(&sim.run(&ids, SPAN, &ids), &[1.0 / 3.0; 3]);
    sim.run(&ids[..1], WARM_UP, &ids);
    assert_shares(&sim.run(&ids[..1], SPAN, &ids), &[1.0 / 3.0, 0.0, 0.0]);
}

#[test]
fn fixed_share_follows_the_weights_busy_or_alone() {
    let mut sim = Sim::new(Policy::FixedShare);
    let ids: Vec<CtxId> = (0..3).map(|_| vgpu(&mut sim.core)).collect();
    for (&id, w) in ids.iter().zip([100, 200, 100]) {
        sim.core.ctx(id).unwrap().weight = w;
    }
    sim.run(&ids, WARM_UP, &ids);
    assert_shares(&sim.run(&ids, SPAN, &ids), &[0.25, 0.5, 0.25]);
    // Alone, the heaviest still gets its half and no more.
    sim.run(&ids[1..2], WARM_UP, &ids);
    assert_shares(&sim.run(&ids[1..2], SPAN, &ids), &[0.0, 0.5, 0.0]);
}

#[test]
fn a_weight_changed_while_running_takes_effect() {
    let mut sim = Sim::new(Policy::FixedShare);
    let ids: Vec<CtxId> = (0..2).map(|_| vgpu(&mut sim.core)).collect();
    sim.run(&ids, WARM_UP, &ids);
    assert_shares(&sim.run(&ids, SPAN, &ids), &[0.5, 0.5]);
    sim.core.ctx(ids[0]).unwrap().weight = 300;
    sim.run(&ids, WARM_UP, &ids);
    assert_shares(&sim.run(&ids, SPAN, &ids), &[0.75, 0.25]);
}

#[test]
fn a_context_back_from_idling_brings_at_most_a_burst_of_credit() {
    let mut sim = Sim::new(Policy::EqualShare);
    let ids: Vec<CtxId> = (0..2).map(|_| vgpu(&mut sim.core)).collect();
    // Idle for ten bursts while the other works: it saved its share of one.
    sim.run(&ids[1..], BURST * 10, &ids);
    let saved = sim.core.ctx(ids[0]).unwrap().credit;
    assert_eq!(saved, i64::try_from(BURST.as_nanos() / 2).unwrap());
    // Alone and busy for a burst, it runs throughout: half a burst saved
    // and half of this one earned; then it is back to its share.
    let used = sim.run(&ids[..1], BURST, &ids);
    assert!((used[0] - 1.0).abs() <= TOLERANCE, "{used:?}");
    assert_shares(&sim.run(&ids[..1], SPAN, &ids), &[0.5, 0.0]);
}

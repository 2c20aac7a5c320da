//! The scheduler's decisions, event by event, with no thread and no GPU:
//! every interleaving a test names is the one that runs.

use super::*;
use crate::scan::{CmdOrigin, FenceMark};
use rvg_model::cmd::Command;
use rvg_model::irq::IntSource;

pub(super) const RING: u32 = 64 << 10;
pub(super) const SLICE: Duration = Duration::from_millis(1);
const WATCHDOG: Duration = Duration::from_millis(500);
pub(super) const PREEMPT_TIMEOUT: Duration = Duration::from_millis(50);

pub(super) fn core() -> Core {
    let config = SchedConfig {
        timeslice: SLICE,
        watchdog: WATCHDOG,
        preempt_timeout: PREEMPT_TIMEOUT,
        policy: Policy::BestEffort,
    };
    Core::new(RING, &config)
}

/// A context of an enabled vGPU.
pub(super) fn vgpu(core: &mut Core) -> CtxId {
    let id = core.add(Ctx::new(1 << 27, 1 << 27));
    core.ctx(id).unwrap().enabled = true;
    id
}

/// `noops` NOOPs at guest ring offsets 0, 4, ..., then a FENCE with
/// `seqno` (interrupting).
pub(super) fn work(noops: usize, seqno: u32) -> Work {
    let mut w = Work::default();
    for i in 0..noops {
        w.cmds.push(CmdOrigin {
            at: w.dwords.len(),
            head: 4 * i as u32,
        });
        w.dwords.extend(Command::Noop.encode());
    }
    w.cmds.push(CmdOrigin {
        at: w.dwords.len(),
        head: 4 * noops as u32,
    });
    w.fences.push(FenceMark {
        at: w.dwords.len(),
        seqno,
        interrupt: true,
    });
    w.dwords.extend(
        Command::Fence {
            seqno: 0,
            interrupt: true,
        }
        .encode(),
    );
    w.tail = 4 * noops as u32 + 8;
    w.guest_commands = noops as u64 + 1;
    w
}

pub(super) fn submit(core: &mut Core, id: CtxId, w: Work) {
    core.ctx(id).unwrap().queue.push_back(w);
}

fn push(step: Step) -> Chunk {
    match step {
        Step::Push(c) => c,
        other => panic!("expected a push, got {other:?}"),
    }
}

/// The engine's registers once it ran `chunk` to its end.
pub(super) fn ran(chunk: &Chunk) -> EngineSnapshot {
    let end = chunk.at + chunk.dwords.len() as u64;
    EngineSnapshot {
        ctl: ring_ctl::ENABLE,
        seqno: *chunk.dwords.last().unwrap(),
        head: ((end * 4) % u64::from(RING)) as u32,
        ..EngineSnapshot::default()
    }
}

/// The engine's registers once it stopped with `code` on `chunk`'s
/// first command, having completed nothing of it.
fn faulted(chunk: &Chunk, code: u32, addr: u64) -> EngineSnapshot {
    EngineSnapshot {
        ctl: ring_ctl::ENABLE,
        seqno: chunk.dwords[1].wrapping_sub(1),
        error: code,
        error_addr: addr,
        head: ((chunk.at * 4) % u64::from(RING)) as u32,
        resume: 0,
    }
}

fn owner_of(core: &Core) -> Option<(CtxId, u64)> {
    core.owner().map(|o| (o.id, o.generation))
}

#[test]
fn completed_work_becomes_progress_for_its_context() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, work(3, 7));
    let chunk = push(c.decide(t));
    assert_eq!(c.decide(t), Step::Wait(Some(t + POLL_FALLBACK)));
    let got = c.collect(ran(&chunk), t);
    assert!(!got.reset_engine);
    let seqnos: Vec<_> = got.deliveries.iter().map(|d| d.progress.seqno).collect();
    assert_eq!(
        seqnos,
        [Some(7), None],
        "the guest's fence, then the chunk's"
    );
    assert!(got.deliveries.iter().all(|d| d.ctx == a));
    assert_eq!(got.deliveries[1].progress.head, Some(20));
    assert_eq!(c.decide(t), Step::Wait(None));
    assert_eq!(c.owner(), None, "the ring is given up once drained");
}

/// The wedge: a guest resets its engine and submits again before the
/// scheduler looks, while its old work is in the ring. The old work must
/// be cleared and the new work must run with the ring owned, so that its
/// completion and its faults reach the guest.
#[test]
fn a_reset_and_resubmit_while_old_work_is_in_the_ring() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    let b = vgpu(&mut c);
    submit(&mut c, a, work(1, 1));
    let old = push(c.decide(t));
    assert_eq!(owner_of(&c), Some((a, 0)));

    // The guest: RING_CTL.RESET, then a new tail write, both before the
    // scheduler thread runs again.
    assert_eq!(c.reset_ctx(a), Some(1));
    submit(&mut c, a, work(2, 2));

    assert_eq!(c.decide(t), Step::ResetEngine(None), "the old work goes");
    assert!(!c.busy());
    let new = push(c.decide(t));
    assert_eq!(new.at, 0, "the ring starts over after the reset");
    assert_eq!(owner_of(&c), Some((a, 1)), "the new work is owned");
    assert_ne!(
        new.dwords.last(),
        old.dwords.last(),
        "tags are never reused"
    );

    // The new work faults (its page was unmapped after the tail write):
    // the guest hears of it in its new generation, and the engine is reset.
    let got = c.collect(faulted(&new, error::BAD_ADDRESS, (1 << 27) + 0x5000), t);
    assert!(got.reset_engine);
    let fault = got.deliveries.last().expect("the fault is delivered");
    assert_eq!(fault.ctx, a);
    assert_eq!(fault.progress.generation, 1);
    assert_eq!(
        fault.progress.error,
        Some(EngineError::at(error::BAD_ADDRESS, 0x5000))
    );
    assert_eq!(
        fault.progress.raise,
        IntSource::ENGINE_ERROR | IntSource::GTT_FAULT
    );

    // And the neighbour is not stuck behind any of it.
    submit(&mut c, b, work(0, 9));
    let chunk = push(c.decide(t));
    assert_eq!(owner_of(&c), Some((b, 0)));
    let got = c.collect(ran(&chunk), t);
    assert_eq!(got.deliveries[0].progress.seqno, Some(9));
    assert_eq!(got.deliveries[0].ctx, b);
}

/// The reset leak: the engine stopped on a context's old work, and the
/// context was reset (and given new work) before the scheduler read the
/// error. The error belongs to the old generation: nothing is delivered
/// and the new work stays queued.
#[test]
fn an_error_of_the_old_generation_does_not_reach_the_new_one() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, work(1, 1));
    let old = push(c.decide(t));
    assert_eq!(c.reset_ctx(a), Some(1));
    submit(&mut c, a, work(1, 2));

    let got = c.collect(faulted(&old, error::BAD_ADDRESS, 0), t);
    assert!(got.reset_engine);
    assert!(
        got.deliveries.iter().all(|d| d.progress.generation == 0),
        "only old-generation progress, which the vGPU drops: {got:?}"
    );
    assert!(got.deliveries.iter().all(|d| d.progress.error.is_none()));
    assert_eq!(c.ctx(a).unwrap().queue.len(), 1, "the new work is kept");
    assert_eq!(c.ctx(a).unwrap().stats.faults, 0);

    let new = push(c.decide(t));
    assert_eq!(owner_of(&c), Some((a, 1)));
    let got = c.collect(ran(&new), t);
    assert_eq!(got.deliveries[0].progress.seqno, Some(2));
    assert_eq!(got.deliveries[0].progress.generation, 1);
}

#[test]
fn a_context_removed_with_work_in_the_ring_frees_it() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    let b = vgpu(&mut c);
    submit(&mut c, a, work(1, 1));
    submit(&mut c, b, work(1, 2));
    push(c.decide(t));
    c.remove(a);
    assert_eq!(c.decide(t), Step::ResetEngine(None));
    assert_eq!(c.owner(), None);
    push(c.decide(t));
    assert_eq!(owner_of(&c), Some((b, 0)));
    let c2 = vgpu(&mut c);
    assert_ne!(c2, a, "identifiers are not reused");
}

#[test]
fn progress_is_delivered_to_the_context_whose_work_it_was() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, work(1, 1));
    let chunk = push(c.decide(t));
    // The context disabled its engine after the work went in: the ring is
    // still its own until drained, and the progress still its own.
    c.ctx(a).unwrap().enabled = false;
    assert_eq!(owner_of(&c), Some((a, 0)));
    let got = c.collect(ran(&chunk), t);
    assert!(got.deliveries.iter().all(|d| d.ctx == a));
    assert_eq!(got.deliveries.len(), 2);
}

#[test]
fn slices_alternate_at_chunk_boundaries_once_the_ring_drained() {
    let mut c = core();
    let t0 = Instant::now();
    let a = vgpu(&mut c);
    let b = vgpu(&mut c);
    // Four chunks' worth each.
    submit(&mut c, a, work(4 * CHUNK - 1, 1));
    submit(&mut c, b, work(4 * CHUNK - 1, 2));
    let mut t = t0;
    let mut order = Vec::new();
    for _ in 0..8 {
        let chunk = push(c.decide(t));
        order.push(owner_of(&c).unwrap().0);
        // Half a slice passes while the engine runs the chunk.
        t += SLICE / 2;
        c.collect(ran(&chunk), t);
    }
    assert_eq!(order, [a, a, b, b, a, a, b, b]);
}

const CHUNK: usize = super::super::flight::CHUNK_COMMANDS;

#[test]
fn a_lone_context_keeps_the_engine_past_its_slice() {
    let mut c = core();
    let mut t = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, work(3 * CHUNK - 1, 1));
    for _ in 0..3 {
        let chunk = push(c.decide(t));
        assert_eq!(owner_of(&c), Some((a, 0)));
        t += 10 * SLICE;
        c.collect(ran(&chunk), t);
    }
    assert_eq!(c.ctx(a).unwrap().stats.slices, 1);
}

#[test]
fn two_chunks_at_most_are_in_the_ring() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, work(3 * CHUNK - 1, 1));
    let first = push(c.decide(t));
    push(c.decide(t));
    assert!(matches!(c.decide(t), Step::Wait(Some(_))));
    c.collect(ran(&first), t);
    push(c.decide(t));
}

/// `n` FILL_RECTs of 1024 pixels by `rows` rows, then a FENCE with `seqno`.
pub(super) fn fills(n: usize, rows: u32, seqno: u32) -> Work {
    let mut w = Work::default();
    let fill = Command::FillRect {
        dst: 0,
        pitch: 4096,
        width: 1024,
        height: rows,
        color: 0,
    }
    .encode();
    for i in 0..n {
        w.cmds.push(CmdOrigin {
            at: w.dwords.len(),
            head: (i * fill.len() * 4) as u32,
        });
        w.dwords.extend(&fill);
    }
    let fence_head = (n * fill.len() * 4) as u32;
    w.cmds.push(CmdOrigin {
        at: w.dwords.len(),
        head: fence_head,
    });
    w.fences.push(FenceMark {
        at: w.dwords.len(),
        seqno,
        interrupt: false,
    });
    w.dwords.extend(
        Command::Fence {
            seqno: 0,
            interrupt: false,
        }
        .encode(),
    );
    w.tail = fence_head + 8;
    w.guest_commands = n as u64 + 1;
    w
}

/// The guest commands in a chunk (its closing fence left out).
fn commands_in(chunk: &Chunk) -> usize {
    let mut at = 0;
    let mut n = 0;
    while at < chunk.dwords.len() {
        at += rvg_model::cmd::header_info(chunk.dwords[at]).unwrap().len;
        n += 1;
    }
    n - 1
}

/// Long commands make short chunks: a chunk ends once its commands touch
/// CHUNK_BYTES, so what a slice can overrun by stays short.
#[test]
fn long_commands_make_short_chunks() {
    let t = Instant::now();
    // 4 MiB fills: two make a chunk.
    let mut c = core();
    let a = vgpu(&mut c);
    submit(&mut c, a, fills(10, 1024, 1));
    assert_eq!(commands_in(&push(c.decide(t))), 2);
    // 64 KiB fills: a chunk is 32 commands, as for short ones.
    let mut c = core();
    let a = vgpu(&mut c);
    submit(&mut c, a, fills(64, 16, 1));
    assert_eq!(commands_in(&push(c.decide(t))), CHUNK);
    // A 128 MiB fill is a chunk of its own.
    let mut c = core();
    let a = vgpu(&mut c);
    submit(&mut c, a, fills(3, 32768, 1));
    assert_eq!(commands_in(&push(c.decide(t))), 1);
    assert_eq!(commands_in(&push(c.decide(t))), 1);
}

/// Work that makes no progress for the watchdog's time: the engine is
/// reset, its owner halted with HANG, and the others go on.
#[test]
fn the_watchdog_halts_the_owner_of_work_that_hangs() {
    let mut c = core();
    let t0 = Instant::now();
    let a = vgpu(&mut c);
    let b = vgpu(&mut c);
    submit(&mut c, a, work(5, 1));
    let chunk = push(c.decide(t0));
    // The engine sits on the chunk's third command. (Were another context
    // waiting, the preemption timeout would be first: `preempt_tests`.)
    let stuck = EngineSnapshot {
        ctl: ring_ctl::ENABLE,
        head: ((chunk.at + 2) * 4) as u32,
        seqno: chunk.dwords[1].wrapping_sub(1),
        ..EngineSnapshot::default()
    };
    let mut t = t0;
    while t < t0 + WATCHDOG {
        assert!(matches!(c.decide(t), Step::Wait(Some(d)) if d <= t0 + WATCHDOG));
        c.collect(stuck, t);
        t += POLL_FALLBACK;
    }
    let Step::ResetEngine(Some(halt)) = c.decide(t) else {
        panic!("the watchdog fires");
    };
    assert_eq!(halt.ctx, a);
    assert_eq!(halt.progress.error, Some(EngineError::at(error::HANG, 0)));
    assert_eq!(halt.progress.head, Some(8), "the guest command it sat on");
    assert_eq!(halt.progress.raise, IntSource::ENGINE_ERROR);
    assert_eq!(c.hangs(), 1);
    assert_eq!(c.stats(a).unwrap().hangs, 1);
    assert!(c.ctx(a).unwrap().queue.is_empty());
    assert!(!c.busy());

    submit(&mut c, b, work(1, 2));
    let next = push(c.decide(t));
    assert_eq!(owner_of(&c), Some((b, 0)));
    assert_eq!(c.collect(ran(&next), t).deliveries[0].ctx, b);
}

#[test]
fn progress_restarts_the_watchdog() {
    let mut c = core();
    let t0 = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, work(3, 1));
    let chunk = push(c.decide(t0));
    // One command done each period: slow, but alive.
    for i in 1..=3u64 {
        let t = t0 + WATCHDOG * i as u32 - Duration::from_millis(1);
        let moving = EngineSnapshot {
            ctl: ring_ctl::ENABLE,
            head: ((chunk.at + i) * 4) as u32,
            seqno: chunk.dwords[1].wrapping_sub(1),
            ..EngineSnapshot::default()
        };
        c.collect(moving, t);
        assert!(matches!(c.decide(t), Step::Wait(Some(_))));
    }
    assert_eq!(c.hangs(), 0);
}

#[test]
fn a_gpu_reset_under_the_scheduler_empties_the_ring() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    submit(&mut c, a, work(1, 1));
    push(c.decide(t));
    c.engine_was_reset();
    assert!(!c.busy());
    assert_eq!(c.owner(), None);
    assert_eq!(c.decide(t), Step::Wait(None));
}

/// A stopping vGPU: running while its work is queued for an enabled
/// engine or in the ring, settled once it ran; work behind a disabled
/// engine that never started is handed back from its first command, work
/// partly in the ring is not.
#[test]
fn quiesce_waits_for_work_and_hands_back_only_unstarted_work() {
    let mut c = core();
    let t = Instant::now();
    let a = vgpu(&mut c);
    assert_eq!(c.quiesce(a), Quiesce::Settled, "nothing submitted");
    submit(&mut c, a, work(3, 7));
    assert_eq!(c.quiesce(a), Quiesce::Running, "queued, engine enabled");
    let chunk = push(c.decide(t));
    c.ctx(a).unwrap().enabled = false;
    assert_eq!(c.quiesce(a), Quiesce::Running, "in the ring");
    c.collect(ran(&chunk), t);
    assert_eq!(c.quiesce(a), Quiesce::Settled);

    let mut later = work(2, 8);
    for cmd in &mut later.cmds {
        cmd.head += 20;
    }
    submit(&mut c, a, later);
    assert_eq!(c.quiesce(a), Quiesce::Unqueued { from: 20 });
    assert!(c.ctx(a).unwrap().queue.is_empty());
    assert_eq!(c.quiesce(a), Quiesce::Settled);

    // Part of a work ran, the engine was disabled, the ring drained and
    // was given up: the rest cannot be handed back (it may start inside a
    // batch), so it must run first.
    let b = vgpu(&mut c);
    submit(&mut c, b, work(RING as usize, 9));
    let chunk = push(c.decide(t));
    c.ctx(b).unwrap().enabled = false;
    assert_eq!(c.quiesce(b), Quiesce::Running, "in the ring");
    c.collect(ran(&chunk), t);
    let _ = c.decide(t);
    assert!(c.owner().is_none() && c.ctx(b).unwrap().offset > 0);
    assert_eq!(c.quiesce(b), Quiesce::Running, "started, not in the ring");
}

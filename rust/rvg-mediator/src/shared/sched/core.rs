//! The scheduler's decisions, as a pure function of its state and the time.
//!
//! The ring is owned by at most one context at a time, and ownership is one
//! value: which context, in which generation, until when. Everything in the
//! ring is the owner's, so an engine error is the owner's, and the ring is
//! only given up empty (or by resetting the engine). A slice that is over
//! while another context waits ends by preemption: the engine stops at its
//! next preemption point, and what is left of the owner's work goes back to
//! the owner, to run first when its turn comes. Work in the ring that no
//! longer belongs to anyone (its context was reset or removed), work that
//! makes no progress for the watchdog's time, and work whose engine does
//! not stop within the preemption timeout are all cleared by an engine
//! reset; in the last two cases the context is halted.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rvg_model::engine::{error, ring_ctl, EngineError};

use super::flight::{Chunk, Delivery, Flight, Saved};
use super::share::{nanos, Policy, Share, BURST, DEFAULT_WEIGHT};
use super::{CtxId, CtxStats, Progress, SchedConfig};
use crate::scan::Work;

/// How long to wait for an interrupt before looking at the engine anyway.
pub(crate) const POLL_FALLBACK: Duration = Duration::from_millis(100);

/// A vGPU's engine context.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub generation: u64,
    pub enabled: bool,
    pub queue: VecDeque<Work>,
    /// Shadow dwords of the front work already in the ring.
    pub offset: usize,
    /// What a preemption took out of the ring: it runs before the queue.
    pub saved: Option<Saved>,
    /// Added to the vGPU's graphics addresses: its slice's base.
    pub reloc: u64,
    /// Bytes of the vGPU's graphics space.
    pub space: u64,
    /// Its weight under `Policy::FixedShare`.
    pub weight: u32,
    /// Engine time it may still use, in nanoseconds, under a capped
    /// policy: earned at its share of wall time, spent while it owns the
    /// ring; negative after an overrun.
    pub credit: i64,
    pub stats: CtxStats,
}

impl Ctx {
    pub fn new(reloc: u64, space: u64) -> Ctx {
        Ctx {
            generation: 0,
            enabled: false,
            queue: VecDeque::new(),
            offset: 0,
            saved: None,
            reloc,
            space,
            weight: DEFAULT_WEIGHT,
            credit: 0,
            stats: CtxStats::default(),
        }
    }

    fn runnable(&self) -> bool {
        self.enabled && (self.saved.is_some() || !self.queue.is_empty())
    }

    /// Drop everything queued: the context starts over.
    fn drop_work(&mut self) {
        self.queue.clear();
        self.offset = 0;
        self.saved = None;
    }
}

/// What `Core::quiesce` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quiesce {
    /// Nothing of the context's work is queued, saved or in the ring.
    Settled,
    /// Work the engine never started was dropped: it starts again at this
    /// guest ring offset.
    Unqueued { from: u32 },
    /// Work is in the ring, taken out by a preemption, or queued for an
    /// enabled engine.
    Running,
}

/// Who the ring belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub id: CtxId,
    pub generation: u64,
    /// The end of its time slice.
    pub until: Instant,
}

/// What the engine's registers read when the scheduler looked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EngineSnapshot {
    /// `RING_CTL`, read first: once it shows the engine stopped, the rest
    /// is final.
    pub ctl: u32,
    pub seqno: u32,
    pub error: u32,
    pub error_addr: u64,
    pub head: u32,
    pub resume: u32,
}

impl EngineSnapshot {
    /// The engine stopped for a preemption request (the scheduler keeps it
    /// enabled otherwise).
    fn preempted(&self) -> bool {
        self.ctl & ring_ctl::ENABLE == 0 && self.error == error::NONE
    }
}

/// What the scheduler thread does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Copy the chunk into the ring and move the tail (after `RING_RESUME`,
    /// if the chunk says).
    Push(Chunk),
    /// Ask the engine to stop at its next preemption point.
    Preempt,
    /// Reset the engine onto an empty ring, then deliver (a halted
    /// context's error).
    ResetEngine(Option<Delivery>),
    /// Wait for the GPU's interrupt or a kick, at most until the deadline.
    Wait(Option<Instant>),
}

/// What the engine's registers meant.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Collected {
    /// The engine stopped on an error: reset it before delivering.
    pub reset_engine: bool,
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug)]
pub(crate) struct Core {
    ctxs: BTreeMap<CtxId, Ctx>,
    next_id: u64,
    /// Changed only by `set_owner`, which counts the changes.
    owner: Option<Owner>,
    /// Changes of `owner`: the thread wakes whoever waits for the ring to
    /// change hands when this moves, whichever call moved it.
    owner_changes: u64,
    /// Round-robin cursor: the context that ran last.
    last: Option<CtxId>,
    flight: Flight,
    ring_size: u32,
    timeslice: Duration,
    watchdog: Duration,
    preempt_timeout: Duration,
    policy: Policy,
    /// Engine time and credit are accounted up to here.
    accounted: Option<Instant>,
    /// When the work in flight last made progress, and the engine's head
    /// and seqno then.
    progress: Option<(Instant, Option<(u32, u32)>)>,
    /// When the scheduler asked the engine to stop: until it has, nothing
    /// more goes into the ring.
    preempting: Option<Instant>,
    /// A context halted with the engine reset under it: the reset's time
    /// (the engine stopping its command) is its engine time too.
    resetting_for: Option<CtxId>,
    /// Engine resets by the watchdog.
    hangs: u64,
    /// Engine resets because a preemption was not answered in time.
    preempt_timeouts: u64,
}

impl Core {
    pub fn new(ring_size: u32, config: &SchedConfig) -> Core {
        Core {
            ctxs: BTreeMap::new(),
            next_id: 0,
            owner: None,
            owner_changes: 0,
            last: None,
            flight: Flight::new(),
            ring_size,
            timeslice: config.timeslice,
            watchdog: config.watchdog,
            preempt_timeout: config.preempt_timeout,
            policy: config.policy,
            accounted: None,
            progress: None,
            preempting: None,
            resetting_for: None,
            hangs: 0,
            preempt_timeouts: 0,
        }
    }

    pub fn timeslice(&self) -> Duration {
        self.timeslice
    }

    pub fn watchdog(&self) -> Duration {
        self.watchdog
    }

    pub fn hangs(&self) -> u64 {
        self.hangs
    }

    pub fn preempt_timeout(&self) -> Duration {
        self.preempt_timeout
    }

    pub fn preempt_timeouts(&self) -> u64 {
        self.preempt_timeouts
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Share the engine another way from now on; credit starts over.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
        self.ctxs.values_mut().for_each(|c| c.credit = 0);
    }

    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }

    /// How many times the ring changed hands.
    pub fn owner_changes(&self) -> u64 {
        self.owner_changes
    }

    fn set_owner(&mut self, owner: Option<Owner>) -> Option<Owner> {
        if owner != self.owner {
            self.owner_changes += 1;
        }
        std::mem::replace(&mut self.owner, owner)
    }

    /// Work is in the ring.
    pub fn busy(&self) -> bool {
        !self.flight.idle()
    }

    /// A preemption request waits for the engine's answer.
    pub fn preempting(&self) -> bool {
        self.preempting.is_some()
    }

    /// The engine's registers have something to say: work is in the ring,
    /// or a preemption request waits for its answer.
    pub fn watching(&self) -> bool {
        self.busy() || self.preempting.is_some()
    }

    pub fn ctx(&mut self, id: CtxId) -> Option<&mut Ctx> {
        self.ctxs.get_mut(&id)
    }

    pub fn stats(&self, id: CtxId) -> Option<CtxStats> {
        self.ctxs.get(&id).map(|c| c.stats)
    }

    /// A new context; identifiers are never reused.
    pub fn add(&mut self, ctx: Ctx) -> CtxId {
        let id = CtxId(self.next_id);
        self.next_id += 1;
        self.ctxs.insert(id, ctx);
        id
    }

    pub fn remove(&mut self, id: CtxId) {
        self.ctxs.remove(&id);
    }

    /// Drop the context's queued work and open a new generation; its work
    /// in the ring is cleared by the next [`Core::decide`].
    pub fn reset_ctx(&mut self, id: CtxId) -> Option<u64> {
        let ctx = self.ctxs.get_mut(&id)?;
        ctx.drop_work();
        ctx.generation += 1;
        Some(ctx.generation)
    }

    /// Where the context's submitted work stands, for a vGPU that is
    /// stopping (a migration): once it has all run, or the only work left
    /// is queued behind a disabled engine with none of it started, nothing
    /// of it is in the GPU. Unstarted work is dropped: the vGPU scans it
    /// again from the returned guest ring offset when its engine runs.
    pub fn quiesce(&mut self, id: CtxId) -> Quiesce {
        let in_ring = self.owner.is_some_and(|o| o.id == id) && self.watching();
        let Some(ctx) = self.ctxs.get_mut(&id) else {
            return Quiesce::Settled;
        };
        if ctx.saved.is_some() || ctx.offset != 0 || in_ring {
            return Quiesce::Running;
        }
        if ctx.queue.is_empty() {
            return Quiesce::Settled;
        }
        if ctx.enabled {
            return Quiesce::Running;
        }
        let front = ctx.queue.front().expect("not empty");
        let from = front.cmds.first().map_or(front.tail, |c| c.head);
        ctx.queue.clear();
        Quiesce::Unqueued { from }
    }

    /// The engine was reset behind the scheduler's back (the whole GPU was):
    /// the ring is empty and nobody owns it.
    pub fn engine_was_reset(&mut self) {
        self.ring_emptied();
        self.set_owner(None);
    }

    /// The ring was (or is about to be) emptied by an engine reset.
    fn ring_emptied(&mut self) {
        self.flight.clear();
        self.progress = None;
        self.preempting = None;
    }

    /// The next thing to do at `now`.
    pub fn decide(&mut self, now: Instant) -> Step {
        debug_assert!(self.owner.is_some() || self.flight.idle());
        self.account(now);
        self.resetting_for = None;
        // Work of a context reset or removed since it went in.
        if let Some(o) = self.owner {
            let current = self.ctxs.get(&o.id).map(|c| c.generation);
            if current != Some(o.generation) {
                self.set_owner(None);
                if self.watching() {
                    self.ring_emptied();
                    return Step::ResetEngine(None);
                }
            }
        }
        // A preemption asked for: nothing goes in until the engine stopped,
        // and an engine that stops answering altogether is still the
        // watchdog's.
        if let Some(since) = self.preempting {
            let deadline = since + self.preempt_timeout;
            let watchdog = self.progress.map(|(seen, _)| seen + self.watchdog);
            if watchdog.is_some_and(|w| now >= w && w < deadline) {
                return self.hang();
            }
            if now >= deadline {
                return self.preempt_timed_out();
            }
            let next = watchdog.map_or(deadline, |w| w.min(deadline));
            return Step::Wait(Some(next.min(now + POLL_FALLBACK)));
        }
        // The slice ends when the owner has nothing more, or its time (or
        // its credit) is up and another waits: with the ring drained, or
        // else by preemption.
        if let Some(o) = self.owner {
            let ctx = self.ctxs.get(&o.id);
            let mine = ctx.is_some_and(|c| self.may_run(c));
            let spent = self.policy.capped() && ctx.is_some_and(|c| c.credit <= 0);
            let over = (now >= o.until || spent) && self.others_waiting(o.id);
            if self.flight.idle() && (!mine || over) {
                self.set_owner(None);
            } else if over {
                self.preempting = Some(now);
                return Step::Preempt;
            }
        }
        if self.owner.is_none() {
            if let Some(id) = self.pick() {
                let ctx = self.ctxs.get_mut(&id).expect("picked");
                ctx.stats.slices += 1;
                let generation = ctx.generation;
                self.last = Some(id);
                self.set_owner(Some(Owner {
                    id,
                    generation,
                    until: now + self.timeslice,
                }));
            }
        }
        if let Some(o) = self.owner {
            let feed = self.flight.has_room()
                && (now < o.until || !self.others_waiting(o.id))
                && self.ctxs.get(&o.id).is_some_and(|c| self.may_run(c));
            if let Some(ctx) = self.ctxs.get_mut(&o.id).filter(|_| feed) {
                if self.flight.idle() {
                    self.progress = Some((now, None));
                }
                let chunk = match ctx.saved.take() {
                    Some(saved) => self.flight.restore(saved),
                    None => self.flight.take_chunk(o.id, ctx),
                };
                return Step::Push(chunk);
            }
        }
        match self.progress {
            Some((since, _)) if self.busy() => {
                let deadline = since + self.watchdog;
                if now >= deadline {
                    return self.hang();
                }
                // Wake at the slice's end too, to preempt a long command.
                let slice_end = self
                    .owner
                    .filter(|o| o.until > now && self.others_waiting(o.id))
                    .map(|o| o.until);
                let poll = deadline.min(now + POLL_FALLBACK);
                Step::Wait(Some(slice_end.map_or(poll, |end| end.min(poll))))
            }
            _ => Step::Wait(self.next_credit(now)),
        }
    }

    /// The work in flight made no progress for the watchdog's time: clear
    /// the ring and halt its owner with `HANG`.
    fn hang(&mut self) -> Step {
        self.hangs += 1;
        self.halt_owner(error::HANG, |s| s.hangs += 1)
    }

    /// The engine did not stop within the preemption timeout of the
    /// request: clear the ring and halt its owner with `PREEMPT_TIMEOUT`.
    fn preempt_timed_out(&mut self) -> Step {
        self.preempt_timeouts += 1;
        self.halt_owner(error::PREEMPT_TIMEOUT, |s| s.preempt_timeouts += 1)
    }

    /// Halt the owner with `code` (head on the command the engine was last
    /// seen on, `ERROR_ADDR` 0), counted by `count`; the engine is reset.
    fn halt_owner(&mut self, code: u32, count: impl FnOnce(&mut CtxStats)) -> Step {
        let head = self.progress.and_then(|(_, seen)| seen).map(|(h, _)| h);
        let guest_head = head.map(|h| self.flight.guest_head_at(h, self.ring_size));
        self.ring_emptied();
        let Some(o) = self.set_owner(None) else {
            return Step::ResetEngine(None);
        };
        let delivery = self.halt(o, |_| EngineError::at(code, 0), guest_head);
        if let Some(ctx) = self.ctxs.get_mut(&o.id) {
            count(&mut ctx.stats);
        }
        self.resetting_for = Some(o.id);
        Step::ResetEngine(delivery)
    }

    /// Stop `o`'s context with an error (if it is still in `o`'s
    /// generation): its queue is dropped, and the error goes to its vGPU.
    fn halt(
        &mut self,
        o: Owner,
        error: impl FnOnce(&Ctx) -> EngineError,
        head: Option<u32>,
    ) -> Option<Delivery> {
        let ctx = self
            .ctxs
            .get_mut(&o.id)
            .filter(|c| c.generation == o.generation)?;
        ctx.drop_work();
        ctx.stats.faults += 1;
        let error = error(ctx);
        Some(Delivery {
            ctx: o.id,
            progress: Progress {
                generation: o.generation,
                head,
                raise: error.interrupts(),
                error: Some(error),
                ..Progress::default()
            },
        })
    }

    /// Turn what the engine's registers say into progress for the
    /// contexts; on an engine error, halt the owner.
    pub fn collect(&mut self, snap: EngineSnapshot, now: Instant) -> Collected {
        self.account(now);
        let mut out = Collected::default();
        if self.preempting.is_some() && snap.preempted() {
            return self.preempted(snap);
        }
        if self.flight.idle() {
            return out;
        }
        out.deliveries = self.flight.retire(snap.seqno);
        let seen = Some((snap.head, snap.seqno));
        if self.progress.is_none_or(|(_, s)| s != seen) || !out.deliveries.is_empty() {
            self.progress = Some((now, seen));
        }
        if snap.error == error::NONE {
            self.flight.forget_before(snap.head, self.ring_size);
            return out;
        }
        let head = self.flight.guest_head_at(snap.head, self.ring_size);
        self.ring_emptied();
        out.reset_engine = true;
        let Some(o) = self.owner else {
            return out;
        };
        let fault = self.halt(
            o,
            |ctx| {
                // Back into the guest's graphics space when it came from
                // there; the mediator's own addresses stay as they are.
                let addr = snap
                    .error_addr
                    .checked_sub(ctx.reloc)
                    .filter(|&a| a < ctx.space)
                    .unwrap_or(snap.error_addr);
                EngineError::at(snap.error, addr)
            },
            Some(head),
        );
        out.deliveries.extend(fault);
        out
    }

    /// The engine stopped for the preemption request: what completed is
    /// progress, what is left goes back to the owner (if it is still in the
    /// generation that submitted it), and the ring is given up: the engine
    /// is reset onto it empty, which enables it again.
    fn preempted(&mut self, snap: EngineSnapshot) -> Collected {
        let deliveries = self.flight.retire(snap.seqno);
        let left = self
            .flight
            .take_remainder(snap.head, self.ring_size, snap.resume);
        self.ring_emptied();
        if let Some(o) = self.set_owner(None) {
            let ctx = (self.ctxs.get_mut(&o.id)).filter(|c| c.generation == o.generation);
            if let (Some(ctx), Some(left)) = (ctx, left) {
                ctx.stats.preemptions += 1;
                ctx.saved = Some(left);
            }
        }
        Collected {
            reset_engine: true,
            deliveries,
        }
    }

    /// The next context that may run after the one that ran last.
    fn pick(&self) -> Option<CtxId> {
        let after = self.last.map_or(0, |l| l.0 + 1);
        let runnable = |(&id, c): (&CtxId, &Ctx)| self.may_run(c).then_some(id);
        self.ctxs
            .range(CtxId(after)..)
            .chain(self.ctxs.range(..CtxId(after)))
            .find_map(runnable)
    }

    fn others_waiting(&self, id: CtxId) -> bool {
        self.ctxs.iter().any(|(&i, c)| i != id && self.may_run(c))
    }

    /// Work to run and, under a capped policy, credit to run it with.
    fn may_run(&self, c: &Ctx) -> bool {
        c.runnable() && (!self.policy.capped() || c.credit > 0)
    }

    /// A context's share, with the totals it depends on taken once.
    fn share_of(&self) -> impl Fn(&Ctx) -> Share {
        let policy = self.policy;
        let total = self.ctxs.values().map(|c| u64::from(c.weight)).sum();
        let contexts = self.ctxs.len();
        move |c| Share::of(policy, c.weight, total, contexts)
    }

    /// Charge the owner for the engine time since the last account, and
    /// under a capped policy pay every context its share of that time.
    fn account(&mut self, now: Instant) {
        let Some(since) = self.accounted.replace(now) else {
            return;
        };
        let elapsed = now.saturating_duration_since(since);
        if elapsed.is_zero() {
            return;
        }
        let ns = nanos(elapsed);
        let charged = self.owner.map(|o| o.id).or(self.resetting_for);
        if let Some(c) = charged.and_then(|id| self.ctxs.get_mut(&id)) {
            c.stats.engine_time += elapsed;
            c.credit = c
                .credit
                .saturating_sub(i64::try_from(ns).unwrap_or(i64::MAX));
        }
        if !self.policy.capped() {
            return;
        }
        let share_of = self.share_of();
        for c in self.ctxs.values_mut() {
            let share = share_of(c);
            let most = share.earned(nanos(BURST));
            c.credit = c.credit.saturating_add(share.earned(ns)).min(most);
        }
    }

    /// When a context with work but no credit will have credit again:
    /// under a capped policy the engine idles until then.
    fn next_credit(&self, now: Instant) -> Option<Instant> {
        if !self.policy.capped() {
            return None;
        }
        let share_of = self.share_of();
        self.ctxs
            .values()
            .filter(|c| c.runnable() && c.credit <= 0)
            .map(|c| {
                let debt = c.credit.unsigned_abs() + 1;
                now + Duration::from_nanos(share_of(c).time_to_earn(debt))
            })
            .min()
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "share_tests.rs"]
mod share_tests;

#[cfg(test)]
#[path = "preempt_tests.rs"]
mod preempt_tests;

#[cfg(test)]
#[path = "interleave_tests.rs"]
mod interleave_tests;

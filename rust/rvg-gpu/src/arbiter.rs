//! The engine arbiter: one engine, shared by a GPU's functions (the PF and
//! its VFs), each of which has its own ring. A function runs for its
//! quantum (the PF's `QUANTUM_*` registers set each) while others wait, then
//! yields at the next preemption point (a command boundary, or between
//! bands of a long rectangle); the engine passes round robin to the next
//! function waiting, never to one that jumped the queue.
//!
//! The decisions are [`ArbCore`]'s, a pure function of state and time;
//! [`Arbiter`] gives them a lock, a clock and a place to wait.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A function's quantum until the PF sets another.
pub const DEFAULT_QUANTUM: Duration = Duration::from_millis(1);
/// The quanta a function may have.
pub const QUANTUM_MIN: Duration = Duration::from_micros(100);
pub const QUANTUM_MAX: Duration = Duration::from_millis(100);
/// How long past its quantum a function may go on without a preemption
/// point (inside a batch) while another waits, before its ring is halted.
pub const DEFAULT_PREEMPT_TIMEOUT: Duration = Duration::from_millis(100);
pub const PREEMPT_TIMEOUT_MIN: Duration = Duration::from_millis(1);
pub const PREEMPT_TIMEOUT_MAX: Duration = Duration::from_secs(10);

/// What the owner of the engine does at a preemption point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// Go on: nobody waits, or its quantum is not up.
    Keep,
    /// Yield: its quantum is up and another function waits.
    Yield,
    /// Stop and be halted: past its quantum and the preemption timeout
    /// with another waiting (it could not yield, inside a batch).
    Overdue,
}

/// The arbiter's state: who has the engine, since when, who waits.
#[derive(Clone, Debug)]
pub struct ArbCore {
    quanta_ns: Vec<u64>,
    /// 0: none.
    preempt_timeout_ns: u64,
    waiting: Vec<bool>,
    owner: Option<usize>,
    /// When the owner got the engine.
    since_ns: u64,
    /// Engine time each function has held, in ns.
    held_ns: Vec<u64>,
}

impl ArbCore {
    /// `functions` functions, a quantum of `quantum_ns` each.
    pub fn new(functions: usize, quantum_ns: u64) -> ArbCore {
        ArbCore {
            quanta_ns: vec![quantum_ns; functions],
            preempt_timeout_ns: 0,
            waiting: vec![false; functions],
            owner: None,
            since_ns: 0,
            held_ns: vec![0; functions],
        }
    }

    pub fn owner(&self) -> Option<usize> {
        self.owner
    }

    pub fn waiters(&self) -> u32 {
        self.waiting.iter().filter(|&&w| w).count() as u32
    }

    pub fn quantum_ns(&self, f: usize) -> u64 {
        self.quanta_ns[f]
    }

    /// Set function `f`'s quantum: its share of the engine against the
    /// others' while they all have work.
    pub fn set_quantum_ns(&mut self, f: usize, quantum_ns: u64) {
        self.quanta_ns[f] = quantum_ns;
    }

    /// Function `f` wants the engine at `now`: true if it has it at once
    /// (free, and nobody is waiting for it), else it waits in line.
    pub fn request(&mut self, f: usize, now: u64) -> bool {
        if self.owner == Some(f) {
            return true;
        }
        if self.owner.is_none() && self.waiters() == 0 {
            self.grant(f, now);
            return true;
        }
        self.waiting[f] = true;
        false
    }

    /// Function `f` gives up waiting (it has nothing to run any more).
    pub fn withdraw(&mut self, f: usize) {
        self.waiting[f] = false;
    }

    /// The owner `f` has run its quantum while another function waits:
    /// it should stop at its next preemption point.
    pub fn should_yield(&self, f: usize, now: u64) -> bool {
        self.owner == Some(f)
            && self.waiters() > 0
            && now.saturating_sub(self.since_ns) >= self.quantum_ns(f)
    }

    /// What `f` does at a preemption point at `now`.
    pub fn turn(&self, f: usize, now: u64) -> Turn {
        if self.overdue(f, now) {
            Turn::Overdue
        } else if self.should_yield(f, now) {
            Turn::Yield
        } else {
            Turn::Keep
        }
    }

    /// How long past its quantum an owner may go on while another waits
    /// (0: for ever).
    pub fn set_preempt_timeout_ns(&mut self, ns: u64) {
        self.preempt_timeout_ns = ns;
    }

    pub fn preempt_timeout_ns(&self) -> u64 {
        self.preempt_timeout_ns
    }

    /// The owner `f` has gone on past its quantum and the preemption
    /// timeout while another waits: its ring is to be halted.
    pub fn overdue(&self, f: usize, now: u64) -> bool {
        self.preempt_timeout_ns > 0
            && self.owner == Some(f)
            && self.waiters() > 0
            && now.saturating_sub(self.since_ns) >= self.quantum_ns(f) + self.preempt_timeout_ns
    }

    /// The owner `f` gives the engine back at `now`: it passes to the
    /// first function waiting after `f` in function order, which is
    /// returned. Nothing happens for a function that is not the owner.
    pub fn release(&mut self, f: usize, now: u64) -> Option<usize> {
        if self.owner != Some(f) {
            return None;
        }
        self.held_ns[f] += now.saturating_sub(self.since_ns);
        self.owner = None;
        let n = self.waiting.len();
        let next = (1..=n).map(|i| (f + i) % n).find(|&g| self.waiting[g])?;
        self.grant(next, now);
        Some(next)
    }

    fn grant(&mut self, f: usize, now: u64) {
        self.waiting[f] = false;
        self.owner = Some(f);
        self.since_ns = now;
    }

    /// Engine time function `f` has held, the current holding included.
    pub fn held_ns(&self, f: usize, now: u64) -> u64 {
        let current = match self.owner {
            Some(o) if o == f => now.saturating_sub(self.since_ns),
            _ => 0,
        };
        self.held_ns[f] + current
    }
}

/// [`ArbCore`] behind a lock, with a clock, for the functions' engine
/// workers. Never taken while holding it: a function's register lock.
pub struct Arbiter {
    core: Mutex<ArbCore>,
    /// One per function: a grant wakes its new owner alone, not every
    /// function in line (sixteen waking on two cores to find it is not
    /// theirs cost a tenth of the engine).
    granted: Vec<Condvar>,
    /// `ArbCore::waiters`, readable without the lock: a run asks at every
    /// preemption point whether to yield, and nobody waiting (the common
    /// case) is answered with one load.
    waiters: AtomicU32,
    epoch: Instant,
}

impl Arbiter {
    pub fn new(functions: usize) -> Arbiter {
        let mut core = ArbCore::new(functions, DEFAULT_QUANTUM.as_nanos() as u64);
        core.set_preempt_timeout_ns(DEFAULT_PREEMPT_TIMEOUT.as_nanos() as u64);
        Arbiter {
            core: Mutex::new(core),
            granted: (0..functions).map(|_| Condvar::new()).collect(),
            waiters: AtomicU32::new(0),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn publish(&self, core: &ArbCore) {
        self.waiters.store(core.waiters(), Ordering::Release);
    }

    /// Wait until function `f` has the engine: true. False, out of line,
    /// once `give_up` says so: asked under the lock before every wait, so
    /// a `wake(f)` after `give_up` turned true is never missed. A function
    /// that goes away does not wait for another's quantum, which with no
    /// preemption timeout could be a whole batch.
    pub fn acquire(&self, f: usize, give_up: &dyn Fn() -> bool) -> bool {
        let mut core = self.core.lock();
        let now = self.now();
        if !core.request(f, now) {
            self.publish(&core);
            while core.owner() != Some(f) {
                if give_up() {
                    core.withdraw(f);
                    self.publish(&core);
                    return false;
                }
                self.granted[f].wait(&mut core);
            }
        }
        self.publish(&core);
        true
    }

    /// Wake `f` if it waits in `acquire`, to ask its `give_up` again.
    pub fn wake(&self, f: usize) {
        let _core = self.core.lock();
        self.granted[f].notify_one();
    }

    /// The engine for function `f` if it is free and nobody waits: a short
    /// stream run in its writer's thread never jumps the queue.
    pub fn try_acquire(&self, f: usize) -> bool {
        if self.waiters.load(Ordering::Acquire) > 0 {
            return false;
        }
        let mut core = self.core.lock();
        if core.owner().is_some() || core.waiters() > 0 {
            return false;
        }
        let now = self.now();
        core.request(f, now)
    }

    pub fn release(&self, f: usize) {
        let mut core = self.core.lock();
        let now = self.now();
        if let Some(next) = core.release(f, now) {
            self.granted[next].notify_one();
        }
        self.publish(&core);
    }

    /// What the owner `f` does at this preemption point: one question,
    /// answered by one load while nobody waits (the common case).
    #[inline]
    pub fn turn(&self, f: usize) -> Turn {
        match self.waiters.load(Ordering::Acquire) {
            0 => Turn::Keep,
            _ => self.turn_contended(f),
        }
    }

    #[cold]
    fn turn_contended(&self, f: usize) -> Turn {
        let now = self.now();
        self.core.lock().turn(f, now)
    }

    /// Functions waiting in line.
    pub fn waiting(&self) -> u32 {
        self.waiters.load(Ordering::Acquire)
    }

    /// Set the preemption timeout: zero (none), or [`PREEMPT_TIMEOUT_MIN`]
    /// to [`PREEMPT_TIMEOUT_MAX`]; false, with nothing changed, otherwise.
    pub fn set_preempt_timeout(&self, timeout: Duration) -> bool {
        if !timeout.is_zero() && !(PREEMPT_TIMEOUT_MIN..=PREEMPT_TIMEOUT_MAX).contains(&timeout) {
            return false;
        }
        self.core
            .lock()
            .set_preempt_timeout_ns(timeout.as_nanos() as u64);
        true
    }

    pub fn preempt_timeout(&self) -> Duration {
        Duration::from_nanos(self.core.lock().preempt_timeout_ns())
    }

    /// The function holding the engine.
    pub fn owner(&self) -> Option<usize> {
        self.core.lock().owner()
    }

    /// Set function `f`'s quantum, [`QUANTUM_MIN`] to [`QUANTUM_MAX`];
    /// false, with nothing changed, for one outside.
    pub fn set_quantum(&self, f: usize, quantum: Duration) -> bool {
        if !(QUANTUM_MIN..=QUANTUM_MAX).contains(&quantum) {
            return false;
        }
        self.core
            .lock()
            .set_quantum_ns(f, quantum.as_nanos() as u64);
        true
    }

    pub fn quantum(&self, f: usize) -> Duration {
        Duration::from_nanos(self.core.lock().quantum_ns(f))
    }

    pub fn engine_time(&self, f: usize) -> Duration {
        let now = self.now();
        Duration::from_nanos(self.core.lock().held_ns(f, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: u64 = 1_000;

    #[test]
    fn a_free_engine_is_granted_and_a_busy_one_queues() {
        let mut a = ArbCore::new(3, Q);
        assert!(a.request(1, 0));
        assert!(a.request(1, 5), "the owner asking again keeps it");
        assert!(!a.request(0, 10));
        assert!(!a.request(2, 20));
        assert_eq!(a.waiters(), 2);
        // Round robin from the releaser: 2 comes after 1, then 0.
        assert_eq!(a.release(1, 100), Some(2));
        assert_eq!(a.release(2, 200), Some(0));
        assert_eq!(a.release(0, 300), None);
        assert_eq!(a.owner(), None);
        assert_eq!(
            (a.held_ns(0, 300), a.held_ns(1, 300), a.held_ns(2, 300)),
            (100, 100, 100)
        );
    }

    #[test]
    fn a_free_engine_with_waiters_is_not_taken_out_of_turn() {
        let mut a = ArbCore::new(2, Q);
        assert!(a.request(0, 0));
        assert!(!a.request(1, 1));
        // Released and granted in one step: nobody sees it free between.
        assert_eq!(a.release(0, 2), Some(1));
        assert!(!a.request(0, 3));
    }

    #[test]
    fn the_owner_yields_only_after_its_quantum_and_only_to_a_waiter() {
        let mut a = ArbCore::new(2, Q);
        a.request(0, 0);
        assert!(!a.should_yield(0, 10 * Q), "nobody waits");
        a.request(1, 10 * Q);
        assert!(a.should_yield(0, 10 * Q), "held past its quantum");
        assert!(!a.should_yield(1, 10 * Q), "only the owner yields");
        a.release(0, 10 * Q);
        assert!(!a.should_yield(1, 10 * Q + Q - 1));
        a.request(0, 10 * Q + 1);
        assert!(!a.should_yield(1, 10 * Q + Q - 1));
        assert!(a.should_yield(1, 11 * Q));
    }

    #[test]
    fn a_function_holds_the_engine_for_its_own_quantum() {
        let mut a = ArbCore::new(2, Q);
        a.set_quantum_ns(1, 3 * Q);
        assert_eq!((a.quantum_ns(0), a.quantum_ns(1)), (Q, 3 * Q));
        a.request(1, 0);
        a.request(0, 0);
        assert!(!a.should_yield(1, 3 * Q - 1));
        assert!(a.should_yield(1, 3 * Q));
    }

    #[test]
    fn an_owner_is_overdue_past_its_quantum_and_the_timeout_with_a_waiter() {
        let mut a = ArbCore::new(2, Q);
        a.request(0, 0);
        assert!(!a.overdue(0, 100 * Q), "no timeout set");
        a.set_preempt_timeout_ns(5 * Q);
        assert!(!a.overdue(0, 100 * Q), "nobody waits");
        a.request(1, 50 * Q);
        assert!(a.overdue(0, 100 * Q));
        assert!(!a.overdue(1, 100 * Q), "only the owner");
        a.release(0, 100 * Q);
        a.request(0, 100 * Q);
        assert!(!a.overdue(1, 100 * Q + 6 * Q - 1));
        assert!(a.overdue(1, 100 * Q + 6 * Q));
    }

    #[test]
    fn overdue_comes_before_yield() {
        let mut a = ArbCore::new(2, Q);
        a.set_preempt_timeout_ns(5 * Q);
        a.request(0, 0);
        assert_eq!(a.turn(0, 10 * Q), Turn::Keep, "nobody waits");
        a.request(1, 0);
        assert_eq!(a.turn(0, Q - 1), Turn::Keep);
        assert_eq!(a.turn(0, Q), Turn::Yield);
        assert_eq!(a.turn(0, 6 * Q), Turn::Overdue);
        assert_eq!(a.turn(1, 6 * Q), Turn::Keep, "not the owner");
    }

    #[test]
    fn quanta_outside_the_range_are_refused() {
        let a = Arbiter::new(2);
        assert!(a.set_quantum(1, Duration::from_millis(5)));
        assert!(!a.set_quantum(1, QUANTUM_MIN - Duration::from_nanos(1)));
        assert!(!a.set_quantum(0, QUANTUM_MAX + Duration::from_nanos(1)));
        assert_eq!(a.quantum(1), Duration::from_millis(5));
        assert_eq!(a.quantum(0), DEFAULT_QUANTUM);
    }

    /// Functions that always have work, each running until told to yield
    /// (at preemption points `step` apart): engine time splits as their
    /// quanta do.
    #[test]
    fn busy_functions_share_the_engine_by_their_quanta() {
        let weights = [1, 1, 2, 4];
        let mut a = ArbCore::new(weights.len(), Q);
        for (f, &w) in weights.iter().enumerate() {
            a.set_quantum_ns(f, w * Q);
        }
        for f in 0..weights.len() {
            a.request(f, 0);
        }
        let step = Q / 10;
        let mut now = 0;
        while now < 10_000 * Q {
            now += step;
            let owner = a.owner().unwrap();
            if a.should_yield(owner, now) {
                a.release(owner, now);
                assert!(!a.request(owner, now), "it queues behind the others");
            }
        }
        let total: u64 = (0..weights.len()).map(|f| a.held_ns(f, now)).sum();
        let sum_w: u64 = weights.iter().sum();
        for (f, &w) in weights.iter().enumerate() {
            let share = a.held_ns(f, now) as f64 / total as f64;
            let want = w as f64 / sum_w as f64;
            assert!(
                (share - want).abs() < 0.01,
                "function {f}: {share} for {want}"
            );
        }
    }

    /// A function that is idle costs the others nothing: it is not in
    /// line, so the busy one is never told to yield.
    #[test]
    fn an_idle_function_takes_no_turn() {
        let mut a = ArbCore::new(3, Q);
        a.request(2, 0);
        a.request(0, 1);
        a.withdraw(0);
        assert!(!a.should_yield(2, 100 * Q));
        assert_eq!(a.release(2, 100 * Q), None);
    }
}

//! The scheduler: time-shares the GPU's one engine among the vGPUs' engine
//! contexts.
//!
//! Each context has a queue of scanned work. The scheduler thread picks the
//! next context with work, round robin, and copies its shadow commands into
//! the mediator's physical ring a chunk at a time, each chunk closed by a
//! FENCE whose tag identifies it. When the context's time slice is over and
//! another context has work, it stops feeding, lets the ring drain and
//! switches: the ring only ever holds one context's commands, so an engine
//! error is that context's. Completed tags become progress (head, seqno,
//! interrupts) delivered to the vGPU; an engine error halts the vGPU's
//! virtual engine and the physical engine is reset for the next context.
//!
//! Every decision is made by [`core::Core`], a pure function of the state
//! and the time; the thread here only reads and writes the GPU, sleeps and
//! calls the vGPUs' sinks.

mod core;
mod flight;
mod share;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rvg_model::engine::{error, ring_ctl, EngineError};
use rvg_model::irq::IntSource;
use rvg_model::regs::{bar2, EngineReg, GlobalReg, Register};
use rvg_vfio::contract::{IrqSet, Region};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

use self::core::{Core, Ctx, EngineSnapshot, Quiesce, Step};
use self::flight::{Chunk, Delivery};
pub use self::share::{Policy, UnknownPolicy, BURST, DEFAULT_WEIGHT, WEIGHTS};
use crate::scan::Work;

/// An engine context on a scheduler. Never reused: a context removed and a
/// context added later are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CtxId(u64);

/// What the scheduler reports to a vGPU about its work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The context generation the work was submitted in: a vGPU drops
    /// progress from before its last engine reset.
    pub generation: u64,
    /// The guest ring offset the engine has reached.
    pub head: Option<u32>,
    /// A guest fence passed with this seqno.
    pub seqno: Option<u32>,
    /// Virtual interrupt sources to raise.
    pub raise: IntSource,
    /// The engine stopped on the vGPU's work (guest graphics address).
    pub error: Option<EngineError>,
}

/// Where a vGPU hears about its progress (from the scheduler thread, with
/// no scheduler lock held; it must not wait for anything that may wait for
/// the scheduler, such as QEMU's BQL).
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// Where the scheduler reports failures of the contract (host-side errors)
/// and the watchdog's resets.
pub type HostLog = Arc<dyn Fn(&str) + Send + Sync>;

/// A context's work still ran when a quiesce gave up waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("its work in the GPU had not finished after {timeout:?}")]
pub struct StillRunning {
    pub timeout: Duration,
}

/// Deadlines closer than this are kept by the timer, to the microsecond.
const TIMER_BELOW: Duration = Duration::from_millis(20);

/// The physical ring the mediator owns: `size` bytes at graphics address
/// `gfx_base`, backed by VRAM at `vram_offset`.
#[derive(Clone, Copy, Debug)]
pub struct PhysRing {
    pub gfx_base: u64,
    pub vram_offset: u64,
    pub size: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtxStats {
    pub submitted: u64,
    pub slices: u64,
    pub faults: u64,
    /// Halts by the watchdog (counted in `faults` too).
    pub hangs: u64,
    /// Slices ended by preemption with its work unfinished.
    pub preemptions: u64,
    /// Halts because the engine did not stop in time for a preemption
    /// (counted in `faults` too).
    pub preempt_timeouts: u64,
    /// Time the context owned the engine's ring.
    pub engine_time: Duration,
}

/// How the scheduler shares the engine.
#[derive(Clone, Copy, Debug)]
pub struct SchedConfig {
    pub timeslice: Duration,
    /// Work in the ring that makes no progress for this long is a hang.
    pub watchdog: Duration,
    /// A preemption request the engine has not answered in this long
    /// halts the owner.
    pub preempt_timeout: Duration,
    pub policy: Policy,
}

struct State {
    core: Core,
    sinks: BTreeMap<CtxId, ProgressSink>,
    /// The context whose sink is being called (outside the lock).
    delivering: Option<CtxId>,
    /// Progress taken from the core and not yet handed to its sink.
    in_hand: usize,
    shutdown: bool,
    /// Someone wants the engine left alone (a GPU reset): the thread parks.
    pause: bool,
    /// The thread is parked: nothing of it touches the GPU.
    parked: bool,
}

pub(crate) struct Shared {
    bar0: Region,
    bar2: Region,
    ring: PhysRing,
    state: Mutex<State>,
    /// Signalled whenever the ring's owner changes, a delivery ends, or the
    /// thread parks.
    idle: Condvar,
    /// Wakes the thread: new work, a reset, shutdown.
    kick: EventFd,
    irq: EventFd,
    /// Armed to a deadline closer than `TIMER_BELOW`: epoll's own timeout
    /// counts whole milliseconds, and a time slice ends in microseconds.
    /// With whether it is armed, so a far deadline costs no call on it.
    timer: Mutex<(TimerFd, bool)>,
    /// Waits for `kick`, `irq` or `timer`.
    epoll: Epoll,
    /// The interrupt is INTx that the device masks on assertion: unmask it
    /// once handled.
    intx_automasked: bool,
    log: HostLog,
}

pub struct Scheduler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn engine_reg(r: EngineReg) -> u64 {
    bar2::ENGINE + r.offset()
}

impl Scheduler {
    /// Start scheduling onto the engine behind `bar2`, whose interrupt
    /// arrives on `irq` (automasked INTx if `intx_automasked`).
    pub fn start(
        bar0: Region,
        bar2: Region,
        ring: PhysRing,
        irq: EventFd,
        intx_automasked: bool,
        config: SchedConfig,
        log: HostLog,
    ) -> std::io::Result<Scheduler> {
        let kick = EventFd::new(EFD_NONBLOCK)?;
        let timer = TimerFd::new()?;
        let epoll = Epoll::new()?;
        for fd in [kick.as_raw_fd(), irq.as_raw_fd(), timer.as_raw_fd()] {
            let event = EpollEvent::new(EventSet::IN, fd as u64);
            epoll.ctl(ControlOperation::Add, fd, event)?;
        }
        let shared = Arc::new(Shared {
            bar0,
            bar2,
            ring,
            state: Mutex::new(State {
                core: Core::new(ring.size, &config),
                sinks: BTreeMap::new(),
                delivering: None,
                in_hand: 0,
                shutdown: false,
                pause: false,
                parked: false,
            }),
            idle: Condvar::new(),
            kick,
            irq,
            timer: Mutex::new((timer, false)),
            epoll,
            intx_automasked,
            log,
        });
        shared.reset_engine()?;
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rvg-sched".into())
            .spawn(move || worker.run())?;
        Ok(Scheduler {
            shared,
            thread: Some(thread),
        })
    }

    pub fn timeslice(&self) -> Duration {
        self.shared.state.lock().core.timeslice()
    }

    pub fn watchdog(&self) -> Duration {
        self.shared.state.lock().core.watchdog()
    }

    /// Engine resets by the watchdog, over every context.
    pub fn hangs(&self) -> u64 {
        self.shared.state.lock().core.hangs()
    }

    pub fn preempt_timeout(&self) -> Duration {
        self.shared.state.lock().core.preempt_timeout()
    }

    /// Engine resets for a preemption not answered in time, over every
    /// context.
    pub fn preempt_timeouts(&self) -> u64 {
        self.shared.state.lock().core.preempt_timeouts()
    }

    /// A new engine context for a vGPU whose graphics addresses are
    /// relocated by `reloc` into a `space`-byte slice.
    pub fn add_context(&self, sink: ProgressSink, reloc: u64, space: u64) -> CtxId {
        let mut st = self.shared.state.lock();
        let id = st.core.add(Ctx::new(reloc, space));
        st.sinks.insert(id, sink);
        id
    }

    /// Queue scanned work; dropped if the context was reset since
    /// `generation`.
    pub fn submit(&self, id: CtxId, generation: u64, work: Work) {
        let mut st = self.shared.state.lock();
        if let Some(ctx) = st.core.ctx(id).filter(|c| c.generation == generation) {
            ctx.queue.push_back(work);
        }
        drop(st);
        self.shared.wake();
    }

    /// The context's weight under `Policy::FixedShare`, from now on.
    pub fn set_weight(&self, id: CtxId, weight: u32) {
        if let Some(ctx) = self.shared.state.lock().core.ctx(id) {
            ctx.weight = weight;
        }
        self.shared.wake();
    }

    pub fn policy(&self) -> Policy {
        self.shared.state.lock().core.policy()
    }

    /// Share the engine by `policy` from now on.
    pub fn set_policy(&self, policy: Policy) {
        self.shared.state.lock().core.set_policy(policy);
        self.shared.wake();
    }

    pub fn set_enabled(&self, id: CtxId, enabled: bool) {
        if let Some(ctx) = self.shared.state.lock().core.ctx(id) {
            ctx.enabled = enabled;
        }
        self.shared.wake();
    }

    /// Drop the context's queued work and any of it in the ring; returns
    /// the new generation. The engine may finish the command it is on.
    pub fn reset_context(&self, id: CtxId) -> u64 {
        let generation = self.shared.state.lock().core.reset_ctx(id);
        self.shared.wake();
        generation.unwrap_or(0)
    }

    /// Remove a context; returns once none of its work is in the ring and
    /// its sink is not running (nor will again). The caller must not hold
    /// what the sink takes. Removing a context twice is harmless.
    pub fn remove_context(&self, id: CtxId) {
        let mut st = self.shared.state.lock();
        st.core.remove(id);
        st.sinks.remove(&id);
        self.shared.wake();
        while self.thread.is_some()
            && (st.core.owner().is_some_and(|o| o.id == id) || st.delivering == Some(id))
        {
            self.shared.idle.wait(&mut st);
        }
    }

    /// Wait, at most `timeout`, until none of the context's work is
    /// queued for its engine, taken out by a preemption, in the ring, or
    /// on its way to its sink (`Core::quiesce`): then everything the GPU
    /// did for it is in its inbox. Returns the guest ring offset of
    /// unstarted work dropped from a disabled engine's queue, if any.
    pub fn quiesce(&self, id: CtxId, timeout: Duration) -> Result<Option<u32>, StillRunning> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock();
        let mut from = None;
        loop {
            match st.core.quiesce(id) {
                Quiesce::Unqueued { from: f } => from = Some(f),
                Quiesce::Settled if st.in_hand == 0 => return Ok(from),
                Quiesce::Settled | Quiesce::Running => {}
            }
            if self.thread.is_none() || Instant::now() >= deadline {
                return Err(StillRunning { timeout });
            }
            // Deliveries notify; a slice of a millisecond covers what
            // does not (work finishing in the ring without a delivery).
            let slice = (deadline - Instant::now()).min(Duration::from_millis(1));
            self.shared.idle.wait_for(&mut st, slice);
        }
    }

    /// Run `f` while the scheduler thread leaves the GPU alone, then set
    /// the engine up again on an empty ring: for resetting the GPU under
    /// it. Whatever the ring held is dropped (its owner's progress with
    /// it), so callers reset the contexts first. Neither the scheduler's
    /// lock nor a sink's is held while `f` runs.
    pub fn with_engine_parked<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut st = self.shared.state.lock();
        st.pause = true;
        self.shared.wake();
        while !st.parked && self.thread.is_some() {
            self.shared.idle.wait(&mut st);
        }
        drop(st);
        let result = f();
        self.shared.state.lock().pause = false;
        self.shared.idle.notify_all();
        result
    }

    pub fn stats(&self, id: CtxId) -> CtxStats {
        self.shared.state.lock().core.stats(id).unwrap_or_default()
    }

    /// Stop the thread for good; after this the scheduler leaves the GPU
    /// alone. Idempotent.
    pub fn stop(&mut self) {
        self.shared.state.lock().shutdown = true;
        self.shared.wake();
        self.shared.idle.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn wake(&self) {
        // A full counter already wakes the thread.
        let _ = self.kick.write(1);
    }

    fn run(&self) {
        loop {
            let step = {
                let mut st = self.state.lock();
                if st.shutdown {
                    return;
                }
                if st.pause {
                    self.park(&mut st);
                    continue;
                }
                let step = self.changing_hands(&mut st, |core| core.decide(Instant::now()));
                if let Step::ResetEngine(Some(_)) = step {
                    st.in_hand += 1;
                }
                step
            };
            match step {
                Step::Push(chunk) => {
                    if let Err(e) = self.push(&chunk) {
                        (self.log)(&format!("writing the GPU's ring: {e}"));
                    }
                }
                Step::Preempt => {
                    let ctl = ring_ctl::ENABLE | ring_ctl::PREEMPT;
                    if let Err(e) = self.bar2.write_u32(engine_reg(EngineReg::RingCtl), ctl) {
                        (self.log)(&format!("asking the GPU's engine to stop: {e}"));
                    }
                }
                Step::ResetEngine(halted) => {
                    if let Some(d) = &halted {
                        self.log_halt(d);
                    }
                    if let Err(e) = self.reset_engine() {
                        (self.log)(&format!("resetting the GPU's engine: {e}"));
                    }
                    self.deliver(halted.into_iter().collect());
                }
                Step::Wait(deadline) => {
                    self.wait(deadline);
                    self.collect();
                }
            }
        }
    }

    /// Run `f` on the core and wake whoever waits for the ring to change
    /// hands (`remove_context`) if it did: a decision or what the engine's
    /// registers said (a preemption gives the ring up).
    fn changing_hands<R>(&self, st: &mut State, f: impl FnOnce(&mut Core) -> R) -> R {
        let before = st.core.owner_changes();
        let r = f(&mut st.core);
        if st.core.owner_changes() != before {
            self.idle.notify_all();
        }
        r
    }

    /// Stay off the GPU until the pause is over, then start the engine
    /// afresh: the GPU was reset under it.
    fn park(&self, st: &mut parking_lot::MutexGuard<'_, State>) {
        st.parked = true;
        self.idle.notify_all();
        while st.pause && !st.shutdown {
            self.idle.wait(st);
        }
        st.parked = false;
        if let Err(e) = self.reset_engine() {
            (self.log)(&format!("setting up the GPU's engine again: {e}"));
        }
        st.core.engine_was_reset();
        self.idle.notify_all();
    }

    /// Say why a context was halted with the engine reset under it.
    fn log_halt(&self, d: &Delivery) {
        let code = d.progress.error.map(|e| e.code);
        let core = &self.state.lock().core;
        let why = if code == Some(error::PREEMPT_TIMEOUT) {
            format!(
                "preemption timeout: the engine did not stop within {} ms of the request",
                core.preempt_timeout().as_millis()
            )
        } else {
            format!(
                "watchdog: the engine made no progress for {} ms",
                core.watchdog().as_millis()
            )
        };
        (self.log)(&format!(
            "{why} on context {}'s work; engine reset, context halted",
            d.ctx.0
        ));
    }

    /// Copy a chunk into the ring at its place and move the tail.
    fn push(&self, chunk: &Chunk) -> std::io::Result<()> {
        let size = u64::from(self.ring.size);
        let mut bytes: Vec<u8> = chunk.dwords.iter().flat_map(|d| d.to_le_bytes()).collect();
        let start = (chunk.at * 4) % size;
        let first = bytes.len().min((size - start) as usize);
        let rest = bytes.split_off(first);
        self.bar0.write(self.ring.vram_offset + start, &bytes)?;
        self.bar0.write(self.ring.vram_offset, &rest)?;
        if chunk.resume != 0 {
            // The engine is idle: the rows apply to the chunk's first command.
            self.bar2
                .write_u32(engine_reg(EngineReg::RingResume), chunk.resume)?;
        }
        let end = chunk.at + chunk.dwords.len() as u64;
        self.bar2
            .write_u32(engine_reg(EngineReg::RingTail), ((end * 4) % size) as u32)
    }

    /// Sleep until the GPU interrupts or someone kicks, at most until
    /// `deadline`.
    fn wait(&self, deadline: Option<Instant>) {
        // The GPU has often finished already (the soft GPU runs a short
        // stream within the push): one read instead of a sleep and two.
        if self.irq.read().is_ok() {
            self.ack_interrupt();
            return;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return;
        }
        // Near deadlines (a slice's end, a preemption timeout) on the
        // timer; far ones (the watchdog, the poll) on epoll's milliseconds,
        // rounded up: waking before the deadline only costs another wait.
        // Re-arming or disarming the timer also clears an expiry it
        // reported before; an armed timer not needed is disarmed, or it
        // would wake every wait.
        let mut timer = self.timer.lock();
        let near = left.filter(|&l| l < TIMER_BELOW);
        let on_timer = match near {
            Some(l) => timer.0.reset(l, None).is_ok(),
            None if timer.1 => {
                let _ = timer.0.clear();
                false
            }
            None => false,
        };
        timer.1 = on_timer;
        drop(timer);
        let timeout = match left {
            Some(l) if !on_timer => i32::try_from(l.as_millis() + 1).unwrap_or(i32::MAX),
            _ => -1,
        };
        // Which fd woke us matters not: the eventfds are read
        // (non-blocking) below, the timer is set again by the next wait.
        // An error (EINTR) only makes this another turn of the loop.
        let mut events = [EpollEvent::default(); 3];
        let _ = self.epoll.wait(timeout, &mut events);
        let _ = self.kick.read();
        if self.irq.read().is_ok() {
            self.ack_interrupt();
        }
    }

    /// Acknowledge the GPU's interrupt: clear what it reports, so the next
    /// completion signals again; re-arm INTx.
    fn ack_interrupt(&self) {
        let at = bar2::GLOBAL + GlobalReg::IntStatus.offset();
        let r = self
            .bar2
            .read_u32(at)
            .and_then(|s| self.bar2.write_u32(at, s));
        if let Err(e) = r {
            (self.log)(&format!("acknowledging the GPU's interrupt: {e}"));
        }
        if self.intx_automasked {
            let dev = self.bar2.device();
            if let Err(e) = dev.set_irqs(&IrqSet::intx_unmask()) {
                (self.log)(&format!("unmasking the GPU's INTx: {e}"));
            }
        }
    }

    /// Read the engine and turn what it completed into progress; on an
    /// engine error, reset the engine before telling the vGPU.
    fn collect(&self) {
        let preempting = {
            let st = self.state.lock();
            if !st.core.watching() {
                return;
            }
            st.core.preempting()
        };
        let snap = match self.snapshot(preempting) {
            Ok(s) => s,
            Err(e) => {
                (self.log)(&format!("reading the GPU's engine registers: {e}"));
                return;
            }
        };
        let collected = {
            let mut st = self.state.lock();
            let collected = self.changing_hands(&mut st, |core| core.collect(snap, Instant::now()));
            st.in_hand += collected.deliveries.len();
            collected
        };
        if collected.reset_engine {
            if let Err(e) = self.reset_engine() {
                (self.log)(&format!("resetting the GPU's engine: {e}"));
            }
        }
        self.deliver(collected.deliveries);
    }

    /// The engine's registers, each read a call on the contract (a system
    /// call on a kernel device), so only those that can matter: `RING_CTL`
    /// and `RING_RESUME` while a preemption waits for its answer,
    /// `ERROR_ADDR` when there is an error. The others read as an engine
    /// that is enabled, with no rows done and no error address.
    fn snapshot(&self, preempting: bool) -> std::io::Result<EngineSnapshot> {
        let read = |r| self.bar2.read_u32(engine_reg(r));
        let (ctl, resume) = if preempting {
            (read(EngineReg::RingCtl)?, read(EngineReg::RingResume)?)
        } else {
            (ring_ctl::ENABLE, 0)
        };
        let error = read(EngineReg::Error)?;
        let error_addr = match error {
            error::NONE => 0,
            _ => self.bar2.read_u64(engine_reg(EngineReg::ErrorAddr))?,
        };
        Ok(EngineSnapshot {
            ctl,
            seqno: read(EngineReg::Seqno)?,
            error,
            error_addr,
            head: read(EngineReg::RingHead)?,
            resume,
        })
    }

    /// Hand progress to the contexts' sinks, in order, with no scheduler
    /// lock held; a context removed meanwhile gets nothing.
    fn deliver(&self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let mut st = self.state.lock();
            let Some(sink) = st.sinks.get(&d.ctx).cloned() else {
                st.in_hand -= 1;
                continue;
            };
            st.delivering = Some(d.ctx);
            drop(st);
            sink(d.progress);
            let mut st = self.state.lock();
            st.delivering = None;
            st.in_hand -= 1;
            drop(st);
            self.idle.notify_all();
        }
    }

    /// Engine stopped and back at the start of an empty ring, enabled.
    fn reset_engine(&self) -> std::io::Result<()> {
        let ctl = engine_reg(EngineReg::RingCtl);
        self.bar2.write_u32(ctl, ring_ctl::RESET)?;
        self.bar2
            .write_u64(engine_reg(EngineReg::RingBase), self.ring.gfx_base)?;
        self.bar2
            .write_u32(engine_reg(EngineReg::RingSize), self.ring.size)?;
        self.bar2.write_u32(engine_reg(EngineReg::RingTail), 0)?;
        self.bar2.write_u32(ctl, ring_ctl::ENABLE)
    }
}

//! The physical RVG-1 GPU: what `rust-vgpu-hw` exposes raw and what the soft
//! backend runs behind the VFIO contract. Full GTT, all registers, no
//! mediation: whoever drives it is trusted.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use rvg_model::access::{AccessError, Lane};
use rvg_model::block::{RegError, RegFile};
use rvg_model::config::{ConfigError, GpuConfig};
use rvg_model::dma::{DmaSpace, NoDma};
use rvg_model::effects::Effects;
use rvg_model::engine::{error, ring_ctl, EngineError, EngineState, RunOutcome, Signal};
use rvg_model::global::{GlobalBlock, GlobalWrite};
use rvg_model::gtt::GttEntry;
use rvg_model::irq::IrqLine;
use rvg_model::rect_exec::PREEMPT_BAND_BYTES;
use rvg_model::regs::{bar2, Bar2Target, DisplayReg};

use crate::arbiter::Turn;
use crate::gfx_mem::GfxMem;
use crate::partition::Partition;
use crate::vram::Vram;

/// Entries of the physical GTT: the whole BAR2 window, 512 MiB of graphics
/// address space.
pub const GTT_ENTRIES: u32 = bar2::GTT_WINDOW_ENTRIES;

/// Commands the worker runs before it lets register accesses see progress.
const RUN_BUDGET: u64 = 64;

/// Delivers the interrupt output when the engine changes it.
pub type IrqSink = Arc<dyn Fn(IrqLine) + Send + Sync>;

#[derive(Debug)]
struct GpuState {
    global: GlobalBlock,
    engine: EngineState,
    display: RegFile<DisplayReg>,
    /// Bumped by every engine reset: a run that started before is dropped.
    generation: u64,
    /// A run is executing commands outside the lock (the worker's, or one
    /// inline in a tail writer's thread).
    running: bool,
    /// The worker is delivering an interrupt outside the lock.
    delivering: bool,
    /// A test holds the engine: no run starts, and a preemption request
    /// stays pending (a held engine is a stuck one: it answers nothing).
    hold: bool,
    shutdown: bool,
}

/// What one function's register side and its engine worker share.
struct Core {
    phys: Arc<Physical>,
    /// 0 for the PF, 1 + its index for a VF: its place at the arbiter.
    function: usize,
    partition: Partition,
    /// The function's VRAM partition (the PF's is all of it).
    vram: Vram,
    state: Mutex<GpuState>,
    /// Signalled on new engine work, on the end of a run, on shutdown.
    wake: Condvar,
    /// Signalled when a run or an interrupt delivery ends: what resets and
    /// `wait_engine_idle` wait for. Apart from `wake`, so a run that ends
    /// does not wake the worker for nothing.
    settled: Condvar,
    dma: RwLock<Arc<dyn DmaSpace>>,
    irq_sink: RwLock<Option<IrqSink>>,
    /// `GpuState::generation`, readable by a run without the lock: it stops
    /// at its next preemption point once a reset moved it on.
    generation: AtomicU64,
    /// A preemption request written while a run was in flight, readable by
    /// that run without the lock: it stops at its next preemption point.
    /// Cleared, under the lock, when the request is answered and on every
    /// reset.
    preempt: AtomicBool,
    /// Its rings halted for the arbiter's preemption timeout.
    preempt_timeouts: AtomicU64,
    /// `GpuState::shutdown`, readable without the lock by a worker waiting
    /// in line at the arbiter.
    leaving: AtomicBool,
    /// A stream of at most this many dwords, written while the engine is
    /// idle, runs in the tail writer's own thread (0: the worker runs
    /// everything).
    inline_dwords: AtomicU32,
}

/// One PCI function of the GPU: the whole GPU (the PF), or an SR-IOV VF.
pub struct Gpu {
    config: GpuConfig,
    core: Arc<Core>,
    worker: Option<JoinHandle<()>>,
}

impl Gpu {
    /// A GPU without VFs.
    pub fn new(config: GpuConfig) -> Result<Gpu, ConfigError> {
        Gpu::with_vfs(config, 0)
    }

    /// A function of the GPU `phys`: the PF (0, the whole) or VF `function - 1`.
    fn function(
        phys: Arc<Physical>,
        function: usize,
        partition: Partition,
        config: GpuConfig,
    ) -> Result<Gpu, ConfigError> {
        let vram = phys
            .vram
            .window(partition.vram_base, partition.vram_size)
            .map_err(|e| ConfigError::Host(format!("VRAM partition out of range: {e:?}")))?;
        let core = Arc::new(Core {
            phys,
            function,
            partition,
            vram,
            state: Mutex::new(GpuState {
                global: GlobalBlock::new(partition.vram_size, partition.gtt_entries),
                engine: EngineState::default(),
                display: RegFile::default(),
                generation: 0,
                running: false,
                delivering: false,
                hold: false,
                shutdown: false,
            }),
            wake: Condvar::new(),
            settled: Condvar::new(),
            dma: RwLock::new(Arc::new(NoDma)),
            irq_sink: RwLock::new(None),
            generation: AtomicU64::new(0),
            preempt: AtomicBool::new(false),
            preempt_timeouts: AtomicU64::new(0),
            leaving: AtomicBool::new(false),
            inline_dwords: AtomicU32::new(0),
        });
        let worker_core = core.clone();
        let name = match function {
            0 => "rvg-engine".to_string(),
            f => format!("rvg-engine-vf{}", f - 1),
        };
        let worker = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker_core.engine_loop())
            .map_err(|e| ConfigError::Host(format!("cannot start the engine thread: {e}")))?;
        Ok(Gpu {
            config,
            core,
            worker: Some(worker),
        })
    }

    pub fn config(&self) -> &GpuConfig {
        &self.config
    }

    /// The function's VRAM: the PF's is all of it, a VF's its partition.
    pub fn vram(&self) -> &Vram {
        &self.core.vram
    }

    /// Where this function's GTT and VRAM sit in the GPU's.
    pub fn partition(&self) -> Partition {
        self.core.partition
    }

    /// Engine time this function has held at the arbiter.
    pub fn engine_time(&self) -> Duration {
        self.core.phys.arbiter.engine_time(self.core.function)
    }

    /// How often the arbiter halted this function's ring for going on
    /// past its quantum and the preemption timeout.
    pub fn preempt_timeouts(&self) -> u64 {
        self.core.preempt_timeouts.load(Ordering::Relaxed)
    }

    /// Install how DMA addresses reach memory.
    pub fn set_dma(&self, dma: Arc<dyn DmaSpace>) {
        *self.core.dma.write() = dma;
    }

    pub fn dma(&self) -> Arc<dyn DmaSpace> {
        self.core.dma.read().clone()
    }

    /// Install who hears about interrupts the engine raises on its own
    /// thread (register accesses report theirs in their `Effects`).
    pub fn set_irq_sink(&self, sink: IrqSink) {
        *self.core.irq_sink.write() = Some(sink);
    }

    /// A whole-entry write to the GTT window (`BAR2 + GTT + 8 * index`):
    /// what an aligned 8-byte MMIO write there does, without the decoding.
    /// Returns false for an index past the GTT.
    #[inline]
    pub fn set_gtt_entry(&self, index: u32, entry: GttEntry) -> bool {
        match self.core.gtt().get(index as usize) {
            Some(slot) => {
                slot.store(entry.0, Ordering::Release);
                true
            }
            None => false,
        }
    }

    pub fn gtt_entry(&self, index: u32) -> Option<GttEntry> {
        self.core
            .gtt()
            .get(index as usize)
            .map(|e| GttEntry(e.load(Ordering::Acquire)))
    }

    pub fn irq_line(&self) -> IrqLine {
        self.core.state.lock().global.irq.current()
    }

    /// The engine's registers, as a snapshot.
    pub fn engine_state(&self) -> EngineState {
        self.core.state.lock().engine
    }

    /// Let a tail write that leaves at most `dwords` dwords to run, on an
    /// idle engine, run them in the writer's own thread. For a GPU whose
    /// tail writer is a scheduler thread, not a vCPU: a short stream then
    /// completes without waking the worker (and, its interrupt already
    /// signalled, without the scheduler sleeping). Longer streams, and
    /// every stream with 0, go to the worker.
    pub fn set_inline_dwords(&self, dwords: u32) {
        self.core.inline_dwords.store(dwords, Ordering::Relaxed);
    }

    /// Test hook: while `hold` is set the engine starts no run (the run in
    /// flight finishes), so a test chooses when submitted work completes.
    /// Resets do not wait for a held engine: it is not running. A
    /// preemption request written meanwhile stays pending, as on a stuck
    /// engine; once released the engine answers it at once (the worker's
    /// next run stops before its first command).
    pub fn set_engine_hold(&self, hold: bool) {
        self.core.state.lock().hold = hold;
        self.core.wake.notify_all();
    }

    /// Wait until the engine has nothing it could run (idle or halted), no
    /// preemption request it could answer, and its interrupts are
    /// delivered.
    pub fn wait_engine_idle(&self) {
        let mut st = self.core.state.lock();
        while st.running || st.delivering || st.engine.runnable() || st.preempt_to_answer() {
            self.core.settled.wait(&mut st);
        }
    }

    /// Power-on state: registers, engine and GTT cleared, after any run in
    /// flight has finished. The PF's VRAM keeps its contents, as memory
    /// does; a VF's partition is scrubbed, so its next tenant sees nothing
    /// of the last. The PF's reset is the whole GPU's: every VF's too.
    pub fn reset(&self) -> Effects {
        let line = self.core.reset();
        if self.core.function == 0 {
            let vfs: Vec<Arc<Core>> = self
                .core
                .phys
                .vfs
                .lock()
                .iter()
                .filter_map(Weak::upgrade)
                .collect();
            for vf in vfs {
                // VFs signal by message only: a reset raises none.
                vf.reset();
            }
        }
        Effects {
            irq: Some(line),
            diags: Vec::new(),
        }
    }

    /// A read of BAR2: the value, or why the access is refused. Reads
    /// change nothing.
    pub fn mmio_read(&self, offset: u64, size: u32) -> Result<u64, RegError> {
        // The raw model has no bochs-compatible block: only a vGPU needs one.
        match Bar2Target::decode(offset) {
            Bar2Target::Global(rel) => self.core.state.lock().global.read(rel, size),
            Bar2Target::Engine(rel) => self.core.state.lock().engine.read(rel, size),
            Bar2Target::Display(rel) => self.core.state.lock().display.read(rel, size),
            Bar2Target::Sriov(rel) => self.sriov_read(rel, size),
            Bar2Target::Gtt { index, within } => self.gtt_read(index, within, size),
            _ => Err(RegError::NoRegister { offset, size }),
        }
    }

    pub fn mmio_write(&self, offset: u64, value: u64, size: u32) -> Effects {
        let mut fx = Effects::default();
        let result = match Bar2Target::decode(offset) {
            Bar2Target::Global(rel) => {
                let mut st = self.core.state.lock();
                match st.global.write(rel, value, size) {
                    Ok(GlobalWrite::Reset) => {
                        drop(st);
                        return self.reset();
                    }
                    Ok(GlobalWrite::Trigger(src)) => {
                        fx.irq = Some(st.global.irq.raise(src));
                        return fx;
                    }
                    Ok(GlobalWrite::Done(line)) => {
                        fx.irq = Some(line);
                        return fx;
                    }
                    Ok(GlobalWrite::Stored) => return fx,
                    Err(e) => Err(e),
                }
            }
            Bar2Target::Engine(rel) => {
                let mut st = self.core.state.lock();
                st.engine.write(rel, value, size).map(|w| {
                    if w.reset {
                        // The reset is done when the engine stopped: the
                        // run in flight ends at its next preemption point
                        // (after the band of rows in flight, or the whole
                        // command where it has none inside) and its results
                        // are dropped.
                        st.generation += 1;
                        self.core.generation.store(st.generation, Ordering::Release);
                        while st.running {
                            self.core.settled.wait(&mut st);
                        }
                        self.core.preempt.store(false, Ordering::Release);
                    }
                    if w.preempt {
                        if st.running {
                            // The run answers at its next preemption point,
                            // or the end of the run if it has passed its last.
                            self.core.preempt.store(true, Ordering::Release);
                        } else if !st.hold {
                            // Nothing running: stopped already.
                            fx.irq = Some(self.core.answer_preempt(&mut st));
                        }
                    }
                    if w.kick {
                        let arbiter = &self.core.phys.arbiter;
                        if st.idle_with_work()
                            && self.core.runs_inline(&st.engine)
                            && arbiter.try_acquire(self.core.function)
                        {
                            st = self.core.run(st, RUN_BUDGET);
                            arbiter.release(self.core.function);
                        }
                        // The worker only for work left to do: a wake-up
                        // for nothing costs the tail writer its core.
                        if st.idle_with_work() {
                            self.core.wake.notify_all();
                        }
                    }
                })
            }
            Bar2Target::Display(rel) => self
                .core
                .state
                .lock()
                .display
                .write(rel, value, size)
                .map(|_| ()),
            Bar2Target::Sriov(rel) => self.sriov_write(rel, value, size),
            Bar2Target::Gtt { index, within } => self.gtt_write(index, within, value, size),
            _ => Err(RegError::NoRegister { offset, size }),
        };
        fx.check_write(offset, value, result);
        fx
    }

    fn gtt_slot(&self, index: u64, within: u64, size: u32) -> Result<&AtomicU64, RegError> {
        let slot = self
            .core
            .gtt()
            .get(index as usize)
            .ok_or(RegError::NoRegister {
                offset: bar2::GTT + index * 8 + within,
                size,
            })?;
        Lane::new(within, size, 0, 8)
            .ok()
            .filter(|l| l.size >= 4)
            .map(|_| slot)
            .ok_or(RegError::Access {
                reg: "GTT",
                err: AccessError::Value {
                    value: u64::from(size),
                    expected: "GTT entries take aligned 4- or 8-byte accesses",
                },
            })
    }

    fn gtt_read(&self, index: u64, within: u64, size: u32) -> Result<u64, RegError> {
        let slot = self.gtt_slot(index, within, size)?;
        let lane = Lane::new(within, size, 0, 8).expect("checked");
        Ok(lane.extract(slot.load(Ordering::Acquire)))
    }

    /// The physical GTT takes 4-byte halves as they come: only trusted
    /// software (the mediator, a host driver) writes it.
    fn gtt_write(&self, index: u64, within: u64, value: u64, size: u32) -> Result<(), RegError> {
        let slot = self.gtt_slot(index, within, size)?;
        let lane = Lane::new(within, size, 0, 8).expect("checked");
        if size == 8 {
            slot.store(value, Ordering::Release);
        } else {
            let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(lane.merge(old, value))
            });
        }
        Ok(())
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.core.state.lock().shutdown = true;
        self.core.leaving.store(true, Ordering::Release);
        self.core.wake.notify_all();
        // Its worker may wait in line behind another function's turn.
        self.core.phys.arbiter.wake(self.core.function);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Core {
    /// The engine worker: runs whatever the engine may run, a budget of
    /// commands at a time, outside the lock, so register accesses (a vCPU
    /// writing the tail, polling the seqno) never wait for a blit.
    ///
    /// The engine is the GPU's, shared by its functions: the worker holds
    /// it at the arbiter from its first run until it has nothing left to
    /// run or its quantum is up with another function waiting.
    fn engine_loop(&self) {
        let arbiter = &self.phys.arbiter;
        let mut st = self.state.lock();
        loop {
            while !st.shutdown && !st.idle_with_work() {
                self.wake.wait(&mut st);
            }
            if st.shutdown {
                return;
            }
            drop(st);
            let leaving = || self.leaving.load(Ordering::Acquire);
            if !arbiter.acquire(self.function, &leaving) {
                st = self.state.lock();
                continue;
            }
            st = self.state.lock();
            while !st.shutdown && st.idle_with_work() && arbiter.turn(self.function) == Turn::Keep {
                st = self.run(st, RUN_BUDGET);
            }
            drop(st);
            arbiter.release(self.function);
            st = self.state.lock();
        }
    }

    /// This function's part of the GTT: the window its registers show and
    /// its engine translates through.
    fn gtt(&self) -> &[AtomicU64] {
        &self.phys.gtt[self.partition.gtt_range()]
    }

    /// The function's reset (see [`Gpu::reset`]): its own registers,
    /// engine and GTT window, and a VF's VRAM partition. Returns its
    /// interrupt line.
    fn reset(&self) -> IrqLine {
        let mut st = self.state.lock();
        st.engine = EngineState::default();
        st.generation += 1;
        self.generation.store(st.generation, Ordering::Release);
        while st.running {
            self.settled.wait(&mut st);
        }
        self.preempt.store(false, Ordering::Release);
        for e in self.gtt() {
            e.store(0, Ordering::Release);
        }
        if self.function > 0 {
            self.vram.scrub();
        }
        st.global.reset();
        st.display = RegFile::default();
        st.global.irq.current()
    }

    /// Whether a tail writer runs the engine's stream itself: a short one,
    /// in dwords and in work. A long command goes to the worker however few
    /// its dwords, or the writer (a mediator's scheduler) could not ask for
    /// its preemption while it ran.
    fn runs_inline(&self, engine: &EngineState) -> bool {
        if engine.pending_dwords() > self.inline_dwords.load(Ordering::Relaxed) {
            return false;
        }
        let dma = self.dma.read().clone();
        let mem = GfxMem {
            gtt: self.gtt(),
            vram: &self.vram,
            dma: &*dma,
        };
        engine.pending_bytes(&mem) <= PREEMPT_BAND_BYTES
    }

    /// One run of at most `budget` commands from the engine's head, outside
    /// the lock (`running` keeps anyone else from starting one), then its
    /// results and interrupt, unless a reset came in meanwhile. A
    /// preemption request reaches the run through `preempt`; one the run
    /// did not see is answered when it ends.
    fn run<'a>(
        &'a self,
        mut st: MutexGuard<'a, GpuState>,
        budget: u64,
    ) -> MutexGuard<'a, GpuState> {
        {
            let mut engine = st.engine;
            let generation = st.generation;
            st.running = true;
            drop(st);

            let dma = self.dma.read().clone();
            let mem = GfxMem {
                gtt: self.gtt(),
                vram: &self.vram,
                dma: &*dma,
            };
            let overdue = Cell::new(false);
            let signal = || {
                if self.generation.load(Ordering::Acquire) != generation {
                    Signal::Cancel
                } else if self.preempt.load(Ordering::Acquire) {
                    Signal::Preempt
                } else {
                    match self.phys.arbiter.turn(self.function) {
                        Turn::Keep => Signal::Run,
                        Turn::Yield => Signal::Yield,
                        // Past its quantum and the timeout inside a batch,
                        // where it cannot yield: stopped, and halted.
                        Turn::Overdue => {
                            overdue.set(true);
                            Signal::Cancel
                        }
                    }
                }
            };
            let mut out = engine.run(&mem, budget, &signal);
            if overdue.get() {
                self.halt_overdue(&mut engine, &mut out);
            }

            st = self.state.lock();
            st.running = false;
            let mut message = false;
            if st.generation == generation {
                // Keep what the guest wrote meanwhile (base, size, tail,
                // control); take what the engine owns.
                st.engine.head = engine.head;
                st.engine.seqno = engine.seqno;
                st.engine.error = engine.error;
                st.engine.error_addr = engine.error_addr;
                st.engine.resume = engine.resume;
                if out.preempted {
                    st.engine.ctl &= !(ring_ctl::ENABLE | ring_ctl::PREEMPT);
                    self.preempt.store(false, Ordering::Release);
                } else if st.engine.ctl & ring_ctl::PREEMPT != 0 {
                    // The request landed as the run passed its last
                    // preemption point: the engine has stopped, say so.
                    st.engine.stop_preempted(&mut out);
                    self.preempt.store(false, Ordering::Release);
                }
                if !out.raise.is_empty() {
                    message = st.global.irq.raise(out.raise).message;
                }
            }
            self.settled.notify_all();
            if message {
                // The level is read again at delivery: a reset may have
                // come in between.
                let line = IrqLine {
                    message,
                    ..st.global.irq.current()
                };
                st.delivering = true;
                drop(st);
                if let Some(sink) = self.irq_sink.read().clone() {
                    sink(line);
                }
                st = self.state.lock();
                st.delivering = false;
                self.settled.notify_all();
            }
        }
        st
    }
}

impl Core {
    /// Answer a preemption request on an engine no run is on: `ENABLE`
    /// and `PREEMPT` cleared, head and `RING_RESUME` where they are,
    /// `PREEMPTED` raised. Returns the interrupt line.
    fn answer_preempt(&self, st: &mut GpuState) -> IrqLine {
        let mut out = RunOutcome::default();
        st.engine.stop_preempted(&mut out);
        self.preempt.store(false, Ordering::Release);
        st.global.irq.raise(out.raise)
    }
}

impl Core {
    /// Halt a ring the arbiter stopped for its preemption timeout: `ERROR`
    /// is `PREEMPT_TIMEOUT` at the command it was in, as on any error; the
    /// guest resets the ring to go on.
    fn halt_overdue(&self, engine: &mut EngineState, out: &mut RunOutcome) {
        let e = EngineError::at(
            error::PREEMPT_TIMEOUT,
            engine.ring_base + u64::from(engine.head),
        );
        engine.error = e.code;
        engine.error_addr = e.addr;
        engine.resume = 0;
        out.raise |= e.interrupts();
        out.more = false;
        self.preempt_timeouts.fetch_add(1, Ordering::Relaxed);
    }
}

impl GpuState {
    /// The engine has work, or a preemption request to answer, and nobody
    /// holds or runs it. A run answers a request whether or not there is
    /// work: it stops before its first command.
    fn idle_with_work(&self) -> bool {
        !self.hold && !self.running && (self.engine.runnable() || self.preempt_pending())
    }

    fn preempt_pending(&self) -> bool {
        self.engine.ctl & ring_ctl::PREEMPT != 0
    }

    /// A request pending on an engine that is free to answer it.
    fn preempt_to_answer(&self) -> bool {
        !self.hold && self.preempt_pending()
    }
}

#[cfg(test)]
#[path = "gpu_tests.rs"]
mod tests;

#[path = "sriov.rs"]
mod sriov;
use sriov::Physical;

#[cfg(test)]
#[path = "sriov_tests.rs"]
mod sriov_tests;

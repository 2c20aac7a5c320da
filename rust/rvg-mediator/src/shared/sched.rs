//! The scheduler: time-shares the GPU's one engine among the vGPUs'
//! engine contexts.
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

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rvg_model::cmd::{self, Command};
use rvg_model::engine::{error, ring_ctl, EngineError};
use rvg_model::irq::IntSource;
use rvg_model::regs::{bar2, EngineReg, GlobalReg, Register};
use rvg_vfio::contract::{IrqSet, Region};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::scan::Work;

/// Guest commands per chunk: the unit of preemption.
const CHUNK_COMMANDS: usize = 32;
/// Chunks in the ring at once: the engine has the next while the
/// scheduler learns about the last.
const CHUNKS_IN_FLIGHT: usize = 2;
/// How long to wait for an interrupt before looking at the engine anyway.
const POLL_FALLBACK_MS: i32 = 100;

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

/// Where the scheduler reports failures of the contract (host-side errors).
pub type HostLog = Arc<dyn Fn(&str) + Send + Sync>;

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
}

struct Ctx {
    generation: u64,
    enabled: bool,
    queue: VecDeque<Work>,
    /// Shadow dwords of the front work already in the ring.
    offset: usize,
    sink: ProgressSink,
    reloc: u64,
    space: u64,
    stats: CtxStats,
}

impl Ctx {
    fn runnable(&self) -> bool {
        self.enabled && !self.queue.is_empty()
    }
}

#[derive(Default)]
struct State {
    ctxs: Vec<Option<Ctx>>,
    /// The context whose commands the ring holds, and its generation.
    owner: Option<(usize, u64)>,
    /// The context whose sink is being called (outside the lock).
    delivering: Option<usize>,
    /// Round-robin cursor: the context that ran last.
    last: usize,
    shutdown: bool,
    /// Someone wants the engine left alone (a GPU reset): the thread parks.
    pause: bool,
    /// The thread is parked: nothing of it touches the GPU.
    parked: bool,
}

impl State {
    fn ctx(&mut self, id: usize) -> Option<&mut Ctx> {
        self.ctxs.get_mut(id).and_then(|c| c.as_mut())
    }

    /// The next context with work after the one that ran last.
    fn pick(&self) -> Option<usize> {
        let n = self.ctxs.len();
        (1..=n)
            .map(|k| (self.last + k) % n)
            .find(|&i| self.ctxs[i].as_ref().is_some_and(Ctx::runnable))
    }

    fn others_waiting(&self, id: usize) -> bool {
        self.ctxs
            .iter()
            .enumerate()
            .any(|(i, c)| i != id && c.as_ref().is_some_and(Ctx::runnable))
    }
}

/// A fence in the ring and what its completion means.
struct Mark {
    tag: u32,
    progress: Progress,
    /// The fence that closes a chunk.
    closes_chunk: bool,
}

/// The ring's contents, known only to the scheduler thread.
#[derive(Default)]
struct Flight {
    /// Dwords written since the ring was last reset; the tail is this
    /// modulo the ring size.
    written: u64,
    next_tag: u32,
    marks: VecDeque<Mark>,
    /// `(position, guest head)` of the commands in the ring, oldest first.
    origins: VecDeque<(u64, u32)>,
    chunks: usize,
}

impl Flight {
    fn idle(&self) -> bool {
        self.marks.is_empty()
    }
}

/// A chunk taken from a context, ready for the ring.
struct Chunk {
    dwords: Vec<u32>,
}

pub(crate) struct Shared {
    bar0: Region,
    bar2: Region,
    ring: PhysRing,
    timeslice: Duration,
    state: Mutex<State>,
    /// Signalled whenever the ring's owner changes or empties.
    idle: Condvar,
    /// Wakes the thread: new work, a reset, shutdown.
    kick: EventFd,
    irq: EventFd,
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
        timeslice: Duration,
        log: HostLog,
    ) -> Result<Scheduler, String> {
        let shared = Arc::new(Shared {
            bar0,
            bar2,
            ring,
            timeslice,
            state: Mutex::new(State::default()),
            idle: Condvar::new(),
            kick: EventFd::new(EFD_NONBLOCK).map_err(|e| format!("scheduler eventfd: {e}"))?,
            irq,
            intx_automasked,
            log,
        });
        let mut flight = Flight {
            next_tag: 1,
            ..Flight::default()
        };
        shared
            .reset_engine(&mut flight)
            .map_err(|e| format!("setting up the GPU's engine: {e}"))?;
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rvg-sched".into())
            .spawn(move || worker.run(flight))
            .map_err(|e| format!("cannot start the scheduler thread: {e}"))?;
        Ok(Scheduler {
            shared,
            thread: Some(thread),
        })
    }

    pub fn timeslice(&self) -> Duration {
        self.shared.timeslice
    }

    /// A new engine context for a vGPU whose graphics addresses are
    /// relocated by `reloc` into a `space`-byte slice.
    pub fn add_context(&self, sink: ProgressSink, reloc: u64, space: u64) -> usize {
        let mut st = self.shared.state.lock();
        let ctx = Ctx {
            generation: 0,
            enabled: false,
            queue: VecDeque::new(),
            offset: 0,
            sink,
            reloc,
            space,
            stats: CtxStats::default(),
        };
        match st.ctxs.iter().position(Option::is_none) {
            Some(i) => {
                st.ctxs[i] = Some(ctx);
                i
            }
            None => {
                st.ctxs.push(Some(ctx));
                st.ctxs.len() - 1
            }
        }
    }

    /// Queue scanned work; dropped if the context was reset since
    /// `generation`.
    pub fn submit(&self, id: usize, generation: u64, work: Work) {
        let mut st = self.shared.state.lock();
        if let Some(ctx) = st.ctx(id).filter(|c| c.generation == generation) {
            ctx.queue.push_back(work);
        }
        drop(st);
        self.shared.wake();
    }

    pub fn set_enabled(&self, id: usize, enabled: bool) {
        if let Some(ctx) = self.shared.state.lock().ctx(id) {
            ctx.enabled = enabled;
        }
        self.shared.wake();
    }

    /// Drop the context's queued work and any of it in the ring; returns
    /// the new generation. The engine may finish the command it is on.
    pub fn reset_context(&self, id: usize) -> u64 {
        let mut st = self.shared.state.lock();
        let generation = match st.ctx(id) {
            Some(ctx) => {
                ctx.queue.clear();
                ctx.offset = 0;
                ctx.generation += 1;
                ctx.generation
            }
            None => 0,
        };
        drop(st);
        self.shared.wake();
        generation
    }

    /// Remove a context; returns once none of its work is in the ring and
    /// its sink is not running (nor will again). The caller must not hold
    /// what the sink takes.
    pub fn remove_context(&self, id: usize) {
        let mut st = self.shared.state.lock();
        if let Some(slot) = st.ctxs.get_mut(id) {
            *slot = None;
        }
        self.shared.wake();
        while st.owner.is_some_and(|(o, _)| o == id) || st.delivering == Some(id) {
            self.shared.idle.wait(&mut st);
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

    pub fn stats(&self, id: usize) -> CtxStats {
        self.shared
            .state
            .lock()
            .ctx(id)
            .map_or_else(CtxStats::default, |c| c.stats)
    }
}

impl Scheduler {
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

    fn run(&self, mut f: Flight) {
        let mut slice: Option<(usize, Instant)> = None;
        loop {
            let chunk = {
                let mut st = self.state.lock();
                if st.shutdown {
                    return;
                }
                if st.pause {
                    st.parked = true;
                    self.idle.notify_all();
                    while st.pause && !st.shutdown {
                        self.idle.wait(&mut st);
                    }
                    st.parked = false;
                    // The GPU was reset under the engine: start afresh.
                    if let Err(e) = self.reset_engine(&mut f) {
                        (self.log)(&format!("setting up the GPU's engine again: {e}"));
                    }
                    slice = None;
                    if st.owner.take().is_some() {
                        self.idle.notify_all();
                    }
                    continue;
                }
                // Work of a context reset or removed since it went in.
                if let Some((id, generation)) = st.owner {
                    if st.ctx(id).is_none_or(|c| c.generation != generation) {
                        if let Err(e) = self.reset_engine(&mut f) {
                            (self.log)(&format!("resetting the GPU's engine: {e}"));
                        }
                        st.owner = None;
                        self.idle.notify_all();
                    }
                }
                let now = Instant::now();
                if let Some((id, end)) = slice {
                    let mine = st.ctx(id).is_some_and(|c| c.runnable());
                    if f.idle() && (!mine || (now >= end && st.others_waiting(id))) {
                        slice = None;
                        st.owner = None;
                        self.idle.notify_all();
                    }
                }
                if slice.is_none() {
                    slice = st.pick().map(|id| (id, now + self.timeslice));
                    if let Some((id, _)) = slice {
                        st.last = id;
                        let ctx = st.ctx(id).expect("picked");
                        ctx.stats.slices += 1;
                        let generation = ctx.generation;
                        st.owner = Some((id, generation));
                    }
                }
                match slice {
                    Some((id, end))
                        if f.chunks < CHUNKS_IN_FLIGHT && (now < end || !st.others_waiting(id)) =>
                    {
                        st.ctx(id)
                            .filter(|c| c.runnable())
                            .map(|ctx| take_chunk(ctx, &mut f))
                    }
                    _ => None,
                }
            };
            if let Some(chunk) = chunk {
                if let Err(e) = self.push(&mut f, &chunk) {
                    (self.log)(&format!("writing the GPU's ring: {e}"));
                }
                continue;
            }
            self.wait(!f.idle());
            self.collect(&mut f);
        }
    }

    /// Copy a chunk into the ring at the tail and move the tail.
    fn push(&self, f: &mut Flight, chunk: &Chunk) -> std::io::Result<()> {
        let size = u64::from(self.ring.size);
        let mut bytes: Vec<u8> = chunk.dwords.iter().flat_map(|d| d.to_le_bytes()).collect();
        let start = (f.written * 4) % size;
        let first = bytes.len().min((size - start) as usize);
        let rest = bytes.split_off(first);
        self.bar0.write(self.ring.vram_offset + start, &bytes)?;
        self.bar0.write(self.ring.vram_offset, &rest)?;
        f.written += chunk.dwords.len() as u64;
        f.chunks += 1;
        self.bar2.write_u32(
            engine_reg(EngineReg::RingTail),
            ((f.written * 4) % size) as u32,
        )
    }

    /// Sleep until the GPU interrupts or someone kicks; with work in the
    /// ring, look anyway after a while.
    fn wait(&self, busy: bool) {
        let mut fds = [
            libc::pollfd {
                fd: self.kick.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.irq.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let timeout = if busy { POLL_FALLBACK_MS } else { -1 };
        // SAFETY: `fds` is a valid array of two pollfds for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
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

    /// Turn what the engine completed into progress for its owner; on an
    /// engine error, halt the owner's context and reset the engine.
    fn collect(&self, f: &mut Flight) {
        if f.idle() {
            return;
        }
        let read = |r| self.bar2.read_u32(engine_reg(r));
        let (seqno, err, err_addr, head) = match (|| {
            Ok::<_, std::io::Error>((
                read(EngineReg::Seqno)?,
                read(EngineReg::Error)?,
                self.bar2.read_u64(engine_reg(EngineReg::ErrorAddr))?,
                read(EngineReg::RingHead)?,
            ))
        })() {
            Ok(v) => v,
            Err(e) => {
                (self.log)(&format!("reading the GPU's engine registers: {e}"));
                return;
            }
        };
        let mut done = Vec::new();
        while let Some(m) = f.marks.front() {
            if (seqno.wrapping_sub(m.tag) as i32) < 0 {
                break;
            }
            let m = f.marks.pop_front().expect("front exists");
            if m.closes_chunk {
                f.chunks -= 1;
            }
            done.push(m.progress);
        }
        let mut st = self.state.lock();
        let Some((id, _)) = st.owner else { return };
        let mut fault = None;
        if err != error::NONE {
            let position = self.position_of(f, head);
            let guest_head = f
                .origins
                .iter()
                .take_while(|&&(p, _)| p <= position)
                .last()
                .map_or(0, |&(_, h)| h);
            if let Some(ctx) = st.ctx(id) {
                let addr = err_addr
                    .checked_sub(ctx.reloc)
                    .filter(|&a| a < ctx.space)
                    .unwrap_or(err_addr);
                let mut raise = IntSource::ENGINE_ERROR;
                if err == error::BAD_ADDRESS {
                    raise |= IntSource::GTT_FAULT;
                }
                ctx.queue.clear();
                ctx.offset = 0;
                ctx.stats.faults += 1;
                fault = Some(Progress {
                    generation: ctx.generation,
                    head: Some(guest_head),
                    raise,
                    error: Some(EngineError::at(err, addr)),
                    ..Progress::default()
                });
            }
            if let Err(e) = self.reset_engine(f) {
                (self.log)(&format!("resetting the GPU's engine: {e}"));
            }
        } else if f.idle() {
            f.origins.clear();
        } else {
            // Forget the positions of commands that completed.
            let completed = self.position_of(f, head);
            while f.origins.len() > 1 && f.origins[1].0 <= completed {
                f.origins.pop_front();
            }
        }
        let Some(sink) = st.ctx(id).map(|c| c.sink.clone()) else {
            return;
        };
        if done.is_empty() && fault.is_none() {
            return;
        }
        st.delivering = Some(id);
        drop(st);
        for p in done.into_iter().chain(fault) {
            sink(p);
        }
        self.state.lock().delivering = None;
        self.idle.notify_all();
    }

    /// The write position (dwords since the ring was reset) of ring offset
    /// `head`, among what is in the ring.
    fn position_of(&self, f: &Flight, head: u32) -> u64 {
        let size = u64::from(self.ring.size);
        let oldest = f.origins.front().map_or(f.written, |&(p, _)| p);
        let delta = (u64::from(head) + size - (oldest * 4) % size) % size;
        (oldest + delta / 4).min(f.written)
    }

    /// Engine stopped and back at the start of an empty ring, enabled.
    fn reset_engine(&self, f: &mut Flight) -> std::io::Result<()> {
        let ctl = engine_reg(EngineReg::RingCtl);
        self.bar2.write_u32(ctl, ring_ctl::RESET)?;
        self.bar2
            .write_u64(engine_reg(EngineReg::RingBase), self.ring.gfx_base)?;
        self.bar2
            .write_u32(engine_reg(EngineReg::RingSize), self.ring.size)?;
        self.bar2.write_u32(engine_reg(EngineReg::RingTail), 0)?;
        self.bar2.write_u32(ctl, ring_ctl::ENABLE)?;
        f.written = 0;
        f.chunks = 0;
        f.marks.clear();
        f.origins.clear();
        Ok(())
    }
}

/// Take up to a chunk of the context's front work; stamp its fences with
/// tags and close it with a fence of its own.
fn take_chunk(ctx: &mut Ctx, f: &mut Flight) -> Chunk {
    let work = ctx.queue.front().expect("runnable context has work");
    let start = ctx.offset;
    let mut end = start;
    for _ in 0..CHUNK_COMMANDS {
        if end >= work.dwords.len() {
            break;
        }
        let op = (work.dwords[end] >> 24) as u8;
        end += cmd::length(op).expect("the scanner emits known commands");
    }
    let mut dwords = work.dwords[start..end].to_vec();
    f.origins.push_back((f.written, work.head_at(start)));
    for c in work
        .cmds
        .iter()
        .filter(|c| (start + 1..end).contains(&c.at))
    {
        f.origins
            .push_back((f.written + (c.at - start) as u64, c.head));
    }
    for fence in work.fences.iter().filter(|m| (start..end).contains(&m.at)) {
        let tag = next_tag(f);
        dwords[fence.at - start + 1] = tag;
        let mut raise = IntSource::empty();
        if fence.interrupt {
            raise |= IntSource::FENCE;
        }
        f.marks.push_back(Mark {
            tag,
            progress: Progress {
                generation: ctx.generation,
                head: Some(work.head_at(fence.at + 2)),
                seqno: Some(fence.seqno),
                raise,
                error: None,
            },
            closes_chunk: false,
        });
    }
    let tag = next_tag(f);
    dwords.extend(
        Command::Fence {
            seqno: tag,
            interrupt: true,
        }
        .encode(),
    );
    f.marks.push_back(Mark {
        tag,
        progress: Progress {
            generation: ctx.generation,
            head: Some(work.head_at(end)),
            ..Progress::default()
        },
        closes_chunk: true,
    });
    ctx.stats.submitted += (end - start) as u64;
    if end >= work.dwords.len() {
        ctx.queue.pop_front();
        ctx.offset = 0;
    } else {
        ctx.offset = end;
    }
    Chunk { dwords }
}

fn next_tag(f: &mut Flight) -> u32 {
    let t = f.next_tag;
    f.next_tag = f.next_tag.wrapping_add(1).max(1);
    t
}

//! The command engine: executes the ring between `RING_HEAD` and
//! `RING_TAIL`, one level of batch buffers, and stops on the first error
//! with its code and graphics address in `ERROR` / `ERROR_ADDR`.
//!
//! This is the engine state and its execution, independent of threads and
//! registers' MMIO encoding; the GPU drives it from a worker thread.

use crate::access::Lane;
use crate::block::{decode, RegError};
use crate::cmd::{self, Command, DecodeError};
use crate::copy_rect::copy_rect;
use crate::irq::IntSource;
use crate::memory::{Fault, GfxMemory};
use crate::rect_exec::{fill_rect, Bands, RectEnd};
use crate::regs::{EngineReg, RegKind, Register};

/// `RING_CTL` bits.
pub mod ring_ctl {
    /// The engine runs commands while set.
    pub const ENABLE: u32 = 1 << 0;
    /// Writing 1 resets the engine: head to 0, error cleared, halt lifted.
    pub const RESET: u32 = 1 << 1;
    /// Writing 1 asks the engine to stop at its next preemption point;
    /// reads 1 until it has. Physical GPU only: the engine arbiter's.
    pub const PREEMPT: u32 = 1 << 2;
}

/// `ERROR` codes.
pub mod error {
    pub const NONE: u32 = 0;
    pub const UNKNOWN_OPCODE: u32 = 1;
    pub const RESERVED_BITS: u32 = 2;
    pub const TRUNCATED: u32 = 3;
    pub const BAD_ADDRESS: u32 = 4;
    pub const BATCH_NESTING: u32 = 5;
    pub const BAD_RECT: u32 = 6;
    pub const MISALIGNED: u32 = 7;
    pub const BAD_RING: u32 = 8;
    pub const BAD_REGISTER: u32 = 9;
    /// A guest stream held a privileged command (raised by the mediator's
    /// scanner; the physical engine executes what it is given).
    pub const PRIVILEGED: u32 = 10;
    /// The engine made no progress on the context's work for the
    /// scheduler's watchdog time: the context was halted and the engine
    /// reset (raised by the mediator's scheduler).
    pub const HANG: u32 = 11;
    /// The context's time was up and the engine did not stop for the
    /// preemption request within the GPU's preemption timeout: the context
    /// was halted and the engine reset (raised by the mediator's scheduler,
    /// and by an SR-IOV GPU's arbiter for a function that did not yield
    /// within the PF's `PREEMPT_TIMEOUT_US` of its quantum's end).
    pub const PREEMPT_TIMEOUT: u32 = 12;
    /// The highest code there is.
    pub const MAX: u32 = PREEMPT_TIMEOUT;
}

/// Smallest and largest ring, bytes; the size must be a power of two.
pub const RING_SIZE_MIN: u32 = 4096;
pub const RING_SIZE_MAX: u32 = 1 << 20;
/// Largest batch, bytes.
pub const BATCH_LEN_MAX: u32 = 1 << 20;

/// An execution error: code and graphics address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineError {
    pub code: u32,
    pub addr: u64,
}

impl EngineError {
    pub fn at(code: u32, addr: u64) -> EngineError {
        EngineError { code, addr }
    }

    /// The interrupt sources an engine stopping with this error raises:
    /// `ENGINE_ERROR`, and `GTT_FAULT` for a bad address.
    pub fn interrupts(&self) -> IntSource {
        if self.code == error::BAD_ADDRESS {
            IntSource::ENGINE_ERROR | IntSource::GTT_FAULT
        } else {
            IntSource::ENGINE_ERROR
        }
    }

    pub fn from_decode(e: DecodeError, addr: u64) -> EngineError {
        let code = match e {
            DecodeError::UnknownOpcode(_) => error::UNKNOWN_OPCODE,
            DecodeError::ReservedBits(_) => error::RESERVED_BITS,
            DecodeError::Truncated { .. } => error::TRUNCATED,
        };
        EngineError::at(code, addr)
    }
}

impl From<Fault> for EngineError {
    fn from(f: Fault) -> EngineError {
        EngineError::at(error::BAD_ADDRESS, f.addr)
    }
}

/// The engine's registers (the engine block of BAR2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineState {
    pub ring_base: u64,
    pub ring_size: u32,
    pub head: u32,
    pub tail: u32,
    pub ctl: u32,
    pub seqno: u32,
    pub error: u32,
    pub error_addr: u64,
    /// Rows of the command at head already done: set when a preemption
    /// stops the engine inside a rectangle, honoured when it starts that
    /// command again, cleared when a command completes.
    pub resume: u32,
}

/// What a run is told at each preemption point (between commands, and
/// between bands of rows inside a rectangle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Go on.
    Run,
    /// Stop here and save where: a preemption request.
    Preempt,
    /// Stop here, the results will be dropped: the engine is being reset.
    Cancel,
    /// Stop here for now, unseen by the ring's owner: the engine passes to
    /// another function's ring (SR-IOV arbitration). Head and `resume`
    /// say where the next run goes on; `ENABLE` stays set, nothing is
    /// raised.
    Yield,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// Interrupt sources to raise.
    pub raise: IntSource,
    /// Commands executed (batch contents included).
    pub commands: u64,
    /// Work remains (the budget ran out before the tail).
    pub more: bool,
    /// The run stopped for a preemption request: `ENABLE` and `PREEMPT`
    /// are clear, `resume` says where the command at head stands.
    pub preempted: bool,
}

/// What a register write asks of whoever runs the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineWrite {
    /// There may be new work: wake the engine.
    pub kick: bool,
    /// The engine was reset: discard a run in flight.
    pub reset: bool,
    /// Preemption was asked for: stop a run in flight at its next
    /// preemption point (or now, if none is running).
    pub preempt: bool,
}

impl EngineState {
    /// The value of an engine register.
    #[inline(always)]
    pub fn reg(&self, reg: EngineReg) -> u64 {
        match reg {
            EngineReg::RingBase => self.ring_base,
            EngineReg::RingSize => u64::from(self.ring_size),
            EngineReg::RingHead => u64::from(self.head),
            EngineReg::RingTail => u64::from(self.tail),
            EngineReg::RingCtl => u64::from(self.ctl),
            EngineReg::Seqno => u64::from(self.seqno),
            EngineReg::Error => u64::from(self.error),
            EngineReg::ErrorAddr => self.error_addr,
            EngineReg::RingResume => u64::from(self.resume),
        }
    }

    #[inline]
    pub fn read(&self, rel: u64, size: u32) -> Result<u64, RegError> {
        let (reg, lane) = decode::<EngineReg>(rel, size)?;
        Ok(lane.extract(self.reg(reg)))
    }

    /// A write to the engine block.
    #[inline]
    pub fn write(&mut self, rel: u64, value: u64, size: u32) -> Result<EngineWrite, RegError> {
        let (reg, lane) = decode::<EngineReg>(rel, size)?;
        let mut w = EngineWrite::default();
        if self.store(reg, lane, value) {
            return Ok(w);
        }
        if reg.kind() == RegKind::ReadOnly {
            return Err(RegError::ReadOnly {
                reg: reg.name(),
                value,
            });
        }
        let merged = lane.merge(self.reg(reg), value);
        match reg {
            EngineReg::RingTail => {
                self.tail = merged as u32;
                w.kick = true;
            }
            EngineReg::RingCtl => {
                let ctl = merged as u32;
                if ctl & ring_ctl::RESET != 0 {
                    self.reset();
                    w.reset = true;
                }
                // RESET reads back as zero; undefined bits are not kept.
                // PREEMPT is a request: writing 0 does not withdraw one.
                let pending = self.ctl & ring_ctl::PREEMPT;
                self.ctl = ctl & (ring_ctl::ENABLE | ring_ctl::PREEMPT) | pending;
                w.preempt = ctl & ring_ctl::PREEMPT != 0;
                w.kick = true;
            }
            _ => unreachable!("read-only and storage registers were handled above"),
        }
        Ok(w)
    }

    /// A write to a register whose value is all it changes (the ring's
    /// base and size): done, and true. False, with nothing changed, for any
    /// other register.
    #[inline(always)]
    pub fn store(&mut self, reg: EngineReg, lane: Lane, value: u64) -> bool {
        match reg {
            EngineReg::RingBase => self.ring_base = lane.merge(self.ring_base, value),
            EngineReg::RingSize => {
                self.ring_size = lane.merge(u64::from(self.ring_size), value) as u32
            }
            EngineReg::RingResume => self.resume = lane.merge(u64::from(self.resume), value) as u32,
            _ => return false,
        }
        true
    }

    /// Whether there is work the engine may do now.
    pub fn runnable(&self) -> bool {
        self.ctl & ring_ctl::ENABLE != 0 && self.error == error::NONE && self.head != self.tail
    }

    /// Dwords between head and tail (0 for a ring whose size is not a
    /// power of two: it cannot run).
    pub fn pending_dwords(&self) -> u32 {
        if !self.ring_size.is_power_of_two() {
            return 0;
        }
        (self.tail.wrapping_sub(self.head) & (self.ring_size - 1)) / 4
    }

    pub fn reset(&mut self) {
        self.head = 0;
        self.error = error::NONE;
        self.error_addr = 0;
        self.resume = 0;
        self.ctl &= !ring_ctl::PREEMPT;
    }

    /// Base, size, head and tail describe a usable ring.
    pub fn ring_valid(&self) -> bool {
        let s = self.ring_size;
        s.is_power_of_two()
            && (RING_SIZE_MIN..=RING_SIZE_MAX).contains(&s)
            && self.ring_base.is_multiple_of(u64::from(RING_SIZE_MIN))
            && self.head < s
            && self.tail < s
            && self.head.is_multiple_of(4)
            && self.tail.is_multiple_of(4)
    }

    /// The memory the commands between head and tail touch, from the
    /// command table (`cmd::bytes_touched`): what a run of them costs. A
    /// stream the engine cannot read or decode counts nothing: a run stops
    /// on it at once.
    pub fn pending_bytes(&self, mem: &dyn GfxMemory) -> u64 {
        let Ok(dw) = self.ring_dwords(mem, self.pending_dwords() as usize) else {
            return 0;
        };
        let mut at = 0;
        let mut bytes = 0u64;
        while let Some(info) = dw.get(at).and_then(|&h| cmd::header_info(h)) {
            bytes = bytes.saturating_add(cmd::bytes_touched(&dw[at..]));
            at += info.len;
        }
        bytes
    }

    /// Dwords between head and tail, at most `max`, read with wrap-around.
    fn ring_dwords(&self, mem: &dyn GfxMemory, max: usize) -> Result<Vec<u32>, EngineError> {
        let avail = (self.tail.wrapping_sub(self.head) & (self.ring_size - 1)) / 4;
        let n = (avail as usize).min(max);
        let mut out = Vec::with_capacity(n);
        let mut off = self.head;
        for _ in 0..n {
            out.push(mem.read_u32(self.ring_base + u64::from(off))?);
            off = (off + 4) & (self.ring_size - 1);
        }
        Ok(out)
    }

    /// Run up to `budget` commands from head towards tail, asking `signal`
    /// at each preemption point whether to stop. On error the engine halts
    /// with `ERROR`/`ERROR_ADDR` set and head on the command.
    ///
    /// Preemption points: before each ring-level command, and between
    /// bands of rows of a ring-level `FILL_RECT` or `COPY_RECT` (none
    /// inside a batch). A request (`PREEMPT` in `ctl`, or `signal` saying
    /// `Preempt`) stops the engine at the first point: see
    /// [`EngineState::stop_preempted`]. A run that ends with a request in
    /// `ctl` (at the tail, the budget, an error) answers it there: a request
    /// never outlives a run. `Cancel` returns at once, mid-rectangle too:
    /// the caller drops the results.
    pub fn run(
        &mut self,
        mem: &dyn GfxMemory,
        budget: u64,
        signal: &dyn Fn() -> Signal,
    ) -> RunOutcome {
        let mut out = RunOutcome::default();
        if self.runnable() {
            if !self.ring_valid() {
                self.halt(EngineError::at(error::BAD_RING, self.ring_base), &mut out);
            } else if self.run_ring(mem, budget, signal, &mut out) == Signal::Cancel {
                return out;
            }
        }
        if self.ctl & ring_ctl::PREEMPT != 0 {
            self.stop_preempted(&mut out);
        }
        out
    }

    /// Stop for a preemption request: `ENABLE` and `PREEMPT` cleared,
    /// `PREEMPTED` raised. Head and `resume` stay where they are: on the
    /// command, and the rows of it done.
    pub fn stop_preempted(&mut self, out: &mut RunOutcome) {
        self.ctl &= !(ring_ctl::ENABLE | ring_ctl::PREEMPT);
        out.preempted = true;
        out.raise |= IntSource::PREEMPTED;
        out.more = false;
    }

    /// The ring's commands until the tail, the budget, an error or a stop
    /// at a preemption point (`Preempt`, handled, or `Cancel`).
    fn run_ring(
        &mut self,
        mem: &dyn GfxMemory,
        budget: u64,
        signal: &dyn Fn() -> Signal,
        out: &mut RunOutcome,
    ) -> Signal {
        // The request bit cannot change during a run: the caller runs a
        // copy of the registers and says what came later through `signal`.
        let ctl = self.ctl;
        let point = || poll(ctl, signal);
        loop {
            let here = point();
            match here {
                Signal::Run | Signal::Yield => {}
                Signal::Preempt => {
                    self.stop_preempted(out);
                    return Signal::Preempt;
                }
                Signal::Cancel => return Signal::Cancel,
            }
            if self.head == self.tail {
                return Signal::Run;
            }
            if here == Signal::Yield || out.commands >= budget {
                out.more = true;
                return Signal::Run;
            }
            let at = self.ring_base + u64::from(self.head);
            let dw = match self.ring_dwords(mem, 9) {
                Ok(dw) => dw,
                Err(e) => return self.halt(e, out),
            };
            let (command, len) = match cmd::decode(&dw) {
                Ok(d) => d,
                Err(e) => return self.halt(EngineError::from_decode(e, at), out),
            };
            out.commands += 1;
            let bands = Bands {
                skip: u64::from(self.resume),
                point: Some(&point),
            };
            let result = match command {
                Command::BatchStart { addr, len } => {
                    match self.batch(mem, addr, len, out, signal) {
                        Ok(Signal::Cancel) => return Signal::Cancel,
                        r => r.map(|_| RectEnd::Done),
                    }
                }
                Command::BatchEnd => Err(EngineError::at(error::BATCH_NESTING, at)),
                c => self.execute(mem, c, at, &mut out.raise, &bands),
            };
            match result {
                Err(e) => return self.halt(e, out),
                Ok(RectEnd::Done) => {}
                Ok(RectEnd::Stopped { rows, signal }) => {
                    // Head stays on the command; it resumes after `rows`
                    // rows of its execution order.
                    match signal {
                        Signal::Preempt => {
                            self.resume = rows as u32;
                            self.stop_preempted(out);
                        }
                        Signal::Yield => {
                            self.resume = rows as u32;
                            out.more = true;
                            return Signal::Run;
                        }
                        Signal::Run | Signal::Cancel => {}
                    }
                    return signal;
                }
            }
            self.resume = 0;
            self.head = (self.head + 4 * len as u32) & (self.ring_size - 1);
        }
    }

    /// Stop on an error; `Run`, as a run that did not stop for a point.
    fn halt(&mut self, e: EngineError, out: &mut RunOutcome) -> Signal {
        self.error = e.code;
        self.error_addr = e.addr;
        out.raise |= e.interrupts();
        out.more = false;
        Signal::Run
    }

    /// Run a batch buffer: commands in `[addr, addr + len)` until BATCH_END
    /// or its end. `Cancel` if `signal` said so at a point inside.
    ///
    /// No preemption inside a batch (where it stands could not be saved):
    /// it runs to its end. But it stops for `Cancel` between its commands
    /// and between bands of its rectangles, its results dropped: a reset,
    /// or an arbiter's preemption timeout, never waits for a whole batch.
    fn batch(
        &mut self,
        mem: &dyn GfxMemory,
        addr: u64,
        len: u32,
        out: &mut RunOutcome,
        signal: &dyn Fn() -> Signal,
    ) -> Result<Signal, EngineError> {
        check_batch(addr, len)?;
        let mut bytes = vec![0u8; len as usize];
        mem.read(addr, &mut bytes)?;
        let RunOutcome {
            raise, commands, ..
        } = out;
        let cancel_only = || match signal() {
            Signal::Cancel => Signal::Cancel,
            _ => Signal::Run,
        };
        let inside = Bands {
            skip: 0,
            point: Some(&cancel_only),
        };
        let mut cancelled = false;
        let walked = walk_batch(addr, &cmd::dwords(&bytes), commands, |c, _, at| {
            let end = match cancel_only() {
                Signal::Cancel => RectEnd::Stopped {
                    rows: 0,
                    signal: Signal::Cancel,
                },
                _ => self.execute(mem, c, at, raise, &inside)?,
            };
            match end {
                RectEnd::Stopped { .. } => {
                    cancelled = true;
                    // Stops the walk; what it carries is dropped.
                    Err(EngineError::at(error::NONE, at))
                }
                RectEnd::Done => Ok(()),
            }
        });
        match walked {
            _ if cancelled => Ok(Signal::Cancel),
            Ok(()) => Ok(Signal::Run),
            Err(e) => Err(e),
        }
    }

    /// One non-control command; rectangles start and may stop as `bands`
    /// says, other commands ignore it.
    fn execute(
        &mut self,
        mem: &dyn GfxMemory,
        c: Command,
        at: u64,
        raise: &mut IntSource,
        bands: &Bands,
    ) -> Result<RectEnd, EngineError> {
        match c {
            Command::Noop => {}
            Command::StoreDw { addr, value } => {
                if addr % 4 != 0 {
                    return Err(EngineError::at(error::MISALIGNED, addr));
                }
                mem.write(addr, &value.to_le_bytes())?;
            }
            Command::Fence { seqno, interrupt } => {
                self.seqno = seqno;
                if interrupt {
                    *raise |= IntSource::FENCE;
                }
            }
            Command::FillRect {
                dst,
                pitch,
                width,
                height,
                color,
            } => return fill_rect(mem, dst, pitch, width, height, color, bands),
            Command::CopyRect {
                src,
                src_pitch,
                dst,
                dst_pitch,
                width,
                height,
            } => return copy_rect(mem, src, src_pitch, dst, dst_pitch, width, height, bands),
            Command::LoadReg { reg, value } => {
                // Only SEQNO may be loaded (the mediator resynchronising a
                // context); anything else is a bad register.
                if u64::from(reg) != EngineReg::Seqno.offset() {
                    return Err(EngineError::at(error::BAD_REGISTER, at));
                }
                self.seqno = value;
            }
            Command::BatchStart { .. } | Command::BatchEnd => unreachable!("handled by the caller"),
        }
        Ok(RectEnd::Done)
    }
}

/// What a preemption point does: `Cancel` first, then a request in `ctl`
/// or from `signal`, then a yield.
fn poll(ctl: u32, signal: &dyn Fn() -> Signal) -> Signal {
    match signal() {
        Signal::Cancel => Signal::Cancel,
        Signal::Preempt => Signal::Preempt,
        Signal::Run | Signal::Yield if ctl & ring_ctl::PREEMPT != 0 => Signal::Preempt,
        signal => signal,
    }
}

/// A batch's address and length: 4-byte aligned, at most `BATCH_LEN_MAX`.
pub fn check_batch(addr: u64, len: u32) -> Result<(), EngineError> {
    if !len.is_multiple_of(4) || !addr.is_multiple_of(4) {
        return Err(EngineError::at(error::MISALIGNED, addr));
    }
    if len > BATCH_LEN_MAX {
        return Err(EngineError::at(error::TRUNCATED, addr));
    }
    Ok(())
}

/// The commands of a batch whose dwords `dw` were read from `addr`, up to
/// BATCH_END or its end: `each` gets every command that is not a batch
/// command, with its dwords and address; a BATCH_START is a nesting error.
/// `count` goes up by one for every command decoded, BATCH_END included.
pub fn walk_batch(
    addr: u64,
    dw: &[u32],
    count: &mut u64,
    mut each: impl FnMut(Command, &[u32], u64) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let mut i = 0;
    while i < dw.len() {
        let at = addr + 4 * i as u64;
        let (command, n) = cmd::decode(&dw[i..]).map_err(|e| EngineError::from_decode(e, at))?;
        *count += 1;
        match command {
            Command::BatchEnd => return Ok(()),
            Command::BatchStart { .. } => return Err(EngineError::at(error::BATCH_NESTING, at)),
            c => each(c, &dw[i..i + n], at)?,
        }
        i += n;
    }
    Ok(())
}

/// Check a rectangle's numbers; returns its row length in bytes.
pub fn check_rect(base: u64, pitch: u32, width: u32, height: u32) -> Result<u64, EngineError> {
    if !base.is_multiple_of(4) || !pitch.is_multiple_of(4) {
        return Err(EngineError::at(error::MISALIGNED, base));
    }
    cmd::rect_span(base, pitch, width, height).ok_or(EngineError::at(error::BAD_RECT, base))?;
    Ok(u64::from(width) * cmd::PIXEL_BYTES)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
pub(crate) mod tests;

//! The command engine: executes the ring between `RING_HEAD` and
//! `RING_TAIL`, one level of batch buffers, and stops on the first error
//! with its code and graphics address in `ERROR` / `ERROR_ADDR`.
//!
//! This is the engine state and its execution, independent of threads and
//! registers' MMIO encoding; the GPU drives it from a worker thread.

use crate::block::{decode, RegError};
use crate::cmd::{self, Command, DecodeError};
use crate::copy_rect::copy_rect;
use crate::gfx_mem::{Fault, GfxMem};
use crate::irq::IntSource;
use crate::regs::{EngineReg, RegKind, Register};

/// `RING_CTL` bits.
pub mod ring_ctl {
    /// The engine runs commands while set.
    pub const ENABLE: u32 = 1 << 0;
    /// Writing 1 resets the engine: head to 0, error cleared, halt lifted.
    pub const RESET: u32 = 1 << 1;
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
}

/// What a register write asks of whoever runs the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineWrite {
    /// There may be new work: wake the engine.
    pub kick: bool,
    /// The engine was reset: discard a run in flight.
    pub reset: bool,
}

impl EngineState {
    /// The value of an engine register.
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
        }
    }

    pub fn read(&self, rel: u64, size: u32) -> Result<u64, RegError> {
        let (reg, lane) = decode::<EngineReg>(rel, size)?;
        Ok(lane.extract(self.reg(reg)))
    }

    /// A write to the engine block.
    pub fn write(&mut self, rel: u64, value: u64, size: u32) -> Result<EngineWrite, RegError> {
        let (reg, lane) = decode::<EngineReg>(rel, size)?;
        if reg.kind() == RegKind::ReadOnly {
            return Err(RegError::ReadOnly {
                reg: reg.name(),
                value,
            });
        }
        let merged = lane.merge(self.reg(reg), value);
        let mut w = EngineWrite::default();
        match reg {
            EngineReg::RingBase => self.ring_base = merged,
            EngineReg::RingSize => self.ring_size = merged as u32,
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
                self.ctl = ctl & ring_ctl::ENABLE;
                w.kick = true;
            }
            _ => unreachable!("read-only registers were refused above"),
        }
        Ok(w)
    }

    /// Whether there is work the engine may do now.
    pub fn runnable(&self) -> bool {
        self.ctl & ring_ctl::ENABLE != 0 && self.error == error::NONE && self.head != self.tail
    }

    pub fn reset(&mut self) {
        self.head = 0;
        self.error = error::NONE;
        self.error_addr = 0;
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

    /// Dwords between head and tail, at most `max`, read with wrap-around.
    fn ring_dwords(&self, mem: &GfxMem, max: usize) -> Result<Vec<u32>, EngineError> {
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

    /// Run up to `budget` commands from head towards tail, stopping early
    /// between commands once `cancelled` says so. On error the engine halts
    /// with `ERROR`/`ERROR_ADDR` set and head on the command.
    pub fn run(&mut self, mem: &GfxMem, budget: u64, cancelled: &dyn Fn() -> bool) -> RunOutcome {
        let mut out = RunOutcome::default();
        if !self.runnable() {
            return out;
        }
        if !self.ring_valid() {
            return self.halt(EngineError::at(error::BAD_RING, self.ring_base), out);
        }
        while self.head != self.tail {
            if out.commands >= budget {
                out.more = true;
                return out;
            }
            if cancelled() {
                return out;
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
            let result = match command {
                Command::BatchStart { addr, len } => self.batch(mem, addr, len, &mut out),
                Command::BatchEnd => Err(EngineError::at(error::BATCH_NESTING, at)),
                c => self.execute(mem, c, at, &mut out.raise),
            };
            if let Err(e) = result {
                return self.halt(e, out);
            }
            self.head = (self.head + 4 * len as u32) & (self.ring_size - 1);
        }
        out
    }

    fn halt(&mut self, e: EngineError, mut out: RunOutcome) -> RunOutcome {
        self.error = e.code;
        self.error_addr = e.addr;
        out.raise |= e.interrupts();
        out.more = false;
        out
    }

    /// Run a batch buffer: commands in `[addr, addr + len)` until BATCH_END
    /// or its end.
    fn batch(
        &mut self,
        mem: &GfxMem,
        addr: u64,
        len: u32,
        out: &mut RunOutcome,
    ) -> Result<(), EngineError> {
        check_batch(addr, len)?;
        let mut bytes = vec![0u8; len as usize];
        mem.read(addr, &mut bytes)?;
        let RunOutcome {
            raise, commands, ..
        } = out;
        walk_batch(addr, &cmd::dwords(&bytes), commands, |c, at| {
            self.execute(mem, c, at, raise)
        })
    }

    /// One non-control command.
    fn execute(
        &mut self,
        mem: &GfxMem,
        c: Command,
        at: u64,
        raise: &mut IntSource,
    ) -> Result<(), EngineError> {
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
            } => {
                let row = check_rect(dst, pitch, width, height)?;
                for y in 0..u64::from(height) {
                    mem.check(dst + y * u64::from(pitch), row)?;
                }
                if u64::from(pitch) == row {
                    // Rows back to back: one fill.
                    mem.fill32(dst, row * u64::from(height), color)?;
                } else {
                    for y in 0..u64::from(height) {
                        mem.fill32(dst + y * u64::from(pitch), row, color)?;
                    }
                }
            }
            Command::CopyRect {
                src,
                src_pitch,
                dst,
                dst_pitch,
                width,
                height,
            } => copy_rect(mem, src, src_pitch, dst, dst_pitch, width, height)?,
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
        Ok(())
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
/// command, with its address; a BATCH_START is a nesting error. `count` goes
/// up by one for every command decoded, BATCH_END included.
pub fn walk_batch(
    addr: u64,
    dw: &[u32],
    count: &mut u64,
    mut each: impl FnMut(Command, u64) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let mut i = 0;
    while i < dw.len() {
        let at = addr + 4 * i as u64;
        let (command, n) = cmd::decode(&dw[i..]).map_err(|e| EngineError::from_decode(e, at))?;
        *count += 1;
        match command {
            Command::BatchEnd => return Ok(()),
            Command::BatchStart { .. } => return Err(EngineError::at(error::BATCH_NESTING, at)),
            c => each(c, at)?,
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
pub(crate) mod tests {
    use super::*;
    use crate::dma::NoDma;
    use crate::gfx_mem::tests::gtt_with;
    use crate::gtt::GttEntry;
    use crate::vram::Vram;

    /// 64 graphics pages mapped 1:1 onto the first 256 KiB of VRAM; the
    /// ring at graphics 0, 4 KiB.
    pub(crate) fn setup() -> (Vram, Vec<std::sync::atomic::AtomicU64>) {
        let vram = Vram::new(1 << 20).unwrap();
        let entries: Vec<(usize, GttEntry)> = (0..64)
            .map(|i| (i, GttEntry::new(i as u64 * 4096, true)))
            .collect();
        (vram, gtt_with(&entries, 128))
    }

    pub(crate) fn mem<'a>(vram: &'a Vram, gtt: &'a [std::sync::atomic::AtomicU64]) -> GfxMem<'a> {
        GfxMem {
            gtt,
            vram,
            dma: &NoDma,
        }
    }

    pub(crate) fn engine() -> EngineState {
        EngineState {
            ring_base: 0,
            ring_size: 4096,
            ctl: ring_ctl::ENABLE,
            ..Default::default()
        }
    }

    /// Write `cmds` into the ring at head and move the tail past them.
    pub(crate) fn submit(e: &mut EngineState, m: &GfxMem, cmds: &[Command]) {
        for c in cmds {
            for dw in c.encode() {
                m.write(e.ring_base + u64::from(e.tail), &dw.to_le_bytes())
                    .unwrap();
                e.tail = (e.tail + 4) % e.ring_size;
            }
        }
    }

    #[test]
    fn store_fence_and_fill() {
        let (vram, gtt) = setup();
        let m = mem(&vram, &gtt);
        let mut e = engine();
        submit(
            &mut e,
            &m,
            &[
                Command::StoreDw {
                    addr: 0x8000,
                    value: 0xcafe,
                },
                Command::FillRect {
                    dst: 0x10000,
                    pitch: 256,
                    width: 16,
                    height: 4,
                    color: 0x00ff00,
                },
                Command::Fence {
                    seqno: 5,
                    interrupt: true,
                },
            ],
        );
        let out = e.run(&m, 100, &|| false);
        assert_eq!(
            (out.commands, out.raise, e.head, e.seqno),
            (3, IntSource::FENCE, e.tail, 5)
        );
        assert_eq!(m.read_u32(0x8000), Ok(0xcafe));
        assert_eq!(m.read_u32(0x10000 + 3 * 256 + 60), Ok(0x00ff00));
        assert_eq!(
            m.read_u32(0x10000 + 3 * 256 + 64),
            Ok(0),
            "clipped to the width"
        );
    }

    #[test]
    fn overlapping_copies_in_both_directions() {
        let (vram, gtt) = setup();
        let m = mem(&vram, &gtt);
        // A 4x4 rectangle of distinct pixels at (0,0), pitch 64.
        for i in 0..16u32 {
            m.write(
                0x20000 + u64::from(i / 4) * 64 + u64::from(i % 4) * 4,
                &i.to_le_bytes(),
            )
            .unwrap();
        }
        let mut e = engine();
        // Down and right by one pixel and one row, then back: each copy
        // must move the 4x4 block intact.
        for (src, dst) in [(0x20000, 0x20044), (0x20044, 0x20000)] {
            let copy = Command::CopyRect {
                src,
                src_pitch: 64,
                dst,
                dst_pitch: 64,
                width: 4,
                height: 4,
            };
            submit(&mut e, &m, &[copy]);
            e.run(&m, 10, &|| false);
            for i in 0..16u32 {
                let at = dst + u64::from(i / 4) * 64 + u64::from(i % 4) * 4;
                assert_eq!(m.read_u32(at), Ok(i), "copy to {dst:#x}");
            }
        }
        assert_eq!(e.error, error::NONE);
    }

    #[test]
    fn fences_complete_in_order_after_the_work_before_them() {
        let (vram, gtt) = setup();
        let m = mem(&vram, &gtt);
        let mut e = engine();
        let cmds = [
            Command::StoreDw {
                addr: 0x8000,
                value: 1,
            },
            Command::Fence {
                seqno: 1,
                interrupt: false,
            },
            Command::FillRect {
                dst: 0x9000,
                pitch: 64,
                width: 16,
                height: 8,
                color: 2,
            },
            Command::Fence {
                seqno: 2,
                interrupt: true,
            },
            Command::StoreDw {
                addr: 0x8004,
                value: 3,
            },
            Command::Fence {
                seqno: 3,
                interrupt: false,
            },
        ];
        submit(&mut e, &m, &cmds);
        // One command at a time: each fence is seen only once everything
        // before it is in memory, and SEQNO never goes back.
        let mut seen = vec![];
        while e.head != e.tail {
            let out = e.run(&m, 1, &|| false);
            assert_eq!(out.commands, 1);
            seen.push(e.seqno);
            if e.seqno >= 1 {
                assert_eq!(m.read_u32(0x8000), Ok(1));
            }
            if e.seqno >= 2 {
                assert_eq!(m.read_u32(0x9000 + 7 * 64 + 60), Ok(2));
                assert_eq!(out.raise.contains(IntSource::FENCE), seen.len() == 4);
            }
            if e.seqno >= 3 {
                assert_eq!(m.read_u32(0x8004), Ok(3));
            }
        }
        assert_eq!(seen, [0, 1, 1, 2, 2, 3]);
    }

    #[test]
    fn batches_run_and_return() {
        let (vram, gtt) = setup();
        let m = mem(&vram, &gtt);
        let batch: Vec<u8> = [
            Command::StoreDw {
                addr: 0x9000,
                value: 7,
            },
            Command::BatchEnd,
            Command::StoreDw {
                addr: 0x9004,
                value: 8,
            },
        ]
        .iter()
        .flat_map(|c| c.encode())
        .flat_map(|d| d.to_le_bytes())
        .collect();
        m.write(0x30000, &batch).unwrap();
        let mut e = engine();
        submit(
            &mut e,
            &m,
            &[
                Command::BatchStart {
                    addr: 0x30000,
                    len: batch.len() as u32,
                },
                Command::Fence {
                    seqno: 1,
                    interrupt: false,
                },
            ],
        );
        let out = e.run(&m, 100, &|| false);
        assert_eq!(
            (m.read_u32(0x9000), m.read_u32(0x9004)),
            (Ok(7), Ok(0)),
            "stops at BATCH_END"
        );
        assert_eq!((e.seqno, e.error, out.commands), (1, error::NONE, 4));
    }

    fn error_of(cmds: &[Command], raw: &[u32]) -> (EngineState, RunOutcome) {
        let (vram, gtt) = setup();
        let m = mem(&vram, &gtt);
        let mut e = engine();
        submit(&mut e, &m, cmds);
        for &dw in raw {
            m.write(u64::from(e.tail), &dw.to_le_bytes()).unwrap();
            e.tail += 4;
        }
        let out = e.run(&m, 100, &|| false);
        (e, out)
    }

    #[test]
    fn every_error_stops_the_engine_with_code_and_address() {
        let fill = |dst, pitch, width, height| Command::FillRect {
            dst,
            pitch,
            width,
            height,
            color: 0,
        };
        let cases: Vec<(Vec<Command>, Vec<u32>, u32, u64)> = vec![
            (vec![], vec![0x7f00_0000], error::UNKNOWN_OPCODE, 0),
            (vec![], vec![0x0000_0001], error::RESERVED_BITS, 0),
            (
                vec![Command::Noop],
                vec![0x0500_0000, 0],
                error::TRUNCATED,
                4,
            ),
            (
                vec![Command::StoreDw {
                    addr: 64 * 4096,
                    value: 1,
                }],
                vec![],
                error::BAD_ADDRESS,
                64 * 4096,
            ),
            (
                vec![Command::StoreDw { addr: 2, value: 1 }],
                vec![],
                error::MISALIGNED,
                2,
            ),
            (
                vec![fill(0x10000, 8, 4, 2)],
                vec![],
                error::BAD_RECT,
                0x10000,
            ),
            (
                vec![fill(0x3f000, 4096, 1024, 2)],
                vec![],
                error::BAD_ADDRESS,
                0x40000,
            ),
            (vec![Command::BatchEnd], vec![], error::BATCH_NESTING, 0),
            (
                vec![Command::LoadReg { reg: 0, value: 1 }],
                vec![],
                error::BAD_REGISTER,
                0,
            ),
        ];
        for (cmds, raw, code, addr) in cases {
            let (e, out) = error_of(&cmds, &raw);
            assert_eq!((e.error, e.error_addr), (code, addr), "{cmds:?} {raw:x?}");
            assert!(out.raise.contains(IntSource::ENGINE_ERROR));
            assert_eq!(
                out.raise.contains(IntSource::GTT_FAULT),
                code == error::BAD_ADDRESS
            );
            assert!(!e.runnable(), "halted");
        }
    }

    #[test]
    fn nested_batches_are_refused_and_reset_recovers() {
        let (vram, gtt) = setup();
        let m = mem(&vram, &gtt);
        let inner: Vec<u8> = Command::BatchStart {
            addr: 0x30000,
            len: 16,
        }
        .encode()
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect();
        m.write(0x30000, &inner).unwrap();
        let mut e = engine();
        submit(
            &mut e,
            &m,
            &[Command::BatchStart {
                addr: 0x30000,
                len: 16,
            }],
        );
        e.run(&m, 10, &|| false);
        assert_eq!((e.error, e.error_addr), (error::BATCH_NESTING, 0x30000));
        e.reset();
        e.tail = 0;
        submit(
            &mut e,
            &m,
            &[Command::Fence {
                seqno: 9,
                interrupt: false,
            }],
        );
        e.run(&m, 10, &|| false);
        assert_eq!((e.error, e.seqno), (error::NONE, 9));
    }

    #[test]
    fn registers_store_and_act() {
        let mut e = EngineState::default();
        let off = |r: EngineReg| r.offset();
        e.write(off(EngineReg::RingBase), 0x40_0000, 8).unwrap();
        e.write(off(EngineReg::RingSize), 4096, 4).unwrap();
        assert!(e.write(off(EngineReg::RingTail), 16, 4).unwrap().kick);
        assert_eq!(e.read(off(EngineReg::RingBase), 8), Ok(0x40_0000));
        assert!(matches!(
            e.write(off(EngineReg::RingHead), 4, 4),
            Err(RegError::ReadOnly { .. })
        ));
        e.head = 8;
        e.error = error::BAD_RING;
        let w = e
            .write(
                off(EngineReg::RingCtl),
                u64::from(ring_ctl::RESET | ring_ctl::ENABLE | 0x80),
                4,
            )
            .unwrap();
        assert!(w.reset && w.kick);
        assert_eq!((e.head, e.error, e.ctl), (0, error::NONE, ring_ctl::ENABLE));
    }

    #[test]
    fn budget_and_bad_rings() {
        let (vram, gtt) = setup();
        let m = mem(&vram, &gtt);
        let mut e = engine();
        submit(&mut e, &m, &[Command::Noop, Command::Noop, Command::Noop]);
        let out = e.run(&m, 2, &|| false);
        assert!(out.more && e.head == 8);
        let mut bad = engine();
        bad.ring_size = 3000;
        bad.tail = 4;
        assert_eq!(bad.run(&m, 10, &|| false).raise, IntSource::ENGINE_ERROR);
        assert_eq!(bad.error, error::BAD_RING);
    }
}

//! The command scanner: turns what a guest put in its ring into a shadow
//! stream the physical engine may run.
//!
//! The guest's ring and batches are read once, through the guest's GTT, into
//! mediator memory; every command is checked there and copied, relocated,
//! into the shadow stream. What executes is that copy: a guest rewriting its
//! ring or batch after the tail write changes nothing. Batches are flattened
//! into the stream (one level, so their contents are plain commands), and a
//! guest FENCE becomes a placeholder the scheduler stamps with a physical
//! tag, so completion can be traced back to the guest's seqno and head.
//!
//! What a command may do comes from its row of the command table
//! (`rvg_model::cmd::COMMANDS`): privileged rows are refused, every
//! graphics address it holds is checked for what it covers and relocated.

use rvg_model::cmd::{self, Command, GfxRef};
use rvg_model::engine::{check_batch, check_rect, error, walk_batch, EngineError, EngineState};

/// The guest's graphics memory as the guest's own GTT maps it.
pub trait GuestGfx {
    /// Fill `buf` from guest graphics address `addr`; on a page the GTT does
    /// not map, the address of its first byte.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), u64>;
}

/// Where a ring-level guest command landed in the shadow stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdOrigin {
    /// Index of its first shadow dword.
    pub at: usize,
    /// Its offset in the guest ring: the virtual head while it runs.
    pub head: u32,
}

/// A guest FENCE, turned into a shadow FENCE whose seqno dword the
/// scheduler overwrites with a physical tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FenceMark {
    /// Index of the shadow FENCE's header dword.
    pub at: usize,
    pub seqno: u32,
    pub interrupt: bool,
}

/// One scanned submission: everything between the guest's previous tail
/// and the new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub dwords: Vec<u32>,
    pub cmds: Vec<CmdOrigin>,
    pub fences: Vec<FenceMark>,
    /// The guest ring offset after the last command: the virtual head once
    /// everything ran.
    pub tail: u32,
    /// Guest commands scanned, batch contents included.
    pub guest_commands: u64,
}

impl Work {
    /// The guest head while shadow dword `at` is the next to run: the
    /// ring-level command containing it (a batch's contents run while the
    /// head is still on its BATCH_START).
    pub fn head_at(&self, at: usize) -> u32 {
        if at >= self.dwords.len() {
            return self.tail;
        }
        match self.cmds.partition_point(|c| c.at <= at) {
            0 => self.tail,
            i => self.cmds[i - 1].head,
        }
    }
}

/// The scanning rules for one vGPU.
#[derive(Clone, Copy, Debug)]
pub struct Scanner {
    /// Bytes of guest graphics address space: `[0, space)` is the guest's.
    pub space: u64,
    /// Added to every guest graphics address: where the vGPU's GTT slice
    /// starts in the physical graphics address space.
    pub reloc: u64,
}

impl Scanner {
    /// Scan the guest ring from `ring.head` to `ring.tail`. The whole range
    /// is accepted or, on the first bad command, refused with the error the
    /// virtual engine reports.
    pub fn scan(&self, mem: &dyn GuestGfx, ring: &EngineState) -> Result<Work, EngineError> {
        if !ring.ring_valid() || ring.ring_base + u64::from(ring.ring_size) > self.space {
            return Err(EngineError::at(error::BAD_RING, ring.ring_base));
        }
        let ring_dw = read_ring(mem, ring)?;
        let mut work = Work {
            tail: ring.tail,
            ..Work::default()
        };
        let mask = ring.ring_size - 1;
        let mut i = 0;
        while i < ring_dw.len() {
            let head = (ring.head + 4 * i as u32) & mask;
            let at = ring.ring_base + u64::from(head);
            let (command, len) =
                cmd::decode(&ring_dw[i..]).map_err(|e| EngineError::from_decode(e, at))?;
            work.cmds.push(CmdOrigin {
                at: work.dwords.len(),
                head,
            });
            work.guest_commands += 1;
            match command {
                Command::BatchStart { addr, len } => self.batch(mem, addr, len, &mut work)?,
                Command::BatchEnd => return Err(EngineError::at(error::BATCH_NESTING, at)),
                c => self.emit(c, &ring_dw[i..i + len], at, &mut work)?,
            }
            i += len;
        }
        Ok(work)
    }

    /// Flatten a batch into the stream: its commands up to BATCH_END or its
    /// end, checked like ring commands, with no further BATCH_START.
    fn batch(
        &self,
        mem: &dyn GuestGfx,
        addr: u64,
        len: u32,
        work: &mut Work,
    ) -> Result<(), EngineError> {
        check_batch(addr, len)?;
        self.check_range(addr, u64::from(len))?;
        let mut bytes = vec![0u8; len as usize];
        mem.read(addr, &mut bytes)
            .map_err(|a| EngineError::at(error::BAD_ADDRESS, a))?;
        let mut decoded = 0;
        let walked = walk_batch(addr, &cmd::dwords(&bytes), &mut decoded, |c, dw, at| {
            self.emit(c, dw, at, work)
        });
        work.guest_commands += decoded;
        walked
    }

    /// Check one non-control command, `dw` its dwords, by its row of the
    /// command table, and append its relocated copy.
    fn emit(&self, c: Command, dw: &[u32], at: u64, work: &mut Work) -> Result<(), EngineError> {
        if let Command::Fence { seqno, interrupt } = c {
            work.fences.push(FenceMark {
                at: work.dwords.len(),
                seqno,
                interrupt,
            });
            // Every shadow fence interrupts: it is how the scheduler learns
            // a guest fence passed.
            let shadow = Command::Fence {
                seqno: 0,
                interrupt: true,
            };
            work.dwords.extend(shadow.encode());
            return Ok(());
        }
        let info = c.info();
        if info.privileged {
            return Err(EngineError::at(error::PRIVILEGED, at));
        }
        for r in info.addrs {
            self.check_ref(dw, *r)?;
        }
        let start = work.dwords.len();
        work.dwords.extend_from_slice(dw);
        cmd::relocate(&mut work.dwords[start..], self.reloc);
        Ok(())
    }

    /// A graphics address of the command `dw` by the engine's rules for
    /// what it covers, then inside the guest's graphics space.
    fn check_ref(&self, dw: &[u32], r: GfxRef) -> Result<(), EngineError> {
        let addr = r.addr(dw);
        match r {
            GfxRef::Dword { .. } => {
                if !addr.is_multiple_of(4) {
                    return Err(EngineError::at(error::MISALIGNED, addr));
                }
                self.check_range(addr, 4)
            }
            GfxRef::Batch { len, .. } => {
                check_batch(addr, dw[len])?;
                self.check_range(addr, u64::from(dw[len]))
            }
            GfxRef::Rect {
                pitch,
                width,
                height,
                ..
            } => self.check_rect(addr, dw[pitch], dw[width], dw[height]),
        }
    }

    /// The engine's rectangle rules, then the whole span inside the guest's
    /// graphics space.
    fn check_rect(
        &self,
        base: u64,
        pitch: u32,
        width: u32,
        height: u32,
    ) -> Result<(), EngineError> {
        check_rect(base, pitch, width, height)?;
        let (_, len) = cmd::rect_span(base, pitch, width, height).expect("checked");
        self.check_range(base, len)
    }

    /// `[addr, addr + len)` inside the guest's graphics space; else a bad
    /// address, reported at its first byte outside.
    fn check_range(&self, addr: u64, len: u64) -> Result<(), EngineError> {
        match addr.checked_add(len) {
            Some(end) if end <= self.space => Ok(()),
            _ => Err(EngineError::at(error::BAD_ADDRESS, addr.max(self.space))),
        }
    }
}

/// The ring's dwords from head to tail, wrapping at its end.
fn read_ring(mem: &dyn GuestGfx, ring: &EngineState) -> Result<Vec<u32>, EngineError> {
    let size = ring.ring_size;
    let bytes = (ring.tail.wrapping_sub(ring.head) & (size - 1)) as usize;
    let mut buf = vec![0u8; bytes];
    let first = bytes.min((size - ring.head) as usize);
    let fault = |a| EngineError::at(error::BAD_ADDRESS, a);
    mem.read(ring.ring_base + u64::from(ring.head), &mut buf[..first])
        .map_err(fault)?;
    mem.read(ring.ring_base, &mut buf[first..]).map_err(fault)?;
    Ok(cmd::dwords(&buf))
}

#[cfg(test)]
#[path = "scan_tests.rs"]
pub(crate) mod tests;

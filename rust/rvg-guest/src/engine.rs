//! Driving the engine: ring registers, submitting commands by moving the
//! tail, waiting for fences by polling SEQNO, and reading the error state.

use std::sync::atomic::{fence, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rvg_model::cmd::Command;
use rvg_model::engine::{error, ring_ctl};
use rvg_model::regs::EngineReg;

use crate::device::Device;
use crate::dma::DmaBuffer;
use crate::error::{bail, Result};
use crate::gtt::GttRegion;
use crate::ring::{DwordSink, Ring};

/// The name `docs/hardware.md` gives an `ERROR` code.
pub fn error_name(code: u32) -> &'static str {
    match code {
        error::NONE => "NONE",
        error::UNKNOWN_OPCODE => "UNKNOWN_OPCODE",
        error::RESERVED_BITS => "RESERVED_BITS",
        error::TRUNCATED => "TRUNCATED",
        error::BAD_ADDRESS => "BAD_ADDRESS",
        error::BATCH_NESTING => "BATCH_NESTING",
        error::BAD_RECT => "BAD_RECT",
        error::MISALIGNED => "MISALIGNED",
        error::BAD_RING => "BAD_RING",
        error::BAD_REGISTER => "BAD_REGISTER",
        error::PRIVILEGED => "PRIVILEGED",
        error::HANG => "HANG",
        error::PREEMPT_TIMEOUT => "PREEMPT_TIMEOUT",
        _ => "(unknown code)",
    }
}

/// SEQNO has reached `target`, counting with wrap-around.
pub fn seqno_reached(seqno: u32, target: u32) -> bool {
    (seqno.wrapping_sub(target) as i32) >= 0
}

/// The engine's stopped state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineFault {
    pub code: u32,
    pub addr: u64,
    pub head: u32,
}

impl std::fmt::Display for EngineFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "engine error {} ({}) at graphics address {:#x}, RING_HEAD {:#x}",
            self.code,
            error_name(self.code),
            self.addr,
            self.head
        )
    }
}

/// The ring's pages inside the DMA buffer, as a place to write dwords.
struct RingMemory<'a> {
    dma: &'a mut DmaBuffer,
    base: usize,
}

impl DwordSink for RingMemory<'_> {
    fn write_dword(&mut self, offset: u32, value: u32) {
        self.dma.write_u32(self.base + offset as usize, value);
    }
}

/// Running totals for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    pub submissions: u32,
    pub ring_commands: u32,
    pub batch_commands: u32,
}

pub struct Engine<'d> {
    dev: &'d Device,
    ring: Ring,
    ring_dma: usize,
    next_seqno: u32,
    timeout: Duration,
    pub totals: Totals,
}

impl<'d> Engine<'d> {
    /// Stop whatever ran, point the engine at our ring and enable it. Order
    /// matters: with the engine disabled a tail write submits nothing, so
    /// TAIL=0 then RESET gives an empty ring at head 0.
    pub fn start(dev: &'d Device, ring: &GttRegion, timeout: Duration) -> Result<Engine<'d>> {
        dev.set_engine(EngineReg::RingCtl, 0);
        dev.set_engine(EngineReg::RingTail, 0);
        dev.set_engine(EngineReg::RingBase, ring.gfx());
        dev.set_engine(EngineReg::RingSize, ring.bytes());
        dev.set_engine(EngineReg::RingCtl, u64::from(ring_ctl::RESET));
        dev.set_engine(EngineReg::RingCtl, u64::from(ring_ctl::ENABLE));
        let readback = (
            dev.engine(EngineReg::RingBase),
            dev.engine(EngineReg::RingSize),
            dev.engine(EngineReg::RingHead),
            dev.engine(EngineReg::RingCtl),
        );
        if readback != (ring.gfx(), ring.bytes(), 0, u64::from(ring_ctl::ENABLE)) {
            bail!("engine registers read back (base, size, head, ctl) = {readback:#x?} after programming");
        }
        let engine = Engine {
            dev,
            ring: Ring::new(ring.bytes() as u32),
            ring_dma: ring.dma_offset(),
            // Fences count on from what the engine last completed: SEQNO
            // survives a ring reset and earlier runs.
            next_seqno: (dev.engine(EngineReg::Seqno) as u32).wrapping_add(1),
            timeout,
            totals: Totals::default(),
        };
        engine.check_error()?;
        Ok(engine)
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn seqno(&self) -> u32 {
        self.dev.engine(EngineReg::Seqno) as u32
    }

    /// The error the engine stopped with, if any.
    pub fn fault(&self) -> Option<EngineFault> {
        let code = self.dev.engine(EngineReg::Error) as u32;
        (code != error::NONE).then(|| EngineFault {
            code,
            addr: self.dev.engine(EngineReg::ErrorAddr),
            head: self.dev.engine(EngineReg::RingHead) as u32,
        })
    }

    fn check_error(&self) -> Result<()> {
        match self.fault() {
            Some(f) => bail!("{f}"),
            None => Ok(()),
        }
    }

    /// The next fence command and the seqno it will set.
    pub fn next_fence(&mut self) -> (Command, u32) {
        let seqno = self.next_seqno;
        self.next_seqno = seqno.wrapping_add(1);
        (
            Command::Fence {
                seqno,
                interrupt: false,
            },
            seqno,
        )
    }

    /// Poll until `ok` holds, failing on an engine error or after the timeout.
    fn poll(&self, what: &str, mut ok: impl FnMut() -> bool) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if ok() {
                return Ok(start.elapsed());
            }
            self.check_error()?;
            if start.elapsed() > self.timeout {
                bail!(
                    "timeout after {:?} waiting for {what} (SEQNO {}, RING_HEAD {:#x}, RING_TAIL {:#x})",
                    self.timeout,
                    self.seqno(),
                    self.dev.engine(EngineReg::RingHead),
                    self.ring.tail()
                );
            }
            sleep(Duration::from_micros(200));
        }
    }

    /// Write `commands` (counted as `count` commands) into the ring and ring
    /// the doorbell; waits first until the engine has consumed enough.
    pub fn submit(&mut self, dma: &mut DmaBuffer, commands: &[u32], count: u32) -> Result<()> {
        self.write(dma, commands)?;
        self.totals.ring_commands += count;
        self.doorbell();
        Ok(())
    }

    /// Write a stream of whole commands at the tail without submitting.
    fn write(&mut self, dma: &mut DmaBuffer, dwords: &[u32]) -> Result<()> {
        let bytes = 4 * dwords.len() as u32;
        if bytes > self.ring.size() - 4 {
            bail!(
                "a submission of {bytes} bytes does not fit the {}-byte ring",
                self.ring.size()
            );
        }
        if self.ring.free_bytes(self.head()) < bytes {
            let ring = &self.ring;
            let dev = self.dev;
            self.poll("room in the ring", || {
                ring.free_bytes(dev.engine(EngineReg::RingHead) as u32) >= bytes
            })?;
        }
        let mut mem = RingMemory {
            dma,
            base: self.ring_dma,
        };
        let mut at = 0;
        while at < dwords.len() {
            let info = rvg_model::cmd::header_info(dwords[at]);
            let len = info.expect("we encode only known commands").len;
            self.ring.push(&mut mem, &dwords[at..at + len]);
            at += len;
        }
        Ok(())
    }

    fn head(&self) -> u32 {
        self.dev.engine(EngineReg::RingHead) as u32
    }

    /// Publish the tail: the ring's memory must be written before the
    /// device can see the new tail.
    fn doorbell(&mut self) {
        fence(Ordering::SeqCst);
        self.dev
            .set_engine(EngineReg::RingTail, u64::from(self.ring.tail()));
        self.totals.submissions += 1;
    }

    /// Wait until SEQNO reaches `seqno`; returns how long it took.
    pub fn wait(&self, seqno: u32) -> Result<Duration> {
        self.poll(&format!("fence {seqno}"), || {
            seqno_reached(self.seqno(), seqno)
        })
    }

    /// Wait for the engine to stop with an error (for the fault check).
    pub fn wait_fault(&self) -> Result<EngineFault> {
        let start = Instant::now();
        loop {
            if let Some(f) = self.fault() {
                return Ok(f);
            }
            if start.elapsed() > self.timeout {
                bail!(
                    "timeout after {:?} waiting for an engine error that should have happened",
                    self.timeout
                );
            }
            sleep(Duration::from_micros(200));
        }
    }

    /// Drop queued work and any error, and start again from an empty ring.
    pub fn restart(&mut self) {
        self.dev.set_engine(EngineReg::RingCtl, 0);
        self.dev.set_engine(EngineReg::RingTail, 0);
        self.dev
            .set_engine(EngineReg::RingCtl, u64::from(ring_ctl::RESET));
        self.dev
            .set_engine(EngineReg::RingCtl, u64::from(ring_ctl::ENABLE));
        self.ring.restart();
    }

    /// Leave the engine disabled with an empty ring: our ring's pages go
    /// away with this process.
    pub fn stop(&mut self) {
        self.dev.set_engine(EngineReg::RingCtl, 0);
        self.dev.set_engine(EngineReg::RingTail, 0);
        self.dev
            .set_engine(EngineReg::RingCtl, u64::from(ring_ctl::RESET));
        self.ring.restart();
    }
}

impl Drop for Engine<'_> {
    /// On every way out, error paths included: nothing of ours may stay
    /// queued on the engine once our pages are gone.
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_the_table() {
        let names: Vec<&str> = (0..=13).map(error_name).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "UNKNOWN_OPCODE",
                "RESERVED_BITS",
                "TRUNCATED",
                "BAD_ADDRESS",
                "BATCH_NESTING",
                "BAD_RECT",
                "MISALIGNED",
                "BAD_RING",
                "BAD_REGISTER",
                "PRIVILEGED",
                "HANG",
                "PREEMPT_TIMEOUT",
                "(unknown code)"
            ]
        );
    }

    #[test]
    fn seqnos_compare_across_wrap() {
        assert!(seqno_reached(5, 5));
        assert!(seqno_reached(6, 5));
        assert!(!seqno_reached(4, 5));
        assert!(seqno_reached(2, u32::MAX));
        assert!(!seqno_reached(u32::MAX, 2));
    }

    #[test]
    fn faults_describe_themselves() {
        let f = EngineFault {
            code: 4,
            addr: 0x1234_5000,
            head: 0x40,
        };
        assert_eq!(
            f.to_string(),
            "engine error 4 (BAD_ADDRESS) at graphics address 0x12345000, RING_HEAD 0x40"
        );
    }
}

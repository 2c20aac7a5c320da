//! The vGPU's migration section: what a migration stream carries of a
//! vGPU, and its byte format.
//!
//! The format follows QEMU's vmstate: a version and a minimum version,
//! then named fields in a fixed order, little-endian, with no
//! self-description; `docs/migration.md` lists the fields. Decoding
//! checks only the shape (every field present, no bytes left over, counts
//! within the device's sizes); what the values mean is checked where they
//! are applied (`Vgpu::load`), as if the guest had written them.

use rvg_model::engine::EngineState;
use rvg_model::global::GlobalState;
use rvg_model::regs::{bar2, DispiReg, DisplayReg, Register};

/// The version this build writes.
pub const SAVED_VERSION: u32 = 1;
/// The oldest version this build reads.
pub const SAVED_MIN_VERSION: u32 = 1;

/// Bytes of the bochs VGA port block.
pub const VGA_PORTS: usize = bar2::VGA_PORTS_SIZE as usize;

/// Everything of a quiesced vGPU a destination needs, in plain values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedVgpu {
    /// The device's shape: a destination of another shape refuses.
    pub vram_size: u64,
    pub gtt_entries: u32,
    pub global: GlobalState,
    /// The virtual engine's registers (`resume` is always 0: a vGPU has
    /// no preemption registers).
    pub engine: EngineState,
    /// Guest ring offset up to which commands were scanned: the head,
    /// unless the engine stopped on an error.
    pub scan_head: u32,
    /// Every display register, in `DisplayReg::ALL` order.
    pub display: Vec<u64>,
    /// Every bochs DISPI register, in `DispiReg::ALL` order.
    pub dispi: Vec<u64>,
    pub qext_endian: u32,
    pub vga_ports: [u8; VGA_PORTS],
    /// An interrupt message was due and not yet sent.
    pub message_pending: bool,
    /// The guest's GTT, one value per entry.
    pub gtt: Vec<u64>,
    /// Entries with only one half written since: (index, halves), bit 0
    /// the low half, bit 1 the high; indices increasing.
    pub gtt_partial: Vec<(u32, u8)>,
    pub scanned_commands: u64,
    pub rejected_streams: u64,
}

/// Why a stream was refused: the field, and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("vGPU state version {found} is not one this build reads ({SAVED_MIN_VERSION} to {SAVED_VERSION})")]
    Version { found: u32 },
    #[error("vGPU state ends inside field {field}")]
    Truncated { field: &'static str },
    #[error("vGPU state has {extra} bytes after its last field")]
    Trailing { extra: usize },
    #[error("vGPU state field {field} is {value:#x}: {why}")]
    Invalid {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
    #[error("vGPU state field {field} is {source_value:#x}, this vGPU's is {here:#x}")]
    Mismatch {
        field: &'static str,
        source_value: u64,
        here: u64,
    },
}

impl LoadError {
    pub fn invalid(field: &'static str, value: impl Into<u64>, why: &'static str) -> LoadError {
        LoadError::Invalid {
            field,
            value: value.into(),
            why,
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], LoadError> {
        if self.rest.len() < n {
            return Err(LoadError::Truncated { field });
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, LoadError> {
        Ok(self.take(1, field)?[0])
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, LoadError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, LoadError> {
        let b = self.take(8, field)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// A count, at most `max`: what a stream can make this build allocate.
    fn count(&mut self, field: &'static str, max: usize) -> Result<usize, LoadError> {
        let n = self.u32(field)?;
        if n as usize > max {
            return Err(LoadError::invalid(field, n, "more than this vGPU has"));
        }
        Ok(n as usize)
    }
    fn u64s(&mut self, field: &'static str, n: usize) -> Result<Vec<u64>, LoadError> {
        (0..n).map(|_| self.u64(field)).collect()
    }
}

impl SavedVgpu {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(256 + self.gtt.len() * 8));
        w.u32(SAVED_VERSION);
        w.u64(self.vram_size);
        w.u32(self.gtt_entries);
        let g = &self.global;
        w.u64(g.scratch);
        w.u32(g.int_status);
        w.u32(g.int_mask);
        w.u32(g.int_enable);
        w.u64(g.fault_addr);
        w.u32(g.fault_reason);
        w.u32(g.gtt_faults);
        let e = &self.engine;
        w.u64(e.ring_base);
        w.u32(e.ring_size);
        w.u32(e.head);
        w.u32(e.tail);
        w.u32(e.ctl);
        w.u32(e.seqno);
        w.u32(e.error);
        w.u64(e.error_addr);
        w.u32(self.scan_head);
        for regs in [&self.display, &self.dispi] {
            w.u32(regs.len() as u32);
            regs.iter().for_each(|&v| w.u64(v));
        }
        w.u32(self.qext_endian);
        self.vga_ports.iter().for_each(|&b| w.u8(b));
        w.u8(u8::from(self.message_pending));
        w.u32(self.gtt.len() as u32);
        self.gtt.iter().for_each(|&v| w.u64(v));
        w.u32(self.gtt_partial.len() as u32);
        for &(index, halves) in &self.gtt_partial {
            w.u32(index);
            w.u8(halves);
        }
        w.u64(self.scanned_commands);
        w.u64(self.rejected_streams);
        w.0
    }

    /// The fields of `bytes`, for a vGPU with at most `max_gtt` GTT
    /// entries (what the stream may make this build allocate).
    pub fn decode(bytes: &[u8], max_gtt: u32) -> Result<SavedVgpu, LoadError> {
        let r = &mut Reader { rest: bytes };
        let version = r.u32("version")?;
        if !(SAVED_MIN_VERSION..=SAVED_VERSION).contains(&version) {
            return Err(LoadError::Version { found: version });
        }
        let vram_size = r.u64("vram_size")?;
        let gtt_entries = r.u32("gtt_entries")?;
        let global = GlobalState {
            scratch: r.u64("global.scratch")?,
            int_status: r.u32("global.int_status")?,
            int_mask: r.u32("global.int_mask")?,
            int_enable: r.u32("global.int_enable")?,
            fault_addr: r.u64("global.fault_addr")?,
            fault_reason: r.u32("global.fault_reason")?,
            gtt_faults: r.u32("global.gtt_faults")?,
        };
        let engine = EngineState {
            ring_base: r.u64("engine.ring_base")?,
            ring_size: r.u32("engine.ring_size")?,
            head: r.u32("engine.head")?,
            tail: r.u32("engine.tail")?,
            ctl: r.u32("engine.ctl")?,
            seqno: r.u32("engine.seqno")?,
            error: r.u32("engine.error")?,
            error_addr: r.u64("engine.error_addr")?,
            resume: 0,
        };
        let scan_head = r.u32("scan_head")?;
        let n = r.count("display.count", DisplayReg::ALL.len())?;
        let display = r.u64s("display", n)?;
        let n = r.count("dispi.count", DispiReg::ALL.len())?;
        let dispi = r.u64s("dispi", n)?;
        let qext_endian = r.u32("qext_endian")?;
        let mut vga_ports = [0u8; VGA_PORTS];
        vga_ports.copy_from_slice(r.take(VGA_PORTS, "vga_ports")?);
        let message_pending = match r.u8("message_pending")? {
            0 => false,
            1 => true,
            v => return Err(LoadError::invalid("message_pending", v, "not 0 or 1")),
        };
        let n = r.count("gtt.count", max_gtt as usize)?;
        let gtt = r.u64s("gtt", n)?;
        let n = r.count("gtt_partial.count", max_gtt as usize)?;
        let gtt_partial = (0..n)
            .map(|_| Ok((r.u32("gtt_partial.index")?, r.u8("gtt_partial.halves")?)))
            .collect::<Result<_, LoadError>>()?;
        let saved = SavedVgpu {
            vram_size,
            gtt_entries,
            global,
            engine,
            scan_head,
            display,
            dispi,
            qext_endian,
            vga_ports,
            message_pending,
            gtt,
            gtt_partial,
            scanned_commands: r.u64("scanned_commands")?,
            rejected_streams: r.u64("rejected_streams")?,
        };
        match r.rest.len() {
            0 => Ok(saved),
            extra => Err(LoadError::Trailing { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SavedVgpu {
        SavedVgpu {
            vram_size: 16 << 20,
            gtt_entries: 8,
            global: GlobalState {
                scratch: 0x1122_3344_5566_7788,
                int_status: 1,
                int_mask: 2,
                int_enable: 3,
                fault_addr: 0x4000,
                fault_reason: 0x12,
                gtt_faults: 4,
            },
            engine: EngineState {
                ring_base: 0x10_0000,
                ring_size: 4096,
                head: 0x40,
                tail: 0x40,
                ctl: 1,
                seqno: 9,
                error: 0,
                error_addr: 0,
                resume: 0,
            },
            scan_head: 0x40,
            display: (0..DisplayReg::ALL.len() as u64).collect(),
            dispi: (0..DispiReg::ALL.len() as u64).map(|v| v * 3).collect(),
            qext_endian: 0x1e1e_1e1e,
            vga_ports: [7; VGA_PORTS],
            message_pending: true,
            gtt: (0..8).map(|i| i * 0x1001).collect(),
            gtt_partial: vec![(2, 1), (5, 2)],
            scanned_commands: 77,
            rejected_streams: 1,
        }
    }

    #[test]
    fn a_state_reads_back_as_written() {
        let s = sample();
        assert_eq!(SavedVgpu::decode(&s.encode(), 8), Ok(s));
    }

    /// Every prefix of a stream is refused, naming the field it ends in;
    /// a byte more is refused too.
    #[test]
    fn a_short_or_long_stream_names_where_it_breaks() {
        let bytes = sample().encode();
        let mut fields = std::collections::BTreeSet::new();
        for len in 0..bytes.len() {
            match SavedVgpu::decode(&bytes[..len], 8) {
                Err(LoadError::Truncated { field }) => {
                    fields.insert(field);
                }
                other => panic!("{len} bytes: {other:?}"),
            }
        }
        assert!(fields.len() >= 30, "{fields:?}");
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            SavedVgpu::decode(&long, 8),
            Err(LoadError::Trailing { extra: 1 })
        );
    }

    #[test]
    fn versions_and_counts_are_checked_before_anything_is_allocated() {
        let mut bytes = sample().encode();
        bytes[..4].copy_from_slice(&(SAVED_VERSION + 1).to_le_bytes());
        assert_eq!(
            SavedVgpu::decode(&bytes, 8),
            Err(LoadError::Version {
                found: SAVED_VERSION + 1
            })
        );
        let bytes = sample().encode();
        let e = SavedVgpu::decode(&bytes, 7).unwrap_err();
        assert!(
            matches!(
                e,
                LoadError::Invalid {
                    field: "gtt.count",
                    value: 8,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("gtt.count"), "{e}");
        let mut bad = sample();
        bad.message_pending = false;
        let mut bytes = bad.encode();
        let at = bytes.len() - 16 - 4 - 2 * 5 - 4 - 8 * 8 - 1;
        assert_eq!(bytes[at], 0);
        bytes[at] = 2;
        assert!(matches!(
            SavedVgpu::decode(&bytes, 8),
            Err(LoadError::Invalid {
                field: "message_pending",
                value: 2,
                ..
            })
        ));
    }
}

//! The RVG-1 command stream (`docs/hardware.md`, "Commands"): 32-bit
//! little-endian dwords, fixed-length commands with the opcode in bits 31:24
//! of the header, flags in bits 23:16, bits 15:0 zero.
//!
//! `COMMANDS` describes every opcode once (length, flags, graphics
//! addresses, privilege), after Linux i915/gvt's `cmd_info[]`; the decoder,
//! the encoder, relocation, the mediator's scanner and its scheduler all
//! read it. Adding an opcode is a row of the table and its execution in
//! `engine`.

use std::fmt;

use crate::table::command_table;

/// FENCE flag: raise the FENCE interrupt when the fence completes.
pub const FENCE_FLAG_INTERRUPT: u8 = 1 << 0;

/// Bytes per pixel of the rectangle commands (32-bit pixels).
pub const PIXEL_BYTES: u64 = 4;

/// A graphics address a command holds (64 bits, low dword first, at dword
/// `at` of the command) and what it covers there: how the scanner checks
/// it. Every index is a dword of the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GfxRef {
    /// One dword, written there: 4-byte aligned.
    Dword { at: usize },
    /// A batch buffer of `len` bytes.
    Batch { at: usize, len: usize },
    /// A rectangle of 32-bit pixels.
    Rect {
        at: usize,
        pitch: usize,
        width: usize,
        height: usize,
    },
}

impl GfxRef {
    /// The dword holding the address's low half.
    pub fn at(self) -> usize {
        match self {
            GfxRef::Dword { at } | GfxRef::Batch { at, .. } | GfxRef::Rect { at, .. } => at,
        }
    }

    /// The address, in the dwords `dw` of a command.
    pub fn addr(self, dw: &[u32]) -> u64 {
        field::gfx::get(dw, self.at())
    }
}

/// One opcode: everything about it but what executing it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdInfo {
    pub opcode: u8,
    pub name: &'static str,
    /// Dwords, header included.
    pub len: usize,
    /// Header flags the opcode defines; any other is a reserved bit.
    pub flags: u8,
    /// Only the mediator may emit it: a guest stream holding it is refused.
    pub privileged: bool,
    /// The graphics addresses it holds: what relocation moves.
    pub addrs: &'static [GfxRef],
}

command_table! {
    NOOP = 0x00, len 1, flags 0, privileged false, addrs []
        => Noop;
    /// Write `value` at graphics address `addr` (4-byte aligned).
    STORE_DW = 0x01, len 4, flags 0, privileged false, addrs [GfxRef::Dword { at: 1 }]
        => StoreDw { addr: gfx(1), value: dword(3) };
    /// Record `seqno` as completed; interrupt if asked.
    FENCE = 0x02, len 2, flags FENCE_FLAG_INTERRUPT, privileged false, addrs []
        => Fence { seqno: dword(1), interrupt: flag(FENCE_FLAG_INTERRUPT) };
    /// Run `len` bytes of commands at `addr`, then come back.
    BATCH_START = 0x03, len 4, flags 0, privileged false,
        addrs [GfxRef::Batch { at: 1, len: 3 }]
        => BatchStart { addr: gfx(1), len: dword(3) };
    BATCH_END = 0x04, len 1, flags 0, privileged false, addrs []
        => BatchEnd;
    /// Fill `width` x `height` pixels at `dst` (rows `pitch` bytes apart).
    FILL_RECT = 0x05, len 7, flags 0, privileged false,
        addrs [GfxRef::Rect { at: 1, pitch: 3, width: 4, height: 5 }]
        => FillRect {
            dst: gfx(1), pitch: dword(3), width: dword(4), height: dword(5), color: dword(6)
        };
    /// Copy a `width` x `height` pixel rectangle; overlapping is allowed.
    COPY_RECT = 0x06, len 9, flags 0, privileged false,
        addrs [
            GfxRef::Rect { at: 1, pitch: 3, width: 7, height: 8 },
            GfxRef::Rect { at: 4, pitch: 6, width: 7, height: 8 },
        ]
        => CopyRect {
            src: gfx(1), src_pitch: dword(3), dst: gfx(4), dst_pitch: dword(6),
            width: dword(7), height: dword(8)
        };
    /// Write a register of the engine's own block. Privileged: the mediator
    /// may emit it, a guest stream may not.
    LOAD_REG = 0x07, len 3, flags 0, privileged true, addrs []
        => LoadReg { reg: dword(1), value: dword(2) };
}

/// How a field of a command sits in its dwords.
mod field {
    /// A 64-bit graphics address: the low dword at `at`, the high after it.
    pub mod gfx {
        pub fn get(d: &[u32], at: usize) -> u64 {
            u64::from(d[at]) | (u64::from(d[at + 1]) << 32)
        }
        pub fn put(d: &mut [u32], at: usize, v: u64) {
            d[at] = v as u32;
            d[at + 1] = (v >> 32) as u32;
        }
    }

    /// A 32-bit value at dword `at`.
    pub mod dword {
        pub fn get(d: &[u32], at: usize) -> u32 {
            d[at]
        }
        pub fn put(d: &mut [u32], at: usize, v: u32) {
            d[at] = v;
        }
    }

    /// A header flag.
    pub mod flag {
        pub fn get(d: &[u32], mask: u8) -> bool {
            (d[0] >> 16) as u8 & mask != 0
        }
        pub fn put(d: &mut [u32], mask: u8, v: bool) {
            if v {
                d[0] |= u32::from(mask) << 16;
            }
        }
    }
}

/// Why a stream does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    UnknownOpcode(u8),
    /// The header's reserved bits, or flags an opcode does not define.
    ReservedBits(u32),
    /// The stream ends inside a command that needs `need` dwords.
    Truncated {
        need: usize,
        have: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownOpcode(op) => write!(f, "unknown opcode {op:#04x}"),
            DecodeError::ReservedBits(h) => write!(f, "header {h:#010x} has reserved bits set"),
            DecodeError::Truncated { need, have } => {
                write!(f, "command needs {need} dwords, {have} left")
            }
        }
    }
}

/// The table's row for `op`.
pub fn info(op: u8) -> Option<&'static CmdInfo> {
    COMMANDS.iter().find(|c| c.opcode == op)
}

/// Bytes of memory the command at the start of `dw` reads and writes
/// through its graphics addresses, from the table: its rectangles' pixels,
/// a stored dword (a batch's commands count on their own). What the
/// scheduler sizes its chunks by. 0 for an unknown or cut-short command.
pub fn bytes_touched(dw: &[u32]) -> u64 {
    let Some(info) = dw.first().and_then(|&h| header_info(h)) else {
        return 0;
    };
    let field = |i: usize| dw.get(i).map_or(0, |&v| u64::from(v));
    info.addrs
        .iter()
        .map(|r| match *r {
            GfxRef::Dword { .. } => 4,
            GfxRef::Batch { .. } => 0,
            GfxRef::Rect { width, height, .. } => field(width) * field(height) * PIXEL_BYTES,
        })
        .sum()
}

/// The opcode of a command's header dword.
pub fn opcode_of(header: u32) -> u8 {
    (header >> 24) as u8
}

/// The table's row for the command whose header dword is `header`.
pub fn header_info(header: u32) -> Option<&'static CmdInfo> {
    info(opcode_of(header))
}

/// Dwords of a command with this opcode, header included.
pub fn length(op: u8) -> Option<usize> {
    info(op).map(|c| c.len)
}

fn header(op: u8, flags: u8) -> u32 {
    (u32::from(op) << 24) | (u32::from(flags) << 16)
}

/// Decode the command at the start of `dw`; returns it and its length.
pub fn decode(dw: &[u32]) -> Result<(Command, usize), DecodeError> {
    let header = *dw
        .first()
        .ok_or(DecodeError::Truncated { need: 1, have: 0 })?;
    let op = opcode_of(header);
    let flags = (header >> 16) as u8;
    let info = info(op).ok_or(DecodeError::UnknownOpcode(op))?;
    if header & 0xffff != 0 || flags & !info.flags != 0 {
        return Err(DecodeError::ReservedBits(header));
    }
    if dw.len() < info.len {
        return Err(DecodeError::Truncated {
            need: info.len,
            have: dw.len(),
        });
    }
    Ok((Command::from_dwords(op, &dw[..info.len]), info.len))
}

/// Move every graphics address in the command `dw` (one whole command, as
/// `decode` accepted it) by `by`, wrapping: callers relocate addresses they
/// have checked.
pub fn relocate(dw: &mut [u32], by: u64) {
    let info = header_info(dw[0]).expect("a decoded command");
    for r in info.addrs {
        let moved = r.addr(dw).wrapping_add(by);
        field::gfx::put(dw, r.at(), moved);
    }
}

/// Little-endian bytes (a multiple of 4) as the dwords of a stream.
pub fn dwords(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

impl Command {
    /// The table's row for this command.
    pub fn info(&self) -> &'static CmdInfo {
        info(self.opcode()).expect("every command has a row")
    }

    /// The same command with every graphics address it holds moved by `by`
    /// (wrapping: callers relocate addresses they have checked).
    pub fn relocated(self, by: u64) -> Command {
        let mut dw = self.encode();
        relocate(&mut dw, by);
        decode(&dw).expect("an encoded command decodes").0
    }
}

impl Command {
    /// The graphics byte ranges, `(start, length)`, a data command reads or
    /// writes: a store's dword, each rectangle's whole span. None for a
    /// rectangle whose numbers describe no memory; empty for the others.
    pub fn data_spans(&self) -> Option<Vec<(u64, u64)>> {
        Some(match *self {
            Command::StoreDw { addr, .. } => vec![(addr, 4)],
            Command::FillRect {
                dst,
                pitch,
                width,
                height,
                ..
            } => vec![rect_span(dst, pitch, width, height)?],
            Command::CopyRect {
                src,
                src_pitch,
                dst,
                dst_pitch,
                width,
                height,
            } => vec![
                rect_span(src, src_pitch, width, height)?,
                rect_span(dst, dst_pitch, width, height)?,
            ],
            _ => Vec::new(),
        })
    }
}

/// A rectangle's footprint: the byte range from its first to its last pixel.
/// None when the numbers cannot describe memory (a pitch smaller than a row,
/// or arithmetic overflow).
pub fn rect_span(base: u64, pitch: u32, width: u32, height: u32) -> Option<(u64, u64)> {
    let row = u64::from(width).checked_mul(PIXEL_BYTES)?;
    if width == 0 || height == 0 {
        return Some((base, 0));
    }
    if u64::from(pitch) < row && height > 1 {
        return None;
    }
    let len = u64::from(pitch)
        .checked_mul(u64::from(height - 1))?
        .checked_add(row)?;
    base.checked_add(len)?;
    Some((base, len))
}

#[cfg(test)]
#[path = "cmd_tests.rs"]
mod tests;

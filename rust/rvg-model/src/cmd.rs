//! The RVG-1 command stream (`docs/hardware.md`, "Commands"): 32-bit
//! little-endian dwords, fixed-length commands with the opcode in bits 31:24
//! of the header, flags in bits 23:16, bits 15:0 zero.

use std::fmt;

pub mod opcode {
    pub const NOOP: u8 = 0x00;
    pub const STORE_DW: u8 = 0x01;
    pub const FENCE: u8 = 0x02;
    pub const BATCH_START: u8 = 0x03;
    pub const BATCH_END: u8 = 0x04;
    pub const FILL_RECT: u8 = 0x05;
    pub const COPY_RECT: u8 = 0x06;
    pub const LOAD_REG: u8 = 0x07;
}

/// FENCE flag: raise the FENCE interrupt when the fence completes.
pub const FENCE_FLAG_INTERRUPT: u8 = 1 << 0;

/// Bytes per pixel of the rectangle commands (32-bit pixels).
pub const PIXEL_BYTES: u64 = 4;

/// A decoded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Noop,
    /// Write `value` at graphics address `addr` (4-byte aligned).
    StoreDw {
        addr: u64,
        value: u32,
    },
    /// Record `seqno` as completed; interrupt if asked.
    Fence {
        seqno: u32,
        interrupt: bool,
    },
    /// Run `len` bytes of commands at `addr`, then come back.
    BatchStart {
        addr: u64,
        len: u32,
    },
    BatchEnd,
    /// Fill `width` x `height` pixels at `dst` (rows `pitch` bytes apart).
    FillRect {
        dst: u64,
        pitch: u32,
        width: u32,
        height: u32,
        color: u32,
    },
    /// Copy a `width` x `height` pixel rectangle; overlapping is allowed.
    CopyRect {
        src: u64,
        src_pitch: u32,
        dst: u64,
        dst_pitch: u32,
        width: u32,
        height: u32,
    },
    /// Write a register of the engine's own block. Privileged: the mediator
    /// may emit it, a guest stream may not.
    LoadReg {
        reg: u32,
        value: u32,
    },
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

/// Dwords of a command with this opcode, header included.
pub fn length(op: u8) -> Option<usize> {
    Some(match op {
        opcode::NOOP | opcode::BATCH_END => 1,
        opcode::FENCE => 2,
        opcode::LOAD_REG => 3,
        opcode::STORE_DW | opcode::BATCH_START => 4,
        opcode::FILL_RECT => 7,
        opcode::COPY_RECT => 9,
        _ => return None,
    })
}

fn flags_allowed(op: u8) -> u8 {
    if op == opcode::FENCE {
        FENCE_FLAG_INTERRUPT
    } else {
        0
    }
}

fn addr(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Decode the command at the start of `dw`; returns it and its length.
pub fn decode(dw: &[u32]) -> Result<(Command, usize), DecodeError> {
    let header = *dw
        .first()
        .ok_or(DecodeError::Truncated { need: 1, have: 0 })?;
    let op = (header >> 24) as u8;
    let flags = (header >> 16) as u8;
    let len = length(op).ok_or(DecodeError::UnknownOpcode(op))?;
    if header & 0xffff != 0 || flags & !flags_allowed(op) != 0 {
        return Err(DecodeError::ReservedBits(header));
    }
    if dw.len() < len {
        return Err(DecodeError::Truncated {
            need: len,
            have: dw.len(),
        });
    }
    let d = &dw[..len];
    let cmd = match op {
        opcode::NOOP => Command::Noop,
        opcode::STORE_DW => Command::StoreDw {
            addr: addr(d[1], d[2]),
            value: d[3],
        },
        opcode::FENCE => Command::Fence {
            seqno: d[1],
            interrupt: flags & FENCE_FLAG_INTERRUPT != 0,
        },
        opcode::BATCH_START => Command::BatchStart {
            addr: addr(d[1], d[2]),
            len: d[3],
        },
        opcode::BATCH_END => Command::BatchEnd,
        opcode::FILL_RECT => Command::FillRect {
            dst: addr(d[1], d[2]),
            pitch: d[3],
            width: d[4],
            height: d[5],
            color: d[6],
        },
        opcode::COPY_RECT => Command::CopyRect {
            src: addr(d[1], d[2]),
            src_pitch: d[3],
            dst: addr(d[4], d[5]),
            dst_pitch: d[6],
            width: d[7],
            height: d[8],
        },
        opcode::LOAD_REG => Command::LoadReg {
            reg: d[1],
            value: d[2],
        },
        _ => unreachable!("length() knows every opcode"),
    };
    Ok((cmd, len))
}

/// Little-endian bytes (a multiple of 4) as the dwords of a stream.
pub fn dwords(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

fn header(op: u8, flags: u8) -> u32 {
    (u32::from(op) << 24) | (u32::from(flags) << 16)
}

impl Command {
    /// The same command with every graphics address it holds moved by `by`
    /// (wrapping: callers relocate addresses they have checked).
    pub fn relocated(self, by: u64) -> Command {
        match self {
            Command::StoreDw { addr, value } => Command::StoreDw {
                addr: addr.wrapping_add(by),
                value,
            },
            Command::BatchStart { addr, len } => Command::BatchStart {
                addr: addr.wrapping_add(by),
                len,
            },
            Command::FillRect {
                dst,
                pitch,
                width,
                height,
                color,
            } => Command::FillRect {
                dst: dst.wrapping_add(by),
                pitch,
                width,
                height,
                color,
            },
            Command::CopyRect {
                src,
                src_pitch,
                dst,
                dst_pitch,
                width,
                height,
            } => Command::CopyRect {
                src: src.wrapping_add(by),
                src_pitch,
                dst: dst.wrapping_add(by),
                dst_pitch,
                width,
                height,
            },
            Command::Noop | Command::Fence { .. } | Command::BatchEnd | Command::LoadReg { .. } => {
                self
            }
        }
    }

    /// The dwords of this command: what `decode` reads back.
    pub fn encode(&self) -> Vec<u32> {
        let lo = |a: u64| a as u32;
        let hi = |a: u64| (a >> 32) as u32;
        match *self {
            Command::Noop => vec![header(opcode::NOOP, 0)],
            Command::StoreDw { addr, value } => {
                vec![header(opcode::STORE_DW, 0), lo(addr), hi(addr), value]
            }
            Command::Fence { seqno, interrupt } => {
                vec![
                    header(
                        opcode::FENCE,
                        if interrupt { FENCE_FLAG_INTERRUPT } else { 0 },
                    ),
                    seqno,
                ]
            }
            Command::BatchStart { addr, len } => {
                vec![header(opcode::BATCH_START, 0), lo(addr), hi(addr), len]
            }
            Command::BatchEnd => vec![header(opcode::BATCH_END, 0)],
            Command::FillRect {
                dst,
                pitch,
                width,
                height,
                color,
            } => {
                vec![
                    header(opcode::FILL_RECT, 0),
                    lo(dst),
                    hi(dst),
                    pitch,
                    width,
                    height,
                    color,
                ]
            }
            Command::CopyRect {
                src,
                src_pitch,
                dst,
                dst_pitch,
                width,
                height,
            } => vec![
                header(opcode::COPY_RECT, 0),
                lo(src),
                hi(src),
                src_pitch,
                lo(dst),
                hi(dst),
                dst_pitch,
                width,
                height,
            ],
            Command::LoadReg { reg, value } => vec![header(opcode::LOAD_REG, 0), reg, value],
        }
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
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Command> {
        vec![
            Command::Noop,
            Command::StoreDw {
                addr: 0x1_2345_6788,
                value: 0xdead_beef,
            },
            Command::Fence {
                seqno: 7,
                interrupt: true,
            },
            Command::Fence {
                seqno: 8,
                interrupt: false,
            },
            Command::BatchStart {
                addr: 0x4000,
                len: 64,
            },
            Command::BatchEnd,
            Command::FillRect {
                dst: 0x10_0000,
                pitch: 4096,
                width: 1024,
                height: 768,
                color: 0xff00ff,
            },
            Command::CopyRect {
                src: 0x1000,
                src_pitch: 64,
                dst: 0x1010,
                dst_pitch: 64,
                width: 8,
                height: 8,
            },
            Command::LoadReg {
                reg: 0x18,
                value: 3,
            },
        ]
    }

    #[test]
    fn every_command_round_trips() {
        let stream: Vec<u32> = all_kinds().iter().flat_map(|c| c.encode()).collect();
        let mut at = 0;
        for expect in all_kinds() {
            let (cmd, len) = decode(&stream[at..]).unwrap();
            assert_eq!(cmd, expect);
            assert_eq!(len, expect.encode().len());
            at += len;
        }
        assert_eq!(at, stream.len());
    }

    #[test]
    fn bad_streams_are_refused() {
        assert_eq!(
            decode(&[]),
            Err(DecodeError::Truncated { need: 1, have: 0 })
        );
        assert_eq!(
            decode(&[0x7f00_0000]),
            Err(DecodeError::UnknownOpcode(0x7f))
        );
        assert_eq!(decode(&[0x0000_0001]), Err(DecodeError::ReservedBits(1)));
        // A flag NOOP does not define.
        assert_eq!(
            decode(&[0x0001_0000]),
            Err(DecodeError::ReservedBits(0x0001_0000))
        );
        // FENCE defines only bit 0.
        assert_eq!(
            decode(&[0x0202_0000, 1]),
            Err(DecodeError::ReservedBits(0x0202_0000))
        );
        let fill = Command::FillRect {
            dst: 0,
            pitch: 4,
            width: 1,
            height: 1,
            color: 0,
        }
        .encode();
        assert_eq!(
            decode(&fill[..6]),
            Err(DecodeError::Truncated { need: 7, have: 6 })
        );
    }

    #[test]
    fn every_opcode_byte_either_decodes_or_is_refused() {
        for op in 0..=255u8 {
            let mut dw = vec![u32::from(op) << 24];
            dw.resize(16, 0);
            match decode(&dw) {
                Ok((_, len)) => assert_eq!(Some(len), length(op)),
                Err(e) => assert_eq!(e, DecodeError::UnknownOpcode(op)),
            }
        }
    }

    #[test]
    fn rect_spans() {
        assert_eq!(
            rect_span(0x1000, 4096, 1024, 2),
            Some((0x1000, 4096 + 4096))
        );
        assert_eq!(rect_span(0, 16, 8, 2), None, "pitch smaller than a row");
        assert_eq!(
            rect_span(0, 16, 8, 1),
            Some((0, 32)),
            "one row needs no pitch"
        );
        assert_eq!(rect_span(u64::MAX - 8, 4, 4, 1), None);
        assert_eq!(
            rect_span(0, u32::MAX, 1, u32::MAX).map(|s| s.1),
            Some(u64::from(u32::MAX) * u64::from(u32::MAX - 1) + 4)
        );
        assert_eq!(rect_span(5, 4, 0, 9), Some((5, 0)));
    }
}

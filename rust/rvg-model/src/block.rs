//! Storage and access checking for one register block.

use std::fmt;
use std::marker::PhantomData;

use crate::access::{AccessError, Lane};
use crate::regs::{RegKind, Register, MAX_REGISTERS};

/// Why an access to a block was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegError {
    /// No register covers the offset.
    NoRegister { offset: u64, size: u32 },
    /// The access breaks the size/alignment rule for `reg`.
    Access { reg: &'static str, err: AccessError },
    /// A write to a read-only register.
    ReadOnly { reg: &'static str, value: u64 },
    /// Refused for a reason given in words.
    Refused(String),
}

impl fmt::Display for RegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegError::NoRegister { offset, size } => {
                write!(f, "{size}-byte access at {offset:#x} hits no register")
            }
            RegError::Access { reg, err } => write!(f, "{reg}: {err}"),
            RegError::ReadOnly { reg, value } => {
                write!(f, "{reg} is read-only; write of {value:#x} ignored")
            }
            RegError::Refused(why) => f.write_str(why),
        }
    }
}

/// What the log says of a refused BAR2 read (the guest reads 0).
pub fn refused_read(offset: u64, err: &RegError) -> String {
    format!("BAR2 read at {offset:#x}: {err}")
}

/// Find the register an access targets and check it against the access rule.
#[inline]
pub fn decode<R: Register>(offset: u64, size: u32) -> Result<(R, Lane), RegError> {
    find(offset, size).ok_or_else(|| refusal::<R>(offset, size))
}

/// `decode` without the reason for a refusal: a table lookup and three
/// comparisons, what every register access runs first.
#[inline(always)]
pub fn find<R: Register>(offset: u64, size: u32) -> Option<(R, Lane)> {
    let reg = R::containing(offset)?;
    Some((
        reg,
        Lane::new(offset, size, reg.offset(), reg.width()).ok()?,
    ))
}

/// Why `find` refused an access: the access rule of the register it hits,
/// else no register.
#[cold]
fn refusal<R: Register>(offset: u64, size: u32) -> RegError {
    R::containing(offset)
        .and_then(|reg| {
            let err = Lane::new(offset, size, reg.offset(), reg.width()).err()?;
            Some(RegError::Access {
                reg: reg.name(),
                err,
            })
        })
        .unwrap_or(RegError::NoRegister { offset, size })
}

/// Plain storage for every register of a block, power-on value zero.
/// A fixed array: a register's index is below `MAX_REGISTERS` by
/// construction (checked when the block's table is built), so the register
/// path has no bounds check that could panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegFile<R: Register> {
    values: [u64; MAX_REGISTERS],
    _block: PhantomData<R>,
}

impl<R: Register> Default for RegFile<R> {
    fn default() -> Self {
        RegFile {
            values: [0; MAX_REGISTERS],
            _block: PhantomData,
        }
    }
}

impl<R: Register> RegFile<R> {
    fn slot(reg: R) -> usize {
        reg.index()
    }

    #[inline(always)]
    pub fn get(&self, reg: R) -> u64 {
        self.values[Self::slot(reg)]
    }

    pub fn set(&mut self, reg: R, value: u64) {
        let width_mask = if reg.width() == 8 {
            u64::MAX
        } else {
            (1u64 << (reg.width() * 8)) - 1
        };
        self.values[Self::slot(reg)] = value & width_mask;
    }

    /// Read with the access rule applied.
    pub fn read(&self, offset: u64, size: u32) -> Result<u64, RegError> {
        let (reg, lane) = decode::<R>(offset, size)?;
        Ok(lane.extract(self.get(reg)))
    }

    /// Write the accessed bytes of `reg` if it is read-write: true. False,
    /// with nothing changed, for any other register.
    #[inline(always)]
    pub fn store(&mut self, reg: R, lane: Lane, value: u64) -> bool {
        let writable = reg.kind() == RegKind::ReadWrite;
        if writable {
            self.set(reg, lane.merge(self.get(reg), value));
        }
        writable
    }

    /// Write the accessed bytes of a read-write register; returns which one.
    pub fn write(&mut self, offset: u64, value: u64, size: u32) -> Result<R, RegError> {
        let (reg, lane) = decode::<R>(offset, size)?;
        match reg.kind() {
            RegKind::ReadOnly => Err(RegError::ReadOnly {
                reg: reg.name(),
                value,
            }),
            _ => {
                self.set(reg, lane.merge(self.get(reg), value));
                Ok(reg)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regs::{DisplayReg, EngineReg};

    #[test]
    fn stores_and_returns_guest_values() {
        let mut f = RegFile::<EngineReg>::default();
        f.write(0x00, 0x1122_3344_5566_7000, 8).unwrap();
        f.write(0x10, 0x40, 4).unwrap();
        assert_eq!(f.read(0x00, 8), Ok(0x1122_3344_5566_7000));
        assert_eq!(f.read(0x04, 4), Ok(0x1122_3344));
        assert_eq!(f.get(EngineReg::RingTail), 0x40);
    }

    #[test]
    fn read_only_and_holes_are_refused() {
        let mut f = RegFile::<EngineReg>::default();
        assert!(matches!(
            f.write(0x0c, 5, 4),
            Err(RegError::ReadOnly {
                reg: "RING_HEAD",
                ..
            })
        ));
        assert!(matches!(f.read(0x40, 4), Err(RegError::NoRegister { .. })));
        let mut d = RegFile::<DisplayReg>::default();
        assert!(matches!(d.write(0x02, 1, 4), Err(RegError::Access { .. })));
    }
}

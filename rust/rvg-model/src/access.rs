//! The access rule every RVG-1 register obeys (`docs/hardware.md`, "Access
//! sizes"): an access of 1, 2, 4 or 8 bytes, naturally aligned, that lies
//! inside one register reads or writes those bytes of it (little endian).
//! Anything else is ignored and reported as a guest error.

use std::fmt;

/// A valid access to part of one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lane {
    /// Bit position of the access within the register.
    pub shift: u32,
    /// Access size in bytes.
    pub size: u32,
}

/// Why an access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    BadSize(u32),
    Misaligned {
        offset: u64,
        size: u32,
    },
    SpansRegisters {
        offset: u64,
        size: u32,
    },
    /// A value the register does not accept.
    Value {
        value: u64,
        expected: &'static str,
    },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessError::BadSize(size) => write!(f, "unsupported access size {size}"),
            AccessError::Misaligned { offset, size } => {
                write!(
                    f,
                    "{size}-byte access at {offset:#x} is not naturally aligned"
                )
            }
            AccessError::SpansRegisters { offset, size } => {
                write!(
                    f,
                    "{size}-byte access at {offset:#x} does not fit in one register"
                )
            }
            AccessError::Value { value, expected } => {
                write!(f, "{value:#x} refused: {expected}; ignored")
            }
        }
    }
}

impl Lane {
    /// Check an access of `size` bytes at `offset` against a register that
    /// starts at `reg_offset` and is `reg_width` bytes wide.
    #[inline(always)]
    pub fn new(
        offset: u64,
        size: u32,
        reg_offset: u64,
        reg_width: u64,
    ) -> Result<Lane, AccessError> {
        if !size.is_power_of_two() || size > 8 {
            return Err(AccessError::BadSize(size));
        }
        // A power of two: a mask, not a division.
        if offset & (u64::from(size) - 1) != 0 {
            return Err(AccessError::Misaligned { offset, size });
        }
        let within = offset
            .checked_sub(reg_offset)
            .filter(|w| w + u64::from(size) <= reg_width)
            .ok_or(AccessError::SpansRegisters { offset, size })?;
        Ok(Lane {
            shift: (within * 8) as u32,
            size,
        })
    }

    /// Mask of the accessed bits, in register position.
    #[inline]
    pub fn mask(self) -> u64 {
        // `size` is 1, 2, 4 or 8: the shift is 56, 48, 32 or 0.
        (u64::MAX >> (64 - self.size * 8)) << self.shift
    }

    /// The accessed bytes of a register value, right-aligned.
    #[inline]
    pub fn extract(self, reg: u64) -> u64 {
        (reg & self.mask()) >> self.shift
    }

    /// `old` with the accessed bytes replaced from `value`.
    #[inline]
    pub fn merge(self, old: u64, value: u64) -> u64 {
        (old & !self.mask()) | ((value << self.shift) & self.mask())
    }

    /// `value` moved into register position, other bytes zero.
    #[inline]
    pub fn place(self, value: u64) -> u64 {
        self.merge(0, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_aligned_size_inside_a_64_bit_register_works() {
        for size in [1u32, 2, 4, 8] {
            for at in (0..8).step_by(size as usize) {
                let lane = Lane::new(0x20 + at, size, 0x20, 8).unwrap();
                let reg = 0x8877_6655_4433_2211u64;
                let expect = (reg >> (at * 8)) & lane.mask() >> lane.shift;
                assert_eq!(lane.extract(reg), expect, "size {size} at +{at}");
            }
        }
    }

    #[test]
    fn merge_only_touches_the_accessed_bytes() {
        let lane = Lane::new(0x22, 2, 0x20, 8).unwrap();
        assert_eq!(
            lane.merge(0x1111_1111_1111_1111, 0xabcd),
            0x1111_1111_abcd_1111
        );
        let whole = Lane::new(0x20, 8, 0x20, 8).unwrap();
        assert_eq!(whole.merge(0, u64::MAX), u64::MAX);
    }

    #[test]
    fn bad_accesses_are_refused() {
        assert_eq!(Lane::new(0x20, 3, 0x20, 8), Err(AccessError::BadSize(3)));
        assert_eq!(Lane::new(0x20, 0, 0x20, 8), Err(AccessError::BadSize(0)));
        assert_eq!(
            Lane::new(0x22, 4, 0x20, 8),
            Err(AccessError::Misaligned {
                offset: 0x22,
                size: 4
            })
        );
        // An 8-byte access to a 4-byte register spills into the next one.
        assert_eq!(
            Lane::new(0x30, 8, 0x30, 4),
            Err(AccessError::SpansRegisters {
                offset: 0x30,
                size: 8
            })
        );
        assert!(Lane::new(0x10, 4, 0x30, 4).is_err());
    }
}

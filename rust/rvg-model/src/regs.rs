//! The RVG-1 register map. Names and offsets mirror `docs/hardware.md`.

/// PCI identity shared by both models.
pub mod pci {
    pub const VENDOR_ID: u16 = 0x1234;
    /// The vGPU answers as a bochs-compatible display so stock guests bind it.
    pub const DEVICE_ID_VGPU: u16 = 0x1111;
    /// The raw model has an ID of its own: no guest display driver binds it.
    pub const DEVICE_ID_HW: u16 = 0x5256;
    /// Subsystem 1234:5256 identifies an RVG-1 GPU behind either device ID.
    pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1234;
    pub const SUBSYSTEM_ID: u16 = 0x5256;
    pub const REVISION: u8 = 2;
    /// Display controller, other.
    pub const CLASS_CODE: u32 = 0x03_80_00;
    pub const MSIX_VECTORS: u32 = 4;
    pub const MSI_VECTORS: u32 = 1;
}

/// BAR2 layout: register blocks at the bottom, the GTT in the upper half.
pub mod bar2 {
    pub const SIZE: u64 = 2 << 20;
    pub const EDID: u64 = 0x0000;
    pub const VGA_PORTS: u64 = 0x0400;
    pub const DISPI: u64 = 0x0500;
    pub const QEMU_EXT: u64 = 0x0600;
    pub const GLOBAL: u64 = 0x1000;
    pub const ENGINE: u64 = 0x2000;
    pub const DISPLAY: u64 = 0x3000;
    /// Size of each register block.
    pub const BLOCK_SIZE: u64 = 0x1000;
    pub const GTT: u64 = 0x10_0000;
}

/// `ID` register value: "RVG1" in ASCII, most significant byte first.
pub const RVG_ID: u32 = u32::from_be_bytes(*b"RVG1");
/// `VERSION`: major in bits 31:16, minor in 15:0.
pub const RVG_VERSION: u32 = 1 << 16;

/// Registers of the global block, as offsets from `bar2::GLOBAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum GlobalReg {
    Id = 0x00,
    Version = 0x04,
    Caps = 0x08,
    VramSize = 0x10,
    GttEntries = 0x18,
    Scratch = 0x20,
    IntStatus = 0x30,
    IntMask = 0x34,
    IntEnable = 0x38,
    IntTrigger = 0x3c,
    FaultAddr = 0x40,
    FaultReason = 0x48,
    Reset = 0x4c,
}

/// How a register behaves on writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegKind {
    /// Writes are ignored and logged.
    ReadOnly,
    /// Stores the written bytes.
    ReadWrite,
    /// Each 1 written clears that bit.
    WriteOneToClear,
    /// Reads as zero; writes act.
    WriteOnly,
}

impl GlobalReg {
    pub const ALL: [GlobalReg; 13] = [
        GlobalReg::Id,
        GlobalReg::Version,
        GlobalReg::Caps,
        GlobalReg::VramSize,
        GlobalReg::GttEntries,
        GlobalReg::Scratch,
        GlobalReg::IntStatus,
        GlobalReg::IntMask,
        GlobalReg::IntEnable,
        GlobalReg::IntTrigger,
        GlobalReg::FaultAddr,
        GlobalReg::FaultReason,
        GlobalReg::Reset,
    ];

    pub fn offset(self) -> u64 {
        self as u64
    }

    /// Register width in bytes.
    pub fn width(self) -> u64 {
        match self {
            GlobalReg::VramSize | GlobalReg::Scratch | GlobalReg::FaultAddr => 8,
            _ => 4,
        }
    }

    pub fn kind(self) -> RegKind {
        match self {
            GlobalReg::Id
            | GlobalReg::Version
            | GlobalReg::Caps
            | GlobalReg::VramSize
            | GlobalReg::GttEntries
            | GlobalReg::FaultAddr
            | GlobalReg::FaultReason => RegKind::ReadOnly,
            GlobalReg::Scratch | GlobalReg::IntMask | GlobalReg::IntEnable => RegKind::ReadWrite,
            GlobalReg::IntStatus => RegKind::WriteOneToClear,
            GlobalReg::IntTrigger | GlobalReg::Reset => RegKind::WriteOnly,
        }
    }

    /// The register that contains block offset `offset`, if any.
    pub fn containing(offset: u64) -> Option<GlobalReg> {
        Self::ALL
            .into_iter()
            .find(|r| (r.offset()..r.offset() + r.width()).contains(&offset))
    }

    pub fn name(self) -> &'static str {
        match self {
            GlobalReg::Id => "ID",
            GlobalReg::Version => "VERSION",
            GlobalReg::Caps => "CAPS",
            GlobalReg::VramSize => "VRAM_SIZE",
            GlobalReg::GttEntries => "GTT_ENTRIES",
            GlobalReg::Scratch => "SCRATCH",
            GlobalReg::IntStatus => "INT_STATUS",
            GlobalReg::IntMask => "INT_MASK",
            GlobalReg::IntEnable => "INT_ENABLE",
            GlobalReg::IntTrigger => "INT_TRIGGER",
            GlobalReg::FaultAddr => "FAULT_ADDR",
            GlobalReg::FaultReason => "FAULT_REASON",
            GlobalReg::Reset => "RESET",
        }
    }
}

/// `RESET` register: writing this value resets the whole device.
pub const RESET_MAGIC: u32 = 0x5256_0001;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_are_naturally_aligned_and_disjoint() {
        for r in GlobalReg::ALL {
            assert_eq!(r.offset() % r.width(), 0, "{} misaligned", r.name());
            for other in GlobalReg::ALL {
                if other != r {
                    let (a, b) = (r.offset(), r.offset() + r.width());
                    let (c, d) = (other.offset(), other.offset() + other.width());
                    assert!(b <= c || d <= a, "{} overlaps {}", r.name(), other.name());
                }
            }
        }
    }

    #[test]
    fn containing_finds_every_byte_and_nothing_else() {
        assert_eq!(GlobalReg::containing(0x23), Some(GlobalReg::Scratch));
        assert_eq!(GlobalReg::containing(0x0c), None);
        assert_eq!(GlobalReg::containing(0x50), None);
        assert_eq!(RVG_ID.to_be_bytes(), *b"RVG1");
    }
}

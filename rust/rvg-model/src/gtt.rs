//! GTT entries (`docs/hardware.md`, "GTT").
//!
//! 64 bits: bit 0 VALID, bit 1 LOCAL (the page is in VRAM; otherwise system
//! memory), bits 63:12 the page address (VRAM offset, or a DMA address), bits
//! 11:2 reserved, zero.

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
pub const PAGE_MASK: u64 = !(PAGE_SIZE - 1);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GttEntry(pub u64);

impl GttEntry {
    pub const VALID: u64 = 1 << 0;
    pub const LOCAL: u64 = 1 << 1;
    pub const RESERVED: u64 = 0xffc;

    pub fn new(addr: u64, local: bool) -> GttEntry {
        GttEntry((addr & PAGE_MASK) | Self::VALID | if local { Self::LOCAL } else { 0 })
    }

    /// An invalid entry whose address field still names `page` (the scratch
    /// page), so stray reads by the display land somewhere harmless.
    pub fn invalid_to(page: u64, local: bool) -> GttEntry {
        GttEntry((page & PAGE_MASK) | if local { Self::LOCAL } else { 0 })
    }

    pub fn valid(self) -> bool {
        self.0 & Self::VALID != 0
    }
    pub fn local(self) -> bool {
        self.0 & Self::LOCAL != 0
    }
    pub fn addr(self) -> u64 {
        self.0 & PAGE_MASK
    }
    pub fn reserved_bits(self) -> u64 {
        self.0 & Self::RESERVED
    }
}

/// Graphics address of GTT entry `index`.
pub fn gfx_addr(index: u32) -> u64 {
    u64::from(index) << PAGE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let e = GttEntry::new(0x1234_5000, true);
        assert!(e.valid() && e.local());
        assert_eq!(e.addr(), 0x1234_5000);
        assert_eq!(e.reserved_bits(), 0);
        assert_eq!(GttEntry(0x1234_5004).reserved_bits(), 4);
        let s = GttEntry::invalid_to(0x2000, true);
        assert!(!s.valid() && s.local() && s.addr() == 0x2000);
    }
}

//! The RVG-1 vGPU as seen through its two mapped BARs: typed register
//! access (each register at its own width), the GTT window, VRAM pixels.

use rvg_model::gtt::GttEntry;
use rvg_model::regs::{bar2, DispiReg, EngineReg, GlobalReg, Register, RVG_ID};

use crate::bar::MappedBar;
use crate::display::DispiRegs;
use crate::error::{bail, Result};

pub struct Device {
    /// BAR0: the vGPU's VRAM slice.
    pub vram: MappedBar,
    /// BAR2: registers and the GTT window.
    pub mmio: MappedBar,
}

/// The global registers that say what this GPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: u32,
    pub version: u32,
    pub vram_size: u64,
    pub gtt_entries: u32,
}

impl Identity {
    /// The registers agree with the docs and with the BAR0 size sysfs shows.
    pub fn check(&self, bar0_size: u64) -> Result<()> {
        if self.id != RVG_ID {
            bail!(
                "ID reads {:#010x}, expected {RVG_ID:#010x} (\"RVG1\")",
                self.id
            );
        }
        if self.version >> 16 != 1 {
            bail!(
                "VERSION {:#010x}: this program knows major version 1",
                self.version
            );
        }
        if self.vram_size != bar0_size {
            bail!(
                "VRAM_SIZE {:#x} differs from the BAR0 size {bar0_size:#x}",
                self.vram_size
            );
        }
        if self.gtt_entries == 0 || self.gtt_entries > bar2::GTT_WINDOW_ENTRIES {
            bail!(
                "GTT_ENTRIES {} is outside 1..={}",
                self.gtt_entries,
                bar2::GTT_WINDOW_ENTRIES
            );
        }
        Ok(())
    }
}

impl Device {
    fn read<R: Register>(&self, block: u64, reg: R) -> u64 {
        let off = block + reg.offset();
        match reg.width() {
            2 => u64::from(self.mmio.read16(off)),
            4 => u64::from(self.mmio.read32(off)),
            8 => self.mmio.read64(off),
            w => unreachable!("no {w}-byte registers"),
        }
    }

    fn write<R: Register>(&self, block: u64, reg: R, value: u64) {
        let off = block + reg.offset();
        match reg.width() {
            4 => self.mmio.write32(off, value as u32),
            8 => self.mmio.write64(off, value),
            w => unreachable!("no {w}-byte registers written here"),
        }
    }

    pub fn global(&self, reg: GlobalReg) -> u64 {
        self.read(bar2::GLOBAL, reg)
    }

    pub fn set_global(&self, reg: GlobalReg, value: u64) {
        self.write(bar2::GLOBAL, reg, value)
    }

    pub fn engine(&self, reg: EngineReg) -> u64 {
        self.read(bar2::ENGINE, reg)
    }

    pub fn set_engine(&self, reg: EngineReg, value: u64) {
        self.write(bar2::ENGINE, reg, value)
    }

    pub fn identity(&self) -> Identity {
        Identity {
            id: self.global(GlobalReg::Id) as u32,
            version: self.global(GlobalReg::Version) as u32,
            vram_size: self.global(GlobalReg::VramSize),
            gtt_entries: self.global(GlobalReg::GttEntries) as u32,
        }
    }

    pub fn dispi(&self) -> DispiRegs {
        let r = |reg: DispiReg| self.read(bar2::DISPI, reg) as u16;
        DispiRegs {
            id: r(DispiReg::Id),
            xres: r(DispiReg::Xres),
            yres: r(DispiReg::Yres),
            bpp: r(DispiReg::Bpp),
            enable: r(DispiReg::Enable),
            virt_width: r(DispiReg::VirtWidth),
            x_offset: r(DispiReg::XOffset),
            y_offset: r(DispiReg::YOffset),
        }
    }

    fn gtt_offset(index: u32) -> u64 {
        bar2::GTT + 8 * u64::from(index)
    }

    /// One 8-byte write: the entry takes effect at once.
    pub fn set_gtt(&self, index: u32, entry: GttEntry) {
        self.mmio.write64(Self::gtt_offset(index), entry.0)
    }

    pub fn gtt(&self, index: u32) -> GttEntry {
        GttEntry(self.mmio.read64(Self::gtt_offset(index)))
    }

    /// The 32-bit pixel at VRAM offset `offset`.
    pub fn vram_pixel(&self, offset: u64) -> u32 {
        self.vram.read32(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_checks() {
        let good = Identity {
            id: RVG_ID,
            version: 0x0001_0000,
            vram_size: 64 << 20,
            gtt_entries: 32768,
        };
        assert!(good.check(64 << 20).is_ok());
        assert!(good
            .check(32 << 20)
            .unwrap_err()
            .to_string()
            .contains("BAR0"));
        assert!(Identity { id: 0, ..good }.check(64 << 20).is_err());
        assert!(Identity {
            version: 0x0002_0000,
            ..good
        }
        .check(64 << 20)
        .is_err());
        assert!(Identity {
            gtt_entries: 0,
            ..good
        }
        .check(64 << 20)
        .is_err());
        assert!(Identity {
            gtt_entries: 1 << 20,
            ..good
        }
        .check(64 << 20)
        .is_err());
    }
}

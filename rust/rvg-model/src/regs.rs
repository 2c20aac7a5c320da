//! The RVG-1 register map. Names and offsets mirror `docs/hardware.md`.

/// PCI identity shared by both models.
pub mod pci {
    pub const VENDOR_ID: u16 = 0x1234;
    /// The vGPU answers as a bochs-compatible display so stock guests bind it.
    pub const DEVICE_ID_VGPU: u16 = 0x1111;
    /// The raw model has an ID of its own: no guest display driver binds it.
    pub const DEVICE_ID_HW: u16 = 0x5256;
    /// An SR-IOV VF of the raw model (the PF's SR-IOV capability says so).
    pub const DEVICE_ID_HW_VF: u16 = 0x5257;
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
    pub const EDID_SIZE: u64 = 0x400;
    pub const VGA_PORTS: u64 = 0x0400;
    pub const VGA_PORTS_SIZE: u64 = 0x20;
    pub const DISPI: u64 = 0x0500;
    pub const DISPI_SIZE: u64 = 0x18;
    pub const QEMU_EXT: u64 = 0x0600;
    pub const QEMU_EXT_SIZE: u64 = 0x8;
    pub const GLOBAL: u64 = 0x1000;
    pub const ENGINE: u64 = 0x2000;
    pub const DISPLAY: u64 = 0x3000;
    /// A PF's SR-IOV block: only a GPU with VFs, and only its PF, has it.
    pub const SRIOV: u64 = 0x4000;
    /// Size of each register block.
    pub const BLOCK_SIZE: u64 = 0x1000;
    pub const GTT: u64 = 0x10_0000;
    /// Entries the GTT window can hold.
    pub const GTT_WINDOW_ENTRIES: u32 = ((SIZE - GTT) / 8) as u32;
}

/// A register block of BAR2: base, size, and how to name an offset in it.
type Bar2Block = (u64, u64, fn(u64) -> Bar2Target);

/// Which part of BAR2 an offset falls in, with the offset inside that part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar2Target {
    Edid(u64),
    VgaPorts(u64),
    Dispi(u64),
    QemuExt(u64),
    Global(u64),
    Engine(u64),
    Display(u64),
    Sriov(u64),
    /// GTT entry `index`, byte `within` of it.
    Gtt {
        index: u64,
        within: u64,
    },
    Unassigned,
}

impl Bar2Target {
    #[inline(always)]
    pub fn decode(offset: u64) -> Bar2Target {
        use bar2::*;
        if let Some((index, within)) = Self::gtt_slot(offset) {
            return Bar2Target::Gtt { index, within };
        }
        // A register access picks its 4 KiB page first: one of the three
        // blocks, or the page of the small bochs-compatible areas.
        match Self::register_block(offset) {
            Bar2Target::Unassigned if offset < BLOCK_SIZE => Self::decode_first_page(offset),
            target => target,
        }
    }

    /// The register blocks' part of `decode`: `Global`, `Engine`,
    /// `Display` or `Sriov` for an offset in one of their pages, else
    /// `Unassigned`.
    #[inline(always)]
    pub fn register_block(offset: u64) -> Bar2Target {
        use bar2::*;
        let rel = offset % BLOCK_SIZE;
        match offset / BLOCK_SIZE {
            page if page == GLOBAL / BLOCK_SIZE => Bar2Target::Global(rel),
            page if page == ENGINE / BLOCK_SIZE => Bar2Target::Engine(rel),
            page if page == DISPLAY / BLOCK_SIZE => Bar2Target::Display(rel),
            page if page == SRIOV / BLOCK_SIZE => Bar2Target::Sriov(rel),
            _ => Bar2Target::Unassigned,
        }
    }

    /// The GTT window's part of `decode`: the entry `offset` falls in and
    /// the byte within it, or None below the window.
    #[inline(always)]
    pub fn gtt_slot(offset: u64) -> Option<(u64, u64)> {
        let rel = offset.checked_sub(bar2::GTT)?;
        Some((rel / 8, rel % 8))
    }

    fn decode_first_page(offset: u64) -> Bar2Target {
        use bar2::*;
        let inside =
            |base: u64, size: u64| (base..base + size).contains(&offset).then(|| offset - base);
        let areas: [Bar2Block; 4] = [
            (EDID, EDID_SIZE, Bar2Target::Edid),
            (VGA_PORTS, VGA_PORTS_SIZE, Bar2Target::VgaPorts),
            (DISPI, DISPI_SIZE, Bar2Target::Dispi),
            (QEMU_EXT, QEMU_EXT_SIZE, Bar2Target::QemuExt),
        ];
        areas
            .into_iter()
            .find_map(|(base, size, target)| inside(base, size).map(target))
            .unwrap_or(Bar2Target::Unassigned)
    }
}

/// `ID` register value: "RVG1" in ASCII, most significant byte first.
pub const RVG_ID: u32 = u32::from_be_bytes(*b"RVG1");
/// `VERSION`: major in bits 31:16, minor in 15:0.
pub const RVG_VERSION: u32 = 1 << 16;
/// `RESET` register: writing this value resets the whole device.
pub const RESET_MAGIC: u32 = 0x5256_0001;

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

/// A register block: an enum of registers with offset, width, kind, name.
pub trait Register: Copy + Eq + 'static {
    const ALL: &'static [Self];
    fn offset(self) -> u64;
    /// Width in bytes.
    fn width(self) -> u64;
    fn kind(self) -> RegKind;
    fn name(self) -> &'static str;
    /// Its place in `ALL`.
    fn index(self) -> usize;
    /// The register that contains block offset `offset`, if any.
    fn containing(offset: u64) -> Option<Self>;
}

/// Bytes of a block that register decoding covers: every block's registers
/// end below this (checked when the tables are built).
const DECODE_SPAN: usize = 0x80;
/// A byte no register covers.
const NO_REGISTER: u8 = u8::MAX;
/// Registers a block may have: a `RegFile` holds this many values.
pub const MAX_REGISTERS: usize = 32;

/// For each byte of a block, the place in the block's table of the register
/// covering it, or `NO_REGISTER`; from `(offset, width)` per register.
/// Evaluated at compile time: a register past `DECODE_SPAN` or two that
/// overlap stop the build.
const fn place_table(regs: &[(u64, u64)]) -> [u8; DECODE_SPAN] {
    assert!(
        regs.len() <= MAX_REGISTERS,
        "more than MAX_REGISTERS registers"
    );
    let mut table = [NO_REGISTER; DECODE_SPAN];
    let mut place = 0;
    while place < regs.len() {
        let (offset, width) = regs[place];
        assert!(
            offset + width <= DECODE_SPAN as u64,
            "register beyond DECODE_SPAN"
        );
        let mut byte = offset as usize;
        while byte < (offset + width) as usize {
            assert!(table[byte] == NO_REGISTER, "registers overlap");
            table[byte] = place as u8;
            byte += 1;
        }
        place += 1;
    }
    table
}

/// Declare a register block: `name = offset, width, kind, "NAME"` per line.
macro_rules! register_block {
    ($(#[$meta:meta])* $block:ident { $($reg:ident = $off:expr, $width:expr, $kind:ident, $name:expr;)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $block { $($reg,)* }

        impl Register for $block {
            const ALL: &'static [Self] = &[$($block::$reg,)*];
            #[inline(always)]
            fn offset(self) -> u64 { match self { $($block::$reg => $off,)* } }
            #[inline(always)]
            fn width(self) -> u64 { match self { $($block::$reg => $width,)* } }
            #[inline]
            fn kind(self) -> RegKind { match self { $($block::$reg => RegKind::$kind,)* } }
            fn name(self) -> &'static str { match self { $($block::$reg => $name,)* } }
            #[inline]
            fn index(self) -> usize { self as usize }
            // Every register access decodes its offset: one load from a
            // table built at compile time, not a search.
            #[inline(always)]
            fn containing(offset: u64) -> Option<Self> {
                const PLACES: [u8; DECODE_SPAN] = place_table(&[$(($off, $width),)*]);
                let place = *PLACES.get(usize::try_from(offset).ok()?)?;
                Self::ALL.get(usize::from(place)).copied()
            }
        }
    };
}

register_block! {
    /// The global block, at `bar2::GLOBAL`.
    GlobalReg {
        Id = 0x00, 4, ReadOnly, "ID";
        Version = 0x04, 4, ReadOnly, "VERSION";
        Caps = 0x08, 4, ReadOnly, "CAPS";
        VramSize = 0x10, 8, ReadOnly, "VRAM_SIZE";
        GttEntries = 0x18, 4, ReadOnly, "GTT_ENTRIES";
        Scratch = 0x20, 8, ReadWrite, "SCRATCH";
        IntStatus = 0x30, 4, WriteOneToClear, "INT_STATUS";
        IntMask = 0x34, 4, ReadWrite, "INT_MASK";
        IntEnable = 0x38, 4, ReadWrite, "INT_ENABLE";
        IntTrigger = 0x3c, 4, WriteOnly, "INT_TRIGGER";
        FaultAddr = 0x40, 8, ReadOnly, "FAULT_ADDR";
        FaultReason = 0x48, 4, ReadOnly, "FAULT_REASON";
        Reset = 0x4c, 4, WriteOnly, "RESET";
        GttFaults = 0x50, 4, ReadOnly, "GTT_FAULTS";
    }
}

register_block! {
    /// The engine block, at `bar2::ENGINE`.
    EngineReg {
        RingBase = 0x00, 8, ReadWrite, "RING_BASE";
        RingSize = 0x08, 4, ReadWrite, "RING_SIZE";
        RingHead = 0x0c, 4, ReadOnly, "RING_HEAD";
        RingTail = 0x10, 4, ReadWrite, "RING_TAIL";
        RingCtl = 0x14, 4, ReadWrite, "RING_CTL";
        Seqno = 0x18, 4, ReadOnly, "SEQNO";
        Error = 0x1c, 4, ReadOnly, "ERROR";
        ErrorAddr = 0x20, 8, ReadOnly, "ERROR_ADDR";
        RingResume = 0x28, 4, ReadWrite, "RING_RESUME";
    }
}

register_block! {
    /// The display plane block, at `bar2::DISPLAY`.
    DisplayReg {
        PlaneCtl = 0x00, 4, ReadWrite, "PLANE_CTL";
        PlaneFormat = 0x04, 4, ReadWrite, "PLANE_FORMAT";
        PlaneBase = 0x08, 8, ReadWrite, "PLANE_BASE";
        PlaneWidth = 0x10, 4, ReadWrite, "PLANE_WIDTH";
        PlaneHeight = 0x14, 4, ReadWrite, "PLANE_HEIGHT";
        PlaneStride = 0x18, 4, ReadWrite, "PLANE_STRIDE";
        FlipCount = 0x1c, 4, ReadOnly, "FLIP_COUNT";
    }
}

register_block! {
    /// A PF's SR-IOV block, at `bar2::SRIOV`: the VFs' partitions, each
    /// function's engine quantum in microseconds (`QUANTUM_PF`, then VF 0
    /// to 15; only those of VFs the GPU offers answer), and how long past
    /// its quantum a function may go on without yielding while another
    /// waits (`PREEMPT_TIMEOUT_US`, 0: for ever).
    SriovReg {
        TotalVfs = 0x00, 4, ReadOnly, "TOTAL_VFS";
        VfGttEntries = 0x04, 4, ReadOnly, "VF_GTT_ENTRIES";
        VfVramSize = 0x08, 8, ReadOnly, "VF_VRAM_SIZE";
        QuantumPf = 0x10, 4, ReadWrite, "QUANTUM_PF";
        QuantumVf0 = 0x14, 4, ReadWrite, "QUANTUM_VF0";
        QuantumVf1 = 0x18, 4, ReadWrite, "QUANTUM_VF1";
        QuantumVf2 = 0x1c, 4, ReadWrite, "QUANTUM_VF2";
        QuantumVf3 = 0x20, 4, ReadWrite, "QUANTUM_VF3";
        QuantumVf4 = 0x24, 4, ReadWrite, "QUANTUM_VF4";
        QuantumVf5 = 0x28, 4, ReadWrite, "QUANTUM_VF5";
        QuantumVf6 = 0x2c, 4, ReadWrite, "QUANTUM_VF6";
        QuantumVf7 = 0x30, 4, ReadWrite, "QUANTUM_VF7";
        QuantumVf8 = 0x34, 4, ReadWrite, "QUANTUM_VF8";
        QuantumVf9 = 0x38, 4, ReadWrite, "QUANTUM_VF9";
        QuantumVf10 = 0x3c, 4, ReadWrite, "QUANTUM_VF10";
        QuantumVf11 = 0x40, 4, ReadWrite, "QUANTUM_VF11";
        QuantumVf12 = 0x44, 4, ReadWrite, "QUANTUM_VF12";
        QuantumVf13 = 0x48, 4, ReadWrite, "QUANTUM_VF13";
        QuantumVf14 = 0x4c, 4, ReadWrite, "QUANTUM_VF14";
        QuantumVf15 = 0x50, 4, ReadWrite, "QUANTUM_VF15";
        PreemptTimeoutUs = 0x54, 4, ReadWrite, "PREEMPT_TIMEOUT_US";
    }
}

impl SriovReg {
    /// The function a `QUANTUM_*` register sets (0 the PF, 1 + n VF n).
    pub fn quantum_of(self) -> Option<usize> {
        let first = SriovReg::QuantumPf.index();
        (first..=SriovReg::QuantumVf15.index())
            .contains(&self.index())
            .then(|| self.index() - first)
    }
}

register_block! {
    /// Bochs DISPI registers, 16 bits each at `bar2::DISPI + 2 * index`.
    DispiReg {
        Id = 0x00, 2, ReadOnly, "DISPI_ID";
        Xres = 0x02, 2, ReadWrite, "DISPI_XRES";
        Yres = 0x04, 2, ReadWrite, "DISPI_YRES";
        Bpp = 0x06, 2, ReadWrite, "DISPI_BPP";
        Enable = 0x08, 2, ReadWrite, "DISPI_ENABLE";
        Bank = 0x0a, 2, ReadWrite, "DISPI_BANK";
        VirtWidth = 0x0c, 2, ReadWrite, "DISPI_VIRT_WIDTH";
        VirtHeight = 0x0e, 2, ReadWrite, "DISPI_VIRT_HEIGHT";
        XOffset = 0x10, 2, ReadWrite, "DISPI_X_OFFSET";
        YOffset = 0x12, 2, ReadWrite, "DISPI_Y_OFFSET";
        VideoMemory64k = 0x14, 2, ReadOnly, "DISPI_VIDEO_MEMORY_64K";
    }
}

register_block! {
    /// QEMU's extended bochs registers, at `bar2::QEMU_EXT`.
    QemuExtReg {
        Size = 0x00, 4, ReadOnly, "QEXT_SIZE";
        Endian = 0x04, 4, ReadWrite, "QEXT_ENDIAN";
    }
}

/// `DISPI_ID` value of the newest bochs interface.
pub const DISPI_ID5: u16 = 0xb0c5;
/// `QEXT_ENDIAN` values.
pub const QEXT_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;
pub const QEXT_BIG_ENDIAN: u32 = 0xbebe_bebe;

/// `DISPI_ENABLE` bits.
pub mod dispi_enable {
    pub const ENABLED: u16 = 0x01;
    pub const GETCAPS: u16 = 0x02;
    pub const DAC_8BIT: u16 = 0x20;
    pub const LFB_ENABLED: u16 = 0x40;
    pub const NOCLEARMEM: u16 = 0x80;
}

/// `PLANE_CTL` bits.
pub mod plane_ctl {
    pub const ENABLE: u32 = 1 << 0;
}

/// `PLANE_FORMAT` values: DRM fourcc codes, so a driver passes its own.
pub mod plane_format {
    const fn fourcc(code: &[u8; 4]) -> u32 {
        u32::from_le_bytes(*code)
    }
    /// 32-bit x:R:G:B, little endian (bytes B, G, R, x).
    pub const XRGB8888: u32 = fourcc(b"XR24");
    /// 16-bit R:G:B 5:6:5, little endian.
    pub const RGB565: u32 = fourcc(b"RG16");
}

/// `FAULT_REASON` codes.
pub mod fault {
    /// A GTT entry had bits set that must be zero.
    pub const GTT_RESERVED_BITS: u32 = 0x10;
    /// A system-memory GTT entry pointed outside guest RAM (MMIO, ROM, nothing).
    pub const GTT_NOT_GUEST_RAM: u32 = 0x11;
    /// A local GTT entry pointed beyond the VRAM slice.
    pub const GTT_OUTSIDE_VRAM: u32 = 0x12;
    /// Guest RAM behind a GTT entry went away.
    pub const GTT_RAM_REMOVED: u32 = 0x13;

    /// Every reason the device reports.
    pub const ALL: &[u32] = &[
        GTT_RESERVED_BITS,
        GTT_NOT_GUEST_RAM,
        GTT_OUTSIDE_VRAM,
        GTT_RAM_REMOVED,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_block<R: Register + std::fmt::Debug>() {
        for (i, &r) in R::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{} out of place", r.name());
        }
        // The table lookup finds what a walk of the table finds, for
        // every byte of the block and past it.
        let end = R::ALL.iter().map(|r| r.offset() + r.width()).max().unwrap();
        for offset in 0..end + 64 {
            let walked = R::ALL
                .iter()
                .copied()
                .find(|r| (r.offset()..r.offset() + r.width()).contains(&offset));
            assert_eq!(R::containing(offset), walked, "offset {offset:#x}");
        }
        assert_eq!(R::containing(u64::MAX), None);
        for &r in R::ALL {
            assert_eq!(r.offset() % r.width(), 0, "{} misaligned", r.name());
            for &other in R::ALL {
                if other != r {
                    let (a, b) = (r.offset(), r.offset() + r.width());
                    let (c, d) = (other.offset(), other.offset() + other.width());
                    assert!(b <= c || d <= a, "{} overlaps {}", r.name(), other.name());
                }
            }
        }
    }

    #[test]
    fn registers_are_naturally_aligned_and_disjoint() {
        check_block::<GlobalReg>();
        check_block::<SriovReg>();
        check_block::<EngineReg>();
        check_block::<DisplayReg>();
        check_block::<DispiReg>();
        check_block::<QemuExtReg>();
        assert!(DispiReg::ALL
            .iter()
            .all(|r| r.offset() + r.width() <= bar2::DISPI_SIZE));
    }

    #[test]
    fn bar2_decoding() {
        assert_eq!(Bar2Target::decode(0x3ff), Bar2Target::Edid(0x3ff));
        assert_eq!(Bar2Target::decode(0x400), Bar2Target::VgaPorts(0));
        assert_eq!(Bar2Target::decode(0x420), Bar2Target::Unassigned);
        assert_eq!(Bar2Target::decode(0x502), Bar2Target::Dispi(2));
        assert_eq!(Bar2Target::decode(0x604), Bar2Target::QemuExt(4));
        assert_eq!(Bar2Target::decode(0x1fff), Bar2Target::Global(0xfff));
        assert_eq!(Bar2Target::decode(0x3010), Bar2Target::Display(0x10));
        assert_eq!(Bar2Target::decode(0x4008), Bar2Target::Sriov(8));
        assert_eq!(Bar2Target::decode(0x5000), Bar2Target::Unassigned);
        assert_eq!(
            Bar2Target::decode(0x10_000c),
            Bar2Target::Gtt {
                index: 1,
                within: 4
            }
        );
    }

    #[test]
    fn containing_finds_every_byte_and_nothing_else() {
        assert_eq!(GlobalReg::containing(0x23), Some(GlobalReg::Scratch));
        assert_eq!(GlobalReg::containing(0x0c), None);
        assert_eq!(GlobalReg::containing(0x54), None);
        assert_eq!(RVG_ID.to_be_bytes(), *b"RVG1");
        assert_eq!(bar2::GTT_WINDOW_ENTRIES, 128 * 1024);
    }
}

//! The vGPU's virtual register file: every register the guest sees in
//! BAR2 but the GTT window, as plain state.
//!
//! A read or write here touches nothing but this struct; what else must
//! happen (shadow a GTT entry, tell the scheduler, scan a submission, reset
//! the device, drive the interrupt line) comes back as a [`RegWrite`] for
//! the vGPU to carry out.

use rvg_model::access::Lane;
use rvg_model::block::{decode, find, RegError, RegFile};
use rvg_model::engine::{ring_ctl, EngineError, EngineState, EngineWrite};
use rvg_model::global::{GlobalBlock, GlobalWrite};
use rvg_model::irq::{IntSource, IrqLine};
use rvg_model::regs::{
    bar2, Bar2Target, DispiReg, DisplayReg, EngineReg, QemuExtReg, Register, DISPI_ID5,
    QEXT_LITTLE_ENDIAN,
};

use crate::display::edid::{self, EDID_BLOCK};
use crate::display::{DispiRegs, PlaneRegs};
use crate::shared::Progress;

/// What a register read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegRead {
    Value(u64),
    /// The GTT window: the guest's entries are the shadow's.
    Gtt {
        index: u64,
        within: u64,
    },
}

/// What a register write asks of the vGPU once the registers changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegWrite {
    /// Nothing beyond the registers.
    Done,
    /// The interrupt state changed: the line is now this.
    Interrupt(IrqLine),
    /// The GTT window: the shadow's business.
    Gtt { index: u64, within: u64 },
    /// An engine register: reset the context, tell the scheduler whether
    /// the engine is enabled, scan what the tail now covers.
    Engine {
        reset: bool,
        enabled: Option<bool>,
        kick: bool,
    },
    /// The global `RESET` register: reset the whole device.
    DeviceReset,
}

/// Every register a reset puts back, and the EDID blob it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtRegs {
    pub global: GlobalBlock,
    pub engine: EngineState,
    pub display: RegFile<DisplayReg>,
    pub dispi: RegFile<DispiReg>,
    pub(super) qext_endian: u32,
    pub(super) vga_ports: [u8; bar2::VGA_PORTS_SIZE as usize],
    edid: [u8; EDID_BLOCK],
    vram_size: u64,
    gtt_entries: u32,
}

impl VirtRegs {
    /// Power-on registers of a vGPU with `vram_size` bytes of VRAM and
    /// `gtt_entries` GTT entries whose monitor prefers `mode`.
    pub fn new(vram_size: u64, gtt_entries: u32, mode: (u32, u32)) -> VirtRegs {
        VirtRegs::power_on(vram_size, gtt_entries, edid::edid(mode.0, mode.1))
    }

    fn power_on(vram_size: u64, gtt_entries: u32, edid: [u8; EDID_BLOCK]) -> VirtRegs {
        VirtRegs {
            global: GlobalBlock::new(vram_size, gtt_entries),
            engine: EngineState::default(),
            display: RegFile::default(),
            dispi: RegFile::default(),
            qext_endian: QEXT_LITTLE_ENDIAN,
            vga_ports: [0; bar2::VGA_PORTS_SIZE as usize],
            edid,
            vram_size,
            gtt_entries,
        }
    }

    /// Every register back to its power-on value; the EDID is the
    /// monitor's, not a register.
    pub fn reset(&mut self) {
        *self = VirtRegs::power_on(self.vram_size, self.gtt_entries, self.edid);
    }

    pub fn irq_line(&self) -> IrqLine {
        self.global.irq.current()
    }

    /// The common read, with no refusal to explain: a register of the
    /// global, engine or display block, accessed inside it. None for every
    /// other access, which `read` serves or refuses.
    #[inline(always)]
    pub fn read_register(&self, offset: u64, size: u32) -> Option<u64> {
        match Bar2Target::register_block(offset) {
            Bar2Target::Global(rel) => {
                find(rel, size).map(|(reg, lane)| lane.extract(self.global.value(reg)))
            }
            Bar2Target::Engine(rel) => {
                find(rel, size).map(|(reg, lane)| lane.extract(self.engine.reg(reg)))
            }
            Bar2Target::Display(rel) => {
                find(rel, size).map(|(reg, lane)| lane.extract(self.display.get(reg)))
            }
            _ => None,
        }
    }

    /// A guest read: the value, or why the access is refused.
    pub fn read(&self, offset: u64, size: u32) -> Result<RegRead, RegError> {
        let value = match Bar2Target::decode(offset) {
            Bar2Target::Global(rel) => self.global.read(rel, size),
            Bar2Target::Engine(rel) => self.engine.read(rel, size),
            Bar2Target::Display(rel) => self.display.read(rel, size),
            Bar2Target::Gtt { index, within } => return Ok(RegRead::Gtt { index, within }),
            compat => self.read_compat(compat, offset, size),
        };
        value.map(RegRead::Value)
    }

    /// The bochs-compatible areas of the first page.
    fn read_compat(&self, target: Bar2Target, offset: u64, size: u32) -> Result<u64, RegError> {
        match target {
            Bar2Target::Edid(rel) => bytes_read("EDID", &self.edid, rel, size),
            Bar2Target::VgaPorts(rel) => bytes_read("VGA", &self.vga_ports, rel, size),
            Bar2Target::Dispi(rel) => {
                self.dispi
                    .read(rel, size)
                    .map(|v| match DispiReg::containing(rel) {
                        Some(DispiReg::Id) => u64::from(DISPI_ID5),
                        Some(DispiReg::VideoMemory64k) => self.vram_size >> 16,
                        _ => v,
                    })
            }
            Bar2Target::QemuExt(rel) => decode::<QemuExtReg>(rel, size).map(|(reg, lane)| {
                lane.extract(match reg {
                    QemuExtReg::Size => bar2::QEMU_EXT_SIZE,
                    QemuExtReg::Endian => u64::from(self.qext_endian),
                })
            }),
            _ => Err(RegError::NoRegister { offset, size }),
        }
    }

    /// The common write: one whose stored value is all it changes (each
    /// block's `store`: SCRATCH, the ring's base and size, the plane's
    /// registers but its base, which flips). Done, and true; false, with
    /// nothing changed, for every other write, which `write` carries out.
    #[inline(always)]
    pub fn store(&mut self, offset: u64, value: u64, size: u32) -> bool {
        match Bar2Target::register_block(offset) {
            Bar2Target::Global(rel) => {
                find(rel, size).is_some_and(|(reg, lane)| self.global.store(reg, lane, value))
            }
            Bar2Target::Engine(rel) => find(rel, size).is_some_and(|(reg, lane)| {
                reg != EngineReg::RingResume && self.engine.store(reg, lane, value)
            }),
            Bar2Target::Display(rel) => find(rel, size).is_some_and(|(reg, lane)| {
                reg != DisplayReg::PlaneBase && self.display.store(reg, lane, value)
            }),
            _ => false,
        }
    }

    /// A guest write: what else it asks for, or why it is refused.
    #[inline]
    pub fn write(&mut self, offset: u64, value: u64, size: u32) -> Result<RegWrite, RegError> {
        match Bar2Target::decode(offset) {
            Bar2Target::Global(rel) => match self.global.write(rel, value, size)? {
                GlobalWrite::Stored => Ok(RegWrite::Done),
                GlobalWrite::Done(line) => Ok(RegWrite::Interrupt(line)),
                GlobalWrite::Trigger(src) => Ok(RegWrite::Interrupt(self.global.irq.raise(src))),
                GlobalWrite::Reset => Ok(RegWrite::DeviceReset),
            },
            Bar2Target::Engine(rel) => {
                // Preemption is the physical engine arbiter's: a vGPU's
                // engine is the scheduler's to preempt, not the guest's.
                if let Some((EngineReg::RingResume, _)) = find::<EngineReg>(rel, size) {
                    return Err(RegError::Refused(format!(
                        "RING_RESUME belongs to the physical GPU's engine arbiter, which a \
                         vGPU has not; write of {value:#x} ignored"
                    )));
                }
                let was_enabled = self.engine_enabled();
                let EngineWrite { reset, kick, .. } = self.engine.write(rel, value, size)?;
                self.engine.ctl &= !ring_ctl::PREEMPT;
                let enabled = self.engine_enabled();
                Ok(RegWrite::Engine {
                    reset,
                    enabled: (enabled != was_enabled).then_some(enabled),
                    kick,
                })
            }
            Bar2Target::Display(rel) => match self.display.write(rel, value, size)? {
                // Writing the surface address (its low half, or all of it)
                // latches a new surface: a flip.
                DisplayReg::PlaneBase if rel == DisplayReg::PlaneBase.offset() => {
                    let flips = self.display.get(DisplayReg::FlipCount);
                    self.display
                        .set(DisplayReg::FlipCount, flips.wrapping_add(1));
                    Ok(RegWrite::Interrupt(
                        self.global.irq.raise(IntSource::DISPLAY_FLIP),
                    ))
                }
                _ => Ok(RegWrite::Done),
            },
            Bar2Target::Gtt { index, within } => Ok(RegWrite::Gtt { index, within }),
            compat => self.write_compat(compat, offset, value, size),
        }
    }

    /// The bochs-compatible areas of the first page, out of the way of the
    /// three blocks' writes.
    #[inline(never)]
    fn write_compat(
        &mut self,
        target: Bar2Target,
        offset: u64,
        value: u64,
        size: u32,
    ) -> Result<RegWrite, RegError> {
        match target {
            Bar2Target::Edid(_) => Err(RegError::ReadOnly { reg: "EDID", value }),
            Bar2Target::VgaPorts(rel) => vga_write(&mut self.vga_ports, rel, value, size),
            Bar2Target::Dispi(rel) => self.dispi.write(rel, value, size).map(|_| RegWrite::Done),
            Bar2Target::QemuExt(rel) => self.qext_write(rel, value, size),
            _ => Err(RegError::NoRegister { offset, size }),
        }
    }

    fn qext_write(&mut self, rel: u64, value: u64, size: u32) -> Result<RegWrite, RegError> {
        let (reg, lane) = decode::<QemuExtReg>(rel, size)?;
        match reg {
            QemuExtReg::Size => Err(RegError::ReadOnly {
                reg: reg.name(),
                value,
            }),
            QemuExtReg::Endian => {
                self.qext_endian = lane.merge(u64::from(self.qext_endian), value) as u32;
                Ok(RegWrite::Done)
            }
        }
    }

    pub fn engine_enabled(&self) -> bool {
        self.engine.ctl & ring_ctl::ENABLE != 0
    }

    /// The virtual engine stops with `err` (the scanner refused a stream):
    /// latch it and raise its interrupts.
    pub fn engine_error(&mut self, err: EngineError) -> IrqLine {
        self.engine.error = err.code;
        self.engine.error_addr = err.addr;
        self.global.irq.raise(err.interrupts())
    }

    /// What the scheduler reports about the engine's work. Returns the
    /// interrupt line if the progress raised a source, with `message` set
    /// when a message is due.
    pub fn apply_progress(&mut self, p: &Progress) -> Option<IrqLine> {
        let e = &mut self.engine;
        if let Some(head) = p.head {
            e.head = head;
        }
        if let Some(seqno) = p.seqno {
            e.seqno = seqno;
        }
        if let Some(err) = p.error {
            e.error = err.code;
            e.error_addr = err.addr;
        }
        (!p.raise.is_empty()).then(|| self.global.irq.raise(p.raise))
    }

    /// The native plane's and the bochs DISPI mode's registers, for the
    /// display.
    pub fn scanout(&self) -> (PlaneRegs, DispiRegs) {
        let p = |reg| self.display.get(reg);
        let plane = PlaneRegs {
            ctl: p(DisplayReg::PlaneCtl) as u32,
            format: p(DisplayReg::PlaneFormat) as u32,
            base: p(DisplayReg::PlaneBase),
            width: p(DisplayReg::PlaneWidth) as u32,
            height: p(DisplayReg::PlaneHeight) as u32,
            stride: p(DisplayReg::PlaneStride) as u32,
        };
        let v = |reg| self.dispi.get(reg) as u16;
        let dispi = DispiRegs {
            xres: v(DispiReg::Xres),
            yres: v(DispiReg::Yres),
            bpp: v(DispiReg::Bpp),
            enable: v(DispiReg::Enable),
            virt_width: v(DispiReg::VirtWidth),
            x_offset: v(DispiReg::XOffset),
            y_offset: v(DispiReg::YOffset),
            endian: self.qext_endian,
        };
        (plane, dispi)
    }
}

/// A naturally aligned read of 1 to 8 bytes from a byte array block (the
/// EDID blob, the VGA ports); bytes past the array read as zero.
fn bytes_read(reg: &'static str, bytes: &[u8], rel: u64, size: u32) -> Result<u64, RegError> {
    let lane = Lane::new(rel, size, rel & !7, 8).map_err(|err| RegError::Access { reg, err })?;
    let base = ((rel & !7) as usize).min(bytes.len());
    let mut word = [0u8; 8];
    let n = (bytes.len() - base).min(8);
    word[..n].copy_from_slice(&bytes[base..base + n]);
    Ok(lane.extract(u64::from_le_bytes(word)))
}

/// The VGA port block: byte registers the bochs driver pokes (attribute
/// index, to unblank); stored and read back.
fn vga_write(ports: &mut [u8], rel: u64, value: u64, size: u32) -> Result<RegWrite, RegError> {
    Lane::new(rel, size, rel & !7, 8).map_err(|err| RegError::Access { reg: "VGA", err })?;
    let at = rel as usize;
    ports[at..at + size as usize].copy_from_slice(&value.to_le_bytes()[..size as usize]);
    Ok(RegWrite::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvg_model::engine::error;
    use rvg_model::regs::GlobalReg;

    fn regs() -> VirtRegs {
        VirtRegs::new(16 << 20, 32768, (640, 480))
    }

    /// The arbiter's preemption belongs to the physical GPU: a guest can
    /// neither request it nor forge where a command resumes.
    #[test]
    fn a_vgpu_has_no_preemption_registers() {
        let mut r = regs();
        let ctl = bar2::ENGINE + EngineReg::RingCtl.offset();
        let resume = bar2::ENGINE + EngineReg::RingResume.offset();
        let w = r.write(ctl, u64::from(ring_ctl::ENABLE | ring_ctl::PREEMPT), 4);
        assert!(matches!(w, Ok(RegWrite::Engine { .. })), "{w:?}");
        assert_eq!(r.engine.ctl, ring_ctl::ENABLE, "PREEMPT is not kept");
        for size in [4, 2, 1] {
            assert!(!r.store(resume, 7, size));
            let w = r.write(resume, 7, size);
            assert!(
                matches!(&w, Err(RegError::Refused(why)) if why.contains("RING_RESUME")),
                "{w:?}"
            );
        }
        assert_eq!(r.read(resume, 4), Ok(RegRead::Value(0)));
    }

    #[test]
    fn engine_writes_say_what_the_vgpu_must_do() {
        let mut r = regs();
        let ctl = bar2::ENGINE + EngineReg::RingCtl.offset();
        let tail = bar2::ENGINE + EngineReg::RingTail.offset();
        let w = r.write(ctl, u64::from(ring_ctl::ENABLE), 4);
        assert_eq!(
            w,
            Ok(RegWrite::Engine {
                reset: false,
                enabled: Some(true),
                kick: true
            })
        );
        let w = r.write(tail, 0x40, 4);
        assert_eq!(
            w,
            Ok(RegWrite::Engine {
                reset: false,
                enabled: None,
                kick: true
            })
        );
        let w = r.write(ctl, u64::from(ring_ctl::RESET), 4);
        assert_eq!(
            w,
            Ok(RegWrite::Engine {
                reset: true,
                enabled: Some(false),
                kick: true
            })
        );
    }

    #[test]
    fn the_gtt_window_and_device_reset_go_to_the_vgpu() {
        let mut r = regs();
        assert_eq!(
            r.write(bar2::GTT + 8 * 5 + 4, 1, 4),
            Ok(RegWrite::Gtt {
                index: 5,
                within: 4
            })
        );
        assert_eq!(
            r.read(bar2::GTT + 16, 8),
            Ok(RegRead::Gtt {
                index: 2,
                within: 0
            })
        );
        let reset = bar2::GLOBAL + GlobalReg::Reset.offset();
        assert_eq!(
            r.write(reset, u64::from(rvg_model::regs::RESET_MAGIC), 4),
            Ok(RegWrite::DeviceReset)
        );
    }

    #[test]
    fn a_plane_base_write_flips_and_interrupts() {
        let mut r = regs();
        let enable = bar2::GLOBAL + GlobalReg::IntEnable.offset();
        r.write(enable, u64::from(IntSource::DISPLAY_FLIP.bits()), 4)
            .unwrap();
        let base = bar2::DISPLAY + DisplayReg::PlaneBase.offset();
        let w = r.write(base, 0x10_0000, 8);
        assert_eq!(r.display.get(DisplayReg::FlipCount), 1);
        assert!(matches!(w, Ok(RegWrite::Interrupt(l)) if l.asserted));
        // The high half alone latches nothing.
        assert_eq!(r.write(base + 4, 0, 4), Ok(RegWrite::Done));
        assert_eq!(r.display.get(DisplayReg::FlipCount), 1);
    }

    /// The register path's shortcuts agree with the whole path: at every
    /// byte of the three blocks, for every access size, `read_register`
    /// declines or reads what `read` reads, and `store` declines having
    /// changed nothing, or leaves the registers as `write` does, with
    /// nothing more for the vGPU to do.
    #[test]
    fn the_shortcuts_agree_with_the_whole_path() {
        let mut r = regs();
        let scratch = bar2::GLOBAL + GlobalReg::Scratch.offset();
        let ring_base = bar2::ENGINE + EngineReg::RingBase.offset();
        let width = bar2::DISPLAY + DisplayReg::PlaneWidth.offset();
        for (at, v, size) in [
            (scratch, 0x1122_3344_5566_7788, 8),
            (ring_base, 0x8000, 8),
            (width, 640, 4),
        ] {
            r.write(at, v, size).unwrap();
        }
        let value = 0xa5a5_5a5a_0f0f_f0f0;
        let (mut reads, mut stores) = (0, 0);
        for block in [bar2::GLOBAL, bar2::ENGINE, bar2::DISPLAY] {
            for offset in block..block + 0x100 {
                for size in [0, 1, 2, 3, 4, 8, 16] {
                    if let Some(v) = r.read_register(offset, size) {
                        assert_eq!(r.read(offset, size), Ok(RegRead::Value(v)), "{offset:#x}");
                        reads += 1;
                    }
                    let (mut shortcut, mut whole) = (r.clone(), r.clone());
                    if shortcut.store(offset, value, size) {
                        let outcome = whole.write(offset, value, size);
                        let nothing_more = RegWrite::Engine {
                            reset: false,
                            enabled: None,
                            kick: false,
                        };
                        assert!(
                            matches!(outcome, Ok(w) if w == RegWrite::Done || w == nothing_more),
                            "{size} bytes at {offset:#x}: {outcome:?}"
                        );
                        assert_eq!(shortcut, whole, "{size} bytes at {offset:#x}");
                        stores += 1;
                    } else {
                        assert_eq!(shortcut, r, "{size} bytes at {offset:#x}");
                    }
                }
            }
        }
        assert!(reads > 100 && stores > 50, "{reads} reads, {stores} stores");
        assert!(r.store(scratch, 1, 4));
        let mask = bar2::GLOBAL + GlobalReg::IntMask.offset();
        let base = bar2::DISPLAY + DisplayReg::PlaneBase.offset();
        assert!(!r.store(mask, 1, 4) && !r.store(base, 0x1000, 8));
    }

    #[test]
    fn errors_and_progress_raise_their_sources() {
        let mut r = regs();
        let line = r.engine_error(EngineError::at(error::BAD_ADDRESS, 0x1000));
        assert_eq!(
            (r.engine.error, r.engine.error_addr),
            (error::BAD_ADDRESS, 0x1000)
        );
        assert!(!line.asserted, "sources not enabled");
        assert_eq!(
            r.global.irq.status(),
            IntSource::ENGINE_ERROR | IntSource::GTT_FAULT
        );
        let p = Progress {
            head: Some(0x20),
            seqno: Some(7),
            ..Progress::default()
        };
        assert_eq!(r.apply_progress(&p), None, "nothing raised");
        assert_eq!((r.engine.head, r.engine.seqno), (0x20, 7));
    }

    #[test]
    fn reset_keeps_the_edid_and_sizes() {
        let mut r = regs();
        let scratch = bar2::GLOBAL + GlobalReg::Scratch.offset();
        r.write(scratch, 5, 4).unwrap();
        let edid = r.read(0, 8);
        r.reset();
        assert_eq!(r.read(scratch, 4), Ok(RegRead::Value(0)));
        assert_eq!(r.read(0, 8), edid);
        let vmem = bar2::DISPI + 2 * DispiReg::VideoMemory64k as u64;
        assert_eq!(r.read(vmem, 2), Ok(RegRead::Value(256)));
    }
}

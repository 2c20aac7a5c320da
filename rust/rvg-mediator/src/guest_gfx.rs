//! The guest's graphics memory as its GTT maps it, read by the mediator:
//! what the scanner copies commands from and the display shows.
//!
//! Pages resolve through the shadow state (what the GPU would reach), never
//! through a half-written guest entry: a page of the VRAM slice through the
//! slice's mapping, a guest RAM page through QEMU's mapping of that RAM.

use rvg_model::gtt::PAGE_SIZE;
use rvg_vfio::{HostRange, Mapping};

use crate::display::{FrameMemory, GfxPage};
use crate::guest_mem::{GuestMemory, MemKind};
use crate::scan::GuestGfx;
use crate::shadow::{EntryState, GttShadow};

pub struct GuestView<'a> {
    pub gtt: &'a GttShadow,
    pub mem: &'a GuestMemory,
    pub vram: &'a Mapping,
}

/// Where the GPU would find a byte of graphics memory.
enum Source<'m> {
    /// At this offset in the VRAM slice.
    Vram(u64),
    /// At this offset in the host memory of guest RAM.
    Ram(&'m HostRange, u64),
}

impl GuestView<'_> {
    /// Where guest graphics address `addr` lies, valid for the rest of its
    /// page; None where the GPU would fault.
    fn source(&self, addr: u64) -> Option<Source<'_>> {
        let index = u32::try_from(addr / PAGE_SIZE).ok()?;
        let within = addr % PAGE_SIZE;
        match self.gtt.entry(index)?.1 {
            EntryState::Local { offset } => {
                // Shadowing refused any page outside the slice.
                debug_assert!(offset + PAGE_SIZE <= self.vram.len());
                Some(Source::Vram(offset + within))
            }
            // Guest RAM is out of reach with bus mastering off.
            EntryState::System { gpa } if self.gtt.system_access() => {
                let range = self.mem.lookup(gpa).filter(|r| r.kind == MemKind::Ram)?;
                Some(Source::Ram(range.host.as_ref()?, gpa - range.gpa + within))
            }
            EntryState::System { .. } | EntryState::Unmapped | EntryState::Rejected(_) => None,
        }
    }

    /// Copy from `addr` page by page; `missing` decides about a page the
    /// GPU would fault on (fill the part and go on, or stop).
    ///
    /// The memory stays mapped while the vGPU's state is locked: the VRAM
    /// slice lives as long as the vGPU, and guest RAM until the memory
    /// listener removes it (which takes the same lock). vCPUs may write it
    /// concurrently; the copy is a snapshot of plain bytes.
    fn copy(
        &self,
        mut addr: u64,
        mut buf: &mut [u8],
        missing: impl Fn(u64, &mut [u8]) -> Result<(), u64>,
    ) -> Result<(), u64> {
        while !buf.is_empty() {
            let n = buf.len().min((PAGE_SIZE - addr % PAGE_SIZE) as usize);
            let (now, rest) = buf.split_at_mut(n);
            let copied = match self.source(addr) {
                Some(Source::Vram(at)) => self.vram.read(at, now).is_ok(),
                Some(Source::Ram(host, at)) => host.read(at, now).is_ok(),
                None => false,
            };
            if !copied {
                missing(addr, now)?;
            }
            buf = rest;
            addr += n as u64;
        }
        Ok(())
    }
}

impl GuestGfx for GuestView<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        self.copy(addr, buf, |at, _| Err(at))
    }
}

impl FrameMemory for GuestView<'_> {
    fn gfx_page(&self, index: u64) -> GfxPage {
        let entry = u32::try_from(index)
            .ok()
            .and_then(|i| self.gtt.entry(i))
            .map(|(_, state)| state);
        match entry {
            Some(EntryState::Local { offset }) => GfxPage::Vram { offset },
            Some(EntryState::System { gpa })
                if self.gtt.system_access()
                    && self.mem.lookup(gpa).is_some_and(|r| r.kind == MemKind::Ram) =>
            {
                GfxPage::Ram
            }
            _ => GfxPage::Unmapped,
        }
    }

    fn read_vram(&self, offset: u64, buf: &mut [u8]) {
        // A concurrent guest write only changes the snapshot's bytes.
        if let Err(e) = self.vram.read(offset, buf) {
            panic!("display read past the VRAM slice: {e}");
        }
    }

    fn read_gfx(&self, addr: u64, buf: &mut [u8]) {
        // The GPU would fault there; the display shows black instead.
        let _ = self.copy(addr, buf, |_, part| {
            part.fill(0);
            Ok(())
        });
    }
}

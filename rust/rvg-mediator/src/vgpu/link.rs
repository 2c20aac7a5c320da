//! What ties a vGPU to its GPU while it is attached, and what the vGPU
//! asks of the GPU through it: shadow GTT entries, scanned submissions.

use std::io;
use std::sync::Arc;

use rvg_model::effects::Effects;
use rvg_model::engine::{error, EngineState};
use rvg_model::gtt::{gfx_addr, GttEntry};
use rvg_model::regs::bar2;
use rvg_vfio::contract::{Mapping, Region};
use vmm_sys_util::eventfd::EventFd;

use super::inbox::Inbox;
use super::{State, VgpuConfig};
use crate::guest_gfx::GuestView;
use crate::scan::Scanner;
use crate::shadow::{PhysGtt, SliceLayout};
use crate::shared::{CtxId, SharedGpu};

/// The physical GTT through the contract: entries in BAR2's GTT window.
pub(super) struct ContractGtt<'a>(pub(super) &'a Region);

impl PhysGtt for ContractGtt<'_> {
    fn write(&mut self, index: u32, entry: GttEntry) -> io::Result<()> {
        self.0.write_u64(bar2::GTT + u64::from(index) * 8, entry.0)
    }
    fn read(&mut self, index: u32) -> io::Result<GttEntry> {
        self.0
            .read_u64(bar2::GTT + u64::from(index) * 8)
            .map(GttEntry)
    }
}

/// What ties the vGPU to its GPU, fixed while it is attached.
pub(super) struct Link {
    pub(super) config: VgpuConfig,
    pub(super) gpu: Arc<SharedGpu>,
    pub(super) layout: SliceLayout,
    pub(super) ctx: CtxId,
    pub(super) vram: Mapping,
    /// Signalled by the scheduler thread when its progress raised an
    /// interrupt; `event` delivers it on the main loop.
    pub(super) events: Arc<EventFd>,
    /// The scheduler's progress, until the vGPU takes it in.
    pub(super) inbox: Arc<Inbox>,
}

impl Link {
    /// Scan what the guest added to its ring since the last submission and
    /// hand the shadow copy to the scheduler; or stop the virtual engine
    /// with the scanner's error. The physical GPU sees nothing of a
    /// rejected stream.
    pub(super) fn submit(&self, st: &mut State, fx: &mut Effects) {
        let e = st.regs.engine;
        if !st.regs.engine_enabled() || e.error != error::NONE || st.scan_head == e.tail {
            return;
        }
        let scanner = Scanner {
            space: self.layout.gfx_space(),
            reloc: gfx_addr(self.layout.gtt_base),
        };
        let view = GuestView {
            gtt: &st.gtt,
            mem: &st.mem,
            vram: &self.vram,
        };
        let ring = EngineState {
            head: st.scan_head,
            ..e
        };
        match scanner.scan(&view, &ring) {
            Ok(work) => {
                st.streams.scanned_commands += work.guest_commands;
                st.scan_head = e.tail;
                self.gpu.scheduler().submit(self.ctx, st.generation, work);
            }
            Err(err) => {
                st.streams.rejected_streams += 1;
                fx.guest_error(format!(
                    "command stream [{:#x}, {:#x}) of the ring rejected: ERROR {} at {:#x}",
                    st.scan_head, e.tail, err.code, err.addr
                ));
                fx.irq = Some(st.regs.engine_error(err));
            }
        }
    }
}

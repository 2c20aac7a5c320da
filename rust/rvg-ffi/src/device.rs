//! The object behind the opaque `RvgDevice` pointer: one of the two models,
//! the host services, and the broken flag the panic guard sets.

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rvg_gpu::Gpu;
use rvg_mediator::shared::Policy;
use rvg_mediator::{MemKind, Vgpu};
use rvg_model::block::{refused_read, RegError};
use rvg_model::effects::{Diag, Effects};
use rvg_model::IrqLine;
use rvg_vfio::HostRange;

use crate::bql::BqlCell;
use crate::host::{Host, HostDisplay, LogKind};
use crate::sys;

// The vGPU in place, not boxed: every register access reaches it with
// one dependent load fewer. The device is boxed whole anyway.
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// `rust-vgpu-hw`: the GPU itself, registers and all; or, as
    /// `rust-vgpu-hw-vf`, one of its SR-IOV VFs.
    Hw(Arc<Gpu>),
    /// `rust-vgpu`: the mediated vGPU, touched only under the BQL.
    Vgpu(BqlCell<Vgpu>),
}

pub struct FfiDevice {
    pub model: Model,
    pub host: Host,
    /// Set when a panic was caught: the device then reads as all ones and
    /// ignores writes, like a function that dropped off the bus, until reset.
    broken: AtomicBool,
}

impl FfiDevice {
    pub fn new(model: Model, host: Host) -> FfiDevice {
        FfiDevice {
            model,
            host,
            broken: AtomicBool::new(false),
        }
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    #[cold]
    #[inline(never)]
    pub fn set_broken(&self, why: &str) {
        self.broken.store(true, Ordering::Release);
        self.host.log(
            LogKind::Error,
            &format!("internal error, device disabled until reset: {why}"),
        );
    }

    pub fn clear_broken(&self) {
        self.broken.store(false, Ordering::Release);
    }

    /// Carry out what the model asked for; no model lock is held here.
    /// Most register accesses ask for nothing: that case is a test and a
    /// return, inlined into every access.
    #[inline]
    pub fn apply(&self, fx: Effects) {
        if fx.diags.is_empty() && fx.irq.is_none() {
            return;
        }
        self.apply_slow(fx);
    }

    #[cold]
    fn apply_slow(&self, fx: Effects) {
        for diag in &fx.diags {
            match diag {
                Diag::GuestError(m) => self.host.log(LogKind::GuestError, m),
                Diag::Unimplemented(m) => self.host.log(LogKind::Unimplemented, m),
                Diag::HostError(m) => self.host.log(LogKind::Error, m),
            }
        }
        if let Some(line) = fx.irq {
            self.host.drive_irq(line);
        }
    }

    /// The common read: a register of the vGPU's global, engine or display
    /// block, with nothing pending from its scheduler, on a working device.
    /// None for everything else, which `mmio_read` serves.
    #[inline]
    pub fn read_register(&self, offset: u64, size: u32) -> Option<u64> {
        let Model::Vgpu(v) = &self.model else {
            return None;
        };
        if self.is_broken() {
            return None;
        }
        v.try_borrow_mut()?.read_register(offset, size)
    }

    /// A register read: the value, or 0 with the refusal logged as the
    /// guest's error. Reads ask nothing else of the host.
    #[inline]
    pub fn mmio_read(&self, offset: u64, size: u32) -> u64 {
        let result = match &self.model {
            Model::Hw(gpu) => gpu.mmio_read(offset, size),
            Model::Vgpu(v) => v.borrow_mut().mmio_read(offset, size),
        };
        result.unwrap_or_else(|err| self.refused_read(offset, &err))
    }

    #[cold]
    fn refused_read(&self, offset: u64, err: &RegError) -> u64 {
        self.host
            .log(LogKind::GuestError, &refused_read(offset, err));
        0
    }

    /// The common write: one that only stores a register of the vGPU
    /// (`Vgpu::store_register`), on a working device. True when done;
    /// false, with nothing changed, for everything else, which `mmio_write`
    /// carries out.
    #[inline]
    pub fn store_register(&self, offset: u64, value: u64, size: u32) -> bool {
        let Model::Vgpu(v) = &self.model else {
            return false;
        };
        !self.is_broken()
            && v.try_borrow_mut()
                .is_some_and(|mut v| v.store_register(offset, value, size))
    }

    #[inline]
    pub fn mmio_write(&self, offset: u64, value: u64, size: u32) {
        // Each model's effects are applied where they come out (the vGPU's
        // once its borrow has ended), not moved to one place first.
        match &self.model {
            Model::Hw(gpu) => self.apply(gpu.mmio_write(offset, value, size)),
            Model::Vgpu(v) => {
                let fx = v.borrow_mut().mmio_write(offset, value, size);
                self.apply(fx);
            }
        }
    }

    /// A vGPU's state for `x-query-rust-vgpu`, its GPU's description
    /// appended to `backend`; false for a device that is no vGPU.
    pub fn report(&self, out: &mut sys::RvgReport, backend: *mut sys::RvgTextSink) -> bool {
        let Model::Vgpu(v) = &self.model else {
            return false;
        };
        let r = v.borrow_mut().report();
        *out = sys::RvgReport {
            policy: policy_c_name(r.policy).as_ptr(),
            vgpus_on_gpu: u32::try_from(r.attached).unwrap_or(u32::MAX),
            weight: r.weight,
            engine_time_us: u64::try_from(r.sched.engine_time.as_micros()).unwrap_or(u64::MAX),
            slices: r.sched.slices,
            submitted_dwords: r.sched.submitted,
            engine_faults: r.sched.faults,
            hangs: r.sched.hangs,
            preemptions: r.sched.preemptions,
            preempt_timeouts: r.sched.preempt_timeouts,
            scanned_commands: r.streams.scanned_commands,
            rejected_streams: r.streams.rejected_streams,
            gtt_faults: r.global.gtt_faults,
            pinned_pages: r.shadow.pinned_pages as u64,
        };
        self.host.append(backend, &r.backend);
        true
    }

    /// The vGPU's engine share weight; false, with the reason reported
    /// to `errp`, for a bad weight or a device that is no vGPU.
    pub fn set_weight(&self, weight: u32, errp: *mut sys::RvgErrorSink) -> bool {
        let result = match &self.model {
            Model::Vgpu(v) => v.borrow_mut().set_weight(weight).map_err(|e| e.to_string()),
            Model::Hw(_) => Err("rust-vgpu-hw has no engine share weight".to_string()),
        };
        result
            .map_err(|msg| self.host.set_error(errp, &msg))
            .is_ok()
    }

    /// The device leaves the bus: shut every path that could call into
    /// QEMU for it later (its eventfd, the scheduler's progress, the raw
    /// engine's interrupts and DMA), then close the host services.
    pub fn exit(&self) {
        if let Model::Vgpu(v) = &self.model {
            let v = v.borrow_mut();
            self.host.unwatch_fd(v.event_fd());
            v.detach();
        }
        self.host.close();
    }

    /// A system or bus reset.
    pub fn reset(&self) {
        let fx = match &self.model {
            Model::Hw(gpu) => gpu.reset(),
            Model::Vgpu(v) => v.borrow_mut().reset(),
        };
        self.clear_broken();
        self.apply(fx);
        if let Model::Vgpu(v) = &self.model {
            // The reset clears the command register; QEMU's bus does it
            // after this handler, without a config write.
            let fx = v.borrow_mut().set_bus_master(false);
            self.apply(fx);
        }
    }

    /// The guest wrote config space: interrupt mode, Bus Master Enable.
    pub fn config_changed(&self) {
        self.host.irq_mode_changed(self.irq_line());
        if let Model::Vgpu(v) = &self.model {
            let on = self.host.bus_master();
            let fx = v.borrow_mut().set_bus_master(on);
            self.apply(fx);
        }
    }

    pub fn irq_line(&self) -> IrqLine {
        match &self.model {
            Model::Hw(gpu) => gpu.irq_line(),
            Model::Vgpu(v) => v.borrow_mut().irq_line(),
        }
    }

    pub fn memory_add(&self, gpa: u64, size: u64, host: Option<HostRange>, kind: MemKind) {
        if let Model::Vgpu(v) = &self.model {
            let fx = v.borrow_mut().guest_ram_add(gpa, size, host, kind);
            self.apply(fx);
        }
    }

    pub fn memory_del(&self, gpa: u64, size: u64) {
        if let Model::Vgpu(v) = &self.model {
            let fx = v.borrow_mut().guest_ram_del(gpa, size);
            self.apply(fx);
        }
    }

    pub fn fd_ready(&self, fd: i32) {
        if let Model::Vgpu(v) = &self.model {
            let fx = {
                let mut v = v.borrow_mut();
                (fd == v.event_fd()).then(|| v.event())
            };
            if let Some(fx) = fx {
                self.apply(fx);
            }
        }
    }

    /// Refresh the vGPU's console (the raw model has none).
    pub fn display_refresh(&self) {
        if let Model::Vgpu(v) = &self.model {
            let fx = v.borrow_mut().display_refresh(&mut HostDisplay(&self.host));
            self.apply(fx);
        }
    }

    pub fn display_invalidate(&self) {
        if let Model::Vgpu(v) = &self.model {
            v.borrow_mut().display_invalidate();
        }
    }

    pub fn describe(&self) -> String {
        let c = &self.host.counts;
        let irqs = format!(
            "  interrupts: msix={} msi={} intx={}\n",
            c.msix.load(Ordering::Relaxed),
            c.msi.load(Ordering::Relaxed),
            c.intx.load(Ordering::Relaxed)
        );
        match &self.model {
            Model::Hw(gpu) => {
                let p = gpu.partition();
                format!(
                    "  model: RVG-1 {}, unmediated\n  vram: {:#x} at {:#x}\n  \
                     gtt: {} entries from {}\n  engine time: {} us, \
                     preempt-timeouts={}\n{irqs}",
                    if gpu.is_vf() { "VF" } else { "GPU" },
                    p.vram_size,
                    p.vram_base,
                    p.gtt_entries,
                    p.gtt_base,
                    gpu.engine_time().as_micros(),
                    gpu.preempt_timeouts()
                )
            }
            Model::Vgpu(v) => {
                let mut v = v.borrow_mut();
                let vram_size = v.config().vram_size;
                format!(
                    "  model: vGPU, vram-size={vram_size:#x}\n{}{irqs}",
                    v.describe()
                )
            }
        }
    }
}

impl Drop for FfiDevice {
    fn drop(&mut self) {
        if let Model::Vgpu(v) = &mut self.model {
            // No fd_ready may run for an eventfd about to be closed.
            self.host.unwatch_fd(v.get_mut().event_fd());
        }
    }
}

/// A policy's name as a C string that lives as long as the program, for
/// `RvgReport.policy`: the same as `Policy::name`.
fn policy_c_name(policy: Policy) -> &'static CStr {
    match policy {
        Policy::BestEffort => c"best-effort",
        Policy::EqualShare => c"equal-share",
        Policy::FixedShare => c"fixed-share",
    }
}

#[cfg(test)]
mod policy_name_tests {
    use super::*;

    #[test]
    fn c_names_are_the_policy_names() {
        for p in Policy::ALL {
            assert_eq!(policy_c_name(p).to_str(), Ok(p.name()));
        }
    }
}

//! SR-IOV: a GPU whose PF offers VFs. Every function is a [`Gpu`] of its
//! own (registers, engine state, worker); what they share is here: the
//! GPU's memory, its one engine's arbiter, and the VFs' partitions.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::{Core, Gpu, GTT_ENTRIES};
use crate::arbiter::{Arbiter, PREEMPT_TIMEOUT_MAX, PREEMPT_TIMEOUT_MIN, QUANTUM_MAX, QUANTUM_MIN};
use crate::partition::{vf_partitions, Partition};
use crate::vram::Vram;
use rvg_model::access::Lane;
use rvg_model::block::{decode, RegError};
use rvg_model::config::{check_vram_size, ConfigError, GpuConfig};
use rvg_model::regs::{bar2, Register, SriovReg};

/// What every function of one GPU shares: its memory and its engine.
pub(super) struct Physical {
    pub(super) vram: Vram,
    pub(super) gtt: Box<[AtomicU64]>,
    pub(super) arbiter: Arbiter,
    /// Each VF's window, by VF index.
    pub(super) partitions: Vec<Partition>,
    /// Each VF's function, by VF index, while it lives: a PF reset resets
    /// them too, and a second one for an index is refused (the two would
    /// be one function at the arbiter).
    pub(super) vfs: Mutex<Vec<Weak<Core>>>,
}

impl Gpu {
    /// A GPU whose PF offers `total_vfs` VFs (see [`Gpu::vf`]), each with
    /// an equal partition of the GTT and VRAM.
    pub fn with_vfs(config: GpuConfig, total_vfs: u16) -> Result<Gpu, ConfigError> {
        check_vram_size(config.vram_size)?;
        let partitions = vf_partitions(total_vfs, GTT_ENTRIES, config.vram_size)?;
        let vram = Vram::new(config.vram_size).map_err(|e| {
            ConfigError::Host(format!(
                "cannot allocate {} bytes of VRAM: {e}",
                config.vram_size
            ))
        })?;
        let phys = Arc::new(Physical {
            gtt: (0..GTT_ENTRIES).map(|_| AtomicU64::new(0)).collect(),
            arbiter: Arbiter::new(1 + partitions.len()),
            vfs: Mutex::new(partitions.iter().map(|_| Weak::new()).collect()),
            partitions,
            vram,
        });
        let whole = Partition::whole(GTT_ENTRIES, config.vram_size);
        Gpu::function(phys, 0, whole, config)
    }

    /// VF `index`'s function (`0..total_vfs`), sharing this PF's GPU.
    /// Its registers report its partition's sizes; its GTT entry *n* is
    /// the partition's; its engine takes turns with the others'.
    pub fn vf(&self, index: u16) -> Result<Gpu, ConfigError> {
        let phys = &self.core.phys;
        let partition = (self.core.function == 0)
            .then(|| phys.partitions.get(usize::from(index)))
            .flatten()
            .copied()
            .ok_or_else(|| ConfigError::BadProperty {
                property: "vf",
                value: index.to_string(),
                expected: format!("the PF offers {} VFs", phys.partitions.len()),
            })?;
        let mut vfs = phys.vfs.lock();
        let slot = &mut vfs[usize::from(index)];
        if slot.strong_count() > 0 {
            return Err(ConfigError::BadProperty {
                property: "vf",
                value: index.to_string(),
                expected: "that VF's function exists already".to_string(),
            });
        }
        let config = GpuConfig {
            vram_size: partition.vram_size,
        };
        let vf = Gpu::function(phys.clone(), 1 + usize::from(index), partition, config)?;
        *slot = Arc::downgrade(&vf.core);
        Ok(vf)
    }

    /// Whether this function is a VF.
    pub fn is_vf(&self) -> bool {
        self.core.function > 0
    }

    /// Each VF's VRAM partition (its BAR0) in bytes; 0 for a function
    /// that offers no VFs (a PF without them, or a VF).
    pub fn vf_partition_size(&self) -> u64 {
        match self.is_vf() {
            true => 0,
            false => self.core.phys.partitions.first().map_or(0, |p| p.vram_size),
        }
    }

    /// The PF's SR-IOV block register an access hits: a VF, and a GPU
    /// without VFs, have no such block, and only the quanta of functions
    /// that exist answer.
    fn sriov_reg(&self, rel: u64, size: u32) -> Result<(SriovReg, Lane), RegError> {
        let phys = &self.core.phys;
        let none = RegError::NoRegister {
            offset: bar2::SRIOV + rel,
            size,
        };
        if self.is_vf() || phys.partitions.is_empty() {
            return Err(none);
        }
        let (reg, lane) = decode::<SriovReg>(rel, size)?;
        match reg.quantum_of() {
            Some(f) if f > phys.partitions.len() => Err(none),
            _ => Ok((reg, lane)),
        }
    }

    pub(super) fn sriov_read(&self, rel: u64, size: u32) -> Result<u64, RegError> {
        let (reg, lane) = self.sriov_reg(rel, size)?;
        let phys = &self.core.phys;
        let value = match (reg, reg.quantum_of()) {
            (_, Some(f)) => phys.arbiter.quantum(f).as_micros() as u64,
            (SriovReg::TotalVfs, _) => phys.partitions.len() as u64,
            (SriovReg::VfGttEntries, _) => u64::from(phys.partitions[0].gtt_entries),
            (SriovReg::PreemptTimeoutUs, _) => phys.arbiter.preempt_timeout().as_micros() as u64,
            (_, None) => phys.partitions[0].vram_size,
        };
        Ok(lane.extract(value))
    }

    /// A `QUANTUM_*` write takes effect at the function's next turn; one
    /// outside 100 to 100000 us is refused, the quantum unchanged.
    /// `PREEMPT_TIMEOUT_US` takes 0 (none) or 1000 to 10000000 us.
    pub(super) fn sriov_write(&self, rel: u64, value: u64, size: u32) -> Result<(), RegError> {
        let (reg, lane) = self.sriov_reg(rel, size)?;
        let arbiter = &self.core.phys.arbiter;
        if reg == SriovReg::PreemptTimeoutUs {
            let us = lane.merge(arbiter.preempt_timeout().as_micros() as u64, value);
            return match arbiter.set_preempt_timeout(Duration::from_micros(us)) {
                true => Ok(()),
                false => Err(RegError::Refused(format!(
                    "{} of {us} us refused: it is 0 (none) or {} to {} us",
                    reg.name(),
                    PREEMPT_TIMEOUT_MIN.as_micros(),
                    PREEMPT_TIMEOUT_MAX.as_micros()
                ))),
            };
        }
        let Some(f) = reg.quantum_of() else {
            return Err(RegError::ReadOnly {
                reg: reg.name(),
                value,
            });
        };
        let old = arbiter.quantum(f).as_micros() as u64;
        let us = lane.merge(old, value);
        if !arbiter.set_quantum(f, Duration::from_micros(us)) {
            return Err(RegError::Refused(format!(
                "{} of {us} us refused: a quantum is {} to {} us",
                reg.name(),
                QUANTUM_MIN.as_micros(),
                QUANTUM_MAX.as_micros()
            )));
        }
        Ok(())
    }
}

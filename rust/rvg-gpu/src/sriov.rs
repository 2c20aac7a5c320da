//! SR-IOV: a GPU whose PF offers VFs. Every function is a [`Gpu`] of its
//! own (registers, engine state, worker); what they share is here: the
//! GPU's memory, its one engine's arbiter, and the VFs' partitions.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::{Core, Gpu, GTT_ENTRIES};
use crate::arbiter::Arbiter;
use crate::partition::{vf_partitions, Partition};
use crate::vram::Vram;
use rvg_model::config::{check_vram_size, ConfigError, GpuConfig};

/// What every function of one GPU shares: its memory and its engine.
pub(super) struct Physical {
    pub(super) vram: Vram,
    pub(super) gtt: Box<[AtomicU64]>,
    pub(super) arbiter: Arbiter,
    /// Each VF's window, by VF index.
    pub(super) partitions: Vec<Partition>,
    /// The VFs made so far: a PF reset resets them too.
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
            partitions,
            vfs: Mutex::new(Vec::new()),
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
        let config = GpuConfig {
            vram_size: partition.vram_size,
        };
        let vf = Gpu::function(phys.clone(), 1 + usize::from(index), partition, config)?;
        phys.vfs.lock().push(Arc::downgrade(&vf.core));
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
}

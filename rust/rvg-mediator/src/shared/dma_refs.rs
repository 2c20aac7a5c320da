//! DMA mappings of guest RAM shared by the vGPUs of one GPU.
//!
//! Every vGPU of a VM reports the same guest RAM; like a VFIO container
//! shared by a VM's devices, the GPU maps each range once and unmaps it when
//! the last vGPU lets go. Each vGPU's report is its own [`HostRange`],
//! valid until that vGPU removes it, so the mapping always rests on the
//! report of a vGPU that still holds the range.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use rvg_vfio::contract::DmaFlags;
use rvg_vfio::{DmaMapping, HostRange, VfioDevice};

#[derive(Debug)]
struct Mapped {
    mapping: DmaMapping,
    /// One per vGPU that mapped it; the mapping rests on one of them.
    holders: Vec<Arc<HostRange>>,
}

#[derive(Debug, Default)]
pub struct DmaRefs {
    by_iova: BTreeMap<u64, Mapped>,
}

impl DmaRefs {
    pub fn map(
        &mut self,
        dev: &Arc<dyn VfioDevice>,
        iova: u64,
        host: &Arc<HostRange>,
    ) -> io::Result<()> {
        if let Some(m) = self.by_iova.get_mut(&iova) {
            let mapped = m.mapping.host();
            if (mapped.len(), mapped.addr()) == (host.len(), host.addr()) {
                m.holders.push(host.clone());
                return Ok(());
            }
        }
        // A different range over the same addresses: the contract refuses it.
        let mapping = host.dma_map(dev, iova, DmaFlags::READ_WRITE)?;
        self.by_iova.insert(
            iova,
            Mapped {
                mapping,
                holders: vec![host.clone()],
            },
        );
        Ok(())
    }

    /// Drop `host`'s share of the mapping at `iova`; the last share unmaps.
    pub fn unmap(&mut self, iova: u64, host: &Arc<HostRange>) -> io::Result<()> {
        let size = host.len();
        let found = self.by_iova.get_mut(&iova).and_then(|m| {
            let at = m.holders.iter().position(|h| Arc::ptr_eq(h, host))?;
            Some((m, at))
        });
        let Some((m, at)) = found else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no DMA mapping [{iova:#x}, +{size:#x})"),
            ));
        };
        m.holders.swap_remove(at);
        if let Some(other) = m.holders.first() {
            if Arc::ptr_eq(m.mapping.host(), host) {
                // `host` may go now: rest the mapping on another holder.
                m.mapping
                    .rebind(other.clone())
                    .expect("every holder names the mapped bytes");
            }
            return Ok(());
        }
        let m = self.by_iova.remove(&iova).expect("found above");
        m.mapping.unmap()
    }

    #[cfg(test)]
    pub fn refs(&self, iova: u64) -> u32 {
        self.by_iova
            .get(&iova)
            .map_or(0, |m| m.holders.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvg_model::GpuConfig;
    use rvg_vfio::SoftGpu;

    #[test]
    fn shared_ranges_are_mapped_once_and_released_last() {
        let soft =
            Arc::new(SoftGpu::new(GpuConfig { vram_size: 2 << 20 }, Box::new(|_| {})).unwrap());
        let dev: Arc<dyn VfioDevice> = soft.clone();
        let a = crate::guest_mem::stand_in(1 << 16);
        let b = Arc::new(HostRange::anonymous(1 << 16).unwrap());
        let mut d = DmaRefs::default();
        d.map(&dev, 0x10_0000, &a).unwrap();
        // Another vGPU's report of the same bytes shares the mapping.
        let a_again = Arc::new(a.alias());
        d.map(&dev, 0x10_0000, &a_again).unwrap();
        assert_eq!(d.refs(0x10_0000), 2);
        // Overlapping but different: refused by the contract.
        assert!(d.map(&dev, 0x10_8000, &b).is_err());
        // Only a holder lets go.
        assert!(d.unmap(0x10_0000, &b).is_err());
        // The first holder goes; the mapping rests on the second.
        d.unmap(0x10_0000, &a).unwrap();
        // Left: `a` and the alias's hold on it; the mapping's went.
        assert_eq!(Arc::strong_count(&a), 2);
        assert!(soft.gpu().dma().read(0x10_0000, &mut [0]).is_ok());
        d.unmap(0x10_0000, &a_again).unwrap();
        assert!(soft.gpu().dma().read(0x10_0000, &mut [0]).is_err());
        assert!(d.unmap(0x10_0000, &a).is_err());
    }
}

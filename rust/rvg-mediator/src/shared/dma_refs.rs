//! DMA mappings of guest RAM shared by the vGPUs of one GPU.
//!
//! Every vGPU of a VM reports the same guest RAM; like a VFIO container
//! shared by a VM's devices, the GPU maps each range once and unmaps it when
//! the last vGPU lets go.

use std::collections::BTreeMap;
use std::io;

use rvg_vfio::contract::DmaFlags;
use rvg_vfio::VfioDevice;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapped {
    size: u64,
    vaddr: u64,
    refs: u32,
}

#[derive(Debug, Default)]
pub struct DmaRefs {
    by_iova: BTreeMap<u64, Mapped>,
}

impl DmaRefs {
    pub fn map(
        &mut self,
        dev: &dyn VfioDevice,
        iova: u64,
        size: u64,
        vaddr: u64,
    ) -> io::Result<()> {
        if let Some(m) = self.by_iova.get_mut(&iova) {
            if (m.size, m.vaddr) == (size, vaddr) {
                m.refs += 1;
                return Ok(());
            }
        }
        // A different range over the same addresses: the contract refuses it.
        dev.dma_map(iova, size, vaddr, DmaFlags::READ_WRITE)?;
        self.by_iova.insert(
            iova,
            Mapped {
                size,
                vaddr,
                refs: 1,
            },
        );
        Ok(())
    }

    pub fn unmap(&mut self, dev: &dyn VfioDevice, iova: u64, size: u64) -> io::Result<()> {
        let Some(m) = self.by_iova.get_mut(&iova).filter(|m| m.size == size) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no DMA mapping [{iova:#x}, +{size:#x})"),
            ));
        };
        m.refs -= 1;
        if m.refs == 0 {
            self.by_iova.remove(&iova);
            dev.dma_unmap(iova, size)?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn refs(&self, iova: u64) -> u32 {
        self.by_iova.get(&iova).map_or(0, |m| m.refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvg_gpu::vram::Vram;
    use rvg_model::GpuConfig;
    use rvg_vfio::SoftGpu;

    #[test]
    fn shared_ranges_are_mapped_once_and_released_last() {
        let soft = SoftGpu::new(GpuConfig { vram_size: 2 << 20 }, Box::new(|_| {})).unwrap();
        let ram = Vram::new(1 << 16).unwrap();
        let hva = ram.host_ptr(0).unwrap() as u64;
        let mut d = DmaRefs::default();
        d.map(&soft, 0x10_0000, 1 << 16, hva).unwrap();
        d.map(&soft, 0x10_0000, 1 << 16, hva).unwrap();
        assert_eq!(d.refs(0x10_0000), 2);
        // Overlapping but different: refused by the contract.
        assert!(d.map(&soft, 0x10_8000, 1 << 16, hva).is_err());
        d.unmap(&soft, 0x10_0000, 1 << 16).unwrap();
        assert!(soft.gpu().dma().read(0x10_0000, &mut [0]).is_ok());
        d.unmap(&soft, 0x10_0000, 1 << 16).unwrap();
        assert!(soft.gpu().dma().read(0x10_0000, &mut [0]).is_err());
        assert!(d.unmap(&soft, 0x10_0000, 1 << 16).is_err());
    }
}

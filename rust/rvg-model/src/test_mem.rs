//! Graphics memory for the engine's tests: one flat buffer mapped from
//! graphics address 0, faulting from its end on.

use std::cell::RefCell;
use std::ops::Range;

use crate::memory::{Fault, GfxMemory};

pub struct FlatMem {
    bytes: RefCell<Vec<u8>>,
}

impl FlatMem {
    pub fn new(len: usize) -> FlatMem {
        FlatMem {
            bytes: RefCell::new(vec![0; len]),
        }
    }

    /// The byte range `[addr, addr + len)`, or the fault a page-mapped
    /// memory ending at the same place reports: the first unmapped byte.
    fn range(&self, addr: u64, len: u64) -> Result<Range<usize>, Fault> {
        let size = self.bytes.borrow().len() as u64;
        match addr.checked_add(len) {
            None => Err(Fault { addr }),
            Some(_) if len == 0 => Ok(0..0),
            Some(end) if end <= size => Ok(addr as usize..end as usize),
            Some(_) => Err(Fault {
                addr: addr.max(size),
            }),
        }
    }
}

impl GfxMemory for FlatMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let r = self.range(addr, buf.len() as u64)?;
        buf.copy_from_slice(&self.bytes.borrow()[r]);
        Ok(())
    }

    fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        let r = self.range(addr, data.len() as u64)?;
        self.bytes.borrow_mut()[r].copy_from_slice(data);
        Ok(())
    }

    fn fill32(&self, addr: u64, len: u64, color: u32) -> Result<(), Fault> {
        let r = self.range(addr, len)?;
        for px in self.bytes.borrow_mut()[r].chunks_exact_mut(4) {
            px.copy_from_slice(&color.to_le_bytes());
        }
        Ok(())
    }

    fn copy(&self, src: u64, dst: u64, len: u64) -> Result<(), Fault> {
        let s = self.range(src, len)?;
        let d = self.range(dst, len)?;
        self.bytes.borrow_mut().copy_within(s, d.start);
        Ok(())
    }

    fn check(&self, addr: u64, len: u64) -> Result<(), Fault> {
        self.range(addr, len).map(|_| ())
    }
}

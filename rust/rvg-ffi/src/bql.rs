//! State that QEMU's big lock protects: the vGPU, whose every entry point
//! runs under the BQL (`c-shim/rust-vgpu-ffi.h`: MMIO, config, the memory
//! listener, fd handlers, the monitor, the console, reset, realize, exit
//! and unrealize). A second lock would be pure cost on every register
//! access; the cell only checks, as `RefCell` does, that no access starts
//! while another is running on the same thread (a re-entrant call, which
//! the FFI rules forbid).

use std::cell::{Cell, UnsafeCell};
use std::ops::{Deref, DerefMut};

pub struct BqlCell<T> {
    value: UnsafeCell<T>,
    borrowed: Cell<bool>,
}

// SAFETY: every access goes through `borrow_mut`, which the shim only ever
// reaches with the BQL held (the header's threading rule): accesses from
// different threads are serialised by that lock, and the `borrowed` flag
// is only read and written under it. `T: Send` because the value is used
// from whichever thread holds the lock.
unsafe impl<T: Send> Sync for BqlCell<T> {}

impl<T> BqlCell<T> {
    pub fn new(value: T) -> BqlCell<T> {
        BqlCell {
            value: UnsafeCell::new(value),
            borrowed: Cell::new(false),
        }
    }

    /// The value, for the length of one entry point. Panics (caught by the
    /// panic guard) if it is already borrowed: a re-entrant call.
    pub fn borrow_mut(&self) -> BqlRefMut<'_, T> {
        assert!(
            !self.borrowed.replace(true),
            "re-entrant access to the vGPU (a host service called back in)"
        );
        BqlRefMut { cell: self }
    }

    /// The value for the length of one entry point, or None if it is
    /// already borrowed (the caller then takes a path that reports it).
    #[inline]
    pub fn try_borrow_mut(&self) -> Option<BqlRefMut<'_, T>> {
        (!self.borrowed.replace(true)).then_some(BqlRefMut { cell: self })
    }

    /// The value, with the cell owned: no lock needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

pub struct BqlRefMut<'a, T> {
    cell: &'a BqlCell<T>,
}

impl<T> Deref for BqlRefMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only borrow (the flag was clear when it
        // was made and stays set until it drops), under the BQL.
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for BqlRefMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` keeps this the only reference
        // made through the guard.
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for BqlRefMut<'_, T> {
    fn drop(&mut self) {
        self.cell.borrowed.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_borrow_at_a_time() {
        let cell = BqlCell::new(5);
        {
            let mut v = cell.borrow_mut();
            *v += 1;
            let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                cell.borrow_mut();
            }));
            assert!(again.is_err(), "a second borrow panics");
        }
        assert_eq!(*cell.borrow_mut(), 6, "released when the first is dropped");
    }
}

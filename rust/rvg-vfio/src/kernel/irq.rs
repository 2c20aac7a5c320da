//! The VFIO_DEVICE_SET_IRQS argument: a `vfio_irq_set` header (argsz,
//! flags, index, start, count; native endian) followed by `count` elements
//! of data: nothing for DATA_NONE, one u8 per vector for DATA_BOOL, one s32
//! per vector for DATA_EVENTFD. `argsz` is the whole length.

use std::io;
use std::mem::size_of;

use vfio_bindings::bindings::vfio::{
    vfio_irq_set, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE,
};

use crate::contract::{IrqAction, IrqData, IrqSet};

/// `sizeof(struct vfio_irq_set)`: 20.
pub(crate) const HEADER_SIZE: usize = size_of::<vfio_irq_set>();

/// Reject what the buffer cannot express faithfully: data whose length is
/// not `count` (the kernel would read past it or ignore some of it).
pub(crate) fn check(set: &IrqSet<'_>) -> io::Result<()> {
    let len = match set.data {
        IrqData::None => return Ok(()),
        IrqData::Bool(b) => b.len(),
        IrqData::EventFd(f) => f.len(),
    };
    if len != set.count as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(())
}

/// The bytes of the ioctl argument for `set`.
pub fn set_irqs_buffer(set: &IrqSet<'_>) -> Vec<u8> {
    let (data_flag, data): (u32, Vec<u8>) = match set.data {
        IrqData::None => (VFIO_IRQ_SET_DATA_NONE, Vec::new()),
        IrqData::Bool(b) => (
            VFIO_IRQ_SET_DATA_BOOL,
            b.iter().map(|&v| u8::from(v)).collect(),
        ),
        IrqData::EventFd(fds) => (
            VFIO_IRQ_SET_DATA_EVENTFD,
            fds.iter().flat_map(|fd| fd.to_ne_bytes()).collect(),
        ),
    };
    let action = match set.action {
        IrqAction::Mask => VFIO_IRQ_SET_ACTION_MASK,
        IrqAction::Unmask => VFIO_IRQ_SET_ACTION_UNMASK,
        IrqAction::Trigger => VFIO_IRQ_SET_ACTION_TRIGGER,
    };
    let len = HEADER_SIZE + data.len();
    // Only a set of over a billion eventfds could overflow; the kernel then
    // sees an argsz too small for `count` and refuses it.
    let argsz = u32::try_from(len).unwrap_or(u32::MAX);
    let mut buf = Vec::with_capacity(len);
    for field in [argsz, data_flag | action, set.index, set.start, set.count] {
        buf.extend(field.to_ne_bytes());
    }
    buf.extend(data);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX};

    fn header(argsz: u32, flags: u32, index: u32, start: u32, count: u32) -> Vec<u8> {
        [argsz, flags, index, start, count]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    }

    #[test]
    fn trigger_eventfds() {
        let set = IrqSet::eventfds(VFIO_PCI_MSIX_IRQ_INDEX, 1, &[7, -1, 9]);
        let mut want = header(
            32,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            2,
            1,
            3,
        );
        for fd in [7i32, -1, 9] {
            want.extend(fd.to_ne_bytes());
        }
        assert_eq!(set_irqs_buffer(&set), want);
        assert!(check(&set).is_ok());
    }

    #[test]
    fn teardown_is_data_none_count_zero() {
        let set = IrqSet::teardown(VFIO_PCI_MSIX_IRQ_INDEX);
        assert_eq!(
            set_irqs_buffer(&set),
            header(
                20,
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                2,
                0,
                0
            )
        );
    }

    #[test]
    fn unmask_none() {
        assert_eq!(
            set_irqs_buffer(&IrqSet::intx_unmask()),
            header(
                20,
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
                VFIO_PCI_INTX_IRQ_INDEX,
                0,
                1
            )
        );
    }

    #[test]
    fn mask_bools() {
        let set = IrqSet {
            index: 0,
            action: IrqAction::Mask,
            start: 1,
            count: 3,
            data: IrqData::Bool(&[true, false, true]),
        };
        let mut want = header(
            23,
            VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK,
            0,
            1,
            3,
        );
        want.extend([1, 0, 1]);
        assert_eq!(set_irqs_buffer(&set), want);
    }

    #[test]
    fn unmask_with_resample_fd() {
        let set = IrqSet {
            index: 0,
            action: IrqAction::Unmask,
            start: 0,
            count: 1,
            data: IrqData::EventFd(&[12]),
        };
        let mut want = header(
            24,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK,
            0,
            0,
            1,
        );
        want.extend(12i32.to_ne_bytes());
        assert_eq!(set_irqs_buffer(&set), want);
    }

    #[test]
    fn trigger_bool_and_mask_none() {
        let set = IrqSet {
            index: 1,
            action: IrqAction::Trigger,
            start: 0,
            count: 1,
            data: IrqData::Bool(&[true]),
        };
        let mut want = header(
            21,
            VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER,
            1,
            0,
            1,
        );
        want.push(1);
        assert_eq!(set_irqs_buffer(&set), want);
        let set = IrqSet {
            index: 0,
            action: IrqAction::Mask,
            start: 0,
            count: 1,
            data: IrqData::None,
        };
        assert_eq!(
            set_irqs_buffer(&set),
            header(
                20,
                VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK,
                0,
                0,
                1
            )
        );
    }

    #[test]
    fn data_length_must_match_count() {
        let set = IrqSet {
            index: 2,
            action: IrqAction::Trigger,
            start: 0,
            count: 2,
            data: IrqData::EventFd(&[3]),
        };
        assert_eq!(check(&set).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        let set = IrqSet {
            data: IrqData::Bool(&[true, true, true]),
            ..set
        };
        assert!(check(&set).is_err());
        let set = IrqSet {
            data: IrqData::None,
            ..set
        };
        assert!(check(&set).is_ok());
    }
}

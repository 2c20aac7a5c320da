//! Progress from the scheduler thread, waiting for the vGPU.
//!
//! The scheduler never touches the vGPU's state: it leaves its progress
//! here and (when it raises an interrupt) signals the vGPU's eventfd. The
//! vGPU takes it in on its own thread (under QEMU's BQL) at its next
//! register access or eventfd event. Checking for it costs a register
//! access one relaxed load; only taking it in locks.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::shared::Progress;

#[derive(Default)]
pub struct Inbox {
    queue: Mutex<Vec<Progress>>,
    /// Something is queued.
    pending: AtomicBool,
}

impl Inbox {
    /// Leave progress for the vGPU (the scheduler thread).
    pub fn post(&self, p: Progress) {
        let mut queue = self.queue.lock();
        queue.push(p);
        self.pending.store(true, Ordering::Release);
    }

    /// Nothing was posted since the last take (a relaxed look: a post
    /// racing with it is seen at the next look).
    #[inline]
    pub fn is_empty(&self) -> bool {
        !self.pending.load(Ordering::Relaxed)
    }

    /// Everything posted since the last take, oldest first; nothing
    /// without a lock when nothing was posted.
    pub fn take(&self) -> Vec<Progress> {
        if !self.pending.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut queue = self.queue.lock();
        self.pending.store(false, Ordering::Relaxed);
        std::mem::take(&mut *queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_comes_out_in_order_once() {
        let inbox = Inbox::default();
        assert!(inbox.take().is_empty());
        for seqno in 1..=3 {
            inbox.post(Progress {
                seqno: Some(seqno),
                ..Progress::default()
            });
        }
        let seqnos: Vec<_> = inbox.take().iter().map(|p| p.seqno).collect();
        assert_eq!(seqnos, [Some(1), Some(2), Some(3)]);
        assert!(inbox.take().is_empty());
    }
}

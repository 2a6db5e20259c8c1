//! The one primitive under the cooperative `sync` types and the devices:
//! a FIFO of parked tasks.

use super::scheduler;
use super::task::{TaskRef, Wait};
use core::cell::RefCell;
use std::collections::VecDeque;

/// Tasks waiting for a notification. Users of a queue re-check their
/// condition after waking (a wake-up may be spurious), which keeps the queue
/// correct under cancellation: a waiter cancelled after being notified
/// passes the notification on as it unwinds.
#[derive(Default)]
pub(crate) struct WaitQueue {
    waiters: RefCell<VecDeque<TaskRef>>,
}

impl WaitQueue {
    pub(crate) fn new() -> WaitQueue {
        WaitQueue::default()
    }

    /// Suspends the current task until notified; returns at once while it
    /// is being cancelled. Always inlined, so that the task suspends in its
    /// caller's frame (see `scheduler::yield_current`).
    #[inline(always)]
    pub(crate) fn wait(&self) {
        let Some(parking) = scheduler::prepare_park(Wait::Queue) else {
            return;
        };
        self.waiters.borrow_mut().push_back(parking.task);
        struct OnCancel<'a>(&'a WaitQueue);
        impl Drop for OnCancel<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    // Cancelled while waiting or just after a notification:
                    // hand a possible notification to the next waiter.
                    self.0.notify_one();
                }
            }
        }
        let guard = OnCancel(self);
        parking.suspend();
        core::mem::forget(guard);
    }

    /// Wakes the longest-waiting task; false if none waits.
    pub(crate) fn notify_one(&self) -> bool {
        loop {
            let Some(t) = self.waiters.borrow_mut().pop_front() else {
                return false;
            };
            if scheduler::with(|s| s.wake_queued(t)) {
                return true;
            }
        }
    }

    /// Wakes every waiting task.
    pub(crate) fn notify_all(&self) {
        let all: Vec<TaskRef> = self.waiters.borrow_mut().drain(..).collect();
        scheduler::with(|s| {
            for t in all {
                s.wake_queued(t);
            }
        });
    }
}

//! The one primitive under the cooperative `sync` types and the devices:
//! a FIFO of parked tasks.

use super::scheduler::{self, Woken};
use super::syscall::Syscall;
use super::task::{TaskRef, Wait};
use core::cell::RefCell;
use core::time::Duration;
use std::collections::VecDeque;

/// Tasks waiting for a notification. Users of a queue re-check their
/// condition after waking (a wake-up may be spurious), which keeps the queue
/// correct under cancellation: a waiter cancelled after being notified
/// passes the notification on as it unwinds.
///
/// A timed waiter ([`wait_for`](WaitQueue::wait_for)) waits as
/// `Wait::QueueTimed`; when a notification wakes it, it is put in
/// `notified`, which is how it tells a notification from its timer once it
/// runs again.
#[derive(Default)]
pub(crate) struct WaitQueue {
    waiters: RefCell<VecDeque<TaskRef>>,
    notified: RefCell<Vec<TaskRef>>,
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

    /// Suspends the current task until notified or until `after` has
    /// passed, whichever comes first; true when the time ran out (and no
    /// notification was consumed). Returns false at once while the task is
    /// being cancelled. The timer is the run's event source's
    /// ([`Events::arm_timer`](super::Events::arm_timer)).
    ///
    /// # Panics
    /// When the run's event source has no timers.
    #[inline(always)]
    pub(crate) fn wait_for(&self, after: Duration) -> bool {
        let sc = Syscall::new();
        let id = sc.id();
        if !scheduler::arm_timer(after, id) {
            panic!(
                "a timed wait needs an event source with timers (the platform's, \
                 or one whose Events::arm_timer arms them)"
            );
        }
        let Some(parking) = scheduler::prepare_park(Wait::QueueTimed(id)) else {
            scheduler::withdraw_syscall(id);
            return false;
        };
        let me = parking.task;
        let must_wait = scheduler::register_syscall(id);
        debug_assert!(must_wait, "a timer armed just now cannot have fired");
        self.waiters.borrow_mut().push_back(me);
        struct OnCancel<'a>(&'a WaitQueue, TaskRef);
        impl Drop for OnCancel<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() && !self.0.end_timed_wait(self.1) {
                    // Cancelled after a notification: hand it on.
                    self.0.notify_one();
                }
            }
        }
        let guard = OnCancel(self, me);
        parking.suspend();
        core::mem::forget(guard);
        scheduler::forget_syscall(id);
        self.end_timed_wait(me)
    }

    /// A timed wait of `me` is over: true when no notification woke it
    /// (its entry leaves the queue), false when one did.
    fn end_timed_wait(&self, me: TaskRef) -> bool {
        let mut notified = self.notified.borrow_mut();
        if let Some(i) = notified.iter().position(|&t| t == me) {
            notified.swap_remove(i);
            return false;
        }
        self.waiters.borrow_mut().retain(|&t| t != me);
        true
    }

    /// Wakes the longest-waiting task; false if none waits.
    pub(crate) fn notify_one(&self) -> bool {
        loop {
            let Some(t) = self.waiters.borrow_mut().pop_front() else {
                return false;
            };
            match scheduler::with(|s| s.wake_queued(t)) {
                Woken::No => {}
                Woken::Untimed => return true,
                Woken::Timed => {
                    self.notified.borrow_mut().push(t);
                    return true;
                }
            }
        }
    }

    /// Wakes every waiting task.
    pub(crate) fn notify_all(&self) {
        let all: Vec<TaskRef> = self.waiters.borrow_mut().drain(..).collect();
        let mut notified = Vec::new();
        scheduler::with(|s| {
            for t in all {
                if s.wake_queued(t) == Woken::Timed {
                    notified.push(t);
                }
            }
        });
        self.notified.borrow_mut().extend(notified);
    }
}

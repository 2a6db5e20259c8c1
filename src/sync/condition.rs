//! Waiting for a condition under a mutex.

use super::mutex::MutexGuard;
use crate::fiber::WaitQueue;
use core::time::Duration;

/// A condition variable for [`Mutex`](super::Mutex): `wait` unlocks,
/// suspends until signalled, and locks again. As with every condition
/// variable, re-check the condition in a loop (see the module example).
#[derive(Default)]
pub struct Condition {
    waiters: WaitQueue,
}

impl core::fmt::Debug for Condition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Condition").finish_non_exhaustive()
    }
}

impl Condition {
    /// A new condition.
    #[must_use]
    pub fn new() -> Condition {
        Condition::default()
    }

    /// Unlocks the guard's mutex, waits for a signal, relocks.
    // Always inlined: the task suspends in the caller's frame (see
    // `yield_now`).
    #[inline(always)]
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        let m = guard.mutex();
        drop(guard);
        self.waiters.wait();
        m.lock()
    }

    /// As [`wait`](Condition::wait), but waits at most `timeout`: unlocks
    /// the guard's mutex, suspends until signalled or until `timeout` has
    /// passed, and locks again. The result says whether the time ran out
    /// (then no signal was consumed: a [`signal`](Condition::signal) sent
    /// meanwhile went to another waiter). As with `wait`, re-check the
    /// condition (with the time left) in a loop.
    ///
    /// The timer is the run's event source's, as for
    /// [`sleep`](crate::sleep): the platform's, or a custom one that has
    /// timers ([`Events::arm_timer`](crate::Events::arm_timer), e.g.
    /// [`testing::VirtualClock`](crate::testing::VirtualClock)). While the
    /// task is being cancelled it returns at once, not timed out.
    ///
    /// # Panics
    /// When the run's event source has no timers.
    ///
    /// ```
    /// use mkernel::sync::{Condition, Mutex};
    /// use std::{rc::Rc, time::Duration};
    ///
    /// mkernel::run((), |()| {
    ///     let pair = Rc::new((Mutex::new(false), Condition::new()));
    ///     // Nobody signals: the wait times out.
    ///     let (m, c) = &*pair;
    ///     let (g, r) = c.wait_timeout(m.lock(), Duration::from_millis(5));
    ///     assert!(r.timed_out() && !*g);
    ///     drop(g);
    ///     // A signal comes first.
    ///     let p2 = pair.clone();
    ///     let setter = mkernel::spawn(move || {
    ///         *p2.0.lock() = true;
    ///         p2.1.signal();
    ///     });
    ///     let mut g = m.lock();
    ///     while !*g {
    ///         let (g2, r) = c.wait_timeout(g, Duration::from_secs(10));
    ///         assert!(!r.timed_out());
    ///         g = g2;
    ///     }
    ///     drop(g);
    ///     setter.join().unwrap();
    /// });
    /// ```
    // Always inlined, as `wait`.
    #[inline(always)]
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, WaitTimeoutResult) {
        let m = guard.mutex();
        drop(guard);
        let timed_out = self.waiters.wait_for(timeout);
        (m.lock(), WaitTimeoutResult(timed_out))
    }

    /// Wakes one waiting task.
    pub fn signal(&self) {
        self.waiters.notify_one();
    }

    /// Wakes every waiting task.
    pub fn broadcast(&self) {
        self.waiters.notify_all();
    }
}

/// Whether a [`Condition::wait_timeout`] ran out of time (std's
/// `WaitTimeoutResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True when the wait ended because its time ran out (no signal woke
    /// it).
    #[must_use]
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

//! Waiting for a condition under a mutex.

use super::mutex::MutexGuard;
use crate::fiber::WaitQueue;

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

    /// Wakes one waiting task.
    pub fn signal(&self) {
        self.waiters.notify_one();
    }

    /// Wakes every waiting task.
    pub fn broadcast(&self) {
        self.waiters.notify_all();
    }
}

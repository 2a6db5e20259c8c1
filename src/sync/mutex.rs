//! A mutex whose `lock` suspends the task.

use crate::fiber::WaitQueue;
use core::cell::{Cell, RefCell, RefMut};
use core::ops::{Deref, DerefMut};

/// Mutual exclusion between tasks, held across suspensions (a task may
/// sleep or read a device while holding it).
///
/// ```
/// use mkernel::sync::Mutex;
/// use std::rc::Rc;
/// let n = mkernel::run((), |()| {
///     let m = Rc::new(Mutex::new(0));
///     let ps: Vec<_> = (0..10).map(|_| { let m = m.clone(); mkernel::spawn(move || {
///         let mut g = m.lock();
///         let v = *g;
///         mkernel::yield_now(); // others run, but cannot enter
///         *g = v + 1;
///     })}).collect();
///     mkernel::join_all(ps);
///     let v = *m.lock();
///     v
/// });
/// assert_eq!(n, 10);
/// ```
pub struct Mutex<T> {
    locked: Cell<bool>,
    value: RefCell<T>,
    waiters: WaitQueue,
}

/// Access to a locked [`Mutex`]; unlocks when dropped.
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
    value: Option<RefMut<'a, T>>,
}

impl<T: core::fmt::Debug> core::fmt::Debug for Mutex<T> {
    /// As `std::sync::Mutex`'s: the value when the mutex is not locked.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.value.try_borrow() {
            Ok(v) if !self.locked.get() => d.field("data", &&*v),
            _ => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.value {
            Some(v) => core::fmt::Debug::fmt(&**v, f),
            None => f.write_str("MutexGuard(<released>)"),
        }
    }
}

impl<T> Mutex<T> {
    /// A new, unlocked mutex.
    pub fn new(value: T) -> Mutex<T> {
        Mutex {
            locked: Cell::new(false),
            value: RefCell::new(value),
            waiters: WaitQueue::new(),
        }
    }

    /// Locks, suspending the task while another holds the mutex (FIFO).
    // Always inlined: a task that waits suspends in the caller's frame (see
    // `yield_now`).
    #[inline(always)]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        while self.locked.get() {
            self.waiters.wait();
        }
        self.acquire()
    }

    /// Locks if free.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if self.locked.get() {
            None
        } else {
            Some(self.acquire())
        }
    }

    fn acquire(&self) -> MutexGuard<'_, T> {
        self.locked.set(true);
        MutexGuard {
            mutex: self,
            value: Some(self.value.borrow_mut()),
        }
    }

    /// The value, when no one can hold the lock.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }

    pub(crate) fn unlock_raw(&self) {
        self.locked.set(false);
        self.waiters.notify_one();
    }
}

impl<'a, T> MutexGuard<'a, T> {
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("guard holds the value")
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("guard holds the value")
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.value = None;
        self.mutex.unlock_raw();
    }
}

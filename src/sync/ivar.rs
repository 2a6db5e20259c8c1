//! A one-shot value that tasks await: Miou's `Computation` (an "ivar").

use crate::fiber::{Error, WaitQueue};
use core::any::Any;
use core::cell::RefCell;
use core::fmt;
use std::rc::Rc;

/// A value set once — resolved, failed or cancelled — that any number of
/// tasks of the run can wait for (Miou's `Computation`; mnet's DNS client
/// is built on such ivars). Cloning gives another handle to the same value.
///
/// [`wait`](Ivar::wait) suspends the task until the ivar is set and gives
/// `Ok(value)` (a clone), or `Err(Error::Panicked(payload))` after
/// [`fail`](Ivar::fail), or `Err(Error::Cancelled)` after
/// [`cancel`](Ivar::cancel). Only the first of `resolve`, `fail` and
/// `cancel` counts; the others return `false`.
///
/// ```
/// use mkernel::sync::Ivar;
/// let got = mkernel::run((), |()| {
///     let answer: Ivar<u32> = Ivar::new();
///     let waiter = { let a = answer.clone(); mkernel::spawn(move || a.wait()) };
///     let setter = { let a = answer.clone(); mkernel::spawn(move || {
///         mkernel::yield_now();
///         a.resolve(42)
///     })};
///     assert!(setter.join().unwrap());
///     assert!(!answer.resolve(0), "already set");
///     waiter.join().unwrap()
/// });
/// assert_eq!(got.unwrap(), 42);
/// ```
pub struct Ivar<T> {
    inner: Rc<Inner<T>>,
}

struct Inner<T> {
    state: RefCell<State<T>>,
    waiters: WaitQueue,
}

enum State<T> {
    Empty,
    Resolved(T),
    Failed(Rc<dyn Fn() -> Box<dyn Any + Send>>),
    Cancelled,
}

impl<T> Clone for Ivar<T> {
    fn clone(&self) -> Self {
        Ivar {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Ivar<T> {
    fn default() -> Self {
        Ivar::new()
    }
}

impl<T> fmt::Debug for Ivar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.inner.state.borrow() {
            State::Empty => "empty",
            State::Resolved(_) => "resolved",
            State::Failed(_) => "failed",
            State::Cancelled => "cancelled",
        };
        write!(f, "Ivar({state})")
    }
}

impl<T> Ivar<T> {
    /// An empty ivar.
    #[must_use]
    pub fn new() -> Ivar<T> {
        Ivar {
            inner: Rc::new(Inner {
                state: RefCell::new(State::Empty),
                waiters: WaitQueue::new(),
            }),
        }
    }

    fn set(&self, s: State<T>) -> bool {
        {
            let mut state = self.inner.state.borrow_mut();
            if !matches!(*state, State::Empty) {
                return false;
            }
            *state = s;
        }
        self.inner.waiters.notify_all();
        true
    }

    /// Sets the value and wakes every waiting task; `false` (and `value`
    /// dropped) if the ivar was already set.
    pub fn resolve(&self, value: T) -> bool {
        self.set(State::Resolved(value))
    }

    /// Fails the ivar: waiters get `Err(Error::Panicked(payload))`, each a
    /// fresh payload made by `payload` (a payload cannot be cloned).
    /// `false` if the ivar was already set.
    ///
    /// ```
    /// let e = mkernel::run((), |()| {
    ///     let v: mkernel::sync::Ivar<()> = mkernel::sync::Ivar::new();
    ///     v.fail(|| Box::new("no route to host"));
    ///     v.wait().unwrap_err()
    /// });
    /// assert_eq!(e.panic_message(), Some("no route to host"));
    /// ```
    pub fn fail(&self, payload: impl Fn() -> Box<dyn Any + Send> + 'static) -> bool {
        self.set(State::Failed(Rc::new(payload)))
    }

    /// Cancels the ivar: waiters get `Err(Error::Cancelled)`. `false` if
    /// the ivar was already set.
    pub fn cancel(&self) -> bool {
        self.set(State::Cancelled)
    }

    /// Whether the ivar is set (resolved, failed or cancelled).
    #[must_use]
    pub fn is_set(&self) -> bool {
        !matches!(*self.inner.state.borrow(), State::Empty)
    }
}

impl<T: Clone> Ivar<T> {
    /// The outcome, without waiting: `None` while the ivar is empty.
    #[must_use]
    pub fn try_get(&self) -> Option<Result<T, Error>> {
        match &*self.inner.state.borrow() {
            State::Empty => None,
            State::Resolved(v) => Some(Ok(v.clone())),
            State::Failed(p) => Some(Err(Error::Panicked(p()))),
            State::Cancelled => Some(Err(Error::Cancelled)),
        }
    }

    /// Waits (suspending only this task) until the ivar is set; its value,
    /// or why it has none.
    ///
    /// # Errors
    /// `Error::Panicked` after [`fail`](Ivar::fail), `Error::Cancelled`
    /// after [`cancel`](Ivar::cancel) — and `Error::Cancelled` when the
    /// waiting task itself is being cancelled (it cannot wait then).
    pub fn wait(&self) -> Result<T, Error> {
        loop {
            if let Some(r) = self.try_get() {
                return r;
            }
            if crate::fiber::cannot_wait() {
                return Err(Error::Cancelled);
            }
            self.inner.waiters.wait();
        }
    }
}

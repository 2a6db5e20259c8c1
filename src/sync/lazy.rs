//! A value computed once, on first use, by whichever task needs it first.

use crate::fiber::WaitQueue;
use core::cell::{Cell, OnceCell};

type Init<T> = Box<dyn FnOnce() -> T>;

/// A lazily computed value. The first task to [`force`](Lazy::force) it runs
/// the initialiser (which may suspend); others forcing it meanwhile wait.
///
/// ```
/// use mkernel::sync::Lazy;
/// use std::rc::Rc;
/// let v = mkernel::run((), |()| {
///     let config = Rc::new(Lazy::new(|| { mkernel::yield_now(); 40 + 2 }));
///     let c = config.clone();
///     let p = mkernel::spawn(move || *c.force());
///     let here = *config.force();
///     (here, p.join().unwrap())
/// });
/// assert_eq!(v, (42, 42));
/// ```
pub struct Lazy<T> {
    value: OnceCell<T>,
    init: Cell<Option<Init<T>>>,
    running: Cell<bool>,
    waiters: WaitQueue,
}

impl<T: core::fmt::Debug> core::fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("Lazy");
        match self.value.get() {
            Some(v) => d.field("value", v),
            None => d.field("value", &format_args!("<uninit>")),
        };
        d.finish_non_exhaustive()
    }
}

impl<T> Lazy<T> {
    /// A value that `f` computes on first use.
    pub fn new(f: impl FnOnce() -> T + 'static) -> Lazy<T> {
        Lazy {
            value: OnceCell::new(),
            init: Cell::new(Some(Box::new(f))),
            running: Cell::new(false),
            waiters: WaitQueue::new(),
        }
    }

    /// The value, computing it if needed.
    ///
    /// # Panics
    /// If the initialiser panicked or was cancelled earlier (the value can
    /// never exist).
    pub fn force(&self) -> &T {
        loop {
            if let Some(v) = self.value.get() {
                return v;
            }
            if self.running.get() {
                self.waiters.wait();
                continue;
            }
            let Some(f) = self.init.take() else {
                panic!(
                    "mkernel::sync::Lazy: the initialiser failed earlier; the value cannot be computed"
                )
            };
            self.running.set(true);
            struct Done<'a, T>(&'a Lazy<T>);
            impl<T> Drop for Done<'_, T> {
                fn drop(&mut self) {
                    self.0.running.set(false);
                    self.0.waiters.notify_all();
                }
            }
            let done = Done(self);
            let v = f();
            let _ = self.value.set(v);
            drop(done);
        }
    }
}

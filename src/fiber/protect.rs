//! Running clean-up code on cancellation.

use super::scheduler;

/// Runs `f`; if the current task is cancelled while inside `f`, calls
/// `on_cancellation()` as the task unwinds. In every case `finally(cancelled)`
/// runs when `f` is left (normally, by a panic, or by cancellation).
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let l = log.clone();
/// mkernel::run((), move |()| {
///     let l2 = l.clone();
///     let p = mkernel::spawn(move || {
///         let (a, b) = (l2.clone(), l2.clone());
///         mkernel::protect(
///             move || a.borrow_mut().push("cancelled"),
///             move |c| b.borrow_mut().push(if c { "finally(true)" } else { "finally(false)" }),
///             || loop { mkernel::yield_now() },
///         )
///     });
///     mkernel::yield_now();
///     p.cancel();
/// });
/// assert_eq!(*log.borrow(), ["cancelled", "finally(true)"]);
/// ```
pub fn protect<T>(
    on_cancellation: impl FnOnce(),
    finally: impl FnOnce(bool),
    f: impl FnOnce() -> T,
) -> T {
    struct Guard<C: FnOnce(), F: FnOnce(bool)> {
        on_cancellation: Option<C>,
        finally: Option<F>,
    }
    impl<C: FnOnce(), F: FnOnce(bool)> Drop for Guard<C, F> {
        fn drop(&mut self) {
            let cancelled = std::thread::panicking() && scheduler::cancelling();
            if cancelled {
                if let Some(c) = self.on_cancellation.take() {
                    c()
                }
            }
            if let Some(f) = self.finally.take() {
                f(cancelled)
            }
        }
    }
    let _g = Guard {
        on_cancellation: Some(on_cancellation),
        finally: Some(finally),
    };
    f()
}

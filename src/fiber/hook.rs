//! Functions the scheduler calls: at every scheduling point (Miou's
//! `Hook`), or each time the run is about to wait for the outside world
//! (mkernel's `Hook`).

use super::scheduler;
use core::cell::{Cell, RefCell};
use std::rc::Rc;

pub(crate) struct HookInner {
    f: RefCell<Box<dyn FnMut()>>,
    removed: Cell<bool>,
}

/// A function the scheduler calls at each tick (each scheduling point, before
/// picking the next task), until [`Hook::remove`].
///
/// A hook runs on the scheduler's stack, not in a task: it must not spawn,
/// join, yield or wait. A hook that panics is removed and the run goes on
/// (as in Miou); the panic's message is printed by the panic hook as usual.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// let ticks = Rc::new(Cell::new(0));
/// let t = ticks.clone();
/// mkernel::run((), move |()| {
///     let hook = mkernel::Hook::add(move || t.set(t.get() + 1));
///     for _ in 0..10 { mkernel::yield_now(); }
///     hook.remove();
/// });
/// assert!(ticks.get() >= 10);
/// ```
pub struct Hook {
    inner: Rc<HookInner>,
}

impl core::fmt::Debug for Hook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hook")
            .field("removed", &self.inner.removed.get())
            .finish_non_exhaustive()
    }
}

impl Hook {
    /// Adds `f` to the hooks of the current run.
    pub fn add(f: impl FnMut() + 'static) -> Hook {
        Hook {
            inner: add(Kind::Tick, Box::new(f)),
        }
    }

    /// Stops calling the hook.
    pub fn remove(self) {
        remove(Kind::Tick, self.inner);
    }
}

/// A function the scheduler calls each time the run is about to wait for
/// the outside world — no task can run, and the scheduler asks the
/// platform for device events and timers (where it may sleep: `epoll` or
/// Solo5's `solo5_yield`) — until [`WaitHook::remove`]. This is mkernel's
/// `Hook` (robur's `Mkernel.Hook`), which entropy feeders and the like rely
/// on; it is not Miou's [`Hook`], which runs at every scheduling point.
///
/// It runs on the scheduler's stack, not in a task: it must not spawn,
/// join, yield or wait. One that panics is removed and the run goes on.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// let waits = Rc::new(Cell::new(0));
/// let w = waits.clone();
/// mkernel::run((), move |()| {
///     let w2 = w.clone();
///     let hook = mkernel::WaitHook::add(move || w2.set(w2.get() + 1));
///     for _ in 0..100 { mkernel::yield_now(); } // never waits: no call
///     assert_eq!(w.get(), 0);
///     mkernel::sleep(std::time::Duration::from_millis(2)); // waits: called
///     hook.remove();
/// });
/// assert!(waits.get() >= 1);
/// ```
pub struct WaitHook {
    inner: Rc<HookInner>,
}

impl core::fmt::Debug for WaitHook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WaitHook")
            .field("removed", &self.inner.removed.get())
            .finish_non_exhaustive()
    }
}

impl WaitHook {
    /// Adds `f` to the wait hooks of the current run.
    pub fn add(f: impl FnMut() + 'static) -> WaitHook {
        WaitHook {
            inner: add(Kind::Wait, Box::new(f)),
        }
    }

    /// Stops calling the hook.
    pub fn remove(self) {
        remove(Kind::Wait, self.inner);
    }
}

/// Which list a hook is on.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// Every scheduling point ([`Hook`]).
    Tick,
    /// Before waiting for the outside world ([`WaitHook`]).
    Wait,
}

fn add(kind: Kind, f: Box<dyn FnMut()>) -> Rc<HookInner> {
    let inner = Rc::new(HookInner {
        f: RefCell::new(f),
        removed: Cell::new(false),
    });
    scheduler::with(|s| s.hooks_mut(kind).push(inner.clone()));
    inner
}

fn remove(kind: Kind, inner: Rc<HookInner>) {
    inner.removed.set(true);
    scheduler::with(|s| s.hooks_mut(kind).retain(|h| !Rc::ptr_eq(h, &inner)));
}

/// Runs the hooks of `kind` (outside any scheduler borrow).
pub(crate) fn run_hooks(kind: Kind) {
    let hooks = scheduler::with(|s| {
        let list = s.hooks_mut(kind);
        if list.is_empty() {
            None
        } else {
            Some(list.clone())
        }
    });
    if let Some(hooks) = hooks {
        for h in hooks {
            if h.removed.get() {
                continue;
            }
            // A panicking hook is removed (Miou's rule); the payload is
            // dropped here, its message was already printed.
            let panicked = match h.f.try_borrow_mut() {
                Ok(mut f) => {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut *f)).is_err()
                }
                Err(_) => false, // it is running (a hook inside a hook's wait)
            };
            if panicked {
                remove(kind, h);
            }
        }
    }
}

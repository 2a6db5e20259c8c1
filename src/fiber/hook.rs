//! Functions run at every scheduling point.

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
/// join, yield or wait.
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
        let inner = Rc::new(HookInner {
            f: RefCell::new(Box::new(f)),
            removed: Cell::new(false),
        });
        scheduler::with(|s| s.hooks.push(inner.clone()));
        Hook { inner }
    }

    /// Stops calling the hook.
    pub fn remove(self) {
        self.inner.removed.set(true);
        let inner = self.inner;
        scheduler::with(|s| s.hooks.retain(|h| !Rc::ptr_eq(h, &inner)));
    }
}

pub(crate) fn run_hooks() {
    let hooks = scheduler::with(|s| {
        if s.hooks.is_empty() {
            None
        } else {
            Some(s.hooks.clone())
        }
    });
    if let Some(hooks) = hooks {
        for h in hooks {
            if !h.removed.get() {
                if let Ok(mut f) = h.f.try_borrow_mut() {
                    f()
                }
            }
        }
    }
}

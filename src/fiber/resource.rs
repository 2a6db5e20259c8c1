//! Resources owned by tasks, finalised when their owner fails (Miou's
//! `Ownership`).

use super::Violation;
use super::scheduler::{self, violation};
use super::task::TaskRef;
use core::cell::{Cell, RefCell};
use std::rc::Rc;

struct Inner {
    finally: RefCell<Option<Box<dyn FnOnce()>>>,
    owner: Cell<Option<TaskRef>>,
}

/// A value with a finaliser, owned by a task.
///
/// A task that *owns* a resource promises to give it back before it ends:
/// [`release`](Resource::release) (finalise now), [`disown`](Resource::disown)
/// (keep it alive, no finaliser), or [`transfer`](Resource::transfer) (hand it
/// to the parent). If the task fails (panics) or is cancelled, the finaliser
/// runs for it; if it returns normally while still owning the resource, the
/// finaliser runs and the run stops with [`Violation::ResourceLeaked`].
/// [`spawn_giving`](crate::spawn_giving) hands resources to a new child.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// let closed = Rc::new(Cell::new(false));
/// let c = closed.clone();
/// mkernel::run((), move |()| {
///     let p = mkernel::spawn(move || {
///         let socket = mkernel::Resource::new("fd 3", move |_fd| c.set(true));
///         socket.own();
///         panic!("the connection handler failed");
///     });
///     assert!(p.join().is_err());
/// });
/// assert!(closed.get()); // the failed task's resource was finalised
/// ```
#[derive(Clone)]
pub struct Resource {
    inner: Rc<Inner>,
}

impl core::fmt::Debug for Resource {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("Resource");
        if let Ok(fin) = self.inner.finally.try_borrow() {
            d.field("finalised", &fin.is_none());
        }
        d.finish_non_exhaustive()
    }
}

impl Resource {
    /// A resource holding `value`; `finally(value)` is its finaliser. It has
    /// no owner until [`own`](Resource::own).
    pub fn new<V: 'static>(value: V, finally: impl FnOnce(V) + 'static) -> Resource {
        Resource {
            inner: Rc::new(Inner {
                finally: RefCell::new(Some(Box::new(move || finally(value)))),
                owner: Cell::new(None),
            }),
        }
    }

    /// Makes the current task the owner.
    ///
    /// Owning a resource already owned by another task is a
    /// [`Violation::NotOwner`].
    pub fn own(&self) {
        let me = scheduler::current();
        match self.inner.owner.get() {
            Some(o) if o == me => {}
            Some(o) if scheduler::with(|s| s.slot(o).is_some_and(|sl| !sl.state.is_finished())) => {
                violation(
                    Violation::NotOwner,
                    format!(
                        "task {} owns a resource that task {} already owns",
                        me.uid, o.uid
                    ),
                )
            }
            _ => {
                self.inner.owner.set(Some(me));
                scheduler::with(|s| s.tasks[me.idx as usize].resources.push(self.clone()));
            }
        }
    }

    /// Panics with [`Violation::NotOwner`] unless the current task owns it.
    pub fn check(&self) {
        let me = scheduler::current();
        if self.inner.owner.get() != Some(me) {
            violation(
                Violation::NotOwner,
                format!(
                    "task {} used a resource it does not own (call own() first)",
                    me.uid
                ),
            )
        }
    }

    /// Stops owning it, without finalising it.
    pub fn disown(&self) {
        self.check();
        self.detach_from_owner();
    }

    /// Finalises it now and stops owning it.
    pub fn release(&self) {
        self.check();
        self.detach_from_owner();
        self.finalise();
    }

    /// Hands it to the parent of the current task.
    pub fn transfer(&self) {
        self.check();
        let parent = scheduler::with(|s| {
            let me = s.current_or_panic();
            s.tasks[me.idx as usize].parent
        });
        let Some(parent) = parent else {
            violation(
                Violation::NotOwner,
                "the main task has no parent to transfer a resource to".into(),
            )
        };
        self.detach_from_owner();
        self.inner.owner.set(Some(parent));
        scheduler::with(|s| {
            if let Some(p) = s.slot_mut(parent) {
                p.resources.push(self.clone());
            }
        });
    }

    /// Moves ownership from the current task to `to` (for `spawn_giving`).
    pub(crate) fn give_to(&self, to: TaskRef) {
        self.check();
        self.detach_from_owner();
        self.inner.owner.set(Some(to));
        scheduler::with(|s| s.tasks[to.idx as usize].resources.push(self.clone()));
    }

    fn detach_from_owner(&self) {
        if let Some(o) = self.inner.owner.take() {
            scheduler::with(|s| {
                if let Some(sl) = s.slot_mut(o) {
                    sl.resources.retain(|r| !Rc::ptr_eq(&r.inner, &self.inner));
                }
            });
        }
    }

    fn finalise(&self) {
        let f = self.inner.finally.borrow_mut().take();
        if let Some(f) = f {
            f()
        }
    }

    /// Finalises resources taken from a task that ended.
    pub(crate) fn finalise_all(resources: Vec<Resource>) {
        for r in resources {
            r.inner.owner.set(None);
            r.finalise();
        }
    }
}

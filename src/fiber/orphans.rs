//! Background children collected later: Miou's `orphans`.

use super::Error;
use super::promise::{Promise, spawn};
use super::scheduler;
use super::task::{TaskRef, Wait};
use core::cell::{Cell, RefCell};
use std::rc::Rc;

/// A collector of background children, for servers that spawn a task per
/// request and reap the finished ones from time to time.
///
/// The tasks are still children of the task that spawned them (rule 1: it
/// must join or cancel each before it returns); `Orphans` only remembers
/// their promises so that finished ones can be found without blocking.
///
/// Orphans belong to one task, as in Miou: the task that made them with
/// [`Orphans::new`] (or, for orphans made outside a run, the first task that
/// spawns into them). [`spawn_orphan`] from any other task panics at once,
/// naming both tasks, since the children would not be its own.
///
/// ```
/// let served = mkernel::run((), |()| {
///     let orphans = mkernel::Orphans::new();
///     let mut served = 0;
///     for request in 0..10 {
///         // Reap what finished, without waiting.
///         while let Some(Some(p)) = orphans.care() { served += p.join().unwrap(); }
///         mkernel::spawn_orphan(&orphans, move || request % 2);
///     }
///     // Then wait for the rest.
///     while let Some(r) = orphans.get() { served += r.unwrap(); }
///     served
/// });
/// assert_eq!(served, 5);
/// ```
pub struct Orphans<T> {
    promises: Rc<RefCell<Vec<Promise<T>>>>,
    /// The task whose children these are (see the type's docs).
    owner: Rc<Cell<Option<TaskRef>>>,
}

impl<T> core::fmt::Debug for Orphans<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("Orphans");
        if let Ok(ps) = self.promises.try_borrow() {
            d.field("len", &ps.len());
        }
        d.finish_non_exhaustive()
    }
}

impl<T> Clone for Orphans<T> {
    fn clone(&self) -> Self {
        Orphans {
            promises: self.promises.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl<T: 'static> Default for Orphans<T> {
    fn default() -> Self {
        Orphans::new()
    }
}

/// Spawns `f` as a child of the current task and keeps its promise in
/// `orphans`.
///
/// # Panics
/// When the current task is not the orphans' owner (see [`Orphans`]).
#[track_caller]
pub fn spawn_orphan<T: 'static>(orphans: &Orphans<T>, f: impl FnOnce() -> T + 'static) {
    orphans.claim();
    let p = spawn(f);
    orphans.promises.borrow_mut().push(p);
}

/// [`call`](crate::call)s `f` (on another core) as a child of the current
/// task and keeps its promise in `orphans` (Miou's `call ~orphans`). The
/// collector stays on the caller's core: only the promises are in it.
///
/// # Panics
/// When the current task is not the orphans' owner (see [`Orphans`]).
///
/// ```
/// let total = mkernel::Builder::new().cores(2).run((), |()| {
///     let orphans = mkernel::Orphans::new();
///     for n in 1..=4u64 {
///         mkernel::call_orphan(&orphans, move || (1..=n).product::<u64>());
///     }
///     let mut total = 0;
///     while let Some(r) = orphans.get() { total += r.unwrap(); }
///     total
/// });
/// assert_eq!(total, 1 + 2 + 6 + 24);
/// ```
#[track_caller]
pub fn call_orphan<T: Send + 'static>(
    orphans: &Orphans<T>,
    f: impl FnOnce() -> T + Send + 'static,
) {
    orphans.claim();
    let p = super::cores::call(f);
    orphans.promises.borrow_mut().push(p);
}

#[cold]
#[inline(never)]
#[track_caller]
fn not_the_owner(me: TaskRef, owner: TaskRef) -> ! {
    let site = |t: TaskRef| {
        scheduler::with(|s| {
            s.slot(t).map_or("a task that has ended".to_string(), |sl| {
                format!("spawned at {}", sl.site)
            })
        })
    };
    panic!(
        "mkernel: spawn_orphan from task {} ({}): these orphans belong to task {} ({}); \
         only their owner may spawn into them, since the tasks become its children",
        me.uid,
        site(me),
        owner.uid,
        site(owner)
    )
}

impl<T> Orphans<T> {
    /// Checks that the current task owns these orphans (making it their
    /// owner if they have none yet).
    #[track_caller]
    fn claim(&self) {
        let me = scheduler::current();
        match self.owner.get() {
            None => self.owner.set(Some(me)),
            Some(owner) if owner != me => not_the_owner(me, owner),
            Some(_) => {}
        }
    }
}

impl<T: 'static> Orphans<T> {
    /// An empty collector, owned by the current task (or, made outside a
    /// run, by the first task that spawns into it).
    #[must_use]
    pub fn new() -> Orphans<T> {
        let owner = if scheduler::in_run() {
            scheduler::with(|s| s.current_ref())
        } else {
            None
        };
        Orphans {
            promises: Rc::new(RefCell::new(Vec::new())),
            owner: Rc::new(Cell::new(owner)),
        }
    }

    /// `None` if no task is left; `Some(None)` if tasks are left but none has
    /// finished; `Some(Some(p))` with a finished task's promise, ready to
    /// join without waiting.
    #[must_use]
    pub fn care(&self) -> Option<Option<Promise<T>>> {
        let mut ps = self.promises.borrow_mut();
        if ps.is_empty() {
            return None;
        }
        let i = finished_index(&ps);
        Some(i.map(|i| ps.swap_remove(i)))
    }

    /// Takes one promise out of the collector without waiting, as Miou's
    /// `take`: a finished task's if there is one, else the oldest task's,
    /// which may still run and is now the caller's to join or cancel (how
    /// a server cancels its in-flight handlers at shutdown); `None` if no
    /// task is left.
    ///
    /// ```
    /// mkernel::run((), |()| {
    ///     let orphans = mkernel::Orphans::new();
    ///     mkernel::spawn_orphan(&orphans, || loop { mkernel::yield_now() });
    ///     while let Some(p) = orphans.take() {
    ///         p.cancel(); // shutdown: stop every handler
    ///     }
    /// });
    /// ```
    #[must_use]
    pub fn take(&self) -> Option<Promise<T>> {
        let mut ps = self.promises.borrow_mut();
        if ps.is_empty() {
            return None;
        }
        let i = finished_index(&ps).unwrap_or(0);
        Some(ps.remove(i))
    }

    /// Waits until one task has finished and returns its promise; `None` if
    /// no task is left.
    fn take_finished(&self) -> Option<Promise<T>> {
        loop {
            let ps = self.promises.borrow();
            if ps.is_empty() {
                return None;
            }
            if let Some(i) = finished_index(&ps) {
                drop(ps);
                return Some(self.promises.borrow_mut().swap_remove(i));
            }
            scheduler::with(|s| {
                for p in ps.iter() {
                    if let Some(sl) = s.slot_mut(p.task()) {
                        sl.joined_by_parent = true;
                    }
                }
            });
            drop(ps);
            scheduler::park(Wait::Join);
        }
    }

    /// Waits until one task has finished and joins it; `None` if no task is
    /// left.
    pub fn get(&self) -> Option<Result<T, Error>> {
        self.take_finished().map(Promise::join)
    }

    /// How many tasks are left (finished or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.promises.borrow().len()
    }

    /// Whether no task is left.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn finished_index<T>(ps: &[Promise<T>]) -> Option<usize> {
    scheduler::with(|s| {
        ps.iter()
            .position(|p| s.slot(p.task()).is_none_or(|sl| sl.state.is_finished()))
    })
}

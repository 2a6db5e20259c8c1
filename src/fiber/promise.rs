//! Spawning tasks and waiting for them: `spawn`, `Promise`, the `join_*`
//! family.

use super::resource::Resource;
use super::scheduler::Joined;
use super::scheduler::{self, violation};
use super::task::{State, TaskId, TaskRef, TaskStats, Wait};
use super::{Error, Violation};
use core::any::Any;
use core::fmt;
use core::marker::PhantomData;
use core::panic::Location;
use std::borrow::Cow;

/// The handle of a spawned task, through which its parent gets its result.
///
/// Rules (see the crate docs): only the task that spawned it may
/// [`join`](Promise::join) or [`cancel`](Promise::cancel) it, and it must do
/// one of the two before it returns, even when the child already finished.
#[must_use = "a task must join or cancel each of its children (Violation::StillHasChildren)"]
pub struct Promise<T> {
    task: TaskRef,
    _result: PhantomData<*const T>,
}

impl<T> fmt::Debug for Promise<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Promise(task {})", self.task.uid)
    }
}

/// Spawns `f` as a child of the current task and returns its promise.
///
/// The child is queued; the parent keeps running until it suspends or
/// yields (availability: the child runs at the next scheduling point).
///
/// ```
/// let order = mkernel::run((), |()| {
///     let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
///     let l = log.clone();
///     let p = mkernel::spawn(move || l.borrow_mut().push("Hello"));
///     log.borrow_mut().push("World");
///     p.join().unwrap();
///     log.take()
/// });
/// assert_eq!(order, ["World", "Hello"]);
/// ```
#[track_caller]
pub fn spawn<T: 'static>(f: impl FnOnce() -> T + 'static) -> Promise<T> {
    let site = Location::caller();
    let (task, rotate) = scheduler::spawn_raw(move || Box::new(f()) as Box<dyn Any>, site, false);
    // The promise must exist before the task may yield: if the parent is
    // cancelled there, dropping it is what frees the child's record.
    let p = Promise {
        task,
        _result: PhantomData,
    };
    if rotate {
        scheduler::yield_current();
    }
    p
}

/// [`spawn`] with a name for the task, which reports read as the program
/// does: a [trace](crate::Trace) names the task's track after it, and
/// messages about the task (a rule violation, a deadlock) give it.
///
/// ```
/// let v = mkernel::run((), |()| {
///     let clients: Vec<_> = (0..3)
///         .map(|i| mkernel::spawn_named(format!("client {i}"), move || i * 10))
///         .collect();
///     let server = mkernel::spawn_named("server", || 1);
///     let sum: i32 = mkernel::join_all(clients).into_iter().map(Result::unwrap).sum();
///     sum + server.join().unwrap()
/// });
/// assert_eq!(v, 31);
/// ```
#[track_caller]
pub fn spawn_named<T: 'static>(
    name: impl Into<Cow<'static, str>>,
    f: impl FnOnce() -> T + 'static,
) -> Promise<T> {
    let site = Location::caller();
    let (task, rotate) = scheduler::spawn_raw(move || Box::new(f()) as Box<dyn Any>, site, false);
    let name = name.into();
    scheduler::with(|s| {
        if s.trace.is_some() {
            super::trace::name(s, task, name.clone());
        }
        s.tasks[task.idx as usize].name = Some(name);
    });
    let p = Promise {
        task,
        _result: PhantomData,
    };
    if rotate {
        scheduler::yield_current();
    }
    p
}

/// Spawns `f` and gives it the resources in `give`: the child owns them
/// (they must be owned by the current task).
///
/// ```
/// mkernel::run((), |()| {
///     let r = mkernel::Resource::new((), |()| ());
///     r.own();
///     let r2 = r.clone();
///     let p = mkernel::spawn_giving(vec![r.clone()], move || { r2.check(); r2.release(); });
///     p.join().unwrap();
/// });
/// ```
#[track_caller]
pub fn spawn_giving<T: 'static>(
    give: Vec<Resource>,
    f: impl FnOnce() -> T + 'static,
) -> Promise<T> {
    for r in &give {
        r.check();
    }
    let site = Location::caller();
    let (task, rotate) = scheduler::spawn_raw(move || Box::new(f()) as Box<dyn Any>, site, false);
    let p = Promise {
        task,
        _result: PhantomData,
    };
    for r in &give {
        r.give_to(task);
    }
    if rotate {
        scheduler::yield_current();
    }
    p
}

/// Spawns a task owned by the runtime, not by a task: it needs no join and
/// is cancelled when the main function returns (a network stack's receiver).
#[track_caller]
pub(crate) fn spawn_daemon(f: impl FnOnce() + 'static) -> TaskId {
    let site = Location::caller();
    let entry = move || {
        f();
        Box::new(()) as Box<dyn Any>
    };
    TaskId(scheduler::spawn_raw(entry, site, true).0.uid)
}

/// Puts the current task at the back of the run queue: every other runnable
/// task runs once before it runs again.
///
/// ```
/// let order = mkernel::run((), |()| {
///     let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
///     let l = log.clone();
///     let p = mkernel::spawn(move || l.borrow_mut().push("Hello"));
///     mkernel::yield_now();
///     log.borrow_mut().push("World");
///     p.join().unwrap();
///     log.take()
/// });
/// assert_eq!(order, ["Hello", "World"]);
/// ```
#[inline]
pub fn yield_now() {
    scheduler::yield_current()
}

fn check_parent(t: TaskRef, what: &str) {
    let (me, parent, site) = scheduler::with(|s| {
        let me = s.current_or_panic();
        let slot = s.slot(t);
        (me, slot.and_then(|sl| sl.parent), slot.map(|sl| sl.site))
    });
    if parent != Some(me) {
        let site = site.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
        violation(
            Violation::NotAChild,
            format!(
                "task {} tried to {what} task {} (spawned at {site}), which is not its child; \
                 only the task that spawned a promise may {what} it",
                me.uid, t.uid
            ),
        )
    }
}

impl<T: 'static> Promise<T> {
    /// Waits for the task to finish and returns its result.
    ///
    /// Suspends the current task if needed. Joining a promise the current
    /// task did not spawn is a [`Violation::NotAChild`].
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the task was cancelled, [`Error::Panicked`]
    /// (with the payload) when it panicked.
    // Always inlined: the suspension must happen in the caller's frame (see
    // `yield_now`).
    #[inline(always)]
    pub fn join(self) -> Result<T, Error> {
        loop {
            match scheduler::try_join(self.task) {
                (Joined::Done(r), rotate) => {
                    // The record is freed: nothing left for `drop` to do.
                    core::mem::forget(self);
                    if rotate {
                        scheduler::yield_current();
                    }
                    return r.map(|v| {
                        *v.downcast::<T>()
                            .expect("a task's result has its promise's type")
                    });
                }
                (Joined::Wait, _) => scheduler::park(Wait::Join),
                (Joined::NotAChild(me, site), _) => not_a_child(me, site, self.task),
            }
        }
    }
}

impl<T: 'static> Promise<T> {
    /// Joins the task and returns its value; if the task panicked, the
    /// panic goes on in the caller with the child's own payload (Miou's
    /// `await_exn`: the exception is re-raised, not wrapped).
    ///
    /// # Panics
    /// With the child's payload if it panicked; with a message if it was
    /// cancelled.
    ///
    /// ```
    /// let r = std::panic::catch_unwind(|| {
    ///     mkernel::run((), |()| {
    ///         mkernel::spawn(|| -> u32 { std::panic::panic_any(42u8) }).join_unwrap()
    ///     })
    /// });
    /// assert_eq!(r.unwrap_err().downcast_ref::<u8>(), Some(&42));
    /// assert_eq!(mkernel::run((), |()| mkernel::spawn(|| 5).join_unwrap()), 5);
    /// ```
    #[track_caller]
    #[expect(
        clippy::must_use_candidate,
        reason = "a task's value is often `()`: joining is the point, as `JoinHandle::join`"
    )]
    pub fn join_unwrap(self) -> T {
        match self.join() {
            Ok(v) => v,
            Err(Error::Panicked(p)) => std::panic::resume_unwind(p),
            Err(Error::Cancelled) => panic!("mkernel: join_unwrap on a cancelled task"),
        }
    }
}

#[cold]
#[inline(never)]
fn not_a_child(me: u64, site: &Location<'_>, t: TaskRef) -> ! {
    violation(
        Violation::NotAChild,
        format!(
            "task {me} tried to join task {} (spawned at {site}), which is not its child; \
             only the task that spawned a promise may join it",
            t.uid
        ),
    )
}

impl<T> Promise<T> {
    /// Cancels the task and all its descendants.
    ///
    /// When `cancel` returns, they have all terminated: their destructors
    /// ran (a suspended task is unwound at its suspension point; one that
    /// never ran has its closure dropped) and whatever they were waiting for
    /// was withdrawn. Cancelling a finished task replaces its result with
    /// `Err(Error::Cancelled)`. A cancelled promise may be dropped without
    /// joining it.
    ///
    /// ```
    /// mkernel::run((), |()| {
    ///     let p = mkernel::spawn(|| loop { mkernel::yield_now() });
    ///     mkernel::yield_now();
    ///     p.cancel();
    ///     assert!(matches!(p.join(), Err(mkernel::Error::Cancelled)));
    /// });
    /// ```
    pub fn cancel(&self) {
        check_parent(self.task, "cancel");
        scheduler::cancel_task(self.task);
        scheduler::with(|s| s.detach(self.task));
        scheduler::after_op();
    }

    /// The task's id.
    #[must_use]
    pub fn id(&self) -> TaskId {
        TaskId(self.task.uid)
    }

    /// Whether the task has finished (returned, panicked or was cancelled).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        scheduler::with(|s| s.slot(self.task).is_none_or(|sl| sl.state.is_finished()))
    }

    /// The task's scheduling figures so far.
    #[must_use]
    pub fn stats(&self) -> TaskStats {
        super::stats::task_stats_of(self.task).unwrap_or_default()
    }

    pub(crate) fn task(&self) -> TaskRef {
        self.task
    }

    /// The promise of a task just spawned as the current task's child.
    pub(crate) fn from_task(task: TaskRef) -> Promise<T> {
        Promise {
            task,
            _result: PhantomData,
        }
    }
}

impl<T> Drop for Promise<T> {
    fn drop(&mut self) {
        if !scheduler::in_run() {
            return;
        }
        let t = self.task;
        let unfinished_while_failing = scheduler::with(|s| {
            let me = s.current_ref();
            match s.slot_mut(t) {
                Some(sl) => {
                    sl.promise_alive = false;
                    let mine = me.is_some() && sl.parent == me;
                    mine && sl.attached && !sl.state.is_finished() && std::thread::panicking()
                }
                None => false,
            }
        });
        if unfinished_while_failing {
            // The parent is unwinding (it panicked or is being cancelled):
            // rule 3, its unfinished children are cancelled.
            scheduler::cancel_task(t);
            scheduler::with(|s| s.detach(t));
        }
        scheduler::drop_if_unreferenced(t);
    }
}

/// Joins every promise, in order.
///
/// ```
/// let v = mkernel::run((), |()| {
///     let ps = (0..4).map(|i| mkernel::spawn(move || i * i)).collect();
///     mkernel::join_all(ps).into_iter().map(Result::unwrap).collect::<Vec<_>>()
/// });
/// assert_eq!(v, [0, 1, 4, 9]);
/// ```
pub fn join_all<T: 'static>(ps: Vec<Promise<T>>) -> Vec<Result<T, Error>> {
    ps.into_iter().map(Promise::join).collect()
}

/// Waits for the first task to finish (returning or panicking), cancels all
/// the others, and returns its result. Among tasks finished at the same
/// time, one that returned is preferred to one that failed (then one is
/// picked at random, reproducibly from [`Builder::seed`](crate::Builder::seed)).
///
/// # Panics
/// If `ps` is empty.
///
/// ```
/// let v = mkernel::run((), |()| {
///     let slow = mkernel::spawn(|| { for _ in 0..1000 { mkernel::yield_now() } 1 });
///     let fast = mkernel::spawn(|| 2);
///     mkernel::join_first(vec![slow, fast])
/// });
/// assert_eq!(v.unwrap(), 2);
/// ```
///
/// # Errors
///
/// The first finished task's error: [`Error::Cancelled`] or
/// [`Error::Panicked`].
pub fn join_first<T: 'static>(ps: Vec<Promise<T>>) -> Result<T, Error> {
    let (r, rest) = join_any(ps);
    for p in rest {
        p.cancel();
    }
    r
}

/// Waits for one task to finish and returns its result with the promises
/// still to be joined or cancelled. Among tasks finished at the same time,
/// one that returned is preferred to one that failed.
///
/// # Panics
/// If `ps` is empty.
///
/// ```
/// let total = mkernel::run((), |()| {
///     let mut ps: Vec<_> = (1..=3).map(|i| mkernel::spawn(move || i)).collect();
///     let mut total = 0;
///     while !ps.is_empty() {
///         let (r, rest) = mkernel::join_any(ps);
///         total += r.unwrap();
///         ps = rest;
///     }
///     total
/// });
/// assert_eq!(total, 6);
/// ```
pub fn join_any<T: 'static>(mut ps: Vec<Promise<T>>) -> (Result<T, Error>, Vec<Promise<T>>) {
    assert!(
        !ps.is_empty(),
        "mkernel::join_any/join_first: the list of promises is empty"
    );
    for p in &ps {
        check_parent(p.task, "join");
    }
    loop {
        let pick = scheduler::with(|s| {
            let mut ok = Vec::new();
            let mut failed = Vec::new();
            for (i, p) in ps.iter().enumerate() {
                match s.slot(p.task).map(|sl| (sl.state, &sl.result)) {
                    Some((State::Done, Some(Ok(_)))) => ok.push(i),
                    Some((State::Done | State::Consumed, _)) | None => failed.push(i),
                    _ => {}
                }
            }
            let pool = if ok.is_empty() { failed } else { ok };
            match pool.len() {
                0 => None,
                1 => Some(pool[0]),
                n => Some(pool[(s.next_random() % n as u64) as usize]),
            }
        });
        if let Some(i) = pick {
            let p = ps.swap_remove(i);
            let r = p.join();
            scheduler::with(|s| {
                for q in &ps {
                    if let Some(sl) = s.slot_mut(q.task) {
                        sl.joined_by_parent = false;
                    }
                }
            });
            return (r, ps);
        }
        scheduler::with(|s| {
            for p in &ps {
                if let Some(sl) = s.slot_mut(p.task) {
                    sl.joined_by_parent = true;
                }
            }
        });
        scheduler::park(Wait::Join);
    }
}

/// Joins two promises of possibly different types.
///
/// ```
/// let (a, b) = mkernel::run((), |()| {
///     mkernel::both(mkernel::spawn(|| 1u8), mkernel::spawn(|| "two"))
/// });
/// assert_eq!((a.unwrap(), b.unwrap()), (1, "two"));
/// ```
pub fn both<A: 'static, B: 'static>(
    a: Promise<A>,
    b: Promise<B>,
) -> (Result<A, Error>, Result<B, Error>) {
    let a = a.join();
    let b = b.join();
    (a, b)
}

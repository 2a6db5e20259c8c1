//! User-defined suspension points: `Syscall`, `suspend`, `Signal`, `Events`.
//!
//! This is how Miou lets a program wait on something the scheduler does not
//! know: a task creates a [`Syscall`], arranges for the outside world to
//! learn its id, and [`suspend`]s on it; the run's event source (an
//! [`Events`] implementation) later returns the syscall's [`Signal`] from
//! `select`, and the task becomes runnable again. mkernel's own devices and
//! sleeps are built the same way on the platform's event source.

use super::scheduler;
use super::task::{TaskRef, Wait};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// The identity of a [`Syscall`]: unique in the process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SyscallId(u64);

impl SyscallId {
    /// The number behind the id.
    #[must_use]
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// Something a task can wait for; see [`suspend`].
///
/// ```
/// use mkernel::{Events, Signal, Syscall, SyscallId};
/// use std::{cell::RefCell, rc::Rc};
///
/// // An event source that signals every syscall it was told about.
/// struct Ready(Rc<RefCell<Vec<Signal>>>);
/// impl Events for Ready {
///     fn select(&mut self, _block: bool, _cancelled: &[SyscallId]) -> Vec<Signal> {
///         std::mem::take(&mut *self.0.borrow_mut())
///     }
/// }
/// let pending = Rc::new(RefCell::new(Vec::new()));
/// let source = Ready(pending.clone());
/// let v = mkernel::Builder::new().events(source).run((), move |()| {
///     let sc = Syscall::new();
///     mkernel::suspend(&sc, || pending.borrow_mut().push(sc.signal()));
///     42
/// });
/// assert_eq!(v, 42);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Syscall {
    id: SyscallId,
}

static NEXT_SYSCALL: AtomicU64 = AtomicU64::new(1);

impl Syscall {
    /// A new syscall, with a fresh id.
    #[allow(
        clippy::new_without_default,
        reason = "each syscall is a fresh id: `new` is not a default value"
    )]
    pub fn new() -> Syscall {
        Syscall {
            id: SyscallId(NEXT_SYSCALL.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Its id (what `Events::select` is told about on cancellation).
    #[must_use]
    pub fn id(&self) -> SyscallId {
        self.id
    }

    /// The signal that wakes the task suspended on this syscall, to be
    /// returned by `Events::select`.
    #[must_use]
    pub fn signal(&self) -> Signal {
        Signal { id: self.id }
    }
}

/// The syscalls tasks wait on, as the scheduler tracks them (this module
/// owns the invariant: a syscall id is in at most one of `waiting` and
/// `early`, and a cancelled one is reported to the event source once).
#[derive(Default)]
pub(super) struct Waiting {
    /// Who waits on which syscall.
    waiting: HashMap<SyscallId, TaskRef>,
    /// Signals that came before their task suspended (`suspend` then
    /// returns at once).
    early: HashSet<SyscallId>,
    /// Syscalls whose task was cancelled, for the next `select`.
    cancelled: Vec<SyscallId>,
}

impl Waiting {
    /// Registers `task` as waiting for `id`; false when its signal already
    /// came (no need to wait).
    pub(super) fn register(&mut self, id: SyscallId, task: TaskRef) -> bool {
        if self.early.remove(&id) {
            return false;
        }
        self.waiting.insert(id, task);
        true
    }

    /// A signal for `id`: the task to wake, or none yet (then the signal is
    /// kept for the task about to wait on it).
    pub(super) fn signalled(&mut self, id: SyscallId) -> Option<TaskRef> {
        let t = self.waiting.remove(&id);
        if t.is_none() {
            self.early.insert(id);
        }
        t
    }

    /// The task waiting on `id` is being cancelled: forget it, and tell the
    /// event source at its next `select`.
    pub(super) fn cancel(&mut self, id: SyscallId) {
        self.waiting.remove(&id);
        self.cancelled.push(id);
    }

    /// Forgets `id` altogether (a timed wait that ended).
    pub(super) fn forget(&mut self, id: SyscallId) {
        self.waiting.remove(&id);
        self.early.remove(&id);
    }

    /// Whether some task waits on a syscall.
    #[inline]
    pub(super) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Whether cancellations wait to be told to the event source.
    #[inline]
    pub(super) fn any_cancelled(&self) -> bool {
        !self.cancelled.is_empty()
    }

    /// The cancellations to tell the event source now.
    pub(super) fn take_cancelled(&mut self) -> Vec<SyscallId> {
        core::mem::take(&mut self.cancelled)
    }
}

thread_local! {
    /// TSC value before which the run's own event source (the reactor)
    /// certainly has nothing to report while tasks are runnable: the run
    /// loop skips `select(false, ..)` until then (one TLS read per task
    /// switch instead of a call). Only read for a source that publishes it
    /// (`Scheduler::source_publishes_due`).
    static DUE: core::cell::Cell<u64> = const { core::cell::Cell::new(0) };
}

/// Publishes when the run's own event source may next have something for
/// `select(false, ..)` (a TSC value; 0: look at the next scheduling point).
#[inline]
pub(crate) fn publish_due(cycles: u64) {
    DUE.with(|d| d.set(cycles));
}

/// See [`publish_due`].
#[inline]
pub(crate) fn due_cycles() -> u64 {
    DUE.with(|d| d.get())
}

/// The signal for a syscall id (the platform's own event source).
pub(crate) fn signal_for(id: SyscallId) -> Signal {
    Signal { id }
}

/// "This syscall happened": returned by [`Events::select`] to wake a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal {
    id: SyscallId,
}

impl Signal {
    /// The syscall this signal is for.
    #[must_use]
    pub fn id(&self) -> SyscallId {
        self.id
    }
}

/// An event source: what the scheduler asks, at every scheduling point,
/// which syscalls have happened.
///
/// `select(block, cancelled)`: `block` is true when no task can run, so the
/// source may wait until something happens (it should return at once when it
/// has nothing to wait for); `cancelled` lists the syscalls whose waiting
/// task was cancelled since the last call, so that the source forgets them.
///
/// mkernel's platform has its own source (devices, sleeps); a custom one is
/// installed with [`Builder::events`](crate::Builder::events), mostly for
/// simulations and tests (see [`testing::VirtualClock`](crate::testing::VirtualClock)).
pub trait Events {
    /// Returns the signals of the syscalls that happened.
    fn select(&mut self, block: bool, cancelled: &[SyscallId]) -> Vec<Signal>;
    /// Wakes a `select` that blocks (for sources shared with other threads).
    fn interrupt(&self) {}
    /// Arms a timer: `select` is to return the signal of `id` once `after`
    /// has passed on the source's clock, unless `id` is cancelled first
    /// (listed in `cancelled`). Returns false for a source without timers
    /// (the default), for which timed waits such as
    /// [`Condition::wait_timeout`](crate::sync::Condition::wait_timeout)
    /// panic. The platform's source and
    /// [`testing::VirtualClock`](crate::testing::VirtualClock) have timers.
    fn arm_timer(&mut self, after: core::time::Duration, id: SyscallId) -> bool {
        let _ = (after, id);
        false
    }
}

/// Suspends the current task until `select` returns `syscall.signal()`.
///
/// `on_registered` runs once the task is registered as waiting and before it
/// suspends: this is where the outside world is told about the syscall. A
/// signal that arrives before the task suspends is not lost: `suspend` then
/// returns at once. If the task is cancelled while suspended, the syscall's
/// id is passed to the next `select` in `cancelled`.
pub fn suspend(syscall: &Syscall, on_registered: impl FnOnce()) {
    if scheduler::cannot_wait() {
        return;
    }
    let must_wait = scheduler::register_syscall(syscall.id);
    on_registered();
    if must_wait {
        scheduler::park(Wait::Syscall(syscall.id));
    }
}

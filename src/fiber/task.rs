//! The scheduler's record of one task.

use super::Error;
use super::resource::Resource;
use super::stack::PooledStack;
use super::syscall::SyscallId;
use core::any::Any;
use core::fmt;
use core::panic::Location;
use corosensei::{Coroutine, Yielder};

/// A task's identity: unique within a run, never reused.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The number behind the id (the root task is 1, then in spawn order).
    #[must_use]
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.0)
    }
}

/// Slot index plus identity: a stale reference (slot reused) is detected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TaskRef {
    pub(crate) idx: u32,
    pub(crate) uid: u64,
}

/// A task's function, until it first runs.
pub(crate) type Entry = Box<dyn FnOnce() -> Box<dyn Any>>;
/// A finished task's result, until it is joined.
pub(crate) type TaskResult = Result<Box<dyn Any>, Error>;
/// A worker's coroutine: resumed with the function of a new task to run
/// (or `None`: go on, or stop when idle), it yields `Some(exit)` when that
/// function has ended and `None` when the task suspends.
pub(crate) type Co = Coroutine<Option<Entry>, Option<Exit>, (), PooledStack>;
pub(crate) type TaskYielder = Yielder<Option<Entry>, Option<Exit>>;

/// A coroutine with its stack that runs tasks one after the other: a task
/// that returns leaves its worker to the next task to start, so that a
/// spawn reuses a running coroutine instead of building one (see
/// `lifecycle::worker_main`). Boxed so that switching moves a pointer.
pub(crate) type Worker = Box<WorkerInner>;

pub(crate) struct WorkerInner {
    pub(crate) co: Co,
    /// The guard page of its stack, for the overflow handler, or (0, 0).
    pub(crate) guard: (usize, usize),
    /// Where its stack's canary is, or 0 (a guarded stack has none).
    pub(crate) stack_bottom: usize,
}

/// How a task's function ended.
pub(crate) enum Exit {
    Returned(Box<dyn Any>),
    Panicked(Box<dyn Any + Send>),
}

/// What a suspended task waits for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Wait {
    /// One or more of its children to finish.
    Join,
    /// A signal for this syscall from the event source.
    Syscall(SyscallId),
    /// A wake-up from a [`WaitQueue`](super::wait::WaitQueue).
    Queue,
    /// A wake-up from a [`WaitQueue`](super::wait::WaitQueue), or the
    /// signal of this syscall (its timer, armed with
    /// [`Events::arm_timer`](super::Events::arm_timer)), whichever comes
    /// first.
    QueueTimed(SyscallId),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// Spawned, never run: in the run queue, its function in `entry`, no
    /// worker yet (a burst of spawns costs one small allocation per task,
    /// not a stack each).
    Queued,
    /// Started and in the run queue.
    Ready,
    /// On the CPU (its worker is out of the slot while it runs), or its
    /// function has just ended and the run loop is finishing it.
    Running,
    /// Started and waiting.
    Suspended(Wait),
    /// Finished; the result (in `result`) waits for `join`.
    Done,
    /// Finished and its result taken.
    Consumed,
}

impl State {
    pub(crate) fn is_finished(self) -> bool {
        matches!(self, State::Done | State::Consumed)
    }
}

/// Per-task scheduling figures (see [`task_stats`](crate::task_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// How many times the task was given the CPU.
    pub runs: u64,
    /// Longest time the task waited in the run queue, runnable, before it
    /// ran. Measured with the scheduler's clock, which is read after every
    /// switch while tasks run for more than a few µs between switches, and
    /// after one switch in up to
    /// [`Builder::switches_per_clock_read`](crate::Builder::switches_per_clock_read)
    /// while they switch faster (see the crate docs): exact to within that
    /// window of switches.
    pub max_wait: core::time::Duration,
    /// Longest number of other task runs between becoming runnable and running.
    pub max_wait_switches: u64,
}

#[derive(Default)]
pub(crate) struct RawStats {
    pub(crate) runs: u64,
    pub(crate) max_wait_cycles: u64,
    pub(crate) max_wait_switches: u64,
    pub(crate) enqueued_cycles: u64,
    pub(crate) enqueued_switch: u64,
}

pub(crate) struct Slot {
    pub(crate) uid: u64,
    pub(crate) parent: Option<TaskRef>,
    /// Children neither joined nor cancelled, as an intrusive list.
    pub(crate) first_child: Option<u32>,
    pub(crate) prev_sibling: Option<u32>,
    pub(crate) next_sibling: Option<u32>,
    /// Whether this task is in its parent's list of pending children.
    pub(crate) attached: bool,
    /// Whether a `Promise` for this task still exists.
    pub(crate) promise_alive: bool,
    /// Whether the parent waits for this task to finish.
    pub(crate) joined_by_parent: bool,
    /// Being cancelled: its suspension points return at once and a panic
    /// that reaches its root is the forced unwind.
    pub(crate) cancelling: bool,
    pub(crate) state: State,
    /// The function, while `Queued`.
    pub(crate) entry: Option<Entry>,
    /// The result, while `Done`.
    pub(crate) result: Option<TaskResult>,
    /// The worker running it, while started and not running or finished.
    pub(crate) worker: Option<Worker>,
    pub(crate) yielder: *const TaskYielder,
    pub(crate) idle_parks: u32,
    pub(crate) site: &'static Location<'static>,
    /// Given by [`spawn_named`](crate::spawn_named), for messages and traces.
    pub(crate) name: Option<std::borrow::Cow<'static, str>>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) stats: RawStats,
    /// Copied from its worker when it starts (for the overflow handler and
    /// the canary check at every switch).
    pub(crate) guard: (usize, usize),
    pub(crate) stack_bottom: usize,
}

/// How messages name a task: the main task by that name (its spawn site
/// would be the run loop's), any other by its id and spawn site.
pub(crate) struct Named<'a>(pub(crate) &'a Slot);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The main task is the first of the first core; other tasks
        // without a parent (daemons, tasks called from another core) are
        // named by their site.
        if self.0.parent.is_none() && self.0.uid == 1 {
            write!(f, "the main task (task {})", self.0.uid)
        } else if let Some(name) = &self.0.name {
            write!(
                f,
                "task {} {name:?} (spawned at {})",
                self.0.uid, self.0.site
            )
        } else {
            write!(f, "task {} (spawned at {})", self.0.uid, self.0.site)
        }
    }
}

impl Slot {
    /// The task as messages name it.
    pub(crate) fn named(&self) -> Named<'_> {
        Named(self)
    }

    pub(crate) fn new(
        uid: u64,
        parent: Option<TaskRef>,
        site: &'static Location<'static>,
        entry: Entry,
    ) -> Slot {
        Slot {
            uid,
            parent,
            first_child: None,
            prev_sibling: None,
            next_sibling: None,
            attached: false,
            promise_alive: true,
            joined_by_parent: false,
            cancelling: false,
            state: State::Queued,
            entry: Some(entry),
            result: None,
            worker: None,
            yielder: core::ptr::null(),
            idle_parks: 0,
            site,
            name: None,
            resources: Vec::new(),
            stats: RawStats::default(),
            guard: (0, 0),
            stack_bottom: 0,
        }
    }

    /// Makes a freed slot the record of a new task, in place (a slot is
    /// large: building one and moving it in costs a copy per spawn). A freed
    /// slot holds nothing to drop: no entry, result, worker or resource.
    pub(crate) fn reset(
        &mut self,
        uid: u64,
        parent: Option<TaskRef>,
        site: &'static Location<'static>,
        entry: Entry,
    ) {
        debug_assert!(self.result.is_none() && self.worker.is_none() && self.resources.is_empty());
        self.uid = uid;
        self.parent = parent;
        self.first_child = None;
        self.prev_sibling = None;
        self.next_sibling = None;
        self.attached = false;
        self.promise_alive = true;
        self.joined_by_parent = false;
        self.cancelling = false;
        self.state = State::Queued;
        self.entry = Some(entry);
        self.yielder = core::ptr::null();
        self.idle_parks = 0;
        self.site = site;
        self.name = None;
        self.stats = RawStats::default();
        self.guard = (0, 0);
        self.stack_bottom = 0;
    }
}

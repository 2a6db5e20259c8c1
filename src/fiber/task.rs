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
/// Boxed so that switching moves a pointer, not the coroutine's state.
pub(crate) type Co = Box<Coroutine<(), (), Exit, PooledStack>>;
pub(crate) type TaskYielder = Yielder<(), ()>;

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
}

pub(crate) enum State {
    /// Spawned, never run: in the run queue, no stack yet (a burst of
    /// spawns costs one small allocation per task, not a stack each).
    Queued(Entry),
    /// Started and in the run queue.
    Ready,
    /// On the CPU (its coroutine is out of the slot while it runs).
    Running,
    /// Started and waiting.
    Suspended(Wait),
    /// Finished; the result waits for `join`.
    Done(Result<Box<dyn Any>, Error>),
    /// Finished and its result taken.
    Consumed,
}

impl State {
    pub(crate) fn is_finished(&self) -> bool {
        matches!(self, State::Done(_) | State::Consumed)
    }
}

/// Per-task scheduling figures (see [`task_stats`](crate::task_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// How many times the task was given the CPU.
    pub runs: u64,
    /// Longest time the task waited in the run queue, runnable, before it ran.
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
    pub(crate) state: State,
    pub(crate) co: Option<Co>,
    pub(crate) yielder: *const TaskYielder,
    /// Being cancelled: its suspension points return at once and a panic
    /// that reaches its root is the forced unwind.
    pub(crate) cancelling: bool,
    pub(crate) idle_parks: u32,
    pub(crate) site: &'static Location<'static>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) stats: RawStats,
    pub(crate) guard: (usize, usize),
    pub(crate) stack_bottom: usize,
}

impl Slot {
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
            state: State::Queued(entry),
            co: None,
            yielder: core::ptr::null(),
            cancelling: false,
            idle_parks: 0,
            site,
            resources: Vec::new(),
            stats: RawStats::default(),
            guard: (0, 0),
            stack_bottom: 0,
        }
    }
}

//! Scheduler statistics, cheap enough to be always on.

use super::clock;
use super::scheduler;
use super::stack::StackStats;
use super::task::{TaskId, TaskRef, TaskStats};

/// Figures of the current run (see [`stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Scheduling points so far (each asks the event source once).
    pub ticks: u64,
    /// Times a task was given the CPU.
    pub switches: u64,
    /// Times the scheduler read the time-stamp counter: after every switch
    /// while tasks run a while between switches, after one in up to
    /// [`Builder::switches_per_clock_read`](crate::Builder::switches_per_clock_read)
    /// while they switch faster, and after each wait for an event.
    pub clock_reads: u64,
    /// Tasks spawned since the run began (the main task included).
    pub spawned: u64,
    /// Tasks whose record is alive (running, waiting, or finished but not
    /// yet joined).
    pub live_tasks: usize,
    /// The stack pool.
    pub stacks: StackStats,
}

/// The current run's figures.
///
/// ```
/// mkernel::run((), |()| {
///     let p = mkernel::spawn(|| ());
///     p.join().unwrap();
///     let s = mkernel::stats();
///     assert!(s.switches >= 2);
///     assert_eq!(s.stacks.in_use, 1); // only the main task's
/// });
/// ```
#[must_use]
pub fn stats() -> Stats {
    scheduler::with(|s| Stats {
        ticks: s.ticks,
        switches: s.switches,
        clock_reads: s.clock.reads(),
        spawned: s.spawned,
        live_tasks: s.live_tasks(),
        stacks: s.stacks.stats(),
    })
}

/// The figures of a task of the current run, while its record is alive.
///
/// ```
/// mkernel::run((), |()| {
///     for _ in 0..3 { mkernel::yield_now(); }
///     let me = mkernel::task_stats(mkernel::current_task()).unwrap();
///     assert_eq!(me.runs, 4);
/// });
/// ```
#[must_use]
pub fn task_stats(id: TaskId) -> Option<TaskStats> {
    let t = scheduler::with(|s| {
        s.tasks
            .iter()
            .enumerate()
            .find(|(_, sl)| sl.uid == id.0)
            .map(|(i, sl)| TaskRef {
                idx: i as u32,
                uid: sl.uid,
            })
    })?;
    task_stats_of(t)
}

pub(crate) fn task_stats_of(t: TaskRef) -> Option<TaskStats> {
    let raw = scheduler::with(|s| {
        s.slot(t).map(|sl| {
            (
                sl.stats.runs,
                sl.stats.max_wait_cycles,
                sl.stats.max_wait_switches,
            )
        })
    })?;
    Some(TaskStats {
        runs: raw.0,
        max_wait: clock::cycles_to_duration(raw.1),
        max_wait_switches: raw.2,
    })
}

/// The id of the task calling it.
#[must_use]
pub fn current_task() -> TaskId {
    TaskId(scheduler::current().uid)
}

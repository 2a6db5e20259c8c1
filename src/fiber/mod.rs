//! Tasks on stackful coroutines, and the scheduler that runs them (Miou's
//! task model).

mod clock;
mod cores;
mod error;
mod hook;
mod lifecycle;
mod orphans;
mod overflow;
mod promise;
mod protect;
mod resource;
mod run_loop;
mod scheduler;
mod stack;
mod stats;
mod syscall;
mod task;
pub(crate) mod trace;
pub(crate) mod wait;

pub use clock::DEFAULT_SWITCHES_PER_CLOCK_READ;
pub(crate) use clock::{cycles, ns_to_cycles_at_most};
pub(crate) use cores::CoreSet;
pub use cores::{call, current_core, parallel};
pub use error::{Error, Violation};
pub use hook::{Hook, WaitHook};
pub use orphans::{Orphans, call_orphan, spawn_orphan};
pub(crate) use promise::spawn_daemon;
pub use promise::{
    Promise, both, join_all, join_any, join_first, spawn, spawn_giving, spawn_named, yield_now,
};
pub use protect::protect;
pub use resource::Resource;
pub(crate) use run_loop::{Runtime, Settings};
pub(crate) use scheduler::{cannot_wait, fatal};
pub use stack::{DEFAULT_STACK_SIZE, MAX_GUARDED, StackStats};
pub use stats::{Stats, current_task, stats, task_stats};
pub use syscall::{Events, Signal, Syscall, SyscallId, suspend};
pub(crate) use syscall::{publish_due, signal_for};
pub use task::{TaskId, TaskStats};
pub use trace::{TRACE_BEGIN, TRACE_END, Trace};
pub(crate) use wait::WaitQueue;

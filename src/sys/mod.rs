//! The OS seam: the one module that names the platform.
//!
//! Everything above it (the scheduler, the reactor, the devices) sees one
//! interface, the same on both platforms, and never asks which one it runs
//! on. The platform is chosen once, here, by the file that `os` is:
//!
//! - `hosted/` (a Linux process): a TAP interface or nothing for a net
//!   device, a file for a block device, `epoll` for the idle wait, `mmap`
//!   for stacks, a beat thread for the scheduler's clock, a signal handler
//!   that names a task whose stack overflowed;
//! - `solo5/` (a unikernel; built by `cargo mkernel` with
//!   `--cfg mkernel_solo5`): hypercalls for devices and the idle wait
//!   (`solo5_yield`), the libc shim that lets std run, the start-up code.
//!
//! Both provide: [`NetDev`], [`BlockDev`], [`Poller`] (the idle wait),
//! [`Waker`] (a core's wake-up from another core; [`MAX_CORES`]),
//! `ticker` (the clock beat), `overflow` (stack-overflow reports),
//! [`env_app_args`], [`fill_random`] (the entropy source), [`heap`] (its
//! size and use on Solo5, `None` hosted), and the constants below. [`clock`] is shared (the
//! Solo5 shim answers `clock_gettime`).
//!
//! `unsafe` code is allowed here (system calls, hypercalls, the shim).
#![allow(unsafe_code, reason = "system calls, hypercalls, the Solo5 shim")]

pub(crate) mod clock;

#[cfg_attr(not(mkernel_solo5), path = "hosted/mod.rs")]
#[cfg_attr(mkernel_solo5, path = "solo5/mod.rs")]
mod os;

pub(crate) use os::{
    BlockDev, CoreThread, DEFAULT_STACK_SIZE, DEFAULT_SWITCHES_PER_CLOCK_READ,
    DEFAULT_TRACE_EVENTS, MAX_CORES, NetDev, Poller, TENDER_MAPS_DEVICES, Waker, env_app_args,
    fill_random, heap, overflow, stack_memory, ticker,
};

/// What the stack-overflow handler needs to know of the task that was
/// running when a fault hit: where its guard region is, and how to name it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    mkernel_solo5,
    allow(
        dead_code,
        reason = "read by the hosted handler only: Solo5 has no guard pages"
    )
)]
pub(crate) struct Running {
    /// The guard region `[start, end)` below the task's stack.
    pub(crate) guard: (usize, usize),
    /// The task's id.
    pub(crate) task: u64,
    /// Where the task was spawned.
    pub(crate) site: &'static core::panic::Location<'static>,
    /// It is the run's main task (named so: its spawn site is the run
    /// loop's, which would mislead).
    pub(crate) main: bool,
    /// The usable stack size, for the message.
    pub(crate) stack_size: usize,
}

//! Starting a run: `run` and `Builder`.

use crate::devices::Devices;
use crate::fiber::scheduler::{Runtime, Scheduler};
use crate::fiber::{DEFAULT_STACK_SIZE, Events};
use crate::platform::{Acquire, PlatformEvents};
use std::panic::resume_unwind;

/// Runs `main` as the first task of a new scheduler on this thread, with the
/// devices of `devices`, and returns its value once every task is done.
///
/// ```
/// let v = mkernel::run((), |()| {
///     let p = mkernel::spawn(|| 20);
///     p.join().unwrap() + 22
/// });
/// assert_eq!(v, 42);
/// ```
///
/// A panic of `main` propagates out of `run` with its payload unchanged; a
/// rule violation stops every task and `run` panics with the
/// [`Violation`](crate::Violation).
pub fn run<D: Devices, T: 'static>(devices: D, main: impl FnOnce(D::Output) -> T + 'static) -> T {
    Builder::new().run(devices, main)
}

/// Settings of a run.
///
/// ```
/// let v = mkernel::Builder::new()
///     .stack_size(64 * 1024)
///     .seed(7)
///     .run((), |()| 1 + 1);
/// assert_eq!(v, 2);
/// ```
pub struct Builder {
    quanta: u32,
    stack_size: usize,
    seed: u64,
    events: Option<Box<dyn Events>>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Default settings: unlimited quanta, [`DEFAULT_STACK_SIZE`], seed 0,
    /// the platform's event source.
    pub fn new() -> Builder {
        Builder {
            quanta: u32::MAX,
            stack_size: DEFAULT_STACK_SIZE,
            seed: 0,
            events: None,
        }
    }

    /// How many non-suspending runtime calls (`spawn`, `join` of a finished
    /// task, `cancel`) a task may make before it is moved to the back of the
    /// run queue, as Miou's `quanta`. Default: unlimited (only suspensions
    /// and [`yield_now`](crate::yield_now) reschedule).
    pub fn quanta(mut self, quanta: u32) -> Builder {
        self.quanta = quanta.max(1);
        self
    }

    /// Usable stack size of every task (rounded up to 4 KiB, at least 16 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Seed of the scheduler's random choices (which of several finished
    /// promises `join_any` picks), so that runs are reproducible.
    pub fn seed(mut self, seed: u64) -> Builder {
        self.seed = seed;
        self
    }

    /// Replaces the platform's event source (simulations, tests). Device
    /// arguments and [`sleep`](crate::sleep) need the platform's source and
    /// panic with a message saying so.
    pub fn events(mut self, events: impl Events + 'static) -> Builder {
        self.events = Some(Box::new(events));
        self
    }

    /// Like [`run`](crate::run), with these settings.
    pub fn run<D: Devices, T: 'static>(
        self,
        devices: D,
        main: impl FnOnce(D::Output) -> T + 'static,
    ) -> T {
        let (platform, events): (bool, Box<dyn Events>) = match self.events {
            Some(e) => (false, e),
            None => (true, Box::new(PlatformEvents)),
        };
        let sched = Scheduler::new(events, platform, self.quanta, self.stack_size, self.seed);
        let rt = Runtime::enter(sched);
        let mut ctx = Acquire::new();
        let out = match devices.acquire(&mut ctx) {
            Ok(out) => out,
            Err(e) => {
                drop(rt);
                panic!("{e}")
            }
        };
        let r = rt.block_on(move || main(out));
        drop(rt);
        match r {
            Ok(v) => v,
            Err(p) => resume_unwind(p),
        }
    }
}

//! Direct-style unikernels in Rust: Miou's scheduler on stackful
//! coroutines, with Solo5's devices.
//!
//! A program is a function of its devices. Its tasks are coroutines with
//! their own stacks, so code inside a task reads like blocking code: a read
//! of a net device, a deferred block operation, a sleep or a join suspends
//! only that task, and the scheduler runs another one.
//!
//! ```
//! let v = mkernel::run((), |()| {
//!     let child = mkernel::spawn(|| {
//!         mkernel::sleep(std::time::Duration::from_millis(1));
//!         21
//!     });
//!     child.join().unwrap() * 2
//! });
//! assert_eq!(v, 42);
//! ```
//!
//! The same source runs as a Linux process (devices: TAP interfaces,
//! in-memory links, files) and as a Solo5 unikernel under `solo5-spt` or
//! `solo5-hvt` (built with `cargo mkernel`).
//!
//! # Layers
//!
//! The crate is built in layers, and a module imports only from layers
//! below its own (never sideways, never up). `scripts/check-layers` reads
//! this very table and fails on any other import, on `unsafe` code outside
//! the modules named in its last column, and on a platform `cfg` outside
//! `sys`, `fiber::stack` and this file (CI runs it; so does
//! `cargo test --test layers`).
//!
//! | layer | modules | what | unsafe code in |
//! |---|---|---|---|
//! | 6 | `run` | [`run`], [`Builder`]: composes a run from the layers below; [`heap`] | |
//! | 5 | `devices` | the typed device list ([`Devices`], [`map`], [`try_map`]), the manifest, the command line, [`args`], [`stack()`], [`DeviceError`] | |
//! | 4 | `net`, `block`, `time`, `random` | [`Net`] (frames, in-memory links, TCP/IP, and TLS on TCP in `net::tls` with the `tls` feature), [`Block`] (atomic and deferred I/O), [`sleep`], [`timeout`] and the clocks, [`fill_random`] (the platform's entropy source) | `block::deferred` (a suspended task's buffer lent to the reactor) |
//! | 3 | `reactor`, `sync`, `testing` | the run's event source (timers, device waiters, the deferred queue, the idle wait); [`sync`]; [`testing`] | |
//! | 2 | `fiber` | tasks, stacks, the scheduler (Miou's model); knows an event-source trait and the clock, nothing of devices | `fiber::scheduler` (the thread's scheduler, the task switch), `fiber::run_loop` (the main task may borrow from `run`'s caller), `fiber::stack` (the stack pool) |
//! | 1 | `sys` | the OS seam, the only module that names the platform: `sys/hosted` (TAP, files, epoll, `mmap`, signals) or `sys/solo5` (hypercalls, the libc shim, start-up), chosen once | `sys` (all of it) |
//!
//! The platform is chosen once, in `sys` (`--cfg mkernel_solo5`, which
//! `cargo mkernel` sets, selects `sys/solo5`); every other module is the
//! same on both platforms. The crate root denies `unsafe` code; only the
//! modules above allow it, each saying why in its own docs.
//!
//! # The task model (Miou's)
//!
//! Porting an OCaml program written on Miou and mkernel: `docs/porting.md`
//! in the repository has every value of `miou.mli` and `mkernel.mli` beside
//! its Rust counterpart, each difference with an example.
//!
//! | Miou | mkernel |
//! |---|---|
//! | `Miou.run` | [`run`], [`Builder`] |
//! | `Miou.async` | [`spawn`] → [`Promise`] |
//! | `Miou.await`, `await_all`, `await_first`, `await_one`, `both` | [`Promise::join`], [`join_all`], [`join_first`], [`join_any`], [`both`] |
//! | `Miou.cancel` | [`Promise::cancel`] |
//! | `Miou.yield` | [`yield_now`] |
//! | `Miou.call`, `parallel`, `Domain.self` | [`call`], [`parallel`], [`current_core`] ([`Builder::cores`]) |
//! | `Miou.orphans`, `care` | [`Orphans`], [`spawn_orphan`], [`call_orphan`] |
//! | `Miou.Ownership` | [`Resource`], [`spawn_giving`] |
//! | `Miou.Hook` (every scheduling point) | [`Hook`] |
//! | mkernel's `Hook` (before waiting for events) | [`WaitHook`] |
//! | `Miou.Mutex`, `Condition`, `Lazy` | [`sync`] |
//! | `Miou.Computation` (an ivar), a bounded channel | [`sync::Ivar`], [`sync::channel`] |
//! | `Miou.await_exn` | [`Promise::join_unwrap`], [`Error::into_panic`] |
//! | `Miou.protect` | [`protect`] |
//! | `Miou.syscall`, `suspend`, `signal`, `events` | [`Syscall`], [`suspend`], [`Signal`], [`Events`] |
//!
//! ## Rules
//!
//! 1. **Join or cancel every child.** A task that returns while a child is
//!    neither joined nor cancelled stops the run: `run` panics with
//!    [`Violation::StillHasChildren`], after a message naming where the
//!    child was spawned. This holds even for a child that already finished.
//! 2. **Only the parent joins or cancels** a promise
//!    ([`Violation::NotAChild`]).
//! 3. **A task ends after its children**: when it panics or is cancelled,
//!    its unfinished children are cancelled first.
//! 4. **Cancellation is synchronous.** When [`Promise::cancel`] returns, the
//!    task and all its descendants have terminated, every destructor on
//!    their stacks has run (a suspended task is unwound at its suspension
//!    point; one that never ran has its closure dropped), and whatever they
//!    waited for (a deferred block operation, a sleep, a net device, a
//!    [`Syscall`]) was withdrawn. A destructor of a cancelled task cannot
//!    wait: waits there return at once (a sleep ends, a device read fails
//!    with a "being cancelled" error). Nothing else runs meanwhile, so a
//!    destructor that keeps trying, such as `Mutex::lock` on a mutex that
//!    another task holds, is reported naming the task, and the process
//!    aborts rather than spin for ever.
//! 5. **A panic stays in its task**: the parent's `join` gets
//!    [`Error::Panicked`] with the payload, and the run goes on. A panic of
//!    the main function propagates out of [`run`] unchanged. One panic
//!    cannot be kept in its task: a destructor that panics while its task
//!    is being cancelled (or is already unwinding from a panic), since Rust
//!    aborts the process on a panic during unwinding; mkernel prints which
//!    task it was first.
//! 6. [`Resource`]s owned by a task that fails or is cancelled are
//!    finalised; one still owned when the task returns normally is
//!    finalised and stops the run ([`Violation::ResourceLeaked`]).
//!
//! ## Scheduling
//!
//! Each core on its own (one by default: see [Several
//! cores](#several-cores-hosted)), round-robin, availability first. [`spawn`] queues the child and
//! the parent keeps running; [`yield_now`] puts the task at the back of the
//! queue, so with N runnable tasks a yielding task runs again after at most
//! N others. The event source is asked at every scheduling point: the
//! platform's source looks at the system at most every ~100 µs while tasks
//! keep running (a system call per switch would cost more than the switch),
//! and when no task can run it performs deferred block I/O or waits in a
//! single system call for a device or the next timer. Deferred block I/O
//! has the lowest priority (see [`mod@block`]).
//!
//! The time the scheduler goes by (to decide whether the platform is due a
//! look at devices and timers, and for the wait statistics) is the CPU's
//! time-stamp counter, read after every task switch while tasks run for a
//! while between switches, and — hosted — after one switch in up to 8 while
//! switches are so fast (tasks that only yield) that the read itself
//! (~10 ns) would be a large part of their cost. A window of switches
//! longer than ~4 µs brings it back to every switch, and a process-wide
//! thread that beats every 200 µs while some scheduler skips reads (and
//! parks otherwise) forces a read at the next switch, so that tasks turning from
//! yielding to computing cannot leave the clock stale for long. So a ready
//! device or an expired timer is noticed within the platform's ~100 µs
//! poll interval plus about one task slice (and at most ~200 µs more),
//! well within 1 ms while tasks compute and yield. The woken task then
//! waits its turn behind the tasks already runnable (round-robin). On
//! Solo5 (no threads) the clock is read after every switch by default
//! ([`Builder::switches_per_clock_read`]). `cargo bench --bench notice`
//! measures all this on a real TAP.
//!
//! [`stats`] and [`task_stats`] give the scheduler's figures (switches,
//! runs, longest wait while runnable, the latter exact to one window of
//! switches as above), cheap enough to be always on.
//!
//! ## Stacks
//!
//! Each task has its own stack from a per-run pool ([`DEFAULT_STACK_SIZE`]:
//! 256 KiB hosted, 64 KiB on Solo5; [`Builder::stack_size`]), reserved
//! lazily so that a parked task costs only the pages it touched. A queued
//! task has no stack yet; it gets one when it first runs, with the
//! coroutine already running on it: a task that returns leaves that
//! coroutine idle for the next task to start (up to 256 idle per run), so a
//! spawn does not build and tear down a coroutine.
//!
//! On hosted Linux every stack has a guard page below it, and an overflow
//! into it is reported with the task's spawn site. Since Linux 6.13 the
//! guard is a lightweight guard region (`MADV_GUARD_INSTALL`), which costs
//! neither memory nor a mapping, so 100,000 live tasks all have one and a
//! shallow parked task costs one resident stack page. On older kernels the
//! guard page is `mprotect`ed, each costs a mapping and `vm.max_map_count`
//! caps those, so only the first [`MAX_GUARDED`] live stacks of the process
//! get one. A stack without a guard page (beyond that, and on Solo5) has a
//! canary word at its bottom instead, checked each time its task gives the
//! CPU back. The canary detects an overflow after the fact (and misses one
//! that skips over it); it does not prevent it: by then the task has
//! written below its stack, into another task's stack or the heap. So on a
//! stack without a guard page, overflowing is undefined behaviour rather
//! than a reported error, and keeping tasks within their stack size
//! ([`Builder::stack_size`]) is the program's duty.
//!
//! ## Several cores (hosted)
//!
//! [`Builder::cores`]`(n)` gives a run `n` schedulers, each on its own
//! thread with its own run queue, stacks and event source (the default, 1,
//! is the single-core scheduler above, whose run loop then tests one more
//! field per scheduling point). Tasks never migrate: [`spawn`] keeps a child
//! on its parent's core, and work reaches the other cores through
//! [`call`] (Miou's `call`) and [`parallel`] (Miou's `parallel`);
//! [`current_core`] says where a task runs.
//!
//! ```
//! let sums = mkernel::Builder::new().cores(2).run((), |()| {
//!     let p = mkernel::call(|| (1..=1000u64).sum::<u64>());
//!     let local = (1..=10u64).sum::<u64>();
//!     (local, p.join().unwrap())
//! });
//! assert_eq!(sums, (55, 500_500));
//! ```
//!
//! Design decisions:
//!
//! - A call is two tasks: a *proxy* on the caller's core, an ordinary child
//!   of the caller (so joins, [`join_any`], [`Orphans`] via
//!   [`call_orphan`], the rules and their messages, which name the line of
//!   the `call`, work as for `spawn`), and the *called* task on another
//!   core. The called task's value, panic payload or cancellation crosses
//!   back in a shared record; the function and the value are `Send`.
//! - A call never runs on the caller's core; successive calls go to the
//!   other cores in turn. Unlike Miou, which never gives a call to its
//!   first domain, every core takes calls (the main task's core too), so
//!   that 2 cores make 2 workers. [`parallel`] puts item `i` on core
//!   `(c + i) % n` (`c` the caller's), the caller's own share running as
//!   local children, where Miou leaves the caller's domain out.
//! - Cross-core messages (start a call, cancel one, a call ended) go into
//!   the target core's inbox and wake it only if it sleeps: an idle core
//!   waits in its one system call (`epoll_wait`, the core's `eventfd` in
//!   the set), and a message is served at once. A core running tasks looks
//!   at its inbox (an atomic flag) where it looks at its devices: when its
//!   event source says it may have something, at least every ~100 µs with
//!   several cores, so that the single-core fast path has no check of its
//!   own. No spinning: a `call` + `join` round trip to an idle core costs
//!   two thread wake-ups (a few µs, more where waking an idle CPU is slow,
//!   as in a VM; `cargo bench --bench parallel`).
//! - Cancelling a call is synchronous across cores (rule 4): the
//!   canceller's core posts the request and blocks until the called task's
//!   core reports it ended, with its descendants, their destructors run;
//!   meanwhile it serves the cancellations posted to it, so that
//!   cancellations crossing between cores cannot deadlock. As with one
//!   core, a task is cancelled at its suspension point: one that computes
//!   without suspending delays its own cancellation, and its canceller's.
//! - A rule broken on any core stops the whole run: [`run`] panics with the
//!   [`Violation`] on the first core, every core's tasks cancelled.
//! - Devices ([`Net`], [`Block`], a [`net::stack::Stack`]) and [`Resource`]s
//!   are not `Send`: they stay on the core that owns them (devices: the
//!   first), and Miou's `call ~give` has no counterpart. A service keeps its
//!   one stack and its connections on the first core and hands the CPU
//!   work of a request to `call` (the connection's task waits on the
//!   promise while the stack goes on serving the others).
//! - [`stats`] and [`task_stats`] are the current core's; a trace
//!   ([`Builder::trace`]) records the first core only; task ids stay unique
//!   in the run (core `k` numbers from `k · 2^40 + 1`). A replaced event
//!   source ([`Builder::events`]) works with one core only.
//! - Solo5 gives a unikernel one core: `cores(n > 1)` is an error at run
//!   ([`devices::DeviceErrorKind::Platform`]), and `call` runs its function
//!   on the one core, as a `spawn` (concurrently, not in parallel), as it
//!   does hosted with `cores(1)`. Miou raises `No_domain_available` there;
//!   mkernel runs the same program unchanged on both platforms instead.
//!
//! # Devices
//!
//! See [`devices`], [`mod@net`], [`mod@block`] and the time functions
//! [`sleep`], [`timeout`] (bounds any blocking code), [`clock_monotonic`],
//! [`clock_wall`]. [`args`] gives the application's own arguments,
//! [`fill_random`] random bytes.

#![warn(missing_docs)]
#![warn(missing_debug_implementations)]
#![deny(unsafe_code)]

pub mod block;
pub mod devices;
mod fiber;
pub mod net;
mod random;
mod reactor;
mod run;
pub mod sync;
mod sys;
pub mod testing;
mod time;

pub use block::Block;
pub use devices::{DeviceError, Devices, args, block, constant, link, map, net, stack, try_map};
pub use fiber::*;
pub use net::{Net, NetCfg};
pub use random::fill_random;
pub use run::{Builder, Heap, heap, run};
pub use time::{Elapsed, clock_monotonic, clock_wall, sleep, timeout};

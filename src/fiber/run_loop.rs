//! The run loop: scheduling points (event source, hooks, next task), task
//! switches, and the `Runtime` that owns a run on its thread.
//!
//! One of the few modules with `unsafe` code (see the layer map in lib.rs):
//! the run's main function may borrow from `run`'s caller (a device
//! argument's closure), which the task table's `'static` functions cannot
//! say; `Runtime::block_on` ends the run before it returns.
#![allow(unsafe_code)]

use super::clock;
use super::hook::Kind;
use super::lifecycle::{KEEP_WORKERS, cancel_task, drop_if_unreferenced, finish, worker_for};
use super::overflow;
use super::scheduler::{CURRENT, ROOT_FINISHED, Scheduler, deliver, fatal, in_run, with};
use super::syscall::{Events, SyscallId};
use super::task::{Entry, State, TaskRef, Worker};
use super::{Error, Violation};
use core::any::Any;
use core::cell::RefCell;
use core::panic::Location;
use corosensei::CoroutineResult;
use std::panic::resume_unwind;

/// Takes `t`'s worker out of its slot (giving it one on its first run),
/// counts the run, and makes `t` current. Returns the worker and what to
/// resume it with: the task's function on its first run.
#[inline(always)]
fn prepare(s: &mut Scheduler, t: TaskRef) -> (Worker, Option<Entry>) {
    let now = s.clock.now();
    s.switches += 1;
    s.ops = 0;
    let switches = s.switches;
    let slot = &mut s.tasks[t.idx as usize];
    let st = core::mem::replace(&mut slot.state, State::Running);
    let stats = &mut slot.stats;
    stats.runs += 1;
    stats.max_wait_cycles = stats
        .max_wait_cycles
        .max(now.wrapping_sub(stats.enqueued_cycles));
    stats.max_wait_switches = stats
        .max_wait_switches
        .max(switches.saturating_sub(stats.enqueued_switch + 1));
    let (w, entry) = match st {
        State::Queued => {
            let entry = slot.entry.take();
            (worker_for(s, t), entry)
        }
        State::Ready => (
            slot.worker.take().expect("a ready task has its worker"),
            None,
        ),
        _ => fatal("mkernel: internal error: resuming a task that is not runnable"),
    };
    // Also what the overflow handler reads to name the task.
    s.current = Some(t.idx);
    if s.trace.is_some() {
        super::trace::run(s, t);
    }
    (w, entry)
}

/// A task that gave the CPU back by suspending: its worker goes back in
/// its slot at the next scheduling point, in the same borrow as the rest of
/// that point's bookkeeping.
pub(crate) struct Carry {
    t: TaskRef,
    w: Worker,
}

/// Gives the CPU to `t` (prepared by `prepare`) until it suspends or its
/// function ends. Returns its worker if it suspended.
#[inline(always)]
fn resume(t: TaskRef, mut w: Worker, entry: Option<Entry>) -> Option<Carry> {
    match w.co.resume(entry) {
        CoroutineResult::Yield(None) => Some(Carry { t, w }),
        CoroutineResult::Yield(Some(exit)) => {
            let retire = with(|s| {
                s.clock.after_switch();
                s.current = None;
                check_canary(s, t);
                if s.workers.len() < KEEP_WORKERS {
                    s.stacks.idle(w.guard != (0, 0));
                    s.workers.push(w);
                    None
                } else {
                    Some(w)
                }
            });
            if let Some(w) = retire {
                stop_worker(w);
            }
            finish(t, exit);
            None
        }
        CoroutineResult::Return(()) => {
            fatal("mkernel: internal error: a worker stopped while running a task")
        }
    }
}

/// Stops an idle worker (not lent to a task): its loop sees no function
/// and returns; its stack goes back to the pool.
fn stop_worker(mut w: Worker) {
    match w.co.resume(None) {
        CoroutineResult::Return(()) => with(|s| s.stacks.put(w.co.into_stack())),
        CoroutineResult::Yield(_) => fatal("mkernel: internal error: an idle worker ran"),
    }
}

/// Stops the run's idle workers (at its end: their coroutines must not
/// outlive the stack pool).
fn stop_idle_workers() {
    let workers = with(|s| {
        for w in &s.workers {
            s.stacks.unidle(w.guard != (0, 0));
        }
        core::mem::take(&mut s.workers)
    });
    for w in workers {
        stop_worker(w);
    }
}

/// Stops the run if `t`'s stack canary was overwritten (an overflow of an
/// unguarded stack).
#[inline]
fn check_canary(s: &Scheduler, t: TaskRef) {
    let slot = &s.tasks[t.idx as usize];
    if !super::stack::canary_intact_at(slot.stack_bottom) {
        fatal(&overflow::canary_message(
            slot.named(),
            s.stacks.stack_size(),
        ));
    }
}

/// Puts a suspended task's worker back in its slot. Always inlined into
/// `tick`'s fast path (it is most of it), whatever else `tick` holds.
#[inline(always)]
fn put_back(s: &mut Scheduler, c: Carry) {
    s.clock.after_switch();
    s.current = None;
    check_canary(s, c.t);
    let now = s.clock.now();
    let switches = s.switches;
    let slot = &mut s.tasks[c.t.idx as usize];
    if matches!(slot.state, State::Ready) {
        // It yielded: it entered the run queue when it gave the CPU back.
        slot.stats.enqueued_cycles = now;
        slot.stats.enqueued_switch = switches;
    }
    slot.worker = Some(c.w);
}

/// One run on this thread: enters the scheduler, runs the loop until the
/// root task and every other task are done, and leaves the thread clean
/// whatever happens.
pub(crate) struct Runtime {
    cell: Box<RefCell<Scheduler>>,
}

/// Names the task when a destructor panics while its task is being
/// cancelled: Rust cannot unwind a panic during unwinding and aborts the
/// process ("panic in a destructor during cleanup"), which alone names no
/// task. Installed once per process, in front of the hook that was there
/// (which still prints the panic as usual).
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::panicking()
                && let Some(task) = super::scheduler::cancelling_task_name()
            {
                eprintln!(
                    "mkernel: {task} panicked in a destructor while it was being cancelled; \
                     a panic during unwinding cannot be caught, so the process aborts \
                     (destructors of cancelled tasks must not panic)"
                );
            }
            previous(info);
        }));
    });
}

/// The settings of a run's scheduler (from `Builder`).
pub(crate) struct Settings {
    /// The event source asked at every scheduling point.
    pub(crate) events: Box<dyn Events>,
    /// Whether `events` publishes when it may have something
    /// ([`publish_due`](super::syscall::publish_due)), so that the run loop
    /// can skip asking it until then.
    pub(crate) publishes_due: bool,
    pub(crate) quanta: u32,
    pub(crate) stack_size: usize,
    pub(crate) seed: u64,
    pub(crate) max_clock_every: u32,
    /// Records a trace of the run (`Builder::trace`).
    pub(crate) trace: Option<super::Trace>,
    /// In a run with several cores: the cores, and which one this is.
    pub(crate) core: Option<(std::sync::Arc<super::CoreSet>, usize)>,
}

impl Runtime {
    /// Makes this thread's scheduler for a run.
    pub(crate) fn enter(settings: Settings) -> Runtime {
        let s = Scheduler::new(
            settings.events,
            settings.publishes_due,
            settings.quanta,
            settings.stack_size,
            settings.seed,
            settings.max_clock_every,
            settings.trace,
        );
        if in_run() {
            panic!(
                "mkernel::run called inside a run: a thread runs one scheduler at a time (spawn a task instead)"
            );
        }
        overflow::install();
        install_panic_hook();
        clock::calibrate_start();
        ROOT_FINISHED.with(|f| f.set(false));
        let mut s = s;
        if let Some((set, me)) = settings.core {
            // Task ids stay unique in the run: each core has its range.
            s.next_uid = 1 + ((me as u64) << 40);
            s.multi = Some(Box::new(super::cores::Multi::new(set, me)));
        }
        let cell = Box::new(RefCell::new(s));
        CURRENT.with(|c| c.set(&*cell as *const RefCell<Scheduler>));
        Runtime { cell }
    }

    /// Runs `main` as the root task; returns its value or its panic payload.
    ///
    /// `main` may borrow from the caller (`'a`): the run — and with it every
    /// trace of `main` — ends inside this call, which consumes the runtime.
    pub(crate) fn block_on<'a, T: 'static>(
        self,
        main: impl FnOnce() -> T + 'a,
    ) -> Result<T, Box<dyn Any + Send>> {
        let root = with(|s| {
            let entry: Box<dyn FnOnce() -> Box<dyn Any> + 'a> =
                Box::new(move || Box::new(main()) as Box<dyn Any>);
            // SAFETY: the task table wants `'static` functions; the root's
            // may borrow for `'a`. It is run or dropped before this
            // function returns (the run ends here: `self`, the scheduler
            // with its tasks, is dropped at the end of this call, within
            // `'a`), or, after a panic escaped the loop, leaked by
            // `Runtime::drop` without ever running again. Same layout:
            // only the trait object's lifetime bound changes.
            let entry: Entry = unsafe {
                core::mem::transmute::<Box<dyn FnOnce() -> Box<dyn Any> + 'a>, Entry>(entry)
            };
            let t = s.alloc_slot(None, Location::caller(), entry);
            s.enqueue(t);
            s.root = Some(t);
            t
        });
        let mut root_done = false;
        let mut carry = None;
        loop {
            let stuck = match tick(&mut carry) {
                Tick::Ran => false,
                Tick::Stuck => true,
                Tick::Violation(v) => stop_for(root, v),
            };
            if !root_done {
                // Cheap: a TLS read, no borrow (set by `finish`).
                if !ROOT_FINISHED.with(|f| f.get()) {
                    if stuck {
                        deadlock(root);
                    }
                    continue;
                }
                root_done = true;
                if let Some(c) = carry.take() {
                    with(|s| put_back(s, c));
                }
                if let Some(v) = with(|s| s.violation) {
                    stop_for(root, v);
                }
                let failed = with(|s| matches!(s.tasks[root.idx as usize].result, Some(Err(_))));
                // The run is over when main returns: daemons are stopped,
                // and after a panic of main every remaining task too.
                if failed {
                    teardown(root);
                } else {
                    let daemons = with(|s| core::mem::take(&mut s.daemons));
                    for d in daemons {
                        cancel_task(d);
                        drop_if_unreferenced(d);
                    }
                }
            }
            if stuck || with(|s| s.live <= 1) {
                if let Some(c) = carry.take() {
                    with(|s| put_back(s, c));
                }
                break;
            }
        }
        stop_idle_workers();
        let result = with(|s| {
            let slot = &mut s.tasks[root.idx as usize];
            slot.state = State::Consumed;
            slot.result.take()
        });
        match result {
            Some(Ok(v)) => Ok(*v.downcast::<T>().expect("root task returns T")),
            Some(Err(Error::Panicked(p))) => Err(p),
            Some(Err(Error::Cancelled)) => Err(Box::new("mkernel: the main task was cancelled")),
            None => fatal("mkernel: internal error: run ended before its main task"),
        }
    }
}

impl Runtime {
    /// Runs this core's scheduler (not the first core of a run with
    /// several) until the run stops: it serves the tasks other cores call
    /// here, and sleeps on its waker when it has nothing to do.
    pub(crate) fn serve(self) {
        let Some((set, me)) = with(|s| s.multi.as_ref().map(|m| (m.set().clone(), m.me()))) else {
            return;
        };
        let mut carry = None;
        let mut reported = false;
        loop {
            match tick(&mut carry) {
                Tick::Ran => {
                    if set.stopping() {
                        break;
                    }
                }
                Tick::Stuck => {
                    if set.stopping() {
                        break;
                    }
                    let sleep = with(|s| s.multi.as_ref().is_some_and(|m| m.going_to_sleep()));
                    if sleep {
                        set.waker(me).wait();
                        with(|s| {
                            if let Some(m) = &s.multi {
                                m.awake();
                            }
                        });
                    }
                }
                Tick::Violation(v) => {
                    // The first core stops the run; this one ends its tasks
                    // (their callers hear they were cancelled) and goes on
                    // serving cancellations until then.
                    with(|s| s.violation = None);
                    if !reported {
                        reported = true;
                        super::cores::report_violation(&set, v);
                    }
                    if let Some(c) = carry.take() {
                        with(|s| put_back(s, c));
                    }
                    teardown_core();
                }
            }
        }
        if let Some(c) = carry.take() {
            with(|s| put_back(s, c));
        }
        teardown_core();
        stop_idle_workers();
    }
}

/// Cancels every task of this core (one that is not the first): those
/// called from other cores, with their descendants, then any other still
/// unfinished (a forgotten child of a task that broke a rule).
fn teardown_core() {
    let unfinished = |top: bool| -> Vec<TaskRef> {
        with(|s| {
            s.tasks
                .iter()
                .enumerate()
                .filter(|(_, sl)| {
                    sl.uid != 0 && !sl.state.is_finished() && (!top || sl.parent.is_none())
                })
                .map(|(i, sl)| TaskRef {
                    idx: i as u32,
                    uid: sl.uid,
                })
                .collect()
        })
    };
    for top in [true, false] {
        for t in unfinished(top) {
            let still = with(|s| s.slot(t).is_some_and(|sl| !sl.state.is_finished()));
            if still {
                cancel_task(t);
                drop_if_unreferenced(t);
            }
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Whatever remains (after a panic escaped the loop) is forgotten, not
        // unwound: its destructors could not reach a scheduler any more.
        if let Ok(mut s) = self.cell.try_borrow_mut() {
            // The run is over (or a panic escaped it): the trace goes out.
            if let Some(ring) = s.trace.take() {
                super::trace::finish_run(ring, s.switches);
            }
            for slot in s.tasks.iter_mut() {
                if let Some(w) = slot.worker.take() {
                    core::mem::forget(w);
                }
            }
            for w in core::mem::take(&mut s.workers) {
                core::mem::forget(w);
            }
        }
        super::trace::off();
        CURRENT.with(|c| c.set(core::ptr::null()));
    }
}

/// Cancels every task of the run (the root's children, the daemons).
fn teardown(root: TaskRef) {
    let (children, daemons) = with(|s| {
        let c = if s.slot(root).is_some() {
            s.attached_children(root)
        } else {
            Vec::new()
        };
        (c, core::mem::take(&mut s.daemons))
    });
    for c in children {
        cancel_task(c);
        with(|s| s.detach(c));
        drop_if_unreferenced(c);
    }
    for d in daemons {
        cancel_task(d);
        drop_if_unreferenced(d);
    }
    // Anything else still alive (forgotten promises of finished tasks'
    // children cannot exist, but tasks whose promise was dropped can).
    let rest: Vec<TaskRef> = with(|s| {
        s.tasks
            .iter()
            .enumerate()
            .filter(|(i, sl)| sl.uid != 0 && *i as u32 != root.idx && !sl.state.is_finished())
            .map(|(i, sl)| TaskRef {
                idx: i as u32,
                uid: sl.uid,
            })
            .collect()
    });
    for t in rest {
        cancel_task(t);
    }
}

#[cold]
fn deadlock(root: TaskRef) -> ! {
    let waiting: Vec<String> = with(|s| {
        s.tasks
            .iter()
            .filter(|sl| sl.uid != 0 && matches!(sl.state, State::Suspended(_)))
            .take(8)
            .map(|sl| sl.named().to_string())
            .collect()
    });
    let msg = format!(
        "mkernel: deadlock: every task waits (for a join, a mutex or a condition) and no event can wake one; waiting: {}",
        waiting.join(", ")
    );
    eprintln!("{msg}");
    stop_all(root);
    panic!("{msg}")
}

/// Stops every task and the idle workers: the run cannot go on.
fn stop_all(root: TaskRef) {
    teardown(root);
    stop_idle_workers();
}

/// Stops the run for a broken rule: every task unwound, then `run` panics
/// with the violation.
#[cold]
fn stop_for(root: TaskRef, v: Violation) -> ! {
    stop_all(root);
    resume_unwind(Box::new(v))
}

/// What a scheduling point did.
enum Tick {
    /// A task ran (or an event may still make one runnable).
    Ran,
    /// No task can run, and no event can change that.
    Stuck,
    /// A rule was broken: the run stops.
    Violation(Violation),
}

/// Pops the next runnable task and prepares it.
#[inline(always)]
fn pick(s: &mut Scheduler) -> Option<Next> {
    loop {
        let t = s.run_queue.pop_front()?;
        if let Some(slot) = s.slot(t) {
            if matches!(slot.state, State::Queued | State::Ready) {
                let (w, entry) = prepare(s, t);
                return Some((t, w, entry));
            }
        }
    }
}

/// The next task to run, prepared by [`pick`].
type Next = (TaskRef, Worker, Option<Entry>);

/// What a scheduling point does after its first borrow of the scheduler.
enum Step {
    /// Run this task (the fast path: nothing to ask, no hook).
    Run(Next),
    /// Ask the event source first (its answer may wake tasks), then run
    /// the hooks if any, then pick.
    Ask(Ask),
    /// Run the hooks, then pick.
    Hooks,
    /// No task is runnable; `waiting`: some task waits for an event.
    Idle { waiting: bool },
    /// A rule was broken: the run stops.
    Stop(Violation),
}

/// A question for the event source, taken out of the scheduler so that
/// `select` runs without the scheduler borrowed.
struct Ask {
    /// No task can run: the source may wait.
    block: bool,
    cancelled: Vec<SyscallId>,
    events: Box<dyn Events>,
    hooks: bool,
    /// Wait hooks to run first (only when `block`).
    wait_hooks: bool,
}

/// One scheduling point: puts back the coroutine of the task that ran last,
/// asks the event source (unless the platform's own source says nothing can
/// be due yet), runs the hooks, then runs the next runnable task. On the
/// fast path (no event due, no hook) all of it is one borrow of the
/// scheduler.
fn tick(carry: &mut Option<Carry>) -> Tick {
    let step = with(|s| {
        if let Some(c) = carry.take() {
            put_back(s, c);
        }
        if let Some(v) = s.violation {
            return Step::Stop(v);
        }
        s.ticks += 1;
        let block = s.run_queue.is_empty();
        let hooks = !s.hooks.is_empty();
        let skip = if block {
            // Nothing can come from the event source: nobody waits.
            !s.syscalls.any_waiting() && !s.syscalls.any_cancelled()
        } else {
            // The platform's source publishes when it may have something.
            s.platform_events
                && !s.syscalls.any_cancelled()
                && s.clock.now() < super::syscall::due_cycles()
        };
        if !skip {
            // Another core posted something: look without waiting (the
            // inbox is served after the source's answer).
            let block = block && (s.multi.is_none() || may_sleep(s));
            Step::Ask(Ask {
                block,
                cancelled: s.syscalls.take_cancelled(),
                events: s.events.take().expect("events present"),
                hooks,
                wait_hooks: block && !s.wait_hooks.is_empty(),
            })
        } else if hooks {
            Step::Hooks
        } else {
            match pick(s) {
                Some(next) => Step::Run(next),
                // Idle: another core's messages first (a run with several),
                // served after a look at the source that does not wait.
                None if s.multi.is_some() && inbox_pending(s) => Step::Ask(look_now(s, hooks)),
                None => Step::Idle {
                    waiting: s.syscalls.any_waiting(),
                },
            }
        }
    });
    let next = match step {
        Step::Run(next) => next,
        Step::Stop(v) => return Tick::Violation(v),
        Step::Idle { waiting } => return idle(waiting),
        Step::Ask(mut ask) => {
            if ask.wait_hooks {
                super::hook::run_hooks(Kind::Wait);
            }
            let signals = ask.events.select(ask.block, &ask.cancelled);
            let inbox = with(|s| {
                s.events = Some(ask.events);
                if ask.block {
                    s.clock.read();
                }
                for sig in signals {
                    deliver(s, sig.id());
                }
                // Another core's messages are looked for here, with the
                // devices: when the source wakes from its wait, or at its
                // periodic look while tasks run (it publishes one at least
                // every ~100 µs in a run with several cores), so that the
                // fast path of one core stays as it is.
                s.multi.is_some() && after_look(s, ask.block)
            });
            if inbox {
                super::cores::serve_inbox();
            }
            if ask.hooks {
                super::hook::run_hooks(Kind::Tick);
            }
            match pick_after_outside_work() {
                Ok(next) => next,
                Err(tick) => return tick,
            }
        }
        Step::Hooks => {
            super::hook::run_hooks(Kind::Tick);
            match pick_after_outside_work() {
                Ok(next) => next,
                Err(tick) => return tick,
            }
        }
    };
    let (t, w, entry) = next;
    *carry = resume(t, w, entry);
    Tick::Ran
}

/// Whether this core may wait in its event source (a run with several
/// cores): not when another core posted something meanwhile. Out of line,
/// as the other helpers below, so that `tick` stays as with one core.
#[inline(never)]
fn may_sleep(s: &Scheduler) -> bool {
    s.multi.as_ref().is_none_or(|m| m.going_to_sleep())
}

/// Whether another core's messages wait here.
#[cold]
#[inline(never)]
fn inbox_pending(s: &Scheduler) -> bool {
    s.multi.as_ref().is_some_and(|m| m.pending())
}

/// A look at the event source that does not wait, for an idle core with
/// messages to serve (served after the source's answer).
#[cold]
#[inline(never)]
fn look_now(s: &mut Scheduler, hooks: bool) -> Ask {
    Ask {
        block: false,
        cancelled: s.syscalls.take_cancelled(),
        events: s.events.take().expect("events present"),
        hooks,
        wait_hooks: false,
    }
}

/// After the event source answered (a run with several cores): the core
/// is awake, and whether messages wait.
#[inline(never)]
fn after_look(s: &Scheduler, waited: bool) -> bool {
    let Some(m) = &s.multi else { return false };
    if waited {
        m.awake();
    }
    m.pending()
}

/// What an idle scheduling point reports.
fn idle(waiting: bool) -> Tick {
    if waiting { Tick::Ran } else { Tick::Stuck }
}

/// Picks the next task after the event source or the hooks ran (they may
/// have made tasks runnable, or spawned some).
fn pick_after_outside_work() -> Result<Next, Tick> {
    with(|s| pick(s).ok_or_else(|| idle(s.syscalls.any_waiting())))
}

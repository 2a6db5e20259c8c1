//! The scheduler: one per run, per thread. Round-robin over runnable tasks,
//! the event source asked at every scheduling point.
//!
//! Borrowing discipline: the scheduler lives in a `RefCell` reached through
//! [`with`]. No user code (task bodies, destructors of user values, hooks,
//! finalisers, `Events::select`) ever runs while it is borrowed: such things
//! are taken out of the scheduler first and run or dropped afterwards.
//!
//! This module is one of the few with `unsafe` code (see the layer map in
//! lib.rs): the thread's pointer to its scheduler, and the switch from a
//! task back to the run loop through the task's yielder.
#![allow(
    unsafe_code,
    reason = "the thread's scheduler pointer and the task switch"
)]

use super::Violation;
use super::clock;
use super::stack::StackPool;
use super::syscall::{Events, SyscallId, Waiting};
use super::task::{Entry, Slot, State, TaskRef, TaskResult, Wait, Worker};
use super::trace::{self, By, Ring};
use core::cell::{Cell, RefCell};
use core::panic::Location;
use std::collections::VecDeque;
use std::rc::Rc;

pub(crate) use super::lifecycle::{Joined, cancel_task, drop_if_unreferenced, spawn_raw, try_join};

/// How many times in a row a task being cancelled may try to wait (from a
/// destructor) before we call it a bug: it cannot really wait, since its
/// stack is being unwound synchronously by `cancel`.
const MAX_IDLE_PARKS: u32 = 10_000;

pub(crate) struct Scheduler {
    pub(crate) tasks: Vec<Slot>,
    pub(super) free: Vec<u32>,
    pub(super) run_queue: VecDeque<TaskRef>,
    pub(crate) current: Option<u32>,
    pub(super) next_uid: u64,
    pub(crate) events: Option<Box<dyn Events>>,
    pub(super) syscalls: Waiting,
    pub(crate) hooks: Vec<Rc<super::hook::HookInner>>,
    /// Hooks run before waiting for the outside world (`WaitHook`).
    pub(crate) wait_hooks: Vec<Rc<super::hook::HookInner>>,
    pub(crate) stacks: StackPool,
    /// Idle workers (see `task::Worker`), at most `KEEP_WORKERS`.
    pub(super) workers: Vec<Worker>,
    pub(super) violation: Option<Violation>,
    pub(super) quanta: u32,
    pub(super) ops: u32,
    pub(super) rng: u64,
    pub(crate) ticks: u64,
    pub(crate) switches: u64,
    pub(crate) spawned: u64,
    pub(super) live: usize,
    pub(super) daemons: Vec<TaskRef>,
    pub(super) root: Option<TaskRef>,
    /// Whether `events` is the platform's own source, which publishes when
    /// it may have something (`syscall::publish_due`).
    pub(super) platform_events: bool,
    /// The time as the run loop last read it (see `SampledClock`).
    pub(crate) clock: clock::SampledClock,
    /// The trace being recorded, if any (`Builder::trace`): every event
    /// site tests this and nothing more while it is `None`.
    pub(crate) trace: Option<Box<Ring>>,
    /// The link to the run's other cores; `None` with one core (the run
    /// loop then reads nothing more than this field per scheduling point).
    pub(crate) multi: Option<Box<super::cores::Multi>>,
}

thread_local! {
    pub(super) static CURRENT: Cell<*const RefCell<Scheduler>> = const { Cell::new(core::ptr::null()) };
    /// Whether the run's main task has finished (read by the run loop at
    /// every tick without borrowing the scheduler).
    pub(super) static ROOT_FINISHED: Cell<bool> = const { Cell::new(false) };
}

#[cold]
#[inline(never)]
fn outside_run() -> ! {
    panic!("mkernel: this function must be called from a task, inside mkernel::run")
}

#[cold]
#[inline(never)]
fn not_in_a_task() -> ! {
    panic!("mkernel: this function must be called from a task, not from a hook or an event source")
}

/// Runs `f` on the scheduler of the run active on this thread.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    with_inlined(f)
}

/// [`with`], always inlined: for the few hot paths (a yield, a park).
#[inline(always)]
pub(crate) fn with_inlined<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let p = CURRENT.with(|c| c.get());
    if p.is_null() {
        outside_run()
    }
    // SAFETY: `p` is set by `Runtime::enter` to a `RefCell<Scheduler>` that
    // outlives the run and is reset to null before that cell is dropped; the
    // pointer is thread-local, so no other thread sees it.
    let cell = unsafe { &*p };
    f(&mut cell.borrow_mut())
}

/// The task running on this thread, if it has a guard page, for the
/// stack-overflow handler: read from the scheduler without borrowing it
/// (the handler may have interrupted code that holds the borrow).
pub(crate) fn running_for_signal() -> Option<crate::sys::Running> {
    let cell = CURRENT.try_with(|c| c.get()).ok()?;
    if cell.is_null() {
        return None;
    }
    // SAFETY: a non-null `CURRENT` points to this thread's live
    // `RefCell<Scheduler>` (see `with_inlined`).
    let cell = unsafe { &*cell };
    // SAFETY: the cell is live (above), and the fault interrupted this very
    // thread, so nothing changes the scheduler while we read it, even if
    // the interrupted code holds a borrow of the cell. We only read, through
    // the cell's raw pointer, plain fields that a switch sets before the
    // task runs (`current`, its slot's guard, uid and site); the process
    // aborts right after, so no borrow outlives the read.
    let s = unsafe { &*cell.as_ptr() };
    let slot = s.tasks.get(s.current? as usize)?;
    (slot.guard.0 != 0).then(|| crate::sys::Running {
        guard: slot.guard,
        task: slot.uid,
        site: slot.site,
        main: slot.parent.is_none() && slot.uid == 1,
        stack_size: s.stacks.stack_size(),
    })
}

/// The task of this thread's run that is being cancelled right now, named
/// for a message; `None` if there is none or the scheduler is borrowed (a
/// panic hook may run anywhere).
pub(crate) fn cancelling_task_name() -> Option<String> {
    let cell = CURRENT.try_with(|c| c.get()).ok()?;
    if cell.is_null() {
        return None;
    }
    // SAFETY: a non-null `CURRENT` points to this thread's live scheduler
    // cell (see `with_inlined`); `try_borrow` below respects any borrow.
    let cell = unsafe { &*cell };
    let s = cell.try_borrow().ok()?;
    let slot = s.tasks.get(s.current? as usize)?;
    slot.cancelling.then(|| slot.named().to_string())
}

/// Whether a run is active on this thread.
pub(crate) fn in_run() -> bool {
    !CURRENT.with(|c| c.get()).is_null()
}

/// Prints `msg` and aborts: for states that cannot be unwound from.
#[cold]
pub(crate) fn fatal(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::abort()
}

impl Scheduler {
    pub(crate) fn new(
        events: Box<dyn Events>,
        platform_events: bool,
        quanta: u32,
        stack_size: usize,
        seed: u64,
        max_clock_every: u32,
        trace: Option<trace::Trace>,
    ) -> Scheduler {
        Scheduler {
            tasks: Vec::new(),
            free: Vec::new(),
            run_queue: VecDeque::new(),
            current: None,
            next_uid: 1,
            events: Some(events),
            syscalls: Waiting::default(),
            hooks: Vec::new(),
            wait_hooks: Vec::new(),
            stacks: StackPool::new(stack_size),
            workers: Vec::new(),
            violation: None,
            quanta: quanta.max(1),
            ops: 0,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            ticks: 0,
            switches: 0,
            spawned: 0,
            live: 0,
            daemons: Vec::new(),
            root: None,
            platform_events,
            clock: clock::SampledClock::new(max_clock_every),
            trace: trace.map(Ring::new),
            multi: None,
        }
    }

    #[inline]
    pub(crate) fn slot(&self, t: TaskRef) -> Option<&Slot> {
        self.tasks.get(t.idx as usize).filter(|s| s.uid == t.uid)
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, t: TaskRef) -> Option<&mut Slot> {
        self.tasks
            .get_mut(t.idx as usize)
            .filter(|s| s.uid == t.uid)
    }

    pub(crate) fn current_ref(&self) -> Option<TaskRef> {
        self.current.map(|idx| TaskRef {
            idx,
            uid: self.tasks[idx as usize].uid,
        })
    }

    #[inline]
    pub(crate) fn current_or_panic(&self) -> TaskRef {
        match self.current {
            Some(idx) => TaskRef {
                idx,
                uid: self.tasks[idx as usize].uid,
            },
            None => not_in_a_task(),
        }
    }

    pub(crate) fn next_random(&mut self) -> u64 {
        // xorshift64*: scheduling choices reproducible from the seed.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[inline]
    pub(super) fn enqueue(&mut self, t: TaskRef) {
        let (now, switches) = (self.clock.now(), self.switches);
        let slot = &mut self.tasks[t.idx as usize];
        slot.stats.enqueued_cycles = now;
        slot.stats.enqueued_switch = switches;
        self.run_queue.push_back(t);
    }

    /// Wakes a suspended task; false if it is not (or no longer) suspended.
    /// The running task (if any) is the waker in a trace.
    #[inline]
    pub(crate) fn wake(&mut self, t: TaskRef) -> bool {
        self.wake_by(t, By::Current)
    }

    /// [`wake`](Scheduler::wake), naming the waker for a trace.
    #[inline]
    pub(crate) fn wake_by(&mut self, t: TaskRef, by: By) -> bool {
        match self.slot_mut(t) {
            Some(slot) if matches!(slot.state, State::Suspended(_)) => {
                slot.state = State::Ready;
                self.enqueue(t);
                if self.trace.is_some() {
                    trace::wake(self, t, by);
                }
                true
            }
            _ => false,
        }
    }

    /// Wakes `t` only if it waits in a wait queue. A timed wait's timer is
    /// withdrawn (the event source hears of it at its next `select`, before
    /// it could signal it), so that exactly one of the two wakes the task.
    pub(crate) fn wake_queued(&mut self, t: TaskRef) -> Woken {
        match self.slot(t).map(|slot| slot.state) {
            Some(State::Suspended(Wait::Queue)) => {
                self.wake(t);
                Woken::Untimed
            }
            Some(State::Suspended(Wait::QueueTimed(id))) => {
                self.syscalls.cancel(id);
                self.wake(t);
                Woken::Timed
            }
            _ => Woken::No,
        }
    }

    pub(super) fn alloc_slot(
        &mut self,
        parent: Option<TaskRef>,
        site: &'static Location<'static>,
        entry: Entry,
    ) -> TaskRef {
        let uid = self.next_uid;
        self.next_uid += 1;
        self.spawned += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                self.tasks[i as usize].reset(uid, parent, site, entry);
                i
            }
            None => {
                self.tasks.push(Slot::new(uid, parent, site, entry));
                (self.tasks.len() - 1) as u32
            }
        };
        self.live += 1;
        let t = TaskRef { idx, uid };
        if self.trace.is_some() {
            trace::spawn(self, t, parent);
        }
        t
    }

    /// Frees a finished task's slot once nothing refers to it any more;
    /// returns its unjoined result, if any, for the caller to drop outside
    /// the borrow (it is user data).
    pub(super) fn maybe_free(&mut self, t: TaskRef) -> Option<Option<TaskResult>> {
        let slot = self.slot_mut(t)?;
        if slot.promise_alive || !slot.state.is_finished() || slot.attached {
            return None;
        }
        slot.uid = 0;
        slot.state = State::Consumed;
        let result = slot.result.take();
        self.free.push(t.idx);
        self.live -= 1;
        Some(result)
    }

    pub(super) fn attach_child(&mut self, parent: TaskRef, child: TaskRef) {
        let first = self.tasks[parent.idx as usize].first_child;
        {
            let c = &mut self.tasks[child.idx as usize];
            c.attached = true;
            c.prev_sibling = None;
            c.next_sibling = first;
        }
        if let Some(f) = first {
            self.tasks[f as usize].prev_sibling = Some(child.idx);
        }
        self.tasks[parent.idx as usize].first_child = Some(child.idx);
    }

    /// Takes `child` out of its parent's pending children (joined or cancelled).
    pub(crate) fn detach(&mut self, child: TaskRef) {
        let Some(c) = self.slot_mut(child) else {
            return;
        };
        if !c.attached {
            return;
        }
        c.attached = false;
        let (prev, next, parent) = (c.prev_sibling.take(), c.next_sibling.take(), c.parent);
        if let Some(n) = next {
            self.tasks[n as usize].prev_sibling = prev;
        }
        match prev {
            Some(p) => self.tasks[p as usize].next_sibling = next,
            None => {
                if let Some(p) = parent {
                    if let Some(ps) = self.slot_mut(p) {
                        ps.first_child = next;
                    }
                }
            }
        }
    }

    pub(super) fn attached_children(&self, t: TaskRef) -> Vec<TaskRef> {
        let mut v = Vec::new();
        let mut cur = self.tasks[t.idx as usize].first_child;
        while let Some(i) = cur {
            let s = &self.tasks[i as usize];
            v.push(TaskRef { idx: i, uid: s.uid });
            cur = s.next_sibling;
        }
        v
    }

    /// Counts a non-suspending runtime operation; true when the current task
    /// used its quanta and should go to the back of the queue.
    pub(crate) fn count_op(&mut self) -> bool {
        self.ops += 1;
        self.ops >= self.quanta
    }

    pub(crate) fn record_violation(&mut self, v: Violation) {
        if self.violation.is_none() {
            self.violation = Some(v);
        }
    }

    /// The hook list of `kind`.
    pub(crate) fn hooks_mut(
        &mut self,
        kind: super::hook::Kind,
    ) -> &mut Vec<Rc<super::hook::HookInner>> {
        match kind {
            super::hook::Kind::Tick => &mut self.hooks,
            super::hook::Kind::Wait => &mut self.wait_hooks,
        }
    }

    pub(crate) fn live_tasks(&self) -> usize {
        self.live
    }
}

/// What [`Scheduler::wake_queued`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The task was not waiting in a queue (any more).
    No,
    /// It waited without a time limit.
    Untimed,
    /// It waited with a timer ([`Wait::QueueTimed`]), now withdrawn.
    Timed,
}

/// Stops the run for a broken rule: the message goes to stderr, the
/// violation is recorded (so that the run stops even if a task catches the
/// panic) and the current task unwinds with the `Violation` payload.
#[cold]
pub(crate) fn violation(v: Violation, msg: String) -> ! {
    eprintln!("mkernel: rule violation ({v:?}): {msg}");
    if in_run() {
        with(|s| s.record_violation(v));
    }
    std::panic::panic_any(v)
}

/// The current task, marked suspended for a wait and about to give the CPU
/// back: [`prepare_park`] made it, [`Parking::suspend`] switches. Between
/// the two, the caller records the task where its waker will find it (a
/// wait queue), with no switch in between.
pub(crate) struct Parking {
    pub(crate) task: TaskRef,
    yielder: *const super::task::TaskYielder,
}

impl Parking {
    /// Gives the CPU back until the task is woken. Always inlined, as
    /// [`yield_current`].
    #[inline(always)]
    pub(crate) fn suspend(self) {
        // SAFETY: `prepare_park` took the yielder of the task running then,
        // and a `Parking` is used at once by that same task (it is neither
        // `Send` nor kept: `suspend` takes it by value), whose worker, and so
        // its yielder, stays with it until it finishes.
        unsafe { suspend_on(self.yielder) }
    }
}

/// Marks the current task suspended for `wait`, or returns `None` while it
/// is being cancelled (it cannot wait then: the caller returns at once).
/// One scheduler borrow for the check, the state and the yielder.
#[inline(always)]
pub(crate) fn prepare_park(wait: Wait) -> Option<Parking> {
    with_inlined(|s| {
        let cur = s.current_or_panic();
        let slot = &mut s.tasks[cur.idx as usize];
        if slot.cancelling {
            idle_park(slot);
            return None;
        }
        slot.state = State::Suspended(wait);
        let yielder = slot.yielder;
        if s.trace.is_some() {
            trace::suspend(s, cur, Some(wait));
        }
        Some(Parking { task: cur, yielder })
    })
}

/// Suspends the current task until woken. During a cancellation (the task's
/// stack is being unwound by `cancel`), waiting is impossible: it returns at
/// once, and a destructor that keeps trying is reported as a bug.
///
/// Inlined for the same reason as [`yield_current`].
#[inline(always)]
pub(crate) fn park(wait: Wait) {
    if let Some(parking) = prepare_park(wait) {
        parking.suspend();
    }
}

/// Gives the CPU back to the run loop from the current task.
///
/// # Safety
/// `y` must be the yielder of the coroutine running now.
#[inline(always)]
unsafe fn suspend_on(y: *const super::task::TaskYielder) {
    // SAFETY: `y` is the yielder of the coroutine running now (the
    // caller's contract), so it points to a live `Yielder` (it lives as
    // long as that coroutine), and suspending through it from inside that
    // coroutine is the use corosensei allows.
    let next = unsafe { (*y).suspend(None) };
    // A suspended task is resumed with no new function to run.
    debug_assert!(next.is_none());
}

/// A task being cancelled tried to wait: count it, and stop a destructor
/// that keeps trying.
#[cold]
#[inline(never)]
fn idle_park(slot: &mut Slot) {
    slot.idle_parks += 1;
    if slot.idle_parks > MAX_IDLE_PARKS {
        fatal(&format!(
            "mkernel: {} keeps waiting while it is being cancelled; \
             destructors of a cancelled task cannot wait",
            slot.named()
        ));
    }
}

/// Whether the current task is being cancelled, so that it cannot wait:
/// the caller (about to wait) returns at once instead. Counts the attempt,
/// as a park during a cancellation does: a destructor that keeps trying
/// (a loop around a wait that returns at once) would spin for ever, since
/// nothing else runs while `cancel` unwinds, so it is reported and the
/// process aborts.
pub(crate) fn cannot_wait() -> bool {
    with(|s| match s.current {
        Some(i) if s.tasks[i as usize].cancelling => {
            idle_park(&mut s.tasks[i as usize]);
            true
        }
        _ => false,
    })
}

/// Whether the current task is being cancelled (its stack unwinds now).
pub(crate) fn cancelling() -> bool {
    with(|s| {
        s.current
            .map(|i| s.tasks[i as usize].cancelling)
            .unwrap_or(false)
    })
}

/// Puts the current task at the back of the run queue.
///
/// Inlined into its callers on purpose: a task that suspends from the frame
/// that will continue after the switch keeps the CPU's return-address
/// predictor in step with the scheduler's `resume` (an extra call level
/// here costs two mispredicted returns per switch, more than the rest of
/// the switch together).
#[inline(always)]
pub(crate) fn yield_current() {
    let y = with_inlined(|s| {
        let cur = s.current_or_panic();
        let slot = &mut s.tasks[cur.idx as usize];
        if slot.cancelling {
            idle_park(slot);
            return None;
        }
        slot.state = State::Ready;
        let y = slot.yielder;
        // Stamped for the wait statistics by the run loop, when the task
        // has given the CPU back (`put_back`).
        s.run_queue.push_back(cur);
        if s.trace.is_some() {
            trace::suspend(s, cur, None);
        }
        Some(y)
    });
    if let Some(y) = y {
        // SAFETY: `y` is the yielder of the current task's worker, which is
        // running (we are on its stack), so the pointer is live.
        unsafe { suspend_on(y) }
    }
}

/// Yields if the current task used up its quanta of non-suspending
/// operations. Not while it is being cancelled: nothing else runs then, and
/// these yields are not waits (a destructor may cancel many children).
pub(crate) fn after_op() {
    if with(|s| s.current.is_some_and(|i| !s.tasks[i as usize].cancelling) && s.count_op()) {
        yield_current();
    }
}

/// Asks the run's event source to signal `id` after `after`
/// ([`Events::arm_timer`]); false when the source has no timers. The source
/// is taken out of the scheduler for the call, as for `select`.
pub(crate) fn arm_timer(after: core::time::Duration, id: SyscallId) -> bool {
    let Some(mut events) = with(|s| s.events.take()) else {
        return false;
    };
    let armed = events.arm_timer(after, id);
    with(|s| s.events = Some(events));
    armed
}

/// Withdraws syscall `id` (a timer armed for a wait that did not happen):
/// the event source forgets it at its next `select`.
pub(crate) fn withdraw_syscall(id: SyscallId) {
    with(|s| s.syscalls.cancel(id))
}

/// After a timed wait (`Wait::QueueTimed(id)`) ended, forgets a signal of
/// `id` that came for nobody (none should: see `wake_queued`).
pub(crate) fn forget_syscall(id: SyscallId) {
    with(|s| s.syscalls.forget(id))
}

/// Registers the current task as waiting for `id`; returns false when a
/// signal for it already arrived (no need to wait).
pub(crate) fn register_syscall(id: SyscallId) -> bool {
    with(|s| {
        let cur = s.current_or_panic();
        s.syscalls.register(id, cur)
    })
}

pub(super) fn deliver(s: &mut Scheduler, id: SyscallId) {
    if let Some(t) = s.syscalls.signalled(id) {
        s.wake_by(t, By::Signal(id));
    }
}

/// The current task's reference.
pub(crate) fn current() -> TaskRef {
    with(|s| s.current_or_panic())
}

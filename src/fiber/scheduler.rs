//! The scheduler: one per run, per thread. Round-robin over runnable tasks,
//! the event source asked at every scheduling point.
//!
//! Borrowing discipline: the scheduler lives in a `RefCell` reached through
//! [`with`]. No user code (task bodies, destructors of user values, hooks,
//! finalisers, `Events::select`) ever runs while it is borrowed: such things
//! are taken out of the scheduler first and run or dropped afterwards.

use super::clock;
use super::overflow;
use super::resource::Resource;
use super::stack::StackPool;
use super::syscall::{Events, SyscallId};
use super::task::{Co, Entry, Exit, Slot, State, TaskRef, TaskYielder, Wait};
use super::{Error, Violation};
use core::any::Any;
use core::cell::{Cell, RefCell};
use core::panic::Location;
use corosensei::{Coroutine, CoroutineResult};
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;

/// How many times in a row a task being cancelled may try to wait (from a
/// destructor) before we call it a bug: it cannot really wait, since its
/// stack is being unwound synchronously by `cancel`.
const MAX_IDLE_PARKS: u32 = 10_000;

pub(crate) struct Scheduler {
    pub(crate) tasks: Vec<Slot>,
    free: Vec<u32>,
    run_queue: VecDeque<TaskRef>,
    pub(crate) current: Option<u32>,
    next_uid: u64,
    pub(crate) events: Option<Box<dyn Events>>,
    syscalls: HashMap<SyscallId, TaskRef>,
    early_signals: HashSet<SyscallId>,
    cancelled_syscalls: Vec<SyscallId>,
    pub(crate) hooks: Vec<Rc<super::hook::HookInner>>,
    pub(crate) stacks: StackPool,
    violation: Option<Violation>,
    quanta: u32,
    ops: u32,
    rng: u64,
    pub(crate) ticks: u64,
    pub(crate) switches: u64,
    pub(crate) spawned: u64,
    live: usize,
    daemons: Vec<TaskRef>,
    root: Option<TaskRef>,
    /// Whether `events` is the platform's own source, which publishes when
    /// it may have something (`platform::due_cycles`).
    platform_events: bool,
}

thread_local! {
    static CURRENT: Cell<*const RefCell<Scheduler>> = const { Cell::new(core::ptr::null()) };
    /// Whether the run's main task has finished (read by the run loop at
    /// every tick without borrowing the scheduler).
    static ROOT_FINISHED: Cell<bool> = const { Cell::new(false) };
}

#[cold]
#[inline(never)]
fn outside_run() -> ! {
    panic!("mkernel: this function must be called from a task, inside mkernel::run")
}

/// Runs `f` on the scheduler of the run active on this thread.
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
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
    ) -> Scheduler {
        Scheduler {
            tasks: Vec::new(),
            free: Vec::new(),
            run_queue: VecDeque::new(),
            current: None,
            next_uid: 1,
            events: Some(events),
            syscalls: HashMap::new(),
            early_signals: HashSet::new(),
            cancelled_syscalls: Vec::new(),
            hooks: Vec::new(),
            stacks: StackPool::new(stack_size),
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

    pub(crate) fn current_or_panic(&self) -> TaskRef {
        match self.current_ref() {
            Some(t) => t,
            None => panic!(
                "mkernel: this function must be called from a task, not from a hook or an event source"
            ),
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
    fn enqueue(&mut self, t: TaskRef) {
        let now = clock::cycles();
        self.enqueue_at(t, now);
    }

    /// Enqueues with a given timestamp (the yield path: `resume` stamps the
    /// task with the TSC it reads anyway when the task gives the CPU back).
    #[inline]
    fn enqueue_at(&mut self, t: TaskRef, now: u64) {
        let switches = self.switches;
        let slot = &mut self.tasks[t.idx as usize];
        slot.stats.enqueued_cycles = now;
        slot.stats.enqueued_switch = switches;
        self.run_queue.push_back(t);
    }

    /// Wakes a suspended task; false if it is not (or no longer) suspended.
    pub(crate) fn wake(&mut self, t: TaskRef) -> bool {
        match self.slot_mut(t) {
            Some(slot) if matches!(slot.state, State::Suspended(_)) => {
                slot.state = State::Ready;
                self.enqueue(t);
                true
            }
            _ => false,
        }
    }

    /// Wakes `t` only if it waits in a wait queue.
    pub(crate) fn wake_queued(&mut self, t: TaskRef) -> bool {
        match self.slot(t) {
            Some(slot) if matches!(slot.state, State::Suspended(Wait::Queue)) => self.wake(t),
            _ => false,
        }
    }

    fn alloc_slot(&mut self, slot: Slot) -> TaskRef {
        let uid = slot.uid;
        let idx = match self.free.pop() {
            Some(i) => {
                self.tasks[i as usize] = slot;
                i
            }
            None => {
                self.tasks.push(slot);
                (self.tasks.len() - 1) as u32
            }
        };
        self.live += 1;
        TaskRef { idx, uid }
    }

    /// Frees a finished task's slot once nothing refers to it any more.
    fn maybe_free(&mut self, t: TaskRef) -> Option<State> {
        let slot = self.slot_mut(t)?;
        if slot.promise_alive || !slot.state.is_finished() || slot.attached {
            return None;
        }
        slot.uid = 0;
        // The result (user data) is dropped by the caller, outside the borrow.
        let st = core::mem::replace(&mut slot.state, State::Consumed);
        self.free.push(t.idx);
        Some(st)
    }

    fn attach_child(&mut self, parent: TaskRef, child: TaskRef) {
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

    fn attached_children(&self, t: TaskRef) -> Vec<TaskRef> {
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

    pub(crate) fn live_tasks(&self) -> usize {
        self.live
    }
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

/// Spawns a task. `parent` None makes a daemon (runtime-owned, cancelled when
/// the main function returns).
/// Spawns a task running `f`. `daemon` makes it runtime-owned (no parent:
/// cancelled when the main function returns). Its stack and coroutine are
/// made when it first runs. Returns the task and whether the current task
/// used up its quanta (it should then yield).
pub(crate) fn spawn_raw<F>(f: F, site: &'static Location<'static>, daemon: bool) -> (TaskRef, bool)
where
    F: FnOnce() -> Box<dyn Any> + 'static,
{
    with(|s| {
        let uid = s.next_uid;
        s.next_uid += 1;
        s.spawned += 1;
        let parent = if daemon {
            None
        } else {
            Some(s.current_or_panic())
        };
        let mut slot = Slot::new(uid, parent, site, Box::new(f));
        slot.promise_alive = !daemon;
        let t = s.alloc_slot(slot);
        if let Some(p) = parent {
            s.attach_child(p, t);
        } else {
            s.daemons.push(t);
        }
        s.enqueue(t);
        let rotate = s.current.is_some() && s.count_op();
        (t, rotate)
    })
}

/// What `join` found in one borrow.
pub(crate) enum Joined {
    /// The result; the promise is consumed and the record freed.
    Done(Result<Box<dyn Any>, Error>),
    /// Still running: the parent is registered as waiting.
    Wait,
    /// The caller is not the parent: (caller uid, spawn site).
    NotAChild(u64, &'static Location<'static>),
}

/// Joins `t` if it finished (one borrow), else registers the caller as its
/// waiter. `count` counts the join as a runtime operation (quanta).
pub(crate) fn try_join(t: TaskRef) -> (Joined, bool) {
    with(|s| {
        let me = s.current_or_panic();
        let Some(slot) = s.slot_mut(t) else {
            return (Joined::Done(Err(Error::Cancelled)), false);
        };
        if slot.parent != Some(me) {
            return (Joined::NotAChild(me.uid, slot.site), false);
        }
        match core::mem::replace(&mut slot.state, State::Consumed) {
            State::Done(r) => {
                slot.joined_by_parent = false;
                slot.promise_alive = false;
                s.detach(t);
                let freed = s.maybe_free(t);
                debug_assert!(matches!(freed, Some(State::Consumed)));
                if freed.is_some() {
                    s.live -= 1;
                }
                let rotate = s.count_op();
                (Joined::Done(r), rotate)
            }
            State::Consumed => (Joined::Done(Err(Error::Cancelled)), false),
            other => {
                slot.state = other;
                slot.joined_by_parent = true;
                (Joined::Wait, false)
            }
        }
    })
}

/// Suspends the current task until woken. During a cancellation (the task's
/// stack is being unwound by `cancel`), waiting is impossible: it returns at
/// once, and a destructor that keeps trying is reported as a bug.
pub(crate) fn park(wait: Wait) {
    let y = with(|s| {
        let cur = s.current_or_panic();
        let slot = &mut s.tasks[cur.idx as usize];
        if slot.cancelling {
            slot.idle_parks += 1;
            if slot.idle_parks > MAX_IDLE_PARKS {
                fatal(&format!(
                    "mkernel: task {} (spawned at {}) keeps waiting while it is being cancelled; \
                     destructors of a cancelled task cannot wait",
                    slot.uid, slot.site
                ));
            }
            return None;
        }
        slot.state = State::Suspended(wait);
        Some(slot.yielder)
    });
    if let Some(y) = y {
        // SAFETY: the yielder belongs to the current task's coroutine, which
        // is running (we are on its stack), so the pointer is live.
        unsafe { (*y).suspend(()) }
    }
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
pub(crate) fn yield_current() {
    let y = with(|s| {
        let cur = s.current_or_panic();
        let slot = &mut s.tasks[cur.idx as usize];
        if slot.cancelling {
            return None;
        }
        slot.state = State::Ready;
        let y = slot.yielder;
        s.enqueue_at(cur, 0);
        Some(y)
    });
    if let Some(y) = y {
        // SAFETY: as in `park`.
        unsafe { (*y).suspend(()) }
    }
}

/// Yields if the current task used up its quanta of non-suspending operations.
pub(crate) fn after_op() {
    if with(|s| s.current.is_some() && s.count_op()) {
        yield_current();
    }
}

/// Registers the current task as waiting for `id`; returns false when a
/// signal for it already arrived (no need to wait).
pub(crate) fn register_syscall(id: SyscallId) -> bool {
    with(|s| {
        if s.early_signals.remove(&id) {
            return false;
        }
        let cur = s.current_or_panic();
        s.syscalls.insert(id, cur);
        true
    })
}

/// Cancels `t` and all its descendants: children first, then `t`'s own stack
/// unwinds at its suspension point (or its unstarted closure is dropped),
/// then its owned resources are finalised. On return, nothing of `t` runs or
/// waits any more. Works from any context (a task or the scheduler loop).
pub(crate) fn cancel_task(t: TaskRef) {
    let children = with(|s| {
        let slot = s.slot_mut(t)?;
        if slot.state.is_finished() {
            return Some(Vec::new());
        }
        slot.cancelling = true;
        Some(s.attached_children(t))
    });
    let Some(children) = children else { return };
    for c in children {
        cancel_task(c);
        with(|s| s.detach(c));
        drop_if_unreferenced(c);
    }
    enum Step {
        Nothing,
        DropEntry(Entry),
        Unwind(Co),
    }
    let step = with(|s| {
        let slot = s.slot_mut(t).expect("task alive during its cancellation");
        let st = core::mem::replace(&mut slot.state, State::Running);
        match st {
            // A queued task never ran: dropping its closure drops what it
            // captured.
            State::Queued(entry) => Step::DropEntry(entry),
            State::Ready | State::Suspended(_) => {
                if let State::Suspended(Wait::Syscall(id)) = st {
                    s.syscalls.remove(&id);
                    s.cancelled_syscalls.push(id);
                }
                Step::Unwind(
                    s.tasks[t.idx as usize]
                        .co
                        .take()
                        .expect("started task has a coroutine"),
                )
            }
            State::Running => fatal("mkernel: internal error: cancelling a running task"),
            other => {
                // Already finished (its result is replaced below).
                s.tasks[t.idx as usize].state = other;
                Step::Nothing
            }
        }
    });
    let prev = with(|s| s.current.replace(t.idx));
    let mut old_result = None;
    match step {
        Step::Nothing => {}
        Step::DropEntry(entry) => drop(entry),
        Step::Unwind(mut co) => {
            co.force_unwind();
            with(|s| s.stacks.put((*co).into_stack()));
        }
    }
    let resources = with(|s| {
        s.current = prev;
        let slot = s.slot_mut(t).expect("task alive after its cancellation");
        slot.cancelling = false;
        let st = core::mem::replace(&mut slot.state, State::Done(Err(Error::Cancelled)));
        if let State::Done(r) = st {
            old_result = Some(r);
        }
        core::mem::take(&mut slot.resources)
    });
    drop(old_result);
    Resource::finalise_all(resources);
    after_finish(t);
}

/// Frees `t`'s slot if no promise refers to it (its result is dropped here,
/// outside the scheduler borrow).
pub(crate) fn drop_if_unreferenced(t: TaskRef) {
    let st = with(|s| s.maybe_free(t).map(|st| (st, s.live -= 1)));
    drop(st);
}

/// Wakes whoever waits for `t` to finish.
fn after_finish(t: TaskRef) {
    with(|s| {
        let Some(slot) = s.slot(t) else { return };
        if slot.joined_by_parent {
            if let Some(p) = slot.parent {
                s.wake(p);
            }
        }
    });
}

/// Creates the coroutine of a task that runs for the first time.
fn start(s: &mut Scheduler, t: TaskRef, entry: Entry) -> Co {
    let stack = s.stacks.get();
    s.tasks[t.idx as usize].guard = stack.guard_range();
    s.tasks[t.idx as usize].stack_bottom = stack.canary_at();
    let idx = t.idx;
    Box::new(Coroutine::with_stack(stack, move |y: &TaskYielder, ()| {
        with(|s| s.tasks[idx as usize].yielder = y as *const TaskYielder);
        match catch_unwind(AssertUnwindSafe(entry)) {
            Ok(v) => Exit::Returned(v),
            Err(p) => {
                if with(|s| s.tasks[idx as usize].cancelling) {
                    // The forced unwind of a cancellation: let it reach the
                    // coroutine's root, where corosensei stops it.
                    resume_unwind(p)
                }
                Exit::Panicked(p)
            }
        }
    }))
}

/// Takes `t`'s coroutine out of its slot (creating it on the first run),
/// counts the run, and makes `t` current. `now` is the TSC read of this tick.
fn prepare(s: &mut Scheduler, t: TaskRef, now: u64) -> Co {
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
    let co = match st {
        State::Queued(entry) => start(s, t, entry),
        State::Ready => s.tasks[t.idx as usize]
            .co
            .take()
            .expect("ready task has a coroutine"),
        _ => fatal("mkernel: internal error: resuming a task that is not runnable"),
    };
    s.current = Some(t.idx);
    let slot = &s.tasks[t.idx as usize];
    overflow::enter(slot.guard, slot.uid, slot.site, s.stacks.stack_size());
    co
}

/// A task that gave the CPU back by suspending: its coroutine goes back in
/// its slot at the next scheduling point, in the same borrow as the rest of
/// that point's bookkeeping.
pub(crate) struct Carry {
    t: TaskRef,
    co: Co,
    at: u64,
}

/// Gives the CPU to `t` (prepared by `prepare`) until it suspends or
/// finishes. Returns the TSC read when it gave the CPU back, and its
/// coroutine if it suspended.
fn resume(t: TaskRef, mut co: Co) -> (u64, Option<Carry>) {
    let r = co.resume(());
    // The overflow record of `t` stays until the next switch: a fault in
    // its guard page can only come from `t` itself.
    let now = clock::cycles();
    match r {
        CoroutineResult::Yield(()) => (now, Some(Carry { t, co, at: now })),
        CoroutineResult::Return(exit) => {
            let stack = (*co).into_stack();
            let intact = stack.canary_intact();
            with(|s| {
                s.current = None;
                if !intact {
                    let slot = &s.tasks[t.idx as usize];
                    fatal(&overflow::canary_message(
                        slot.uid,
                        slot.site,
                        s.stacks.stack_size(),
                    ));
                }
                s.stacks.put(stack)
            });
            finish(t, exit);
            (now, None)
        }
    }
}

/// Puts a suspended task's coroutine back in its slot.
#[inline]
fn put_back(s: &mut Scheduler, c: Carry) {
    s.current = None;
    let switches = s.switches;
    let slot = &mut s.tasks[c.t.idx as usize];
    if !super::stack::canary_intact_at(slot.stack_bottom) {
        fatal(&overflow::canary_message(
            slot.uid,
            slot.site,
            s.stacks.stack_size(),
        ));
    }
    if matches!(slot.state, State::Ready) {
        // It yielded: it entered the run queue when it gave the CPU back.
        slot.stats.enqueued_cycles = c.at;
        slot.stats.enqueued_switch = switches;
    }
    slot.co = Some(c.co);
}

/// Ends a task whose function returned or panicked (rules 1, 3, 5, 6).
fn finish(t: TaskRef, exit: Exit) {
    match exit {
        Exit::Returned(v) => {
            // Fast path, one borrow: no forgotten child, no resource.
            let r = with(|s| {
                let slot = &mut s.tasks[t.idx as usize];
                if slot.first_child.is_none() && slot.resources.is_empty() {
                    slot.state = State::Done(Ok(v));
                    Ok(complete(s, t))
                } else {
                    Err(v)
                }
            });
            match r {
                Ok(freed) => {
                    drop(freed);
                    return;
                }
                Err(v) => finish_returned_slow(t, v),
            }
        }
        Exit::Panicked(p) => {
            // Rule 3: a failed task's unfinished children are cancelled.
            let children = with(|s| s.attached_children(t));
            for c in children {
                cancel_task(c);
                with(|s| s.detach(c));
                drop_if_unreferenced(c);
            }
            let resources = with(|s| core::mem::take(&mut s.tasks[t.idx as usize].resources));
            Resource::finalise_all(resources);
            with(|s| s.tasks[t.idx as usize].state = State::Done(Err(Error::Panicked(p))));
        }
    }
    let freed = with(|s| complete(s, t));
    drop(freed);
}

/// After a task finished: wakes its joiner, notes the end of the main task,
/// frees the record if no promise refers to it (returning what must be
/// dropped outside the borrow).
fn complete(s: &mut Scheduler, t: TaskRef) -> Option<State> {
    let slot = &s.tasks[t.idx as usize];
    if slot.joined_by_parent {
        if let Some(p) = slot.parent {
            s.wake(p);
        }
    }
    if s.root == Some(t) {
        ROOT_FINISHED.with(|f| f.set(true));
    }
    let freed = s.maybe_free(t);
    if freed.is_some() {
        s.live -= 1;
    }
    freed
}

/// A task returned with a forgotten child or an owned resource: a violation.
fn finish_returned_slow(t: TaskRef, v: Box<dyn Any>) {
    let (forgotten, resources, me) = with(|s| {
        let slot = &mut s.tasks[t.idx as usize];
        let me = (slot.uid, slot.site);
        let resources = core::mem::take(&mut slot.resources);
        let forgotten = s.tasks[t.idx as usize]
            .first_child
            .map(|c| s.tasks[c as usize].site);
        s.tasks[t.idx as usize].state = State::Done(Ok(v));
        (forgotten, resources, me)
    });
    let n = resources.len();
    Resource::finalise_all(resources);
    if let Some(site) = forgotten {
        stop_for(
            Violation::StillHasChildren,
            format!(
                "task {} (spawned at {}) returned while its child spawned at {} \
                 was neither joined nor cancelled; join it (p.join()) or cancel it (p.cancel())",
                me.0, me.1, site
            ),
        );
    } else {
        stop_for(
            Violation::ResourceLeaked,
            format!(
                "task {} (spawned at {}) returned while still owning {n} resource(s); \
                 release, disown or transfer them before returning (their finalisers were called)",
                me.0, me.1
            ),
        );
    }
}

fn stop_for(v: Violation, msg: String) {
    eprintln!("mkernel: rule violation ({v:?}): {msg}");
    with(|s| s.record_violation(v));
}

/// One run on this thread: enters the scheduler, runs the loop until the
/// root task and every other task are done, and leaves the thread clean
/// whatever happens.
pub(crate) struct Runtime {
    cell: Box<RefCell<Scheduler>>,
}

impl Runtime {
    pub(crate) fn enter(s: Scheduler) -> Runtime {
        if in_run() {
            panic!(
                "mkernel::run called inside a run: a thread runs one scheduler at a time (spawn a task instead)"
            );
        }
        overflow::install();
        clock::calibrate_start();
        ROOT_FINISHED.with(|f| f.set(false));
        let cell = Box::new(RefCell::new(s));
        CURRENT.with(|c| c.set(&*cell as *const RefCell<Scheduler>));
        Runtime { cell }
    }

    /// Runs `main` as the root task; returns its value or its panic payload.
    pub(crate) fn block_on<T: 'static>(
        &self,
        main: impl FnOnce() -> T + 'static,
    ) -> Result<T, Box<dyn Any + Send>> {
        let root = with(|s| {
            let uid = s.next_uid;
            s.next_uid += 1;
            s.spawned += 1;
            let entry: Entry = Box::new(move || Box::new(main()) as Box<dyn Any>);
            let mut slot = Slot::new(uid, None, Location::caller(), entry);
            slot.promise_alive = true;
            let t = s.alloc_slot(slot);
            s.enqueue(t);
            s.root = Some(t);
            t
        });
        let mut root_done = false;
        let mut now = clock::cycles();
        let mut carry = None;
        loop {
            let stuck = match tick(&mut now, &mut carry) {
                Tick::Ran => false,
                Tick::Stuck => true,
                Tick::Violation(v) => {
                    teardown(root);
                    resume_unwind(Box::new(v));
                }
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
                    teardown(root);
                    resume_unwind(Box::new(v));
                }
                let failed =
                    with(|s| matches!(s.tasks[root.idx as usize].state, State::Done(Err(_))));
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
        let st =
            with(|s| core::mem::replace(&mut s.tasks[root.idx as usize].state, State::Consumed));
        match st {
            State::Done(Ok(v)) => Ok(*v.downcast::<T>().expect("root task returns T")),
            State::Done(Err(Error::Panicked(p))) => Err(p),
            State::Done(Err(Error::Cancelled)) => {
                Err(Box::new("mkernel: the main task was cancelled"))
            }
            _ => fatal("mkernel: internal error: run ended before its main task"),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Whatever remains (after a panic escaped the loop) is forgotten, not
        // unwound: its destructors could not reach a scheduler any more.
        if let Ok(mut s) = self.cell.try_borrow_mut() {
            for slot in s.tasks.iter_mut() {
                if let Some(co) = slot.co.take() {
                    core::mem::forget(co);
                }
            }
        }
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
            .map(|sl| format!("task {} (spawned at {})", sl.uid, sl.site))
            .collect()
    });
    let msg = format!(
        "mkernel: deadlock: every task waits (for a join, a mutex or a condition) and no event can wake one; waiting: {}",
        waiting.join(", ")
    );
    eprintln!("{msg}");
    teardown(root);
    panic!("{msg}")
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
#[inline]
fn pick(s: &mut Scheduler, now: u64) -> Option<(TaskRef, Co)> {
    loop {
        let t = s.run_queue.pop_front()?;
        if let Some(slot) = s.slot(t) {
            if matches!(slot.state, State::Queued(_) | State::Ready) {
                return Some((t, prepare(s, t, now)));
            }
        }
    }
}

/// One scheduling point: puts back the coroutine of the task that ran last,
/// asks the event source (unless the platform's own source says nothing can
/// be due yet), runs the hooks, then runs the next runnable task. On the
/// fast path (no event due, no hook) all of it is one borrow of the
/// scheduler. `now` is a recent TSC read.
fn tick(now: &mut u64, carry: &mut Option<Carry>) -> Tick {
    enum Pre {
        Run(TaskRef, Co),
        Idle(bool),
        Ask(bool, Vec<SyscallId>, Box<dyn Events>, bool),
        Hooks,
    }
    let pre = with(|s| {
        if let Some(c) = carry.take() {
            put_back(s, c);
        }
        if let Some(v) = s.violation {
            return Err(v);
        }
        s.ticks += 1;
        let block = s.run_queue.is_empty();
        let hooks = !s.hooks.is_empty();
        let skip = if block {
            // Nothing can come from the event source: nobody waits.
            s.syscalls.is_empty() && s.cancelled_syscalls.is_empty()
        } else {
            // The platform's source publishes when it may have something.
            s.platform_events
                && s.cancelled_syscalls.is_empty()
                && *now < crate::platform::due_cycles()
        };
        Ok(if !skip {
            let cancelled = core::mem::take(&mut s.cancelled_syscalls);
            Pre::Ask(
                block,
                cancelled,
                s.events.take().expect("events present"),
                hooks,
            )
        } else if hooks {
            Pre::Hooks
        } else {
            match pick(s, *now) {
                Some((t, co)) => Pre::Run(t, co),
                None => Pre::Idle(!s.syscalls.is_empty()),
            }
        })
    });
    let next = match pre {
        Err(v) => return Tick::Violation(v),
        Ok(Pre::Run(t, co)) => Some((t, co)),
        Ok(Pre::Idle(waiting)) => return if waiting { Tick::Ran } else { Tick::Stuck },
        Ok(Pre::Ask(block, cancelled, mut events, hooks)) => {
            let signals = events.select(block, &cancelled);
            with(|s| {
                s.events = Some(events);
                for sig in signals {
                    deliver(s, sig.id());
                }
            });
            if block {
                *now = clock::cycles();
            }
            if hooks {
                super::hook::run_hooks();
            }
            match with(|s| pick(s, *now).ok_or(!s.syscalls.is_empty())) {
                Ok(x) => Some(x),
                Err(waiting) => return if waiting { Tick::Ran } else { Tick::Stuck },
            }
        }
        Ok(Pre::Hooks) => {
            super::hook::run_hooks();
            match with(|s| pick(s, *now).ok_or(!s.syscalls.is_empty())) {
                Ok(x) => Some(x),
                Err(waiting) => return if waiting { Tick::Ran } else { Tick::Stuck },
            }
        }
    };
    if let Some((t, co)) = next {
        let (at, c) = resume(t, co);
        *now = at;
        *carry = c;
    }
    Tick::Ran
}

fn deliver(s: &mut Scheduler, id: SyscallId) {
    match s.syscalls.remove(&id) {
        Some(t) => {
            s.wake(t);
        }
        None => {
            s.early_signals.insert(id);
        }
    }
}

/// The current task's reference.
pub(crate) fn current() -> TaskRef {
    with(|s| s.current_or_panic())
}

//! A task's life: spawning, joining, cancelling (children first, then the
//! task's own stack unwound at its suspension point), and what happens when
//! its function returns or panics (rules 1, 3, 5 and 6).

use super::resource::Resource;
use super::scheduler::{ROOT_FINISHED, Scheduler, fatal, with};
use super::task::{
    Entry, Exit, State, TaskRef, TaskResult, TaskYielder, Wait, Worker, WorkerInner,
};
use super::trace::By;
use super::{Error, Violation};
use core::any::Any;
use core::panic::Location;
use corosensei::Coroutine;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Spawns a task running `f`. `daemon` makes it runtime-owned (no parent:
/// cancelled when the main function returns). It gets a worker (a
/// coroutine on a stack) when it first runs. Returns the task and whether the current task
/// used up its quanta (it should then yield).
pub(crate) fn spawn_raw<F>(f: F, site: &'static Location<'static>, daemon: bool) -> (TaskRef, bool)
where
    F: FnOnce() -> Box<dyn Any> + 'static,
{
    with(|s| {
        let parent = if daemon {
            None
        } else {
            Some(s.current_or_panic())
        };
        let t = s.alloc_slot(parent, site, Box::new(f));
        if let Some(p) = parent {
            s.attach_child(p, t);
        } else {
            s.tasks[t.idx as usize].promise_alive = false;
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
        match slot.state {
            State::Done => {
                let r = slot.result.take().expect("a finished task has its result");
                slot.state = State::Consumed;
                slot.joined_by_parent = false;
                slot.promise_alive = false;
                s.detach(t);
                let freed = s.maybe_free(t);
                debug_assert!(matches!(freed, Some(None)));
                let rotate = s.count_op();
                (Joined::Done(r), rotate)
            }
            State::Consumed => (Joined::Done(Err(Error::Cancelled)), false),
            _ => {
                slot.joined_by_parent = true;
                (Joined::Wait, false)
            }
        }
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
        Unwind(Worker),
    }
    let step = with(|s| {
        let slot = s.slot_mut(t).expect("task alive during its cancellation");
        match slot.state {
            // A queued task never ran: dropping its closure drops what it
            // captured.
            State::Queued => {
                slot.state = State::Running;
                Step::DropEntry(slot.entry.take().expect("a queued task has its function"))
            }
            State::Ready | State::Suspended(_) => {
                let st = slot.state;
                slot.state = State::Running;
                let w = slot.worker.take().expect("a started task has its worker");
                if let State::Suspended(Wait::Syscall(id) | Wait::QueueTimed(id)) = st {
                    s.syscalls.cancel(id);
                }
                Step::Unwind(w)
            }
            State::Running => fatal("mkernel: internal error: cancelling a running task"),
            // Already finished (its result is replaced below).
            State::Done | State::Consumed => Step::Nothing,
        }
    });
    let ended = !matches!(step, Step::Nothing);
    let prev = with(|s| s.current.replace(t.idx));
    match step {
        Step::Nothing => {}
        Step::DropEntry(entry) => drop(entry),
        Step::Unwind(mut w) => {
            // The task's frames unwind, then its worker's: the worker ends
            // with it (its stack goes back to the pool).
            w.co.force_unwind();
            with(|s| s.stacks.put(w.co.into_stack()));
        }
    }
    let (old_result, resources) = with(|s| {
        s.current = prev;
        let slot = s.slot_mut(t).expect("task alive after its cancellation");
        slot.cancelling = false;
        slot.state = State::Done;
        let old = slot.result.replace(Err(Error::Cancelled));
        let resources = core::mem::take(&mut slot.resources);
        if ended && s.trace.is_some() {
            // Only a task that had not finished ends here.
            super::trace::cancel(s, t);
        }
        (old, resources)
    });
    drop(old_result);
    Resource::finalise_all(resources);
    after_finish(t);
}

/// Frees `t`'s slot if no promise refers to it (its result is dropped here,
/// outside the scheduler borrow).
pub(crate) fn drop_if_unreferenced(t: TaskRef) {
    let freed = with(|s| s.maybe_free(t));
    drop(freed);
}

/// Wakes whoever waits for `t` to finish (on another core, for a task
/// called from there).
pub(super) fn after_finish(t: TaskRef) {
    with(|s| {
        let Some(slot) = s.slot(t) else { return };
        if slot.joined_by_parent {
            match slot.parent {
                Some(p) => {
                    s.wake_by(p, By::Task(t.uid));
                }
                None => super::cores::report(s, t),
            }
        }
    });
}

/// How many idle workers a run keeps for the next tasks to start; beyond,
/// a worker whose task ends is stopped and its stack goes back to the pool.
pub(super) const KEEP_WORKERS: usize = 256;

/// Gives the task `t`, about to start, a worker: an idle one, or a new one
/// on a stack from the pool.
pub(super) fn worker_for(s: &mut Scheduler, t: TaskRef) -> Worker {
    let w = match s.workers.pop() {
        Some(w) => {
            s.stacks.unidle(w.guard != (0, 0));
            w
        }
        None => {
            let stack = s.stacks.get();
            let guard = stack.guard_range();
            let stack_bottom = stack.canary_at();
            Box::new(WorkerInner {
                co: Coroutine::with_stack(stack, worker_main),
                guard,
                stack_bottom,
            })
        }
    };
    let slot = &mut s.tasks[t.idx as usize];
    slot.guard = w.guard;
    slot.stack_bottom = w.stack_bottom;
    w
}

/// A worker's life: runs the function it is resumed with as the current
/// task, yields how it ended, and waits for the next one; stops when
/// resumed with none while idle.
fn worker_main(y: &TaskYielder, first: Option<Entry>) {
    let mut next = first;
    while let Some(entry) = next {
        let exit = run_task(y, entry);
        next = y.suspend(Some(exit));
    }
}

/// Runs one task's function on the current worker.
fn run_task(y: &TaskYielder, entry: Entry) -> Exit {
    let idx = with(|s| {
        let idx = s.current.expect("a worker runs for a task");
        s.tasks[idx as usize].yielder = y as *const TaskYielder;
        idx
    });
    match catch_unwind(AssertUnwindSafe(entry)) {
        Ok(v) => Exit::Returned(v),
        Err(p) => {
            if with(|s| s.tasks[idx as usize].cancelling) {
                // The forced unwind of a cancellation: let it reach the
                // coroutine's root, where corosensei stops it (the worker
                // ends with its task).
                resume_unwind(p)
            }
            Exit::Panicked(p)
        }
    }
}

/// Ends a task whose function returned or panicked (rules 1, 3, 5, 6).
pub(super) fn finish(t: TaskRef, exit: Exit) {
    match exit {
        Exit::Returned(v) => {
            // Fast path, one borrow: no forgotten child, no resource.
            let r = with(|s| {
                let slot = &mut s.tasks[t.idx as usize];
                if slot.first_child.is_none() && slot.resources.is_empty() {
                    slot.state = State::Done;
                    slot.result = Some(Ok(v));
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
            with(|s| {
                let slot = &mut s.tasks[t.idx as usize];
                slot.state = State::Done;
                slot.result = Some(Err(Error::Panicked(p)));
            });
        }
    }
    let freed = with(|s| complete(s, t));
    drop(freed);
}

/// After a task finished: wakes its joiner, notes the end of the main task,
/// frees the record if no promise refers to it (returning what must be
/// dropped outside the borrow).
fn complete(s: &mut Scheduler, t: TaskRef) -> Option<Option<TaskResult>> {
    let slot = &s.tasks[t.idx as usize];
    if slot.joined_by_parent {
        match slot.parent {
            Some(p) => {
                s.wake_by(p, By::Task(t.uid));
            }
            // Called from another core: its caller waits there.
            None => return complete_called(s, t),
        }
    }
    if s.trace.is_some() {
        // After the wake-up, which the task's last run caused.
        let panicked = matches!(s.tasks[t.idx as usize].result, Some(Err(_)));
        super::trace::finish(s, t, panicked);
    }
    if s.root == Some(t) {
        ROOT_FINISHED.with(|f| f.set(true));
    }
    s.maybe_free(t)
}

/// [`complete`] for a task called from another core (never the root): its
/// result goes to its caller's core.
#[cold]
fn complete_called(s: &mut Scheduler, t: TaskRef) -> Option<Option<TaskResult>> {
    if s.trace.is_some() {
        let panicked = matches!(s.tasks[t.idx as usize].result, Some(Err(_)));
        super::trace::finish(s, t, panicked);
    }
    super::cores::report(s, t);
    s.maybe_free(t)
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
        let slot = &mut s.tasks[t.idx as usize];
        slot.state = State::Done;
        slot.result = Some(Ok(v));
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

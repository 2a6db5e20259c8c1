//! A task's life: spawning, joining, cancelling (children first, then the
//! task's own stack unwound at its suspension point), and what happens when
//! its function returns or panics (rules 1, 3, 5 and 6).

use super::resource::Resource;
use super::scheduler::{ROOT_FINISHED, Scheduler, fatal, with};
use super::task::{Co, Entry, Exit, Slot, State, TaskRef, TaskYielder, Wait};
use super::{Error, Violation};
use core::any::Any;
use core::panic::Location;
use corosensei::Coroutine;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

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
pub(super) fn after_finish(t: TaskRef) {
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
pub(super) fn start(s: &mut Scheduler, t: TaskRef, entry: Entry) -> Co {
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

/// Ends a task whose function returned or panicked (rules 1, 3, 5, 6).
pub(super) fn finish(t: TaskRef, exit: Exit) {
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

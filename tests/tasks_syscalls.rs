//! User syscalls and custom event sources (`Builder::events`), `protect`.

use mkernel::{
    Builder, Error, Events, Signal, Syscall, SyscallId, join_all, protect, run, spawn, suspend,
    yield_now,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// A simulated device: signals a registered syscall after `delay` selects;
/// records every `select` call.
#[derive(Default)]
struct Sim {
    pending: Vec<(u32, Signal)>,
    delay: u32,
    cancelled: Vec<SyscallId>,
    selects: u32,
    blocking_selects: u32,
}

#[derive(Clone, Default)]
struct SimHandle(Rc<RefCell<Sim>>);

impl SimHandle {
    fn register(&self, sc: &Syscall) {
        let mut s = self.0.borrow_mut();
        let d = s.delay;
        s.pending.push((d, sc.signal()));
    }
}

impl Events for SimHandle {
    fn select(&mut self, block: bool, cancelled: &[SyscallId]) -> Vec<Signal> {
        let mut s = self.0.borrow_mut();
        s.selects += 1;
        s.blocking_selects += block as u32;
        s.cancelled.extend_from_slice(cancelled);
        let mut out = Vec::new();
        s.pending.retain_mut(|(d, sig)| {
            if *d == 0 {
                out.push(*sig);
                false
            } else {
                *d -= 1;
                true
            }
        });
        out
    }
}

#[test]
fn a_custom_event_source_wakes_a_suspended_task() {
    let sim = SimHandle::default();
    sim.0.borrow_mut().delay = 5;
    let h = sim.clone();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    Builder::new().events(sim.clone()).run((), move |()| {
        let (h2, l2) = (h.clone(), l.clone());
        let waiter = spawn(move || {
            let sc = Syscall::new();
            l2.borrow_mut().push("suspend");
            suspend(&sc, || h2.register(&sc));
            l2.borrow_mut().push("woken");
            sc.id()
        });
        let l3 = l.clone();
        let busy = spawn(move || {
            for _ in 0..3 {
                l3.borrow_mut().push("busy");
                yield_now();
            }
        });
        busy.join().unwrap();
        let id = waiter.join().unwrap();
        assert!(h.0.borrow().pending.is_empty());
        id
    });
    assert_eq!(
        *log.borrow(),
        ["suspend", "busy", "busy", "busy", "woken"],
        "the waiter was suspended while the other task ran"
    );
    let s = sim.0.borrow();
    assert!(s.selects >= 6, "select is called at every scheduling point");
    assert!(
        s.blocking_selects >= 1,
        "when only the waiter is left, select may block"
    );
}

#[test]
fn select_is_called_at_every_tick() {
    let sim = SimHandle::default();
    let h = sim.clone();
    Builder::new().events(sim).run((), move |()| {
        let s0 = h.0.borrow().selects;
        let t0 = mkernel::stats().ticks;
        for _ in 0..10 {
            yield_now();
        }
        let ticks = mkernel::stats().ticks - t0;
        assert_eq!(ticks, 10);
        assert_eq!(h.0.borrow().selects - s0, 10);
    });
}

#[test]
fn a_signal_arriving_before_suspend_is_not_lost() {
    let sim = SimHandle::default();
    let h = sim.clone();
    Builder::new().events(sim).run((), move |()| {
        let sc = Syscall::new();
        h.register(&sc); // the world knows it before the task waits
        yield_now(); // select delivers the signal: nobody waits yet
        assert!(h.0.borrow().pending.is_empty());
        let called = Cell::new(false);
        suspend(&sc, || called.set(true));
        assert!(called.get(), "on_registered always runs");
    });
}

#[test]
fn many_tasks_wake_in_signal_order() {
    let sim = SimHandle::default();
    let h = sim.clone();
    let v = Builder::new().events(sim).run((), move |()| {
        let ps: Vec<_> = (0..20)
            .map(|i| {
                let h = h.clone();
                spawn(move || {
                    let sc = Syscall::new();
                    suspend(&sc, || h.register(&sc));
                    i
                })
            })
            .collect();
        join_all(ps).into_iter().map(Result::unwrap).sum::<i32>()
    });
    assert_eq!(v, 190);
}

#[test]
fn cancelled_syscalls_are_reported_to_select() {
    let sim = SimHandle::default();
    sim.0.borrow_mut().delay = u32::MAX;
    let h = sim.clone();
    let ids = Builder::new().events(sim.clone()).run((), move |()| {
        let ids = Rc::new(RefCell::new(Vec::new()));
        let ps: Vec<_> = (0..3)
            .map(|_| {
                let (h, ids) = (h.clone(), ids.clone());
                spawn(move || {
                    let sc = Syscall::new();
                    ids.borrow_mut().push(sc.id());
                    suspend(&sc, || h.register(&sc));
                    unreachable!()
                })
            })
            .collect();
        yield_now();
        assert!(h.0.borrow().cancelled.is_empty());
        for p in &ps {
            p.cancel();
        }
        yield_now();
        for p in ps {
            assert!(matches!(p.join(), Err(Error::Cancelled)));
        }
        ids.take()
    });
    assert_eq!(sim.0.borrow().cancelled, ids);
}

#[test]
fn a_deadlock_is_reported_not_hung() {
    let r = std::panic::catch_unwind(|| {
        run((), |()| {
            let m = Rc::new(mkernel::sync::Mutex::new(()));
            let _g = m.lock();
            let m2 = m.clone();
            let p = spawn(move || drop(m2.lock()));
            p.join().unwrap();
        })
    });
    let p = r.unwrap_err();
    let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("deadlock"), "{msg}");
}

#[test]
fn protect_on_cancellation_then_finally_true() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    run((), move |()| {
        let l2 = l.clone();
        let p = spawn(move || {
            let (a, b, c) = (l2.clone(), l2.clone(), l2.clone());
            protect(
                move || a.borrow_mut().push("on_cancellation".to_string()),
                move |cancelled| b.borrow_mut().push(format!("finally({cancelled})")),
                move || loop {
                    c.borrow_mut().push("body".to_string());
                    yield_now()
                },
            )
        });
        yield_now();
        p.cancel();
        assert_eq!(
            *l.borrow(),
            ["body", "on_cancellation", "finally(true)"],
            "both ran before cancel returned"
        );
        let _ = p.join();
    });
}

#[test]
fn protect_finally_false_on_return_and_on_panic() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    run((), move |()| {
        let (a, b) = (l.clone(), l.clone());
        let v = protect(
            move || a.borrow_mut().push("on_cancellation".to_string()),
            move |c| b.borrow_mut().push(format!("finally({c})")),
            || {
                yield_now();
                3
            },
        );
        assert_eq!(v, 3);
        let l2 = l.clone();
        let p = spawn(move || {
            let (a, b) = (l2.clone(), l2.clone());
            protect(
                move || a.borrow_mut().push("on_cancellation".to_string()),
                move |c| b.borrow_mut().push(format!("finally({c})")),
                || -> () { panic!("inside") },
            )
        });
        assert!(p.join().is_err());
    });
    assert_eq!(*log.borrow(), ["finally(false)", "finally(false)"]);
}

#[test]
fn protect_in_a_task_cancelled_through_its_parent() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    run((), move |()| {
        let l2 = l.clone();
        let p = spawn(move || {
            let q = spawn(move || {
                let (a, b) = (l2.clone(), l2.clone());
                protect(
                    move || a.borrow_mut().push("on_cancellation".to_string()),
                    move |c| b.borrow_mut().push(format!("finally({c})")),
                    || loop {
                        yield_now()
                    },
                )
            });
            q.join().unwrap()
        });
        yield_now();
        yield_now();
        p.cancel();
        assert_eq!(*l.borrow(), ["on_cancellation", "finally(true)"]);
        let _ = p.join();
    });
}

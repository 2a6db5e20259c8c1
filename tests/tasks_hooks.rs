//! `Hook`: called at each tick until removed.

use mkernel::{Hook, run, spawn, yield_now};
use std::cell::Cell;
use std::rc::Rc;

#[test]
fn a_hook_runs_once_per_tick_and_stops_after_removal() {
    let calls = Rc::new(Cell::new(0u64));
    let c = calls.clone();
    run((), move |()| {
        let c2 = c.clone();
        let hook = Hook::add(move || c2.set(c2.get() + 1));
        let t0 = mkernel::stats().ticks;
        let n0 = c.get();
        let p = spawn(|| {
            for _ in 0..10 {
                yield_now();
            }
        });
        for _ in 0..20 {
            yield_now();
        }
        p.join().unwrap();
        let ticks = mkernel::stats().ticks - t0;
        assert!(ticks >= 20);
        assert_eq!(c.get() - n0, ticks, "exactly one call per tick");
        hook.remove();
        let after = c.get();
        for _ in 0..10 {
            yield_now();
        }
        assert_eq!(c.get(), after, "no call after removal");
    });
}

#[test]
fn several_hooks_run_in_order_and_removal_is_selective() {
    let log = Rc::new(std::cell::RefCell::new(Vec::new()));
    let l = log.clone();
    run((), move |()| {
        let (a, b) = (l.clone(), l.clone());
        let ha = Hook::add(move || a.borrow_mut().push('a'));
        let hb = Hook::add(move || b.borrow_mut().push('b'));
        yield_now();
        yield_now();
        assert_eq!(l.borrow().as_slice(), ['a', 'b', 'a', 'b']);
        ha.remove();
        l.borrow_mut().clear();
        yield_now();
        assert_eq!(l.borrow().as_slice(), ['b']);
        hb.remove();
    });
}

#[test]
fn a_hook_can_wake_a_waiting_task_through_a_condition() {
    // A hook is how a device driver polls; here it flips a flag that a
    // task polls with yield: the hook runs even when only one task is left.
    let v = run((), |()| {
        let flag = Rc::new(Cell::new(0));
        let f = flag.clone();
        let hook = Hook::add(move || f.set(f.get() + 1));
        while flag.get() < 5 {
            yield_now();
        }
        hook.remove();
        flag.get()
    });
    assert_eq!(v, 5);
}

#[test]
fn a_hook_that_panics_is_removed_and_the_run_goes_on() {
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    let v = run((), move |()| {
        let other = Rc::new(Cell::new(0u32));
        let o = other.clone();
        let _bad = Hook::add(move || {
            c.set(c.get() + 1);
            panic!("hook failed");
        });
        let good = Hook::add(move || o.set(o.get() + 1));
        for _ in 0..10 {
            yield_now();
        }
        good.remove();
        assert!(other.get() >= 10, "the other hook keeps running");
        7
    });
    assert_eq!(v, 7, "the run went on");
    assert_eq!(
        calls.get(),
        1,
        "the panicking hook ran once, then was removed"
    );
}

#[test]
fn a_wait_hook_runs_only_when_the_run_waits_for_the_outside_world() {
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    run((), move |()| {
        let c2 = c.clone();
        let hook = mkernel::WaitHook::add(move || c2.set(c2.get() + 1));
        // Busy tasks: many scheduling points, no wait.
        let p = spawn(|| {
            for _ in 0..100 {
                yield_now();
            }
        });
        for _ in 0..100 {
            yield_now();
        }
        p.join().unwrap();
        assert_eq!(c.get(), 0, "not called while tasks can run");
        for _ in 0..3 {
            mkernel::sleep(std::time::Duration::from_millis(1));
        }
        let n = c.get();
        assert!(n >= 3, "called before each wait: {n}");
        hook.remove();
        mkernel::sleep(std::time::Duration::from_millis(1));
        assert_eq!(c.get(), n, "not after removal");
    });
}

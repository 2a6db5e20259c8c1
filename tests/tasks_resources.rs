//! `Resource` (rule 6) and `spawn_giving`.

use mkernel::{Error, Resource, Violation, run, spawn, spawn_giving, yield_now};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

fn finaliser() -> (Rc<Cell<u32>>, impl FnOnce(u32) + 'static) {
    let c = Rc::new(Cell::new(0));
    let c2 = c.clone();
    (c, move |v: u32| c2.set(c2.get() + v))
}

fn stops_with(f: impl FnOnce() + 'static) -> Violation {
    let r = catch_unwind(AssertUnwindSafe(|| run((), move |()| f())));
    *r.unwrap_err()
        .downcast_ref::<Violation>()
        .expect("a Violation")
}

#[test]
fn leak_calls_the_finaliser_and_stops_the_run() {
    let (calls, fin) = finaliser();
    let v = stops_with(move || {
        let p = spawn(move || {
            let r = Resource::new(1, fin);
            r.own();
        });
        let _ = p.join();
    });
    assert_eq!(v, Violation::ResourceLeaked);
    assert_eq!(calls.get(), 1);
}

#[test]
fn finaliser_runs_when_the_owner_panics() {
    let (calls, fin) = finaliser();
    run((), move |()| {
        let c = calls.clone();
        let p = spawn(move || {
            let r = Resource::new(1, fin);
            r.own();
            yield_now();
            assert_eq!(c.get(), 0);
            panic!("owner fails");
        });
        assert!(matches!(p.join(), Err(Error::Panicked(_))));
        assert_eq!(calls.get(), 1);
    });
}

#[test]
fn finaliser_runs_when_the_owner_is_cancelled() {
    let (calls, fin) = finaliser();
    run((), move |()| {
        let p = spawn(move || {
            let r = Resource::new(1, fin);
            r.own();
            loop {
                yield_now()
            }
        });
        yield_now();
        assert_eq!(calls.get(), 0);
        p.cancel();
        assert_eq!(calls.get(), 1, "finalised when cancel returned");
        let _ = p.join();
        assert_eq!(calls.get(), 1);
    });
}

#[test]
fn release_finalises_now_and_disown_never() {
    let (released, fin) = finaliser();
    let (disowned, fin2) = finaliser();
    run((), move |()| {
        let r = Resource::new(1, fin);
        r.own();
        r.check();
        r.release();
        assert_eq!(released.get(), 1);
        let r = Resource::new(1, fin2);
        r.own();
        r.disown();
    });
    assert_eq!(disowned.get(), 0);
}

#[test]
fn transfer_hands_the_resource_to_the_parent() {
    let (calls, fin) = finaliser();
    let c = calls.clone();
    run((), move |()| {
        let p = spawn(move || {
            let r = Resource::new(1, fin);
            r.own();
            r.transfer();
            r
        });
        let r = p.join().unwrap();
        assert_eq!(c.get(), 0, "the child returned without a leak");
        r.check(); // main owns it now
        r.release();
        assert_eq!(c.get(), 1);
    });
    assert_eq!(calls.get(), 1);
}

#[test]
fn a_transferred_resource_leaks_from_the_parent() {
    let (calls, fin) = finaliser();
    let v = stops_with(move || {
        let p = spawn(move || {
            let q = spawn(move || {
                let r = Resource::new(1, fin);
                r.own();
                r.transfer();
            });
            q.join().unwrap();
            // p owns it now and returns with it
        });
        let _ = p.join();
    });
    assert_eq!(v, Violation::ResourceLeaked);
    assert_eq!(calls.get(), 1);
}

#[test]
fn after_transfer_the_child_is_not_owner() {
    let v = stops_with(|| {
        let p = spawn(|| {
            let r = Resource::new((), |()| ());
            r.own();
            r.transfer();
            r.check();
        });
        let _ = p.join();
    });
    assert_eq!(v, Violation::NotOwner);
}

#[test]
fn owning_a_resource_owned_by_another_task_is_not_owner() {
    let v = stops_with(|| {
        let r = Resource::new((), |()| ());
        r.own();
        let r2 = r.clone();
        let p = spawn(move || r2.own());
        let _ = p.join();
        r.release();
    });
    assert_eq!(v, Violation::NotOwner);
}

#[test]
fn spawn_giving_moves_ownership_to_the_child() {
    let (calls, fin) = finaliser();
    let c = calls.clone();
    run((), move |()| {
        let r = Resource::new(1, fin);
        r.own();
        let r2 = r.clone();
        let p = spawn_giving(vec![r.clone()], move || {
            r2.check();
            r2.release();
        });
        p.join().unwrap();
        assert_eq!(c.get(), 1);
        // main no longer owns it: returning is not a leak
    });
    assert_eq!(calls.get(), 1);
}

#[test]
fn spawn_giving_then_the_giver_is_not_owner() {
    let v = stops_with(|| {
        let r = Resource::new((), |()| ());
        r.own();
        let r2 = r.clone();
        let p = spawn_giving(vec![r.clone()], move || r2.release());
        r.check();
        let _ = p.join();
    });
    assert_eq!(v, Violation::NotOwner);
}

#[test]
fn spawn_giving_a_resource_not_owned_is_not_owner() {
    let v = stops_with(|| {
        let r = Resource::new((), |()| ());
        let p = spawn_giving(vec![r], || ());
        let _ = p.join();
    });
    assert_eq!(v, Violation::NotOwner);
}

#[test]
fn a_given_resource_is_finalised_if_the_child_is_cancelled_before_starting() {
    let (calls, fin) = finaliser();
    run((), move |()| {
        let r = Resource::new(1, fin);
        r.own();
        let p = spawn_giving(vec![r], || ());
        p.cancel();
        assert_eq!(calls.get(), 1);
    });
}

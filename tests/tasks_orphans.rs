//! `Orphans`: care / take / get / len.

use mkernel::{Orphans, run, spawn_orphan, yield_now};
use std::cell::Cell;
use std::rc::Rc;

#[test]
fn care_is_none_some_none_then_some_some() {
    run((), |()| {
        let o: Orphans<u32> = Orphans::new();
        assert!(o.care().is_none(), "no task: None");
        assert!(o.is_empty());
        let go = Rc::new(Cell::new(false));
        let g = go.clone();
        spawn_orphan(&o, move || {
            while !g.get() {
                yield_now();
            }
            7
        });
        assert_eq!(o.len(), 1);
        yield_now();
        assert!(matches!(o.care(), Some(None)), "running: Some(None)");
        assert_eq!(o.len(), 1, "care of an unfinished task keeps it");
        go.set(true);
        yield_now();
        let p = o.care().expect("a task is left").expect("it finished");
        assert!(p.is_finished());
        assert_eq!(o.len(), 0);
        assert_eq!(p.join().unwrap(), 7);
        assert!(o.care().is_none());
    });
}

#[test]
fn care_returns_finished_ones_among_running_ones() {
    run((), |()| {
        let o = Orphans::new();
        for i in 0..6u32 {
            spawn_orphan(&o, move || {
                for _ in 0..(if i % 2 == 0 { 0 } else { 1000 }) {
                    yield_now();
                }
                i
            });
        }
        yield_now();
        let mut done = Vec::new();
        while let Some(Some(p)) = o.care() {
            done.push(p.join().unwrap());
        }
        done.sort();
        assert_eq!(done, [0, 2, 4]);
        assert_eq!(o.len(), 3);
        let mut rest = Vec::new();
        while let Some(r) = o.get() {
            rest.push(r.unwrap());
        }
        rest.sort();
        assert_eq!(rest, [1, 3, 5]);
        assert!(o.is_empty());
    });
}

#[test]
fn take_does_not_wait_and_prefers_a_finished_task() {
    run((), |()| {
        let o = Orphans::new();
        spawn_orphan(&o, || {
            for _ in 0..50 {
                yield_now();
            }
            "slow"
        });
        // Nothing ran yet: take returns the oldest task's promise, at once,
        // though it has not finished (Miou's `take`).
        let p = o.take().expect("one task");
        assert!(!p.is_finished(), "take does not wait");
        assert!(o.is_empty());
        spawn_orphan(&o, || "fast");
        spawn_orphan(&o, || {
            for _ in 0..50 {
                yield_now();
            }
            "slower"
        });
        yield_now(); // "fast" finishes
        let q = o.take().expect("two tasks left");
        assert!(q.is_finished(), "a finished task is preferred");
        assert_eq!(q.join().unwrap(), "fast");
        // The taken running task is the caller's to cancel (a shutdown).
        p.cancel();
        assert!(p.join().unwrap_err().is_cancelled());
        assert_eq!(o.get().unwrap().unwrap(), "slower");
        assert!(o.take().is_none());
    });
}

#[test]
fn get_waits_for_one_to_finish() {
    run((), |()| {
        let o = Orphans::new();
        spawn_orphan(&o, || {
            for _ in 0..50 {
                yield_now();
            }
            "slow"
        });
        spawn_orphan(&o, || {
            for _ in 0..5 {
                yield_now();
            }
            "fast"
        });
        assert_eq!(o.get().unwrap().unwrap(), "fast");
        assert_eq!(o.len(), 1);
        assert_eq!(o.get().unwrap().unwrap(), "slow");
        assert!(o.get().is_none());
    });
}

#[test]
fn spawning_into_another_tasks_orphans_is_refused_at_the_call() {
    let msg = run((), |()| {
        let o: Orphans<()> = Orphans::new();
        let o2 = o.clone();
        let intruder = mkernel::spawn(move || {
            // site-of: intruder
            spawn_orphan(&o2, || ());
        });
        let err = intruder.join().unwrap_err();
        assert!(o.is_empty(), "nothing was spawned");
        err.panic_message().unwrap().to_string()
    });
    assert!(msg.contains("these orphans belong to task 1"), "{msg}");
    assert!(msg.contains("spawn_orphan from task 2"), "{msg}");
    assert!(
        msg.contains("tasks_orphans.rs"),
        "names the intruder's spawn site: {msg}"
    );
}

#[test]
fn orphans_made_outside_a_run_belong_to_the_first_task_that_spawns_into_them() {
    let o: Orphans<u32> = Orphans::new();
    let got = run((), move |()| {
        spawn_orphan(&o, || 1);
        let o2 = o.clone();
        let other = mkernel::spawn(move || spawn_orphan(&o2, || 2));
        assert!(other.join().is_err(), "task 2 is not the owner");
        o.get().unwrap().unwrap()
    });
    assert_eq!(got, 1);
}

#[test]
fn get_reports_failures() {
    run((), |()| {
        let o: Orphans<()> = Orphans::new();
        spawn_orphan(&o, || panic!("orphan failed"));
        let r = o.get().expect("one task");
        assert_eq!(r.unwrap_err().panic_message(), Some("orphan failed"));
        assert!(o.get().is_none());
    });
}

#[test]
fn forgetting_orphans_is_still_has_children() {
    let r = std::panic::catch_unwind(|| {
        run((), |()| {
            let o = Orphans::new();
            spawn_orphan(&o, || ());
            yield_now();
            std::mem::forget(o);
        })
    });
    let p = r.unwrap_err();
    assert_eq!(
        p.downcast_ref::<mkernel::Violation>(),
        Some(&mkernel::Violation::StillHasChildren)
    );
}

//! Cancellation (rules 3 and 4), failures (rule 5), `join_first`/`join_any`.
//! Destructors are observed with drop counters, checked right when `cancel`
//! returns.

use mkernel::sync::Mutex;
use mkernel::{
    Builder, Error, Events, Signal, Syscall, SyscallId, join_all, join_any, join_first, run, spawn,
    suspend, yield_now,
};
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

/// Counts its drops in a shared cell.
struct D(Rc<Cell<u32>>);
impl Drop for D {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

fn counter() -> Rc<Cell<u32>> {
    Rc::new(Cell::new(0))
}

#[test]
fn cancel_a_started_runnable_task_unwinds_it_at_its_yield() {
    run((), |()| {
        let drops = counter();
        let after = Rc::new(Cell::new(false));
        let (d, a) = (drops.clone(), after.clone());
        let p = spawn(move || {
            let _d = D(d);
            yield_now();
            a.set(true); // never reached
            loop {
                yield_now()
            }
        });
        yield_now(); // the child starts and yields: started, runnable
        assert_eq!(p.stats().runs, 1);
        assert_eq!(drops.get(), 0);
        p.cancel();
        assert_eq!(drops.get(), 1, "destructor ran when cancel returned");
        assert!(p.is_finished());
        assert!(!after.get(), "no code after the suspension point ran");
        assert!(matches!(p.join(), Err(Error::Cancelled)));
        assert_eq!(drops.get(), 1, "destructor ran exactly once");
        assert_eq!(mkernel::stats().stacks.in_use, 1, "its stack went back");
    });
}

#[test]
fn cancel_a_queued_task_drops_its_closure_without_running_it() {
    run((), |()| {
        let drops = counter();
        let ran = Rc::new(Cell::new(false));
        let (d, r) = (D(drops.clone()), ran.clone());
        let p = spawn(move || {
            let _d = d;
            r.set(true);
        });
        p.cancel();
        assert_eq!(drops.get(), 1, "the unstarted closure was dropped");
        assert!(matches!(p.join(), Err(Error::Cancelled)));
        yield_now();
        assert!(!ran.get(), "a cancelled task never starts");
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn cancel_a_finished_task_replaces_its_result() {
    run((), |()| {
        let drops = counter();
        let d = drops.clone();
        let p = spawn(move || D(d));
        yield_now();
        assert!(p.is_finished());
        assert_eq!(drops.get(), 0, "the result is kept for join");
        p.cancel();
        assert_eq!(drops.get(), 1, "the result was dropped by cancel");
        assert!(matches!(p.join(), Err(Error::Cancelled)));
        assert_eq!(drops.get(), 1);
    });
}

#[test]
fn cancel_a_task_waiting_on_a_join_cancels_its_child_too() {
    run((), |()| {
        let drops = counter();
        let grandchild_after = Rc::new(Cell::new(false));
        let (d, ga) = (drops.clone(), grandchild_after.clone());
        let p = spawn(move || {
            let _d = D(d.clone());
            let gd = D(d);
            let g = spawn(move || {
                let _d = gd;
                loop {
                    yield_now();
                    ga.set(true);
                }
            });
            g.join().unwrap(); // suspended here
            unreachable!()
        });
        yield_now(); // child starts, spawns, suspends on the join
        yield_now(); // the grandchild starts and yields
        assert!(grandchild_after.get() || mkernel::stats().stacks.in_use == 3);
        grandchild_after.set(false);
        p.cancel();
        assert_eq!(drops.get(), 2, "child and grandchild unwound");
        assert!(!grandchild_after.get());
        assert!(matches!(p.join(), Err(Error::Cancelled)));
        assert_eq!(mkernel::stats().live_tasks, 1);
        assert_eq!(mkernel::stats().stacks.in_use, 1);
    });
}

#[test]
fn cancel_a_task_waiting_on_a_mutex() {
    run((), |()| {
        let m = Rc::new(Mutex::new(0u32));
        let drops = counter();
        let guard = m.lock();
        let (m2, d) = (m.clone(), drops.clone());
        let p = spawn(move || {
            let _d = D(d);
            let mut g = m2.lock(); // suspended here
            *g += 100;
        });
        let m3 = m.clone();
        let q = spawn(move || {
            *m3.lock() += 1;
        });
        yield_now();
        assert!(!p.is_finished());
        p.cancel();
        assert_eq!(drops.get(), 1);
        drop(guard);
        q.join().unwrap();
        assert_eq!(*m.lock(), 1, "the cancelled waiter never got the lock");
        assert!(matches!(p.join(), Err(Error::Cancelled)));
    });
}

/// An event source that never signals but records what it is told.
struct Recorder(Rc<RefCell<Vec<SyscallId>>>);
impl Events for Recorder {
    fn select(&mut self, _block: bool, cancelled: &[SyscallId]) -> Vec<Signal> {
        self.0.borrow_mut().extend_from_slice(cancelled);
        Vec::new()
    }
}

#[test]
fn cancel_a_task_suspended_on_a_syscall_withdraws_it() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = seen.clone();
    Builder::new()
        .events(Recorder(seen.clone()))
        .run((), move |()| {
            let drops = counter();
            let d = drops.clone();
            let sc = Syscall::new();
            let id = sc.id();
            let registered = Rc::new(Cell::new(false));
            let r = registered.clone();
            let p = spawn(move || {
                let _d = D(d);
                suspend(&sc, || r.set(true));
                unreachable!("never signalled")
            });
            yield_now();
            assert!(registered.get());
            p.cancel();
            assert_eq!(drops.get(), 1);
            assert!(matches!(p.join(), Err(Error::Cancelled)));
            yield_now(); // a scheduling point: select is told
            assert_eq!(*s2.borrow(), [id]);
        });
    assert_eq!(seen.borrow().len(), 1, "reported exactly once");
}

#[test]
fn cancel_reaches_every_descendant_before_it_returns() {
    run((), |()| {
        let drops = counter();
        let started = counter();
        fn tree(depth: u32, drops: Rc<Cell<u32>>, started: Rc<Cell<u32>>) {
            let _d = D(drops.clone());
            started.set(started.get() + 1);
            // Never joined: the loop below ends only by cancellation.
            let _ps: Vec<_> = if depth > 0 {
                (0..2)
                    .map(|_| {
                        let (d, s) = (drops.clone(), started.clone());
                        spawn(move || tree(depth - 1, d, s))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            loop {
                yield_now();
            }
        }
        let (d, s) = (drops.clone(), started.clone());
        let p = spawn(move || tree(3, d, s));
        while started.get() < 15 {
            yield_now();
        }
        assert_eq!(mkernel::stats().stacks.in_use, 16);
        p.cancel();
        assert_eq!(drops.get(), 15, "all 15 tasks of the tree unwound");
        assert_eq!(mkernel::stats().stacks.in_use, 1);
        assert_eq!(mkernel::stats().live_tasks, 2, "main and p's record");
        assert!(matches!(p.join(), Err(Error::Cancelled)));
        assert_eq!(mkernel::stats().live_tasks, 1);
    });
}

#[test]
fn cancel_a_task_whose_children_are_queued_and_finished() {
    run((), |()| {
        let drops = counter();
        let d = drops.clone();
        let p = spawn(move || {
            let _finished = spawn({
                let d = D(d.clone());
                move || d
            });
            yield_now(); // `finished` runs to completion
            let _queued = spawn({
                let d = D(d.clone());
                move || drop(d)
            });
            let _k = D(d);
            loop {
                yield_now()
            }
        });
        yield_now();
        yield_now();
        p.cancel();
        assert_eq!(
            drops.get(),
            3,
            "the finished result, the queued closure, p's local"
        );
        let _ = p.join();
    });
}

#[test]
fn a_cancelled_promise_may_be_dropped_unjoined() {
    let v = run((), |()| {
        let p = spawn(|| {
            loop {
                yield_now()
            }
        });
        yield_now();
        p.cancel();
        drop(p);
        mkernel::stats().live_tasks
    });
    assert_eq!(v, 1);
}

#[test]
fn cancelling_twice_is_harmless() {
    run((), |()| {
        let drops = counter();
        let d = D(drops.clone());
        let p = spawn(move || {
            let _d = d;
            loop {
                yield_now()
            }
        });
        yield_now();
        p.cancel();
        p.cancel();
        assert_eq!(drops.get(), 1);
        assert!(matches!(p.join(), Err(Error::Cancelled)));
    });
}

#[test]
fn a_panic_is_caught_and_the_run_goes_on() {
    let v = run((), |()| {
        let ok = spawn(|| {
            for _ in 0..5 {
                yield_now();
            }
            1
        });
        let bad = spawn(|| -> i32 {
            yield_now();
            panic!("boom {}", 42)
        });
        let r = bad.join();
        match &r {
            Err(e @ Error::Panicked(_)) => {
                assert_eq!(e.panic_message(), Some("boom 42"));
                assert_eq!(e.to_string(), "the task panicked: boom 42");
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
        let custom = spawn(|| -> i32 { std::panic::panic_any(7u64) });
        match custom.join() {
            Err(Error::Panicked(p)) => assert_eq!(p.downcast_ref::<u64>(), Some(&7)),
            other => panic!("expected Panicked, got {other:?}"),
        }
        ok.join().unwrap() + 1
    });
    assert_eq!(v, 2);
}

#[test]
fn a_failed_task_has_its_children_cancelled_first() {
    run((), |()| {
        let drops = counter();
        let d = drops.clone();
        let p = spawn(move || {
            let d2 = d.clone();
            let _child = spawn(move || {
                let _d = D(d2);
                loop {
                    yield_now()
                }
            });
            yield_now();
            panic!("parent fails");
        });
        let r = p.join();
        assert_eq!(r.unwrap_err().panic_message(), Some("parent fails"));
        assert_eq!(drops.get(), 1, "the child was unwound");
        assert_eq!(mkernel::stats().stacks.in_use, 1);
    });
}

#[test]
fn a_panic_of_main_propagates_with_its_payload_unchanged() {
    #[derive(Debug, PartialEq)]
    struct Payload(u32, &'static str);
    let drops = counter();
    let d = drops.clone();
    let r = catch_unwind(AssertUnwindSafe(|| {
        run((), move |()| {
            let d2 = d.clone();
            let _p = spawn(move || {
                let _d = D(d2);
                loop {
                    yield_now()
                }
            });
            yield_now();
            std::panic::panic_any(Payload(7, "main"));
        })
    }));
    let payload = r.unwrap_err();
    assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(7, "main")));
    assert_eq!(drops.get(), 1, "the other tasks were unwound");
    // And the thread can run again.
    assert_eq!(run((), |()| spawn(|| 5).join().unwrap()), 5);
}

#[test]
fn join_first_cancels_the_losers_before_returning() {
    run((), |()| {
        let drops = counter();
        let mk = |n: u32| {
            let d = D(drops.clone());
            spawn(move || {
                let _d = d;
                for _ in 0..n {
                    yield_now();
                }
                n
            })
        };
        let ps = vec![mk(1000), mk(3), mk(1000), mk(2000)];
        let r = join_first(ps);
        assert_eq!(r.unwrap(), 3);
        assert_eq!(drops.get(), 4, "winner finished, 3 losers unwound");
        assert_eq!(mkernel::stats().stacks.in_use, 1);
        assert_eq!(mkernel::stats().live_tasks, 1);
    });
}

#[test]
fn join_first_returns_a_failure_when_it_comes_first() {
    run((), |()| {
        let slow = spawn(|| {
            loop {
                yield_now()
            }
        });
        let bad = spawn(|| -> () { panic!("first") });
        let r = join_first(vec![slow, bad]);
        assert_eq!(r.unwrap_err().panic_message(), Some("first"));
    });
}

#[test]
fn join_any_leaves_the_rest_joinable() {
    run((), |()| {
        let ps: Vec<_> = (0..4u32)
            .map(|i| {
                spawn(move || {
                    for _ in 0..(i * 10) {
                        yield_now();
                    }
                    i
                })
            })
            .collect();
        let (r, rest) = join_any(ps);
        assert_eq!(r.unwrap(), 0);
        assert_eq!(rest.len(), 3);
        assert!(
            rest.iter().all(|p| !p.is_finished()),
            "nothing was cancelled"
        );
        let mut got: Vec<u32> = join_all(rest).into_iter().map(Result::unwrap).collect();
        got.sort();
        assert_eq!(got, [1, 2, 3]);
    });
}

#[test]
fn join_any_in_a_loop_collects_everything() {
    let total = run((), |()| {
        let mut ps: Vec<_> = (1..=20u32)
            .map(|i| {
                spawn(move || {
                    for _ in 0..(i % 5) {
                        yield_now();
                    }
                    i
                })
            })
            .collect();
        let mut total = 0;
        while !ps.is_empty() {
            let (r, rest) = join_any(ps);
            total += r.unwrap();
            ps = rest;
        }
        total
    });
    assert_eq!(total, 210);
}

#[test]
fn cancelling_a_parent_preempted_inside_spawn_frees_the_child() {
    // quanta(1): `spawn` yields before returning the promise; a cancel at
    // that point must still free the child's record (it once leaked).
    Builder::new().quanta(1).run((), |()| {
        let drops = counter();
        let d = D(drops.clone());
        let p = spawn(move || {
            let _c = spawn(move || drop(d));
            unreachable!("cancelled while spawning");
        });
        // main was rotated by its own spawn; p ran and was rotated in its spawn.
        p.cancel();
        assert_eq!(drops.get(), 1);
        let _ = p.join();
        assert_eq!(mkernel::stats().live_tasks, 1, "no record leaked");
        assert_eq!(mkernel::stats().stacks.in_use, 1);
    });
}

#[test]
fn join_unwrap_resumes_the_childs_own_panic_payload() {
    #[derive(Debug, PartialEq)]
    struct Payload(u32);
    let r = std::panic::catch_unwind(|| {
        mkernel::run((), |()| {
            mkernel::spawn(|| -> u8 { std::panic::panic_any(Payload(9)) }).join_unwrap()
        })
    });
    let p = r.unwrap_err();
    assert_eq!(
        p.downcast_ref::<Payload>(),
        Some(&Payload(9)),
        "not wrapped in Error"
    );
    let v = mkernel::run((), |()| mkernel::spawn(|| 3u8).join_unwrap());
    assert_eq!(v, 3);
}

#[test]
fn join_unwrap_of_a_cancelled_task_panics_saying_so() {
    let r = std::panic::catch_unwind(|| {
        mkernel::run((), |()| {
            let p = mkernel::spawn(|| {
                loop {
                    mkernel::yield_now()
                }
            });
            p.cancel();
            p.join_unwrap()
        })
    });
    let p = r.unwrap_err();
    let msg = p
        .downcast_ref::<String>()
        .map(String::as_str)
        .or(p.downcast_ref::<&str>().copied());
    assert!(msg.unwrap().contains("cancelled"), "{msg:?}");
}

#[test]
fn error_into_panic_gives_the_payload_back() {
    let e = mkernel::run((), |()| {
        mkernel::spawn(|| -> () { std::panic::panic_any(5i64) })
            .join()
            .unwrap_err()
    });
    assert!(e.is_panic() && !e.is_cancelled());
    assert_eq!(e.into_panic().downcast_ref::<i64>(), Some(&5));
    let c = mkernel::run((), |()| {
        let p = mkernel::spawn(|| ());
        p.cancel();
        p.join().unwrap_err()
    });
    assert!(c.is_cancelled());
    assert!(c.try_into_panic().is_err());
}

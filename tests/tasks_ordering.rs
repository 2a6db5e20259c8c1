//! Scheduling order (section 1, "Scheduling"): spawn keeps the parent
//! running, `yield_now` rotates, round-robin, `quanta`, `seed`, stats and the
//! fairness bound, independent runs on several threads.

use mkernel::{Builder, join_all, join_any, run, spawn, yield_now};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(l: &Log, s: impl Into<String>) {
    l.borrow_mut().push(s.into());
}

/// Miou's ordering test: main spawns a child that logs "Hello", yields
/// first if `yield_first`, logs "World", joins; the order of the two lines.
fn hello_world(builder: Builder, yield_first: bool) -> Vec<String> {
    builder.run((), move |()| {
        let l = log();
        let l2 = l.clone();
        let p = spawn(move || push(&l2, "Hello"));
        if yield_first {
            yield_now();
        }
        push(&l, "World");
        p.join().unwrap();
        l.take()
    })
}

#[test]
fn spawn_keeps_the_parent_running_world_then_hello() {
    assert_eq!(hello_world(Builder::new(), false), ["World", "Hello"]);
}

#[test]
fn yield_lets_the_child_run_first_hello_then_world() {
    assert_eq!(hello_world(Builder::new(), true), ["Hello", "World"]);
}

#[test]
fn quanta_one_makes_spawn_rotate_the_parent() {
    assert_eq!(
        hello_world(Builder::new().quanta(1), false),
        ["Hello", "World"]
    );
}

#[test]
fn default_quanta_does_not_rotate_after_many_spawns() {
    // Without a quanta, 100 spawns in a row never give the CPU away.
    let out = run((), |()| {
        let l = log();
        let ps: Vec<_> = (0..100)
            .map(|i| {
                let l = l.clone();
                spawn(move || push(&l, format!("c{i}")))
            })
            .collect();
        push(&l, "parent");
        join_all(ps);
        l.take()
    });
    assert_eq!(out[0], "parent");
    let children: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    assert_eq!(&out[1..], &children[..], "children run in spawn order");
}

#[test]
fn round_robin_over_yielding_tasks() {
    let out = run((), |()| {
        let l = log();
        let ps: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let l = l.clone();
                spawn(move || {
                    for i in 0..3 {
                        push(&l, format!("{name}{i}"));
                        yield_now();
                    }
                })
            })
            .collect();
        join_all(ps);
        l.take()
    });
    assert_eq!(
        out,
        ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"],
        "yield puts a task at the back of the queue"
    );
}

#[test]
fn run_returns_the_value_of_main_and_join_all_keeps_order() {
    let v = run((), |()| {
        let ps: Vec<_> = (0..10u64)
            .map(|i| {
                spawn(move || {
                    for _ in 0..(10 - i) {
                        yield_now();
                    }
                    i * 3
                })
            })
            .collect();
        join_all(ps)
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    assert_eq!(v, (0..10u64).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn both_joins_two_types() {
    let (a, b) = run((), |()| {
        let a = spawn(|| {
            yield_now();
            7u8
        });
        let b = spawn(|| String::from("x"));
        mkernel::both(a, b)
    });
    assert_eq!(a.unwrap(), 7);
    assert_eq!(b.unwrap(), "x");
}

#[test]
fn runs_on_different_threads_are_independent() {
    let hs: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                run((), move |()| {
                    let ps: Vec<_> = (0..50u64)
                        .map(|i| {
                            spawn(move || {
                                yield_now();
                                i + t * 1000
                            })
                        })
                        .collect();
                    let sum: u64 = join_all(ps).into_iter().map(Result::unwrap).sum();
                    (sum, mkernel::stats().spawned)
                })
            })
        })
        .collect();
    for (t, h) in hs.into_iter().enumerate() {
        let (sum, spawned) = h.join().unwrap();
        assert_eq!(sum, (0..50).sum::<u64>() + 50 * 1000 * t as u64);
        assert_eq!(spawned, 51, "each run counts only its own tasks");
    }
}

#[test]
fn a_new_run_starts_on_the_same_thread_after_one_ends() {
    for i in 0..3 {
        let v = run((), move |()| {
            let p = spawn(move || i);
            p.join().unwrap() + mkernel::stats().spawned as i32
        });
        assert_eq!(v, i + 2);
    }
}

#[test]
#[should_panic(expected = "inside a run")]
fn run_inside_a_run_is_refused() {
    run((), |()| run((), |()| ()));
}

#[test]
#[should_panic(expected = "must be called from a task")]
fn spawn_outside_a_run_is_refused() {
    let _p = spawn(|| ());
}

/// The result of `join_any` among 8 tasks finished at the same time, for a seed.
fn pick(seed: u64) -> (usize, Vec<usize>) {
    Builder::new().seed(seed).run((), |()| {
        let ps: Vec<_> = (0..8usize).map(|i| spawn(move || i)).collect();
        yield_now(); // every child runs to completion
        assert!(ps.iter().all(|p| p.is_finished()));
        let (r, rest) = join_any(ps);
        let rest: Vec<usize> = join_all(rest).into_iter().map(Result::unwrap).collect();
        (r.unwrap(), rest)
    })
}

#[test]
fn seed_makes_join_any_reproducible() {
    for seed in [0, 1, 42, 0xdead_beef] {
        let first = pick(seed);
        for _ in 0..3 {
            assert_eq!(pick(seed), first, "same seed, same choice");
        }
        let mut all: Vec<usize> = first.1.clone();
        all.push(first.0);
        all.sort();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }
    let picks: std::collections::HashSet<usize> = (0..32).map(|s| pick(s).0).collect();
    assert!(
        picks.len() > 1,
        "the seed must influence the choice among finished tasks: {picks:?}"
    );
}

#[test]
fn join_any_prefers_a_task_that_returned_over_one_that_failed() {
    for seed in 0..16 {
        let v = Builder::new().seed(seed).run((), |()| {
            let mut ps: Vec<_> = (0..5)
                .map(|i| {
                    spawn(move || -> i32 {
                        if i != 3 {
                            panic!("fail {i}")
                        }
                        i
                    })
                })
                .collect();
            yield_now();
            let (r, rest) = join_any(std::mem::take(&mut ps));
            for p in rest {
                assert!(p.join().is_err());
            }
            r.unwrap()
        });
        assert_eq!(v, 3);
    }
}

#[test]
fn stats_count_runs_spawns_and_stacks() {
    run((), |()| {
        let before = mkernel::stats();
        assert_eq!(before.spawned, 1, "the main task counts");
        assert_eq!(before.stacks.in_use, 1);
        let p = spawn(|| {
            for _ in 0..4 {
                yield_now();
            }
            mkernel::task_stats(mkernel::current_task()).unwrap().runs
        });
        assert_eq!(p.stats().runs, 0, "not started yet");
        yield_now();
        assert_eq!(p.stats().runs, 1);
        assert_eq!(mkernel::stats().stacks.in_use, 2);
        assert_eq!(mkernel::stats().live_tasks, 2);
        let id = p.id();
        assert_eq!(mkernel::task_stats(id).unwrap().runs, 1);
        assert_eq!(p.join().unwrap(), 5, "4 yields = 5 runs");
        assert_eq!(mkernel::task_stats(id), None, "joined: record gone");
        let after = mkernel::stats();
        assert_eq!(after.spawned, 2);
        assert_eq!(after.live_tasks, 1);
        assert_eq!(after.stacks.in_use, 1);
        assert!(
            after.switches >= before.switches + 5 + 2,
            "5 runs of the child, 2 of main"
        );
        assert!(after.ticks >= after.switches);
    });
}

#[test]
fn fairness_a_yielding_task_waits_for_at_most_n_minus_one_others() {
    for n in [2u64, 3, 10, 64] {
        run((), move |()| {
            let ps: Vec<_> = (0..n)
                .map(|_| {
                    spawn(|| {
                        for _ in 0..50 {
                            yield_now();
                        }
                    })
                })
                .collect();
            // Main waits on a join: the n children are the only runnable tasks.
            let mut worst = 0;
            for p in &ps {
                // Finished tasks' stats are still readable until joined.
                while !p.is_finished() {
                    yield_now();
                }
            }
            for p in &ps {
                let st = p.stats();
                assert_eq!(st.runs, 51);
                worst = worst.max(st.max_wait_switches);
            }
            // Main yields too, so there are n + 1 runnable tasks here.
            assert!(
                worst <= n,
                "with {} runnable tasks a task waited for {worst} others",
                n + 1
            );
            join_all(ps);
        });
        // Now without main in the rotation: n tasks, at most n - 1 others.
        run((), move |()| {
            let ps: Vec<_> = (0..n)
                .map(|_| {
                    spawn(|| {
                        for _ in 0..50 {
                            yield_now();
                        }
                        mkernel::task_stats(mkernel::current_task()).unwrap()
                    })
                })
                .collect();
            for r in join_all(ps) {
                let st = r.unwrap();
                assert_eq!(st.runs, 51);
                assert!(
                    st.max_wait_switches < n, // at most n - 1 others
                    "with {n} runnable tasks a task waited for {} others",
                    st.max_wait_switches
                );
            }
        });
    }
}

/// `(clock_reads, switches)` over `yields` yields of each of two tasks that
/// compute for `busy` between yields.
fn clock_reads_over(builder: Builder, yields: u32, busy: Duration) -> (u64, u64) {
    builder.run((), move |()| {
        let work = move || {
            for _ in 0..yields {
                let t = std::time::Instant::now();
                while t.elapsed() < busy {}
                yield_now();
            }
        };
        let before = mkernel::stats();
        let p = spawn(work);
        work();
        p.join().unwrap();
        let after = mkernel::stats();
        (
            after.clock_reads - before.clock_reads,
            after.switches - before.switches,
        )
    })
}

#[test]
fn the_clock_is_read_at_least_once_per_n_switches() {
    for n in [1u32, 2, 8] {
        let b = Builder::new().switches_per_clock_read(n);
        let (reads, switches) = clock_reads_over(b, 5_000, Duration::ZERO);
        assert!(switches >= 10_000);
        assert!(
            reads >= switches / n as u64,
            "n = {n}: {reads} clock reads for {switches} switches"
        );
    }
}

#[test]
fn the_clock_is_read_after_every_switch_while_tasks_compute() {
    // 20 µs slices: every window of switches is long, so every switch reads.
    let (reads, switches) = clock_reads_over(Builder::new(), 200, Duration::from_micros(20));
    assert!(switches >= 400);
    assert!(
        reads >= switches,
        "{reads} clock reads for {switches} switches of 20 µs slices"
    );
}

#[test]
fn the_clock_is_read_less_often_while_tasks_only_yield() {
    let (reads, switches) = clock_reads_over(Builder::new(), 20_000, Duration::ZERO);
    assert!(
        reads < switches,
        "{reads} clock reads for {switches} switches of bare yields"
    );
}

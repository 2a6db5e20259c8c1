//! Several cores (`Builder::cores`): `call` and `parallel`, with Miou's
//! rules across cores (only the parent joins or cancels, cancellation is
//! synchronous, a panic stays in its task, a parent ends after its
//! children).

use mkernel::{Builder, Error, Violation};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CHILD: &str = "MKERNEL_TEST_CHILD";

#[test]
fn a_call_runs_on_another_core() {
    let (main, called) = Builder::new().cores(2).run((), |()| {
        let p = mkernel::call(|| (std::thread::current().id(), mkernel::current_core()));
        (
            (std::thread::current().id(), mkernel::current_core()),
            p.join().unwrap(),
        )
    });
    assert_ne!(
        main.0, called.0,
        "the called task ran on the caller's thread"
    );
    assert_eq!((main.1, called.1), (0, 1));
}

#[test]
fn calls_from_every_core_go_elsewhere() {
    // Over 4 cores, from each core in turn: never the caller's own.
    let seen = Builder::new().cores(4).run((), |()| {
        let outer: Vec<_> = (0..12)
            .map(|_| {
                mkernel::call(|| {
                    let me = mkernel::current_core();
                    let inner: Vec<_> = (0..6)
                        .map(|_| mkernel::call(mkernel::current_core))
                        .collect();
                    let inner: Vec<usize> = mkernel::join_all(inner)
                        .into_iter()
                        .map(Result::unwrap)
                        .collect();
                    (me, inner)
                })
            })
            .collect();
        mkernel::join_all(outer)
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let mut used = std::collections::BTreeSet::new();
    for (me, inner) in seen {
        assert_ne!(me, 0, "a call from the first core ran there");
        used.insert(me);
        for c in inner {
            assert_ne!(c, me, "a nested call ran on its caller's core");
            used.insert(c);
        }
    }
    assert_eq!(used.len(), 4, "calls spread over every core: {used:?}");
}

#[test]
fn nested_calls() {
    // Miou's own example: the inner call runs on another core than the
    // outer one, and values come back through both joins.
    let (u, v, sum) = Builder::new().cores(2).run((), |()| {
        let p = mkernel::call(|| {
            let u = mkernel::current_core();
            let q = mkernel::call(|| {
                let r = mkernel::call(|| 3u64);
                (mkernel::current_core(), 2 + r.join().unwrap())
            });
            let (v, x) = q.join().unwrap();
            (u, v, 1 + x)
        });
        p.join().unwrap()
    });
    assert_ne!(u, v);
    assert_eq!(sum, 6);
}

/// Sets its flag when dropped.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sets its flag when dropped, after blocking its thread a while: a
/// `cancel` that returned before the destructor ended would see it unset.
struct SlowDrop(Arc<AtomicBool>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(50));
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn cancelling_a_call_blocked_in_a_sleep_is_synchronous() {
    let start = Instant::now();
    let (dropped_at_cancel, r) = Builder::new().cores(2).run((), |()| {
        let started = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        let (s, d) = (started.clone(), dropped.clone());
        let p = mkernel::call(move || {
            let _guard = SlowDrop(d);
            s.store(true, Ordering::SeqCst);
            mkernel::sleep(Duration::from_secs(600));
        });
        while !started.load(Ordering::SeqCst) {
            mkernel::sleep(Duration::from_millis(1));
        }
        // Let it reach its sleep.
        mkernel::sleep(Duration::from_millis(20));
        p.cancel();
        let at_cancel = dropped.load(Ordering::SeqCst);
        (at_cancel, p.join())
    });
    assert!(
        dropped_at_cancel,
        "the called task's destructors had not run when cancel returned"
    );
    assert!(matches!(r, Err(Error::Cancelled)));
    // Its sleep was withdrawn: the run did not wait for it.
    assert!(start.elapsed() < Duration::from_secs(300));
}

#[test]
fn cancelling_a_call_cancels_its_descendants_on_every_core() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let (at_cancel, r) = Builder::new().cores(3).run((), move |()| {
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let d2 = d.clone();
        let p = mkernel::call(move || {
            let _g = SetOnDropCount(d2.clone());
            s.fetch_add(1, Ordering::SeqCst);
            // A local child and a call further on, both asleep.
            let (s1, d1) = (s.clone(), d2.clone());
            let local = mkernel::spawn(move || {
                let _g = SetOnDropCount(d1);
                s1.fetch_add(1, Ordering::SeqCst);
                mkernel::sleep(Duration::from_secs(600));
            });
            let (s2, d3) = (s.clone(), d2.clone());
            let remote = mkernel::call(move || {
                let _g = SetOnDropCount(d3);
                s2.fetch_add(1, Ordering::SeqCst);
                mkernel::sleep(Duration::from_secs(600));
            });
            local.join().unwrap();
            remote.join().unwrap();
        });
        while started.load(Ordering::SeqCst) < 3 {
            mkernel::sleep(Duration::from_millis(1));
        }
        mkernel::sleep(Duration::from_millis(20));
        p.cancel();
        (d.load(Ordering::SeqCst), p.join())
    });
    assert_eq!(
        at_cancel, 3,
        "not every destructor had run when cancel returned"
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 3);
    assert!(matches!(r, Err(Error::Cancelled)));
}

/// Counts its drop.
struct SetOnDropCount(Arc<AtomicUsize>);

impl Drop for SetOnDropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn cancelling_a_call_that_never_started_drops_its_closure() {
    let dropped = Builder::new().cores(2).run((), |()| {
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = SetOnDrop(dropped.clone());
        let p = mkernel::call(move || {
            let _g = guard;
        });
        // Cancelled at once: whether it started or not, it has ended.
        p.cancel();
        dropped.load(Ordering::SeqCst)
    });
    assert!(dropped);
}

#[test]
fn a_panicking_call() {
    let (r, after) = Builder::new().cores(2).run((), |()| {
        let p = mkernel::call(|| -> u32 { std::panic::panic_any(7u64) });
        let r = p.join();
        // The run goes on, and the other core too.
        let q = mkernel::call(|| 5u32);
        (r, q.join().unwrap())
    });
    match r {
        Err(Error::Panicked(payload)) => assert_eq!(payload.downcast_ref::<u64>(), Some(&7)),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(after, 5);
}

#[test]
fn a_panicking_call_cancels_its_children_first() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let r = Builder::new().cores(2).run((), move |()| {
        let p = mkernel::call(move || -> () {
            let d1 = d.clone();
            let child = mkernel::spawn(move || {
                let _g = SetOnDropCount(d1);
                mkernel::sleep(Duration::from_secs(600));
            });
            mkernel::sleep(Duration::from_millis(5));
            let _keep = child;
            panic!("boom");
        });
        p.join()
    });
    assert!(matches!(r, Err(Error::Panicked(_))));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn parallel_over_1000_items() {
    let (results, mine) = Builder::new().cores(2).run((), |()| {
        let r = mkernel::parallel(
            |i: u64| {
                // A little work, so that both cores take part.
                let mut x = i;
                for _ in 0..1000 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                (i * 2, mkernel::current_core(), x)
            },
            (0..1000).collect(),
        );
        (r, mkernel::current_core())
    });
    assert_eq!(results.len(), 1000);
    let mut per_core = [0usize; 2];
    for (i, r) in results.into_iter().enumerate() {
        let (v, core, _) = r.unwrap();
        assert_eq!(v, 2 * i as u64, "results come in the items' order");
        per_core[core] += 1;
    }
    assert_eq!(mine, 0);
    assert_eq!(per_core, [500, 500], "items are spread over both cores");
}

/// Every other core's items are posted before the caller's core runs its
/// own share: with a quanta of 1, a spawn yields, and a local item that
/// ran early would hold back the posting of the rest.
#[test]
fn parallel_posts_the_other_cores_items_before_running_its_own() {
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let gave_up = Arc::new(AtomicBool::new(false));
    let results = Builder::new().cores(2).quanta(1).run((), move |()| {
        mkernel::parallel(
            move |i: usize| {
                if i % 2 == 1 {
                    s.fetch_add(1, Ordering::SeqCst);
                    return true;
                }
                // A local item: every remote one must be under way, or
                // about to be, without this core posting anything more.
                let deadline = Instant::now() + Duration::from_secs(5);
                while s.load(Ordering::SeqCst) < 32 {
                    if gave_up.load(Ordering::SeqCst) || Instant::now() > deadline {
                        gave_up.store(true, Ordering::SeqCst);
                        return false;
                    }
                    std::hint::spin_loop();
                }
                true
            },
            (0..64).collect(),
        )
    });
    assert!(
        results.into_iter().all(|r| r.unwrap()),
        "a local item ran before the other core had all its items"
    );
    assert_eq!(started.load(Ordering::SeqCst), 32);
}

#[test]
fn parallel_keeps_each_items_panic() {
    let r = Builder::new().cores(2).run((), |()| {
        mkernel::parallel(
            |i: u32| {
                if i % 3 == 0 {
                    panic!("item {i}");
                }
                i
            },
            (0..9).collect(),
        )
    });
    for (i, r) in r.into_iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(v as usize, i),
            Err(Error::Panicked(_)) => assert_eq!(i % 3, 0),
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn with_one_core_call_runs_on_it() {
    // The documented difference (as Solo5): `call` is a `spawn`.
    let (a, b) = mkernel::run((), |()| {
        let p = mkernel::call(|| std::thread::current().id());
        (std::thread::current().id(), p.join().unwrap())
    });
    assert_eq!(a, b);
    let r = mkernel::run((), |()| mkernel::parallel(|x: u8| x + 1, vec![1, 2]));
    assert_eq!(
        r.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        [2, 3]
    );
}

#[test]
fn cores_and_a_custom_event_source_do_not_mix() {
    struct Nothing;
    impl mkernel::Events for Nothing {
        fn select(&mut self, _: bool, _: &[mkernel::SyscallId]) -> Vec<mkernel::Signal> {
            Vec::new()
        }
    }
    let e = Builder::new()
        .cores(2)
        .events(Nothing)
        .try_run((), |()| ())
        .unwrap_err();
    assert_eq!(e.kind(), mkernel::devices::DeviceErrorKind::Platform);
    assert!(e.to_string().contains("Builder::events"), "{e}");
}

#[test]
fn a_called_task_returning_with_a_child_stops_the_run() {
    let r = catch_unwind(AssertUnwindSafe(|| {
        Builder::new().cores(2).run((), |()| {
            let p = mkernel::call(|| {
                let _forgotten = mkernel::spawn(|| ());
            });
            let _ = p.join();
            mkernel::sleep(Duration::from_secs(600));
        })
    }));
    let payload = r.expect_err("the run must stop");
    assert_eq!(
        payload.downcast_ref::<Violation>(),
        Some(&Violation::StillHasChildren)
    );
}

/// Re-runs this test binary for test `name` only, with `CHILD=name`;
/// returns (success, stderr).
fn in_child(name: &str) -> (bool, String) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of this file that holds `marker`.
fn line_of(marker: &str) -> usize {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tasks_cores.rs"))
        .unwrap();
    1 + src
        .lines()
        .position(|l| l.contains(marker) && !l.contains("line_of"))
        .unwrap()
}

#[test]
fn main_returning_with_an_unjoined_call_names_its_site() {
    if std::env::var(CHILD).as_deref() == Ok("main_returning_with_an_unjoined_call_names_its_site")
    {
        let r = catch_unwind(|| {
            Builder::new().cores(2).run((), |()| {
                let _p = mkernel::call(|| 1); // site-of: unjoined-call
            })
        });
        let payload = r.expect_err("the run must stop");
        assert_eq!(
            payload.downcast_ref::<Violation>(),
            Some(&Violation::StillHasChildren)
        );
        return;
    }
    let (ok, stderr) = in_child("main_returning_with_an_unjoined_call_names_its_site");
    assert!(ok, "{stderr}");
    let site = format!("tests/tasks_cores.rs:{}", line_of("site-of: unjoined-call"));
    assert!(stderr.contains("StillHasChildren"), "{stderr}");
    assert!(
        stderr.contains(&site),
        "the message does not name {site}: {stderr}"
    );
}

#[test]
fn orphans_collect_calls() {
    // A server's pattern: hand each request's CPU work to another core,
    // reap what finished from time to time, wait for the rest at the end.
    let (served, cores) = Builder::new().cores(2).run((), |()| {
        let orphans = mkernel::Orphans::new();
        let mut served = Vec::new();
        for request in 0..50u64 {
            while let Some(Some(p)) = orphans.care() {
                served.push(p.join().unwrap());
            }
            mkernel::call_orphan(&orphans, move || (request, mkernel::current_core()));
            mkernel::yield_now();
        }
        while let Some(r) = orphans.get() {
            served.push(r.unwrap());
        }
        served.sort();
        let cores: Vec<usize> = served.iter().map(|&(_, c)| c).collect();
        (
            served.into_iter().map(|(r, _)| r).collect::<Vec<_>>(),
            cores,
        )
    });
    assert_eq!(served, (0..50).collect::<Vec<_>>());
    assert!(cores.iter().all(|&c| c == 1), "calls ran on the other core");
}

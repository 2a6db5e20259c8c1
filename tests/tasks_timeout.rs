//! `mkernel::timeout` (any blocking code, bounded from outside) and
//! `sync::Condition::wait_timeout`. Times are measured with
//! `mkernel::clock_monotonic()`: a bound never ends early, and ends within
//! 10 % (at least 50 ms) after its time.

use mkernel::sync::{Condition, Mutex};
use mkernel::testing::VirtualClock;
use mkernel::{Elapsed, run, spawn};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

fn since(t0: u64) -> Duration {
    Duration::from_nanos(mkernel::clock_monotonic() - t0)
}

fn assert_near(what: &str, took: Duration, bound: Duration) {
    eprintln!("{what}: {took:?} (bound {bound:?})");
    assert!(took >= bound, "{what}: {took:?} < {bound:?}");
    let slack = (bound / 10).max(Duration::from_millis(50));
    assert!(
        took <= bound + slack,
        "{what}: {took:?} > {bound:?} + {slack:?}"
    );
}

/// Sets its flag when dropped.
struct Flag(Rc<Cell<bool>>);
impl Drop for Flag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A sleep longer than the bound: `Err(Elapsed)` after the bound, and the
/// child's destructors (its own and its children's: rule 3) have run when
/// `timeout` returns.
#[test]
fn timeout_on_a_longer_sleep_is_elapsed_and_the_child_is_unwound() {
    run((), |()| {
        let mine = Rc::new(Cell::new(false));
        let grandchild = Rc::new(Cell::new(false));
        let (m, g) = (mine.clone(), grandchild.clone());
        let bound = Duration::from_millis(200);
        let t0 = mkernel::clock_monotonic();
        let r = mkernel::timeout(bound, move || {
            let _flag = Flag(m);
            let inner = spawn(move || {
                let _flag = Flag(g);
                mkernel::sleep(Duration::from_secs(3600));
            });
            inner.join().unwrap();
            "never"
        });
        let took = since(t0);
        assert_eq!(r, Err(Elapsed));
        assert!(mine.get(), "the child's destructor ran");
        assert!(grandchild.get(), "the grandchild's destructor ran");
        assert_near("timeout on a 1 h sleep", took, bound);
        let e: std::io::Error = Elapsed.into();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    });
}

/// Work that ends in time gives its value at once (not after the bound);
/// the timer task is cancelled.
#[test]
fn timeout_gives_the_value_of_work_done_in_time() {
    run((), |()| {
        let t0 = mkernel::clock_monotonic();
        let v = mkernel::timeout(Duration::from_secs(10), || {
            mkernel::sleep(Duration::from_millis(20));
            vec![1, 2, 3]
        });
        assert_eq!(v, Ok(vec![1, 2, 3]));
        let took = since(t0);
        assert!(took < Duration::from_millis(500), "{took:?}");
        // Many in a row: no timer or task is left behind.
        for i in 0..100 {
            assert_eq!(mkernel::timeout(Duration::from_secs(1), move || i), Ok(i));
        }
        assert_eq!(mkernel::stats().live_tasks, 1, "{:?}", mkernel::stats());
    });
}

/// A panic of the bounded function propagates to the caller, as with
/// `join_unwrap`.
#[test]
#[should_panic(expected = "boom in the bounded function")]
fn timeout_propagates_a_panic() {
    run((), |()| {
        let _ = mkernel::timeout(Duration::from_secs(1), || -> u8 {
            panic!("boom in the bounded function")
        });
    });
}

/// `wait_timeout` with nobody signalling times out after its time; with a
/// signal before it, it wakes at the signal, not timed out.
#[test]
fn condition_wait_timeout_times_out_and_wakes_on_signal() {
    run((), |()| {
        let pair = Rc::new((Mutex::new(0u32), Condition::new()));
        let (m, c) = &*pair;
        let t = Duration::from_millis(150);
        let t0 = mkernel::clock_monotonic();
        let (g, r) = c.wait_timeout(m.lock(), t);
        assert!(r.timed_out());
        assert_eq!(*g, 0);
        drop(g);
        assert_near("wait_timeout, no signal", since(t0), t);

        let p2 = pair.clone();
        let signaller = spawn(move || {
            mkernel::sleep(Duration::from_millis(30));
            *p2.0.lock() = 1;
            p2.1.signal();
        });
        let t0 = mkernel::clock_monotonic();
        let (g, r) = c.wait_timeout(m.lock(), Duration::from_secs(10));
        let took = since(t0);
        assert!(!r.timed_out());
        assert_eq!(*g, 1);
        drop(g);
        assert!(
            took >= Duration::from_millis(30) && took < Duration::from_millis(500),
            "{took:?}"
        );
        signaller.join().unwrap();
        // A broadcast wakes timed waiters too.
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let p = pair.clone();
                spawn(move || {
                    let (g, r) = p.1.wait_timeout(p.0.lock(), Duration::from_secs(10));
                    (*g, r.timed_out())
                })
            })
            .collect();
        mkernel::sleep(Duration::from_millis(10));
        *m.lock() = 2;
        c.broadcast();
        for r in mkernel::join_all(waiters) {
            assert_eq!(r.unwrap(), (2, false));
        }
    });
}

/// A waiter that timed out does not swallow a later signal: it goes to
/// the waiter still waiting. And a waiter cancelled in `wait_timeout`
/// leaves nothing behind: the next signal wakes the other waiter.
#[test]
fn a_timed_out_or_cancelled_waiter_does_not_swallow_signals() {
    run((), |()| {
        let pair = Rc::new((Mutex::new(()), Condition::new()));
        let short = {
            let p = pair.clone();
            spawn(move || p.1.wait_timeout(p.0.lock(), Duration::from_millis(20)).1)
        };
        let long = {
            let p = pair.clone();
            spawn(move || p.1.wait_timeout(p.0.lock(), Duration::from_secs(10)).1)
        };
        mkernel::sleep(Duration::from_millis(100));
        assert!(short.is_finished());
        assert!(short.join().unwrap().timed_out());
        assert!(!long.is_finished());
        let t0 = mkernel::clock_monotonic();
        pair.1.signal();
        assert!(!long.join().unwrap().timed_out());
        assert!(since(t0) < Duration::from_millis(500));

        let doomed = {
            let p = pair.clone();
            spawn(move || {
                let _ = p.1.wait_timeout(p.0.lock(), Duration::from_millis(50));
            })
        };
        let other = {
            let p = pair.clone();
            spawn(move || p.1.wait_timeout(p.0.lock(), Duration::from_secs(10)).1)
        };
        mkernel::yield_now();
        mkernel::yield_now();
        doomed.cancel();
        // The cancelled waiter's timer does not fire into anything later.
        mkernel::sleep(Duration::from_millis(100));
        pair.1.signal();
        assert!(!other.join().unwrap().timed_out());
    });
}

/// On a virtual clock, `wait_timeout` takes virtual time only.
#[test]
fn condition_wait_timeout_on_a_virtual_clock() {
    let clock = VirtualClock::new();
    let t0 = mkernel::clock_monotonic();
    let timed_out = mkernel::Builder::new().events(clock.clone()).run((), |()| {
        let m = Mutex::new(());
        let c = Condition::new();
        let (_g, r) = c.wait_timeout(m.lock(), Duration::from_secs(3600));
        r.timed_out()
    });
    assert!(timed_out);
    assert_eq!(clock.now(), 3_600_000_000_000);
    assert!(since(t0) < Duration::from_secs(5));
}

//! `sync::{Mutex, Condition, Lazy}`: cooperative waiting.

use mkernel::sync::{Condition, Lazy, Mutex};
use mkernel::{Error, join_all, run, spawn, yield_now};
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

#[test]
fn bounded_queue_with_several_producers_and_consumers_sums_exactly() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 500;
    const CONSUMERS: u64 = 5;
    const CAP: usize = 3;
    let (sums, seen) = run((), |()| {
        let q = Rc::new((
            Mutex::new(VecDeque::new()),
            Condition::new(),
            Condition::new(),
        ));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = q.clone();
                spawn(move || {
                    let (m, not_full, not_empty) = &*q;
                    for i in 0..PER_PRODUCER {
                        let mut g = m.lock();
                        while g.len() == CAP {
                            g = not_full.wait(g);
                        }
                        assert!(g.len() < CAP);
                        g.push_back(p * PER_PRODUCER + i);
                        not_empty.signal();
                        drop(g);
                        if i % 7 == 0 {
                            yield_now();
                        }
                    }
                })
            })
            .collect();
        let total = PRODUCERS * PER_PRODUCER;
        let consumers: Vec<_> = (0..CONSUMERS)
            .map(|_| {
                let q = q.clone();
                spawn(move || {
                    let (m, not_full, not_empty) = &*q;
                    let mut got = Vec::new();
                    for _ in 0..total / CONSUMERS {
                        let mut g = m.lock();
                        while g.is_empty() {
                            g = not_empty.wait(g);
                        }
                        got.push(g.pop_front().unwrap());
                        not_full.signal();
                    }
                    got
                })
            })
            .collect();
        join_all(producers).into_iter().for_each(|r| r.unwrap());
        let got: Vec<Vec<u64>> = join_all(consumers)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(q.0.lock().is_empty());
        let sums: Vec<u64> = got.iter().map(|g| g.len() as u64).collect();
        let mut all: Vec<u64> = got.into_iter().flatten().collect();
        all.sort();
        (sums, all)
    });
    let total = PRODUCERS * PER_PRODUCER;
    assert_eq!(sums, vec![total / CONSUMERS; CONSUMERS as usize]);
    assert_eq!(
        seen,
        (0..total).collect::<Vec<_>>(),
        "every item exactly once"
    );
    assert_eq!(seen.iter().sum::<u64>(), total * (total - 1) / 2);
}

#[test]
fn mutex_excludes_across_suspensions_and_is_fifo() {
    let order = run((), |()| {
        let m = Rc::new(Mutex::new(Vec::new()));
        let g = m.lock();
        let ps: Vec<_> = (0..5)
            .map(|i| {
                let m = m.clone();
                spawn(move || {
                    let mut g = m.lock();
                    let len = g.len();
                    yield_now();
                    yield_now();
                    assert_eq!(g.len(), len, "no one else got in");
                    g.push(i);
                })
            })
            .collect();
        yield_now(); // all five queue up, in spawn order
        assert!(m.try_lock().is_none());
        drop(g);
        join_all(ps);
        m.lock().clone()
    });
    assert_eq!(order, [0, 1, 2, 3, 4]);
}

#[test]
fn try_lock_and_into_inner() {
    run((), |()| {
        let m = Mutex::new(3);
        {
            let mut g = m.try_lock().expect("free");
            *g += 1;
            assert!(m.try_lock().is_none());
        }
        assert!(m.try_lock().is_some());
        assert_eq!(m.into_inner(), 4);
    });
}

#[test]
fn cancelling_a_mutex_waiter_passes_the_lock_on() {
    run((), |()| {
        let m = Rc::new(Mutex::new(0));
        let g = m.lock();
        let mk = |v| {
            let m = m.clone();
            spawn(move || *m.lock() += v)
        };
        let (a, b, c) = (mk(1), mk(10), mk(100));
        yield_now(); // all three wait
        drop(g); // `a` is notified, but has not run yet
        a.cancel(); // it passes the notification on
        b.cancel();
        c.join().unwrap();
        assert_eq!(*m.lock(), 100);
        assert!(a.join().is_err() && b.join().is_err());
    });
}

#[test]
fn condition_broadcast_wakes_every_waiter_and_signal_one() {
    run((), |()| {
        let s = Rc::new((Mutex::new(0u32), Condition::new()));
        let woken = Rc::new(Cell::new(0));
        let ps: Vec<_> = (0..10)
            .map(|_| {
                let (s, w) = (s.clone(), woken.clone());
                spawn(move || {
                    let (m, c) = &*s;
                    let mut g = m.lock();
                    let gen0 = *g;
                    while *g == gen0 {
                        g = c.wait(g);
                    }
                    w.set(w.get() + 1);
                })
            })
            .collect();
        yield_now();
        assert_eq!(woken.get(), 0);
        // signal with an unchanged generation: one wakes and waits again.
        s.1.signal();
        for _ in 0..5 {
            yield_now();
        }
        assert_eq!(woken.get(), 0);
        *s.0.lock() += 1;
        s.1.signal();
        for _ in 0..5 {
            yield_now();
        }
        assert_eq!(woken.get(), 1, "signal wakes exactly one");
        s.1.broadcast();
        join_all(ps);
        assert_eq!(woken.get(), 10);
    });
}

#[test]
fn lazy_is_computed_once_and_concurrent_forcers_wait() {
    let (values, inits) = run((), |()| {
        let inits = Rc::new(Cell::new(0));
        let i = inits.clone();
        let lazy = Rc::new(Lazy::new(move || {
            i.set(i.get() + 1);
            for _ in 0..10 {
                yield_now(); // forcers arrive meanwhile
            }
            String::from("value")
        }));
        let ps: Vec<_> = (0..8)
            .map(|_| {
                let l = lazy.clone();
                spawn(move || l.force().clone())
            })
            .collect();
        let here = lazy.force().clone();
        let mut values: Vec<String> = join_all(ps).into_iter().map(Result::unwrap).collect();
        values.push(here);
        assert_eq!(lazy.force(), "value");
        (values, inits.get())
    });
    assert_eq!(inits, 1, "the initialiser ran once");
    assert_eq!(values, vec!["value"; 9]);
}

#[test]
fn lazy_whose_initialiser_failed_fails_for_every_forcer() {
    run((), |()| {
        let lazy = Rc::new(Lazy::new(|| -> u32 {
            yield_now();
            panic!("init failed")
        }));
        let l = lazy.clone();
        let first = spawn(move || *l.force());
        let l = lazy.clone();
        let waiter = spawn(move || *l.force());
        assert_eq!(
            first.join().unwrap_err().panic_message(),
            Some("init failed")
        );
        let e = waiter.join().unwrap_err();
        assert!(matches!(e, Error::Panicked(_)));
        assert!(e.panic_message().unwrap().contains("initialiser failed"));
    });
}

#[test]
fn lazy_whose_forcer_is_cancelled_is_computed_by_a_waiter() {
    // Miou's Lazy: cancellation of the forcer is a failure of the value.
    // Here: the waiter must not hang; it either computes it or panics.
    run((), |()| {
        let lazy = Rc::new(Lazy::new(|| {
            for _ in 0..100 {
                yield_now();
            }
            1
        }));
        let l = lazy.clone();
        let first = spawn(move || *l.force());
        yield_now(); // first starts the initialiser
        let l = lazy.clone();
        let waiter = spawn(move || *l.force());
        yield_now(); // waiter waits
        first.cancel();
        let r = waiter.join();
        assert!(
            r.is_err(),
            "the initialiser was consumed by the cancelled forcer"
        );
    });
}

#[test]
fn an_ivar_wakes_every_waiter_with_the_value_once_set() {
    use mkernel::sync::Ivar;
    let got = mkernel::run((), |()| {
        let v: Ivar<String> = Ivar::new();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let v = v.clone();
                mkernel::spawn(move || v.wait())
            })
            .collect();
        for _ in 0..3 {
            mkernel::yield_now();
        }
        assert!(waiters.iter().all(|p| !p.is_finished()), "they wait");
        assert!(v.try_get().is_none());
        assert!(v.resolve("done".to_string()));
        assert!(!v.cancel(), "only the first outcome counts");
        mkernel::join_all(waiters)
            .into_iter()
            .map(|r| r.unwrap().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(got, vec!["done"; 5]);
}

#[test]
fn an_ivar_can_fail_or_be_cancelled() {
    use mkernel::sync::Ivar;
    mkernel::run((), |()| {
        let f: Ivar<u8> = Ivar::new();
        let w = {
            let f = f.clone();
            mkernel::spawn(move || f.wait())
        };
        mkernel::yield_now();
        f.fail(|| Box::new("resolver gave up"));
        let e = w.join().unwrap().unwrap_err();
        assert_eq!(e.panic_message(), Some("resolver gave up"));
        let c: Ivar<u8> = Ivar::new();
        c.cancel();
        assert!(c.wait().unwrap_err().is_cancelled());
        assert!(c.is_set());
    });
}

#[test]
fn a_full_channel_suspends_the_sender_until_the_receiver_takes_one() {
    use std::cell::RefCell;
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    mkernel::run((), move |()| {
        let (tx, rx) = mkernel::sync::channel::<u32>(2);
        let l2 = l.clone();
        let producer = mkernel::spawn(move || {
            for i in 0..4 {
                tx.send(i).unwrap();
                l2.borrow_mut().push(format!("sent {i}"));
            }
        });
        for _ in 0..5 {
            mkernel::yield_now();
        }
        // Two fit; the third send waits.
        assert_eq!(*l.borrow(), ["sent 0", "sent 1"]);
        assert_eq!(rx.len(), 2);
        assert_eq!(rx.recv().unwrap(), 0);
        l.borrow_mut().push("received 0".into());
        for _ in 0..5 {
            mkernel::yield_now();
        }
        assert_eq!(l.borrow()[2..], ["received 0", "sent 2"]);
        let rest: Vec<u32> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(rest, [1, 2, 3]);
        producer.join().unwrap();
        assert_eq!(
            rx.recv(),
            Err(mkernel::sync::RecvError::Closed),
            "every sender gone"
        );
    });
}

#[test]
fn a_channel_closes_both_ways() {
    use mkernel::sync::{SendError, channel};
    mkernel::run((), |()| {
        let (tx, rx) = channel::<&str>(1);
        tx.send("a").unwrap();
        let blocked = {
            let tx = tx.clone();
            mkernel::spawn(move || tx.send("b"))
        };
        mkernel::yield_now();
        assert!(!blocked.is_finished(), "full: the send waits");
        drop(rx);
        // The waiting sender is woken and gets its value back.
        assert_eq!(blocked.join().unwrap(), Err(SendError::Closed("b")));
        assert!(tx.is_closed());
        assert_eq!(tx.try_send("c"), Err(SendError::Closed("c")));
    });
}

#[test]
fn cancelling_a_task_blocked_in_recv_or_send_unwinds_it() {
    let dropped = Rc::new(Cell::new(0));
    let d = dropped.clone();
    mkernel::run((), move |()| {
        struct Noisy(Rc<Cell<u32>>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let (tx, rx) = mkernel::sync::channel::<u32>(1);
        let (d1, d2) = (d.clone(), d.clone());
        let receiver = mkernel::spawn(move || {
            let _n = Noisy(d1);
            let (_tx2, rx2) = mkernel::sync::channel::<u32>(1);
            rx2.recv()
        });
        tx.send(1).unwrap();
        let sender = mkernel::spawn(move || {
            let _n = Noisy(d2);
            tx.send(2)
        });
        mkernel::yield_now();
        receiver.cancel();
        sender.cancel();
        assert_eq!(d.get(), 2, "both unwound, destructors ran");
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(mkernel::sync::RecvError::Closed));
    });
    assert_eq!(dropped.get(), 2);
}

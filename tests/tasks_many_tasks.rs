//! 100,000 tasks alive at once, all suspended, then all finishing.

use mkernel::sync::{Condition, Mutex};
use mkernel::{join_all, run, spawn, yield_now};
use std::rc::Rc;

const N: usize = 100_000;

/// The two tests map ~25 GB of stack address space each; run them one after
/// the other (in parallel they contend on the address-space lock).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_hundred_thousand_tasks_wait_on_a_condition_then_finish() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sum = run((), |()| {
        let gate = Rc::new((Mutex::new((false, 0usize)), Condition::new()));
        let ps: Vec<_> = (0..N)
            .map(|i| {
                let gate = gate.clone();
                spawn(move || {
                    let (m, c) = &*gate;
                    let mut g = m.lock();
                    g.1 += 1;
                    while !g.0 {
                        g = c.wait(g);
                    }
                    i as u64
                })
            })
            .collect();
        while gate.0.lock().1 < N {
            yield_now();
        }
        let s = mkernel::stats();
        assert_eq!(s.stacks.in_use, N + 1, "all alive at once");
        assert_eq!(s.live_tasks, N + 1);
        assert!(ps.iter().all(|p| !p.is_finished()));
        gate.0.lock().0 = true;
        gate.1.broadcast();
        let sum = join_all(ps).into_iter().map(Result::unwrap).sum::<u64>();
        let s = mkernel::stats();
        assert_eq!(s.stacks.in_use, 1);
        assert_eq!(s.live_tasks, 1);
        sum
    });
    assert_eq!(sum, (N as u64) * (N as u64 - 1) / 2);
}

#[test]
fn a_hundred_thousand_yielding_tasks() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sum = run((), |()| {
        let ps: Vec<_> = (0..N)
            .map(|i| {
                spawn(move || {
                    yield_now();
                    yield_now();
                    i as u64
                })
            })
            .collect();
        yield_now();
        assert_eq!(mkernel::stats().stacks.in_use, N + 1, "all alive at once");
        join_all(ps).into_iter().map(Result::unwrap).sum::<u64>()
    });
    assert_eq!(sum, (N as u64) * (N as u64 - 1) / 2);
}

//! Scenario 2: a task woken every 1 ms by a timer while N tasks compute and
//! yield; how late is it woken?

use crate::common::*;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const PERIOD: Duration = Duration::from_millis(1);

/// Lateness (µs) of every wake-up, and the units the workers did.
pub struct Run {
    pub late_us: Vec<f64>,
    pub units: u64,
}

/// `samples` sleeps of [`PERIOD`] while `n` workers compute; the workers
/// also stop at `hard_ns` after the start, so that a runtime that never
/// wakes the sleeper cannot hang the benchmark.
pub fn run(rt: Rt, n: usize, samples: usize, hard_ns: u64) -> Run {
    match rt {
        Rt::Mkernel => mkernel::run((), move |()| {
            let stop = Rc::new(Cell::new(false));
            let hard = now_ns() + hard_ns;
            let ws: Vec<_> = (0..n)
                .map(|_| {
                    let stop = stop.clone();
                    mkernel::spawn(move || {
                        let mut units = 0u64;
                        while !stop.get() && now_ns() < hard {
                            unit();
                            units += 1;
                            mkernel::yield_now();
                        }
                        units
                    })
                })
                .collect();
            let mut late_us = Vec::with_capacity(samples);
            for _ in 0..samples {
                let t = now_ns();
                mkernel::sleep(PERIOD);
                late_us.push((now_ns() - t) as f64 / 1e3 - PERIOD.as_micros() as f64);
            }
            stop.set(true);
            let units = mkernel::join_all(ws).into_iter().map(|r| r.unwrap()).sum();
            Run { late_us, units }
        }),
        Rt::Tokio => tokio_rt().block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let hard = now_ns() + hard_ns;
            let ws: Vec<_> = (0..n)
                .map(|_| {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        let mut units = 0u64;
                        while !stop.load(Ordering::Relaxed) && now_ns() < hard {
                            unit();
                            units += 1;
                            tokio::task::yield_now().await;
                        }
                        units
                    })
                })
                .collect();
            let mut late_us = Vec::with_capacity(samples);
            for _ in 0..samples {
                let t = now_ns();
                tokio::time::sleep(PERIOD).await;
                late_us.push((now_ns() - t) as f64 / 1e3 - PERIOD.as_micros() as f64);
            }
            stop.store(true, Ordering::Relaxed);
            let mut units = 0;
            for w in ws {
                units += w.await.unwrap();
            }
            Run { late_us, units }
        }),
        Rt::May => may_run(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let hard = now_ns() + hard_ns;
            let ws: Vec<_> = (0..n)
                .map(|_| {
                    let stop = stop.clone();
                    may::go!(move || {
                        let mut units = 0u64;
                        while !stop.load(Ordering::Relaxed) && now_ns() < hard {
                            unit();
                            units += 1;
                            may::coroutine::yield_now();
                        }
                        units
                    })
                })
                .collect();
            let mut late_us = Vec::with_capacity(samples);
            for _ in 0..samples {
                let t = now_ns();
                may::coroutine::sleep(PERIOD);
                late_us.push((now_ns() - t) as f64 / 1e3 - PERIOD.as_micros() as f64);
                if now_ns() >= hard {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            let units = ws.into_iter().map(|h| h.join().unwrap()).sum();
            Run { late_us, units }
        }),
    }
}

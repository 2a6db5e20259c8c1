//! Scenario 4: spawn storms. 100,000 short tasks spawned in bursts of
//! 1,000 (each burst joined before the next) while two steady tasks run:
//! one yields in a loop (its gap between two runs), one ticks every 1 ms
//! on a timer (its wake-up lateness).

use crate::common::*;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const TASKS: usize = 100_000;
pub const BURST: usize = 1_000;
const TICK: Duration = Duration::from_millis(1);

pub struct Run {
    /// Spawned tasks per second (spawn, run, join).
    pub tasks_per_s: f64,
    /// Gaps (µs) between two runs of the yielding task.
    pub gaps_us: Vec<f64>,
    /// Lateness (µs) of the ticking task's wake-ups.
    pub late_us: Vec<f64>,
}

/// The short task: a little arithmetic on its argument.
#[inline(never)]
fn short(i: usize) -> u64 {
    spin(20 + (i % 8) as u64)
}

/// The two steady tasks' loops, shared by the runtimes through closures.
struct Steady {
    last: u64,
    gaps_us: Vec<f64>,
}

impl Steady {
    fn new() -> Steady {
        Steady {
            last: now_ns(),
            gaps_us: Vec::with_capacity(1 << 16),
        }
    }
    #[inline]
    fn tick(&mut self) {
        let t = now_ns();
        self.gaps_us.push((t - self.last) as f64 / 1e3);
        self.last = t;
    }
}

/// `hard_ns`: the steady tasks stop then even if the storm is not over
/// (a runtime that starves the storm cannot hang the benchmark).
pub fn run(rt: Rt, hard_ns: u64) -> Run {
    let late = |t: u64| (now_ns() - t) as f64 / 1e3 - TICK.as_micros() as f64;
    match rt {
        Rt::Mkernel => mkernel::run((), move |()| {
            let stop = Rc::new(Cell::new(false));
            let hard = now_ns() + hard_ns;
            let s = stop.clone();
            let yielder = mkernel::spawn(move || {
                let mut st = Steady::new();
                while !s.get() && now_ns() < hard {
                    mkernel::yield_now();
                    st.tick();
                }
                st.gaps_us
            });
            let s = stop.clone();
            let ticker = mkernel::spawn(move || {
                let mut v = Vec::new();
                while !s.get() && now_ns() < hard {
                    let t = now_ns();
                    mkernel::sleep(TICK);
                    v.push(late(t));
                }
                v
            });
            let t0 = now_ns();
            let mut sum = 0u64;
            for b in 0..TASKS / BURST {
                let ps: Vec<_> = (0..BURST)
                    .map(|i| mkernel::spawn(move || short(b * BURST + i)))
                    .collect();
                sum = mkernel::join_all(ps)
                    .into_iter()
                    .fold(sum, |a, r| a.wrapping_add(r.unwrap()));
            }
            std::hint::black_box(sum);
            let secs = (now_ns() - t0) as f64 / 1e9;
            stop.set(true);
            Run {
                tasks_per_s: TASKS as f64 / secs,
                gaps_us: yielder.join().unwrap(),
                late_us: ticker.join().unwrap(),
            }
        }),
        Rt::Tokio => tokio_rt().block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let hard = now_ns() + hard_ns;
            let s = stop.clone();
            let yielder = tokio::spawn(async move {
                let mut st = Steady::new();
                while !s.load(Ordering::Relaxed) && now_ns() < hard {
                    tokio::task::yield_now().await;
                    st.tick();
                }
                st.gaps_us
            });
            let s = stop.clone();
            let ticker = tokio::spawn(async move {
                let mut v = Vec::new();
                while !s.load(Ordering::Relaxed) && now_ns() < hard {
                    let t = now_ns();
                    tokio::time::sleep(TICK).await;
                    v.push(late(t));
                }
                v
            });
            let t0 = now_ns();
            let mut sum = 0u64;
            for b in 0..TASKS / BURST {
                let hs: Vec<_> = (0..BURST)
                    .map(|i| tokio::spawn(async move { short(b * BURST + i) }))
                    .collect();
                for h in hs {
                    sum = sum.wrapping_add(h.await.unwrap());
                }
            }
            std::hint::black_box(sum);
            let secs = (now_ns() - t0) as f64 / 1e9;
            stop.store(true, Ordering::Relaxed);
            Run {
                tasks_per_s: TASKS as f64 / secs,
                gaps_us: yielder.await.unwrap(),
                late_us: ticker.await.unwrap(),
            }
        }),
        Rt::May => may_run(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let hard = now_ns() + hard_ns;
            let s = stop.clone();
            let yielder = may::go!(move || {
                let mut st = Steady::new();
                while !s.load(Ordering::Relaxed) && now_ns() < hard {
                    may::coroutine::yield_now();
                    st.tick();
                }
                st.gaps_us
            });
            let s = stop.clone();
            let ticker = may::go!(move || {
                let mut v = Vec::new();
                while !s.load(Ordering::Relaxed) && now_ns() < hard {
                    let t = now_ns();
                    may::coroutine::sleep(TICK);
                    v.push(late(t));
                }
                v
            });
            let t0 = now_ns();
            let mut sum = 0u64;
            for b in 0..TASKS / BURST {
                let hs: Vec<_> = (0..BURST)
                    .map(|i| may::go!(move || short(b * BURST + i)))
                    .collect();
                for h in hs {
                    sum = sum.wrapping_add(h.join().unwrap());
                }
            }
            std::hint::black_box(sum);
            let secs = (now_ns() - t0) as f64 / 1e9;
            stop.store(true, Ordering::Relaxed);
            Run {
                tasks_per_s: TASKS as f64 / secs,
                gaps_us: yielder.join().unwrap(),
                late_us: ticker.join().unwrap(),
            }
        }),
    }
}

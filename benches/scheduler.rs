//! mkernel vs raw corosensei vs tokio (current-thread), in the same run:
//! (a) yield ping-pong between two tasks, ns per switch;
//! (b) spawn + join of an empty task, one at a time and in batches of 1,000;
//! (c) two tasks handing a counter over through a mutex and a condition
//!     (tokio: its async mutex and `Notify`), ns per handoff (no raw
//!     corosensei peer: it has no such primitives);
//! (d) memory per parked task (VmHWM delta / N, N = 100,000), each runtime
//!     measured in a fresh child process (this binary re-executed);
//! (e) the cost of a trace event when tracing is on (`Builder::trace`).
//!
//! `cargo bench --bench scheduler`. A summary with medians and ratios to
//! tokio is printed at the end.

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult};
use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: u64 = 1_000;
const PARKED: usize = 100_000;
const MEM_ENV: &str = "MKERNEL_BENCH_MEM";

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

// ---- (a) yield ping-pong: `iters` switches in all ----

fn mkernel_yield(iters: u64) -> Duration {
    mkernel::run((), move |()| {
        let half = iters.div_ceil(2);
        let start = Instant::now();
        let p = mkernel::spawn(move || {
            for _ in 0..half {
                mkernel::yield_now();
            }
        });
        for _ in 0..half {
            mkernel::yield_now();
        }
        p.join().unwrap();
        start.elapsed()
    })
}

fn corosensei_yield(iters: u64) -> Duration {
    // One switch = one resume + suspend pair.
    let mut co = Coroutine::with_stack(
        DefaultStack::new(64 * 1024).unwrap(),
        |y: &corosensei::Yielder<(), ()>, ()| {
            loop {
                y.suspend(())
            }
        },
    );
    let start = Instant::now();
    for _ in 0..iters {
        black_box(co.resume(()));
    }
    let t = start.elapsed();
    // SAFETY: the coroutine is suspended in its endless loop, whose frame
    // holds nothing with `Drop` code (the yielder is borrowed), so
    // abandoning that frame without unwinding skips no destructor.
    unsafe { co.force_reset() };
    t
}

fn tokio_yield(iters: u64) -> Duration {
    tokio_rt().block_on(async move {
        let half = iters.div_ceil(2);
        let start = Instant::now();
        let p = tokio::spawn(async move {
            for _ in 0..half {
                tokio::task::yield_now().await;
            }
        });
        for _ in 0..half {
            tokio::task::yield_now().await;
        }
        p.await.unwrap();
        start.elapsed()
    })
}

// ---- (b) spawn + join ----

fn mkernel_spawn_join(iters: u64, batch: u64) -> Duration {
    mkernel::run((), move |()| {
        let start = Instant::now();
        let mut done = 0;
        while done < iters {
            let n = batch.min(iters - done);
            let ps: Vec<_> = (0..n).map(|_| mkernel::spawn(|| ())).collect();
            for p in ps {
                p.join().unwrap();
            }
            done += n;
        }
        start.elapsed()
    })
}

fn corosensei_spawn_join(iters: u64, batch: u64) -> Duration {
    // Create a coroutine on a recycled stack, run it to completion, take the
    // stack back: the raw cost of a task without any scheduler.
    let mut stacks: Vec<DefaultStack> = (0..batch)
        .map(|_| DefaultStack::new(64 * 1024).unwrap())
        .collect();
    let start = Instant::now();
    let mut done = 0;
    while done < iters {
        let n = batch.min(iters - done) as usize;
        let mut cos: Vec<_> = stacks
            .drain(..n)
            .map(|s| Coroutine::with_stack(s, |_: &corosensei::Yielder<(), ()>, ()| ()))
            .collect();
        for co in &mut cos {
            assert!(matches!(co.resume(()), CoroutineResult::Return(())));
        }
        stacks.extend(cos.into_iter().map(Coroutine::into_stack));
        done += n as u64;
    }
    start.elapsed()
}

fn tokio_spawn_join(iters: u64, batch: u64) -> Duration {
    tokio_rt().block_on(async move {
        let start = Instant::now();
        let mut done = 0;
        while done < iters {
            let n = batch.min(iters - done);
            let ps: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
            for p in ps {
                p.await.unwrap();
            }
            done += n;
        }
        start.elapsed()
    })
}

// ---- (c) handoff through a mutex and a condition ----

/// Two tasks take turns: each locks, waits on the condition until the
/// counter's parity is its own, bumps it and signals. `iters` handoffs.
fn mkernel_handoff(iters: u64) -> Duration {
    use mkernel::sync::{Condition, Mutex};
    use std::rc::Rc;
    mkernel::run((), move |()| {
        let st = Rc::new((Mutex::new(0u64), Condition::new()));
        let side = |me: u64| {
            let st = st.clone();
            move || {
                let (m, c) = &*st;
                for _ in 0..iters.div_ceil(2) {
                    let mut g = m.lock();
                    while *g % 2 != me {
                        g = c.wait(g);
                    }
                    *g += 1;
                    c.signal();
                }
            }
        };
        let start = Instant::now();
        let (a, b) = (mkernel::spawn(side(0)), mkernel::spawn(side(1)));
        a.join().unwrap();
        b.join().unwrap();
        start.elapsed()
    })
}

/// The same with tokio's async mutex and `Notify` (its condition: a
/// `notify_one` with no waiter leaves a permit, so no wake-up is lost).
fn tokio_handoff(iters: u64) -> Duration {
    use std::sync::Arc;
    tokio_rt().block_on(async move {
        let st = Arc::new((tokio::sync::Mutex::new(0u64), tokio::sync::Notify::new()));
        let side = |me: u64| {
            let st = st.clone();
            async move {
                let (m, n) = &*st;
                for _ in 0..iters.div_ceil(2) {
                    let mut g = m.lock().await;
                    while *g % 2 != me {
                        drop(g);
                        n.notified().await;
                        g = m.lock().await;
                    }
                    *g += 1;
                    n.notify_one();
                }
            }
        };
        let start = Instant::now();
        let (a, b) = (tokio::spawn(side(0)), tokio::spawn(side(1)));
        a.await.unwrap();
        b.await.unwrap();
        start.elapsed()
    })
}

// ---- (e) what a trace costs when it is on ----

/// `iters` yields of two tasks, traced or not (the trace recorded and
/// thrown away).
fn mkernel_yield_traced(iters: u64, on: bool) -> (Duration, u64) {
    let mut b = mkernel::Builder::new();
    if on {
        b = b.trace(mkernel::Trace::discard());
    }
    b.run((), move |()| {
        let half = iters.div_ceil(2);
        let start = Instant::now();
        let p = mkernel::spawn(move || {
            for _ in 0..half {
                mkernel::yield_now();
            }
        });
        for _ in 0..half {
            mkernel::yield_now();
        }
        p.join().unwrap();
        (start.elapsed(), mkernel::stats().switches)
    })
}

/// ns per trace event: (traced - untraced) / events, medians of 7 runs of
/// 1M switches each (a yield switch records 2 events: a suspension and a run).
fn trace_cost_per_event() -> (f64, f64) {
    const N: u64 = 1_000_000;
    let per_switch = |on: bool| {
        let mut v: Vec<f64> = (0..7)
            .map(|_| {
                let (t, sw) = mkernel_yield_traced(N, on);
                t.as_nanos() as f64 / sw as f64
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[3]
    };
    let (off, on) = (per_switch(false), per_switch(true));
    (off, (on - off) / 2.0)
}

// ---- (d) memory per parked task ----

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs in a child process: parks PARKED tasks of `which`, prints bytes/task.
fn measure_parked(which: &str) {
    let before = status_kib("VmRSS:");
    let peak = match which {
        "mkernel" => mkernel::run((), |()| {
            use mkernel::sync::{Condition, Mutex};
            use std::rc::Rc;
            let gate = Rc::new((Mutex::new((false, 0usize)), Condition::new()));
            let ps: Vec<_> = (0..PARKED)
                .map(|_| {
                    let gate = gate.clone();
                    mkernel::spawn(move || {
                        let (m, c) = &*gate;
                        let mut g = m.lock();
                        g.1 += 1;
                        while !g.0 {
                            g = c.wait(g);
                        }
                    })
                })
                .collect();
            while gate.0.lock().1 < PARKED {
                mkernel::yield_now();
            }
            let peak = status_kib("VmHWM:");
            gate.0.lock().0 = true;
            gate.1.broadcast();
            mkernel::join_all(ps);
            peak
        }),
        "corosensei" => {
            // DefaultStack maps each stack with its own guard page: two
            // mappings per stack, so vm.max_map_count (65530) caps it below
            // PARKED; measure 30,000 and scale.
            let n = 30_000;
            let mut cos: Vec<_> = (0..n)
                .map(|_| {
                    Coroutine::with_stack(
                        DefaultStack::new(64 * 1024).unwrap(),
                        |y: &corosensei::Yielder<(), ()>, ()| y.suspend(()),
                    )
                })
                .collect();
            for co in &mut cos {
                co.resume(());
            }
            let peak = status_kib("VmHWM:");
            for co in &mut cos {
                co.resume(());
            }
            before + (peak.saturating_sub(before)) * (PARKED as u64) / n as u64
        }
        "tokio" => tokio_rt().block_on(async {
            let gate = std::sync::Arc::new(tokio::sync::Notify::new());
            let count = std::rc::Rc::new(std::cell::Cell::new(0usize));
            let local = tokio::task::LocalSet::new();
            local
                .run_until(async {
                    let ps: Vec<_> = (0..PARKED)
                        .map(|_| {
                            let (g, c) = (gate.clone(), count.clone());
                            tokio::task::spawn_local(async move {
                                let n = g.notified();
                                c.set(c.get() + 1);
                                n.await;
                            })
                        })
                        .collect();
                    while count.get() < PARKED {
                        tokio::task::yield_now().await;
                    }
                    let peak = status_kib("VmHWM:");
                    gate.notify_waiters();
                    for p in ps {
                        p.await.unwrap();
                    }
                    peak
                })
                .await
        }),
        _ => unreachable!(),
    };
    println!("{}", (peak.saturating_sub(before)) * 1024 / PARKED as u64);
}

fn parked_bytes(which: &str) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(MEM_ENV, which)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

// ---- driver ----

fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = format!("target/criterion/{group}/{id}/new/estimates.json");
    let s = std::fs::read_to_string(path).ok()?;
    let i = s.find("\"median\"")?;
    let rest = &s[i..];
    let j = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String = rest[j..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-' || *c == '+')
        .collect();
    num.parse().ok()
}

fn main() {
    if let Ok(which) = std::env::var(MEM_ENV) {
        measure_parked(&which);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();

    let mut g = c.benchmark_group("yield");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mkernel", |b| b.iter_custom(mkernel_yield));
    g.bench_function("corosensei", |b| b.iter_custom(corosensei_yield));
    g.bench_function("tokio", |b| b.iter_custom(tokio_yield));
    g.finish();

    let mut g = c.benchmark_group("spawn_join");
    g.bench_function("mkernel", |b| b.iter_custom(|n| mkernel_spawn_join(n, 1)));
    g.bench_function("corosensei", |b| {
        b.iter_custom(|n| corosensei_spawn_join(n, 1))
    });
    g.bench_function("tokio", |b| b.iter_custom(|n| tokio_spawn_join(n, 1)));
    g.finish();

    // One iteration = one batch of 1,000 tasks; per task = median / 1,000.
    let mut g = c.benchmark_group("spawn_join_batch");
    for (name, f) in [
        ("mkernel", mkernel_spawn_join as fn(u64, u64) -> Duration),
        ("corosensei", corosensei_spawn_join),
        ("tokio", tokio_spawn_join),
    ] {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|n| f(n * BATCH, BATCH))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("handoff");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mkernel", |b| b.iter_custom(mkernel_handoff));
    g.bench_function("tokio", |b| b.iter_custom(tokio_handoff));
    g.finish();
    c.final_summary();

    println!("\n=== summary (criterion medians) ===");
    let rows = [
        ("yield: ns per switch", "yield", 1.0),
        ("spawn+join: ns per task", "spawn_join", 1.0),
        (
            "spawn+join, batches of 1000: ns per task",
            "spawn_join_batch",
            BATCH as f64,
        ),
        ("mutex+condition handoff: ns per handoff", "handoff", 1.0),
    ];
    for (label, group, div) in rows {
        let m = median_ns(group, "mkernel").map(|v| v / div);
        let r = median_ns(group, "corosensei").map(|v| v / div);
        let t = median_ns(group, "tokio").map(|v| v / div);
        let r = r.map_or("       -".into(), |r| format!("{r:8.1}"));
        if let (Some(m), Some(t)) = (m, t) {
            println!(
                "{label:44} mkernel {m:8.1}  corosensei {r}  tokio {t:8.1}  mkernel/tokio {:.2}",
                m / t
            );
        }
    }
    let (off, per_event) = trace_cost_per_event();
    println!(
        "{:44} {off:.1} ns per switch untraced, {per_event:.1} ns per event traced (2 per switch)",
        "trace on (Trace::discard), yield ping-pong:"
    );
    let m = parked_bytes("mkernel");
    let r = parked_bytes("corosensei");
    let t = parked_bytes("tokio");
    println!(
        "{:44} mkernel {m:8}  corosensei {r:8}  tokio {t:8}  (N = {PARKED}; mkernel {:.1} KiB)",
        "memory per parked task: bytes (VmHWM delta/N)",
        m as f64 / 1024.0
    );
}

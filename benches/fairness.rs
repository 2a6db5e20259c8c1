//! Fairness of the scheduler against peers: mkernel, tokio (current-thread
//! runtime) and `may` (one worker), each scenario run on all three in the
//! same process, seconds apart, so that every figure can be read as a
//! ratio against a peer on the same (shared, noisy) machine.
//!
//! 1. N CPU-bound tasks yielding after each ~1.8 µs unit of work, for a
//!    fixed window: units per task, Jain's index, gaps between a task's
//!    units (and mkernel's own `task_stats`).
//! 2. A task sleeping 1 ms in a loop while 8 tasks compute and yield: how
//!    late it wakes up.
//! 3. A task answering frames while other tasks write to a block device
//!    (deferred, atomic, or none): round-trip times.
//! 4. Spawn storms: 100,000 short tasks in bursts of 1,000 while a yielding
//!    task and a 1 ms ticker run.
//! 5. Scenario 1 on 2 cores (N = 8 and 64): mkernel with `Builder::cores(2)`
//!    and `parallel` (half the tasks on each core, for good), tokio's
//!    multi-threaded runtime with 2 workers; may has no such row (one
//!    worker count per process).
//!
//! `cargo bench --bench fairness` prints a table of medians over
//! `FAIRNESS_REPS` (default 5) repetitions, a progress line on stderr, and
//! writes one SVG per scenario under `target/mkernel-bench/`.
//! `FAIRNESS_SCENARIOS=2,3` runs only some scenarios.

#[path = "fairness/common.rs"]
mod common;
#[path = "fairness/cpu.rs"]
mod cpu;
#[path = "fairness/net.rs"]
mod net;
#[path = "fairness/plot.rs"]
mod plot;
#[path = "fairness/storm.rs"]
mod storm;
#[path = "fairness/timer.rs"]
mod timer;

use common::*;
use std::fmt::Write as _;

const NS: [usize; 4] = [2, 8, 64, 1024];
/// The N of scenario 5 (2 cores).
const NS_2_CORES: [usize; 2] = [8, 64];
/// The N whose per-task progress is drawn.
const PLOT_N: usize = 64;
const WINDOW_NS: u64 = 300_000_000;
const TIMER_TASKS: usize = 8;
const TIMER_SAMPLES: usize = 1000;
const NET_WINDOW_NS: u64 = 400_000_000;
/// Loads stop after this even if the measured task never got to stop them.
const HARD_NS: u64 = 2_000_000_000;

/// One row of the table: a metric on the three runtimes.
struct Row {
    scenario: String,
    metric: String,
    vals: [f64; 3],
    /// How to print the values.
    digits: usize,
}

fn row(scenario: &str, metric: &str, digits: usize, per_rt: impl Fn(Rt) -> f64) -> Row {
    Row {
        scenario: scenario.into(),
        metric: metric.into(),
        vals: Rt::ALL.map(per_rt),
        digits,
    }
}

fn fmt_val(v: f64, digits: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else {
        format!("{v:.digits$}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}", a / b)
    }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | metric | mkernel | tokio | may | mkernel÷tokio | mkernel÷may |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.metric,
            fmt_val(r.vals[0], r.digits),
            fmt_val(r.vals[1], r.digits),
            fmt_val(r.vals[2], r.digits),
            ratio(r.vals[0], r.vals[1]),
            ratio(r.vals[0], r.vals[2]),
        );
    }
    s
}

fn storm_sc() -> String {
    format!(
        "4. storm, {}k tasks in bursts of {}",
        storm::TASKS / 1000,
        storm::BURST
    )
}

/// The rows of a CPU scenario (1 and 5) from each runtime's figures per
/// repetition (none: n/a).
fn cpu_rows(rows: &mut Vec<Row>, sc: &str, f: &[Vec<cpu::Figures>; 3]) {
    let m = |rt: Rt, g: &dyn Fn(&cpu::Figures) -> f64| {
        let v: Vec<f64> = f[idx(rt)].iter().map(g).collect();
        if v.is_empty() { f64::NAN } else { median(&v) }
    };
    rows.push(row(sc, "Jain index", 4, |rt| m(rt, &|x| x.jain)));
    rows.push(row(sc, "units/task (mean)", 0, |rt| {
        m(rt, &|x| x.units_mean)
    }));
    rows.push(row(sc, "units/task (min)", 0, |rt| m(rt, &|x| x.units_min)));
    rows.push(row(sc, "p99 gap (µs)", 1, |rt| m(rt, &|x| x.p99_gap_us)));
    rows.push(row(sc, "max gap (µs)", 1, |rt| m(rt, &|x| x.max_gap_us)));
}

fn idx(rt: Rt) -> usize {
    Rt::ALL.iter().position(|&r| r == rt).unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    may::config().set_workers(1);
    let reps: usize = std::env::var("FAIRNESS_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let unit_ns = calibrate();
    let dir = plot::out_dir();
    println!(
        "fairness: mkernel vs tokio (current thread) vs may (1 worker); unit of work {unit_ns:.0} ns; \
         medians of {reps} repetitions; ratios are mkernel ÷ peer"
    );
    // Warm-up: first runs pay for thread and stack creation.
    for rt in Rt::ALL {
        let _ = cpu::run(rt, 64, 20_000_000);
    }
    let only = std::env::var("FAIRNESS_SCENARIOS").unwrap_or_else(|_| "1,2,3,4,5".into());
    let want = |k: u32| only.split(',').any(|x| x.trim() == k.to_string());
    let per_rep = [NS.len() * 3, 3, 3 * 3, 3, NS_2_CORES.len() * 2];
    let total = reps
        * (1..=5)
            .filter(|&k| want(k))
            .map(|k| per_rep[k as usize - 1])
            .sum::<usize>();
    let mut svgs = Vec::new();
    let mut progress = Progress::new(total);
    let mut rows = Vec::new();
    let mut noise = Noise::default();

    // --- 1. CPU-bound tasks -------------------------------------------
    if want(1) {
        // figs[n][rt] = figures of each repetition.
        let mut figs: Vec<[Vec<cpu::Figures>; 3]> = NS.iter().map(|_| Default::default()).collect();
        let mut curves: Vec<plot::Panel> = Vec::new();
        for rep in 0..reps {
            for (k, &n) in NS.iter().enumerate() {
                for rt in Rt::order(rep) {
                    progress.step(&format!("1. {n} CPU tasks on {}", rt.name()));
                    let run =
                        noise.measure(&format!("1. CPU, N={n}"), rt, || cpu::run(rt, n, WINDOW_NS));
                    if n == PLOT_N && rep == reps - 1 {
                        let c = run.progress(1.0);
                        let l = cpu::lead(&c);
                        curves.push((rt.name().to_string(), c, l));
                    }
                    figs[k][idx(rt)].push(run.figures());
                }
            }
        }
        curves.sort_by_key(|(name, _, _)| Rt::ALL.iter().position(|r| r.name() == name));
        for (k, &n) in NS.iter().enumerate() {
            let f = &figs[k];
            let sc = format!("1. CPU, N={n}");
            cpu_rows(&mut rows, &sc, f);
            let mk = |g: &dyn Fn(&(f64, u64, f64)) -> f64| {
                median(
                    &f[0]
                        .iter()
                        .filter_map(|x| x.mk.as_ref().map(g))
                        .collect::<Vec<_>>(),
                )
            };
            let only_mk = |v: f64| move |rt: Rt| if rt == Rt::Mkernel { v } else { f64::NAN };
            rows.push(row(
                &sc,
                "task_stats: max max_wait (µs)",
                1,
                only_mk(mk(&|x| x.0)),
            ));
            rows.push(row(
                &sc,
                "task_stats: max max_wait_switches",
                0,
                only_mk(mk(&|x| x.1 as f64)),
            ));
            rows.push(row(&sc, "task_stats: mean runs", 0, only_mk(mk(&|x| x.2))));
            rows.push(row(
                &sc,
                "OS preemptions/run, whole process (noise)",
                0,
                |rt| noise.median(&sc, rt),
            ));
        }
        let s1_svg = dir.join("fairness-1-cpu.svg");
        plot::progress(
        &s1_svg,
        &format!(
            "1. {PLOT_N} CPU-bound tasks yielding after each ~1.8 µs unit: progress of each task"
        ),
        &curves,
    )
    .unwrap();
        svgs.push(s1_svg);
    }
    // --- 2. timer wake-ups under CPU load ------------------------------
    if want(2) {
        let mut late: [Vec<[f64; 3]>; 3] = Default::default();
        let mut late_all: [Vec<f64>; 3] = Default::default();
        let mut work: [Vec<f64>; 3] = Default::default();
        let mut count: [Vec<f64>; 3] = Default::default();
        for rep in 0..reps {
            for rt in Rt::order(rep) {
                progress.step(&format!("2. 1 ms timer under load on {}", rt.name()));
                let t0 = now_ns();
                let r = noise.measure(
                    &format!("2. 1 ms timer, {TIMER_TASKS} CPU tasks"),
                    rt,
                    || timer::run(rt, TIMER_TASKS, TIMER_SAMPLES, HARD_NS),
                );
                let secs = (now_ns() - t0) as f64 / 1e9;
                let v = sorted(r.late_us);
                let i = idx(rt);
                late[i].push([quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)]);
                work[i].push(r.units as f64 / secs);
                count[i].push(v.len() as f64);
                late_all[i].extend(v);
            }
        }
        let sc = format!("2. 1 ms timer, {TIMER_TASKS} CPU tasks");
        for (q, name) in [
            (0, "lateness p50 (µs)"),
            (1, "lateness p99 (µs)"),
            (2, "lateness max (µs)"),
        ] {
            rows.push(row(&sc, name, 1, |rt| {
                median(&late[idx(rt)].iter().map(|x| x[q]).collect::<Vec<_>>())
            }));
        }
        rows.push(row(&sc, "wake-ups measured", 0, |rt| {
            median(&count[idx(rt)])
        }));
        rows.push(row(&sc, "CPU units/s (all workers)", 0, |rt| {
            median(&work[idx(rt)])
        }));
        rows.push(row(
            &sc,
            "OS preemptions/run, whole process (noise)",
            0,
            |rt| noise.median(&sc, rt),
        ));
        let s2_svg = dir.join("fairness-2-timer.svg");
        plot::cdf(
            &s2_svg,
            &format!("2. lateness of a 1 ms sleep while {TIMER_TASKS} tasks compute and yield"),
            "lateness (µs, log scale)",
            &Rt::ALL.map(|rt| (rt.name().to_string(), sorted(late_all[idx(rt)].clone()))),
        )
        .unwrap();
        svgs.push(s2_svg);
    }
    // --- 3. net answers under block load -------------------------------
    if want(3) {
        let disk = net::Disk::new();
        // [load][rt] -> per rep (p50, p99, pages/s, round trips)
        let mut nets: [[Vec<[f64; 4]>; 3]; 3] = Default::default();
        let mut rtt_all: [[Vec<f64>; 3]; 3] = Default::default();
        for rep in 0..reps {
            for (l, load) in net::Load::ALL.into_iter().enumerate() {
                for rt in Rt::order(rep) {
                    progress.step(&format!("3. net answers, {} on {}", load.name(), rt.name()));
                    let r =
                        noise.measure(&format!("3. net round trip, {}", load.name()), rt, || {
                            net::run(rt, load, &disk.0, NET_WINDOW_NS)
                        });
                    let v = sorted(r.rtt_us);
                    nets[l][idx(rt)].push([
                        quantile(&v, 0.5),
                        quantile(&v, 0.99),
                        r.pages as f64 / r.secs,
                        v.len() as f64,
                    ]);
                    rtt_all[l][idx(rt)].extend(v);
                }
            }
        }
        drop(disk);
        for (l, load) in net::Load::ALL.into_iter().enumerate() {
            let sc = format!("3. net round trip, {}", load.name());
            let m = |rt: Rt, q: usize| {
                median(&nets[l][idx(rt)].iter().map(|x| x[q]).collect::<Vec<_>>())
            };
            rows.push(row(&sc, "RTT p50 (µs)", 1, |rt| m(rt, 0)));
            rows.push(row(&sc, "RTT p99 (µs)", 1, |rt| m(rt, 1)));
            rows.push(row(&sc, "round trips measured", 0, |rt| m(rt, 3)));
            if load != net::Load::Idle {
                rows.push(row(&sc, "pages written/s", 0, |rt| m(rt, 2)));
            }
            rows.push(row(
                &sc,
                "OS preemptions/run, whole process (noise)",
                0,
                |rt| noise.median(&sc, rt),
            ));
        }
        let mut series = Vec::new();
        for rt in Rt::ALL {
            for (l, load) in net::Load::ALL.into_iter().enumerate() {
                series.push((
                    format!("{} {}", rt.name(), load.name()),
                    sorted(rtt_all[l][idx(rt)].clone()),
                ));
            }
        }
        let s3_svg = dir.join("fairness-3-net.svg");
        plot::cdf(
            &s3_svg,
            "3. round trip of a frame answered by a task, with 2 block writers",
            "round trip (µs, log scale)",
            &series,
        )
        .unwrap();
        svgs.push(s3_svg);
    }
    // --- 4. spawn storms -----------------------------------------------
    if want(4) {
        let mut storms: [Vec<[f64; 5]>; 3] = Default::default();
        let mut storm_all: [(Vec<f64>, Vec<f64>); 3] = Default::default();
        for rep in 0..reps {
            for rt in Rt::order(rep) {
                progress.step(&format!("4. spawn storm on {}", rt.name()));
                let r = noise.measure(&storm_sc(), rt, || storm::run(rt, HARD_NS));
                let g = sorted(r.gaps_us);
                let l = sorted(r.late_us);
                storms[idx(rt)].push([
                    r.tasks_per_s,
                    quantile(&g, 0.99),
                    quantile(&g, 1.0),
                    quantile(&l, 0.99),
                    quantile(&l, 1.0),
                ]);
                storm_all[idx(rt)].0.extend(g);
                storm_all[idx(rt)].1.extend(l);
            }
        }
        let sc = storm_sc();
        for (q, name, d) in [
            (0, "storm tasks/s", 0),
            (1, "yielding task: p99 gap (µs)", 1),
            (2, "yielding task: max gap (µs)", 1),
            (3, "1 ms ticker: p99 lateness (µs)", 1),
            (4, "1 ms ticker: max lateness (µs)", 1),
        ] {
            rows.push(row(&sc, name, d, |rt| {
                median(&storms[idx(rt)].iter().map(|x| x[q]).collect::<Vec<_>>())
            }));
        }
        rows.push(row(
            &sc,
            "OS preemptions/run, whole process (noise)",
            0,
            |rt| noise.median(&sc, rt),
        ));
        let mut series = Vec::new();
        for rt in Rt::ALL {
            series.push((
                format!("{}: yield gap", rt.name()),
                sorted(storm_all[idx(rt)].0.clone()),
            ));
        }
        for rt in Rt::ALL {
            series.push((
                format!("{}: 1 ms tick lateness", rt.name()),
                sorted(storm_all[idx(rt)].1.clone()),
            ));
        }
        let s4_svg = dir.join("fairness-4-storm.svg");
        plot::cdf(
            &s4_svg,
            "4. steady tasks during spawn storms (100k tasks, bursts of 1000)",
            "µs (log scale)",
            &series,
        )
        .unwrap();
        svgs.push(s4_svg);
    }
    // --- 5. CPU-bound tasks on 2 cores ---------------------------------
    if want(5) {
        let two = [Rt::Mkernel, Rt::Tokio];
        let mut figs: Vec<[Vec<cpu::Figures>; 3]> =
            NS_2_CORES.iter().map(|_| Default::default()).collect();
        for rep in 0..reps {
            for (k, &n) in NS_2_CORES.iter().enumerate() {
                let mut order = two;
                order.rotate_left(rep % 2);
                for rt in order {
                    progress.step(&format!("5. {n} CPU tasks on 2 cores, {}", rt.name()));
                    let sc = format!("5. CPU on 2 cores, N={n}");
                    if let Some(run) = noise.measure(&sc, rt, || cpu::run_2_cores(rt, n, WINDOW_NS))
                    {
                        figs[k][idx(rt)].push(run.figures());
                    }
                }
            }
        }
        for (k, &n) in NS_2_CORES.iter().enumerate() {
            cpu_rows(&mut rows, &format!("5. CPU on 2 cores, N={n}"), &figs[k]);
        }
    }
    progress.finish();

    println!("{}", table(&rows));
    for p in &svgs {
        println!("picture: {}", p.display());
    }
}

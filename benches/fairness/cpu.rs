//! Scenario 1: N CPU-bound tasks that yield after each unit of work.

use crate::common::*;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one task saw.
#[derive(Default)]
pub struct TaskRec {
    /// End time (ns) of each of its units.
    pub ends: Vec<u64>,
    /// Wait (ns) between the end of a unit and the start of the next.
    pub gaps: Vec<u32>,
    /// mkernel's own figures for the task.
    pub stats: Option<mkernel::TaskStats>,
}

impl TaskRec {
    fn with_capacity(n: usize) -> TaskRec {
        TaskRec {
            ends: Vec::with_capacity(n),
            gaps: Vec::with_capacity(n),
            stats: None,
        }
    }

    /// Before a unit: records the wait since the previous one; false once
    /// the window is over.
    #[inline]
    fn before(&mut self, end: u64) -> bool {
        let t = now_ns();
        if t >= end {
            return false;
        }
        if let Some(&e) = self.ends.last() {
            self.gaps.push((t - e).min(u32::MAX as u64) as u32);
        }
        true
    }

    #[inline]
    fn after(&mut self) {
        self.ends.push(now_ns());
    }
}

/// One run: the window's start and every task's record.
pub struct Run {
    pub start: u64,
    pub tasks: Vec<TaskRec>,
}

/// The figures of one run.
pub struct Figures {
    pub units_mean: f64,
    pub units_min: f64,
    pub jain: f64,
    pub max_gap_us: f64,
    pub p99_gap_us: f64,
    /// mkernel only: the largest `max_wait` (µs) and `max_wait_switches`
    /// of any task, and the mean `runs`.
    pub mk: Option<(f64, u64, f64)>,
}

impl Run {
    pub fn figures(&self) -> Figures {
        let units: Vec<f64> = self.tasks.iter().map(|t| t.ends.len() as f64).collect();
        let gaps = sorted(
            self.tasks
                .iter()
                .flat_map(|t| t.gaps.iter().map(|&g| g as f64 / 1e3))
                .collect(),
        );
        let mk = self.tasks[0].stats.map(|_| {
            let st = || self.tasks.iter().filter_map(|t| t.stats);
            (
                st().map(|s| s.max_wait.as_secs_f64() * 1e6)
                    .fold(0.0, f64::max),
                st().map(|s| s.max_wait_switches).max().unwrap_or(0),
                st().map(|s| s.runs as f64).sum::<f64>() / self.tasks.len() as f64,
            )
        });
        Figures {
            units_mean: units.iter().sum::<f64>() / units.len() as f64,
            units_min: units.iter().copied().fold(f64::INFINITY, f64::min),
            jain: jain(&units),
            max_gap_us: gaps.last().copied().unwrap_or(0.0),
            p99_gap_us: quantile(&gaps, 0.99),
            mk,
        }
    }

    /// Per-task progress sampled every `step_ms` from the start: for each
    /// task, (ms, units done by then).
    pub fn progress(&self, step_ms: f64) -> Vec<Vec<(f64, f64)>> {
        let last = self
            .tasks
            .iter()
            .filter_map(|t| t.ends.last())
            .max()
            .copied()
            .unwrap_or(self.start);
        let span_ms = (last - self.start) as f64 / 1e6;
        let times: Vec<f64> = (0..=(span_ms / step_ms).ceil() as usize)
            .map(|k| k as f64 * step_ms)
            .collect();
        self.tasks
            .iter()
            .map(|t| {
                times
                    .iter()
                    .map(|&ms| {
                        let at = self.start + (ms * 1e6) as u64;
                        (ms, t.ends.partition_point(|&e| e <= at) as f64)
                    })
                    .collect()
            })
            .collect()
    }
}

/// Each task's lead (+) or lag (-) in units against the mean of all tasks
/// at the same moment.
pub fn lead(curves: &[Vec<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    let n = curves.len() as f64;
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    let mean: Vec<f64> = (0..len)
        .map(|k| curves.iter().map(|c| c[k].1).sum::<f64>() / n)
        .collect();
    curves
        .iter()
        .map(|c| (0..len).map(|k| (c[k].0, c[k].1 - mean[k])).collect())
        .collect()
}

fn capacity(n: usize, window_ns: u64) -> usize {
    (window_ns / UNIT_NS / n as u64 * 2 + 64) as usize
}

pub fn run(rt: Rt, n: usize, window_ns: u64) -> Run {
    match rt {
        Rt::Mkernel => mkernel_run(n, window_ns),
        Rt::Tokio => tokio_run(n, window_ns),
        Rt::May => may_run_(n, window_ns),
    }
}

fn mkernel_run(n: usize, window_ns: u64) -> Run {
    mkernel_run_with(mkernel::Builder::new(), n, window_ns)
}

/// The mkernel run with these settings (a trace: `tests/trace_fairness.rs`).
pub fn mkernel_run_with(b: mkernel::Builder, n: usize, window_ns: u64) -> Run {
    b.run((), move |()| {
        let end = Rc::new(Cell::new(u64::MAX));
        let ps: Vec<_> = (0..n)
            .map(|_| {
                let end = end.clone();
                mkernel::spawn(move || {
                    let mut rec = TaskRec::with_capacity(capacity(n, window_ns));
                    while rec.before(end.get()) {
                        unit();
                        rec.after();
                        mkernel::yield_now();
                    }
                    rec.stats = mkernel::task_stats(mkernel::current_task());
                    rec
                })
            })
            .collect();
        // The children run once the main task waits.
        let start = now_ns();
        end.set(start + window_ns);
        let tasks = mkernel::join_all(ps)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        Run { start, tasks }
    })
}

/// Scenario 5: the same tasks over 2 cores. mkernel: `Builder::cores(2)`
/// and `parallel`, which puts every other task on the second core (tasks
/// never move); tokio: its multi-threaded runtime with 2 workers (tasks
/// move between them); may has no 2-worker row (its worker count is set
/// once per process, to 1 for the other scenarios).
pub fn run_2_cores(rt: Rt, n: usize, window_ns: u64) -> Option<Run> {
    match rt {
        Rt::Mkernel => Some(mkernel_run_2_cores(n, window_ns)),
        Rt::Tokio => Some(tokio_run_2_workers(n, window_ns)),
        Rt::May => None,
    }
}

fn mkernel_run_2_cores(n: usize, window_ns: u64) -> Run {
    mkernel::Builder::new().cores(2).run((), move |()| {
        let start = now_ns();
        let end = start + window_ns;
        let tasks = mkernel::parallel(
            move |_: usize| {
                let mut rec = TaskRec::with_capacity(capacity(n, window_ns) * 2);
                while rec.before(end) {
                    unit();
                    rec.after();
                    mkernel::yield_now();
                }
                rec.stats = mkernel::task_stats(mkernel::current_task());
                rec
            },
            (0..n).collect(),
        )
        .into_iter()
        .map(Result::unwrap)
        .collect();
        Run { start, tasks }
    })
}

fn tokio_run_2_workers(n: usize, window_ns: u64) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let start = now_ns();
        let end = start + window_ns;
        let hs: Vec<_> = (0..n)
            .map(|_| {
                tokio::spawn(async move {
                    let mut rec = TaskRec::with_capacity(capacity(n, window_ns) * 2);
                    while rec.before(end) {
                        unit();
                        rec.after();
                        tokio::task::yield_now().await;
                    }
                    rec
                })
            })
            .collect();
        let mut tasks = Vec::with_capacity(n);
        for h in hs {
            tasks.push(h.await.unwrap());
        }
        Run { start, tasks }
    })
}

fn tokio_run(n: usize, window_ns: u64) -> Run {
    tokio_rt().block_on(async move {
        let end = Arc::new(AtomicU64::new(u64::MAX));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let end = end.clone();
                tokio::spawn(async move {
                    let mut rec = TaskRec::with_capacity(capacity(n, window_ns));
                    while rec.before(end.load(Ordering::Relaxed)) {
                        unit();
                        rec.after();
                        tokio::task::yield_now().await;
                    }
                    rec
                })
            })
            .collect();
        let start = now_ns();
        end.store(start + window_ns, Ordering::Relaxed);
        let mut tasks = Vec::with_capacity(n);
        for h in hs {
            tasks.push(h.await.unwrap());
        }
        Run { start, tasks }
    })
}

fn may_run_(n: usize, window_ns: u64) -> Run {
    may_run(move || {
        let end = Arc::new(AtomicU64::new(u64::MAX));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let end = end.clone();
                may::go!(move || {
                    let mut rec = TaskRec::with_capacity(capacity(n, window_ns));
                    while rec.before(end.load(Ordering::Relaxed)) {
                        unit();
                        rec.after();
                        may::coroutine::yield_now();
                    }
                    rec
                })
            })
            .collect();
        let start = now_ns();
        end.store(start + window_ns, Ordering::Relaxed);
        let tasks = hs.into_iter().map(|h| h.join().unwrap()).collect();
        Run { start, tasks }
    })
}

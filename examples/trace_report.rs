//! A fairness report from a trace that mkernel wrote (`MKERNEL_TRACE=PATH`,
//! `Builder::trace`, or a console log of `--mkernel:trace`): per task, its
//! runs, CPU time, wait while runnable (p50/p99/max) and longest
//! starvation with who ran meanwhile; Jain's index per group of tasks (same
//! name but its number, or same spawn site); device notice -> run
//! latencies; and two SVG pictures (a timeline, the CDF of waits).
//!
//! ```text
//! MKERNEL_TRACE=demo.json cargo run --release --example demo
//! cargo run --example trace_report -- demo.json [SVG_DIR]
//! ```

use plotters::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Default)]
struct Task {
    name: String,
    site: String,
    /// (start µs, dur µs, wait µs before it)
    runs: Vec<(f64, f64, f64)>,
}

/// Quantile `q` of sorted `v` (as the fairness bench computes it).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    s * s / (x.len() as f64 * x.iter().map(|v| v * v).sum::<f64>())
}

/// The trace's JSON: the file itself, or what a console log holds between
/// mkernel's markers.
fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json = match (
        text.find(mkernel::TRACE_BEGIN),
        text.find(mkernel::TRACE_END),
    ) {
        (Some(b), Some(e)) => &text[b + mkernel::TRACE_BEGIN.len()..e],
        _ => &text[..],
    };
    serde_json::from_str(json).expect("a Chrome trace JSON")
}

/// The group a task belongs to: its name without a trailing number, or its
/// spawn site.
fn group(t: &Task) -> String {
    let base = t.name.split(" (task").next().unwrap_or("");
    if !base.starts_with("task ") && !base.is_empty() {
        base.trim_end_matches(|c: char| c.is_ascii_digit() || c == ' ')
            .to_string()
    } else {
        t.site.clone()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: trace_report TRACE.json [SVG_DIR]");
        std::process::exit(2);
    };
    let v = load(path);
    let mut tasks: BTreeMap<u64, Task> = BTreeMap::new();
    // (woken task, notice µs, kind)
    let mut notices: Vec<(u64, f64, String)> = Vec::new();
    for e in v["traceEvents"].as_array().expect("traceEvents") {
        let tid = e["tid"].as_u64().unwrap_or(0);
        if tid == 0 {
            continue;
        }
        let t = tasks.entry(tid).or_default();
        let ts = e["ts"].as_f64().unwrap_or(0.0);
        match (e["ph"].as_str(), e["cat"].as_str()) {
            (Some("M"), _) if e["name"] == "thread_name" => {
                t.name = e["args"]["name"].as_str().unwrap_or("").to_string();
            }
            (Some("X"), Some("run")) => t.runs.push((
                ts,
                e["dur"].as_f64().unwrap_or(0.0),
                e["args"]["wait_us"].as_f64().unwrap_or(0.0),
            )),
            (Some("i"), Some("spawn")) => {
                t.site = e["args"]["site"].as_str().unwrap_or("").to_string();
            }
            (Some("i"), Some("wake")) => {
                if let Some(n) = e["args"]["notice_ts"].as_f64() {
                    notices.push((tid, n, e["args"]["by"].as_str().unwrap_or("").to_string()));
                }
            }
            _ => {}
        }
    }
    for t in tasks.values_mut() {
        t.runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let other = &v["otherData"];
    println!(
        "trace {path}: {} tasks, {} runs, {} events ({} lost to the ring)",
        tasks.len(),
        tasks.values().map(|t| t.runs.len()).sum::<usize>(),
        other["events"],
        other["dropped"]
    );
    println!(
        "\n{:>6} {:40} {:>8} {:>11} {:>9} {:>9} {:>9}  longest starvation: who ran meanwhile",
        "task", "name", "runs", "cpu µs", "wait p50", "p99", "max"
    );
    // All runs, for "who ran meanwhile".
    let mut all: Vec<(f64, f64, u64)> = tasks
        .iter()
        .flat_map(|(&id, t)| t.runs.iter().map(move |r| (r.0, r.1, id)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (id, t) in &tasks {
        let waits = sorted(t.runs.iter().map(|r| r.2).collect());
        let cpu: f64 = t.runs.iter().map(|r| r.1).sum();
        let worst = t.runs.iter().max_by(|a, b| a.2.total_cmp(&b.2));
        let meanwhile = worst.map_or(String::new(), |&(start, _, wait)| {
            let from = start - wait;
            let mut by: BTreeMap<u64, (u32, f64)> = BTreeMap::new();
            let i = all.partition_point(|r| r.0 < from - 1e6);
            for r in &all[i..] {
                if r.0 >= start {
                    break;
                }
                let overlap = (r.0 + r.1).min(start) - r.0.max(from);
                if overlap > 0.0 {
                    let e = by.entry(r.2).or_default();
                    e.0 += 1;
                    e.1 += overlap;
                }
            }
            let mut by: Vec<_> = by.into_iter().collect();
            by.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
            by.iter()
                .take(3)
                .map(|(k, (n, us))| format!("task {k} ({n} runs, {us:.0} µs)"))
                .collect::<Vec<_>>()
                .join(", ")
        });
        println!(
            "{id:>6} {:40} {:>8} {cpu:>11.1} {:>9.1} {:>9.1} {:>9.1}  {meanwhile}",
            t.name.chars().take(40).collect::<String>(),
            t.runs.len(),
            quantile(&waits, 0.5),
            quantile(&waits, 0.99),
            waits.last().copied().unwrap_or(f64::NAN),
        );
    }
    // Fairness per group of two tasks or more.
    let mut groups: BTreeMap<String, Vec<&Task>> = BTreeMap::new();
    for t in tasks.values() {
        groups.entry(group(t)).or_default().push(t);
    }
    println!(
        "\ngroups (2+ tasks): Jain index over CPU time and over runs; waits of all their runs"
    );
    for (g, ts) in groups.iter().filter(|(_, ts)| ts.len() >= 2) {
        let cpu: Vec<f64> = ts
            .iter()
            .map(|t| t.runs.iter().map(|r| r.1).sum())
            .collect();
        let runs: Vec<f64> = ts.iter().map(|t| t.runs.len() as f64).collect();
        let waits = sorted(ts.iter().flat_map(|t| t.runs.iter().map(|r| r.2)).collect());
        // The waits between two runs of a task (not before its first run,
        // which counts from its spawn, nor before its last): what a task
        // that timestamps its own loop (the fairness bench) sees as gaps.
        let between = sorted(
            ts.iter()
                .flat_map(|t| {
                    let n = t.runs.len();
                    t.runs.iter().take(n.saturating_sub(1)).skip(1).map(|r| r.2)
                })
                .collect(),
        );
        println!(
            "  {g}: {} tasks, Jain cpu {:.4}, Jain runs {:.4}, wait p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; between runs p99 {:.1} µs",
            ts.len(),
            jain(&cpu),
            jain(&runs),
            quantile(&waits, 0.5),
            quantile(&waits, 0.99),
            waits.last().copied().unwrap_or(f64::NAN),
            quantile(&between, 0.99),
        );
    }
    // Device notice -> the woken task's next run.
    let mut lat: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (tid, at, kind) in &notices {
        let runs = &tasks[tid].runs;
        let i = runs.partition_point(|r| r.0 < *at);
        if let Some(r) = runs.get(i) {
            lat.entry(kind.clone()).or_default().push(r.0 - at);
        }
    }
    println!("\ndevice notice -> run of the woken task");
    for (k, v) in lat {
        let v = sorted(v);
        println!(
            "  {k}: {} wake-ups, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            v.len(),
            quantile(&v, 0.5),
            quantile(&v, 0.99),
            v.last().unwrap()
        );
    }
    if let Some(dir) = args.get(1) {
        std::fs::create_dir_all(dir).unwrap();
        timeline(&Path::new(dir).join("timeline.svg"), &tasks).unwrap();
        cdf(&Path::new(dir).join("waits.svg"), &groups).unwrap();
        println!("\npictures: {dir}/timeline.svg, {dir}/waits.svg");
    }
}

type R = Result<(), Box<dyn std::error::Error>>;

/// One row per task, a bar per run; at most the first 20,000 runs.
fn timeline(path: &Path, tasks: &BTreeMap<u64, Task>) -> R {
    let mut starts: Vec<f64> = tasks
        .values()
        .flat_map(|t| t.runs.iter().map(|r| r.0))
        .collect();
    starts.sort_by(f64::total_cmp);
    let t0 = starts.first().copied().unwrap_or(0.0);
    let t1 = starts
        .get(20_000)
        .copied()
        .unwrap_or(starts.last().copied().unwrap_or(1.0) + 1.0);
    let rows = tasks.len().max(1);
    let root =
        SVGBackend::new(path, (1200, (120 + 14 * rows).min(1400) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("runs of each task (a bar per run)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(230)
        .build_cartesian_2d(0f64..(t1 - t0) / 1e3, 0f64..rows as f64)?;
    let names: Vec<String> = tasks.values().map(|t| t.name.clone()).collect();
    chart
        .configure_mesh()
        .x_desc("time (ms)")
        .y_labels(rows.min(60))
        .y_label_formatter(&|y| names.get(*y as usize).cloned().unwrap_or_default())
        .light_line_style(WHITE)
        .draw()?;
    for (row, t) in tasks.values().enumerate() {
        let c = Palette99::pick(row).filled();
        chart.draw_series(t.runs.iter().filter(|r| r.0 <= t1).map(|r| {
            let (a, b) = ((r.0 - t0) / 1e3, (r.0 + r.1.max(0.05) - t0) / 1e3);
            Rectangle::new([(a, row as f64 + 0.1), (b, row as f64 + 0.9)], c)
        }))?;
    }
    root.present()?;
    Ok(())
}

/// The CDF of waits while runnable, one curve per group.
fn cdf(path: &Path, groups: &BTreeMap<String, Vec<&Task>>) -> R {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let curves: Vec<(String, Vec<f64>)> = groups
        .iter()
        .map(|(g, ts)| {
            (
                g.clone(),
                sorted(
                    ts.iter()
                        .flat_map(|t| t.runs.iter().map(|r| r.2.max(0.01)))
                        .collect(),
                ),
            )
        })
        .filter(|(_, v)| v.len() >= 2)
        .collect();
    let max = curves
        .iter()
        .filter_map(|c| c.1.last())
        .fold(1.0f64, |a, &b| a.max(b));
    let mut chart = ChartBuilder::on(&root)
        .caption("wait while runnable: CDF", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d((0.01f64..max * 1.1).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("wait (µs)")
        .y_desc("fraction of runs")
        .draw()?;
    for (i, (g, v)) in curves.iter().enumerate() {
        let n = v.len() as f64;
        let step = (v.len() / 2000).max(1);
        let pts = v
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(k, &w)| (w, (k + 1) as f64 / n));
        chart
            .draw_series(LineSeries::new(pts, Palette99::pick(i).stroke_width(2)))?
            .label(g.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], Palette99::pick(i)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

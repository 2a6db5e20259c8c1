//! The trace report (`examples/trace_report.rs`) on the fairness bench's
//! CPU scenario (64 tasks yielding after each ~1.8 µs unit, 300 ms) gives
//! the Jain index and the p99 wait that the bench computes itself, ±1%.
//! The bench's gaps are the waits between two units of a task, so the
//! report's figure is its p99 "between runs" (the first run's wait counts
//! from the spawn, and the last run does no unit); the Jain index is over
//! runs (one unit per run but the last).

#![allow(dead_code, reason = "the bench's modules are used in part")]

#[path = "solo5_util/mod.rs"]
mod util;

#[path = "../benches/fairness/common.rs"]
mod common;
#[path = "../benches/fairness/cpu.rs"]
mod cpu;

use std::process::Command;

#[test]
fn the_report_agrees_with_the_fairness_bench() {
    common::calibrate();
    let path = std::env::temp_dir().join(format!("mk-trace-cpu-{}.json", std::process::id()));
    let b = mkernel::Builder::new().trace(mkernel::Trace::file(&path).capacity(4 << 20));
    let run = cpu::mkernel_run_with(b, 64, 300_000_000);
    let f = run.figures();
    let out = Command::new(util::example_binary("trace_report"))
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The group of the 64 workers (one spawn site in cpu.rs).
    let line = text
        .lines()
        .find(|l| l.contains("cpu.rs") && l.contains(" 64 tasks"))
        .unwrap_or_else(|| panic!("no group of 64 tasks:\n{text}"));
    let num = |key: &str| -> f64 {
        let i = line.find(key).unwrap() + key.len();
        line[i..]
            .trim_start()
            .split([' ', ','])
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (jain, p99) = (num("Jain runs"), num("between runs p99"));
    let gaps = common::sorted(
        run.tasks
            .iter()
            .flat_map(|t| t.gaps.iter().map(|&g| f64::from(g) / 1e3))
            .collect(),
    );
    eprintln!(
        "bench gaps: p50 {:.1} p90 {:.1} n {}; report: {line}",
        common::quantile(&gaps, 0.5),
        common::quantile(&gaps, 0.9),
        gaps.len()
    );
    eprintln!(
        "bench: Jain {:.4}, p99 gap {:.1} µs; report: Jain {jain:.4}, p99 wait {p99:.1} µs",
        f.jain, f.p99_gap_us
    );
    assert!(
        (jain / f.jain - 1.0).abs() <= 0.01,
        "Jain {jain} vs {}",
        f.jain
    );
    assert!(
        (p99 / f.p99_gap_us - 1.0).abs() <= 0.01,
        "p99 {p99} vs {}",
        f.p99_gap_us
    );
}

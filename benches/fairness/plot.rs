//! The pictures: SVG files under `target/mkernel-bench/`.

use plotters::prelude::*;
use std::path::{Path, PathBuf};

type R = Result<(), Box<dyn std::error::Error>>;
/// One curve per task: (ms, value).
pub type Curves = Vec<Vec<(f64, f64)>>;
/// A runtime's name, its progress curves and its lead/lag curves.
pub type Panel = (String, Curves, Curves);

pub fn out_dir() -> PathBuf {
    // Benches run with the package root as the working directory.
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("mkernel-bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn color(i: usize) -> RGBColor {
    // Distinguishable on white (Tableau 10).
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// Per-task progress, one column per runtime: units done over time (top
/// row) and each task's lead or lag against the mean (bottom row).
pub fn progress(path: &Path, title: &str, panels: &[Panel]) -> R {
    let root = SVGBackend::new(path, (1350, 860)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let areas = root.split_evenly((2, panels.len()));
    let pts = |f: fn(&Panel) -> &Curves| {
        panels
            .iter()
            .flat_map(move |p| f(p).iter().flat_map(|v| v.iter().copied()))
    };
    let xmax = pts(|p| &p.1).map(|p| p.0).fold(1.0, f64::max);
    let ymax = pts(|p| &p.1).map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let dev = pts(|p| &p.2).map(|p| p.1.abs()).fold(1.0, f64::max) * 1.1;
    for (k, (name, tasks, lead)) in panels.iter().enumerate() {
        let (a, b) = (&areas[k], &areas[panels.len() + k]);
        let mut chart = ChartBuilder::on(a)
            .caption(format!("{name}: units done"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
        chart
            .configure_mesh()
            .x_desc("time (ms)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        for (i, p) in tasks.iter().enumerate() {
            chart.draw_series(LineSeries::new(p.iter().copied(), color(i).stroke_width(1)))?;
        }
        let mut chart = ChartBuilder::on(b)
            .caption(
                format!("{name}: lead (+) / lag (-) vs the mean, units"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, -dev..dev)?;
        chart
            .configure_mesh()
            .x_desc("time (ms)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        for (i, p) in lead.iter().enumerate() {
            chart.draw_series(LineSeries::new(p.iter().copied(), color(i).stroke_width(1)))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Cumulative distributions of latencies (µs, log scale), one curve per
/// series; each series is sorted.
pub fn cdf(path: &Path, title: &str, xdesc: &str, series: &[(String, Vec<f64>)]) -> R {
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let pos = |v: f64| v.max(0.1);
    let xmin = series
        .iter()
        .filter_map(|(_, v)| v.first().copied())
        .map(pos)
        .fold(f64::INFINITY, f64::min)
        .max(0.1)
        * 0.8;
    let xmax = series
        .iter()
        .filter_map(|(_, v)| v.last().copied())
        .fold(1.0, f64::max)
        * 1.25;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc(xdesc)
        .y_desc("fraction of samples ≤ x")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, (name, v)) in series.iter().enumerate() {
        if v.is_empty() {
            continue;
        }
        let n = v.len();
        let step = (n / 600).max(1);
        let pts: Vec<(f64, f64)> = (0..n)
            .filter(|&k| k % step == 0 || k + 1 == n)
            .map(|k| (pos(v[k]), (k + 1) as f64 / n as f64))
            .collect();
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(3)))?
            .label(format!("{name} (n={n})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

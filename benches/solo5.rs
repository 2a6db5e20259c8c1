//! Solo5 spt vs hosted, in one run (`cargo bench --bench solo5`):
//!
//! - boot to main / boot to exit of `examples/hello`: the tender (or the
//!   hosted process) is spawned, "main" is when the program's first line of
//!   output arrives on the pipe, "exit" when the process has exited;
//! - yield ping-pong (`examples/solo5_yield`): ns per `yield_now` between
//!   two tasks, measured inside the program with `clock_monotonic`.
//!
//! The images are built first with the cargo-mkernel binary (from source,
//! like the `cargo mkernel` alias); the hosted programs with `cargo build
//! --release`. Prints a table of medians. Without a Solo5 build
//! environment (cc, make, libseccomp-dev), says so and exits 0.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BOOT_RUNS: usize = 31;
const YIELD_RUNS: usize = 7;
const YIELDS: &str = "1000000";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `cargo mkernel build --target spt --example NAME`: the image path.
fn build_image(example: &str) -> Result<PathBuf, String> {
    let out = Command::new(env!("CARGO"))
        .args(["run", "-q", "--release", "-p", "cargo-mkernel", "--"])
        .args(["build", "--target", "spt", "--example", example])
        .current_dir(repo())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo mkernel build {example} failed"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(text.lines().last().unwrap_or("").trim());
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("no image for {example}"))
    }
}

/// The built Solo5 tree (`cargo mkernel solo5`).
fn solo5_root() -> Result<PathBuf, String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "-q",
            "--release",
            "-p",
            "cargo-mkernel",
            "--",
            "solo5",
        ])
        .current_dir(repo())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err("cargo mkernel solo5 failed".into());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `cargo build --release --example NAME`: the executable.
fn build_hosted(example: &str) -> Result<PathBuf, String> {
    let out = Command::new(env!("CARGO"))
        .args(["build", "-q", "--release", "--example", example])
        .arg("--message-format=json")
        .current_dir(repo())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("hosted build of {example} failed"));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let key = "\"executable\":\"";
    text.lines()
        .filter_map(|l| l.split(key).nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(PathBuf::from)
        .rfind(|p| p.file_name().is_some_and(|n| n == example))
        .ok_or_else(|| format!("no executable for {example}"))
}

/// Spawns `cmd`; returns (time to the first line starting with
/// `first_line`, time to exit).
fn boot(cmd: &mut Command, first_line: &str) -> (Duration, Duration) {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut main = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.expect("read");
        if main.is_none() && line.starts_with(first_line) {
            main = Some(t0.elapsed());
        }
    }
    let status = child.wait().expect("wait");
    let exit = t0.elapsed();
    assert!(status.success(), "{cmd:?}: {status}");
    (main.expect("the program printed its line"), exit)
}

/// ns/yield printed by one run of solo5_yield.
fn yield_ns(cmd: &mut Command) -> f64 {
    let out = cmd.stderr(Stdio::null()).output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ns/yield: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("an ns/yield line")
}

fn median<T: PartialOrd + Copy>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name this
    // bench means another one was asked for.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"solo5".contains(a.as_str()))
    {
        return;
    }
    let prepared = (|| {
        Ok::<_, String>((
            solo5_root()?,
            build_image("hello")?,
            build_image("solo5_yield")?,
            build_hosted("hello")?,
            build_hosted("solo5_yield")?,
        ))
    })();
    let (root, hello_spt, yield_spt, hello, yield_hosted) = match prepared {
        Ok(p) => p,
        Err(e) => {
            println!("solo5 bench SKIPPED: {e}");
            return;
        }
    };
    let tender = root.join("tenders/spt/solo5-spt");

    let mut spt = (Vec::new(), Vec::new());
    let mut hosted = (Vec::new(), Vec::new());
    for _ in 0..BOOT_RUNS {
        let (m, e) = boot(Command::new(&tender).arg(&hello_spt), "Hello World!");
        spt.0.push(m);
        spt.1.push(e);
        let (m, e) = boot(&mut Command::new(&hello), "Hello World!");
        hosted.0.push(m);
        hosted.1.push(e);
    }
    let mut y_spt = Vec::new();
    let mut y_hosted = Vec::new();
    for _ in 0..YIELD_RUNS {
        y_spt.push(yield_ns(Command::new(&tender).arg(&yield_spt).arg(YIELDS)));
        y_hosted.push(yield_ns(Command::new(&yield_hosted).args(["--", YIELDS])));
    }

    println!();
    println!(
        "solo5 bench (medians; boot: {BOOT_RUNS} runs, yield: {YIELD_RUNS} runs of 2x{YIELDS})"
    );
    println!("{:<34} {:>14} {:>14}", "", "solo5-spt", "hosted");
    println!(
        "{:<34} {:>14} {:>14}",
        "hello: boot to main (first line)",
        us(median(spt.0)),
        us(median(hosted.0))
    );
    println!(
        "{:<34} {:>14} {:>14}",
        "hello: boot to exit",
        us(median(spt.1)),
        us(median(hosted.1))
    );
    println!(
        "{:<34} {:>14} {:>14}",
        "yield ping-pong (2 tasks)",
        format!("{:.1} ns/yield", median(y_spt)),
        format!("{:.1} ns/yield", median(y_hosted))
    );
}

//! Shared by the Solo5 tests: running `cargo mkernel` and commands with a
//! time limit (a tender must never hang a test run).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cargo mkernel ARGS` from the repository (the tool from source, as
/// the `.cargo/config.toml` alias does). Panics with its stderr on failure.
pub fn cargo_mkernel(args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(env!("CARGO"))
            .args(["run", "-q", "-p", "cargo-mkernel", "--"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(900),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo mkernel {args:?} failed: {}\n{stderr}",
        out.status
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Builds `example` for `target` and returns the image path (the last line
/// `cargo mkernel build` prints).
pub fn build_image(target: &str, example: &str) -> PathBuf {
    let out = cargo_mkernel(&["build", "--target", target, "--example", example]);
    let path = PathBuf::from(out.lines().last().expect("an image path").trim());
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// The built Solo5 tree (tenders, elftool).
pub fn solo5_root() -> PathBuf {
    PathBuf::from(cargo_mkernel(&["solo5"]).trim())
}

/// Runs `cmd`, killing it after `limit` (then panics).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Drain the pipes in threads so a chatty child cannot block on them.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).ok();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The application's output in a Solo5 console transcript: what follows
/// Solo5's banner and memory map, without Solo5's own exit line.
pub fn app_output(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Solo5:") && l.contains("heap >="))
        .map_or(0, |i| i + 1);
    lines[start..]
        .iter()
        .filter(|l| !l.starts_with("Solo5: solo5_exit("))
        .map(|l| format!("{l}\n"))
        .collect()
}

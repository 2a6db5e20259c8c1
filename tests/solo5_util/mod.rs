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

/// The lines the Solo5 bindings print on the console (the tender's stdout)
/// before the application starts, at the default log level (the
/// application can silence them with `--solo5:quiet` as its first
/// argument): the logo (4 lines) and the bindings version from
/// `bindings/{spt,hvt}/start.c`, then the memory map from `bindings/mem.c`.
/// `false`: only the start is fixed (version, addresses follow).
const BANNER: [(&str, bool); 11] = [
    ("            |      ___|", true),
    ("  __|  _ \\  |  _ \\ __ \\", true),
    ("\\__ \\ (   | | (   |  ) |", true),
    ("____/\\___/ _|\\___/____/", true),
    ("Solo5: Bindings version ", false),
    ("Solo5: Memory map: ", false),
    ("Solo5:   reserved @ (", false),
    ("Solo5:       text @ (", false),
    ("Solo5:     rodata @ (", false),
    ("Solo5:       data @ (", false),
    ("Solo5:       heap >= ", false),
];

/// The application's output in a Solo5 console transcript.
///
/// The rule (Solo5 v0.7.2): the bindings print exactly the 11 lines of
/// [`BANNER`] before `solo5_app_main`, and one line after it,
/// `Solo5: solo5_exit(N) called` (`bindings/exit.c`; `solo5_abort() called`
/// on abort). Nothing else of Solo5's reaches stdout: the tender writes its
/// own messages to stderr. Panics if the transcript does not have that
/// shape, so a change in Solo5 shows up here rather than as a diff.
pub fn app_output(console: &str) -> String {
    let mut rest = console;
    for (i, (text, exact)) in BANNER.iter().enumerate() {
        let (line, tail) = rest
            .split_once('\n')
            .unwrap_or_else(|| panic!("Solo5 banner line {i} missing in:\n{console}"));
        let ok = if *exact {
            line == *text
        } else {
            line.starts_with(text)
        };
        assert!(
            ok,
            "Solo5 banner line {i}: expected {text:?}, got {line:?} in:\n{console}"
        );
        rest = tail;
    }
    // The exit line follows the application's last byte (on a line of its
    // own when the application ended with a newline).
    let pos = rest
        .rfind("Solo5: solo5_exit(")
        .or_else(|| rest.rfind("Solo5: solo5_abort() called"))
        .unwrap_or_else(|| panic!("no Solo5 exit line in:\n{console}"));
    let trailer = &rest[pos..];
    let code = trailer
        .strip_prefix("Solo5: solo5_exit(")
        .and_then(|t| t.strip_suffix(") called\n"));
    assert!(
        code.is_some_and(|c| c.parse::<i32>().is_ok())
            || trailer == "Solo5: solo5_abort() called\n",
        "the transcript does not end with Solo5's exit line:\n{console}"
    );
    rest[..pos].to_string()
}

/// Runs the hosted example `example` (`cargo run`), with `args` as its
/// command line, for at most `limit`.
pub fn hosted(example: &str, args: &[&str], limit: Duration) -> Output {
    run_with_timeout(
        Command::new(env!("CARGO"))
            .args(["run", "-q", "--example", example, "--"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        limit,
    )
}

/// The application's output in the console transcript of a tender that was
/// killed (a server stopped by a signal): the banner is stripped as in
/// [`app_output`], and there must be no exit line (the application did not
/// exit).
pub fn app_output_until_killed(console: &str) -> String {
    let out = app_output(&format!("{console}Solo5: solo5_exit(0) called\n"));
    assert!(
        !out.contains("Solo5: solo5_"),
        "the application exited before being killed:\n{console}"
    );
    out
}

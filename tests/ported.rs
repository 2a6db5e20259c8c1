//! The programs ported from OCaml (`examples/philosophers.rs`,
//! `examples/echo_orphans.rs`, `examples/block_cached.rs`): each prints what
//! `tests/ported/NAME.expected` says, hosted and as a Solo5 spt unikernel.
//!
//! The expected files, and how they relate to the OCaml programs:
//!
//! - `block_cached.expected` is the output the cram test of mkernel
//!   (`test/solo5.t`) expects of `block.exe`, unchanged: the MD5 of the two
//!   first 512-byte pages of that test's disk image (`tests/ported/simple.txt`,
//!   copied from mkernel's `test/simple.txt`), each after its offset.
//! - `philosophers.expected`: Miou's philosophers have no cram test (they
//!   print every step, at random durations, for 30 s). The port prints a
//!   summary instead, the same on every run: the dinner stops once everyone
//!   has eaten a few times, each philosopher's task is cancelled (its
//!   destructor prints that it leaves), and `join_first` cancels the timer.
//! - `echo_orphans.expected`: mnet's echo unikernel has no cram test either
//!   (its client checks the echo and exits with 1 if it differs). The port
//!   runs the server and the clients in one program, and prints one line per
//!   client plus the server's account of its orphans.

#[path = "solo5_util/mod.rs"]
mod util;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use util::Target::Spt;

fn example(name: &str) -> PathBuf {
    util::example_binary(name)
}

fn expected(name: &str) -> String {
    let path = format!(
        "{}/tests/ported/{name}.expected",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs the hosted example with `args` (at most 60 s) and asserts it
/// succeeds printing exactly the expected file.
fn hosted_prints_expected(name: &str, args: &[&str]) {
    let out = util::run_with_timeout(
        Command::new(example(name)).args(args),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, expected(name), "{name}: output (left) vs expected");
}

fn simple_txt() -> String {
    format!("{}/tests/ported/simple.txt", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn block_cached_prints_the_cram_expectation() {
    hosted_prints_expected("block_cached", &[&format!("--block:0={}", simple_txt())]);
}

#[test]
fn philosophers_print_the_same_summary_every_time() {
    for _ in 0..3 {
        hosted_prints_expected("philosophers", &[]);
    }
}

#[test]
fn echo_orphans_prints_the_same_account_every_time() {
    for _ in 0..3 {
        hosted_prints_expected("echo_orphans", &[]);
    }
}

#[test]
fn block_cached_spt() {
    let app = util::example_matches_hosted(Spt, "block_cached");
    assert_eq!(app, expected("block_cached"));
}

#[test]
fn philosophers_spt() {
    let app = util::example_matches_hosted(Spt, "philosophers");
    assert_eq!(app, expected("philosophers"));
}

/// The unikernel uses its in-memory link, but the tender wants both
/// declared net devices attached: a namespace with two TAPs gives them.
#[test]
fn echo_orphans_spt() {
    if let Some(why) = util::cannot_make_netns() {
        util::say_skipped(&why);
        return;
    }
    let ns = util::Netns::new("echo", None);
    let tap2 = format!("{}b", ns.tap);
    for args in [
        &["tuntap", "add", "dev", tap2.as_str(), "mode", "tap"][..],
        &["link", "set", tap2.as_str(), "up"][..],
    ] {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ip"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let opts = [
        format!("--net:service={}", ns.tap),
        format!("--net:client={tap2}"),
    ];
    let out = Spt.run(Some(&ns), "echo_orphans", &opts, &[]);
    let app = Spt.app_output("echo_orphans", &out);
    assert_eq!(app, expected("echo_orphans"));
}

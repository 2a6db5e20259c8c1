//! The examples as Solo5 spt unikernels print exactly what the hosted
//! programs print (Solo5's own banner and exit line stripped, see
//! `util::app_output`), and exit with the same status.
//!
//! Each test builds its image with `cargo mkernel` (the first one also
//! builds Solo5 into target/solo5). The hvt images of the same examples are
//! built and checked in `tests/solo5_hvt.rs`; the servers `echo` and
//! `httpd` (which need a TAP, and run until stopped) are compared in
//! `tests/solo5_net.rs`.

#[path = "solo5_util/mod.rs"]
mod util;

use std::process::Command;
use std::time::Duration;

/// Runs `example` hosted (`./example HOSTED_ARGS`) and under solo5-spt
/// (`solo5-spt TENDER_OPTS example.spt SPT_ARGS`) and compares.
fn same_output(example: &str, hosted_args: &[&str], tender_opts: &[String], spt_args: &[&str]) {
    let image = util::build_image("spt", example);
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let spt = util::run_with_timeout(
        Command::new(&tender)
            .args(tender_opts)
            .arg(&image)
            .args(spt_args),
        Duration::from_secs(60),
    );
    let console = String::from_utf8_lossy(&spt.stdout);
    let hosted = util::hosted(example, hosted_args, Duration::from_secs(600));
    let hosted_out = String::from_utf8_lossy(&hosted.stdout);
    assert!(
        hosted.status.success(),
        "hosted {example} failed: {}\n{hosted_out}\n{}",
        hosted.status,
        String::from_utf8_lossy(&hosted.stderr)
    );
    assert!(
        spt.status.success(),
        "solo5-spt {example} exited with {}:\n{console}\n{}",
        spt.status,
        String::from_utf8_lossy(&spt.stderr)
    );
    assert!(!hosted_out.is_empty(), "hosted {example} printed nothing");
    assert_eq!(
        util::app_output(&console),
        hosted_out,
        "{example}: spt output (left) differs from hosted (right)"
    );
}

#[test]
fn hello() {
    same_output("hello", &[], &[], &[]);
}

#[test]
fn schedule() {
    same_output("schedule", &[], &[], &[]);
}

#[test]
fn sleep() {
    same_output("sleep", &[], &[], &[]);
}

#[test]
fn cmdline() {
    // Hosted, the application's arguments follow `--`; under the tender,
    // they follow the image.
    same_output(
        "cmdline",
        &["--", "Hello", "World", "x=1"],
        &[],
        &["Hello", "World", "x=1"],
    );
}

#[test]
fn block() {
    let disk = util::Disk::pattern("block", 8);
    let flag = disk.flag("disk");
    same_output("block", &[&flag], std::slice::from_ref(&flag), &[]);
}

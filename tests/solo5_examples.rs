//! The examples as Solo5 spt unikernels print exactly what the hosted
//! programs print (Solo5's own banner and exit line stripped, see
//! `util::app_output`), and exit with the same status.
//!
//! Each test builds its image with `cargo mkernel` (the first one also
//! builds Solo5 into target/solo5); `util::example_matches_hosted` runs it
//! under solo5-spt and hosted, with the same input, and compares. The same
//! examples are checked under virtio in `tests/virtio_examples.rs`; their
//! hvt images are built and checked in `tests/solo5_hvt.rs`; the servers
//! `echo` and `httpd` (which need a TAP, and run until stopped) are
//! compared in `tests/solo5_net.rs`.

#[path = "solo5_util/mod.rs"]
mod util;

use util::Target::Spt;

#[test]
fn hello() {
    util::example_matches_hosted(Spt, "hello");
}

#[test]
fn schedule() {
    util::example_matches_hosted(Spt, "schedule");
}

#[test]
fn sleep() {
    util::example_matches_hosted(Spt, "sleep");
}

#[test]
fn cmdline() {
    util::example_matches_hosted(Spt, "cmdline");
}

#[test]
fn block() {
    util::example_matches_hosted(Spt, "block");
}

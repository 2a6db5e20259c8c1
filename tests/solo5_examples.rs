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

#[path = "random_util/mod.rs"]
mod random_util;

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

/// `examples/random` under spt: every source of randomness is real in a
/// unikernel (`mkernel::fill_random` from the CPU, the `getrandom` crate
/// through the shim's `dlsym` and `getrandom`, std's `HashMap` keys): two
/// runs of one image print well-formed, different bytes.
#[test]
fn random() {
    let image = util::build_image("spt", "random");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let runs: Vec<Vec<String>> = (0..2)
        .map(|_| {
            let out = util::run_with_timeout(
                std::process::Command::new(&tender).arg(&image),
                std::time::Duration::from_secs(60),
            );
            let app = Spt.app_output("random", &out);
            random_util::parse(&app)
        })
        .collect();
    random_util::assert_differ(&runs[0], &runs[1]);
}

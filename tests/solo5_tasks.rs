//! `examples/solo5_tasks` (a panicking task reported to its parent, a task
//! cancelled in `Net::read` running its destructors, a deferred block write
//! completing) prints the same hosted and as a solo5-spt unikernel (the
//! check is `util::solo5_tasks_matches_hosted`, shared with
//! `tests/virtio_tasks.rs`).
//!
//! Needs root and /dev/net/tun: the TAP lives in a network namespace made
//! for the test (deleted on every exit path), so no frame leaves it; the
//! program only waits on it. Skips with the reason otherwise.

#[path = "solo5_util/mod.rs"]
mod util;

#[test]
fn tasks_example_under_spt_matches_hosted() {
    util::solo5_tasks_matches_hosted(util::Target::Spt);
}

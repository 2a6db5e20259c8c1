//! `examples/solo5_tasks` (a panicking task reported to its parent, a task
//! cancelled in `Net::read` running its destructors, a deferred block write
//! completing) prints the same hosted and as a Solo5 virtio unikernel under
//! QEMU (virtio-net on a TAP, virtio-blk on a file): the spt test of
//! `tests/solo5_tasks.rs`, on the third platform.
//!
//! Needs root and /dev/net/tun: the TAP lives in a network namespace made
//! for the test (deleted on every exit path), so no frame leaves it; the
//! program only waits on it. Skips with the reason otherwise.

#[path = "solo5_util/mod.rs"]
mod util;

use std::path::Path;
use std::time::Duration;

#[test]
fn tasks_example_under_virtio_matches_hosted() {
    if let Some(why) = util::cannot_make_netns() {
        println!("SKIPPED: {why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    util::build_image("virtio", "solo5_tasks");
    let ns = util::Netns::new("vt", None);
    let net = format!("--net:service={}", ns.tap);

    let disk = util::Disk::with("virtio-tasks-hosted", &[0; 16 * 512]);
    let block = disk.flag("disk");
    let hosted = util::run_with_timeout(
        ns.command(Path::new(env!("CARGO")))
            .args(["run", "-q", "--example", "solo5_tasks", "--", &net, &block])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(120),
    );
    let hosted_out = String::from_utf8_lossy(&hosted.stdout).into_owned();
    assert!(
        hosted.status.success(),
        "hosted: {}\n{hosted_out}\n{}",
        hosted.status,
        String::from_utf8_lossy(&hosted.stderr)
    );

    let disk = util::Disk::with("virtio-tasks-vm", &[0; 16 * 512]);
    let vm = util::virtio(Some(&ns), "solo5_tasks", &[net, disk.flag("disk")], &[]);
    let console = String::from_utf8_lossy(&vm.stdout);
    assert!(
        vm.status.success(),
        "virtio: {}\n{console}\n{}",
        vm.status,
        String::from_utf8_lossy(&vm.stderr)
    );
    drop(ns);

    // The behaviour itself, then the equality.
    for line in [
        "drop: the panicking task's guard\n",
        "panic: parent got Err(Panicked(Some(\"boom\")))\n",
        "panic: Ok(\"sibling finished\")\npanic: sibling steps 3\n",
        "net: reader waiting in read: true\ndrop: the net reader's guard\n\
         net: cancelled reader: Err(Cancelled)\n",
        "block: busy 0, busy 1, busy 2, write done: Ok(())\n",
        "block: atomic read Ok(()), same data: true\n",
    ] {
        assert!(
            hosted_out.contains(line),
            "hosted lacks {line:?}:\n{hosted_out}"
        );
    }
    assert_eq!(
        console, hosted_out,
        "virtio (left) differs from hosted (right)"
    );
}

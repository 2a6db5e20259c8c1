//! `examples/solo5_tasks` (a panicking task reported to its parent, a task
//! cancelled in `Net::read` running its destructors, a deferred block write
//! completing) prints the same hosted and as a solo5-spt unikernel.
//!
//! Needs root and /dev/net/tun: the TAP lives in a network namespace made
//! for the test (deleted on every exit path), so no frame leaves it; the
//! program only waits on it. Skips with the reason otherwise.

#[path = "solo5_util/mod.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A zeroed 16-sector disk image, removed when dropped.
struct Disk(PathBuf);

impl Disk {
    fn new(tag: &str) -> Disk {
        let p = std::env::temp_dir().join(format!(
            "mkernel-solo5-tasks-{tag}-{}.img",
            std::process::id()
        ));
        std::fs::write(&p, vec![0u8; 16 * 512]).expect("disk image");
        Disk(p)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn tasks_example_under_spt_matches_hosted() {
    if let Some(why) = util::cannot_make_netns() {
        println!("SKIPPED: {why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let image = util::build_image("spt", "solo5_tasks");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let ns = util::Netns::new("task", None);
    let net = format!("--net:service={}", ns.tap);

    let disk = Disk::new("hosted");
    let block = format!("--block:disk={}", disk.0.display());
    let hosted = util::run_with_timeout(
        ns.command(Path::new(env!("CARGO")))
            .args(["run", "-q", "--example", "solo5_tasks", "--", &net, &block])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(60),
    );
    let hosted_out = String::from_utf8_lossy(&hosted.stdout).into_owned();
    assert!(
        hosted.status.success(),
        "hosted: {}\n{hosted_out}\n{}",
        hosted.status,
        String::from_utf8_lossy(&hosted.stderr)
    );

    let disk = Disk::new("spt");
    let block = format!("--block:disk={}", disk.0.display());
    let spt = util::run_with_timeout(
        ns.command(&tender).args([&net, &block]).arg(&image),
        Duration::from_secs(60),
    );
    let console = String::from_utf8_lossy(&spt.stdout);
    assert!(
        spt.status.success(),
        "solo5-spt: {}\n{console}\n{}",
        spt.status,
        String::from_utf8_lossy(&spt.stderr)
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
    assert_eq!(util::app_output(&console), hosted_out);
}

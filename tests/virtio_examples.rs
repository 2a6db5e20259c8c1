//! The examples as Solo5 virtio unikernels, booted by `cargo mkernel run
//! --target virtio` (QEMU in software emulation), print exactly what the
//! hosted programs print, and exit with the program's own status.
//!
//! The unikernel runs with `--solo5:quiet`, so the console (serial, CRLF
//! turned into LF by cargo-mkernel) holds only the program's output. QEMU
//! is bounded by `--timeout` inside cargo-mkernel and by the test's own
//! limit around it.
//!
//! `util::example_matches_hosted` runs each example both ways, with the
//! same input, and compares (as `tests/solo5_examples.rs` does under
//! solo5-spt); the tests after those five are virtio's own.

#[path = "solo5_util/mod.rs"]
mod util;

use std::time::Duration;
use util::Target::Virtio;

#[test]
fn hello() {
    util::example_matches_hosted(Virtio, "hello");
}

#[test]
fn schedule() {
    util::example_matches_hosted(Virtio, "schedule");
}

#[test]
fn sleep() {
    util::example_matches_hosted(Virtio, "sleep");
}

#[test]
fn cmdline() {
    util::example_matches_hosted(Virtio, "cmdline");
}

#[test]
fn block() {
    util::example_matches_hosted(Virtio, "block");
}

/// The exit status is the program's own, not QEMU's: `process::exit(3)`
/// gives 3, a panic in `main` std's 101, as hosted; a status above 125
/// (beyond the 7 bits QEMU's debug-exit port carries) is read from Solo5's
/// exit line when the console has one.
#[test]
fn exit_status_is_the_programs() {
    util::build_image("virtio", "exit_status");
    for (arg, want) in [("3", 3), ("panic", 101), ("0", 0)] {
        let hosted = util::hosted("exit_status", &["--", arg], Duration::from_secs(600));
        assert_eq!(hosted.status.code(), Some(want), "hosted exit_status {arg}");
        let vm = util::virtio(None, "exit_status", &[], &[arg]);
        let console = String::from_utf8_lossy(&vm.stdout);
        assert_eq!(
            vm.status.code(),
            Some(want),
            "virtio exit_status {arg}:\n{console}\n{}",
            String::from_utf8_lossy(&vm.stderr)
        );
        // The panic message goes to stderr hosted, to the console on Solo5.
        assert!(
            console.starts_with(&*String::from_utf8_lossy(&hosted.stdout)),
            "virtio exit_status {arg}: {console:?}"
        );
    }
    // Without --solo5:quiet: the full status from Solo5's exit line.
    let out = util::run_with_timeout(
        std::process::Command::new(env!("CARGO"))
            .args(["run", "-q", "-p", "cargo-mkernel", "--", "run"])
            .args(["--target", "virtio", "--example", "exit_status"])
            .args(["--timeout=60", "--", "200"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(120),
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(200), "{console}");
    assert!(
        console.ends_with("exit_status: 200\nSolo5: solo5_exit(200) called\n"),
        "{console}"
    );
}

/// QEMU's own failure (here: guest memory it cannot allocate, beyond the
/// 128 TiB of a process's address space) is reported as a failure, not as
/// a unikernel that exited with 0 (QEMU exits with 1, which a debug-exit
/// status never gives).
#[test]
fn qemu_failure_is_not_a_clean_exit() {
    util::build_image("virtio", "hello");
    let out = util::virtio(None, "hello", &["--mem=200000000".into()], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("QEMU failed"), "{err}");
    assert!(out.stdout.is_empty(), "the guest never ran");
}

/// A rebuild never exposes a missing or half-written image: it links
/// elsewhere and renames, so a QEMU (or tender) loading the image
/// meanwhile, e.g. a test booting it while another test rebuilds it, reads
/// a whole image. A reader opening the path in a loop during rebuilds
/// always finds it, with the same bytes (the link is reproducible); the
/// rebuilds leave no scratch files behind (a directory per running
/// cargo-mkernel, named after its PID: others may be building now).
#[test]
fn rebuild_replaces_the_image_whole() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let path = util::build_image("virtio", "cmdline");
    let whole = std::fs::read(&path).unwrap();
    let done = AtomicBool::new(false);
    let (reads, bad) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut reads, mut bad) = (0u32, Vec::new());
            while !done.load(Ordering::Relaxed) {
                reads += 1;
                match std::fs::read(&path) {
                    Ok(b) if b == whole => {}
                    Ok(b) => bad.push(format!("{} bytes of {}", b.len(), whole.len())),
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (reads, bad)
        });
        for _ in 0..3 {
            assert_eq!(util::build_image("virtio", "cmdline"), path);
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(
        bad.is_empty(),
        "{} of {reads} reads during rebuilds saw no whole image: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    let scratch = path.with_file_name("cmdline.mkernel");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let dead: Vec<_> = left
        .iter()
        .filter_map(|n| n.to_string_lossy().parse::<u32>().ok())
        .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        .collect();
    assert!(
        dead.is_empty(),
        "scratch directories of finished builds left in {}: {dead:?}",
        scratch.display()
    );
}

/// Device options Solo5 virtio cannot honour are refused before QEMU starts.
#[test]
fn refuses_two_block_devices_and_unknown_names() {
    util::build_image("virtio", "block");
    let a = util::Disk::pattern("virtio-two-a", 1);
    let b = util::Disk::pattern("virtio-two-b", 1);
    for (opts, msg) in [
        (vec![a.flag("disk"), b.flag("disk")], "one block device"),
        (vec![a.flag("dsk")], "no block device named \"dsk\""),
        (vec![], "add `--block:disk=FILE`"),
    ] {
        let out = util::virtio(None, "block", &opts, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{opts:?}: {err}");
        assert!(err.contains(msg), "{opts:?}: {err}");
    }
}

/// QEMU never outlives `--timeout`: killed, status 124 (as timeout(1)).
#[test]
fn timeout_kills_qemu() {
    util::build_image("virtio", "sleep");
    let out = util::run_with_timeout(
        std::process::Command::new(env!("CARGO"))
            .args(["run", "-q", "-p", "cargo-mkernel", "--", "run"])
            .args(["--target", "virtio", "--example", "sleep", "--timeout=0"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(120),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{err}");
    assert!(err.contains("QEMU killed"), "{err}");
}

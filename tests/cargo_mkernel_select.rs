//! `cargo mkernel` without `--bin` or `--example` picks the package's only
//! binary, as `cargo run` does, and lists the binaries when there are
//! several. Each test makes a crate of its own that depends on mkernel by
//! path, and runs the tool inside it.

mod cargo_mkernel_util;
mod solo5_util;

use std::time::Duration;

use cargo_mkernel_util::{cargo_mkernel, temp_crate};
use solo5_util::{app_output, run_with_timeout};

const HI: &str = "fn main() {\n    mkernel::run((), |()| println!(\"hi\"));\n}\n";

/// One binary (`src/main.rs`): `manifest`, `build --target spt` and
/// `run --target spt` work without naming it, and the image is named after
/// it.
#[test]
fn the_only_binary_is_built_and_run() {
    let dir = temp_crate("cmk-onlybin", &[("src/main.rs", HI)]);
    let limit = Duration::from_secs(900);

    let out = run_with_timeout(&mut cargo_mkernel(&dir, &["manifest"]), limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo mkernel manifest failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        r#"{"type":"solo5.manifest","version":1,"devices":[]}"#
    );

    let out = run_with_timeout(
        &mut cargo_mkernel(&dir, &["build", "--target", "spt"]),
        limit,
    );
    assert!(
        out.status.success(),
        "cargo mkernel build --target spt failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let image = stdout.lines().last().expect("the image path").trim();
    assert!(image.ends_with("/cmk-onlybin.spt"), "{image}");
    assert!(std::path::Path::new(image).is_file(), "{image}");

    let out = run_with_timeout(&mut cargo_mkernel(&dir, &["run", "--target", "spt"]), limit);
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo mkernel run --target spt failed: {}\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app_output(&console), "hi\n");
}

/// Two binaries and none chosen: an error naming both, before building
/// anything.
#[test]
fn several_binaries_are_listed() {
    let dir = temp_crate(
        "cmk-twobins",
        &[("src/bin/alpha.rs", HI), ("src/bin/beta.rs", HI)],
    );
    let out = run_with_timeout(
        &mut cargo_mkernel(&dir, &["build", "--target", "spt"]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the package `cmk-twobins` has several binaries (alpha, beta)"),
        "{stderr}"
    );
    assert!(stderr.contains("--bin NAME"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

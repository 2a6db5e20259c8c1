//! `examples/solo5_smoke` as a Solo5 spt unikernel prints exactly what the
//! hosted program prints (std, unwinding, thread-locals, corosensei's forced
//! unwind, args), and the libc shim covers every C symbol std needs.
//!
//! Needs what `cargo mkernel` needs to build Solo5 (cc, make, binutils,
//! pkg-config, libseccomp-dev); the first run builds Solo5 and the Rust
//! side into target/, later runs reuse them.

#[path = "solo5_util/mod.rs"]
mod util;

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn smoke_example_under_spt_matches_hosted() {
    let image = util::build_image("spt", "solo5_smoke");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");

    let started = Instant::now();
    let spt = util::run_with_timeout(
        Command::new(&tender).arg(&image).args(["first", "second"]),
        Duration::from_secs(60),
    );
    let elapsed = started.elapsed();
    let console = String::from_utf8_lossy(&spt.stdout);
    assert!(
        spt.status.success(),
        "solo5-spt exited with {}:\n{console}\n{}",
        spt.status,
        String::from_utf8_lossy(&spt.stderr)
    );
    println!("spt boot-to-exit (tender process): {elapsed:?}");

    // The hosted twin, built by `cargo mkernel` for the manifest.
    let hosted = util::run_with_timeout(
        Command::new(env!("CARGO"))
            .args([
                "run",
                "-q",
                "--example",
                "solo5_smoke",
                "--",
                "first",
                "second",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(600),
    );
    assert!(hosted.status.success());
    let hosted = String::from_utf8_lossy(&hosted.stdout).into_owned();

    assert_eq!(util::app_output(&console), hosted);
    assert!(hosted.contains("drop in coroutine"), "{hosted}");
}

#[test]
fn shim_provides_every_symbol_std_needs() {
    // Linked without the shim: what is left undefined is what std, the
    // unwinder and corosensei need from a C library.
    let needed = util::cargo_mkernel(&["symbols", "--example", "solo5_smoke"]);
    let needed: Vec<&str> = needed.lines().collect();
    println!("C symbols needed without the shim: {needed:?}");
    assert!(needed.contains(&"memcpy"), "{needed:?}");

    // Each must be defined in the real image.
    let image = util::build_image("spt", "solo5_smoke");
    let nm = Command::new("nm")
        .arg("--defined-only")
        .arg(&image)
        .output()
        .expect("nm");
    let defined = String::from_utf8_lossy(&nm.stdout);
    let defined: std::collections::HashSet<&str> = defined
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let missing: Vec<&&str> = needed.iter().filter(|s| !defined.contains(**s)).collect();
    assert!(missing.is_empty(), "the shim lacks {missing:?}");
}

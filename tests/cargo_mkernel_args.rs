//! `cargo mkernel` and command lines: a program that parses its arguments
//! before `mkernel::run` is told what to change, and `cargo mkernel run`
//! refuses by name the flags that a hosted program takes but the chosen
//! target's tender does not (rather than the tender's "Invalid option").

mod cargo_mkernel_util;
mod solo5_util;

use std::time::Duration;

use cargo_mkernel_util::{cargo_mkernel, repo, temp_crate};
use solo5_util::run_with_timeout;

/// A program as one written with clap and a required flag: it parses its
/// command line first and exits 2 without it.
const PARSES_FIRST: &str = r#"fn main() {
    if !std::env::args().any(|a| a.starts_with("--port")) {
        eprintln!("error: the following required arguments were not provided:\n  --port <PORT>");
        std::process::exit(2);
    }
    mkernel::run((), |()| println!("hi"));
}
"#;

#[test]
fn a_program_that_parses_its_arguments_first_is_told_what_to_change() {
    let dir = temp_crate("cmk-parsefirst", &[("src/main.rs", PARSES_FIRST)]);
    let out = run_with_timeout(
        &mut cargo_mkernel(&dir, &["manifest"]),
        Duration::from_secs(900),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for want in [
        "cmk-parsefirst exited with status 2 before printing its manifest",
        "it probably parses its command line before mkernel::run",
        "Parse mkernel::args() inside the main function given to mkernel::run",
        "or skip parsing when MKERNEL_MANIFEST=1 is set",
        // The program's own stderr.
        "Its stderr:\nerror: the following required arguments were not provided:\n  --port <PORT>",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `--block-sector-size:` exists only hosted (no Solo5 tender has it), and
/// `--solo5:quiet` belongs after `--`: refused before anything is built,
/// naming the flag and the target.
/// Runs `cargo mkernel run --target TARGET ARGS` and asserts it is refused
/// (status 1) before anything is built, and not by the tender's own
/// "Invalid option"; returns its stderr.
fn refused(target: &str, args: &[&str]) -> String {
    let mut argv = vec!["run", "--target", target];
    argv.extend_from_slice(args);
    let out = run_with_timeout(&mut cargo_mkernel(repo(), &argv), Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{target}: {stderr}");
    assert!(!stderr.contains("Invalid option"), "{stderr}");
    assert!(!stderr.contains("Compiling"), "built something: {stderr}");
    stderr
}

#[test]
fn flags_a_target_lacks_are_refused_by_name() {
    for target in ["spt", "hvt", "virtio"] {
        let stderr = refused(
            target,
            &[
                "--example",
                "block",
                "--block:disk=disk.img",
                "--block-sector-size:disk=4096",
            ],
        );
        assert!(
            stderr.contains(&format!(
                "`--block-sector-size:disk=4096`: the Solo5 {target} target has no \
                 sector-size option"
            )),
            "{target}: {stderr}"
        );
        assert!(
            stderr.contains("exists only for a hosted mkernel program"),
            "{stderr}"
        );

        let stderr = refused(target, &["--example", "hello", "--solo5:quiet"]);
        assert!(
            stderr.contains(&format!(
                "`--solo5:quiet` is an option of the Solo5 bindings inside the unikernel, \
                 not of the {target} tender: put it first after `--`"
            )),
            "{target}: {stderr}"
        );
    }
}

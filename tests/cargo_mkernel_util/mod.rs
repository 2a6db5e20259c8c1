//! Shared by the `cargo_mkernel_*` tests: small crates of their own that
//! depend on mkernel (by path, as a user's crate would), and the
//! `cargo-mkernel` executable run inside them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository (the `mkernel` package and the workspace).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's target directory (`CARGO_TARGET_TMPDIR` is its `tmp`).
/// The test crates build there too, so that they reuse the workspace's
/// builds of mkernel's dependencies and its Solo5 tree.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is <target>/tmp")
        .to_path_buf()
}

/// The `cargo-mkernel` executable, built from source once per test binary.
pub fn tool() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "cargo-mkernel"])
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", target_dir())
            .status()
            .expect("cannot run cargo");
        assert!(status.success(), "building cargo-mkernel failed: {status}");
        let exe = target_dir().join("debug/cargo-mkernel");
        assert!(exe.is_file(), "{} is not a file", exe.display());
        exe
    })
}

/// `cargo mkernel ARGS` as cargo runs the subcommand, inside `dir`, with the
/// workspace's target directory.
pub fn cargo_mkernel(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(tool());
    c.arg("mkernel")
        .args(args)
        .current_dir(dir)
        .env("CARGO", env!("CARGO"))
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS");
    c
}

/// Creates (afresh) the crate `name` under `CARGO_TARGET_TMPDIR`, depending
/// on mkernel by path, with `files` (path, contents) such as
/// `("src/main.rs", "...")`. The workspace's `Cargo.lock` is copied so that
/// it resolves to the same versions without asking the registry.
pub fn temp_crate(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
mkernel = {{ path = {repo:?} }}

# Not a member of the mkernel workspace above it.
[workspace]

# As the workspace's, so that the shared target directory's builds match.
[profile.release]
debug = 1
"#,
        repo = repo().display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

/// A process seen in /proc.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    /// The process group.
    pub pgrp: i32,
    /// The state letter (`Z`: a zombie, dead but not reaped).
    pub state: char,
    pub cmdline: Vec<String>,
}

/// Reads /proc/PID (`None` once the process is gone).
pub fn proc_info(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID PGRP ...": COMM may hold blanks and parens.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(Proc {
        pid,
        pgrp,
        state,
        cmdline,
    })
}

/// The live (not zombie) processes of the process group `pgrp` whose
/// program (first argument) ends with `program` and whose command line
/// mentions `word`.
pub fn live_in_group(pgrp: i32, program: &str, word: &str) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_info)
        .filter(|p| p.pgrp == pgrp && p.state != 'Z')
        .filter(|p| p.cmdline.first().is_some_and(|a| a.ends_with(program)))
        .filter(|p| p.cmdline.iter().any(|a| a.contains(word)))
        .collect()
}

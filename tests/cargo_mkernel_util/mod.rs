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

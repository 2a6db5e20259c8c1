//! The layer map of `src/lib.rs` holds: `scripts/check-layers` passes on
//! the tree, and fails on a copy with an upward import, with `unsafe` code
//! in a module the map does not name, and with a platform `cfg` outside
//! the OS seam.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(root: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo().join("scripts/check-layers"))
        .arg(root)
        .output()
        .expect("python3 runs scripts/check-layers");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// A copy of `src/` with `edit` applied to one file.
fn mutated(file: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mk-layers-{}-{}",
        std::process::id(),
        file.replace('/', "_")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    copy(&repo().join("src"), &dir.join("src"));
    let p = dir.join("src").join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, edit(text)).unwrap();
    dir
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

#[test]
fn the_tree_follows_its_layer_map() {
    let (ok, text) = check(&repo());
    assert!(ok, "{text}");
    assert!(text.contains("imports run down"), "{text}");
}

#[test]
fn an_upward_import_fails() {
    // The scheduler (layer 2) reaching up into the reactor (layer 3).
    let dir = mutated("fiber/run_loop.rs", |t| {
        format!("#[allow(unused_imports)]\nuse crate::reactor::ReactorEvents;\n{t}")
    });
    let (ok, text) = check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{text}");
    assert!(
        text.contains("`fiber` (layer 2) imports `reactor` (layer 3)"),
        "{text}"
    );
}

#[test]
fn a_sideways_import_fails() {
    // net and block are one layer: neither may use the other.
    let dir = mutated("net/device.rs", |t| {
        format!("use crate::block::Block;\n{t}")
    });
    let (ok, text) = check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{text}");
    assert!(
        text.contains("`net` (layer 4) imports `block` (layer 4)"),
        "{text}"
    );
}

#[test]
fn unsafe_outside_the_named_modules_fails() {
    let dir = mutated("net/link.rs", |t| format!("#![allow(unsafe_code)]\n{t}"));
    let (ok, text) = check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{text}");
    assert!(text.contains("`net::link` allows unsafe code"), "{text}");
}

#[test]
fn a_platform_cfg_outside_the_os_seam_fails() {
    let dir = mutated("reactor.rs", |t| {
        format!("{t}\n#[cfg(mkernel_solo5)]\nfn only_on_solo5() {{}}\n")
    });
    let (ok, text) = check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "{text}");
    assert!(text.contains("platform cfg outside"), "{text}");
}

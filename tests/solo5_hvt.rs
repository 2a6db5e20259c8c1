//! `examples/solo5_smoke` builds as a Solo5 hvt image with the right ABI and
//! manifest notes; it is run under `solo5-hvt` only where KVM can run it.

#[path = "solo5_util/mod.rs"]
mod util;

use std::process::Command;
use std::time::Duration;

/// Why hvt guests cannot run here, if they cannot.
fn hvt_unusable() -> Option<String> {
    if !std::path::Path::new("/dev/kvm").exists() {
        return Some("no /dev/kvm".into());
    }
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        // Nested paravirtual KVM: emulates guest kernel code ~2000x slower
        // and stops at the first SSE instruction.
        return Some("/dev/kvm is the nested kvm-pvm, which cannot run hvt guests".into());
    }
    None
}

#[test]
fn smoke_example_builds_for_hvt_and_runs_where_kvm_allows() {
    let image = util::build_image("hvt", "solo5_smoke");
    let root = util::solo5_root();
    let elftool = root.join("elftool/solo5-elftool");

    let abi = Command::new(&elftool)
        .arg("query-abi")
        .arg(&image)
        .output()
        .unwrap();
    let abi = String::from_utf8_lossy(&abi.stdout);
    assert!(abi.contains("\"target\": \"hvt\""), "{abi}");
    let mft = Command::new(&elftool)
        .arg("query-manifest")
        .arg(&image)
        .output()
        .unwrap();
    let mft = String::from_utf8_lossy(&mft.stdout);
    assert!(mft.contains("\"type\": \"solo5.manifest\""), "{mft}");

    if let Some(why) = hvt_unusable() {
        println!("SKIPPED running under solo5-hvt: {why} (the image was built and checked)");
        eprintln!("SKIPPED running under solo5-hvt: {why} (the image was built and checked)");
        return;
    }
    let out = util::run_with_timeout(
        Command::new(root.join("tenders/hvt/solo5-hvt"))
            .arg(&image)
            .arg("first"),
        Duration::from_secs(120),
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "solo5-hvt: {}\n{console}", out.status);
    let app = util::app_output(&console);
    assert!(
        app.contains("args: [\"first\"]") && app.contains("drop in coroutine"),
        "{app}"
    );
}

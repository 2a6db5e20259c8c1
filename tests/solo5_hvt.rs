//! Every example builds as a Solo5 hvt (and spt) image whose ABI and
//! manifest notes `solo5-elftool` reads back correctly, the manifest being
//! the one the program derives from its device list. The images are run
//! under `solo5-hvt` only where KVM can run them; otherwise the test says
//! plainly why it skipped that part.

#[path = "solo5_util/mod.rs"]
mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The examples turned into unikernels (all the Solo5-capable ones).
const EXAMPLES: [&str; 11] = [
    "hello",
    "schedule",
    "sleep",
    "cmdline",
    "block",
    "echo",
    "httpd",
    "solo5_smoke",
    "solo5_tasks",
    "solo5_yield",
    "solo5_netidle",
];

/// Why hvt guests cannot run here, if they cannot.
fn hvt_unusable() -> Option<String> {
    if !Path::new("/dev/kvm").exists() {
        return Some("no /dev/kvm".into());
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        // Nested paravirtual KVM: emulates guest kernel code ~2000x slower
        // and stops at the first SSE instruction.
        return Some("/dev/kvm is the nested kvm-pvm, which cannot run hvt guests".into());
    }
    None
}

fn elftool(root: &Path, cmd: &str, image: &Path) -> String {
    let out = Command::new(root.join("elftool/solo5-elftool"))
        .arg(cmd)
        .arg(image)
        .output()
        .expect("solo5-elftool");
    assert!(
        out.status.success(),
        "solo5-elftool {cmd} {}: {}\n{}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn every_example_image_passes_elftool_checks() {
    let root = util::solo5_root();
    for example in EXAMPLES {
        // The manifest the program itself derives from its devices.
        let hosted = util::run_with_timeout(
            Command::new(env!("CARGO"))
                .args(["run", "-q", "--example", example])
                .env("MKERNEL_MANIFEST", "1")
                .current_dir(env!("CARGO_MANIFEST_DIR")),
            Duration::from_secs(600),
        );
        assert!(hosted.status.success(), "{example}: {}", hosted.status);
        let want = squeeze(&String::from_utf8_lossy(&hosted.stdout));
        for target in ["hvt", "spt"] {
            let image = util::build_image(target, example);
            let abi = squeeze(&elftool(&root, "query-abi", &image));
            assert_eq!(
                abi,
                format!(r#"{{"type":"solo5.abi","target":"{target}","version":1}}"#),
                "{}",
                image.display()
            );
            let mft = squeeze(&elftool(&root, "query-manifest", &image));
            assert_eq!(mft, want, "manifest of {}", image.display());
        }
    }
}

#[test]
fn hvt_images_run_where_kvm_allows() {
    let image = util::build_image("hvt", "solo5_smoke");
    let hello = util::build_image("hvt", "hello");
    let tender = util::solo5_root().join("tenders/hvt/solo5-hvt");
    if let Some(why) = hvt_unusable() {
        if Path::new("/dev/kvm").exists() {
            // The tender still loads the image and starts the guest: the
            // bindings print their banner and memory map before the
            // nested KVM gives up on the first instruction it cannot run.
            let out =
                util::run_with_timeout(Command::new(&tender).arg(&hello), Duration::from_secs(60));
            let console = String::from_utf8_lossy(&out.stdout);
            assert!(
                console.contains("Solo5: Bindings version")
                    && console.contains("Solo5: Memory map"),
                "solo5-hvt did not load and start the image: {}\n{console}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        util::say_skipped(&format!(
            "running under solo5-hvt: {why} (the images were built and checked, and the tender loaded and started hello.hvt)"
        ));
        return;
    }
    let out = util::run_with_timeout(
        Command::new(&tender).arg(&image).arg("first"),
        Duration::from_secs(120),
    );
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "solo5-hvt: {}\n{console}", out.status);
    let app = util::app_output(&console);
    assert!(
        app.contains("args: [\"first\"]") && app.contains("drop in coroutine"),
        "{app}"
    );
    let out = util::run_with_timeout(Command::new(&tender).arg(&hello), Duration::from_secs(120));
    let console = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "solo5-hvt: {}\n{console}", out.status);
    assert_eq!(util::app_output(&console), "Hello World!\n");
}

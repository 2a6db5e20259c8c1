//! The examples, run as processes: their output and their errors.

#[path = "solo5_util/mod.rs"]
mod util;

use std::path::PathBuf;
use std::process::{Command, Output};

mod random_util;

/// The example's binary, built (by cargo, once per test process) so that a
/// filtered `cargo test --test examples` does not run stale binaries.
fn example(name: &str) -> PathBuf {
    util::example_binary(name)
}

fn run(name: &str, args: &[&str]) -> Output {
    Command::new(example(name)).args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("mk-test-{tag}-{}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn hello_prints_hello_world() {
    let o = run("hello", &[]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "Hello World!\n");
}

#[test]
fn schedule_prints_hello_then_world() {
    let o = run("schedule", &[]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "Hello\nWorld\n");
}

#[test]
fn sleep_prints_around_a_sleep_of_one_second() {
    let t = std::time::Instant::now();
    let o = run("sleep", &[]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "Hello\nWorld\n");
    assert!(t.elapsed() >= std::time::Duration::from_secs(1));
}

#[test]
fn cmdline_prints_what_follows_the_double_dash() {
    let o = run("cmdline", &["--", "Hello", "big World", "--x"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "Hello\nbig World\n--x\n");
    let o = run("cmdline", &[]);
    assert_eq!(stdout(&o), "");
}

#[test]
fn block_prints_the_md5_of_the_first_two_pages() {
    use md5::{Digest, Md5};
    let data: Vec<u8> = (0..8 * 512u32).map(|i| (i * 7 + i / 512) as u8).collect();
    let img = temp_file("md5", &data);
    let o = run("block", &[&format!("--block:disk={}", img.display())]);
    let want: String = Md5::digest(&data[..1024])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{want}\n"));
    // With 4 KiB sectors the first two pages are 8 KiB: the file is too short.
    let o = run(
        "block",
        &[
            &format!("--block:disk={}", img.display()),
            "--block-sector-size:disk=4096",
        ],
    );
    assert!(!o.status.success());
    let _ = std::fs::remove_file(img);
}

#[test]
fn manifest_is_derived_from_the_device_list() {
    let o = Command::new(example("block"))
        .env("MKERNEL_MANIFEST", "1")
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        "{\"type\":\"solo5.manifest\",\"version\":1,\"devices\":[{\"name\":\"disk\",\"type\":\"BLOCK_BASIC\"}]}\n"
    );
    let o = Command::new(example("hello"))
        .env("MKERNEL_MANIFEST", "1")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&o),
        "{\"type\":\"solo5.manifest\",\"version\":1,\"devices\":[]}\n"
    );
}

/// The demo's two stacks talk over an in-memory link made inside the
/// program (`mkernel::link`): no tender attaches it, so the manifest lists
/// only the block device the tender must give.
#[test]
fn in_memory_links_are_not_in_the_manifest() {
    let o = Command::new(example("demo"))
        .env("MKERNEL_MANIFEST", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "{\"type\":\"solo5.manifest\",\"version\":1,\"devices\":[{\"name\":\"site\",\"type\":\"BLOCK_BASIC\"}]}\n"
    );
}

#[test]
fn an_unmapped_device_stops_the_run_naming_the_flag() {
    let o = run("block", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    let e = stderr(&o);
    assert!(e.contains("block device \"disk\" is not mapped"), "{e}");
    assert!(e.contains("--block:disk=FILE"), "{e}");
}

#[test]
fn a_missing_file_names_the_device_and_the_path() {
    let o = run("block", &["--block:disk=/nonexistent/mk.img"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent/mk.img") && e.contains("\"disk\""),
        "{e}"
    );
}

#[test]
fn a_tap_that_cannot_be_opened_names_the_device() {
    let o = run("block", &["--net:disk=mk-no-such-tap0"]);
    // `disk` is a block device in this program: the mapping is refused first.
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("\"disk\"") && e.contains("declares"), "{e}");
}

#[test]
fn unknown_arguments_and_double_mappings_are_refused() {
    let o = run("block", &["--verbose"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("--verbose") && e.contains("before `--`"), "{e}");

    let o = run("block", &["--block:disk=a.img", "--block:disk=b.img"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("disk") && e.contains("twice"), "{e}");

    let o = run("block", &["--block:disk=a.img", "--block:other=b.img"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("\"other\"") && e.contains("declares"), "{e}");
}

#[test]
fn a_program_without_devices_ignores_other_arguments() {
    // Test harness arguments are harmless to run((), ..), and so is
    // anything after `--`, device flags included.
    let o = run("hello", &["--verbose", "--nocapture", "--", "--net:x=y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Hello World!\n");
}

/// A device flag before `--` maps a device, and a program that declares
/// none is refused as the Solo5 tenders refuse a device the manifest lacks.
#[test]
fn a_program_without_devices_refuses_device_flags() {
    for (example, args, kind, name) in [
        ("schedule", &["--block:x=a.img"][..], "block", "x"),
        ("hello", &["--verbose", "--net:x=tap0"][..], "net", "x"),
        (
            "hello",
            &["--block:disk=f", "--", "app"][..],
            "block",
            "disk",
        ),
    ] {
        let o = run(example, args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{example} {args:?}: {e}");
        assert!(
            e.contains(&format!(
                "a {kind} device \"{name}\" is mapped, but the program declares no such \
                 device (it declares: none)"
            )),
            "{example} {args:?}: {e}"
        );
        assert!(o.stdout.is_empty(), "{example} {args:?}: main ran");
    }
    // A malformed device flag is an error too, naming it.
    let o = run("hello", &["--net:x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`--net:x`: missing `=IFACE`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn solo5_options_are_ignored_at_the_start_of_the_app_args() {
    // `solo5-spt app.spt --solo5:quiet a b` gives the unikernel `a b`.
    let o = run("cmdline", &["--", "--solo5:quiet", "a", "b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o2 = run("cmdline", &["--", "a", "b"]);
    assert_eq!(stdout(&o), stdout(&o2));
}

#[test]
fn the_demo_verifies_itself() {
    let o = run("demo", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(" 0 wrong responses (every byte checked)"),
        "{out}"
    );
    assert!(
        out.contains("cargo mkernel run --target spt --example httpd"),
        "{out}"
    );
}

#[test]
fn warnings_reach_stderr_through_the_console_logger() {
    // 1,000 bytes: one 512-byte sector and 488 bytes that cannot be used.
    let img = temp_file("ragged", &[7u8; 1000]);
    let flag = format!("--block:disk={}", img.display());
    let o = run("block", &[&flag]);
    let err = stderr(&o);
    assert!(
        err.contains("mkernel: warn: block device file") && err.contains("not a multiple of"),
        "the warning is printed by default: {err}"
    );
    let quiet = Command::new(example("block"))
        .arg(&flag)
        .env("MKERNEL_LOG", "off")
        .output()
        .unwrap();
    assert!(
        !stderr(&quiet).contains("mkernel: warn:"),
        "MKERNEL_LOG=off silences it: {}",
        stderr(&quiet)
    );
    std::fs::remove_file(img).unwrap();
}

/// `examples/random`: `mkernel::fill_random` (`getrandom(2)` hosted) and
/// the `getrandom` crate give well-formed, fresh bytes on each run.
#[test]
fn random_prints_different_bytes_each_run() {
    let runs: Vec<Vec<String>> = (0..2)
        .map(|_| {
            let o = run("random", &[]);
            assert!(o.status.success(), "{}", stderr(&o));
            random_util::parse(&stdout(&o))
        })
        .collect();
    random_util::assert_differ(&runs[0], &runs[1]);
}

//! `Stack::resolve` against a real name server: Debian's `dnsmasq`, in a
//! network namespace this test creates (and always deletes), reached over
//! a TAP interface by the `resolve` example (`--nameserver=10.79.0.1`).
//! All traffic stays in the namespace. Skipped (with the reason printed)
//! when not root, without /dev/net/tun, or without `ip` or `dnsmasq`
//! (`scripts/setup` installs them).

mod netns_util;

use netns_util::{Netns, skip_reason};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Builds the `resolve` example and returns its path.
fn resolve_example() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--example", "resolve"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --example resolve failed");
    // target/debug/deps/dns_tap-HASH -> target/debug/examples/resolve
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("resolve")
}

/// `example.test` (and a name under it) resolve to dnsmasq's
/// `--address`; a name under `test` that dnsmasq does not know is
/// `NotFound` (dnsmasq answers NXDOMAIN for its `--local` domain).
#[test]
fn resolve_through_dnsmasq() {
    if let Some(why) = skip_reason(&["ip", "dnsmasq"]) {
        eprintln!("skipping the DNS TAP test: {why}");
        return;
    }
    let resolve = resolve_example();
    let mut ns = match Netns::new("dns") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping the DNS TAP test: {e}");
            return;
        }
    };
    ns.tap("tap0", "10.79.0.1/24");
    let dnsmasq = ns
        .cmd(&[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file",
            "--user=root",
            "--address=/example.test/10.79.0.1",
            "--local=/test/",
            "--listen-address=10.79.0.1",
            "--bind-interfaces",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ns.children.push(dnsmasq);
    // A query sent before dnsmasq listens is lost; the resolver asks
    // again after DNS_TIMEOUT.
    let out = ns
        .cmd(&[
            resolve.to_str().unwrap(),
            "--net:service=tap0",
            "--",
            "--ipv4=10.79.0.2/24",
            "--nameserver=10.79.0.1",
            "example.test",
            "www.Example.Test",
            "nope.test",
            "10.79.0.9",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0], "example.test 10.79.0.1");
    assert_eq!(lines[1], "www.Example.Test 10.79.0.1");
    assert!(
        lines[2].starts_with("nope.test error: NotFound: "),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "10.79.0.9 10.79.0.9");
    // Exit status 1: one name failed.
    assert_eq!(out.status.code(), Some(1));
}

//! The sockets' timeouts on a real TAP link (issue 13), hosted and as a
//! solo5-spt unikernel: the `timeouts` example, in a network namespace
//! each test creates (and always deletes) with the TAP and a python3 line
//! server, runs
//!
//! - a plain `TcpStream::connect` to an address of its subnet nobody
//!   answers (its ARP requests go unanswered): `TimedOut` after
//!   `DEFAULT_CONNECT_TIMEOUT` (20 s), never before, at most 10 % after;
//! - `connect_timeout` of 700 ms to the same address: `TimedOut` within
//!   700 ms ± 10 % (never before 700 ms);
//! - a read with a 500 ms read timeout on a connection to the Linux server,
//!   which stays silent until asked: `TimedOut` within 500 ms ± 10 %; then
//!   the same stream writes the request and reads the server's answer.
//!
//! The example measures each step with `mkernel::clock_monotonic()`; the
//! test also times the whole run from outside, so that a unikernel clock
//! running fast could not pass. The two tests run in parallel (the
//! harness's threads), each in its own namespace, ~25 s in all. Needs root,
//! /dev/net/tun, `ip` and `python3`, else skips saying why.

#[path = "solo5_util/mod.rs"]
mod util;

use mkernel::net::stack::DEFAULT_CONNECT_TIMEOUT;
use std::process::Command;
use std::time::{Duration, Instant};

const HOST_CIDR: &str = "10.88.0.1/24";
const IPV4: &str = "--ipv4=10.88.0.2/24";
/// Nobody is at 10.88.0.9.
const SILENT: &str = "--silent=10.88.0.9:80";
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);
const SERVER: &str = "--server=10.88.0.1:7777";
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Says nothing on a connection until it reads the line `go`, then
/// answers `hello`.
const SERVER_PY: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    if c.makefile("rb").readline().strip() == b"go":
        c.sendall(b"hello\n")
    c.close()
"#;

fn skip_reason() -> Option<String> {
    util::cannot_make_netns().or_else(|| util::tool_check::missing_tool(&["python3"]))
}

/// The example's arguments after the stack's.
fn args() -> Vec<String> {
    vec![
        IPV4.into(),
        SILENT.into(),
        format!("--connect-timeout-ms={}", CONNECT_TIMEOUT.as_millis()),
        SERVER.into(),
        format!("--read-timeout-ms={}", READ_TIMEOUT.as_millis()),
    ]
}

/// The `KEY ... KIND MS` line of `key`: its error kind and duration.
fn step(out: &str, key: &str) -> (String, Duration) {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"));
    let w: Vec<&str> = line.split_whitespace().collect();
    let ms: f64 = w[w.len() - 1].parse().unwrap();
    (
        w[w.len() - 2].to_string(),
        Duration::from_secs_f64(ms / 1e3),
    )
}

/// Asserts that `took` is at least `bound` and at most 10 % (and 50 ms)
/// more.
fn assert_near(what: &str, took: Duration, bound: Duration) {
    eprintln!("{what}: {took:?} (bound {bound:?})");
    assert!(took >= bound, "{what}: {took:?} < {bound:?}");
    let slack = (bound / 10).max(Duration::from_millis(50));
    assert!(
        took <= bound + slack,
        "{what}: {took:?} > {bound:?} + {slack:?}"
    );
}

/// Sets up the namespace and server, runs `cmd(ns)` and checks its output.
fn session(what: &str, tag: &str, cmd: impl FnOnce(&util::Netns) -> Command) {
    let ns = util::Netns::new(tag, Some(HOST_CIDR));
    let mut server = util::Server::start(
        ns.command(std::path::Path::new("python3"))
            .args(["-c", SERVER_PY, "7777"]),
    );
    server.wait_for("ready", Duration::from_secs(30));
    let t0 = Instant::now();
    let out = util::run_with_timeout(&mut cmd(&ns), Duration::from_secs(90));
    let outer = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{what}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what}: {}\n{stdout}", out.status);
    let (kind, connect) = step(&stdout, "connect");
    assert_eq!(kind, "TimedOut", "{what}: {stdout}");
    assert_near(
        &format!("{what}: connect to a silent address"),
        connect,
        DEFAULT_CONNECT_TIMEOUT,
    );
    let (kind, connect_timeout) = step(&stdout, "connect_timeout");
    assert_eq!(kind, "TimedOut", "{what}: {stdout}");
    assert_near(
        &format!("{what}: connect_timeout"),
        connect_timeout,
        CONNECT_TIMEOUT,
    );
    let (kind, read) = step(&stdout, "read_timeout");
    assert_eq!(kind, "TimedOut", "{what}: {stdout}");
    assert_near(&format!("{what}: read timeout"), read, READ_TIMEOUT);
    assert!(
        stdout.lines().any(|l| l == "after_timeout hello"),
        "{what}: the stream did not work after its read timeout:\n{stdout}"
    );
    // The example's clock against the real one: the run took at least
    // what it measured (plus its start), and not much more.
    let inner = connect + connect_timeout + read;
    eprintln!("{what}: the whole run took {outer:?}, its steps {inner:?}");
    assert!(outer >= inner, "{what}: {outer:?} < {inner:?}");
    assert!(
        outer <= inner + Duration::from_secs(15),
        "{what}: {outer:?} for {inner:?} of steps"
    );
    drop(server);
}

#[test]
fn timeouts_hosted_over_tap() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    let bin = util::example_binary("timeouts");
    session("hosted", "toh", |ns| {
        let mut c = ns.command(&bin);
        c.arg(format!("--net:service={}", ns.tap))
            .arg("--")
            .args(args());
        c
    });
}

#[test]
fn timeouts_spt() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    let image = util::build_image("spt", "timeouts");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    session("spt", "tos", |ns| {
        let mut c = ns.command(&tender);
        c.arg(format!("--net:service={}", ns.tap))
            .arg(&image)
            .args(args());
        c
    });
}

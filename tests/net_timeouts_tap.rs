//! The sockets' timeouts on a real TAP link (issue 13), hosted and as a
//! solo5-spt unikernel: the `timeouts` example, in a network namespace
//! each test creates (and always deletes) with the TAP and a python3 line
//! server, runs
//!
//! - a plain `TcpStream::connect` to two addresses of its subnet nobody
//!   answers, one after the other: one whose ARP requests go unanswered, and one whose
//!   ARP requests a python3 AF_PACKET responder answers (with a MAC nobody
//!   has) so that the SYNs really leave and are lost; it records them.
//!   Each fails with `TimedOut` after `DEFAULT_CONNECT_TIMEOUT` (20 s),
//!   never before, at most 10 % after; the SYN went out 5 times, at 0, 1,
//!   3, 7 and 15 s (± 250 ms), as `DEFAULT_CONNECT_TIMEOUT` documents;
//! - `connect_timeout` of 700 ms to each: `TimedOut` within 700 ms ± 10 %
//!   (never before 700 ms);
//! - a read with a 500 ms read timeout on a connection to the Linux server,
//!   which stays silent until asked: `TimedOut` within 500 ms ± 10 %; then
//!   the same stream writes the request and reads the server's answer.
//!
//! The example measures each step with `mkernel::clock_monotonic()`; the
//! test also times the whole run from outside, so that a unikernel clock
//! running fast could not pass. The two tests run in parallel (the
//! harness's threads), each in its own namespace, ~42 s in all. Needs root,
//! /dev/net/tun, `ip` and `python3`, else skips saying why.

#[path = "solo5_util/mod.rs"]
mod util;

use mkernel::net::stack::DEFAULT_CONNECT_TIMEOUT;
use std::process::Command;
use std::time::{Duration, Instant};

const HOST_CIDR: &str = "10.88.0.1/24";
const IPV4: &str = "--ipv4=10.88.0.2/24";
/// Nobody is at 10.88.0.9.
const NO_ARP: &str = "10.88.0.9:80";
/// 10.88.0.8 answers ARP ([`BLACKHOLE_PY`]), never TCP.
const BLACKHOLE: &str = "10.88.0.8:80";
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

/// On the TAP (argv[1]), answers ARP requests for argv[2] with a MAC
/// nobody has (so nothing answers what is then sent there), and prints
/// `syn SPORT SECONDS` for each TCP SYN to argv[2], its time from the
/// first one's.
const BLACKHOLE_PY: &str = r#"
import socket, sys, time
ip = socket.inet_aton(sys.argv[2])
mac = bytes.fromhex("02000000bad0")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
t0 = None
while True:
    f = s.recv(4096)
    kind = f[12:14]
    if kind == b"\x08\x06" and f[20:22] == b"\x00\x01" and f[38:42] == ip:
        s.send(f[6:12] + mac + b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x02"
               + mac + ip + f[22:28] + f[28:32])
    elif kind == b"\x08\x00" and f[23] == 6 and f[30:34] == ip:
        tcp = 14 + (f[14] & 15) * 4
        if f[tcp + 13] & 0x12 == 0x02:
            now = time.monotonic()
            t0 = now if t0 is None else t0
            port = int.from_bytes(f[tcp:tcp + 2], "big")
            print(f"syn {port} {now - t0:.3f}", flush=True)
"#;

fn skip_reason() -> Option<String> {
    util::cannot_make_netns().or_else(|| util::tool_check::missing_tool(&["python3"]))
}

/// The example's arguments after the stack's.
fn args() -> Vec<String> {
    vec![
        IPV4.into(),
        format!("--silent={NO_ARP}"),
        format!("--silent={BLACKHOLE}"),
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
    let mut blackhole = util::Server::start(ns.command(std::path::Path::new("python3")).args([
        "-c",
        BLACKHOLE_PY,
        &ns.tap,
        BLACKHOLE.split(':').next().unwrap(),
    ]));
    blackhole.wait_for("ready", Duration::from_secs(30));
    let t0 = Instant::now();
    let out = util::run_with_timeout(&mut cmd(&ns), Duration::from_secs(90));
    let outer = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{what}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what}: {}\n{stdout}", out.status);
    let mut connect = Duration::ZERO;
    let mut connect_timeout = Duration::ZERO;
    for addr in [NO_ARP, BLACKHOLE] {
        let (kind, took) = step(&stdout, &format!("connect {addr}"));
        assert_eq!(kind, "TimedOut", "{what}: {stdout}");
        assert_near(
            &format!("{what}: connect to {addr}"),
            took,
            DEFAULT_CONNECT_TIMEOUT,
        );
        connect += took;
        let (kind, took) = step(&stdout, &format!("connect_timeout {addr}"));
        assert_eq!(kind, "TimedOut", "{what}: {stdout}");
        assert_near(
            &format!("{what}: connect_timeout to {addr}"),
            took,
            CONNECT_TIMEOUT,
        );
        connect_timeout += took;
    }
    // The plain connect's SYNs (those from the first SYN's port).
    blackhole.drain();
    let syns: Vec<(&str, f64)> = blackhole
        .seen
        .iter()
        .filter_map(|l| {
            let mut w = l.strip_prefix("syn ")?.split(' ');
            Some((w.next()?, w.next()?.parse().ok()?))
        })
        .collect();
    assert!(!syns.is_empty(), "{what}: no SYN reached {BLACKHOLE}");
    let first: Vec<f64> = syns
        .iter()
        .filter(|s| s.0 == syns[0].0)
        .map(|s| s.1)
        .collect();
    eprintln!("{what}: SYNs to {BLACKHOLE} at {first:?} s");
    assert_eq!(first.len(), 5, "{what}: SYNs at {first:?} s");
    for (t, want) in first.iter().zip([0.0, 1.0, 3.0, 7.0, 15.0]) {
        assert!((t - want).abs() <= 0.25, "{what}: SYNs at {first:?} s");
    }
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
    drop((server, blackhole));
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

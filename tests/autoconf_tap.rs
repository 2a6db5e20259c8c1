//! Addresses from the network, against real servers: Debian's `dnsmasq`
//! as DHCP server, name server and IPv6 router (router advertisements),
//! Linux's own IPv6, `ping`, and a small python3 line server, all in a
//! network namespace each test creates (and always deletes), reached over
//! a TAP interface by the `netcheck` and `echo` examples (hosted, and
//! `netcheck` also as a solo5-spt unikernel). No traffic
//! leaves the namespace. Skipped (with the reason printed) when not root,
//! without /dev/net/tun, or without `ip`, `dnsmasq`, `ping` or `python3`
//! (`scripts/setup` installs them).

#![allow(
    clippy::duplicate_mod,
    reason = "netns_util and solo5_util each bring the small tool_check module"
)]

mod netns_util;
#[path = "solo5_util/mod.rs"]
mod solo5_util;

use netns_util::{Netns, skip_reason};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Builds the examples and returns the directory holding them.
fn examples() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--example", "netcheck", "--example", "echo"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --example netcheck --example echo failed");
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

/// A TCP server that answers each connection's first line with
/// `got LINE` (on every address, IPv4 and IPv6).
const LINE_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    line = c.makefile("rb").readline()
    c.sendall(b"got " + line)
    c.close()
"#;

/// Starts `argv` in `ns`, waits (up to 30 s) for its first stdout line
/// and returns it; the process is killed with the namespace.
fn start(ns: &mut Netns, argv: &[&str]) -> String {
    let mut child: Child = ns
        .cmd(argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    ns.children.push(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{argv:?} printed nothing in 30 s"))
        .trim_end()
        .to_string()
}

/// dnsmasq on `tap0` with `args`, logging to the file returned.
fn dnsmasq(ns: &mut Netns, tag: &str, args: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir();
    let log = dir.join(format!("mkt-{tag}-{}.log", std::process::id()));
    let leases = dir.join(format!("mkt-{tag}-{}.leases", std::process::id()));
    let _ = std::fs::remove_file(&leases);
    let mut argv = vec![
        "dnsmasq".to_string(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--pid-file".into(),
        "--user=root".into(),
        "--interface=tap0".into(),
        "--bind-interfaces".into(),
        "--log-dhcp".into(),
        format!("--log-facility={}", log.display()),
        format!("--dhcp-leasefile={}", leases.display()),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let child = ns.cmd(&argv).stdout(Stdio::null()).spawn().unwrap();
    ns.children.push(child);
    // dnsmasq binds its sockets before it logs its start; a client asking
    // earlier asks again.
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("started"))
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    log
}

/// The `KEY VALUE` line of `key` in `out`, every time it appears.
fn values<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .collect()
}

/// `--ipv4=dhcp` against dnsmasq: the address (from the DHCP range),
/// prefix, gateway and name server come from the lease; the name served
/// by that dnsmasq resolves and a connection by name exchanges data from
/// the leased address; the lease is renewed (dnsmasq sends T1 = 3 s) and
/// the address stays; the echo server's `listening on` line shows the
/// leased address, which answers ping.
#[test]
fn dhcp_from_dnsmasq() {
    if let Some(why) = skip_reason(&["ip", "dnsmasq", "ping", "python3"]) {
        eprintln!("skipping the DHCP TAP test: {why}");
        return;
    }
    let ex = examples();
    let mut ns = match Netns::new("dhcp") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping the DHCP TAP test: {e}");
            return;
        }
    };
    ns.tap("tap0", "10.81.0.1/24");
    let log = dnsmasq(
        &mut ns,
        "dhcp",
        &[
            "--dhcp-range=10.81.0.50,10.81.0.99,255.255.255.0,2m",
            // Renew after 3 s (dnsmasq's shortest lease is 2 min).
            "--dhcp-option=option:T1,3",
            "--dhcp-option=option:router,10.81.0.254",
            "--address=/server.test/10.81.0.1",
            "--local=/test/",
        ],
    );
    assert_eq!(
        start(&mut ns, &["python3", "-c", LINE_SERVER, "7777"]),
        "ready"
    );
    let out = ns
        .cmd(&[
            ex.join("netcheck").to_str().unwrap(),
            "--net:service=tap0",
            "--",
            "--ipv4=dhcp",
            "--wait=7",
            "server.test:7777",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dnsmasq_log = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{dnsmasq_log}");
    assert!(out.status.success(), "{stdout}");
    let ipv4 = values(&stdout, "ipv4");
    assert_eq!(ipv4.len(), 2, "{stdout}");
    let (addr, prefix) = ipv4[0].split_once('/').unwrap();
    assert_eq!(prefix, "24");
    let last: u8 = addr.strip_prefix("10.81.0.").unwrap().parse().unwrap();
    assert!((50..=99).contains(&last), "{addr} is not in the DHCP range");
    assert_eq!(ipv4[1], ipv4[0], "the address changed over the renewals");
    assert_eq!(values(&stdout, "gateway")[0], "10.81.0.254");
    assert_eq!(values(&stdout, "nameservers")[0], "10.81.0.1");
    // Resolved by dnsmasq, connected from the leased address.
    let reply = values(&stdout, "server.test:7777");
    assert_eq!(reply.len(), 1, "{stdout}");
    assert!(
        reply[0].starts_with(&format!("10.81.0.1:7777 got hello from {addr}:")),
        "{}",
        reply[0]
    );
    // The first lease (DISCOVER, OFFER, REQUEST, ACK), then renewals: a
    // REQUEST answered by an ACK every 3 s for 7 s.
    let acks = dnsmasq_log
        .lines()
        .filter(|l| l.contains("DHCPACK(tap0)") && l.contains(addr))
        .count();
    assert!(acks >= 3, "{acks} DHCPACKs: no renewal");
    assert!(dnsmasq_log.contains("DHCPDISCOVER(tap0)"));

    // A server prints the leased address (the same MAC gets it again).
    let line = start(
        &mut ns,
        &[
            ex.join("echo").to_str().unwrap(),
            "--net:service=tap0",
            "--",
            "--ipv4=dhcp",
        ],
    );
    let listening = line.strip_prefix("listening on ").unwrap_or(&line);
    let (echo_addr, port) = listening.rsplit_once(':').unwrap();
    assert_eq!(port, "7");
    assert!(echo_addr.starts_with("10.81.0."), "{line}");
    // The first request may go unanswered: smoltcp drops a reply to a
    // neighbour whose link address it is still asking for.
    ns.run(&["ping", "-c", "3", "-i", "0.3", "-W", "5", echo_addr])
        .unwrap();
}

/// Without a DHCP server, `--ipv4=dhcp` gives up after DHCP_TIMEOUT with
/// an error that says why, instead of running without an address.
#[test]
fn dhcp_without_server_fails_in_bounded_time() {
    if let Some(why) = skip_reason(&["ip"]) {
        eprintln!("skipping the DHCP TAP test: {why}");
        return;
    }
    let ex = examples();
    let ns = match Netns::new("nodhcp") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping the DHCP TAP test: {e}");
            return;
        }
    };
    ns.tap("tap0", "10.82.0.1/24");
    let t0 = Instant::now();
    let out = ns
        .cmd(&[
            ex.join("netcheck").to_str().unwrap(),
            "--net:service=tap0",
            "--",
            "--ipv4=dhcp",
        ])
        .output()
        .unwrap();
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no DHCP lease"), "{stderr}");
    assert!(
        took >= Duration::from_secs(29) && took < Duration::from_secs(40),
        "{took:?}"
    );
}

/// A UDP server that answers each datagram with `got DATAGRAM`.
const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(2000)
    s.sendto(b"got " + d, a)
"#;

/// A TCP client: sends argv[3] to [argv[1]]:argv[2], prints what comes
/// back before the server's close.
const TCP_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(sys.argv[3].encode())
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(4096)
    if not b: break
    got += b
print(got.decode())
"#;

/// Static IPv6 (`--ipv6=ADDR/PREFIX`): Linux pings the stack over IPv6
/// (NDP resolves its address), connects to the echo example over IPv6;
/// the stack connects over TCP and exchanges a datagram over UDP with
/// Linux servers, from its IPv6 address.
#[test]
fn ipv6_static_ping_tcp_udp() {
    if let Some(why) = skip_reason(&["ip", "ping", "python3"]) {
        eprintln!("skipping the IPv6 TAP test: {why}");
        return;
    }
    let ex = examples();
    let mut ns = match Netns::new("v6") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping the IPv6 TAP test: {e}");
            return;
        }
    };
    ns.tap("tap0", "10.84.0.1/24");
    // nodad: Linux's address is usable at once.
    ns.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:84::1/64",
        "dev",
        "tap0",
        "nodad",
    ])
    .unwrap();
    assert_eq!(
        start(&mut ns, &["python3", "-c", LINE_SERVER, "7777"]),
        "ready"
    );
    assert_eq!(
        start(&mut ns, &["python3", "-c", UDP_SERVER, "7778"]),
        "ready"
    );
    let out = ns
        .cmd(&[
            ex.join("netcheck").to_str().unwrap(),
            "--net:service=tap0",
            "--",
            "--ipv4=10.84.0.2/24",
            "--ipv6=fd00:84::2/64",
            "[fd00:84::1]:7777",
            "udp:[fd00:84::1]:7778",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}");
    assert_eq!(values(&stdout, "ipv6"), ["fd00:84::2/64"]);
    let tcp = values(&stdout, "[fd00:84::1]:7777");
    assert!(
        tcp[0].starts_with("[fd00:84::1]:7777 got hello from [fd00:84::2]:"),
        "{}",
        tcp[0]
    );
    assert_eq!(
        values(&stdout, "udp:[fd00:84::1]:7778"),
        ["[fd00:84::1]:7778 got hello over UDP"]
    );

    let line = start(
        &mut ns,
        &[
            ex.join("echo").to_str().unwrap(),
            "--net:service=tap0",
            "--",
            "--ipv4=10.84.0.3/24",
            "--ipv6=fd00:84::3/64",
        ],
    );
    assert_eq!(line, "listening on 10.84.0.3:7");
    ns.run(&[
        "ping",
        "-6",
        "-c",
        "3",
        "-i",
        "0.3",
        "-W",
        "5",
        "fd00:84::3",
    ])
    .unwrap();
    let got = ns
        .run(&[
            "python3",
            "-c",
            TCP_CLIENT,
            "fd00:84::3",
            "7",
            "echo over IPv6",
        ])
        .unwrap();
    assert_eq!(got.trim_end(), "echo over IPv6");
}

/// SLAAC (`--ipv6=auto`) from dnsmasq's router advertisements: the
/// address is in the advertised prefix with the MAC's interface
/// identifier, the router (Linux's link-local address) is the gateway;
/// with DHCP for IPv4 on the same link, a name that dnsmasq serves only
/// as AAAA resolves, and the connection by name goes over IPv6 from the
/// SLAAC address.
#[test]
fn slaac_and_aaaa_from_dnsmasq() {
    if let Some(why) = skip_reason(&["ip", "dnsmasq", "python3"]) {
        eprintln!("skipping the SLAAC TAP test: {why}");
        return;
    }
    let ex = examples();
    let mut ns = match Netns::new("slaac") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping the SLAAC TAP test: {e}");
            return;
        }
    };
    ns.tap("tap0", "10.85.0.1/24");
    ns.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:85::1/64",
        "dev",
        "tap0",
        "nodad",
    ])
    .unwrap();
    dnsmasq(
        &mut ns,
        "slaac",
        &[
            "--enable-ra",
            "--dhcp-range=fd00:85::,ra-only,64,2m",
            "--dhcp-range=10.85.0.50,10.85.0.99,255.255.255.0,2m",
            "--host-record=server6.test,fd00:85::1",
            "--local=/test/",
        ],
    );
    assert_eq!(
        start(&mut ns, &["python3", "-c", LINE_SERVER, "7777"]),
        "ready"
    );
    let out = ns
        .cmd(&[
            ex.join("netcheck").to_str().unwrap(),
            "--net:service=tap0",
            "--",
            "--ipv4=dhcp",
            "--ipv6=auto",
            "server6.test:7777",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}");
    let ipv6 = values(&stdout, "ipv6")[0];
    let (addr, prefix) = ipv6.split_once('/').unwrap();
    assert_eq!(prefix, "64");
    let addr: std::net::Ipv6Addr = addr.parse().unwrap();
    assert_eq!(addr.segments()[..4], [0xfd00, 0x85, 0, 0], "{addr}");
    // EUI-64: ff:fe in the middle of the interface identifier.
    assert_eq!(addr.segments()[5] & 0xff, 0xff, "{addr}");
    assert_eq!(addr.segments()[6] >> 8, 0xfe, "{addr}");
    let ll = ns
        .run(&[
            "ip", "-6", "-o", "addr", "show", "dev", "tap0", "scope", "link",
        ])
        .unwrap();
    let router = values(&stdout, "ipv6-gateway")[0];
    assert!(ll.contains(&format!("{router}/64")), "{router} not in {ll}");
    assert!(
        values(&stdout, "ipv4")[0].starts_with("10.85.0."),
        "{stdout}"
    );
    assert_eq!(
        values(&stdout, "server6.test:7777")[0]
            .split(" got hello from ")
            .collect::<Vec<_>>()[..2]
            .iter()
            .map(|s| s.rsplit_once(':').unwrap().0)
            .collect::<Vec<_>>(),
        ["[fd00:85::1]".to_string(), format!("[{addr}]")]
    );
}

/// The same under solo5-spt: the `netcheck` unikernel gets its IPv4
/// address by DHCP (and renews it) and its IPv6 address by SLAAC from
/// dnsmasq, resolves a name dnsmasq serves as A and one it serves as
/// AAAA, connects to each by name and exchanges a line.
#[test]
fn spt_dhcp_slaac_and_names() {
    if let Some(why) = skip_reason(&["ip", "dnsmasq", "python3"]) {
        eprintln!("skipping the spt DHCP/SLAAC test: {why}");
        return;
    }
    let image = solo5_util::build_image("spt", "netcheck");
    let tender = solo5_util::solo5_root().join("tenders/spt/solo5-spt");
    let mut ns = match Netns::new("sptdhcp") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping the spt DHCP/SLAAC test: {e}");
            return;
        }
    };
    ns.tap("tap0", "10.86.0.1/24");
    ns.run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fd00:86::1/64",
        "dev",
        "tap0",
        "nodad",
    ])
    .unwrap();
    let log = dnsmasq(
        &mut ns,
        "sptdhcp",
        &[
            "--enable-ra",
            "--dhcp-range=fd00:86::,ra-only,64,2m",
            "--dhcp-range=10.86.0.50,10.86.0.99,255.255.255.0,2m",
            "--dhcp-option=option:T1,3",
            "--host-record=server6.test,fd00:86::1",
            "--address=/server4.test/10.86.0.1",
            "--local=/test/",
        ],
    );
    assert_eq!(
        start(&mut ns, &["python3", "-c", LINE_SERVER, "7777"]),
        "ready"
    );
    let out = solo5_util::run_with_timeout(
        &mut ns.cmd(&[
            tender.to_str().unwrap(),
            "--net:service=tap0",
            image.to_str().unwrap(),
            "--ipv4=dhcp",
            "--ipv6=auto",
            "--wait=7",
            "server6.test:7777",
            "server4.test:7777",
        ]),
        Duration::from_secs(60),
    );
    let console = String::from_utf8_lossy(&out.stdout);
    eprintln!("{console}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{console}");
    let ipv4 = values(&console, "ipv4");
    assert_eq!(ipv4.len(), 2, "{console}");
    assert!(
        ipv4[0].starts_with("10.86.0.") && ipv4[0].ends_with("/24"),
        "{console}"
    );
    assert_eq!(ipv4[1], ipv4[0]);
    let v4 = ipv4[0].split_once('/').unwrap().0;
    assert_eq!(values(&console, "nameservers")[0], "10.86.0.1");
    let ipv6 = values(&console, "ipv6")[0];
    assert!(
        ipv6.starts_with("fd00:86::") && ipv6.ends_with("/64"),
        "{console}"
    );
    let v6 = ipv6.split_once('/').unwrap().0;
    assert!(
        values(&console, "server6.test:7777")[0]
            .starts_with(&format!("[fd00:86::1]:7777 got hello from [{v6}]:")),
        "{console}"
    );
    assert!(
        values(&console, "server4.test:7777")[0]
            .starts_with(&format!("10.86.0.1:7777 got hello from {v4}:")),
        "{console}"
    );
    let acks = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("DHCPACK(tap0)"))
        .count();
    assert!(acks >= 3, "{acks} DHCPACKs: no renewal");
}

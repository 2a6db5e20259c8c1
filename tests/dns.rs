//! `Stack::resolve` and `TcpStream::connect_host` in process, against a
//! fake name server: a task on the other end of a `link::pair` whose
//! `UdpSocket` on port 53 answers A and AAAA queries from small tables and
//! says NXDOMAIN otherwise (or stays silent, or refuses). The resolver
//! asks both questions of each server: two queries per resolve.

use mkernel::net::link::{self, Faults};
use mkernel::net::stack::{
    DNS_TIMEOUT, DNS_TRIES, Stack, StackConfig, TcpListener, TcpStream, UdpSocket,
};
use std::cell::Cell;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::Duration;

/// How the fake server behaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Answer,
    Silent,
    Refuse,
}

const TABLE: &[(&str, &[[u8; 4]])] = &[
    ("one.test", &[[10, 0, 0, 1]]),
    ("two.test", &[[10, 0, 0, 7], [10, 0, 0, 8]]),
];

/// AAAA records: fd00::7 for two.test, fd00::6 for six.test (no A).
const TABLE6: &[(&str, [u8; 16])] = &[
    (
        "two.test",
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
    ),
    (
        "six.test",
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6],
    ),
];

/// The name in wire form at `pos`, dotted (no compression in queries).
fn qname(q: &[u8]) -> Option<(String, usize)> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let l = *q.get(pos)? as usize;
        if l == 0 {
            return Some((labels.join("."), pos + 1));
        }
        labels.push(String::from_utf8_lossy(q.get(pos + 1..pos + 1 + l)?).into_owned());
        pos += 1 + l;
    }
}

/// Serves on `stack`'s port 53 for ever; counts the queries received.
fn serve(stack: &Stack, mode: Mode, count: Rc<Cell<u32>>) {
    let sock = UdpSocket::bind(stack, 53).unwrap();
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        count.set(count.get() + 1);
        let q = &buf[..n];
        let Some((name, end)) = qname(q) else {
            continue;
        };
        let qtype = u16::from_be_bytes([q[end], q[end + 1]]);
        let mut r = q[..end + 4].to_vec();
        r[2] = 0x81; // a response, recursion desired
        r[3] = 0x80; // recursion available, NOERROR
        match mode {
            Mode::Silent => continue,
            Mode::Refuse => r[3] |= 5,
            Mode::Answer => {
                let v4: &[[u8; 4]] = TABLE
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(&[], |(_, a)| a);
                let v6: Vec<[u8; 16]> = TABLE6
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, a)| *a)
                    .collect();
                if v4.is_empty() && v6.is_empty() {
                    r[3] |= 3; // NXDOMAIN
                } else if qtype == 1 {
                    r[7] = v4.len() as u8;
                    for a in v4 {
                        // The owner is a pointer to the question's name.
                        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                        r.extend_from_slice(a);
                    }
                } else if qtype == 28 {
                    r[7] = v6.len() as u8;
                    for a in &v6 {
                        r.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
                        r.extend_from_slice(a);
                    }
                } // else NOERROR, no data
            }
        }
        sock.send_to(&r, from).unwrap();
    }
}

/// Runs `f` with a client stack whose name servers are `servers`, and a
/// fake server at 10.0.0.1 in `mode`; returns `f`'s result and the count
/// of queries the server received.
fn with_server<T: 'static>(
    mode: Mode,
    servers: &'static [&'static str],
    f: impl FnOnce(Stack, Stack) -> T + 'static,
) -> (T, u32) {
    let (a, b) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run((mkernel::net("a"), mkernel::net("b")), move |(a, b)| {
            let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
            let mut cfg = StackConfig::parse("10.0.0.2/24", None).unwrap();
            let ns: Vec<Ipv4Addr> = servers.iter().map(|s| s.parse().unwrap()).collect();
            cfg.set_nameservers(&ns).unwrap();
            let client = Stack::new(b, cfg);
            let count = Rc::new(Cell::new(0));
            let c = count.clone();
            let srv = server.clone();
            let task = mkernel::spawn(move || serve(&srv, mode, c));
            let r = f(client, server);
            task.cancel();
            (r, count.get())
        })
}

fn ips(s: &[&str]) -> Vec<IpAddr> {
    s.iter().map(|a| a.parse().unwrap()).collect()
}

fn since(t0: u64) -> Duration {
    Duration::from_nanos(mkernel::clock_monotonic() - t0)
}

/// A known name gives its addresses (one, then two and an IPv6 one, any
/// case and with a trailing dot; an IPv6-only name); IPv4 first on a stack
/// without IPv6; two queries (A, AAAA) each.
#[test]
fn resolves_names() {
    let (got, queries) = with_server(Mode::Answer, &["10.0.0.1"], |c, _| {
        (
            c.resolve("one.test").unwrap(),
            c.resolve("Two.Test.").unwrap(),
            c.resolve("six.test").unwrap(),
        )
    });
    assert_eq!(got.0, ips(&["10.0.0.1"]));
    assert_eq!(got.1, ips(&["10.0.0.7", "10.0.0.8", "fd00::7"]));
    assert_eq!(got.2, ips(&["fd00::6"]));
    assert_eq!(queries, 6);
}

/// On a stack with an IPv6 address, the IPv6 addresses come first; the
/// name server may be asked over IPv6.
#[test]
fn ipv6_first_with_ipv6_and_ipv6_server() {
    let (a, b) = link::pair(Faults::default());
    let got = mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run((mkernel::net("a"), mkernel::net("b")), move |(a, b)| {
            let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let (scfg, _) =
                StackConfig::from_args(&args(&["--ipv4=10.0.0.1/24", "--ipv6=fd00::1/64"]))
                    .unwrap();
            let server = Stack::new(a, scfg);
            let (ccfg, _) =
                StackConfig::from_args(&args(&["--ipv6=fd00::2/64", "--nameserver=fd00::1"]))
                    .unwrap();
            let client = Stack::new(b, ccfg);
            let count = Rc::new(Cell::new(0));
            let srv = server.clone();
            let task = mkernel::spawn(move || serve(&srv, Mode::Answer, count));
            let got = client.resolve("two.test").unwrap();
            task.cancel();
            got
        });
    assert_eq!(got, ips(&["fd00::7", "10.0.0.7", "10.0.0.8"]));
}

/// An unknown name is `NotFound` (NXDOMAIN), at once: one query per
/// question.
#[test]
fn unknown_name_is_not_found() {
    let (e, queries) = with_server(Mode::Answer, &["10.0.0.1"], |c, _| {
        let t0 = mkernel::clock_monotonic();
        let e = c.resolve("nope.test").unwrap_err();
        assert!(since(t0) < Duration::from_secs(1));
        e
    });
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("NXDOMAIN"), "{e}");
    assert_eq!(queries, 2);
}

/// A silent server: `TimedOut` after `DNS_TRIES × DNS_TIMEOUT` (6 s), not
/// before, not much after, having been asked `DNS_TRIES` times (both
/// questions each time).
#[test]
fn silent_server_times_out() {
    let ((e, took), queries) = with_server(Mode::Silent, &["10.0.0.1"], |c, _| {
        let t0 = mkernel::clock_monotonic();
        let e = c.resolve("one.test").unwrap_err();
        (e, since(t0))
    });
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    let bound = DNS_TIMEOUT * DNS_TRIES;
    eprintln!("silent server: {took:?} (bound {bound:?})");
    assert!(took >= bound, "{took:?} < {bound:?}");
    assert!(took <= bound + Duration::from_millis(300), "{took:?}");
    assert_eq!(queries, 2 * DNS_TRIES);
}

/// A first name server that never answers (no host at 10.0.0.9): after
/// `DNS_TIMEOUT` the second is asked and its answer taken.
#[test]
fn next_server_on_timeout() {
    let ((got, took), queries) = with_server(Mode::Answer, &["10.0.0.9", "10.0.0.1"], |c, _| {
        let t0 = mkernel::clock_monotonic();
        let got = c.resolve("one.test").unwrap();
        (got, since(t0))
    });
    assert_eq!(got, ips(&["10.0.0.1"]));
    assert!(took >= DNS_TIMEOUT, "{took:?}");
    assert!(took <= DNS_TIMEOUT + Duration::from_millis(300), "{took:?}");
    assert_eq!(queries, 2);
}

/// A server that refuses: `ConnectionRefused`, at once.
#[test]
fn refusing_server() {
    let (e, queries) = with_server(Mode::Refuse, &["10.0.0.1"], |c, _| {
        c.resolve("one.test").unwrap_err()
    });
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    assert_eq!(queries, 2);
}

/// An IP literal resolves to itself without a query; bad names are
/// `InvalidInput` without a query; no name server is `AddrNotAvailable`.
#[test]
fn literals_and_bad_names() {
    let ((), queries) = with_server(Mode::Answer, &["10.0.0.1"], |c, _| {
        assert_eq!(c.resolve("10.0.0.42").unwrap(), ips(&["10.0.0.42"]));
        assert_eq!(c.resolve("fe80::1").unwrap(), ips(&["fe80::1"]));
        let long = "a".repeat(64);
        for bad in ["", "a..b", "sp ace.test", long.as_str()] {
            let e = c.resolve(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
    });
    assert_eq!(queries, 0);
    let ((), _) = with_server(Mode::Answer, &[], |c, _| {
        let e = c.resolve("one.test").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrNotAvailable, "{e}");
    });
}

/// `connect_host` resolves, then connects to the address found; an
/// unknown host is `NotFound`.
#[test]
fn connect_host_resolves_then_connects() {
    let (peer, _) = with_server(Mode::Answer, &["10.0.0.1"], |c, server| {
        let l = TcpListener::bind(&server, 7).unwrap();
        let acc = mkernel::spawn(move || l.accept().unwrap().1);
        let s = TcpStream::connect_host(&c, "one.test", 7).unwrap();
        assert_eq!(acc.join().unwrap(), s.local_addr().unwrap());
        let e = TcpStream::connect_host(&c, "nope.test", 7).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        s.peer_addr().unwrap()
    });
    assert_eq!(peer, "10.0.0.1:7".parse().unwrap());
}

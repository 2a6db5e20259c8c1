//! Bad input: malformed frames into a stack, and hostile HTTP clients
//! against the httpd example's code.

use mkernel::net::link::{self, Faults, LinkEnd};
use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[allow(dead_code, reason = "these tests use only part of the httpd example")]
#[path = "../examples/httpd.rs"]
mod httpd;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const PEER_IP: [u8; 4] = [10, 0, 0, 9];
const STACK_IP: [u8; 4] = [10, 0, 0, 1];

fn eth(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&PEER_MAC);
    a.extend_from_slice(&PEER_IP);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&STACK_IP);
    eth([0xff; 6], 0x0806, &a)
}

fn ipv4(dst_mac: [u8; 6], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    ip.extend_from_slice(&PEER_IP);
    ip.extend_from_slice(&STACK_IP);
    let len = (20 + payload.len()) as u16;
    ip[2..4].copy_from_slice(&len.to_be_bytes());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(payload);
    eth(dst_mac, 0x0800, &ip)
}

fn icmp_echo(dst_mac: [u8; 6], seq: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(b"mkernel ping");
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    ipv4(dst_mac, 1, &icmp)
}

/// A malformed frame of some kind.
fn junk(rng: &mut Rng, mac: [u8; 6]) -> Vec<u8> {
    let dst = if rng.below(2) == 0 { mac } else { [0xff; 6] };
    let mut f = match rng.below(5) {
        0 => {
            let n = rng.below(1600);
            (0..n).map(|_| rng.next() as u8).collect()
        }
        1 => {
            let mut a = arp_request();
            let i = 14 + rng.below(28);
            a[i] = rng.next() as u8;
            a
        }
        2 => {
            let proto = [1u8, 6, 17, rng.next() as u8][rng.below(4)];
            let n = rng.below(1400);
            let mut payload: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            if proto == 6 && payload.len() >= 20 {
                payload[2..4].copy_from_slice(&80u16.to_be_bytes()); // to the listener
                payload[12] = ((5 + rng.below(11)) << 4) as u8;
            }
            ipv4(dst, proto, &payload)
        }
        3 => {
            // A valid packet with a lying header field.
            let mut p = icmp_echo(dst, 1);
            let i = 14 + rng.below(p.len() - 14);
            p[i] ^= 1 << rng.below(8);
            p
        }
        _ => {
            let mut p = icmp_echo(dst, 1);
            let n = rng.below(p.len());
            p.truncate(n);
            p
        }
    };
    if f.len() >= 14 && rng.below(3) == 0 {
        f[0..6].copy_from_slice(&dst);
    }
    f
}

fn drain(end: &LinkEnd) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Some(n)) = end.try_recv(&mut buf, mkernel::clock_monotonic()) {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Seeded random malformed frames; the stack neither panics nor stops
/// answering ARP, ping and TCP.
#[test]
fn malformed_frames() {
    let (a, b) = link::pair(Faults::default());
    let (c, d) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("c", c)
        .net_link("d", d)
        .run(
            (mkernel::net("a"), mkernel::net("c"), mkernel::net("d")),
            move |(na, nc, nd)| {
                let mac = na.1.mac;
                let stack = Stack::new(na, StackConfig::parse("10.0.0.1/24", None).unwrap());
                let _listener = TcpListener::bind(&stack, 80).unwrap();
                let mut rng = Rng(0x5eed);
                for round in 0..200 {
                    for _ in 0..100 {
                        let _ = b.send(&junk(&mut rng, mac), mkernel::clock_monotonic());
                    }
                    mkernel::sleep(Duration::from_millis(1));
                    drain(&b);
                    let _ = round;
                }
                // Still answers ARP and ping.
                b.send(&arp_request(), mkernel::clock_monotonic()).unwrap();
                b.send(&icmp_echo(mac, 7), mkernel::clock_monotonic())
                    .unwrap();
                let t0 = Instant::now();
                let (mut arp, mut pong) = (false, false);
                while !(arp && pong) {
                    assert!(
                        t0.elapsed() < Duration::from_secs(5),
                        "no answer (arp {arp}, ping {pong})"
                    );
                    mkernel::sleep(Duration::from_millis(1));
                    for f in drain(&b) {
                        arp |= f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 2];
                        pong |= f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 1 && f[34] == 0;
                    }
                }
                drop(stack);
                // A healthy TCP exchange between two other stacks after the
                // same treatment of one of them.
                let s1 = Stack::new(nc, StackConfig::parse("10.1.0.1/24", None).unwrap());
                let s2 = Stack::new(nd, StackConfig::parse("10.1.0.2/24", None).unwrap());
                let l = TcpListener::bind(&s1, 7).unwrap();
                let c = TcpStream::connect(&s2, "10.1.0.1:7".parse().unwrap()).unwrap();
                let (s, _) = l.accept().unwrap();
                c.write_all(b"still fine").unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                let mut got = String::new();
                (&s).read_to_string(&mut got).unwrap();
                assert_eq!(got, "still fine");
            },
        );
}

/// A directory with a ustar image `site.img` of one file `name`.
fn site_image(tag: &str, name: &str, data: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("mkt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site").join(name), data).unwrap();
    let img = dir.join("site.img");
    let ok = std::process::Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&img)
        .arg("-C")
        .arg(dir.join("site"))
        .arg(name)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tar --format=ustar -cf {}", img.display());
    (dir, img)
}

/// Hostile HTTP clients against the httpd example's connection handler.
#[test]
fn httpd_bad_requests() {
    let (dir, img) = site_image("bad", "index.html", b"hi\n");
    let (a, b) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .block_file("site", &img)
        .run(
            (mkernel::net("a"), mkernel::net("b"), mkernel::block("site")),
            |(na, nb, blk)| {
                let server = Stack::new(na, StackConfig::parse("10.0.0.1/24", None).unwrap());
                let client = Stack::new(nb, StackConfig::parse("10.0.0.2/24", None).unwrap());
                let site = Rc::new(httpd::Site::open(blk).unwrap());
                let baseline = mkernel::stats().live_tasks;
                let listener = TcpListener::bind(&server, 80).unwrap();
                let srv = mkernel::spawn(move || httpd::serve(listener, site));
                let addr = "10.0.0.1:80".parse().unwrap();
                let ask = |req: &[u8]| -> String {
                    let c = TcpStream::connect(&client, addr).unwrap();
                    c.write_all(req).unwrap();
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                            Err(_) => break,
                        }
                    }
                    String::from_utf8_lossy(&got).into_owned()
                };
                let r = ask(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                assert!(
                    r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("hi\n"),
                    "{r}"
                );
                let r = ask(b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n");
                assert!(r.starts_with("HTTP/1.1 404"), "{r}");
                let r = ask(b"GET /../etc/passwd HTTP/1.1\r\n\r\n");
                assert!(r.starts_with("HTTP/1.1 400"), "{r}");
                let r = ask(b"GET /a/%2e%2e/b HTTP/1.1\r\n\r\n");
                assert!(r.starts_with("HTTP/1.1 400"), "{r}");
                let r = ask(b"garbage\r\n\r\n");
                assert!(r.starts_with("HTTP/1.1 400"), "{r}");
                // A 1 MiB request line: written by a task while we read.
                {
                    let c = Rc::new(TcpStream::connect(&client, addr).unwrap());
                    let c2 = c.clone();
                    let w = mkernel::spawn(move || {
                        let mut line = b"GET /".to_vec();
                        line.resize(1 << 20, b'a');
                        let _ = c2.write_all(&line);
                    });
                    let mut got = vec![0u8; 4096];
                    let n = c.read(&mut got).unwrap();
                    let r = String::from_utf8_lossy(&got[..n]).into_owned();
                    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
                    w.cancel();
                    let _ = w.join();
                }
                // Disconnect mid-request.
                for _ in 0..10 {
                    let c = TcpStream::connect(&client, addr).unwrap();
                    c.write_all(b"GET /index.ht").unwrap();
                    drop(c);
                }
                // The server still serves, and its connection tasks are gone.
                let r = ask(b"GET /index.html HTTP/1.0\r\n\r\n");
                assert!(r.ends_with("hi\n"), "{r}");
                // Finished connection tasks are reaped by the accept loop
                // when the next connection comes: one more request reaps
                // all of the above, leaving the accept loop and the last
                // connection's task.
                let t0 = Instant::now();
                loop {
                    let r = ask(b"HEAD / HTTP/1.0\r\n\r\n");
                    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
                    let extra = mkernel::stats().live_tasks - baseline;
                    if extra <= 2 {
                        break;
                    }
                    assert!(
                        t0.elapsed() < Duration::from_secs(10),
                        "connection tasks leaked: {}",
                        extra - 2
                    );
                    mkernel::sleep(Duration::from_millis(5));
                }
                srv.cancel();
                let _ = srv.join();
                assert_eq!(mkernel::stats().live_tasks, baseline);
            },
        );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn httpd_refuses_a_truncated_site_image() {
    let (dir, img) = site_image("trunc", "big.bin", &[b'x'; 3000]);
    // The header and 1,536 of the file's 3,000 bytes: cut short.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(2048).unwrap();
    drop(f);
    let err = mkernel::Builder::new()
        .block_file("site", &img)
        .run(mkernel::block("site"), |blk| httpd::Site::open(blk).err());
    let _ = std::fs::remove_dir_all(&dir);
    let err = err.expect("a truncated image is refused at start-up");
    assert!(
        err.contains("big.bin") && err.contains("truncated"),
        "{err}"
    );
}

/// Slow and idle clients are shed by httpd's timeouts (1 s for the head,
/// 2 s of keep-alive idleness here): a client that sends a partial request
/// line and then nothing (slowloris) loses its connection at the header
/// timeout, and so does one that trickles a byte every 200 ms; a
/// kept-alive connection is closed after the idle timeout; a client that
/// asks every 500 ms is served throughout. Each shed connection leaves the
/// server's stack (its TCP sockets fall back to the listener's).
#[test]
fn httpd_sheds_slow_and_idle_clients() {
    let dir = std::env::temp_dir().join(format!("mkt-slow-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), b"hi\n").unwrap();
    let img = dir.join("site.img");
    let ok = std::process::Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&img)
        .arg("-C")
        .arg(dir.join("site"))
        .arg(".")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: tar --format=ustar failed");
        return;
    }
    let t = httpd::Timeouts {
        header: Duration::from_secs(1),
        idle: Duration::from_secs(2),
    };
    let (a, b) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .block_file("site", &img)
        .run(
            (mkernel::net("a"), mkernel::net("b"), mkernel::block("site")),
            move |(na, nb, blk)| {
                let server = Stack::new(na, StackConfig::parse("10.0.0.1/24", None).unwrap());
                let client = Stack::new(nb, StackConfig::parse("10.0.0.2/24", None).unwrap());
                let site = Rc::new(httpd::Site::open(blk).unwrap());
                let listener = TcpListener::bind(&server, 80).unwrap();
                let at_rest = server.tcp_socket_count();
                let srv = mkernel::spawn(move || httpd::serve_with(listener, site, t));
                let addr = "10.0.0.1:80".parse().unwrap();
                let get = |c: &TcpStream| {
                    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !got.ends_with(b"hi\n") {
                        let n = c.read(&mut buf).unwrap();
                        assert!(n > 0, "closed mid-response");
                        got.extend_from_slice(&buf[..n]);
                    }
                };
                let t0 = Instant::now();
                // Slowloris: a partial line, then nothing.
                let slow = TcpStream::connect(&client, addr).unwrap();
                slow.write_all(b"GET /index.ht").unwrap();
                // A trickler: a byte every 200 ms.
                let trickle = mkernel::spawn({
                    let client = client.clone();
                    move || {
                        let c = TcpStream::connect(&client, addr).unwrap();
                        for &b in b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n" {
                            if c.write_all(&[b]).is_err() {
                                break;
                            }
                            mkernel::sleep(Duration::from_millis(200));
                        }
                        c
                    }
                });
                // Kept alive, then idle.
                let idle = TcpStream::connect(&client, addr).unwrap();
                get(&idle);
                // Busy: a request every 500 ms for 3 s, all served.
                let busy = TcpStream::connect(&client, addr).unwrap();
                for _ in 0..6 {
                    get(&busy);
                    mkernel::sleep(Duration::from_millis(500));
                }
                assert!(t0.elapsed() >= Duration::from_secs(3));
                // By now the slowloris (1 s), the trickler (1 s) and the idle
                // connection (2 s) are gone from the server; the busy one is
                // left.
                assert_eq!(server.tcp_socket_count(), at_rest + 1);
                // The trickler saw its connection closed by the server.
                let c = trickle.join().unwrap();
                let mut buf = [0u8; 64];
                assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
                // The slowloris and the idle client learn it at their
                // next segment: a reset.
                for c in [&slow, &idle] {
                    let _ = c.write_all(b"x\r\n\r\n");
                    assert!(c.read(&mut buf).is_err(), "not reset");
                }
                get(&busy);
                srv.cancel();
                let _ = srv.join();
            },
        );
}

/// A directory with a tar image `site.img` (`--format=FORMAT`) of `files`.
fn site_of(
    tag: &str,
    format: &str,
    files: &[(&str, &[u8])],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("mkt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("site")).unwrap();
    for (name, data) in files {
        std::fs::write(dir.join("site").join(name), data).unwrap();
    }
    let img = dir.join("site.img");
    let ok = std::process::Command::new("tar")
        .arg(format!("--format={format}"))
        .arg("-cf")
        .arg(&img)
        .arg("-C")
        .arg(dir.join("site"))
        .args(files.iter().map(|(n, _)| n))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tar --format={format} -cf {}", img.display());
    (dir, img)
}

/// Runs httpd over `img` with a file cache of `cache` bytes on an
/// in-memory link, and `f` with the client's stack and the site (for its
/// counters).
fn with_httpd(img: &std::path::Path, cache: u64, f: impl FnOnce(&Stack, &httpd::Site) + 'static) {
    let (a, b) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .block_file("site", img)
        .run(
            (mkernel::net("a"), mkernel::net("b"), mkernel::block("site")),
            move |(na, nb, blk)| {
                let server = Stack::new(na, StackConfig::parse("10.0.0.1/24", None).unwrap());
                let client = Stack::new(nb, StackConfig::parse("10.0.0.2/24", None).unwrap());
                let site = Rc::new(httpd::Site::open_with_cache(blk, cache).unwrap());
                let listener = TcpListener::bind(&server, 80).unwrap();
                let srv = mkernel::spawn({
                    let site = site.clone();
                    move || httpd::serve(listener, site)
                });
                f(&client, &site);
                srv.cancel();
                let _ = srv.join();
            },
        );
}

const ADDR: &str = "10.0.0.1:80";

/// Sends `req` on a new connection and reads until the server closes.
fn ask(client: &Stack, req: &[u8]) -> Vec<u8> {
    let c = TcpStream::connect(client, ADDR.parse().unwrap()).unwrap();
    c.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    while let Ok(n @ 1..) = c.read(&mut buf) {
        got.extend_from_slice(&buf[..n]);
    }
    got
}

/// Sends a keep-alive `GET path` on `c` and reads its whole response;
/// returns (head, body).
fn get(c: &TcpStream, path: &str) -> (String, Vec<u8>) {
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("a Content-Length")
                .parse()
                .unwrap();
            if got.len() >= i + 4 + len {
                assert_eq!(got.len(), i + 4 + len, "bytes after the response");
                return (head, got[i + 4..].to_vec());
            }
        }
        let n = c.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

fn starts(r: &[u8], with: &str) -> bool {
    r.starts_with(with.as_bytes())
}

/// Requests that httparse refuses and the hand-written parser let
/// through: whitespace between a field name and its colon (RFC 9112
/// §5.1: a server must answer 400), a control character in the target,
/// a header without a name; more than `MAX_HEADERS` fields is a 431. A
/// `Connection` list with `close` in it closes.
#[test]
fn httpd_parses_requests_with_httparse() {
    let (dir, img) = site_of("parse", "ustar", &[("index.html", b"hi\n")]);
    with_httpd(&img, httpd::DEFAULT_CACHE, |client, _| {
        for req in [
            &b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"[..],
            b"GET /a\x01b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
        ] {
            let r = ask(client, req);
            assert!(
                starts(&r, "HTTP/1.1 400 Bad Request\r\n"),
                "{:?}: {}",
                String::from_utf8_lossy(req),
                String::from_utf8_lossy(&r)
            );
        }
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=httpd::MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let r = ask(client, &many);
        assert!(
            starts(&r, "HTTP/1.1 431 "),
            "{}",
            String::from_utf8_lossy(&r)
        );
        // Closed after the response (ask reads until the close).
        let r = ask(client, b"GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n");
        assert!(starts(&r, "HTTP/1.1 200 OK\r\n") && r.ends_with(b"\r\n\r\nhi\n"));
        let r = ask(client, b"POST / HTTP/1.1\r\n\r\n");
        assert!(starts(&r, "HTTP/1.1 405 "));
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// The index is read with the `tar` crate: a GNU archive's long names
/// (a `L` entry before the file's header) are served under the whole name.
#[test]
fn httpd_serves_long_gnu_names() {
    let long = format!("{}.txt", "n".repeat(150));
    let (dir, img) = site_of("gnu", "gnu", &[(&long, b"long\n"), ("index.html", b"hi\n")]);
    with_httpd(&img, httpd::DEFAULT_CACHE, move |client, site| {
        assert!(
            site.names().any(|n| n == long),
            "{:?}",
            site.names().collect::<Vec<_>>()
        );
        let c = TcpStream::connect(client, ADDR.parse().unwrap()).unwrap();
        assert_eq!(get(&c, &format!("/{long}")).1, b"long\n");
        assert_eq!(get(&c, "/").1, b"hi\n");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Hot files come from the cache: a second request for a file reads
/// nothing from the device; a file over the cache's per-file bound (a
/// quarter of the budget) is streamed from the device, whole, each time;
/// with no cache every request reads.
#[test]
fn httpd_serves_hot_files_from_its_cache() {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (dir, img) = site_of(
        "cache",
        "ustar",
        &[("index.html", b"hi\n"), ("big.bin", &big), ("empty", b"")],
    );
    let budget = 64 * 1024;
    let big2 = big.clone();
    with_httpd(&img, budget, move |client, site| {
        let c = TcpStream::connect(client, ADDR.parse().unwrap()).unwrap();
        let (head, body) = get(&c, "/index.html");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("keep-alive"));
        assert_eq!(body, b"hi\n");
        let s = site.stats();
        assert_eq!(
            (s.hits, s.misses, s.block_reads, s.cached_files),
            (0, 1, 1, 1)
        );
        for _ in 0..3 {
            assert_eq!(get(&c, "/index.html").1, b"hi\n");
        }
        let s = site.stats();
        assert_eq!((s.hits, s.misses, s.block_reads), (3, 1, 1), "{s:?}");
        // Larger than the budget: served whole from the device.
        for _ in 0..2 {
            let (head, body) = get(&c, "/big.bin");
            assert!(head.contains("Content-Length: 200000"), "{head}");
            assert!(body == big2, "big.bin differs");
        }
        let s = site.stats();
        assert_eq!((s.hits, s.misses, s.cached_files), (3, 3, 1), "{s:?}");
        // index.html once, then big.bin in 32 KiB reads (7) each time.
        assert!(s.block_reads >= 15, "{s:?}");
        assert!(s.cached_bytes <= budget, "{s:?}");
        // An empty file, and a cached file under `Connection: close`.
        assert_eq!(get(&c, "/empty").1, b"");
        let r = ask(
            client,
            b"GET /index.html HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let r = String::from_utf8_lossy(&r);
        assert!(
            r.contains("Connection: close\r\n") && r.ends_with("\r\n\r\nhi\n"),
            "{r}"
        );
        assert_eq!(site.stats().hits, 4);
    });
    with_httpd(&img, 0, |client, site| {
        let c = TcpStream::connect(client, ADDR.parse().unwrap()).unwrap();
        for _ in 0..3 {
            assert_eq!(get(&c, "/index.html").1, b"hi\n");
        }
        let s = site.stats();
        assert_eq!(
            (s.hits, s.misses, s.block_reads, s.cached_files),
            (0, 3, 3, 0)
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cache miss is served while hits keep the server busy: httpd reads
/// files with atomic reads. A deferred read waits for a moment when no
/// task can run and no frame is pending (DESIGN: lowest priority, meant
/// literally), which a loaded server never has: four keep-alive clients
/// asking for a cached file in a loop starved a miss for as long as they
/// ran (the demo's clients were served with a Jain index of 0.13).
#[test]
fn httpd_serves_a_cache_miss_while_hits_keep_it_busy() {
    let (dir, img) = site_of(
        "busy",
        "ustar",
        &[("index.html", b"hi\n"), ("other.html", b"other\n")],
    );
    with_httpd(&img, httpd::DEFAULT_CACHE, |client, _| {
        const ROUNDS: u64 = 2000;
        let done = Rc::new(std::cell::Cell::new(0u64));
        let hammers: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                let done = done.clone();
                mkernel::spawn(move || {
                    let c = TcpStream::connect(&client, ADDR.parse().unwrap()).unwrap();
                    for _ in 0..ROUNDS {
                        assert_eq!(get(&c, "/index.html").1, b"hi\n");
                        done.set(done.get() + 1);
                    }
                })
            })
            .collect();
        // Once the hits run, a miss on a connection of its own. (Not
        // yield_now: a task always runnable would starve the hammers'
        // own first, deferred, read.)
        while done.get() < 40 {
            mkernel::sleep(Duration::from_millis(1));
        }
        let c = TcpStream::connect(client, ADDR.parse().unwrap()).unwrap();
        assert_eq!(get(&c, "/other.html").1, b"other\n");
        let when = done.get();
        for h in hammers {
            h.join().unwrap();
        }
        assert!(
            when < 4 * ROUNDS / 2,
            "the miss was served only after {when} of {} hits: starved",
            4 * ROUNDS
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

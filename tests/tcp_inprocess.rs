//! In-process tests of the TCP/IP stack: two stacks joined by an in-memory
//! link, clean and faulty.

use mkernel::net::link::{self, Faults};
use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream, UdpSocket};
use std::rc::Rc;
use std::time::{Duration, Instant};

const SERVER: &str = "10.0.0.1";
const CLIENT: &str = "10.0.0.2";

fn run_pair<T: 'static>(faults: Faults, f: impl FnOnce(Stack, Stack) -> T + 'static) -> T {
    let (a, b) = link::pair(faults);
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run((mkernel::net("a"), mkernel::net("b")), |(a, b)| {
            let sa = Stack::new(
                a,
                StackConfig::parse(&format!("{SERVER}/24"), None).unwrap(),
            );
            let sb = Stack::new(
                b,
                StackConfig::parse(&format!("{CLIENT}/24"), None).unwrap(),
            );
            // Bulk transfers: 64 KiB buffers, not the default 16 KiB (over
            // the lossy link, 16 KiB windows take about twice as long:
            // too few segments in flight for fast retransmit, so a loss
            // waits for the retransmission timeout more often).
            for s in [&sa, &sb] {
                s.set_tcp_buffers(64 * 1024, 64 * 1024);
            }
            f(sa, sb)
        })
}

/// Deterministic bytes.
struct Gen(u64);
impl Gen {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

/// FNV-1a, 64 bits.
#[derive(Clone, Copy)]
struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }
    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
}

/// Writes `len` bytes from seed `seed`, then shuts down; returns their hash.
fn send_all(s: &TcpStream, seed: u64, len: usize) -> u64 {
    let mut g = Gen(seed);
    let mut h = Fnv::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        g.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        s.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    h.0
}

/// Reads to the end; returns (length, hash).
fn recv_all(s: &TcpStream) -> (usize, u64) {
    let mut h = Fnv::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            return (total, h.0);
        }
        h.update(&buf[..n]);
        total += n;
    }
}

/// 16 MiB (or `len`) each way over one connection: both directions at
/// once when `concurrent`, else client to server, then server to client.
///
/// On a lossy link the directions go one after the other: smoltcp counts
/// duplicate ACKs (for fast retransmit) only on segments without payload,
/// so with data flowing both ways every loss waits for a retransmission
/// timeout (at least 1 s in smoltcp), and 16 MiB would take many minutes.
fn transfer(faults: Faults, len: usize, concurrent: bool) {
    let t0 = Instant::now();
    run_pair(faults, move |server, client| {
        let listener = TcpListener::bind(&server, 5001).unwrap();
        let srv = mkernel::spawn(move || {
            let (s, peer) = listener.accept().unwrap();
            assert_eq!(peer.ip().to_string(), CLIENT);
            let s = Rc::new(s);
            if concurrent {
                let s2 = s.clone();
                let w = mkernel::spawn(move || send_all(&s2, 2, len));
                let got = recv_all(&s);
                (got, w.join().unwrap())
            } else {
                let got = recv_all(&s);
                (got, send_all(&s, 2, len))
            }
        });
        let c = Rc::new(
            TcpStream::connect(&client, format!("{SERVER}:5001").parse().unwrap()).unwrap(),
        );
        let (got_c, sent_c) = if concurrent {
            let c2 = c.clone();
            let w = mkernel::spawn(move || send_all(&c2, 1, len));
            let got_c = recv_all(&c);
            (got_c, w.join().unwrap())
        } else {
            let sent = send_all(&c, 1, len);
            (recv_all(&c), sent)
        };
        let (got_s, sent_s) = srv.join().unwrap();
        assert_eq!(got_s, (len, sent_c), "client to server");
        assert_eq!(got_c, (len, sent_s), "server to client");
    });
    let dt = t0.elapsed();
    eprintln!(
        "{len} bytes each way ({}) in {dt:?}: {:.1} MB/s of payload in total",
        if concurrent {
            "concurrently"
        } else {
            "one way then the other"
        },
        2.0 * len as f64 / dt.as_secs_f64() / 1e6
    );
}

#[test]
fn small_exchange() {
    transfer(Faults::default(), 100_000, true);
}

#[test]
fn sixteen_mib_each_way_clean() {
    transfer(Faults::default(), 16 << 20, true);
}

fn lossy() -> Faults {
    Faults {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        delay: Duration::ZERO,
        seed: 7,
    }
}

/// 1 MiB each way with 5% loss, 2% duplicates, 5% reordering (about 10 s).
#[test]
fn one_mib_each_way_lossy() {
    transfer(lossy(), 1 << 20, false);
}

/// About 100 s of wall time but little CPU: recovering from loss waits on
/// smoltcp's retransmission timer (1 s at least).
#[test]
fn sixteen_mib_each_way_lossy() {
    transfer(lossy(), 16 << 20, false);
}

/// 200 connections at once, each echoing 8 KiB.
#[test]
fn two_hundred_concurrent_connections() {
    const N: usize = 200;
    let t0 = Instant::now();
    run_pair(Faults::default(), |server, client| {
        let before = mkernel::stats().live_tasks;
        let listener = TcpListener::bind_with_backlog(&server, 7, N + 8).unwrap();
        let srv = mkernel::spawn(move || {
            let orphans = mkernel::Orphans::new();
            for _ in 0..N {
                let (s, _) = listener.accept().unwrap();
                mkernel::spawn_orphan(&orphans, move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).unwrap();
                    }
                });
            }
            while let Some(r) = orphans.get() {
                r.unwrap();
            }
        });
        let clients: Vec<_> = (0..N)
            .map(|i| {
                let client = client.clone();
                mkernel::spawn(move || {
                    let c = TcpStream::connect(&client, format!("{SERVER}:7").parse().unwrap())
                        .unwrap();
                    let mut data = vec![0u8; 8192];
                    Gen(i as u64 + 1).fill(&mut data);
                    c.write_all(&data).unwrap();
                    c.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut got = Vec::new();
                    std::io::Read::read_to_end(&mut &c, &mut got).unwrap();
                    assert_eq!(got, data, "connection {i}");
                })
            })
            .collect();
        for r in mkernel::join_all(clients) {
            r.unwrap();
        }
        srv.join().unwrap();
        assert_eq!(mkernel::stats().live_tasks, before);
    });
    eprintln!("{N} connections in {:?}", t0.elapsed());
}

#[test]
fn udp_echo() {
    run_pair(Faults::default(), |server, client| {
        let us = UdpSocket::bind(&server, 53).unwrap();
        let srv = mkernel::spawn(move || {
            let mut buf = [0u8; 1500];
            for _ in 0..10 {
                let (n, from) = us.recv_from(&mut buf).unwrap();
                us.send_to(&buf[..n], from).unwrap();
            }
        });
        let uc = UdpSocket::bind(&client, 0).unwrap();
        for i in 0..10u8 {
            uc.send_to(&[i; 100], format!("{SERVER}:53").parse().unwrap())
                .unwrap();
            let mut buf = [0u8; 1500];
            let (n, from) = uc.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 100]);
            assert_eq!(from.to_string(), format!("{SERVER}:53"));
        }
        srv.join().unwrap();
    });
}

#[test]
fn refused_and_reset() {
    run_pair(Faults::default(), |server, client| {
        let e = TcpStream::connect(&client, format!("{SERVER}:9").parse().unwrap()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        let listener = TcpListener::bind(&server, 9).unwrap();
        assert_eq!(
            TcpListener::bind(&server, 9).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
        let c = TcpStream::connect(&client, format!("{SERVER}:9").parse().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        drop(s);
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).unwrap(), 0); // graceful close: end of stream
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let e = c.write(b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    });
}

/// Cancelling tasks blocked in accept, read, write and connect leaves
/// the stack consistent: sockets go, and the stack still works.
#[test]
fn cancellation_cleans_up() {
    run_pair(Faults::default(), |server, client| {
        let base_tasks = mkernel::stats().live_tasks;
        let base_socks = server.socket_count();
        let listener = Rc::new(TcpListener::bind(&server, 80).unwrap());
        let l2 = listener.clone();
        let acceptor = mkernel::spawn(move || l2.accept().map(|_| ()));
        mkernel::sleep(Duration::from_millis(5));
        acceptor.cancel();
        assert!(acceptor.join().is_err());
        // A connection whose both ends block in read, then are cancelled.
        let c = TcpStream::connect(&client, format!("{SERVER}:80").parse().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        let r1 = mkernel::spawn(move || s.read(&mut [0u8; 10]).map(|_| ()));
        let r2 = mkernel::spawn(move || {
            // Fills the windows, then blocks in write.
            let big = vec![0u8; 1 << 20];
            c.write_all(&big)
        });
        mkernel::sleep(Duration::from_millis(20));
        r1.cancel();
        r2.cancel();
        assert!(r1.join().is_err() && r2.join().is_err());
        // Connect to a silent address (ARP never answered), cancelled.
        let silent = {
            let client = client.clone();
            mkernel::spawn(move || {
                TcpStream::connect(&client, "10.0.0.77:80".parse().unwrap()).map(|_| ())
            })
        };
        mkernel::sleep(Duration::from_millis(5));
        silent.cancel();
        assert!(silent.join().is_err());
        drop(listener);
        // Closed sockets leave the stack once the close is done.
        let t0 = Instant::now();
        while server.socket_count() > base_socks || client.socket_count() > 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(40),
                "sockets left: {} {}",
                server.socket_count(),
                client.socket_count()
            );
            mkernel::sleep(Duration::from_millis(10));
        }
        assert_eq!(mkernel::stats().live_tasks, base_tasks);
        // Still works.
        let listener = TcpListener::bind(&server, 80).unwrap();
        let c = TcpStream::connect(&client, format!("{SERVER}:80").parse().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        c.write_all(b"ok").unwrap();
        let mut buf = [0u8; 2];
        std::io::Read::read_exact(&mut &s, &mut buf).unwrap();
        assert_eq!(&buf, b"ok");
    });
}

/// TCP and UDP ports are separate spaces; within one, a port is taken once
/// and given back when its socket is dropped.
#[test]
fn tcp_and_udp_ports_are_separate() {
    run_pair(Faults::default(), |server, _client| {
        let t = TcpListener::bind(&server, 53).unwrap();
        let u = UdpSocket::bind(&server, 53).unwrap();
        let Err(e) = TcpListener::bind(&server, 53) else {
            panic!("TCP 53 is taken")
        };
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("TCP port 53"), "{e}");
        let Err(e) = UdpSocket::bind(&server, 53) else {
            panic!("UDP 53 is taken")
        };
        assert!(e.to_string().contains("UDP port 53"), "{e}");
        drop(t);
        drop(u);
        TcpListener::bind(&server, 53).unwrap();
        UdpSocket::bind(&server, 53).unwrap();
    });
}

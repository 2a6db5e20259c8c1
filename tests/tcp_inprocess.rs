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
    s.shutdown().unwrap();
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

/// Both directions at once over one connection.
fn duplex(faults: Faults, len: usize) {
    let t0 = Instant::now();
    run_pair(faults, move |server, client| {
        let listener = TcpListener::bind(&server, 5001).unwrap();
        let srv = mkernel::spawn(move || {
            let (s, peer) = listener.accept().unwrap();
            assert_eq!(peer.ip().to_string(), CLIENT);
            let s = Rc::new(s);
            let s2 = s.clone();
            let w = mkernel::spawn(move || send_all(&s2, 2, len));
            let got = recv_all(&s);
            (got, w.join().unwrap())
        });
        let c = Rc::new(
            TcpStream::connect(&client, format!("{SERVER}:5001").parse().unwrap()).unwrap(),
        );
        let c2 = c.clone();
        let w = mkernel::spawn(move || send_all(&c2, 1, len));
        let got_c = recv_all(&c);
        let sent_c = w.join().unwrap();
        let (got_s, sent_s) = srv.join().unwrap();
        assert_eq!(got_s, (len, sent_c), "client to server");
        assert_eq!(got_c, (len, sent_s), "server to client");
    });
    let dt = t0.elapsed();
    eprintln!(
        "{len} bytes each way in {dt:?}: {:.1} MB/s per direction",
        len as f64 / dt.as_secs_f64() / 1e6
    );
}

#[test]
fn small_exchange() {
    duplex(Faults::default(), 100_000);
}

#[test]
fn sixteen_mib_each_way_clean() {
    duplex(Faults::default(), 16 << 20);
}

#[test]
fn sixteen_mib_each_way_lossy() {
    duplex(
        Faults {
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.05,
            delay: Duration::ZERO,
            seed: 7,
        },
        16 << 20,
    );
}

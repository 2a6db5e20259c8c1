//! mnet's echo unikernel (`unikernels/echo/echo.ml`), ported, with its
//! server and its clients in one program: two TCP/IP stacks joined by an
//! in-memory link (`net::link::pair`, mapped with `Builder::net_link`).
//!
//! The server accepts a fixed number of connections (mnet's `--limit`) and
//! runs each handler as an orphan task: between two accepts it reaps the
//! handlers that finished (`Orphans::care`, mnet's `clean_up`). Once the
//! limit is reached it shuts down: it takes the handlers still there with
//! `Orphans::take` and cancels them (mnet's `terminate` waits for them
//! instead, polling every 100 ms).
//!
//! Three clients send 4096 bytes each (mnet's default length) in chunks of
//! 2047, reading the echo as they go, then shut their write side down and
//! read the rest; each compares the digests of what it sent and what came
//! back (mnet uses SHA-1 and random bytes; here MD5 and bytes from a fixed
//! seed, so the run is the same every time). A fourth client connects and
//! stays idle: its handler is the one the shutdown cancels, which closes
//! its connection.
//!
//! ```text
//! cargo run --example echo_orphans
//! ```
//!
//! It prints the same lines on every run, hosted and as a unikernel (see
//! `tests/ported/echo_orphans.expected`). As a unikernel it still needs
//! the two net devices attached (`--net:service=TAP --net:client=TAP2`):
//! they are in its manifest, and a Solo5 tender refuses to start an image
//! whose declared devices are not all attached, even though the program
//! maps them to its in-memory link instead.

use md5::{Digest, Md5};
use mkernel::net::link::{self, Faults};
use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
use mkernel::{Orphans, Promise};
use std::net::SocketAddr;

const SERVER: &str = "10.0.0.2";
const CLIENT: &str = "10.0.0.3";
const PORT: u16 = 9000;
const LENGTH: usize = 4096;
const CLIENTS: usize = 3;

/// mnet's `handler`: echoes until the peer shuts its side down, then
/// closes.
fn handler(flow: TcpStream) {
    let mut buf = vec![0u8; 0x7ff];
    loop {
        match flow.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if flow.write_all(&buf[..n]).is_err() {
                    break;
                }
                mkernel::yield_now();
            }
        }
    }
    flow.close();
}

/// mnet's `clean_up`: joins the handlers that finished, without waiting.
/// Returns how many.
fn clean_up(orphans: &Orphans<()>) -> usize {
    let mut reaped = 0;
    while let Some(Some(p)) = orphans.care() {
        if let Err(e) = p.join() {
            eprintln!("echo: unexpected error: {e}");
        }
        reaped += 1;
    }
    reaped
}

/// At shutdown: every handler still held is taken and cancelled (or
/// joined, if it finished meanwhile). Returns (joined, cancelled).
fn terminate(orphans: &Orphans<()>) -> (usize, usize) {
    let (mut joined, mut cancelled) = (0, 0);
    while let Some(p) = orphans.take() {
        if p.is_finished() {
            let _ = p.join();
            joined += 1;
        } else {
            p.cancel();
            cancelled += 1;
        }
    }
    (joined, cancelled)
}

fn server(stack: Stack, limit: usize) {
    let listener = TcpListener::bind(&stack, PORT).expect("bind");
    println!(
        "server: listening on {}",
        listener
            .local_addr()
            .expect("a bound listener has an address")
    );
    let orphans = Orphans::new();
    let (mut accepted, mut reaped) = (0, 0);
    loop {
        reaped += clean_up(&orphans);
        if accepted == limit {
            break;
        }
        let (flow, _peer) = listener.accept().expect("accept");
        mkernel::spawn_orphan(&orphans, move || handler(flow));
        accepted += 1;
    }
    let (joined, cancelled) = terminate(&orphans);
    println!(
        "server: {accepted} connections; {reaped} handlers reaped with care, \
         {joined} joined and {cancelled} cancelled at shutdown"
    );
}

/// Bytes from a fixed seed (xorshift64).
fn fill(seed: &mut u64, buf: &mut [u8]) {
    for b in buf {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
}

/// mnet's client: writes `length` bytes, reading as it goes; returns
/// whether the echo has the digest of what was sent.
fn client(stack: &Stack, id: u64, length: usize) -> bool {
    let addr: SocketAddr = format!("{SERVER}:{PORT}").parse().unwrap();
    let flow = TcpStream::connect(stack, addr).expect("connect");
    let (mut sent, mut got) = (Md5::new(), Md5::new());
    let mut seed = 0x2545_f491_4f6c_dd1d ^ id;
    let mut buf = vec![0u8; 0x7ff];
    let (mut rem0, mut rem1) = (length, length);
    while rem0 > 0 {
        let len = rem0.min(buf.len());
        fill(&mut seed, &mut buf[..len]);
        flow.write_all(&buf[..len]).expect("write");
        sent.update(&buf[..len]);
        rem0 -= len;
        let n = flow.read(&mut buf).expect("read");
        got.update(&buf[..n]);
        rem1 = rem1.saturating_sub(n);
    }
    flow.shutdown(std::net::Shutdown::Write).expect("shutdown");
    while rem1 > 0 {
        match flow.read(&mut buf).expect("read") {
            0 => break,
            n => {
                got.update(&buf[..n]);
                rem1 = rem1.saturating_sub(n);
            }
        }
    }
    // The server closes after our shutdown: read its FIN.
    while flow.read(&mut buf).expect("read") != 0 {}
    sent.finalize() == got.finalize()
}

fn stack(ipv4: &str) -> impl mkernel::Devices<Output = Stack> + use<> {
    let name = if ipv4 == SERVER { "service" } else { "client" };
    let cfg = StackConfig::parse(&format!("{ipv4}/24"), None).unwrap();
    mkernel::map(mkernel::net(name), move |dev| Stack::new(dev, cfg))
}

fn main() {
    let (a, b) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("service", a)
        .net_link("client", b)
        .run((stack(SERVER), stack(CLIENT)), |(srv, cli)| {
            let server = mkernel::spawn(move || server(srv, CLIENTS + 1));
            let cli = std::rc::Rc::new(cli);
            let clients: Vec<Promise<bool>> = (1..=CLIENTS as u64)
                .map(|id| {
                    let cli = cli.clone();
                    mkernel::spawn(move || client(&cli, id, LENGTH))
                })
                .collect();
            for (id, r) in (1..).zip(mkernel::join_all(clients)) {
                match r {
                    Ok(true) => println!("client {id}: {LENGTH} bytes echoed, same digest"),
                    Ok(false) => println!("client {id}: the echo differs"),
                    Err(e) => println!("client {id}: {e}"),
                }
            }
            // The idle client: connects, then waits for the server.
            let addr: SocketAddr = format!("{SERVER}:{PORT}").parse().unwrap();
            let idle = TcpStream::connect(&cli, addr).expect("connect");
            server.join_unwrap();
            let mut buf = [0u8; 16];
            match idle.read(&mut buf) {
                Ok(0) => println!("idle client: the server closed the connection"),
                Ok(n) => println!("idle client: {n} unexpected bytes"),
                Err(e) => println!("idle client: {e}"),
            }
        });
}

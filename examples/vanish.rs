//! A download server for watching a vanished client be given up: it
//! streams data to every client until a write fails, then says how long
//! the connection had made no progress (`tests/vanish_tap.rs`).
//!
//! ```text
//! cargo build --example vanish
//! sudo ip tuntap add dev tap0 mode tap && sudo ip link set tap0 up
//! ./target/debug/examples/vanish --net:service=tap0 -- --ipv4=10.0.0.2/24 --peer-timeout=3
//! ```
//!
//! Application flags (after `--`): `--port=N` (default 9000),
//! `--peer-timeout=SECONDS` (each stream's peer timeout,
//! `TcpStream::set_peer_timeout`; default `DEFAULT_PEER_TIMEOUT`, 60 s),
//! `--ipv4=ADDR/PREFIX` (default 10.0.0.2/24) and the stack's other flags.
//!
//! Prints `listening on ADDR:PORT`, then `stack: sockets N tcp M` (the
//! counts with only the listener), then for every connection one line
//! when it starts and one when it ends:
//!
//! ```text
//! accepted PEER; stack: sockets N tcp M
//! closed PEER: KIND, stalled S s, written B bytes; stack: sockets N tcp M
//! ```
//!
//! `KIND` is the failed write's `io::ErrorKind`. `stalled` is the time
//! from the last write that made progress to the failure: a client that
//! stops acknowledging leaves the send buffer full, so no write makes
//! progress after its last acknowledgement, and the stack gives the
//! connection up one peer timeout after the client's last segment. The
//! counts are taken after the stream is dropped: the socket has left the
//! stack when they are back to those of the second line.

use mkernel::net::stack::{self, Stack, StackConfig, TcpListener, TcpStream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes per write: a socket buffer's worth (16 KiB by default).
const CHUNK: usize = 16 * 1024;

fn counts(stack: &Stack) -> String {
    format!(
        "stack: sockets {} tcp {}",
        stack.socket_count(),
        stack.tcp_socket_count()
    )
}

/// Streams to `s` until a write fails, then reports it.
fn download(stack: &Stack, s: TcpStream, peer: SocketAddr, timeout: Option<Duration>) {
    if let Some(t) = timeout {
        s.set_peer_timeout(Some(t));
    }
    println!("accepted {peer}; {}", counts(stack));
    let chunk: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
    let mut written = 0u64;
    let mut last_progress = Instant::now();
    let err = loop {
        match s.write(&chunk) {
            Ok(n) => {
                written += n as u64;
                last_progress = Instant::now();
            }
            Err(e) => break e,
        }
    };
    let stalled = last_progress.elapsed();
    drop(s);
    println!(
        "closed {peer}: {:?}, stalled {:.3} s, written {written} bytes; {}",
        err.kind(),
        stalled.as_secs_f64(),
        counts(stack)
    );
}

fn serve(stack: Stack, port: u16, timeout: Option<Duration>) {
    let listener = match TcpListener::bind(&stack, port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    println!(
        "listening on {}",
        listener.local_addr().expect("a listener has an address")
    );
    println!("{}", counts(&stack));
    let orphans = mkernel::Orphans::new();
    loop {
        while let Some(Some(p)) = orphans.care() {
            let _ = p.join();
        }
        match listener.accept() {
            Ok((s, peer)) => {
                let stack = stack.clone();
                mkernel::spawn_orphan(&orphans, move || download(&stack, s, peer, timeout));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// `--peer-timeout=SECONDS`, taken out of `args`; the rest is returned.
fn own_flags(args: Vec<String>) -> Result<(Option<Duration>, Vec<String>), String> {
    let mut timeout = None;
    let mut rest = Vec::new();
    for a in args {
        match a.strip_prefix("--peer-timeout=") {
            Some(v) => {
                let t = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| format!("{a}: expected a positive number of seconds"))?;
                timeout = Some(Duration::from_secs_f64(t));
            }
            None => rest.push(a),
        }
    }
    Ok((timeout, rest))
}

fn main() {
    // Check the flags before touching devices, for a clear error.
    let parsed = own_flags(mkernel::args()).and_then(|(timeout, rest)| {
        StackConfig::from_args(&rest)
            .and_then(|(_, rest)| stack::port_from_args(&rest, 9000))
            .map(|port| (port, timeout))
            .map_err(|e| e.to_string())
    });
    let (port, timeout) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    mkernel::run(mkernel::stack("service"), move |stack| {
        serve(stack, port, timeout)
    });
}

//! A TCP sink and source, for throughput measurements (`benches/tcp.rs`).
//!
//! ```text
//! cargo build --release --example tcpsink
//! ./target/release/examples/tcpsink --net:service=tap0 -- --ipv4=10.0.0.2/24
//! ```
//!
//! - port `P` (default 5001), the sink: reads and drops everything until
//!   the peer shuts its write side down, then answers with the number of
//!   bytes received (8 bytes, little-endian) and closes;
//! - port `P + 1`, the source: reads the number of bytes wanted (8 bytes,
//!   little-endian), sends that many (zeros), then closes; a peer that
//!   closes early just ends the connection.
//!
//! Application flags (after `--`): `--port=P`, `--ipv4=ADDR/PREFIX`,
//! `--ipv4-gateway=ADDR`. Prints `listening on ADDR:P` once both ports
//! are bound.

use mkernel::net::stack::{self, Stack, StackConfig, TcpListener, TcpStream};

/// Bytes per read and per write: large enough that a call moves as much
/// as a socket buffer holds.
const CHUNK: usize = 64 * 1024;

/// Socket buffers: several chunks, so that a sender keeps segments in
/// flight while the last ones are acknowledged (one 64 KiB buffer is one
/// offloaded segment per round trip).
const BUFFER: usize = 256 * 1024;

fn sink(s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf)? {
            0 => break,
            n => total += n as u64,
        }
    }
    s.write_all(&total.to_le_bytes())?;
    s.shutdown(std::net::Shutdown::Write)
}

fn source(s: TcpStream) -> std::io::Result<()> {
    let mut want = [0u8; 8];
    let mut got = 0;
    while got < 8 {
        match s.read(&mut want[got..])? {
            0 => return Ok(()),
            n => got += n,
        }
    }
    let mut left = u64::from_le_bytes(want);
    let buf = vec![0u8; CHUNK];
    while left > 0 {
        let n = (left as usize).min(CHUNK);
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)
}

/// Accepts connections on `listener` forever, running `each` in a task.
fn accept_loop(listener: TcpListener, each: fn(TcpStream) -> std::io::Result<()>) {
    let orphans = mkernel::Orphans::new();
    loop {
        while let Some(Some(p)) = orphans.care() {
            let _ = p.join();
        }
        match listener.accept() {
            Ok((s, _peer)) => mkernel::spawn_orphan(&orphans, move || {
                let _ = each(s);
            }),
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn serve(stack: Stack, port: u16) {
    // A bulk service: buffers larger than the stack's default (16 KiB),
    // since smoltcp's window is the receive buffer.
    stack.set_tcp_buffers(BUFFER, BUFFER);
    let bind = |p| match TcpListener::bind(&stack, p) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    let sinks = bind(port);
    let sources = bind(port + 1);
    println!(
        "listening on {}",
        sinks.local_addr().expect("a listener has an address")
    );
    let a = mkernel::spawn(move || accept_loop(sinks, sink));
    accept_loop(sources, source);
    let _ = a.join();
}

fn main() {
    let port = match StackConfig::from_args(&mkernel::args())
        .and_then(|(_, rest)| stack::port_from_args(&rest, 5001))
        .map_err(|e| e.to_string())
        .and_then(|p| {
            // The source listens on the next port.
            if p < u16::MAX {
                Ok(p)
            } else {
                Err(format!(
                    "--port={p}: the source needs port {p}+1; give at most 65534"
                ))
            }
        }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    mkernel::run(mkernel::stack("service"), move |stack| serve(stack, port));
}

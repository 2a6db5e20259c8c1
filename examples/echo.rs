//! A TCP echo server: one task per connection.
//!
//! ```text
//! cargo build --example echo
//! sudo ip tuntap add dev tap0 mode tap && sudo ip link set tap0 up
//! ./target/debug/examples/echo --net:service=tap0 -- --ipv4=10.0.0.2/24 --port=7
//! ```
//!
//! Application flags (after `--`): `--port=N` (default 7),
//! `--ipv4=ADDR/PREFIX` (default 10.0.0.2/24) or `--ipv4=dhcp`,
//! `--ipv4-gateway=ADDR`, `--ipv6=ADDR/PREFIX` or `--ipv6=auto`, `--ipv6-gateway=ADDR`.
//! Prints `listening on ADDR:PORT` once ready, and nothing per connection.

use mkernel::net::stack::{self, Stack, StackConfig, TcpListener, TcpStream};

fn echo(s: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn serve(stack: Stack, port: u16) {
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
    let orphans = mkernel::Orphans::new();
    loop {
        // Reap the finished connections.
        while let Some(Some(p)) = orphans.care() {
            let _ = p.join();
        }
        match listener.accept() {
            Ok((s, _peer)) => mkernel::spawn_orphan(&orphans, move || echo(s)),
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn main() {
    // Check the flags before touching devices, for a clear error.
    let port = match StackConfig::from_args(&mkernel::args())
        .and_then(|(_, rest)| stack::port_from_args(&rest, 7))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    mkernel::run(mkernel::stack("service"), move |stack| serve(stack, port));
}

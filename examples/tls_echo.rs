//! A TLS echo server (rustls on mkernel's TCP; the `tls` feature): one task
//! per connection, each echoing what it reads until the client's
//! close_notify, then ending with its own.
//!
//! The certificate chain (the server's own certificate first) and its
//! private key are PEM text on the block device `tls`, zero-padded to whole
//! sectors: the same file hosted and in a Solo5 unikernel, which has no
//! file system.
//!
//! ```text
//! cat cert.pem key.pem > tls.img && truncate -s %512 tls.img
//! cargo run --features tls --example tls_echo -- --net:service=tap0 --block:tls=tls.img -- --ipv4=10.0.0.2/24
//! cargo mkernel run --target spt --features tls --example tls_echo --net:service=tap0 --block:tls=tls.img -- --ipv4=10.0.0.2/24
//! openssl s_client -connect 10.0.0.2:4433 -CAfile ca.pem
//! ```
//!
//! Application flags (after `--`): `--port=N` (default 4433),
//! `--ipv4=ADDR/PREFIX` (default 10.0.0.2/24), `--ipv4-gateway=ADDR`.
//! Prints `listening on ADDR:PORT` once ready, and one line on stderr per
//! failed handshake. A missing or bad certificate or key stops it with a
//! message (exit status 1).

use mkernel::Block;
use mkernel::net::stack::{self, Stack, StackConfig, TcpListener, TcpStream};
use mkernel::net::tls::{self, TlsStream, rustls::ServerConfig};
use std::io::{Read, Write};
use std::sync::Arc;

/// The PEM text on `dev` (at most 1 MiB of it).
fn read_pem(dev: &Block) -> Result<Vec<u8>, String> {
    let len = dev.length().min(1 << 20) as usize / dev.pagesize() * dev.pagesize();
    if len == 0 {
        return Err(format!("block device {:?} is empty", dev.name()));
    }
    let mut buf = vec![0u8; len];
    dev.atomic_read(0, &mut buf)
        .map_err(|e| format!("block device {:?}: {e}", dev.name()))?;
    Ok(buf)
}

fn echo(tcp: TcpStream, config: Arc<ServerConfig>) {
    let peer = tcp.peer_addr();
    let mut s = match TlsStream::accept(tcp, config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{peer:?}: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    let _ = s.shutdown();
}

fn serve(stack: Stack, pem: Block, port: u16) {
    let config = match read_pem(&pem)
        .and_then(|p| tls::server_config_from_pem(&p).map_err(|e| format!("{e}")))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: certificate and key (block device tls): {e}");
            std::process::exit(1)
        }
    };
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
        while let Some(Some(p)) = orphans.care() {
            let _ = p.join();
        }
        match listener.accept() {
            Ok((s, _peer)) => {
                let config = config.clone();
                mkernel::spawn_orphan(&orphans, move || echo(s, config))
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn main() {
    let port = match StackConfig::from_args(&mkernel::args())
        .and_then(|(_, rest)| stack::port_from_args(&rest, 4433))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    mkernel::run(
        (mkernel::stack("service"), mkernel::block("tls")),
        move |(stack, pem)| serve(stack, pem, port),
    );
}

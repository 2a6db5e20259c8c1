//! A TLS client (rustls on mkernel's TCP; the `tls` feature): fetches one
//! page over HTTPS (HTTP/1.0) and prints it.
//!
//! The certificate authorities to trust are PEM text on the block device
//! `tls`, zero-padded to whole sectors (the same file hosted and in a Solo5
//! unikernel). The server's certificate is checked against them, against
//! the server name, and against the wall clock.
//!
//! ```text
//! cp ca.pem ca.img && truncate -s %512 ca.img
//! cargo mkernel run --target spt --features tls --example tls_get --net:service=tap0 --block:tls=ca.img \
//!     -- --ipv4=10.0.0.2/24 --connect=10.0.0.1:4433 --server-name=tls.test
//! ```
//!
//! Application flags (after `--`): `--connect=ADDR:PORT` (required),
//! `--server-name=NAME` (the name the certificate must hold; default: the
//! address), `--path=PATH` (default `/`), `--ipv4=ADDR/PREFIX` (default
//! 10.0.0.2/24), `--ipv4-gateway=ADDR`.
//!
//! Prints `clock: SECONDS` (the wall clock it checks certificates against,
//! seconds since 1970), `connected: VERSION SUITE`, the response, then
//! `end: close_notify` or `end: truncated (no close_notify)`. Any failure
//! (a refused certificate included) is one `error: ...` line on stderr and
//! exit status 1.

use mkernel::Block;
use mkernel::net::stack::{Stack, StackConfig, TcpStream};
use mkernel::net::tls::{self, TlsStream};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

struct Opts {
    connect: SocketAddr,
    name: String,
    path: String,
}

fn parse(rest: &[String]) -> Result<Opts, String> {
    let (mut connect, mut name, mut path) = (None, None, "/".to_string());
    for a in rest {
        if let Some(v) = a.strip_prefix("--connect=") {
            connect = Some(
                v.parse::<SocketAddr>()
                    .map_err(|_| format!("--connect={v}: expected ADDR:PORT"))?,
            );
        } else if let Some(v) = a.strip_prefix("--server-name=") {
            name = Some(v.to_string());
        } else if let Some(v) = a.strip_prefix("--path=") {
            path = v.to_string();
        } else {
            return Err(format!(
                "unknown argument {a:?} (expected --connect=ADDR:PORT, --server-name=NAME, \
                 --path=PATH, --ipv4=ADDR/PREFIX, --ipv4-gateway=ADDR)"
            ));
        }
    }
    let connect = connect.ok_or("--connect=ADDR:PORT is required")?;
    Ok(Opts {
        connect,
        name: name.unwrap_or_else(|| connect.ip().to_string()),
        path,
    })
}

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

fn get(stack: Stack, pem: Block, o: Opts) -> Result<(), String> {
    let config = read_pem(&pem)
        .and_then(|p| tls::client_config_from_pem(&p).map_err(|e| e.to_string()))
        .map_err(|e| format!("CA certificates (block device tls): {e}"))?;
    let name = o
        .name
        .clone()
        .try_into()
        .map_err(|e| format!("--server-name={}: {e}", o.name))?;
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the wall clock is before 1970: {e}"))?;
    println!("clock: {}", clock.as_secs());
    let tcp = TcpStream::connect(&stack, o.connect).map_err(|e| format!("{}: {e}", o.connect))?;
    let mut s = TlsStream::connect(tcp, config, name).map_err(|e| format!("{}: {e}", o.connect))?;
    let c = s.connection();
    println!(
        "connected: {:?} {:?}",
        c.protocol_version().expect("known after the handshake"),
        c.negotiated_cipher_suite()
            .expect("known after the handshake")
            .suite()
    );
    let req = format!("GET {} HTTP/1.0\r\nHost: {}\r\n\r\n", o.path, o.name);
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut page = Vec::new();
    let end = match s.read_to_end(&mut page) {
        Ok(_) => "close_notify",
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => "truncated (no close_notify)",
        Err(e) => return Err(format!("receive: {e}")),
    };
    std::io::stdout()
        .write_all(&page)
        .map_err(|e| e.to_string())?;
    println!("\nend: {end}");
    Ok(())
}

fn main() {
    // The flags are parsed inside the run: `cargo mkernel` runs the program
    // without arguments to read its device list.
    mkernel::run(
        (mkernel::stack("service"), mkernel::block("tls")),
        |(stack, pem)| {
            let opts = match StackConfig::from_args(&mkernel::args())
                .map_err(|e| e.to_string())
                .and_then(|(_, rest)| parse(&rest))
            {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(2)
                }
            };
            if let Err(e) = get(stack, pem, opts) {
                eprintln!("error: {e}");
                std::process::exit(1)
            }
        },
    );
}

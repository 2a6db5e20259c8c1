//! Shows the stack's configuration (as given, or obtained by DHCP and
//! SLAAC), then connects by name to each `HOST:PORT` given, sends a line
//! and prints the line that comes back.
//!
//! ```text
//! cargo build --example netcheck
//! sudo ip tuntap add dev tap0 mode tap && sudo ip link set tap0 up
//! ./target/debug/examples/netcheck --net:service=tap0 -- \
//!     --ipv4=dhcp --ipv6=auto www.example.test:7
//! ```
//!
//! Application arguments (after `--`): the stack's flags (`--ipv4=dhcp`,
//! `--ipv6=auto`, `--nameserver=ADDR`... see `StackConfig::from_args`),
//! `--wait=SECS` (stay that long after the connections, then print the
//! configuration again and the DHCP leases obtained: renewals), then
//! `HOST:PORT` targets (`[ADDR]:PORT` for an IPv6 address; `udp:` first
//! for a datagram each way instead of a TCP connection). Prints one
//! `KEY VALUE` line per configuration item, then `HOST:PORT LINE` or
//! `HOST:PORT error: KIND: MESSAGE` per target; exits with status 1 if
//! any target failed.

use mkernel::net::stack::{Stack, StackConfig, TcpStream, UdpSocket};
use std::net::SocketAddr;
use std::time::Duration;

fn show(stack: &Stack) {
    let c = stack.config();
    println!("ipv4 {}", c.ipv4);
    match c.gateway {
        Some(g) => println!("gateway {g}"),
        None => println!("gateway none"),
    }
    let ns: Vec<String> = c
        .nameservers
        .as_slice()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("nameservers {}", ns.join(","));
    match c.ipv6 {
        Some(a) => println!("ipv6 {a}"),
        None => println!("ipv6 none"),
    }
    match c.ipv6_gateway {
        Some(g) => println!("ipv6-gateway {g}"),
        None => println!("ipv6-gateway none"),
    }
}

/// Connects to `target`, sends a line, reads one back (over UDP for
/// `udp:HOST:PORT`: a datagram each way).
fn exchange(stack: &Stack, target: &str) -> std::io::Result<String> {
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "expected [udp:]HOST:PORT or [udp:][ADDR]:PORT",
        )
    };
    let (udp, target) = match target.strip_prefix("udp:") {
        Some(t) => (true, t),
        None => (false, target),
    };
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if udp {
        let ip = stack.resolve(host)?[0];
        let s = UdpSocket::bind(stack, 0)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.connect(SocketAddr::new(ip, port))?;
        s.send(b"hello over UDP")?;
        let mut buf = [0u8; 1500];
        let n = s.recv(&mut buf)?;
        return Ok(format!(
            "{} {}",
            s.peer_addr()?,
            String::from_utf8_lossy(&buf[..n])
        ));
    }
    let s = TcpStream::connect_host(stack, host, port)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let peer = s.peer_addr()?;
    s.write_all(format!("hello from {}\n", s.local_addr()?).as_bytes())?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b)? == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    Ok(format!("{peer} {}", String::from_utf8_lossy(&line)))
}

fn main() {
    let rest = match StackConfig::from_args(&mkernel::args()) {
        Ok((_, rest)) => rest,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    let mut wait = 0u64;
    let mut targets = Vec::new();
    for a in rest {
        match a.strip_prefix("--wait=") {
            Some(v) => match v.parse() {
                Ok(s) => wait = s,
                Err(_) => {
                    eprintln!("error: --wait={v}: expected seconds, e.g. --wait=10");
                    std::process::exit(2)
                }
            },
            None => targets.push(a),
        }
    }
    let ok = mkernel::run(mkernel::stack("service"), move |stack| {
        show(&stack);
        let mut ok = true;
        for t in &targets {
            match exchange(&stack, t) {
                Ok(reply) => println!("{t} {reply}"),
                Err(e) => {
                    ok = false;
                    println!("{t} error: {:?}: {e}", e.kind());
                }
            }
        }
        if wait > 0 {
            mkernel::sleep(Duration::from_secs(wait));
            show(&stack);
            println!("leases {}", stack.dhcp_leases());
        }
        ok
    });
    std::process::exit(if ok { 0 } else { 1 });
}

//! The std-like sockets' timeouts on a real link: how long a `connect` to
//! an address nobody answers takes to fail, how long a `connect_timeout`
//! takes, and that a read past its read timeout fails with `TimedOut`
//! while the stream stays usable.
//!
//! ```text
//! cargo build --example timeouts
//! sudo ip tuntap add dev tap0 mode tap && sudo ip addr add 10.0.0.1/24 dev tap0 \
//!     && sudo ip link set tap0 up
//! # a server on 10.0.0.1:7777 that answers a line `go` with `hello`
//! ./target/debug/examples/timeouts --net:service=tap0 -- --ipv4=10.0.0.2/24 \
//!     --silent=10.0.0.9:80 --connect-timeout-ms=700 \
//!     --server=10.0.0.1:7777 --read-timeout-ms=500
//! ```
//!
//! Application arguments (after `--`, or after the image under a tender):
//! the stack's flags (`--ipv4=...`, see `StackConfig::from_args`), then
//! - `--silent=ADDR:PORT` (any number of times): an address nobody
//!   answers (an unused address of the subnet, whose ARP requests go
//!   unanswered, or one whose SYNs are dropped). A plain
//!   [`TcpStream::connect`] to each in turn (not at once: while one
//!   address's ARP requests go unanswered, smoltcp's neighbour cache
//!   sends one ARP request a second for all addresses, and that one's win,
//!   so another connect could never resolve its peer), which must fail with
//!   `TimedOut` after `DEFAULT_CONNECT_TIMEOUT` (20 s); prints
//!   `connect ADDR KIND MS` (the error kind and the milliseconds it
//!   took). `--no-plain-connect` skips them (they take 20 s).
//! - `--connect-timeout-ms=MS` (with `--silent`): then a
//!   [`TcpStream::connect_timeout`] of `MS` to each address in turn;
//!   prints `connect_timeout ADDR KIND MS`.
//! - `--server=ADDR:PORT` and `--read-timeout-ms=MS`: connects to a server
//!   that says nothing until it gets the line `go`, then answers `hello`
//!   and a newline. Sets the read timeout, reads: prints
//!   `read_timeout KIND MS`; then on the same stream writes `go` and reads
//!   the answer (the read timeout still set): prints `after_timeout LINE`
//!   (or `after_timeout error: KIND: MESSAGE`).
//!
//! Times are measured with `mkernel::clock_monotonic()`, so the same
//! lines come from the hosted program and the unikernel (`solo5-spt
//! --net:service=tap0 timeouts.spt --ipv4=...`); `tests/net_timeouts_tap.rs`
//! checks them against the documented bounds. Exits with status 1 if any
//! step did not go as described (a connect that succeeded, a read that
//! did not time out, no answer after the timeout), 2 for bad arguments.

use mkernel::net::stack::{Stack, StackConfig, TcpStream};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

/// What the command line asks for.
#[derive(Default)]
struct Plan {
    silent: Vec<SocketAddr>,
    plain_connect: bool,
    connect_timeout: Option<Duration>,
    server: Option<SocketAddr>,
    read_timeout: Option<Duration>,
}

fn usage(arg: &str, expected: &str) -> ! {
    eprintln!("error: {arg}: expected {expected}");
    std::process::exit(2)
}

fn parse(rest: Vec<String>) -> Plan {
    let mut plan = Plan {
        plain_connect: true,
        ..Plan::default()
    };
    let ms = |a: &str, v: &str| match v.parse::<u64>() {
        Ok(n) if n > 0 => Duration::from_millis(n),
        _ => usage(a, "milliseconds, e.g. 700"),
    };
    let addr = |a: &str, v: &str| match v.parse::<SocketAddr>() {
        Ok(s) => s,
        Err(_) => usage(a, "ADDR:PORT, e.g. 10.0.0.9:80"),
    };
    for a in &rest {
        if let Some(v) = a.strip_prefix("--silent=") {
            plan.silent.push(addr(a, v));
        } else if a == "--no-plain-connect" {
            plan.plain_connect = false;
        } else if let Some(v) = a.strip_prefix("--connect-timeout-ms=") {
            plan.connect_timeout = Some(ms(a, v));
        } else if let Some(v) = a.strip_prefix("--server=") {
            plan.server = Some(addr(a, v));
        } else if let Some(v) = a.strip_prefix("--read-timeout-ms=") {
            plan.read_timeout = Some(ms(a, v));
        } else {
            usage(
                a,
                "--silent=ADDR:PORT, --no-plain-connect, --connect-timeout-ms=MS, \
                 --server=ADDR:PORT or --read-timeout-ms=MS",
            );
        }
    }
    if plan.connect_timeout.is_some() && plan.silent.is_empty() {
        usage("--connect-timeout-ms", "--silent=ADDR:PORT with it");
    }
    if plan.server.is_some() != plan.read_timeout.is_some() {
        usage(
            "--server",
            "--server=ADDR:PORT and --read-timeout-ms=MS together",
        );
    }
    plan
}

/// Milliseconds since `t0` (a `clock_monotonic` reading).
fn ms_since(t0: u64) -> f64 {
    (mkernel::clock_monotonic() - t0) as f64 / 1e6
}

/// Connects (with `timeout`, or plainly) to `addr`; prints the outcome.
/// `true` if it failed with `TimedOut`, as expected of a silent address.
fn connect(stack: &Stack, addr: SocketAddr, timeout: Option<Duration>) -> bool {
    let t0 = mkernel::clock_monotonic();
    let r = match timeout {
        None => TcpStream::connect(stack, addr),
        Some(t) => TcpStream::connect_timeout(stack, addr, t),
    };
    let took = ms_since(t0);
    let what = if timeout.is_some() {
        "connect_timeout"
    } else {
        "connect"
    };
    match r {
        Ok(_) => {
            println!("{what} {addr} connected {took:.3}");
            false
        }
        Err(e) => {
            println!("{what} {addr} {:?} {took:.3}", e.kind());
            e.kind() == ErrorKind::TimedOut
        }
    }
}

/// The read-timeout step (see the module's documentation).
fn read_timeout(stack: &Stack, server: SocketAddr, timeout: Duration) -> std::io::Result<bool> {
    let s = TcpStream::connect(stack, server)?;
    s.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 64];
    let t0 = mkernel::clock_monotonic();
    let r = s.read(&mut buf);
    let took = ms_since(t0);
    let timed_out = match r {
        Ok(n) => {
            println!("read_timeout read {n} {took:.3}");
            false
        }
        Err(e) => {
            println!("read_timeout {:?} {took:.3}", e.kind());
            e.kind() == ErrorKind::TimedOut
        }
    };
    s.write_all(b"go\n")?;
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&line);
    let line = line.trim_end();
    println!("after_timeout {line}");
    Ok(timed_out && line == "hello")
}

fn main() {
    let rest = match StackConfig::from_args(&mkernel::args()) {
        Ok((_, rest)) => rest,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    let plan = parse(rest);
    let ok = mkernel::run(mkernel::stack("service"), move |stack| {
        let mut ok = true;
        if plan.plain_connect {
            // One after the other: while one connect's neighbour goes
            // unresolved, smoltcp rate-limits the ARP requests of the
            // others (one per second in all), so they could starve.
            for &a in &plan.silent {
                ok &= connect(&stack, a, None);
            }
        }
        if let Some(t) = plan.connect_timeout {
            for &a in &plan.silent {
                ok &= connect(&stack, a, Some(t));
            }
        }
        if let (Some(server), Some(t)) = (plan.server, plan.read_timeout) {
            match read_timeout(&stack, server, t) {
                Ok(good) => ok &= good,
                Err(e) => {
                    println!("after_timeout error: {:?}: {e}", e.kind());
                    ok = false;
                }
            }
        }
        ok
    });
    std::process::exit(if ok { 0 } else { 1 });
}

//! The tour: the `httpd` unikernel serving a site from a block device, on an
//! in-memory link, to concurrent HTTP clients running in the same
//! scheduler. No root and no TAP needed.
//!
//! It builds a small site image (a ustar archive), boots `httpd`'s server on
//! one end of the link and a second TCP/IP stack with the clients on the
//! other, checks every byte of every response, and prints throughput,
//! latency percentiles and how fairly the clients were served — then the
//! commands that run the same unikernel on a TAP device and under
//! `solo5-spt`. Exits non-zero if any response was wrong.
//!
//! ```text
//! cargo run --release --example demo
//! MKERNEL_TRACE=demo.json cargo run --release --example demo   # and a trace
//! cargo run --example trace_report -- demo.json                # its fairness report
//! ```
//!
//! `DEMO_WINDOW_MS` (hosted) or the application argument `--window-ms=N`
//! (both platforms) shortens or lengthens the 2 s the clients run.
//!
//! The demo is itself a unikernel: its only device in the manifest is the
//! block device `site` (the link and both stacks are inside the program,
//! [`mkernel::link`]). Hosted it writes the site image to
//! `target/mkernel-demo/site.img` and maps it itself; under Solo5 the
//! tender gives it (the same file: run the hosted demo once first):
//!
//! ```text
//! cargo mkernel run --target spt --example demo --block:site=target/mkernel-demo/site.img -- --mkernel:trace --window-ms=200 > console.log
//! cargo run --example trace_report -- console.log
//! ```

#[allow(dead_code, reason = "the demo uses only part of the httpd example")]
#[path = "httpd.rs"]
mod httpd;
#[path = "demo/site.rs"]
mod site;

use mkernel::net::link;
use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
use std::net::SocketAddr;
#[cfg(not(mkernel_solo5))]
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

const CLIENTS: usize = 32;
const WINDOW: Duration = Duration::from_secs(2);

/// How long the clients run: the application argument `--window-ms=N`,
/// else `DEMO_WINDOW_MS` (hosted: a unikernel has no environment), else
/// [`WINDOW`].
fn window() -> Duration {
    mkernel::args()
        .iter()
        .find_map(|a| a.strip_prefix("--window-ms=").map(str::to_string))
        .or_else(|| std::env::var("DEMO_WINDOW_MS").ok())
        .and_then(|v| v.parse().ok())
        .map_or(WINDOW, Duration::from_millis)
}

/// One GET on a kept-alive connection; returns the body.
fn get(s: &TcpStream, path: &str) -> std::io::Result<Vec<u8>> {
    s.write_all(format!("GET /{path} HTTP/1.1\r\nHost: demo\r\n\r\n").as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "unexpected response: {head:?}"
        )));
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no Content-Length"))?;
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = s.read(&mut body[got..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(body)
}

struct ClientReport {
    requests: u64,
    bytes: u64,
    wrong: u64,
    latencies_ns: Vec<u64>,
    max_wait: Duration,
}

fn client(
    stack: Stack,
    server: SocketAddr,
    files: Rc<Vec<(String, Vec<u8>)>>,
    seed: usize,
    end: u64,
) -> ClientReport {
    let mut r = ClientReport {
        requests: 0,
        bytes: 0,
        wrong: 0,
        latencies_ns: Vec::new(),
        max_wait: Duration::ZERO,
    };
    let s = match TcpStream::connect(&stack, server) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("client {seed}: connect: {e}");
            r.wrong += 1;
            return r;
        }
    };
    let mut i = seed;
    while mkernel::clock_monotonic() < end {
        // Mostly small files, now and then a large one.
        let (name, want) = &files[[0, 1, 1, 2, 2, 2, 1, 3][i % 8]];
        i += 1;
        let t0 = mkernel::clock_monotonic();
        match get(&s, name) {
            Ok(body) if body == *want => {}
            Ok(_) => r.wrong += 1,
            Err(e) => {
                eprintln!("client {seed}: GET /{name}: {e}");
                r.wrong += 1;
                break;
            }
        }
        r.latencies_ns.push(mkernel::clock_monotonic() - t0);
        r.requests += 1;
        r.bytes += want.len() as u64;
    }
    s.close();
    r.max_wait = mkernel::task_stats(mkernel::current_task())
        .map(|t| t.max_wait)
        .unwrap_or_default();
    r
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn main() {
    let files = Rc::new(site::files());
    // Hosted, the demo writes its site image and maps it; under Solo5 the
    // tender attaches it (`--block:site=FILE`).
    #[cfg(not(mkernel_solo5))]
    let (builder, image) = {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/mkernel-demo");
        std::fs::create_dir_all(&dir).expect("create target/mkernel-demo");
        let image = dir.join("site.img");
        site::write_ustar(&image, &files).expect("write the site image");
        (mkernel::Builder::new().block_file("site", &image), image)
    };
    #[cfg(mkernel_solo5)]
    let builder = mkernel::Builder::new();

    let server_cfg = StackConfig::parse("10.0.0.2/24", None).expect("valid address");
    let client_cfg = StackConfig::parse("10.0.0.3/24", None).expect("valid address");
    let (a, b) = link::pair(link::Faults::default());
    let f = files.clone();
    let (reports, elapsed) = builder.run(
        (
            mkernel::map(mkernel::link("service", a), move |d| {
                Stack::new(d, server_cfg)
            }),
            mkernel::block("site"),
            mkernel::map(mkernel::link("clients", b), move |d| {
                Stack::new(d, client_cfg)
            }),
        ),
        move |(server_stack, site, client_stack)| {
            let site = Rc::new(httpd::Site::open(site).expect("the demo's site image"));
            let listener =
                TcpListener::bind_with_backlog(&server_stack, 80, CLIENTS).expect("bind port 80");
            let addr: SocketAddr = "10.0.0.2:80".parse().unwrap();
            let server = mkernel::spawn_named("httpd server", move || httpd::serve(listener, site));
            let t0 = mkernel::clock_monotonic();
            let end = t0 + window().as_nanos() as u64;
            let clients: Vec<_> = (0..CLIENTS)
                .map(|i| {
                    let (stack, files) = (client_stack.clone(), f.clone());
                    mkernel::spawn_named(format!("client {i}"), move || {
                        client(stack, addr, files, i, end)
                    })
                })
                .collect();
            let reports: Vec<ClientReport> = mkernel::join_all(clients)
                .into_iter()
                .map(|c| c.expect("a client task failed"))
                .collect();
            let elapsed = Duration::from_nanos(mkernel::clock_monotonic() - t0);
            server.cancel();
            (reports, elapsed)
        },
    );

    let requests: u64 = reports.iter().map(|r| r.requests).sum();
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    let wrong: u64 = reports.iter().map(|r| r.wrong).sum();
    let mut lat: Vec<u64> = reports
        .iter()
        .flat_map(|r| r.latencies_ns.iter().copied())
        .collect();
    lat.sort_unstable();
    let per: Vec<f64> = reports.iter().map(|r| r.requests as f64).collect();
    let jain = per.iter().sum::<f64>().powi(2)
        / (per.len() as f64 * per.iter().map(|x| x * x).sum::<f64>());
    let max_wait = reports.iter().map(|r| r.max_wait).max().unwrap_or_default();
    let secs = elapsed.as_secs_f64();

    println!(
        "httpd unikernel on an in-memory link, {CLIENTS} keep-alive clients in the same scheduler, {secs:.1} s"
    );
    println!(
        "  {requests} requests, {:.0} requests/s, {:.1} MiB/s, {wrong} wrong responses (every byte checked)",
        requests as f64 / secs,
        bytes as f64 / secs / (1 << 20) as f64
    );
    println!(
        "  latency: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!(
        "  fairness: Jain index {jain:.4} over the clients' request counts (1 = perfectly even), \
         longest wait of a runnable client {} us",
        max_wait.as_micros()
    );
    #[cfg(not(mkernel_solo5))]
    commands(&image);
    if wrong > 0 || requests == 0 {
        eprintln!("demo: {wrong} wrong responses out of {requests}");
        std::process::exit(1);
    }
}

/// The commands that run the same unikernels on a TAP device and under
/// `solo5-spt`, with the site image the demo wrote.
#[cfg(not(mkernel_solo5))]
fn commands(image: &Path) {
    println!();
    println!("The same unikernel on a TAP device (as root):");
    println!(
        "  ip tuntap add dev tap0 mode tap && ip link set tap0 up && ip addr add 10.0.0.1/24 dev tap0"
    );
    println!(
        "  cargo run --release --example httpd -- --net:service=tap0 --block:site={} -- --ipv4=10.0.0.2/24",
        image.display()
    );
    println!("  curl http://10.0.0.2/index.html");
    println!("and as a Solo5 unikernel under solo5-spt:");
    println!(
        "  cargo mkernel run --target spt --example httpd --net:service=tap0 --block:site={} -- --ipv4=10.0.0.2/24",
        image.display()
    );
    println!("This demo itself, as a Solo5 unikernel, traced:");
    println!(
        "  cargo mkernel run --target spt --example demo --block:site={} -- --mkernel:trace --window-ms=200",
        image.display()
    );
}

//! TCP over a TAP, hosted, against Linux (`cargo bench --bench tcp`, as
//! root):
//!
//! 1. throughput of one TCP connection, Linux → unikernel and unikernel →
//!    Linux, with `examples/tcpsink` on a TAP with offloads (the default:
//!    segments of up to 64 KiB each way) and on a plain TAP
//!    (`--net-offload=off`: one frame per system call, as a Solo5 tender);
//!    and as a `solo5-spt` unikernel on a TAP (the tender: one frame per
//!    hypercall); beside it the same client against a Linux sink/source
//!    (this program) across a veth pair;
//! 2. HTTP request latency (p50, p99) and requests/s of `examples/httpd`
//!    on a TAP (with offloads, plain, and under `solo5-spt`) under 64
//!    concurrent keep-alive
//!    connections, for a 4 KiB and
//!    a 64 KiB file; beside it the same client against a hyper static
//!    server (files in memory, tokio current-thread runtime: one core, as
//!    the unikernel) across a veth pair, and on the loopback;
//! 3. `httpd`'s 4 KiB requests/s with 0 and with 5,000 other connections
//!    held open and idle (the cost of a request must not grow with them).
//!
//! Everything runs in two network namespaces this program creates and
//! always deletes (`mkb-c-PID`: the clients, the TAPs and the unikernels;
//! `mkb-s-PID`: the Linux servers, on the other end of the veth): no
//! traffic leaves them. The clients and the Linux servers are this same
//! program, re-executed under `ip netns exec` with `MKBENCH_TCP_ROLE` set.
//!
//! Not root, or no /dev/net/tun: says why and exits 0. Knobs (environment):
//! `MKBENCH_SECS` (seconds per measurement, default 3), `MKBENCH_REPS`
//! (repetitions, default 3; the table shows medians), `MKBENCH_MTU` (MTU of
//! the TAPs and the veth, default 1500), `MKBENCH_ONLY=tput|http|idle` (one
//! part only), `MKBENCH_PERF=DIR` (run the unikernels under
//! `perf record -g`, profiles in DIR), `MKBENCH_SPT=0` (no `solo5-spt`
//! rows; they are also left out, saying why, when `cargo mkernel` cannot
//! build the images).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROLE: &str = "MKBENCH_TCP_ROLE";
/// Concurrent keep-alive connections of the HTTP client.
const CONNS: usize = 64;
const SMALL: usize = 4 * 1024;
/// Idle connections held open in part 3.
const IDLE: usize = 5000;
const LARGE: usize = 64 * 1024;
/// HTTP warm-up before each measurement.
const WARMUP: Duration = Duration::from_millis(500);

// Addresses: the unikernels' TAPs in the client namespace, the veth to the
// server namespace.
const SINK_HOST: &str = "10.77.0.1/24";
const SINK_UK: &str = "10.77.0.2";
const HTTPD_HOST: &str = "10.78.0.1/24";
const HTTPD_UK: &str = "10.78.0.2";
const SINK_PLAIN_HOST: &str = "10.80.0.1/24";
const SINK_PLAIN_UK: &str = "10.80.0.2";
const HTTPD_PLAIN_HOST: &str = "10.81.0.1/24";
const HTTPD_PLAIN_UK: &str = "10.81.0.2";
const SINK_SPT_HOST: &str = "10.82.0.1/24";
const SINK_SPT_UK: &str = "10.82.0.2";
const HTTPD_SPT_HOST: &str = "10.83.0.1/24";
const HTTPD_SPT_UK: &str = "10.83.0.2";
const VETH_C: &str = "10.79.0.1/24";
const VETH_S: &str = "10.79.0.2";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match std::env::var(ROLE).as_deref() {
        Ok("client") => client_main(&args),
        Ok("linux-sink") => linux_sink(&args[0]),
        Ok("hyper") => hyper_server(Path::new(&args[0]), &args[1]),
        _ => bench(),
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

// ---------------------------------------------------------------------
// The orchestrator.

/// The namespaces and the processes started in them, removed on drop
/// (also when unwinding from a panic).
struct Netns {
    names: Vec<String>,
    children: Vec<Child>,
    tmp: PathBuf,
}

impl Drop for Netns {
    fn drop(&mut self) {
        // SIGTERM first (perf writes its profile), then SIGKILL.
        for c in &mut self.children {
            // SAFETY: kill on the pid of our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.children {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

impl Netns {
    fn cmd(&self, ns: usize, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[ns]]).args(argv);
        c
    }

    fn run(&self, ns: usize, argv: &[&str]) {
        let out = self.cmd(ns, argv).output().expect("cannot run ip");
        assert!(
            out.status.success(),
            "{argv:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `c` (a command under `ip netns exec`) and waits for its
    /// `listening on` line.
    fn start(&mut self, mut c: Command, expect: &str) {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start a server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.children.push(child);
        assert_eq!(line.trim_end(), expect, "unexpected first line");
    }

    /// Runs this program as a client in the client namespace; its stdout.
    fn client(&self, args: &[&str]) -> String {
        let exe = std::env::current_exe().unwrap();
        let out = self
            .cmd(0, &[exe.to_str().unwrap()])
            .args(args)
            .env(ROLE, "client")
            .stderr(Stdio::inherit())
            .output()
            .expect("cannot run the client");
        assert!(out.status.success(), "client {args:?} failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (it creates network namespaces and TAP interfaces)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for tool in ["ip", "tar"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

/// `cargo build --release` of the examples; the directory holding them.
fn build_examples() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--release", "--example", "tcpsink"])
        .args(["--example", "httpd"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cannot run cargo")
        .success();
    assert!(
        ok,
        "cargo build --release --example tcpsink --example httpd failed"
    );
    // Beside this bench's binary (`<target>/release/deps/`): the target
    // directory the build above used too (`CARGO_TARGET_DIR` included).
    let exe = std::env::current_exe().expect("the bench's own path");
    let release = exe.parent().and_then(Path::parent);
    release
        .expect("the bench runs from <target>/release/deps")
        .join("examples")
}

/// The `solo5-spt` tender and the images of `tcpsink` and `httpd`, built
/// with `cargo mkernel` (as `tests/solo5_util` does); `Err`: why not.
fn build_spt() -> Result<(PathBuf, PathBuf, PathBuf), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mkernel = |args: &[&str]| -> Result<String, String> {
        let out = Command::new(&cargo)
            .args(["run", "-q", "-p", "cargo-mkernel", "--"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !out.status.success() {
            return Err(format!("cargo mkernel {args:?} failed"));
        }
        let out = String::from_utf8_lossy(&out.stdout);
        Ok(out.lines().last().unwrap_or("").trim().to_string())
    };
    let image = |example: &str| {
        mkernel(&["build", "--target", "spt", "--example", example]).map(PathBuf::from)
    };
    let sink = image("tcpsink")?;
    let httpd = image("httpd")?;
    let tender = PathBuf::from(mkernel(&["solo5"])?).join("tenders/spt/solo5-spt");
    if !tender.is_file() {
        return Err(format!("no tender at {}", tender.display()));
    }
    Ok((tender, sink, httpd))
}

/// Pseudo-random bytes (xorshift), so that nothing compresses them away.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bench() {
    if let Some(why) = skip_reason() {
        println!("tcp bench skipped: {why}");
        return;
    }
    let secs = env_num("MKBENCH_SECS", 3).max(1);
    let reps = env_num("MKBENCH_REPS", 3).max(1) as usize;
    let mtu = env_num("MKBENCH_MTU", 1500).to_string();
    let perf = std::env::var("MKBENCH_PERF").ok();
    let dir = build_examples();
    let spt = if std::env::var("MKBENCH_SPT").as_deref() == Ok("0") {
        None
    } else {
        match build_spt() {
            Ok(spt) => Some(spt),
            Err(e) => {
                println!("no solo5-spt rows: {e}");
                None
            }
        }
    };
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();

    let pid = std::process::id();
    let tmp = std::env::temp_dir().join(format!("mkb-tcp-{pid}"));
    let site = tmp.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), b"<h1>bench</h1>\n").unwrap();
    std::fs::write(site.join("small.bin"), noise(SMALL, 1)).unwrap();
    std::fs::write(site.join("large.bin"), noise(LARGE, 2)).unwrap();
    let img = tmp.join("site.img");
    let ok = Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&img)
        .arg("-C")
        .arg(&site)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");

    let mut ns = Netns {
        names: Vec::new(),
        children: Vec::new(),
        tmp: tmp.clone(),
    };
    for tag in ["c", "s"] {
        let name = format!("mkb-{tag}-{pid}");
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed");
        ns.names.push(name);
    }
    let (c, s) = (0, 1);
    ns.run(c, &["ip", "link", "set", "lo", "up"]);
    ns.run(s, &["ip", "link", "set", "lo", "up"]);
    // The veth between the namespaces (created in the client namespace,
    // one end moved to the server namespace).
    ns.run(
        c,
        &[
            "ip", "link", "add", "vc", "type", "veth", "peer", "name", "vs",
        ],
    );
    ns.run(
        c,
        &["ip", "link", "set", "vs", "netns", &ns.names[s].clone()],
    );
    ns.run(c, &["ip", "addr", "add", VETH_C, "dev", "vc"]);
    ns.run(
        s,
        &["ip", "addr", "add", &format!("{VETH_S}/24"), "dev", "vs"],
    );
    ns.run(c, &["ip", "link", "set", "vc", "mtu", &mtu, "up"]);
    ns.run(s, &["ip", "link", "set", "vs", "mtu", &mtu, "up"]);
    for (tap, host) in [
        ("tap0", SINK_HOST),
        ("tap1", HTTPD_HOST),
        ("tap2", SINK_PLAIN_HOST),
        ("tap3", HTTPD_PLAIN_HOST),
        ("tap4", SINK_SPT_HOST),
        ("tap5", HTTPD_SPT_HOST),
    ] {
        ns.run(c, &["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
        ns.run(c, &["ip", "addr", "add", host, "dev", tap]);
        ns.run(c, &["ip", "link", "set", tap, "mtu", &mtu, "up"]);
    }

    // The servers.
    let unikernel = |ns: &Netns, argv: &[&str], name: &str| {
        let mut cmd = match &perf {
            Some(d) => {
                std::fs::create_dir_all(d).unwrap();
                let out = format!("{d}/{name}.perf.data");
                let mut c = ns.cmd(0, &["perf", "record", "-g", "-o", &out, "--"]);
                c.args(argv);
                c
            }
            None => ns.cmd(0, argv),
        };
        cmd.stdin(Stdio::null());
        cmd
    };
    let sink = dir.join("tcpsink");
    let httpd = dir.join("httpd");
    let block = format!("--block:site={}", img.display());
    // With the TAPs' offloads (the default), and without.
    for (offload, sink_tap, sink_uk, httpd_tap, httpd_uk, tag) in [
        ("--net-offload=on", "tap0", SINK_UK, "tap1", HTTPD_UK, ""),
        (
            "--net-offload=off",
            "tap2",
            SINK_PLAIN_UK,
            "tap3",
            HTTPD_PLAIN_UK,
            "-plain",
        ),
    ] {
        let cmd = unikernel(
            &ns,
            &[
                sink.to_str().unwrap(),
                &format!("--net:service={sink_tap}"),
                offload,
                "--",
                &format!("--ipv4={sink_uk}/24"),
            ],
            &format!("tcpsink{tag}"),
        );
        ns.start(cmd, &format!("listening on {sink_uk}:5001"));
        let cmd = unikernel(
            &ns,
            &[
                httpd.to_str().unwrap(),
                &format!("--net:service={httpd_tap}"),
                &block,
                offload,
                "--",
                &format!("--ipv4={httpd_uk}/24"),
                // The idle connections of part 3 must outlive the measurement.
                "--idle-timeout=600",
            ],
            &format!("httpd{tag}"),
        );
        ns.start(cmd, &format!("listening on {httpd_uk}:80"));
    }
    // The same under solo5-spt: the tender's device flags, then the image
    // and the application's arguments (`--solo5:quiet`: no banner, so the
    // first line is the unikernel's own).
    if let Some((tender, sink, httpd)) = &spt {
        let cmd = unikernel(
            &ns,
            &[
                tender.to_str().unwrap(),
                "--net:service=tap4",
                sink.to_str().unwrap(),
                "--solo5:quiet",
                &format!("--ipv4={SINK_SPT_UK}/24"),
            ],
            "tcpsink-spt",
        );
        ns.start(cmd, &format!("listening on {SINK_SPT_UK}:5001"));
        let cmd = unikernel(
            &ns,
            &[
                tender.to_str().unwrap(),
                "--net:service=tap5",
                &block,
                httpd.to_str().unwrap(),
                "--solo5:quiet",
                &format!("--ipv4={HTTPD_SPT_UK}/24"),
                "--idle-timeout=600",
            ],
            "httpd-spt",
        );
        ns.start(cmd, &format!("listening on {HTTPD_SPT_UK}:80"));
    }
    let mut cmd = ns.cmd(s, &[exe, &format!("{VETH_S}:5001")]);
    cmd.env(ROLE, "linux-sink");
    ns.start(cmd, &format!("listening on {VETH_S}:5001"));
    let site_s = site.to_str().unwrap();
    let mut cmd = ns.cmd(s, &[exe, site_s, &format!("{VETH_S}:80")]);
    cmd.env(ROLE, "hyper");
    ns.start(cmd, &format!("listening on {VETH_S}:80"));
    let mut cmd = ns.cmd(c, &[exe, site_s, "127.0.0.1:8080"]);
    cmd.env(ROLE, "hyper");
    ns.start(cmd, "listening on 127.0.0.1:8080");

    let secs_s = secs.to_string();
    println!(
        "\nTCP over TAP vs Linux ({reps} × {secs} s each, medians; MTU {mtu}; 2 namespaces, nothing leaves them)\n"
    );

    let only = std::env::var("MKBENCH_ONLY").unwrap_or_default();
    // 1. Throughput.
    let tput = |addr: &str, dir: &str| -> f64 {
        let v = (0..reps)
            .map(|_| {
                ns.client(&[dir, addr, &secs_s])
                    .trim()
                    .parse::<f64>()
                    .unwrap()
            })
            .collect();
        median(v)
    };
    // The ratios of the summary's last lines, by name.
    let mut ratios: Vec<(String, f64)> = Vec::new();
    let rows = [("Linux → server", "send"), ("server → Linux", "recv")];
    println!(
        "{:<22} {:>16} {:>16} {:>10} {:>14} {:>12} {:>12} {:>10}",
        "throughput, Gbit/s",
        "mk (TAP offload)",
        "mk (plain TAP)",
        "mk (spt)",
        "Linux (veth)",
        "offload / Lx",
        "plain / Lx",
        "spt / Lx"
    );
    for (label, dir) in rows
        .into_iter()
        .filter(|_| only.is_empty() || only == "tput")
    {
        let mk = tput(&format!("{SINK_UK}:5001"), dir);
        let plain = tput(&format!("{SINK_PLAIN_UK}:5001"), dir);
        let on_spt = spt
            .as_ref()
            .map(|_| tput(&format!("{SINK_SPT_UK}:5001"), dir));
        let lx = tput(&format!("{VETH_S}:5001"), dir);
        let name = if dir == "send" { "tput_in" } else { "tput_out" };
        ratios.push((format!("{name}_plain_vs_linux"), plain / lx));
        if let Some(x) = on_spt {
            ratios.push((format!("{name}_spt_vs_linux"), x / lx));
        }
        ratios.push((format!("{name}_vs_linux"), mk / lx));
        let or_dash = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{label:<22} {mk:>16.2} {plain:>16.2} {:>10} {lx:>14.2} {:>12.2} {:>12.2} {:>10}",
            or_dash(on_spt),
            mk / lx,
            plain / lx,
            or_dash(on_spt.map(|x| x / lx))
        );
    }

    // 2. HTTP latency.
    println!(
        "\n{:<34} {:>9} {:>9} {:>10} {:>8} {:>7}",
        format!("HTTP, {CONNS} keep-alive conns"),
        "p50 µs",
        "p99 µs",
        "req/s",
        "refused",
        "errors"
    );
    // The ratios compare the first (offload) and the second (plain TAP)
    // with the third (hyper on the veth).
    // (and the fifth, solo5-spt, when there).
    let mut servers = vec![
        ("mkernel httpd (TAP offload)", format!("{HTTPD_UK}:80")),
        ("mkernel httpd (plain TAP)", format!("{HTTPD_PLAIN_UK}:80")),
        ("hyper (veth)", format!("{VETH_S}:80")),
        ("hyper (loopback)", "127.0.0.1:8080".to_string()),
    ];
    if spt.is_some() {
        servers.push(("mkernel httpd (solo5-spt)", format!("{HTTPD_SPT_UK}:80")));
    }
    let files = [("small.bin", SMALL), ("large.bin", LARGE)];
    for (file, size) in files
        .into_iter()
        .filter(|_| only.is_empty() || only == "http")
    {
        let mut got: Vec<[f64; 5]> = Vec::new();
        for (label, addr) in &servers {
            let mut runs: Vec<[f64; 5]> = Vec::new();
            for _ in 0..reps {
                let out = ns.client(&[
                    "http",
                    addr,
                    &format!("/{file}"),
                    &size.to_string(),
                    &secs_s,
                ]);
                let f: Vec<f64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
                runs.push([f[0], f[1], f[2], f[3], f[4]]);
            }
            let m = |i: usize| median(runs.iter().map(|r| r[i]).collect());
            let sum = |i: usize| runs.iter().map(|r| r[i]).sum();
            let r = [m(0), m(1), m(2), sum(3), sum(4)];
            println!(
                "{:<38} {:>9.0} {:>9.0} {:>10.0} {:>8} {:>7}",
                format!("{} KiB, {label}", size / 1024),
                r[0],
                r[1],
                r[2],
                r[3],
                r[4]
            );
            got.push(r);
        }
        for (i, what) in [(0, "offload"), (1, "plain"), (4, "spt")] {
            if i >= got.len() {
                continue;
            }
            println!(
                "{:<38} {:>9.2} {:>9.2} {:>10.2}",
                format!("{} KiB, mk {what} / hyper (veth)", size / 1024),
                got[i][0] / got[2][0],
                got[i][1] / got[2][1],
                got[i][2] / got[2][2]
            );
        }
        ratios.push((
            format!("httpd_{}k_reqs_plain_vs_hyper", size / 1024),
            got[1][2] / got[2][2],
        ));
        if got.len() > 4 {
            ratios.push((
                format!("httpd_{}k_reqs_spt_vs_hyper", size / 1024),
                got[4][2] / got[2][2],
            ));
        }
        ratios.push((
            format!("httpd_{}k_reqs_vs_hyper", size / 1024),
            got[0][2] / got[2][2],
        ));
    }

    // 3. The same 4 KiB requests with IDLE other connections held open
    // (each made one request, then sits idle): the cost of a request must
    // not grow with the connections the stack holds.
    if only.is_empty() || only == "idle" {
        let addr = format!("{HTTPD_UK}:80");
        let rps = |ns: &Netns| {
            let v = (0..reps)
                .map(|_| {
                    let out =
                        ns.client(&["http", &addr, "/small.bin", &SMALL.to_string(), &secs_s]);
                    out.split_whitespace()
                        .nth(2)
                        .unwrap()
                        .parse::<f64>()
                        .unwrap()
                })
                .collect();
            median(v)
        };
        let idle0 = rps(&ns);
        let mut cmd = ns.cmd(c, &[exe, "hold", &addr, &IDLE.to_string()]);
        cmd.env(ROLE, "client");
        ns.start(cmd, &format!("held {IDLE}"));
        let idle_n = rps(&ns);
        println!(
            "\n{:<34} {:>10} {:>10} {:>10}",
            format!("HTTP 4 KiB, {CONNS} conns, httpd"),
            "0 idle",
            format!("{IDLE} idle"),
            "ratio"
        );
        println!(
            "{:<34} {:>10.0} {:>10.0} {:>10.2}",
            "req/s",
            idle0,
            idle_n,
            idle_n / idle0
        );
        ratios.push((format!("httpd_idle{IDLE}_vs_idle0"), idle_n / idle0));
    }
    // The summary: machine-readable lines, the four of the TCP issue last,
    // in this order.
    println!();
    let last = [
        "httpd_4k_reqs_vs_hyper",
        "httpd_64k_reqs_vs_hyper",
        "tput_in_vs_linux",
        "tput_out_vs_linux",
    ];
    ratios.sort_by_key(|(n, _)| last.iter().position(|l| l == n));
    for (name, x) in &ratios {
        println!("ratio {name}={x:.3}");
    }
    drop(ns);
}

// ---------------------------------------------------------------------
// The clients (in the client namespace).

fn client_main(args: &[String]) {
    let addr: SocketAddr = args[1].parse().expect("ADDR:PORT");
    match args[0].as_str() {
        "send" => println!("{}", send(addr, args[2].parse().unwrap())),
        "recv" => println!("{}", recv(addr, args[2].parse().unwrap())),
        "http" => {
            let (p50, p99, rps, errors) = http(
                addr,
                &args[2],
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
            );
            println!("{p50} {p99} {rps} {} {}", errors[0], errors[1]);
        }
        "hold" => hold(addr, args[2].parse().unwrap()),
        other => panic!("unknown client command {other}"),
    }
}

/// Opens `n` connections, makes one request on each (so that no header
/// timeout closes them), says `held N`, and keeps them until killed.
fn hold(addr: SocketAddr, n: usize) {
    let want = (n + 256) as libc::rlim_t;
    let lim = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: setrlimit reads the struct we pass; failure is checked.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0;
    assert!(ok, "cannot raise the open-file limit to {want}");
    let mut conns = Vec::with_capacity(n);
    let req = b"GET /index.html HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut buf = [0u8; 4096];
    for i in 0..n {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        s.write_all(req).unwrap();
        // The response is small: read until its head and body are in.
        let mut got = Vec::new();
        loop {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "idle connection {i}: closed before its response");
            got.extend_from_slice(&buf[..k]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break;
                }
            }
        }
        conns.push(s);
    }
    println!("held {n}");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Sends for `secs` seconds to a sink; Gbit/s of what the sink counted,
/// until its answer.
fn send(addr: SocketAddr, secs: u64) -> f64 {
    let mut s = TcpStream::connect(addr).expect("connect to the sink");
    let buf = vec![0u8; 64 * 1024];
    let t = Instant::now();
    let end = t + Duration::from_secs(secs);
    while Instant::now() < end {
        s.write_all(&buf).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut n = [0u8; 8];
    s.read_exact(&mut n).unwrap();
    u64::from_le_bytes(n) as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9
}

/// Receives from a source for `secs` seconds; Gbit/s.
fn recv(addr: SocketAddr, secs: u64) -> f64 {
    let mut s = TcpStream::connect(addr.ip().to_string() + ":" + &(addr.port() + 1).to_string())
        .expect("connect to the source");
    s.write_all(&(1u64 << 50).to_le_bytes()).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let t = Instant::now();
    let end = t + Duration::from_secs(secs);
    while Instant::now() < end {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the source closed early");
        total += n as u64;
    }
    total as f64 * 8.0 / t.elapsed().as_secs_f64() / 1e9
}

/// `CONNS` keep-alive connections, each sending `GET path` and reading the
/// response in a loop for `secs` seconds (after a warm-up), on one thread
/// (tokio current-thread). Returns p50 and p99 in µs, requests/s, and the
/// errors (see [`http_conn`]).
fn http(addr: SocketAddr, path: &str, size: usize, secs: u64) -> (u64, u64, f64, [u64; 2]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req: Arc<[u8]> = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")
        .into_bytes()
        .into();
    rt.block_on(async move {
        let start = Instant::now() + WARMUP;
        let end = start + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..CONNS)
            .map(|_| tokio::spawn(http_conn(addr, req.clone(), size, start, end)))
            .collect();
        let mut lat = Vec::new();
        let mut errors = [0; 2];
        for t in tasks {
            let (l, e) = t.await.unwrap();
            lat.extend(l);
            errors[0] += e[0];
            errors[1] += e[1];
        }
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as u64
        };
        let rps = lat.len() as f64 / secs as f64;
        (pct(0.50), pct(0.99), rps, errors)
    })
}

/// One connection's loop: latencies (µs) measured in `[start, end)`, and
/// errors: `.0` connections refused or reset before their first response
/// (the unikernel's listener keeps 32 listening sockets, and refuses a
/// connection when all are taken: 64 at once may overflow it), `.1`
/// failures after (none expected). A failed connection is reopened.
async fn http_conn(
    addr: SocketAddr,
    req: Arc<[u8]>,
    size: usize,
    start: Instant,
    end: Instant,
) -> (Vec<u32>, [u64; 2]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut lat = Vec::new();
    let mut errors = [0; 2];
    let mut buf = Vec::with_capacity(size + 4096);
    'conn: while Instant::now() < end {
        let mut s = match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                errors[0] += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        buf.clear();
        let mut served = 0;
        loop {
            let t = Instant::now();
            if t >= end {
                break 'conn;
            }
            if s.write_all(&req).await.is_err() {
                errors[(served > 0) as usize] += 1;
                continue 'conn;
            }
            // The head, then the body (Content-Length).
            let mut head_end = None;
            let mut body_len = 0;
            loop {
                if head_end.is_none() {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        if !head.starts_with("http/1.1 200") {
                            errors[1] += 1;
                            continue 'conn;
                        }
                        body_len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(usize::MAX);
                        head_end = Some(i + 4);
                    }
                }
                if let Some(h) = head_end {
                    if buf.len() >= h + body_len {
                        if body_len != size {
                            errors[1] += 1;
                            continue 'conn;
                        }
                        buf.drain(..h + body_len);
                        break;
                    }
                }
                let old = buf.len();
                buf.resize(old + 64 * 1024, 0);
                match s.read(&mut buf[old..]).await {
                    Ok(0) | Err(_) => {
                        errors[(served > 0) as usize] += 1;
                        continue 'conn;
                    }
                    Ok(n) => buf.truncate(old + n),
                }
            }
            served += 1;
            if t >= start {
                lat.push(t.elapsed().as_micros() as u32);
            }
        }
    }
    (lat, errors)
}

// ---------------------------------------------------------------------
// The Linux servers (in the server namespace).

/// The Linux peer of `examples/tcpsink`: the sink on `addr`, the source on
/// the next port, a thread per connection.
fn linux_sink(addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let sinks = TcpListener::bind(addr).unwrap();
    let mut a2 = addr;
    a2.set_port(addr.port() + 1);
    let sources = TcpListener::bind(a2).unwrap();
    println!("listening on {addr}");
    std::thread::spawn(move || {
        for s in sources.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut want = [0u8; 8];
                if s.read_exact(&mut want).is_err() {
                    return;
                }
                let mut left = u64::from_le_bytes(want);
                let buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let n = (left as usize).min(buf.len());
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
        }
    });
    for s in sinks.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(_) => return,
                }
            }
            let _ = s.write_all(&total.to_le_bytes());
        });
    }
}

/// A hyper static server: the files of `dir` in memory, keep-alive,
/// tokio current-thread runtime (one core, as the unikernel).
fn hyper_server(dir: &Path, addr: &str) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Request, Response, StatusCode};

    let mut files: HashMap<String, Bytes> = HashMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = format!("/{}", e.file_name().to_string_lossy());
        files.insert(name, std::fs::read(e.path()).unwrap().into());
    }
    let files = Arc::new(files);
    let addr: SocketAddr = addr.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        println!("listening on {addr}");
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let files = files.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let files = files.clone();
                    async move {
                        let r = match files.get(req.uri().path()) {
                            Some(b) => Response::builder()
                                .header("content-type", "application/octet-stream")
                                .body(Full::new(b.clone())),
                            None => Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"404 Not Found\n"))),
                        };
                        Ok::<_, std::convert::Infallible>(r.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

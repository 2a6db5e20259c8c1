//! The echo and httpd examples on a real TAP interface, inside a network
//! namespace this test creates (and always deletes). The unikernels and the
//! clients (ping, python3, curl) all run in the namespace: no traffic
//! leaves it. Skipped (with the reason printed) when not root or without
//! /dev/net/tun.
//!
//! Twice: with the TAPs' offloads (the default: TCP segments of up to
//! 64 KiB each way, cut and coalesced by the kernel) and without
//! (`--net-offload=off`: one frame per system call). The captures
//! (`--pcap`) show which path ran: segments longer than one MSS only with
//! offloads.

mod netns_util;

use netns_util::{Netns, skip_reason};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds the examples and returns the directory holding them.
fn examples() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "--example", "echo", "--example", "httpd"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --example echo --example httpd failed");
    // target/debug/deps/tcp_tap-HASH -> target/debug/examples
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

const ECHO_CLIENT: &str = r#"
import os, socket, sys, threading
host, port, conns, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
errors = []
def one(i):
    try:
        data = os.urandom(size)
        s = socket.create_connection((host, port), timeout=30)
        t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
        t.start()
        got = bytearray()
        while True:
            b = s.recv(65536)
            if not b: break
            got += b
        t.join()
        s.close()
        if bytes(got) != data: errors.append(f"conn {i}: {len(got)} bytes back, differ")
    except Exception as e:
        errors.append(f"conn {i}: {e!r}")
ts = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
for t in ts: t.start()
for t in ts: t.join()
print("\n".join(errors) if errors else "ok")
sys.exit(1 if errors else 0)
"#;

/// The TCP payload lengths in a capture (which tcpdump must read), from
/// the `tcpdump -nn -r` lines whose source address and port start with
/// `from` (`10.77.0.2.7`, `10.77.0.1.`).
fn tcp_lengths(capture: &std::path::Path, from: &str) -> Vec<usize> {
    let dump = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(capture)
        .output()
        .expect("tcpdump (installed by scripts/setup)");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    String::from_utf8_lossy(&dump.stdout)
        .lines()
        .filter(|l| {
            l.contains("Flags")
                && l.split(" > ")
                    .next()
                    .and_then(|a| a.rsplit(' ').next())
                    .is_some_and(|src| src.starts_with(from))
        })
        .filter_map(|l| l.rsplit("length ").next()?.trim().parse().ok())
        .collect()
}

/// Whether the kernel's TCP segmentation offload is on for TAP `tap`
/// (`SIOCETHTOOL`, `ETHTOOL_GTSO`).
const TSO_ON: &str = r#"
import array, fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
buf = array.array('B', struct.pack('II', 0x1e, 0))
ifr = struct.pack('16sP', sys.argv[1].encode(), buf.buffer_info()[0])
fcntl.ioctl(s.fileno(), 0x8946, ifr)
print(struct.unpack('II', buf.tobytes())[1])
"#;

#[test]
fn echo_and_httpd_on_tap() {
    echo_and_httpd(true);
}

#[test]
fn echo_and_httpd_on_tap_without_offload() {
    echo_and_httpd(false);
}

fn echo_and_httpd(offload: bool) {
    if let Some(why) = skip_reason(&["ip", "ping", "curl", "python3", "tar", "tcpdump"]) {
        eprintln!("skipping the TAP test: {why}");
        return;
    }
    let dir = examples();
    let flag = if offload {
        "--net-offload=on"
    } else {
        "--net-offload=off"
    };
    let tmp = std::env::temp_dir().join(format!("mkt-site-{}-{offload}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut ns = match Netns::new(if offload { "net" } else { "net-plain" }) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("skipping the TAP test: {e}");
            return;
        }
    };

    // Echo on tap0.
    ns.tap("tap0", "10.77.0.1/24");
    let echo = dir.join("echo");
    let echo_capture = tmp.join("echo.pcap");
    let echo_pcap = format!("--pcap={}", echo_capture.display());
    ns.start(
        &[
            echo.to_str().unwrap(),
            "--net:service=tap0",
            flag,
            &echo_pcap,
            "--",
            "--ipv4=10.77.0.2/24",
        ],
        "listening on 10.77.0.2:7",
    );
    let out = ns
        .run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.77.0.2"])
        .unwrap();
    assert!(out.contains("3 received"), "{out}");
    let t0 = Instant::now();
    let out = ns
        .run(&[
            "python3",
            "-c",
            ECHO_CLIENT,
            "10.77.0.2",
            "7",
            "8",
            "262144",
        ])
        .unwrap();
    assert_eq!(out.trim(), "ok");
    eprintln!("echo: 8 connections x 256 KiB in {:?}", t0.elapsed());
    // Several MiB each way on one connection, byte for byte.
    let out = ns
        .run(&[
            "python3",
            "-c",
            ECHO_CLIENT,
            "10.77.0.2",
            "7",
            "1",
            "8388608",
        ])
        .unwrap();
    assert_eq!(out.trim(), "ok");
    // Segments of more than one MSS (1460) each way with offloads, none
    // without.
    let out_max = tcp_lengths(&echo_capture, "10.77.0.2.7").into_iter().max();
    let in_max = tcp_lengths(&echo_capture, "10.77.0.1.").into_iter().max();
    eprintln!("echo, offload {offload}: longest segments out {out_max:?}, in {in_max:?}");
    if offload {
        assert!(out_max.unwrap() > 1460, "no segment out longer than an MSS");
        assert!(in_max.unwrap() > 1460, "no segment in longer than an MSS");
    } else {
        assert!(out_max.unwrap() <= 1460 && in_max.unwrap() <= 1460);
    }
    // The kernel keeps a TAP's offloads after the process: ended by
    // SIGTERM, echo turns them off first, so that a reader without
    // offloads (a Solo5 tender) can use the TAP next.
    let tso = |ns: &Netns| ns.run(&["python3", "-c", TSO_ON, "tap0"]).unwrap();
    assert_eq!(tso(&ns).trim(), if offload { "1" } else { "0" });
    let mut echo_proc = ns.children.remove(0);
    let ok = Command::new("kill")
        .args(["-TERM", &echo_proc.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = echo_proc.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(15),
        "still ended by the signal"
    );
    assert_eq!(tso(&ns).trim(), "0", "offloads left on after SIGTERM");

    // httpd on tap1, serving a tar image.
    let site = tmp.join("site");
    std::fs::create_dir_all(site.join("sub")).unwrap();
    std::fs::write(site.join("index.html"), b"<h1>hello</h1>\n").unwrap();
    std::fs::write(site.join("sub/a.txt"), b"nested\n").unwrap();
    let mut big = vec![0u8; 1 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(site.join("big.bin"), &big).unwrap();
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
    assert!(ok);
    ns.tap("tap1", "10.78.0.1/24");
    let httpd = dir.join("httpd");
    let block = format!("--block:site={}", img.display());
    let capture = tmp.join("httpd.pcap");
    let pcap = format!("--pcap={}", capture.display());
    ns.start(
        &[
            httpd.to_str().unwrap(),
            "--net:service=tap1",
            &block,
            &pcap,
            flag,
            "--",
            "--ipv4=10.78.0.2/24",
        ],
        "listening on 10.78.0.2:80",
    );
    let got_big = tmp.join("big.out");
    let got_idx = tmp.join("index.out");
    // Two files over one kept-alive connection.
    let out = ns
        .run(&[
            "curl",
            "-sS",
            "--max-time",
            "30",
            "-o",
            got_big.to_str().unwrap(),
            "http://10.78.0.2/big.bin",
            "-o",
            got_idx.to_str().unwrap(),
            "http://10.78.0.2/",
            "-w",
            "%{http_code} %{num_connects}\n",
        ])
        .unwrap();
    assert_eq!(
        out, "200 1\n200 0\n",
        "status and new connections per request"
    );
    assert!(std::fs::read(&got_big).unwrap() == big, "big.bin differs");
    assert_eq!(std::fs::read(&got_idx).unwrap(), b"<h1>hello</h1>\n");
    let code = |url: &str, extra: &[&str]| {
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        argv.extend_from_slice(extra);
        argv.push(url);
        ns.run(&argv).unwrap()
    };
    assert_eq!(code("http://10.78.0.2/sub/a.txt", &[]), "200");
    assert_eq!(code("http://10.78.0.2/missing", &[]), "404");
    assert_eq!(
        code("http://10.78.0.2/../etc/passwd", &["--path-as-is"]),
        "400"
    );
    // The capture (`--pcap`) opens with tcpdump and shows the exchange:
    // the client's SYN, its request and the response.
    let dump = Command::new("tcpdump")
        .args(["-nn", "-A", "-r"])
        .arg(&capture)
        .output()
        .expect("tcpdump (installed by scripts/setup)");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("10.78.0.1.") && dump.contains("> 10.78.0.2.80: Flags [S]"),
        "the SYN to port 80"
    );
    assert!(dump.contains("GET /big.bin HTTP/1.1"), "the request");
    assert!(dump.contains("HTTP/1.1 200 OK"), "the response");
    let _ = std::io::stderr().flush();
    let _ = std::fs::remove_dir_all(&tmp);
    // Still alive after all that.
    let out = ns
        .run(&["ping", "-c", "1", "-W", "2", "10.78.0.2"])
        .unwrap();
    assert!(out.contains("1 received"), "{out}");
    let _ = Duration::ZERO;
}

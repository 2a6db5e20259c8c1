//! The httpd example under hostile and heavy load on a real TAP, hosted and
//! as a solo5-spt unikernel (issue 18):
//!
//! - **SYN flood**: 1,000 SYNs from unused (spoofed) addresses of the
//!   subnet, which never answer the SYN-ACK. The listener must serve again
//!   within its SYN-RECEIVED timeout (`DEFAULT_SYN_TIMEOUT`, 5 s) plus the
//!   slack of smoltcp's neighbour discovery (1 s) and of the client's
//!   retries; no client connection may be refused or reset meanwhile.
//! - **Burst**: 2,000 connections opened at once (a nonblocking python3
//!   client), each fetching `index.html` (`Connection: close`) and
//!   checking it byte for byte: all must complete, none reset or refused
//!   (a full backlog queues or drops a SYN, and the client sends it
//!   again).
//!
//! Each run has its own network namespace holding the TAP, the server and
//! every client (the flood is raw frames sent from inside it with an
//! AF_PACKET socket); it is deleted on every exit path. Needs root,
//! /dev/net/tun, `ip`, `ping`, `python3` and `tar`, else skips saying why.

#[path = "solo5_util/mod.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HOST_CIDR: &str = "10.77.0.1/24";
const SERVER: [u8; 4] = [10, 77, 0, 2];
const SERVER_STR: &str = "10.77.0.2";
/// The documented SYN-RECEIVED timeout (`DEFAULT_SYN_TIMEOUT`).
const SYN_TIMEOUT: Duration = mkernel::net::stack::DEFAULT_SYN_TIMEOUT;
const FLOOD: usize = 1000;
const BURST: usize = 2000;

/// The site's one page; its bytes are what every client checks.
const PAGE: &[u8] = b"<html><body>hostile load: the page every client checks</body></html>\n";

/// What a client sends: one request, then the server closes.
const REQUEST: &str = "GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// Tries a page fetch every 0.25 s (each try a new connection, 0.5 s to
/// connect); prints `recovered SECONDS refused N reset N` after the first
/// that works, or `never ...` after LIMIT seconds.
const RECOVER: &str = r#"
import errno, socket, sys, time
host, port, limit, req, page = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4].encode(), open(sys.argv[5], "rb").read()
t0 = time.monotonic(); refused = reset = 0
while time.monotonic() - t0 < limit:
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect((host, port)); s.settimeout(5)
        s.sendall(req)
        got = b""
        while True:
            b = s.recv(4096)
            if not b: break
            got += b
        if got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\n" + page):
            print(f"recovered {time.monotonic() - t0:.2f} refused {refused} reset {reset}"); sys.exit(0)
    except ConnectionRefusedError: refused += 1
    except ConnectionResetError: reset += 1
    except OSError: pass
    finally: s.close()
    time.sleep(0.25)
print(f"never {limit} refused {refused} reset {reset}"); sys.exit(1)
"#;

/// Opens N nonblocking connections at once; each sends the request and
/// reads until the end, then checks the response; prints `ok N errors
/// {...} seconds S`.
const BURST_CLIENT: &str = r#"
import errno, resource, selectors, socket, sys, time
host, port, n, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
req, page = sys.argv[5].encode(), open(sys.argv[6], "rb").read()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 64), max(hard, n + 64)))
sel = selectors.DefaultSelector(); errors = {}; ok = 0
def err(name):
    errors[name] = errors.get(name, 0) + 1
t0 = time.monotonic()
for i in range(n):
    s = socket.socket(); s.setblocking(False)
    r = s.connect_ex((host, port))
    if r not in (0, errno.EINPROGRESS):
        err(errno.errorcode.get(r, str(r))); s.close(); continue
    sel.register(s, selectors.EVENT_WRITE, "connect")
left = len(sel.get_map())
while left and time.monotonic() - t0 < limit:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        try:
            if key.data == "connect":
                e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if e: raise OSError(e, "connect")
                s.send(req)
                sel.modify(s, selectors.EVENT_READ, b"")
            else:
                b = s.recv(4096)
                if b:
                    sel.modify(s, selectors.EVENT_READ, key.data + b); continue
                if key.data.startswith(b"HTTP/1.1 200") and key.data.endswith(b"\r\n\r\n" + page): ok += 1
                else: err("bad response")
                sel.unregister(s); s.close(); left -= 1
        except OSError as e:
            err(errno.errorcode.get(e.errno, str(e.errno))); sel.unregister(s); s.close(); left -= 1
if left: err(f"unfinished after {limit} s")
print(f"ok {ok} errors {errors} seconds {time.monotonic() - t0:.2f}")
sys.exit(0 if ok == n else 1)
"#;

fn skip_reason() -> Option<String> {
    util::cannot_make_netns()
        .or_else(|| util::tool_check::missing_tool(&["ping", "python3", "tar"]))
}

/// The site: a ustar image holding [`PAGE`] as `index.html`; and the page
/// alone in a file, for the clients to compare with.
struct Site {
    image: util::Disk,
    page: PathBuf,
    dir: PathBuf,
}

impl Site {
    fn new(tag: &str) -> Site {
        let dir =
            std::env::temp_dir().join(format!("mkernel-hostile-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), PAGE).unwrap();
        Site {
            image: util::Disk::site(&format!("hostile-site-{tag}"), &[("index.html", PAGE)]),
            page: dir.join("index.html"),
            dir,
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `argv` in `ns` (at most `limit`); its status and stdout.
fn ns_run(ns: &util::Netns, argv: &[&str], limit: Duration) -> (bool, String) {
    let out = util::run_with_timeout(ns.command(Path::new(argv[0])).args(&argv[1..]), limit);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The server's MAC, as the namespace learnt it by ARP (after a ping).
fn server_mac(ns: &util::Netns) -> [u8; 6] {
    let (ok, out) = ns_run(
        ns,
        &["ping", "-c", "1", "-W", "2", SERVER_STR],
        Duration::from_secs(10),
    );
    assert!(ok, "ping {SERVER_STR}: {out}");
    let (_, out) = ns_run(
        ns,
        &["ip", "neigh", "show", SERVER_STR, "dev", &ns.tap],
        Duration::from_secs(10),
    );
    let mac = out
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC for {SERVER_STR} in {out:?}"));
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(h, 16).unwrap();
    }
    m
}

fn checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for c in chunks {
        for w in c.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame holding a TCP SYN from `src:sport` to the server's
/// port `dport`.
fn syn_frame(dst_mac: [u8; 6], src: [u8; 4], sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&SERVER);
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src);
    pseudo[4..8].copy_from_slice(&SERVER);
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&20u16.to_be_bytes());
    let c = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(54);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0x66, 0x6c, 0x6f, 0x6f, 0x64]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&tcp);
    f
}

/// Sends `FLOOD` SYNs to port 7 from 10.77.0.100-249 (unused: nothing
/// answers for them), from inside `ns`.
fn flood(ns: &util::Netns, mac: [u8; 6]) {
    let tap = ns.tap.clone();
    ns.run(move || {
        let raw = util::raw::RawSender::open(&tap, 0x0800).expect("AF_PACKET socket");
        for i in 0..FLOOD {
            let src = [10, 77, 0, 100 + (i % 150) as u8];
            let frame = syn_frame(
                mac,
                src,
                20000 + i as u16,
                80,
                0x1000_0000 + i as u32 * 7919,
            );
            // The TAP's queue is finite: wait and retry when it is full.
            let mut tries = 0;
            while let Err(e) = raw.send(&frame) {
                tries += 1;
                assert!(tries < 1000, "flood frame {i}: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
}

/// The session against httpd listening on 10.77.0.2:80 in `ns`.
fn session(ns: &util::Netns, site: &Site, what: &str) {
    let page = site.page.to_str().unwrap();
    let mac = server_mac(ns);

    // The flood, then how long until a page fetch works.
    let t0 = Instant::now();
    flood(ns, mac);
    let flood_took = t0.elapsed();
    let limit = SYN_TIMEOUT + Duration::from_secs(3);
    let (ok, out) = ns_run(
        ns,
        &[
            "python3",
            "-c",
            RECOVER,
            SERVER_STR,
            "80",
            &format!("{}", limit.as_secs_f64() + 5.0),
            REQUEST,
            page,
        ],
        limit + Duration::from_secs(30),
    );
    eprintln!(
        "{what}: {FLOOD} spoofed SYNs sent in {flood_took:?}; client: {}",
        out.trim()
    );
    assert!(ok, "{what}: the listener did not serve again: {out}");
    let w: Vec<&str> = out.split_whitespace().collect();
    let recovered = Duration::from_secs_f64(w[1].parse().unwrap());
    assert!(
        recovered <= limit,
        "{what}: served again after {recovered:?}, more than {limit:?} \
         (SYN-RECEIVED timeout {SYN_TIMEOUT:?} + 3 s)"
    );
    assert_eq!(
        (w[3], w[5]),
        ("0", "0"),
        "{what}: client connections refused or reset during the flood: {out}"
    );

    // The burst.
    let (ok, out) = ns_run(
        ns,
        &[
            "python3",
            "-c",
            BURST_CLIENT,
            SERVER_STR,
            "80",
            &BURST.to_string(),
            "100",
            REQUEST,
            page,
        ],
        Duration::from_secs(160),
    );
    eprintln!("{what}: burst of {BURST} connections: {}", out.trim());
    assert!(ok, "{what}: burst of {BURST}: {out}");
}

fn hosted_httpd() -> PathBuf {
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-q", "--example", "httpd"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --example httpd failed");
    // target/debug/deps/solo5_hostile-HASH -> target/debug/examples
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/httpd")
}

#[test]
fn httpd_hosted_survives_syn_flood_and_burst() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    let bin = hosted_httpd();
    let site = Site::new("hosted");
    let ns = util::Netns::new("hh", Some(HOST_CIDR));
    let net = format!("--net:service={}", ns.tap);
    let mut server = util::Server::start(ns.command(&bin).args([
        net.as_str(),
        &site.image.flag("site"),
        "--",
        "--ipv4=10.77.0.2/24",
    ]));
    server.wait_for("listening on 10.77.0.2:80", Duration::from_secs(60));
    session(&ns, &site, "hosted");
    drop(server);
}

#[test]
fn httpd_spt_survives_syn_flood_and_burst() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    let image = util::build_image("spt", "httpd");
    let site = Site::new("spt");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let ns = util::Netns::new("hs", Some(HOST_CIDR));
    let net = format!("--net:service={}", ns.tap);
    let mut server = util::Server::start(
        ns.command(&tender)
            .arg(&net)
            .arg(site.image.flag("site"))
            .arg(&image)
            .arg("--ipv4=10.77.0.2/24"),
    );
    server.wait_for("listening on 10.77.0.2:80", Duration::from_secs(60));
    session(&ns, &site, "spt");
    drop(server);
}

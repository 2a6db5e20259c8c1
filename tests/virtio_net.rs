//! The network examples as Solo5 virtio unikernels under QEMU answer over
//! virtio-net on a TAP: `echo` returns random data byte for byte, `httpd`
//! serves files of a ustar archive on virtio-blk, byte for byte.
//!
//! The TAP lives in a network namespace made for each test (deleted on every
//! exit path) and the client runs on a thread inside it: no frame leaves the
//! namespace. Needs root and /dev/net/tun, and skips with the reason
//! otherwise; also skips while `examples/echo.rs` / `examples/httpd.rs` are
//! not in the tree (they come with the TCP/IP stack).

#[path = "solo5_util/mod.rs"]
mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const HOST: &str = "10.77.0.1/24";
const GUEST: &str = "10.77.0.2";
const IO_LIMIT: Duration = Duration::from_secs(60);

/// Why this test cannot run here, if it cannot.
fn cannot_run(example: &str) -> Option<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{example}.rs"));
    if !src.is_file() {
        return Some(format!(
            "examples/{example}.rs is not in this tree yet (it comes with the TCP/IP stack)"
        ));
    }
    util::cannot_make_netns()
}

/// Random bytes (xorshift; the seed is printed so a failure can be replayed).
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("random data seed: {x:#x}");
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn connect(port: u16) -> TcpStream {
    let addr: SocketAddr = format!("{GUEST}:{port}").parse().unwrap();
    let s = TcpStream::connect_timeout(&addr, IO_LIMIT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(IO_LIMIT)).unwrap();
    s.set_write_timeout(Some(IO_LIMIT)).unwrap();
    s
}

/// Boots `example` under virtio in `ns` and waits until it listens.
fn start(ns: &util::Netns, example: &str, opts: Vec<String>, port: u16) -> util::Server {
    util::build_image("virtio", example);
    let mut opts = opts;
    opts.insert(0, format!("--net:service={}", ns.tap));
    let ipv4 = format!("--ipv4={GUEST}/24");
    let mut server = util::Server::start(&mut util::virtio_command(
        Some(ns),
        example,
        &opts,
        &[&ipv4],
    ));
    server.wait_for(
        &format!("listening on {GUEST}:{port}"),
        Duration::from_secs(120),
    );
    server
}

#[test]
fn echo_returns_random_data() {
    if let Some(why) = cannot_run("echo") {
        util::say_skipped(&why);
        return;
    }
    let ns = util::Netns::new("ve", Some(HOST));
    let server = start(&ns, "echo", vec![], 7);
    let data = random_bytes(256 * 1024);
    let back = ns.run({
        let data = data.clone();
        move || {
            let s = connect(7);
            let len = data.len();
            let mut w = s.try_clone().unwrap();
            // Write while reading, so that neither side's buffers fill up.
            let writer = std::thread::spawn(move || {
                for chunk in data.chunks(7000) {
                    w.write_all(chunk).expect("write to echo");
                }
                w.shutdown(Shutdown::Write).ok();
            });
            let mut back = Vec::new();
            let mut r = s;
            let mut buf = [0u8; 16384];
            while back.len() < len {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => back.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("read from echo after {} bytes: {e}", back.len()),
                }
            }
            writer.join().unwrap();
            back
        }
    });
    drop(server);
    assert_eq!(back.len(), data.len(), "echo returned a different length");
    assert!(back == data, "echo returned different bytes");
}

/// Sends `GET path` (HTTP/1.0, the server closes after the response) and
/// returns (status line, headers, body).
fn get(path: &str) -> (String, String, Vec<u8>) {
    let mut s = connect(80);
    write!(s, "GET {path} HTTP/1.0\r\nHost: {GUEST}\r\n\r\n").unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no end of head in {resp:?}"));
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    (
        status.to_string(),
        headers.to_string(),
        resp[end + 4..].to_vec(),
    )
}

#[test]
fn httpd_serves_files_from_the_block_device() {
    if let Some(why) = cannot_run("httpd") {
        util::say_skipped(&why);
        return;
    }
    // The site: a page and random binary data, in a ustar archive.
    let dir = std::env::temp_dir().join(format!("mkernel-virtio-site-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let index = b"<html><body>mkernel on Solo5 virtio</body></html>\n".to_vec();
    let data = random_bytes(100 * 1024 + 123);
    std::fs::write(dir.join("index.html"), &index).unwrap();
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    let archive = dir.with_extension("tar");
    let tar = Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .args(["index.html", "data.bin"])
        .output()
        .expect("tar");
    assert!(tar.status.success(), "tar: {tar:?}");
    let site = util::Disk::with("virtio-site", &std::fs::read(&archive).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&archive);

    let ns = util::Netns::new("vh", Some(HOST));
    let server = start(&ns, "httpd", vec![site.flag("site")], 80);
    let got = ns.run(|| [get("/"), get("/data.bin"), get("/missing")]);
    drop(server);

    let [(s1, h1, b1), (s2, h2, b2), (s3, _, _)] = got;
    assert!(s1.contains(" 200 "), "GET /: {s1}\n{h1}");
    assert_eq!(b1, index, "GET / body");
    assert!(s2.contains(" 200 "), "GET /data.bin: {s2}\n{h2}");
    assert!(
        h2.to_ascii_lowercase()
            .contains(&format!("content-length: {}", data.len())),
        "GET /data.bin headers: {h2}"
    );
    assert!(
        b2 == data,
        "GET /data.bin: {} bytes, not the file",
        b2.len()
    );
    assert!(s3.contains(" 404 "), "GET /missing: {s3}");
}

//! The TLS examples (`tls_echo`, `tls_get`; the `tls` feature) on a real
//! TAP against Linux's TLS peers, hosted and as solo5-spt unikernels:
//!
//! - `tls_echo` serves Python's `ssl` client (100 KB echoed, then
//!   close_notify both ways) and `openssl s_client` (certificate verified
//!   against the test CA and the name);
//! - `tls_get` fetches a page byte-exact from `openssl s_server -WWW`,
//!   checking the server's certificate against the wall clock (it is valid
//!   from yesterday to tomorrow only, so a clock that is not the real time
//!   fails), and prints that clock, which must be the host's;
//! - a certificate `tls_get` must not trust, and a bad certificate file
//!   given to `tls_echo`, are clear errors (exit status 1, no panic).
//!
//! Certificates are made at test time (rcgen) and given to the programs as
//! PEM text on the block device `tls`. Each run has its own network
//! namespace holding the TAP, the program and its peer, deleted on every
//! exit path. Needs root, /dev/net/tun, `ip`, `openssl` and `python3`,
//! else skips saying why.

#[path = "tls_util/mod.rs"]
mod tls_util;
#[path = "solo5_util/mod.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tls_util::Pki;

const HOST_CIDR: &str = "10.78.0.1/24";
const HOST: &str = "10.78.0.1";
const UNIKERNEL: &str = "10.78.0.2";
const NAME: &str = "tls.test";

fn skip_reason() -> Option<String> {
    util::cannot_make_netns().or_else(|| util::tool_check::missing_tool(&["openssl", "python3"]))
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Runner {
    Hosted,
    Spt,
}

/// A directory of test files, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("mkernel-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The hosted example binary, built with the `tls` feature.
fn hosted_binary(example: &str) -> PathBuf {
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-q", "--features", "tls", "--example", example])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --features tls --example {example} failed");
    // target/debug/deps/tls_tap-HASH -> target/debug/examples
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(example)
}

/// The command running `example` in `ns` with the block device `tls` =
/// `pem` and the application's arguments `args`.
fn command(runner: Runner, ns: &util::Netns, example: &str, pem: &Path, args: &[&str]) -> Command {
    let net = format!("--net:service={}", ns.tap);
    let block = format!("--block:tls={}", pem.display());
    match runner {
        Runner::Hosted => {
            let mut c = ns.command(&hosted_binary(example));
            c.args([net.as_str(), block.as_str(), "--"]).args(args);
            c
        }
        Runner::Spt => {
            let out = util::cargo_mkernel(&[
                "build",
                "--target",
                "spt",
                "--features",
                "tls",
                "--example",
                example,
            ]);
            let image = PathBuf::from(out.lines().last().expect("an image path").trim());
            let tender = util::solo5_root().join("tenders/spt/solo5-spt");
            let mut c = ns.command(&tender);
            c.args([net.as_str(), block.as_str()])
                .arg(&image)
                .args(args);
            c
        }
    }
}

/// What the program printed (the console without Solo5's banner under
/// spt; stdout and stderr hosted), and whether it exited with status 0.
fn printed(runner: Runner, out: &Output) -> (bool, String) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = match runner {
        Runner::Hosted => format!("{stdout}{stderr}"),
        Runner::Spt => format!("{}{stderr}", util::app_output(&stdout)),
    };
    (out.status.success(), text)
}

/// Python's ssl client: sends 100 KB, reads the echo, then `unwrap()`
/// (sends close_notify and waits for the server's); prints `ok VERSION`.
const PY_CLIENT: &str = r#"
import socket, ssl, sys
ca, host, port, name = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
t = ctx.wrap_socket(socket.create_connection((host, port), timeout=30), server_hostname=name)
data = bytes((i * 7) % 251 for i in range(100_000))
t.sendall(data)
got = b""
while len(got) < len(data):
    b = t.recv(65536)
    if not b: break
    got += b
assert got == data, f"echo differs: {len(got)} bytes"
version = t.version()
t.unwrap()  # raises unless the server answers with its close_notify
print("ok", version)
"#;

fn echo_session(runner: Runner, tag: &str) {
    let pki = Pki::new("mkernel test CA", &[NAME]);
    let dir = Dir::new(tag);
    let bundle = dir.file(
        "tls.img",
        &tls_util::sectors(pki.server_bundle().as_bytes()),
    );
    let ca = dir.file("ca.pem", pki.ca_pem.as_bytes());
    let ns = util::Netns::new(tag, Some(HOST_CIDR));
    let ipv4 = format!("--ipv4={UNIKERNEL}/24");
    let mut server = util::Server::start(&mut command(runner, &ns, "tls_echo", &bundle, &[&ipv4]));
    server.wait_for(
        &format!("listening on {UNIKERNEL}:4433"),
        Duration::from_secs(60),
    );

    let out = util::run_with_timeout(
        ns.command(Path::new("python3")).args([
            "-c",
            PY_CLIENT,
            ca.to_str().unwrap(),
            UNIKERNEL,
            "4433",
            NAME,
        ]),
        Duration::from_secs(60),
    );
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{runner:?}: python ssl client: {}", said.trim());
    assert!(
        out.status.success(),
        "{runner:?}: python ssl client: {said}"
    );
    assert!(said.starts_with("ok TLSv1.3"), "{said}");

    // openssl verifies the chain and the name; stdin at its end makes it
    // send close_notify and exit.
    let out = util::run_with_timeout(
        ns.command(Path::new("openssl")).args([
            "s_client",
            "-connect",
            &format!("{UNIKERNEL}:4433"),
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_return_error",
            "-verify_hostname",
            NAME,
            "-servername",
            NAME,
        ]),
        Duration::from_secs(60),
    );
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{runner:?}: openssl s_client: {said}");
    assert!(said.contains("Verify return code: 0 (ok)"), "{said}");
    assert!(said.contains("TLSv1.3"), "{said}");

    // The server is still serving (a client went away cleanly twice).
    server.drain();
    assert!(
        server.exited().is_none(),
        "{runner:?}: tls_echo exited: {:?}",
        server.seen
    );
}

#[test]
fn tls_echo_hosted_serves_python_and_openssl() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    echo_session(Runner::Hosted, "teh");
}

#[test]
fn tls_echo_spt_serves_python_and_openssl() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    echo_session(Runner::Spt, "tes");
}

fn bad_certificate_file(runner: Runner, tag: &str) {
    let pki = Pki::new("mkernel test CA", &[NAME]);
    let dir = Dir::new(tag);
    let ns = util::Netns::new(tag, Some(HOST_CIDR));
    let ipv4 = format!("--ipv4={UNIKERNEL}/24");
    let cases: [(&str, Vec<u8>, &str); 3] = [
        // A certificate without its key.
        (
            "nokey.img",
            pki.cert_pem.clone().into_bytes(),
            "no private key",
        ),
        // Not PEM at all.
        ("junk.img", vec![0x5a; 1024], "no certificate"),
        // A key that is not the certificate's.
        (
            "mismatch.img",
            format!("{}{}", pki.cert_pem, Pki::new("x", &[NAME]).key_pem).into_bytes(),
            "certificate and key refused",
        ),
    ];
    for (file, data, expect) in cases {
        let img = dir.file(file, &tls_util::sectors(&data));
        let out = util::run_with_timeout(
            &mut command(runner, &ns, "tls_echo", &img, &[&ipv4]),
            Duration::from_secs(60),
        );
        let (ok, text) = printed(runner, &out);
        assert!(!ok, "{runner:?} {file}: tls_echo started:\n{text}");
        assert_eq!(out.status.code(), Some(1), "{runner:?} {file}:\n{text}");
        assert!(
            text.contains("error: certificate and key (block device tls):")
                && text.contains(expect),
            "{runner:?} {file}: expected {expect:?} in:\n{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
}

#[test]
fn tls_echo_hosted_refuses_bad_certificate_files() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    bad_certificate_file(Runner::Hosted, "tbh");
}

#[test]
fn tls_echo_spt_refuses_bad_certificate_files() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    bad_certificate_file(Runner::Spt, "tbs");
}

fn get_session(runner: Runner, tag: &str) {
    let pki = Pki::new("mkernel test CA", &[NAME]);
    let dir = Dir::new(tag);
    let cert = dir.file("cert.pem", pki.cert_pem.as_bytes());
    let key = dir.file("key.pem", pki.key_pem.as_bytes());
    let chain = dir.file("chain.pem", pki.ca_pem.as_bytes());
    let ca_img = dir.file("ca.img", &tls_util::sectors(pki.ca_pem.as_bytes()));
    let other = Pki::new("another CA", &[NAME]);
    let other_img = dir.file("other.img", &tls_util::sectors(other.ca_pem.as_bytes()));
    // The page: random bytes (as text, s_server -WWW serves text).
    let mut rnd = [0u8; 3000];
    mkernel::fill_random(&mut rnd).unwrap();
    let page: String = rnd
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join("\n");
    let www = dir.0.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("page.html"), &page).unwrap();

    let ns = util::Netns::new(tag, Some(HOST_CIDR));
    let mut cmd = ns.command(Path::new("openssl"));
    cmd.args(["s_server", "-accept", "4433", "-WWW", "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-cert_chain")
        .arg(&chain)
        .current_dir(&www);
    let mut server = util::Server::start(&mut cmd);
    server.wait_for("ACCEPT", Duration::from_secs(30));

    let ipv4 = format!("--ipv4={UNIKERNEL}/24");
    let connect = format!("--connect={HOST}:4433");
    let sni = format!("--server-name={NAME}");
    let args = [ipv4.as_str(), &connect, &sni, "--path=/page.html"];
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let out = util::run_with_timeout(
        &mut command(runner, &ns, "tls_get", &ca_img, &args),
        Duration::from_secs(60),
    );
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (ok, text) = printed(runner, &out);
    assert!(ok, "{runner:?}: tls_get failed:\n{text}");
    // The wall clock it checked the certificate against is the host's.
    let clock: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("clock: "))
        .unwrap_or_else(|| panic!("no clock line in:\n{text}"))
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&clock),
        "{runner:?}: clock {clock} not within the run [{before}, {after}]"
    );
    assert!(text.contains("connected: TLSv1_3"), "{text}");
    let body = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response in:\n{text}"))
        .1;
    let (body, end) = body.rsplit_once("\nend: ").expect("an end line");
    assert!(
        text.contains("HTTP/1.0 200 ok"),
        "{runner:?}: s_server's answer:\n{text}"
    );
    assert_eq!(body, page, "{runner:?}: the page differs");
    eprintln!(
        "{runner:?}: tls_get fetched {} bytes, end: {}",
        body.len(),
        end.trim()
    );

    // The same server, a CA that did not sign its certificate.
    let out = util::run_with_timeout(
        &mut command(runner, &ns, "tls_get", &other_img, &args),
        Duration::from_secs(60),
    );
    let (ok, text) = printed(runner, &out);
    assert!(!ok, "{runner:?}: tls_get trusted an unknown CA:\n{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: ") && text.contains("UnknownIssuer"),
        "{runner:?}: no clear error:\n{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    drop(server);
}

#[test]
fn tls_get_hosted_fetches_from_openssl_s_server() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    get_session(Runner::Hosted, "tgh");
}

#[test]
fn tls_get_spt_fetches_from_openssl_s_server() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    get_session(Runner::Spt, "tgs");
}

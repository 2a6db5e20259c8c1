//! `httpd` built with the `tls` feature serving HTTPS on a real TAP, hosted
//! and as a solo5-spt unikernel, each in its own network namespace:
//!
//! - `curl --cacert CA.pem https://ADDR/...` fetches every file of a site
//!   (small ones, one of 300,000 bytes served from the file cache, one of
//!   1.5 MiB streamed from the device, a nested path, `/` as
//!   `index.html`), over one kept-alive connection and again (from the
//!   cache) with `Connection: close`, each byte-exact against the
//!   original; a missing file is a 404;
//! - curl trusting another CA refuses httpd's certificate, and httpd goes
//!   on serving;
//! - bad certificate files on the block device `tls` (no key, not PEM, a
//!   key that is not the certificate's) stop httpd with a clear error
//!   (exit status 1, no panic).
//!
//! Certificates are made at test time (rcgen), for the name `tls.test` and
//! the address httpd listens on. Needs root, /dev/net/tun, `ip`, `curl`
//! and `tar`, else skips saying why.

#[path = "tls_util/mod.rs"]
mod tls_util;
#[path = "solo5_util/mod.rs"]
mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tls_util::Pki;

const HOST_CIDR: &str = "10.79.0.1/24";
const UNIKERNEL: &str = "10.79.0.2";
const NAME: &str = "tls.test";

fn skip_reason() -> Option<String> {
    util::cannot_make_netns().or_else(|| util::tool_check::missing_tool(&["curl", "tar"]))
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
        let p = std::env::temp_dir().join(format!("mkernel-https-{tag}-{}", std::process::id()));
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

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    mkernel::fill_random(&mut v).unwrap();
    v
}

/// The site's files (path, bytes), written under `dir/site` and packed as
/// a ustar image `dir/site.img`.
fn site(dir: &Dir) -> (Vec<(&'static str, Vec<u8>)>, PathBuf) {
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("index.html", b"<h1>hello over TLS</h1>\n".to_vec()),
        ("style.css", b"h1 { color: teal }\n".to_vec()),
        ("empty.txt", Vec::new()),
        ("docs/guide/chapter-1.txt", random_bytes(5000)),
        // Over 64 KiB, kept in the file cache (a quarter of 4 MiB).
        ("data/medium.bin", random_bytes(300_000)),
        // Over a quarter of the cache: streamed from the device.
        ("data/large.bin", random_bytes((3 << 19) + 7)),
    ];
    let root = dir.0.join("site");
    for (path, data) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let image = dir.0.join("site.img");
    let ok = Command::new("tar")
        .args(["--format=ustar", "-cf"])
        .arg(&image)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .expect("tar")
        .success();
    assert!(ok, "tar failed");
    (files, image)
}

/// httpd built with the `tls` feature for `runner`, copied into `dir` (so
/// that a plain build of the example by another test cannot replace it
/// under us).
fn program(runner: Runner, dir: &Dir) -> PathBuf {
    let built = match runner {
        Runner::Hosted => {
            let ok = Command::new(env!("CARGO"))
                .args(["build", "-q", "--features", "tls", "--example", "httpd"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap()
                .success();
            assert!(ok, "cargo build --features tls --example httpd failed");
            // target/debug/deps/https_tap-HASH -> target/debug/examples
            let exe = std::env::current_exe().unwrap();
            exe.parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("examples/httpd")
        }
        Runner::Spt => {
            let out = util::cargo_mkernel(&[
                "build",
                "--target",
                "spt",
                "--features",
                "tls",
                "--example",
                "httpd",
            ]);
            PathBuf::from(out.lines().last().expect("an image path").trim())
        }
    };
    let copy = dir.0.join(match runner {
        Runner::Hosted => "httpd",
        Runner::Spt => "httpd.spt",
    });
    std::fs::copy(&built, &copy).unwrap();
    copy
}

/// The command running httpd (`program`) in `ns` with the site image
/// `site`, the certificate and key `pem`, and the application's `args`.
fn command(
    runner: Runner,
    ns: &util::Netns,
    program: &Path,
    site: &Path,
    pem: &Path,
    args: &[&str],
) -> Command {
    let net = format!("--net:service={}", ns.tap);
    let site = format!("--block:site={}", site.display());
    let tls = format!("--block:tls={}", pem.display());
    match runner {
        Runner::Hosted => {
            let mut c = ns.command(program);
            c.args([net.as_str(), &site, &tls, "--"]).args(args);
            c
        }
        Runner::Spt => {
            let tender = util::solo5_root().join("tenders/spt/solo5-spt");
            let mut c = ns.command(&tender);
            c.args([net.as_str(), &site, &tls]).arg(program).args(args);
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

/// `curl ARGS` in `ns`; its output and exit status.
fn curl(ns: &util::Netns, args: &[&str]) -> (Option<i32>, String) {
    let out = util::run_with_timeout(
        ns.command(Path::new("curl"))
            .args(["-sS", "--max-time", "60"])
            .args(args),
        Duration::from_secs(90),
    );
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), said)
}

fn serve_site(runner: Runner, tag: &str) {
    let pki = Pki::new("mkernel test CA", &[NAME, UNIKERNEL]);
    let dir = Dir::new(tag);
    let bundle = dir.file(
        "tls.img",
        &tls_util::sectors(pki.server_bundle().as_bytes()),
    );
    let ca = dir.file("ca.pem", pki.ca_pem.as_bytes());
    let other_ca = dir.file(
        "other.pem",
        Pki::new("another CA", &[NAME]).ca_pem.as_bytes(),
    );
    let (files, image) = site(&dir);
    let program = program(runner, &dir);
    let ns = util::Netns::new(tag, Some(HOST_CIDR));
    let ipv4 = format!("--ipv4={UNIKERNEL}/24");
    let mut server = util::Server::start(&mut command(
        runner,
        &ns,
        &program,
        &image,
        &bundle,
        &[&ipv4, "--cache=4M"],
    ));
    server.wait_for(
        &format!("listening on {UNIKERNEL}:443"),
        Duration::from_secs(60),
    );
    let ca = ca.to_str().unwrap();
    let got = dir.0.join("got");
    std::fs::create_dir(&got).unwrap();

    // Every file over one connection (curl reuses it: keep-alive), then
    // again with `Connection: close` (a connection each, from the cache
    // where the file fits, ended by httpd's close_notify).
    for (round, extra) in [("keep-alive", None), ("close", Some("Connection: close"))] {
        let mut args = vec![
            "--fail".to_string(),
            "--cacert".into(),
            ca.into(),
            "-w".into(),
            "%{http_code} %{num_connects}\\n".into(),
        ];
        if let Some(h) = extra {
            args.extend(["-H".into(), h.into()]);
        }
        for (i, (path, _)) in files.iter().enumerate() {
            args.push(format!("https://{UNIKERNEL}/{path}"));
            args.push("-o".into());
            args.push(got.join(format!("{round}-{i}")).to_str().unwrap().into());
        }
        // `/` is `/index.html`.
        args.push(format!("https://{UNIKERNEL}/"));
        args.push("-o".into());
        args.push(got.join(format!("{round}-root")).to_str().unwrap().into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, said) = curl(&ns, &args);
        assert_eq!(code, Some(0), "{runner:?} {round}: curl failed:\n{said}");
        let lines: Vec<&str> = said.lines().collect();
        assert_eq!(lines.len(), files.len() + 1, "{runner:?} {round}:\n{said}");
        assert!(lines.iter().all(|l| l.starts_with("200 ")), "{said}");
        let connects: usize = lines
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().parse::<usize>().unwrap())
            .sum();
        match round {
            "keep-alive" => assert_eq!(connects, 1, "{runner:?}: not one connection:\n{said}"),
            _ => assert_eq!(connects, files.len() + 1, "{runner:?}:\n{said}"),
        }
        for (i, (path, data)) in files.iter().enumerate() {
            let fetched = std::fs::read(got.join(format!("{round}-{i}"))).unwrap_or_default();
            assert!(
                fetched == *data,
                "{runner:?} {round}: /{path} differs: {} bytes fetched, {} expected",
                fetched.len(),
                data.len()
            );
        }
        let root = std::fs::read(got.join(format!("{round}-root"))).unwrap();
        assert_eq!(root, files[0].1, "{runner:?} {round}: / is not index.html");
        let total: usize = files.iter().map(|(_, d)| d.len()).sum();
        eprintln!(
            "{runner:?}: {round}: {} files, {total} bytes byte-exact over {connects} TLS connection(s)",
            files.len() + 1
        );
    }

    // A missing file: 404 over TLS.
    let url = format!("https://{UNIKERNEL}/no/such/file");
    let (code, said) = curl(
        &ns,
        &[
            "--cacert",
            ca,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ],
    );
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(said.trim(), "404", "{runner:?}: {said}");

    // A client trusting another CA refuses httpd's certificate (curl's
    // exit status 60: the peer's certificate cannot be authenticated).
    let url = format!("https://{UNIKERNEL}/index.html");
    let (code, said) = curl(&ns, &["--cacert", other_ca.to_str().unwrap(), &url]);
    assert_eq!(code, Some(60), "{runner:?}: curl with another CA:\n{said}");
    // httpd is still serving.
    let (code, said) = curl(&ns, &["--cacert", ca, &url]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(said.as_bytes(), files[0].1, "{runner:?}");
    server.drain();
    assert!(
        server.exited().is_none(),
        "{runner:?}: httpd exited: {:?}",
        server.seen
    );
    assert!(
        !server.seen.iter().any(|l| l.contains("panicked")),
        "{:?}",
        server.seen
    );
}

#[test]
fn https_hosted_serves_a_site_to_curl() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    serve_site(Runner::Hosted, "hsh");
}

#[test]
fn https_spt_serves_a_site_to_curl() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    serve_site(Runner::Spt, "hss");
}

fn bad_certificate_file(runner: Runner, tag: &str) {
    let pki = Pki::new("mkernel test CA", &[NAME, UNIKERNEL]);
    let dir = Dir::new(tag);
    let (_, image) = site(&dir);
    let program = program(runner, &dir);
    let ns = util::Netns::new(tag, Some(HOST_CIDR));
    let ipv4 = format!("--ipv4={UNIKERNEL}/24");
    let cases: [(&str, Vec<u8>, &str); 4] = [
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
        // A certificate whose base64 is damaged.
        (
            "corrupt.img",
            pki.server_bundle().replacen("MII", "M*I", 1).into_bytes(),
            "bad PEM",
        ),
    ];
    for (file, data, expect) in cases {
        let pem = dir.file(file, &tls_util::sectors(&data));
        let out = util::run_with_timeout(
            &mut command(runner, &ns, &program, &image, &pem, &[&ipv4]),
            Duration::from_secs(60),
        );
        let (ok, text) = printed(runner, &out);
        assert!(!ok, "{runner:?} {file}: httpd started:\n{text}");
        assert_eq!(out.status.code(), Some(1), "{runner:?} {file}:\n{text}");
        assert!(
            text.contains("error: certificate and key (block device tls):")
                && text.contains(expect),
            "{runner:?} {file}: expected {expect:?} in:\n{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
        assert!(!text.contains("listening on"), "{text}");
        eprintln!(
            "{runner:?} {file}: {}",
            text.lines().find(|l| l.contains("error:")).unwrap_or("")
        );
    }
}

#[test]
fn https_hosted_refuses_bad_certificate_files() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    bad_certificate_file(Runner::Hosted, "hbh");
}

#[test]
fn https_spt_refuses_bad_certificate_files() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    bad_certificate_file(Runner::Spt, "hbs");
}

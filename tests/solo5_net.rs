//! The `echo` and `httpd` examples as solo5-spt unikernels on a TAP, from
//! Linux: ping, TCP echo of random data over concurrent connections, and
//! HTTP fetches (curl) from a ustar site image, all checked byte for byte.
//! Each server is also run hosted through the same client session, and
//! the two stdouts (everything printed until the server is stopped with
//! SIGTERM, Solo5's banner stripped) must be equal: `listening on
//! ADDR:PORT` and nothing else.
//!
//! Every run has its own network namespace (named after the test process,
//! deleted on every exit path) holding the TAP, the server and the clients:
//! no frame leaves it. The echo clients are threads of this test that join
//! the namespace with `setns` (a thread's own namespace). Needs root,
//! /dev/net/tun and `ip`, else skips saying why; `ping` and `curl` too.

#[path = "solo5_util/mod.rs"]
mod util;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The TAP's address in the namespace, and the server's.
const HOST_CIDR: &str = "10.77.0.1/24";
const SERVER: &str = "10.77.0.2";

fn skip(why: &str) {
    util::say_skipped(why);
}

/// A network namespace with `lo` and a TAP `tap0` (HOST_CIDR) up; deleted
/// (with the TAP) when dropped, panics included.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let ns = Netns {
            name: format!("mkernel-{tag}-{}", std::process::id()),
        };
        let out = Command::new("ip")
            .args(["netns", "add", &ns.name])
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "ip netns add {}: {}",
            ns.name,
            String::from_utf8_lossy(&out.stderr)
        );
        // From here on, Drop cleans up.
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns.run(&["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ns.run(&["ip", "addr", "add", HOST_CIDR, "dev", "tap0"]);
        ns.run(&["ip", "link", "set", "tap0", "up"]);
        ns
    }

    /// `ip netns exec NS PROGRAM` (ip execs PROGRAM: same process).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `argv` in the namespace (at most 60 s); its stdout, or a panic
    /// with its output.
    fn run(&self, argv: &[&str]) -> String {
        let out = util::run_with_timeout(
            self.command(argv[0]).args(&argv[1..]),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{argv:?} in {}: {}\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Moves the calling thread into the namespace (threads have their own
    /// network namespace; sockets belong to the one they were made in).
    fn enter_this_thread(&self) {
        let f = File::open(Path::new("/var/run/netns").join(&self.name)).expect("netns file");
        // SAFETY: a valid namespace fd; only this thread changes namespace.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A server running in a namespace, its stdout and stderr collected;
/// killed when dropped.
struct Server {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    /// Reaped by `wait_exit` (behind std's back): nothing left to kill.
    reaped: bool,
}

fn collect(mut r: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Server {
    /// Starts `cmd` and waits (at most 60 s) until its stdout has a
    /// complete `listening on ` line.
    fn start(cmd: Command) -> Server {
        Server::start_until(cmd, "listening on ")
    }

    /// Starts `cmd` and waits (at most 60 s) until its stdout has a
    /// complete line containing `marker`.
    fn start_until(mut cmd: Command, marker: &str) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let mut server = Server {
            child,
            stdout,
            stderr,
            readers,
            reaped: false,
        };
        let start = Instant::now();
        loop {
            let out = String::from_utf8_lossy(&server.stdout.lock().unwrap()).into_owned();
            if let Some(i) = out.find(marker) {
                if out[i..].contains('\n') {
                    break;
                }
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "{cmd:?} ended with {status} before printing {marker:?}:\n{out}\n{}",
                    String::from_utf8_lossy(&server.stderr.lock().unwrap())
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{cmd:?} did not print {marker:?} within 60 s:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }

    /// Stops the server with SIGTERM (it must still be running, and die of
    /// it) and returns everything it printed on stdout.
    fn stop(mut self) -> String {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the server ended before being stopped:\n{}\n{}",
            String::from_utf8_lossy(&self.stdout.lock().unwrap()),
            String::from_utf8_lossy(&self.stderr.lock().unwrap())
        );
        // SAFETY: our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server ignored SIGTERM for 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        assert_eq!(
            status.signal(),
            Some(libc::SIGTERM),
            "server status {status}; stderr:\n{stderr}"
        );
        String::from_utf8(std::mem::take(&mut *self.stdout.lock().unwrap())).expect("utf-8")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of the hosted examples, built (debug) first.
fn hosted_examples() -> PathBuf {
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-q", "--example", "echo", "--example", "httpd"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --example echo --example httpd failed");
    // target/debug/deps/solo5_net-HASH -> target/debug/examples
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples")
}

/// `ping -c 3` from the namespace: all three answered.
fn ping(ns: &Netns) {
    let out = ns.run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", SERVER]);
    assert!(out.contains("3 packets transmitted, 3 received"), "{out}");
}

/// Pseudo-random bytes (xorshift64*), different for every seed.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// `conns` concurrent connections to the echo server, each sending `size`
/// random bytes (while reading) then shutting down its write side; each
/// must get exactly its bytes back, then the end of stream.
fn echo_clients(ns: &Arc<Netns>, conns: usize, size: usize) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let clients: Vec<_> = (0..conns)
        .map(|i| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                ns.enter_this_thread();
                let data = random_bytes(seed ^ (i as u64 + 1), size);
                let s = TcpStream::connect((SERVER, 7))
                    .unwrap_or_else(|e| panic!("connection {i}: connect: {e}"));
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut w = s.try_clone().unwrap();
                let sent = data.clone();
                let writer = std::thread::spawn(move || {
                    w.write_all(&sent).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                let mut got = Vec::with_capacity(size);
                (&s).read_to_end(&mut got)
                    .unwrap_or_else(|e| panic!("connection {i}: read: {e}"));
                writer.join().expect("writer");
                assert!(
                    got == data,
                    "connection {i}: {} bytes back of {size}, first difference at {:?}",
                    got.len(),
                    got.iter().zip(&data).position(|(a, b)| a != b)
                );
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        if c.join().is_err() {
            panic!("echo connection {i} failed");
        }
    }
}

/// The client session against the echo server: ping, then 8 concurrent
/// connections of 256 KiB each, then 1 more (the server still accepts).
fn echo_session(ns: &Arc<Netns>, what: &str) {
    ping(ns);
    let t0 = Instant::now();
    echo_clients(ns, 8, 256 * 1024);
    eprintln!(
        "{what} echo: 8 concurrent connections x 256 KiB in {:?}",
        t0.elapsed()
    );
    echo_clients(ns, 1, 1000);
}

/// Starts the hosted example `example` (with `devices` and `args` after
/// `--`) and the spt image (`devices` as tender flags, `args` after the
/// image), each in its own namespace, runs `session` against each, stops
/// them and compares their stdouts, which must be `expect`.
fn hosted_then_spt(
    tag: &str,
    example: &str,
    devices: &[&str],
    args: &[&str],
    expect: &str,
    session: impl Fn(&Arc<Netns>, &str),
) {
    let image = util::build_image("spt", example);
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let hosted_bin = hosted_examples().join(example);

    let ns = Arc::new(Netns::new(&format!("{tag}-h")));
    let mut cmd = ns.command(&hosted_bin);
    cmd.args(devices).arg("--").args(args);
    let server = Server::start(cmd);
    session(&ns, "hosted");
    let hosted = server.stop();
    drop(ns);

    let ns = Arc::new(Netns::new(&format!("{tag}-s")));
    let mut cmd = ns.command(&tender);
    cmd.args(devices).arg(&image).args(args);
    let t0 = Instant::now();
    let server = Server::start(cmd);
    eprintln!("spt {example}: listening {:?} after start", t0.elapsed());
    session(&ns, "spt");
    let console = server.stop();
    drop(ns);

    assert_eq!(hosted, expect, "hosted {example} stdout");
    assert_eq!(
        util::app_output_until_killed(&console),
        hosted,
        "{example}: spt stdout (left) differs from hosted (right)"
    );
}

#[test]
fn echo_spt_over_tap() {
    if let Some(why) = util::cannot_make_netns() {
        return skip(&why);
    }
    hosted_then_spt(
        "echo",
        "echo",
        &["--net:service=tap0"],
        &["--ipv4=10.77.0.2/24"],
        "listening on 10.77.0.2:7\n",
        echo_session,
    );
}

/// A ustar site image and the files in it; the directory is removed when
/// dropped.
struct Site {
    dir: PathBuf,
    image: PathBuf,
    big: Vec<u8>,
}

impl Site {
    fn new() -> Site {
        let dir = std::env::temp_dir().join(format!("mkernel-solo5-net-{}", std::process::id()));
        let root = dir.join("site");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), b"<h1>hello</h1>\n").unwrap();
        std::fs::write(root.join("sub/a.txt"), b"nested\n").unwrap();
        let big = random_bytes(0x5eed, (1 << 20) + 123);
        std::fs::write(root.join("big.bin"), &big).unwrap();
        let image = dir.join("site.img");
        let site = Site { dir, image, big };
        let ok = Command::new("tar")
            .args(["--format=ustar", "-cf"])
            .arg(&site.image)
            .arg("-C")
            .arg(&root)
            .arg(".")
            .status()
            .expect("tar")
            .success();
        assert!(ok, "tar failed");
        site
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `curl ARGS` in the namespace (30 s at most per transfer).
fn curl(ns: &Netns, args: &[&str]) -> String {
    let mut argv = vec!["curl", "-sS", "--max-time", "30"];
    argv.extend_from_slice(args);
    ns.run(&argv)
}

/// The client session against httpd: ping, two files over one kept-alive
/// connection, three concurrent fetches of the big file, a nested file and
/// a 404, all compared byte for byte.
fn httpd_session(ns: &Arc<Netns>, what: &str, site: &Site) {
    ping(ns);
    let out_dir = site.dir.join(format!("out-{what}"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = |name: &str| out_dir.join(name).to_str().unwrap().to_string();
    let url = |path: &str| format!("http://{SERVER}{path}");

    let t0 = Instant::now();
    let out = curl(
        ns,
        &[
            "-o",
            &file("big"),
            &url("/big.bin"),
            "-o",
            &file("index"),
            &url("/"),
            "-w",
            "%{http_code} %{num_connects}\n",
        ],
    );
    assert_eq!(
        out, "200 1\n200 0\n",
        "status and new connections per request"
    );
    assert!(
        std::fs::read(file("big")).unwrap() == site.big,
        "big.bin differs"
    );
    assert_eq!(std::fs::read(file("index")).unwrap(), b"<h1>hello</h1>\n");
    eprintln!(
        "{what} httpd: 1 MiB + index over one connection in {:?}",
        t0.elapsed()
    );

    let fetches: Vec<_> = (0..3)
        .map(|i| {
            let ns = ns.clone();
            let dest = file(&format!("big{i}"));
            let u = url("/big.bin");
            std::thread::spawn(move || curl(&ns, &["-o", &dest, "-w", "%{http_code}", &u]))
        })
        .collect();
    for (i, f) in fetches.into_iter().enumerate() {
        assert_eq!(f.join().expect("curl thread"), "200");
        assert!(
            std::fs::read(file(&format!("big{i}"))).unwrap() == site.big,
            "concurrent fetch {i} of big.bin differs"
        );
    }

    let out = curl(ns, &["-w", "\n%{http_code}", &url("/sub/a.txt")]);
    assert_eq!(out, "nested\n\n200");
    let out = curl(ns, &["-w", "\n%{http_code}", &url("/missing")]);
    assert_eq!(out, "404 Not Found\n\n404");
}

#[test]
fn httpd_spt_over_tap() {
    if let Some(why) = util::cannot_make_netns() {
        return skip(&why);
    }
    let site = Site::new();
    let block = format!("--block:site={}", site.image.display());
    hosted_then_spt(
        "httpd",
        "httpd",
        &["--net:service=tap0", &block],
        &["--ipv4=10.77.0.2/24"],
        "listening on 10.77.0.2:80\n",
        |ns, what| httpd_session(ns, what, &site),
    );
}

impl Server {
    /// Waits (at most 30 s) for the server to exit by itself; its stdout
    /// and the CPU time (user + system) it used.
    fn wait_exit(mut self) -> (String, Duration) {
        let pid = self.child.id() as libc::pid_t;
        let start = Instant::now();
        // SAFETY: zeroed rusage is a valid value to be filled in.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let mut status = 0;
        loop {
            // SAFETY: our own child; `status` and `ru` are live locals.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
            if r == pid {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{pid} still running after 30 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.reaped = true;
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let out = String::from_utf8(std::mem::take(&mut *self.stdout.lock().unwrap())).unwrap();
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "wait status {status:#x}; stdout:\n{out}\nstderr:\n{}",
            String::from_utf8_lossy(&self.stderr.lock().unwrap())
        );
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        (out, tv(ru.ru_utime) + tv(ru.ru_stime))
    }
}

/// Runs `cmd` (solo5_netidle) in `ns`, sending it frames (ARP requests of
/// pings nobody answers) while it sleeps; its stdout and CPU time.
fn netidle_run(ns: &Netns, cmd: Command) -> (String, Duration) {
    let server = Server::start_until(cmd, "sleeping");
    // No answer comes (nothing reads the frames): ping fails, as it should.
    let _ = util::run_with_timeout(
        ns.command("ping")
            .args(["-c", "4", "-i", "0.2", "-w", "1", SERVER]),
        Duration::from_secs(10),
    );
    server.wait_exit()
}

/// Frames arriving on a net device nobody reads do not make the unikernel
/// spin through its idle wait (solo5_yield keeps reporting such a device
/// ready), and they are still there to read afterwards, as hosted.
#[test]
fn spt_idle_with_unread_frames_does_not_spin() {
    if let Some(why) = util::cannot_make_netns() {
        return skip(&why);
    }
    let image = util::build_image("spt", "solo5_netidle");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let ok = Command::new(env!("CARGO"))
        .args(["build", "-q", "--example", "solo5_netidle"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cargo build --example solo5_netidle failed");
    let hosted_bin = hosted_examples().join("solo5_netidle");

    let ns = Netns::new("idle-h");
    let mut cmd = ns.command(&hosted_bin);
    cmd.arg("--net:service=tap0");
    let (hosted, _) = netidle_run(&ns, cmd);
    drop(ns);

    let ns = Netns::new("idle-s");
    let mut cmd = ns.command(&tender);
    cmd.arg("--net:service=tap0").arg(&image);
    let (console, cpu) = netidle_run(&ns, cmd);
    drop(ns);

    assert_eq!(hosted, "sleeping\nframes waiting after the sleep: true\n");
    assert_eq!(
        util::app_output(&console),
        hosted,
        "spt stdout (left) differs from hosted (right)"
    );
    eprintln!("spt netidle: {cpu:?} of CPU for a 2 s sleep");
    assert!(
        cpu < Duration::from_millis(500),
        "the unikernel used {cpu:?} of CPU during a 2 s sleep: its idle wait spins"
    );
}

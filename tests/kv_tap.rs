//! The kv example (`examples/kv.rs`) on a real TAP, hosted and as a
//! solo5-spt unikernel, each in a network namespace of its own with its
//! clients:
//!
//! - **redis-cli** (Debian's `redis-tools`): commands and their exact
//!   answers, errors included; hosted and under spt.
//! - **redis-benchmark** `-t set,get -n 100000 -P 16` against the hosted
//!   service: no error (redis-benchmark exits at the first error reply),
//!   and the writes shared commits (group commit). When `redis-server` is
//!   installed, the same run against it (in a namespace of its own, over a
//!   veth pair; `appendonly yes`, `appendfsync no`: written before the
//!   reply, like kv), for the README's comparison (`--nocapture` shows
//!   both; `cargo test --release` measures a release build of kv).
//! - **Crash test**, hosted and under spt: 4 writer connections keep 16
//!   `SET`s each in flight (values of 100 to 4,000 bytes over 1,000 keys:
//!   a 8 MiB data device compacts several times), the server is killed
//!   with SIGKILL at random points (at least 20 kills and 10,000
//!   acknowledged `SET`s, and until one kill has landed while a commit was
//!   writing: recovery reports a torn batch), restarted on the same file
//!   each time; after each restart every key holds exactly its last
//!   acknowledged value or a value sent later on its connection, those
//!   later values visible for a prefix of what the connection sent and for
//!   no more, and the store opens.
//!
//! Needs root, /dev/net/tun, `ip` (and redis-cli, redis-benchmark for the
//! client tests), else each test says why it skips.

#[path = "solo5_util/mod.rs"]
mod util;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const PORT: u16 = 6379;

/// The hosted kv binary, built once per test process (release when the
/// tests are: `cargo test --release` measures a release build).
fn kv_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut args = vec!["build", "-q", "--example", "kv"];
            if !cfg!(debug_assertions) {
                args.push("--release");
            }
            let ok = Command::new(env!("CARGO"))
                .args(&args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .unwrap()
                .success();
            assert!(ok, "cargo {args:?} failed");
            // target/<profile>/deps/kv_tap-HASH -> target/<profile>/examples/kv
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().parent().unwrap().join("examples/kv")
        })
        .clone()
}

/// A zeroed (sparse) data file of `bytes`, removed on drop.
fn zeroed(tag: &str, bytes: u64) -> util::Disk {
    let path = std::env::temp_dir().join(format!("mkt-kv-{tag}-{}.img", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(bytes))
        .unwrap();
    util::Disk(path)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Hosted,
    Spt,
}

/// What starts the server: the hosted binary or the spt tender and image
/// (built once per call).
struct Launcher {
    program: PathBuf,
    image: Option<PathBuf>,
}

impl Launcher {
    fn new(target: Target) -> Launcher {
        match target {
            Target::Hosted => Launcher {
                program: kv_binary(),
                image: None,
            },
            Target::Spt => Launcher {
                image: Some(util::build_image("spt", "kv")),
                program: util::solo5_root().join("tenders/spt/solo5-spt"),
            },
        }
    }

    /// Starts kv in `ns` on `disk` at `ip`, with a fixed MAC (so that the
    /// namespace's ARP entry stays right across restarts), and waits for
    /// its `listening on` line.
    fn start(&self, ns: &util::Netns, disk: &util::Disk, ip: &str) -> util::Server {
        let devices = [
            format!("--net:service={}", ns.tap),
            "--net-mac:service=02:6b:76:00:00:02".to_string(),
            disk.flag("data"),
        ];
        let ipv4 = format!("--ipv4={ip}/24");
        let mut cmd = ns.command(&self.program);
        cmd.args(&devices);
        match &self.image {
            Some(image) => cmd.arg(image).arg(&ipv4),
            None => cmd.arg("--").arg(&ipv4),
        };
        let mut server = util::Server::start(&mut cmd);
        server.wait_for(
            &format!("listening on {ip}:{PORT}"),
            Duration::from_secs(60),
        );
        server
    }
}

fn skip_reason(tools: &[&str]) -> Option<String> {
    util::cannot_make_netns().or_else(|| util::tool_check::missing_tool(tools))
}

/// Runs `argv` in `ns` (at most 120 s); its status, stdout and stderr.
fn ns_run(ns: &util::Netns, argv: &[&str]) -> (bool, String, String) {
    let out = util::run_with_timeout(
        ns.command(Path::new(argv[0])).args(&argv[1..]),
        Duration::from_secs(120),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// redis-cli against kv at `host`: each command's exact answer.
fn cli_session(ns: &util::Netns, host: &str) {
    let cli = |args: &[&str]| -> String {
        let mut argv = vec!["redis-cli", "-h", host, "-p", "6379"];
        argv.extend_from_slice(args);
        let (ok, out, err) = ns_run(ns, &argv);
        assert!(ok, "redis-cli {args:?}: {out}{err}");
        out
    };
    assert_eq!(cli(&["ping"]), "PONG\n");
    assert_eq!(cli(&["set", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(&["get", "greeting"]), "hello world\n");
    assert_eq!(cli(&["set", "other", "x"]), "OK\n");
    assert_eq!(cli(&["exists", "greeting", "other", "nope"]), "2\n");
    assert_eq!(cli(&["del", "other", "nope"]), "1\n");
    assert_eq!(cli(&["get", "other"]), "\n");
    assert_eq!(cli(&["dbsize"]), "1\n");
    assert!(cli(&["info", "keyspace"]).contains("db0:keys=1,"));
    assert!(cli(&["info"]).contains("# Persistence"));
    // A value from stdin (-x): binary bytes, CR LF included, come back
    // exactly.
    let blob: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let mut child = ns
        .command(Path::new("redis-cli"))
        .args(["-h", host, "-x", "set", "blob"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&blob).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    let mut got = ns
        .command(Path::new("redis-cli"))
        .args(["-h", host, "--no-raw", "strlen", "blob"])
        .output()
        .unwrap()
        .stdout;
    // STRLEN is not served: a clear error, the connection fine.
    assert!(
        String::from_utf8_lossy(&got).contains("ERR unknown command 'strlen'"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    got = resp_get(ns, host, "blob").expect("blob is set");
    assert!(got == blob, "the 10,000-byte binary value differs");
    // Errors: unknown command, wrong arity, options not served.
    assert!(cli(&["flushall"]).starts_with("ERR unknown command 'flushall'"));
    assert!(cli(&["get"]).starts_with("ERR wrong number of arguments for 'get' command\n"));
    assert!(cli(&["set", "k", "v", "EX", "10"]).starts_with("ERR syntax error"));
}

/// GET over a socket of the test's (opened in `ns`): the value's exact
/// bytes.
fn resp_get(ns: &util::Netns, host: &str, key: &str) -> Option<Vec<u8>> {
    let mut c = Client::connect(ns, host);
    c.send(&[b"GET", key.as_bytes()]);
    c.bulk()
}

/// A RESP client on a socket opened inside the namespace.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(ns: &util::Netns, host: &str) -> Client {
        let addr: SocketAddr = format!("{host}:{PORT}").parse().unwrap();
        let s = ns.run(move || {
            let mut last = None;
            for _ in 0..50 {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) => return s,
                    Err(e) => last = Some(e),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("connect {addr}: {last:?}")
        });
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn send(&mut self, args: &[&[u8]]) {
        self.w.write_all(&command(args)).unwrap();
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(l)
    }

    /// A bulk string reply (`None`: the null bulk string).
    fn bulk(&mut self) -> Option<Vec<u8>> {
        let l = self.line().unwrap();
        let n: i64 = l
            .strip_prefix('$')
            .unwrap_or_else(|| panic!("not a bulk reply: {l:?}"))
            .trim_end()
            .parse()
            .unwrap();
        if n < 0 {
            return None;
        }
        let mut v = vec![0u8; n as usize + 2];
        self.r.read_exact(&mut v).unwrap();
        v.truncate(n as usize);
        Some(v)
    }

    fn info(&mut self) -> String {
        self.send(&[b"INFO"]);
        String::from_utf8(self.bulk().unwrap()).unwrap()
    }
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut r = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        r.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        r.extend_from_slice(a);
        r.extend_from_slice(b"\r\n");
    }
    r
}

/// `name:value` of an INFO reply.
fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in INFO:\n{info}"))
        .trim()
        .parse()
        .unwrap()
}

/// Runs redis-benchmark `-t set,get -n 100000 -P 16` against
/// `host:port`; requests per second of SET and GET. Asserts it reported
/// no error.
fn benchmark(ns: &util::Netns, host: &str, port: u16, what: &str) -> (f64, f64) {
    let port = port.to_string();
    let (ok, out, err) = ns_run(
        ns,
        &[
            "redis-benchmark",
            "-h",
            host,
            "-p",
            &port,
            "-t",
            "set,get",
            "-n",
            "100000",
            "-P",
            "16",
            "--csv",
        ],
    );
    assert!(ok, "{what}: redis-benchmark failed:\n{out}\n{err}");
    assert!(
        !err.contains("Error") && !err.contains("WARNING") && !err.contains("ERROR"),
        "{what}: redis-benchmark said:\n{err}"
    );
    let rps = |test: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("\"{test}\",\"")))
            .and_then(|rest| rest.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no {test} line in:\n{out}"))
    };
    (rps("SET"), rps("GET"))
}

#[test]
fn kv_hosted_with_redis_cli_and_redis_benchmark() {
    if let Some(why) = skip_reason(&["redis-cli", "redis-benchmark"]) {
        return util::say_skipped(&why);
    }
    let launcher = Launcher::new(Target::Hosted);
    let ns = util::Netns::new("kvh", Some("10.81.0.1/24"));
    let disk = zeroed("bench", 64 << 20);
    let host = "10.81.0.2";
    let server = launcher.start(&ns, &disk, host);
    cli_session(&ns, host);

    let t0 = Instant::now();
    let (set, get) = benchmark(&ns, host, PORT, "kv");
    let took = t0.elapsed();
    let mut c = Client::connect(&ns, host);
    c.send(&[b"GET", b"key:__rand_int__"]);
    // redis-benchmark's SETs all write this key, a 3-byte value (-d 3).
    assert_eq!(c.bulk().map(|v| v.len()), Some(3));
    let info = c.info();
    let (commits, ops) = (
        info_field(&info, "commits"),
        info_field(&info, "ops_committed"),
    );
    assert!(ops >= 100_000, "{ops} writes committed");
    // 50 clients × 16 pipelined SETs: commits are shared (group commit).
    assert!(
        commits * 10 <= ops,
        "{commits} commits for {ops} writes: no group commit"
    );
    eprintln!(
        "kv ({} build), redis-benchmark -t set,get -n 100000 -P 16: SET {set:.0}/s, GET {get:.0}/s \
         ({took:.1?}); {commits} commits for {ops} writes",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    drop(server);

    // The same run against Debian's redis-server, when installed.
    if util::tool_check::missing_tool(&["redis-server"]).is_none() {
        redis_server_run(&ns);
    } else {
        eprintln!("redis-server not installed: no comparison run");
    }
}

/// A network namespace of its own, deleted on drop.
struct OwnNs(String);

impl Drop for OwnNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// redis-benchmark from `ns` against redis-server in a namespace of its
/// own, joined to `ns` by a veth pair (Linux to Linux, as kv's TAP is a
/// process to Linux): `appendonly yes`, `appendfsync no`, so that a write
/// is in the OS's page cache before its reply, as kv's.
fn redis_server_run(ns: &util::Netns) {
    let id = std::process::id();
    let rns = OwnNs(format!("mkt-kvr-{id}"));
    ip(&["netns", "add", &rns.0]);
    let (a, b) = (format!("kva{id}"), format!("kvb{id}"));
    ip(&[
        "link", "add", &a, "netns", &ns.name, "type", "veth", "peer", "name", &b, "netns", &rns.0,
    ]);
    ip(&["-n", &ns.name, "addr", "add", "10.91.0.1/24", "dev", &a]);
    ip(&["-n", &ns.name, "link", "set", &a, "up"]);
    ip(&["-n", &rns.0, "addr", "add", "10.91.0.2/24", "dev", &b]);
    ip(&["-n", &rns.0, "link", "set", &b, "up"]);
    let dir = std::env::temp_dir().join(format!("mkt-kv-redis-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &rns.0, "redis-server"]).args([
        "--port",
        "6379",
        "--bind",
        "10.91.0.2",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "no",
        // Its namespace has nothing else: let the client's through.
        "--protected-mode",
        "no",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let mut redis = util::Server::start(&mut cmd);
    redis.wait_for("Ready to accept connections", Duration::from_secs(30));
    let (set, get) = benchmark(ns, "10.91.0.2", PORT, "redis-server");
    eprintln!(
        "redis-server (appendonly yes, appendfsync no; over a veth pair), same run: \
         SET {set:.0}/s, GET {get:.0}/s"
    );
    drop(redis);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn kv_spt_with_redis_cli() {
    if let Some(why) = skip_reason(&["redis-cli", "redis-benchmark"]) {
        return util::say_skipped(&why);
    }
    let launcher = Launcher::new(Target::Spt);
    let ns = util::Netns::new("kvs", Some("10.82.0.1/24"));
    let disk = zeroed("spt-cli", 16 << 20);
    let host = "10.82.0.2";
    let server = launcher.start(&ns, &disk, host);
    cli_session(&ns, host);
    // redis-benchmark too, shorter: no error under spt either.
    let (ok, out, err) = ns_run(
        &ns,
        &[
            "redis-benchmark",
            "-h",
            host,
            "-t",
            "set,get",
            "-n",
            "20000",
            "-P",
            "16",
            "-q",
        ],
    );
    assert!(ok && !err.contains("rror"), "spt: {out}\n{err}");
    eprintln!("spt: {}", out.trim().replace('\r', "\n"));
    drop(server);
    // The unikernel's data opens again, with what was written.
    let server = launcher.start(&ns, &disk, host);
    assert_eq!(
        resp_get(&ns, host, "greeting").as_deref(),
        Some(&b"hello world"[..])
    );
    drop(server);
}

// ------------------------------------------------------------- crash test

const KEYS: u64 = 1000;
const CONNS: u64 = 4;
const WINDOW: usize = 16;
const SETS: u64 = 10_000;
const MIN_KILLS: usize = 20;
/// Kills to wait for one that lands mid-commit (hosted, ~1 in 13 do: at
/// this bound a miss is a 1-in-10^6 event, not bad luck).
const MAX_CYCLES: usize = 200;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The value of `SET` number `n`: it names `n`, its length (100 to 4,000
/// bytes) and bytes follow from `n`.
fn value(n: u64) -> Vec<u8> {
    let mut r = Rng(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let len = 100 + r.below(3900) as usize;
    let mut v = format!("{n}:").into_bytes();
    while v.len() < len {
        v.push(r.next() as u8);
    }
    v
}

/// The `SET` number a value names.
fn number(v: &[u8]) -> Option<u64> {
    let end = v.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&v[..end]).ok()?.parse().ok()
}

fn key(k: u64) -> String {
    format!("key:{k}")
}

/// `(key, SET number)` pairs.
type Sets = Vec<(u64, u64)>;

/// One writer connection: keeps `WINDOW` SETs in flight on its keys (`k %
/// CONNS == conn`) until stopped or its connection breaks; the
/// acknowledged `(key, n)` in order, and those sent but not acknowledged.
fn writer(
    mut c: Client,
    conn: u64,
    seed: u64,
    next: &AtomicU64,
    acked_total: &AtomicU64,
    stop: &AtomicBool,
) -> (Sets, Sets) {
    let mut rng = Rng(seed | 1);
    let mut inflight = std::collections::VecDeque::new();
    let mut acked = Vec::new();
    loop {
        while inflight.len() < WINDOW && !stop.load(Ordering::Relaxed) {
            let k = conn + CONNS * rng.below(KEYS / CONNS);
            let n = next.fetch_add(1, Ordering::Relaxed);
            let req = command(&[b"SET", key(k).as_bytes(), &value(n)]);
            inflight.push_back((k, n));
            if c.w.write_all(&req).is_err() {
                return (acked, inflight.into());
            }
        }
        if inflight.is_empty() {
            return (acked, Vec::new());
        }
        match c.line() {
            Ok(l) if l == "+OK\r\n" => {
                acked.push(inflight.pop_front().unwrap());
                acked_total.fetch_add(1, Ordering::Relaxed);
            }
            Ok(l) => panic!("SET answered {l:?}"),
            Err(_) => return (acked, inflight.into()),
        }
    }
}

/// Reads every key back and checks it against `model` (key → last
/// acknowledged SET number) and the SETs each connection had in flight
/// when the server was killed; then makes `model` what was found.
fn verify(
    c: &mut Client,
    model: &mut HashMap<u64, u64>,
    inflight: &[Vec<(u64, u64)>],
    cycle: usize,
) {
    let mut found: HashMap<u64, u64> = HashMap::new();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(100) {
        let mut req = Vec::new();
        for &k in chunk {
            req.extend(command(&[b"GET", key(k).as_bytes()]));
        }
        c.w.write_all(&req).unwrap();
        for &k in chunk {
            if let Some(v) = c.bulk() {
                let n = number(&v)
                    .unwrap_or_else(|| panic!("cycle {cycle}: {} holds a foreign value", key(k)));
                assert!(
                    v == value(n),
                    "cycle {cycle}: {} holds SET {n}'s value, not whole ({} bytes)",
                    key(k),
                    v.len()
                );
                found.insert(k, n);
            }
        }
    }
    for (conn, sent) in inflight.iter().enumerate() {
        // The last unacknowledged SET of this connection that is visible:
        // all before it must be applied, none after it.
        let j = sent
            .iter()
            .rposition(|(k, n)| found.get(k) == Some(n))
            .map_or(0, |j| j + 1);
        let mut want: HashMap<u64, u64> = model
            .iter()
            .filter(|(k, _)| *k % CONNS == conn as u64)
            .map(|(k, n)| (*k, *n))
            .collect();
        for (k, n) in &sent[..j] {
            want.insert(*k, *n);
        }
        for k in (0..KEYS).filter(|k| k % CONNS == conn as u64) {
            assert_eq!(
                found.get(&k),
                want.get(&k),
                "cycle {cycle}: {} (connection {conn}): found SET {:?}, expected {:?} \
                 (last acknowledged {:?}; {j} of {} unacknowledged SETs visible)",
                key(k),
                found.get(&k),
                want.get(&k),
                model.get(&k),
                sent.len()
            );
        }
    }
    *model = found;
}

fn crash_test(target: Target, tag: &str, subnet: u8) {
    if let Some(why) = skip_reason(&[]) {
        return util::say_skipped(&why);
    }
    let launcher = Launcher::new(target);
    let ns = util::Netns::new(tag, Some(&format!("10.{subnet}.0.1/24")));
    let host = format!("10.{subnet}.0.2");
    let disk = zeroed(tag, 8 << 20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("{target:?} crash test: seed {seed}");
    let mut rng = Rng(seed | 1);
    let next = Arc::new(AtomicU64::new(0));
    let mut model: HashMap<u64, u64> = HashMap::new();
    let mut inflight: Vec<Vec<(u64, u64)>> = vec![Vec::new(); CONNS as usize];
    let (mut acked, mut kills, mut torn, mut compactions) = (0u64, 0usize, 0usize, 0u64);
    let t0 = Instant::now();
    for cycle in 0.. {
        let server = launcher.start(&ns, &disk, &host);
        let mut check = Client::connect(&ns, &host);
        verify(&mut check, &mut model, &inflight, cycle);
        let info = check.info();
        torn += info_field(&info, "recovered_torn_batch") as usize;
        assert_eq!(
            info_field(&info, "recovered_keys"),
            model.len() as u64,
            "cycle {cycle}: keys"
        );
        if acked >= SETS && kills >= MIN_KILLS && torn >= 1 {
            drop(server);
            break;
        }
        assert!(
            cycle < MAX_CYCLES,
            "{target:?}: {cycle} kills and not one landed while a commit was writing \
             (recovery never found a torn batch)"
        );
        // Writers, and a kill once this cycle's random share of
        // acknowledgements has come, after a random delay of up to 2 ms.
        let acked_now = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut sockets = Vec::new();
        let writers: Vec<_> = (0..CONNS)
            .map(|conn| {
                let c = Client::connect(&ns, &host);
                sockets.push(c.w.try_clone().unwrap());
                let (next, acked_now, stop) = (next.clone(), acked_now.clone(), stop.clone());
                let seed = rng.next();
                std::thread::spawn(move || writer(c, conn, seed, &next, &acked_now, &stop))
            })
            .collect();
        let share = 150 + rng.below(500);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_now.load(Ordering::Relaxed) < share {
            assert!(Instant::now() < deadline, "cycle {cycle}: writes stalled");
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        compactions += info_field(&check.info(), "compactions");
        drop(server); // SIGKILL, and reaped
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        for s in &sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        for (conn, w) in writers.into_iter().enumerate() {
            let (done, left) = w.join().unwrap();
            acked += done.len() as u64;
            for (k, n) in done {
                model.insert(k, n);
            }
            inflight[conn] = left;
        }
    }
    eprintln!(
        "{target:?} crash test: {acked} acknowledged SETs, {kills} kills, {torn} during a commit \
         (torn batch found), {compactions}+ compactions, {} keys, {:.1?}",
        model.len(),
        t0.elapsed()
    );
}

#[test]
fn kv_hosted_survives_sigkill_at_random_points() {
    crash_test(Target::Hosted, "kch", 83);
}

#[test]
fn kv_spt_survives_sigkill_at_random_points() {
    crash_test(Target::Spt, "kcs", 84);
}

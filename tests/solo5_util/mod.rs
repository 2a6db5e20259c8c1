//! Shared by the Solo5 tests: running `cargo mkernel` and commands with a
//! time limit (a tender or QEMU must never hang a test run), network
//! namespaces with a TAP, disk images, running unikernels on each
//! [`Target`], and the checks that compare an example's unikernel with its
//! hosted run ([`example_matches_hosted`], [`solo5_tasks_matches_hosted`]).

#![allow(dead_code, reason = "each test file uses only part of these helpers")]

pub mod raw;
#[path = "../tool_check/mod.rs"]
pub mod tool_check;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Says that a test is skipped and why, where it shows: straight to the
/// process's stderr, which the test harness does not capture (it captures
/// `println!` and `eprintln!`, and shows them only for failing tests), so
/// the line is in every log, `cargo test` and CI alike.
pub fn say_skipped(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Runs `cargo mkernel ARGS` from the repository (the tool from source, as
/// the `.cargo/config.toml` alias does). Panics with its stderr on failure.
pub fn cargo_mkernel(args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(env!("CARGO"))
            .args(["run", "-q", "-p", "cargo-mkernel", "--"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        Duration::from_secs(900),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo mkernel {args:?} failed: {}\n{stderr}",
        out.status
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Builds `example` for `target` and returns the image path (the last line
/// `cargo mkernel build` prints).
pub fn build_image(target: &str, example: &str) -> PathBuf {
    let out = cargo_mkernel(&["build", "--target", target, "--example", example]);
    let path = PathBuf::from(out.lines().last().expect("an image path").trim());
    assert!(path.is_file(), "{} is not a file", path.display());
    path
}

/// The built Solo5 tree (tenders, elftool).
pub fn solo5_root() -> PathBuf {
    PathBuf::from(cargo_mkernel(&["solo5"]).trim())
}

/// The example's binary, built (by cargo, once per test process) so that a
/// filtered `cargo test --test examples` does not run stale binaries.
pub fn example_binary(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--quiet", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success(), "cargo build --example {name} failed");
        built.push(name.to_string());
    }
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let mut p = std::env::current_exe().unwrap();
    p.pop();
    p.pop();
    p.push("examples");
    p.push(name);
    p
}

/// Runs `cmd`, killing it after `limit` (then panics).
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // Drain the pipes in threads so a chatty child cannot block on them.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).ok();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The lines the Solo5 bindings print on the console (the tender's stdout)
/// before the application starts, at the default log level (the
/// application can silence them with `--solo5:quiet` as its first
/// argument): the logo (4 lines) and the bindings version from
/// `bindings/{spt,hvt}/start.c`, then the memory map from `bindings/mem.c`.
/// `false`: only the start is fixed (version, addresses follow).
const BANNER: [(&str, bool); 11] = [
    ("            |      ___|", true),
    ("  __|  _ \\  |  _ \\ __ \\", true),
    ("\\__ \\ (   | | (   |  ) |", true),
    ("____/\\___/ _|\\___/____/", true),
    ("Solo5: Bindings version ", false),
    ("Solo5: Memory map: ", false),
    ("Solo5:   reserved @ (", false),
    ("Solo5:       text @ (", false),
    ("Solo5:     rodata @ (", false),
    ("Solo5:       data @ (", false),
    ("Solo5:       heap >= ", false),
];

/// The application's output in a Solo5 console transcript.
///
/// The rule (Solo5 v0.7.2): the bindings print exactly the 11 lines of
/// [`BANNER`] before `solo5_app_main`, and one line after it,
/// `Solo5: solo5_exit(N) called` (`bindings/exit.c`; `solo5_abort() called`
/// on abort). Nothing else of Solo5's reaches stdout: the tender writes its
/// own messages to stderr. Panics if the transcript does not have that
/// shape, so a change in Solo5 shows up here rather than as a diff.
pub fn app_output(console: &str) -> String {
    let mut rest = console;
    for (i, (text, exact)) in BANNER.iter().enumerate() {
        let (line, tail) = rest
            .split_once('\n')
            .unwrap_or_else(|| panic!("Solo5 banner line {i} missing in:\n{console}"));
        let ok = if *exact {
            line == *text
        } else {
            line.starts_with(text)
        };
        assert!(
            ok,
            "Solo5 banner line {i}: expected {text:?}, got {line:?} in:\n{console}"
        );
        rest = tail;
    }
    // The exit line follows the application's last byte (on a line of its
    // own when the application ended with a newline).
    let pos = rest
        .rfind("Solo5: solo5_exit(")
        .or_else(|| rest.rfind("Solo5: solo5_abort() called"))
        .unwrap_or_else(|| panic!("no Solo5 exit line in:\n{console}"));
    let trailer = &rest[pos..];
    let code = trailer
        .strip_prefix("Solo5: solo5_exit(")
        .and_then(|t| t.strip_suffix(") called\n"));
    assert!(
        code.is_some_and(|c| c.parse::<i32>().is_ok())
            || trailer == "Solo5: solo5_abort() called\n",
        "the transcript does not end with Solo5's exit line:\n{console}"
    );
    rest[..pos].to_string()
}

/// Runs the hosted example `example` (`cargo run`), with `args` as its
/// command line, for at most `limit`.
pub fn hosted(example: &str, args: &[&str], limit: Duration) -> Output {
    hosted_in(None, example, args, limit)
}

/// [`hosted`], inside `ns` when given.
pub fn hosted_in(ns: Option<&Netns>, example: &str, args: &[&str], limit: Duration) -> Output {
    let cargo = Path::new(env!("CARGO"));
    let mut cmd = match ns {
        Some(ns) => ns.command(cargo),
        None => Command::new(cargo),
    };
    run_with_timeout(
        cmd.args(["run", "-q", "--example", example, "--"])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        limit,
    )
}

/// The hosted command line equal to a unikernel's: the device options
/// `opts` as they are, then the application's arguments `args` after `--`
/// (under a tender they follow the image instead).
pub fn hosted_args<'a>(opts: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = opts.iter().map(String::as_str).collect();
    if !args.is_empty() {
        v.push("--");
        v.extend_from_slice(args);
    }
    v
}

/// Asserts the hosted run `out` of `example` succeeded and printed
/// something, and returns what it printed.
pub fn hosted_output(example: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "hosted {example} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.is_empty(), "hosted {example} printed nothing");
    stdout
}

/// Why this machine cannot create a network namespace with a TAP, if it
/// cannot (the tests that need one skip with this reason).
pub fn cannot_make_netns() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (creating a network namespace and a TAP needs it)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("no `ip` command (Debian package iproute2)".into());
    }
    None
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace holding one TAP that is up (with `addr`, e.g.
/// `10.77.0.1/24`, when given); deleted with the TAP when dropped, panics
/// included. Nothing in it is routed anywhere else.
pub struct Netns {
    pub name: String,
    pub tap: String,
}

impl Netns {
    /// `tag` keeps namespaces of tests running in parallel apart (at most
    /// 4 characters: TAP names are limited to 15).
    pub fn new(tag: &str, addr: Option<&str>) -> Netns {
        let id = std::process::id();
        let ns = Netns {
            name: format!("mkernel-{tag}-{id}"),
            tap: format!("mk{tag}{id}"),
        };
        assert!(ns.tap.len() <= 15, "TAP name {} too long", ns.tap);
        ip(&["netns", "add", &ns.name]);
        // From here on, Drop cleans up.
        let exec = ["netns", "exec", &ns.name, "ip"];
        let run = |rest: &[&str]| ip(&[&exec[..], rest].concat());
        run(&["tuntap", "add", "dev", &ns.tap, "mode", "tap"]);
        if let Some(a) = addr {
            run(&["addr", "add", a, "dev", &ns.tap]);
        }
        run(&["link", "set", &ns.tap, "up"]);
        ns
    }

    /// `ip netns exec NS PROGRAM`.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it opens
    /// live there), and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: `fd` is an open namespace file; setns only changes the
            // network namespace of this (new, private) thread.
            let r =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A disk image file, removed when dropped.
pub struct Disk(pub PathBuf);

impl Disk {
    /// `sectors` × 512 bytes of a fixed pattern.
    pub fn pattern(tag: &str, sectors: usize) -> Disk {
        let data: Vec<u8> = (0..sectors * 512)
            .map(|i| (i.wrapping_mul(7919) >> 3) as u8)
            .collect();
        Disk::with(tag, &data)
    }

    /// A file holding `data`.
    pub fn with(tag: &str, data: &[u8]) -> Disk {
        let path = std::env::temp_dir().join(format!(
            "mkernel-{tag}-{}-{:?}.img",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, data).expect("write the disk image");
        Disk(path)
    }

    /// A ustar archive holding `files` (name, contents), as a disk image
    /// (a site for `httpd`).
    pub fn site(tag: &str, files: &[(&str, &[u8])]) -> Disk {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, *data).expect("tar entry");
        }
        Disk::with(tag, &tar.into_inner().expect("tar archive"))
    }

    /// `--block:NAME=PATH`.
    pub fn flag(&self, name: &str) -> String {
        format!("--block:{name}={}", self.0.display())
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How long QEMU may run in one virtio test before `cargo mkernel` kills
/// it (boot to exit takes ~0.35 s here, in software emulation).
pub const VIRTIO_TIMEOUT_S: u64 = 60;

/// The `cargo mkernel run --target virtio` command for `example`: device
/// options `opts`, application arguments `args` (after `--solo5:quiet`,
/// so that the console holds only what the program prints). Run inside
/// `ns` when given. The image must be built already ([`build_image`]),
/// so that the run only checks it is fresh.
pub fn virtio_command(
    ns: Option<&Netns>,
    example: &str,
    opts: &[String],
    args: &[&str],
) -> Command {
    let cargo = Path::new(env!("CARGO"));
    let mut c = match ns {
        Some(ns) => ns.command(cargo),
        None => Command::new(cargo),
    };
    c.args([
        "run",
        "-q",
        "-p",
        "cargo-mkernel",
        "--",
        "run",
        "--target",
        "virtio",
    ])
    .args(["--example", example])
    .arg(format!("--timeout={VIRTIO_TIMEOUT_S}"))
    .args(opts)
    .args(["--", "--solo5:quiet"])
    .args(args)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Runs `example` as a virtio unikernel under QEMU (see [`virtio_command`]).
pub fn virtio(ns: Option<&Netns>, example: &str, opts: &[String], args: &[&str]) -> Output {
    run_with_timeout(
        &mut virtio_command(ns, example, opts, args),
        Duration::from_secs(VIRTIO_TIMEOUT_S + 60),
    )
}

/// A Solo5 target: what an example's image is built for and run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `solo5-spt`: the unikernel as a seccomp-sandboxed process.
    Spt,
    /// `solo5-hvt`: a KVM guest (runs only where KVM can run it, see
    /// `tests/solo5_hvt.rs`).
    Hvt,
    /// QEMU in software emulation, booted by `cargo mkernel run --target
    /// virtio` (see [`virtio`]).
    Virtio,
}

impl Target {
    /// The name `cargo mkernel --target` takes.
    pub fn name(self) -> &'static str {
        match self {
            Target::Spt => "spt",
            Target::Hvt => "hvt",
            Target::Virtio => "virtio",
        }
    }

    /// What runs the image, for messages: the tender, or QEMU (`virtio`).
    pub fn runner(self) -> String {
        match self {
            Target::Spt | Target::Hvt => format!("solo5-{}", self.name()),
            Target::Virtio => "virtio".into(),
        }
    }

    /// Builds `example` for this target and runs it, inside `ns` when
    /// given, with the device options `opts` and the application's
    /// arguments `args`. Spt and hvt: `solo5-TARGET OPTS IMAGE ARGS` for at
    /// most 60 s, Solo5 at its default log level; virtio: [`virtio`]
    /// (`--solo5:quiet`, QEMU under `--timeout`).
    pub fn run(self, ns: Option<&Netns>, example: &str, opts: &[String], args: &[&str]) -> Output {
        let image = build_image(self.name(), example);
        if self == Target::Virtio {
            return virtio(ns, example, opts, args);
        }
        let tender = solo5_root().join(format!("tenders/{0}/solo5-{0}", self.name()));
        let mut cmd = match ns {
            Some(ns) => ns.command(&tender),
            None => Command::new(&tender),
        };
        run_with_timeout(
            cmd.args(opts).arg(&image).args(args),
            Duration::from_secs(60),
        )
    }

    /// Asserts the run `out` of `example` ([`Target::run`]) succeeded and
    /// returns what the application printed: the console without Solo5's
    /// banner and exit line under a tender ([`app_output`], which checks
    /// them), the console as it is under virtio (`--solo5:quiet`).
    pub fn app_output(self, example: &str, out: &Output) -> String {
        let console = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} {example} exited with {}:\n{console}\n{}",
            self.runner(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        match self {
            Target::Spt | Target::Hvt => app_output(&console),
            Target::Virtio => console.into_owned(),
        }
    }
}

/// Asserts that the unikernel printed exactly what the hosted program did.
pub fn assert_same_output(target: Target, example: &str, unikernel: &str, hosted: &str) {
    assert_eq!(
        unikernel,
        hosted,
        "{example}: {} output (left) differs from hosted (right)",
        target.name()
    );
}

/// Runs the example `example` hosted and as a `target` unikernel, and
/// asserts both succeed, the hosted program prints something, and the
/// unikernel prints exactly the same; returns what they printed. The
/// examples that take input get the same on both (see [`hosted_args`]):
/// `cmdline` the arguments `Hello World x=1`, `block` an 8-sector patterned
/// disk named `disk`, `block_cached` (the port of mkernel's
/// `test/block.ml`) the OCaml test's disk image `tests/ported/simple.txt`
/// named `0`; the others run without any.
pub fn example_matches_hosted(target: Target, example: &str) -> String {
    let disk = match example {
        "block" => Some((
            Disk::pattern(&format!("{}-block", target.name()), 8),
            "disk",
        )),
        "block_cached" => Some((
            Disk::with(
                &format!("{}-block-cached", target.name()),
                include_bytes!("../ported/simple.txt"),
            ),
            "0",
        )),
        _ => None,
    };
    let opts: Vec<String> = disk.iter().map(|(d, name)| d.flag(name)).collect();
    let args: &[&str] = match example {
        "cmdline" => &["Hello", "World", "x=1"],
        _ => &[],
    };
    let out = target.run(None, example, &opts, args);
    let limit = Duration::from_secs(600);
    let want = hosted_output(example, &hosted(example, &hosted_args(&opts, args), limit));
    let app = target.app_output(example, &out);
    assert_same_output(target, example, &app, &want);
    app
}

/// What `examples/solo5_tasks` must print, on every platform, to show its
/// three features work: the panicking task reported to its parent (its
/// destructor run, its sibling unharmed), the reader cancelled in
/// `Net::read` unwound, and the deferred block write completed.
pub const SOLO5_TASKS_LINES: [&str; 6] = [
    "drop: the panicking task's guard\n",
    "panic: parent got Err(Panicked(Some(\"boom\")))\n",
    "panic: Ok(\"sibling finished\")\npanic: sibling steps 3\n",
    "net: reader waiting in read: true\ndrop: the net reader's guard\n\
     net: cancelled reader: Err(Cancelled)\n",
    "block: busy 0, busy 1, busy 2, write done: Ok(())\n",
    "block: atomic read Ok(()), same data: true\n",
];

/// Runs `examples/solo5_tasks` hosted and as a `target` unikernel, each
/// with a zeroed 16-sector disk `disk` and the TAP of a network namespace
/// made for the test as `service`,
/// and asserts both succeed, the hosted output holds every
/// [`SOLO5_TASKS_LINES`] entry, and the unikernel prints exactly the same.
///
/// Needs root and /dev/net/tun: where no namespace can be made, says why
/// ([`say_skipped`]) and returns.
pub fn solo5_tasks_matches_hosted(target: Target) {
    if let Some(why) = cannot_make_netns() {
        say_skipped(&why);
        return;
    }
    // Apart from any other test's namespace in the same process.
    let tag = match target {
        Target::Spt => "task",
        Target::Hvt => "htsk",
        Target::Virtio => "vt",
    };
    let ns = Netns::new(tag, None);
    let net = format!("--net:service={}", ns.tap);
    let name = target.name();

    let disk = Disk::with(&format!("{name}-tasks-hosted"), &[0; 16 * 512]);
    let opts = [net.clone(), disk.flag("disk")];
    let hosted = hosted_in(
        Some(&ns),
        "solo5_tasks",
        &hosted_args(&opts, &[]),
        Duration::from_secs(120),
    );
    let hosted = hosted_output("solo5_tasks", &hosted);

    let disk = Disk::with(&format!("{name}-tasks-unikernel"), &[0; 16 * 512]);
    let out = target.run(Some(&ns), "solo5_tasks", &[net, disk.flag("disk")], &[]);
    let app = target.app_output("solo5_tasks", &out);
    drop(ns);

    // The behaviour itself, then the equality.
    for line in SOLO5_TASKS_LINES {
        assert!(hosted.contains(line), "hosted lacks {line:?}:\n{hosted}");
    }
    assert_same_output(target, "solo5_tasks", &app, &hosted);
}

/// The lines of `out`, read on a thread of their own (so that a reader can
/// wait for one with a time limit).
pub fn line_reader(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A server running in its own process group (cargo, cargo-mkernel and
/// QEMU), killed as a whole when dropped.
pub struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Everything printed so far.
    pub seen: Vec<String>,
}

impl Server {
    /// Starts `cmd` (its stdout piped to us).
    pub fn start(cmd: &mut Command) -> Server {
        use std::os::unix::process::CommandExt;
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let lines = line_reader(child.stdout.take().unwrap());
        Server {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `limit`) for a line containing `text`; panics with
    /// what was printed otherwise.
    pub fn wait_for(&mut self, text: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {text:?} ({e:?}); printed so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Server {
    /// Takes the lines printed since the last look into [`Server::seen`],
    /// without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The server's exit status if it has exited (`None`: still running).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("waitpid")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The group this struct created (pgid = the child's pid).
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the negative pid names
        // only the process group made for this server.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The application's output in the console transcript of a tender that was
/// killed (a server stopped by a signal): the banner is stripped as in
/// [`app_output`], and there must be no exit line (the application did not
/// exit).
pub fn app_output_until_killed(console: &str) -> String {
    let out = app_output(&format!("{console}Solo5: solo5_exit(0) called\n"));
    assert!(
        !out.contains("Solo5: solo5_"),
        "the application exited before being killed:\n{console}"
    );
    out
}

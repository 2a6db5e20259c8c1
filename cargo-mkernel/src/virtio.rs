//! Running a Solo5 `virtio` image under QEMU (`cargo mkernel run --target
//! virtio`).
//!
//! QEMU is always started in software emulation (`-accel tcg`): on machines
//! whose `/dev/kvm` is the nested paravirtual `kvm-pvm`, a KVM guest stops
//! forever at its first SSE instruction, and upstream's `solo5-virtio-run`
//! picks KVM whenever `/dev/kvm` is writable. It is always bounded by a
//! timeout.
//!
//! - `--net:NAME=TAP` becomes a virtio-net device on the TAP interface and
//!   `--block:NAME=FILE` a virtio-blk device on the file. Solo5's virtio
//!   bindings drive at most one of each; the names are checked against the
//!   image's manifest (as the spt/hvt tenders do), and every device of the
//!   manifest must be attached.
//! - `--mem=MB` becomes `-m MB` (default 512; Solo5 virtio uses at most
//!   1 GiB).
//! - The application's arguments become the multiboot command line
//!   (`-append`).
//! - The guest console is the serial port: its CRLF line ends are turned
//!   back into LF on our stdout.
//! - The exit status is the unikernel's own: cargo-mkernel's Solo5 build
//!   makes the virtio bindings write it, plus one, to QEMU's
//!   `isa-debug-exit` port (see `solo5.rs`), and QEMU then exits with
//!   `(value << 1) | 1`. The value is never 0, so QEMU's own failure (exit
//!   status 1) is reported as such, not as a unikernel that exited with 0.
//!   Seven bits only: 127 means "126 or more", refined from Solo5's exit
//!   line on the console (`solo5_exit(N) called`, `solo5_abort() called`)
//!   when the unikernel was not run with `--solo5:quiet`, else reported as
//!   255 (what Solo5 uses for an abort, the usual status above 125).
//! - SIGTERM, SIGINT and SIGHUP received by `cargo mkernel run` while QEMU
//!   runs are passed on to QEMU; once QEMU has stopped, the runner ends by
//!   the same signal (QEMU's own status after a signal says nothing about
//!   the unikernel). QEMU is also made to die with its runner
//!   (`PR_SET_PDEATHSIG`), so that a runner killed by SIGKILL leaves no VM
//!   behind.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libc::c_int;
use signal_hook::SigId;

use crate::tools::QEMU;
use crate::{Result, fail};

/// Exit status when the timeout kills QEMU (as `timeout(1)`).
const TIMED_OUT: i32 = 124;

/// How long QEMU has to stop after a passed-on signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The signals that stop `cargo mkernel run`, passed on to QEMU.
const FORWARDED: [c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Catches [`FORWARDED`] while installed (until dropped): the handler only
/// records the signal, and [`run`]'s wait loop passes it on.
struct Forward {
    last: Arc<AtomicUsize>,
    ids: Vec<SigId>,
}

impl Forward {
    fn install() -> Result<Forward> {
        let last = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in FORWARDED {
            let id = signal_hook::flag::register_usize(sig, Arc::clone(&last), sig as usize)
                .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
            ids.push(id);
        }
        Ok(Forward { last, ids })
    }

    /// The signal received since the last call, if any.
    fn take(&self) -> Option<c_int> {
        match self.last.swap(0, Ordering::SeqCst) {
            0 => None,
            sig => c_int::try_from(sig).ok(),
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Makes the child started by `cmd` receive SIGKILL when this process
/// dies (even by SIGKILL, which cannot be caught and passed on).
fn die_with_parent(cmd: &mut Command) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    let hook = move || {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only and touches
        // no memory of ours.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The parent died before prctl: nobody would kill the child.
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != parent {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec, and calls
    // only async-signal-safe functions (prctl, getppid), allocating
    // nothing. PR_SET_PDEATHSIG applies to the thread that forks: this is
    // the main thread, which lives as long as the process.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Devices attached to the guest.
#[derive(Default, Debug)]
struct Attach {
    net: Option<(String, String)>,
    block: Option<(String, String)>,
    mem_mb: Option<u64>,
}

/// Parses the tender-style options for virtio.
fn parse_opts(opts: &[String]) -> Result<Attach> {
    let mut a = Attach::default();
    for o in opts {
        if let Some(rest) = o.strip_prefix("--net:") {
            let (name, tap) = split_dev(o, rest)?;
            if let Some((prev, _)) = &a.net {
                return fail(format!(
                    "Solo5 virtio supports one network device, and `--net:{prev}=..` is \
                     already given: `{o}` is one too many (use spt or hvt for more)"
                ));
            }
            if tap.contains(',') || tap.len() > 15 {
                return fail(format!("`{o}`: {tap:?} is not a TAP interface name"));
            }
            a.net = Some((name, tap));
        } else if let Some(rest) = o.strip_prefix("--block:") {
            let (name, file) = split_dev(o, rest)?;
            if let Some((prev, _)) = &a.block {
                return fail(format!(
                    "Solo5 virtio supports one block device, and `--block:{prev}=..` is \
                     already given: `{o}` is one too many (use spt or hvt for more)"
                ));
            }
            if !Path::new(&file).is_file() {
                return fail(format!("`{o}`: {file} is not a file"));
            }
            a.block = Some((name, file));
        } else if let Some(mb) = o.strip_prefix("--mem=") {
            let mb: u64 = mb
                .parse()
                .ok()
                .filter(|&m| m > 0)
                .ok_or_else(|| format!("`{o}`: the memory size is a number of MB"))?;
            a.mem_mb = Some(mb);
        } else {
            return fail(format!("unknown option `{o}` for --target virtio"));
        }
    }
    Ok(a)
}

fn split_dev(opt: &str, rest: &str) -> Result<(String, String)> {
    match rest.split_once('=') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => Ok((n.to_string(), v.to_string())),
        _ => fail(format!("`{opt}`: expected NAME=VALUE")),
    }
}

/// The devices of a manifest (JSON as `solo5-elftool gen-manifest` reads
/// it): (name, type).
fn manifest_devices(json: &str) -> Result<Vec<(String, String)>> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let devs = v["devices"].as_array().cloned().unwrap_or_default();
    Ok(devs
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("").to_string(),
                d["type"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect())
}

/// Checks the attached devices against the manifest, as the tenders do.
fn check_against_manifest(a: &Attach, json: &str) -> Result<()> {
    let devs = manifest_devices(json)?;
    let count = |ty: &str| devs.iter().filter(|(_, t)| t == ty).count();
    for (ty, what) in [("NET_BASIC", "network"), ("BLOCK_BASIC", "block")] {
        if count(ty) > 1 {
            let names: Vec<&str> = devs
                .iter()
                .filter(|(_, t)| t == ty)
                .map(|(n, _)| n.as_str())
                .collect();
            return fail(format!(
                "the program declares {} {what} devices ({}), and Solo5 virtio supports \
                 only one: use --target spt or hvt",
                names.len(),
                names.join(", ")
            ));
        }
    }
    for (given, ty, flag) in [
        (&a.net, "NET_BASIC", "net"),
        (&a.block, "BLOCK_BASIC", "block"),
    ] {
        if let Some((name, _)) = given
            && !devs.iter().any(|(n, t)| n == name && t == ty)
        {
            return fail(format!(
                "`--{flag}:{name}=..`: the program has no {flag} device named {name:?} \
                 (its manifest: {json})"
            ));
        }
    }
    for (name, ty) in &devs {
        let attached = match ty.as_str() {
            "NET_BASIC" => a.net.as_ref().is_some_and(|(n, _)| n == name),
            "BLOCK_BASIC" => a.block.as_ref().is_some_and(|(n, _)| n == name),
            _ => true,
        };
        if !attached {
            let flag = if ty == "NET_BASIC" {
                format!("--net:{name}=TAP")
            } else {
                format!("--block:{name}=FILE")
            };
            return fail(format!(
                "the program's device {name:?} is not attached: add `{flag}`"
            ));
        }
    }
    Ok(())
}

/// The QEMU command line for `image`.
fn qemu_command(image: &Path, a: &Attach, app_args: &[String]) -> Result<Command> {
    let image_str = image.to_str().ok_or("the image path is not UTF-8")?;
    // QEMU hands the guest "IMAGE ARGS" and the bindings drop the first
    // word: a blank in the path would shift the arguments.
    if image_str.chars().any(char::is_whitespace) {
        return fail(format!(
            "{image_str}: QEMU passes the image path as the first word of the guest's \
             command line, so it must not contain blanks"
        ));
    }
    let mut cmd = QEMU.command()?;
    cmd.args([
        "-accel",
        "tcg",
        "-nodefaults",
        "-no-reboot",
        "-no-user-config",
        "-cpu",
        "max",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit",
    ])
    .arg("-m")
    .arg(a.mem_mb.unwrap_or(512).to_string())
    .arg("-kernel")
    .arg(image);
    if !app_args.is_empty() {
        cmd.arg("-append").arg(app_args.join(" "));
    }
    if let Some((_, tap)) = &a.net {
        cmd.arg("-netdev")
            .arg(format!("tap,id=n0,ifname={tap},script=no,downscript=no"))
            .args(["-device", "virtio-net-pci,netdev=n0"]);
    }
    if let Some((_, file)) = &a.block {
        // QEMU's option syntax: a comma in a value is written twice.
        cmd.arg("-drive").arg(format!(
            "file={},if=virtio,format=raw",
            file.replace(',', ",,")
        ));
    }
    Ok(cmd)
}

/// Turns the serial console's CRLF line ends into LF, across chunk
/// boundaries.
#[derive(Default)]
struct Crlf {
    pending_cr: bool,
}

impl Crlf {
    fn convert(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &b in chunk {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

/// The status in Solo5's last exit line of `console`, if any.
fn status_from_console(console: &[u8]) -> Option<i32> {
    let text = String::from_utf8_lossy(console);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("Solo5: solo5_exit(") || l.starts_with("Solo5: solo5_abort()"))?;
    if line.starts_with("Solo5: solo5_abort()") {
        return Some(255);
    }
    line.strip_prefix("Solo5: solo5_exit(")?
        .strip_suffix(") called")?
        .parse()
        .ok()
}

/// Boots `image` under QEMU and returns the unikernel's exit status.
pub fn run(
    image: &Path,
    manifest: &str,
    opts: &[String],
    app_args: &[String],
    timeout: Duration,
) -> Result<i32> {
    let attach = parse_opts(opts)?;
    check_against_manifest(&attach, manifest)?;
    let mut cmd = qemu_command(image, &attach, app_args)?;
    // Before QEMU exists, so that no signal is missed.
    let forward = Forward::install()?;
    die_with_parent(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", QEMU.name))?;
    // Copy the console to stdout as it comes (servers print while they
    // run), keeping its tail for the exit line.
    let mut pipe = child.stdout.take().ok_or("no stdout pipe")?;
    let copier = std::thread::spawn(move || {
        let mut crlf = Crlf::default();
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        let stdout = std::io::stdout();
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut out = Vec::with_capacity(n);
            crlf.convert(&buf[..n], &mut out);
            let mut lock = stdout.lock();
            let _ = lock.write_all(&out);
            let _ = lock.flush();
            tail.extend_from_slice(&out);
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 4096);
            }
        }
        let mut out = Vec::new();
        crlf.finish(&mut out);
        let _ = std::io::stdout().write_all(&out);
        tail.extend_from_slice(&out);
        tail
    });
    let start = Instant::now();
    // The first signal passed on, and when.
    let mut stopped_by: Option<(c_int, Instant)> = None;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if let Some(sig) = forward.take() {
            if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill has no memory preconditions; `pid` is our
                // child, not yet reaped (try_wait said it runs), so the pid
                // cannot have been reused.
                unsafe { libc::kill(pid, sig) };
            }
            stopped_by.get_or_insert((sig, Instant::now()));
        }
        if stopped_by.is_some_and(|(_, t)| t.elapsed() > STOP_GRACE) {
            let _ = child.kill();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let tail = copier.join().unwrap_or_default();
    drop(forward);
    if let Some((sig, _)) = stopped_by {
        let name = signal_hook::low_level::signal_name(sig).unwrap_or("a signal");
        eprintln!("cargo mkernel: {name} received and passed on to QEMU, which stopped");
        let _ = std::io::stdout().flush();
        // End as the tender would have: killed by that signal.
        let _ = signal_hook::low_level::emulate_default_handler(sig);
        return Ok(128 + sig);
    }
    let Some(status) = status else {
        eprintln!(
            "cargo mkernel: the unikernel was still running after {} s: QEMU killed \
             (use --timeout SECS for a longer limit)",
            timeout.as_secs()
        );
        return Ok(TIMED_OUT);
    };
    match guest_status(status.code(), &tail) {
        Ok(code) => Ok(code),
        Err((code, why)) if status.code().is_none() => {
            eprintln!("cargo mkernel: {why} ({status})");
            Ok(code)
        }
        Err((code, why)) => {
            eprintln!("cargo mkernel: {why}");
            Ok(code)
        }
    }
}

/// The unikernel's exit status from QEMU's exit status `code` (`None`:
/// killed by a signal) and the console's tail, or, when the unikernel did
/// not report one, the status to exit with and why.
fn guest_status(code: Option<i32>, console: &[u8]) -> std::result::Result<i32, (i32, String)> {
    match code {
        Some(code) if code & 1 == 1 && code > 1 => {
            let value = code >> 1;
            if value < 127 {
                Ok(value - 1)
            } else {
                Ok(status_from_console(console).unwrap_or(255))
            }
        }
        Some(0) => Err((
            255,
            "QEMU stopped without the unikernel reporting a status (a triple fault or \
             a reset, with -no-reboot)"
                .into(),
        )),
        Some(code) => Err((
            code,
            format!("QEMU failed (exit status {code}; its message is above)"),
        )),
        None => Err((128 + 9, "QEMU was killed by a signal".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn crlf_across_chunks() {
        let mut c = Crlf::default();
        let mut out = Vec::new();
        c.convert(b"a\r", &mut out);
        c.convert(b"\nb\rc\r", &mut out);
        c.finish(&mut out);
        assert_eq!(out, b"a\nb\rc\r");
    }

    #[test]
    fn one_device_of_each_kind() {
        let e = parse_opts(&s(&["--net:a=tap0", "--net:b=tap1"])).unwrap_err();
        assert!(e.contains("one network device"), "{e}");
        let a = parse_opts(&s(&["--net:service=tap0", "--mem=64"])).unwrap();
        assert_eq!(a.net, Some(("service".into(), "tap0".into())));
        assert_eq!(a.mem_mb, Some(64));
        assert!(parse_opts(&s(&["--mem=x"])).is_err());
    }

    #[test]
    fn names_match_the_manifest() {
        let json = r#"{"type":"solo5.manifest","version":1,"devices":[{"name":"service","type":"NET_BASIC"}]}"#;
        let ok = parse_opts(&s(&["--net:service=tap0"])).unwrap();
        check_against_manifest(&ok, json).unwrap();
        let typo = parse_opts(&s(&["--net:servce=tap0"])).unwrap();
        assert!(check_against_manifest(&typo, json).is_err());
        let none = Attach::default();
        let e = check_against_manifest(&none, json).unwrap_err();
        assert!(e.contains("--net:service=TAP"), "{e}");
        let two =
            r#"{"devices":[{"name":"a","type":"NET_BASIC"},{"name":"b","type":"NET_BASIC"}]}"#;
        assert!(
            check_against_manifest(&none, two)
                .unwrap_err()
                .contains("only one")
        );
    }

    #[test]
    fn qemu_failure_is_not_a_guest_exit() {
        // QEMU exits with (value << 1) | 1, the value being the status + 1.
        assert_eq!(guest_status(Some(1 | (1 << 1)), b""), Ok(0));
        assert_eq!(guest_status(Some(1 | (4 << 1)), b""), Ok(3));
        assert_eq!(guest_status(Some(1 | (126 << 1)), b""), Ok(125));
        let exit_line = b"Solo5: solo5_exit(200) called\n";
        assert_eq!(guest_status(Some(255), exit_line), Ok(200));
        assert_eq!(guest_status(Some(255), b""), Ok(255));
        // QEMU's own error (a kernel it cannot load) is status 1.
        let (code, msg) = guest_status(Some(1), b"").unwrap_err();
        assert_eq!(code, 1);
        assert!(msg.contains("QEMU failed"), "{msg}");
        assert_eq!(guest_status(Some(0), b"").unwrap_err().0, 255);
        assert_eq!(guest_status(None, b"").unwrap_err().0, 137);
    }

    #[test]
    fn exit_line() {
        assert_eq!(
            status_from_console(b"x\nSolo5: solo5_exit(200) called\n"),
            Some(200)
        );
        assert_eq!(
            status_from_console(b"Solo5: solo5_abort() called\n"),
            Some(255)
        );
        assert_eq!(status_from_console(b"nothing\n"), None);
    }
}

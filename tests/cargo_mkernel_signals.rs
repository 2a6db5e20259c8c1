//! A signal sent to `cargo mkernel run` stops the unikernel with it: no
//! tender or QEMU is left running. spt: the tender replaces the runner
//! (exec), so the signal reaches it directly. virtio: the runner passes
//! SIGTERM/SIGINT/SIGHUP on to QEMU, and QEMU dies with a runner killed by
//! SIGKILL (PR_SET_PDEATHSIG).
//!
//! Each test starts `cargo mkernel run` in a process group of its own, on a
//! crate of its own whose program prints `sleeping` and sleeps ten minutes,
//! waits for that line and for the tender / QEMU in that group, signals the
//! runner, and asserts that within a few seconds the runner has ended and
//! no tender / QEMU of that group is alive. Whatever the outcome, the group
//! is then killed, so a failing run leaves no orphan behind.

mod cargo_mkernel_util;
mod solo5_util;

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use cargo_mkernel_util::{cargo_mkernel, live_in_group, temp_crate};
use solo5_util::{VIRTIO_TIMEOUT_S, run_with_timeout, say_skipped};

const SLEEPER: &str = r#"use std::time::Duration;

fn main() {
    mkernel::run((), |()| {
        println!("sleeping");
        mkernel::sleep(Duration::from_secs(600));
        println!("woke up");
    });
}
"#;

/// The sleeper crate, with its spt and virtio images built once (so the
/// runs below only check that they are fresh).
fn sleeper() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_crate("cmk-sleeper", &[("src/main.rs", SLEEPER)]);
        for target in ["spt", "virtio"] {
            let out = run_with_timeout(
                &mut cargo_mkernel(&dir, &["build", "--target", target]),
                Duration::from_secs(900),
            );
            assert!(
                out.status.success(),
                "cargo mkernel build --target {target} failed: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// `cargo mkernel run --target TARGET` of the sleeper, in its own process
/// group (pgid = its pid), killed as a whole when dropped.
struct Runner {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Its stderr so far (cargo's, the tool's, the tender's or QEMU's).
    stderr: Arc<Mutex<String>>,
}

impl Runner {
    fn start(target: &str) -> Runner {
        let mut cmd = cargo_mkernel(sleeper(), &["run", "--target", target]);
        if target == "virtio" {
            cmd.arg(format!("--timeout={VIRTIO_TIMEOUT_S}"));
        }
        // A shell without job control starts a background command with
        // SIGINT and SIGQUIT ignored (POSIX), and an ignored signal stays
        // ignored across exec: `bash .ci/run &` would hand the tender an
        // ignored SIGINT. The runner gets what a terminal gives it.
        let defaults = || {
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                // SAFETY: `signal` is async-signal-safe, so it may run
                // between fork and exec; SIG_DFL is a valid disposition.
                unsafe { libc::signal(sig, libc::SIG_DFL) };
            }
            Ok(())
        };
        // SAFETY: the closure calls only `signal` (see above).
        unsafe { cmd.pre_exec(defaults) };
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start cargo-mkernel");
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let lines = solo5_util::line_reader(out);
        Runner {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Waits for the unikernel's `sleeping` (the build included).
    fn wait_sleeping(&mut self) {
        let end = Instant::now() + Duration::from_secs(600);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains("sleeping");
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(e) => panic!(
                    "the unikernel did not print `sleeping` ({e:?}); its output:\n{}\n\
                     stderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr()
                ),
            }
        }
    }

    /// Sends `sig` to the runner (only to it, not to its group).
    fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory preconditions; the pid is our child,
        // not yet reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits (at most `limit`) until the runner has exited and no `program`
    /// of its group runs the sleeper; returns the runner's status and the
    /// processes still alive (empty when all is well).
    fn wait_gone(
        &mut self,
        program: &str,
        limit: Duration,
    ) -> (Option<ExitStatus>, Vec<cargo_mkernel_util::Proc>) {
        let end = Instant::now() + limit;
        let mut status = None;
        loop {
            if status.is_none() {
                status = self.child.try_wait().unwrap();
            }
            let left = live_in_group(self.pid(), program, "cmk-sleeper");
            if (status.is_some() && left.is_empty()) || Instant::now() > end {
                return (status, left);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // SAFETY: as in `signal`; the negative pid names the group made for
        // this runner (its tender or QEMU included, even orphaned).
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Runs the sleeper on `target`, sends `sig` to the runner once the
/// unikernel sleeps, and asserts that `program` is gone within 10 s and the
/// runner ended by `sig`.
fn signal_stops_the_unikernel(target: &str, program: &str, sig: i32) {
    let mut runner = Runner::start(target);
    runner.wait_sleeping();
    let running = live_in_group(runner.pid(), program, "cmk-sleeper");
    assert!(
        !running.is_empty(),
        "no {program} running the sleeper in the runner's process group"
    );
    runner.signal(sig);
    let (status, left) = runner.wait_gone(program, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "{program} still running 10 s after signal {sig} to `cargo mkernel run \
         --target {target}` (runner: {status:?}): {left:?}\nstderr:\n{}",
        runner.stderr()
    );
    let status = status.expect("the runner has exited");
    assert!(
        status.signal() == Some(sig),
        "`cargo mkernel run --target {target}` should end by signal {sig}: {status}\n\
         stderr:\n{}",
        runner.stderr()
    );
    if target == "virtio" && sig != libc::SIGKILL {
        // The runner has exited, but the thread copying its stderr may not
        // have taken the last line yet: give it a moment.
        let end = Instant::now() + Duration::from_secs(3);
        while !runner.stderr().contains("passed on to QEMU") && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stderr = runner.stderr();
        assert!(
            stderr.contains("received and passed on to QEMU, which stopped"),
            "{stderr}"
        );
    }
}

fn no_qemu() -> bool {
    let found = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        say_skipped("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)");
    }
    !found
}

#[test]
fn spt_sigterm_stops_the_tender() {
    signal_stops_the_unikernel("spt", "solo5-spt", libc::SIGTERM);
}

#[test]
fn spt_sigint_stops_the_tender() {
    signal_stops_the_unikernel("spt", "solo5-spt", libc::SIGINT);
}

#[test]
fn virtio_sigterm_stops_qemu() {
    if no_qemu() {
        return;
    }
    signal_stops_the_unikernel("virtio", "qemu-system-x86_64", libc::SIGTERM);
}

#[test]
fn virtio_sighup_stops_qemu() {
    if no_qemu() {
        return;
    }
    signal_stops_the_unikernel("virtio", "qemu-system-x86_64", libc::SIGHUP);
}

/// SIGKILL cannot be caught and passed on: QEMU dies with its parent.
#[test]
fn virtio_sigkill_of_the_runner_kills_qemu() {
    if no_qemu() {
        return;
    }
    signal_stops_the_unikernel("virtio", "qemu-system-x86_64", libc::SIGKILL);
}

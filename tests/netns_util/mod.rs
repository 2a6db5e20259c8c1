//! A network namespace for the TAP tests (`tests/tcp_tap.rs`,
//! `tests/dns_tap.rs`): created by the test, every peer and client run
//! inside it, deleted (with the processes started in it) on drop.

#![allow(dead_code, reason = "each test file uses only part of these helpers")]

#[path = "../tool_check/mod.rs"]
mod tool_check;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The namespace and the processes started in it, removed on drop.
pub struct Netns {
    name: String,
    /// Processes started in the namespace, killed on drop.
    pub children: Vec<Child>,
}

impl Netns {
    pub fn new(tag: &str) -> Result<Netns, String> {
        let name = format!("mkt-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .map_err(|e| format!("cannot run ip: {e}"))?
            .success();
        if !ok {
            return Err(format!("ip netns add {name} failed"));
        }
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        let out = self
            .cmd(argv)
            .output()
            .map_err(|e| format!("{argv:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{argv:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn tap(&self, tap: &str, host_cidr: &str) {
        self.run(&["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            .unwrap();
        self.run(&["ip", "addr", "add", host_cidr, "dev", tap])
            .unwrap();
        self.run(&["ip", "link", "set", tap, "up"]).unwrap();
    }

    /// Starts `argv` in the namespace and waits for its `listening on` line.
    pub fn start(&mut self, argv: &[&str], expect: &str) {
        let mut child = self
            .cmd(argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        self.children.push(child);
        assert_eq!(line.trim_end(), expect);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Why the TAP tests cannot run here (not root, no /dev/net/tun, one of
/// `tools` missing), if they cannot.
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        return Some("not root".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    tool_check::missing_tool(tools)
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

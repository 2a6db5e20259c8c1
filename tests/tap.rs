//! A real TAP device (`/dev/net/tun`) inside a network namespace this test
//! creates and removes: a frame sent by the host's stack arrives through
//! `Net::read`, and a frame from `Net::write` reaches the host's stack.

use std::process::{Command, Stdio};
use std::time::Duration;

const NS_ENV: &str = "MK_TAP_CHILD";

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run a command")
}

/// Deletes the namespace whatever happens.
struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "delete", &self.0]);
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        return Some("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("no `ip` command (apt install iproute2)".into());
    }
    None
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// The unikernel side, run by `arp_both_ways_over_a_real_tap` inside the
/// namespace (this same test binary, re-executed).
#[test]
fn tap_child() {
    let Ok(iface) = std::env::var(NS_ENV) else {
        return;
    };
    mkernel::Builder::new().net_tap("service", &iface).run(
        mkernel::net("service"),
        |(net, cfg)| {
            let mut buf = [0u8; 1514];
            loop {
                let n = net.read(&mut buf).unwrap();
                let f = &buf[..n];
                // ARP request (ethertype 0x0806, op 1) for 10.99.0.2?
                if n >= 42
                    && f[12..14] == [0x08, 0x06]
                    && f[20..22] == [0, 1]
                    && f[38..42] == [10, 99, 0, 2]
                {
                    println!(
                        "got ARP request from {}.{}.{}.{}",
                        f[28], f[29], f[30], f[31]
                    );
                    let mut reply = [0u8; 42];
                    reply[0..6].copy_from_slice(&f[6..12]);
                    reply[6..12].copy_from_slice(&cfg.mac);
                    reply[12..14].copy_from_slice(&[0x08, 0x06]);
                    reply[14..22].copy_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 2]);
                    reply[22..28].copy_from_slice(&cfg.mac);
                    reply[28..32].copy_from_slice(&[10, 99, 0, 2]);
                    reply[32..38].copy_from_slice(&f[22..28]);
                    reply[38..42].copy_from_slice(&f[28..32]);
                    net.write(&reply).unwrap();
                    println!(
                        "mac {}",
                        cfg.mac
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<Vec<_>>()
                            .join(":")
                    );
                }
                // An ICMP echo request sent to our MAC: the host learned it from
                // the reply we wrote.
                if n >= 34
                    && f[0..6] == cfg.mac
                    && f[12..14] == [0x08, 0x00]
                    && f[23] == 1
                    && f[30..34] == [10, 99, 0, 2]
                {
                    println!("got ICMP echo request to our MAC");
                    return;
                }
            }
        },
    );
}

#[test]
fn arp_both_ways_over_a_real_tap() {
    if std::env::var(NS_ENV).is_ok() {
        return;
    }
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED arp_both_ways_over_a_real_tap: {why}");
        return;
    }
    let ns = Netns(format!("mk-tap-test-{}", std::process::id()));
    let tap = "mktap0";
    for cmd in [
        vec!["ip", "netns", "add", &ns.0],
        vec![
            "ip", "netns", "exec", &ns.0, "ip", "tuntap", "add", "dev", tap, "mode", "tap",
        ],
        vec!["ip", "netns", "exec", &ns.0, "ip", "link", "set", tap, "up"],
        vec![
            "ip",
            "netns",
            "exec",
            &ns.0,
            "ip",
            "addr",
            "add",
            "10.99.0.1/24",
            "dev",
            tap,
        ],
    ] {
        let o = sh(&cmd);
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let me = std::env::current_exe().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(&me)
        .args(["--exact", "tap_child", "--nocapture", "--test-threads=1"])
        .env(NS_ENV, tap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The host's stack resolves 10.99.0.2: its ARP requests go out on the TAP.
    let mut out = None;
    let mut child = Some(child);
    for _ in 0..50 {
        let _ = sh(&[
            "ip",
            "netns",
            "exec",
            &ns.0,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "10.99.0.2",
        ]);
        if let Some(c) = child.as_mut() {
            if c.try_wait().unwrap().is_some() {
                out = Some(child.take().unwrap().wait_with_output().unwrap());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(mut c) = child {
        let _ = c.kill();
        panic!(
            "the unikernel side never saw the host's ARP request: {:?}",
            c.wait_with_output()
        );
    }
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("got ARP request from 10.99.0.1"),
        "{stdout}"
    );
    assert!(stdout.contains("mac "), "{stdout}");
    // The host's ping reached our MAC: it learned it from the reply written
    // with Net::write.
    assert!(
        stdout.contains("got ICMP echo request to our MAC"),
        "{stdout}"
    );
}

//! A real TAP device (`/dev/net/tun`) inside a network namespace this test
//! creates and removes: a frame sent by the host's stack arrives through
//! `Net::read`, and a frame from `Net::write` reaches the host's stack; a
//! frame sent from the host's side reaches a reading task while other tasks
//! compute and yield without end.

use std::process::{Command, Stdio};
use std::time::Duration;

const NS_ENV: &str = "MK_TAP_CHILD";
/// Set (to the TAP's name) in the child of
/// `frame_noticed_while_tasks_compute_and_yield`.
const NOTICE_ENV: &str = "MK_TAP_NOTICE_CHILD";

#[path = "solo5_util/mod.rs"]
mod util;

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run a command")
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
    if let Some(why) = util::cannot_make_netns() {
        util::say_skipped(&format!("arp_both_ways_over_a_real_tap: {why}"));
        return;
    }
    let ns = util::Netns::new("arp", Some("10.99.0.1/24"));
    let tap = ns.tap.as_str();
    let me = std::env::current_exe().unwrap();
    let child = ns
        .command(&me)
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
            &ns.name,
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

/// Local experimental ethertype (IEEE 802), and the payload that marks the
/// frame of `frame_noticed_while_tasks_compute_and_yield`.
const NOTICE_ETHERTYPE: u16 = 0x88b5;
const NOTICE_MAGIC: &[u8; 8] = b"mkNOTICE";
const NOTICE_LINE: &str = "noticed the frame while 8 tasks computed and yielded";

/// Sends one broadcast frame with our ethertype and magic out of `iface`
/// through an AF_PACKET socket (from the host's side of a TAP: it arrives
/// on the TAP's descriptor).
fn send_notice_frame(iface: &str) -> std::io::Result<()> {
    let sender = util::raw::RawSender::open(iface, NOTICE_ETHERTYPE)?;
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0x6d, 0x6b, 0x6e, 0x6f, 0x74]);
    f[12..14].copy_from_slice(&NOTICE_ETHERTYPE.to_be_bytes());
    f[14..22].copy_from_slice(NOTICE_MAGIC);
    sender.send(&f)
}

/// The unikernel side of `frame_noticed_while_tasks_compute_and_yield`,
/// run inside the namespace (this same test binary, re-executed): 8 tasks
/// compute ~50 µs and yield until told to stop; the main task reads the TAP.
/// A thread of this process (on the host's side of the TAP) sends the frame
/// once the load tasks have run while the reader waits, so the frame
/// certainly arrives while the reader is suspended and the others compute.
#[test]
fn tap_notice_child() {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;

    let Ok(iface) = std::env::var(NOTICE_ENV) else {
        return;
    };
    let sender_iface = iface.clone();
    mkernel::Builder::new().net_tap("service", &iface).run(
        mkernel::net("service"),
        move |(net, _cfg)| {
            let stop = Rc::new(Cell::new(false));
            // Load runs so far, and whether the reader is in its read loop
            // (seen by the sender thread).
            let runs = Arc::new(AtomicU64::new(0));
            let reading = Arc::new(AtomicBool::new(false));
            let got = Arc::new(AtomicBool::new(false));
            let loads: Vec<_> = (0..8)
                .map(|_| {
                    let (stop, runs) = (stop.clone(), runs.clone());
                    mkernel::spawn(move || {
                        while !stop.get() {
                            let t = Instant::now();
                            while t.elapsed() < Duration::from_micros(50) {
                                std::hint::spin_loop();
                            }
                            runs.fetch_add(1, Ordering::Relaxed);
                            mkernel::yield_now();
                        }
                    })
                })
                .collect();
            let sender = {
                let (runs, reading, got) = (runs.clone(), reading.clone(), got.clone());
                std::thread::spawn(move || {
                    while !reading.load(Ordering::Acquire) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    // The loads run only once the reader has suspended in
                    // `read` (one thread, cooperative): wait for a few runs.
                    let r0 = runs.load(Ordering::Relaxed);
                    while runs.load(Ordering::Relaxed) < r0 + 16 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    let sent_at = runs.load(Ordering::Relaxed);
                    // Resent every 100 ms until received (a frame is not
                    // expected to be lost, but a lost one must not hang).
                    while !got.load(Ordering::Acquire) {
                        send_notice_frame(&sender_iface).expect("send the frame");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    sent_at
                })
            };
            // Let the load tasks start.
            mkernel::yield_now();
            let mut buf = [0u8; 1518];
            reading.store(true, Ordering::Release);
            loop {
                let n = net.read(&mut buf).unwrap();
                // Anything else (the kernel's IPv6 router solicitations...)
                // is ignored.
                if n >= 22
                    && buf[12..14] == NOTICE_ETHERTYPE.to_be_bytes()
                    && &buf[14..22] == NOTICE_MAGIC
                {
                    break;
                }
            }
            got.store(true, Ordering::Release);
            let read_at = runs.load(Ordering::Relaxed);
            stop.set(true);
            for l in loads {
                l.join().unwrap();
            }
            let sent_at = sender.join().unwrap();
            println!(
                "{NOTICE_LINE} ({} load runs between the send and the read)",
                read_at.saturating_sub(sent_at)
            );
        },
    );
}

#[test]
fn frame_noticed_while_tasks_compute_and_yield() {
    if std::env::var(NS_ENV).is_ok() || std::env::var(NOTICE_ENV).is_ok() {
        return;
    }
    if let Some(why) = util::cannot_make_netns() {
        util::say_skipped(&format!(
            "frame_noticed_while_tasks_compute_and_yield: {why}"
        ));
        return;
    }
    let ns = util::Netns::new("ntc", None);
    let tap = ns.tap.as_str();
    let me = std::env::current_exe().unwrap();
    let mut child = ns
        .command(&me)
        .args([
            "--exact",
            "tap_notice_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NOTICE_ENV, tap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A generous limit for a hang (the frame is due within ~1 ms), not a
    // timing assertion.
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!(
                "the reading task never got the frame while 8 tasks computed and yielded \
                 (killed after 20 s): {:?}",
                child.wait_with_output()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(NOTICE_LINE), "{stdout}");
}

//! A client that vanishes mid-download over a real TAP, hosted and as a
//! solo5-spt unikernel (issue 18): the server (`examples/vanish`, each
//! stream's peer timeout set to [`PEER_TIMEOUT`] with `--peer-timeout`)
//! must give the connection up within the peer timeout of the client's
//! last segment, plus 1 s, and not before, and its socket must leave the
//! stack (`Stack::socket_count` and `tcp_socket_count` one more during the
//! download, back to the listener's alone after the close).
//!
//! The client is a Linux socket (python3) in the test's network namespace,
//! reading the download. Once it has 1 MiB it goes on reading, and the
//! test makes it vanish without a FIN or a reset: a `blackhole` qdisc on
//! the namespace's side of the TAP drops everything Linux sends to the
//! server from then on (the client's acknowledgements, and its FIN when it
//! is killed at the end), while the server's retransmissions still reach
//! it. (`netem` is not in every kernel; `iptables`/`nft` not on every
//! machine; `blackhole` is part of the kernel's packet scheduler core.)
//!
//! Two bounds are checked: the server's own measure (the time from its
//! last write that made progress to the failed write, printed by the
//! example), and the test's (from the cut to the server's line). Each run
//! has its own namespace, deleted on every exit path; the hosted and the
//! spt runs go in parallel (the test harness's threads). Needs root,
//! /dev/net/tun, `ip`, `tc` and `python3`, else skips saying why.

#[path = "solo5_util/mod.rs"]
mod util;

use std::path::Path;
use std::time::{Duration, Instant};

/// The streams' peer timeout in these runs (the default,
/// `DEFAULT_PEER_TIMEOUT`, is 60 s: too long for a test).
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long after the bound the connection may be closed: smoltcp checks
/// the timeout when it polls the socket, and the stack polls at the
/// socket's next deadline, so a few milliseconds are expected; 1 s leaves
/// room for a loaded machine (as `tests/tcp_hostile.rs` in process).
const LATE: Duration = Duration::from_secs(1);
/// How much before the bound the server's own measure may be: its last
/// progress (a write taking buffer space that an acknowledgement freed)
/// is at most scheduling later than the client's last segment, from
/// which the stack counts.
const EARLY: Duration = Duration::from_millis(300);
/// How much before the bound the test may see the close, counted from the
/// cut: the client's last segment may precede the cut (a window that stays
/// closed is only probed now and then), so this bound is looser; it still
/// tells a close at the timeout from one at the cut.
const EARLY_CUT: Duration = Duration::from_secs(1);

const HOST_CIDR: &str = "10.78.0.1/24";
const SERVER: &str = "10.78.0.2";
const PORT: &str = "9000";

/// Connects, reads 1 MiB, prints `got N`, then reads on (the download goes
/// on until the test cuts the link; the server's reset, which still
/// reaches it, ends it); never closes the socket itself.
const CLIENT: &str = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.settimeout(None)
got = 0
while got < 1 << 20:
    b = s.recv(65536)
    if not b:
        print("eof after", got, flush=True); sys.exit(1)
    got += len(b)
print("got", got, flush=True)
try:
    while True:
        b = s.recv(65536)
        if not b:
            print("eof after", got, flush=True)
            break
        got += len(b)
except ConnectionResetError:
    print("reset after", got, flush=True)
time.sleep(3600)
"#;

fn skip_reason() -> Option<String> {
    util::cannot_make_netns().or_else(|| util::tool_check::missing_tool(&["tc", "python3"]))
}

/// Runs `argv` in `ns`; panics with its output if it fails.
fn ns_run(ns: &util::Netns, argv: &[&str]) {
    let out = util::run_with_timeout(
        ns.command(Path::new(argv[0])).args(&argv[1..]),
        Duration::from_secs(10),
    );
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The numbers after `stack: ` in `line`: (sockets, tcp).
fn counts(line: &str) -> (usize, usize) {
    let w: Vec<&str> = line
        .rsplit_once("stack: ")
        .unwrap_or_else(|| panic!("no counts in {line:?}"))
        .1
        .split_whitespace()
        .collect();
    assert!(
        w.len() == 4 && w[0] == "sockets" && w[2] == "tcp",
        "{line:?}"
    );
    (w[1].parse().unwrap(), w[3].parse().unwrap())
}

/// The session against a vanish server started in `ns` (already listening).
fn session(ns: &util::Netns, server: &mut util::Server, what: &str) {
    let before = counts(&server.wait_for("stack: ", Duration::from_secs(10)));

    let mut client = util::Server::start(
        ns.command(Path::new("python3"))
            .args(["-c", CLIENT, SERVER, PORT]),
    );
    let during = counts(&server.wait_for("accepted ", Duration::from_secs(30)));
    assert_eq!(
        during,
        (before.0 + 1, before.1 + 1),
        "{what}: the connection is not counted in the stack"
    );
    client.wait_for("got ", Duration::from_secs(30));

    // The cut: from now on nothing from Linux reaches the server.
    let cut_start = Instant::now();
    ns_run(
        ns,
        &[
            "tc",
            "qdisc",
            "replace",
            "dev",
            &ns.tap,
            "root",
            "blackhole",
        ],
    );
    let cut_done = Instant::now();

    let limit = PEER_TIMEOUT + LATE + Duration::from_secs(10);
    let line = server.wait_for("closed ", limit);
    let seen = Instant::now();
    let after_cut = seen - cut_done;
    let after_cut_max = seen - cut_start;
    eprintln!(
        "{what}: peer timeout {PEER_TIMEOUT:?}; closed {:.3} s after the cut; server: {line}",
        after_cut.as_secs_f64()
    );

    // The server's own measure: KIND, stalled S s.
    let rest = line.split_once(": ").expect("closed PEER: ...").1;
    let mut w = rest.split([',', ' ']).filter(|s| !s.is_empty());
    let kind = w.next().unwrap();
    assert_eq!(w.next(), Some("stalled"), "{line}");
    let stalled = Duration::from_secs_f64(w.next().unwrap().parse().unwrap());
    assert_eq!(kind, "ConnectionReset", "{what}: {line}");
    assert!(
        stalled >= PEER_TIMEOUT - EARLY && stalled <= PEER_TIMEOUT + LATE,
        "{what}: the write failed after {stalled:?} without progress, outside \
         [{:?}, {:?}]: {line}",
        PEER_TIMEOUT - EARLY,
        PEER_TIMEOUT + LATE
    );
    // The test's measure, from the cut.
    assert!(
        after_cut_max >= PEER_TIMEOUT - EARLY_CUT && after_cut <= PEER_TIMEOUT + LATE,
        "{what}: closed {after_cut:?} after the cut, outside [{:?}, {:?}]: {line}",
        PEER_TIMEOUT - EARLY_CUT,
        PEER_TIMEOUT + LATE
    );
    // The socket has left the stack: only the listener's are left.
    assert_eq!(
        counts(&line),
        before,
        "{what}: the stack's sockets after the close differ from those with only the listener"
    );
    // The server goes on: it has not exited.
    assert!(server.exited().is_none(), "{what}: the server exited");
    drop(client);
}

/// Sets up the namespace `tag` and checks that a `blackhole` qdisc can be
/// put on its TAP (and taken off again); `Err`: why the test must skip.
fn namespace(tag: &str) -> Result<util::Netns, String> {
    let ns = util::Netns::new(tag, Some(HOST_CIDR));
    let tc = |args: &[&str]| {
        ns.command(Path::new("tc"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())
            .and_then(|o| {
                o.status
                    .success()
                    .then_some(())
                    .ok_or_else(|| String::from_utf8_lossy(&o.stderr).into_owned())
            })
    };
    tc(&["qdisc", "replace", "dev", &ns.tap, "root", "blackhole"])
        .map_err(|e| format!("the kernel has no `blackhole` qdisc: {}", e.trim()))?;
    tc(&["qdisc", "del", "dev", &ns.tap, "root"])
        .map_err(|e| format!("tc qdisc del: {}", e.trim()))?;
    Ok(ns)
}

fn flags(ns: &util::Netns) -> (String, [String; 3]) {
    (
        format!("--net:service={}", ns.tap),
        [
            format!("--ipv4={SERVER}/24"),
            format!("--port={PORT}"),
            format!("--peer-timeout={}", PEER_TIMEOUT.as_secs_f64()),
        ],
    )
}

#[test]
fn hosted_vanished_client_is_given_up_within_peer_timeout() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    let bin = util::example_binary("vanish");
    let ns = match namespace("vh") {
        Ok(ns) => ns,
        Err(why) => return util::say_skipped(&why),
    };
    let (net, args) = flags(&ns);
    let mut server = util::Server::start(ns.command(&bin).arg(&net).arg("--").args(&args));
    server.wait_for(
        &format!("listening on {SERVER}:{PORT}"),
        Duration::from_secs(60),
    );
    session(&ns, &mut server, "hosted");
}

#[test]
fn spt_vanished_client_is_given_up_within_peer_timeout() {
    if let Some(why) = skip_reason() {
        return util::say_skipped(&why);
    }
    let image = util::build_image("spt", "vanish");
    let tender = util::solo5_root().join("tenders/spt/solo5-spt");
    let ns = match namespace("vs") {
        Ok(ns) => ns,
        Err(why) => return util::say_skipped(&why),
    };
    let (net, args) = flags(&ns);
    let mut cmd = ns.command(&tender);
    cmd.arg(&net).arg(&image).args(&args);
    let mut server = util::Server::start(&mut cmd);
    server.wait_for(
        &format!("listening on {SERVER}:{PORT}"),
        Duration::from_secs(60),
    );
    session(&ns, &mut server, "spt");
}

//! In-process tests of the stack's bounds under hostile conditions: a peer
//! that vanishes (the link is cut) is given up after the stream's peer
//! timeout; a live idle peer is kept by keep-alive probes; connections
//! beyond a full backlog wait in the SYN queue instead of being reset.
//! (The SYN flood and the 2,000-connection burst over a real TAP, hosted
//! and under solo5-spt, are in `tests/solo5_hostile.rs`.)

mod stack_pair;

use mkernel::net::stack::{Stack, StackStats, TcpListener, TcpStream};
use stack_pair::run_pair;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(2);

/// A connected pair: (server side, client side).
fn connect(server: &Stack, client: &Stack) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind(server, 7).unwrap();
    let acc = mkernel::spawn(move || l.accept().unwrap().0);
    let c = TcpStream::connect(client, "10.0.0.1:7".parse().unwrap()).unwrap();
    (acc.join().unwrap(), c)
}

/// The server streams data to a client; the link is cut mid-download: the
/// server's writes fail with `ConnectionReset` within the peer timeout
/// (2 s here) plus 1 s, and its socket leaves the stack.
#[test]
fn vanished_peer_mid_download_is_given_up() {
    let (elapsed, kind) = run_pair(|server, client, cut| {
        let (s, c) = connect(&server, &client);
        s.set_peer_timeout(Some(TIMEOUT));
        let reader = mkernel::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut got = 0;
            // Read 256 KiB, then keep the socket without reading.
            while got < 256 * 1024 {
                got += c.read(&mut buf).unwrap();
            }
            c
        });
        let chunk = vec![7u8; 16384];
        let mut sent = 0usize;
        let mut cut_at = None;
        let err = loop {
            if sent >= 256 * 1024 && cut_at.is_none() {
                cut.set(true);
                cut_at = Some(Instant::now());
            }
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
            assert!(
                cut_at.is_none_or(|t| t.elapsed() < Duration::from_secs(10)),
                "still writing 10 s after the cut"
            );
        };
        let elapsed = cut_at.unwrap().elapsed();
        let before = server.socket_count();
        drop(s);
        // Gone at once: it was closed already (only the listener's
        // sockets are left, none here: the listener was dropped).
        assert!(server.socket_count() < before);
        let _c = reader.join().unwrap();
        (elapsed, err.kind())
    });
    eprintln!("vanished peer: write failed {elapsed:?} after the cut ({kind:?})");
    assert_eq!(kind, ErrorKind::ConnectionReset);
    assert!(
        elapsed >= TIMEOUT - Duration::from_millis(100),
        "{elapsed:?}"
    );
    assert!(elapsed < TIMEOUT + Duration::from_secs(1), "{elapsed:?}");
}

/// An idle connection whose peer is alive stays open past the peer
/// timeout (keep-alive probes are answered); once the link is cut, a
/// blocked read fails within the peer timeout.
#[test]
fn idle_live_peer_is_kept_and_vanished_idle_peer_is_given_up() {
    let elapsed = run_pair(|server, client, cut| {
        let (s, c) = connect(&server, &client);
        s.set_peer_timeout(Some(TIMEOUT));
        s.set_keepalive(Some(Duration::from_millis(300)));
        // Idle for twice the timeout: still open both ways.
        mkernel::sleep(TIMEOUT * 2);
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            n += s.read(&mut buf[n..]).unwrap();
        }
        assert_eq!(&buf, b"ping");
        cut.set(true);
        let t = Instant::now();
        let e = s.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset);
        drop(c);
        t.elapsed()
    });
    eprintln!("vanished idle peer: read failed {elapsed:?} after the cut");
    assert!(elapsed < TIMEOUT + Duration::from_secs(1), "{elapsed:?}");
}

/// 40 connections to a listener with a backlog of 2 that accepts only
/// after 300 ms: none is refused (the SYNs beyond the backlog wait in the
/// SYN queue, or are dropped and sent again), all are served.
#[test]
fn full_backlog_queues_instead_of_refusing() {
    full_backlog(run_pair, "10.0.0.1:7");
}

/// The same over IPv6: its SYNs wait in the SYN queue too (they went
/// straight to smoltcp, which reset those beyond the backlog).
#[test]
fn full_backlog_queues_ipv6_syns_too() {
    let a = ["--ipv4=10.0.0.1/24", "--ipv6=fd00::1/64"];
    let b = ["--ipv4=10.0.0.2/24", "--ipv6=fd00::2/64"];
    let run = |f| stack_pair::run_pair_with(&a, &b, f);
    full_backlog(run, "[fd00::1]:7");
}

type Pair<T> = Box<dyn FnOnce(Stack, Stack, mkernel::net::link::CutSwitch) -> T>;

fn full_backlog(
    run: impl FnOnce(Pair<(Duration, StackStats)>) -> (Duration, StackStats),
    to: &str,
) {
    const N: usize = 40;
    let to: SocketAddr = to.parse().unwrap();
    let (took, stats) = run(Box::new(move |server, client, _cut| {
        let l = TcpListener::bind_with_backlog(&server, 7, 2).unwrap();
        let t0 = Instant::now();
        let clients: Vec<_> = (0..N)
            .map(|i| {
                let client = client.clone();
                mkernel::spawn(move || {
                    let c = TcpStream::connect(&client, to)
                        .map_err(|e| format!("connection {i}: {e}"))?;
                    let mut b = [0u8; 1];
                    assert_eq!(c.read(&mut b).unwrap(), 1, "connection {i}");
                    Ok::<_, String>(())
                })
            })
            .collect();
        let acceptor = mkernel::spawn(move || {
            mkernel::sleep(Duration::from_millis(300));
            for _ in 0..N {
                let (s, from) = l.accept().unwrap();
                assert_eq!(from.is_ipv6(), to.is_ipv6(), "{from}");
                s.write_all(b"x").unwrap();
            }
        });
        // Every client ends, served or refused; a refused one leaves the
        // acceptor waiting.
        let refused: Vec<String> = mkernel::join_all(clients)
            .into_iter()
            .filter_map(|r| r.unwrap().err())
            .collect();
        if !refused.is_empty() {
            acceptor.cancel();
            panic!("{} of {N} refused: {refused:?}", refused.len());
        }
        acceptor.join().unwrap();
        (t0.elapsed(), server.stats())
    }));
    eprintln!("{N} connections to {to} on a backlog of 2 in {took:?}; {stats:?}");
    assert!(stats.syns_queued > 0, "{stats:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

/// At the stack's connection cap (4 TCP sockets here, a backlog of 2),
/// new connections wait (their SYNs in the SYN queue, then the client's
/// retries) instead of being reset; the established ones keep working;
/// and a waiting one gets through once a connection has left the stack.
#[test]
fn connection_cap_holds_new_connections_back() {
    use std::cell::RefCell;
    use std::rc::Rc;
    const N: usize = 5;
    let (took, stats) = run_pair(|server, client, _cut| {
        server.set_max_connections(Some(4));
        assert_eq!(server.max_connections(), Some(4));
        let l = TcpListener::bind_with_backlog(&server, 7, 2).unwrap();
        let accepted = Rc::new(RefCell::new(Vec::new()));
        let acc = {
            let accepted = accepted.clone();
            mkernel::spawn(move || {
                loop {
                    let (s, _) = l.accept().unwrap();
                    accepted.borrow_mut().push(s);
                }
            })
        };
        let connected = Rc::new(RefCell::new(Vec::new()));
        let clients: Vec<_> = (0..N)
            .map(|i| {
                let client = client.clone();
                let connected = connected.clone();
                mkernel::spawn(move || {
                    let c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap())
                        .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                    connected.borrow_mut().push(c);
                })
            })
            .collect();
        mkernel::sleep(Duration::from_millis(1500));
        // Four connections took the four sockets; the fifth waits.
        assert_eq!(server.tcp_socket_count(), 4);
        assert_eq!(accepted.borrow().len(), 4);
        assert_eq!(connected.borrow().len(), 4);
        // The established ones are served (each accepted stream with its
        // client: the accept order need not be the connect order).
        let peer_of = |c: &TcpStream| {
            let local = c.local_addr().unwrap();
            accepted
                .borrow()
                .iter()
                .position(|s| s.peer_addr().unwrap() == local)
                .unwrap()
        };
        for c in connected.borrow().iter() {
            c.write_all(b"?").unwrap();
            let mut b = [0u8; 1];
            assert_eq!(accepted.borrow()[peer_of(c)].read(&mut b).unwrap(), 1);
        }
        // One connection leaves (both ends close): the fifth gets in.
        let t0 = Instant::now();
        let c = connected.borrow_mut().remove(0);
        let i = peer_of(&c);
        drop(c);
        drop(accepted.borrow_mut().remove(i));
        for c in clients {
            c.join().unwrap();
        }
        let took = t0.elapsed();
        assert_eq!(connected.borrow().len(), 4);
        assert!(server.tcp_socket_count() <= 4);
        acc.cancel();
        let _ = acc.join();
        (took, server.stats())
    });
    eprintln!("the waiting connection got in {took:?} after one left; {stats:?}");
    assert!(stats.syns_queued > 0, "{stats:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

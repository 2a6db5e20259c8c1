//! The std-like sockets' bounds, in process over an in-memory link
//! (`link::pair`): connect timeouts (a silent peer, a refused one), read
//! and write timeouts, `shutdown`, connected UDP and its read timeout.
//! Times are measured with `mkernel::clock_monotonic()` and asserted with
//! generous but meaningful bounds (a timeout never fires early, and fires
//! within 10 % or a few tens of milliseconds after its time).

mod stack_pair;

use mkernel::net::stack::{DEFAULT_CONNECT_TIMEOUT, Stack, TcpListener, TcpStream, UdpSocket};
use stack_pair::run_pair;
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn since(t0: u64) -> Duration {
    Duration::from_nanos(mkernel::clock_monotonic() - t0)
}

/// A connected pair on port 7: (server side, client side).
fn connect(server: &Stack, client: &Stack) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind(server, 7).unwrap();
    let acc = mkernel::spawn(move || l.accept().unwrap().0);
    let c = TcpStream::connect(client, addr("10.0.0.1:7")).unwrap();
    (acc.join().unwrap(), c)
}

/// Asserts that `took` is at least `bound` and at most 10 % (and 50 ms)
/// more.
fn assert_near(what: &str, took: Duration, bound: Duration) {
    eprintln!("{what}: {took:?} (bound {bound:?})");
    assert!(took >= bound, "{what}: {took:?} < {bound:?}");
    let slack = (bound / 10).max(Duration::from_millis(50));
    assert!(
        took <= bound + slack,
        "{what}: {took:?} > {bound:?} + {slack:?}"
    );
}

/// A plain `connect` to a peer that has gone silent (the link is cut after
/// a first connection, so ARP is resolved and the SYNs really leave and
/// are lost) fails with `TimedOut` after `DEFAULT_CONNECT_TIMEOUT` (20 s).
#[test]
fn connect_to_a_silent_peer_times_out_after_the_documented_bound() {
    let (kind, took) = run_pair(|server, client, cut| {
        let (s, c) = connect(&server, &client);
        drop((s, c));
        cut.set(true);
        let t0 = mkernel::clock_monotonic();
        let e = TcpStream::connect(&client, addr("10.0.0.1:7")).unwrap_err();
        let took = since(t0);
        // The failed attempt left nothing behind but the closing pair.
        (e.kind(), took)
    });
    assert_eq!(kind, ErrorKind::TimedOut);
    assert_near("connect to a silent peer", took, DEFAULT_CONNECT_TIMEOUT);
}

/// `connect_timeout` to an address nobody answers (nothing at 10.0.0.9:
/// ARP goes unanswered), and to a peer that went silent: `TimedOut` within
/// the given time ± 10 %. A zero timeout is `InvalidInput`; the stack
/// keeps no socket of a failed attempt.
#[test]
fn connect_timeout_fails_within_the_given_time() {
    run_pair(|server, client, cut| {
        let t = Duration::from_millis(700);
        let t0 = mkernel::clock_monotonic();
        let e = TcpStream::connect_timeout(&client, addr("10.0.0.9:80"), t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_near("connect_timeout, no host", since(t0), t);

        let (s, c) = connect(&server, &client);
        drop((s, c));
        cut.set(true);
        let t = Duration::from_millis(1500);
        let t0 = mkernel::clock_monotonic();
        let e = TcpStream::connect_timeout(&client, addr("10.0.0.1:7"), t).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_near("connect_timeout, silent peer", since(t0), t);

        let e =
            TcpStream::connect_timeout(&client, addr("10.0.0.1:7"), Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);

        // Mended: a connection within the time works.
        cut.set(false);
        let l = TcpListener::bind(&server, 8).unwrap();
        let c = TcpStream::connect_timeout(&client, addr("10.0.0.1:8"), Duration::from_secs(5))
            .unwrap();
        let (s, _) = l.accept().unwrap();
        c.write_all(b"ok").unwrap();
        let mut buf = [0u8; 2];
        (&s).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ok");
    });
}

/// A SYN to a port nobody listens on is answered with a reset: the
/// connect fails at once with `ConnectionRefused`, plain or with a
/// timeout.
#[test]
fn a_reset_is_connection_refused() {
    run_pair(|_server, client, _cut| {
        for timeout in [None, Some(Duration::from_secs(5))] {
            let t0 = mkernel::clock_monotonic();
            let e = match timeout {
                None => TcpStream::connect(&client, addr("10.0.0.1:9")),
                Some(t) => TcpStream::connect_timeout(&client, addr("10.0.0.1:9"), t),
            }
            .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
            let took = since(t0);
            eprintln!("refused after {took:?}");
            assert!(took < Duration::from_millis(500), "{took:?}");
        }
    });
}

/// A read with a read timeout and nothing to read fails with `TimedOut`
/// after the timeout; the stream still works: a later read gets what the
/// peer sends, and another silent read times out again. Also for a write
/// whose peer does not read (the send buffer stays full).
#[test]
fn read_and_write_timeouts_leave_the_stream_usable() {
    run_pair(|server, client, _cut| {
        let (s, c) = connect(&server, &client);
        let t = Duration::from_millis(300);
        assert_eq!(c.read_timeout().unwrap(), None);
        c.set_read_timeout(Some(t)).unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(t));
        let e = c.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(c.read_timeout().unwrap(), Some(t));
        let mut buf = [0u8; 16];
        for round in 0..2 {
            let t0 = mkernel::clock_monotonic();
            let e = c.read(&mut buf).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
            assert_near(&format!("read timeout, round {round}"), since(t0), t);
            s.write_all(b"hello").unwrap();
            let t0 = mkernel::clock_monotonic();
            let mut got = 0;
            while got < 5 {
                got += c.read(&mut buf[got..]).unwrap();
            }
            assert_eq!(&buf[..5], b"hello");
            assert!(since(t0) < t);
        }
        // Data that arrives during the wait ends it early.
        let s = Rc::new(s);
        let s2 = s.clone();
        let w = mkernel::spawn(move || {
            mkernel::sleep(Duration::from_millis(100));
            s2.write_all(b"mid").unwrap();
        });
        let t0 = mkernel::clock_monotonic();
        assert_eq!(c.read(&mut buf).unwrap(), 3);
        let took = since(t0);
        assert!(took >= Duration::from_millis(100) && took < t, "{took:?}");
        w.join().unwrap();
        // None: waits for ever again (here: until the peer's FIN).
        c.set_read_timeout(None).unwrap();
        let closer = mkernel::spawn(move || {
            mkernel::sleep(Duration::from_millis(400));
            s.shutdown(Shutdown::Write).unwrap();
            s
        });
        assert_eq!(c.read(&mut buf).unwrap(), 0);
        let s = closer.join().unwrap();

        // Write timeout: the server never reads, the buffers fill.
        let t = Duration::from_millis(200);
        c.set_write_timeout(Some(t)).unwrap();
        assert_eq!(c.write_timeout().unwrap(), Some(t));
        let chunk = vec![1u8; 16384];
        let mut sent = 0;
        let e = loop {
            let t0 = mkernel::clock_monotonic();
            match c.write(&chunk) {
                Ok(n) => sent += n,
                Err(e) => break (e, since(t0)),
            }
        };
        assert_eq!(e.0.kind(), ErrorKind::TimedOut);
        assert_near("write timeout", e.1, t);
        // Usable: once the server reads, writing goes on.
        let reader = mkernel::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut got = 0;
            while got < sent + 5 {
                got += s.read(&mut buf).unwrap();
            }
            got
        });
        c.write_all(b"again").unwrap();
        assert_eq!(reader.join().unwrap(), sent + 5);
    });
}

/// `shutdown(Write)` sends a FIN: the peer reads the end of the stream,
/// and can still answer, which the shut-down side reads; a write after it
/// is `BrokenPipe`. `shutdown(Read)` ends reads, also one waiting now.
#[test]
fn shutdown_write_sends_fin_and_reading_goes_on() {
    run_pair(|server, client, _cut| {
        let (s, c) = connect(&server, &client);
        c.write_all(b"request").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut req = Vec::new();
        (&s).read_to_end(&mut req).unwrap();
        assert_eq!(req, b"request");
        s.write_all(b"response").unwrap();
        let mut resp = [0u8; 8];
        (&c).read_exact(&mut resp).unwrap();
        assert_eq!(&resp, b"response");
        assert_eq!(c.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);

        // shutdown(Read) wakes a reader that waits, with the end of stream.
        let s = Rc::new(s);
        let s2 = s.clone();
        let reader = mkernel::spawn(move || {
            let mut buf = [0u8; 4];
            s2.read(&mut buf).unwrap()
        });
        mkernel::sleep(Duration::from_millis(50));
        s.shutdown(Shutdown::Read).unwrap();
        assert_eq!(reader.join().unwrap(), 0);
        assert_eq!(s.read(&mut [0u8; 4]).unwrap(), 0);

        // Both: no more writes either.
        let (s, c) = {
            let l = TcpListener::bind(&server, 8).unwrap();
            let acc = mkernel::spawn(move || l.accept().unwrap().0);
            let c = TcpStream::connect(&client, addr("10.0.0.1:8")).unwrap();
            (acc.join().unwrap(), c)
        };
        c.shutdown(Shutdown::Both).unwrap();
        assert_eq!(c.read(&mut [0u8; 4]).unwrap(), 0);
        assert_eq!(c.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
        assert_eq!(s.read(&mut [0u8; 4]).unwrap(), 0);
    });
}

/// The std-shaped getters and `incoming`.
#[test]
fn std_shaped_accessors_and_incoming() {
    run_pair(|server, client, _cut| {
        let l = TcpListener::bind(&server, 7).unwrap();
        assert_eq!(l.local_addr().unwrap(), addr("10.0.0.1:7"));
        let srv = mkernel::spawn(move || {
            for (n, s) in (0u8..).zip(l.incoming().take(3)) {
                s.unwrap().write_all(&[n]).unwrap();
            }
        });
        for i in 0..3u8 {
            let c = TcpStream::connect(&client, addr("10.0.0.1:7")).unwrap();
            assert!(!c.nodelay().unwrap());
            c.set_nodelay(true).unwrap();
            assert!(c.nodelay().unwrap());
            assert_eq!(c.ttl().unwrap(), 64);
            c.set_ttl(3).unwrap();
            assert_eq!(c.ttl().unwrap(), 3);
            assert_eq!(c.set_ttl(256).unwrap_err().kind(), ErrorKind::InvalidInput);
            let mut b = [0u8; 1];
            (&c).read_exact(&mut b).unwrap();
            assert_eq!(b[0], i);
        }
        srv.join().unwrap();
        let u = UdpSocket::bind(&client, 5353).unwrap();
        assert_eq!(u.local_addr().unwrap(), addr("10.0.0.2:5353"));
    });
}

/// A connected UDP socket sends to its peer and receives only from it
/// (another sender's datagram is discarded); a read timeout gives
/// `TimedOut` and the socket goes on working.
#[test]
fn udp_connect_send_recv_and_read_timeout() {
    run_pair(|server, client, _cut| {
        let srv = UdpSocket::bind(&server, 53).unwrap();
        let other = UdpSocket::bind(&server, 54).unwrap();
        let c = UdpSocket::bind(&client, 0).unwrap();
        assert_eq!(c.peer_addr().unwrap_err().kind(), ErrorKind::NotConnected);
        assert_eq!(c.send(b"x").unwrap_err().kind(), ErrorKind::NotConnected);
        assert_eq!(
            c.recv(&mut [0u8; 4]).unwrap_err().kind(),
            ErrorKind::NotConnected
        );
        c.connect(addr("10.0.0.1:53")).unwrap();
        assert_eq!(c.peer_addr().unwrap(), addr("10.0.0.1:53"));
        assert_eq!(c.send(b"ping").unwrap(), 4);
        let mut buf = [0u8; 16];
        let (n, from) = srv.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, c.local_addr().unwrap());
        // Not from the peer: discarded by `recv`.
        other.send_to(b"spoof", from).unwrap();
        srv.send_to(b"pong", from).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");

        let t = Duration::from_millis(250);
        c.set_read_timeout(Some(t)).unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(t));
        assert_eq!(
            c.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let t0 = mkernel::clock_monotonic();
        assert_eq!(c.recv(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
        assert_near("UDP recv timeout", since(t0), t);
        // Only a stranger's datagram: still a timeout, from the call.
        other.send_to(b"spoof", from).unwrap();
        let t0 = mkernel::clock_monotonic();
        assert_eq!(c.recv(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
        assert_near("UDP recv timeout, stranger", since(t0), t);
        let t0 = mkernel::clock_monotonic();
        assert_eq!(
            c.recv_from(&mut buf).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
        assert_near("UDP recv_from timeout", since(t0), t);
        // Still usable.
        srv.send_to(b"late", from).unwrap();
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"late");
        c.set_write_timeout(Some(t)).unwrap();
        assert_eq!(c.write_timeout().unwrap(), Some(t));
        c.send(b"bye").unwrap();
        let (n, _) = srv.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"bye");
    });
}

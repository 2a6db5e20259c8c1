//! `--ipv4=dhcp` when the lease changes, in process: a small DHCP server
//! (a task with a `UdpSocket` on port 67, messages built with smoltcp's
//! wire types) on the other end of a `link::pair` hands out 10.9.0.50
//! with a 4 s lease, then NAKs the renewal and offers 10.9.0.60 instead.
//! The new address must reach the stack's configuration and its
//! listener (a connection to the new address is accepted), and the
//! connection on the old address must be reset, not left hanging.

use mkernel::net::link::{self, Faults};
use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream, UdpSocket};
use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

/// Answers DISCOVER with an OFFER of `offer`, REQUEST for `offer` with an
/// ACK, any other REQUEST (a renewal of an address no longer offered)
/// with a NAK. Leases last 4 s (renewal after 2 s).
fn dhcp_server(stack: &Stack, offer: Rc<Cell<Ipv4Addr>>, acks: Rc<Cell<u32>>) {
    let sock = UdpSocket::bind(stack, 67).unwrap();
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        let Ok(pkt) = DhcpPacket::new_checked(&buf[..n]) else {
            continue;
        };
        let Ok(req) = DhcpRepr::parse(&pkt) else {
            continue;
        };
        let yours = offer.get();
        let kind = match req.message_type {
            DhcpMessageType::Discover => DhcpMessageType::Offer,
            DhcpMessageType::Request if req.requested_ip.unwrap_or(req.client_ip) == yours => {
                acks.set(acks.get() + 1);
                DhcpMessageType::Ack
            }
            DhcpMessageType::Request => DhcpMessageType::Nak,
            _ => continue,
        };
        let nak = kind == DhcpMessageType::Nak;
        let rep = DhcpRepr {
            message_type: kind,
            transaction_id: req.transaction_id,
            secs: 0,
            client_hardware_address: req.client_hardware_address,
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: if nak { Ipv4Addr::UNSPECIFIED } else { yours },
            server_ip: SERVER,
            router: (!nak).then_some(SERVER),
            subnet_mask: (!nak).then_some(Ipv4Addr::new(255, 255, 255, 0)),
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(SERVER),
            parameter_request_list: None,
            dns_servers: (!nak).then(|| [SERVER].into_iter().collect()),
            max_size: None,
            lease_duration: (!nak).then_some(4),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut out = vec![0u8; rep.buffer_len()];
        rep.emit(&mut DhcpPacket::new_unchecked(&mut out[..]))
            .unwrap();
        sock.send_to(&out, "255.255.255.255:68".parse().unwrap())
            .unwrap();
    }
}

#[test]
fn new_lease_reaches_listener_and_resets_old_connections() {
    let (a, b) = link::pair(Faults::default());
    mkernel::Builder::new()
        .net_link("server", a)
        .net_link("client", b)
        .run(
            (mkernel::net("server"), mkernel::net("client")),
            |(a, b)| {
                let server = Stack::new(a, StackConfig::parse("10.9.0.1/24", None).unwrap());
                let offer = Rc::new(Cell::new(Ipv4Addr::new(10, 9, 0, 50)));
                let acks = Rc::new(Cell::new(0));
                let srv = server.clone();
                let (o, k) = (offer.clone(), acks.clone());
                let dhcp = mkernel::spawn(move || dhcp_server(&srv, o, k));

                let (cfg, _) = StackConfig::from_args(&["--ipv4=dhcp".to_string()]).unwrap();
                let client = Stack::new(b, cfg);
                let got = client.wait_configured(Duration::from_secs(5)).unwrap();
                assert_eq!(got.ipv4.to_string(), "10.9.0.50/24");
                assert_eq!(got.gateway, Some(SERVER));
                assert_eq!(got.nameservers.as_slice(), [SERVER]);
                assert_eq!(client.dhcp_leases(), 1);

                let l = TcpListener::bind(&client, 7).unwrap();
                assert_eq!(l.local_addr().unwrap(), "10.9.0.50:7".parse().unwrap());
                let old_out = TcpStream::connect(&server, "10.9.0.50:7".parse().unwrap()).unwrap();
                let (old_in, _) = l.accept().unwrap();
                old_out.write_all(b"x").unwrap();
                let mut b1 = [0u8; 1];
                assert_eq!(old_in.read(&mut b1).unwrap(), 1);

                // The renewal after 2 s is refused: the client starts over
                // and gets the new address.
                offer.set(Ipv4Addr::new(10, 9, 0, 60));
                let t0 = mkernel::clock_monotonic();
                while client.config().ipv4.address() != Ipv4Addr::new(10, 9, 0, 60) {
                    assert!(
                        mkernel::clock_monotonic() - t0 < 10_000_000_000,
                        "no new lease: {:?}",
                        client.config()
                    );
                    mkernel::sleep(Duration::from_millis(50));
                }
                assert_eq!(client.dhcp_leases(), 2);
                assert_eq!(l.local_addr().unwrap(), "10.9.0.60:7".parse().unwrap());

                // The connection on the old address was reset.
                old_in
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                match old_in.read(&mut b1) {
                    Ok(0) => {}
                    Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
                    Ok(n) => panic!("read {n} bytes on a connection whose address went"),
                }
                drop(old_in);
                drop(old_out);

                // The listener takes connections on the new address.
                let addr: SocketAddr = "10.9.0.60:7".parse().unwrap();
                let c = TcpStream::connect_timeout(&server, addr, Duration::from_secs(5)).unwrap();
                let (s, peer) = l.accept().unwrap();
                assert_eq!(peer, c.local_addr().unwrap());
                assert_eq!(s.local_addr().unwrap(), addr);
                c.write_all(b"y").unwrap();
                assert_eq!(s.read(&mut b1).unwrap(), 1);
                assert_eq!(&b1, b"y");
                assert!(acks.get() >= 2);
                dhcp.cancel();
            },
        );
}

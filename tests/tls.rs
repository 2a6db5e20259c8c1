//! TLS (`mkernel::net::tls`, the `tls` feature) between two TCP/IP stacks
//! in one run, joined by an in-memory link: the handshake, data both ways,
//! close_notify and truncation, and refused certificates (untrusted,
//! expired, for another name) as clear errors on both sides.

#[path = "stack_pair/mod.rs"]
mod stack_pair;
#[path = "tls_util/mod.rs"]
mod tls_util;

use mkernel::net::stack::{Stack, TcpListener, TcpStream};
use mkernel::net::tls::{TlsStream, rustls, rustls_error};
use std::error::Error as _;
use std::io::{self, ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;
use tls_util::Pki;

const NAME: &str = "tls.test";

/// A TLS server on stack `a` port 443 running `serve` on each accepted
/// connection (its handshake result), and a client on stack `b` running
/// `client` on its handshake result; returns (server's, client's) values.
fn session<S: 'static, C: 'static>(
    server_cfg: Arc<rustls::ServerConfig>,
    client_cfg: Arc<rustls::ClientConfig>,
    name: &'static str,
    serve: impl FnOnce(io::Result<TlsStream>) -> S + 'static,
    client: impl FnOnce(io::Result<TlsStream>) -> C + 'static,
) -> (S, C) {
    stack_pair::run_pair(move |a: Stack, b: Stack, _cut| {
        let l = TcpListener::bind(&a, 443).unwrap();
        let srv = mkernel::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            serve(TlsStream::accept(tcp, server_cfg))
        });
        let tcp = TcpStream::connect(&b, "10.0.0.1:443".parse().unwrap()).unwrap();
        let c = client(TlsStream::connect(
            tcp,
            client_cfg,
            name.try_into().unwrap(),
        ));
        (srv.join().unwrap(), c)
    })
}

#[test]
fn handshake_data_both_ways_and_close_notify() {
    let pki = Pki::new("test CA", &[NAME]);
    // More than a TLS record (16 KiB) and the TCP buffers, each way.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let up = big.clone();
    let (got_up, (got_down, version)) = session(
        pki.server_config(),
        pki.client_config(),
        NAME,
        |tls| {
            let mut tls = tls.unwrap();
            let mut got = Vec::new();
            // The client's close_notify ends this with Ok(0), not an error.
            tls.read_to_end(&mut got).unwrap();
            tls.write_all(&got.iter().rev().copied().collect::<Vec<_>>())
                .unwrap();
            tls.shutdown().unwrap();
            // Writing after the close_notify is refused.
            assert_eq!(
                tls.write(b"late").unwrap_err().kind(),
                ErrorKind::BrokenPipe
            );
            got
        },
        move |tls| {
            let mut tls = tls.unwrap();
            let version = tls.connection().protocol_version();
            tls.write_all(&up).unwrap();
            tls.close_notify().unwrap(); // TCP stays open both ways
            let mut got = Vec::new();
            tls.read_to_end(&mut got).unwrap();
            (got, version)
        },
    );
    assert_eq!(got_up, big);
    assert_eq!(got_down, big.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[test]
fn truncation_without_close_notify_is_an_error() {
    let pki = Pki::new("test CA", &[NAME]);
    let (_, err) = session(
        pki.server_config(),
        pki.client_config(),
        NAME,
        |tls| {
            let mut tls = tls.unwrap();
            tls.write_all(b"partial").unwrap();
            // A bare TCP FIN: no close_notify.
            tls.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
            mkernel::sleep(Duration::from_millis(50));
        },
        |tls| {
            let mut tls = tls.unwrap();
            let mut got = Vec::new();
            let e = tls.read_to_end(&mut got).unwrap_err();
            assert_eq!(got, b"partial");
            e
        },
    );
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
}

/// The client's error and the server's, for a client configured with
/// `client_cfg` and asking for `name`.
fn refused(
    pki: &Pki,
    client_cfg: Arc<rustls::ClientConfig>,
    name: &'static str,
) -> (io::Error, io::Error) {
    let (s, c) = session(
        pki.server_config(),
        client_cfg,
        name,
        |tls| tls.map(|_| ()).unwrap_err(),
        |tls| tls.map(|_| ()).unwrap_err(),
    );
    (c, s)
}

#[test]
fn untrusted_certificate_is_a_clear_error_on_both_sides() {
    let pki = Pki::new("test CA", &[NAME]);
    let other = Pki::new("another CA", &[NAME]);
    let (client, server) = refused(&pki, other.client_config(), NAME);

    assert_eq!(client.kind(), ErrorKind::InvalidData);
    let msg = client.to_string();
    assert!(
        msg.contains("TLS handshake failed") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
    // The rustls error is the source.
    let source = client.source().expect("a source");
    assert!(matches!(
        source.downcast_ref::<rustls::Error>(),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer
        ))
    ));
    assert!(rustls_error(&client).is_some());

    // The client told the server why (a fatal alert).
    assert_eq!(server.kind(), ErrorKind::InvalidData);
    assert!(
        matches!(
            rustls_error(&server),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::UnknownCA
            ))
        ),
        "{server}"
    );
}

#[test]
fn expired_certificate_and_wrong_name_are_refused() {
    // Valid for two days ten days ago: refused against the wall clock.
    let now_days = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400) as i64;
    let old = Pki::valid("test CA", &[NAME], now_days - 12, now_days - 10);
    let (client, _) = refused(&old, old.client_config(), NAME);
    assert!(
        matches!(
            rustls_error(&client),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ExpiredContext { .. } | rustls::CertificateError::Expired
            ))
        ),
        "{client}"
    );

    let pki = Pki::new("test CA", &[NAME]);
    let (client, _) = refused(&pki, pki.client_config(), "other.test");
    assert!(
        matches!(
            rustls_error(&client),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
                    | rustls::CertificateError::NotValidForName
            ))
        ),
        "{client}"
    );
}

#[test]
fn a_peer_speaking_no_tls_is_an_error_not_a_hang() {
    let pki = Pki::new("test CA", &[NAME]);
    let cfg = pki.client_config();
    let err = stack_pair::run_pair(move |a: Stack, b: Stack, _cut| {
        let l = TcpListener::bind(&a, 80).unwrap();
        let srv = mkernel::spawn(move || {
            let (tcp, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf);
            tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        });
        let tcp = TcpStream::connect(&b, "10.0.0.1:80".parse().unwrap()).unwrap();
        let e = TlsStream::connect(tcp, cfg, NAME.try_into().unwrap()).unwrap_err();
        srv.join().unwrap();
        e
    });
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    assert!(rustls_error(&err).is_some(), "{err}");
}

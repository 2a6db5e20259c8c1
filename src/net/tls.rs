//! TLS on a [`TcpStream`], with `rustls` (the
//! `tls` feature).
//!
//! A [`TlsStream`] is a TLS client or server over any blocking-looking
//! `Read + Write` stream, in practice a
//! [`TcpStream`]: its reads and writes look
//! blocking and suspend only the calling task, as the TCP stream's do. The
//! handshake happens in the constructors ([`TlsStream::connect`],
//! [`TlsStream::accept`]), so a peer whose certificate is refused is an
//! error there, not at the first read.
//!
//! The crypto provider is rustls's `ring` provider (it builds and runs in a
//! Solo5 unikernel with mkernel's libc shim; its entropy is
//! [`fill_random`](crate::fill_random)'s source). Certificate validity is
//! checked against the wall clock ([`clock_wall`](crate::clock_wall), std's
//! `SystemTime`), which is the host's real time hosted and under Solo5.
//!
//! Errors are `std::io::Error`s. A TLS failure (a refused certificate, a
//! fatal alert from the peer, a corrupt record) has kind `InvalidData`, a
//! message saying what failed, and the `rustls::Error` as its
//! [`source`](std::error::Error::source) ([`rustls_error`] finds it). Errors
//! of the TCP stream (`ConnectionReset`, `TimedOut` from its timeouts, ...)
//! come through unchanged.
//!
//! ```
//! use mkernel::net::link;
//! use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
//! use mkernel::net::tls::{TlsStream, rustls};
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//!
//! // A self-signed certificate for "example.test", valid now.
//! let key = rcgen::KeyPair::generate().unwrap();
//! let mut params = rcgen::CertificateParams::new(vec!["example.test".into()]).unwrap();
//! params.not_before = rcgen::date_time_ymd(2020, 1, 1);
//! params.not_after = rcgen::date_time_ymd(2200, 1, 1);
//! let cert = params.self_signed(&key).unwrap();
//! let (cert, key) = (cert.der().clone(), key.serialize_der());
//!
//! let server_cfg = Arc::new(
//!     rustls::ServerConfig::builder()
//!         .with_no_client_auth()
//!         .with_single_cert(vec![cert.clone()], key.try_into().unwrap())
//!         .unwrap(),
//! );
//! let mut roots = rustls::RootCertStore::empty();
//! roots.add(cert).unwrap();
//! let client_cfg = Arc::new(
//!     rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
//! );
//!
//! let (a, b) = link::pair(link::Faults::default());
//! mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
//!     (mkernel::net("a"), mkernel::net("b")),
//!     move |(a, b)| {
//!         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
//!         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
//!         let l = TcpListener::bind(&server, 443).unwrap();
//!         let srv = mkernel::spawn(move || {
//!             let (tcp, _) = l.accept().unwrap();
//!             let mut tls = TlsStream::accept(tcp, server_cfg).unwrap();
//!             let mut req = [0u8; 5];
//!             tls.read_exact(&mut req).unwrap();
//!             tls.write_all(b"pong").unwrap();
//!             tls.shutdown().unwrap(); // close_notify, then FIN
//!         });
//!         let tcp = TcpStream::connect(&client, "10.0.0.1:443".parse().unwrap()).unwrap();
//!         let name = "example.test".try_into().unwrap();
//!         let mut tls = TlsStream::connect(tcp, client_cfg, name).unwrap();
//!         tls.write_all(b"ping?").unwrap();
//!         let mut answer = Vec::new();
//!         tls.read_to_end(&mut answer).unwrap(); // Ok(0) at the close_notify
//!         assert_eq!(answer, b"pong");
//!         srv.join().unwrap();
//!     },
//! );
//! ```

use super::stack::TcpStream;
use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

/// The `rustls` this module is built with (its types appear in the API:
/// configurations, server names, errors).
pub use ::rustls;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

/// A TLS connection over the stream `S` (a
/// [`TcpStream`] by default): a client made by
/// [`connect`](TlsStream::connect) or a server made by
/// [`accept`](TlsStream::accept), with the handshake done.
///
/// [`Read`] gives the peer's plaintext: `Ok(0)` once the peer has sent its
/// `close_notify` (a clean end), an `UnexpectedEof` error when the
/// connection ends without one (a truncation an attacker could have made).
/// [`Write`] encrypts and sends at once (each `write` returns once its
/// records are handed to the stream). End a connection with
/// [`shutdown`](TlsStream::shutdown) (or
/// [`close_notify`](TlsStream::close_notify) on another stream type), so
/// that the peer can tell the end from a truncation; dropping a
/// `TlsStream` only drops the stream under it.
///
/// Timeouts are the stream's: set them on
/// [`get_ref`](TlsStream::get_ref) (for a `TcpStream`,
/// [`set_read_timeout`](super::stack::TcpStream::set_read_timeout)); a
/// read that times out fails with `TimedOut` and leaves the TLS stream
/// usable, since a partial record is kept until the rest arrives.
pub struct TlsStream<S = TcpStream> {
    conn: Connection,
    sock: S,
    /// A close_notify was sent: writing is over.
    closed: bool,
}

impl<S> fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field(
                "side",
                &match self.conn {
                    Connection::Client(_) => "client",
                    Connection::Server(_) => "server",
                },
            )
            .field("version", &self.conn.protocol_version())
            .field("suite", &self.conn.negotiated_cipher_suite())
            .finish_non_exhaustive()
    }
}

/// A TLS failure: what mkernel was doing, and rustls's error (the
/// `source`).
#[derive(Debug)]
struct TlsError {
    what: &'static str,
    error: rustls::Error,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS {}: {}", self.what, self.error)
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.error)
    }
}

fn tls_error(what: &'static str, error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsError { what, error })
}

/// The `rustls::Error` behind an error of this module, if it is a TLS
/// failure (and not, say, a TCP reset).
///
/// ```
/// use std::error::Error;
/// # let e = std::io::Error::other("not TLS");
/// if let Some(tls) = mkernel::net::tls::rustls_error(&e) {
///     eprintln!("TLS said: {tls}");
/// }
/// // the same as
/// let _ = e.source().and_then(|s| s.downcast_ref::<mkernel::net::tls::rustls::Error>());
/// ```
#[must_use]
pub fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<TlsError>().map(|t| &t.error)
}

/// Cuts `pem` at its first NUL byte: PEM text read from a block device is
/// padded with zeros to whole sectors.
fn unpadded(pem: &[u8]) -> &[u8] {
    let end = pem.iter().position(|&b| b == 0).unwrap_or(pem.len());
    &pem[..end]
}

fn bad_pem(what: &str, e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// Every certificate (`BEGIN CERTIFICATE`) in the PEM text `pem`, in
/// order; other sections (a key) are skipped. Text from the first NUL byte
/// on is ignored (the padding of a block device).
///
/// # Errors
///
/// `InvalidData` saying why when the PEM is malformed or holds no
/// certificate.
pub fn certs_from_pem(pem: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(unpadded(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem("bad PEM certificate", e))?;
    if certs.is_empty() {
        return Err(bad_pem(
            "no certificate in the PEM text",
            "expected a BEGIN CERTIFICATE section",
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in the PEM text `pem`;
/// other sections are skipped. Text from the first NUL byte on is
/// ignored.
///
/// # Errors
///
/// `InvalidData` saying why when the PEM is malformed or holds no key.
pub fn key_from_pem(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(unpadded(pem)).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => bad_pem(
            "no private key in the PEM text",
            "expected a BEGIN PRIVATE KEY (or RSA/EC PRIVATE KEY) section",
        ),
        e => bad_pem("bad PEM private key", e),
    })
}

/// A server configuration (TLS 1.3 and 1.2, no client certificates) from
/// PEM text holding the certificate chain, the server's own certificate
/// first, and its private key: what a `cat cert.pem key.pem` gives.
///
/// ```
/// let key = rcgen::KeyPair::generate().unwrap();
/// let cert = rcgen::CertificateParams::new(vec!["example.test".into()])
///     .unwrap()
///     .self_signed(&key)
///     .unwrap();
/// let pem = format!("{}{}", cert.pem(), key.serialize_pem());
/// assert!(mkernel::net::tls::server_config_from_pem(pem.as_bytes()).is_ok());
/// // A clear error, not a panic, for a file holding no key:
/// let e = mkernel::net::tls::server_config_from_pem(cert.pem().as_bytes()).unwrap_err();
/// assert!(e.to_string().contains("no private key"));
/// ```
///
/// # Errors
///
/// `InvalidData` saying why: malformed PEM, no certificate, no key, or a
/// key that does not match the certificate (or that rustls cannot use).
pub fn server_config_from_pem(pem: &[u8]) -> io::Result<Arc<ServerConfig>> {
    let certs = certs_from_pem(pem)?;
    let key = key_from_pem(pem)?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("certificate and key refused", e))?;
    Ok(Arc::new(config))
}

/// A client configuration (no client certificate) trusting the
/// certificate authorities in the PEM text `pem` and nothing else.
///
/// # Errors
///
/// `InvalidData` saying why: malformed PEM, no certificate, or a
/// certificate that cannot be a trust anchor.
pub fn client_config_from_pem(pem: &[u8]) -> io::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs_from_pem(pem)? {
        roots
            .add(cert)
            .map_err(|e| tls_error("CA certificate refused", e))?;
    }
    Ok(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

impl<S: Read + Write> TlsStream<S> {
    /// Connects as a client over `sock` (an established TCP connection) to
    /// the server named `name` (checked against its certificate), and does
    /// the handshake.
    ///
    /// # Errors
    ///
    /// `InvalidData` with the `rustls::Error` as source when the handshake
    /// fails: the server's certificate is not trusted by `config`, has
    /// expired or is not yet valid, or is not for `name`
    /// (`rustls::Error::InvalidCertificate`), the server sent a fatal
    /// alert, or spoke no TLS. `UnexpectedEof` when the server closed the
    /// connection during the handshake. The stream's own errors otherwise.
    pub fn connect(
        sock: S,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream<S>> {
        let conn = ClientConnection::new(config, name)
            .map_err(|e| tls_error("client set-up failed", e))?;
        TlsStream::handshake(Connection::Client(conn), sock)
    }

    /// Accepts a client over `sock` (a connection from
    /// [`TcpListener::accept`](super::stack::TcpListener::accept)) as a
    /// server with `config`, and does the handshake.
    ///
    /// # Errors
    ///
    /// `InvalidData` with the `rustls::Error` as source when the handshake
    /// fails: the client refused the certificate (a fatal alert such as
    /// `UnknownCA`), offered nothing `config` accepts, or spoke no TLS.
    /// `UnexpectedEof` when the client closed the connection during the
    /// handshake. The stream's own errors otherwise.
    pub fn accept(sock: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
        let conn =
            ServerConnection::new(config).map_err(|e| tls_error("server set-up failed", e))?;
        TlsStream::handshake(Connection::Server(conn), sock)
    }

    fn handshake(conn: Connection, sock: S) -> io::Result<TlsStream<S>> {
        let mut s = TlsStream {
            conn,
            sock,
            closed: false,
        };
        while s.conn.is_handshaking() {
            s.send_tls()?;
            if s.conn.is_handshaking()
                && s.conn.wants_read()
                && s.recv_tls("handshake failed")? == 0
            {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS handshake failed: the peer closed the connection",
                ));
            }
        }
        // The last flight (the client's Finished, the server's tickets).
        s.send_tls()?;
        Ok(s)
    }

    /// Hands every pending TLS record to the stream.
    fn send_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }

    /// Reads TLS records from the stream (suspending until some arrive) and
    /// decrypts them. Returns how many bytes came: 0 at the end of the
    /// stream.
    fn recv_tls(&mut self, what: &'static str) -> io::Result<usize> {
        let n = self.conn.read_tls(&mut self.sock)?;
        if let Err(e) = self.conn.process_new_packets() {
            // rustls has queued a fatal alert telling the peer why: send it
            // (best effort, the error we return is the real news).
            let _ = self.send_tls();
            return Err(tls_error(what, e));
        }
        Ok(n)
    }

    /// Sends a `close_notify` alert: the peer's reads then end cleanly
    /// (`Ok(0)`) once they have everything written before. Writing after
    /// it fails. The stream stays open (it may still be read); for a
    /// [`TcpStream`], [`shutdown`](TlsStream::shutdown)
    /// also shuts its write side down.
    ///
    /// # Errors
    ///
    /// The stream's, when the alert cannot be written.
    pub fn close_notify(&mut self) -> io::Result<()> {
        if !self.closed {
            self.closed = true;
            self.conn.send_close_notify();
        }
        self.send_tls()?;
        self.sock.flush()
    }

    /// The stream under the TLS connection (to set timeouts, read its
    /// addresses). Reading or writing it directly breaks the TLS stream.
    #[must_use]
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// The stream under the TLS connection, mutably (see
    /// [`get_ref`](TlsStream::get_ref)).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sock
    }

    /// The rustls connection (negotiated version, cipher suite, ALPN
    /// protocol, the peer's certificates, the server name a client asked
    /// for).
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The stream, leaving the TLS connection where it is (without a
    /// `close_notify`).
    #[must_use]
    pub fn into_inner(self) -> S {
        self.sock
    }
}

impl TlsStream<TcpStream> {
    /// Ends the connection cleanly: a `close_notify` (after everything
    /// written before), then the TCP stream's write side is shut down
    /// (a FIN). The peer's reads end with `Ok(0)`. Reading the peer's last
    /// data and its own `close_notify` still works.
    ///
    /// # Errors
    ///
    /// The TCP stream's, when the alert cannot be written (the connection
    /// was reset, or its write side is already shut down).
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.close_notify()?;
        self.sock.shutdown(Shutdown::Write)
    }
}

impl<S: Read + Write> Read for TlsStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Data, the clean end (`Ok(0)` after close_notify), or a
                // truncation (`UnexpectedEof` after a bare TCP end).
                other => return other,
            }
            // Nothing decrypted yet: answer what the peer may wait for (a
            // key update), then wait for more records.
            self.send_tls()?;
            self.recv_tls("read failed")?;
        }
    }
}

impl<S: Read + Write> Write for TlsStream<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.closed {
            // rustls would still encrypt it, but the peer stops reading at
            // the close_notify.
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write on a TLS stream after its close_notify",
            ));
        }
        let mut n = self.conn.writer().write(data)?;
        if n == 0 {
            // rustls takes nothing while its send buffer is full: empty it
            // and try once more.
            self.send_tls()?;
            n = self.conn.writer().write(data)?;
        }
        self.send_tls()?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.send_tls()?;
        self.sock.flush()
    }
}

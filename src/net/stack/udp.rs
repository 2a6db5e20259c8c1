//! UDP: `UdpSocket`.

use super::Proto;
use super::tcp::check_timeout;
use super::{Cond, Inner, Stack, from_std, to_std};
use crate::fiber::WaitQueue;
use core::cell::Cell;
use core::fmt;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self as sudp, PacketBuffer, PacketMetadata, RecvError};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Datagrams queued per direction.
const UDP_PACKETS: usize = 64;
/// Bytes of datagram payload buffered per direction.
const UDP_BUFFER: usize = 64 * 1024;

/// A UDP socket bound to a local port.
///
/// As with `std`, it may be [`connect`](UdpSocket::connect)ed to a peer,
/// for [`send`](UdpSocket::send) and [`recv`](UdpSocket::recv), and its
/// receives and sends may have timeouts
/// ([`set_read_timeout`](UdpSocket::set_read_timeout)), past which they
/// fail with `TimedOut`.
///
/// ```
/// use mkernel::net::link;
/// use mkernel::net::stack::{Stack, StackConfig, UdpSocket};
///
/// let (a, b) = link::pair(link::Faults::default());
/// let got = mkernel::Builder::new()
///     .net_link("a", a)
///     .net_link("b", b)
///     .run((mkernel::net("a"), mkernel::net("b")), |(a, b)| {
///         let sa = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
///         let sb = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
///         let ua = UdpSocket::bind(&sa, 53).unwrap();
///         let ub = UdpSocket::bind(&sb, 0).unwrap();
///         ub.send_to(b"ping", "10.0.0.1:53".parse().unwrap()).unwrap();
///         let mut buf = [0u8; 16];
///         let (n, from) = ua.recv_from(&mut buf).unwrap();
///         assert_eq!(from, ub.local_addr().unwrap());
///         buf[..n].to_vec()
///     });
/// assert_eq!(got, b"ping");
/// ```
pub struct UdpSocket {
    stack: Stack,
    handle: SocketHandle,
    port: u16,
    rx: Rc<WaitQueue>,
    tx: Rc<WaitQueue>,
    peer: Cell<Option<SocketAddr>>,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UdpSocket({})", self.addr())
    }
}

impl UdpSocket {
    /// Binds UDP `port` (0: a free port). `AddrInUse` if it is taken.
    ///
    /// # Errors
    ///
    /// `AddrInUse` when `port` is taken, `AddrNotAvailable` when `port` is 0
    /// and no ephemeral port is free.
    pub fn bind(stack: &Stack, port: u16) -> io::Result<UdpSocket> {
        let inner = &stack.inner;
        let port = inner.claim_port(Proto::Udp, port)?;
        let buf = || {
            PacketBuffer::new(
                vec![PacketMetadata::EMPTY; UDP_PACKETS],
                vec![0; UDP_BUFFER],
            )
        };
        let mut s = sudp::Socket::new(buf(), buf());
        if let Err(e) = s.bind(port) {
            inner.free_port(Proto::Udp, port);
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bind UDP port {port}: {e}"),
            ));
        }
        let handle = inner.core.borrow_mut().sockets.add(s);
        Ok(UdpSocket {
            stack: stack.clone(),
            handle,
            port,
            rx: Rc::new(WaitQueue::new()),
            tx: Rc::new(WaitQueue::new()),
            peer: Cell::new(None),
            read_timeout: Cell::new(None),
            write_timeout: Cell::new(None),
        })
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.stack.config().ipv4.address().into(), self.port)
    }

    /// The local address (the stack's address and the port).
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr())
    }

    /// Connects the socket to `addr`: [`send`](UdpSocket::send) sends
    /// there, and [`recv`](UdpSocket::recv) receives only from there (as
    /// `std`: datagrams from other senders are discarded). Connecting again
    /// changes the peer. Nothing is sent.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an unspecified address or port 0.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, UdpSocket};
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let sa = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let sb = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let server = UdpSocket::bind(&sa, 53).unwrap();
    ///         let client = UdpSocket::bind(&sb, 0).unwrap();
    ///         assert!(client.peer_addr().is_err());
    ///         client.connect("10.0.0.1:53".parse().unwrap()).unwrap();
    ///         assert_eq!(client.peer_addr().unwrap(), "10.0.0.1:53".parse().unwrap());
    ///         client.send(b"ping").unwrap();
    ///         let mut buf = [0u8; 16];
    ///         let (n, from) = server.recv_from(&mut buf).unwrap();
    ///         server.send_to(&buf[..n], from).unwrap();
    ///         let n = client.recv(&mut buf).unwrap();
    ///         assert_eq!(&buf[..n], b"ping");
    ///     },
    /// );
    /// ```
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        from_std(addr)?;
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot connect a UDP socket to {addr}"),
            ));
        }
        self.peer.set(Some(addr));
        Ok(())
    }

    /// The peer of a [`connect`](UdpSocket::connect)ed socket.
    ///
    /// # Errors
    ///
    /// `NotConnected` when the socket is not connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer.get().ok_or_else(not_connected)
    }

    /// Sends one datagram to the connected peer (see
    /// [`send_to`](UdpSocket::send_to)).
    ///
    /// # Errors
    ///
    /// `NotConnected` when the socket is not connected; as
    /// [`send_to`](UdpSocket::send_to) otherwise.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        self.send_to(data, peer)
    }

    /// Receives one datagram from the connected peer into `buf` (see
    /// [`recv_from`](UdpSocket::recv_from)); datagrams from anyone else are
    /// discarded. Returns its length.
    ///
    /// # Errors
    ///
    /// `NotConnected` when the socket is not connected; as
    /// [`recv_from`](UdpSocket::recv_from) otherwise (`TimedOut` past the
    /// read timeout, counted from the call, whatever was discarded).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let peer = self.peer_addr()?;
        let deadline = Inner::deadline(self.read_timeout.get());
        self.recv_until(buf, deadline, Some(peer)).map(|(n, _)| n)
    }

    /// Sets the read timeout: how long [`recv_from`](UdpSocket::recv_from)
    /// and [`recv`](UdpSocket::recv) may wait before they fail with
    /// `TimedOut` (always `TimedOut`: `std` gives `WouldBlock` on Unix);
    /// `None` (the default): for ever. The socket stays usable.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as `std`.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, UdpSocket};
    /// use std::time::Duration;
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     let u = UdpSocket::bind(&stack, 0).unwrap();
    ///     u.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    ///     assert_eq!(u.read_timeout().unwrap(), Some(Duration::from_millis(10)));
    ///     let mut buf = [0u8; 8];
    ///     let e = u.recv_from(&mut buf).unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    /// });
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.read_timeout.set(timeout);
        Ok(())
    }

    /// Sets the write timeout: how long [`send_to`](UdpSocket::send_to)
    /// and [`send`](UdpSocket::send) may wait for room in the send buffer
    /// before they fail with `TimedOut`; `None` (the default): for ever.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as `std`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.write_timeout.set(timeout);
        Ok(())
    }

    /// The read timeout (see [`set_read_timeout`](UdpSocket::set_read_timeout)).
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout.get())
    }

    /// The write timeout (see [`set_write_timeout`](UdpSocket::set_write_timeout)).
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout.get())
    }

    /// Sends one datagram to `addr`, suspending this task while the send
    /// buffer is full. A datagram larger than the buffer is an error.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a datagram larger than the send buffer or an
    /// address smoltcp refuses (an IPv6 address without `--ipv6`),
    /// `TimedOut` past the write timeout, `Interrupted` when the task is
    /// being cancelled.
    pub fn send_to(&self, data: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let remote = from_std(addr)?;
        let inner = &self.stack.inner;
        let h = self.handle;
        let deadline = Inner::deadline(self.write_timeout.get());
        inner.block_on_until(Cond::UdpSend(h), &self.tx, deadline, |core| {
            let s = core.sockets.get_mut::<sudp::Socket>(h);
            if data.len() > s.payload_send_capacity() {
                return Some(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "a datagram of {} bytes is larger than the send buffer ({})",
                        data.len(),
                        s.payload_send_capacity()
                    ),
                )));
            }
            match s.send_slice(data, remote) {
                Ok(()) => Some(Ok(data.len())),
                Err(sudp::SendError::BufferFull) => None,
                Err(e) => Some(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("UDP send to {addr}: {e}"),
                ))),
            }
        })?;
        inner.poll();
        Ok(data.len())
    }

    /// Receives one datagram into `buf`, suspending this task until one
    /// arrives; returns its length and sender. A datagram larger than `buf`
    /// is truncated (the rest is discarded), as with `std`.
    ///
    /// # Errors
    ///
    /// `TimedOut` past the read timeout, `Interrupted` when the task is
    /// being cancelled; `Other` for an error of smoltcp's socket.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let deadline = Inner::deadline(self.read_timeout.get());
        self.recv_until(buf, deadline, None)
    }

    /// Receives one datagram (from `only`, if given; others are discarded)
    /// by `deadline`.
    fn recv_until(
        &self,
        buf: &mut [u8],
        deadline: Option<u64>,
        only: Option<SocketAddr>,
    ) -> io::Result<(usize, SocketAddr)> {
        let inner = &self.stack.inner;
        let h = self.handle;
        inner.block_on_until(Cond::UdpRecv(h), &self.rx, deadline, |core| {
            let s = core.sockets.get_mut::<sudp::Socket>(h);
            loop {
                match s.recv() {
                    Ok((data, meta)) => {
                        let from = to_std(meta.endpoint);
                        if only.is_some_and(|p| p != from) {
                            // Not from the connected peer: discarded.
                            continue;
                        }
                        let n = data.len().min(buf.len());
                        buf[..n].copy_from_slice(&data[..n]);
                        return Some(Ok((n, from)));
                    }
                    Err(RecvError::Exhausted) => return None,
                    Err(e) => return Some(Err(io::Error::other(format!("UDP receive: {e}")))),
                }
            }
        })
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.inner.release_udp(self.handle);
    }
}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the UDP socket is not connected",
    )
}

//! UDP: `UdpSocket`.

use super::Proto;
use super::{Cond, Stack, from_std, to_std};
use crate::fiber::WaitQueue;
use core::fmt;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self as sudp, PacketBuffer, PacketMetadata, RecvError};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

/// Datagrams queued per direction.
const UDP_PACKETS: usize = 64;
/// Bytes of datagram payload buffered per direction.
const UDP_BUFFER: usize = 64 * 1024;

/// A UDP socket bound to a local port.
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
///         assert_eq!(from, ub.local_addr());
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
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UdpSocket({})", self.local_addr())
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
        })
    }

    /// The local address (the stack's address and the port).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.stack.config().ipv4.address().into(), self.port)
    }

    /// Sends one datagram to `addr`, suspending this task while the send
    /// buffer is full. A datagram larger than the buffer is an error.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a datagram larger than the send buffer or an
    /// address smoltcp refuses, `Unsupported` for an IPv6 address,
    /// `Interrupted` when the task is being cancelled.
    pub fn send_to(&self, data: &[u8], addr: SocketAddr) -> io::Result<usize> {
        let remote = from_std(addr)?;
        let inner = &self.stack.inner;
        let h = self.handle;
        inner.block_on(Cond::UdpSend(h), &self.tx, |core| {
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
    /// `Interrupted` when the task is being cancelled; `Other` for an error
    /// of smoltcp's socket.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let inner = &self.stack.inner;
        let h = self.handle;
        inner.block_on(Cond::UdpRecv(h), &self.rx, |core| {
            let s = core.sockets.get_mut::<sudp::Socket>(h);
            match s.recv() {
                Ok((data, meta)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    Some(Ok((n, to_std(meta.endpoint))))
                }
                Err(RecvError::Exhausted) => None,
                Err(e) => Some(Err(io::Error::other(format!("UDP receive: {e}")))),
            }
        })
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.stack.inner.release_udp(self.handle);
    }
}

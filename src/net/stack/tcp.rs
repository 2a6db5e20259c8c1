//! TCP: `TcpListener` and `TcpStream`.

use super::Proto;
use super::{Cond, Core, Stack, TCP_BUFFER, from_std, to_std};
use crate::fiber::WaitQueue;
use core::cell::{Cell, RefCell};
use core::fmt;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self as stcp, RecvError, SocketBuffer, State};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

fn new_socket() -> stcp::Socket<'static> {
    stcp::Socket::new(
        SocketBuffer::new(vec![0; TCP_BUFFER]),
        SocketBuffer::new(vec![0; TCP_BUFFER]),
    )
}

/// A TCP server socket: [`accept`](TcpListener::accept) waits for a
/// connection.
///
/// smoltcp has no listen queue: a listening socket becomes the
/// connection. A listener keeps `backlog` listening sockets ready
/// ([`DEFAULT_BACKLOG`](super::DEFAULT_BACKLOG) with [`bind`](TcpListener::bind));
/// a connection arriving while all are taken (handshaking or waiting for
/// `accept`) is refused with a reset.
///
/// Dropping the listener closes its listening sockets (accepted streams
/// live on).
pub struct TcpListener {
    stack: Stack,
    port: u16,
    backlog: usize,
    pending: Rc<RefCell<Vec<SocketHandle>>>,
    queue: Rc<WaitQueue>,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TcpListener({}:{})",
            self.stack.config().ipv4.address(),
            self.port
        )
    }
}

impl TcpListener {
    /// Listens on TCP `port` of every address of the stack (0: a free
    /// port, see [`local_port`](TcpListener::local_port)). Fails with
    /// `AddrInUse` if the port is already bound.
    ///
    /// # Errors
    ///
    /// `AddrInUse` when `port` is taken, `AddrNotAvailable` when `port` is 0
    /// and no ephemeral port is free.
    pub fn bind(stack: &Stack, port: u16) -> io::Result<TcpListener> {
        TcpListener::bind_with_backlog(stack, port, super::DEFAULT_BACKLOG)
    }

    /// Like [`bind`](TcpListener::bind), with `backlog` listening sockets
    /// (at least 1; each has its buffers, 2 × [`TCP_BUFFER`] bytes).
    ///
    /// # Errors
    ///
    /// As [`bind`](TcpListener::bind).
    pub fn bind_with_backlog(stack: &Stack, port: u16, backlog: usize) -> io::Result<TcpListener> {
        let inner = &stack.inner;
        let port = inner.claim_port(Proto::Tcp, port)?;
        let backlog = backlog.max(1);
        let mut pending = Vec::with_capacity(backlog);
        {
            let mut core = inner.core.borrow_mut();
            for _ in 0..backlog {
                let mut s = new_socket();
                s.listen(port).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("listen on {port}: {e}"),
                    )
                })?;
                pending.push(core.sockets.add(s));
            }
        }
        Ok(TcpListener {
            stack: stack.clone(),
            port,
            backlog,
            pending: Rc::new(RefCell::new(pending)),
            queue: Rc::new(WaitQueue::new()),
        })
    }

    /// The port listened on.
    #[must_use]
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// The address listened on (the stack's address and the port).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.stack.config().ipv4.address().into(), self.port)
    }

    /// Waits for a connection (suspending only this task) and returns it
    /// with the peer's address.
    ///
    /// # Errors
    ///
    /// `Interrupted` when the task is being cancelled (from a destructor of a
    /// cancelled task, which cannot wait).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let inner = &self.stack.inner;
        let port = self.port;
        loop {
            let pending = self.pending.clone();
            let h = inner.block_on(Cond::Accept(pending.clone()), &self.queue, |core| {
                let mut p = pending.borrow_mut();
                let i = p.iter().position(|h| {
                    !matches!(
                        core.sockets.get::<stcp::Socket>(*h).state(),
                        State::Listen | State::SynReceived
                    )
                })?;
                let h = p.remove(i);
                let mut s = new_socket();
                if s.listen(port).is_ok() {
                    p.push(core.sockets.add(s));
                }
                Some(Ok(h))
            })?;
            let stream = TcpStream::new(&self.stack, h, None);
            match stream.peer_addr() {
                Ok(peer) => return Ok((stream, peer)),
                // Reset before it was accepted: forget it.
                Err(_) => drop(stream),
            }
        }
    }

    /// How many listening sockets this listener keeps ready.
    #[must_use]
    pub fn backlog(&self) -> usize {
        self.backlog
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let inner = &self.stack.inner;
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for h in pending {
            inner.release_tcp(h, None);
        }
        inner.free_port(Proto::Tcp, self.port);
    }
}

/// A TCP connection. Reads and writes suspend only the calling task.
///
/// Dropping a stream closes it gracefully (what was written is still
/// delivered, then a FIN); the socket leaves the stack once the close is
/// done, or is reset after 30 s. A stream dropped with unread received
/// data is reset at once instead, as BSD sockets do. Errors are `std::io::Error`s:
/// `ConnectionRefused`, `ConnectionReset`, `BrokenPipe` (write after
/// [`shutdown`](TcpStream::shutdown)).
pub struct TcpStream {
    stack: Stack,
    handle: SocketHandle,
    /// The ephemeral port this stream took (outgoing connections).
    port: Option<u16>,
    rx: Rc<WaitQueue>,
    tx: Rc<WaitQueue>,
    fin_seen: Cell<bool>,
    shut_write: Cell<bool>,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl TcpStream {
    fn new(stack: &Stack, handle: SocketHandle, port: Option<u16>) -> TcpStream {
        TcpStream {
            stack: stack.clone(),
            handle,
            port,
            rx: Rc::new(WaitQueue::new()),
            tx: Rc::new(WaitQueue::new()),
            fin_seen: Cell::new(false),
            shut_write: Cell::new(false),
        }
    }

    /// Connects to `addr`, suspending this task until the connection is
    /// established. A reset answer is `ConnectionRefused`.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when the peer answers with a reset, `Unsupported`
    /// for an IPv6 address, `InvalidInput` for an address smoltcp refuses
    /// (e.g. port 0), `AddrNotAvailable` when no ephemeral port is free,
    /// `Interrupted` when the task is being cancelled.
    pub fn connect(stack: &Stack, addr: SocketAddr) -> io::Result<TcpStream> {
        let remote = from_std(addr)?;
        let inner = &stack.inner;
        let port = inner.claim_port(Proto::Tcp, 0)?;
        let h = {
            let mut core = inner.core.borrow_mut();
            let Core { iface, sockets, .. } = &mut *core;
            let mut s = new_socket();
            match s.connect(iface.context(), remote, port) {
                Ok(()) => sockets.add(s),
                Err(e) => {
                    drop(core);
                    inner.free_port(Proto::Tcp, port);
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("connect to {addr}: {e}"),
                    ));
                }
            }
        };
        // From here, dropping `stream` (error, cancellation) cleans up.
        let stream = TcpStream::new(stack, h, Some(port));
        inner.poll();
        inner.block_on(Cond::TcpSend(h), &stream.tx, |core| {
            match core.sockets.get::<stcp::Socket>(h).state() {
                State::SynSent | State::SynReceived => None,
                State::Closed => Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("connection to {addr} refused"),
                ))),
                _ => Some(Ok(())),
            }
        })?;
        Ok(stream)
    }

    /// Reads what has arrived into `buf`, suspending this task until
    /// something has. `Ok(0)` at the end of the stream (the peer shut its
    /// write side down) or when `buf` is empty.
    ///
    /// # Errors
    ///
    /// `ConnectionReset` when the connection was reset (or aborted),
    /// `Interrupted` when the task is being cancelled.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let inner = &self.stack.inner;
        let h = self.handle;
        let n = inner.block_on(Cond::TcpRecv(h), &self.rx, |core| {
            let s = core.sockets.get_mut::<stcp::Socket>(h);
            match s.recv_slice(buf) {
                Ok(0) => None,
                Ok(n) => Some(Ok(n)),
                Err(RecvError::Finished) => {
                    self.fin_seen.set(true);
                    Some(Ok(0))
                }
                Err(RecvError::InvalidState) => {
                    if self.fin_seen.get() {
                        Some(Ok(0))
                    } else {
                        Some(Err(reset()))
                    }
                }
            }
        })?;
        if n > 0 {
            // The window opened: tell the peer now.
            inner.poll();
        }
        Ok(n)
    }

    /// Queues some of `data` for sending (suspending this task while the
    /// send buffer is full) and sends what it can at once. Returns how many
    /// bytes were queued.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` when the write side is shut down or the connection is
    /// closing or gone, `Interrupted` when the task is being cancelled.
    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let inner = &self.stack.inner;
        let h = self.handle;
        let n =
            inner.block_on(Cond::TcpSend(h), &self.tx, |core| {
                let s = core.sockets.get_mut::<stcp::Socket>(h);
                if !s.may_send() {
                    return Some(Err(if self.shut_write.get() {
                        io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "write on a TCP stream whose write side is shut down",
                        )
                    } else if s.state() == State::Closed {
                        reset()
                    } else {
                        io::Error::new(io::ErrorKind::BrokenPipe, "the TCP connection is closing")
                    }));
                }
                if !s.can_send() {
                    return None;
                }
                Some(s.send_slice(data).map_err(|e| {
                    io::Error::new(io::ErrorKind::BrokenPipe, format!("TCP send: {e}"))
                }))
            })?;
        inner.poll();
        Ok(n)
    }

    /// Writes all of `data`, suspending this task as needed.
    ///
    /// # Errors
    ///
    /// As [`write`](TcpStream::write); some of `data` may have been queued.
    pub fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.write(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Shuts the write side down: what was written is sent, then a FIN.
    /// Reading still works until the peer closes its side.
    ///
    /// # Errors
    ///
    /// None today: the `Result` is the shape of `std`'s.
    pub fn shutdown(&self) -> io::Result<()> {
        let inner = &self.stack.inner;
        self.shut_write.set(true);
        inner
            .core
            .borrow_mut()
            .sockets
            .get_mut::<stcp::Socket>(self.handle)
            .close();
        super::nudge_fin(&mut inner.core.borrow_mut().sockets, self.handle);
        inner.poll();
        Ok(())
    }

    /// Closes the stream (as dropping it does): a graceful close in the
    /// background.
    pub fn close(self) {
        drop(self)
    }

    /// The peer's address; `NotConnected` once the connection is gone.
    ///
    /// # Errors
    ///
    /// `NotConnected` once the connection is gone.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint(|s| s.remote_endpoint())
    }

    /// The local address; `NotConnected` once the connection is gone.
    ///
    /// # Errors
    ///
    /// `NotConnected` once the connection is gone.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.endpoint(|s| s.local_endpoint())
    }

    fn endpoint(
        &self,
        f: impl FnOnce(&stcp::Socket<'static>) -> Option<smoltcp::wire::IpEndpoint>,
    ) -> io::Result<SocketAddr> {
        let core = self.stack.inner.core.borrow();
        f(core.sockets.get::<stcp::Socket>(self.handle))
            .map(to_std)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "the TCP connection is closed")
            })
    }

    /// Disables (true) or enables (false, the default) Nagle's algorithm.
    pub fn set_nodelay(&self, nodelay: bool) {
        self.stack
            .inner
            .core
            .borrow_mut()
            .sockets
            .get_mut::<stcp::Socket>(self.handle)
            .set_nagle_enabled(!nodelay);
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer")
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.stack.inner.release_tcp(self.handle, self.port);
    }
}

impl io::Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::read(self, buf)
    }
}

impl io::Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::read(self, buf)
    }
}

impl io::Write for TcpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        TcpStream::write(self, data)
    }
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        TcpStream::write_all(self, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for &TcpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        TcpStream::write(self, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

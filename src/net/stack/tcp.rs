//! TCP: `TcpListener` and `TcpStream`.

use super::Proto;
use super::sockets::Sock;
use super::{
    Cond, Core, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEEPALIVE, DEFAULT_PEER_TIMEOUT,
    DEFAULT_SYN_TIMEOUT, Inner, Stack, from_std, to_std,
};
use crate::fiber::WaitQueue;
use core::cell::{Cell, RefCell};
use core::fmt;
use smoltcp::socket::tcp::{self as stcp, RecvError, SocketBuffer, State};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

/// A socket with buffers of `rx` and `tx` bytes.
fn new_socket((rx, tx): (usize, usize)) -> stcp::Socket<'static> {
    stcp::Socket::new(
        SocketBuffer::new(vec![0; rx]),
        SocketBuffer::new(vec![0; tx]),
    )
}

fn smol(d: Option<Duration>) -> Option<smoltcp::time::Duration> {
    d.map(|d| smoltcp::time::Duration::from_micros(d.as_micros().min(u64::MAX as u128) as u64))
}

fn std_duration(d: Option<smoltcp::time::Duration>) -> Option<Duration> {
    d.map(|d| Duration::from_micros(d.total_micros()))
}

/// A read or write timeout as `std` takes it: `Some(0)` is refused.
pub(super) fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        ));
    }
    Ok(())
}

/// A connection's bounds, as a new stream gets them: the peer timeout
/// ([`DEFAULT_PEER_TIMEOUT`]) and keep-alive probes ([`DEFAULT_KEEPALIVE`]).
fn stream_defaults(s: &mut stcp::Socket<'static>) {
    s.set_timeout(smol(Some(DEFAULT_PEER_TIMEOUT)));
    s.set_keep_alive(smol(Some(DEFAULT_KEEPALIVE)));
}

/// Makes `s` (closed) a listening socket of a listener.
fn listen_on(
    s: &mut stcp::Socket<'static>,
    port: u16,
    syn_timeout: Option<Duration>,
) -> io::Result<()> {
    s.set_timeout(smol(syn_timeout));
    s.set_keep_alive(None);
    s.set_nagle_enabled(true);
    s.listen(port).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("listen on {port}: {e}"),
        )
    })
}

/// What the stack knows of a listener, to tend its sockets between polls
/// ([`tend`]) without a task in `accept`.
pub(crate) struct Listening {
    port: u16,
    /// Its sockets: listening, handshaking, or connected and not yet
    /// accepted.
    pending: Rc<RefCell<Vec<Sock>>>,
    syn_timeout: Cell<Option<Duration>>,
    /// How many sockets `pending` holds when the connection cap allows.
    backlog: usize,
    /// Buffer sizes (receive, send) of its new sockets.
    buffers: Cell<(usize, usize)>,
}

/// Whether a listener has fewer sockets than its backlog (the connection
/// cap held back the replacement of an accepted one).
pub(crate) fn short(listeners: &[Rc<Listening>]) -> bool {
    listeners
        .iter()
        .any(|l| l.pending.borrow().len() < l.backlog)
}

/// Before and after each poll of the interface: a listener's socket whose
/// handshake failed (its SYN-RECEIVED timeout expired, or the peer reset
/// it, also after the handshake but before `accept`) listens again; one
/// whose handshake completed gets a stream's bounds (the SYN-RECEIVED
/// timeout must not cut a connection waiting for `accept`); and the device
/// learns how many listening sockets each listener has ready (its SYN
/// queue holds the SYNs beyond). A listener short of sockets (held back
/// by the connection cap) gets new listening ones while the cap allows.
/// Returns how many handshakes failed.
pub(crate) fn tend(core: &mut Core, listeners: &[Rc<Listening>]) -> u64 {
    let mut failed = 0;
    core.phy.free.clear();
    for l in listeners {
        let mut pending = l.pending.borrow_mut();
        while pending.len() < l.backlog && core.below_cap() {
            let mut s = new_socket(l.buffers.get());
            if listen_on(&mut s, l.port, l.syn_timeout.get()).is_err() {
                break;
            }
            pending.push(core.add_tcp(s));
        }
        drop(pending);
        let mut free = 0;
        for &h in l.pending.borrow().iter() {
            let s = core.tcp(h);
            match s.state() {
                State::Listen => free += 1,
                State::SynReceived => {}
                State::Closed => {
                    failed += 1;
                    if listen_on(s, l.port, l.syn_timeout.get()).is_ok() {
                        free += 1;
                    }
                }
                _ => {
                    // A listening socket has no keep-alive: this one has
                    // not had its stream bounds yet.
                    if s.keep_alive().is_none() {
                        stream_defaults(s);
                    }
                    core.promote(h);
                }
            }
        }
        core.phy.free.insert(l.port, free);
    }
    failed
}

/// A TCP server socket: [`accept`](TcpListener::accept) waits for a
/// connection.
///
/// smoltcp has no listen queue: a listening socket becomes the
/// connection. A listener has `backlog` sockets
/// ([`DEFAULT_BACKLOG`](super::DEFAULT_BACKLOG) with [`bind`](TcpListener::bind)),
/// each listening, handshaking (SYN-RECEIVED) or connected and waiting for
/// `accept`; `accept` replaces the socket it takes with a new listening one.
///
/// # Under load and under attack
///
/// - **Full backlog: the SYN waits, it is not refused.** A SYN arriving
///   while no socket of the listener is listening is set aside in the
///   stack's SYN queue (1,024 SYNs of IPv4 and IPv6 for all listeners,
///   ~100 KiB) and handed over as soon as one is (a task accepted a
///   connection, a handshake failed). A SYN that waited 1 s, or finds the queue full, is dropped,
///   and the client sends it again (Linux after 1, 3, 7, 15... s), as
///   with a full Linux listen queue. [`Stack::stats`](super::Stack::stats)
///   counts them. A SYN to a port nobody listens on is still reset.
/// - **Half-open connections expire.** A handshake whose peer never
///   answers our SYN-ACK (spoofed SYNs, a peer that vanished) ends after
///   the SYN-RECEIVED timeout ([`DEFAULT_SYN_TIMEOUT`],
///   5 s; [`set_syn_timeout`](TcpListener::set_syn_timeout)), and its
///   socket listens again, with no task in `accept` needed. So a SYN flood
///   holds the backlog for at most that long after it stops.
/// - Accepted streams are bounded too: see [`TcpStream::set_peer_timeout`].
///
/// - **At the stack's connection cap** ([`Stack::max_connections`](super::Stack::max_connections),
///   derived from the heap on Solo5) a connection that `accept` takes is
///   not replaced by a new listening socket until a connection has left
///   the stack: new SYNs wait in the SYN queue or are dropped (and sent
///   again), established connections are served on, nothing is reset.
///
/// Memory: each socket of the backlog has its buffers, 2 ×
/// [`TCP_BUFFER`](super::TCP_BUFFER) by default (32 KiB, allocated zeroed:
/// hosted, untouched pages of a listening socket are not resident); an
/// accepted stream keeps its listening socket's buffers. See
/// [`set_buffers`](TcpListener::set_buffers).
///
/// Dropping the listener closes its listening sockets (accepted streams
/// live on).
pub struct TcpListener {
    stack: Stack,
    port: u16,
    backlog: usize,
    listening: Rc<Listening>,
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
    /// (at least 1; each has its buffers, of the stack's
    /// [`tcp_buffers`](super::Stack::tcp_buffers) sizes).
    ///
    /// # Errors
    ///
    /// As [`bind`](TcpListener::bind).
    pub fn bind_with_backlog(stack: &Stack, port: u16, backlog: usize) -> io::Result<TcpListener> {
        let inner = &stack.inner;
        let port = inner.claim_port(Proto::Tcp, port)?;
        let backlog = backlog.max(1);
        let buffers = inner.tcp_buffers.get();
        let mut pending = Vec::with_capacity(backlog);
        {
            let mut core = inner.core.borrow_mut();
            for _ in 0..backlog {
                let mut s = new_socket(buffers);
                if let Err(e) = listen_on(&mut s, port, Some(DEFAULT_SYN_TIMEOUT)) {
                    for h in pending {
                        core.remove_tcp(h);
                    }
                    drop(core);
                    inner.free_port(Proto::Tcp, port);
                    return Err(e);
                }
                pending.push(core.add_tcp(s));
            }
        }
        let listening = Rc::new(Listening {
            port,
            pending: Rc::new(RefCell::new(pending)),
            syn_timeout: Cell::new(Some(DEFAULT_SYN_TIMEOUT)),
            backlog,
            buffers: Cell::new(buffers),
        });
        inner.listeners.borrow_mut().push(listening.clone());
        Ok(TcpListener {
            stack: stack.clone(),
            port,
            backlog,
            listening,
            queue: Rc::new(WaitQueue::new()),
        })
    }

    /// Sets how long a handshake may stay in SYN-RECEIVED (our SYN-ACK
    /// sent, the peer's ACK awaited) before its socket listens again;
    /// `None`: for ever (a peer that never answers then holds a socket of
    /// the backlog for good). Default [`DEFAULT_SYN_TIMEOUT`].
    /// Applies to the handshakes that start from now on.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, DEFAULT_SYN_TIMEOUT};
    /// use std::time::Duration;
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     let l = TcpListener::bind(&stack, 80).unwrap();
    ///     assert_eq!(l.syn_timeout(), Some(DEFAULT_SYN_TIMEOUT));
    ///     l.set_syn_timeout(Some(Duration::from_secs(2)));
    ///     assert_eq!(l.syn_timeout(), Some(Duration::from_secs(2)));
    /// });
    /// ```
    pub fn set_syn_timeout(&self, timeout: Option<Duration>) {
        self.listening.syn_timeout.set(timeout);
        let mut core = self.stack.inner.core.borrow_mut();
        for &h in self.listening.pending.borrow().iter() {
            let s = core.tcp(h);
            if s.state() == State::Listen {
                s.set_timeout(smol(timeout));
            }
        }
    }

    /// Sets the sizes in bytes of the receive and send buffers of this
    /// listener's sockets, and so of the streams it accepts (at least 1
    /// byte each). Its listening sockets that no SYN has reached yet are
    /// made again at once with the new sizes. Default: the stack's
    /// [`tcp_buffers`](super::Stack::tcp_buffers) when bound.
    ///
    /// A connection's buffers bound its throughput (smoltcp's window is the
    /// receive buffer) and its memory: a bulk service may want 256 KiB, a
    /// service of many small requests 4 KiB. The stack's derived connection
    /// cap counts the stack's sizes, not these: set the cap too
    /// ([`Stack::set_max_connections`](super::Stack::set_max_connections))
    /// when they are much larger.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TCP_BUFFER};
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     let l = TcpListener::bind(&stack, 80).unwrap();
    ///     assert_eq!(l.buffers(), (TCP_BUFFER, TCP_BUFFER));
    ///     l.set_buffers(4096, 8192);
    ///     assert_eq!(l.buffers(), (4096, 8192));
    /// });
    /// ```
    pub fn set_buffers(&self, rx: usize, tx: usize) {
        let b = (rx.max(1), tx.max(1));
        self.listening.buffers.set(b);
        let mut core = self.stack.inner.core.borrow_mut();
        let mut pending = self.listening.pending.borrow_mut();
        for h in pending.iter_mut() {
            if core.tcp_ref(*h).state() != State::Listen {
                continue;
            }
            let mut s = new_socket(b);
            if listen_on(&mut s, self.port, self.listening.syn_timeout.get()).is_ok() {
                core.remove_tcp(*h);
                *h = core.add_tcp(s);
            }
        }
    }

    /// The buffer sizes (receive, send) of this listener's new sockets
    /// (see [`set_buffers`](TcpListener::set_buffers)).
    #[must_use]
    pub fn buffers(&self) -> (usize, usize) {
        self.listening.buffers.get()
    }

    /// The SYN-RECEIVED timeout (see [`set_syn_timeout`](TcpListener::set_syn_timeout)).
    #[must_use]
    pub fn syn_timeout(&self) -> Option<Duration> {
        self.listening.syn_timeout.get()
    }

    /// The port listened on.
    #[must_use]
    pub fn local_port(&self) -> u16 {
        self.port
    }

    /// The address listened on (the stack's address and the port).
    ///
    /// # Errors
    ///
    /// None today (the `Result` is `std`'s shape).
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener};
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///     let l = TcpListener::bind(&stack, 80).unwrap();
    ///     assert_eq!(l.local_addr().unwrap(), "10.0.0.1:80".parse().unwrap());
    /// });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::new(
            self.stack.config().ipv4.address().into(),
            self.port,
        ))
    }

    /// An endless iterator of connections, as `std`'s: each item is
    /// [`accept`](TcpListener::accept)'s stream, without the peer's address.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
    /// use std::io::{Read, Write};
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let l = TcpListener::bind(&server, 7).unwrap();
    ///         let srv = mkernel::spawn(move || {
    ///             for s in l.incoming().take(2) {
    ///                 s.unwrap().write_all(b"hi").unwrap();
    ///             }
    ///         });
    ///         for _ in 0..2 {
    ///             let mut c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap()).unwrap();
    ///             let mut buf = [0u8; 2];
    ///             c.read_exact(&mut buf).unwrap();
    ///             assert_eq!(&buf, b"hi");
    ///         }
    ///         srv.join().unwrap();
    ///     },
    /// );
    /// ```
    #[must_use]
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
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
        let syn_timeout = self.listening.syn_timeout.get();
        loop {
            let pending = self.listening.pending.clone();
            let h = inner.block_on(Cond::Accept(pending.clone()), &self.queue, |core| {
                let mut p = pending.borrow_mut();
                let i = p.iter().position(|h| {
                    !matches!(core.tcp_ref(*h).state(), State::Listen | State::SynReceived)
                })?;
                let h = p.remove(i);
                let s = core.tcp(h);
                if s.keep_alive().is_none() {
                    stream_defaults(s);
                }
                core.promote(h);
                // At the connection cap, the listener stays short of this
                // socket until a connection leaves (`tend` makes it then).
                let mut s = new_socket(self.listening.buffers.get());
                if core.below_cap() && listen_on(&mut s, port, syn_timeout).is_ok() {
                    p.push(core.add_tcp(s));
                    if let Some(n) = core.phy.free.get_mut(&port) {
                        *n += 1;
                    }
                }
                Some(Ok(h))
            })?;
            // A SYN waiting for a listening socket gets this one now.
            if inner.core.borrow().phy.holds_for(port) {
                inner.poll();
            }
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

/// The iterator of [`TcpListener::incoming`]: never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let inner = &self.stack.inner;
        inner
            .listeners
            .borrow_mut()
            .retain(|l| !Rc::ptr_eq(l, &self.listening));
        inner.core.borrow_mut().phy.free.remove(&self.port);
        let pending = std::mem::take(&mut *self.listening.pending.borrow_mut());
        for h in pending {
            inner.release_tcp(h, None);
        }
        inner.free_port(Proto::Tcp, self.port);
    }
}

/// A TCP connection. Reads and writes suspend only the calling task.
///
/// A connection whose peer vanished (crashed, unplugged, or just stopped
/// answering) does not live for ever: when the peer has sent nothing for
/// the peer timeout ([`DEFAULT_PEER_TIMEOUT`],
/// 60 s) the connection is reset, and reads and writes fail with
/// `ConnectionReset`. An idle connection whose peer is alive stays open:
/// keep-alive probes ([`DEFAULT_KEEPALIVE`], every
/// 15 s of silence) make the peer answer. So a peer that stops
/// acknowledging a download is given up 60 s after its last segment,
/// instead of being retransmitted to for ever. See
/// [`set_peer_timeout`](TcpStream::set_peer_timeout) and
/// [`set_keepalive`](TcpStream::set_keepalive). A `connect` to a peer that
/// never answers fails with `TimedOut` after [`DEFAULT_CONNECT_TIMEOUT`]
/// (20 s; [`connect_timeout`](TcpStream::connect_timeout) for another
/// bound).
///
/// Reads and writes wait for ever by default;
/// [`set_read_timeout`](TcpStream::set_read_timeout) and
/// [`set_write_timeout`](TcpStream::set_write_timeout) bound each call,
/// which then fails with `TimedOut` and leaves the stream usable. Any
/// blocking code can also be bounded from outside with
/// [`mkernel::timeout`](crate::timeout).
///
/// Dropping a stream closes it gracefully (what was written is still
/// delivered, then a FIN); the socket leaves the stack once the close is
/// done, or is reset after 30 s. A stream dropped with unread received
/// data is reset at once instead, as BSD sockets do. Errors are `std::io::Error`s:
/// `ConnectionRefused`, `ConnectionReset`, `BrokenPipe` (write after
/// [`shutdown`](TcpStream::shutdown)).
pub struct TcpStream {
    stack: Stack,
    handle: Sock,
    /// The ephemeral port this stream took (outgoing connections).
    port: Option<u16>,
    rx: Rc<WaitQueue>,
    tx: Rc<WaitQueue>,
    fin_seen: Cell<bool>,
    shut_write: Cell<bool>,
    shut_read: Cell<bool>,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
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
    fn new(stack: &Stack, handle: Sock, port: Option<u16>) -> TcpStream {
        TcpStream {
            stack: stack.clone(),
            handle,
            port,
            rx: Rc::new(WaitQueue::new()),
            tx: Rc::new(WaitQueue::new()),
            fin_seen: Cell::new(false),
            shut_write: Cell::new(false),
            shut_read: Cell::new(false),
            read_timeout: Cell::new(None),
            write_timeout: Cell::new(None),
        }
    }

    /// Connects to `addr`, suspending this task until the connection is
    /// established, for at most [`DEFAULT_CONNECT_TIMEOUT`] (20 s: the SYN
    /// is sent 5 times). A reset answer is `ConnectionRefused`.
    ///
    /// # Errors
    ///
    /// `ConnectionRefused` when the peer answers with a reset, `TimedOut`
    /// when nobody answers within [`DEFAULT_CONNECT_TIMEOUT`],
    /// `InvalidInput` for an address smoltcp refuses (e.g. port 0, or an
    /// address of a family the stack has no address of: IPv6 without
    /// `--ipv6`), `AddrNotAvailable` when no ephemeral port is free,
    /// `Interrupted` when the task is being cancelled.
    pub fn connect(stack: &Stack, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_within(stack, addr, DEFAULT_CONNECT_TIMEOUT)
    }

    /// Connects to `addr` as [`connect`](TcpStream::connect) does, giving
    /// up with `TimedOut` after `timeout` (the SYN is sent again at 1, 3, 7,
    /// 15... s meanwhile). As with `std`, a zero `timeout` is an error.
    ///
    /// # Errors
    ///
    /// As [`connect`](TcpStream::connect), with `TimedOut` after `timeout`;
    /// `InvalidInput` for a zero `timeout`.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpStream};
    /// use std::time::Duration;
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///     // Nobody is at 10.0.0.9.
    ///     let t0 = mkernel::clock_monotonic();
    ///     let e = TcpStream::connect_timeout(&stack, "10.0.0.9:80".parse().unwrap(),
    ///                                        Duration::from_millis(100)).unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    ///     assert!(mkernel::clock_monotonic() - t0 >= 100_000_000);
    /// });
    /// ```
    pub fn connect_timeout(
        stack: &Stack,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_within(stack, addr, timeout)
    }

    fn connect_within(stack: &Stack, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let remote = from_std(addr)?;
        let inner = &stack.inner;
        let deadline = Inner::deadline(Some(timeout));
        let port = inner.claim_port(Proto::Tcp, 0)?;
        let h = {
            let mut core = inner.core.borrow_mut();
            let mut s = new_socket(inner.tcp_buffers.get());
            stream_defaults(&mut s);
            // The handshake is bounded by `deadline`, not by smoltcp's
            // timeout (which would also end it, as a `Closed` socket that
            // looks like a reset).
            s.set_timeout(None);
            match s.connect(core.iface.context(), remote, port) {
                Ok(()) => core.add_tcp(s),
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
        inner
            .block_on_until(Cond::TcpSend(h), &stream.tx, deadline, |core| {
                let s = core.tcp(h);
                match s.state() {
                    State::SynSent | State::SynReceived => None,
                    State::Closed => Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("connection to {addr} refused"),
                    ))),
                    _ => {
                        s.set_timeout(smol(Some(DEFAULT_PEER_TIMEOUT)));
                        core.promote(h);
                        Some(Ok(()))
                    }
                }
            })
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connection to {addr} timed out after {timeout:?}"),
                ),
                _ => e,
            })?;
        Ok(stream)
    }

    /// Reads what has arrived into `buf`, suspending this task until
    /// something has (for at most the [read
    /// timeout](TcpStream::set_read_timeout), if set). `Ok(0)` at the end
    /// of the stream (the peer shut its write side down), after
    /// [`shutdown`](TcpStream::shutdown)`(Read)`, or when `buf` is empty.
    ///
    /// # Errors
    ///
    /// `ConnectionReset` when the connection was reset (or aborted),
    /// `TimedOut` when the read timeout passed with nothing to read (the
    /// stream stays usable), `Interrupted` when the task is being
    /// cancelled.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.shut_read.get() {
            return Ok(0);
        }
        let inner = &self.stack.inner;
        let h = self.handle;
        let deadline = Inner::deadline(self.read_timeout.get());
        let n = inner.block_on_until(Cond::TcpRecv(h), &self.rx, deadline, |core| {
            if self.shut_read.get() {
                return Some(Ok(0));
            }
            let s = core.tcp(h);
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
            inner.kick(h);
        }
        Ok(n)
    }

    /// Queues some of `data` for sending (suspending this task while the
    /// send buffer is full, for at most the [write
    /// timeout](TcpStream::set_write_timeout), if set) and sends what it can
    /// at once. Returns how many bytes were queued.
    ///
    /// # Errors
    ///
    /// `BrokenPipe` when the write side is shut down or the connection is
    /// closing or gone, `TimedOut` when the write timeout passed with the
    /// send buffer still full (nothing was queued), `Interrupted` when the
    /// task is being cancelled.
    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let inner = &self.stack.inner;
        let h = self.handle;
        let deadline = Inner::deadline(self.write_timeout.get());
        let n =
            inner.block_on_until(Cond::TcpSend(h), &self.tx, deadline, |core| {
                let s = core.tcp(h);
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
        inner.kick(h);
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

    /// Shuts down the read side, the write side or both, as `std`'s
    /// `shutdown`:
    ///
    /// - `Write`: what was written is sent, then a FIN (the peer reads the
    ///   end of the stream); later writes fail with `BrokenPipe`. Reading
    ///   still works until the peer closes its side.
    /// - `Read`: reads return `Ok(0)` from now on (also a read waiting now);
    ///   what arrives is still acknowledged, and dropped with the stream.
    /// - `Both`: both.
    ///
    /// # Errors
    ///
    /// None today: the `Result` is the shape of `std`'s.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
    /// use std::io::{Read, Write};
    /// use std::net::Shutdown;
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let l = TcpListener::bind(&server, 7).unwrap();
    ///         let srv = mkernel::spawn(move || {
    ///             let (mut s, _) = l.accept().unwrap();
    ///             let mut req = Vec::new();
    ///             s.read_to_end(&mut req).unwrap(); // until the client's FIN
    ///             s.write_all(&req).unwrap();
    ///         });
    ///         let mut c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap()).unwrap();
    ///         c.write_all(b"question").unwrap();
    ///         c.shutdown(Shutdown::Write).unwrap();
    ///         let mut answer = [0u8; 8];
    ///         c.read_exact(&mut answer).unwrap(); // reading still works
    ///         assert_eq!(&answer, b"question");
    ///         srv.join().unwrap();
    ///     },
    /// );
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let inner = &self.stack.inner;
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.shut_read.set(true);
            self.rx.notify_all();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.shut_write.set(true);
            {
                let mut core = inner.core.borrow_mut();
                core.tcp(self.handle).close();
                super::nudge_fin(&mut core, self.handle);
            }
            inner.kick(self.handle);
        }
        Ok(())
    }

    /// Sets the read timeout: how long a [`read`](TcpStream::read) may wait
    /// before it fails with `TimedOut`; `None` (the default): for ever.
    ///
    /// `std` documents that a read past its timeout fails with `WouldBlock`
    /// or `TimedOut` depending on the platform (Unix: `WouldBlock`); here it
    /// is always `TimedOut`. The stream stays usable: a later read gets
    /// what arrives then.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as `std`.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
    /// use std::io::{ErrorKind, Read, Write};
    /// use std::time::Duration;
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let l = TcpListener::bind(&server, 7).unwrap();
    ///         let mut c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap()).unwrap();
    ///         let (mut s, _) = l.accept().unwrap();
    ///         c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    ///         assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(20)));
    ///         let mut buf = [0u8; 4];
    ///         assert_eq!(c.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
    ///         s.write_all(b"late").unwrap();
    ///         c.read_exact(&mut buf).unwrap();
    ///         assert_eq!(&buf, b"late");
    ///         assert!(c.set_read_timeout(Some(Duration::ZERO)).is_err());
    ///     },
    /// );
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.read_timeout.set(timeout);
        Ok(())
    }

    /// Sets the write timeout: how long a [`write`](TcpStream::write) may
    /// wait for room in the send buffer before it fails with `TimedOut`
    /// (having queued nothing); `None` (the default): for ever. As with
    /// [`set_read_timeout`](TcpStream::set_read_timeout), always
    /// `TimedOut`, never `WouldBlock`, and the stream stays usable.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for `Some(Duration::ZERO)`, as `std`.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
    /// use std::io::ErrorKind;
    /// use std::time::Duration;
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let l = TcpListener::bind(&server, 7).unwrap();
    ///         let c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap()).unwrap();
    ///         let (_s, _) = l.accept().unwrap(); // never reads
    ///         c.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
    ///         assert_eq!(c.write_timeout().unwrap(), Some(Duration::from_millis(50)));
    ///         let chunk = vec![0u8; 16384];
    ///         let e = loop {
    ///             if let Err(e) = c.write(&chunk) { break e; }
    ///         };
    ///         assert_eq!(e.kind(), ErrorKind::TimedOut);
    ///     },
    /// );
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.write_timeout.set(timeout);
        Ok(())
    }

    /// The read timeout (see [`set_read_timeout`](TcpStream::set_read_timeout)).
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout.get())
    }

    /// The write timeout (see [`set_write_timeout`](TcpStream::set_write_timeout)).
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout.get())
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
        f(core.tcp_ref(self.handle)).map(to_std).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "the TCP connection is closed")
        })
    }

    /// Sets how long the peer may stay silent (send no segment at all)
    /// before the connection is reset; `None`: for ever. Default
    /// [`DEFAULT_PEER_TIMEOUT`]. Like Linux's
    /// `TCP_USER_TIMEOUT`, it bounds how long sent data may stay
    /// unacknowledged; with keep-alive off ([`set_keepalive`](TcpStream::set_keepalive)`(None)`)
    /// it also closes a connection idle for that long.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream, DEFAULT_PEER_TIMEOUT};
    /// use std::time::Duration;
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let _l = TcpListener::bind(&server, 7).unwrap();
    ///         let c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap()).unwrap();
    ///         assert_eq!(c.peer_timeout(), Some(DEFAULT_PEER_TIMEOUT));
    ///         c.set_peer_timeout(Some(Duration::from_secs(5)));
    ///         c.set_keepalive(Some(Duration::from_secs(1)));
    ///         assert_eq!(c.peer_timeout(), Some(Duration::from_secs(5)));
    ///         assert_eq!(c.keepalive(), Some(Duration::from_secs(1)));
    ///     },
    /// );
    /// ```
    pub fn set_peer_timeout(&self, timeout: Option<Duration>) {
        self.with_socket(|s| s.set_timeout(smol(timeout)));
    }

    /// The peer timeout (see [`set_peer_timeout`](TcpStream::set_peer_timeout)).
    pub fn peer_timeout(&self) -> Option<Duration> {
        self.with_socket(|s| std_duration(s.timeout()))
    }

    /// Sets the keep-alive interval: after that long without any segment
    /// from the peer, a probe is sent, which a live peer answers; `None`:
    /// no probes. Default [`DEFAULT_KEEPALIVE`].
    /// Keep it below the peer timeout, or idle connections are reset.
    pub fn set_keepalive(&self, interval: Option<Duration>) {
        self.with_socket(|s| s.set_keep_alive(smol(interval)));
        self.stack.inner.kick(self.handle);
    }

    /// The keep-alive interval (see [`set_keepalive`](TcpStream::set_keepalive)).
    pub fn keepalive(&self) -> Option<Duration> {
        self.with_socket(|s| std_duration(s.keep_alive()))
    }

    fn with_socket<R>(&self, f: impl FnOnce(&mut stcp::Socket<'static>) -> R) -> R {
        f(self.stack.inner.core.borrow_mut().tcp(self.handle))
    }

    /// Disables (true) or enables (false, the default) Nagle's algorithm.
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let _l = TcpListener::bind(&server, 7).unwrap();
    ///         let c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap()).unwrap();
    ///         assert!(!c.nodelay().unwrap());
    ///         c.set_nodelay(true).unwrap();
    ///         assert!(c.nodelay().unwrap());
    ///         assert_eq!(c.ttl().unwrap(), 64);
    ///         c.set_ttl(8).unwrap();
    ///         assert_eq!(c.ttl().unwrap(), 8);
    ///         assert!(c.set_ttl(0).is_err());
    ///     },
    /// );
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.with_socket(|s| s.set_nagle_enabled(!nodelay));
        Ok(())
    }

    /// Whether Nagle's algorithm is disabled (see
    /// [`set_nodelay`](TcpStream::set_nodelay)).
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.with_socket(|s| !s.nagle_enabled()))
    }

    /// Sets the time-to-live of the stream's IP packets (1-255; the
    /// default is 64).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for 0 or a value over 255.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = u8::try_from(ttl).ok().filter(|&t| t > 0).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a TTL is 1-255, not {ttl}"),
            )
        })?;
        self.with_socket(|s| s.set_hop_limit(Some(ttl)));
        Ok(())
    }

    /// The time-to-live of the stream's IP packets (see
    /// [`set_ttl`](TcpStream::set_ttl)).
    ///
    /// # Errors
    ///
    /// None today (`std`'s shape).
    pub fn ttl(&self) -> io::Result<u32> {
        Ok(u32::from(self.with_socket(|s| s.hop_limit()).unwrap_or(64)))
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

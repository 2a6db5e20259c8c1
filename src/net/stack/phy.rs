//! smoltcp's `phy::Device` over a [`Net`]: one preallocated receive buffer
//! and one transmit buffer, so the hot path allocates nothing.
//!
//! It is also the listeners' SYN queue. smoltcp answers a SYN that no
//! socket in `Listen` state takes with a reset, which a client reports as
//! "connection refused". So the stack tells the device how many listening
//! sockets each listener has ready ([`Phy::free`]), and a SYN to a port
//! with none left is set aside ([`Phy::held`], at most [`SYN_QUEUE`]
//! frames, each at most [`SYN_HOLD_NS`]) instead of reaching smoltcp: it is
//! handed over as soon as a listening socket is ready again (a task
//! accepted a connection, a half-open one expired), and dropped when it
//! waited too long or the queue is full. A dropped SYN is not an error for
//! the client: it sends it again (after 1 s, 3 s, 7 s... on Linux).

use crate::net::Net;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use std::collections::{HashMap, VecDeque};

/// SYNs set aside at most, all listeners together (a SYN frame is about
/// 80 bytes: this is at most ~100 KiB).
pub(crate) const SYN_QUEUE: usize = 1024;

/// How long a SYN set aside waits for a listening socket, in nanoseconds:
/// 1 s, the first retransmission time of Linux's and smoltcp's clients. A
/// retransmitted SYN keeps the place of the first one (and restarts its
/// wait), so a live client does not lose its turn; a spoofed SYN, never
/// retransmitted, leaves after 1 s.
pub(crate) const SYN_HOLD_NS: u64 = 1_000_000_000;

/// A SYN set aside.
struct Held {
    /// Destination port (the listener's).
    port: u16,
    /// Source address and port: a retransmission has the same.
    from: [u8; 6],
    /// When it is dropped.
    deadline: u64,
    frame: Box<[u8]>,
}

/// Counters of the SYN queue.
#[derive(Clone, Copy, Default)]
pub(crate) struct SynStats {
    pub(crate) queued: u64,
    pub(crate) dropped: u64,
}

/// Receive buffer: larger than any frame a device hands over (a frame too
/// large for the buffer would stay queued on an in-memory link).
const RX_BUF: usize = 65536;

pub(crate) struct Phy {
    pub(crate) net: Net,
    rx: Vec<u8>,
    tx: Vec<u8>,
    mtu: usize,
    /// The stack's IPv4 address: only SYNs to it are looked at.
    addr: [u8; 4],
    /// Per listening port: how many SYNs smoltcp can still take (sockets
    /// in `Listen` state), counted by the stack before each poll and
    /// decreased here for each SYN handed over.
    pub(crate) free: HashMap<u16, usize>,
    /// SYNs waiting for a listening socket, oldest first.
    held: VecDeque<Held>,
    pub(crate) syn_stats: SynStats,
    /// The length of the frame in `rx` that smoltcp gets next.
    staged: Option<usize>,
}

impl Phy {
    pub(crate) fn new(net: Net, addr: [u8; 4]) -> Phy {
        let mtu = net.cfg().mtu;
        Phy {
            net,
            rx: vec![0; RX_BUF.max(mtu + 18)],
            tx: vec![0; mtu + 14],
            mtu,
            addr,
            free: HashMap::new(),
            held: VecDeque::new(),
            syn_stats: SynStats::default(),
            staged: None,
        }
    }

    /// Sets the address whose SYNs are looked at (DHCP changed it).
    pub(crate) fn set_addr(&mut self, addr: [u8; 4]) {
        self.addr = addr;
    }

    /// Drops the SYNs that waited too long, and those of listeners that
    /// are gone (their port is closed now).
    pub(crate) fn expire_held(&mut self, now_ns: u64) {
        if self.held.is_empty() {
            return;
        }
        let before = self.held.len();
        let free = &self.free;
        self.held
            .retain(|h| h.deadline > now_ns && free.contains_key(&h.port));
        self.syn_stats.dropped += (before - self.held.len()) as u64;
    }

    /// Whether a SYN set aside can now be handed to smoltcp.
    pub(crate) fn admissible(&self) -> bool {
        self.held
            .iter()
            .any(|h| self.free.get(&h.port).is_some_and(|&n| n > 0))
    }

    /// Whether SYNs to `port` are waiting.
    pub(crate) fn holds_for(&self, port: u16) -> bool {
        self.held.iter().any(|h| h.port == port)
    }

    /// Sets a SYN aside (the first `len` bytes of the receive buffer), or
    /// drops it when the queue is full. A retransmission of a SYN already
    /// waiting restarts that one's wait instead.
    fn hold(&mut self, port: u16, from: [u8; 6], len: usize, now_ns: u64) {
        let deadline = now_ns.saturating_add(SYN_HOLD_NS);
        if let Some(h) = self
            .held
            .iter_mut()
            .find(|h| h.port == port && h.from == from)
        {
            h.deadline = deadline;
            return;
        }
        if self.held.len() >= SYN_QUEUE {
            self.syn_stats.dropped += 1;
            return;
        }
        self.syn_stats.queued += 1;
        self.held.push_back(Held {
            port,
            from,
            deadline,
            frame: self.rx[..len].into(),
        });
    }
}

/// If `frame` is an IPv4 TCP SYN (no ACK, no RST) to `addr`: its
/// destination port and its source address and port.
fn syn_to(frame: &[u8], addr: [u8; 4]) -> Option<(u16, [u8; 6])> {
    // Ethernet II, IPv4.
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    // Version 4, TCP, not a fragment (offset 0, no "more fragments").
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || ip[6] & 0x3f != 0 || ip[7] != 0 {
        return None;
    }
    if ip[16..20] != addr || ip.len() < ihl + 20 {
        return None;
    }
    let tcp = &ip[ihl..];
    let flags = tcp[13];
    // SYN, and neither ACK nor RST.
    if flags & 0x02 == 0 || flags & 0x14 != 0 {
        return None;
    }
    let mut from = [0u8; 6];
    from[..4].copy_from_slice(&ip[12..16]);
    from[4..].copy_from_slice(&tcp[0..2]);
    Some((u16::from_be_bytes([tcp[2], tcp[3]]), from))
}

pub(crate) struct Rx<'a>(&'a [u8]);

pub(crate) struct Tx<'a> {
    net: &'a Net,
    buf: &'a mut [u8],
}

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(self.buf.len());
        let frame = &mut self.buf[..len];
        let r = f(frame);
        if let Err(e) = self.net.write(frame) {
            // Like a lost frame: TCP retransmits it.
            log::debug!("mkernel stack: frame not sent: {e}");
        }
        r
    }
}

impl Phy {
    /// Takes the next frame into the receive buffer and returns its
    /// length, without handing it to smoltcp yet (the stack first looks
    /// at which socket set it belongs to; the next [`receive`] hands it
    /// over). A SYN set aside whose listener has a socket ready again comes
    /// first; a SYN to a listener with none ready is set aside here.
    ///
    /// [`receive`]: phy::Device::receive
    pub(crate) fn stage(&mut self, now_ns: u64) -> Option<usize> {
        // No scan of the SYN queue while no listener has a socket ready.
        let ready = if self.held.is_empty() || self.free.values().all(|&n| n == 0) {
            None
        } else {
            self.held
                .iter()
                .position(|h| self.free.get(&h.port).is_some_and(|&n| n > 0))
        };
        if let Some(h) = ready.and_then(|i| self.held.remove(i)) {
            if let Some(n) = self.free.get_mut(&h.port) {
                *n -= 1;
            }
            let n = h.frame.len();
            self.rx[..n].copy_from_slice(&h.frame);
            self.staged = Some(n);
            return Some(n);
        }
        loop {
            match self.net.try_read(&mut self.rx) {
                Ok(Some(n)) => {
                    if !self.free.is_empty() {
                        if let Some((port, from)) = syn_to(&self.rx[..n], self.addr) {
                            if let Some(free) = self.free.get_mut(&port) {
                                if *free == 0 {
                                    self.hold(port, from, n, now_ns);
                                    continue;
                                }
                                *free -= 1;
                            }
                        }
                    }
                    self.staged = Some(n);
                    return Some(n);
                }
                Ok(None) => return None,
                Err(e) => {
                    log::debug!("mkernel stack: frame not received: {e}");
                    return None;
                }
            }
        }
    }

    /// The frame [`stage`](Phy::stage) took.
    pub(crate) fn staged(&self) -> &[u8] {
        &self.rx[..self.staged.unwrap_or(0)]
    }
}

impl phy::Device for Phy {
    type RxToken<'a> = Rx<'a>;
    type TxToken<'a> = Tx<'a>;

    /// The staged frame, once.
    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let n = self.staged.take()?;
        Some((
            Rx(&self.rx[..n]),
            Tx {
                net: &self.net,
                buf: &mut self.tx,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            net: &self.net,
            buf: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}

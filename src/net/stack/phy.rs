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
//!
//! On a device with offloads (a hosted TAP, unless `--net-offload=off`),
//! smoltcp builds TCP segments of up to 64 KiB (its `segmentation-offload`
//! feature: one segment per window's worth, instead of one per MSS) and
//! leaves their checksums out; each goes to the kernel in one `write` with
//! a virtio-net header that says to cut it into MSS-sized segments and
//! where the checksum goes (only the pseudo-header's sum is written here).
//! Incoming, the kernel hands over coalesced segments of up to 64 KiB,
//! whole: smoltcp takes a segment of any size within its window. smoltcp
//! then checks no TCP checksum, so those the kernel neither vouched for
//! nor left to complete (frames from another machine, bridged) are checked
//! here; other checksums left to complete (UDP) are completed here, for
//! smoltcp to check as usual.

use crate::net::Net;
use crate::net::device::MAX_OFFLOAD_FRAME;
use crate::sys::OffloadHdr;
use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium, PacketMeta};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpCidr, IpEndpoint, IpProtocol, Ipv4Packet,
    Ipv6Packet, TcpPacket, checksum,
};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;

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
    from: IpEndpoint,
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
const RX_BUF: usize = MAX_OFFLOAD_FRAME;

pub(crate) struct Phy {
    pub(crate) net: Net,
    rx: Vec<u8>,
    tx: Vec<u8>,
    mtu: usize,
    /// The stack's addresses: only SYNs to them are looked at.
    addrs: Vec<IpAddress>,
    /// Per listening port: how many SYNs smoltcp can still take (sockets
    /// in `Listen` state), counted by the stack before each poll and
    /// decreased here for each SYN handed over.
    pub(crate) free: HashMap<u16, usize>,
    /// SYNs waiting for a listening socket, oldest first.
    held: VecDeque<Held>,
    pub(crate) syn_stats: SynStats,
    /// The length of the frame in `rx` that smoltcp gets next.
    staged: Option<usize>,
    /// The staged frame's TCP header, read once for the SYN queue and for
    /// the stack's routes.
    head: Option<TcpHead>,
    /// The device's checksum and segmentation offloads are on.
    offload: bool,
    /// Incoming TCP frames dropped for a bad checksum (offloads on).
    pub(crate) bad_checksums: u64,
}

impl Phy {
    pub(crate) fn new(net: Net) -> Phy {
        let mtu = net.cfg().mtu;
        let offload = net.dev.enable_offload();
        let tx = if offload {
            MAX_OFFLOAD_FRAME.max(mtu + 14)
        } else {
            mtu + 14
        };
        Phy {
            net,
            rx: vec![0; RX_BUF.max(mtu + 18)],
            tx: vec![0; tx],
            mtu,
            addrs: Vec::new(),
            free: HashMap::new(),
            held: VecDeque::new(),
            syn_stats: SynStats::default(),
            staged: None,
            head: None,
            offload,
            bad_checksums: 0,
        }
    }

    /// Sets the addresses whose SYNs are looked at: the interface's (at
    /// the start, and when DHCP or SLAAC changed them).
    pub(crate) fn set_addrs(&mut self, addrs: &[IpCidr]) {
        self.addrs = addrs.iter().map(IpCidr::address).collect();
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
    fn hold(&mut self, port: u16, from: IpEndpoint, len: usize, now_ns: u64) {
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

/// What the SYN queue and the routes look at in a TCP segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TcpHead {
    pub(crate) src: IpEndpoint,
    pub(crate) dst: IpEndpoint,
    pub(crate) flags: u8,
}

/// The addresses, ports and flags of the TCP segment in an Ethernet
/// frame, as [`tcp_at`] finds it (IPv4 not a fragment: a later one has no
/// ports; IPv6 with TCP as its first next header: a segment behind
/// extension headers is left to smoltcp's own rules).
pub(crate) fn tcp_head(frame: &[u8]) -> Option<TcpHead> {
    let (start, v6) = tcp_at(frame)?;
    let ip = &frame[14..];
    let (src, dst): (IpAddress, IpAddress) = if v6 {
        let p = Ipv6Packet::new_unchecked(ip);
        (p.src_addr().into(), p.dst_addr().into())
    } else {
        let p = Ipv4Packet::new_unchecked(ip);
        (p.src_addr().into(), p.dst_addr().into())
    };
    let tcp = TcpPacket::new_unchecked(&frame[start..]);
    Some(TcpHead {
        src: IpEndpoint::new(src, tcp.src_port()),
        dst: IpEndpoint::new(dst, tcp.dst_port()),
        flags: frame[start + 13],
    })
}

pub(crate) struct Rx<'a>(&'a [u8]);

pub(crate) struct Tx<'a> {
    net: &'a Net,
    buf: &'a mut [u8],
    offload: bool,
    meta: PacketMeta,
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
        let sent = if self.offload {
            let hdr = tx_offload(frame, self.meta.segmentation_offload_size);
            self.net.dev.write_hdr(hdr, frame)
        } else {
            self.net.write(frame)
        };
        if let Err(e) = sent {
            // Like a lost frame: TCP retransmits it.
            log::debug!("mkernel stack: frame not sent: {e}");
        }
        r
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.meta = meta;
    }
}

/// The offload header of an outgoing frame (offloads on), whose TCP
/// checksum smoltcp left out: for a TCP segment, the checksum to complete
/// (its field gets the pseudo-header's sum) and, when smoltcp asked for
/// it, the segmentation into `mss`-byte segments. Other frames are whole.
fn tx_offload(frame: &mut [u8], mss: Option<std::num::NonZeroU16>) -> OffloadHdr {
    let Some((start, v6)) = tcp_at(frame) else {
        return OffloadHdr::default();
    };
    let tcp_len = (frame.len() - start) as u32;
    let ip = &frame[14..];
    let pseudo = if v6 {
        let p = Ipv6Packet::new_unchecked(ip);
        checksum::pseudo_header_v6(&p.src_addr(), &p.dst_addr(), IpProtocol::Tcp, tcp_len)
    } else {
        let p = Ipv4Packet::new_unchecked(ip);
        checksum::pseudo_header_v4(&p.src_addr(), &p.dst_addr(), IpProtocol::Tcp, tcp_len)
    };
    frame[start + 16..start + 18].copy_from_slice(&pseudo.to_be_bytes());
    let mut hdr = OffloadHdr {
        flags: OffloadHdr::NEEDS_CSUM,
        csum_start: start as u16,
        csum_offset: 16,
        ..OffloadHdr::default()
    };
    if let Some(mss) = mss {
        hdr.gso_type = if v6 {
            OffloadHdr::GSO_TCPV6
        } else {
            OffloadHdr::GSO_TCPV4
        };
        hdr.gso_size = mss.get();
        hdr.hdr_len = (start + usize::from(frame[start + 12] >> 4) * 4) as u16;
    }
    hdr
}

/// Where the TCP header of `frame` starts, and whether it is over IPv6, if
/// it is a whole TCP segment over IPv4 (not a fragment) or IPv6 (no
/// extension header).
fn tcp_at(frame: &[u8]) -> Option<(usize, bool)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (start, v6) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            (14 + usize::from(ip.header_len()), false)
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (14 + 40, true)
        }
        _ => return None,
    };
    (frame.len() >= start + 20).then_some((start, v6))
}

/// Whether an incoming frame may go to smoltcp (offloads on, so smoltcp
/// checks no TCP checksum): a checksum left to complete is completed,
/// except TCP's (the kernel's own segments: nothing to check); a TCP
/// segment whose checksums the kernel did not vouch for is checked.
fn rx_offload(frame: &mut [u8], hdr: OffloadHdr) -> bool {
    if hdr.flags & OffloadHdr::NEEDS_CSUM != 0 {
        let start = usize::from(hdr.csum_start);
        let at = start + usize::from(hdr.csum_offset);
        if at + 2 > frame.len() {
            return false;
        }
        if tcp_at(frame).is_some_and(|(s, _)| s == start) {
            return true;
        }
        // As Linux's skb_checksum_help: the field holds the
        // pseudo-header's sum; the sum from `start` on completes it (a
        // zero becomes 0xffff, which UDP reads as "computed").
        let sum = !checksum::data(&frame[start..]);
        let sum = if sum == 0 { 0xffff } else { sum };
        frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        return true;
    }
    if hdr.flags & OffloadHdr::DATA_VALID != 0 {
        return true;
    }
    let Some((_, v6)) = tcp_at(frame) else {
        return true;
    };
    let ip = &frame[14..];
    if v6 {
        let p = Ipv6Packet::new_unchecked(ip);
        let end = (40 + usize::from(p.payload_len())).min(ip.len());
        let Ok(tcp) = TcpPacket::new_checked(&ip[40..end]) else {
            return false;
        };
        tcp.verify_checksum(&p.src_addr().into(), &p.dst_addr().into())
    } else {
        let p = Ipv4Packet::new_unchecked(ip);
        let end = usize::from(p.total_len()).min(ip.len());
        let hl = usize::from(p.header_len());
        if end < hl {
            return false;
        }
        let Ok(tcp) = TcpPacket::new_checked(&ip[hl..end]) else {
            return false;
        };
        tcp.verify_checksum(&p.src_addr().into(), &p.dst_addr().into())
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
            self.head = tcp_head(&self.rx[..n]);
            self.staged = Some(n);
            return Some(n);
        }
        loop {
            let read = if self.offload {
                self.net.dev.try_read_hdr(&mut self.rx)
            } else {
                self.net
                    .try_read(&mut self.rx)
                    .map(|r| r.map(|n| (n, OffloadHdr::default())))
            };
            match read {
                Ok(Some((n, hdr))) => {
                    if self.offload && !rx_offload(&mut self.rx[..n], hdr) {
                        self.bad_checksums += 1;
                        log::debug!("mkernel stack: a TCP segment with a bad checksum dropped");
                        continue;
                    }
                    let head = tcp_head(&self.rx[..n]);
                    if let Some(h) = head.as_ref().filter(|h| self.is_syn_to_us(h)) {
                        if let Some(free) = self.free.get_mut(&h.dst.port) {
                            if *free == 0 {
                                self.hold(h.dst.port, h.src, n, now_ns);
                                continue;
                            }
                            *free -= 1;
                        }
                    }
                    self.head = head;
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

    /// The TCP header of the frame [`stage`](Phy::stage) took, if it is a
    /// TCP segment.
    pub(crate) fn staged_head(&self) -> Option<&TcpHead> {
        self.head.as_ref()
    }

    /// Whether `h` is a SYN (no ACK, no RST) to one of the stack's
    /// addresses, while listeners are counted.
    fn is_syn_to_us(&self, h: &TcpHead) -> bool {
        !self.free.is_empty()
            && h.flags & 0x02 != 0
            && h.flags & 0x14 == 0
            && self.addrs.contains(&h.dst.addr)
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
                offload: self.offload,
                meta: PacketMeta::default(),
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx {
            net: &self.net,
            buf: &mut self.tx,
            offload: self.offload,
            meta: PacketMeta::default(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        if self.offload {
            // smoltcp then builds TCP segments of up to this size (frames,
            // Ethernet header included) and leaves TCP checksums to the
            // device, checking none either (see `rx_offload`).
            caps.checksum.tcp = Checksum::None;
            caps.segmentation.tcpv4 = NonZeroUsize::new(MAX_OFFLOAD_FRAME);
            caps.segmentation.tcpv6 = NonZeroUsize::new(MAX_OFFLOAD_FRAME);
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, Ipv4Address, UdpPacket};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SRC: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const DST: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

    /// An Ethernet/IPv4 frame of protocol `proto` with an 8- (UDP) or
    /// 20-byte (TCP) header and `payload` bytes after it, checksums right.
    fn frame(proto: IpProtocol, payload: usize) -> Vec<u8> {
        let l4 = if proto == IpProtocol::Tcp { 20 } else { 8 };
        let mut f = vec![0u8; 14 + 20 + l4 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len((20 + l4 + payload) as u16);
            ip.set_hop_limit(64);
            ip.set_next_header(proto);
            ip.set_src_addr(SRC);
            ip.set_dst_addr(DST);
            ip.fill_checksum();
        }
        for (i, b) in f[34 + l4..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let (s, d) = (IpAddress::from(SRC), IpAddress::from(DST));
        if proto == IpProtocol::Tcp {
            f[34 + 12] = 5 << 4;
            f[34 + 13] = 0x10; // ACK
            TcpPacket::new_unchecked(&mut f[34..]).fill_checksum(&s, &d);
        } else {
            let mut u = UdpPacket::new_unchecked(&mut f[34..]);
            u.set_len((8 + payload) as u16);
            u.fill_checksum(&s, &d);
        }
        f
    }

    fn tcp_ok(f: &[u8]) -> bool {
        TcpPacket::new_checked(&f[34..])
            .unwrap()
            .verify_checksum(&SRC.into(), &DST.into())
    }

    /// What the kernel does with `NEEDS_CSUM`: the sum from `csum_start`.
    fn complete(f: &mut [u8], hdr: OffloadHdr) {
        let at = usize::from(hdr.csum_start + hdr.csum_offset);
        let sum = !checksum::data(&f[usize::from(hdr.csum_start)..]);
        f[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }

    #[test]
    fn a_large_segment_out_asks_for_segmentation_and_its_checksum() {
        let mut f = frame(IpProtocol::Tcp, 10 * 1460);
        f[34 + 16..34 + 18].fill(0); // smoltcp leaves it out
        let hdr = tx_offload(&mut f, std::num::NonZeroU16::new(1460));
        assert_eq!(
            hdr,
            OffloadHdr {
                flags: OffloadHdr::NEEDS_CSUM,
                gso_type: OffloadHdr::GSO_TCPV4,
                hdr_len: 54,
                gso_size: 1460,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        complete(&mut f, hdr);
        assert!(tcp_ok(&f), "the kernel's sum over the field makes it right");
        // One MSS or less: a checksum to complete, no segmentation.
        let mut f = frame(IpProtocol::Tcp, 100);
        let hdr = tx_offload(&mut f, None);
        assert_eq!((hdr.gso_type, hdr.flags), (0, OffloadHdr::NEEDS_CSUM));
        complete(&mut f, hdr);
        assert!(tcp_ok(&f));
        // Not TCP: whole, untouched.
        let mut f = frame(IpProtocol::Udp, 100);
        let before = f.clone();
        assert_eq!(tx_offload(&mut f, None), OffloadHdr::default());
        assert_eq!(f, before);
    }

    #[test]
    fn tcp_checksums_in_are_checked_unless_vouched_for() {
        let good = frame(IpProtocol::Tcp, 3000);
        let mut bad = good.clone();
        bad[100] ^= 1;
        assert!(rx_offload(&mut good.clone(), OffloadHdr::default()));
        assert!(!rx_offload(&mut bad.clone(), OffloadHdr::default()));
        let valid = OffloadHdr {
            flags: OffloadHdr::DATA_VALID,
            ..OffloadHdr::default()
        };
        assert!(rx_offload(&mut bad.clone(), valid));
        // Left to complete by the kernel's own stack: taken as is.
        let partial = OffloadHdr {
            flags: OffloadHdr::NEEDS_CSUM,
            gso_type: OffloadHdr::GSO_TCPV4,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            ..OffloadHdr::default()
        };
        assert!(rx_offload(&mut bad, partial));
    }

    #[test]
    fn a_udp_checksum_left_to_complete_is_completed() {
        let mut f = frame(IpProtocol::Udp, 333);
        let ok = |f: &[u8]| {
            UdpPacket::new_checked(&f[34..])
                .unwrap()
                .verify_checksum(&SRC.into(), &DST.into())
        };
        assert!(ok(&f));
        // As the kernel hands it over: the pseudo-header's sum only.
        let pseudo = checksum::pseudo_header_v4(&SRC, &DST, IpProtocol::Udp, 8 + 333);
        f[34 + 6..34 + 8].copy_from_slice(&pseudo.to_be_bytes());
        assert!(!ok(&f));
        let hdr = OffloadHdr {
            flags: OffloadHdr::NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..OffloadHdr::default()
        };
        assert!(rx_offload(&mut f, hdr));
        assert!(ok(&f));
        // A checksum place past the frame: dropped.
        let hdr = OffloadHdr {
            csum_offset: 1000,
            ..hdr
        };
        assert!(!rx_offload(&mut f, hdr));
    }

    /// A segment's (destination, source), as the stack's routes key it.
    fn tcp_key(f: &[u8]) -> Option<(IpEndpoint, IpEndpoint)> {
        tcp_head(f).map(|h| (h.dst, h.src))
    }

    #[test]
    fn the_key_of_a_segment() {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        // Total length: the IP header and a bare TCP header.
        f[14 + 2..14 + 4].copy_from_slice(&40u16.to_be_bytes());
        f[14 + 9] = 6;
        f[14 + 12..14 + 16].copy_from_slice(&[10, 0, 0, 9]);
        f[14 + 16..14 + 20].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 9));
        let key = (
            IpEndpoint::new(a.into(), 80),
            IpEndpoint::new(b.into(), 40000),
        );
        assert_eq!(tcp_key(&f), Some(key));
        // Not TCP: no key.
        f[14 + 9] = 17;
        assert_eq!(tcp_key(&f), None);
        // A later fragment: no key.
        f[14 + 9] = 6;
        f[14 + 7] = 1;
        assert_eq!(tcp_key(&f), None);
        assert_eq!(tcp_key(&f[..20]), None);
    }

    #[test]
    fn the_key_of_an_ipv6_segment() {
        let mut f = vec![0u8; 14 + 40 + 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        f[14] = 0x60;
        f[14 + 6] = 6;
        let (src, dst) = ([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9], {
            let mut d = [0u8; 16];
            d[0] = 0xfd;
            d[15] = 1;
            d
        });
        f[14 + 8..14 + 24].copy_from_slice(&src);
        f[14 + 24..14 + 40].copy_from_slice(&dst);
        f[54..56].copy_from_slice(&40000u16.to_be_bytes());
        f[56..58].copy_from_slice(&80u16.to_be_bytes());
        let (a, b) = (Ipv6Addr::from(dst), Ipv6Addr::from(src));
        let key = (
            IpEndpoint::new(a.into(), 80),
            IpEndpoint::new(b.into(), 40000),
        );
        assert_eq!(tcp_key(&f), Some(key));
        // Behind an extension header (hop-by-hop: 0): no key.
        f[14 + 6] = 0;
        assert_eq!(tcp_key(&f), None);
        // Truncated: no key.
        f[14 + 6] = 6;
        assert_eq!(tcp_key(&f[..14 + 40 + 10]), None);
    }
}

//! In-memory Ethernet links, for tests and demos.
//!
//! [`pair`] makes a point-to-point "cable" with two [`LinkEnd`]s that live in
//! the same thread: a frame [`send`](LinkEnd::send) on one end is received
//! by [`try_recv`](LinkEnd::try_recv) on the other. A link can misbehave on
//! purpose, reproducibly: [`Faults`] adds loss, duplication, reordering and
//! delay, driven by a seeded pseudo-random generator, so a failing test
//! fails the same way on every run.
//!
//! Time is whatever the caller says it is: every call takes `now_ns` (for
//! instance `mkernel::clock_monotonic()`, or a simulated clock), and a frame
//! sent at `t` with a delay `d` becomes receivable at `t + d`.
//!
//! ```
//! use mkernel::net::link::{pair, Faults};
//!
//! let (a, b) = pair(Faults::default());
//! let frame = [0u8; 60];
//! a.send(&frame, 0).unwrap();
//! let mut buf = [0u8; 1514];
//! assert_eq!(b.try_recv(&mut buf, 0).unwrap(), Some(60));
//! assert_eq!(b.try_recv(&mut buf, 0).unwrap(), None);
//! assert_eq!(a.stats().delivered, 1);
//! ```
//!
//! Each direction holds at most [`QUEUE_CAPACITY`] frames in flight; a
//! `send` beyond that is refused with [`LinkError::QueueFull`] (like a full
//! transmit ring), never dropped silently.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

/// Frames in flight per direction before [`LinkEnd::send`] reports
/// [`LinkError::QueueFull`].
pub const QUEUE_CAPACITY: usize = 4096;

/// The MTU of a link made by [`pair`].
pub const DEFAULT_MTU: usize = 1500;

/// Ethernet header (destination, source, EtherType).
const ETH_HEADER: usize = 14;
/// One 802.1Q VLAN tag.
const VLAN_TAG: usize = 4;

/// How a link misbehaves. [`Faults::default()`] is a clean link: no loss,
/// no duplication, no reordering, no delay.
///
/// The probabilities apply independently to each frame sent, in each
/// direction. The same `seed` and the same sequence of calls give the same
/// faults.
///
/// ```
/// use std::time::Duration;
/// use mkernel::net::link::Faults;
///
/// // 10% loss, 1% duplicates, 5% reordering, 2 ms one-way delay.
/// let faults = Faults {
///     loss: 0.10,
///     duplicate: 0.01,
///     reorder: 0.05,
///     delay: Duration::from_millis(2),
///     seed: 42,
/// };
/// let (_a, _b) = mkernel::net::link::pair(faults);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability (0.0 to 1.0) that a frame is lost: `loss: 0.1` drops
    /// about one frame in ten. Lost frames are counted in
    /// [`LinkStats::dropped`].
    pub loss: f64,
    /// Probability that a frame that was not lost is delivered twice:
    /// `duplicate: 0.01` duplicates about one frame in a hundred. Counted in
    /// [`LinkStats::duplicated`].
    pub duplicate: f64,
    /// Probability that a frame overtakes the frame sent just before it in
    /// the same direction, when that one is still in flight:
    /// `reorder: 0.05` swaps about one frame in twenty with its
    /// predecessor. The overtaking frame becomes receivable when its
    /// predecessor would have (so a reordered frame is never late). Counted
    /// in [`LinkStats::reordered`].
    pub reorder: f64,
    /// One-way delay: a frame sent at `now_ns` is receivable at
    /// `now_ns + delay` (`delay: Duration::from_millis(2)` for 2 ms). There
    /// is no jitter; frames stay in order unless `reorder` says otherwise.
    pub delay: Duration,
    /// Seed of the pseudo-random generator deciding the faults
    /// (`seed: 42`). Only matters when a probability is not 0.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: Duration::ZERO,
            seed: 0,
        }
    }
}

/// Counters of a [`LinkEnd`], see [`LinkEnd::stats`].
///
/// `sent`, `delivered`, `dropped`, `duplicated`, `reordered` and `in_flight`
/// are about the frames this end sent; `received` is about the frames this
/// end received. At any time
/// `sent - dropped + duplicated == delivered + in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames accepted by [`LinkEnd::send`] (refused ones are not counted).
    pub sent: u64,
    /// Frames received by the peer (duplicates count twice).
    pub delivered: u64,
    /// Frames lost on purpose by [`Faults::loss`].
    pub dropped: u64,
    /// Extra copies made by [`Faults::duplicate`].
    pub duplicated: u64,
    /// Frames that overtook their predecessor ([`Faults::reorder`]).
    pub reordered: u64,
    /// Frames sent and not yet received by the peer (duplicates count twice).
    pub in_flight: u64,
    /// Frames this end received.
    pub received: u64,
}

/// Errors of [`LinkEnd::send`] and [`LinkEnd::try_recv`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkError {
    /// The next frame is larger than the receive buffer. The frame stays
    /// queued: retry with a buffer of at least `frame_len` bytes.
    BufferTooSmall {
        /// Length of the waiting frame.
        frame_len: usize,
        /// Length of the buffer given.
        buf_len: usize,
    },
    /// The frame is longer than the link carries: MTU + 14 (Ethernet
    /// header) + 4 (one VLAN tag). It was not sent.
    FrameTooLong {
        /// Length of the frame.
        len: usize,
        /// The longest frame the link carries.
        max: usize,
    },
    /// The frame is shorter than an Ethernet header (14 bytes). It was not
    /// sent.
    FrameTooShort {
        /// Length of the frame.
        len: usize,
    },
    /// [`QUEUE_CAPACITY`] frames are already in flight towards the peer,
    /// which does not receive them. The frame was not sent.
    QueueFull {
        /// The capacity of the queue.
        capacity: usize,
    },
    /// The peer end was dropped. The frame was not sent.
    PeerGone,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::BufferTooSmall { frame_len, buf_len } => write!(
                f,
                "a {frame_len}-byte frame does not fit in a {buf_len}-byte buffer; it stays \
                 queued: receive it with a buffer of at least {frame_len} bytes (MTU + 18)"
            ),
            LinkError::FrameTooLong { len, max } => write!(
                f,
                "a {len}-byte frame is longer than the link carries ({max} bytes: MTU + \
                 Ethernet header + VLAN tag); it was not sent"
            ),
            LinkError::FrameTooShort { len } => write!(
                f,
                "a {len}-byte frame is shorter than an Ethernet header (14 bytes); it was \
                 not sent"
            ),
            LinkError::QueueFull { capacity } => write!(
                f,
                "{capacity} frames are already in flight on this link and the peer does not \
                 receive them; the frame was not sent"
            ),
            LinkError::PeerGone => {
                write!(
                    f,
                    "the other end of the link was dropped; the frame was not sent"
                )
            }
        }
    }
}

impl std::error::Error for LinkError {}

/// Makes a link with the MTU [`DEFAULT_MTU`] (1500). See [`pair_with_mtu`].
#[must_use]
pub fn pair(faults: Faults) -> (LinkEnd, LinkEnd) {
    pair_with_mtu(faults, DEFAULT_MTU)
}

/// Makes a link with the given MTU: two ends, each receiving what the
/// other sends.
///
/// The two ends have distinct locally administered unicast MACs
/// (`02:6d:6b:..`), distinct from those of any other link made in this
/// process.
///
/// # Panics
///
/// If a probability of `faults` is not within 0.0..=1.0, or `mtu` is 0.
pub fn pair_with_mtu(faults: Faults, mtu: usize) -> (LinkEnd, LinkEnd) {
    for (what, p) in [
        ("loss", faults.loss),
        ("duplicate", faults.duplicate),
        ("reorder", faults.reorder),
    ] {
        assert!(
            (0.0..=1.0).contains(&p),
            "Faults::{what} is {p}, but a probability must be within 0.0..=1.0"
        );
    }
    assert!(mtu > 0, "a link's MTU must not be 0");
    static NEXT_LINK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let link = NEXT_LINK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mac = |end: u32| {
        // 02 (locally administered, unicast), "mk", then 24 bits: link
        // number and end.
        let [_, hi, mid, lo] = link.wrapping_mul(2).wrapping_add(end).to_be_bytes();
        [0x02, 0x6d, 0x6b, hi, mid, lo]
    };
    let shared = Rc::new(Shared {
        queues: [RefCell::default(), RefCell::default()],
        stats: Default::default(),
        rng: Cell::new(SplitMix64(faults.seed)),
        faults,
        mtu,
        cut: Cell::new(false),
    });
    let a = LinkEnd {
        shared: shared.clone(),
        side: 0,
        mac: mac(0),
    };
    let b = LinkEnd {
        shared,
        side: 1,
        mac: mac(1),
    };
    (a, b)
}

/// One end of an in-memory link, made by [`pair`]. Not `Send`: both ends
/// live in the thread that made them.
pub struct LinkEnd {
    shared: Rc<Shared>,
    /// 0 or 1: this end sends into `queues[side]` and receives from
    /// `queues[1 - side]`.
    side: usize,
    mac: [u8; 6],
}

struct Shared {
    /// `queues[i]`: frames sent by end `i`, in delivery order, with
    /// non-decreasing deliverable times.
    queues: [RefCell<VecDeque<Frame>>; 2],
    /// `stats[i]`: counters of end `i`.
    stats: [Cell<LinkStats>; 2],
    rng: Cell<SplitMix64>,
    faults: Faults,
    mtu: usize,
    /// Set by a [`CutSwitch`]: every frame sent is lost.
    cut: Cell<bool>,
}

/// Cuts a link and mends it, as pulling a cable out and plugging it back:
/// while cut, every frame sent either way is lost (reported as sent and
/// counted in [`LinkStats::dropped`]). Made by [`LinkEnd::cut_switch`];
/// it does not keep the link alive (once an end is dropped, it does
/// nothing).
///
/// ```
/// use mkernel::net::link::{self, Faults};
/// let (a, b) = link::pair(Faults::default());
/// let switch = a.cut_switch();
/// let frame = [0u8; 60];
/// switch.set(true);
/// a.send(&frame, 0).unwrap();
/// assert_eq!(b.try_recv(&mut [0; 1518], 0), Ok(None));
/// assert_eq!(a.stats().dropped, 1);
/// switch.set(false);
/// a.send(&frame, 0).unwrap();
/// assert_eq!(b.try_recv(&mut [0; 1518], 0), Ok(Some(60)));
/// ```
#[derive(Clone)]
pub struct CutSwitch(std::rc::Weak<Shared>);

impl CutSwitch {
    /// Cuts the link (`true`) or mends it (`false`).
    pub fn set(&self, cut: bool) {
        if let Some(s) = self.0.upgrade() {
            s.cut.set(cut);
        }
    }

    /// Whether the link is cut.
    #[must_use]
    pub fn is_cut(&self) -> bool {
        self.0.upgrade().is_some_and(|s| s.cut.get())
    }
}

impl fmt::Debug for CutSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CutSwitch(cut: {})", self.is_cut())
    }
}

struct Frame {
    data: Box<[u8]>,
    ready_at: u64,
}

impl LinkEnd {
    /// Sends `frame` towards the peer at time `now_ns`; it becomes
    /// receivable at `now_ns + delay` (see [`Faults`]), and never before a
    /// frame sent earlier unless reordered.
    ///
    /// A frame lost by [`Faults::loss`] is reported as sent (`Ok`), as on a
    /// real cable, and counted in [`LinkStats::dropped`].
    ///
    /// # Errors
    ///
    /// [`LinkError::FrameTooShort`], [`LinkError::FrameTooLong`],
    /// [`LinkError::QueueFull`], [`LinkError::PeerGone`]: the frame was not
    /// sent.
    pub fn send(&self, frame: &[u8], now_ns: u64) -> Result<(), LinkError> {
        let max = self.max_frame();
        if frame.len() < ETH_HEADER {
            return Err(LinkError::FrameTooShort { len: frame.len() });
        }
        if frame.len() > max {
            return Err(LinkError::FrameTooLong {
                len: frame.len(),
                max,
            });
        }
        if Rc::strong_count(&self.shared) < 2 {
            return Err(LinkError::PeerGone);
        }
        let mut queue = self.shared.queues[self.side].borrow_mut();
        let f = &self.shared.faults;
        let duplicate = self.chance(f.duplicate);
        if queue.len() + 1 + usize::from(duplicate) > QUEUE_CAPACITY {
            return Err(LinkError::QueueFull {
                capacity: QUEUE_CAPACITY,
            });
        }
        let mut stats = self.shared.stats[self.side].get();
        stats.sent += 1;
        if self.shared.cut.get() || self.chance(f.loss) {
            stats.dropped += 1;
            self.shared.stats[self.side].set(stats);
            return Ok(());
        }
        let delay = u64::try_from(f.delay.as_nanos()).unwrap_or(u64::MAX);
        // Keep delivery times non-decreasing even if the caller's clock
        // goes backwards.
        let last = queue.back().map_or(0, |fr| fr.ready_at);
        let ready_at = now_ns.saturating_add(delay).max(last);
        let copies = 1 + usize::from(duplicate);
        let reorder = !queue.is_empty() && self.chance(f.reorder);
        for _ in 0..copies {
            queue.push_back(Frame {
                data: frame.into(),
                ready_at,
            });
        }
        if reorder {
            // Move the predecessor behind the new frame(s); the new frames
            // take its (earlier or equal) deliverable time.
            let n = queue.len();
            let pred_at = queue[n - 1 - copies].ready_at;
            if let Some(mut pred) = queue.remove(n - 1 - copies) {
                pred.ready_at = ready_at;
                queue.push_back(pred);
            }
            for fr in queue.iter_mut().rev().skip(1).take(copies) {
                fr.ready_at = pred_at;
            }
            stats.reordered += 1;
        }
        stats.duplicated += u64::from(duplicate);
        stats.in_flight += copies as u64;
        self.shared.stats[self.side].set(stats);
        Ok(())
    }

    /// Receives the next frame if it is receivable at `now_ns`: copies it
    /// into `buf` and returns its length, or returns `Ok(None)` when no
    /// frame is receivable yet (see [`next_ready_at`](Self::next_ready_at)).
    ///
    /// # Errors
    ///
    /// [`LinkError::BufferTooSmall`] when the frame is larger than `buf`;
    /// the frame stays queued.
    pub fn try_recv(&self, buf: &mut [u8], now_ns: u64) -> Result<Option<usize>, LinkError> {
        let peer = 1 - self.side;
        let mut queue = self.shared.queues[peer].borrow_mut();
        match queue.front() {
            Some(fr) if fr.ready_at <= now_ns => {
                let len = fr.data.len();
                if len > buf.len() {
                    return Err(LinkError::BufferTooSmall {
                        frame_len: len,
                        buf_len: buf.len(),
                    });
                }
                buf[..len].copy_from_slice(&fr.data);
                queue.pop_front();
                update(&self.shared.stats[peer], |s| {
                    s.delivered += 1;
                    s.in_flight -= 1;
                });
                update(&self.shared.stats[self.side], |s| s.received += 1);
                Ok(Some(len))
            }
            _ => Ok(None),
        }
    }

    /// The time at which the next frame towards this end becomes
    /// receivable (at or before `now_ns` means: receivable now), or `None`
    /// when no frame is in flight towards this end.
    #[must_use]
    pub fn next_ready_at(&self) -> Option<u64> {
        self.shared.queues[1 - self.side]
            .borrow()
            .front()
            .map(|fr| fr.ready_at)
    }

    /// A switch that cuts this link (both directions) and mends it.
    #[must_use]
    pub fn cut_switch(&self) -> CutSwitch {
        CutSwitch(Rc::downgrade(&self.shared))
    }

    /// This end's counters (see [`LinkStats`]).
    #[must_use]
    pub fn stats(&self) -> LinkStats {
        self.shared.stats[self.side].get()
    }

    /// This end's MAC address (locally administered, unicast, unique in the
    /// process).
    #[must_use]
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The link's MTU: 1500 unless made by [`pair_with_mtu`]. The longest
    /// frame carried is MTU + 18 (Ethernet header and one VLAN tag).
    #[must_use]
    pub fn mtu(&self) -> usize {
        self.shared.mtu
    }

    fn max_frame(&self) -> usize {
        self.shared.mtu + ETH_HEADER + VLAN_TAG
    }

    /// Draws `true` with probability `p`, without touching the generator
    /// when `p` is 0 (so a clean link never depends on the seed).
    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let mut rng = self.shared.rng.get();
        let r = rng.next_f64();
        self.shared.rng.set(rng);
        r < p
    }
}

impl fmt::Debug for LinkEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.mac;
        f.debug_struct("LinkEnd")
            .field(
                "mac",
                &format_args!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                ),
            )
            .field("mtu", &self.shared.mtu)
            .field("stats", &self.stats())
            .finish()
    }
}

fn update(cell: &Cell<LinkStats>, f: impl FnOnce(&mut LinkStats)) {
    let mut s = cell.get();
    f(&mut s);
    cell.set(s);
}

/// SplitMix64: small, fast, good enough for fault injection.
#[derive(Clone, Copy)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 60-byte frame whose first byte is `tag`.
    fn frame(tag: u8) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0] = tag;
        f
    }

    /// Receives every frame receivable at `now`, returning their tags.
    fn drain(end: &LinkEnd, now: u64) -> Vec<u8> {
        let mut buf = [0u8; 1518];
        let mut tags = Vec::new();
        while let Some(n) = end.try_recv(&mut buf, now).unwrap() {
            assert_eq!(n, 60);
            tags.push(buf[0]);
        }
        tags
    }

    fn check_invariant(s: LinkStats) {
        assert_eq!(
            s.sent - s.dropped + s.duplicated,
            s.delivered + s.in_flight,
            "{s:?}"
        );
    }

    #[test]
    fn clean_link_is_fifo_both_ways() {
        let (a, b) = pair(Faults::default());
        for i in 0..10 {
            a.send(&frame(i), 0).unwrap();
            b.send(&frame(100 + i), 0).unwrap();
        }
        assert_eq!(drain(&b, 0), (0..10).collect::<Vec<_>>());
        assert_eq!(drain(&a, 0), (100..110).collect::<Vec<_>>());
        let s = a.stats();
        assert_eq!(
            s,
            LinkStats {
                sent: 10,
                delivered: 10,
                received: 10,
                ..LinkStats::default()
            }
        );
        assert_eq!(a.next_ready_at(), None);
    }

    #[test]
    fn frame_content_and_length_preserved() {
        let (a, b) = pair(Faults::default());
        let f: Vec<u8> = (0..1514).map(|i| i as u8).collect();
        a.send(&f, 0).unwrap();
        a.send(&f[..14], 0).unwrap();
        let mut buf = vec![0u8; 2000];
        assert_eq!(b.try_recv(&mut buf, 0), Ok(Some(1514)));
        assert_eq!(&buf[..1514], &f[..]);
        assert_eq!(b.try_recv(&mut buf, 0), Ok(Some(14)));
        assert_eq!(&buf[..14], &f[..14]);
    }

    #[test]
    fn macs_and_mtu() {
        let (a, b) = pair(Faults::default());
        let (c, d) = pair_with_mtu(Faults::default(), 9000);
        let macs = [a.mac(), b.mac(), c.mac(), d.mac()];
        for (i, m) in macs.iter().enumerate() {
            assert_eq!(m[0] & 0x01, 0, "unicast");
            assert_eq!(m[0] & 0x02, 0x02, "locally administered");
            for n in &macs[i + 1..] {
                assert_ne!(m, n);
            }
        }
        assert_eq!(a.mtu(), 1500);
        assert_eq!(d.mtu(), 9000);
        // MTU + 18 fits, one more byte does not.
        assert!(c.send(&vec![0u8; 9018], 0).is_ok());
        assert_eq!(
            c.send(&vec![0u8; 9019], 0),
            Err(LinkError::FrameTooLong {
                len: 9019,
                max: 9018
            })
        );
    }

    #[test]
    fn bad_frames_are_refused_not_counted() {
        let (a, b) = pair(Faults::default());
        assert_eq!(
            a.send(&[0u8; 13], 0),
            Err(LinkError::FrameTooShort { len: 13 })
        );
        assert_eq!(
            a.send(&[0u8; 1519], 0).unwrap_err().to_string(),
            "a 1519-byte frame is longer than the link carries (1518 bytes: MTU + Ethernet \
             header + VLAN tag); it was not sent"
        );
        assert_eq!(
            LinkError::FrameTooShort { len: 3 }.to_string(),
            "a 3-byte frame is shorter than an Ethernet header (14 bytes); it was not sent"
        );
        assert_eq!(a.stats(), LinkStats::default());
        assert_eq!(b.next_ready_at(), None);
    }

    #[test]
    fn small_buffer_keeps_the_frame() {
        let (a, b) = pair(Faults::default());
        a.send(&frame(7), 0).unwrap();
        let mut small = [0u8; 59];
        let err = b.try_recv(&mut small, 0).unwrap_err();
        assert_eq!(
            err,
            LinkError::BufferTooSmall {
                frame_len: 60,
                buf_len: 59
            }
        );
        assert_eq!(
            err.to_string(),
            "a 60-byte frame does not fit in a 59-byte buffer; it stays queued: receive it \
             with a buffer of at least 60 bytes (MTU + 18)"
        );
        assert_eq!(drain(&b, 0), vec![7]);
    }

    #[test]
    fn delay() {
        let (a, b) = pair(Faults {
            delay: Duration::from_micros(5),
            ..Faults::default()
        });
        a.send(&frame(1), 1_000).unwrap();
        a.send(&frame(2), 2_000).unwrap();
        assert_eq!(b.next_ready_at(), Some(6_000));
        assert_eq!(drain(&b, 5_999), Vec::<u8>::new());
        assert_eq!(drain(&b, 6_000), vec![1]);
        assert_eq!(b.next_ready_at(), Some(7_000));
        assert_eq!(drain(&b, 100_000), vec![2]);
        assert_eq!(b.next_ready_at(), None);
    }

    #[test]
    fn clock_going_backwards_keeps_fifo() {
        let (a, b) = pair(Faults {
            delay: Duration::from_nanos(10),
            ..Faults::default()
        });
        a.send(&frame(1), 100).unwrap();
        a.send(&frame(2), 50).unwrap();
        assert_eq!(drain(&b, 109), Vec::<u8>::new());
        assert_eq!(drain(&b, 110), vec![1, 2]);
    }

    #[test]
    fn full_queue_is_reported() {
        let (a, b) = pair(Faults::default());
        for i in 0..QUEUE_CAPACITY {
            a.send(&frame(i as u8), 0).unwrap();
        }
        let err = a.send(&frame(0), 0).unwrap_err();
        assert_eq!(err, LinkError::QueueFull { capacity: 4096 });
        assert_eq!(
            err.to_string(),
            "4096 frames are already in flight on this link and the peer does not receive \
             them; the frame was not sent"
        );
        assert_eq!(a.stats().sent, QUEUE_CAPACITY as u64);
        assert_eq!(a.stats().in_flight, QUEUE_CAPACITY as u64);
        // Receiving one makes room for one.
        assert!(drain(&b, 0).len() == QUEUE_CAPACITY);
        a.send(&frame(0), 0).unwrap();
        check_invariant(a.stats());
    }

    #[test]
    fn peer_gone() {
        let (a, b) = pair(Faults::default());
        b.send(&frame(3), 0).unwrap();
        drop(b);
        assert_eq!(a.send(&frame(1), 0), Err(LinkError::PeerGone));
        // What was sent before is still there.
        assert_eq!(drain(&a, 0), vec![3]);
    }

    #[test]
    fn total_loss() {
        let (a, b) = pair(Faults {
            loss: 1.0,
            ..Faults::default()
        });
        for i in 0..100 {
            a.send(&frame(i), 0).unwrap();
        }
        assert_eq!(drain(&b, 0), Vec::<u8>::new());
        assert_eq!(a.stats().dropped, 100);
        check_invariant(a.stats());
    }

    #[test]
    fn total_duplication() {
        let (a, b) = pair(Faults {
            duplicate: 1.0,
            ..Faults::default()
        });
        for i in 0..3 {
            a.send(&frame(i), 0).unwrap();
        }
        assert_eq!(drain(&b, 0), vec![0, 0, 1, 1, 2, 2]);
        let s = a.stats();
        assert_eq!((s.sent, s.duplicated, s.delivered), (3, 3, 6));
        assert_eq!(b.stats().received, 6);
        check_invariant(s);
    }

    #[test]
    fn total_reordering_swaps_with_the_predecessor() {
        let (a, b) = pair(Faults {
            reorder: 1.0,
            delay: Duration::from_nanos(100),
            ..Faults::default()
        });
        a.send(&frame(1), 0).unwrap(); // nothing to overtake
        a.send(&frame(2), 10).unwrap(); // overtakes 1
        assert_eq!(a.stats().reordered, 1);
        // The overtaking frame is receivable when 1 would have been.
        assert_eq!(b.next_ready_at(), Some(100));
        assert_eq!(drain(&b, 100), vec![2]);
        assert_eq!(drain(&b, 110), vec![1]);
        check_invariant(a.stats());
    }

    #[test]
    fn faults_are_reproducible_and_roughly_proportional() {
        let faults = Faults {
            loss: 0.1,
            duplicate: 0.05,
            reorder: 0.2,
            delay: Duration::from_nanos(10),
            seed: 1234,
        };
        let run = |faults: Faults| {
            let (a, b) = pair(faults);
            let mut got = Vec::new();
            for i in 0..2000u32 {
                a.send(&frame(i as u8), u64::from(i)).unwrap();
                if i % 7 == 0 {
                    got.extend(drain(&b, u64::from(i)));
                }
            }
            got.extend(drain(&b, u64::MAX));
            check_invariant(a.stats());
            assert_eq!(a.stats().in_flight, 0);
            (got, a.stats())
        };
        let (got1, s1) = run(faults.clone());
        let (got2, s2) = run(faults.clone());
        assert_eq!(got1, got2);
        assert_eq!(s1, s2);
        assert!((150..250).contains(&s1.dropped), "{s1:?}");
        assert!((60..120).contains(&s1.duplicated), "{s1:?}");
        assert!((250..450).contains(&s1.reordered), "{s1:?}");
        let (got3, _) = run(Faults { seed: 99, ..faults });
        assert_ne!(got1, got3);
    }

    #[test]
    #[should_panic(expected = "Faults::loss is 1.5, but a probability must be within 0.0..=1.0")]
    fn bad_probability_panics() {
        let _ = pair(Faults {
            loss: 1.5,
            ..Faults::default()
        });
    }

    #[test]
    #[should_panic(expected = "Faults::reorder is NaN")]
    fn nan_probability_panics() {
        let _ = pair(Faults {
            reorder: f64::NAN,
            ..Faults::default()
        });
    }
}

//! `Net`, the net device handed to the main function.

use super::link::{LinkEnd, LinkError};
use crate::fiber::{self, Syscall, suspend};
use crate::reactor::{self, NetSource, NetWait, Timer};
use crate::sys::OffloadHdr;
use crate::sys::{self, clock};
use core::cell::{Cell, RefCell};
use core::fmt;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

/// A net device's configuration (`Net.cfg` in OCaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetCfg {
    /// The unikernel's MAC address on this device.
    pub mac: [u8; 6],
    /// The device's MTU (bytes of IP payload per frame; a frame is at most
    /// `mtu + 14` bytes).
    pub mtu: usize,
}

/// What kind of [`NetError`] this is.
///
/// ```
/// use mkernel::net::{link, NetErrorKind};
/// let (a, _b) = link::pair(link::Faults::default());
/// let kind = mkernel::Builder::new()
///     .net_link("service", a)
///     .run(mkernel::net("service"), |(net, _cfg)| net.write(&[0u8; 4]).unwrap_err().kind());
/// assert_eq!(kind, NetErrorKind::TooShort);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetErrorKind {
    /// A frame to write is longer than the device allows (MTU + 14 bytes).
    /// It was not sent.
    TooLong,
    /// A frame to write is shorter than an Ethernet header (14 bytes). It
    /// was not sent.
    TooShort,
    /// The frame that came in is larger than the buffer given to read it.
    BufferTooSmall,
    /// The system (or the Solo5 tender) failed the read or write;
    /// [`source`](std::error::Error::source) is its [`io::Error`].
    Io,
    /// An in-memory link refused the frame (its queue is full, its other
    /// end was dropped); [`source`](std::error::Error::source) is the
    /// [`LinkError`].
    Link,
    /// The task is being cancelled and cannot wait for a frame.
    Cancelled,
}

/// An error of a net device: its [`kind`](NetError::kind) and a message
/// naming the device and saying what was wrong. The message includes the
/// text of the underlying error, which [`source`](std::error::Error::source)
/// gives as a value (an [`io::Error`] of the system, a [`LinkError`]). An
/// `io::Error` made from it ([`From`]) has a matching [`io::ErrorKind`].
///
/// ```
/// use mkernel::net::link;
/// let (a, _b) = link::pair(link::Faults::default());
/// let e = mkernel::Builder::new()
///     .net_link("service", a)
///     .run(mkernel::net("service"), |(net, _cfg)| net.write(&[0u8; 4]).unwrap_err());
/// assert!(e.to_string().contains("shorter than an Ethernet header"));
/// assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug, Clone)]
pub struct NetError {
    kind: NetErrorKind,
    msg: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl NetError {
    pub(crate) fn new(kind: NetErrorKind, msg: String) -> NetError {
        NetError {
            kind,
            msg,
            source: None,
        }
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> NetErrorKind {
        self.kind
    }
}

/// Two errors are equal when their kinds and messages are (the message
/// includes the text of the source, if any).
impl PartialEq for NetError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.msg == other.msg
    }
}

impl Eq for NetError {}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<NetError> for io::Error {
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for a frame of the
    /// wrong size or a buffer too small, the system error's own kind for
    /// [`Io`](NetErrorKind::Io), [`Interrupted`](io::ErrorKind::Interrupted)
    /// for [`Cancelled`](NetErrorKind::Cancelled), and for
    /// [`Link`](NetErrorKind::Link): [`BrokenPipe`](io::ErrorKind::BrokenPipe)
    /// (the other end was dropped) or
    /// [`WouldBlock`](io::ErrorKind::WouldBlock) (its queue is full). The
    /// `NetError` is the `io::Error`'s [`get_ref`](io::Error::get_ref).
    fn from(e: NetError) -> io::Error {
        let cause = e.source.as_deref();
        let kind = match e.kind {
            NetErrorKind::TooLong | NetErrorKind::TooShort | NetErrorKind::BufferTooSmall => {
                io::ErrorKind::InvalidInput
            }
            NetErrorKind::Io => cause
                .and_then(|c| c.downcast_ref::<io::Error>())
                .map_or(io::ErrorKind::Other, io::Error::kind),
            NetErrorKind::Link => match cause.and_then(|c| c.downcast_ref::<LinkError>()) {
                Some(LinkError::PeerGone) => io::ErrorKind::BrokenPipe,
                Some(LinkError::QueueFull { .. }) => io::ErrorKind::WouldBlock,
                _ => io::ErrorKind::Other,
            },
            NetErrorKind::Cancelled => io::ErrorKind::Interrupted,
        };
        io::Error::new(kind, e)
    }
}

pub(crate) enum NetBackend {
    /// An in-memory link (tests, demos).
    Link(LinkEnd),
    /// A device of the system: a TAP interface hosted, the tender's device
    /// on Solo5.
    Sys(sys::NetDev),
}

/// A net device of the run (shared by every `Net` handle to it).
pub(crate) struct NetDevice {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) cfg: NetCfg,
    pub(crate) backend: NetBackend,
    /// The buffer [`Net::write_into`] lends to its closure: one per device,
    /// of MTU + 14 bytes, allocated at the first call and reused.
    write_buf: RefCell<Vec<u8>>,
    /// Where every frame read or written is captured (`--pcap`), if set.
    pcap: Option<RefCell<Pcap>>,
    /// Checksum and segmentation offloads are on ([`NetDevice::enable_offload`]).
    offload: Cell<bool>,
}

/// The longest frame written with segmentation offload: an IP packet of
/// 64 KiB - 1 (its length field's limit) and an Ethernet header.
pub(crate) const MAX_OFFLOAD_FRAME: usize = 65535 + 14;

/// A pcap capture file (smoltcp writes the format), flushed after every
/// frame so that a capture of a program that is killed stays whole.
pub(crate) struct Pcap {
    out: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
}

impl Pcap {
    /// Creates (truncates) `path` and writes the pcap header (Ethernet).
    pub(crate) fn create(path: &std::path::Path) -> io::Result<Pcap> {
        use smoltcp::phy::{PcapLinkType, PcapSink};
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        out.global_header(PcapLinkType::Ethernet);
        std::io::Write::flush(&mut out)?;
        Ok(Pcap {
            out,
            path: path.to_owned(),
        })
    }

    fn frame(&mut self, frame: &[u8]) {
        use smoltcp::phy::PcapSink;
        let now = smoltcp::time::Instant::from_micros((clock::wall() / 1000) as i64);
        self.out.packet(now, frame);
        if let Err(e) = std::io::Write::flush(&mut self.out) {
            // A capture is a debugging aid: losing it must not stop the
            // device, but it is said.
            log::warn!("pcap capture {}: {e}", self.path.display());
        }
    }
}

impl NetDevice {
    /// Turns the device's checksum and TCP segmentation offloads on, if it
    /// has them (a TAP opened with offloads allowed: see
    /// [`Builder::net_offload`](crate::Builder::net_offload)); whether
    /// they are on. Only the TCP/IP stack asks: a program reading frames
    /// itself gets whole frames with their checksums.
    pub(crate) fn enable_offload(&self) -> bool {
        if let NetBackend::Sys(d) = &self.backend {
            if !self.offload.get() && d.enable_offload() {
                self.offload.set(true);
            }
        }
        self.offload.get()
    }

    /// Reads one frame and its offload header (all zeros while offloads
    /// are off): with offloads, a frame may be a TCP segment of up to
    /// 64 KiB whose checksum is left to complete or vouched for.
    pub(crate) fn try_read_hdr(
        &self,
        buf: &mut [u8],
    ) -> Result<Option<(usize, OffloadHdr)>, NetError> {
        let NetBackend::Sys(d) = &self.backend else {
            return Ok(self.try_read(buf)?.map(|n| (n, OffloadHdr::default())));
        };
        let r = d.try_read_hdr(buf).map_err(|e| self.io_err("read", e));
        if let (Some(p), Ok(Some((n, _)))) = (&self.pcap, &r) {
            p.borrow_mut().frame(&buf[..*n]);
        }
        r
    }

    /// Writes one frame with its offload header: with a segmentation, up
    /// to [`MAX_OFFLOAD_FRAME`] bytes. Only while offloads are on
    /// ([`enable_offload`](NetDevice::enable_offload)); otherwise the
    /// header is ignored and this is [`write`](NetDevice::write).
    pub(crate) fn write_hdr(&self, hdr: OffloadHdr, frame: &[u8]) -> Result<(), NetError> {
        let NetBackend::Sys(d) = &self.backend else {
            return self.write(frame);
        };
        if !self.offload.get() || hdr.gso_type == OffloadHdr::GSO_NONE && hdr.flags == 0 {
            return self.write(frame);
        }
        if frame.len() > MAX_OFFLOAD_FRAME || frame.len() < 14 {
            return Err(NetError::new(
                if frame.len() < 14 {
                    NetErrorKind::TooShort
                } else {
                    NetErrorKind::TooLong
                },
                format!(
                    "net device {:?}: a segment of {} bytes is not 14 to {MAX_OFFLOAD_FRAME} bytes long",
                    self.name,
                    frame.len()
                ),
            ));
        }
        d.write_hdr(hdr, frame)
            .map_err(|e| self.io_err("write", e))?;
        if let Some(p) = &self.pcap {
            p.borrow_mut().frame(frame);
        }
        Ok(())
    }

    pub(crate) fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        let r = match &self.backend {
            NetBackend::Link(l) => l
                .try_recv(buf, clock::monotonic())
                .map_err(|e| self.link_err("read", e)),
            NetBackend::Sys(d) => d.try_read(buf).map_err(|e| self.io_err("read", e)),
        };
        if let (Some(p), Ok(Some(n))) = (&self.pcap, &r) {
            p.borrow_mut().frame(&buf[..*n]);
        }
        r
    }

    pub(crate) fn write(&self, frame: &[u8]) -> Result<(), NetError> {
        let max = self.cfg.mtu + 14;
        if frame.len() > max {
            return Err(NetError::new(
                NetErrorKind::TooLong,
                format!(
                    "net device {:?}: a frame of {} bytes is larger than the device allows ({max} = MTU {} + 14)",
                    self.name,
                    frame.len(),
                    self.cfg.mtu
                ),
            ));
        }
        if frame.len() < 14 {
            return Err(NetError::new(
                NetErrorKind::TooShort,
                format!(
                    "net device {:?}: a frame of {} bytes is shorter than an Ethernet header (14 bytes)",
                    self.name,
                    frame.len()
                ),
            ));
        }
        match &self.backend {
            NetBackend::Link(l) => {
                l.send(frame, clock::monotonic())
                    .map_err(|e| self.link_err("write", e))?;
                reactor::with(|r| r.link_sent());
            }
            NetBackend::Sys(d) => d.write(frame).map_err(|e| self.io_err("write", e))?,
        }
        if let Some(p) = &self.pcap {
            p.borrow_mut().frame(frame);
        }
        Ok(())
    }

    pub(crate) fn write_into(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<(), NetError> {
        let max = self.cfg.mtu + 14;
        if len > max {
            return Err(NetError::new(
                NetErrorKind::TooLong,
                format!(
                    "net device {:?}: a frame of up to {len} bytes is larger than the device allows ({max} = MTU {} + 14)",
                    self.name, self.cfg.mtu
                ),
            ));
        }
        // Taken out of the cell while `fill` runs, so that a `fill` that
        // writes on the same device (it may) gets a buffer of its own.
        let mut buf = self.write_buf.take();
        if buf.capacity() < max {
            buf.reserve_exact(max - buf.len());
        }
        buf.resize(len, 0);
        let n = fill(&mut buf[..len]);
        let r = if n > len {
            Err(NetError::new(
                NetErrorKind::TooLong,
                format!(
                    "net device {:?}: write_into's closure says it filled {n} bytes of a {len}-byte buffer",
                    self.name
                ),
            ))
        } else {
            self.write(&buf[..n])
        };
        // Keep the larger buffer if a nested call left one.
        let mut cell = self.write_buf.borrow_mut();
        if buf.capacity() >= cell.capacity() {
            *cell = buf;
        }
        r
    }

    fn io_err(&self, what: &str, e: io::Error) -> NetError {
        NetError {
            kind: NetErrorKind::Io,
            msg: format!("net device {:?}: {what} failed: {e}", self.name),
            source: Some(Arc::new(e)),
        }
    }

    fn link_err(&self, what: &str, e: LinkError) -> NetError {
        NetError {
            msg: format!("net device {:?}: {what} failed: {e}", self.name),
            ..NetError::from(e)
        }
    }
}

impl NetSource for NetDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn next_ready_at(&self) -> Option<u64> {
        match &self.backend {
            NetBackend::Link(l) => l.next_ready_at(),
            NetBackend::Sys(_) => None,
        }
    }
}

impl From<LinkError> for NetError {
    /// [`BufferTooSmall`](LinkError::BufferTooSmall),
    /// [`FrameTooLong`](LinkError::FrameTooLong) and
    /// [`FrameTooShort`](LinkError::FrameTooShort) have their own
    /// [`NetErrorKind`]; the others are of kind
    /// [`Link`](NetErrorKind::Link). The `LinkError` is the source.
    fn from(e: LinkError) -> NetError {
        let kind = match e {
            LinkError::BufferTooSmall { .. } => NetErrorKind::BufferTooSmall,
            LinkError::FrameTooLong { .. } => NetErrorKind::TooLong,
            LinkError::FrameTooShort { .. } => NetErrorKind::TooShort,
            _ => NetErrorKind::Link,
        };
        NetError {
            kind,
            msg: e.to_string(),
            source: Some(Arc::new(e)),
        }
    }
}

/// A net device: raw Ethernet frames (see the [module docs](mod@crate::net)).
///
/// ```
/// use mkernel::net::link;
/// let (a, b) = link::pair(link::Faults::default());
/// let got = mkernel::Builder::new()
///     .net_link("a", a)
///     .net_link("b", b)
///     .run((mkernel::net("a"), mkernel::net("b")), |((a, _), (b, bcfg))| {
///         let reader = mkernel::spawn(move || {
///             let mut buf = [0u8; 1514];
///             let n = b.read(&mut buf).unwrap(); // suspends until the frame is there
///             buf[..n].to_vec()
///         });
///         let mut frame = vec![0u8; 60];
///         frame[..6].copy_from_slice(&bcfg.mac);
///         a.write(&frame).unwrap();
///         reader.join().unwrap().len()
///     });
/// assert_eq!(got, 60);
/// ```
#[derive(Clone)]
pub struct Net {
    pub(crate) dev: Rc<NetDevice>,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Net({:?})", self.dev.name)
    }
}

impl Net {
    /// Reads one frame into `buf`, suspending the task until one is there.
    /// Returns the frame's length. A frame larger than `buf` is an error (it
    /// is not truncated; give a buffer of at least MTU + 14 bytes).
    ///
    /// # Errors
    ///
    /// A [`NetError`] of kind [`BufferTooSmall`](NetErrorKind::BufferTooSmall)
    /// (the frame is larger than `buf`), [`Io`](NetErrorKind::Io) (the system
    /// failed the read) or
    /// [`Cancelled`](NetErrorKind::Cancelled) (the task is being cancelled and
    /// cannot wait).
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        loop {
            if let Some(n) = self.dev.try_read(buf)? {
                return Ok(n);
            }
            self.wait(None)?;
        }
    }

    /// Like [`read`](Net::read), giving up at `deadline` (ns of
    /// [`clock_monotonic`](crate::clock_monotonic)): `Ok(None)` then.
    ///
    /// # Errors
    ///
    /// A [`NetError`] of kind [`BufferTooSmall`](NetErrorKind::BufferTooSmall)
    /// (the frame is larger than `buf`), [`Io`](NetErrorKind::Io) (the system
    /// failed the read) or
    /// [`Cancelled`](NetErrorKind::Cancelled) (the task is being cancelled and
    /// cannot wait).
    pub fn read_until(&self, buf: &mut [u8], deadline: u64) -> Result<Option<usize>, NetError> {
        loop {
            if let Some(n) = self.dev.try_read(buf)? {
                return Ok(Some(n));
            }
            if clock::monotonic() >= deadline {
                return Ok(None);
            }
            self.wait(Some(deadline))?;
        }
    }

    /// One non-suspending attempt: `Ok(None)` when no frame is there.
    ///
    /// # Errors
    ///
    /// A [`NetError`] of kind [`BufferTooSmall`](NetErrorKind::BufferTooSmall)
    /// (the frame is larger than `buf`), [`Io`](NetErrorKind::Io) (the system
    /// failed the read).
    pub fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        self.dev.try_read(buf)
    }

    /// Writes one frame. Never suspends.
    ///
    /// # Errors
    ///
    /// A [`NetError`] of kind [`TooLong`](NetErrorKind::TooLong) or
    /// [`TooShort`](NetErrorKind::TooShort) (the frame is not 14 to MTU + 14
    /// bytes), [`Io`](NetErrorKind::Io) (the system failed the write) or
    /// [`Link`](NetErrorKind::Link) (an in-memory link refused it). The frame
    /// was not sent.
    pub fn write(&self, frame: &[u8]) -> Result<(), NetError> {
        self.dev.write(frame)
    }

    /// Writes one frame filled in place (mkernel's `Net.write_into`): `fill`
    /// gets a buffer of `len` bytes owned by the device, writes the frame at
    /// its start and returns the frame's length; the first that many bytes
    /// are written. Never suspends.
    ///
    /// The buffer is the device's own, allocated once (MTU + 14 bytes) and
    /// lent to every call, so no frame is copied into a buffer of the
    /// caller's first and none is allocated per frame. Its bytes are
    /// whatever the previous frame left there (zeros at first): `fill`
    /// writes every byte of the frame it returns. `fill` may write on the
    /// same device (it then gets a buffer of its own).
    ///
    /// ```
    /// use mkernel::net::link;
    /// let (a, b) = link::pair(link::Faults::default());
    /// let got = mkernel::Builder::new()
    ///     .net_link("a", a)
    ///     .net_link("b", b)
    ///     .run((mkernel::net("a"), mkernel::net("b")), |((a, acfg), (b, bcfg))| {
    ///         // An Ethernet header and a 46-byte payload, built in place.
    ///         a.write_into(acfg.mtu + 14, |buf| {
    ///             buf[..6].copy_from_slice(&bcfg.mac);
    ///             buf[6..12].copy_from_slice(&acfg.mac);
    ///             buf[12..14].copy_from_slice(&0x88b5u16.to_be_bytes()); // experimental
    ///             buf[14..60].fill(0x42);
    ///             60
    ///         })
    ///         .unwrap();
    ///         let mut frame = [0u8; 1514];
    ///         let n = b.read(&mut frame).unwrap();
    ///         frame[..n].to_vec()
    ///     });
    /// assert_eq!(got.len(), 60);
    /// assert!(got[14..].iter().all(|&x| x == 0x42));
    /// ```
    ///
    /// # Errors
    ///
    /// As [`write`](Net::write): a [`NetError`] of kind
    /// [`TooLong`](NetErrorKind::TooLong) (`len` is more than MTU + 14
    /// bytes, and then `fill` is not called; or `fill` returned more than
    /// `len`), [`TooShort`](NetErrorKind::TooShort) (`fill` returned less
    /// than 14 bytes), [`Io`](NetErrorKind::Io) or
    /// [`Link`](NetErrorKind::Link). The frame was not sent.
    pub fn write_into(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<(), NetError> {
        self.dev.write_into(len, fill)
    }

    /// The device's configuration.
    #[must_use]
    pub fn cfg(&self) -> NetCfg {
        self.dev.cfg
    }

    /// The device's name in the device list.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.dev.name
    }

    fn wait(&self, deadline: Option<u64>) -> Result<(), NetError> {
        if fiber::cannot_wait() {
            return Err(NetError::new(
                NetErrorKind::Cancelled,
                format!(
                    "net device {:?}: the reading task is being cancelled",
                    self.dev.name
                ),
            ));
        }
        let sc = Syscall::new();
        let _waiting = NetWait::new(self.dev.index, sc.id());
        let _timer = deadline.map(|d| Timer::new(d, sc.id()));
        suspend(&sc, || {});
        Ok(())
    }
}

/// Makes a `Net` for a device, registered with the run's reactor.
pub(crate) fn register(
    name: &str,
    cfg: NetCfg,
    backend: NetBackend,
    pcap: Option<Pcap>,
) -> (Net, NetCfg) {
    let dev = reactor::with(|r| {
        // The index is the next one: `add_net` hands it out in order.
        let dev = Rc::new(NetDevice {
            name: name.to_string(),
            index: r.net_count(),
            cfg,
            backend,
            write_buf: RefCell::default(),
            pcap: pcap.map(RefCell::new),
            offload: Cell::new(false),
        });
        let sys_dev = match &dev.backend {
            NetBackend::Sys(d) => Some(d),
            NetBackend::Link(_) => None,
        };
        let index = r.add_net(dev.clone(), sys_dev);
        debug_assert_eq!(index, dev.index);
        dev
    });
    (Net { dev }, cfg)
}

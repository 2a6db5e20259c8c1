//! `Net`, the net device handed to the main function.

use super::link::{LinkEnd, LinkError};
use crate::fiber::{Syscall, scheduler, suspend};
use crate::platform::{self, NetWait, Timer, clock};
use core::fmt;
use std::rc::Rc;

/// A net device's configuration (`Net.cfg` in OCaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetCfg {
    /// The unikernel's MAC address on this device.
    pub mac: [u8; 6],
    /// The device's MTU (bytes of IP payload per frame; a frame is at most
    /// `mtu + 14` bytes).
    pub mtu: usize,
}

/// An error of a net device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    msg: String,
}

impl NetError {
    pub(crate) fn new(msg: String) -> NetError {
        NetError { msg }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for NetError {}

pub(crate) enum NetBackend {
    Link(LinkEnd),
    #[cfg(not(mkernel_solo5))]
    Tap(crate::platform::hosted::tap::Tap),
    #[cfg(mkernel_solo5)]
    Solo5(u64),
}

/// A net device of the run (shared by every `Net` handle to it).
pub(crate) struct NetDevice {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) cfg: NetCfg,
    pub(crate) backend: NetBackend,
    /// Frames taken off a Solo5 device nobody was waiting on (see
    /// [`NetDevice::solo5_stash_pending`]), read before the device's own.
    #[cfg(mkernel_solo5)]
    stash: core::cell::RefCell<std::collections::VecDeque<Box<[u8]>>>,
}

/// Most frames kept in a Solo5 device's stash; later ones are dropped, as
/// a full TAP queue drops them (Linux's default TAP queue is 500 frames).
#[cfg(mkernel_solo5)]
const SOLO5_STASH_FRAMES: usize = 500;

impl NetDevice {
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        match &self.backend {
            NetBackend::Link(l) => l
                .try_recv(buf, clock::monotonic())
                .map_err(|e| self.err("read", e)),
            #[cfg(not(mkernel_solo5))]
            NetBackend::Tap(t) => t.try_read(buf).map_err(|e| self.err("read", e)),
            #[cfg(mkernel_solo5)]
            NetBackend::Solo5(h) => {
                if let Some(frame) = self.stash.borrow_mut().pop_front() {
                    if frame.len() > buf.len() {
                        return Err(self.err(
                            "read",
                            format!(
                                "a {}-byte frame did not fit in a {}-byte buffer and was dropped",
                                frame.len(),
                                buf.len()
                            ),
                        ));
                    }
                    buf[..frame.len()].copy_from_slice(&frame);
                    return Ok(Some(frame.len()));
                }
                let full = self.cfg.mtu + 14;
                if buf.len() >= full {
                    return crate::platform::solo5::net_read(*h, buf)
                        .map_err(|e| self.err("read", e));
                }
                // Solo5 truncates a frame to the buffer: read into a full-size
                // one so that a frame that does not fit is an error, as hosted.
                let mut frame = vec![0u8; full];
                match crate::platform::solo5::net_read(*h, &mut frame)
                    .map_err(|e| self.err("read", e))?
                {
                    None => Ok(None),
                    Some(n) if n <= buf.len() => {
                        buf[..n].copy_from_slice(&frame[..n]);
                        Ok(Some(n))
                    }
                    Some(n) => Err(self.err(
                        "read",
                        format!(
                            "a {n}-byte frame did not fit in a {}-byte buffer and was dropped",
                            buf.len()
                        ),
                    )),
                }
            }
        }
    }

    /// Moves the frames waiting on this Solo5 device into its stash (at
    /// most [`SOLO5_STASH_FRAMES`] kept, the others dropped), so that the
    /// device stops being ready. `solo5_yield` cannot be told to ignore a
    /// device: without this, a frame nobody reads would make every idle
    /// wait return at once, spinning until it is read (the hosted platform
    /// watches only the devices someone waits for).
    #[cfg(mkernel_solo5)]
    pub(crate) fn solo5_stash_pending(&self) {
        let NetBackend::Solo5(h) = &self.backend else {
            return;
        };
        let mut buf = vec![0u8; self.cfg.mtu + 14];
        let mut stash = self.stash.borrow_mut();
        // A read error (a broken device) ends the draining; the next read
        // by the program reports it.
        while let Ok(Some(n)) = crate::platform::solo5::net_read(*h, &mut buf) {
            if stash.len() < SOLO5_STASH_FRAMES {
                stash.push_back(buf[..n].into());
            }
        }
    }

    pub(crate) fn write(&self, frame: &[u8]) -> Result<(), NetError> {
        let max = self.cfg.mtu + 14;
        if frame.len() > max {
            return Err(NetError::new(format!(
                "net device {:?}: a frame of {} bytes is larger than the device allows ({max} = MTU {} + 14)",
                self.name,
                frame.len(),
                self.cfg.mtu
            )));
        }
        if frame.len() < 14 {
            return Err(NetError::new(format!(
                "net device {:?}: a frame of {} bytes is shorter than an Ethernet header (14 bytes)",
                self.name,
                frame.len()
            )));
        }
        match &self.backend {
            NetBackend::Link(l) => {
                l.send(frame, clock::monotonic())
                    .map_err(|e| self.err("write", e))?;
                platform::with(|p| p.link_sent());
                Ok(())
            }
            #[cfg(not(mkernel_solo5))]
            NetBackend::Tap(t) => t.write(frame).map_err(|e| self.err("write", e)),
            #[cfg(mkernel_solo5)]
            NetBackend::Solo5(h) => {
                crate::platform::solo5::net_write(*h, frame).map_err(|e| self.err("write", e))
            }
        }
    }

    fn err(&self, what: &str, e: impl fmt::Display) -> NetError {
        NetError::new(format!("net device {:?}: {what} failed: {e}", self.name))
    }

    /// When the next frame of an in-memory link becomes readable.
    pub(crate) fn next_ready_at(&self) -> Option<u64> {
        match &self.backend {
            NetBackend::Link(l) => l.next_ready_at(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    #[cfg(not(mkernel_solo5))]
    pub(crate) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.backend {
            NetBackend::Tap(t) => Some(t.raw_fd()),
            _ => None,
        }
    }

    #[cfg(mkernel_solo5)]
    pub(crate) fn solo5_handle(&self) -> Option<u64> {
        match &self.backend {
            NetBackend::Solo5(h) => Some(*h),
            _ => None,
        }
    }
}

impl From<LinkError> for NetError {
    fn from(e: LinkError) -> NetError {
        NetError::new(e.to_string())
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
    pub fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        self.dev.try_read(buf)
    }

    /// Writes one frame. Never suspends.
    pub fn write(&self, frame: &[u8]) -> Result<(), NetError> {
        self.dev.write(frame)
    }

    /// The device's configuration.
    pub fn cfg(&self) -> NetCfg {
        self.dev.cfg
    }

    /// The device's name in the device list.
    pub fn name(&self) -> &str {
        &self.dev.name
    }

    fn wait(&self, deadline: Option<u64>) -> Result<(), NetError> {
        if scheduler::cannot_wait() {
            return Err(NetError::new(format!(
                "net device {:?}: the reading task is being cancelled",
                self.dev.name
            )));
        }
        let sc = Syscall::new();
        let _waiting = NetWait::new(self.dev.index, sc.id());
        let _timer = deadline.map(|d| Timer::new(d, sc.id()));
        suspend(&sc, || {});
        Ok(())
    }
}

/// Makes a `Net` for a device registered with the platform.
pub(crate) fn register(name: &str, cfg: NetCfg, backend: NetBackend) -> (Net, NetCfg) {
    let dev = platform::with(|p| {
        let dev = Rc::new(NetDevice {
            name: name.to_string(),
            index: p.nets.len(),
            cfg,
            backend,
            #[cfg(mkernel_solo5)]
            stash: Default::default(),
        });
        p.add_net(dev.clone());
        dev
    });
    (Net { dev }, cfg)
}

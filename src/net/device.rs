//! `Net`, the net device handed to the main function.

use super::link::{LinkEnd, LinkError};
use crate::fiber::{self, Syscall, suspend};
use crate::reactor::{self, NetSource, NetWait, Timer};
use crate::sys::{self, clock};
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
}

impl NetDevice {
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        match &self.backend {
            NetBackend::Link(l) => l
                .try_recv(buf, clock::monotonic())
                .map_err(|e| self.err("read", e)),
            NetBackend::Sys(d) => d.try_read(buf).map_err(|e| self.err("read", e)),
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
                reactor::with(|r| r.link_sent());
                Ok(())
            }
            NetBackend::Sys(d) => d.write(frame).map_err(|e| self.err("write", e)),
        }
    }

    fn err(&self, what: &str, e: impl fmt::Display) -> NetError {
        NetError::new(format!("net device {:?}: {what} failed: {e}", self.name))
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
        if fiber::cannot_wait() {
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

/// Makes a `Net` for a device, registered with the run's reactor.
pub(crate) fn register(name: &str, cfg: NetCfg, backend: NetBackend) -> (Net, NetCfg) {
    let dev = reactor::with(|r| {
        // The index is the next one: `add_net` hands it out in order.
        let dev = Rc::new(NetDevice {
            name: name.to_string(),
            index: r.net_count(),
            cfg,
            backend,
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

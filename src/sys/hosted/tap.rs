//! A TAP interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`): Ethernet frames
//! in and out of the host's network stack.
//!
//! As with the Solo5 tenders, the interface must already exist and be up
//! (`ip tuntap add dev tap0 mode tap && ip link set dev tap0 up`); opening
//! does not create it. The descriptor is non-blocking: reads never wait
//! (the scheduler polls [`Tap::raw_fd`] for readability).
//!
//! Opened with offloads allowed, the TAP carries a virtio-net header
//! before each frame (`IFF_VNET_HDR`, [`OffloadHdr`]): all zeros until
//! [`Tap::enable_offload`] asks the kernel for checksum and segmentation
//! offloads (`TUNSETOFFLOAD`), after which a write may be one TCP segment
//! of up to 64 KiB that the kernel cuts into MTU-sized ones, and a read may
//! be such a coalesced segment, its checksum left to complete or vouched
//! for. One `write` then moves up to 44 segments instead of one.
//!
//! The kernel keeps a TAP's offloads after the process that asked for them
//! is gone, and would then hand a later reader without a virtio-net header
//! (a stock Solo5 tender, a plain open) coalesced segments with partial
//! checksums, which it cannot use. So every open starts by turning them
//! off, a `Tap` turns them off when dropped, and SIGINT, SIGTERM and SIGHUP
//! (when the program left them at their default action) turn them off
//! before ending the process. Only a SIGKILL leaves them on: then
//! recreate the TAP, or open it once with offloads off.

use super::super::OffloadHdr;
use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::{cvt, owned_fd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The descriptors of the TAPs whose offloads are on (-1: a free slot),
/// for the signal handler that turns them off.
static OFFLOADED: [AtomicI32; 16] = [const { AtomicI32::new(-1) }; 16];

/// Turns the kernel's offloads of the TAP open as `fd` off (or on).
fn set_offload(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its flags by value; no memory is passed.
    cvt(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, libc::c_ulong::from(flags)) })?;
    Ok(())
}

/// SIGINT, SIGTERM, SIGHUP: turns the offloads of [`OFFLOADED`] off, then
/// ends the process as the signal's default action would.
extern "C" fn offload_off_and_die(sig: libc::c_int) {
    for slot in &OFFLOADED {
        let fd = slot.load(Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: ioctl is async-signal-safe; a stale descriptor only
            // makes it fail.
            unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, 0 as libc::c_ulong) };
        }
    }
    // SAFETY: signal is async-signal-safe; this restores the default
    // action of `sig`.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
    // SAFETY: raise is async-signal-safe; the default action of these
    // signals ends the process.
    unsafe { libc::raise(sig) };
}

/// Installs [`offload_off_and_die`] for the signals still at their
/// default action (once per process).
fn install_offload_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: an all-zero `sigaction` is a valid value; `old` is
            // written by the kernel.
            let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
            // SAFETY: a query (no new action) into `old`.
            if unsafe { libc::sigaction(sig, core::ptr::null(), &mut old) } != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            // SAFETY: as above.
            let mut act: libc::sigaction = unsafe { core::mem::zeroed() };
            act.sa_sigaction = offload_off_and_die as *const () as usize;
            // SAFETY: the handler only makes async-signal-safe calls.
            unsafe { libc::sigaction(sig, &act, core::ptr::null_mut()) };
        }
    });
}

/// The longest frame a TAP can carry: the largest MTU of a tun/tap device
/// (65535) plus an Ethernet header (14) and a VLAN tag (4).
const MAX_FRAME: usize = 65535 + 14 + 4;

/// How long [`Tap::write`] waits for a full TAP queue to drain.
const WRITE_PATIENCE: Duration = Duration::from_millis(100);

/// An open TAP interface.
#[derive(Debug)]
pub(crate) struct Tap {
    file: File,
    name: String,
    mtu: usize,
    /// Every frame is preceded by a virtio-net header (`IFF_VNET_HDR`).
    vnet: bool,
    /// The kernel's offloads are on ([`Tap::enable_offload`]).
    offload: Cell<bool>,
    /// Where a frame larger than the caller's buffer spills over, so that
    /// its true length is known (a plain `read` would silently truncate).
    overflow: RefCell<Box<[u8]>>,
}

impl Tap {
    /// Attaches to the existing TAP interface `name`; with `vnet`, with a
    /// virtio-net header on each frame (if the kernel takes it: otherwise
    /// plainly), so that offloads can be enabled later.
    ///
    /// # Errors
    ///
    /// With a message naming the interface and what to do: the name is not
    /// a valid interface name; the interface does not exist or is down;
    /// `/dev/net/tun` is missing or not accessible; the process may not
    /// attach to it (not root, not the TAP's owner); it is busy (another
    /// process is attached); it is not a TAP interface.
    pub(crate) fn open(name: &str, vnet: bool) -> io::Result<Tap> {
        let ifr_name = ifr_name(name)?;
        let fail = |kind: io::ErrorKind, what: String| {
            Err(io::Error::new(
                kind,
                format!("TAP interface `{name}`: {what}"),
            ))
        };

        // Like Solo5: check that the interface exists and is up, rather
        // than creating a fresh, unconfigured one.
        let ctl = control_socket()?;
        let mut ifr = ifreq(ifr_name);
        match ioctl_ifreq(ctl.as_fd(), libc::SIOCGIFFLAGS, &mut ifr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                return fail(
                    io::ErrorKind::NotFound,
                    format!(
                        "no such interface; create it with `ip tuntap add dev {name} mode tap \
                         && ip link set dev {name} up` (as root; add `user $USER` to use it \
                         without root), or map the device to an existing TAP with \
                         --net:NAME=IFACE"
                    ),
                );
            }
            Err(e) => return fail(e.kind(), format!("cannot query its flags: {e}")),
        }
        // SAFETY: SIOCGIFFLAGS filled in the `ifru_flags` member.
        let flags = libc::c_int::from(unsafe { ifr.ifr_ifru.ifru_flags });
        if flags & libc::IFF_UP == 0 {
            return fail(
                io::ErrorKind::NetworkDown,
                format!("the interface is down; bring it up with `ip link set dev {name} up`"),
            );
        }
        let mut ifr = ifreq(ifr_name);
        let mtu = match ioctl_ifreq(ctl.as_fd(), libc::SIOCGIFMTU, &mut ifr) {
            // SAFETY: SIOCGIFMTU filled in the `ifru_mtu` member.
            Ok(()) => usize::try_from(unsafe { ifr.ifr_ifru.ifru_mtu }).unwrap_or(1500),
            Err(_) => 1500,
        };
        drop(ctl);

        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return fail(
                    e.kind(),
                    format!(
                        "/dev/net/tun does not exist ({e}); load the tun module \
                         (`modprobe tun`), or in a container pass the device \
                         (`--device /dev/net/tun`)"
                    ),
                );
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return fail(
                    e.kind(),
                    format!(
                        "cannot open /dev/net/tun ({e}); run as root or give this user \
                         access to /dev/net/tun"
                    ),
                );
            }
            Err(e) => return fail(e.kind(), format!("cannot open /dev/net/tun: {e}")),
        };

        let mut ifr = ifreq(ifr_name);
        let plain = libc::IFF_TAP | libc::IFF_NO_PI;
        let mut vnet = vnet;
        ifr.ifr_ifru.ifru_flags =
            (plain | if vnet { libc::IFF_VNET_HDR } else { 0 }) as libc::c_short;
        let mut attached = ioctl_ifreq(file.as_fd(), libc::TUNSETIFF, &mut ifr);
        if vnet
            && attached
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
        {
            // A kernel without virtio-net headers on TAPs: attach plainly
            // (a TAP that cannot be attached at all fails the same again).
            vnet = false;
            ifr = ifreq(ifr_name);
            ifr.ifr_ifru.ifru_flags = plain as libc::c_short;
            attached = ioctl_ifreq(file.as_fd(), libc::TUNSETIFF, &mut ifr);
        }
        if let Err(e) = attached {
            let what = match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => format!(
                    "no permission to attach ({e}); run as root (CAP_NET_ADMIN), or create \
                     the TAP for this user: `ip tuntap add dev {name} mode tap user $USER`"
                ),
                Some(libc::EBUSY) => format!(
                    "busy ({e}): another process (another unikernel or tender?) is \
                     attached to it; stop it or use another TAP"
                ),
                Some(libc::EINVAL) => format!(
                    "cannot attach ({e}): it is not a single-queue TAP interface (a TUN, \
                     a multi-queue TAP, or another kind of interface); create a TAP with \
                     `ip tuntap add dev IFACE mode tap`"
                ),
                _ => format!("cannot attach: {e}"),
            };
            return fail(e.kind(), what);
        }
        // TUNSETIFF can give another device than asked (a name with `%d`
        // is a template); ifr_name() refuses `%`, but be sure.
        if ifr.ifr_name != ifr_name {
            return fail(
                io::ErrorKind::InvalidInput,
                "the kernel attached another interface".into(),
            );
        }
        // Left on by an earlier process (see the module docs): off until
        // asked for.
        let _ = set_offload(file.as_raw_fd(), 0);
        if vnet {
            let len = OffloadHdr::LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer.
            let r = unsafe {
                libc::ioctl(
                    file.as_raw_fd(),
                    libc::TUNSETVNETHDRSZ,
                    &len as *const libc::c_int,
                )
            };
            if cvt(r).is_err() {
                return fail(
                    io::ErrorKind::Other,
                    "cannot set the virtio-net header's size".into(),
                );
            }
        }
        Ok(Tap {
            file,
            name: name.to_owned(),
            mtu,
            vnet,
            offload: Cell::new(false),
            overflow: RefCell::new(vec![0u8; MAX_FRAME].into_boxed_slice()),
        })
    }

    /// Reads one frame into `buf` without waiting: `Ok(Some(len))`, or
    /// `Ok(None)` when no frame is waiting.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if the frame is larger than `buf`: the frame is
    /// consumed (the kernel cannot give it back) and reported, never
    /// truncated silently; a buffer of `mtu() + 18` bytes avoids this.
    /// Otherwise the error of `read`.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.try_read_hdr(buf)?.map(|(n, _)| n))
    }

    /// As [`try_read`](Tap::try_read), with the frame's virtio-net header
    /// (all zeros on a TAP without one).
    pub(crate) fn try_read_hdr(&self, buf: &mut [u8]) -> io::Result<Option<(usize, OffloadHdr)>> {
        let mut overflow = self.overflow.borrow_mut();
        let mut hdr = [0u8; OffloadHdr::LEN];
        // When `buf` could be too small for some frame, let the frame
        // spill into `overflow`: the length read tells the truth.
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
            libc::iovec {
                iov_base: overflow.as_mut_ptr().cast(),
                iov_len: MAX_FRAME.saturating_sub(buf.len()),
            },
        ];
        let iov = if self.vnet { &iov[..] } else { &iov[1..] };
        let iov = if buf.len() >= MAX_FRAME {
            &iov[..iov.len() - 1]
        } else {
            iov
        };
        let skip = if self.vnet { OffloadHdr::LEN } else { 0 };
        let n = loop {
            // SAFETY: the iovecs describe writable memory exclusively
            // borrowed for the duration of the call (`hdr`, `buf`, and
            // `overflow` through its RefCell guard).
            match cvt(unsafe {
                libc::readv(
                    self.file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                )
            }) {
                Ok(n) if (n as usize) < skip => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "TAP interface `{}`: a read shorter than its header",
                            self.name
                        ),
                    ));
                }
                Ok(n) => break n as usize - skip,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("TAP interface `{}`: reading a frame: {e}", self.name),
                    ));
                }
            }
        };
        if n > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "TAP interface `{}`: a {n}-byte frame did not fit in a {}-byte buffer and \
                     was dropped; read with a buffer of at least MTU + 18 = {} bytes",
                    self.name,
                    buf.len(),
                    self.mtu + 18
                ),
            ));
        }
        Ok(Some((n, OffloadHdr::from_bytes(hdr))))
    }

    /// Asks the kernel for checksum and TCP segmentation offloads
    /// (`TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`):
    /// whether they are on (never on a TAP opened without a virtio-net
    /// header, or when the kernel refuses).
    pub(crate) fn enable_offload(&self) -> bool {
        if !self.vnet {
            return false;
        }
        if !self.offload.get() {
            let fd = self.file.as_raw_fd();
            // A slot for the signal handler first: offloads it could not
            // turn off are not turned on.
            let Some(slot) = OFFLOADED.iter().find(|s| {
                s.compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            }) else {
                return false;
            };
            install_offload_handler();
            let flags = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
            if set_offload(fd, flags).is_ok() {
                self.offload.set(true);
            } else {
                slot.store(-1, Ordering::Relaxed);
            }
        }
        self.offload.get()
    }

    /// Writes `frame` as one Ethernet frame.
    ///
    /// Never drops the frame silently: if the TAP's queue is full
    /// (`EAGAIN`), waits up to 100 ms for it to drain (blocking the
    /// thread, which a TAP practically never needs), then reports an
    /// error.
    ///
    /// # Errors
    ///
    /// `TimedOut` if the TAP stayed full; the kernel's error otherwise
    /// (e.g. `EINVAL` for a frame shorter than an Ethernet header, `EIO`
    /// when the interface is down). The message names the interface and
    /// the frame's length.
    pub(crate) fn write(&self, frame: &[u8]) -> io::Result<()> {
        self.write_hdr(OffloadHdr::default(), frame)
    }

    /// As [`write`](Tap::write), with a virtio-net header (which must be
    /// all zeros unless [`enable_offload`](Tap::enable_offload) said yes).
    pub(crate) fn write_hdr(&self, hdr: OffloadHdr, frame: &[u8]) -> io::Result<()> {
        let hdr = hdr.to_bytes();
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr().cast_mut().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: frame.len(),
            },
        ];
        let iov = if self.vnet { &iov[..] } else { &iov[1..] };
        let total = if self.vnet { hdr.len() } else { 0 } + frame.len();
        let err = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "TAP interface `{}`: writing a {}-byte frame: {e}",
                    self.name,
                    frame.len()
                ),
            )
        };
        let mut deadline = None;
        loop {
            // SAFETY: the iovecs describe `hdr` and `frame`, readable for
            // their lengths (the kernel only reads through them).
            let ret = unsafe {
                libc::writev(
                    self.file.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                )
            };
            match cvt(ret) {
                Ok(n) if n as usize == total => return Ok(()),
                Ok(n) => {
                    // A TAP takes whole frames; this would be a kernel bug.
                    return Err(err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("only {n} bytes were written"),
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let deadline = *deadline.get_or_insert_with(|| Instant::now() + WRITE_PATIENCE);
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "the interface's queue stayed full for {} ms; the frame was \
                                 not sent",
                                WRITE_PATIENCE.as_millis()
                            ),
                        )));
                    }
                    wait_writable(self.file.as_fd(), left).map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// The descriptor, for [`Poller::add`](super::poll::Poller::add).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The interface's MTU when it was opened (`SIOCGIFMTU`; 1500 if that
    /// failed). Frames are up to MTU + 18 bytes (Ethernet header, VLAN tag).
    pub(crate) fn mtu(&self) -> usize {
        self.mtu
    }

    /// The interface's name.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Tap {
    /// Turns the offloads off (see the module docs).
    fn drop(&mut self) {
        if self.offload.get() {
            let fd = self.file.as_raw_fd();
            let _ = set_offload(fd, 0);
            for slot in &OFFLOADED {
                let _ = slot.compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
}

/// A random MAC address for the unikernel's side of a TAP: locally
/// administered and unicast (as Solo5's tenders make them), from the
/// system's random source.
pub(crate) fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: `mac` is writable for 6 bytes.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if n != mac.len() as isize {
        // No getrandom (very old kernel): std's per-process random keys.
        use std::hash::{BuildHasher, RandomState};
        let r = RandomState::new().hash_one(std::process::id());
        mac.copy_from_slice(&r.to_ne_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// Checks an interface name and makes it an `ifr_name`.
fn ifr_name(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TAP interface `{name}`: not a valid interface name: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() >= libc::IFNAMSIZ {
        return bad("longer than 15 bytes");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b'%' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return bad("it contains `/`, `%`, `:`, a space or a NUL");
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b as libc::c_char;
    }
    Ok(out)
}

fn ifreq(name: [libc::c_char; libc::IFNAMSIZ]) -> libc::ifreq {
    libc::ifreq {
        ifr_name: name,
        ifr_ifru: libc::__c_anonymous_ifr_ifru {
            ifru_map: libc::__c_anonymous_ifru_map {
                mem_start: 0,
                mem_end: 0,
                base_addr: 0,
                irq: 0,
                dma: 0,
                port: 0,
            },
        },
    }
}

/// A socket for the interface ioctls (`SIOCGIF*`).
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain system call without pointer arguments.
    owned_fd(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
}

/// An ioctl taking a `struct ifreq`.
fn ioctl_ifreq(fd: BorrowedFd<'_>, request: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request used here (SIOCGIFFLAGS, SIOCGIFMTU,
    // TUNSETIFF) reads and writes one `struct ifreq`, which `ifr` is.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, ifr as *mut libc::ifreq) })?;
    Ok(())
}

/// Waits up to `timeout` for `fd` to become writable.
fn wait_writable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: `pfd` is one valid pollfd.
    match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::super::poll::Poller;
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::process::Command;

    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let macs: Vec<[u8; 6]> = (0..8).map(|_| random_mac()).collect();
        for m in &macs {
            assert_eq!(m[0] & 0x03, 0x02, "{m:02x?}: locally administered unicast");
        }
        // 8 draws of 46 random bits: all distinct.
        for (i, m) in macs.iter().enumerate() {
            assert!(!macs[i + 1..].contains(m));
        }
    }

    #[test]
    fn invalid_names() {
        for (name, why) in [
            ("", "it is empty"),
            ("abcdefghijklmnop", "longer than 15 bytes"),
            ("tap%d", "it contains `/`, `%`, `:`, a space or a NUL"),
            ("a/b", "it contains `/`, `%`, `:`, a space or a NUL"),
            ("tap 0", "it contains `/`, `%`, `:`, a space or a NUL"),
        ] {
            let e = Tap::open(name, true).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert_eq!(
                e.to_string(),
                format!("TAP interface `{name}`: not a valid interface name: {why}")
            );
        }
        assert!(ifr_name("abcdefghijklmno").is_ok());
    }

    #[test]
    fn missing_interface() {
        // Only queries the interface list; creates nothing.
        let e = Tap::open("mkNoSuchTap0", true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "TAP interface `mkNoSuchTap0`: no such interface; create it with `ip tuntap add \
             dev mkNoSuchTap0 mode tap && ip link set dev mkNoSuchTap0 up` (as root; add \
             `user $USER` to use it without root), or map the device to an existing TAP with \
             --net:NAME=IFACE"
        );
    }

    // ---- Real TAP, inside a network namespace made for the test. ----

    /// A network namespace, deleted on drop (also when the test fails).
    struct Netns(String);

    impl Netns {
        fn create() -> Result<Netns, String> {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "mk-tap-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            ip(&["netns", "add", &name])?;
            Ok(Netns(name))
        }

        /// Runs `ip -n NS args..`.
        fn ip(&self, args: &[&str]) {
            let mut all = vec!["-n", &self.0];
            all.extend_from_slice(args);
            ip(&all).unwrap();
        }

        fn path(&self) -> String {
            format!("/run/netns/{}", self.0)
        }
    }

    /// Moves the calling thread (only) into the namespace at `path`.
    fn enter(path: &str) {
        let f = File::open(path).unwrap();
        // SAFETY: plain system call on a descriptor we own; it changes the
        // network namespace of this thread only.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        cvt(r).expect("setns");
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            if let Err(e) = ip(&["netns", "del", &self.0]) {
                eprintln!("could not delete network namespace {}: {e}", self.0);
            }
        }
    }

    fn ip(args: &[&str]) -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run `ip`: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Why the TAP test cannot run here, if it cannot.
    fn skip_reason() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("not root (creating a network namespace and a TAP needs root)".into());
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Some("/dev/net/tun does not exist".into());
        }
        if Command::new("ip").arg("-V").output().is_err() {
            return Some("the `ip` command (iproute2) is not installed".into());
        }
        None
    }

    const HOST_IP: [u8; 4] = [10, 77, 0, 1];
    const OUR_IP: [u8; 4] = [10, 77, 0, 2];

    fn arp(
        op: u16,
        dst: [u8; 6],
        sha: [u8; 6],
        spa: [u8; 4],
        tha: [u8; 6],
        tpa: [u8; 4],
    ) -> Vec<u8> {
        let mut f = Vec::with_capacity(60);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sha);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
        f.extend_from_slice(&op.to_be_bytes());
        f.extend_from_slice(&sha);
        f.extend_from_slice(&spa);
        f.extend_from_slice(&tha);
        f.extend_from_slice(&tpa);
        f.resize(60, 0);
        f
    }

    fn is_arp(f: &[u8], op: u16) -> bool {
        f.len() >= 42 && f[12..14] == [0x08, 0x06] && f[20..22] == op.to_be_bytes()
    }

    fn is_udp_to(f: &[u8], port: u16) -> bool {
        f.len() >= 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == port.to_be_bytes()
    }

    /// Reads frames (waiting with the poller) until one satisfies `want`.
    fn next_frame(
        tap: &Tap,
        poller: &Poller,
        buf: &mut [u8],
        want: impl Fn(&[u8]) -> bool,
    ) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ready = Vec::new();
        loop {
            match tap.try_read(buf).unwrap() {
                Some(n) if want(&buf[..n]) => return buf[..n].to_vec(),
                Some(_) => continue, // unrelated traffic
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the expected frame did not come");
            poller.wait(Some(left), &mut ready).unwrap();
        }
    }

    /// Frames both ways between a TAP and the host stack of a private
    /// network namespace: the host's ARP request and UDP datagram come out
    /// of `try_read`; our ARP reply and request go in with `write` and the
    /// host acts on them.
    #[test]
    fn tap_exchanges_frames_with_the_host_in_a_namespace() {
        if let Some(why) = skip_reason() {
            println!("skipping the TAP test: {why}");
            return;
        }
        let ns = match Netns::create() {
            Ok(ns) => ns,
            Err(e) => {
                println!("skipping the TAP test: cannot create a network namespace: {e}");
                return;
            }
        };
        ns.ip(&["tuntap", "add", "dev", "mktap0", "mode", "tap"]);
        ns.ip(&["tuntap", "add", "dev", "mktapdown", "mode", "tap"]);
        ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "mktap0"]);
        ns.ip(&["link", "set", "dev", "mktap0", "up"]);
        ns.ip(&["link", "set", "dev", "lo", "up"]);

        // Only this thread enters the namespace: every TAP and socket below
        // lives there; `ns` (the guard) stays out here and deletes it.
        let path = ns.path();
        let result = std::thread::spawn(move || {
            enter(&path);
            in_namespace();
        })
        .join();
        drop(ns);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    fn in_namespace() {
        // Errors that need a real interface.
        let e = Tap::open("mktapdown", false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NetworkDown);
        assert_eq!(
            e.to_string(),
            "TAP interface `mktapdown`: the interface is down; bring it up with \
             `ip link set dev mktapdown up`"
        );
        let e = Tap::open("lo", true).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("TAP interface `lo`: cannot attach (Invalid argument")
                && e.to_string().contains("not a single-queue TAP interface"),
            "{e}"
        );

        let tap = Tap::open("mktap0", false).unwrap();
        assert_eq!(tap.mtu(), 1500);
        assert_eq!(tap.name(), "mktap0");
        let e = Tap::open("mktap0", false).unwrap_err();
        assert!(
            e.to_string().starts_with("TAP interface `mktap0`: busy (")
                && e.to_string().contains("another process"),
            "{e}"
        );
        let mut buf = vec![0u8; tap.mtu() + 18];
        // Nothing sent yet (maybe IPv6 noise): a read never blocks.
        while tap.try_read(&mut buf).unwrap().is_some() {}

        let poller = Poller::new().unwrap();
        poller.add(tap.raw_fd(), 1).unwrap();
        let mac = random_mac();
        let sock = UdpSocket::bind((Ipv4Addr::from(HOST_IP), 0)).unwrap();
        let dest = (Ipv4Addr::from(OUR_IP), 7777);

        // host -> TAP: the host resolves our address first.
        sock.send_to(b"hello unikernel", dest).unwrap();
        let req = next_frame(&tap, &poller, &mut buf, |f| {
            is_arp(f, 1) && f[38..42] == OUR_IP
        });
        assert_eq!(req[28..32], HOST_IP);
        let host_mac: [u8; 6] = req[22..28].try_into().unwrap();

        // TAP -> host: our ARP reply; the host then sends the datagram to
        // our MAC, which shows it took the reply.
        tap.write(&arp(2, host_mac, mac, OUR_IP, host_mac, HOST_IP))
            .unwrap();
        let udp = next_frame(&tap, &poller, &mut buf, |f| is_udp_to(f, 7777));
        assert_eq!(udp[0..6], mac);
        assert_eq!(udp[6..12], host_mac);
        assert_eq!(&udp[42..], b"hello unikernel");

        // TAP -> host -> TAP: our ARP request is answered.
        tap.write(&arp(1, [0xff; 6], mac, OUR_IP, [0; 6], HOST_IP))
            .unwrap();
        let reply = next_frame(&tap, &poller, &mut buf, |f| is_arp(f, 2));
        assert_eq!(reply[0..6], mac);
        assert_eq!(reply[22..28], host_mac);
        assert_eq!(reply[28..32], HOST_IP);
        assert_eq!(reply[32..38], mac);

        // A frame larger than the buffer is reported, not truncated.
        sock.send_to(&[7u8; 1000], dest).unwrap();
        let mut small = [0u8; 100];
        let deadline = Instant::now() + Duration::from_secs(5);
        let e = loop {
            match tap.try_read(&mut small) {
                Err(e) => break e,
                Ok(Some(_)) => {} // small unrelated frame
                Ok(None) => {
                    assert!(Instant::now() < deadline, "the big frame did not come");
                    poller
                        .wait(Some(Duration::from_millis(50)), &mut Vec::new())
                        .unwrap();
                }
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "TAP interface `mktap0`: a 1042-byte frame did not fit in a 100-byte buffer and \
             was dropped; read with a buffer of at least MTU + 18 = 1518 bytes"
        );
        // And the TAP goes on working.
        sock.send_to(b"again", dest).unwrap();
        let udp = next_frame(&tap, &poller, &mut buf, |f| is_udp_to(f, 7777));
        assert_eq!(&udp[42..], b"again");

        // A frame the kernel refuses is reported with its length.
        let e = tap.write(&[0u8; 5]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("TAP interface `mktap0`: writing a 5-byte frame: "),
            "{e}"
        );
        poller.remove(tap.raw_fd()).unwrap();
    }
}

//! Raw Ethernet frames from the host's side of a TAP: an AF_PACKET socket
//! that sends out of one interface, so the frames arrive on the TAP's
//! descriptor (the unikernel's side). Used by the TAP tests and the
//! `notice` bench to inject frames without any protocol stack.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An AF_PACKET socket sending broadcast frames of one ethertype out of
/// one interface.
pub struct RawSender {
    fd: OwnedFd,
    addr: libc::sockaddr_ll,
}

impl RawSender {
    /// Opens the socket for `iface`, whose frames carry `ethertype`.
    pub fn open(iface: &str, ethertype: u16) -> io::Result<RawSender> {
        let cname = CString::new(iface).map_err(io::Error::other)?;
        // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // Protocol 0: the socket only sends (it receives nothing).
        // SAFETY: socket(2) takes no pointers; the result is checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data: all zeros is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ethertype.to_be();
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        Ok(RawSender { fd, addr })
    }

    /// Sends one whole frame (its Ethernet header included).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: `frame` is valid for reads of `frame.len()` bytes, and
        // `addr` is a valid sockaddr_ll whose exact size is passed.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&self.addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

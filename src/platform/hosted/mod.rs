//! The hosted platform's low-level I/O primitives: a TAP interface, a block
//! device on a file, and an epoll-based idle wait.
//!
//! Everything here is scheduler-independent and non-blocking (except where
//! documented), Linux-only, and built on `libc`. The few `unsafe` blocks are
//! system calls on file descriptors owned by these types.

// Used by the device layer (src/devices), which lands separately.
#![allow(dead_code)]

pub(crate) mod file;
pub(crate) mod poll;
pub(crate) mod tap;
pub(crate) mod ticker;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// Turns a `-1`-means-error return value into an `io::Result`.
fn cvt<T: PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor that a system call just returned.
fn owned_fd(ret: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    // SAFETY: `fd` was just returned by the kernel for us (a successful
    // open/socket/epoll_create1/eventfd), so it is open and nobody else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

//! The OS seam: the one module that names the platform.
//!
//! Everything above it (the scheduler, the reactor, the devices) sees one
//! interface, the same on both platforms, and never asks which one it runs
//! on. The platform is chosen once, here, by the file that `os` is:
//!
//! - `hosted/` (a Linux process): a TAP interface or nothing for a net
//!   device, a file for a block device, `epoll` for the idle wait, `mmap`
//!   for stacks, a beat thread for the scheduler's clock, a signal handler
//!   that names a task whose stack overflowed;
//! - `solo5/` (a unikernel; built by `cargo mkernel` with
//!   `--cfg mkernel_solo5`): hypercalls for devices and the idle wait
//!   (`solo5_yield`), the libc shim that lets std run, the start-up code.
//!
//! Both provide: [`NetDev`], [`BlockDev`], [`Poller`] (the idle wait),
//! [`Waker`] (a core's wake-up from another core; [`MAX_CORES`]),
//! `ticker` (the clock beat), `overflow` (stack-overflow reports),
//! [`env_app_args`], [`fill_random`] (the entropy source), [`heap`] (its
//! size and use on Solo5, `None` hosted), and the constants below. [`clock`] is shared (the
//! Solo5 shim answers `clock_gettime`).
//!
//! `unsafe` code is allowed here (system calls, hypercalls, the shim).
#![allow(unsafe_code, reason = "system calls, hypercalls, the Solo5 shim")]

pub(crate) mod clock;

#[cfg_attr(not(mkernel_solo5), path = "hosted/mod.rs")]
#[cfg_attr(mkernel_solo5, path = "solo5/mod.rs")]
mod os;

pub(crate) use os::{
    BlockDev, CoreThread, DEFAULT_STACK_SIZE, DEFAULT_SWITCHES_PER_CLOCK_READ,
    DEFAULT_TRACE_EVENTS, MAX_CORES, NetDev, Poller, TENDER_MAPS_DEVICES, Waker, env_app_args,
    fill_random, heap, overflow, stack_memory, ticker,
};

/// What the stack-overflow handler needs to know of the task that was
/// running when a fault hit: where its guard region is, and how to name it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    mkernel_solo5,
    allow(
        dead_code,
        reason = "read by the hosted handler only: Solo5 has no guard pages"
    )
)]
pub(crate) struct Running {
    /// The guard region `[start, end)` below the task's stack.
    pub(crate) guard: (usize, usize),
    /// The task's id.
    pub(crate) task: u64,
    /// Where the task was spawned.
    pub(crate) site: &'static core::panic::Location<'static>,
    /// It is the run's main task (named so: its spawn site is the run
    /// loop's, which would mislead).
    pub(crate) main: bool,
    /// The usable stack size, for the message.
    pub(crate) stack_size: usize,
}

/// What a virtio-net header says of a frame (Linux's `struct
/// virtio_net_hdr`, as a TAP with `IFF_VNET_HDR` reads and writes it): a
/// checksum to complete and a segmentation to do. All zeros: a plain,
/// whole frame. Only a device whose offloads are on
/// ([`NetDev::enable_offload`]) reads or writes one that is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OffloadHdr {
    /// [`OffloadHdr::NEEDS_CSUM`], [`OffloadHdr::DATA_VALID`].
    pub(crate) flags: u8,
    /// [`OffloadHdr::GSO_NONE`], [`OffloadHdr::GSO_TCPV4`],
    /// [`OffloadHdr::GSO_TCPV6`] (others are not asked for).
    pub(crate) gso_type: u8,
    /// Bytes of headers (Ethernet, IP, TCP) repeated in each segment.
    pub(crate) hdr_len: u16,
    /// Bytes of payload per segment.
    pub(crate) gso_size: u16,
    /// Where the checksummed bytes start (from the frame's start)...
    pub(crate) csum_start: u16,
    /// ...and where, from there, the checksum goes.
    pub(crate) csum_offset: u16,
}

#[cfg_attr(
    mkernel_solo5,
    allow(dead_code, reason = "the Solo5 devices have no offloads")
)]
impl OffloadHdr {
    /// The checksum at `csum_start + csum_offset` holds only the
    /// pseudo-header's sum: the rest is to be added from `csum_start` on.
    pub(crate) const NEEDS_CSUM: u8 = 1;
    /// The sender vouches for the checksums (they need no check).
    pub(crate) const DATA_VALID: u8 = 2;
    /// Not segmented.
    pub(crate) const GSO_NONE: u8 = 0;
    /// A TCP/IPv4 segment to cut into `gso_size`-byte segments.
    pub(crate) const GSO_TCPV4: u8 = 1;
    /// A TCP/IPv6 segment to cut into `gso_size`-byte segments.
    pub(crate) const GSO_TCPV6: u8 = 4;
    /// Its size on the wire.
    pub(crate) const LEN: usize = 10;

    /// The header as the kernel reads it (native byte order: the TAP's
    /// default on a little-endian host).
    pub(crate) fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The header the kernel wrote.
    pub(crate) fn from_bytes(b: [u8; Self::LEN]) -> OffloadHdr {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        OffloadHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }
}

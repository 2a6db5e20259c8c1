//! The hosted platform (a Linux process): a TAP interface, a block device
//! on a file, an `epoll`-based idle wait, `mmap`ed stacks with guard
//! regions, the clock's beat thread and the stack-overflow handler.
//!
//! Everything here is scheduler-independent and non-blocking (except where
//! documented), Linux-only, and built on `libc`. The `unsafe` blocks are
//! system calls on memory and file descriptors owned by these types.

mod file;
pub(crate) mod overflow;
mod poll;
pub(crate) mod stack_memory;
mod tap;
pub(crate) mod ticker;

use std::path::Path;

/// Default usable stack size of a task.
pub(crate) const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Default of `Builder::switches_per_clock_read` (the beat thread bounds how
/// stale a skipped read gets).
pub(crate) const DEFAULT_SWITCHES_PER_CLOCK_READ: u32 = 8;

/// Default size of a run's trace ring, in events (40 bytes each: 40 MiB of
/// address space, touched only as far as the trace gets).
pub(crate) const DEFAULT_TRACE_EVENTS: usize = 1 << 20;

/// Devices are mapped by the program's own command line (`--net:NAME=TAP`,
/// `--block:NAME=FILE`), not by a tender.
pub(crate) const TENDER_MAPS_DEVICES: bool = false;

/// The application's arguments on the process's command line: what follows
/// `--`.
pub(crate) fn env_app_args() -> Vec<String> {
    std::env::args().skip_while(|a| a != "--").skip(1).collect()
}

/// Fills `buf` with random bytes from the kernel (`getrandom(2)`, which
/// waits only until the kernel's generator is first seeded, at boot), or
/// from `/dev/urandom` on a kernel without that system call.
pub(crate) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes, and
        // the kernel writes at most that many.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOSYS) => {
                    use std::io::Read;
                    return std::fs::File::open("/dev/urandom")?.read_exact(rest);
                }
                _ => return Err(e),
            }
        }
        done += n as usize;
    }
    Ok(())
}

/// The heap's size and use: unknown hosted (memory is the process's,
/// overcommitted and shared with the rest of the system).
pub(crate) fn heap() -> Option<(usize, usize)> {
    None
}

/// A net device of the system: a TAP interface.
#[derive(Debug)]
pub(crate) struct NetDev {
    tap: tap::Tap,
    mac: [u8; 6],
}

impl NetDev {
    /// Attaches to the TAP interface `iface`; the unikernel's side gets
    /// `mac`, or a random locally administered one. With `offload`, the
    /// TAP can offload checksums and segmentation later
    /// ([`enable_offload`](NetDev::enable_offload)).
    pub(crate) fn open_tap(iface: &str, mac: Option<[u8; 6]>, offload: bool) -> io::Result<NetDev> {
        Ok(NetDev {
            tap: tap::Tap::open(iface, offload)?,
            mac: mac.unwrap_or_else(tap::random_mac),
        })
    }

    /// A device attached by a Solo5 tender: none in a hosted process.
    pub(crate) fn acquire(name: &str) -> io::Result<NetDev> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "net device {name:?}: a hosted process has no tender; map it on the command line"
            ),
        ))
    }

    pub(crate) fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub(crate) fn mtu(&self) -> usize {
        self.tap.mtu()
    }

    /// One frame into `buf`, `Ok(None)` when none is waiting.
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.tap.try_read(buf)
    }

    /// Writes one frame.
    pub(crate) fn write(&self, frame: &[u8]) -> io::Result<()> {
        self.tap.write(frame)
    }

    /// Turns checksum and TCP segmentation offloads on: whether they are
    /// (the TAP was opened with them allowed and the kernel agreed). From
    /// then on, frames are read and written with
    /// [`OffloadHdr`](super::OffloadHdr)s.
    pub(crate) fn enable_offload(&self) -> bool {
        self.tap.enable_offload()
    }

    /// One frame and its offload header, `Ok(None)` when none is waiting.
    pub(crate) fn try_read_hdr(
        &self,
        buf: &mut [u8],
    ) -> io::Result<Option<(usize, super::OffloadHdr)>> {
        self.tap.try_read_hdr(buf)
    }

    /// Writes one frame with its offload header.
    pub(crate) fn write_hdr(&self, hdr: super::OffloadHdr, frame: &[u8]) -> io::Result<()> {
        self.tap.write_hdr(hdr, frame)
    }
}

/// A block device of the system: a file (or a Linux block device).
#[derive(Debug)]
pub(crate) struct BlockDev(file::FileBlock);

impl BlockDev {
    /// Opens `path` with pages of `sector_size` bytes (read-only if it
    /// cannot be written).
    pub(crate) fn open_file(path: &Path, sector_size: usize) -> io::Result<BlockDev> {
        file::FileBlock::open(path, sector_size).map(BlockDev)
    }

    /// A device attached by a Solo5 tender: none in a hosted process.
    pub(crate) fn acquire(name: &str) -> io::Result<BlockDev> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "block device {name:?}: a hosted process has no tender; map it on the command line"
            ),
        ))
    }

    pub(crate) fn pagesize(&self) -> usize {
        self.0.pagesize()
    }

    pub(crate) fn length(&self) -> u64 {
        self.0.length()
    }

    pub(crate) fn read_only(&self) -> bool {
        self.0.read_only()
    }

    /// Reads `buf.len()` bytes (whole pages) at `off`.
    pub(crate) fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(off, buf)
    }

    /// Writes `buf` (whole pages) at `off`.
    pub(crate) fn write_at(&self, off: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_at(off, buf)
    }
}

/// How many cores (schedulers on their own threads) a run may have: a
/// bound well above any machine's CPUs, so that `cores(n)` with a wrong
/// `n` (say a byte count) is an error rather than thousands of threads.
pub(crate) const MAX_CORES: usize = 1024;

/// A core's thread (a run with several cores).
#[derive(Debug)]
pub(crate) struct CoreThread(std::thread::JoinHandle<()>);

impl CoreThread {
    /// Starts `f` on a new thread named `name`.
    pub(crate) fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> io::Result<CoreThread> {
        std::thread::Builder::new()
            .name(name)
            .spawn(f)
            .map(CoreThread)
    }

    /// Waits for the thread to end (a panic there has printed itself).
    pub(crate) fn join(self) {
        let _ = self.0.join();
    }
}

/// The token of a core's [`Waker`] in its poller's set.
const WAKER_TOKEN: u64 = poll::RESERVED_TOKEN - 1;

/// A core's wake-up from another core: an `eventfd`, which the core's idle
/// wait watches ([`Poller::watch_waker`]) and which [`wait`](Waker::wait)
/// blocks on. A notification is never lost: the counter stays readable
/// until the core drains it. Clones share the descriptor.
#[derive(Debug, Clone)]
pub(crate) struct Waker(std::sync::Arc<OwnedFd>);

impl Waker {
    /// A new wake-up descriptor (close-on-exec, non-blocking).
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: a plain system call without pointer arguments.
        let fd = owned_fd(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(Waker(std::sync::Arc::new(fd)))
    }

    /// Wakes the core's current or next wait (one `write`; callable from
    /// any thread).
    pub(crate) fn notify(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: `one` is readable for 8 bytes; the descriptor is open
        // (owned by `self`). The only possible error is EAGAIN when the
        // counter is saturated: a wake-up is pending anyway.
        let _ = unsafe { libc::write(self.fd(), one.as_ptr().cast(), one.len()) };
    }

    /// Blocks until notified (at once if a notification is pending), then
    /// consumes the notifications.
    pub(crate) fn wait(&self) {
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid, writable pollfd for the call. EINTR
        // (a signal) only ends the wait early: the caller looks again.
        unsafe { libc::poll(&mut pfd, 1, -1) };
        self.drain();
    }

    /// Consumes pending notifications, without waiting.
    fn drain(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: `buf` is writable for 8 bytes; non-blocking descriptor:
        // EAGAIN when nothing is pending.
        let _ = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }

    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

/// The idle wait: `epoll` over the TAP descriptors that someone waits on.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: poll::Poller,
    /// Each registered device's descriptor, by token.
    fds: Vec<Option<std::os::fd::RawFd>>,
    /// The core's wake-up, in a run with several cores.
    waker: Option<Waker>,
    /// The waker ended (or would have ended) a wait since the last
    /// [`take_woken`](Poller::take_woken).
    woken: bool,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        Ok(Poller {
            epoll: poll::Poller::new()?,
            fds: Vec::new(),
            waker: None,
            woken: false,
        })
    }

    /// Makes `waker` end the idle wait (a run with several cores: another
    /// core posted work or a result).
    pub(crate) fn watch_waker(&mut self, waker: &Waker) -> io::Result<()> {
        self.epoll.add(waker.fd(), WAKER_TOKEN)?;
        self.waker = Some(waker.clone());
        Ok(())
    }

    /// Makes `dev` known as `token` (not watched yet).
    pub(crate) fn register(&mut self, token: usize, dev: &NetDev) {
        if self.fds.len() <= token {
            self.fds.resize(token + 1, None);
        }
        self.fds[token] = Some(dev.tap.raw_fd());
    }

    /// Starts or stops reporting device `token` when it is readable (a
    /// token that was not registered is ignored: it is not a system device).
    pub(crate) fn watch(&mut self, token: usize, on: bool) -> io::Result<()> {
        match self.fds.get(token).copied().flatten() {
            Some(fd) if on => self.epoll.add(fd, token as u64),
            Some(fd) => self.epoll.remove(fd),
            None => Ok(()),
        }
    }

    /// Waits until a watched device is readable or `timeout_ns` passed
    /// (`None`: no time limit); appends the ready tokens to `ready`.
    pub(crate) fn wait(&mut self, timeout_ns: Option<u64>, ready: &mut Vec<u64>) -> io::Result<()> {
        self.epoll
            .wait(timeout_ns.map(core::time::Duration::from_nanos), ready)?;
        if let Some(w) = &self.waker
            && let Some(i) = ready.iter().position(|&t| t == WAKER_TOKEN)
        {
            ready.swap_remove(i);
            w.drain();
            self.woken = true;
        }
        Ok(())
    }

    /// Whether the waker fired since the last call: another core posted
    /// something, which the caller must not sleep through (the
    /// notification itself was consumed).
    pub(crate) fn take_woken(&mut self) -> bool {
        core::mem::take(&mut self.woken)
    }
}

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

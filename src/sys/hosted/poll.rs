//! The idle wait: an `epoll` instance watching descriptors for readability.
//!
//! The scheduler registers each device's descriptor with a token of its
//! choice ([`Poller::add`]) and, when it has nothing to run, waits for the
//! earliest of a descriptor becoming readable and a deadline
//! ([`Poller::wait`]). [`Poller::notify`] wakes a wait from another thread
//! (for `Events::interrupt`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{cvt, owned_fd};

/// The token of the internal wake-up descriptor; [`Poller::add`] refuses it.
pub(crate) const RESERVED_TOKEN: u64 = u64::MAX;

/// Events fetched per `epoll_wait` call. More ready descriptors are not
/// lost: interest is level-triggered, so they are reported by the next wait.
const MAX_EVENTS: usize = 64;

/// An `epoll` instance with level-triggered read interest.
///
/// `Send + Sync`: `notify` may be called from any thread while another one
/// waits.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
    /// An `eventfd`, readable after [`notify`](Poller::notify).
    wake: File,
    /// Whether `epoll_pwait2` (Linux 5.11) is usable; cleared on `ENOSYS`.
    pwait2: AtomicBool,
}

impl Poller {
    /// Creates an `epoll` instance (close-on-exec).
    ///
    /// # Errors
    ///
    /// The error of `epoll_create1` or `eventfd` (e.g. too many open files).
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: a plain system call without pointer arguments.
        let epoll = owned_fd(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a plain system call without pointer arguments.
        let wake = owned_fd(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        let poller = Poller {
            epoll,
            wake: File::from(wake),
            pwait2: AtomicBool::new(true),
        };
        poller.ctl(libc::EPOLL_CTL_ADD, poller.wake.as_raw_fd(), RESERVED_TOKEN)?;
        Ok(poller)
    }

    /// Watches `fd` for readability (level-triggered: reported by every
    /// [`wait`](Self::wait) as long as it is readable), reporting it as
    /// `token`. Errors and hang-ups on `fd` are reported as readability.
    ///
    /// `fd` must stay open until [`remove`](Self::remove)d (closing a
    /// descriptor removes it from the set implicitly, unless it was
    /// duplicated).
    ///
    /// # Errors
    ///
    /// `InvalidInput` for the token [`RESERVED_TOKEN`]; `AlreadyExists`
    /// (`EEXIST`) if `fd` is already watched; `EBADF`, `EPERM` (a regular
    /// file, which is always ready).
    pub(crate) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        if token == RESERVED_TOKEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the poller token u64::MAX is reserved; use another token",
            ));
        }
        self.ctl(libc::EPOLL_CTL_ADD, fd, token)
    }

    /// Stops watching `fd`.
    ///
    /// # Errors
    ///
    /// `ENOENT` if `fd` is not watched, `EBADF` if it is closed.
    pub(crate) fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `event` is a valid epoll_event for the duration of the
        // call (ignored by EPOLL_CTL_DEL); the epoll descriptor is ours.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) })?;
        Ok(())
    }

    /// Waits until a watched descriptor is readable, `timeout` expires or
    /// [`notify`](Self::notify) is called, then puts the tokens of the
    /// readable descriptors into `ready` (cleared first; each token at most
    /// once per call).
    ///
    /// `None` waits without a time limit; `Some(Duration::ZERO)` only
    /// polls. A timeout is never shortened: with `epoll_pwait2` (Linux ≥
    /// 5.11) it is exact to the nanosecond; on older kernels it is rounded
    /// up to the next millisecond (so a sub-millisecond timeout sleeps 1 ms,
    /// it does not spin). An interruption by a signal (`EINTR`) returns
    /// `Ok` with `ready` empty, as does a wake-up by `notify`.
    ///
    /// # Errors
    ///
    /// The error of `epoll_wait` other than `EINTR` (should not happen).
    pub(crate) fn wait(&self, timeout: Option<Duration>, ready: &mut Vec<u64>) -> io::Result<()> {
        ready.clear();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let n = match self.epoll_wait(&mut events, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        for ev in &events[..n] {
            let token = ev.u64;
            if token == RESERVED_TOKEN {
                // Reset the eventfd; `WouldBlock` means someone else did.
                let _ = (&self.wake).read(&mut [0u8; 8]);
            } else {
                ready.push(token);
            }
        }
        Ok(())
    }

    /// Makes the current or next [`wait`](Self::wait) return at once.
    /// Callable from any thread (and async-signal-safe in effect: one
    /// `write` on an eventfd).
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "the cross-thread wake-up a scheduler on another core will use; tested here"
        )
    )]
    pub(crate) fn notify(&self) {
        // The only possible error is EAGAIN when the counter is saturated,
        // which means a wake-up is pending anyway.
        let _ = (&self.wake).write(&1u64.to_ne_bytes());
    }

    fn epoll_wait(
        &self,
        events: &mut [libc::epoll_event],
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let epfd = self.epoll.as_raw_fd();
        let max = events.len() as libc::c_int;
        if self.pwait2.load(Ordering::Relaxed) {
            let ts = timeout.map(|d| libc::timespec {
                tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: d.subsec_nanos().into(),
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
            // SAFETY: `events` is writable for `max` entries, `ts_ptr` is
            // null or points to a live timespec, and a null sigmask means
            // "keep the current one".
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    epfd,
                    events.as_mut_ptr(),
                    max,
                    ts_ptr,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            };
            match cvt(ret) {
                Ok(n) => return Ok(n as usize),
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    self.pwait2.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let ms = timeout.map_or(-1, timeout_ms);
        // SAFETY: `events` is writable for `max` entries.
        let n = cvt(unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), max, ms) })?;
        Ok(n as usize)
    }
}

/// A timeout in milliseconds for `epoll_wait`, rounded up (never 0 for a
/// non-zero duration) and capped at `i32::MAX` (about 24 days; a wake-up
/// that early is harmless).
fn timeout_ms(d: Duration) -> libc::c_int {
    let ms = d.as_nanos().div_ceil(1_000_000);
    ms.min(libc::c_int::MAX as u128) as libc::c_int
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    fn pollers() -> Vec<Poller> {
        let exact = Poller::new().unwrap();
        let rounded = Poller::new().unwrap();
        rounded.pwait2.store(false, Ordering::Relaxed);
        vec![exact, rounded]
    }

    #[test]
    fn readable_descriptor_is_reported_until_drained() {
        for p in pollers() {
            let (a, b) = UnixStream::pair().unwrap();
            let (c, _d) = UnixStream::pair().unwrap();
            p.add(b.as_raw_fd(), 7).unwrap();
            p.add(c.as_raw_fd(), 8).unwrap();
            let mut ready = vec![99];
            p.wait(Some(Duration::ZERO), &mut ready).unwrap();
            assert_eq!(ready, Vec::<u64>::new());
            (&a).write_all(b"x").unwrap();
            p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
            assert_eq!(ready, vec![7]);
            // Level-triggered: still readable, still reported.
            p.wait(Some(Duration::ZERO), &mut ready).unwrap();
            assert_eq!(ready, vec![7]);
            (&b).read_exact(&mut [0u8; 1]).unwrap();
            p.wait(Some(Duration::ZERO), &mut ready).unwrap();
            assert!(ready.is_empty());
            // Removed: no longer reported.
            (&a).write_all(b"y").unwrap();
            p.remove(b.as_raw_fd()).unwrap();
            p.wait(Some(Duration::ZERO), &mut ready).unwrap();
            assert!(ready.is_empty());
        }
    }

    #[test]
    fn hang_up_is_reported() {
        let p = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        p.add(b.as_raw_fd(), 1).unwrap();
        drop(a);
        let mut ready = Vec::new();
        p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert_eq!(ready, vec![1]);
    }

    #[test]
    fn many_ready_descriptors() {
        let p = Poller::new().unwrap();
        let pairs: Vec<_> = (0..100).map(|_| UnixStream::pair().unwrap()).collect();
        for (i, (a, b)) in pairs.iter().enumerate() {
            p.add(b.as_raw_fd(), i as u64).unwrap();
            (&*a).write_all(b"x").unwrap();
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut ready = Vec::new();
        for _ in 0..2 {
            p.wait(Some(Duration::ZERO), &mut ready).unwrap();
            assert!(ready.len() <= MAX_EVENTS);
            for &t in &ready {
                (&pairs[t as usize].1).read_exact(&mut [0u8; 1]).unwrap();
                seen.insert(t);
            }
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn errors() {
        let p = Poller::new().unwrap();
        let (_a, b) = UnixStream::pair().unwrap();
        p.add(b.as_raw_fd(), 1).unwrap();
        let e = p.add(b.as_raw_fd(), 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e = p.add(b.as_raw_fd(), RESERVED_TOKEN).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "the poller token u64::MAX is reserved; use another token"
        );
        let (_c, d) = UnixStream::pair().unwrap();
        assert_eq!(
            p.remove(d.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn timeouts_are_not_shortened() {
        for (i, p) in pollers().into_iter().enumerate() {
            let mut ready = Vec::new();
            for wanted in [Duration::from_micros(200), Duration::from_millis(3)] {
                let start = Instant::now();
                p.wait(Some(wanted), &mut ready).unwrap();
                let took = start.elapsed();
                assert!(ready.is_empty());
                assert!(took >= wanted, "poller {i}: {wanted:?} took {took:?}");
                if i == 1 {
                    // Rounded up to whole milliseconds, never down to 0.
                    assert!(took >= Duration::from_millis(1), "{took:?}");
                }
                assert!(took < wanted + Duration::from_millis(200), "{took:?}");
            }
        }
    }

    #[test]
    fn timeout_rounding() {
        assert_eq!(timeout_ms(Duration::ZERO), 0);
        assert_eq!(timeout_ms(Duration::from_nanos(1)), 1);
        assert_eq!(timeout_ms(Duration::from_micros(999)), 1);
        assert_eq!(timeout_ms(Duration::from_millis(1)), 1);
        assert_eq!(timeout_ms(Duration::from_micros(1001)), 2);
        assert_eq!(timeout_ms(Duration::MAX), i32::MAX);
    }

    #[test]
    fn notify_wakes_a_wait_without_a_timeout() {
        for p in pollers() {
            let p = std::sync::Arc::new(p);
            let q = p.clone();
            let waker = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                q.notify();
            });
            let start = Instant::now();
            let mut ready = vec![1];
            p.wait(None, &mut ready).unwrap();
            assert!(ready.is_empty());
            assert!(start.elapsed() >= Duration::from_millis(15));
            waker.join().unwrap();
            // The wake-up was consumed: the next poll reports nothing and
            // returns at once; notifications before a wait are not lost.
            p.wait(Some(Duration::ZERO), &mut ready).unwrap();
            p.notify();
            p.notify();
            let start = Instant::now();
            p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
            assert!(start.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn signal_interruption_returns_ok_and_empty() {
        // A handler without SA_RESTART makes epoll_wait fail with EINTR.
        extern "C" fn on_signal(_: libc::c_int) {}
        let p = std::sync::Arc::new(Poller::new().unwrap());
        // SAFETY: an all-zero `sigaction` is a valid value (integers, a
        // signal set, and an `Option` of a function pointer: `None`).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as *const () as usize;
        // SAFETY: installs a handler that does nothing (async-signal-safe)
        // for SIGUSR2, which nothing else in the tests uses; `sa` is fully
        // initialised (zeroed, then the handler set).
        unsafe { libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()) };
        let (tx, rx) = std::sync::mpsc::channel();
        let q = p.clone();
        let waiter = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() }).unwrap();
            let mut ready = vec![1];
            let start = Instant::now();
            q.wait(Some(Duration::from_secs(10)), &mut ready).unwrap();
            (ready, start.elapsed())
        });
        let thread = rx.recv().unwrap();
        // Signal until the wait returns (a signal that lands before the
        // wait starts is lost).
        while !waiter.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
            // SAFETY: `thread` is alive (or finished but not yet joined,
            // which keeps its id valid) until joined below.
            unsafe { libc::pthread_kill(thread, libc::SIGUSR2) };
        }
        let (ready, took) = waiter.join().unwrap();
        assert!(ready.is_empty());
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}

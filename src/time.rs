//! Clocks and sleeping.

use crate::fiber::{Syscall, suspend};
use crate::reactor;
use crate::sys::clock;
use core::time::Duration;

/// Nanoseconds on a monotonic clock (since an unspecified start: boot on
/// Solo5). Atomic: it never gives the scheduler a chance to run another task.
///
/// ```
/// let a = mkernel::clock_monotonic();
/// let b = mkernel::clock_monotonic();
/// assert!(b >= a);
/// ```
#[must_use]
pub fn clock_monotonic() -> u64 {
    clock::monotonic()
}

/// Nanoseconds since the Unix epoch (UTC), from the host's clock. Atomic.
///
/// ```
/// // After 2020-01-01.
/// assert!(mkernel::clock_wall() > 1_577_836_800 * 1_000_000_000);
/// ```
#[must_use]
pub fn clock_wall() -> u64 {
    clock::wall()
}

/// Suspends the current task for `d` (other tasks run meanwhile). A zero
/// duration yields.
///
/// # Panics
/// Outside a run, or in a run whose event source was replaced with
/// [`Builder::events`](crate::Builder::events) (sleeping needs the
/// platform's clock; use [`testing::VirtualClock::sleep`](crate::testing::VirtualClock::sleep) there).
///
/// ```
/// let t0 = mkernel::clock_monotonic();
/// mkernel::run((), |()| mkernel::sleep(std::time::Duration::from_millis(5)));
/// assert!(mkernel::clock_monotonic() - t0 >= 5_000_000);
/// ```
pub fn sleep(d: Duration) {
    if d.is_zero() {
        crate::fiber::yield_now();
        return;
    }
    let deadline = clock_monotonic().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
    sleep_until(deadline)
}

/// Suspends the current task until the monotonic clock reaches `deadline` (ns).
pub(crate) fn sleep_until(deadline: u64) {
    reactor::require("mkernel::sleep");
    while clock_monotonic() < deadline {
        if crate::fiber::cannot_wait() {
            return;
        }
        let sc = Syscall::new();
        let _timer = reactor::Timer::new(deadline, sc.id());
        suspend(&sc, || {});
    }
}

/// The error of [`timeout`]: the time ran out before the function
/// returned. Converts into an [`io::Error`](std::io::Error) of kind
/// `TimedOut`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Elapsed;

impl core::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(e: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}

/// Runs `f` with a time limit: `Ok` with its value if it returns within
/// `limit`, else `Err(Elapsed)` once `limit` has passed, `f` having been
/// cancelled. This bounds any blocking code (a connect, a read, a join, a
/// chain of them) without it knowing.
///
/// `f` runs in a child task (Miou's pattern: the work and a sleep race in
/// [`join_first`](crate::join_first), which cancels the loser), so:
///
/// - the caller suspends meanwhile (other tasks run);
/// - on expiry the child is cancelled as by
///   [`Promise::cancel`](crate::Promise::cancel) (rule 4): when `timeout`
///   returns, every destructor on its stack has run and what it waited for
///   was withdrawn (a socket it was reading is closed by its drop);
/// - rule 1 applies to `f` itself: children it spawns must be joined or
///   cancelled inside `f` (they are cancelled with it on expiry, rule 3);
/// - a panic of `f` propagates to the caller, as with
///   [`Promise::join_unwrap`](crate::Promise::join_unwrap);
/// - `f` must be `'static` (move what it needs into it: an `Rc`, a
///   socket) and its value comes back to the caller.
///
/// When `f` returns in the very round its time runs out, its value wins.
/// A zero `limit` still lets `f` start (it is cancelled at its first
/// wait).
///
/// # Errors
/// [`Elapsed`] when `limit` passed first.
///
/// # Panics
/// When `f` panics (its payload is resumed), outside a run, or in a run
/// whose event source was replaced with
/// [`Builder::events`](crate::Builder::events) (the limit is a
/// [`sleep`]).
///
/// ```
/// use std::time::Duration;
///
/// mkernel::run((), |()| {
///     let quick = mkernel::timeout(Duration::from_secs(1), || 6 * 7);
///     assert_eq!(quick, Ok(42));
///     let slow = mkernel::timeout(Duration::from_millis(5), || {
///         mkernel::sleep(Duration::from_secs(3600));
///         "never"
///     });
///     assert_eq!(slow, Err(mkernel::Elapsed));
/// });
/// ```
#[track_caller]
pub fn timeout<T: 'static>(limit: Duration, f: impl FnOnce() -> T + 'static) -> Result<T, Elapsed> {
    reactor::require("mkernel::timeout");
    let work = crate::fiber::spawn(move || Some(f()));
    let clock = crate::fiber::spawn(move || {
        sleep(limit);
        None
    });
    let (first, rest) = crate::fiber::join_any(vec![work, clock]);
    let mut rest = rest.into_iter();
    let other = rest.next().expect("two promises, one joined");
    let value = match first {
        Ok(Some(v)) => {
            other.cancel();
            return Ok(v);
        }
        // The clock won; the work may have returned in the same round.
        Ok(None) if other.is_finished() => other.join(),
        Ok(None) => {
            other.cancel();
            return Err(Elapsed);
        }
        Err(e) => {
            other.cancel();
            Err(e)
        }
    };
    match value {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(Elapsed),
        Err(crate::fiber::Error::Panicked(p)) => std::panic::resume_unwind(p),
        Err(crate::fiber::Error::Cancelled) => Err(Elapsed),
    }
}

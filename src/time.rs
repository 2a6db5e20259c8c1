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

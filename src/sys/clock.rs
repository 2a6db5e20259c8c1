//! The two clocks, on `clock_gettime` (which the Solo5 shim maps to the
//! Solo5 clocks), and the CPU's cycle counter.

fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(r, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(crate) fn monotonic() -> u64 {
    read(libc::CLOCK_MONOTONIC)
}

pub(crate) fn wall() -> u64 {
    read(libc::CLOCK_REALTIME)
}

/// A monotonic count of CPU cycles (the TSC on x86_64: a few ns to read,
/// constant-rate on the machines we run on); elsewhere, nanoseconds.
#[inline]
pub(crate) fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC is available on every x86_64 CPU and has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        monotonic()
    }
}

//! A cheap cycle counter for scheduler statistics, converted to time lazily.

use std::sync::OnceLock;
use std::time::Instant;

/// A monotonic count of CPU cycles (the TSC on x86_64: a few ns to read,
/// constant-rate on the machines we run on).
#[inline]
pub(crate) fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC is available on every x86_64 CPU and has no side effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        start().0.elapsed().as_nanos() as u64
    }
}

fn start() -> &'static (Instant, u64) {
    static START: OnceLock<(Instant, u64)> = OnceLock::new();
    START.get_or_init(|| (Instant::now(), cycles()))
}

/// Records the reference point for the conversion (first run of the process).
pub(crate) fn calibrate_start() {
    start();
}

/// Cycles per nanosecond, measured against `Instant` since the first run.
pub(crate) fn cycles_per_ns() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let (t0, c0) = *start();
        let mut dt = t0.elapsed();
        if dt.as_micros() < 2_000 {
            // Too short to measure well: take 2 ms now (rare: stats read
            // right after the first run started).
            std::thread::sleep(std::time::Duration::from_millis(2));
            dt = t0.elapsed();
        }
        let dc = cycles().wrapping_sub(c0);
        (dc as f64 / dt.as_nanos() as f64).max(1e-3)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        1.0
    }
}

pub(crate) fn cycles_to_duration(c: u64) -> core::time::Duration {
    core::time::Duration::from_nanos((c as f64 / cycles_per_ns()) as u64)
}

/// Converts a duration to TSC cycles with a rate at most the real one (so a
/// deadline computed with it is never late): the rate measured since the
/// first run once that is at least 20 ms old (less 1% for safety), 1 cycle
/// per ns before (slower than any TSC).
pub(crate) fn ns_to_cycles_at_most(ns: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    // The measured rate, in cycles per 1024 ns; 0 until measured.
    static RATE: AtomicU64 = AtomicU64::new(0);
    let mut rate = RATE.load(Ordering::Relaxed);
    if rate == 0 {
        let (t0, c0) = *start();
        let dt = t0.elapsed().as_nanos() as u64;
        if dt < 20_000_000 {
            return ns;
        }
        let dc = cycles().wrapping_sub(c0);
        rate = ((dc as u128 * 1024 * 99 / 100) / dt as u128) as u64;
        rate = rate.max(1);
        RATE.store(rate, Ordering::Relaxed);
    }
    ((ns as u128 * rate as u128) >> 10).min(u64::MAX as u128) as u64
}

//! A cheap cycle counter for scheduler statistics, converted to time lazily.

pub(crate) use crate::sys::clock::cycles;
use crate::sys::ticker;
use std::sync::OnceLock;
use std::time::Instant;

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

/// The scheduler's view of the time: the TSC is read after every task switch
/// while tasks run for a while between switches, and after one switch in
/// `every` (at most `max_every`: `Builder::switches_per_clock_read`) while
/// switches are so fast that reading the TSC (~10 ns on the machines we
/// measure) would be a large part of their cost.
///
/// `every` grows by one after each window of switches shorter than
/// [`SHORT_WINDOW`] cycles and drops to 1 after a window longer than
/// [`LONG_WINDOW`]: slow growth, immediate fall, so that tasks computing
/// between yields keep a read per switch. On the window where tasks that
/// only yielded start computing, up to `every` slices could pass unread;
/// the platform's beat bounds that (hosted: a thread bumps a counter every
/// 200 µs, and a moved counter forces a read at the next switch). Solo5 has
/// no such thread, so there the default is a read after every switch.
#[derive(Debug)]
pub(crate) struct SampledClock {
    /// The last TSC read.
    now: u64,
    every: u32,
    countdown: u32,
    max_every: u32,
    /// TSC reads so far (`Stats::clock_reads`).
    reads: u64,
    /// The platform's beat at the last read: when it moved, the next
    /// switch reads the TSC whatever the countdown (hosted: a thread beats
    /// every 200 µs; see `sys::ticker`).
    beat: u64,
}

/// Default of [`Builder::switches_per_clock_read`](crate::Builder::switches_per_clock_read):
/// at most this many task switches between two reads of the time-stamp
/// counter while tasks switch fast: 8 hosted; 1 on Solo5, a read after
/// every switch, since there is no thread there to bound how long a
/// skipped read may be stale.
pub const DEFAULT_SWITCHES_PER_CLOCK_READ: u32 = crate::sys::DEFAULT_SWITCHES_PER_CLOCK_READ;
/// A window this short (in cycles, ~1 µs at 2.5 GHz) lets `every` grow.
pub(crate) const SHORT_WINDOW: u64 = 2_500;
/// A window this long (in cycles, ~4 µs at 2.5 GHz) makes `every` 1.
pub(crate) const LONG_WINDOW: u64 = 10_000;

impl SampledClock {
    pub(crate) fn new(max_every: u32) -> SampledClock {
        if max_every > 1 {
            ticker::start();
        }
        SampledClock {
            now: cycles(),
            every: 1,
            countdown: 0,
            max_every: max_every.max(1),
            reads: 1,
            beat: ticker::beats(),
        }
    }

    /// The TSC value of the last read.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// How many times the TSC was read.
    pub(crate) fn reads(&self) -> u64 {
        self.reads
    }

    /// Called after each task switch.
    #[inline]
    pub(crate) fn after_switch(&mut self) {
        if self.countdown > 0 && ticker::beats() == self.beat {
            self.countdown -= 1;
        } else {
            self.sample();
        }
    }

    fn sample(&mut self) {
        let before = self.now;
        let window = self.take().wrapping_sub(before);
        if window > LONG_WINDOW {
            self.every = 1;
        } else if window < SHORT_WINDOW && self.every < self.max_every {
            self.every += 1;
        }
        if self.every > 1 {
            // Reads are being skipped: the beat is what bounds how stale
            // the clock gets, so keep it going. (A run that reads after
            // every switch, or that mostly waits, lets it park.)
            ticker::active();
        }
        self.countdown = self.every - 1;
    }

    /// Reads the TSC now (after a wait, where the time certainly moved);
    /// the countdown starts again from there.
    #[inline]
    pub(crate) fn read(&mut self) -> u64 {
        let t = self.take();
        self.countdown = self.every - 1;
        t
    }

    /// One reading: the TSC, and the platform's beat it answers.
    #[inline]
    fn take(&mut self) -> u64 {
        self.beat = ticker::beats();
        self.now = cycles();
        self.reads += 1;
        self.now
    }
}

//! A coarse beat that tells the scheduler's sampled clock "time has moved".
//!
//! While tasks only yield, the scheduler reads the TSC after one switch in
//! up to 8 (a read costs ~10 ns, a whole switch ~20). If those tasks then
//! start computing long slices, up to 8 slices would pass before the next
//! read, and with it the next look at the devices. This thread bounds that:
//! every [`PERIOD`] it bumps a counter, and a scheduler that sees the
//! counter moved reads the TSC at its next switch, whatever its countdown.
//! Checking costs a load of a cache line the thread writes once a period.
//!
//! The thread runs while some scheduler skips reads (its tasks switch
//! fast), and parks after [`PARK_AFTER`] periods without any: a sleeping
//! unikernel, or one whose tasks run long slices or mostly wait, does not
//! pay for it. The first skipping scheduler after that wakes it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// Beat of the counter.
pub(crate) const PERIOD: Duration = Duration::from_micros(200);
/// Periods without any scheduler activity after which the thread parks.
const PARK_AFTER: u32 = 50;

static BEATS: AtomicU64 = AtomicU64::new(0);
/// Some scheduler skipped clock reads since the thread last looked.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The thread is parked (or about to be).
static PARKED: AtomicBool = AtomicBool::new(false);
static TICKER: OnceLock<Option<Thread>> = OnceLock::new();

/// The beat count (moves only once [`start`] was called).
#[inline]
pub(crate) fn beats() -> u64 {
    BEATS.load(Ordering::Relaxed)
}

/// A scheduler is skipping clock reads: keeps the thread beating, and wakes
/// it if it parked.
#[inline]
pub(crate) fn active() {
    if !ACTIVE.load(Ordering::Relaxed) {
        ACTIVE.store(true, Ordering::SeqCst);
    }
    if PARKED.load(Ordering::SeqCst) {
        wake();
    }
}

#[cold]
fn wake() {
    if let Some(Some(t)) = TICKER.get() {
        t.unpark();
    }
}

/// Starts the thread once per process. If it cannot be started, the
/// scheduler's clock simply goes without it (reads every up to 8 switches).
pub(crate) fn start() {
    TICKER.get_or_init(|| {
        std::thread::Builder::new()
            .name("mkernel-ticker".into())
            .spawn(beat)
            .ok()
            .map(|h| h.thread().clone())
    });
}

fn beat() {
    let mut quiet = 0;
    loop {
        std::thread::sleep(PERIOD);
        BEATS.fetch_add(1, Ordering::Relaxed);
        if ACTIVE.swap(false, Ordering::Relaxed) {
            quiet = 0;
            continue;
        }
        quiet += 1;
        if quiet >= PARK_AFTER {
            // Announce the park, then look once more: a scheduler that set
            // ACTIVE after our swap either is seen here or sees PARKED
            // (both sides use SeqCst) and unparks us.
            PARKED.store(true, Ordering::SeqCst);
            if !ACTIVE.load(Ordering::SeqCst) {
                std::thread::park();
            }
            PARKED.store(false, Ordering::SeqCst);
            quiet = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the beat count moves past `from` within a (generous) second
    /// while a scheduler keeps sampling.
    fn moves_from(from: u64) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(1);
        while std::time::Instant::now() < end {
            active();
            if beats() > from {
                return true;
            }
            std::thread::sleep(PERIOD);
        }
        false
    }

    #[test]
    fn beats_while_active_and_again_after_a_quiet_spell() {
        start();
        assert!(
            moves_from(beats()),
            "the counter moves while a scheduler is active"
        );
        // Quiet for longer than PARK_AFTER periods: it parks (unless other
        // tests of this process keep it busy), and activity must start it
        // again.
        std::thread::sleep(PERIOD * (PARK_AFTER + 20));
        assert!(moves_from(beats()), "it beats again after activity");
    }
}

//! The two clocks, on `clock_gettime` (which the Solo5 shim maps to the
//! Solo5 clocks).

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

//! Random bytes from the platform's entropy source.

use crate::sys;
use std::io;

/// Fills `buf` with random bytes from the platform's entropy source, fit
/// for keys and nonces (it is the operating system's or the CPU's
/// generator, not a pseudo-random sequence of mkernel's). Atomic: it never
/// gives the scheduler a chance to run another task.
///
/// | platform | source |
/// |---|---|
/// | hosted (Linux) | the kernel: `getrandom(2)` (`/dev/urandom` on a kernel without it) |
/// | Solo5 (spt, hvt, virtio) | the CPU: `RDSEED`, or `RDRAND` on a CPU without `RDSEED` |
///
/// A unikernel has no other entropy source than its CPU. Inside one, the
/// same source also answers std (the keys of `HashMap`'s `RandomState`)
/// and the `getrandom` crate (through the libc shim's `getrandom` and
/// `dlsym`), so those are as random as hosted.
///
/// ```
/// let mut key = [0u8; 32];
/// mkernel::fill_random(&mut key).unwrap();
/// let mut other = [0u8; 32];
/// mkernel::fill_random(&mut other).unwrap();
/// assert_ne!(key, other);
/// ```
///
/// # Errors
///
/// The system's error hosted (rare: `getrandom(2)` fails only on bad
/// arguments, or `/dev/urandom` cannot be read on a kernel older than
/// 3.17). On Solo5, [`Unsupported`](io::ErrorKind::Unsupported) on a CPU
/// with neither `RDRAND` nor `RDSEED`, and [`Other`](io::ErrorKind::Other)
/// when the CPU's generator keeps failing. `buf` is then partly filled.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    sys::fill_random(buf)
}

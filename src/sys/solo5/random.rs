//! Entropy in a Solo5 unikernel: the CPU's generator, RDSEED (or RDRAND on
//! a CPU without RDSEED). There is no other source: no device, no host
//! call. The libc shim answers `getrandom` (std's HashMap keys, the
//! `getrandom` crate) from here too.

use std::io;

/// Which instruction this CPU has.
#[derive(Clone, Copy)]
enum Source {
    RdSeed,
    RdRand,
}

fn source() -> Option<Source> {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    // cpuid is available on every x86_64 CPU (a safe intrinsic).
    let rdrand = (__cpuid(1).ecx >> 30) & 1 == 1;
    let rdseed = (__cpuid_count(7, 0).ebx >> 18) & 1 == 1;
    if rdseed {
        Some(Source::RdSeed)
    } else if rdrand {
        Some(Source::RdRand)
    } else {
        None
    }
}

/// Fills `buf` from the CPU's generator.
///
/// Fails (`Unsupported`) on a CPU with neither RDRAND nor RDSEED, and
/// (`Other`) when the generator keeps reporting underflow.
pub(crate) fn fill(buf: &mut [u8]) -> io::Result<()> {
    let Some(src) = source() else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this CPU has neither RDRAND nor RDSEED, and a Solo5 unikernel has no other \
             entropy source",
        ));
    };
    for chunk in buf.chunks_mut(8) {
        let v = match src {
            // SAFETY: CPUID said (in `source`) that this CPU has RDSEED.
            Source::RdSeed => unsafe { hw_rdseed() },
            // SAFETY: CPUID said (in `source`) that this CPU has RDRAND.
            Source::RdRand => unsafe { hw_rdrand() },
        };
        let v = v.ok_or_else(|| io::Error::other("the CPU's random generator keeps failing"))?;
        chunk.copy_from_slice(&v.to_ne_bytes()[..chunk.len()]);
    }
    Ok(())
}

/// One 64-bit value from RDSEED, retrying while the generator reports
/// underflow (the carry flag clear), as Intel advises; `None` after 1000
/// failures.
///
/// (One function per instruction: a function compiled with a target
/// feature may only run on a CPU that has that feature, and a CPU may have
/// RDRAND without RDSEED.)
///
/// # Safety
/// The CPU has RDSEED.
#[target_feature(enable = "rdseed")]
unsafe fn hw_rdseed() -> Option<u64> {
    let mut v = 0;
    for _ in 0..1000 {
        // Safe inside this function, which enables the feature.
        if core::arch::x86_64::_rdseed64_step(&mut v) == 1 {
            return Some(v);
        }
        std::hint::spin_loop();
    }
    None
}

/// [`hw_rdseed`] with RDRAND.
///
/// # Safety
/// The CPU has RDRAND.
#[target_feature(enable = "rdrand")]
unsafe fn hw_rdrand() -> Option<u64> {
    let mut v = 0;
    for _ in 0..1000 {
        // Safe inside this function, which enables the feature.
        if core::arch::x86_64::_rdrand64_step(&mut v) == 1 {
            return Some(v);
        }
        std::hint::spin_loop();
    }
    None
}

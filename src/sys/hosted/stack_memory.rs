//! Stack memory in a Linux process: lazily reserved anonymous mappings,
//! with a guard page below each stack.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

/// The page size stacks and guards are counted in.
pub(crate) const PAGE: usize = 4096;

/// Stacks get guard pages here.
pub(crate) const HAS_GUARDS: bool = true;

/// Maps `len` bytes (a multiple of [`PAGE`]) for stacks, reserved lazily.
pub(crate) fn map_region(len: usize) -> io::Result<usize> {
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p as usize)
}

/// `madvise` advice that turns a range into a guard region (Linux 6.13,
/// `include/uapi/asm-generic/mman-common.h`; not in the `libc` crate yet).
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Whether the kernel has lightweight guard regions; probed once per
/// process.
pub(crate) fn light_guards() -> bool {
    // 0: not probed yet, 1: yes, 2: no.
    static PROBED: AtomicU8 = AtomicU8::new(0);
    match PROBED.load(Ordering::Relaxed) {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let Ok(page) = map_region(PAGE) else {
        return false;
    };
    // SAFETY: `page` is a private anonymous page this function just mapped
    // and nothing else uses; a guard region only makes it inaccessible.
    let ok = unsafe { libc::madvise(page as *mut libc::c_void, PAGE, MADV_GUARD_INSTALL) } == 0;
    // SAFETY: the page was mapped just above, whole, and nothing uses it.
    unsafe { unmap_region(page, PAGE) };
    PROBED.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
    ok
}

/// Makes the page at `low` the guard page of the stack above it: a guard
/// region when `light`, else `PROT_NONE` (one more mapping).
///
/// # Safety
/// `low` must be the first page of a stack slot inside a region that
/// [`map_region`] returned and that no stack uses yet.
pub(crate) unsafe fn install_guard(low: usize, light: bool) -> io::Result<()> {
    let r = if light {
        // SAFETY: per the caller's contract, the page is part of a mapping
        // of ours that nothing uses; a guard region only makes it
        // inaccessible.
        unsafe { libc::madvise(low as *mut libc::c_void, PAGE, MADV_GUARD_INSTALL) }
    } else {
        // SAFETY: as above; PROT_NONE only makes the page inaccessible.
        unsafe { libc::mprotect(low as *mut libc::c_void, PAGE, libc::PROT_NONE) }
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Gives the pages of a free stack (`size` bytes from `bottom`) back to the
/// system; they read as zeroes when touched again.
///
/// # Safety
/// The range must be a stack from a region that [`map_region`] returned,
/// and nothing may use it (its stack is back in its pool, no coroutine
/// runs on it).
pub(crate) unsafe fn release_pages(bottom: usize, size: usize) {
    // SAFETY: per the caller's contract nothing uses the range, and
    // MADV_DONTNEED on a private anonymous mapping only zeroes its pages.
    unsafe {
        libc::madvise(bottom as *mut libc::c_void, size, libc::MADV_DONTNEED);
    }
}

/// Unmaps a region that [`map_region`] returned.
///
/// # Safety
/// `start` and `len` must be a region [`map_region`] returned, and no stack
/// of it may be used any more.
pub(crate) unsafe fn unmap_region(start: usize, len: usize) {
    // SAFETY: per the caller's contract, the region is ours, whole, and
    // unused.
    unsafe {
        libc::munmap(start as *mut libc::c_void, len);
    }
}

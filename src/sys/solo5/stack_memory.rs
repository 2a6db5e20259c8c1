//! Stack memory in a Solo5 unikernel: heap allocations (no virtual memory
//! tricks, so no guard pages: stacks carry a canary instead).

use std::io;

/// The page size stacks are counted in.
pub(crate) const PAGE: usize = 4096;

/// No guard pages on Solo5.
pub(crate) const HAS_GUARDS: bool = false;

/// Allocates `len` bytes (a multiple of [`PAGE`]) for stacks.
pub(crate) fn map_region(len: usize) -> io::Result<usize> {
    let layout = std::alloc::Layout::from_size_align(len, PAGE)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: the layout has a non-zero size (a stack is at least 16 KiB).
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "the unikernel's heap is exhausted (give it more memory with the tender's --mem=MB, e.g. solo5-spt --mem=512)",
        ));
    }
    Ok(p as usize)
}

/// No guard regions on Solo5.
pub(crate) fn light_guards() -> bool {
    false
}

/// No guard pages on Solo5: never called with `HAS_GUARDS` false.
///
/// # Safety
/// None needed here (it does nothing); the contract is the hosted one.
pub(crate) unsafe fn install_guard(_low: usize, _light: bool) -> io::Result<()> {
    Ok(())
}

/// Nothing to give back: the heap has no demand paging.
///
/// # Safety
/// None needed here (it does nothing); the contract is the hosted one.
pub(crate) unsafe fn release_pages(_bottom: usize, _size: usize) {}

/// Frees a region that [`map_region`] returned.
///
/// # Safety
/// `start` and `len` must be a region [`map_region`] returned, and no stack
/// of it may be used any more.
pub(crate) unsafe fn unmap_region(start: usize, len: usize) {
    let layout = std::alloc::Layout::from_size_align(len, PAGE).expect("valid stack layout");
    // SAFETY: per the caller's contract, allocated by `map_region` with the
    // same layout, and unused.
    unsafe { std::alloc::dealloc(start as *mut u8, layout) }
}

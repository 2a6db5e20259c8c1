//! Task stacks: a per-run pool, so that spawning does not map memory on the
//! hot path, with overflow detection.
//!
//! On hosted Linux every stack gets a *guard page*, an inaccessible page
//! below it: a fault there is reported by a signal handler, naming the
//! task, before anything is corrupted. Since Linux 6.13 the guard is a
//! lightweight guard region (`MADV_GUARD_INSTALL`), which costs neither a
//! resident page nor a memory mapping, so every stack has one, however many
//! tasks live. On older kernels the guard page is `mprotect`ed, which splits
//! a mapping in two, and Linux caps a process at `vm.max_map_count` (65530
//! by default) mappings: only [`MAX_GUARDED`] stacks of the process get one
//! at once there.
//!
//! A stack without a guard page (beyond that limit, and on Solo5) gets a
//! *canary*, a known word at its lowest usable address, checked each time
//! its task is switched out: an overflow that went past it stops the run
//! with a message naming the task. That is detection after the fact, not
//! protection: see the `SAFETY` comment on `impl Stack for PooledStack`.
//!
//! Memory is reserved lazily (`MAP_NORESERVE`): a parked task costs only the
//! pages its stack really touched (one page for a shallow task with a guard
//! page; a canary costs one more, at the bottom).

// The stack pool is one of the few modules with `unsafe` code (see the
// layer map in lib.rs): stacks are raw memory lent to coroutines.
#![allow(unsafe_code, reason = "stacks are raw memory lent to coroutines")]

use crate::sys::{self, stack_memory as mem};
use core::num::NonZeroUsize;
use corosensei::stack::{Stack, StackPointer};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many stacks may carry an `mprotect`ed guard page at once,
/// process-wide, on kernels without lightweight guard regions (Linux before
/// 6.13); on newer ones every hosted stack has a guard page.
pub const MAX_GUARDED: usize = 16_384;

/// Default usable stack size of a task: 256 KiB hosted, 64 KiB on Solo5
/// (whose memory is not overcommitted).
pub const DEFAULT_STACK_SIZE: usize = sys::DEFAULT_STACK_SIZE;

const CANARY: u64 = 0x6d6b_6572_6e65_6c21; // "mkernel!"
const PAGE: usize = mem::PAGE;
/// Stacks mapped at once when the pool is empty.
const CHUNK: usize = 16;
/// Free stacks kept with their pages; beyond this, freed stacks give their
/// memory back to the system (`MADV_DONTNEED`) so that a burst of tasks does
/// not pin its peak memory for ever.
const KEEP_WARM: usize = 1024;

static GUARDED: AtomicUsize = AtomicUsize::new(0);

/// A stack owned by the pool and lent to one task at a time.
pub(crate) struct PooledStack {
    /// Highest address (the stack grows down from here).
    base: usize,
    /// Lowest usable address; the canary lives here.
    bottom: usize,
    /// Guard page, if any: `[bottom - PAGE, bottom)`.
    guarded: bool,
}

// SAFETY: corosensei 0.3's `Stack` contract asks for three things; this is
// what holds for each.
//
// 1. `base()` and `limit()` aligned to `STACK_ALIGNMENT` (16), with
//    `limit()` including any guard page: both are page-aligned (a region
//    from `map_region` is page-aligned, and the pool's stack size and
//    slots are whole pages), and `limit()` is the guard page's start when
//    there is one. The memory between them was mapped (or allocated) for
//    this stack alone and stays valid until the pool is dropped, which
//    happens only after every coroutine using one of its stacks has been
//    dropped (`stop_idle_workers`, and each task's worker returns its
//    stack with `put`).
// 2. At least `MIN_STACK_SIZE` (4 KiB) usable bytes: the pool rounds every
//    size up to at least 16 KiB.
// 3. "To preserve memory safety, a stack must have a guard page which
//    catches stack overflows." A guarded stack (hosted, while the process
//    may have one) meets this: an overflow faults in the guard page before
//    it writes outside the stack, and the handler in `sys` reports it and
//    aborts. A stack WITHOUT a guard page (every stack on Solo5, which has
//    no page protection; hosted stacks beyond `MAX_GUARDED` on kernels
//    before 6.13) does NOT meet this clause. There an overflow of the
//    task's own (safe) code writes below `limit()` into whatever lies
//    there: on hosted, the top of the next stack down in the same region
//    (another task's live frames) or, for the lowest one, whatever is
//    mapped below the region; on Solo5, the heap block below. That is
//    undefined behaviour, which the guard page is how corosensei rules
//    out. The canary does not prevent it; it detects it after the fact,
//    most of the time: the run loop checks the lowest word each time the
//    task gives the CPU back (`run_loop::check_canary`) and aborts the
//    process naming the task, so no other task runs on the damaged memory.
//    Until that check the overflowing task itself runs on with the damage,
//    and an overflow that leaves the canary word as it was (a large frame
//    whose writes skip over it; stack probes rewrite it unchanged) is not
//    detected at all. So on unguarded stacks memory safety holds only
//    while tasks stay within their stack size. The crate makes that the
//    user's duty and says so with the stacks (lib.rs, "Stacks"), gives
//    room with `Builder::stack_size` (64 KiB by default on Solo5, 256 KiB
//    hosted), and reports the overflows the canary catches.
unsafe impl Stack for PooledStack {
    fn base(&self) -> StackPointer {
        NonZeroUsize::new(self.base).expect("stack base is never null")
    }
    fn limit(&self) -> StackPointer {
        let low = if self.guarded {
            self.bottom - PAGE
        } else {
            self.bottom
        };
        NonZeroUsize::new(low).expect("stack limit is never null")
    }
}

impl PooledStack {
    /// Where the canary is (lowest usable address), or 0 for a guarded
    /// stack, which has none: its guard page reports overflows, and writing
    /// a canary would make every stack cost one more resident page.
    pub(crate) fn canary_at(&self) -> usize {
        if self.guarded { 0 } else { self.bottom }
    }

    fn write_canary(&self) {
        if self.guarded {
            return;
        }
        // SAFETY: as in `canary_intact`; the stack is not in use by any
        // coroutine while the pool hands it out.
        unsafe { core::ptr::write_volatile(self.bottom as *mut u64, CANARY) }
    }

    /// The guard page range, for the overflow handler.
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        if self.guarded {
            (self.bottom - PAGE, self.bottom)
        } else {
            (0, 0)
        }
    }
}

/// Whether the canary of the stack whose lowest usable address is `bottom`
/// is intact (used while a coroutine owns the stack).
pub(crate) fn canary_intact_at(bottom: usize) -> bool {
    // SAFETY: `bottom` comes from a `PooledStack` lent to a live coroutine;
    // its mapping stays valid for the whole run.
    bottom == 0 || unsafe { core::ptr::read_volatile(bottom as *const u64) == CANARY }
}

/// Pool accounting, returned to its initial state (`in_use == 0`) when every
/// task has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StackStats {
    /// Usable bytes per stack.
    pub stack_size: usize,
    /// Stacks lent to tasks right now.
    pub in_use: usize,
    /// Stacks waiting in the pool (some of them with an idle coroutine on
    /// them, ready for the next task to start).
    pub free: usize,
    /// Stacks ever mapped by this pool.
    pub mapped: usize,
    /// Of the stacks lent right now, how many have a guard page.
    pub guarded_in_use: usize,
}

pub(crate) struct StackPool {
    size: usize,
    free: Vec<PooledStack>,
    regions: Vec<(usize, usize)>,
    in_use: usize,
    /// Stacks of idle workers: out of `free`, but counted as free.
    idle: usize,
    mapped: usize,
    guarded_in_use: usize,
    guarded_owned: usize,
}

impl StackPool {
    pub(crate) fn new(size: usize) -> StackPool {
        let size = size.max(16 * 1024).next_multiple_of(PAGE);
        StackPool {
            size,
            free: Vec::new(),
            regions: Vec::new(),
            in_use: 0,
            idle: 0,
            mapped: 0,
            guarded_in_use: 0,
            guarded_owned: 0,
        }
    }

    pub(crate) fn stack_size(&self) -> usize {
        self.size
    }

    pub(crate) fn stats(&self) -> StackStats {
        StackStats {
            stack_size: self.size,
            in_use: self.in_use,
            free: self.free.len() + self.idle,
            mapped: self.mapped,
            guarded_in_use: self.guarded_in_use,
        }
    }

    pub(crate) fn get(&mut self) -> PooledStack {
        if self.free.is_empty() {
            self.refill();
        }
        let s = self.free.pop().expect("refill adds stacks or aborts");
        self.in_use += 1;
        self.guarded_in_use += s.guarded as usize;
        s
    }

    /// A stack's task ended and its worker waits, idle, for the next task.
    pub(crate) fn idle(&mut self, guarded: bool) {
        self.in_use -= 1;
        self.guarded_in_use -= guarded as usize;
        self.idle += 1;
    }

    /// An idle worker's stack is lent to a task again.
    pub(crate) fn unidle(&mut self, guarded: bool) {
        self.in_use += 1;
        self.guarded_in_use += guarded as usize;
        self.idle -= 1;
    }

    pub(crate) fn put(&mut self, s: PooledStack) {
        self.in_use -= 1;
        self.guarded_in_use -= s.guarded as usize;
        if self.free.len() >= KEEP_WARM {
            // SAFETY: `s` is a stack of this pool's regions, and it is back
            // in the pool: no coroutine runs on it.
            unsafe { mem::release_pages(s.bottom, self.size) };
        }
        s.write_canary();
        self.free.push(s);
    }

    fn refill(&mut self) {
        let light = mem::light_guards();
        let counted = !light && GUARDED.load(Ordering::Relaxed) + CHUNK <= MAX_GUARDED;
        let guard = mem::HAS_GUARDS && (light || counted);
        let per = self.size + if guard { PAGE } else { 0 };
        let len = per * CHUNK;
        let start = mem::map_region(len).unwrap_or_else(|e| {
            crate::fiber::fatal(&format!(
                "mkernel: out of memory for task stacks: {len} bytes for {CHUNK} more stacks \
                 of {} KiB each ({} in use): {e}; lower Builder::stack_size (now {} KiB) or \
                 the number of live tasks",
                self.size / 1024,
                self.in_use,
                self.size / 1024
            ))
        });
        self.regions.push((start, len));
        for i in (0..CHUNK).rev() {
            let low = start + i * per;
            if guard {
                // SAFETY: `low` is the first page of slot `i` of the region
                // just mapped, which no stack uses yet.
                if let Err(e) = unsafe { mem::install_guard(low, light) } {
                    crate::fiber::fatal(&format!(
                        "mkernel: cannot install a stack guard page: {e}"
                    ));
                }
            }
            let bottom = if guard { low + PAGE } else { low };
            let s = PooledStack {
                base: bottom + self.size,
                bottom,
                guarded: guard,
            };
            s.write_canary();
            self.free.push(s);
        }
        if guard && !light {
            GUARDED.fetch_add(CHUNK, Ordering::Relaxed);
            self.guarded_owned += CHUNK;
        }
        self.mapped += CHUNK;
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        GUARDED.fetch_sub(self.guarded_owned, Ordering::Relaxed);
        for &(start, len) in &self.regions {
            // SAFETY: a region this pool mapped, whole; the pool is dropped
            // after every coroutine that used its stacks.
            unsafe { mem::unmap_region(start, len) };
        }
    }
}

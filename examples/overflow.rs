//! A task that overflows its stack: recursion with 1 KiB frames and no
//! bound. What it looks like on each platform (see the README's "Stack
//! overflow"): hosted, the guard page below the stack faults and the run
//! aborts naming the task and its spawn site; under `solo5-spt` there are no
//! guard pages, the recursion runs through the memory below the stack until
//! it faults, and the tender reports the fault on the console (exit status
//! 139) instead of dying silently. `tests/solo5_overflow.rs` checks the
//! Solo5 side.

use std::hint::black_box;

/// One 1 KiB frame per call; `black_box` keeps the array and the recursion
/// from being optimised away.
#[allow(
    unconditional_recursion,
    reason = "the point: it recurses until the stack overflows"
)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth.to_le_bytes()[0]; 1024]);
    black_box(recurse(depth + 1)) + u64::from(frame[(depth % 1024) as usize])
}

fn main() {
    mkernel::run((), |()| {
        let deep = mkernel::spawn_named("deep", || recurse(0));
        println!("recursing");
        // Never returns: the task overflows first.
        let _ = deep.join();
    });
}

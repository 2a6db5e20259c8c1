//! Spawns tasks that never finish until the memory for their stacks runs
//! out: what a program that leaks tasks sees. Hosted, with a low address
//! space limit; under Solo5, with a small `--mem`: the run stops with one
//! message naming the stack size, the tasks in use and (Solo5) the
//! tender's `--mem` flag, instead of a bare allocation failure.
//! `tests/solo5_stack_oom.rs` checks that message under `solo5-spt`.

use std::time::Duration;

fn main() {
    mkernel::run((), |()| {
        let mut n = 0u64;
        loop {
            let t = mkernel::spawn(|| mkernel::sleep(Duration::from_secs(3600)));
            // Let it start (its stack is taken when it first runs).
            mkernel::yield_now();
            // Never joined: the run ends in the allocation failure first.
            std::mem::forget(t);
            n += 1;
            if n % 1000 == 0 {
                println!("{n} tasks");
            }
        }
    });
}

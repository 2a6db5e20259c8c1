//! Yield ping-pong, measured inside the program: two tasks alternate with
//! `yield_now` N times each (first argument, default 1,000,000), timed with
//! `clock_monotonic`. Prints the cost of one yield (a switch to the other
//! task through the scheduler). `benches/solo5.rs` runs it hosted and as a
//! Solo5 spt unikernel.
//!
//! ```text
//! cargo run --release --example solo5_yield -- -- 1000000
//! solo5-spt solo5_yield.spt 1000000
//! ```

fn ping_pong(n: u64) -> u64 {
    let t0 = mkernel::clock_monotonic();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            mkernel::spawn(move || {
                for _ in 0..n {
                    mkernel::yield_now();
                }
            })
        })
        .collect();
    for r in mkernel::join_all(tasks) {
        r.expect("a ping-pong task failed");
    }
    mkernel::clock_monotonic() - t0
}

fn main() {
    mkernel::run((), |()| {
        let n: u64 = mkernel::args()
            .first()
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        ping_pong(n / 10 + 1); // warm-up: stacks, allocator, caches
        let ns = ping_pong(n);
        println!("yields: {}", 2 * n);
        println!("ns/yield: {:.2}", ns as f64 / (2 * n) as f64);
    });
}

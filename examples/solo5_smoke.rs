//! Smoke test of std on Solo5: the same output hosted and as a unikernel
//! (`tests/solo5_spt.rs` compares them). No devices; the body uses std and
//! corosensei directly, mkernel only provides the run (which also answers
//! `MKERNEL_MANIFEST=1`, how `cargo mkernel` gets the manifest).

use std::cell::Cell;
use std::panic;

thread_local! {
    static COUNTER: Cell<u32> = const { Cell::new(0) };
    // Initialised (.tdata), so a TLS block laid out at the wrong offset
    // from the thread pointer shows here as a wrong value.
    static MAGIC: Cell<u64> = const { Cell::new(0x5eed_cafe_f00d_0001) };
}

/// Prints when dropped, to show destructors run during unwinding.
struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        println!("drop {}", self.0);
    }
}

fn main() {
    mkernel::run((), |()| smoke());
}

fn smoke() {
    println!("hello from mkernel");
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("args: {args:?}");

    COUNTER.with(|c| c.set(c.get() + 41));
    COUNTER.with(|c| c.set(c.get() + 1));
    println!("thread_local: {}", COUNTER.with(Cell::get));
    println!("thread_local initialised: {:#x}", MAGIC.with(Cell::get));

    // Keep the default hook's message off stdout comparisons: it goes to
    // stderr, and includes a path; silence it.
    panic::set_hook(Box::new(|_| {}));
    let r = panic::catch_unwind(|| {
        let _n = Noisy("in catch_unwind");
        panic!("boom");
    });
    let msg = r
        .unwrap_err()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .unwrap_or_default();
    println!("caught: {msg}");

    // A coroutine suspended with a live destructor on its stack, then
    // dropped: corosensei force-unwinds it, and the destructor runs.
    {
        let mut co = corosensei::Coroutine::new(|yielder: &corosensei::Yielder<(), u32>, ()| {
            let _n = Noisy("in coroutine");
            yielder.suspend(1);
            println!("never printed");
            2
        });
        match co.resume(()) {
            corosensei::CoroutineResult::Yield(v) => println!("coroutine yielded {v}"),
            corosensei::CoroutineResult::Return(_) => println!("coroutine returned"),
        }
        println!("dropping the suspended coroutine");
    }

    let mut m = std::collections::HashMap::new();
    m.insert("answer", 42);
    println!("hashmap: {}", m["answer"]);
    let t = std::time::Instant::now();
    std::thread::sleep(std::time::Duration::from_millis(2));
    println!(
        "slept >= 2ms: {}",
        t.elapsed() >= std::time::Duration::from_millis(2)
    );
    println!("bye");
}

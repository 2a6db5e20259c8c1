//! Task semantics with real devices, identical hosted and as a Solo5
//! unikernel (`tests/solo5_tasks.rs` compares the two outputs):
//!
//! 1. a task that panics is reported to its parent as `Error::Panicked`,
//!    and the other tasks keep running;
//! 2. cancelling a task suspended in `Net::read` unwinds it: its
//!    destructors run;
//! 3. a deferred block write runs only once no task is runnable, completes,
//!    and an atomic read returns what it wrote.
//!
//! ```text
//! ./solo5_tasks --net:service=tap0 --block:disk=disk.img
//! solo5-spt --net:service=tap0 --block:disk=disk.img solo5_tasks.spt
//! ```
//! (The TAP needs no traffic; the test creates it in a network namespace.)

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use mkernel::Error;

/// Prints when dropped: shows which destructors ran.
struct Noisy(&'static str);

impl Drop for Noisy {
    fn drop(&mut self) {
        println!("drop: {}", self.0);
    }
}

fn main() {
    let devices = (mkernel::net("service"), mkernel::block("disk"));
    mkernel::run(devices, |((net, cfg), disk)| {
        // The default hook prints to stderr hosted but to the console (the
        // same stream as stdout) on Solo5: keep it quiet, print the result.
        std::panic::set_hook(Box::new(|_| {}));

        // 1. A panic is the parent's to see; the sibling runs on.
        let sibling_steps = Rc::new(Cell::new(0));
        let steps = sibling_steps.clone();
        let sibling = mkernel::spawn(move || {
            for _ in 0..3 {
                steps.set(steps.get() + 1);
                mkernel::yield_now();
            }
            "sibling finished"
        });
        let bad = mkernel::spawn(|| -> u32 {
            let _n = Noisy("the panicking task's guard");
            panic!("boom")
        });
        match bad.join() {
            Err(e @ Error::Panicked(_)) => {
                println!("panic: parent got Err(Panicked({:?}))", e.panic_message())
            }
            other => println!("panic: unexpected {other:?}"),
        }
        println!("panic: {:?}", sibling.join());
        println!("panic: sibling steps {}", sibling_steps.get());

        // 2. Cancel a task suspended in Net::read.
        let waiting = Rc::new(Cell::new(false));
        let w = waiting.clone();
        let reader = mkernel::spawn(move || {
            let _n = Noisy("the net reader's guard");
            let mut buf = vec![0u8; cfg.mtu + 14];
            w.set(true);
            // Whatever the host may send on the TAP is read and ignored:
            // the task is always back in `read` when it gets cancelled.
            loop {
                if let Err(e) = net.read(&mut buf) {
                    println!("net: read failed: {e}");
                    return;
                }
            }
        });
        // Let the reader reach `read` and suspend there.
        mkernel::sleep(Duration::from_millis(50));
        println!("net: reader waiting in read: {}", waiting.get());
        reader.cancel();
        println!("net: cancelled reader: {:?}", reader.join());

        // 3. A deferred write waits for the scheduler to be idle.
        let page = disk.pagesize();
        let data: Vec<u8> = (0..2 * page).map(|i| (i % 251) as u8).collect();
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        let (d, o, buf) = (disk.clone(), order.clone(), data.clone());
        let writer = mkernel::spawn(move || {
            let r = d.write(page as u64, &buf);
            o.borrow_mut().push(format!("write done: {r:?}"));
        });
        let o = order.clone();
        let busy = mkernel::spawn(move || {
            for i in 0..3 {
                o.borrow_mut().push(format!("busy {i}"));
                mkernel::yield_now();
            }
        });
        let _ = mkernel::join_all(vec![writer, busy]);
        println!("block: {}", order.borrow().join(", "));
        let mut back = vec![0u8; 2 * page];
        let r = disk.atomic_read(page as u64, &mut back);
        println!("block: atomic read {r:?}, same data: {}", back == data);
    });
}

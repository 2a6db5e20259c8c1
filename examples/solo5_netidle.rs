//! A net device nobody reads while the program sleeps: the frames that
//! arrive meanwhile wait (the idle wait still sleeps: no spinning), and are
//! read after the sleep. `tests/solo5_net.rs` runs it hosted and as a
//! solo5-spt unikernel, sending frames during the sleep.
//!
//! ```text
//! ./target/debug/examples/solo5_netidle --net:service=tap0
//! solo5-spt --net:service=tap0 solo5_netidle.spt
//! ```

use std::time::Duration;

fn main() {
    mkernel::run(mkernel::net("service"), |(net, cfg)| {
        println!("sleeping");
        mkernel::sleep(Duration::from_secs(2));
        let mut buf = vec![0u8; cfg.mtu + 18];
        let mut frames = 0;
        while let Ok(Some(_)) = net.try_read(&mut buf) {
            frames += 1;
        }
        println!("frames waiting after the sleep: {}", frames > 0);
    });
}

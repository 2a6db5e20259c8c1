//! Random bytes, hosted and in a unikernel: 32 from `mkernel::fill_random`
//! (hosted: `getrandom(2)`; Solo5: the CPU's RDSEED/RDRAND), 16 from the
//! `getrandom` crate (which finds the libc shim's `getrandom` through
//! `dlsym` inside a unikernel), and the iteration order of a `HashMap`
//! (std's random keys). Two runs print different lines.
//!
//! ```text
//! cargo run --example random
//! cargo mkernel run --target spt --example random
//! ```

use std::collections::HashMap;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    mkernel::run((), |()| {
        let mut ours = [0u8; 32];
        mkernel::fill_random(&mut ours).expect("mkernel::fill_random");
        println!("mkernel::fill_random: {}", hex(&ours));

        let mut theirs = [0u8; 16];
        getrandom::fill(&mut theirs).expect("getrandom::fill");
        println!("getrandom::fill: {}", hex(&theirs));

        let map: HashMap<u32, ()> = (0..16).map(|k| (k, ())).collect();
        let order: Vec<String> = map.keys().map(u32::to_string).collect();
        println!("HashMap order: {}", order.join(","));
    });
}

//! Resolves names with `Stack::resolve`, one line each.
//!
//! ```text
//! cargo build --example resolve
//! sudo ip tuntap add dev tap0 mode tap && sudo ip link set tap0 up
//! ./target/debug/examples/resolve --net:service=tap0 -- \
//!     --ipv4=10.0.0.2/24 --nameserver=10.0.0.1 example.test
//! ```
//!
//! Application arguments (after `--`): `--ipv4=ADDR/PREFIX`,
//! `--ipv4-gateway=ADDR`, `--nameserver=ADDR` (up to 3), then the names.
//! Prints `NAME ADDR[,ADDR...]` or `NAME error: KIND: MESSAGE` per name;
//! exits with status 1 if any name failed.

use mkernel::net::stack::StackConfig;

fn main() {
    let names = match StackConfig::from_args(&mkernel::args()) {
        Ok((_, rest)) => rest,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    let ok = mkernel::run(mkernel::stack("service"), move |stack| {
        let mut ok = true;
        for name in &names {
            match stack.resolve(name) {
                Ok(addrs) => {
                    let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                    println!("{name} {}", addrs.join(","));
                }
                Err(e) => {
                    ok = false;
                    println!("{name} error: {:?}: {e}", e.kind());
                }
            }
        }
        ok
    });
    std::process::exit(if ok { 0 } else { 1 });
}

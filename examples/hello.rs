//! The smallest unikernel: no devices, one line of output.
//!
//! ```text
//! cargo run --example hello
//! cargo mkernel run --target spt --example hello
//! ```

fn main() {
    mkernel::run((), |()| println!("Hello World!"));
}

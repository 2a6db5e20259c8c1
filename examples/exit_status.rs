//! Ends with the status given as its first argument (`process::exit`), or
//! panics in `main` with `panic` (std's status 101), after printing a line:
//! the Solo5 tests check that a unikernel's own exit status comes back.
//!
//! ```text
//! cargo run --example exit_status -- -- 3         # exit status 3
//! cargo mkernel run --target virtio --example exit_status -- panic   # 101
//! ```

fn main() {
    mkernel::run((), |()| {
        let arg = mkernel::args().first().cloned().unwrap_or_default();
        println!("exit_status: {arg}");
        if arg == "panic" {
            panic!("exit_status: asked to panic");
        }
        std::process::exit(arg.parse().unwrap_or(0))
    });
}

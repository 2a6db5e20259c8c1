//! Prints the application's own arguments, one per line (what follows `--`
//! on a hosted command line; the tender's arguments after the image on
//! Solo5).
//!
//! ```text
//! cargo run --example cmdline -- -- Hello World
//! solo5-spt cmdline.spt Hello World
//! ```

fn main() {
    mkernel::run((), |()| {
        for a in mkernel::args() {
            println!("{a}");
        }
    });
}

//! Prints the MD5 of the first two pages of the block device `disk`, read
//! with a deferred read.
//!
//! ```text
//! dd if=/dev/urandom of=disk.img bs=512 count=8
//! cargo run --example block -- --block:disk=disk.img
//! ```

use md5::{Digest, Md5};

fn main() {
    mkernel::run(mkernel::block("disk"), |disk| {
        let mut pages = vec![0u8; 2 * disk.pagesize()];
        if let Err(e) = disk.read(0, &mut pages) {
            eprintln!("block: {e}");
            std::process::exit(1);
        }
        let digest = Md5::digest(&pages);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        println!("{hex}");
    });
}

//! mkernel's `test/block.ml`, ported: the block device `0` is read through
//! a page cache built from it by `mkernel::map` (before `main` runs), and
//! the program prints the MD5 of its first two pages, each after its byte
//! offset:
//!
//! - page 0 by a child task, with an atomic read into the second half of a
//!   two-page buffer (OCaml's `~dst_off:pagesize` is a sub-slice here);
//! - page 1 by the main task, through the cache, whose misses are deferred
//!   reads (done when the scheduler has nothing else to do).
//!
//! ```text
//! cargo run --example block_cached -- --block:0=tests/ported/simple.txt
//! ```
//!
//! With the OCaml test's disk image (`tests/ported/simple.txt`) it prints
//! what the OCaml cram test expects (`tests/ported/block_cached.expected`).
//!
//! The OCaml program reads through the `cachet` library; here it is
//! [`mkernel::block::Cache`], cachet's counterpart (its misses are deferred
//! reads, so they suspend only the reading task).

use md5::{Digest, Md5};
use mkernel::block::Cache;

/// OCaml's `Digest.to_hex (Digest.string s)`.
fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn main() {
    // The OCaml test's `cachet ~cachesize:512 "0"`: a device made from
    // another with `map`.
    let cached = mkernel::map(mkernel::block("0"), |blk| {
        Cache::builder(blk).capacity_pages(512).build()
    });
    mkernel::run(cached, |blk| {
        let pagesize = blk.page_size();
        let child = {
            let blk = blk.clone();
            mkernel::spawn(move || {
                let mut buf = vec![0u8; 2 * pagesize];
                // OCaml: `atomic_read blk ~src_off:0 ~dst_off:pagesize bstr`.
                if let Err(e) = blk.block().atomic_read(0, &mut buf[pagesize..]) {
                    eprintln!("block_cached: {e}");
                    std::process::exit(1);
                }
                println!("{:08x}: {}", 0, md5_hex(&buf[pagesize..]));
            })
        };
        child.join_unwrap();
        let mut page = vec![0u8; pagesize];
        if let Err(e) = blk.read_at(pagesize as u64, &mut page) {
            eprintln!("block_cached: {e}");
            std::process::exit(1);
        }
        println!("{pagesize:08x}: {}", md5_hex(&page));
    });
}

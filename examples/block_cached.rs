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
//! The OCaml program uses the `cachet` library, which this crate has no
//! counterpart of yet, so the cache is written here: [`Cache`], a small
//! direct-mapped cache of whole pages.

use md5::{Digest, Md5};
use mkernel::Block;
use std::cell::RefCell;
use std::rc::Rc;

/// A direct-mapped page cache over a block device: `slots` entries (a power
/// of two), page `n` living in slot `n % slots`. Misses are read with the
/// deferred [`Block::read`], so they suspend only the reading task.
struct Cache {
    blk: Block,
    slots: RefCell<Vec<Slot>>,
}

/// A cache slot: empty, or a page number and its bytes.
type Slot = Option<(u64, Rc<[u8]>)>;

impl Cache {
    fn new(blk: Block, slots: usize) -> Cache {
        assert!(
            slots.is_power_of_two(),
            "the cache size must be a power of two"
        );
        Cache {
            blk,
            slots: RefCell::new(vec![None; slots]),
        }
    }

    fn pagesize(&self) -> usize {
        self.blk.pagesize()
    }

    /// The device under the cache (OCaml's `Cachet.fd`).
    fn fd(&self) -> &Block {
        &self.blk
    }

    /// The page that holds byte `off`, from the cache or the device.
    fn page(&self, off: u64) -> Rc<[u8]> {
        let ps = self.pagesize() as u64;
        let n = off / ps;
        let slot = (n as usize) & (self.slots.borrow().len() - 1);
        if let Some((m, page)) = &self.slots.borrow()[slot]
            && *m == n
        {
            return page.clone();
        }
        let mut buf = vec![0u8; ps as usize];
        // Deferred: the task waits here, the borrow of `slots` is not held.
        if let Err(e) = self.blk.read(n * ps, &mut buf) {
            eprintln!("block_cached: {e}");
            std::process::exit(1);
        }
        let page: Rc<[u8]> = buf.into();
        self.slots.borrow_mut()[slot] = Some((n, page.clone()));
        page
    }

    /// `len` bytes from byte `off` (OCaml's `Cachet.get_string`).
    fn get(&self, off: u64, len: usize) -> Vec<u8> {
        let ps = self.pagesize() as u64;
        let mut out = Vec::with_capacity(len);
        let mut pos = off;
        while out.len() < len {
            let page = self.page(pos);
            let start = (pos % ps) as usize;
            let take = (len - out.len()).min(page.len() - start);
            out.extend_from_slice(&page[start..start + take]);
            pos += take as u64;
        }
        out
    }
}

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
    let cached = mkernel::map(mkernel::block("0"), |blk| Rc::new(Cache::new(blk, 512)));
    mkernel::run(cached, |blk| {
        let pagesize = blk.pagesize();
        let child = {
            let blk = blk.clone();
            mkernel::spawn(move || {
                let mut buf = vec![0u8; 2 * pagesize];
                // OCaml: `atomic_read blk ~src_off:0 ~dst_off:pagesize bstr`.
                if let Err(e) = blk.fd().atomic_read(0, &mut buf[pagesize..]) {
                    eprintln!("block_cached: {e}");
                    std::process::exit(1);
                }
                println!("{:08x}: {}", 0, md5_hex(&buf[pagesize..]));
            })
        };
        child.join_unwrap();
        let page = blk.get(pagesize as u64, pagesize);
        println!("{pagesize:08x}: {}", md5_hex(&page));
    });
}

//! `block::Cache` reads against uncached deferred `Block::read` and raw
//! `pread` (`FileExt::read_at`) of the same file, 4 KiB at random page
//! offsets, on a hot working set (half the cache) and a cold one (64 times
//! the cache).
//!
//! `cargo bench --bench cache` prints a table of medians (of 7 rounds) in
//! ns per 4 KiB read, with ratios. The file is fresh, so the OS page cache
//! holds it: `pread` is a system call and a copy, no disk. The machines are
//! shared and noisy: compare the ratios.

use mkernel::block::Cache;
use std::os::unix::fs::FileExt;
use std::time::Instant;

const PAGE: usize = 4096;
const FILE_PAGES: u64 = 16384; // 64 MiB
const CACHE_PAGES: usize = 256; // 1 MiB
const HOT_PAGES: u64 = 128; // 512 KiB: fits
const READS: usize = 50_000;
const ROUNDS: usize = 9;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Random page numbers below `n` (xorshift, same sequence every round).
fn pages(n: u64) -> Vec<u64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..READS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

/// ns per read of `f` over `offs`.
fn time(offs: &[u64], mut f: impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for &p in offs {
        f(p * PAGE as u64);
    }
    t.elapsed().as_nanos() as f64 / offs.len() as f64
}

struct Row {
    name: String,
    cached: f64,
    deferred: f64,
    pread: f64,
    hit_rate: f64,
}

fn main() {
    let path = std::env::temp_dir().join(format!("mk-bench-cache-{}", std::process::id()));
    let bytes: Vec<u8> = (0..FILE_PAGES as usize * PAGE).map(|i| i as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let rows = mkernel::Builder::new()
        .block_file("disk", &path)
        .block_sector_size("disk", PAGE)
        .run(mkernel::block("disk"), move |disk| {
            let mut rows = Vec::new();
            for (name, set) in [
                (format!("hot ({} KiB)", HOT_PAGES * 4), HOT_PAGES),
                (format!("cold ({} MiB)", FILE_PAGES * 4 / 1024), FILE_PAGES),
            ] {
                let offs = pages(set);
                let mut buf = vec![0u8; PAGE];
                let (mut c, mut d, mut r) = (vec![], vec![], vec![]);
                let cache = Cache::builder(disk.clone())
                    .capacity_pages(CACHE_PAGES)
                    .build();
                // Warm-up: the hot set in the cache, the code paths run.
                time(&offs, |o| cache.read_at(o, &mut buf).unwrap());
                let before = cache.stats();
                for _ in 0..ROUNDS {
                    c.push(time(&offs, |o| cache.read_at(o, &mut buf).unwrap()));
                    d.push(time(&offs, |o| disk.read(o, &mut buf).unwrap()));
                    r.push(time(&offs, |o| file.read_exact_at(&mut buf, o).unwrap()));
                }
                let s = cache.stats();
                let hits = (s.hits - before.hits) as f64;
                let misses = (s.misses - before.misses) as f64;
                rows.push(Row {
                    name,
                    cached: median(c),
                    deferred: median(d),
                    pread: median(r),
                    hit_rate: hits / (hits + misses),
                });
            }
            rows
        });
    std::fs::remove_file(&path).unwrap();
    println!(
        "4 KiB reads at random pages, ns per read (median of {ROUNDS} rounds of {READS}); \
         cache of {CACHE_PAGES} pages ({} MiB), deferred loads",
        (CACHE_PAGES * PAGE) >> 20
    );
    println!(
        "{:<16} {:>9} {:>8} {:>12} {:>8} {:>13} {:>13}",
        "working set", "Cache", "hits", "Block::read", "pread", "read / Cache", "pread / Cache"
    );
    for r in rows {
        println!(
            "{:<16} {:>9.0} {:>7.1}% {:>12.0} {:>8.0} {:>12.2}x {:>12.2}x",
            r.name,
            r.cached,
            100.0 * r.hit_rate,
            r.deferred,
            r.pread,
            r.deferred / r.cached,
            r.pread / r.cached
        );
    }
}

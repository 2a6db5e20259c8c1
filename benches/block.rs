//! Deferred block I/O throughput against raw `pread`/`pwrite` of the same
//! file in the same run, and the CPU used by a sleeping unikernel against a
//! sleeping thread.
//!
//! `cargo bench --bench block` prints a table of medians (of 7 rounds) and
//! the ratios. The machines are shared and noisy: compare the ratios.

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

const FILE_SIZE: usize = 64 << 20;
const REQUEST: usize = 1 << 20;
const PAGE: usize = 4096;
const ROUNDS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Raw positional I/O, one page per call (what Solo5 does per hypercall),
/// through a request-sized buffer as the deferred path uses.
fn raw(path: &std::path::Path, write: bool) -> f64 {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut buf = vec![0x5au8; REQUEST];
    let t = Instant::now();
    for req in (0..FILE_SIZE).step_by(REQUEST) {
        for page in (0..REQUEST).step_by(PAGE) {
            let off = (req + page) as u64;
            let b = &mut buf[page..page + PAGE];
            if write {
                f.write_all_at(b, off).unwrap();
            } else {
                f.read_exact_at(b, off).unwrap();
            }
        }
    }
    mib_per_s(FILE_SIZE, t.elapsed())
}

/// mkernel's deferred I/O: 1 MiB requests, performed a page at a time by
/// the idle scheduler.
fn deferred(path: &std::path::Path, write: bool) -> f64 {
    mkernel::Builder::new()
        .block_file("disk", path)
        .block_sector_size("disk", PAGE)
        .run(mkernel::block("disk"), move |disk| {
            let mut buf = vec![0xa5u8; REQUEST];
            let t = Instant::now();
            for off in (0..FILE_SIZE).step_by(REQUEST) {
                if write {
                    disk.write(off as u64, &buf).unwrap();
                } else {
                    disk.read(off as u64, &mut buf).unwrap();
                }
            }
            mib_per_s(FILE_SIZE, t.elapsed())
        })
}

fn cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc_rusage>::zeroed();
    // SAFETY: `ru` is a live, writable rusage that getrusage fills in.
    unsafe { getrusage(0, ru.as_mut_ptr()) };
    // SAFETY: the struct holds only integers and was zeroed when created,
    // so it is initialised whether or not getrusage wrote it.
    let ru = unsafe { ru.assume_init() };
    let us = |t: [i64; 2]| Duration::from_secs(t[0] as u64) + Duration::from_micros(t[1] as u64);
    us(ru.utime) + us(ru.stime)
}

#[repr(C)]
struct libc_rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    rest: [i64; 14],
}

unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut libc_rusage) -> i32;
}

fn idle_cpu(unikernel: bool) -> f64 {
    let sleep = Duration::from_millis(500);
    let c0 = cpu_time();
    let t0 = Instant::now();
    if unikernel {
        mkernel::run((), move |()| mkernel::sleep(sleep));
    } else {
        std::thread::sleep(sleep);
    }
    let cpu = cpu_time() - c0;
    100.0 * cpu.as_secs_f64() / t0.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let path = std::env::temp_dir().join(format!("mkernel-bench-block-{}.img", std::process::id()));
    std::fs::write(&path, vec![0u8; FILE_SIZE]).unwrap();
    println!(
        "block I/O, {} MiB file, {} B pages, medians of {ROUNDS} rounds",
        FILE_SIZE >> 20,
        PAGE
    );
    println!(
        "{:<10} {:>14} {:>18} {:>8}",
        "op", "raw (MiB/s)", "deferred (MiB/s)", "ratio"
    );
    for (name, write) in [("write", true), ("read", false)] {
        let mut r = Vec::new();
        let mut d = Vec::new();
        for _ in 0..ROUNDS {
            r.push(raw(&path, write));
            d.push(deferred(&path, write));
        }
        let (r, d) = (median(r), median(d));
        println!("{name:<10} {r:>14.0} {d:>18.0} {:>7.1}%", 100.0 * d / r);
    }
    let _ = std::fs::remove_file(&path);
    let mut u = Vec::new();
    let mut t = Vec::new();
    for _ in 0..3 {
        u.push(idle_cpu(true));
        t.push(idle_cpu(false));
    }
    println!(
        "idle CPU while sleeping 500 ms: unikernel {:.3}%, std::thread::sleep {:.3}%",
        median(u),
        median(t)
    );
}

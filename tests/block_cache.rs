//! `mkernel::block::Cache` over a temporary file: hit and miss counts,
//! typed reads across page boundaries, single-flight loads (and a cancelled
//! loader), CLOCK eviction, invalidation, buffered writes and coalesced
//! commits checked against the file's bytes.

use mkernel::block::{BlockErrorKind, Cache};
use std::path::PathBuf;

const PAGE: usize = 512;

struct TempFile(PathBuf);
impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!("mk-cache-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }
    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Byte `i` of the patterned disks: differs between neighbours and pages.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ (i / PAGE) as u8)
        .collect()
}

fn with_disk<R: 'static>(f: &TempFile, main: impl FnOnce(mkernel::Block) -> R + 'static) -> R {
    mkernel::Builder::new()
        .block_file("disk", &f.0)
        .run(mkernel::block("disk"), main)
}

#[test]
fn hits_and_misses_are_counted() {
    let f = TempFile::new("hits", &pattern(8 * PAGE));
    let s = with_disk(&f, |disk| {
        let cache = Cache::new(disk);
        cache.get_u8(0).unwrap(); // miss (page 0)
        cache.get_u8(1).unwrap(); // hit
        cache.get_u8(PAGE as u64).unwrap(); // miss (page 1)
        let mut buf = vec![0u8; 2 * PAGE];
        cache.read_at(0, &mut buf).unwrap(); // 2 hits
        cache.get_u32_le(PAGE as u64 - 2).unwrap(); // straddles: 2 hits
        cache.stats()
    });
    assert_eq!(
        (s.hits, s.misses, s.reads, s.joined, s.cached, s.evictions),
        (5, 2, 2, 0, 2, 0)
    );
}

#[test]
fn typed_reads_across_page_boundaries() {
    let data = pattern(4 * PAGE);
    let f = TempFile::new("typed", &data);
    let d = data.clone();
    with_disk(&f, move |disk| {
        // A cache of one page: a straddling read cannot keep both pages.
        for cap in [1, 8] {
            let cache = Cache::builder(disk.clone()).capacity_pages(cap).build();
            let at = |off: usize, n: usize| -> [u8; 8] {
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(&d[off..off + n]);
                b
            };
            for off in (PAGE - 8..PAGE + 1).chain(3 * PAGE - 7..3 * PAGE) {
                let o = off as u64;
                assert_eq!(cache.get_u8(o).unwrap(), d[off]);
                let b = at(off, 2);
                assert_eq!(
                    cache.get_u16_le(o).unwrap(),
                    u16::from_le_bytes([b[0], b[1]])
                );
                assert_eq!(
                    cache.get_u16_be(o).unwrap(),
                    u16::from_be_bytes([b[0], b[1]])
                );
                let b4: [u8; 4] = at(off, 4)[..4].try_into().unwrap();
                assert_eq!(cache.get_u32_le(o).unwrap(), u32::from_le_bytes(b4));
                assert_eq!(cache.get_u32_be(o).unwrap(), u32::from_be_bytes(b4));
                let b8 = at(off, 8);
                assert_eq!(
                    cache.get_u64_le(o).unwrap(),
                    u64::from_le_bytes(b8),
                    "at {off}"
                );
                assert_eq!(
                    cache.get_u64_be(o).unwrap(),
                    u64::from_be_bytes(b8),
                    "at {off}"
                );
            }
            // A range over three pages, its bytes, its chunks.
            let mut buf = vec![0u8; PAGE + 20];
            cache.read_at(PAGE as u64 - 10, &mut buf).unwrap();
            assert_eq!(buf, d[PAGE - 10..2 * PAGE + 10]);
            let bytes: Vec<u8> = cache
                .bytes(PAGE as u64 - 10, (PAGE + 20) as u64)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(bytes, buf);
            let chunks: Vec<(u64, Vec<u8>)> = cache
                .chunks(PAGE as u64 - 10, (PAGE + 20) as u64)
                .unwrap()
                .map(|c| c.map(|c| (c.offset(), c.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            let offs: Vec<u64> = chunks.iter().map(|c| c.0).collect();
            assert_eq!(offs, [PAGE as u64 - 10, PAGE as u64, 2 * PAGE as u64]);
            assert_eq!(chunks.concat_bytes(), buf);
            // The last bytes of the device, and one past them.
            let end = (4 * PAGE) as u64;
            assert_eq!(
                cache.get_u64_be(end - 8).unwrap(),
                u64::from_be_bytes(at(4 * PAGE - 8, 8))
            );
            let e = cache.get_u64_be(end - 7).unwrap_err();
            assert_eq!(*e.kind(), BlockErrorKind::OutOfRange);
            assert!(cache.bytes(end - 1, 2).is_err());
        }
    });
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}
impl ConcatBytes for Vec<(u64, Vec<u8>)> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|c| c.1.iter().copied()).collect()
    }
}

#[test]
fn two_tasks_missing_the_same_page_cause_one_read() {
    let data = pattern(4 * PAGE);
    let f = TempFile::new("single", &data);
    let want = u32::from_le_bytes(data[PAGE + 4..PAGE + 8].try_into().unwrap());
    let (a, b, s) = with_disk(&f, |disk| {
        let cache = Cache::new(disk);
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let c = cache.clone();
                mkernel::spawn(move || c.get_u32_le(PAGE as u64 + 4).unwrap())
            })
            .collect();
        let mut r = mkernel::join_all(tasks).into_iter().map(Result::unwrap);
        (r.next().unwrap(), r.next().unwrap(), cache.stats())
    });
    assert_eq!((a, b), (want, want));
    assert_eq!((s.reads, s.misses, s.joined, s.hits), (1, 2, 1, 0));
}

#[test]
fn a_cancelled_loader_does_not_leave_its_waiter_hanging() {
    let data = pattern(4 * PAGE);
    let f = TempFile::new("cancel", &data);
    let want = u32::from_le_bytes(data[PAGE + 4..PAGE + 8].try_into().unwrap());
    let (got, joined_before, s) = with_disk(&f, |disk| {
        let cache = Cache::new(disk);
        let c = cache.clone();
        let loader = mkernel::spawn(move || c.get_u32_le(PAGE as u64).unwrap());
        let c = cache.clone();
        let waiter = mkernel::spawn(move || c.get_u32_le(PAGE as u64 + 4).unwrap());
        // Both run: the loader queues its deferred read (which cannot
        // happen while this task is runnable), the waiter waits for it.
        mkernel::yield_now();
        mkernel::yield_now();
        let joined_before = cache.stats().joined;
        loader.cancel();
        (waiter.join().unwrap(), joined_before, cache.stats())
    });
    assert_eq!(joined_before, 1, "the waiter waited for the loader's read");
    assert_eq!(got, want);
    // The cancelled read, then the waiter's own.
    assert_eq!((s.reads, s.misses, s.cached), (2, 2, 1));
}

#[test]
fn a_range_past_the_end_is_refused_before_any_read() {
    let f = TempFile::new("oor", &pattern(PAGE));
    let (e, s) = with_disk(&f, |disk| {
        let cache = Cache::new(disk);
        (
            cache.read_at(500, &mut [0u8; 13]).unwrap_err(),
            cache.stats(),
        )
    });
    assert_eq!(*e.kind(), BlockErrorKind::OutOfRange);
    assert!(
        e.to_string()
            .contains("go past the end of the device (512 bytes)"),
        "{e}"
    );
    assert_eq!(s.reads, 0);
}

#[test]
fn eviction_at_capacity_spares_recently_used_pages() {
    let data = pattern(16 * PAGE);
    let f = TempFile::new("evict", &data);
    with_disk(&f, move |disk| {
        let cache = Cache::builder(disk).capacity_pages(4).build();
        let page = |n: u64| cache.get_u8(n * PAGE as u64).unwrap();
        for n in 0..4 {
            page(n);
        }
        assert_eq!((cache.stats().cached, cache.stats().evictions), (4, 0));
        page(4); // evicts one page
        assert_eq!((cache.stats().cached, cache.stats().evictions), (4, 1));
        page(1); // used again: CLOCK spares it next time
        let hits = cache.stats().hits;
        page(5);
        page(1);
        assert_eq!(cache.stats().hits, hits + 1, "page 1 stayed");
        assert_eq!(cache.stats().evictions, 2);
        // Reading all 16 pages through a 4-page cache: 4 cached at the end.
        for n in 0..16 {
            assert_eq!(page(n), data[n as usize * PAGE]);
        }
        assert_eq!(cache.stats().cached, 4);
    });
}

#[test]
fn dirty_pages_are_never_evicted_the_cache_grows_until_commit() {
    let f = TempFile::new("grow", &vec![0u8; 16 * PAGE]);
    let (before, after, c) = with_disk(&f, |disk| {
        let cache = Cache::builder(disk).capacity_pages(2).build();
        for n in 0..3u64 {
            cache.set_u8(n * 2 * PAGE as u64, 0x11 + n as u8).unwrap(); // pages 0, 2, 4
        }
        for n in 6..12u64 {
            cache.get_u8(n * PAGE as u64).unwrap(); // clean pages come and go
        }
        let before = cache.stats();
        let c = cache.commit().unwrap();
        (before, cache.stats(), c)
    });
    assert_eq!(before.dirty, 3);
    // Over a capacity of 2: the 3 dirty pages, and the last page read
    // (each read evicted the clean page before it).
    assert_eq!((before.cached, before.evictions), (4, 5));
    assert_eq!((after.dirty, after.cached), (0, 2), "back to the capacity");
    assert_eq!((c.pages, c.writes), (3, 3));
    let disk = f.bytes();
    assert_eq!(
        (disk[0], disk[2 * PAGE], disk[4 * PAGE]),
        (0x11, 0x12, 0x13)
    );
}

#[test]
fn invalidation_reads_the_page_again() {
    let f = TempFile::new("inval", &vec![0u8; 4 * PAGE]);
    with_disk(&f, |disk| {
        let cache = Cache::new(disk.clone());
        assert_eq!(cache.get_u32_be(PAGE as u64).unwrap(), 0);
        assert_eq!(cache.get_u32_be(2 * PAGE as u64).unwrap(), 0);
        disk.atomic_write(PAGE as u64, &[1u8; 2 * PAGE]).unwrap();
        assert_eq!(cache.get_u32_be(PAGE as u64).unwrap(), 0, "stale");
        cache.invalidate(1);
        assert_eq!(cache.get_u32_be(PAGE as u64).unwrap(), 0x0101_0101);
        assert_eq!(cache.get_u32_be(2 * PAGE as u64).unwrap(), 0, "page 2 kept");
        assert_eq!(cache.stats().reads, 3);
        cache.invalidate_all();
        assert_eq!(cache.stats().cached, 0);
        assert_eq!(cache.get_u32_be(2 * PAGE as u64).unwrap(), 0x0101_0101);
        assert_eq!(cache.stats().reads, 4);
        // A dirty page invalidated: its write is discarded.
        cache.set_u8(0, 7).unwrap();
        cache.invalidate(0);
        assert_eq!(cache.stats().dirty, 0);
        assert_eq!(cache.get_u8(0).unwrap(), 0);
        assert_eq!(cache.commit().unwrap().writes, 0);
    });
}

#[test]
fn commit_writes_exactly_the_bytes_in_coalesced_runs() {
    let data = pattern(16 * PAGE);
    let f = TempFile::new("commit", &data);
    let mut want = data.clone();
    let path = f.0.clone();
    let (c, untouched, s) = with_disk(&f, move |disk| {
        let cache = Cache::new(disk);
        // Pages 2, 3, 4 (a run: 2 and 4 in part) and page 9 alone.
        cache
            .write_at(2 * PAGE as u64 + 100, &[0xaa; 2 * PAGE + 10])
            .unwrap();
        cache.set_u32_le(9 * PAGE as u64 + 7, 0xcafe_f00d).unwrap();
        // Nothing reaches the disk before the commit.
        let untouched = std::fs::read(&path).unwrap() == data;
        let c = cache.commit().unwrap();
        (c, untouched, cache.stats())
    });
    want[2 * PAGE + 100..4 * PAGE + 110].fill(0xaa);
    want[9 * PAGE + 7..9 * PAGE + 11].copy_from_slice(&0xcafe_f00d_u32.to_le_bytes());
    assert!(untouched, "writes are buffered until commit");
    assert_eq!((c.pages, c.writes, c.bytes), (4, 2, 4 * PAGE as u64));
    assert_eq!((s.writes, s.dirty), (2, 0));
    assert!(
        f.bytes() == want,
        "the file holds exactly the written bytes"
    );
}

#[test]
fn random_writes_reads_and_commits_match_a_model() {
    let data = pattern(64 * PAGE);
    let f = TempFile::new("model", &data);
    let mut model = data.clone();
    let path = f.0.clone();
    let model_end = with_disk(&f, move |disk| {
        for atomic in [false, true] {
            let cache = Cache::builder(disk.clone())
                .capacity_pages(5)
                .page_size(2 * PAGE)
                .atomic(atomic)
                .build();
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut rnd = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            for i in 0..600 {
                let off = rnd(model.len() as u64 - 16);
                match rnd(4) {
                    0 => {
                        let len = 1 + rnd(3 * PAGE as u64).min(model.len() as u64 - off - 1);
                        let b = (i % 251) as u8;
                        let buf = vec![b; len as usize];
                        cache.write_at(off, &buf).unwrap();
                        model[off as usize..(off + len) as usize].copy_from_slice(&buf);
                    }
                    1 => {
                        let v = rnd(u64::MAX);
                        cache.set_u64_le(off, v).unwrap();
                        model[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
                    }
                    2 => {
                        let o = off as usize;
                        let want = u64::from_be_bytes(model[o..o + 8].try_into().unwrap());
                        assert_eq!(cache.get_u64_be(off).unwrap(), want, "at {off}");
                    }
                    _ => {
                        if rnd(8) == 0 {
                            cache.commit().unwrap();
                            assert!(std::fs::read(&path).unwrap() == model);
                        }
                    }
                }
            }
            cache.commit().unwrap();
            assert_eq!(cache.stats().dirty, 0);
            assert!(cache.stats().cached <= 5);
        }
        model
    });
    assert!(f.bytes() == model_end);
}

#[test]
fn a_write_during_a_commit_stays_dirty() {
    let f = TempFile::new("race", &vec![0u8; 4 * PAGE]);
    let path = f.0.clone();
    let (s, disk_byte) = with_disk(&f, move |disk| {
        let cache = Cache::new(disk);
        cache.set_u8(0, 1).unwrap();
        let c = cache.clone();
        // The commit's deferred write waits; meanwhile the page changes.
        let committer = mkernel::spawn(move || c.commit().unwrap());
        mkernel::yield_now();
        cache.set_u8(1, 2).unwrap();
        committer.join().unwrap();
        let s = cache.stats();
        let disk_byte = std::fs::read(&path).unwrap()[1];
        cache.commit().unwrap();
        (s, disk_byte)
    });
    assert_eq!(disk_byte, 0, "the first commit wrote the page as it was");
    assert_eq!(s.dirty, 1, "the later write is still to commit");
    assert_eq!(&f.bytes()[..2], &[1, 2]);
}

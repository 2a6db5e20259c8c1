//! The device layer in-process: deferred block I/O priorities, withdrawal on
//! cancellation, availability of the network under block load, bad input.

use mkernel::block::BlockErrorKind;
use mkernel::net::link;
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

struct TempFile(PathBuf);
impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!("mk-dev-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn deferred_writes_wait_until_no_task_can_run() {
    let f = TempFile::new("order", &[0u8; 4096]);
    let log =
        mkernel::Builder::new()
            .block_file("disk", &f.0)
            .run(mkernel::block("disk"), |disk| {
                let log = Rc::new(RefCell::new(Vec::new()));
                let l = log.clone();
                let writer = mkernel::spawn(move || {
                    disk.write(512, &[0x5au8; 1024]).unwrap();
                    l.borrow_mut().push("write done".to_string());
                });
                let l = log.clone();
                let busy = mkernel::spawn(move || {
                    for i in 0..100 {
                        l.borrow_mut().push(format!("busy {i}"));
                        mkernel::yield_now();
                    }
                });
                busy.join().unwrap();
                writer.join().unwrap();
                log.take()
            });
    // Every busy step, all runnable, came before the deferred write.
    assert_eq!(log.len(), 101);
    assert_eq!(log.last().unwrap(), "write done");
    let data = std::fs::read(&f.0).unwrap();
    assert!(data[512..1536].iter().all(|&b| b == 0x5a));
    assert!(data[..512].iter().all(|&b| b == 0) && data[1536..].iter().all(|&b| b == 0));
}

#[test]
fn atomic_io_happens_at_once() {
    let f = TempFile::new("atomic", &[0u8; 2048]);
    mkernel::Builder::new()
        .block_file("disk", &f.0)
        .run(mkernel::block("disk"), |disk| {
            let ran = Rc::new(Cell::new(false));
            let r = ran.clone();
            let other = mkernel::spawn(move || r.set(true));
            disk.atomic_write(0, &[9u8; 1024]).unwrap();
            let mut back = [0u8; 1024];
            disk.atomic_read(0, &mut back).unwrap();
            assert!(back.iter().all(|&b| b == 9));
            // No other task ran during the atomic calls.
            assert!(!ran.get());
            other.join().unwrap();
        });
}

#[test]
fn a_cancelled_deferred_read_never_writes_into_its_buffer() {
    let f = TempFile::new("cancel", &[0x11u8; 4096]);
    let buffer = Rc::new(RefCell::new(vec![0xaau8; 2048]));
    let b = buffer.clone();
    mkernel::Builder::new()
        .block_file("disk", &f.0)
        .run(mkernel::block("disk"), move |disk| {
            let b2 = b.clone();
            let reader = mkernel::spawn(move || {
                let mut guard = b2.borrow_mut();
                let _ = disk.read(0, &mut guard[..]);
                unreachable!("the read cannot complete: the parent keeps running, then cancels");
            });
            mkernel::yield_now(); // the reader queues its read and suspends
            reader.cancel();
            // Now let the scheduler be idle for a while: the withdrawn read
            // must not be performed.
            mkernel::sleep(std::time::Duration::from_millis(20));
            assert!(matches!(reader.join(), Err(mkernel::Error::Cancelled)));
        });
    assert!(buffer.borrow().iter().all(|&x| x == 0xaa));
}

#[test]
fn the_network_stays_available_under_deferred_block_load() {
    const FRAMES: u32 = 500;
    let f = TempFile::new("avail", &vec![0u8; 512 * 64]);
    let (a, b) = link::pair(link::Faults::default());
    let (answered, writes_during, max_latency) = mkernel::Builder::new()
        .net_link("client", a)
        .net_link("service", b)
        .block_file("disk", &f.0)
        .run(
            (
                mkernel::net("client"),
                mkernel::net("service"),
                mkernel::block("disk"),
            ),
            |((client, _), (server, _), disk)| {
                // The writer keeps the deferred block queue busy until the
                // exchange is over, however fast the disk is.
                let done = Rc::new(Cell::new(0u64));
                let stop = Rc::new(Cell::new(false));
                let (d, st) = (done.clone(), stop.clone());
                let writer = mkernel::spawn(move || {
                    let page = [0x77u8; 512];
                    let mut i = 0u64;
                    while !st.get() {
                        disk.write((i % 64) * 512, &page).unwrap();
                        i += 1;
                        d.set(i);
                    }
                });
                let echo = mkernel::spawn(move || {
                    let mut buf = [0u8; 1514];
                    loop {
                        let n = server.read(&mut buf).unwrap();
                        server.write(&buf[..n]).unwrap();
                    }
                });
                let mut answered = 0;
                let mut max_latency = 0;
                let before = done.get();
                for i in 0..FRAMES {
                    let mut frame = [0u8; 60];
                    frame[14..18].copy_from_slice(&i.to_be_bytes());
                    let t0 = mkernel::clock_monotonic();
                    client.write(&frame).unwrap();
                    let mut buf = [0u8; 1514];
                    let n = client.read(&mut buf).unwrap();
                    max_latency = max_latency.max(mkernel::clock_monotonic() - t0);
                    if n == 60 && buf[14..18] == i.to_be_bytes() {
                        answered += 1;
                    }
                    // The client also idles between requests, giving the
                    // block queue its chances.
                    mkernel::sleep(std::time::Duration::from_micros(50));
                }
                let during = done.get() - before;
                stop.set(true);
                echo.cancel();
                writer.join().unwrap();
                (answered, during, max_latency)
            },
        );
    eprintln!(
        "answered {answered}/{FRAMES} frames, max latency {} us, {writes_during} block writes done meanwhile",
        max_latency / 1000
    );
    // Never starved: every frame was answered while block writes were
    // queued all along, and the writes went on meanwhile.
    assert_eq!(answered, FRAMES);
    assert!(
        writes_during > 0,
        "no block write completed during the exchange"
    );
}

#[test]
fn bad_block_offsets_and_lengths_are_errors_that_say_what_is_right() {
    let f = TempFile::new("bad", &[0u8; 4096]);
    mkernel::Builder::new()
        .block_file("disk", &f.0)
        .run(mkernel::block("disk"), |disk| {
            assert_eq!(disk.pagesize(), 512);
            assert_eq!(disk.length(), 4096);
            let mut buf = vec![0u8; 512];
            let e = disk.read(100, &mut buf).unwrap_err();
            assert_eq!(e.kind(), &BlockErrorKind::Unaligned);
            assert!(
                e.to_string()
                    .contains("multiples of the page size (512 bytes)"),
                "{e}"
            );
            let e = disk.atomic_read(0, &mut buf[..100]).unwrap_err();
            assert_eq!(e.kind(), &BlockErrorKind::Unaligned);
            let e = disk.write(0, &[]).unwrap_err();
            assert!(e.to_string().contains("0 bytes"), "{e}");
            let e = disk.read(4096, &mut buf).unwrap_err();
            assert_eq!(e.kind(), &BlockErrorKind::OutOfRange);
            assert!(
                e.to_string()
                    .contains("past the end of the device (4096 bytes)"),
                "{e}"
            );
            let e = disk.atomic_write(u64::MAX - 511, &buf).unwrap_err();
            assert_eq!(e.kind(), &BlockErrorKind::OutOfRange);
        });
}

/// Makes a file that even root cannot open for writing: immutable
/// (`chattr +i`), undone on drop.
struct Immutable(PathBuf);
impl Immutable {
    fn new(tag: &str, bytes: &[u8]) -> Option<Immutable> {
        let p = std::env::temp_dir().join(format!("mk-dev-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        perm.set_readonly(true);
        std::fs::set_permissions(&p, perm).unwrap();
        let f = Immutable(p);
        // As root, the mode bits do not stop writing: make it immutable too.
        let _ = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&f.0)
            .output();
        let writable = std::fs::OpenOptions::new().write(true).open(&f.0).is_ok();
        if writable { None } else { Some(f) }
    }
}
impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .output();
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_read_only_file_gives_a_read_only_device() {
    let Some(f) = Immutable::new("ro", &[3u8; 1024]) else {
        // Straight to stderr: the harness would hide an `eprintln!`.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: a_read_only_file_gives_a_read_only_device: cannot make a file \
              unwritable here (root without chattr +i)\n",
        );
        return;
    };
    let (ro, deferred, atomic, read) =
        mkernel::Builder::new()
            .block_file("disk", &f.0)
            .run(mkernel::block("disk"), |disk| {
                let mut buf = [0u8; 512];
                let read = disk.read(0, &mut buf).map(|()| buf[0]);
                (
                    disk.read_only(),
                    disk.write(0, &[0u8; 512]).unwrap_err(),
                    disk.atomic_write(0, &[0u8; 512]).unwrap_err(),
                    read,
                )
            });
    assert!(ro);
    for e in [deferred, atomic] {
        assert_eq!(e.kind(), &BlockErrorKind::ReadOnly);
        assert!(
            e.to_string().contains("block device \"disk\" is read-only"),
            "{e}"
        );
    }
    // Reading still works.
    assert_eq!(read, Ok(3));
}

#[test]
fn a_net_frame_larger_than_the_mtu_is_refused_not_dropped() {
    let (a, b) = link::pair(link::Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run((mkernel::net("a"), mkernel::net("b")), |((a, cfg), _b)| {
            let e = a.write(&vec![0u8; cfg.mtu + 15]).unwrap_err();
            assert!(
                e.to_string().contains("larger than the device allows"),
                "{e}"
            );
            let e = a.write(&[0u8; 10]).unwrap_err();
            assert!(
                e.to_string().contains("shorter than an Ethernet header"),
                "{e}"
            );
        });
}

#[test]
fn several_tasks_may_wait_on_one_device() {
    let (a, b) = link::pair(link::Faults::default());
    let got = mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run(
            (mkernel::net("a"), mkernel::net("b")),
            |((a, _), (b, _))| {
                let readers: Vec<_> = (0..3)
                    .map(|_| {
                        let b = b.clone();
                        mkernel::spawn(move || {
                            let mut buf = [0u8; 1514];
                            let n = b.read(&mut buf).unwrap();
                            assert_eq!(n, 60);
                            buf[14] as u32
                        })
                    })
                    .collect();
                mkernel::yield_now();
                for i in 0..3u8 {
                    let mut f = [0u8; 60];
                    f[14] = i + 1;
                    a.write(&f).unwrap();
                }
                let mut v: Vec<u32> = mkernel::join_all(readers)
                    .into_iter()
                    .map(Result::unwrap)
                    .collect();
                v.sort();
                v
            },
        );
    assert_eq!(got, [1, 2, 3]);
}

#[test]
fn devices_and_sleep_need_the_platform_event_source() {
    let clock = mkernel::testing::VirtualClock::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mkernel::Builder::new()
            .events(clock)
            .run((), |()| mkernel::sleep(std::time::Duration::from_millis(1)))
    }));
    let p = r.unwrap_err();
    let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("needs the platform's event source"), "{msg}");
}

#[test]
fn programmatic_mapping_errors_name_the_device() {
    let r = mkernel::Builder::new()
        .block_file("other", "/tmp/x")
        .try_run(mkernel::block("disk"), |_| ());
    let e = r.unwrap_err().to_string();
    assert!(e.contains("\"other\"") && e.contains("declares"), "{e}");
    let (a, _b) = link::pair(link::Faults::default());
    let r = mkernel::Builder::new()
        .net_link("service", a)
        .try_run((mkernel::net("service"), mkernel::block("disk")), |_| ());
    let e = r.unwrap_err().to_string();
    assert!(e.contains("block device \"disk\" is not mapped"), "{e}");
    let r = mkernel::Builder::new()
        .block_file("disk", "/tmp/x")
        .try_run((mkernel::block("disk"), mkernel::block("disk")), |_| ());
    let e = r.unwrap_err().to_string();
    assert!(e.contains("declared twice"), "{e}");
}

#[test]
fn a_deferred_read_that_fails_part_way_says_how_far_it_got() {
    // Eight 512-byte pages; the file is cut to three while the device is
    // open, so the read of all eight fails at the fourth page.
    let path = std::env::temp_dir().join(format!("mk-torn-{}", std::process::id()));
    std::fs::write(&path, vec![5u8; 8 * 512]).unwrap();
    let p = path.clone();
    let (err, buf) = mkernel::Builder::new().block_file("disk", &path).run(
        mkernel::block("disk"),
        move |disk| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(3 * 512)
                .unwrap();
            let mut buf = vec![0u8; 8 * 512];
            let err = disk.read(0, &mut buf).unwrap_err();
            (err, buf)
        },
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(err.kind(), &mkernel::block::BlockErrorKind::Io, "{err}");
    assert_eq!(err.completed(), 3 * 512, "{err}");
    assert!(
        buf[..3 * 512].iter().all(|&b| b == 5),
        "the done prefix was read"
    );
}

#[test]
fn a_map_function_runs_inside_the_run_and_may_wait_and_spawn() {
    // As in mkernel: a device built from others may read a superblock
    // (deferred I/O), sleep, or start a background task before `main`.
    let disk = TempFile::new("map-inside", &[9u8; 1024]);
    let (first, slept, spawned) = mkernel::Builder::new().block_file("disk", &disk.0).run(
        mkernel::map(mkernel::block("disk"), |blk| {
            let mut page = vec![0u8; blk.pagesize()];
            blk.read(0, &mut page).unwrap(); // deferred: suspends
            let t0 = mkernel::clock_monotonic();
            mkernel::sleep(std::time::Duration::from_millis(2));
            let slept = mkernel::clock_monotonic() - t0 >= 2_000_000;
            let helper = mkernel::spawn(|| 40 + 2);
            (page[0], slept, helper)
        }),
        |(first, slept, helper)| (first, slept, helper.join().unwrap()),
    );
    assert_eq!((first, slept, spawned), (9, true, 42));
}

#[test]
fn a_map_function_may_borrow_from_the_caller() {
    let greeting = String::from("hello");
    let got = mkernel::run(mkernel::map((), |()| greeting.len()), |n| n);
    assert_eq!(got, 5);
}

/// `Net::write_into` (mkernel's `Net.write_into`): the frame is filled in
/// a buffer of the device, the same one every time (no allocation per
/// frame), and what arrives is exactly what the closure filled; sizes are
/// checked as by `write`.
#[test]
fn write_into_fills_the_devices_own_buffer_in_place() {
    use mkernel::net::NetErrorKind;
    let (a, b) = link::pair(link::Faults::default());
    mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run(
            (mkernel::net("a"), mkernel::net("b")),
            |((a, acfg), (b, bcfg))| {
                let max = acfg.mtu + 14;
                let mut seen = Vec::new();
                for (i, len) in [60usize, 1514, 100].into_iter().enumerate() {
                    a.write_into(max, |buf| {
                        assert_eq!(buf.len(), max);
                        seen.push(buf.as_ptr() as usize);
                        buf[..6].copy_from_slice(&bcfg.mac);
                        buf[6..12].copy_from_slice(&acfg.mac);
                        buf[12..14].copy_from_slice(&[0x88, 0xb5]);
                        for (j, x) in buf[14..len].iter_mut().enumerate() {
                            *x = (i + j) as u8;
                        }
                        len
                    })
                    .unwrap();
                    let mut frame = vec![0u8; max];
                    let n = b.read(&mut frame).unwrap();
                    assert_eq!(n, len);
                    assert_eq!(&frame[..6], &bcfg.mac);
                    assert!(
                        frame[14..n]
                            .iter()
                            .enumerate()
                            .all(|(j, &x)| x == (i + j) as u8),
                        "frame {i}"
                    );
                }
                // A shorter buffer is asked for: still the same memory.
                a.write_into(64, |buf| {
                    assert_eq!(buf.len(), 64);
                    seen.push(buf.as_ptr() as usize);
                    buf[..6].copy_from_slice(&bcfg.mac);
                    64
                })
                .unwrap();
                assert_eq!(b.read(&mut [0u8; 1514]).unwrap(), 64);
                assert!(seen.iter().all(|&p| p == seen[0]), "{seen:x?}");

                // Too long a buffer: refused, the closure never runs.
                let e = a
                    .write_into(max + 1, |_| unreachable!("not called"))
                    .unwrap_err();
                assert_eq!(e.kind(), NetErrorKind::TooLong);
                // A frame shorter than a header, or longer than the buffer.
                let e = a.write_into(max, |_| 13).unwrap_err();
                assert_eq!(e.kind(), NetErrorKind::TooShort);
                let e = a.write_into(20, |_| 21).unwrap_err();
                assert_eq!(e.kind(), NetErrorKind::TooLong);
                // Nothing of those was sent.
                assert_eq!(b.try_read(&mut [0u8; 1514]).unwrap(), None);

                // A closure may write on the same device.
                a.write_into(60, |outer| {
                    a.write_into(60, |inner| {
                        inner[..6].copy_from_slice(&bcfg.mac);
                        inner[14] = 1;
                        60
                    })
                    .unwrap();
                    outer[..6].copy_from_slice(&bcfg.mac);
                    outer[14] = 2;
                    60
                })
                .unwrap();
                let mut f = [0u8; 1514];
                b.read(&mut f).unwrap();
                assert_eq!(f[14], 1);
                b.read(&mut f).unwrap();
                assert_eq!(f[14], 2);
            },
        );
}

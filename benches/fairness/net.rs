//! Scenario 3: a task answering frames on a link while other tasks write to
//! a block device, deferred or atomically, or stay away (idle).
//!
//! mkernel: an in-memory link (`net::link::pair`, both ends net devices of
//! the run), a file-backed block device with 4 KiB pages. Peers: a pair of
//! channels as the link; "deferred" writes are handed to other threads
//! (tokio's `spawn_blocking`; for `may`, which has no blocking pool, one
//! disk thread answering on a `may` channel), "atomic" writes are a
//! `pwrite` inside the task followed by a yield.

use crate::common::*;
use std::cell::Cell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub const PAGE: usize = 4096;
const PAGES: u64 = 256;
const WRITERS: usize = 2;
const FRAME: usize = 60;
/// Pause of the client between two round trips, so that the service is
/// not busy all the time (an idle moment is when deferred I/O happens).
pub const PACE: Duration = Duration::from_micros(200);
/// The writers stop this long after the window even if the client never
/// got to end it (a runtime starving the client cannot hang the bench).
const HARD_SLACK_NS: u64 = 200_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Load {
    Idle,
    Deferred,
    Atomic,
}

impl Load {
    pub const ALL: [Load; 3] = [Load::Idle, Load::Deferred, Load::Atomic];
    pub fn name(self) -> &'static str {
        match self {
            Load::Idle => "idle",
            Load::Deferred => "deferred writes",
            Load::Atomic => "atomic writes",
        }
    }
}

/// Round-trip times (µs), and the pages written meanwhile.
pub struct Run {
    pub rtt_us: Vec<f64>,
    pub pages: u64,
    pub secs: f64,
}

pub struct Disk(pub PathBuf);

impl Disk {
    pub fn new() -> Disk {
        let p = std::env::temp_dir().join(format!("mkernel-fairness-{}.img", std::process::id()));
        std::fs::write(&p, vec![0u8; PAGE * PAGES as usize]).unwrap();
        Disk(p)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(rt: Rt, load: Load, disk: &Path, window_ns: u64) -> Run {
    match rt {
        Rt::Mkernel => mkernel_run(load, disk, window_ns),
        Rt::Tokio => tokio_run(load, disk, window_ns),
        Rt::May => may_run_(load, disk, window_ns),
    }
}

fn mkernel_run(load: Load, disk: &Path, window_ns: u64) -> Run {
    let (a, b) = mkernel::net::link::pair(mkernel::net::link::Faults::default());
    mkernel::Builder::new()
        .net_link("client", a)
        .net_link("service", b)
        .block_file("disk", disk)
        .block_sector_size("disk", PAGE)
        .run(
            (
                mkernel::net("client"),
                mkernel::net("service"),
                mkernel::block("disk"),
            ),
            move |((client, _), (service, _), disk)| {
                let server = mkernel::spawn(move || {
                    let mut buf = [0u8; 1514];
                    loop {
                        let n = service.read(&mut buf).unwrap();
                        service.write(&buf[..n]).unwrap();
                    }
                });
                let stop = Rc::new(Cell::new(false));
                let hard = now_ns() + window_ns + HARD_SLACK_NS;
                let pages = Rc::new(Cell::new(0u64));
                let writers: Vec<_> = (0..if load == Load::Idle { 0 } else { WRITERS })
                    .map(|w| {
                        let (stop, pages, disk) = (stop.clone(), pages.clone(), disk.clone());
                        mkernel::spawn(move || {
                            let page = [0x5au8; PAGE];
                            let mut i = w as u64;
                            while !stop.get() && now_ns() < hard {
                                let off = (i % PAGES) * PAGE as u64;
                                if load == Load::Deferred {
                                    disk.write(off, &page).unwrap();
                                } else {
                                    disk.atomic_write(off, &page).unwrap();
                                    mkernel::yield_now();
                                }
                                pages.set(pages.get() + 1);
                                i += WRITERS as u64;
                            }
                        })
                    })
                    .collect();
                let t0 = now_ns();
                let mut rtt_us = Vec::new();
                let mut frame = [0u8; FRAME];
                let mut buf = [0u8; 1514];
                while now_ns() - t0 < window_ns {
                    frame[14..22].copy_from_slice(&(rtt_us.len() as u64).to_be_bytes());
                    let t = now_ns();
                    client.write(&frame).unwrap();
                    let n = client.read(&mut buf).unwrap();
                    rtt_us.push((now_ns() - t) as f64 / 1e3);
                    assert_eq!(buf[..n], frame);
                    mkernel::sleep(PACE);
                }
                let secs = (now_ns() - t0) as f64 / 1e9;
                let pages = pages.get();
                stop.set(true);
                server.cancel();
                for w in writers {
                    w.join().unwrap();
                }
                Run {
                    rtt_us,
                    pages,
                    secs,
                }
            },
        )
}

fn tokio_run(load: Load, disk: &Path, window_ns: u64) -> Run {
    let file = Arc::new(File::options().write(true).open(disk).unwrap());
    tokio_rt().block_on(async move {
        use tokio::sync::mpsc::unbounded_channel;
        let (to_server, mut server_in) = unbounded_channel::<[u8; FRAME]>();
        let (to_client, mut client_in) = unbounded_channel::<[u8; FRAME]>();
        let server = tokio::spawn(async move {
            while let Some(f) = server_in.recv().await {
                if to_client.send(f).is_err() {
                    break;
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let hard = now_ns() + window_ns + HARD_SLACK_NS;
        let pages = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..if load == Load::Idle { 0 } else { WRITERS })
            .map(|w| {
                let (stop, pages, file) = (stop.clone(), pages.clone(), file.clone());
                tokio::spawn(async move {
                    let page = [0x5au8; PAGE];
                    let mut i = w as u64;
                    while !stop.load(Ordering::Relaxed) && now_ns() < hard {
                        let off = (i % PAGES) * PAGE as u64;
                        if load == Load::Deferred {
                            let f = file.clone();
                            tokio::task::spawn_blocking(move || f.write_all_at(&page, off))
                                .await
                                .unwrap()
                                .unwrap();
                        } else {
                            file.write_all_at(&page, off).unwrap();
                            tokio::task::yield_now().await;
                        }
                        pages.fetch_add(1, Ordering::Relaxed);
                        i += WRITERS as u64;
                    }
                })
            })
            .collect();
        let t0 = now_ns();
        let mut rtt_us = Vec::new();
        let mut frame = [0u8; FRAME];
        while now_ns() - t0 < window_ns {
            frame[14..22].copy_from_slice(&(rtt_us.len() as u64).to_be_bytes());
            let t = now_ns();
            to_server.send(frame).unwrap();
            let got = client_in.recv().await.unwrap();
            rtt_us.push((now_ns() - t) as f64 / 1e3);
            assert_eq!(got, frame);
            tokio::time::sleep(PACE).await;
        }
        let secs = (now_ns() - t0) as f64 / 1e9;
        let pages = pages.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        drop(to_server);
        server.await.unwrap();
        for w in writers {
            w.await.unwrap();
        }
        Run {
            rtt_us,
            pages,
            secs,
        }
    })
}

fn may_run_(load: Load, disk: &Path, window_ns: u64) -> Run {
    let file = Arc::new(File::options().write(true).open(disk).unwrap());
    // The disk thread of the deferred case: performs writes and answers on
    // the coroutine's own channel.
    type Req = (u64, may::sync::mpsc::Sender<()>);
    let (disk_tx, disk_rx) = std::sync::mpsc::channel::<Req>();
    let disk_thread = {
        let file = file.clone();
        std::thread::spawn(move || {
            let page = [0x5au8; PAGE];
            for (off, done) in disk_rx {
                file.write_all_at(&page, off).unwrap();
                let _ = done.send(());
            }
        })
    };
    let r = may_run(move || {
        use may::sync::mpsc::channel;
        let (to_server, server_in) = channel::<[u8; FRAME]>();
        let (to_client, client_in) = channel::<[u8; FRAME]>();
        let server = may::go!(move || {
            while let Ok(f) = server_in.recv() {
                if to_client.send(f).is_err() {
                    break;
                }
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let hard = now_ns() + window_ns + HARD_SLACK_NS;
        let pages = Arc::new(AtomicU64::new(0));
        let writers: Vec<_> = (0..if load == Load::Idle { 0 } else { WRITERS })
            .map(|w| {
                let (stop, pages, file) = (stop.clone(), pages.clone(), file.clone());
                let disk_tx = disk_tx.clone();
                may::go!(move || {
                    let page = [0x5au8; PAGE];
                    let (done_tx, done_rx) = channel::<()>();
                    let mut i = w as u64;
                    while !stop.load(Ordering::Relaxed) && now_ns() < hard {
                        let off = (i % PAGES) * PAGE as u64;
                        if load == Load::Deferred {
                            disk_tx.send((off, done_tx.clone())).unwrap();
                            done_rx.recv().unwrap();
                        } else {
                            file.write_all_at(&page, off).unwrap();
                            may::coroutine::yield_now();
                        }
                        pages.fetch_add(1, Ordering::Relaxed);
                        i += WRITERS as u64;
                    }
                })
            })
            .collect();
        drop(disk_tx);
        let t0 = now_ns();
        let mut rtt_us = Vec::new();
        let mut frame = [0u8; FRAME];
        while now_ns() - t0 < window_ns {
            frame[14..22].copy_from_slice(&(rtt_us.len() as u64).to_be_bytes());
            let t = now_ns();
            to_server.send(frame).unwrap();
            let got = client_in.recv().unwrap();
            rtt_us.push((now_ns() - t) as f64 / 1e3);
            assert_eq!(got, frame);
            may::coroutine::sleep(PACE);
        }
        let secs = (now_ns() - t0) as f64 / 1e9;
        let pages = pages.load(Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        drop(to_server);
        server.join().unwrap();
        for w in writers {
            w.join().unwrap();
        }
        Run {
            rtt_us,
            pages,
            secs,
        }
    });
    disk_thread.join().unwrap();
    r
}

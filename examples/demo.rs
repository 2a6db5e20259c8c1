//! A tour of mkernel in one process, no root or TAP needed: a thousand
//! tasks sharing the CPU fairly, a timeout, a cancellation that runs
//! destructors, and a net device answering while block I/O is deferred.

use mkernel::net::link;
use std::rc::Rc;
use std::time::Duration;

fn main() {
    // 1. Fairness: N tasks doing small units of work, yielding after each.
    let n = 1000;
    let window = Duration::from_millis(200);
    let (units, max_gap) = mkernel::run((), move |()| {
        let end = mkernel::clock_monotonic() + window.as_nanos() as u64;
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                mkernel::spawn(move || {
                    let mut units = 0u64;
                    while mkernel::clock_monotonic() < end {
                        std::hint::black_box((0..100).sum::<u64>());
                        units += 1;
                        mkernel::yield_now();
                    }
                    (
                        units,
                        mkernel::task_stats(mkernel::current_task())
                            .unwrap()
                            .max_wait_switches,
                    )
                })
            })
            .collect();
        let r: Vec<(u64, u64)> = mkernel::join_all(tasks)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        (
            r.iter().map(|x| x.0).collect::<Vec<_>>(),
            r.iter().map(|x| x.1).max().unwrap(),
        )
    });
    let sum: f64 = units.iter().map(|&u| u as f64).sum();
    let sq: f64 = units.iter().map(|&u| (u as f64).powi(2)).sum();
    println!(
        "fairness: {n} tasks, {} units in {window:?}, Jain index {:.4}, longest wait {max_gap} other tasks",
        sum as u64,
        sum * sum / (n as f64 * sq)
    );

    // 2. A timeout with join_first, and a cancellation that runs destructors.
    struct Noisy;
    impl Drop for Noisy {
        fn drop(&mut self) {
            println!("cancel: the slow task's destructor ran");
        }
    }
    let winner = mkernel::run((), |()| {
        let slow = mkernel::spawn(|| {
            let _n = Noisy;
            mkernel::sleep(Duration::from_secs(3600));
            "slow"
        });
        let timeout = mkernel::spawn(|| {
            mkernel::sleep(Duration::from_millis(10));
            "timeout"
        });
        mkernel::join_first(vec![slow, timeout]).unwrap()
    });
    println!("timeout: join_first returned {winner:?}");

    // 3. Availability: a task answers frames on an in-memory link while
    //    another queues deferred block writes.
    let path = std::env::temp_dir().join(format!("mkernel-demo-{}.img", std::process::id()));
    std::fs::write(&path, vec![0u8; 512 * 2000]).expect("temporary disk image");
    let (a, b) = link::pair(link::Faults::default());
    let (answered, written) = mkernel::Builder::new()
        .net_link("client", a)
        .net_link("service", b)
        .block_file("disk", &path)
        .run(
            (
                mkernel::net("client"),
                mkernel::net("service"),
                mkernel::block("disk"),
            ),
            |(client, service, disk)| {
                let (server, _) = service;
                let (client, _) = client;
                let written = Rc::new(std::cell::Cell::new(0u32));
                let w = written.clone();
                let writer = mkernel::spawn(move || {
                    let page = vec![0xabu8; 512];
                    for i in 0..2000u64 {
                        disk.write(i * 512, &page).unwrap();
                        w.set(w.get() + 1);
                    }
                });
                let echo = mkernel::spawn(move || {
                    let mut buf = [0u8; 1514];
                    loop {
                        let n = server.read(&mut buf).unwrap();
                        server.write(&buf[..n]).unwrap();
                    }
                });
                let mut frame = [0u8; 64];
                let mut answered = 0;
                for i in 0..1000u32 {
                    frame[14..18].copy_from_slice(&i.to_be_bytes());
                    client.write(&frame).unwrap();
                    let mut buf = [0u8; 1514];
                    let n = client.read(&mut buf).unwrap();
                    answered += (n == 64 && buf[14..18] == i.to_be_bytes()) as u32;
                }
                let during = written.get();
                echo.cancel();
                writer.join().unwrap();
                (answered, (during, written.get()))
            },
        );
    let _ = std::fs::remove_file(&path);
    println!(
        "availability: {answered}/1000 frames answered while {} of 2000 deferred block writes were done; all {} done after",
        written.0, written.1
    );
    if answered != 1000 || written.1 != 2000 {
        std::process::exit(1);
    }
}

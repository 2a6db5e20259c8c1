//! How soon the scheduler notices a frame arriving on a real TAP while
//! tasks compute and yield (`cargo bench --bench notice`, as root).
//!
//! The scheduler looks at devices only when the platform is due (every
//! `POLL_CYCLES`, ~100 µs) while tasks are runnable, and it judges "due"
//! with a sampled TSC reading (one read every 1..8 task switches, see
//! `SampledClock`). The contract is that a ready device is *noticed* within
//! 1 ms when tasks compute and yield (as long as they yield at least every
//! ~100 µs). Two latencies are measured per frame, both from just before
//! the sender's `sendto` (CLOCK_MONOTONIC on both sides: the sender reads
//! it with `clock_gettime`, the tasks with `mkernel::clock_monotonic`):
//!
//! - **notice**: to the scheduling point where the scheduler saw the TAP
//!   ready and woke the reading task: the contract. It includes a few µs
//!   of the host's path from `sendto` to the TAP queue and the wait for the
//!   scheduler's next look at the devices.
//! - **run**: to the moment the reading task runs again with the frame in
//!   its hands: the notice plus the woken reader's wait in the FIFO run
//!   queue behind every load task runnable at that point (round-robin: a
//!   woken task goes to the back), i.e. 8 load slices (~800 µs with 100 µs
//!   slices), which is not the scheduler noticing anything late.
//!
//! The wake is placed from the switches that ran just before the reader.
//! Each load task records, in a ring shared by the tasks (one thread), the
//! scheduler's switch count (`mkernel::stats().switches`, counted as the
//! task is given the CPU) at the start of each of its slices, with the
//! CLOCK_MONOTONIC time there for slices that compute (bare yields skip
//! the clock read, to keep their cost and so the clock sampling the
//! scenario is about). When the reader runs with a frame in switch `s`,
//! the 8 load tasks were all runnable and so all queued ahead of it (a
//! yielding task re-enters the queue before the scheduling point that asks
//! the devices): it was woken at the scheduling point just before switch
//! `s - 8`, and the ring says when that slice started (or, if it and the
//! next ones were bare yields of well under a µs each, the first timed
//! slice after it). That is exact to the few hundred ns from the
//! scheduling point to the slice's first clock read, and the switch counts
//! check the assumption: if the 8 switches before the reader's were not
//! all load slices, the frame is counted as "could not be placed" and its
//! notice is its run latency. With no load tasks (`idle`) notice = run.
//! A notice before the frame's stamp (the reader, already running, read a
//! frame that had just arrived) counts as 0.
//!
//! Set-up: this program creates a network namespace `mkernel-notice-PID`
//! holding a TAP `mknPID` (up, no address), always deleted at the end, and
//! re-executes itself inside it (`ip netns exec`, role in `MKBENCH_NOTICE_TAP`).
//! The child runs an mkernel program on the TAP: a reader task loops on
//! `Net::read`, and 8 load tasks run one scenario at a time:
//!
//! - `idle`: no load tasks (baseline: the scheduler waits in `epoll_wait`);
//! - `yield`: a tight loop of `yield_now()`;
//! - `10us` / `100us`: compute ~10 / ~100 µs (busy loop on `Instant`),
//!   then yield;
//! - `phases`: 2,000 bare yields, then one ~200 µs compute and a yield,
//!   over and over (the sampled clock is at its coarsest, one read per 8
//!   switches, exactly when the tasks turn slow);
//! - `turn`: 2,000 bare yields, then 4 rounds of (compute ~50 µs, yield),
//!   over and over: the window where tasks that only yielded start
//!   computing, within the stated condition (up to 8 slices of 50 µs pass
//!   before the clock is read again: ~400 µs plus the poll interval);
//! - `turn200`: the same with ~200 µs rounds, outside the stated condition
//!   (slices over ~100 µs): up to 8 × 200 µs may pass unseen, so a notice
//!   over 1 ms there is expected and documented, not a broken contract.
//!
//! Meanwhile a plain thread of the child (in the namespace, on the host's
//! side of the TAP) sends Ethernet frames to the TAP through an AF_PACKET
//! socket, about one per ms (0.5..1.5 ms apart, pseudo-random), each holding
//! its send time, the scenario and a sequence number (ethertype 0x88b5,
//! local experimental; nothing leaves the namespace, and other frames the
//! kernel puts on the TAP are ignored). The parent prints, per scenario,
//! frames received / sent, p50, p99 and max of the notice latency (µs) and
//! how many frames took over 1 ms to be noticed, p50, p99 and max of the
//! run latency, and then whether every notice max is under 1 ms (with the
//! run maxima beside). It does not assert on timing: it exits non-zero only
//! if the set-up fails (lost frames are reported).
//!
//! On a shared machine the host stops the scheduler's thread for
//! milliseconds at a time (another process preempts it, or a virtual
//! machine's CPU is not run by its host), which no scheduler can hide. So
//! that the table still says something about mkernel, it also shows: the
//! reader's longest wait in the run queue once woken (the scheduler's own
//! statistics, with the number of task runs in that wait; over all frames);
//! how many frames were disturbed by the host; and the max notice latency
//! of the other frames ("clean notice max"). A frame is disturbed if,
//! between its sending and the reader's run, the scheduler's thread had an involuntary
//! context switch or a load task's busy loop saw a gap of over 50 µs
//! between two clock reads, or if `sendto` itself took over 50 µs. (Bare
//! yields read no clock: a stall of the virtual CPU while only those run
//! goes unseen. In `idle` the scheduler sleeps in `epoll_wait`, and the
//! host's wake-up latency is not seen as a disturbance either.)
//!
//! Not root, no /dev/net/tun or no `ip`: prints `SKIPPED notice bench: ...`
//! and exits 0. Knobs: `MKBENCH_FRAMES` (frames per scenario, default 1000;
//! the whole bench takes about 1.2 ms per frame and scenario, ~10 s);
//! `MKBENCH_CLOCK_EVERY=1` runs the scheduler with
//! `Builder::switches_per_clock_read(1)` (a TSC read after every switch),
//! to compare `turn200` with the default.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::process::{Child, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set in the child (inside the namespace) to the TAP's name.
const ROLE: &str = "MKBENCH_NOTICE_TAP";
/// Local experimental ethertype (IEEE 802).
const ETHERTYPE: u16 = 0x88b5;
/// First payload bytes of our frames.
const MAGIC: &[u8; 8] = b"mkNOTICE";
/// Sequence number of the end-of-scenario marker.
const END: u32 = u32::MAX;
/// Load tasks per scenario.
const LOAD_TASKS: usize = 8;
/// The child is killed after this long (the bench should stay under ~60 s).
const CHILD_TIMEOUT: Duration = Duration::from_secs(55);
/// The contract.
const LIMIT_NS: u64 = 1_000_000;

#[derive(Clone, Copy)]
enum Load {
    None,
    Yield,
    /// Compute this many µs, then yield.
    Compute(u64),
    /// `yields` bare yields, then `rounds` times (compute `us` µs, yield).
    Phases {
        yields: u32,
        rounds: u32,
        us: u64,
    },
}

struct Scenario {
    name: &'static str,
    load: Load,
}

const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "idle",
        load: Load::None,
    },
    Scenario {
        name: "yield",
        load: Load::Yield,
    },
    Scenario {
        name: "10us",
        load: Load::Compute(10),
    },
    Scenario {
        name: "100us",
        load: Load::Compute(100),
    },
    Scenario {
        name: "phases",
        load: Load::Phases {
            yields: 2_000,
            rounds: 1,
            us: 200,
        },
    },
    Scenario {
        name: "turn",
        load: Load::Phases {
            yields: 2_000,
            rounds: 4,
            us: 50,
        },
    },
    Scenario {
        name: "turn200",
        load: Load::Phases {
            yields: 2_000,
            rounds: 4,
            us: 200,
        },
    },
];

fn main() {
    match std::env::var(ROLE) {
        Ok(tap) => child(&tap),
        Err(_) => parent(),
    }
}

fn frames_per_scenario() -> u32 {
    std::env::var("MKBENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        .clamp(1, END - 1)
}

/// CLOCK_MONOTONIC in ns, read as `mkernel::clock_monotonic` reads it.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A gap this long between two clock reads of [`spin`]'s loop means the
/// thread did not run meanwhile.
const STALL: Duration = Duration::from_micros(50);

thread_local! {
    /// Stalls seen by [`spin`] on this thread so far.
    static STALLS: Cell<i64> = const { Cell::new(0) };
}

/// Computes (a busy loop on the clock) for `d`, counting the stalls it sees:
/// the host did not run this thread (preempted, or its virtual CPU not
/// running), which is not the scheduler's doing.
fn spin(d: Duration) {
    let t = Instant::now();
    let mut last = t;
    loop {
        let now = Instant::now();
        if now - last > STALL {
            STALLS.with(|s| s.set(s.get() + 1));
        }
        if now - t >= d {
            return;
        }
        last = now;
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------
// The parent: the namespace, the child, the table.

#[path = "../tests/solo5_util/mod.rs"]
mod util;

/// The child run in the namespace, killed on drop (also when unwinding
/// from a panic), before the namespace itself goes.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One line of the child's report.
struct Row {
    name: String,
    sent: u64,
    recv: u64,
    notice_p50: u64,
    notice_p99: u64,
    notice_max: u64,
    notice_over: u64,
    run_p50: u64,
    run_p99: u64,
    run_max: u64,
    dup: u64,
    inexact: u64,
    queue_max: u64,
    queue_switches: u64,
    disturbed: u64,
    clean_max: u64,
}

fn parse_row(line: &str) -> Option<Row> {
    let mut it = line.split_whitespace();
    if it.next()? != "notice" {
        return None;
    }
    let name = it.next()?.to_string();
    let mut get = |key: &str| -> Option<u64> {
        let (k, v) = it.next()?.split_once('=')?;
        if k != key {
            return None;
        }
        v.parse().ok()
    };
    Some(Row {
        name,
        sent: get("sent")?,
        recv: get("recv")?,
        notice_p50: get("notice_p50_ns")?,
        notice_p99: get("notice_p99_ns")?,
        notice_max: get("notice_max_ns")?,
        notice_over: get("notice_over_1ms")?,
        run_p50: get("run_p50_ns")?,
        run_p99: get("run_p99_ns")?,
        run_max: get("run_max_ns")?,
        dup: get("dup")?,
        inexact: get("inexact")?,
        queue_max: get("queue_max_ns")?,
        queue_switches: get("queue_max_switches")?,
        disturbed: get("disturbed")?,
        clean_max: get("clean_max_ns")?,
    })
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1_000.0)
}

fn parent() {
    if let Some(why) = util::cannot_make_netns() {
        println!("SKIPPED notice bench: {why}");
        return;
    }
    let ns = util::Netns::new("ntb", None);
    let tap = ns.tap.clone();

    let frames = frames_per_scenario();
    println!(
        "notice bench: {LOAD_TASKS} load tasks, {frames} frames per scenario, ~1 per ms \
         (namespace {}, TAP {tap})",
        ns.name
    );
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = ns
        .command(&exe)
        .env(ROLE, &tap)
        .env("MKBENCH_FRAMES", frames.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cannot start the child under ip netns exec");
    let mut stdout = child.stdout.take().unwrap();
    let mut child = Killed(child);
    // The child's lines, echoed as they come (progress), gathered for the
    // table.
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let s = String::from_utf8_lossy(&buf[..n]);
                    print!("{s}");
                    all.push_str(&s);
                }
            }
        }
        all
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break Some(st);
        }
        if t0.elapsed() > CHILD_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        drop(child); // kills it, closing its stdout
        let _ = reader.join();
        eprintln!("notice bench: the child did not finish in {CHILD_TIMEOUT:?} (killed)");
        std::process::exit(1);
    };
    let out = reader.join().unwrap();
    drop(child);
    drop(ns);
    if !status.success() {
        eprintln!("notice bench: the child failed ({status})");
        std::process::exit(1);
    }
    let rows: Vec<Row> = out.lines().filter_map(parse_row).collect();
    if rows.len() != SCENARIOS.len() {
        eprintln!("notice bench: expected {} result lines", SCENARIOS.len());
        std::process::exit(1);
    }

    println!();
    println!(
        "{:<8} {:>9} | {:>26} {:>5} | {:>26} | {:>14} {:>5} {:>9}",
        "", "", "notice µs", "", "run µs", "", "", "clean"
    );
    println!(
        "{:<8} {:>9} | {:>8} {:>8} {:>8} {:>5} | {:>8} {:>8} {:>8} | {:>14} {:>5} {:>9}",
        "scenario",
        "recv/sent",
        "p50",
        "p99",
        "max",
        ">1ms",
        "p50",
        "p99",
        "max",
        "queue max(n)",
        "dist",
        "notice max"
    );
    for r in &rows {
        println!(
            "{:<8} {:>9} | {:>8} {:>8} {:>8} {:>5} | {:>8} {:>8} {:>8} | {:>14} {:>5} {:>9}",
            r.name,
            format!("{}/{}", r.recv, r.sent),
            us(r.notice_p50),
            us(r.notice_p99),
            us(r.notice_max),
            r.notice_over,
            us(r.run_p50),
            us(r.run_p99),
            us(r.run_max),
            format!("{}({})", us(r.queue_max), r.queue_switches),
            r.disturbed,
            if r.disturbed >= r.recv {
                "-".to_string()
            } else {
                us(r.clean_max)
            },
        );
    }
    println!(
        "(notice: from the frame's sending to the scheduling point that woke the reader; \
         run: to the reader running with it, {LOAD_TASKS} load slices later under load. \
         queue max: the reader's longest wait in the run queue once woken, from the \
         scheduler's statistics, with the number of task runs meanwhile; dist: frames \
         disturbed by the host: between the frame's sending and the reader's run the \
         scheduler's thread was preempted or stalled, or sendto took over {} µs; clean \
         notice max: the max notice of the others)",
        SEND_SLOW_NS / 1_000
    );
    for r in rows.iter().filter(|r| r.inexact != 0) {
        println!(
            "{}: the wake of {} frames could not be placed (their notice is their run latency)",
            r.name, r.inexact
        );
    }
    for r in rows.iter().filter(|r| r.recv != r.sent || r.dup != 0) {
        println!(
            "LOST FRAMES in {}: {} of {} sent never reached the reader ({} duplicates)",
            r.name,
            r.sent - r.recv.min(r.sent),
            r.sent,
            r.dup
        );
    }
    let slow: Vec<String> = rows
        .iter()
        .filter(|r| r.notice_max >= LIMIT_NS)
        .map(|r| {
            format!(
                "{} (max {} µs, clean max {})",
                r.name,
                us(r.notice_max),
                if r.disturbed >= r.recv {
                    "-: every frame disturbed".to_string()
                } else {
                    format!("{} µs", us(r.clean_max))
                }
            )
        })
        .collect();
    let runs: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}", r.name, us(r.run_max)))
        .collect();
    if slow.is_empty() {
        println!("every notice max under 1,000 µs: yes");
    } else {
        println!("every notice max under 1,000 µs: NO: {}", slow.join(", "));
    }
    println!(
        "(run latency max, µs, including the wait behind the load tasks: {})",
        runs.join(", ")
    );
}

// ---------------------------------------------------------------------
// The child, inside the namespace.

/// A 60-byte frame: broadcast, our ethertype, MAGIC, scenario, sequence
/// number, send time (ns, CLOCK_MONOTONIC), read just before it is sent.
fn frame(scenario: u8, seq: u32) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0x6d, 0x6b, 0x6e, 0x6f, 0x74]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..22].copy_from_slice(MAGIC);
    f[22] = scenario;
    f[23..27].copy_from_slice(&seq.to_le_bytes());
    f
}

/// (scenario, sequence number, send time) of one of our frames.
fn parse_frame(f: &[u8]) -> Option<(u8, u32, u64)> {
    if f.len() < 35 || f[12..14] != ETHERTYPE.to_be_bytes() || &f[14..22] != MAGIC {
        return None;
    }
    let seq = u32::from_le_bytes(f[23..27].try_into().unwrap());
    let stamp = u64::from_le_bytes(f[27..35].try_into().unwrap());
    Some((f[22], seq, stamp))
}

/// Sends `frames` stamped frames ~1 ms apart, then the end marker until the
/// reader has seen it (`done`). Returns, per sequence number, how long the
/// frame took from its stamp to the end of `sendto` (ns; None: not sent).
fn sender(tap: &str, scenario: u8, frames: u32, done: &AtomicBool) -> Vec<Option<u64>> {
    let s = util::raw::RawSender::open(tap, ETHERTYPE)
        .unwrap_or_else(|e| panic!("AF_PACKET socket on {tap}: {e}"));
    let mut x = (u64::from(std::process::id()) << 8 | u64::from(scenario)) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Let the load tasks settle in.
    std::thread::sleep(Duration::from_millis(5));
    let mut sent = Vec::with_capacity(frames as usize);
    for seq in 0..frames {
        let mut f = frame(scenario, seq);
        let stamp = monotonic_ns();
        f[27..35].copy_from_slice(&stamp.to_le_bytes());
        match s.send(&f) {
            Ok(()) => sent.push(Some(monotonic_ns() - stamp)),
            Err(e) => {
                eprintln!("notice bench: sendto failed: {e}");
                sent.push(None);
            }
        }
        std::thread::sleep(Duration::from_micros(500 + next() % 1_000));
    }
    let t = Instant::now();
    while !done.load(Ordering::Acquire) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the reader never saw the end marker"
        );
        let mut f = frame(scenario, END);
        f[27..35].copy_from_slice(&monotonic_ns().to_le_bytes());
        let _ = s.send(&f);
        std::thread::sleep(Duration::from_millis(2));
    }
    sent
}

/// Slots of the [`Slices`] ring (a power of two, far more than the
/// `LOAD_TASKS` slices looked back at).
const RING: usize = 256;

/// The last load-task slices of a scenario, by switch number (all tasks
/// run on the scheduler's one thread): `(switch, start)`, where `switch` is
/// `mkernel::stats().switches` during the slice (the scheduler counts a
/// switch just before it gives a task the CPU) and `start` the
/// CLOCK_MONOTONIC time at the slice's start, right after the yield that
/// ended the task's previous slice returned (0: not read, a bare yield).
struct Slices {
    ring: Vec<Cell<(u64, u64)>>,
}

impl Slices {
    fn new() -> Slices {
        Slices {
            ring: (0..RING).map(|_| Cell::new((u64::MAX, 0))).collect(),
        }
    }

    /// Records the start of the calling load task's slice. `timed`: read
    /// the clock (~20 ns) too; bare yields do not, so that they keep the
    /// cost, and the scheduler's clock sampling, of the scenario.
    #[inline]
    fn mark(&self, timed: bool) {
        let sw = mkernel::stats().switches;
        let t = if timed { mkernel::clock_monotonic() } else { 0 };
        self.ring[sw as usize % RING].set((sw, t));
    }

    /// The start of the slice of switch `sw`, if it was a load task's:
    /// `Some(0)` if that slice did not read the clock.
    fn start(&self, sw: u64) -> Option<u64> {
        let (s, t) = self.ring[sw as usize % RING].get();
        (s == sw).then_some(t)
    }

    /// When the reader, running now (`now`) in switch `sw`, was woken: at
    /// the scheduling point just before the switch `sw - k`, where `k` is
    /// the number of load tasks, all runnable and so all ahead of it in the
    /// FIFO run queue (a yielding task re-enters the queue before the
    /// scheduling point that asks the devices). That is the start of the
    /// slice of switch `sw - k`, or, if that slice and the next ones were
    /// bare yields (no clock read; well under a µs each), of the first
    /// timed one after it, or `now` if none. None: the `k` switches before
    /// `sw` were not all load slices (something else ran: the estimate
    /// would be wrong).
    fn wake(&self, sw: u64, k: u64, now: u64) -> Option<u64> {
        let mut first = None;
        for s in sw.checked_sub(k)?..sw {
            let t = self.start(s)?;
            if first.is_none() && t != 0 {
                first = Some(t);
            }
        }
        Some(first.unwrap_or(now))
    }
}

fn load_task(load: Load, stop: Rc<Cell<bool>>, slices: Rc<Slices>) {
    match load {
        Load::None => {}
        Load::Yield => {
            while !stop.get() {
                slices.mark(false);
                mkernel::yield_now();
            }
        }
        Load::Compute(us) => {
            let d = Duration::from_micros(us);
            while !stop.get() {
                slices.mark(true);
                spin(d);
                mkernel::yield_now();
            }
        }
        Load::Phases { yields, rounds, us } => {
            let d = Duration::from_micros(us);
            while !stop.get() {
                for _ in 0..yields {
                    slices.mark(false);
                    mkernel::yield_now();
                }
                for _ in 0..rounds {
                    slices.mark(true);
                    spin(d);
                    mkernel::yield_now();
                }
            }
        }
    }
}

/// One frame as the reader saw it.
#[derive(Clone, Copy)]
struct Got {
    /// From the send stamp to the reader's run with the frame (ns).
    run: u64,
    /// From the send stamp to the scheduling point that woke the reader
    /// (ns, 0 if that point came first; see [`Slices::wake`]).
    notice: u64,
    /// Whether this thread may have been disturbed (see [`disturbances`])
    /// between the frame's sending and the reader's run.
    disturbed: bool,
}

/// What the reader saw in one scenario.
struct Seen {
    /// Per sequence number.
    frames: Vec<Option<Got>>,
    duplicates: u64,
    /// Frames whose wake could not be placed (something other than the load
    /// tasks ran just before the reader): their notice is their run
    /// latency.
    inexact: u64,
    /// The reader's longest wait in the run queue once woken (the
    /// scheduler's own statistics): time, and other task runs meanwhile.
    queue_max: Duration,
    queue_max_switches: u64,
}

/// Involuntary context switches of the calling thread so far (the kernel
/// preempted it for another thread: time the scheduler could not run), plus
/// the stalls [`spin`] saw on it (which also catch a virtual CPU that its
/// host did not run, invisible to the guest's counts).
fn disturbances() -> i64 {
    // SAFETY: rusage is plain old data: all zeros is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the call's duration.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(r, 0, "getrusage(RUSAGE_THREAD) failed");
    ru.ru_nivcsw + STALLS.with(Cell::get)
}

/// A frame is disturbed (by the host, not by the scheduler) if the thread
/// running the scheduler was disturbed (see [`disturbances`]) between the
/// reader's last frame read before the frame's stamp and its notice, or if
/// the sender took this long from its stamp to the end of `sendto`.
const SEND_SLOW_NS: u64 = 50_000;

/// p50, p99 and max of latencies (ns), and how many are 1 ms or more.
struct Dist {
    n: u64,
    p50: u64,
    p99: u64,
    max: u64,
    over: u64,
}

impl Dist {
    fn of(mut v: Vec<u64>) -> Dist {
        v.sort_unstable();
        let pct = |p: usize| {
            if v.is_empty() {
                0
            } else {
                v[(v.len() * p / 100).min(v.len() - 1)]
            }
        };
        Dist {
            n: v.len() as u64,
            p50: pct(50),
            p99: pct(99),
            max: v.last().copied().unwrap_or(0),
            over: v.iter().filter(|&&l| l >= LIMIT_NS).count() as u64,
        }
    }
}

fn child(tap: &str) {
    let frames = frames_per_scenario();
    let tap = tap.to_string();
    // MKBENCH_CLOCK_EVERY=1: the scheduler reads the TSC after every switch
    // (`Builder::switches_per_clock_read`), for comparison.
    let every = std::env::var("MKBENCH_CLOCK_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(mkernel::DEFAULT_SWITCHES_PER_CLOCK_READ);
    mkernel::Builder::new()
        .switches_per_clock_read(every)
        .net_tap("service", &tap)
        .run(mkernel::net("service"), move |(net, _cfg)| {
            for (i, sc) in SCENARIOS.iter().enumerate() {
                let tag = i as u8 + 1;
                // A short sleep: the scheduler reads the TSC after the idle
                // wait, so the reader's wait statistics start from a fresh
                // reading (the last one is older than this thread's wait
                // for the previous sender).
                mkernel::sleep(Duration::from_millis(1));
                let done = Arc::new(AtomicBool::new(false));
                let seen = Rc::new(RefCell::new(Seen {
                    frames: vec![None; frames as usize],
                    duplicates: 0,
                    inexact: 0,
                    queue_max: Duration::ZERO,
                    queue_max_switches: 0,
                }));
                let slices = Rc::new(Slices::new());
                let k = if matches!(sc.load, Load::None) {
                    0
                } else {
                    LOAD_TASKS as u64
                };
                let reader = {
                    let (net, done, seen) = (net.clone(), done.clone(), seen.clone());
                    let slices = slices.clone();
                    mkernel::spawn(move || {
                        let mut buf = [0u8; 1514 + 4];
                        // (time, disturbances) at each frame read, from the
                        // start: whether the thread was disturbed since a
                        // frame was sent.
                        let mut history = vec![(mkernel::clock_monotonic(), disturbances())];
                        loop {
                            let n = net.read(&mut buf).expect("Net::read");
                            let now = mkernel::clock_monotonic();
                            let sw = mkernel::stats().switches;
                            let Some((t, seq, stamp)) = parse_frame(&buf[..n]) else {
                                continue; // the kernel's own (IPv6 etc.)
                            };
                            if t != tag {
                                continue; // a late end marker of the last scenario
                            }
                            let mut seen = seen.borrow_mut();
                            if seq == END {
                                let me = mkernel::task_stats(mkernel::current_task()).unwrap();
                                seen.queue_max = me.max_wait;
                                seen.queue_max_switches = me.max_wait_switches;
                                done.store(true, Ordering::Release);
                                return;
                            }
                            let p = disturbances();
                            // The last look at the count before the frame was
                            // sent (the first entry if none).
                            let before = history.partition_point(|&(t, _)| t <= stamp);
                            let disturbed = p != history[before.saturating_sub(1)].1;
                            history.push((now, p));
                            match seen.frames.get_mut(seq as usize) {
                                Some(slot @ None) => {
                                    let wake = slices.wake(sw, k, now);
                                    *slot = Some(Got {
                                        run: now.saturating_sub(stamp),
                                        notice: wake.unwrap_or(now).saturating_sub(stamp),
                                        disturbed,
                                    });
                                    if wake.is_none() {
                                        seen.inexact += 1;
                                    }
                                }
                                _ => seen.duplicates += 1,
                            }
                        }
                    })
                };
                let stop = Rc::new(Cell::new(false));
                let loads: Vec<_> = if matches!(sc.load, Load::None) {
                    Vec::new()
                } else {
                    (0..LOAD_TASKS)
                        .map(|_| {
                            let (load, stop, slices) = (sc.load, stop.clone(), slices.clone());
                            mkernel::spawn(move || load_task(load, stop, slices))
                        })
                        .collect()
                };
                let send = {
                    let (tap, done) = (tap.clone(), done.clone());
                    std::thread::spawn(move || sender(&tap, tag, frames, &done))
                };
                reader.join().expect("the reader failed");
                stop.set(true);
                for l in loads {
                    l.join().expect("a load task failed");
                }
                let send_delays = send.join().expect("the sender failed");
                let seen = seen.borrow();
                let mut run = Vec::new();
                let mut notice = Vec::new();
                let mut clean = Vec::new();
                for (got, sent) in seen.frames.iter().zip(&send_delays) {
                    if let Some(g) = *got {
                        run.push(g.run);
                        notice.push(g.notice);
                        let slow_send = sent.is_none_or(|d| d > SEND_SLOW_NS);
                        if !g.disturbed && !slow_send {
                            clean.push(g.notice);
                        }
                    }
                }
                let (run, notice) = (Dist::of(run), Dist::of(notice));
                println!(
                    "notice {} sent={} recv={} notice_p50_ns={} notice_p99_ns={} \
                     notice_max_ns={} notice_over_1ms={} run_p50_ns={} run_p99_ns={} \
                     run_max_ns={} dup={} inexact={} queue_max_ns={} queue_max_switches={} \
                     disturbed={} clean_max_ns={}",
                    sc.name,
                    send_delays.iter().flatten().count(),
                    run.n,
                    notice.p50,
                    notice.p99,
                    notice.max,
                    notice.over,
                    run.p50,
                    run.p99,
                    run.max,
                    seen.duplicates,
                    seen.inexact,
                    seen.queue_max.as_nanos(),
                    seen.queue_max_switches,
                    run.n - clean.len() as u64,
                    clean.iter().max().copied().unwrap_or(0),
                );
            }
        });
}

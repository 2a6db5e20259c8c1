//! Shared pieces: the clock, the calibrated unit of work, statistics.

use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

static BASE: OnceLock<Instant> = OnceLock::new();
static UNIT_ITERS: AtomicU64 = AtomicU64::new(1000);

/// Nanoseconds since the first call, on the same clock for every runtime
/// (`Instant`, a vDSO `clock_gettime`: ~20 ns).
#[inline]
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `iters` rounds of a xorshift generator the optimiser cannot remove.
#[inline(never)]
pub fn spin(iters: u64) -> u64 {
    let mut x = black_box(0x9e37_79b9_7f4a_7c15u64);
    for _ in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// One small unit of CPU work (~[`UNIT_NS`] once [`calibrate`]d).
#[inline]
pub fn unit() {
    spin(UNIT_ITERS.load(Ordering::Relaxed));
}

/// The target length of one unit of work.
pub const UNIT_NS: u64 = 1_800;

/// Sets the unit's iteration count so that it takes ~[`UNIT_NS`] here
/// (median of several timings); returns the measured unit length in ns.
pub fn calibrate() -> f64 {
    let time = |iters: u64| {
        let mut v: Vec<f64> = (0..9)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..200 {
                    spin(iters);
                }
                t.elapsed().as_nanos() as f64 / 200.0
            })
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[4]
    };
    let probe = 10_000;
    let per_iter = time(probe) / probe as f64;
    let iters = ((UNIT_NS as f64 / per_iter) as u64).max(1);
    UNIT_ITERS.store(iters, Ordering::Relaxed);
    time(iters)
}

/// Quantile `q` (0..=1) of `v`, which is sorted.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

pub fn median(v: &[f64]) -> f64 {
    let v = sorted(v.to_vec());
    quantile(&v, 0.5)
}

/// Jain's fairness index of the shares `x`: 1 when all are equal, 1/n when
/// one task got everything.
pub fn jain(x: &[f64]) -> f64 {
    let s: f64 = x.iter().sum();
    let s2: f64 = x.iter().map(|v| v * v).sum();
    if s2 == 0.0 {
        return 0.0;
    }
    s * s / (x.len() as f64 * s2)
}

/// The three runtimes compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rt {
    Mkernel,
    Tokio,
    May,
}

impl Rt {
    pub const ALL: [Rt; 3] = [Rt::Mkernel, Rt::Tokio, Rt::May];

    pub fn name(self) -> &'static str {
        match self {
            Rt::Mkernel => "mkernel",
            Rt::Tokio => "tokio",
            Rt::May => "may",
        }
    }

    /// The order of the runtimes in repetition `rep` (rotated, so that no
    /// runtime always runs right after another one).
    pub fn order(rep: usize) -> [Rt; 3] {
        let mut o = Rt::ALL;
        o.rotate_left(rep % 3);
        o
    }
}

/// A tokio current-thread runtime with timers.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Runs `f` as a `may` coroutine and waits for it (may is configured with
/// one worker thread in `main`).
pub fn may_run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    may::go!(f).join().unwrap()
}

/// A progress line on stderr, rewritten in place.
pub struct Progress {
    done: usize,
    total: usize,
    t0: Instant,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            done: 0,
            total,
            t0: Instant::now(),
        }
    }

    pub fn step(&mut self, what: &str) {
        self.done += 1;
        eprint!(
            "\r\x1b[2K[{:>3}/{}] {:>5.1}s  {what}",
            self.done,
            self.total,
            self.t0.elapsed().as_secs_f64()
        );
    }

    pub fn finish(&self) {
        eprintln!(
            "\r\x1b[2K{} runs in {:.1}s",
            self.total,
            self.t0.elapsed().as_secs_f64()
        );
    }
}

/// Involuntary context switches of the whole process so far: how often
/// the OS took a core away (other processes on a shared machine). A run
/// with many of them has noisy maxima.
pub fn preemptions() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a live, writable rusage that getrusage fills in.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    // SAFETY: the struct holds only integers and was zeroed when created,
    // so it is initialised whether or not getrusage wrote it.
    unsafe { ru.assume_init() }.ru_nivcsw as u64
}

/// Preemptions per run, per scenario and runtime.
#[derive(Default)]
pub struct Noise(Vec<(String, [Vec<f64>; 3])>);

impl Noise {
    /// Runs `f`, counting the preemptions it suffered under `scenario`.
    pub fn measure<T>(&mut self, scenario: &str, rt: Rt, f: impl FnOnce() -> T) -> T {
        let c0 = preemptions();
        let r = f();
        let d = (preemptions() - c0) as f64;
        let i = Rt::ALL.iter().position(|&x| x == rt).unwrap();
        match self.0.iter_mut().find(|(s, _)| s == scenario) {
            Some((_, v)) => v[i].push(d),
            None => {
                let mut v: [Vec<f64>; 3] = Default::default();
                v[i].push(d);
                self.0.push((scenario.to_string(), v));
            }
        }
        r
    }

    /// The median preemptions per run of `scenario` on `rt`.
    pub fn median(&self, scenario: &str, rt: Rt) -> f64 {
        let i = Rt::ALL.iter().position(|&x| x == rt).unwrap();
        self.0
            .iter()
            .find(|(s, _)| s == scenario)
            .map_or(f64::NAN, |(_, v)| median(&v[i]))
    }
}

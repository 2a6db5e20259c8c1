//! Several cores: mkernel's `parallel` and `call` on 2 cores against 1
//! core, and against tokio's multi-threaded runtime (2 workers, CPU work in
//! ordinary tasks, no `spawn_blocking`), rayon (a pool of 2 threads) and
//! may (2 workers), in one run:
//!
//! (a) a parallel merge sort of 10 M integers (split in two recursively,
//!     3 levels deep: 8 leaves sorted with `sort_unstable`, merged back;
//!     the input comes as its 8 leaves, each with a spare piece of its
//!     size, and every merge writes into its inputs' spare pieces, so the
//!     sort copies nothing to split and allocates nothing while timed
//!     (fresh vectors cost 44-98 k page faults per sort, which made it a
//!     measure of the kernel); the merges of the two top levels are each
//!     cut at the merge path's middle into two halves merged at once, as a
//!     parallel merge sort does, so that the top merge does not run on one
//!     core alone and 2 cores have 4 pieces to even out);
//! (b) 1,000 independent CPU-bound jobs of ~1 ms each;
//! (c) the cost of a `call` + `join` round trip between two cores, beside a
//!     `spawn` + `join` on one core and tokio's `spawn` + `await` on its
//!     multi-threaded runtime.
//!
//! `cargo bench --bench parallel`. Each figure is the median of `REPS`
//! repetitions (env `PARALLEL_REPS`, default 5), the runtimes alternating
//! within each repetition. Speed-ups are 1-core time ÷ 2-core time; on a
//! machine whose 2 CPUs are shared with other work they are lower than
//! the hardware allows, for every runtime alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

const SORT_LEN: usize = 10_000_000;
const SORT_DEPTH: u32 = 3;
const JOBS: usize = 1_000;
const JOB_NS: u64 = 1_000_000;
const ROUND_TRIPS: u64 = 20_000;

// ---- the work, the same for every runtime ----

fn random_input(n: usize) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
        .collect()
}

/// A sorted run (or, at a leaf, an unsorted one) kept as pieces of equal
/// length, in order, with as many spare pieces to merge into: the sort
/// allocates nothing while it is timed (see the module docs).
struct Run {
    data: Pieces,
    spare: Pieces,
}

type Pieces = Vec<Vec<u64>>;

/// The input as the sort's leaves, with their spare pieces (made and
/// written before the clock starts, so that no page is first touched by
/// the sort).
fn run_of(input: &[u64]) -> Run {
    let len = input.len().div_ceil(1 << SORT_DEPTH);
    let data: Pieces = input.chunks(len).map(<[u64]>::to_vec).collect();
    let spare = data.iter().map(|p| vec![1; p.len()]).collect();
    Run { data, spare }
}

fn leaf(mut r: Run) -> Run {
    r.data[0].sort_unstable();
    r
}

fn split(mut r: Run) -> (Run, Run) {
    let n = r.data.len() / 2;
    let data = r.data.split_off(n);
    let spare = r.spare.split_off(n);
    (r, Run { data, spare })
}

fn total(p: &[Vec<u64>]) -> usize {
    p.iter().map(Vec::len).sum()
}

/// Element `i` of a run's pieces (all but the last of one length).
fn at(p: &[Vec<u64>], i: usize) -> u64 {
    let len = p[0].len();
    p[i / len][i % len]
}

/// Where a merge stands in one of its inputs.
struct Cursor<'a> {
    pieces: &'a [Vec<u64>],
    piece: usize,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(pieces: &'a [Vec<u64>], i: usize) -> Cursor<'a> {
        let len = pieces.first().map_or(1, Vec::len).max(1);
        let mut c = Cursor {
            pieces,
            piece: i / len,
            at: i % len,
        };
        c.advance(0);
        c
    }

    fn rest(&self) -> &'a [u64] {
        self.pieces.get(self.piece).map_or(&[], |p| &p[self.at..])
    }

    fn advance(&mut self, n: usize) {
        self.at += n;
        while self
            .pieces
            .get(self.piece)
            .is_some_and(|p| self.at == p.len())
        {
            self.piece += 1;
            self.at = 0;
        }
    }
}

/// Fills `out` with the merge of `a` and `b` from positions `i` and `j`
/// (`a` first among equals).
fn merge_into(a: &[Vec<u64>], b: &[Vec<u64>], i: usize, j: usize, out: &mut [Vec<u64>]) {
    let (mut ca, mut cb) = (Cursor::new(a, i), Cursor::new(b, j));
    for o in out.iter_mut() {
        let mut w = 0;
        while w < o.len() {
            let (sa, sb, dst) = (ca.rest(), cb.rest(), &mut o[w..]);
            let (mut x, mut y, mut k) = (0, 0, 0);
            if sa.is_empty() || sb.is_empty() {
                let src = if sa.is_empty() { sb } else { sa };
                assert!(!src.is_empty(), "a merge's inputs ran out");
                k = dst.len().min(src.len());
                dst[..k].copy_from_slice(&src[..k]);
                if sa.is_empty() { y = k } else { x = k }
            } else {
                while k < dst.len() && x < sa.len() && y < sb.len() {
                    if sa[x] <= sb[y] {
                        dst[k] = sa[x];
                        x += 1;
                    } else {
                        dst[k] = sb[y];
                        y += 1;
                    }
                    k += 1;
                }
            }
            ca.advance(x);
            cb.advance(y);
            w += k;
        }
    }
}

/// `a` and `b` merged into their spare pieces; their own pieces become
/// the spare ones.
fn merge(a: Run, b: Run) -> Run {
    let mut data = a.spare;
    data.extend(b.spare);
    merge_into(&a.data, &b.data, 0, 0, &mut data);
    let mut spare = a.data;
    spare.extend(b.data);
    Run { data, spare }
}

/// A merge (of the two top levels) as two independent halves, each
/// filling half of the output pieces: the lower from the start of `a` and
/// `b`, the upper from `a[i..]` and `b[j..]` (the merge path's split at the
/// middle: `a[..i]` and `b[..j]` are the output's lower half). Each runtime
/// runs the two at once.
struct Halves {
    a: Pieces,
    b: Pieces,
    i: usize,
    j: usize,
}

/// The shared inputs, and the lower and upper output pieces.
fn halves(a: Run, b: Run) -> (std::sync::Arc<Halves>, Pieces, Pieces) {
    let mut lo = a.spare;
    lo.extend(b.spare);
    let hi = lo.split_off(lo.len() / 2);
    let (i, j) = co_rank(&a.data, &b.data, total(&lo));
    let h = Halves {
        a: a.data,
        b: b.data,
        i,
        j,
    };
    (std::sync::Arc::new(h), lo, hi)
}

/// How many of the merge's first `k` elements come from `a` and from `b`.
fn co_rank(a: &[Vec<u64>], b: &[Vec<u64>], k: usize) -> (usize, usize) {
    let (la, lb) = (total(a), total(b));
    let (mut lo, mut hi) = (k.saturating_sub(lb), k.min(la));
    loop {
        let i = (lo + hi) / 2;
        let j = k - i;
        if i < la && j > 0 && at(a, i) <= at(b, j - 1) {
            lo = i + 1; // a[i] comes before b[j - 1]: more of `a`
        } else if i > 0 && j < lb && at(a, i - 1) > at(b, j) {
            hi = i - 1; // b[j] comes before a[i - 1]: less of `a`
        } else {
            return (i, j);
        }
    }
}

/// One half merged into its output pieces.
fn half(h: &Halves, upper: bool, mut out: Pieces) -> Pieces {
    let (i, j) = if upper { (h.i, h.j) } else { (0, 0) };
    merge_into(&h.a, &h.b, i, j, &mut out);
    out
}

/// Both halves done: the inputs are the spare pieces again.
fn join_halves(h: std::sync::Arc<Halves>, mut lo: Pieces, hi: Pieces) -> Run {
    let h = std::sync::Arc::into_inner(h).expect("both halves have ended");
    lo.extend(hi);
    let mut spare = h.a;
    spare.extend(h.b);
    Run { data: lo, spare }
}

/// The output is the input sorted: in order, as long, the same sum.
fn check_sorted(r: &Run, input: &[u64]) {
    let out = || r.data.iter().flatten().copied();
    assert_eq!(out().count(), input.len());
    let sum = |v: &mut dyn Iterator<Item = u64>| v.fold(0u64, u64::wrapping_add);
    assert_eq!(
        sum(&mut out()),
        sum(&mut input.iter().copied()),
        "not a permutation"
    );
    let mut prev = 0;
    assert!(
        out().all(|x| std::mem::replace(&mut prev, x) <= x),
        "not sorted"
    );
}

/// Iterations of `spin` per ns, measured once.
fn calibrate() -> f64 {
    let n = 20_000_000u64;
    let start = Instant::now();
    black_box(spin(n));
    n as f64 / start.elapsed().as_nanos() as f64
}

fn spin(n: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..n {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    x
}

// ---- mkernel ----

fn mk_sort(r: Run, depth: u32) -> Run {
    if depth == 0 {
        return leaf(r);
    }
    let (a, b) = split(r);
    let mut r = mkernel::parallel(move |h| mk_sort(h, depth - 1), vec![a, b]);
    let b = r.pop().unwrap().unwrap();
    let a = r.pop().unwrap().unwrap();
    if depth + 1 < SORT_DEPTH {
        return merge(a, b);
    }
    let (h, lo, hi) = halves(a, b);
    let h2 = h.clone();
    let mut r = mkernel::parallel(
        move |(upper, out)| half(&h2, upper, out),
        vec![(false, lo), (true, hi)],
    );
    let hi = r.pop().unwrap().unwrap();
    let lo = r.pop().unwrap().unwrap();
    join_halves(h, lo, hi)
}

fn mkernel_sort(cores: usize, input: &[u64]) -> Duration {
    let r = run_of(input);
    let (t, out) = mkernel::Builder::new().cores(cores).run((), move |()| {
        let start = Instant::now();
        let out = mk_sort(r, SORT_DEPTH);
        (start.elapsed(), out)
    });
    check_sorted(&out, input);
    t
}

fn mkernel_jobs(cores: usize, iters: u64) -> Duration {
    mkernel::Builder::new().cores(cores).run((), move |()| {
        let start = Instant::now();
        let r = mkernel::parallel(move |_| spin(iters), vec![(); JOBS]);
        let t = start.elapsed();
        assert!(r.iter().all(Result::is_ok));
        t
    })
}

fn mkernel_call_round_trip() -> Duration {
    mkernel::Builder::new().cores(2).run((), |()| {
        for _ in 0..1000 {
            mkernel::call(|| 1u64).join().unwrap();
        }
        let start = Instant::now();
        let mut sum = 0;
        for i in 0..ROUND_TRIPS {
            sum += mkernel::call(move || i).join().unwrap();
        }
        let t = start.elapsed();
        black_box(sum);
        t
    })
}

fn mkernel_spawn_round_trip() -> Duration {
    mkernel::run((), |()| {
        let start = Instant::now();
        let mut sum = 0;
        for i in 0..ROUND_TRIPS {
            sum += mkernel::spawn(move || i).join().unwrap();
        }
        let t = start.elapsed();
        black_box(sum);
        t
    })
}

// ---- rayon ----

fn rayon_pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn rayon_sort_rec(r: Run, depth: u32) -> Run {
    if depth == 0 {
        return leaf(r);
    }
    let (a, b) = split(r);
    let (a, b) = rayon::join(
        move || rayon_sort_rec(a, depth - 1),
        move || rayon_sort_rec(b, depth - 1),
    );
    if depth + 1 < SORT_DEPTH {
        return merge(a, b);
    }
    let (h, lo, hi) = halves(a, b);
    let (lo, hi) = rayon::join(|| half(&h, false, lo), || half(&h, true, hi));
    join_halves(h, lo, hi)
}

fn rayon_sort(pool: &rayon::ThreadPool, input: &[u64]) -> Duration {
    let r = run_of(input);
    let start = Instant::now();
    let out = pool.install(move || rayon_sort_rec(r, SORT_DEPTH));
    let t = start.elapsed();
    check_sorted(&out, input);
    t
}

fn rayon_jobs(pool: &rayon::ThreadPool, iters: u64) -> Duration {
    use rayon::prelude::*;
    let start = Instant::now();
    let r: Vec<u64> = pool.install(|| (0..JOBS).into_par_iter().map(|_| spin(iters)).collect());
    let t = start.elapsed();
    black_box(r);
    t
}

// ---- tokio (multi-threaded, 2 workers) ----

fn tokio_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .unwrap()
}

fn tokio_sort_rec(
    r: Run,
    depth: u32,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Run> + Send>> {
    Box::pin(async move {
        if depth == 0 {
            return leaf(r);
        }
        let (a, b) = split(r);
        let hb = tokio::spawn(tokio_sort_rec(b, depth - 1));
        let a = tokio_sort_rec(a, depth - 1).await;
        let b = hb.await.unwrap();
        if depth + 1 < SORT_DEPTH {
            return merge(a, b);
        }
        let (h, lo, hi) = halves(a, b);
        let h2 = h.clone();
        let hi = tokio::spawn(async move { half(&h2, true, hi) });
        let lo = half(&h, false, lo);
        let hi = hi.await.unwrap();
        join_halves(h, lo, hi)
    })
}

fn tokio_sort(rt: &tokio::runtime::Runtime, input: &[u64]) -> Duration {
    let r = run_of(input);
    let start = Instant::now();
    let out = rt
        .block_on(rt.spawn(tokio_sort_rec(r, SORT_DEPTH)))
        .unwrap();
    let t = start.elapsed();
    check_sorted(&out, input);
    t
}

fn tokio_jobs(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    let start = Instant::now();
    rt.block_on(async move {
        let hs: Vec<_> = (0..JOBS)
            .map(|_| tokio::spawn(async move { spin(iters) }))
            .collect();
        for h in hs {
            black_box(h.await.unwrap());
        }
    });
    start.elapsed()
}

fn tokio_round_trip(rt: &tokio::runtime::Runtime) -> Duration {
    rt.block_on(rt.spawn(async {
        let start = Instant::now();
        let mut sum = 0;
        for i in 0..ROUND_TRIPS {
            sum += tokio::spawn(async move { i }).await.unwrap();
        }
        black_box(sum);
        start.elapsed()
    }))
    .unwrap()
}

// ---- may (2 workers) ----

fn may_sort_rec(r: Run, depth: u32) -> Run {
    if depth == 0 {
        return leaf(r);
    }
    let (a, b) = split(r);
    let hb = may::go!(move || may_sort_rec(b, depth - 1));
    let a = may_sort_rec(a, depth - 1);
    let b = hb.join().unwrap();
    if depth + 1 < SORT_DEPTH {
        return merge(a, b);
    }
    let (h, lo, hi) = halves(a, b);
    let h2 = h.clone();
    let hi = may::go!(move || half(&h2, true, hi));
    let lo = half(&h, false, lo);
    let hi = hi.join().unwrap();
    join_halves(h, lo, hi)
}

fn may_sort(input: &[u64]) -> Duration {
    let r = run_of(input);
    let start = Instant::now();
    let out = may::go!(move || may_sort_rec(r, SORT_DEPTH))
        .join()
        .unwrap();
    let t = start.elapsed();
    check_sorted(&out, input);
    t
}

fn may_jobs(iters: u64) -> Duration {
    let start = Instant::now();
    let hs: Vec<_> = (0..JOBS).map(|_| may::go!(move || spin(iters))).collect();
    for h in hs {
        black_box(h.join().unwrap());
    }
    start.elapsed()
}

// ---- the run ----

/// A runtime's way to do one case: its name, and a run that times it.
type Case<'a> = (&'a str, Box<dyn Fn() -> Duration + 'a>);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let reps: usize = std::env::var("PARALLEL_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    // may's worker count is process-wide and set once: 2 workers (its
    // 1-worker figures would need another process).
    may::config().set_workers(2).set_stack_size(0x10000);
    let per_ns = calibrate();
    let iters = (JOB_NS as f64 * per_ns) as u64;
    let input = random_input(SORT_LEN);
    let (pool1, pool2) = (rayon_pool(1), rayon_pool(2));
    let (tok1, tok2) = (tokio_rt(1), tokio_rt(2));
    println!(
        "parallel: {} CPUs available; medians of {reps} repetitions",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let sort_cases: Vec<Case> = vec![
        ("mkernel 1 core", Box::new(|| mkernel_sort(1, &input))),
        ("mkernel 2 cores", Box::new(|| mkernel_sort(2, &input))),
        ("rayon 1 thread", Box::new(|| rayon_sort(&pool1, &input))),
        ("rayon 2 threads", Box::new(|| rayon_sort(&pool2, &input))),
        ("tokio 1 worker", Box::new(|| tokio_sort(&tok1, &input))),
        ("tokio 2 workers", Box::new(|| tokio_sort(&tok2, &input))),
        ("may 2 workers", Box::new(|| may_sort(&input))),
    ];
    let job_cases: Vec<Case> = vec![
        ("mkernel 1 core", Box::new(|| mkernel_jobs(1, iters))),
        ("mkernel 2 cores", Box::new(|| mkernel_jobs(2, iters))),
        ("rayon 1 thread", Box::new(|| rayon_jobs(&pool1, iters))),
        ("rayon 2 threads", Box::new(|| rayon_jobs(&pool2, iters))),
        ("tokio 1 worker", Box::new(|| tokio_jobs(&tok1, iters))),
        ("tokio 2 workers", Box::new(|| tokio_jobs(&tok2, iters))),
        ("may 2 workers", Box::new(|| may_jobs(iters))),
    ];
    let trip_cases: Vec<Case> = vec![
        (
            "mkernel call+join, 2 cores",
            Box::new(mkernel_call_round_trip),
        ),
        (
            "mkernel spawn+join, 1 core",
            Box::new(mkernel_spawn_round_trip),
        ),
        (
            "tokio spawn+await, 2 workers",
            Box::new(|| tokio_round_trip(&tok2)),
        ),
    ];
    let run = |name: &str, cases: &[Case]| -> Vec<Duration> {
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
        // Warm-up (threads, stacks, page faults), then alternating reps.
        for (_, f) in cases {
            black_box(f());
        }
        for rep in 0..reps {
            for k in 0..cases.len() {
                let i = (k + rep) % cases.len();
                times[i].push((cases[i].1)());
            }
            eprint!("\r{name}: {}/{reps}", rep + 1);
        }
        eprintln!();
        times.into_iter().map(median).collect()
    };

    let sort = run("merge sort", &sort_cases);
    let jobs = run("1 ms jobs", &job_cases);
    let trips = run("round trips", &trip_cases);

    println!("\n=== (a) merge sort of 10 M u64, 8 leaves: ms (speed-up 1 → 2) ===");
    print_pairs(&sort_cases, &sort);
    println!("\n=== (b) {JOBS} independent ~1 ms jobs: ms (speed-up 1 → 2) ===");
    print_pairs(&job_cases, &jobs);
    println!("\n=== (c) round trip: ns each ===");
    for ((name, _), t) in trip_cases.iter().zip(&trips) {
        println!(
            "{name:<32} {:>9.0}",
            t.as_nanos() as f64 / ROUND_TRIPS as f64
        );
    }
    println!(
        "\nsummary: mkernel 2 cores vs 1: sort {:.2}x, jobs {:.2}x; 2-core time ÷ peer's: sort rayon {:.2} tokio {:.2} may {:.2}; jobs rayon {:.2} tokio {:.2} may {:.2}",
        ms(sort[0]) / ms(sort[1]),
        ms(jobs[0]) / ms(jobs[1]),
        ms(sort[1]) / ms(sort[3]),
        ms(sort[1]) / ms(sort[5]),
        ms(sort[1]) / ms(sort[6]),
        ms(jobs[1]) / ms(jobs[3]),
        ms(jobs[1]) / ms(jobs[5]),
        ms(jobs[1]) / ms(jobs[6]),
    );
}

fn print_pairs(cases: &[Case<'_>], t: &[Duration]) {
    for (i, (name, _)) in cases.iter().enumerate() {
        let speed = match name {
            n if n.contains(" 2 ") && i > 0 && !n.starts_with("may") => {
                format!("  x{:.2}", ms(t[i - 1]) / ms(t[i]))
            }
            _ => String::new(),
        };
        println!("{name:<20} {:>9.1}{speed}", ms(t[i]));
    }
}

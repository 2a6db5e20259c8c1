//! Several cores (hosted): Miou's `call` and `parallel`, and the messages
//! between the schedulers of one run.
//!
//! Each core is a scheduler on its own thread, with its own run queue,
//! stacks and event source; tasks never move. A [`call`] is two tasks:
//!
//! - on the caller's core, a *proxy*: an ordinary child of the caller
//!   (so `join`, `cancel`, `join_any`, rules 1 to 3 and the violation
//!   messages work unchanged, and name the call's site), which waits on a
//!   syscall for the result;
//! - on the target core, the *called* task, with no local parent, which
//!   runs the function; when it ends (returns, panics, or is cancelled),
//!   its core stores the result in the call's shared record and posts the
//!   proxy's syscall back to the caller's core.
//!
//! Messages go through a core's inbox (a mutex-protected list and a flag),
//! and the core's [`Waker`](crate::sys::Waker) (an eventfd in its epoll
//! set) wakes it if it sleeps: an idle core waits in one system call, and
//! a message to it is served at once. A core that is running tasks looks
//! at the flag where it looks at its devices: when its event source says it
//! may have something, at least every ~100 µs in a run with several cores
//! (so the single-core fast path has no check of its own).
//!
//! Cancelling a proxy cancels the called task synchronously: the
//! canceller's core posts the request and blocks until the called task's
//! core reports it ended (its destructors ran). While it blocks, it still
//! serves the cancellation requests posted to it, so that cancellations
//! crossing each other (a call whose own calls run on the canceller's core)
//! cannot deadlock.

use super::Error;
use super::Violation;
use super::lifecycle::{cancel_task, drop_if_unreferenced, spawn_raw};
use super::promise::{Promise, spawn};
use super::scheduler::{self, Scheduler, deliver, with};
use super::syscall::{Syscall, SyscallId};
use super::task::{State, TaskRef, Wait};
use crate::sys::Waker;
use core::any::Any;
use core::panic::Location;
use std::collections::HashMap;
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A called task's function, on its way to its core: it returns its value
/// boxed twice (the outer box is the task table's, the inner one is `Send`,
/// so that the value may cross back to the caller's core).
type Job = Box<dyn FnOnce() -> Box<dyn Any> + Send>;

/// A called task's result as it crosses back to the caller's core.
type Outcome = Result<Box<dyn Any + Send>, Error>;

/// The cores of one run, shared by their threads.
pub(crate) struct CoreSet {
    cores: Vec<Core>,
    /// Round-robin choice of a call's core.
    next: AtomicUsize,
    /// The run is over: the cores other than the first stop.
    stop: AtomicBool,
}

impl core::fmt::Debug for CoreSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CoreSet({} cores)", self.cores.len())
    }
}

struct Core {
    inbox: Mutex<Vec<Msg>>,
    /// Something is in the inbox (read by the run loop without the lock).
    pending: AtomicBool,
    /// The core waits (or is about to) for its waker: a message must
    /// notify it. A core that is running tasks will see `pending` anyway,
    /// so posting to it costs no system call.
    asleep: AtomicBool,
    /// Messages posted so far: a core blocked in a cancellation sleeps
    /// until a new one comes (it leaves some in the inbox meanwhile).
    posted: AtomicU64,
    waker: Waker,
}

enum Msg {
    /// Start this call's task here.
    Start(Arc<Call>),
    /// Cancel this call's task (running here), then report.
    Cancel(Arc<Call>),
    /// A called task ended: signal its proxy's syscall.
    Done(SyscallId),
    /// A rule was broken on another core: the run stops (to the first core).
    Violation(Violation),
}

/// What the caller's and the target's cores share about one call.
struct Call {
    /// The caller's core, and the core that runs the called task.
    home: usize,
    target: usize,
    /// The syscall the proxy waits on.
    id: SyscallId,
    site: &'static Location<'static>,
    state: Mutex<CallState>,
}

struct CallState {
    /// The function, until the target core starts it (or the caller
    /// cancels it first and drops it).
    job: Option<Job>,
    /// The called task, once started.
    task: Option<TaskRef>,
    result: Option<Outcome>,
    /// The called task ended (or never started and never will).
    ended: bool,
    /// The caller cancels it: it waits for `ended` rather than a signal.
    cancel: bool,
}

/// A core's link to the others, in its scheduler.
pub(crate) struct Multi {
    set: Arc<CoreSet>,
    me: usize,
    /// The tasks called from other cores that run here, by task uid.
    served: HashMap<u64, Arc<Call>>,
}

/// Locks `m`, ignoring poisoning: the data is a plain record that no
/// panic leaves half-written (nothing that can panic runs under the lock).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CoreSet {
    /// The shared state of a run with `n` cores (n ≥ 2).
    pub(crate) fn new(n: usize) -> std::io::Result<Arc<CoreSet>> {
        let mut cores = Vec::with_capacity(n);
        for _ in 0..n {
            cores.push(Core {
                inbox: Mutex::new(Vec::new()),
                pending: AtomicBool::new(false),
                asleep: AtomicBool::new(false),
                posted: AtomicU64::new(0),
                waker: Waker::new()?,
            });
        }
        Ok(Arc::new(CoreSet {
            cores,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }))
    }

    /// How many cores.
    pub(crate) fn len(&self) -> usize {
        self.cores.len()
    }

    /// Core `k`'s waker, for its event source's idle wait.
    pub(crate) fn waker(&self, k: usize) -> &Waker {
        &self.cores[k].waker
    }

    /// Ends the run: every core other than the first stops once idle.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for c in &self.cores {
            c.waker.notify();
        }
    }

    /// Whether the run is over.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn post(&self, to: usize, msg: Msg) {
        let core = &self.cores[to];
        lock(&core.inbox).push(msg);
        core.posted.fetch_add(1, Ordering::SeqCst);
        core.pending.store(true, Ordering::SeqCst);
        // Paired with `going_to_sleep`: either the core sees `pending`
        // before it sleeps, or we see it asleep and wake it.
        if core.asleep.load(Ordering::SeqCst) {
            core.waker.notify();
        }
    }

    /// A core for a call from core `me`: another one, in turn.
    fn target(&self, me: usize) -> usize {
        let k = self.next.fetch_add(1, Ordering::Relaxed) % (self.cores.len() - 1);
        if k >= me { k + 1 } else { k }
    }
}

impl Multi {
    pub(crate) fn new(set: Arc<CoreSet>, me: usize) -> Multi {
        Multi {
            set,
            me,
            served: HashMap::new(),
        }
    }

    /// Whether messages wait in this core's inbox (a load, no lock).
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.set.cores[self.me].pending.load(Ordering::Relaxed)
    }

    /// This core's index.
    pub(crate) fn me(&self) -> usize {
        self.me
    }

    /// The run's cores.
    pub(crate) fn set(&self) -> &Arc<CoreSet> {
        &self.set
    }

    /// Marks the core about to wait; false (and not marked) when messages
    /// came meanwhile, which must be served first, or when the run is over
    /// (its wake-up may have been consumed by an earlier wait).
    pub(crate) fn going_to_sleep(&self) -> bool {
        let core = &self.set.cores[self.me];
        core.asleep.store(true, Ordering::SeqCst);
        if core.pending.load(Ordering::SeqCst) || self.set.stopping() {
            core.asleep.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The core waits no more.
    pub(crate) fn awake(&self) {
        self.set.cores[self.me]
            .asleep
            .store(false, Ordering::Relaxed);
    }
}

/// The core the current task runs on: 0 in a run with one core, else
/// its index among the run's cores ([`Builder::cores`](crate::Builder::cores)),
/// the first core (which runs the main task) being 0.
///
/// ```
/// let (main, called) = mkernel::Builder::new().cores(2).run((), |()| {
///     let p = mkernel::call(mkernel::current_core);
///     (mkernel::current_core(), p.join().unwrap())
/// });
/// assert_eq!((main, called), (0, 1));
/// ```
#[must_use]
pub fn current_core() -> usize {
    with(|s| s.multi.as_ref().map_or(0, |m| m.me))
}

/// Runs `f` as a child of the current task on another core (Miou's
/// `call`), and returns its promise.
///
/// The child is the caller's like any [`spawn`]ed one: only the caller
/// joins or cancels it, it must be joined or cancelled before the caller
/// returns ([`Violation::StillHasChildren`] names the line of the `call`),
/// a panic in it reaches the caller's [`join`](Promise::join) as
/// [`Error::Panicked`], and [`cancel`](Promise::cancel) is synchronous
/// across cores: when it returns, the called task and its descendants have
/// ended and their destructors ran. The task never runs on the caller's
/// core, nor moves; successive calls go to the other cores in turn.
///
/// `f` and its value cross cores, so they are `Send`; devices (a
/// [`Net`](crate::Net), a [`Block`](crate::Block), a
/// [`Stack`](crate::net::stack::Stack)) and [`Resource`](crate::Resource)s
/// are not, and stay on the core that owns them: hand the CPU work to
/// `call`, keep the I/O where the device is. Where Miou hands resources to
/// a called task (`call ~give`), here the compiler refuses it:
///
/// ```compile_fail
/// mkernel::Builder::new().cores(2).run((), |()| {
///     let r = mkernel::Resource::new("fd 3", |_| ());
///     r.own();
///     // error: `Resource` cannot be sent between threads safely
///     mkernel::call(move || r.release()).join().unwrap();
/// });
/// ```
///
/// In a run with one core (the default, and always on Solo5), `call` runs
/// `f` on that core, as [`spawn`] does: concurrently, not in parallel (Miou
/// raises `No_domain_available` there instead; here the same program runs
/// on both platforms).
///
/// ```
/// let v = mkernel::Builder::new().cores(2).run((), |()| {
///     let p = mkernel::call(|| (1..=10u64).product::<u64>());
///     p.join().unwrap()
/// });
/// assert_eq!(v, 3_628_800);
/// ```
#[track_caller]
pub fn call<T, F>(f: F) -> Promise<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let site = Location::caller();
    let target = with(|s| s.multi.as_ref().map(|m| (m.set.clone(), m.me)));
    match target {
        None => spawn(f),
        Some((set, me)) => {
            let to = set.target(me);
            call_on(&set, me, to, f, site)
        }
    }
}

/// Posts `f` to core `to` and makes its proxy, a child of the current task.
fn call_on<T, F>(
    set: &Arc<CoreSet>,
    me: usize,
    to: usize,
    f: F,
    site: &'static Location<'static>,
) -> Promise<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // Outside a task this panics here, before anything is posted.
    let _ = scheduler::current();
    let job: Job = Box::new(move || Box::new(Box::new(f()) as Box<dyn Any + Send>) as Box<dyn Any>);
    let call = Arc::new(Call {
        home: me,
        target: to,
        id: Syscall::new().id(),
        site,
        state: Mutex::new(CallState {
            job: Some(job),
            task: None,
            result: None,
            ended: false,
            cancel: false,
        }),
    });
    set.post(to, Msg::Start(call.clone()));
    let handle = Handle {
        call,
        set: set.clone(),
        taken: false,
    };
    let proxy = move || -> Box<dyn Any> {
        let mut h = handle;
        match h.wait() {
            Ok(v) => Box::new(
                *v.downcast::<T>()
                    .expect("a called task's result has its promise's type"),
            ),
            Err(Error::Panicked(p)) => resume_unwind(p),
            Err(Error::Cancelled) => resume_unwind(Box::new(
                "mkernel: the called task was cancelled on its core (the run is stopping)",
            )),
        }
    };
    let (task, rotate) = spawn_raw(proxy, site, false);
    let p = Promise::from_task(task);
    if rotate {
        scheduler::yield_current();
    }
    p
}

/// The caller's side of a call (in its proxy task): dropped before the
/// result was taken (the proxy is cancelled, or dropped unstarted), it
/// cancels the called task, synchronously.
struct Handle {
    call: Arc<Call>,
    set: Arc<CoreSet>,
    taken: bool,
}

impl Handle {
    /// Waits for the called task's result.
    fn wait(&mut self) -> Outcome {
        loop {
            if scheduler::register_syscall(self.call.id) {
                scheduler::park(Wait::Syscall(self.call.id));
            }
            let r = lock(&self.call.state).result.take();
            if let Some(r) = r {
                self.taken = true;
                return r;
            }
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.taken {
            cancel_call(&self.set, &self.call);
        }
    }
}

/// Cancels a call from its caller's core and returns once the called task
/// ended (or was withdrawn before it started).
fn cancel_call(set: &CoreSet, call: &Arc<Call>) {
    let mut st = lock(&call.state);
    if st.ended {
        let r = st.result.take();
        drop(st);
        drop(r);
        return;
    }
    if let Some(job) = st.job.take() {
        // Not started yet: withdrawn here (its closure dropped on this
        // core; the target will find the start message empty).
        st.ended = true;
        drop(st);
        drop(job);
        return;
    }
    st.cancel = true;
    drop(st);
    set.post(call.target, Msg::Cancel(call.clone()));
    let me = &set.cores[call.home];
    loop {
        if lock(&call.state).ended {
            break;
        }
        let seen = me.posted.load(Ordering::SeqCst);
        serve_cancels(set, call.home);
        if lock(&call.state).ended || set.stopping() {
            // Ended; or the run is over (the first core is gone, and every
            // core ends its tasks): nobody would report.
            break;
        }
        // Sleep until the called task's core reports, or a new message
        // comes (perhaps a cancellation to serve); not for those left in
        // the inbox for the run loop.
        me.asleep.store(true, Ordering::SeqCst);
        if me.posted.load(Ordering::SeqCst) == seen && !lock(&call.state).ended {
            me.waker.wait();
        }
        me.asleep.store(false, Ordering::SeqCst);
    }
    let r = lock(&call.state).result.take();
    drop(r);
}

/// While blocked in a cancellation: serves the cancellation requests in
/// this core's inbox, and leaves the other messages for the run loop.
fn serve_cancels(set: &CoreSet, me: usize) {
    let core = &set.cores[me];
    if !core.pending.swap(false, Ordering::SeqCst) {
        return;
    }
    let msgs = core::mem::take(&mut *lock(&core.inbox));
    let mut rest = Vec::new();
    for m in msgs {
        match m {
            Msg::Cancel(call) => {
                if !cancel_called(&call) {
                    rest.push(Msg::Cancel(call));
                }
            }
            other => rest.push(other),
        }
    }
    if !rest.is_empty() {
        let mut inbox = lock(&core.inbox);
        let newer = core::mem::take(&mut *inbox);
        *inbox = rest;
        inbox.extend(newer);
        drop(inbox);
        core.pending.store(true, Ordering::SeqCst);
    }
}

/// Serves this core's inbox (the run loop, when `Multi::pending`).
pub(crate) fn serve_inbox() {
    let Some((set, me)) = with(|s| s.multi.as_ref().map(|m| (m.set.clone(), m.me))) else {
        return;
    };
    let core = &set.cores[me];
    core.pending.store(false, Ordering::SeqCst);
    let msgs = core::mem::take(&mut *lock(&core.inbox));
    for m in msgs {
        match m {
            Msg::Start(call) => start_called(&call),
            Msg::Cancel(call) => {
                if !cancel_called(&call) {
                    // Not expected here (no task runs): try again later.
                    set.post(me, Msg::Cancel(call));
                }
            }
            Msg::Done(id) => with(|s| deliver(s, id)),
            Msg::Violation(v) => with(|s| s.record_violation(v)),
        }
    }
}

/// Starts a task called from another core.
fn start_called(call: &Arc<Call>) {
    let Some(job) = lock(&call.state).job.take() else {
        return; // withdrawn by its caller
    };
    let t = with(|s| {
        let t = s.alloc_slot(None, call.site, job);
        // Its "parent" waits on another core: `complete` reports there.
        s.tasks[t.idx as usize].joined_by_parent = true;
        if let Some(m) = s.multi.as_mut() {
            m.served.insert(t.uid, call.clone());
        }
        s.enqueue(t);
        t
    });
    lock(&call.state).task = Some(t);
}

/// Cancels a task called from another core (its caller asked); false
/// when it cannot be now, because it or one of its descendants is the task
/// that runs here (blocked in a cancellation of its own, which is where
/// this is served from): the request waits in the inbox until that task
/// gave the CPU back.
fn cancel_called(call: &Arc<Call>) -> bool {
    let Some(t) = lock(&call.state).task else {
        return true;
    };
    let state = with(|s| {
        s.slot(t)
            .map(|sl| (sl.state, sl.cancelling, runs_within(s, t)))
    });
    match state {
        Some((_, false, true)) => false,
        Some((st, false, false)) if !st.is_finished() => {
            // Its end is reported by `after_finish`, through `report`.
            cancel_task(t);
            drop_if_unreferenced(t);
            true
        }
        // Finished (reported), or being cancelled (reported when done).
        _ => true,
    }
}

/// Whether `t` or one of its descendants is on the CPU here: the task
/// running (blocked in a cancellation of its own), or one being cancelled
/// under it. Cancelling `t` now would have to unwind a stack that is in use.
fn runs_within(s: &Scheduler, t: TaskRef) -> bool {
    s.tasks.iter().enumerate().any(|(i, sl)| {
        if sl.uid == 0 || !matches!(sl.state, State::Running) {
            return false;
        }
        let mut cur = Some(TaskRef {
            idx: i as u32,
            uid: sl.uid,
        });
        while let Some(c) = cur {
            if c == t {
                return true;
            }
            cur = s.slot(c).and_then(|x| x.parent);
        }
        false
    })
}

/// A task called from another core ended: its result goes to the caller's
/// core, and its record here is freed by the caller of this function.
#[cold]
pub(crate) fn report(s: &mut Scheduler, t: TaskRef) {
    let Some(m) = s.multi.as_mut() else { return };
    let Some(call) = m.served.remove(&t.uid) else {
        return;
    };
    let set = m.set.clone();
    let slot = &mut s.tasks[t.idx as usize];
    slot.promise_alive = false;
    slot.joined_by_parent = false;
    let result: Outcome = match slot.result.take() {
        Some(Ok(v)) => match v.downcast::<Box<dyn Any + Send>>() {
            Ok(v) => Ok(*v),
            Err(_) => fatal_type(),
        },
        Some(Err(e)) => Err(e),
        None => Err(Error::Cancelled),
    };
    slot.state = State::Consumed;
    let mut st = lock(&call.state);
    st.result = Some(result);
    st.ended = true;
    let cancel = st.cancel;
    drop(st);
    if cancel {
        // The caller blocks in `cancel_call`, watching `ended`.
        set.cores[call.home].waker.notify();
    } else {
        set.post(call.home, Msg::Done(call.id));
    }
}

#[cold]
fn fatal_type() -> ! {
    scheduler::fatal("mkernel: internal error: a called task's value is not sendable")
}

/// A rule was broken on this core (not the first): the first core hears
/// of it and stops the run.
pub(crate) fn report_violation(set: &CoreSet, v: Violation) {
    set.post(0, Msg::Violation(v));
}

/// Runs `f` on every item, in parallel over the run's cores (Miou's
/// `parallel`, fork-join), and returns the results in the items' order.
///
/// Item `i` runs on core `(c + i) % n`, `c` being the caller's core and
/// `n` the number of cores: unlike Miou, which leaves its first domain out,
/// the caller's core takes its share (as a [`spawn`]ed child), so that two
/// cores make two workers. A panic in `f` is that item's
/// [`Error::Panicked`]; the others still run. With one core, the items run
/// one after the other's suspension points, on that core.
///
/// ```
/// let squares = mkernel::Builder::new().cores(2).run((), |()| {
///     mkernel::parallel(|x: u64| x * x, (0..8).collect())
/// });
/// let squares: Vec<u64> = squares.into_iter().map(Result::unwrap).collect();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
/// ```
#[track_caller]
pub fn parallel<A, R, F>(f: F, items: Vec<A>) -> Vec<Result<R, Error>>
where
    A: Send + 'static,
    R: Send + 'static,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    let site = Location::caller();
    let f = Arc::new(f);
    let multi = with(|s| s.multi.as_ref().map(|m| (m.set.clone(), m.me)));
    let local = |f: Arc<F>, a: A| {
        let (task, rotate) = spawn_raw(move || Box::new(f(a)) as Box<dyn Any>, site, false);
        let p = Promise::from_task(task);
        if rotate {
            scheduler::yield_current();
        }
        p
    };
    let Some((set, me)) = multi else {
        let promises = items.into_iter().map(|a| local(f.clone(), a)).collect();
        return super::promise::join_all(promises);
    };
    // Every other core's items are posted before the caller's core starts
    // on its own share: spawning first would let a yield of the caller run
    // local items for a while, and the other cores would wait for work.
    let n = set.len();
    let mut mine = Vec::new();
    let mut slots: Vec<Option<Promise<R>>> = items
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let to = (me + i) % n;
            if to == me {
                mine.push((i, a));
                None
            } else {
                let f = f.clone();
                Some(call_on(&set, me, to, move || f(a), site))
            }
        })
        .collect();
    for (i, a) in mine {
        slots[i] = Some(local(f.clone(), a));
    }
    let promises = slots
        .into_iter()
        .map(|p| p.expect("every item has its promise"))
        .collect();
    super::promise::join_all(promises)
}

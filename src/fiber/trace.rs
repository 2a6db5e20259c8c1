//! Scheduler traces: what each task did and when, recorded in a ring of
//! fixed size and written out at the end of the run in the Chrome trace
//! event format (the JSON that Perfetto and `chrome://tracing` open).
//!
//! Off (the default), each event site costs one test of
//! `Scheduler::trace` (a field of the scheduler it already borrows),
//! predicted not taken; the recording itself is out of line. On, an event
//! is a TSC read and a 40-byte store into the ring allocated when the run
//! starts: nothing is allocated per event (only a task's name, once, when a
//! named task is spawned). When the ring is full the oldest events are
//! overwritten, and the export says how many were lost.

use super::clock;
use super::scheduler::{self, Scheduler};
use super::syscall::SyscallId;
use super::task::{TaskRef, Wait};
use core::cell::Cell;
use core::panic::Location;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where a run's trace goes, and how many events it keeps; given to
/// [`Builder::trace`](crate::Builder::trace).
///
/// The trace is written when the run ends, as Chrome trace event JSON: one
/// track (`tid`) per task, a complete (`X`) slice for each time the task
/// ran, instants for spawns, wake-ups and ends, device notices on track 0,
/// and flow arrows from each waker to the run its wake-up caused. Open it
/// in <https://ui.perfetto.dev> or `chrome://tracing`, or read a fairness
/// report from it with `cargo run --example trace_report -- FILE`.
///
/// ```
/// let path = std::env::temp_dir().join(format!("mk-trace-doc-{}.json", std::process::id()));
/// mkernel::Builder::new()
///     .trace(mkernel::Trace::file(&path))
///     .run((), |()| {
///         let p = mkernel::spawn_named("child", mkernel::yield_now);
///         p.join().unwrap();
///     });
/// let json = std::fs::read_to_string(&path).unwrap();
/// assert!(json.contains("\"traceEvents\""));
/// assert!(json.contains("child (task 2)"));
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Trace {
    sink: Sink,
    capacity: usize,
}

#[derive(Debug, Clone)]
enum Sink {
    File(PathBuf),
    Console,
    Discard,
}

/// The console markers around a trace written with [`Trace::console`].
pub const TRACE_BEGIN: &str = "--- mkernel trace begin ---";
/// See [`TRACE_BEGIN`].
pub const TRACE_END: &str = "--- mkernel trace end ---";

impl Trace {
    /// Writes the trace to the file at `path` (created or truncated) when
    /// the run ends. Hosted, `MKERNEL_TRACE=PATH` in the environment does
    /// this for every run of any mkernel program.
    pub fn file(path: impl AsRef<Path>) -> Trace {
        Trace {
            sink: Sink::File(path.as_ref().to_path_buf()),
            capacity: crate::sys::DEFAULT_TRACE_EVENTS,
        }
    }

    /// Prints the trace on stderr (the console under Solo5) when the run
    /// ends, between the lines [`TRACE_BEGIN`] and [`TRACE_END`];
    /// `cargo run --example trace_report -- LOG` finds it in a saved
    /// console log. The application option `--mkernel:trace` (first among
    /// the application's arguments: `solo5-spt app.spt --mkernel:trace
    /// ARGS`, or hosted `./app -- --mkernel:trace ARGS`) does this without
    /// rebuilding.
    #[must_use]
    pub fn console() -> Trace {
        Trace {
            sink: Sink::Console,
            capacity: crate::sys::DEFAULT_TRACE_EVENTS,
        }
    }

    /// Records and throws the trace away: for measuring what recording
    /// costs.
    #[must_use]
    pub fn discard() -> Trace {
        Trace {
            sink: Sink::Discard,
            capacity: crate::sys::DEFAULT_TRACE_EVENTS,
        }
    }

    /// How many events the ring keeps (default 2^20 hosted, 2^16 on Solo5;
    /// 40 bytes each, allocated when the run starts). Beyond, the oldest
    /// are overwritten. Hosted, `MKERNEL_TRACE_EVENTS=N` sets it for
    /// `MKERNEL_TRACE`.
    #[must_use]
    pub fn capacity(mut self, events: usize) -> Trace {
        self.capacity = events.max(16);
        self
    }
}

/// Why a task gave the CPU back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Reason {
    Yield,
    Join,
    Sleep,
    /// Waiting for a net device (the frames themselves).
    Net,
    /// A deferred block operation.
    Block,
    /// A wait queue: a mutex, a condition, a channel, an ivar, a socket.
    Sync,
    /// A [`Syscall`](crate::Syscall) of the program's own.
    Syscall,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Yield => "yield",
            Reason::Join => "join",
            Reason::Sleep => "sleep",
            Reason::Net => "net",
            Reason::Block => "block",
            Reason::Sync => "sync",
            Reason::Syscall => "syscall",
        }
    }
}

/// A device notice: what the platform's event source found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Device {
    Timer,
    Net,
    Block,
}

impl Device {
    fn as_str(self) -> &'static str {
        match self {
            Device::Timer => "timer",
            Device::Net => "net",
            Device::Block => "block",
        }
    }
}

/// Who woke a task.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum By {
    /// The running task (if any; else the scheduler).
    Current,
    /// That task (a child that finished).
    Task(u64),
    /// A signal of the event source (a device, a timer, a user syscall).
    Signal(SyscallId),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `arg`: the parent's uid (0: none).
    Spawn(&'static Location<'static>),
    Run,
    /// `arg`: the syscall id waited on, or 0.
    Suspend(Reason),
    /// `arg`: the waker's uid, 0 for the scheduler itself (a hook).
    WakeByTask,
    /// `arg`: the syscall id.
    WakeBySignal,
    /// `arg`: runs (as `task_stats`).
    Finish {
        panicked: bool,
    },
    /// `arg`: runs (as `task_stats`).
    Cancel,
    /// `arg`: the syscall id; no task.
    Device(Device),
}

#[derive(Clone, Copy, Debug)]
struct Event {
    t: u64,
    task: u64,
    arg: u64,
    kind: Kind,
}

/// A run's trace while it records.
pub(crate) struct Ring {
    events: Vec<Event>,
    cap: usize,
    written: u64,
    names: Vec<(u64, Cow<'static, str>)>,
    /// The wait a device registered last (syscall id, reason), for the
    /// suspension that follows (see [`hint`]).
    hint: (u64, Reason),
    sink: Sink,
}

thread_local! {
    /// Whether this thread's run records a trace, for the event sites
    /// outside the scheduler's borrow (the reactor's).
    static ON: Cell<bool> = const { Cell::new(false) };
}

impl Ring {
    pub(crate) fn new(cfg: Trace) -> Box<Ring> {
        ON.with(|o| o.set(true));
        Box::new(Ring {
            events: Vec::with_capacity(cfg.capacity),
            cap: cfg.capacity,
            written: 0,
            names: Vec::new(),
            hint: (0, Reason::Syscall),
            sink: cfg.sink,
        })
    }

    #[inline]
    fn push(&mut self, task: u64, kind: Kind, arg: u64) {
        let e = Event {
            t: clock::cycles(),
            task,
            arg,
            kind,
        };
        // Within the capacity reserved at the start: no reallocation.
        if self.events.len() < self.cap {
            self.events.push(e);
        } else {
            let i = (self.written % self.cap as u64) as usize;
            self.events[i] = e;
        }
        self.written += 1;
    }
}

fn ring(s: &mut Scheduler) -> Option<&mut Ring> {
    s.trace.as_deref_mut()
}

// ---- event sites (called only when `s.trace` is set) ----

#[cold]
#[inline(never)]
pub(super) fn spawn(s: &mut Scheduler, t: TaskRef, parent: Option<TaskRef>) {
    let site = s.tasks[t.idx as usize].site;
    if let Some(r) = ring(s) {
        r.push(t.uid, Kind::Spawn(site), parent.map_or(0, |p| p.uid));
    }
}

#[cold]
#[inline(never)]
pub(super) fn run(s: &mut Scheduler, t: TaskRef) {
    if let Some(r) = ring(s) {
        r.push(t.uid, Kind::Run, 0);
    }
}

#[cold]
#[inline(never)]
pub(super) fn suspend(s: &mut Scheduler, t: TaskRef, wait: Option<Wait>) {
    if let Some(r) = ring(s) {
        let (reason, arg) = match wait {
            None => (Reason::Yield, 0),
            Some(Wait::Join) => (Reason::Join, 0),
            Some(Wait::Queue) => (Reason::Sync, 0),
            Some(Wait::QueueTimed(id)) => (Reason::Sync, id.as_u64()),
            Some(Wait::Syscall(id)) => {
                let id = id.as_u64();
                let reason = if r.hint.0 == id {
                    r.hint.1
                } else {
                    Reason::Syscall
                };
                (reason, id)
            }
        };
        r.push(t.uid, Kind::Suspend(reason), arg);
    }
}

#[cold]
#[inline(never)]
pub(super) fn wake(s: &mut Scheduler, t: TaskRef, by: By) {
    let current = s.current.map(|i| s.tasks[i as usize].uid);
    if let Some(r) = ring(s) {
        match by {
            By::Current => r.push(t.uid, Kind::WakeByTask, current.unwrap_or(0)),
            By::Task(uid) => r.push(t.uid, Kind::WakeByTask, uid),
            By::Signal(id) => r.push(t.uid, Kind::WakeBySignal, id.as_u64()),
        }
    }
}

#[cold]
#[inline(never)]
pub(super) fn finish(s: &mut Scheduler, t: TaskRef, panicked: bool) {
    let runs = s.tasks[t.idx as usize].stats.runs;
    if let Some(r) = ring(s) {
        r.push(t.uid, Kind::Finish { panicked }, runs);
    }
}

#[cold]
#[inline(never)]
pub(super) fn cancel(s: &mut Scheduler, t: TaskRef) {
    let runs = s.tasks[t.idx as usize].stats.runs;
    if let Some(r) = ring(s) {
        r.push(t.uid, Kind::Cancel, runs);
    }
}

pub(super) fn name(s: &mut Scheduler, t: TaskRef, name: Cow<'static, str>) {
    if let Some(r) = ring(s) {
        r.names.push((t.uid, name));
    }
}

/// Notes what the next suspension on syscall `id` waits for (the reactor
/// calls it when a sleep, a net read or a block operation registers).
#[inline]
pub(crate) fn hint_sleep(id: SyscallId) {
    hint(id, Reason::Sleep)
}

/// See [`hint_sleep`].
#[inline]
pub(crate) fn hint_net(id: SyscallId) {
    hint(id, Reason::Net)
}

/// See [`hint_sleep`].
#[inline]
pub(crate) fn hint_block(id: SyscallId) {
    hint(id, Reason::Block)
}

#[inline]
fn hint(id: SyscallId, reason: Reason) {
    if ON.with(Cell::get) {
        scheduler::with(|s| {
            if let Some(r) = ring(s) {
                r.hint = (id.as_u64(), reason);
            }
        });
    }
}

/// A timer of syscall `id` expired (the reactor, during `select`).
#[inline]
pub(crate) fn timer_expired(id: SyscallId) {
    device(Device::Timer, id)
}

/// A net device a task waits on (syscall `id`) has a frame.
#[inline]
pub(crate) fn net_ready(id: SyscallId) {
    device(Device::Net, id)
}

/// A deferred block operation (syscall `id`) completed.
#[inline]
pub(crate) fn block_done(id: SyscallId) {
    device(Device::Block, id)
}

#[inline]
fn device(d: Device, id: SyscallId) {
    if ON.with(Cell::get) {
        scheduler::with(|s| {
            if let Some(r) = ring(s) {
                r.push(0, Kind::Device(d), id.as_u64());
            }
        });
    }
}

// ---- the end of the run ----

/// No run records on this thread any more.
pub(crate) fn off() {
    ON.with(|o| o.set(false));
}

/// Writes the trace where it was asked to go (at the end of the run).
pub(crate) fn finish_run(r: Box<Ring>, switches: u64) {
    off();
    match &r.sink {
        Sink::Discard => {}
        Sink::File(path) => {
            let json = chrome_json(&r, switches);
            if let Err(e) = std::fs::write(path, json) {
                eprintln!("mkernel: cannot write the trace to {}: {e}", path.display());
            }
        }
        Sink::Console => {
            let json = chrome_json(&r, switches);
            eprintln!("{TRACE_BEGIN}\n{json}{TRACE_END}");
        }
    }
}

/// A string as a JSON string literal.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What the export keeps of a task between its events.
#[derive(Default)]
struct TaskState {
    /// When its current run started.
    run_start: Option<u64>,
    runs: u64,
    /// Since when it was runnable (spawned, woken, or yielded).
    ready_at: Option<u64>,
    /// The flow (waker -> woken) that its next run ends.
    flow: Option<u64>,
    wait: u64,
    site: Option<&'static Location<'static>>,
    parent: u64,
}

/// The trace in the Chrome trace event format, one event per line.
fn chrome_json(r: &Ring, switches: u64) -> String {
    let cpn = clock::cycles_per_ns();
    let kept = r.events.len();
    let dropped = r.written - kept as u64;
    // The oldest event kept first.
    let first = if dropped == 0 {
        0
    } else {
        (r.written % r.cap as u64) as usize
    };
    let events = r.events[first..].iter().chain(&r.events[..first]);
    let t0 = r.events.get(first).map_or(0, |e| e.t);
    // Every time in whole ns since the first event, printed in µs with
    // three decimals: a slice's end (ts + dur) is exactly the next event's.
    let us = |t: u64| Us((t.wrapping_sub(t0) as f64 / cpn).round() as u64);
    let mut out = String::with_capacity(kept * 160 + 1024);
    let _ = write!(
        out,
        "{{\"displayTimeUnit\":\"ns\",\"otherData\":{{\"mkernel_trace\":1,\"clock\":\"tsc\",\
         \"cycles_per_ns\":{cpn:.6},\"switches\":{switches},\"events\":{},\"dropped\":{dropped}}},\n\
         \"traceEvents\":[\n{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":1,\"tid\":0,\"args\":{{\"name\":\"mkernel run\"}}}},\n\
         {{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":0,\"args\":{{\"name\":\"devices\"}}}}",
        r.written
    );
    let mut tasks: HashMap<u64, TaskState> = HashMap::new();
    let mut notices: HashMap<u64, (u64, Device)> = HashMap::new();
    let mut flows = 0u64;
    for e in events {
        let ts = us(e.t);
        let cycles_to_us = |c: u64| Us((c as f64 / cpn).round() as u64);
        match e.kind {
            Kind::Spawn(site) => {
                let st = tasks.entry(e.task).or_default();
                st.ready_at = Some(e.t);
                st.site = Some(site);
                st.parent = e.arg;
                let _ = write!(
                    out,
                    ",\n{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"spawn\",\"name\":\"spawn\",\"pid\":1,\"tid\":{},\"ts\":{ts},\"args\":{{\"parent\":{},\"site\":",
                    e.task, e.arg
                );
                quoted(&mut out, &site.to_string());
                out.push_str("}}");
            }
            Kind::Run => {
                let st = tasks.entry(e.task).or_default();
                st.run_start = Some(e.t);
                st.runs += 1;
                st.wait = st.ready_at.map_or(0, |r| e.t.saturating_sub(r));
                st.ready_at = None;
                if let Some(id) = st.flow.take() {
                    let _ = write!(
                        out,
                        ",\n{{\"ph\":\"f\",\"bp\":\"e\",\"cat\":\"wake\",\"name\":\"wake\",\"id\":{id},\"pid\":1,\"tid\":{},\"ts\":{ts}}}",
                        e.task
                    );
                }
            }
            Kind::Suspend(reason) => {
                let st = tasks.entry(e.task).or_default();
                close_run(
                    &mut out,
                    e.task,
                    st,
                    e.t,
                    reason.as_str(),
                    &us,
                    &cycles_to_us,
                );
                if reason == Reason::Yield {
                    st.ready_at = Some(e.t);
                }
            }
            Kind::Finish { panicked } => {
                let st = tasks.entry(e.task).or_default();
                let how = if panicked { "panic" } else { "return" };
                close_run(&mut out, e.task, st, e.t, how, &us, &cycles_to_us);
                let _ = write!(
                    out,
                    ",\n{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"end\",\"name\":\"finish\",\"pid\":1,\"tid\":{},\"ts\":{ts},\"args\":{{\"runs\":{},\"how\":\"{how}\"}}}}",
                    e.task, e.arg
                );
            }
            Kind::Cancel => {
                let st = tasks.entry(e.task).or_default();
                close_run(&mut out, e.task, st, e.t, "cancel", &us, &cycles_to_us);
                let _ = write!(
                    out,
                    ",\n{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"end\",\"name\":\"cancel\",\"pid\":1,\"tid\":{},\"ts\":{ts},\"args\":{{\"runs\":{}}}}}",
                    e.task, e.arg
                );
            }
            Kind::WakeByTask | Kind::WakeBySignal => {
                // The flow starts on the waker's track (a task, or the
                // device notice that led to the signal on track 0).
                let (by, src_tid, src_t) = match e.kind {
                    Kind::WakeByTask if e.arg != 0 => (format!("task {}", e.arg), e.arg, e.t),
                    Kind::WakeByTask => ("scheduler".to_string(), 0, e.t),
                    _ => match notices.get(&e.arg) {
                        Some(&(t, d)) => (d.as_str().to_string(), 0, t),
                        None => ("signal".to_string(), 0, e.t),
                    },
                };
                flows += 1;
                let st = tasks.entry(e.task).or_default();
                st.ready_at = Some(e.t);
                st.flow = Some(flows);
                let _ = write!(
                    out,
                    ",\n{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"wake\",\"name\":\"wake\",\"pid\":1,\"tid\":{},\"ts\":{ts},\"args\":{{\"by\":\"{by}\",\"waker\":{}",
                    e.task,
                    if src_tid == 0 { 0 } else { e.arg }
                );
                if matches!(e.kind, Kind::WakeBySignal) {
                    let _ = write!(out, ",\"syscall\":{},\"notice_ts\":{}", e.arg, us(src_t));
                }
                let _ = write!(
                    out,
                    "}}}},\n{{\"ph\":\"s\",\"cat\":\"wake\",\"name\":\"wake\",\"id\":{flows},\"pid\":1,\"tid\":{src_tid},\"ts\":{}}}",
                    us(src_t)
                );
            }
            Kind::Device(d) => {
                notices.insert(e.arg, (e.t, d));
                let _ = write!(
                    out,
                    ",\n{{\"ph\":\"X\",\"cat\":\"device\",\"name\":\"{}\",\"pid\":1,\"tid\":0,\"ts\":{ts},\"dur\":0,\"args\":{{\"syscall\":{}}}}}",
                    d.as_str(),
                    e.arg
                );
            }
        }
    }
    // Track names: the task's name if it has one, its spawn site otherwise.
    let names: HashMap<u64, &str> = r.names.iter().map(|(u, n)| (*u, n.as_ref())).collect();
    let mut uids: Vec<_> = tasks.keys().copied().collect();
    uids.sort_unstable();
    for uid in uids {
        let st = &tasks[&uid];
        let label = match (names.get(&uid), st.site) {
            (Some(n), _) => format!("{n} (task {uid})"),
            (None, _) if uid == 1 && st.parent == 0 => "main (task 1)".to_string(),
            (None, Some(site)) => format!("task {uid} ({site})"),
            (None, None) => format!("task {uid}"),
        };
        let _ = write!(
            out,
            ",\n{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":{uid},\"args\":{{\"name\":"
        );
        quoted(&mut out, &label);
        let _ = write!(
            out,
            "}}}},\n{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":1,\"tid\":{uid},\"args\":{{\"sort_index\":{uid}}}}}"
        );
    }
    out.push_str("\n]}\n");
    out
}

/// A time in ns, printed in µs with three decimals (Chrome's unit).
#[derive(Clone, Copy)]
struct Us(u64);

impl core::fmt::Display for Us {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Ends a task's current run at `t` (if one is open) with an `X` slice.
fn close_run(
    out: &mut String,
    tid: u64,
    st: &mut TaskState,
    t: u64,
    end: &str,
    us: &impl Fn(u64) -> Us,
    cycles_to_us: &impl Fn(u64) -> Us,
) {
    if let Some(start) = st.run_start.take() {
        let (a, b) = (us(start), us(t));
        let _ = write!(
            out,
            ",\n{{\"ph\":\"X\",\"cat\":\"run\",\"name\":\"run\",\"pid\":1,\"tid\":{tid},\"ts\":{a},\"dur\":{},\"args\":{{\"i\":{},\"wait_us\":{},\"end\":\"{end}\"}}}}",
            Us(b.0.saturating_sub(a.0)),
            st.runs,
            cycles_to_us(st.wait),
        );
    }
}

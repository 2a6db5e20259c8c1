//! The reactor: timers, tasks waiting on net devices, the deferred block
//! queue, and the idle wait — the run's own event source.
//!
//! It sits between the scheduler (below: it implements the scheduler's
//! [`Events`]) and the devices (above: `net` and `block` register their
//! devices, waits and deferred operations here through the small traits
//! [`NetSource`] and [`Deferred`], so that the reactor knows nothing of
//! them). The system itself is reached through the OS seam
//! ([`crate::sys`]).
//!
//! One [`Reactor`] exists per run that uses the platform's event source. It
//! implements the scheduler's [`Events`]: at every scheduling point the
//! scheduler calls `select`, which
//!
//! - while tasks are runnable (`block == false`), asks the system at most
//!   every [`POLL_CYCLES`] TSC cycles (well under 1 ms), since a system call
//!   per task switch would cost more than the switch itself;
//! - when no task is runnable (`block == true`), first looks for ready
//!   devices and expired timers without waiting; if there are none, performs
//!   pages of the deferred block operations for a short slice (and looks
//!   again); with nothing queued, waits in one system call (`epoll_wait`, or
//!   `solo5_yield`) until a waited-for device is readable or the next timer
//!   expires. It never spins.

use crate::fiber::{
    Events, Signal, SyscallId, cycles, fatal, ns_to_cycles_at_most, publish_due, signal_for, trace,
};
use crate::sys::{self, clock};
use core::cell::RefCell;
use core::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::io;
use std::rc::Rc;

/// Cycles between two looks at the system while tasks keep running:
/// ~100 µs at 2.5 GHz, under 1 ms on any CPU faster than 250 MHz.
pub(crate) const POLL_CYCLES: u64 = 250_000;

/// Longest run of deferred block pages between two looks at the system:
/// ~20 µs at 2.5 GHz, the latency a net event may wait for during block I/O.
pub(crate) const BLOCK_SLICE_CYCLES: u64 = 50_000;

/// A net device as the reactor sees it.
pub(crate) trait NetSource {
    /// The device's name (for messages).
    fn name(&self) -> &str;
    /// When the next frame of an in-memory link becomes readable (monotonic
    /// ns); `None` for a device the system watches (or an empty link).
    fn next_ready_at(&self) -> Option<u64>;
}

/// A deferred operation in the reactor's queue (a deferred block I/O),
/// performed a step at a time when no task can run.
pub(crate) trait Deferred {
    /// The syscall its task waits on.
    fn id(&self) -> SyscallId;
    /// Performs the next step; true when the operation is complete (or
    /// failed).
    fn step(&self) -> bool;
}

pub(crate) struct Reactor {
    nets: Vec<Rc<dyn NetSource>>,
    timers: BinaryHeap<Reverse<(u64, SyscallId)>>,
    live_timers: HashSet<SyscallId>,
    net_waiters: Vec<(usize, SyscallId)>,
    block_queue: VecDeque<Rc<dyn Deferred>>,
    poller: sys::Poller,
    last_poll: u64,
    /// TSC value at which the earliest timer may be due (never late: see
    /// `clock::ns_to_cycles_at_most`).
    next_timer_cycles: u64,
    /// A frame was sent on an in-memory link since the last look: its
    /// receiver may be waiting (checked without a system call).
    link_sent: bool,
    ready: Vec<u64>,
    /// The run has several cores: another core may end the idle wait
    /// (through the core's waker, in the poller's set), and while tasks run
    /// the scheduler looks at their messages when this source says it may
    /// have something, so it says so every `POLL_CYCLES`.
    cross_core: bool,
}

thread_local! {
    static REACTOR: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

/// Panics with a clear message unless the current run has the platform's
/// event source.
pub(crate) fn require(what: &str) {
    if !REACTOR.with(|p| p.borrow().is_some()) {
        panic!(
            "{what} needs the platform's event source, but this run has none \
             (it runs outside mkernel::run, or its events were replaced with Builder::events)"
        )
    }
}

pub(crate) fn with<R>(f: impl FnOnce(&mut Reactor) -> R) -> R {
    REACTOR.with(|p| {
        let mut p = p.borrow_mut();
        let p = p
            .as_mut()
            .expect("the platform is installed (checked by `require`)");
        f(p)
    })
}

/// Installs a fresh reactor for a run (or for one core of a run with
/// several, whose `waker` other cores use to end its idle wait); removed
/// when the guard drops.
pub(crate) fn install(waker: Option<&sys::Waker>) -> io::Result<ReactorGuard> {
    let mut p = Reactor {
        nets: Vec::new(),
        timers: BinaryHeap::new(),
        live_timers: HashSet::new(),
        net_waiters: Vec::new(),
        block_queue: VecDeque::new(),
        poller: sys::Poller::new()?,
        last_poll: 0,
        next_timer_cycles: u64::MAX,
        link_sent: false,
        ready: Vec::new(),
        cross_core: waker.is_some(),
    };
    if let Some(w) = waker {
        p.poller.watch_waker(w)?;
    }
    let cross_core = p.cross_core;
    REACTOR.with(|c| *c.borrow_mut() = Some(p));
    // With several cores, the first scheduling point already looks.
    publish_due(if cross_core { 0 } else { u64::MAX });
    Ok(ReactorGuard)
}

/// Removes the run's reactor when dropped.
pub(crate) struct ReactorGuard;

impl Drop for ReactorGuard {
    fn drop(&mut self) {
        let p = REACTOR.with(|c| c.borrow_mut().take());
        publish_due(0);
        drop(p);
    }
}

/// A timer registration for a syscall, withdrawn when dropped.
pub(crate) struct Timer(SyscallId);

impl Timer {
    pub(crate) fn new(deadline: u64, id: SyscallId) -> Timer {
        trace::hint_sleep(id);
        with(|p| p.arm(deadline, id));
        Timer(id)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // The heap entry is skipped lazily once it is no longer live.
        with(|p| p.live_timers.remove(&self.0));
    }
}

/// A task waiting for a net device to be readable, withdrawn when dropped.
pub(crate) struct NetWait {
    dev: usize,
    id: SyscallId,
}

impl NetWait {
    pub(crate) fn new(dev: usize, id: SyscallId) -> NetWait {
        trace::hint_net(id);
        with(|p| {
            let first = !p.net_waiters.iter().any(|&(d, _)| d == dev);
            p.net_waiters.push((dev, id));
            if first {
                p.watch(dev, true);
            }
            p.refresh_due();
        });
        NetWait { dev, id }
    }
}

impl Drop for NetWait {
    fn drop(&mut self) {
        with(|p| p.forget_net_waiter(self.dev, self.id));
    }
}

impl Reactor {
    /// Signals `id` once the monotonic clock reaches `deadline`, unless the
    /// syscall is withdrawn first ([`Timer`]'s drop, or its cancellation).
    fn arm(&mut self, deadline: u64, id: SyscallId) {
        self.timers.push(Reverse((deadline, id)));
        self.live_timers.insert(id);
        let at = timer_check_at(deadline);
        self.next_timer_cycles = self.next_timer_cycles.min(at);
        self.refresh_due();
    }

    /// Adds a net device of the run; `sys_dev` is its system device, if it
    /// has one (the idle wait watches it). Returns its index, for
    /// [`NetWait`].
    pub(crate) fn add_net(
        &mut self,
        dev: Rc<dyn NetSource>,
        sys_dev: Option<&sys::NetDev>,
    ) -> usize {
        let index = self.nets.len();
        if let Some(d) = sys_dev {
            self.poller.register(index, d);
        }
        self.nets.push(dev);
        index
    }

    /// How many net devices the run has.
    pub(crate) fn net_count(&self) -> usize {
        self.nets.len()
    }

    /// Queues a deferred operation (performed when no task can run).
    pub(crate) fn defer(&mut self, op: Rc<dyn Deferred>) {
        trace::hint_block(op.id());
        self.block_queue.push_back(op);
    }

    /// Withdraws the deferred operation of syscall `id`, if still queued.
    pub(crate) fn withdraw(&mut self, id: SyscallId) {
        self.block_queue.retain(|op| op.id() != id);
    }

    fn forget_net_waiter(&mut self, dev: usize, id: SyscallId) {
        let before = self.net_waiters.len();
        self.net_waiters.retain(|&(d, i)| !(d == dev && i == id));
        if before != self.net_waiters.len() && !self.net_waiters.iter().any(|&(d, _)| d == dev) {
            self.watch(dev, false);
        }
    }

    /// Starts or stops watching a device's file descriptor (only devices
    /// someone waits for are watched, so that unread frames of an ignored
    /// device do not wake the idle wait for nothing).
    fn watch(&mut self, dev: usize, on: bool) {
        if let Err(e) = self.poller.watch(dev, on) {
            fatal(&format!(
                "mkernel: cannot watch net device {}: {e}",
                self.nets[dev].name()
            ));
        }
    }

    fn forget(&mut self, id: SyscallId) {
        self.live_timers.remove(&id);
        if let Some(&(dev, _)) = self.net_waiters.iter().find(|&&(_, i)| i == id) {
            self.forget_net_waiter(dev, id);
        }
        self.withdraw(id);
    }

    /// Whether a timer is due or a waited-for link has a frame, without a
    /// system call.
    fn cheap_ready(&self) -> bool {
        if self.net_waiters.is_empty() && self.live_timers.is_empty() {
            return false;
        }
        let now = clock::monotonic();
        // The top of the heap is the earliest deadline (perhaps of a dead
        // timer: then this only ends the slice early).
        let timer_due = self.timers.peek().is_some_and(|Reverse((t, _))| *t <= now);
        timer_due
            || self
                .net_waiters
                .iter()
                .any(|&(d, _)| self.nets[d].next_ready_at().is_some_and(|at| at <= now))
    }

    /// Collects the signals of ready devices and expired timers, waiting at
    /// most `timeout` ns (None: until something happens).
    fn poll(&mut self, mut timeout: Option<u64>, out: &mut Vec<Signal>) {
        self.link_sent = false;
        let now = clock::monotonic();
        // Drop dead timers at the top so the next deadline is a live one.
        while let Some(Reverse((_, id))) = self.timers.peek() {
            if self.live_timers.contains(id) {
                break;
            }
            self.timers.pop();
        }
        if let Some(Reverse((deadline, _))) = self.timers.peek() {
            let t = deadline.saturating_sub(now);
            timeout = Some(timeout.map_or(t, |x| x.min(t)));
        }
        // In-memory links are ready without the system's help.
        let mut ready_links = Vec::new();
        for &(dev, _) in &self.net_waiters {
            if let Some(at) = self.nets[dev].next_ready_at() {
                if at <= now {
                    ready_links.push(dev as u64);
                    timeout = Some(0);
                } else {
                    let t = at - now;
                    timeout = Some(timeout.map_or(t, |x| x.min(t)));
                }
            }
        }
        self.ready.clear();
        self.wait_system(timeout);
        // After the system wait, which clears `ready` before filling it.
        self.ready.extend(ready_links);
        if !self.ready.is_empty() {
            let ready = core::mem::take(&mut self.ready);
            self.wake_readers(|d| ready.contains(&(d as u64)), out);
            self.ready = ready;
        }
        self.expire_timers(out);
        // A syscall woken one way (device or timer) is withdrawn from the
        // other, so that it is not signalled twice.
        for sig in out.iter() {
            let id = sig.id();
            self.live_timers.remove(&id);
            if let Some(&(dev, _)) = self.net_waiters.iter().find(|&&(_, i)| i == id) {
                self.forget_net_waiter(dev, id);
            }
        }
        self.last_poll = cycles();
    }

    /// Notes that a frame was sent on an in-memory link (its peer may be
    /// waiting): the next scheduling point looks.
    pub(crate) fn link_sent(&mut self) {
        self.link_sent = true;
        publish_due(0);
    }

    /// Wakes the waiters of in-memory links that have a frame now (no
    /// system call).
    fn check_links(&mut self, out: &mut Vec<Signal>) {
        self.link_sent = false;
        let now = clock::monotonic();
        // The reused `ready` list: no allocation per frame.
        let mut ready = core::mem::take(&mut self.ready);
        ready.clear();
        for (i, n) in self.nets.iter().enumerate() {
            if n.next_ready_at().is_some_and(|at| at <= now) {
                ready.push(i as u64);
            }
        }
        self.wake_readers(|d| ready.contains(&(d as u64)), out);
        self.ready = ready;
    }

    /// Signals every task waiting on a device for which `ready` holds, and
    /// stops watching devices nobody waits on any more.
    fn wake_readers(&mut self, ready: impl Fn(usize) -> bool, out: &mut Vec<Signal>) {
        let mut woken = Vec::new();
        self.net_waiters.retain(|&(d, id)| {
            if ready(d) {
                woken.push((d, id));
                false
            } else {
                true
            }
        });
        for (d, id) in woken {
            trace::net_ready(id);
            out.push(signal_of(id));
            if !self.net_waiters.iter().any(|&(x, _)| x == d) {
                self.watch(d, false);
            }
        }
    }

    /// Publishes when `select(false, ..)` may next have something.
    fn refresh_due(&self) {
        let devices = if self.link_sent {
            0
        } else if self.net_waiters.is_empty() && !self.cross_core {
            u64::MAX
        } else {
            self.last_poll.wrapping_add(POLL_CYCLES)
        };
        publish_due(devices.min(self.next_timer_cycles));
    }

    /// Signals the expired timers and recomputes when to look next.
    fn expire_timers(&mut self, out: &mut Vec<Signal>) {
        let now = clock::monotonic();
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if deadline > now && self.live_timers.contains(&id) {
                break;
            }
            self.timers.pop();
            if deadline <= now && self.live_timers.remove(&id) {
                trace::timer_expired(id);
                out.push(signal_of(id));
            }
        }
        self.next_timer_cycles = match self.timers.peek() {
            Some(Reverse((deadline, _))) => timer_check_at(*deadline),
            None => u64::MAX,
        };
    }

    /// Waits for a watched system device or `timeout_ns` (`None`: no time
    /// limit); the ready devices' indices go to `ready`.
    fn wait_system(&mut self, timeout_ns: Option<u64>) {
        if timeout_ns.is_none() && self.net_waiters.is_empty() && !self.cross_core {
            return; // nothing could ever end the wait
        }
        let mut ready = core::mem::take(&mut self.ready);
        if let Err(e) = self.poller.wait(timeout_ns, &mut ready) {
            fatal(&format!("mkernel: waiting for events failed: {e}"));
        }
        self.ready = ready;
    }
}

/// The TSC value at which a timer due at `deadline` (monotonic ns) should be
/// looked at: converted with a rate that is never above the real one, so the
/// look is never late (if early, the timer is simply looked at again).
fn timer_check_at(deadline: u64) -> u64 {
    let now_ns = clock::monotonic();
    let now_c = cycles();
    let left = deadline.saturating_sub(now_ns);
    now_c.saturating_add(ns_to_cycles_at_most(left))
}

fn signal_of(id: SyscallId) -> Signal {
    signal_for(id)
}

/// The reactor as the scheduler's event source (see the module docs).
pub(crate) struct ReactorEvents;

impl Events for ReactorEvents {
    fn select(&mut self, block: bool, cancelled: &[SyscallId]) -> Vec<Signal> {
        let out = with(|p| select(p, block, cancelled));
        with(|p| p.refresh_due());
        out
    }

    /// The timers of timed waits (`Condition::wait_timeout`, a socket's
    /// read timeout): withdrawn when the wait ends otherwise, through the
    /// syscall's cancellation.
    fn arm_timer(&mut self, after: core::time::Duration, id: SyscallId) -> bool {
        let after = after.as_nanos().min(u64::MAX as u128) as u64;
        let deadline = clock::monotonic().saturating_add(after);
        with(|p| p.arm(deadline, id));
        true
    }
}

fn select(p: &mut Reactor, block: bool, cancelled: &[SyscallId]) -> Vec<Signal> {
    {
        {
            for &id in cancelled {
                p.forget(id);
            }
            let mut out = Vec::new();
            if !block {
                // Tasks are runnable: a TSC read decides whether anything is
                // worth a look. Timers are checked when the earliest may be
                // due (a clock read, no system call); devices every
                // POLL_CYCLES.
                let now = cycles();
                if !p.net_waiters.is_empty() && now.wrapping_sub(p.last_poll) >= POLL_CYCLES {
                    p.poll(Some(0), &mut out);
                } else {
                    if p.cross_core && now.wrapping_sub(p.last_poll) >= POLL_CYCLES {
                        // The periodic look at the other cores' messages is
                        // the scheduler's, after this call: no system call.
                        p.last_poll = now;
                    }
                    if p.link_sent {
                        p.check_links(&mut out);
                    }
                    if now >= p.next_timer_cycles {
                        p.expire_timers(&mut out);
                    }
                }
                return out;
            }
            p.poll(Some(0), &mut out);
            // Another core's wake-up, consumed by that look: the
            // scheduler serves what it posted before waiting.
            if !out.is_empty() || p.poller.take_woken() {
                return out;
            }
            if !p.block_queue.is_empty() {
                // Idle: pages of the deferred block operations, oldest
                // first, one at a time, until a cheap check finds a timer
                // due or a link frame, or a slice of BLOCK_SLICE_CYCLES has
                // passed; then one look at the system, then back to the
                // scheduler. Operations completed in the slice wake their
                // tasks together, so that these run in one round (many
                // small reads, e.g. a file per HTTP request, no longer make
                // one round each).
                let until = cycles().wrapping_add(BLOCK_SLICE_CYCLES);
                while let Some(op) = p.block_queue.front() {
                    if op.step() {
                        trace::block_done(op.id());
                        out.push(signal_of(op.id()));
                        p.block_queue.pop_front();
                    }
                    if cycles() > until || p.cheap_ready() {
                        break;
                    }
                }
                p.poll(Some(0), &mut out);
                return out;
            }
            p.poll(None, &mut out);
            p.poller.take_woken();
            out
        }
    }
}

//! Test support: a deterministic, virtual clock.

use crate::fiber::{Events, Signal, Syscall, SyscallId, suspend};
use core::cell::RefCell;
use core::cmp::Reverse;
use core::time::Duration;
use std::collections::BinaryHeap;
use std::rc::Rc;

/// An event source with virtual time: sleeps take no real time, and time
/// jumps to the next deadline as soon as no task can run. Tests of
/// timeouts run instantly and identically every time.
///
/// ```
/// use mkernel::testing::VirtualClock;
/// use std::time::Duration;
///
/// let clock = VirtualClock::new();
/// let c = clock.clone();
/// let winner = mkernel::Builder::new().events(clock.clone()).run((), move |()| {
///     let (c1, c2) = (c.clone(), c.clone());
///     let work = mkernel::spawn(move || { c1.sleep(Duration::from_secs(10)); "work" });
///     let timeout = mkernel::spawn(move || { c2.sleep(Duration::from_secs(2)); "timeout" });
///     mkernel::join_first(vec![work, timeout]).unwrap()
/// });
/// assert_eq!(winner, "timeout");
/// assert_eq!(clock.now(), 2_000_000_000); // no real time passed
/// ```
#[derive(Clone, Default)]
pub struct VirtualClock {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    now: u64,
    sleepers: BinaryHeap<Reverse<(u64, SyscallId)>>,
}

impl core::fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("VirtualClock");
        if let Ok(inner) = self.inner.try_borrow() {
            d.field("now", &inner.now)
                .field("sleepers", &inner.sleepers.len());
        }
        d.finish_non_exhaustive()
    }
}

impl VirtualClock {
    /// A clock at time 0.
    #[must_use]
    pub fn new() -> VirtualClock {
        VirtualClock::default()
    }

    /// Virtual nanoseconds since the clock was made.
    #[must_use]
    pub fn now(&self) -> u64 {
        self.inner.borrow().now
    }

    /// Suspends the current task for `d` of virtual time.
    pub fn sleep(&self, d: Duration) {
        let deadline = self
            .now()
            .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
        let sc = Syscall::new();
        suspend(&sc, || {
            self.inner
                .borrow_mut()
                .sleepers
                .push(Reverse((deadline, sc.id())))
        });
    }
}

impl Events for VirtualClock {
    fn select(&mut self, block: bool, cancelled: &[SyscallId]) -> Vec<Signal> {
        let mut inner = self.inner.borrow_mut();
        if !cancelled.is_empty() {
            let kept: Vec<_> = inner
                .sleepers
                .drain()
                .filter(|Reverse((_, id))| !cancelled.contains(id))
                .collect();
            inner.sleepers.extend(kept);
        }
        if block {
            if let Some(&Reverse((t, _))) = inner.sleepers.peek() {
                inner.now = inner.now.max(t);
            }
        }
        let mut out = Vec::new();
        while let Some(&Reverse((t, id))) = inner.sleepers.peek() {
            if t > inner.now {
                break;
            }
            inner.sleepers.pop();
            out.push(crate::fiber::signal_for(id));
        }
        out
    }

    fn arm_timer(&mut self, after: Duration, id: SyscallId) -> bool {
        let mut inner = self.inner.borrow_mut();
        let deadline = inner
            .now
            .saturating_add(after.as_nanos().min(u64::MAX as u128) as u64);
        inner.sleepers.push(Reverse((deadline, id)));
        true
    }
}

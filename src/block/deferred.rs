//! Deferred block I/O: an operation queued in the reactor and performed a
//! page at a time when no task can run, while its task waits.
//!
//! The operation works on the waiting task's own buffer, which the reactor
//! reaches long after the call that lent it started: that is why this
//! module is one of the few with `unsafe` code (see the layer map in
//! lib.rs). The buffer stays valid because the task stays suspended in
//! [`perform`] for as long as the operation is queued: it leaves only once
//! the operation completed, or by unwinding (cancellation), and a guard
//! withdraws the operation from the reactor before the frame that holds
//! the buffer's borrow goes away.
#![allow(
    unsafe_code,
    reason = "a suspended task's buffer is lent to the reactor"
)]

use super::{BlockDevice, BlockError, Buf};
use crate::fiber::{self, Syscall, SyscallId, suspend};
use crate::reactor::{self, Deferred};
use core::cell::Cell;
use core::marker::PhantomData;
use std::rc::Rc;

/// A buffer lent to a queued operation, as a raw pointer: the borrow it
/// came from lives in the frame of [`perform`], which outlives the
/// operation's place in the queue (see the module docs).
struct Lent {
    ptr: *mut u8,
    len: usize,
    /// Pages are written from it (it came from a shared borrow: never
    /// written through).
    write: bool,
    /// Not `Send`: the pointer is only used on the thread of its run.
    _not_send: PhantomData<*mut u8>,
}

impl Lent {
    fn new(buf: Buf<'_>) -> Lent {
        let (ptr, len, write) = match buf {
            Buf::Read(b) => (b.as_mut_ptr(), b.len(), false),
            Buf::Write(b) => (b.as_ptr().cast_mut(), b.len(), true),
        };
        Lent {
            ptr,
            len,
            write,
            _not_send: PhantomData,
        }
    }

    /// Runs `f` on the `len` bytes at `at` of the buffer.
    ///
    /// # Safety
    /// The borrow the buffer came from must still be live and unused
    /// elsewhere (its task is suspended in [`perform`] with the operation
    /// queued), and `at + len` must not exceed the buffer's length.
    unsafe fn with_range<R>(&self, at: usize, len: usize, f: impl FnOnce(Buf<'_>) -> R) -> R {
        debug_assert!(at + len <= self.len);
        // SAFETY: `at <= at + len <= self.len` (the caller's contract), so
        // the offset stays inside the lent buffer.
        let p = unsafe { self.ptr.add(at) };
        if self.write {
            // SAFETY: `[p, p + len)` lies inside the buffer, whose borrow is
            // live (the caller's contract); it came from a shared borrow
            // (`Buf::Write`), and this only reads it.
            let b = unsafe { core::slice::from_raw_parts(p, len) };
            f(Buf::Write(b))
        } else {
            // SAFETY: `[p, p + len)` lies inside the buffer, which came from
            // an exclusive borrow (`Buf::Read`) that is live and used by
            // nothing else while its task is suspended (the caller's
            // contract), so one mutable slice of it is unique.
            let b = unsafe { core::slice::from_raw_parts_mut(p, len) };
            f(Buf::Read(b))
        }
    }
}

/// A deferred operation in the reactor's queue.
struct BlockOp {
    dev: Rc<BlockDevice>,
    off: u64,
    buf: Lent,
    done: Cell<usize>,
    id: SyscallId,
    result: Cell<Option<Result<(), BlockError>>>,
}

impl Deferred for BlockOp {
    fn id(&self) -> SyscallId {
        self.id
    }

    /// Performs the next page; true when the operation is complete (or failed).
    fn step(&self) -> bool {
        let done = self.done.get();
        let page = self.dev.pagesize;
        // SAFETY: the reactor steps only queued operations, and an
        // operation is queued only while its task is suspended in `perform`
        // (the module docs); `done + page <= len` since both are whole pages
        // and `done < len` while the operation is not complete.
        let r = unsafe {
            self.buf
                .with_range(done, page, |b| self.dev.io(self.off + done as u64, b))
        };
        match r {
            Ok(()) => {
                self.done.set(done + page);
                if done + page >= self.buf.len {
                    self.result.set(Some(Ok(())));
                    true
                } else {
                    false
                }
            }
            Err(mut e) => {
                // Pages are done in order: the ones before this one are.
                e.completed = done as u64;
                self.result.set(Some(Err(e)));
                true
            }
        }
    }
}

/// Queues the operation and suspends the task until it is done (checked by
/// the caller: aligned, in range, not cancelled yet).
pub(super) fn perform(dev: &Rc<BlockDevice>, off: u64, buf: Buf<'_>) -> Result<(), BlockError> {
    let sc = Syscall::new();
    let op = Rc::new(BlockOp {
        dev: dev.clone(),
        off,
        buf: Lent::new(buf),
        done: Cell::new(0),
        id: sc.id(),
        result: Cell::new(None),
    });
    /// Withdraws the operation if the task leaves before it completed
    /// (cancellation): the buffer is never touched afterwards.
    struct Pending(Rc<BlockOp>);
    impl Drop for Pending {
        fn drop(&mut self) {
            let id = self.0.id;
            reactor::with(|r| r.withdraw(id));
        }
    }
    reactor::with(|r| r.defer(op.clone()));
    let pending = Pending(op);
    loop {
        if let Some(r) = pending.0.result.take() {
            return r;
        }
        if fiber::cannot_wait() {
            return Err(dev.cancelled());
        }
        suspend(&sc, || {});
    }
}

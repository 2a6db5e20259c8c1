//! Block devices: pages read and written at once (atomic) or when the
//! scheduler has nothing else to do (deferred).
//!
//! Offsets and lengths are multiples of the device's page size (its sector
//! size: 512 bytes by default, as Solo5's tenders). A length of several
//! pages is split into one operation per page underneath, since Solo5 takes
//! one page per hypercall.
//!
//! # Atomic or deferred
//!
//! [`Block::atomic_read`] and [`Block::atomic_write`] perform the I/O at
//! once, without giving the scheduler a chance to run anything else: use
//! them when the state of memory must not change meanwhile, or when the
//! program computes without ever waiting.
//!
//! [`Block::read`] and [`Block::write`] are *deferred*: the operation is
//! queued at the lowest priority and performed only when no task can run and
//! no net event is pending — one page at a time, looking at the devices
//! between two pages — while the task waits. This keeps the unikernel
//! available to the network while it does block I/O. "Lowest priority" is
//! meant literally: a deferred operation never completes while some task is
//! runnable, so a task that computes forever (even yielding) starves
//! deferred I/O.
//!
//! If a task waiting for a deferred operation is cancelled, the operation is
//! withdrawn before the task's stack unwinds: its buffer is never touched
//! again.

use crate::fiber::{Syscall, SyscallId, scheduler, suspend};
use crate::platform;
use core::cell::Cell;
use core::fmt;
use std::rc::Rc;

/// What went wrong with a block operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockErrorKind {
    /// Offset or length not a multiple of the page size, or a zero length.
    Unaligned,
    /// The range goes past the end of the device.
    OutOfRange,
    /// A write to a read-only device.
    ReadOnly,
    /// The host (or tender) failed the I/O.
    Io,
    /// The waiting task was cancelled.
    Cancelled,
}

/// An error of a block operation: its kind and a message saying what was
/// wrong and what would be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockError {
    kind: BlockErrorKind,
    msg: String,
}

impl BlockError {
    /// The kind of error.
    pub fn kind(&self) -> &BlockErrorKind {
        &self.kind
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for BlockError {}

pub(crate) enum BlockBackend {
    #[cfg(not(mkernel_solo5))]
    File(crate::platform::hosted::file::FileBlock),
    #[cfg(mkernel_solo5)]
    Solo5(u64),
}

pub(crate) struct BlockDevice {
    pub(crate) name: String,
    pub(crate) pagesize: usize,
    pub(crate) length: u64,
    pub(crate) read_only: bool,
    pub(crate) backend: BlockBackend,
}

impl BlockDevice {
    fn page_io(&self, write: bool, off: u64, buf: *mut u8, len: usize) -> Result<(), BlockError> {
        // SAFETY: callers pass a pointer/length pair of a live buffer: the
        // caller's slice for atomic calls; for deferred ones, the buffer of
        // a task suspended in `read`/`write`, whose pending operation is
        // withdrawn (by `Pending`'s drop) before that buffer can go away.
        let r = match &self.backend {
            #[cfg(not(mkernel_solo5))]
            BlockBackend::File(f) => unsafe {
                if write {
                    f.write_at(off, core::slice::from_raw_parts(buf, len))
                        .map_err(|e| e.to_string())
                } else {
                    f.read_at(off, core::slice::from_raw_parts_mut(buf, len))
                        .map_err(|e| e.to_string())
                }
            },
            #[cfg(mkernel_solo5)]
            BlockBackend::Solo5(h) => unsafe {
                if write {
                    crate::platform::solo5::block_write(
                        *h,
                        off,
                        core::slice::from_raw_parts(buf, len),
                    )
                } else {
                    crate::platform::solo5::block_read(
                        *h,
                        off,
                        core::slice::from_raw_parts_mut(buf, len),
                    )
                }
            },
        };
        r.map_err(|e| BlockError {
            kind: BlockErrorKind::Io,
            msg: format!(
                "block device {:?}: {} of {len} bytes at offset {off} failed: {e}",
                self.name,
                if write { "write" } else { "read" }
            ),
        })
    }

    fn check(&self, write: bool, off: u64, len: usize) -> Result<(), BlockError> {
        let ps = self.pagesize as u64;
        let what = if write { "write" } else { "read" };
        if len == 0 {
            return Err(BlockError {
                kind: BlockErrorKind::Unaligned,
                msg: format!(
                    "block device {:?}: a {what} of 0 bytes; give a buffer of a multiple of the page size ({ps} bytes)",
                    self.name
                ),
            });
        }
        if off % ps != 0 || len as u64 % ps != 0 {
            return Err(BlockError {
                kind: BlockErrorKind::Unaligned,
                msg: format!(
                    "block device {:?}: a {what} of {len} bytes at offset {off}; offset and length must be multiples of the page size ({ps} bytes)",
                    self.name
                ),
            });
        }
        if off
            .checked_add(len as u64)
            .is_none_or(|end| end > self.length)
        {
            return Err(BlockError {
                kind: BlockErrorKind::OutOfRange,
                msg: format!(
                    "block device {:?}: a {what} of {len} bytes at offset {off} goes past the end of the device ({} bytes)",
                    self.name, self.length
                ),
            });
        }
        if write && self.read_only {
            return Err(BlockError {
                kind: BlockErrorKind::ReadOnly,
                msg: format!(
                    "block device {:?} is read-only (its file cannot be opened for writing)",
                    self.name
                ),
            });
        }
        Ok(())
    }
}

/// A deferred operation in the platform's queue.
pub(crate) struct BlockOp {
    dev: Rc<BlockDevice>,
    write: bool,
    off: u64,
    ptr: *mut u8,
    len: usize,
    done: Cell<usize>,
    pub(crate) id: SyscallId,
    result: Cell<Option<Result<(), BlockError>>>,
}

impl BlockOp {
    /// Performs the next page; true when the operation is complete (or failed).
    pub(crate) fn step(&self) -> bool {
        let done = self.done.get();
        let page = self.dev.pagesize;
        // SAFETY: `done + page <= len`, inside the operation's buffer.
        let p = unsafe { self.ptr.add(done) };
        match self
            .dev
            .page_io(self.write, self.off + done as u64, p, page)
        {
            Ok(()) => {
                self.done.set(done + page);
                if done + page >= self.len {
                    self.result.set(Some(Ok(())));
                    true
                } else {
                    false
                }
            }
            Err(e) => {
                self.result.set(Some(Err(e)));
                true
            }
        }
    }
}

/// A block device (see the [module docs](mod@crate::block)).
///
/// ```no_run
/// // ./app --block:disk=disk.img
/// mkernel::run(mkernel::block("disk"), |disk| {
///     let mut page = vec![0u8; disk.pagesize()];
///     disk.read(0, &mut page).unwrap();        // deferred
///     disk.atomic_write(0, &page).unwrap();    // at once
/// });
/// ```
#[derive(Clone)]
pub struct Block {
    pub(crate) dev: Rc<BlockDevice>,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Block({:?})", self.dev.name)
    }
}

impl Block {
    /// The page (sector) size in bytes.
    pub fn pagesize(&self) -> usize {
        self.dev.pagesize
    }

    /// The device's length in bytes (a multiple of the page size).
    pub fn length(&self) -> u64 {
        self.dev.length
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.dev.read_only
    }

    /// The device's name in the device list.
    pub fn name(&self) -> &str {
        &self.dev.name
    }

    /// Reads `buf.len()` bytes at `off` now, without letting other tasks run.
    pub fn atomic_read(&self, off: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.dev.check(false, off, buf.len())?;
        self.atomic(false, off, buf.as_mut_ptr(), buf.len())
    }

    /// Writes `buf` at `off` now, without letting other tasks run.
    pub fn atomic_write(&self, off: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.dev.check(true, off, buf.len())?;
        self.atomic(true, off, buf.as_ptr() as *mut u8, buf.len())
    }

    fn atomic(&self, write: bool, off: u64, ptr: *mut u8, len: usize) -> Result<(), BlockError> {
        let ps = self.dev.pagesize;
        for done in (0..len).step_by(ps) {
            // SAFETY: `done + ps <= len`: inside the caller's buffer.
            self.dev
                .page_io(write, off + done as u64, unsafe { ptr.add(done) }, ps)?;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `off`, deferred (see the module docs): the
    /// task waits until the scheduler is idle and the pages are read.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.dev.check(false, off, buf.len())?;
        self.deferred(false, off, buf.as_mut_ptr(), buf.len())
    }

    /// Writes `buf` at `off`, deferred (see the module docs).
    pub fn write(&self, off: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.dev.check(true, off, buf.len())?;
        // The buffer is only read: the `*mut` is for the shared op type.
        self.deferred(true, off, buf.as_ptr() as *mut u8, buf.len())
    }

    fn deferred(&self, write: bool, off: u64, ptr: *mut u8, len: usize) -> Result<(), BlockError> {
        platform::require("a deferred block operation");
        if scheduler::cannot_wait() {
            return Err(BlockError {
                kind: BlockErrorKind::Cancelled,
                msg: format!(
                    "block device {:?}: the task is being cancelled",
                    self.dev.name
                ),
            });
        }
        let sc = Syscall::new();
        let op = Rc::new(BlockOp {
            dev: self.dev.clone(),
            write,
            off,
            ptr,
            len,
            done: Cell::new(0),
            id: sc.id(),
            result: Cell::new(None),
        });
        /// Withdraws the operation if the task leaves before it completed
        /// (cancellation): the buffer is never touched afterwards.
        struct Pending(Rc<BlockOp>);
        impl Drop for Pending {
            fn drop(&mut self) {
                let op = &self.0;
                platform::with(|p| p.block_queue.retain(|o| !Rc::ptr_eq(o, op)));
            }
        }
        platform::with(|p| p.block_queue.push_back(op.clone()));
        let pending = Pending(op);
        loop {
            if let Some(r) = pending.0.result.take() {
                return r;
            }
            if scheduler::cannot_wait() {
                return Err(BlockError {
                    kind: BlockErrorKind::Cancelled,
                    msg: format!(
                        "block device {:?}: the task is being cancelled",
                        self.dev.name
                    ),
                });
            }
            suspend(&sc, || {});
        }
    }
}

/// Makes a `Block` for an opened device.
pub(crate) fn make(dev: BlockDevice) -> Block {
    Block { dev: Rc::new(dev) }
}

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
//!
//! # Torn operations
//!
//! A deferred operation of several pages is performed a page at a time, in
//! order, each page whole (a page is the unit the device writes at once).
//! So an operation that stops part-way leaves a prefix done: pages
//! `[off, off + k × pagesize)` read or written, the others untouched. When
//! it stops on an error, [`BlockError::completed`] says how far it got.
//! When its task is cancelled, nothing can be returned to it: a write of
//! several pages may be left torn — new data in the first pages, old data
//! in the rest — and nobody learns `k`. A program whose data must stay
//! consistent across a cancellation (or a crash) writes what must change
//! together in one page, or keeps a log or a copy-on-write root (write the
//! new pages elsewhere, then switch a one-page root with one write).
//!
//! # A page cache
//!
//! [`Cache`] reads bytes and integers at any offset through a page cache
//! over a `Block` (single-flight deferred loads, CLOCK eviction, hit and
//! miss counters), and buffers writes in dirty pages until
//! [`Cache::commit`] writes them as ordered, coalesced runs: the
//! [`cache`] module teaches it, and says what is on the device when.

pub mod cache;
mod deferred;

pub use cache::{
    Bytes, Cache, CacheBuilder, CacheStats, Chunk, Chunks, Commit, DEFAULT_CACHE_PAGES,
};

use crate::fiber;
use crate::reactor;
use crate::sys;
use core::fmt;
use std::io;
use std::rc::Rc;
use std::sync::Arc;

/// What went wrong with a block operation.
///
/// ```
/// use mkernel::block::BlockErrorKind;
/// let path = std::env::temp_dir().join(format!("mk-doc-kind-{}", std::process::id()));
/// std::fs::write(&path, vec![0u8; 4096]).unwrap();
/// let kind = mkernel::Builder::new().block_file("disk", &path)
///     .run(mkernel::block("disk"), |disk| *disk.atomic_read(4096, &mut [0u8; 512]).unwrap_err().kind());
/// assert_eq!(kind, BlockErrorKind::OutOfRange);
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlockErrorKind {
    /// Offset or length not a multiple of the page size, or a zero length.
    Unaligned,
    /// The range goes past the end of the device.
    OutOfRange,
    /// A write to a read-only device.
    ReadOnly,
    /// The host (or tender) failed the I/O;
    /// [`source`](std::error::Error::source) is its [`io::Error`].
    Io,
    /// The waiting task was cancelled.
    Cancelled,
}

/// An error of a block operation: its kind and a message saying what was
/// wrong and what would be right. For [`BlockErrorKind::Io`] the message
/// includes the text of the system's [`io::Error`], which
/// [`source`](std::error::Error::source) gives as a value. An `io::Error`
/// made from it ([`From`]) has a matching [`io::ErrorKind`].
///
/// ```
/// let path = std::env::temp_dir().join(format!("mk-doc-blockerr-{}", std::process::id()));
/// std::fs::write(&path, vec![0u8; 4096]).unwrap();
/// let e = mkernel::Builder::new().block_file("disk", &path)
///     .run(mkernel::block("disk"), |disk| disk.atomic_read(1, &mut [0u8; 512]).unwrap_err());
/// assert!(e.to_string().contains("multiples of the page size (512 bytes)"));
/// assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::InvalidInput);
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct BlockError {
    kind: BlockErrorKind,
    msg: String,
    source: Option<Arc<io::Error>>,
    completed: u64,
}

impl BlockError {
    fn new(kind: BlockErrorKind, msg: String) -> BlockError {
        BlockError {
            kind,
            msg,
            source: None,
            completed: 0,
        }
    }

    /// The kind of error.
    #[must_use]
    pub fn kind(&self) -> &BlockErrorKind {
        &self.kind
    }

    /// How many bytes of a deferred operation were done, from its start,
    /// before it failed: pages are read or written in order, one at a
    /// time, so `[off, off + completed())` is done and the rest is not
    /// (0 for an operation refused before it started, and for atomic
    /// operations, whose progress the system does not report).
    #[must_use]
    pub fn completed(&self) -> u64 {
        self.completed
    }
}

/// Two errors are equal when their kinds and messages are (the message
/// includes the text of the source, if any).
impl PartialEq for BlockError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.msg == other.msg
    }
}

impl Eq for BlockError {}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for BlockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<BlockError> for io::Error {
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) for
    /// [`Unaligned`](BlockErrorKind::Unaligned),
    /// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) for
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) (as a read past the end
    /// of a file with `read_exact_at`),
    /// [`PermissionDenied`](io::ErrorKind::PermissionDenied) for
    /// [`ReadOnly`](BlockErrorKind::ReadOnly),
    /// [`Interrupted`](io::ErrorKind::Interrupted) for
    /// [`Cancelled`](BlockErrorKind::Cancelled), and the system error's own
    /// kind for [`Io`](BlockErrorKind::Io). The `BlockError` is the
    /// `io::Error`'s [`get_ref`](io::Error::get_ref).
    fn from(e: BlockError) -> io::Error {
        let kind = match e.kind {
            BlockErrorKind::Unaligned => io::ErrorKind::InvalidInput,
            BlockErrorKind::OutOfRange => io::ErrorKind::UnexpectedEof,
            BlockErrorKind::ReadOnly => io::ErrorKind::PermissionDenied,
            BlockErrorKind::Cancelled => io::ErrorKind::Interrupted,
            BlockErrorKind::Io => e
                .source
                .as_deref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
        };
        io::Error::new(kind, e)
    }
}

pub(crate) struct BlockDevice {
    pub(crate) name: String,
    pub(crate) pagesize: usize,
    pub(crate) length: u64,
    pub(crate) read_only: bool,
    pub(crate) backend: sys::BlockDev,
}

impl BlockDevice {
    /// Reads or writes whole pages at `off` (checked by `check`).
    pub(crate) fn io(&self, off: u64, buf: Buf<'_>) -> Result<(), BlockError> {
        let (write, len) = match &buf {
            Buf::Read(b) => (false, b.len()),
            Buf::Write(b) => (true, b.len()),
        };
        let r = match buf {
            Buf::Read(b) => self.backend.read_at(off, b),
            Buf::Write(b) => self.backend.write_at(off, b),
        };
        r.map_err(|e| BlockError {
            kind: BlockErrorKind::Io,
            msg: format!(
                "block device {:?}: {} of {len} bytes at offset {off} failed: {e}",
                self.name,
                if write { "write" } else { "read" }
            ),
            source: Some(Arc::new(e)),
            completed: 0,
        })
    }

    fn cancelled(&self) -> BlockError {
        BlockError::new(
            BlockErrorKind::Cancelled,
            format!("block device {:?}: the task is being cancelled", self.name),
        )
    }

    fn check(&self, write: bool, off: u64, len: usize) -> Result<(), BlockError> {
        let ps = self.pagesize as u64;
        let what = if write { "write" } else { "read" };
        if len == 0 {
            return Err(BlockError::new(
                BlockErrorKind::Unaligned,
                format!(
                    "block device {:?}: a {what} of 0 bytes; give a buffer of a multiple of the page size ({ps} bytes)",
                    self.name
                ),
            ));
        }
        if off % ps != 0 || len as u64 % ps != 0 {
            return Err(BlockError::new(
                BlockErrorKind::Unaligned,
                format!(
                    "block device {:?}: a {what} of {len} bytes at offset {off}; offset and length must be multiples of the page size ({ps} bytes)",
                    self.name
                ),
            ));
        }
        if off
            .checked_add(len as u64)
            .is_none_or(|end| end > self.length)
        {
            return Err(BlockError::new(
                BlockErrorKind::OutOfRange,
                format!(
                    "block device {:?}: a {what} of {len} bytes at offset {off} goes past the end of the device ({} bytes)",
                    self.name, self.length
                ),
            ));
        }
        if write && self.read_only {
            return Err(BlockError::new(
                BlockErrorKind::ReadOnly,
                format!(
                    "block device {:?} is read-only (its file cannot be opened for writing)",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

/// The buffer of one I/O: pages to fill, or pages to write.
pub(crate) enum Buf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
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
    #[must_use]
    pub fn pagesize(&self) -> usize {
        self.dev.pagesize
    }

    /// The device's length in bytes (a multiple of the page size).
    #[must_use]
    pub fn length(&self) -> u64 {
        self.dev.length
    }

    /// Whether writes are refused.
    #[must_use]
    pub fn read_only(&self) -> bool {
        self.dev.read_only
    }

    /// The device's name in the device list.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.dev.name
    }

    /// Reads `buf.len()` bytes at `off` now, without letting other tasks run.
    ///
    /// # Errors
    ///
    /// A [`BlockError`] of kind [`Unaligned`](BlockErrorKind::Unaligned) (offset
    /// or length not a multiple of the page size, or a zero length),
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) (past the end of the device),
    /// or [`Io`](BlockErrorKind::Io) (the host or tender failed the I/O; the
    /// pages may be partly read).
    pub fn atomic_read(&self, off: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.dev.check(false, off, buf.len())?;
        self.dev.io(off, Buf::Read(buf))
    }

    /// Writes `buf` at `off` now, without letting other tasks run.
    ///
    /// # Errors
    ///
    /// A [`BlockError`] of kind [`Unaligned`](BlockErrorKind::Unaligned) (offset
    /// or length not a multiple of the page size, or a zero length),
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) (past the end of the device),
    /// [`ReadOnly`](BlockErrorKind::ReadOnly) (a read-only device),
    /// or [`Io`](BlockErrorKind::Io) (the host or tender failed the I/O; the
    /// pages may be partly written).
    pub fn atomic_write(&self, off: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.dev.check(true, off, buf.len())?;
        self.dev.io(off, Buf::Write(buf))
    }

    /// Reads `buf.len()` bytes at `off`, deferred (see the module docs): the
    /// task waits until the scheduler is idle and the pages are read.
    ///
    /// # Errors
    ///
    /// A [`BlockError`] of kind [`Unaligned`](BlockErrorKind::Unaligned) (offset
    /// or length not a multiple of the page size, or a zero length),
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) (past the end of the device),
    /// or [`Io`](BlockErrorKind::Io) (the host or tender failed the I/O; the
    /// pages may be partly read).
    /// [`Cancelled`](BlockErrorKind::Cancelled) when the task is being cancelled
    /// (from a destructor of a cancelled task, which cannot wait).
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.dev.check(false, off, buf.len())?;
        self.deferred(off, Buf::Read(buf))
    }

    /// Writes `buf` at `off`, deferred (see the module docs).
    ///
    /// # Errors
    ///
    /// A [`BlockError`] of kind [`Unaligned`](BlockErrorKind::Unaligned) (offset
    /// or length not a multiple of the page size, or a zero length),
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) (past the end of the device),
    /// [`ReadOnly`](BlockErrorKind::ReadOnly) (a read-only device),
    /// or [`Io`](BlockErrorKind::Io) (the host or tender failed the I/O; the
    /// pages may be partly written).
    /// [`Cancelled`](BlockErrorKind::Cancelled) when the task is being cancelled
    /// (from a destructor of a cancelled task, which cannot wait).
    pub fn write(&self, off: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.dev.check(true, off, buf.len())?;
        self.deferred(off, Buf::Write(buf))
    }

    fn deferred(&self, off: u64, buf: Buf<'_>) -> Result<(), BlockError> {
        reactor::require("a deferred block operation");
        if fiber::cannot_wait() {
            return Err(self.dev.cancelled());
        }
        deferred::perform(&self.dev, off, buf)
    }
}

/// Makes a `Block` for an opened device.
pub(crate) fn make(dev: BlockDevice) -> Block {
    Block { dev: Rc::new(dev) }
}

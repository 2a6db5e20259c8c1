//! A page cache over a [`Block`], with buffered writes: [`Cache`].
//!
//! A [`Cache`] keeps up to a fixed number of the device's pages in memory
//! and reads bytes at any offset through them: integers of 1 to 8 bytes
//! (little- or big-endian, straddling pages or not), a byte range into a
//! buffer of the caller's, or an iterator over a region's pages or bytes.
//! Its writes go to the cached pages only (they become *dirty*) until
//! [`Cache::commit`] writes every dirty page to the device.
//!
//! ```
//! use mkernel::block::Cache;
//! # let path = std::env::temp_dir().join(format!("mk-doc-cache-mod-{}", std::process::id()));
//! # std::fs::write(&path, vec![0u8; 16 * 512]).unwrap();
//! // ./app --block:disk=disk.img
//! let stats = mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
//!     let cache = Cache::builder(disk).capacity_pages(8).build();
//!     // Buffered: nothing reaches the disk before `commit`.
//!     cache.set_u32_le(510, 0xdead_beef).unwrap(); // straddles pages 0 and 1
//!     cache.write_at(1024, b"hello").unwrap();
//!     assert_eq!(cache.get_u32_le(510).unwrap(), 0xdead_beef);
//!     let done = cache.commit().unwrap();
//!     assert_eq!((done.pages, done.writes), (3, 1)); // pages 0, 1, 2: one run
//!     let mut word = [0u8; 5];
//!     cache.read_at(1024, &mut word).unwrap();
//!     assert_eq!(&word, b"hello");
//!     cache.stats()
//! });
//! // Pages 0 and 2 were read (partly written), page 1 too; later reads hit.
//! assert_eq!((stats.misses, stats.reads), (3, 3));
//! let disk = std::fs::read(&path).unwrap();
//! assert_eq!(&disk[510..514], &0xdead_beef_u32.to_le_bytes());
//! assert_eq!(&disk[1024..1029], b"hello");
//! # std::fs::remove_file(path).unwrap();
//! ```
//!
//! # Pages, capacity, eviction
//!
//! A cache page is [`CacheBuilder::page_size`] bytes (by default the
//! device's page size; any multiple of it), page `n` covering the device's
//! bytes `[n × size, (n + 1) × size)` (the last page is shorter if the
//! device's length is not a multiple of the size). The cache holds
//! [`CacheBuilder::capacity_pages`] pages (or
//! [`capacity_bytes`](CacheBuilder::capacity_bytes) worth). When it is
//! full, loading a page evicts a clean page chosen by CLOCK (a
//! second-chance approximation of least-recently-used: a page used since
//! the hand last passed it is spared once).
//!
//! Dirty pages are never evicted: writing more pages than the capacity
//! *grows* the cache (by one page per page written beyond it) rather than
//! writing anything behind the program's back, so that nothing reaches the
//! device before [`commit`](Cache::commit) (see below). Memory is thus
//! bounded by the capacity plus the pages written since the last commit;
//! [`commit`](Cache::commit) brings the cache back to its capacity. A
//! program that writes much between commits watches
//! [`CacheStats::dirty`].
//!
//! # Loading: deferred, single-flight
//!
//! A missing page is read with the deferred [`Block::read`] (the task waits
//! while other tasks run; see [the module docs](super)), or with
//! [`Block::atomic_read`] when the cache is built with
//! [`CacheBuilder::atomic`]. While a page is being read, another task
//! asking for it does not read it again: it waits for the first read to
//! end and uses its page (or gets its error). If the reading task is
//! cancelled, the tasks waiting for the page are woken and one of them
//! reads it. [`CacheStats`] counts hits, misses, device reads, and the
//! misses that waited for another task's read.
//!
//! # Consistency between tasks
//!
//! A typed read (`get_*`) sees every byte of its value from the same state
//! of the cache: a write of another task never shows half-done in it, even
//! when the value straddles two pages. A write ([`write_at`](Cache::write_at),
//! `set_*`) first loads the pages it changes only in part (the first and
//! the last; those it covers whole are not read), then changes every page
//! at once, without letting another task run: other tasks see all of it or
//! none of it. A [`read_at`](Cache::read_at) or an iterator over several
//! pages may wait between two pages, and then see the writes made
//! meanwhile in its later pages. The pages an iterator gives ([`Chunk`])
//! are snapshots: later writes do not change them.
//!
//! # Commit: what is on the device, and when
//!
//! [`Cache::commit`] writes the dirty pages in ascending order, each run
//! of consecutive dirty pages in one [`Block::write`] (or
//! [`Block::atomic_write`] with [`CacheBuilder::atomic`]), and says what it
//! did ([`Commit`]). Commits of several tasks take turns.
//!
//! - **When `commit` returns `Ok`**, every page that was dirty when it was
//!   called (and was not [invalidated](Cache::invalidate) since) has been
//!   handed to the device, and the device's own guarantees apply: a
//!   hosted file has received a `pwrite` of it, which puts it in the OS's
//!   page cache, where other processes see it and from which a crash of
//!   this process cannot take it away; a Solo5 tender has done the same on
//!   its host file. **Nothing is flushed to stable storage**: [`Block`]
//!   has no flush operation today, so the cache issues no `fsync`, and a
//!   crash of the host (power loss) may lose or reorder what the host had
//!   not yet written back.
//! - **When `commit` fails**, the runs before the failing one are written
//!   (their pages are clean again), the failing run is written up to
//!   [`BlockError::completed`] bytes (those pages are clean too), and
//!   every other page stays dirty: calling `commit` again retries them.
//! - **When the committing task is cancelled or the program crashes
//!   mid-commit**, the device holds a prefix of the runs in order: the
//!   runs before some run `k` written, run `k` possibly torn at a device
//!   page boundary (its first pages new, the rest old: see "Torn
//!   operations" in [the module docs](super)), the runs after it
//!   untouched. After a cancellation the pages stay dirty in the cache, and
//!   the next commit writes them again. (With [`CacheBuilder::atomic`] a
//!   hosted run is one `pwrite`: a process crash cannot tear it, a host
//!   crash can, at any page the OS writes back.)
//!
//! So pages that must change together belong in one run, or the program
//! orders its commits (write and commit the data, then write and commit a
//! one-page root that points at it).

use super::{Block, BlockError, BlockErrorKind};
use crate::sync::{Ivar, Mutex};
use core::cell::RefCell;
use core::fmt;
use core::hash::{BuildHasherDefault, Hasher};
use std::collections::HashMap;
use std::rc::Rc;

/// The number of pages a cache holds unless told otherwise
/// ([`CacheBuilder::capacity_pages`]).
///
/// ```
/// assert_eq!(mkernel::block::DEFAULT_CACHE_PAGES, 1024);
/// ```
pub const DEFAULT_CACHE_PAGES: usize = 1024;

/// A page cache over a [`Block`], with buffered writes (see the
/// [module docs](self)). Cloning gives another handle to the same cache,
/// for another task.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("mk-doc-cache-type-{}", std::process::id()));
/// # std::fs::write(&path, vec![7u8; 4096]).unwrap();
/// let (a, b) = mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
///     let cache = mkernel::block::Cache::new(disk);
///     let other = cache.clone();
///     let child = mkernel::spawn(move || other.get_u8(100).unwrap());
///     (cache.get_u8(4095).unwrap(), child.join().unwrap())
/// });
/// assert_eq!((a, b), (7, 7));
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Rc<Inner>,
}

struct Inner {
    blk: Block,
    page_size: usize,
    capacity: usize,
    atomic: bool,
    state: RefCell<State>,
    /// Held by the commit in progress (commits take turns).
    committing: Mutex<()>,
}

/// The counters of a cache ([`Cache::stats`]).
///
/// ```
/// # let path = std::env::temp_dir().join(format!("mk-doc-cache-stats-{}", std::process::id()));
/// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
/// let s = mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
///     let cache = mkernel::block::Cache::new(disk);
///     cache.get_u64_be(0).unwrap();  // miss: page 0 read
///     cache.get_u16_le(8).unwrap();  // hit
///     cache.stats()
/// });
/// assert_eq!((s.hits, s.misses, s.reads, s.cached), (1, 1, 1, 1));
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Page look-ups that found the page in the cache.
    pub hits: u64,
    /// Page look-ups that did not (and read it, or waited for the read of
    /// another task: [`joined`](Self::joined)).
    pub misses: u64,
    /// Misses that waited for another task's read of the page instead of
    /// reading it (single-flight).
    pub joined: u64,
    /// Reads of a page from the device (one per page loaded; a failed or
    /// cancelled read counts too).
    pub reads: u64,
    /// Clean pages evicted to make room.
    pub evictions: u64,
    /// Write calls to the device ([`Cache::commit`]: one per run of
    /// consecutive dirty pages).
    pub writes: u64,
    /// Pages in the cache now (being read, clean or dirty).
    pub cached: usize,
    /// Dirty pages now (written in the cache, not yet committed).
    pub dirty: usize,
}

/// What one [`Cache::commit`] did.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("mk-doc-cache-commit-{}", std::process::id()));
/// # std::fs::write(&path, vec![0u8; 8 * 512]).unwrap();
/// let c = mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
///     let cache = mkernel::block::Cache::new(disk);
///     cache.write_at(0, &[1u8; 3 * 512]).unwrap(); // pages 0, 1, 2
///     cache.set_u8(5 * 512, 1).unwrap();           // page 5
///     cache.commit().unwrap()
/// });
/// assert_eq!((c.pages, c.writes, c.bytes), (4, 2, 4 * 512));
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Commit {
    /// Dirty pages written.
    pub pages: usize,
    /// Write calls to the device: runs of consecutive pages.
    pub writes: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// The settings of a [`Cache`]: [`Cache::builder`], then
/// [`build`](CacheBuilder::build).
///
/// ```
/// # let path = std::env::temp_dir().join(format!("mk-doc-cache-builder-{}", std::process::id()));
/// # std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
/// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
///     let cache = mkernel::block::Cache::builder(disk)
///         .page_size(4096)          // 8 device pages of 512 bytes
///         .capacity_bytes(64 << 10) // 16 pages
///         .atomic(true)             // read and commit at once
///         .build();
///     assert_eq!((cache.page_size(), cache.capacity()), (4096, 16));
/// });
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `build`"]
pub struct CacheBuilder {
    blk: Block,
    page_size: usize,
    capacity: Capacity,
    atomic: bool,
}

#[derive(Debug, Clone, Copy)]
enum Capacity {
    Pages(usize),
    Bytes(u64),
}

impl CacheBuilder {
    /// The size of a cache page in bytes: a multiple of the device's page
    /// size (the default).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-ps-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 8192]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::builder(disk).page_size(2048).build();
    ///     assert_eq!(cache.pages(), 4);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn page_size(mut self, bytes: usize) -> CacheBuilder {
        self.page_size = bytes;
        self
    }

    /// How many pages the cache holds (at least 1; by default
    /// [`DEFAULT_CACHE_PAGES`]).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-cp-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 8192]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::builder(disk).capacity_pages(2).build();
    ///     for n in 0..4 { cache.get_u8(n * 512).unwrap(); }
    ///     assert_eq!((cache.stats().cached, cache.stats().evictions), (2, 2));
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn capacity_pages(mut self, pages: usize) -> CacheBuilder {
        self.capacity = Capacity::Pages(pages);
        self
    }

    /// How many bytes of pages the cache holds: `bytes` divided by the page
    /// size, rounded up (at least one page).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-cb-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 8192]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::builder(disk).capacity_bytes(1000).build();
    ///     assert_eq!(cache.capacity(), 2); // two pages of 512 bytes
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn capacity_bytes(mut self, bytes: u64) -> CacheBuilder {
        self.capacity = Capacity::Bytes(bytes);
        self
    }

    /// Whether pages are read and committed with the atomic
    /// [`Block::atomic_read`] and [`Block::atomic_write`] (no other task
    /// runs meanwhile) rather than deferred (the default).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-at-{}", std::process::id()));
    /// # std::fs::write(&path, vec![3u8; 512]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::builder(disk).atomic(true).build();
    ///     assert!(cache.is_atomic());
    ///     assert_eq!(cache.get_u8(0).unwrap(), 3);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn atomic(mut self, atomic: bool) -> CacheBuilder {
        self.atomic = atomic;
        self
    }

    /// The cache, empty.
    ///
    /// # Panics
    ///
    /// If the page size is 0 or not a multiple of the device's page size.
    ///
    /// ```should_panic
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-bad-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     mkernel::block::Cache::builder(disk).page_size(1000).build(); // not 512 × k
    /// });
    /// ```
    #[must_use]
    pub fn build(self) -> Cache {
        let dev = self.blk.pagesize();
        assert!(
            self.page_size != 0 && self.page_size % dev == 0,
            "block::Cache over {:?}: a page size of {} bytes; give a multiple of the device's page size ({dev} bytes)",
            self.blk.name(),
            self.page_size,
        );
        let capacity = match self.capacity {
            Capacity::Pages(n) => n,
            Capacity::Bytes(b) => {
                usize::try_from(b.div_ceil(self.page_size as u64)).unwrap_or(usize::MAX)
            }
        }
        .max(1);
        Cache {
            inner: Rc::new(Inner {
                blk: self.blk,
                page_size: self.page_size,
                capacity,
                atomic: self.atomic,
                state: RefCell::new(State::default()),
                committing: Mutex::new(()),
            }),
        }
    }
}

/// A page number's hash: a multiplication (page numbers are no attacker's
/// choice, and SipHash would cost more than the rest of a hit).
#[derive(Default)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        let h = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

/// The cache's bookkeeping; never borrowed across a suspension.
#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    /// Slots holding no page.
    free: Vec<usize>,
    /// Page number → slot.
    map: HashMap<u64, usize, BuildHasherDefault<PageHasher>>,
    /// The CLOCK hand.
    hand: usize,
    /// Bumped by every write and invalidation: a task that waited between
    /// two look-ups knows whether what it holds is still current.
    generation: u64,
    next_load: u64,
    dirty: usize,
    stats: CacheStats,
}

struct Slot {
    page: u64,
    referenced: bool,
    state: SlotState,
}

enum SlotState {
    Free,
    /// A task is reading the page; `done` is resolved with its error, if
    /// any, or cancelled if it was cancelled.
    Loading {
        id: u64,
        done: Ivar<Option<BlockError>>,
    },
    Clean(Rc<[u8]>),
    Dirty(Rc<[u8]>),
}

impl State {
    /// A slot for a new page: a free one while under capacity, else the
    /// clean page CLOCK picks, else (every page dirty or loading) a new
    /// one: the cache grows.
    fn alloc(&mut self, capacity: usize) -> usize {
        if self.map.len() >= capacity
            && let Some(i) = self.evict_one()
        {
            return i;
        }
        if let Some(i) = self.free.pop() {
            return i;
        }
        self.slots.push(Slot {
            page: 0,
            referenced: false,
            state: SlotState::Free,
        });
        self.slots.len() - 1
    }

    /// Evicts a clean page by CLOCK; its slot, now free (and not in `free`).
    fn evict_one(&mut self) -> Option<usize> {
        let len = self.slots.len();
        for _ in 0..2 * len {
            let i = self.hand;
            self.hand = (self.hand + 1) % len;
            let s = &mut self.slots[i];
            if let SlotState::Clean(_) = s.state {
                if s.referenced {
                    s.referenced = false;
                } else {
                    s.state = SlotState::Free;
                    self.map.remove(&s.page);
                    self.stats.evictions += 1;
                    return Some(i);
                }
            }
        }
        None
    }

    /// Evicts clean pages until the cache is within its capacity (or only
    /// dirty and loading pages are left).
    fn shrink(&mut self, capacity: usize) {
        while self.map.len() > capacity {
            match self.evict_one() {
                Some(i) => self.free.push(i),
                None => break,
            }
        }
    }

    fn remove(&mut self, page: u64) {
        if let Some(i) = self.map.remove(&page) {
            if let SlotState::Dirty(_) = self.slots[i].state {
                self.dirty -= 1;
            }
            self.slots[i].state = SlotState::Free;
            self.free.push(i);
        }
    }
}

/// Frees the slot of a load and wakes its waiters, unless the load
/// finished: runs when the loading task is cancelled (or panics).
struct Loading<'a> {
    inner: &'a Inner,
    slot: usize,
    page: u64,
    id: u64,
    done: Ivar<Option<BlockError>>,
    finished: bool,
}

impl Loading<'_> {
    fn ours(&self, st: &State) -> bool {
        let s = &st.slots[self.slot];
        s.page == self.page && matches!(s.state, SlotState::Loading { id, .. } if id == self.id)
    }

    /// Installs the page (or frees the slot after an error) and wakes the
    /// waiters.
    fn finish(mut self, r: Result<Rc<[u8]>, BlockError>) -> Result<Rc<[u8]>, BlockError> {
        self.finished = true;
        {
            let mut st = self.inner.state.borrow_mut();
            let ours = self.ours(&st);
            match r {
                Ok(data) => {
                    if ours {
                        st.slots[self.slot].state = SlotState::Clean(data.clone());
                    }
                    self.done.resolve(None);
                    Ok(data)
                }
                Err(e) => {
                    if ours {
                        st.remove(self.page);
                    }
                    self.done.resolve(Some(e.clone()));
                    Err(e)
                }
            }
        }
    }
}

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut st) = self.inner.state.try_borrow_mut()
            && self.ours(&st)
        {
            st.remove(self.page);
        }
        // The waiters look again; one of them reads the page.
        self.done.cancel();
    }
}

impl Inner {
    /// Bytes in page `n` (the last page may be short).
    fn page_len(&self, n: u64) -> usize {
        let start = n * self.page_size as u64;
        (self.blk.length() - start).min(self.page_size as u64) as usize
    }

    fn cancelled(&self) -> BlockError {
        BlockError::new(
            BlockErrorKind::Cancelled,
            format!(
                "block::Cache over {:?}: the task is being cancelled",
                self.blk.name()
            ),
        )
    }

    /// Page `n`, from the cache or the device (the single-flight load).
    fn page(&self, n: u64) -> Result<Rc<[u8]>, BlockError> {
        let mut counted = false;
        loop {
            let mut st = self.state.borrow_mut();
            if let Some(&i) = st.map.get(&n) {
                let s = &mut st.slots[i];
                s.referenced = true;
                let done = match &s.state {
                    SlotState::Clean(d) | SlotState::Dirty(d) => {
                        let d = d.clone();
                        if !counted {
                            st.stats.hits += 1;
                        }
                        return Ok(d);
                    }
                    SlotState::Loading { done, .. } => done.clone(),
                    SlotState::Free => unreachable!("a mapped slot holds a page"),
                };
                if done.is_set() {
                    // A load that ended without clearing its slot (its
                    // task unwound while the state was borrowed): stale.
                    st.remove(n);
                    continue;
                }
                if !counted {
                    st.stats.misses += 1;
                    counted = true;
                }
                st.stats.joined += 1;
                drop(st);
                match done.wait() {
                    Ok(None) => {}
                    Ok(Some(e)) => return Err(e),
                    // The loader was cancelled: look again.
                    Err(_) if done.is_set() => {}
                    // This task is being cancelled (it cannot wait).
                    Err(_) => return Err(self.cancelled()),
                }
                continue;
            }
            if !counted {
                st.stats.misses += 1;
            }
            st.stats.reads += 1;
            let slot = st.alloc(self.capacity);
            let id = st.next_load;
            st.next_load += 1;
            let done = Ivar::new();
            st.slots[slot] = Slot {
                page: n,
                referenced: true,
                state: SlotState::Loading {
                    id,
                    done: done.clone(),
                },
            };
            st.map.insert(n, slot);
            drop(st);
            let loading = Loading {
                inner: self,
                slot,
                page: n,
                id,
                done,
                finished: false,
            };
            // Read straight into the page's own allocation (no copy after).
            let mut page: Rc<[u8]> = core::iter::repeat_n(0u8, self.page_len(n)).collect();
            let buf = Rc::get_mut(&mut page).expect("a new page has one owner");
            let off = n * self.page_size as u64;
            let r = if self.atomic {
                self.blk.atomic_read(off, buf)
            } else {
                self.blk.read(off, buf)
            };
            return loading.finish(r.map(|()| page));
        }
    }

    fn generation(&self) -> u64 {
        self.state.borrow().generation
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("block", &self.inner.blk)
            .field("page_size", &self.inner.page_size)
            .field("capacity", &self.inner.capacity)
            .field("atomic", &self.inner.atomic)
            .field("stats", &self.stats())
            .finish()
    }
}

macro_rules! typed {
    ($($get:ident $set:ident $t:ty, $from:ident, $to:ident, $what:literal, $v:literal;)*) => {$(
        #[doc = concat!("The ", $what, " at byte `off` (it may straddle two pages).")]
        ///
        /// # Errors
        ///
        /// [`OutOfRange`](BlockErrorKind::OutOfRange) if the value goes past
        /// the end of the device; else as [`Block::read`] (or
        /// [`Block::atomic_read`]) when a page must be read.
        ///
        /// ```
        #[doc = concat!("# let path = std::env::temp_dir().join(format!(\"mk-doc-cache-", stringify!($get), "-{}\", std::process::id()));")]
        /// # std::fs::write(&path, vec![0u8; 1024]).unwrap();
        /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
        ///     let cache = mkernel::block::Cache::new(disk);
        #[doc = concat!("    cache.", stringify!($set), "(510, ", $v, ").unwrap();")]
        #[doc = concat!("    assert_eq!(cache.", stringify!($get), "(510).unwrap(), ", $v, ");")]
        /// });
        /// # std::fs::remove_file(path).unwrap();
        /// ```
        pub fn $get(&self, off: u64) -> Result<$t, BlockError> {
            self.get(off).map(<$t>::$from)
        }

        #[doc = concat!("Writes `v` as the ", $what, " at byte `off`, in the cache (see [`write_at`](Self::write_at)).")]
        ///
        /// # Errors
        ///
        /// As [`write_at`](Self::write_at).
        ///
        /// ```
        #[doc = concat!("# let path = std::env::temp_dir().join(format!(\"mk-doc-cache-", stringify!($set), "-{}\", std::process::id()));")]
        /// # std::fs::write(&path, vec![0u8; 1024]).unwrap();
        /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
        ///     let cache = mkernel::block::Cache::new(disk);
        #[doc = concat!("    cache.", stringify!($set), "(100, ", $v, ").unwrap();")]
        ///     cache.commit().unwrap();
        /// });
        /// let disk = std::fs::read(&path).unwrap();
        #[doc = concat!("assert_eq!(&disk[100..100 + size_of::<", stringify!($t), ">()], &", $v, ".", stringify!($to), "());")]
        /// # std::fs::remove_file(path).unwrap();
        /// ```
        pub fn $set(&self, off: u64, v: $t) -> Result<(), BlockError> {
            self.write_at(off, &v.$to())
        }
    )*};
}

impl Cache {
    /// A cache over `blk` with the default settings: the device's page
    /// size, [`DEFAULT_CACHE_PAGES`] pages, deferred reads and writes.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-new-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     assert_eq!((cache.page_size(), cache.capacity()), (512, 1024));
    ///     assert!(!cache.is_atomic());
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn new(blk: Block) -> Cache {
        Cache::builder(blk).build()
    }

    /// The settings of a cache over `blk`, to change before
    /// [`build`](CacheBuilder::build) (see [`CacheBuilder`]).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-bld-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::builder(disk).capacity_pages(4).build();
    ///     assert_eq!(cache.capacity(), 4);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn builder(blk: Block) -> CacheBuilder {
        CacheBuilder {
            page_size: blk.pagesize(),
            blk,
            capacity: Capacity::Pages(DEFAULT_CACHE_PAGES),
            atomic: false,
        }
    }

    /// The device under the cache (to read or write it directly: mind
    /// [`invalidate`](Self::invalidate) then).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-blk-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     assert_eq!(cache.block().name(), "disk");
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn block(&self) -> &Block {
        &self.inner.blk
    }

    /// The size of a cache page in bytes.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-pgs-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     assert_eq!(mkernel::block::Cache::new(disk).page_size(), 512);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn page_size(&self) -> usize {
        self.inner.page_size
    }

    /// How many pages the device has, in cache pages (the last one may be
    /// short).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-npg-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 5 * 512]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::builder(disk).page_size(1024).build();
    ///     assert_eq!(cache.pages(), 3); // 1024 + 1024 + 512 bytes
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn pages(&self) -> u64 {
        self.inner
            .blk
            .length()
            .div_ceil(self.inner.page_size as u64)
    }

    /// How many pages the cache holds before it evicts (dirty pages beyond
    /// it grow the cache until the next commit: see the module docs).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-cap-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::builder(disk).capacity_pages(2).build();
    ///     cache.write_at(0, &[1u8; 2048]).unwrap();      // 4 dirty pages
    ///     assert_eq!((cache.capacity(), cache.stats().cached), (2, 4));
    ///     cache.commit().unwrap();
    ///     assert_eq!(cache.stats().cached, 2);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Whether pages are read and committed atomically
    /// ([`CacheBuilder::atomic`]).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-isat-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     assert!(!mkernel::block::Cache::new(disk).is_atomic());
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn is_atomic(&self) -> bool {
        self.inner.atomic
    }

    /// The cache's counters (see [`CacheStats`]).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-st-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     cache.get_u8(0).unwrap();
    ///     cache.get_u8(1).unwrap();
    ///     let s = cache.stats();
    ///     assert_eq!((s.hits, s.misses), (1, 1));
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let st = self.inner.state.borrow();
        CacheStats {
            cached: st.map.len(),
            dirty: st.dirty,
            ..st.stats
        }
    }

    fn check(&self, off: u64, len: usize, write: bool) -> Result<(), BlockError> {
        let blk = &self.inner.blk;
        if off
            .checked_add(len as u64)
            .is_none_or(|end| end > blk.length())
        {
            return Err(BlockError::new(
                BlockErrorKind::OutOfRange,
                format!(
                    "block::Cache over {:?}: {len} bytes at offset {off} go past the end of the device ({} bytes)",
                    blk.name(),
                    blk.length()
                ),
            ));
        }
        if write && blk.read_only() {
            return Err(BlockError::new(
                BlockErrorKind::ReadOnly,
                format!(
                    "block::Cache over {:?}: the device is read-only (its file cannot be opened for writing)",
                    blk.name()
                ),
            ));
        }
        Ok(())
    }

    /// `N` bytes at `off`, all from one state of the cache.
    fn get<const N: usize>(&self, off: u64) -> Result<[u8; N], BlockError> {
        self.check(off, N, false)?;
        let ps = self.inner.page_size as u64;
        let (n, at) = (off / ps, (off % ps) as usize);
        let mut out = [0u8; N];
        if at + N <= self.inner.page_size {
            let p = self.inner.page(n)?;
            out.copy_from_slice(&p[at..at + N]);
            return Ok(out);
        }
        // Straddling: both pages from one generation (no write between).
        loop {
            let g = self.inner.generation();
            let a = self.inner.page(n)?;
            let b = self.inner.page(n + 1)?;
            if self.inner.generation() == g {
                let k = a.len() - at;
                out[..k].copy_from_slice(&a[at..]);
                out[k..].copy_from_slice(&b[..N - k]);
                return Ok(out);
            }
        }
    }

    typed! {
        get_u8 set_u8 u8, from_le_bytes, to_le_bytes, "byte", "0xa5_u8";
        get_u16_le set_u16_le u16, from_le_bytes, to_le_bytes, "little-endian `u16`", "0xbeef_u16";
        get_u16_be set_u16_be u16, from_be_bytes, to_be_bytes, "big-endian `u16`", "0xbeef_u16";
        get_u32_le set_u32_le u32, from_le_bytes, to_le_bytes, "little-endian `u32`", "0xdead_beef_u32";
        get_u32_be set_u32_be u32, from_be_bytes, to_be_bytes, "big-endian `u32`", "0xdead_beef_u32";
        get_u64_le set_u64_le u64, from_le_bytes, to_le_bytes, "little-endian `u64`", "0x0123_4567_89ab_cdef_u64";
        get_u64_be set_u64_be u64, from_be_bytes, to_be_bytes, "big-endian `u64`", "0x0123_4567_89ab_cdef_u64";
    }

    /// Fills `buf` with the bytes at `off` (any offset and length), through
    /// the cache. Over several pages it may wait between two of them (see
    /// the module docs).
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) if the range goes past the
    /// end of the device; else as [`Block::read`] (or
    /// [`Block::atomic_read`]) when a page must be read (then `buf` may be
    /// partly filled).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-rd-{}", std::process::id()));
    /// # std::fs::write(&path, (0..2048u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     let mut buf = [0u8; 4];
    ///     cache.read_at(510, &mut buf).unwrap();
    ///     assert_eq!(buf, [254, 255, 0, 1]);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(off, buf.len(), false)?;
        let ps = self.inner.page_size as u64;
        let mut done = 0;
        while done < buf.len() {
            let pos = off + done as u64;
            let at = (pos % ps) as usize;
            let p = self.inner.page(pos / ps)?;
            let take = (buf.len() - done).min(p.len() - at);
            buf[done..done + take].copy_from_slice(&p[at..at + take]);
            done += take;
        }
        Ok(())
    }

    /// The pages over `len` bytes from `off`, each cut to the range: an
    /// iterator of [`Chunk`]s (snapshots of the pages), which loads each
    /// page when it gets to it.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) if the range goes past the
    /// end of the device. The iterator gives the error of a page that
    /// cannot be read (as [`Block::read`]), then ends.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-pages-{}", std::process::id()));
    /// # std::fs::write(&path, vec![1u8; 2048]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     let chunks: Vec<(u64, usize)> = cache.chunks(500, 600).unwrap()
    ///         .map(|c| c.map(|c| (c.offset(), c.len())))
    ///         .collect::<Result<_, _>>().unwrap();
    ///     assert_eq!(chunks, [(500, 12), (512, 512), (1024, 76)]);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn chunks(&self, off: u64, len: u64) -> Result<Chunks, BlockError> {
        self.check(off, usize::try_from(len).unwrap_or(usize::MAX), false)?;
        Ok(Chunks {
            cache: self.clone(),
            pos: off,
            end: off + len,
            failed: false,
        })
    }

    /// The `len` bytes from `off`, one at a time, through the cache: an
    /// iterator of `Result<u8, BlockError>`.
    ///
    /// # Errors
    ///
    /// As [`chunks`](Self::chunks).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-bytes-{}", std::process::id()));
    /// # std::fs::write(&path, b"0123456789".repeat(103)[..1024].to_vec()).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     let digits: Vec<u8> = cache.bytes(508, 6).unwrap().collect::<Result<_, _>>().unwrap();
    ///     assert_eq!(digits, b"890123");
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn bytes(&self, off: u64, len: u64) -> Result<Bytes, BlockError> {
        Ok(Bytes {
            chunks: self.chunks(off, len)?,
            cur: None,
            at: 0,
        })
    }

    /// Drops page `page` (a page number: byte offset / [`page_size`](Self::page_size))
    /// from the cache, so that the next read reads it from the device:
    /// after the device was written other than through this cache. **A
    /// dirty page's uncommitted writes are discarded** (which is also how
    /// to abandon them). A read of the page in progress completes, but its
    /// page is not kept.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-inv-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 1024]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk.clone());
    ///     assert_eq!(cache.get_u8(512).unwrap(), 0);
    ///     disk.write(512, &[9u8; 512]).unwrap(); // behind the cache's back
    ///     assert_eq!(cache.get_u8(512).unwrap(), 0); // stale
    ///     cache.invalidate(1);
    ///     assert_eq!(cache.get_u8(512).unwrap(), 9);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn invalidate(&self, page: u64) {
        let mut st = self.inner.state.borrow_mut();
        st.generation += 1;
        st.remove(page);
    }

    /// Drops every page from the cache, dirty ones included (as
    /// [`invalidate`](Self::invalidate)).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-inva-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 1024]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     cache.set_u8(0, 1).unwrap();
    ///     cache.get_u8(600).unwrap();
    ///     cache.invalidate_all();
    ///     assert_eq!((cache.stats().cached, cache.stats().dirty), (0, 0));
    ///     assert_eq!(cache.get_u8(0).unwrap(), 0); // the write was discarded
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn invalidate_all(&self) {
        let mut st = self.inner.state.borrow_mut();
        st.generation += 1;
        let pages: Vec<u64> = st.map.keys().copied().collect();
        for p in pages {
            st.remove(p);
        }
    }

    /// Writes `data` at `off` (any offset and length) in the cache: the
    /// pages become dirty, and reach the device at the next
    /// [`commit`](Self::commit). The first and the last page are read first
    /// if `data` covers them only in part (so this may wait); then every
    /// page is changed at once, without letting another task run.
    ///
    /// # Errors
    ///
    /// [`OutOfRange`](BlockErrorKind::OutOfRange) if the range goes past the
    /// end of the device, [`ReadOnly`](BlockErrorKind::ReadOnly) on a
    /// read-only device; else as [`Block::read`] when a page must be read
    /// (then nothing was written).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-wr-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 2048]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     cache.write_at(500, &[7u8; 600]).unwrap(); // pages 0, 1 and 2
    ///     assert_eq!(cache.stats().dirty, 3);
    ///     assert_eq!(cache.stats().reads, 2); // pages 0 and 2: in part
    ///     assert_eq!(cache.get_u8(1099).unwrap(), 7);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn write_at(&self, off: u64, data: &[u8]) -> Result<(), BlockError> {
        self.check(off, data.len(), true)?;
        if data.is_empty() {
            return Ok(());
        }
        let inner = &*self.inner;
        let ps = inner.page_size as u64;
        let end = off + data.len() as u64;
        let (first, last) = (off / ps, (end - 1) / ps);
        let partial = |n: u64| {
            let start = n * ps;
            off > start || end < start + inner.page_len(n) as u64
        };
        loop {
            let g = inner.generation();
            let head = if partial(first) {
                Some(inner.page(first)?)
            } else {
                None
            };
            let tail = if last != first && partial(last) {
                Some(inner.page(last)?)
            } else {
                None
            };
            let mut st = inner.state.borrow_mut();
            if st.generation != g {
                // Written or invalidated while this task waited: the pages
                // it holds may be stale.
                continue;
            }
            st.generation += 1;
            for n in first..=last {
                let start = n * ps;
                let lo = off.max(start);
                let hi = end.min(start + inner.page_len(n) as u64);
                let src = &data[(lo - off) as usize..(hi - off) as usize];
                let at = (lo - start) as usize;
                let slot = match st.map.get(&n) {
                    Some(&i) => i,
                    None => {
                        let i = st.alloc(inner.capacity);
                        st.map.insert(n, i);
                        st.slots[i] = Slot {
                            page: n,
                            referenced: true,
                            state: SlotState::Free,
                        };
                        i
                    }
                };
                let held = if n == first {
                    head.clone()
                } else if n == last {
                    tail.clone()
                } else {
                    None
                };
                let s = &mut st.slots[slot];
                s.referenced = true;
                let (mut d, was_dirty) = match core::mem::replace(&mut s.state, SlotState::Free) {
                    SlotState::Clean(d) => (d, false),
                    SlotState::Dirty(d) => (d, true),
                    // Not cached, or being read again (evicted since
                    // this task read it; its loader will not install
                    // its copy over this one): what this task read is
                    // current (same generation), or the write covers
                    // the page whole.
                    SlotState::Free | SlotState::Loading { .. } => (
                        held.unwrap_or_else(|| vec![0u8; inner.page_len(n)].into()),
                        false,
                    ),
                };
                Rc::make_mut(&mut d)[at..at + src.len()].copy_from_slice(src);
                s.state = SlotState::Dirty(d);
                if !was_dirty {
                    st.dirty += 1;
                }
            }
            return Ok(());
        }
    }

    /// Writes every dirty page to the device, in ascending order, each run
    /// of consecutive dirty pages in one [`Block::write`] (or
    /// [`Block::atomic_write`]); what it did. What is on the device when it
    /// returns, fails, or is interrupted: see "Commit" in the
    /// [module docs](self). A commit waits for one in progress in another
    /// task, then writes what is dirty then.
    ///
    /// # Errors
    ///
    /// As [`Block::write`] (or [`Block::atomic_write`]): the first write
    /// that fails stops the commit; the pages not written stay dirty.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-cm-{}", std::process::id()));
    /// # std::fs::write(&path, vec![0u8; 4096]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     cache.set_u64_be(0, 42).unwrap();
    ///     assert_eq!(cache.commit().unwrap().writes, 1);
    ///     assert_eq!(cache.commit().unwrap().writes, 0); // nothing dirty
    /// });
    /// assert_eq!(std::fs::read(&path).unwrap()[7], 42);
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    pub fn commit(&self) -> Result<Commit, BlockError> {
        let inner = &*self.inner;
        let _turn = inner.committing.lock();
        // Snapshots of the dirty pages: a page written again meanwhile is
        // copied (copy-on-write), so it stays dirty after this commit.
        let mut dirty: Vec<(u64, Rc<[u8]>)> = {
            let st = inner.state.borrow();
            st.slots
                .iter()
                .filter_map(|s| match &s.state {
                    SlotState::Dirty(d) => Some((s.page, d.clone())),
                    _ => None,
                })
                .collect()
        };
        dirty.sort_unstable_by_key(|(n, _)| *n);
        let ps = inner.page_size as u64;
        let mut done = Commit::default();
        let mut i = 0;
        while i < dirty.len() {
            let mut j = i + 1;
            while j < dirty.len() && dirty[j].0 == dirty[j - 1].0 + 1 {
                j += 1;
            }
            let run = &dirty[i..j];
            let buf: Vec<u8> = run.iter().flat_map(|(_, d)| d.iter().copied()).collect();
            let off = run[0].0 * ps;
            let r = if inner.atomic {
                inner.blk.atomic_write(off, &buf)
            } else {
                inner.blk.write(off, &buf)
            };
            inner.state.borrow_mut().stats.writes += 1;
            done.writes += 1;
            let written = match &r {
                Ok(()) => run.len(),
                Err(e) => usize::try_from(e.completed() / ps)
                    .unwrap_or(0)
                    .min(run.len()),
            };
            self.mark_clean(&run[..written]);
            done.pages += written;
            done.bytes += run[..written]
                .iter()
                .map(|(_, d)| d.len() as u64)
                .sum::<u64>();
            r?;
            i = j;
        }
        inner.state.borrow_mut().shrink(inner.capacity);
        Ok(done)
    }

    /// Marks the pages clean if they are still what was written.
    fn mark_clean(&self, pages: &[(u64, Rc<[u8]>)]) {
        let mut st = self.inner.state.borrow_mut();
        for (n, snap) in pages {
            let Some(&i) = st.map.get(n) else { continue };
            let s = &mut st.slots[i];
            if let SlotState::Dirty(d) = &s.state
                && Rc::ptr_eq(d, snap)
            {
                s.state = SlotState::Clean(d.clone());
                st.dirty -= 1;
            }
        }
    }
}

/// Part of a cached page: the bytes of a range that lie in one page
/// ([`Cache::chunks`]). A snapshot: later writes to the cache do not
/// change it. Dereferences to its bytes.
///
/// ```
/// # let path = std::env::temp_dir().join(format!("mk-doc-cache-chunk-{}", std::process::id()));
/// # std::fs::write(&path, vec![5u8; 1024]).unwrap();
/// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
///     let cache = mkernel::block::Cache::new(disk);
///     let c = cache.chunks(10, 20).unwrap().next().unwrap().unwrap();
///     cache.set_u8(10, 0).unwrap();
///     assert_eq!((c.offset(), &c[..3]), (10, &[5u8, 5, 5][..]));
/// });
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Clone)]
pub struct Chunk {
    offset: u64,
    page: Rc<[u8]>,
    start: usize,
    end: usize,
}

impl Chunk {
    /// The device offset of the chunk's first byte.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("mk-doc-cache-choff-{}", std::process::id()));
    /// # std::fs::write(&path, vec![5u8; 1024]).unwrap();
    /// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
    ///     let cache = mkernel::block::Cache::new(disk);
    ///     let offs: Vec<u64> = cache.chunks(100, 900).unwrap().map(|c| c.unwrap().offset()).collect();
    ///     assert_eq!(offs, [100, 512]);
    /// });
    /// # std::fs::remove_file(path).unwrap();
    /// ```
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl core::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.page[self.start..self.end]
    }
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("offset", &self.offset)
            .field("len", &(self.end - self.start))
            .finish()
    }
}

/// The pages of a range, as [`Chunk`]s ([`Cache::chunks`]).
///
/// ```
/// # let path = std::env::temp_dir().join(format!("mk-doc-cache-chunks-{}", std::process::id()));
/// # std::fs::write(&path, vec![1u8; 4096]).unwrap();
/// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
///     let cache = mkernel::block::Cache::new(disk);
///     let sum: u64 = cache.chunks(0, 4096).unwrap()
///         .map(|c| c.unwrap().iter().map(|&b| u64::from(b)).sum::<u64>())
///         .sum();
///     assert_eq!(sum, 4096);
/// });
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct Chunks {
    cache: Cache,
    pos: u64,
    end: u64,
    failed: bool,
}

impl Iterator for Chunks {
    type Item = Result<Chunk, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let ps = self.cache.inner.page_size as u64;
        let at = (self.pos % ps) as usize;
        match self.cache.inner.page(self.pos / ps) {
            Ok(page) => {
                let take = usize::try_from(self.end - self.pos)
                    .unwrap_or(usize::MAX)
                    .min(page.len() - at);
                let c = Chunk {
                    offset: self.pos,
                    page,
                    start: at,
                    end: at + take,
                };
                self.pos += take as u64;
                Some(Ok(c))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The bytes of a range, one at a time ([`Cache::bytes`]).
///
/// ```
/// # let path = std::env::temp_dir().join(format!("mk-doc-cache-byt-{}", std::process::id()));
/// # std::fs::write(&path, b"ab".repeat(512)).unwrap();
/// mkernel::Builder::new().block_file("disk", &path).run(mkernel::block("disk"), |disk| {
///     let cache = mkernel::block::Cache::new(disk);
///     let n = cache.bytes(0, 1024).unwrap().filter(|b| *b.as_ref().unwrap() == b'a').count();
///     assert_eq!(n, 512);
/// });
/// # std::fs::remove_file(path).unwrap();
/// ```
#[derive(Debug)]
#[must_use = "iterators do nothing unless consumed"]
pub struct Bytes {
    chunks: Chunks,
    cur: Option<Chunk>,
    at: usize,
}

impl Iterator for Bytes {
    type Item = Result<u8, BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(c) = &self.cur
                && self.at < c.len()
            {
                self.at += 1;
                return Some(Ok(c[self.at - 1]));
            }
            match self.chunks.next()? {
                Ok(c) => {
                    self.cur = Some(c);
                    self.at = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

//! A crash-safe key-value store spoken in the Redis protocol (RESP): its
//! data on a block device, read and written through
//! [`mkernel::block::Cache`].
//!
//! ```text
//! truncate -s 64M data.img                      # a zeroed file is an empty store
//! cargo build --example kv
//! ./target/debug/examples/kv --net:service=tap0 --block:data=data.img -- --ipv4=10.0.0.2/24
//! redis-cli -h 10.0.0.2 set greeting hello && redis-cli -h 10.0.0.2 get greeting
//! ```
//!
//! Devices: net `service`, block `data`. Application flags (after `--`):
//! `--port=N` (default 6379), `--ipv4=ADDR/PREFIX` (default 10.0.0.2/24),
//! `--ipv4-gateway=ADDR`. Prints one line `listening on ADDR:PORT` on
//! stdout once it accepts connections (and one line `kv: ...` on stderr
//! saying what recovery found).
//!
//! # Commands
//!
//! `GET key`, `SET key value` (no options), `DEL key...`, `EXISTS key...`,
//! `PING [message]`, `INFO [section]` (sections `server`, `clients`,
//! `persistence`, `stats`, `keyspace`), `DBSIZE`, `ECHO`, `QUIT`; and what
//! clients send on connecting: `CONFIG GET` (`save` is empty, `appendonly`
//! is `yes`: redis-benchmark asks for both), `COMMAND` (an empty list: no
//! hints in an interactive redis-cli), `HELLO [2]` (RESP3 gets Redis's own
//! `-NOPROTO`), `CLIENT SETNAME/SETINFO/ID`, `SELECT 0`. Anything else is
//! answered `-ERR unknown command`. Requests are RESP arrays of bulk
//! strings, or inline commands (`PING\r\n`), pipelined or not.
//!
//! # Limits (hostile input)
//!
//! A key is at most [`MAX_KEY`] bytes and a value [`MAX_VALUE`] (`-ERR`
//! for a longer key; a bulk string over [`MAX_VALUE`] is a protocol
//! error); a request has at most [`MAX_ARGS`] arguments and
//! [`MAX_REQUEST`] bytes; an inline command at most [`MAX_INLINE`] bytes.
//! A protocol error (a malformed request, or one over these limits) is
//! answered `-ERR Protocol error: ...` and the connection is closed, as
//! Redis does: nothing is buffered beyond the limits, so a connection
//! holds at most one request of [`MAX_REQUEST`] bytes plus its replies
//! (flushed every 64 KiB).
//!
//! # Durability
//!
//! A write (`SET`, `DEL`) is acknowledged only after the batch holding it
//! has been committed: [`Cache::commit`] returned, so every page of it was
//! handed to the device (hosted: `pwrite`; under a Solo5 tender: the
//! tender's `pwrite`). Writes of all connections that arrive while a
//! commit is running go into the next one (**group commit**): one commit
//! per batch, not per request. [`Block`](mkernel::Block) has no flush, so
//! this survives a crash or kill of the unikernel or the process, not a
//! crash of the host (power loss) with pages still in its page cache.
//! Reads (`GET`, `EXISTS`) see committed writes only, and a connection's
//! read waits for its own earlier writes.
//!
//! # On-disk format
//!
//! All integers little-endian. Cache pages are [`PAGE`] (4 KiB) bytes.
//!
//! - **Superblocks**: two copies, at bytes 0 and 4096, [`SB_LEN`] bytes each:
//!   magic `MKKVSB01`, `seq: u64` (bumped at each switch), `epoch: u64`
//!   (random, names the active region's log), `active: u8` (0 or 1), 7
//!   zero bytes, `region_len: u64`, `crc32c: u32` of the 40 bytes before it.
//!   The valid copy (magic and checksum) with the highest `seq` is current;
//!   if there is none, a device whose first 8 KiB are zero is an empty
//!   store (a superblock is written then), and any other content is
//!   refused (not a store: nothing is overwritten).
//! - **Regions**: from byte 8192, two regions of `region_len` bytes
//!   (half of the rest, in whole 4 KiB pages). The active one holds the
//!   log; the other is free.
//! - **Log**: batches packed one after the other from the region's start.
//!   A batch is a 40-byte header — magic `KVB1`, `len: u32` (bytes of
//!   records), `epoch: u64`, `seq: u64` (1, 2, 3, ... in this log),
//!   `count: u32` (records), 4 zero bytes, `crc32c: u32` of the header's
//!   first 32 bytes and the records, 4 zero bytes — then `count` records:
//!   `op: u8` (1 = set, 2 = delete), `key_len: u16`, `value_len: u32`
//!   (0 for a delete), the key, the value.
//! - **Index**: in memory, key → where its value lies in the log; rebuilt
//!   at start-up by reading the log. A `GET` reads the value through the
//!   cache (hot values are cache hits).
//! - **Compaction**: when a batch does not fit in the active region, the
//!   live entries (with the batch applied) are written as a new log (new
//!   random epoch, `seq` from 1) into the free region, committed, and then
//!   the other superblock copy is written with `seq + 1`, the new epoch and
//!   the region: that one-page write is the switch. The batch is
//!   acknowledged after it. A batch that cannot fit even then (live data
//!   over 7/8 of a region, which keeps compactions from following each
//!   other) gets `-ERR store full`.
//!
//! # Crash argument
//!
//! The device writes a page whole or not at all (a device page, 512
//! bytes: a deferred write is one `pwrite` per page, and a kill lands
//! between two); a commit writes its pages in ascending order, so a crash
//! mid-commit leaves its first pages new and the rest old. Recovery reads
//! the current superblock, then the active log from its start, and stops
//! at the first header that is not `KVB1` with the log's epoch and the next
//! `seq`, or whose checksum does not match (a torn batch: the commit was
//! interrupted; `INFO` says `recovered_torn_batch:1`).
//!
//! - *No acknowledged write is lost*: it was in a batch whose commit
//!   returned, whose pages are all on the device, and every earlier batch
//!   too (one commit at a time, each appended at the end of the previous
//!   one). Later commits rewrite only the page holding the log's end, with
//!   the same bytes before the end, and a page is written whole. A
//!   compaction writes only the free region and the unused superblock copy
//!   until the switch, and the new log holds every live entry before it.
//! - *Nothing unacknowledged is half-visible*: a batch is applied whole
//!   (its checksum covers all of it) or not at all, and the log is a
//!   prefix: a torn batch ends it. An interrupted batch may be found whole
//!   (its commit ended, the kill came before the reply): its writes are
//!   then all visible, as if acknowledged.
//! - *Nothing stale is revived*: bytes past the log's end are an older
//!   log's (another epoch: a random 64-bit value per log, so a failed
//!   compaction's leftovers differ too), or the remains of a batch torn at
//!   this position (its header is overwritten by the next batch; what
//!   follows is records, whose bytes cannot make a header with the log's
//!   unknown epoch, next `seq` and a matching checksum except by a 2^-96
//!   chance). A superblock is one page in its own cache page: a torn or
//!   failed switch leaves the other copy current, pointing at the old log,
//!   which the compaction did not touch.

use mkernel::block::{BlockError, Cache};
use mkernel::net::stack::{self, StackConfig, TcpListener, TcpStream};
use mkernel::sync::{Ivar, Receiver, Sender, channel};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

/// The default TCP port (Redis's).
pub const DEFAULT_PORT: u16 = 6379;
/// Longest key accepted, in bytes.
pub const MAX_KEY: usize = 4096;
/// Longest value (and any bulk string of a request), in bytes.
pub const MAX_VALUE: usize = 512 * 1024;
/// Most arguments in one request (a `DEL` of many keys).
pub const MAX_ARGS: usize = 1024;
/// Most bytes one request may declare (its bulk strings and their framing).
pub const MAX_REQUEST: usize = MAX_VALUE + 64 * 1024;
/// Longest inline command line.
pub const MAX_INLINE: usize = 64 * 1024;
/// Most record bytes in one batch (one group commit).
pub const MAX_BATCH: usize = 1 << 20;
/// The cache page size (and the alignment of the superblocks and regions).
pub const PAGE: u64 = 4096;
/// Memory for the page cache.
pub const CACHE_BYTES: u64 = 8 << 20;
/// Bytes of a superblock copy.
pub const SB_LEN: usize = 48;
/// Bytes of a batch header.
pub const BATCH_HEADER: usize = 40;
/// Bytes of a record's header (op, key length, value length).
pub const RECORD_HEADER: usize = 7;

const SB_MAGIC: &[u8; 8] = b"MKKVSB01";
const BATCH_MAGIC: &[u8; 4] = b"KVB1";
const SB_OFFSETS: [u64; 2] = [0, PAGE];
const DATA_START: u64 = 2 * PAGE;
/// The smallest region: room for a few batches.
const MIN_REGION: u64 = 16 * PAGE;
const OP_SET: u8 = 1;
const OP_DEL: u8 = 2;

// ------------------------------------------------------------------ checksum

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32C (Castagnoli), as iSCSI and ext4 use it.
#[derive(Clone, Copy)]
pub struct Crc(u32);

impl Default for Crc {
    fn default() -> Crc {
        Crc::new()
    }
}

impl Crc {
    #[must_use]
    pub fn new() -> Crc {
        Crc(!0)
    }
    #[must_use]
    pub fn update(mut self, data: &[u8]) -> Crc {
        for &b in data {
            self.0 = CRC_TABLE[((self.0 ^ u32::from(b)) & 0xff) as usize] ^ (self.0 >> 8);
        }
        self
    }
    #[must_use]
    pub fn finish(self) -> u32 {
        !self.0
    }
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}
fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

// ---------------------------------------------------------------- superblock

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Super {
    seq: u64,
    epoch: u64,
    active: u8,
    region_len: u64,
}

impl Super {
    fn encode(&self) -> [u8; SB_LEN] {
        let mut b = [0u8; SB_LEN];
        b[0..8].copy_from_slice(SB_MAGIC);
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_le_bytes());
        b[24] = self.active;
        b[32..40].copy_from_slice(&self.region_len.to_le_bytes());
        let crc = Crc::new().update(&b[..40]).finish();
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8; SB_LEN]) -> Option<Super> {
        if &b[0..8] != SB_MAGIC || le_u32(&b[40..44]) != Crc::new().update(&b[..40]).finish() {
            return None;
        }
        let sb = Super {
            seq: le_u64(&b[8..16]),
            epoch: le_u64(&b[16..24]),
            active: b[24],
            region_len: le_u64(&b[32..40]),
        };
        (sb.active <= 1).then_some(sb)
    }

    fn region_start(&self, r: u8) -> u64 {
        DATA_START + u64::from(r) * self.region_len
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // Without entropy the epochs would repeat: refuse to go on.
    mkernel::fill_random(&mut b).expect("the platform's entropy source");
    u64::from_le_bytes(b)
}

// --------------------------------------------------------------------- store

/// A write, as a connection hands it to the committer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Set(Vec<u8>, Vec<u8>),
    Del(Vec<Vec<u8>>),
}

impl Op {
    /// Bytes of its records in a batch.
    #[must_use]
    pub fn log_bytes(&self) -> usize {
        match self {
            Op::Set(k, v) => RECORD_HEADER + k.len() + v.len(),
            Op::Del(keys) => keys.iter().map(|k| RECORD_HEADER + k.len()).sum(),
        }
    }
}

/// Why a batch was not committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The live data would not fit even after a compaction.
    Full,
    /// A device error; the store takes no more writes until restarted.
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Full => write!(
                f,
                "store full: live data would exceed 7/8 of a region of the data device"
            ),
            StoreError::Failed(e) => write!(f, "the store failed and takes no writes: {e}"),
        }
    }
}

/// Where a value lies on the device.
#[derive(Clone, Copy, Debug)]
struct Loc {
    off: u64,
    len: u32,
}

/// What recovery found at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// No superblock: a zeroed device, formatted now.
    pub fresh: bool,
    pub batches: u64,
    pub keys: usize,
    pub log_bytes: u64,
    /// The offset of a batch whose checksum failed: a commit that was
    /// interrupted (its header was written, not all of it).
    pub torn_at: Option<u64>,
}

/// Counters of the store ([`Store::stats`]).
#[derive(Clone, Debug, Default)]
pub struct StoreStats {
    pub commits: u64,
    pub ops_committed: u64,
    pub compactions: u64,
    pub region_len: u64,
    pub active: u8,
    pub log_bytes: u64,
    pub live_bytes: u64,
    pub keys: usize,
    pub failed: Option<String>,
}

struct State {
    sb: Super,
    /// The slot holding `sb`: the next switch writes the other one.
    sb_slot: usize,
    /// Where the next batch goes (device offset).
    tail: u64,
    next_seq: u64,
    index: HashMap<Box<[u8]>, Loc>,
    /// Record bytes of the live entries.
    live_bytes: u64,
    /// Bumped at each compaction: a read that waited across one retries.
    generation: u64,
    failed: Option<String>,
    commits: u64,
    ops_committed: u64,
    compactions: u64,
}

/// The store: the log on the device, the index in memory. Its writes come
/// from one task at a time ([`Store::apply`] is the committer's); reads
/// from any task.
pub struct Store {
    cache: Cache,
    st: RefCell<State>,
    recovery: Recovery,
}

fn record_len(klen: usize, vlen: usize) -> u64 {
    (RECORD_HEADER + klen + vlen) as u64
}

/// Appends a record to `recs`; the value's offset within `recs`.
fn push_record(recs: &mut Vec<u8>, op: u8, key: &[u8], value: &[u8]) -> usize {
    recs.push(op);
    recs.extend_from_slice(&(key.len() as u16).to_le_bytes());
    recs.extend_from_slice(&(value.len() as u32).to_le_bytes());
    recs.extend_from_slice(key);
    let at = recs.len();
    recs.extend_from_slice(value);
    at
}

fn batch_header(epoch: u64, seq: u64, count: u32, recs: &[u8]) -> [u8; BATCH_HEADER] {
    let mut h = [0u8; BATCH_HEADER];
    h[0..4].copy_from_slice(BATCH_MAGIC);
    h[4..8].copy_from_slice(&(recs.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&epoch.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    h[24..28].copy_from_slice(&count.to_le_bytes());
    let crc = Crc::new().update(&h[..32]).update(recs).finish();
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    h
}

impl Store {
    /// Opens the store on `data` (a cache of [`PAGE`]-byte pages is made
    /// over it), recovering it.
    ///
    /// # Errors
    ///
    /// A message naming the problem: a device too small or read-only, one
    /// that holds something else than a store, a read that failed, a
    /// store made on a larger device.
    pub fn open_device(data: mkernel::Block) -> Result<Store, String> {
        let name = data.name().to_string();
        if PAGE % data.pagesize() as u64 != 0 {
            return Err(format!(
                "block device {name:?}: its page size {} does not divide {PAGE}",
                data.pagesize()
            ));
        }
        if data.read_only() {
            return Err(format!(
                "block device {name:?} is read-only; the store must write to it"
            ));
        }
        let cache = Cache::builder(data)
            .page_size(PAGE as usize)
            .capacity_bytes(CACHE_BYTES)
            .build();
        Store::open(cache).map_err(|e| format!("block device {name:?}: {e}"))
    }

    /// Opens the store over `cache` (whose pages are [`PAGE`] bytes).
    ///
    /// # Errors
    ///
    /// As [`open_device`](Self::open_device).
    pub fn open(cache: Cache) -> Result<Store, String> {
        let len = cache.block().length();
        let fits = (len.saturating_sub(DATA_START) / 2) / PAGE * PAGE;
        if fits < MIN_REGION {
            return Err(format!(
                "{len} bytes is too small for a store (at least {} bytes)",
                DATA_START + 2 * MIN_REGION
            ));
        }
        let io = |e: BlockError| format!("reading the store: {e}");
        // The superblocks' pages, whole: all zero is an empty store.
        let mut head = vec![0u8; DATA_START as usize];
        cache.read_at(0, &mut head).map_err(io)?;
        let found: Vec<(usize, Super)> = SB_OFFSETS
            .iter()
            .enumerate()
            .filter_map(|(i, &off)| {
                let raw: &[u8; SB_LEN] = head[off as usize..][..SB_LEN].try_into().unwrap();
                Super::decode(raw).map(|s| (i, s))
            })
            .collect();
        let mut recovery = Recovery::default();
        let (sb_slot, sb) = match found.iter().max_by_key(|(_, s)| s.seq) {
            Some(&(slot, sb)) => (slot, sb),
            None if head.iter().all(|&b| b == 0) => {
                // A zeroed device: an empty store, with its geometry fixed
                // now.
                let sb = Super {
                    seq: 1,
                    epoch: random_u64(),
                    active: 0,
                    region_len: fits,
                };
                cache
                    .write_at(SB_OFFSETS[0], &sb.encode())
                    .and_then(|()| cache.commit().map(|_| ()))
                    .map_err(|e| format!("formatting the store: {e}"))?;
                recovery.fresh = true;
                (0, sb)
            }
            None => {
                return Err("no valid superblock and not zeroed: not a kv store \
                            (refusing to overwrite it; give a zeroed file for a new store)"
                    .into());
            }
        };
        if DATA_START + 2 * sb.region_len > len || sb.region_len < MIN_REGION {
            return Err(format!(
                "the store's regions ({} bytes each) do not fit the device ({len} bytes): \
                 was it truncated?",
                sb.region_len
            ));
        }
        let mut st = State {
            sb,
            sb_slot,
            tail: 0,
            next_seq: 1,
            index: HashMap::new(),
            live_bytes: 0,
            generation: 0,
            failed: None,
            commits: 0,
            ops_committed: 0,
            compactions: 0,
        };
        let start = sb.region_start(sb.active);
        let end = start + sb.region_len;
        let mut pos = start;
        let mut hdr = [0u8; BATCH_HEADER];
        let mut recs = Vec::new();
        while pos + BATCH_HEADER as u64 <= end {
            cache.read_at(pos, &mut hdr).map_err(io)?;
            if &hdr[0..4] != BATCH_MAGIC
                || le_u64(&hdr[8..16]) != sb.epoch
                || le_u64(&hdr[16..24]) != st.next_seq
            {
                break; // the end of the log
            }
            let n = le_u32(&hdr[4..8]) as usize;
            let body_end = pos + (BATCH_HEADER + n) as u64;
            if n > MAX_BATCH || body_end > end {
                recovery.torn_at = Some(pos);
                break;
            }
            recs.resize(n, 0);
            cache
                .read_at(pos + BATCH_HEADER as u64, &mut recs)
                .map_err(io)?;
            if le_u32(&hdr[32..36]) != Crc::new().update(&hdr[..32]).update(&recs).finish() {
                recovery.torn_at = Some(pos);
                break;
            }
            let count = le_u32(&hdr[24..28]);
            let base = pos + BATCH_HEADER as u64;
            let mut at = 0usize;
            for _ in 0..count {
                // The checksum matched: a malformed record is a bug of the
                // writer, not a torn write.
                let bad = || format!("corrupt batch at offset {pos} (checksum matches)");
                if at + RECORD_HEADER > n {
                    return Err(bad());
                }
                let op = recs[at];
                let kl = le_u16(&recs[at + 1..]) as usize;
                let vl = le_u32(&recs[at + 3..]) as usize;
                let k0 = at + RECORD_HEADER;
                if k0 + kl + vl > n {
                    return Err(bad());
                }
                let key: Box<[u8]> = recs[k0..k0 + kl].into();
                match op {
                    OP_SET => {
                        let loc = Loc {
                            off: base + (k0 + kl) as u64,
                            len: vl as u32,
                        };
                        st.live_bytes += record_len(kl, vl);
                        if let Some(old) = st.index.insert(key, loc) {
                            st.live_bytes -= record_len(kl, old.len as usize);
                        }
                    }
                    OP_DEL => {
                        if let Some(old) = st.index.remove(&key) {
                            st.live_bytes -= record_len(kl, old.len as usize);
                        }
                    }
                    _ => return Err(bad()),
                }
                at = k0 + kl + vl;
            }
            if at != n {
                return Err(format!("corrupt batch at offset {pos} (checksum matches)"));
            }
            pos = body_end;
            st.next_seq += 1;
            recovery.batches += 1;
        }
        st.tail = pos;
        recovery.keys = st.index.len();
        recovery.log_bytes = pos - start;
        Ok(Store {
            cache,
            st: RefCell::new(st),
            recovery,
        })
    }

    /// What recovery found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The store's counters now.
    pub fn stats(&self) -> StoreStats {
        let st = self.st.borrow();
        StoreStats {
            commits: st.commits,
            ops_committed: st.ops_committed,
            compactions: st.compactions,
            region_len: st.sb.region_len,
            active: st.sb.active,
            log_bytes: st.tail - st.sb.region_start(st.sb.active),
            live_bytes: st.live_bytes,
            keys: st.index.len(),
            failed: st.failed.clone(),
        }
    }

    /// The most record bytes one batch may hold on this device.
    pub fn batch_capacity(&self) -> usize {
        let region = self.st.borrow().sb.region_len as usize;
        MAX_BATCH.min(region - BATCH_HEADER)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.st.borrow().index.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.st.borrow().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The committed value of `key`.
    ///
    /// # Errors
    ///
    /// A device error reading it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BlockError> {
        loop {
            let (loc, generation) = {
                let st = self.st.borrow();
                (st.index.get(key).copied(), st.generation)
            };
            let Some(loc) = loc else { return Ok(None) };
            let mut v = vec![0u8; loc.len as usize];
            self.cache.read_at(loc.off, &mut v)?;
            // A compaction switched logs while this task waited: the old
            // log may be reused; look again.
            if self.st.borrow().generation == generation {
                return Ok(Some(v));
            }
        }
    }

    /// What each op answers (`DEL`: how many keys it removed) if applied
    /// in order to the committed state.
    fn results(&self, ops: &[Op]) -> Vec<i64> {
        let st = self.st.borrow();
        let mut present: HashMap<&[u8], bool> = HashMap::new();
        ops.iter()
            .map(|op| match op {
                Op::Set(k, _) => {
                    present.insert(k, true);
                    0
                }
                Op::Del(keys) => keys
                    .iter()
                    .filter(|k| {
                        let was = present
                            .get(k.as_slice())
                            .copied()
                            .unwrap_or_else(|| st.index.contains_key(k.as_slice()));
                        present.insert(k, false);
                        was
                    })
                    .count() as i64,
            })
            .collect()
    }

    fn fail(&self, e: BlockError) -> StoreError {
        let msg = e.to_string();
        self.st.borrow_mut().failed = Some(msg.clone());
        StoreError::Failed(msg)
    }

    /// Commits `ops` as one batch (appended to the log, or through a
    /// compaction when it does not fit) and applies them; what each
    /// answers. Returns only once the batch is on the device. One call at a
    /// time (the committer's).
    ///
    /// # Errors
    ///
    /// [`StoreError::Full`], or [`StoreError::Failed`] after a device error
    /// (then, and from then on: the cache may hold pages of a batch that
    /// was not applied; a restart recovers from the device).
    pub fn apply(&self, ops: &[Op]) -> Result<Vec<i64>, StoreError> {
        if let Some(e) = &self.st.borrow().failed {
            return Err(StoreError::Failed(e.clone()));
        }
        let results = self.results(ops);
        let mut recs = Vec::with_capacity(ops.iter().map(Op::log_bytes).sum());
        let mut count = 0u32;
        // (key, value offset in `recs`, value length) of each set.
        let mut placed: Vec<(&[u8], usize, u32)> = Vec::new();
        for op in ops {
            match op {
                Op::Set(k, v) => {
                    let at = push_record(&mut recs, OP_SET, k, v);
                    placed.push((k, at, v.len() as u32));
                    count += 1;
                }
                Op::Del(keys) => {
                    for k in keys {
                        push_record(&mut recs, OP_DEL, k, &[]);
                        count += 1;
                    }
                }
            }
        }
        let (tail, end, epoch, seq) = {
            let st = self.st.borrow();
            let start = st.sb.region_start(st.sb.active);
            (st.tail, start + st.sb.region_len, st.sb.epoch, st.next_seq)
        };
        if recs.len() > self.batch_capacity() || tail + (BATCH_HEADER + recs.len()) as u64 > end {
            self.compact(ops)?;
            return Ok(results);
        }
        let mut buf = batch_header(epoch, seq, count, &recs).to_vec();
        buf.extend_from_slice(&recs);
        self.cache.write_at(tail, &buf).map_err(|e| self.fail(e))?;
        self.cache.commit().map_err(|e| self.fail(e))?;
        // Durable: make it visible.
        let mut st = self.st.borrow_mut();
        let base = tail + BATCH_HEADER as u64;
        let mut sets = placed.into_iter();
        for op in ops {
            match op {
                Op::Set(..) => {
                    let (k, at, len) = sets.next().expect("one placement per set");
                    let loc = Loc {
                        off: base + at as u64,
                        len,
                    };
                    st.live_bytes += record_len(k.len(), len as usize);
                    if let Some(old) = st.index.insert(k.into(), loc) {
                        st.live_bytes -= record_len(k.len(), old.len as usize);
                    }
                }
                Op::Del(keys) => {
                    for k in keys {
                        if let Some(old) = st.index.remove(k.as_slice()) {
                            st.live_bytes -= record_len(k.len(), old.len as usize);
                        }
                    }
                }
            }
        }
        st.tail = tail + buf.len() as u64;
        st.next_seq += 1;
        st.commits += 1;
        st.ops_committed += ops.len() as u64;
        Ok(results)
    }

    /// Writes the live entries with `ops` applied as a new log in the free
    /// region, then switches the superblock to it.
    fn compact(&self, ops: &[Op]) -> Result<(), StoreError> {
        // The last op on each key: its new value, or none.
        let mut overlay: HashMap<&[u8], Option<&[u8]>> = HashMap::new();
        for op in ops {
            match op {
                Op::Set(k, v) => {
                    overlay.insert(k, Some(v));
                }
                Op::Del(keys) => {
                    for k in keys {
                        overlay.insert(k, None);
                    }
                }
            }
        }
        let (old, sb, sb_slot, cap) = {
            let st = self.st.borrow();
            let old: Vec<(Box<[u8]>, Loc)> = st
                .index
                .iter()
                .filter(|(k, _)| !overlay.contains_key(&k[..]))
                .map(|(k, l)| (k.clone(), *l))
                .collect();
            (old, st.sb, st.sb_slot, self.batch_capacity())
        };
        let fresh: Vec<(&[u8], &[u8])> = overlay
            .iter()
            .filter_map(|(k, v)| v.map(|v| (*k, v)))
            .collect();
        let live: u64 = old
            .iter()
            .map(|(k, l)| record_len(k.len(), l.len as usize))
            .sum::<u64>()
            + fresh
                .iter()
                .map(|(k, v)| record_len(k.len(), v.len()))
                .sum::<u64>();
        let batches = live / (cap as u64 / 2) + 2;
        if live + batches * BATCH_HEADER as u64 > sb.region_len - sb.region_len / 8 {
            return Err(StoreError::Full);
        }
        let target = 1 - sb.active;
        let epoch = random_u64();
        let start = sb.region_start(target);
        let mut pos = start;
        let mut seq = 1u64;
        let mut index: HashMap<Box<[u8]>, Loc> = HashMap::with_capacity(old.len() + fresh.len());
        let mut recs: Vec<u8> = Vec::new();
        let mut count = 0u32;
        let mut value = Vec::new();
        let flush = |recs: &mut Vec<u8>, count: &mut u32, pos: &mut u64, seq: &mut u64| {
            if recs.is_empty() {
                return Ok(());
            }
            let mut buf = batch_header(epoch, *seq, *count, recs).to_vec();
            buf.extend_from_slice(recs);
            self.cache.write_at(*pos, &buf)?;
            // One commit per batch: dirty pages stay bounded.
            self.cache.commit()?;
            *pos += buf.len() as u64;
            *seq += 1;
            recs.clear();
            *count = 0;
            Ok::<(), BlockError>(())
        };
        let entries = old
            .iter()
            .map(|(k, l)| (&k[..], Err(*l)))
            .chain(fresh.iter().map(|(k, v)| (*k, Ok(*v))));
        for (k, v) in entries {
            let v: &[u8] = match v {
                Ok(v) => v,
                Err(loc) => {
                    value.resize(loc.len as usize, 0);
                    self.cache
                        .read_at(loc.off, &mut value)
                        .map_err(|e| self.fail(e))?;
                    &value
                }
            };
            if recs.len() + RECORD_HEADER + k.len() + v.len() > cap {
                flush(&mut recs, &mut count, &mut pos, &mut seq).map_err(|e| self.fail(e))?;
            }
            let at = push_record(&mut recs, OP_SET, k, v);
            count += 1;
            index.insert(
                k.into(),
                Loc {
                    off: pos + (BATCH_HEADER + at) as u64,
                    len: v.len() as u32,
                },
            );
        }
        flush(&mut recs, &mut count, &mut pos, &mut seq).map_err(|e| self.fail(e))?;
        // The switch: one page, the copy not current.
        let new_sb = Super {
            seq: sb.seq + 1,
            epoch,
            active: target,
            region_len: sb.region_len,
        };
        let slot = 1 - sb_slot;
        self.cache
            .write_at(SB_OFFSETS[slot], &new_sb.encode())
            .and_then(|()| self.cache.commit().map(|_| ()))
            .map_err(|e| self.fail(e))?;
        let mut st = self.st.borrow_mut();
        st.sb = new_sb;
        st.sb_slot = slot;
        st.tail = pos;
        st.next_seq = seq;
        st.index = index;
        st.live_bytes = live;
        st.generation += 1;
        st.compactions += 1;
        st.commits += 1;
        st.ops_committed += ops.len() as u64;
        Ok(())
    }
}

// -------------------------------------------------------------------- RESP

/// One request parsed from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A command's arguments (none: an empty request, to skip) and the
    /// bytes it took.
    Command(Vec<Vec<u8>>, usize),
    /// More bytes needed.
    Incomplete,
    /// A protocol error: answer it and close.
    Error(String),
}

/// A decimal line `\r\n`-terminated at `buf[at..]`: the number and where
/// the next byte is; `Ok(None)` if incomplete.
fn number_line(buf: &[u8], at: usize, what: &str) -> Result<Option<(i64, usize)>, String> {
    const LONGEST: usize = 24;
    let rest = &buf[at..];
    let Some(nl) = rest.iter().take(LONGEST).position(|&b| b == b'\r') else {
        return if rest.len() >= LONGEST {
            Err(format!("invalid {what} length"))
        } else {
            Ok(None)
        };
    };
    if rest.len() < nl + 2 {
        return Ok(None);
    }
    if rest[nl + 1] != b'\n' {
        return Err(format!("invalid {what} length"));
    }
    let n = std::str::from_utf8(&rest[..nl])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("invalid {what} length"))?;
    Ok(Some((n, at + nl + 2)))
}

/// Parses the request at the front of `buf` (RESP array of bulk strings,
/// or an inline command), within the limits of the module docs.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if buf[0] != b'*' {
        let Some(nl) = buf.iter().take(MAX_INLINE).position(|&b| b == b'\n') else {
            return if buf.len() >= MAX_INLINE {
                Parsed::Error(format!("too big inline request (over {MAX_INLINE} bytes)"))
            } else {
                Parsed::Incomplete
            };
        };
        let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
        let args: Vec<Vec<u8>> = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if args.len() > MAX_ARGS {
            return Parsed::Error(format!("too many arguments (over {MAX_ARGS})"));
        }
        return Parsed::Command(args, nl + 1);
    }
    let (n, mut at) = match number_line(buf, 1, "multibulk") {
        Ok(Some(v)) => v,
        Ok(None) => return Parsed::Incomplete,
        Err(e) => return Parsed::Error(e),
    };
    if n <= 0 {
        return Parsed::Command(Vec::new(), at);
    }
    if n as u64 > MAX_ARGS as u64 {
        return Parsed::Error(format!(
            "invalid multibulk length: {n} arguments (at most {MAX_ARGS})"
        ));
    }
    let mut args = Vec::with_capacity(n as usize);
    let mut declared = 0usize;
    for _ in 0..n {
        let Some(&first) = buf.get(at) else {
            return Parsed::Incomplete;
        };
        if first != b'$' {
            return Parsed::Error(format!("expected '$', got '{}'", printable(&[first], 1)));
        }
        let (len, next) = match number_line(buf, at + 1, "bulk") {
            Ok(Some(v)) => v,
            Ok(None) => return Parsed::Incomplete,
            Err(e) => return Parsed::Error(e),
        };
        if len < 0 || len as u64 > MAX_VALUE as u64 {
            return Parsed::Error(format!(
                "invalid bulk length: {len} (at most {MAX_VALUE} bytes)"
            ));
        }
        let len = len as usize;
        declared += len + 2 + (next - at);
        if declared > MAX_REQUEST {
            return Parsed::Error(format!("request over {MAX_REQUEST} bytes"));
        }
        if buf.len() < next + len + 2 {
            return Parsed::Incomplete;
        }
        if &buf[next + len..next + len + 2] != b"\r\n" {
            return Parsed::Error("bulk string not followed by CRLF".into());
        }
        args.push(buf[next..next + len].to_vec());
        at = next + len + 2;
    }
    Parsed::Command(args, at)
}

/// At most `max` bytes of `b`, for an error message: no control
/// characters or quotes (they could break the reply's line).
fn printable(b: &[u8], max: usize) -> String {
    let mut s: String = b
        .iter()
        .take(max)
        .map(|&c| {
            if c.is_ascii_graphic() && c != b'\'' || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect();
    if b.len() > max {
        s.push_str("...");
    }
    s
}

fn bulk(out: &mut Vec<u8>, v: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(v.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

fn int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(format!(":{n}\r\n").as_bytes());
}

fn err(out: &mut Vec<u8>, msg: &str) {
    out.extend_from_slice(b"-");
    out.extend_from_slice(msg.as_bytes());
    out.extend_from_slice(b"\r\n");
}

// ----------------------------------------------------------------- service

type Outcome = Rc<Result<Vec<i64>, StoreError>>;

/// A batch being filled for the committer.
struct Pending {
    ops: Vec<Op>,
    bytes: usize,
    done: Ivar<Outcome>,
}

/// The store, the committer's queue, and the counters `INFO` shows.
pub struct Service {
    pub store: Store,
    queue: RefCell<VecDeque<Pending>>,
    bell: Sender<()>,
    bell_rx: RefCell<Option<Receiver<()>>>,
    port: u16,
    started: u64,
    clients: Cell<usize>,
    connections: Cell<u64>,
    commands: Cell<u64>,
    next_id: Cell<u64>,
}

/// A reply not yet known: op `idx` of a batch, and how to answer it.
enum Later {
    Ok(Ivar<Outcome>, usize),
    Count(Ivar<Outcome>, usize),
}

/// A connection's replies in order: ready bytes, then replies that wait
/// for commits.
#[derive(Default)]
struct Out {
    bytes: Vec<u8>,
    waiting: Vec<Later>,
}

impl Out {
    /// Waits for the commits of the pending replies and writes them.
    fn settle(&mut self) {
        for later in self.waiting.drain(..) {
            let (ivar, idx, count) = match later {
                Later::Ok(i, n) => (i, n, false),
                Later::Count(i, n) => (i, n, true),
            };
            let outcome = match ivar.wait() {
                Ok(o) => o,
                Err(_) => Rc::new(Err(StoreError::Failed("the committer stopped".into()))),
            };
            match &*outcome {
                Ok(results) if count => int(&mut self.bytes, results[idx]),
                Ok(_) => self.bytes.extend_from_slice(b"+OK\r\n"),
                Err(e) => err(&mut self.bytes, &format!("ERR {e}")),
            }
        }
    }
}

/// What a command asks of the connection after its reply.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

const COMMANDS: &[&str] = &[
    "get", "set", "del", "exists", "ping", "info", "dbsize", "echo", "quit", "config", "command",
    "hello", "client", "select",
];

impl Service {
    pub fn new(store: Store, port: u16) -> Service {
        let (bell, rx) = channel(1);
        Service {
            store,
            queue: RefCell::new(VecDeque::new()),
            bell,
            bell_rx: RefCell::new(Some(rx)),
            port,
            started: mkernel::clock_monotonic(),
            clients: Cell::new(0),
            connections: Cell::new(0),
            commands: Cell::new(0),
            next_id: Cell::new(1),
        }
    }

    /// Queues `op` for the next commit; its batch's outcome and its index.
    fn submit(&self, op: Op) -> (Ivar<Outcome>, usize) {
        let bytes = op.log_bytes();
        let cap = self.store.batch_capacity();
        let mut q = self.queue.borrow_mut();
        if q.back()
            .is_none_or(|b| b.bytes + bytes > cap && !b.ops.is_empty())
        {
            q.push_back(Pending {
                ops: Vec::new(),
                bytes: 0,
                done: Ivar::new(),
            });
        }
        let b = q.back_mut().expect("a batch to fill");
        b.ops.push(op);
        b.bytes += bytes;
        let r = (b.done.clone(), b.ops.len() - 1);
        drop(q);
        // Full means the committer is already due to look.
        let _ = self.bell.try_send(());
        r
    }

    /// The committer: one batch at a time, for ever. Writes that arrive
    /// while it commits gather in the next batch (group commit).
    pub fn committer(&self) {
        let rx = self
            .bell_rx
            .borrow_mut()
            .take()
            .expect("one committer per service");
        loop {
            let next = self.queue.borrow_mut().pop_front();
            let Some(batch) = next else {
                if rx.recv().is_err() {
                    return;
                }
                // Let the other tasks woken with this one add their writes.
                mkernel::yield_now();
                continue;
            };
            let r = self.store.apply(&batch.ops);
            batch.done.resolve(Rc::new(r));
        }
    }

    fn info(&self, section: Option<&str>) -> String {
        let s = self.store.stats();
        let r = self.store.recovery();
        let want = |name: &str| {
            section.is_none_or(|w| {
                w.eq_ignore_ascii_case(name)
                    || ["all", "default", "everything"]
                        .iter()
                        .any(|a| w.eq_ignore_ascii_case(a))
            })
        };
        let mut o = String::new();
        if want("server") {
            let up = (mkernel::clock_monotonic() - self.started) / 1_000_000_000;
            let _ = write!(
                o,
                "# Server\r\nserver:mkernel-kv\r\nkv_version:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\n\r\n",
                env!("CARGO_PKG_VERSION"),
                self.port
            );
        }
        if want("clients") {
            let _ = write!(
                o,
                "# Clients\r\nconnected_clients:{}\r\n\r\n",
                self.clients.get()
            );
        }
        if want("persistence") {
            let _ = write!(
                o,
                "# Persistence\r\nregion_bytes:{}\r\nactive_region:{}\r\nlog_bytes:{}\r\n\
                 live_bytes:{}\r\ncommits:{}\r\nops_committed:{}\r\ncompactions:{}\r\n\
                 store_failed:{}\r\nrecovered_fresh:{}\r\nrecovered_batches:{}\r\n\
                 recovered_keys:{}\r\nrecovered_log_bytes:{}\r\nrecovered_torn_batch:{}\r\n\r\n",
                s.region_len,
                s.active,
                s.log_bytes,
                s.live_bytes,
                s.commits,
                s.ops_committed,
                s.compactions,
                u8::from(s.failed.is_some()),
                u8::from(r.fresh),
                r.batches,
                r.keys,
                r.log_bytes,
                u8::from(r.torn_at.is_some()),
            );
        }
        if want("stats") {
            let _ = write!(
                o,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\r\n",
                self.connections.get(),
                self.commands.get()
            );
        }
        if want("keyspace") {
            let _ = write!(
                o,
                "# Keyspace\r\ndb0:keys={},expires=0,avg_ttl=0\r\n",
                s.keys
            );
        }
        o
    }

    /// Runs one command, its reply into `out`.
    fn execute(&self, id: u64, args: Vec<Vec<u8>>, out: &mut Out) -> Next {
        if args.is_empty() {
            return Next::Continue;
        }
        self.commands.set(self.commands.get() + 1);
        let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
        let n = args.len();
        let arity_ok = match name.as_str() {
            "get" | "echo" => n == 2,
            "set" => n >= 3,
            "del" | "exists" => n >= 2,
            "ping" => n <= 2,
            "dbsize" | "quit" => n == 1,
            "config" | "client" => n >= 2,
            "select" => n == 2,
            _ => true,
        };
        if !arity_ok {
            out.settle();
            err(
                &mut out.bytes,
                &format!("ERR wrong number of arguments for '{name}' command"),
            );
            return Next::Continue;
        }
        let keys = match name.as_str() {
            "get" | "set" => &args[1..2],
            "del" | "exists" => &args[1..],
            _ => &[][..],
        };
        if keys.iter().any(|k| k.len() > MAX_KEY) {
            out.settle();
            err(
                &mut out.bytes,
                &format!("ERR key too long (at most {MAX_KEY} bytes)"),
            );
            return Next::Continue;
        }
        // Writes queue their reply; anything else first waits for this
        // connection's pending writes (replies stay in order, and reads see
        // the connection's own writes).
        match name.as_str() {
            "set" => {
                if n != 3 {
                    out.settle();
                    err(
                        &mut out.bytes,
                        "ERR syntax error (SET options EX, PX, NX, XX, GET, KEEPTTL are not supported)",
                    );
                    return Next::Continue;
                }
                let mut it = args.into_iter().skip(1);
                let (k, v) = (it.next().unwrap(), it.next().unwrap());
                let (ivar, idx) = self.submit(Op::Set(k, v));
                out.waiting.push(Later::Ok(ivar, idx));
                return Next::Continue;
            }
            "del" => {
                let (ivar, idx) = self.submit(Op::Del(args.into_iter().skip(1).collect()));
                out.waiting.push(Later::Count(ivar, idx));
                return Next::Continue;
            }
            _ => out.settle(),
        }
        let o = &mut out.bytes;
        match name.as_str() {
            "get" => match self.store.get(&args[1]) {
                Ok(Some(v)) => bulk(o, &v),
                Ok(None) => o.extend_from_slice(b"$-1\r\n"),
                Err(e) => err(o, &format!("ERR I/O error: {e}")),
            },
            "exists" => int(
                o,
                args[1..].iter().filter(|k| self.store.contains(k)).count() as i64,
            ),
            "ping" if n == 2 => bulk(o, &args[1]),
            "ping" => o.extend_from_slice(b"+PONG\r\n"),
            "echo" => bulk(o, &args[1]),
            "dbsize" => int(o, self.store.len() as i64),
            "info" => {
                let section = args.get(1).map(|s| String::from_utf8_lossy(s).into_owned());
                bulk(o, self.info(section.as_deref()).as_bytes());
            }
            "quit" => {
                o.extend_from_slice(b"+OK\r\n");
                return Next::Close;
            }
            "config" if args[1].eq_ignore_ascii_case(b"get") => {
                // What redis-benchmark asks before it starts.
                let known: [(&str, &str); 2] = [("save", ""), ("appendonly", "yes")];
                let mut pairs = Vec::new();
                for pat in &args[2..] {
                    for (k, v) in known {
                        if (pat.as_slice() == b"*" || pat.eq_ignore_ascii_case(k.as_bytes()))
                            && !pairs.iter().any(|(p, _)| *p == k)
                        {
                            pairs.push((k, v));
                        }
                    }
                }
                o.extend_from_slice(format!("*{}\r\n", pairs.len() * 2).as_bytes());
                for (k, v) in pairs {
                    bulk(o, k.as_bytes());
                    bulk(o, v.as_bytes());
                }
            }
            "config" => err(
                o,
                &format!(
                    "ERR CONFIG {} is not supported (only CONFIG GET)",
                    printable(&args[1], 32)
                ),
            ),
            "command" => {
                if args
                    .get(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"count"))
                {
                    int(o, COMMANDS.len() as i64);
                } else {
                    // No command table: an empty one (clients then go
                    // without hints).
                    o.extend_from_slice(b"*0\r\n");
                }
            }
            "hello" => match args.get(1).map(|v| v.as_slice()) {
                None | Some(b"2") => {
                    o.extend_from_slice(b"*14\r\n");
                    for (k, v) in [
                        ("server", "mkernel-kv"),
                        ("version", env!("CARGO_PKG_VERSION")),
                    ] {
                        bulk(o, k.as_bytes());
                        bulk(o, v.as_bytes());
                    }
                    bulk(o, b"proto");
                    int(o, 2);
                    bulk(o, b"id");
                    int(o, id as i64);
                    for (k, v) in [("mode", "standalone"), ("role", "master")] {
                        bulk(o, k.as_bytes());
                        bulk(o, v.as_bytes());
                    }
                    bulk(o, b"modules");
                    o.extend_from_slice(b"*0\r\n");
                }
                Some(b"3") => err(o, "NOPROTO sorry, this protocol version is not supported"),
                Some(_) => err(o, "ERR Protocol version is not an integer or out of range"),
            },
            "client" => {
                let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
                match sub.as_str() {
                    "setname" | "setinfo" => o.extend_from_slice(b"+OK\r\n"),
                    "getname" => o.extend_from_slice(b"$-1\r\n"),
                    "id" => int(o, id as i64),
                    _ => err(
                        o,
                        &format!(
                            "ERR unknown subcommand '{}' (CLIENT SETNAME, SETINFO, GETNAME, ID)",
                            printable(&args[1], 32)
                        ),
                    ),
                }
            }
            "select" if args[1] == b"0" => o.extend_from_slice(b"+OK\r\n"),
            "select" => err(o, "ERR DB index is out of range"),
            _ => {
                let mut msg = format!(
                    "ERR unknown command '{}', with args beginning with: ",
                    printable(&args[0], 64)
                );
                for a in args[1..].iter().take(4) {
                    let _ = write!(msg, "'{}' ", printable(a, 32));
                }
                err(o, &msg);
            }
        }
        Next::Continue
    }

    /// Serves one connection until it closes.
    pub fn serve_connection(&self, s: &TcpStream) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let mut inbuf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut out = Out::default();
        loop {
            let mut used = 0;
            loop {
                match parse(&inbuf[used..]) {
                    Parsed::Command(args, n) => {
                        used += n;
                        let next = self.execute(id, args, &mut out);
                        if next == Next::Close || out.bytes.len() >= 64 * 1024 {
                            out.settle();
                            if s.write_all(&out.bytes).is_err() {
                                return;
                            }
                            out.bytes.clear();
                        }
                        if next == Next::Close {
                            let _ = s.shutdown(std::net::Shutdown::Write);
                            return;
                        }
                    }
                    Parsed::Incomplete => break,
                    Parsed::Error(e) => {
                        out.settle();
                        err(&mut out.bytes, &format!("ERR Protocol error: {e}"));
                        let _ = s.write_all(&out.bytes);
                        let _ = s.shutdown(std::net::Shutdown::Write);
                        return;
                    }
                }
            }
            inbuf.drain(..used);
            out.settle();
            if !out.bytes.is_empty() {
                if s.write_all(&out.bytes).is_err() {
                    return;
                }
                out.bytes.clear();
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Counts a connection while it is served.
struct Client<'a>(&'a Service);

impl Drop for Client<'_> {
    fn drop(&mut self) {
        self.0.clients.set(self.0.clients.get() - 1);
    }
}

/// Accepts connections for ever, one task each, with the committer as
/// another task.
pub fn serve(listener: TcpListener, svc: Rc<Service>) {
    let committer = {
        let svc = svc.clone();
        mkernel::spawn(move || svc.committer())
    };
    let orphans = mkernel::Orphans::new();
    loop {
        while let Some(Some(p)) = orphans.care() {
            let _ = p.join();
        }
        match listener.accept() {
            Ok((s, _peer)) => {
                // Replies are small: with Nagle's algorithm a pipeline's
                // last one would wait for the client's delayed ACK.
                let _ = s.set_nodelay(true);
                svc.connections.set(svc.connections.get() + 1);
                svc.clients.set(svc.clients.get() + 1);
                let svc = svc.clone();
                mkernel::spawn_orphan(&orphans, move || {
                    let _client = Client(&svc);
                    svc.serve_connection(&s);
                });
            }
            Err(e) => {
                if committer.is_finished() {
                    break;
                }
                eprintln!("accept: {e}");
            }
        }
    }
    let _ = committer.join();
}

fn run(stack: mkernel::net::stack::Stack, data: mkernel::Block, port: u16) {
    let store = match Store::open_device(data) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    let r = store.recovery();
    let torn = match r.torn_at {
        Some(off) => format!("; a torn batch at offset {off} (an interrupted commit) discarded"),
        None => String::new(),
    };
    eprintln!(
        "kv: {} store: {} keys from {} batches ({} bytes of log){torn}",
        if r.fresh { "new" } else { "recovered" },
        r.keys,
        r.batches,
        r.log_bytes
    );
    let listener = match TcpListener::bind(&stack, port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    println!(
        "listening on {}",
        listener.local_addr().expect("a listener has an address")
    );
    serve(listener, Rc::new(Service::new(store, port)));
}

#[allow(
    dead_code,
    reason = "unused where this file is included as a module (tests)"
)]
fn main() {
    // Check the flags before touching devices, for a clear error.
    let port = match StackConfig::from_args(&mkernel::args())
        .and_then(|(_, rest)| stack::port_from_args(&rest, DEFAULT_PORT))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    mkernel::run(
        (mkernel::stack("service"), mkernel::block("data")),
        move |(stack, data)| run(stack, data, port),
    );
}

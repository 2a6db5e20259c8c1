//! A static HTTP/1.1 server: files from a tar archive on a block device.
//!
//! Build the site image (a tar archive: ustar, or GNU/pax for long names)
//! and run:
//!
//! ```text
//! tar --format=ustar -cf site.img -C site_dir .
//! cargo build --example httpd
//! ./target/debug/examples/httpd --net:service=tap0 --block:site=site.img -- --ipv4=10.0.0.2/24
//! curl http://10.0.0.2/index.html
//! ```
//!
//! Application flags (after `--`): `--port=N` (default 80),
//! `--ipv4=ADDR/PREFIX` (default 10.0.0.2/24), `--ipv4-gateway=ADDR`,
//! `--header-timeout=SECONDS` (default 10, [`HEADER_TIMEOUT`]),
//! `--idle-timeout=SECONDS` (default 30, [`IDLE_TIMEOUT`]),
//! `--cache=BYTES` (the file cache's budget, `K`/`M`/`G` suffixes; default
//! 16 MiB, on Solo5 at most an eighth of the heap, [`DEFAULT_CACHE`]; 0: no
//! cache), `--stats=SECONDS` (print `stats: ...` lines that often: TCP
//! sockets, tasks, the heap on Solo5, the file cache's counters; and a
//! first line `connection cap: N` or `none`). Prints `listening on
//! ADDR:PORT` once ready, the only line without `--stats` (the same hosted
//! and as a unikernel).
//!
//! # HTTPS (the `tls` feature)
//!
//! Built with `--features tls`, httpd serves HTTPS (rustls, see
//! `mkernel::net::tls` and `docs/tls.md`), with the same request handling,
//! on port 443 unless `--port=N`. The certificate chain (the server's own
//! certificate first) and its private key are PEM text on a third block
//! device, `tls`, zero-padded to whole sectors: the convention of the
//! `tls_echo` example, and the same file hosted and in a Solo5 unikernel
//! (which has no file system to name with a `--tls-cert=PATH` flag, and a
//! command line too short for PEM text):
//!
//! ```text
//! cat cert.pem ca.pem key.pem > tls.img && truncate -s %512 tls.img
//! cargo run --features tls --example httpd -- --net:service=tap0 --block:site=site.img --block:tls=tls.img -- --ipv4=10.0.0.2/24
//! cargo mkernel run --target spt --features tls --example httpd --net:service=tap0 --block:site=site.img --block:tls=tls.img -- --ipv4=10.0.0.2/24
//! curl --cacert ca.pem https://10.0.0.2/index.html
//! ```
//!
//! A missing or bad certificate or key (no key, no certificate, a key that
//! is not the certificate's, malformed PEM) stops it before it listens,
//! with one line `error: certificate and key (block device tls): ...` and
//! exit status 1. The TLS handshake runs in the connection's task and must
//! end within the header timeout; a failed handshake is a line on stderr.
//! A `Connection: close` response, and a client's `close_notify`, end with
//! httpd's `close_notify`. The serving code is generic over [`Conn`] (a
//! `TcpStream` or a `TlsStream`), so the plain build's path is the same
//! code as before, monomorphised: no dynamic dispatch or extra copy.
//! `MKBENCH_ONLY=http MKBENCH_SECS=2 MKBENCH_REPS=3 cargo bench --bench
//! tcp`, the plain httpd before and after this change alternated (old,
//! new, old, new) on a shared 2-core VM under a load of 2-5 (noisy): 4 KiB
//! files 72.2k / 122.0k / 126.9k / 129.7k req/s, 64 KiB files 7.1k / 7.4k
//! / 11.9k / 12.4k: no slower.
//!
//! The archive's index is read at start-up with the `tar` crate, through
//! a `Read + Seek` adapter over the block device that seeks over the files'
//! bytes (only the headers are read); an image whose last file goes past
//! the device's end (truncated) is refused. Requests are parsed with
//! `httparse`.
//!
//! Slow and idle clients are shed: a connection must send a whole request
//! head within the header timeout (from its first byte; on a new
//! connection, from the accept), and a kept-alive connection may wait at
//! most the idle timeout for its next request. A connection past either is
//! closed without a response (the stack forgets it: the client learns it
//! from a reset at its next segment). With the stack's connection cap
//! (`Stack::max_connections`), 10,000 slowloris clients cannot exhaust a
//! unikernel's memory: see `tests/solo5_limits.rs`.
//!
//! One task per connection; `GET` and `HEAD`; `Content-Length`;
//! keep-alive (HTTP/1.1 unless `Connection: close`; HTTP/1.0 with
//! `Connection: keep-alive`); `/` is `/index.html`; 404 for a missing
//! file; 400 for a malformed request (whatever httparse refuses), a
//! request line over 8 KiB, a head over 32 KiB, or a path with a `..`
//! segment; 431 for more than [`MAX_HEADERS`] header fields; 405 for other
//! methods.
//!
//! # The file cache
//!
//! Hot files are kept whole in memory, within the `--cache` budget (least
//! recently used out first; a file over a quarter of the budget is never
//! kept and is streamed from the device 32 KiB at a time): each in one
//! buffer that holds the keep-alive response head just before the file's
//! bytes, read there in place from the device. A hit on a kept-alive
//! connection is one write from that buffer into the socket (no device
//! read, no per-request copy; the head goes out with the first segment).
//! Memory may exceed the budget by the buffers of evicted files that a
//! response is still sending.
//!
//! # Reads
//!
//! Files are read with [`Block::atomic_read`], not the deferred
//! [`Block::read`]: a deferred read is done only when no task can run and
//! no frame is pending (the lowest priority, meant literally), which a
//! loaded server never has. With deferred reads, four keep-alive clients
//! hitting the cache starved every miss for as long as they ran (the
//! demo's 32 clients were served with a Jain index of 0.13: a few clients
//! got every response, the others waited for the whole run; now ~1.0).
//! An atomic read costs the same `pread` (hosted) or hypercall (Solo5); it
//! only does not wait for an idle moment. `tests/tcp_badinput.rs`:
//! `httpd_serves_a_cache_miss_while_hits_keep_it_busy`.
//!
//! Why not `mkernel::block::Cache` (tried: 32 KiB pages, the budget's
//! worth, each page written to the socket as it comes): a hit there is a
//! look-up per page and the head copied with the first page into a
//! buffer of its own, a 4 KiB file costs a 32 KiB page, and a file is
//! several writes. `MKBENCH_ONLY=http MKBENCH_SECS=2 MKBENCH_REPS=1 cargo
//! bench --bench tcp`, runs alternated on a shared 2-core VM under a load
//! of 5-6 (noisy): 4 KiB files 17.5k / 21.2k / 25.9k req/s with this
//! cache against 16.0k / 16.2k / 23.0k with `block::Cache`; 64 KiB files
//! 1.6k / 1.6k / 2.9k against 1.9k / 1.8k / 2.8k (bound by the TAP's
//! per-frame writes either way). Without a cache (a `pread` per request):
//! 11.4k and 1.3k req/s in one run just before.

use mkernel::Block;
use mkernel::net::stack::{self, Stack, StackConfig, TcpListener, TcpStream};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 32 * 1024;
/// Most header fields in a request head (more: 431).
pub const MAX_HEADERS: usize = 100;
/// How long a request head may take to arrive whole: 10 s, from its first
/// byte (on a new connection, from the accept).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive connection may wait for its next request: 30 s.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The file cache's budget unless `--cache=BYTES` says otherwise: 16 MiB
/// (on Solo5 at most an eighth of the heap).
pub const DEFAULT_CACHE: u64 = 16 << 20;

/// The bounds on slow and idle clients (see the module's docs).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// [`HEADER_TIMEOUT`] by default.
    pub header: Duration,
    /// [`IDLE_TIMEOUT`] by default.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: HEADER_TIMEOUT,
            idle: IDLE_TIMEOUT,
        }
    }
}

/// A connection httpd serves: plain TCP, or TLS over TCP (the `tls`
/// feature). Generic code over it is monomorphised, so the plain path
/// calls the [`TcpStream`]'s own methods directly: no dynamic dispatch, no
/// extra copy.
///
/// # Errors
///
/// Every method fails as the stream under it does (an `io::Error`: the
/// connection reset, a timeout, a TLS alert as `InvalidData`).
#[allow(clippy::missing_errors_doc)] // said once, above, for all of them
pub trait Conn {
    /// Reads what the client sent (`Ok(0)`: it ended cleanly).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Sends all of `data`.
    fn write_all(&mut self, data: &[u8]) -> io::Result<()>;
    /// Ends the response stream (after `Connection: close`, an error
    /// response): TCP's FIN; over TLS a `close_notify` first.
    fn end(&mut self) -> io::Result<()>;
    /// The client ended the connection cleanly: over TLS, answer its
    /// `close_notify` with ours; over TCP nothing (the stream is dropped).
    fn finish(&mut self) -> io::Result<()>;
    /// The TCP stream under it (timeouts).
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::read(self, buf)
    }
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        TcpStream::write_all(self, data)
    }
    fn end(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
    #[inline]
    fn tcp(&self) -> &TcpStream {
        self
    }
}

#[cfg(feature = "tls")]
impl Conn for mkernel::net::tls::TlsStream<TcpStream> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(self, buf)
    }
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        io::Write::write_all(self, data)
    }
    fn end(&mut self) -> io::Result<()> {
        self.shutdown()
    }
    fn finish(&mut self) -> io::Result<()> {
        self.shutdown()
    }
    fn tcp(&self) -> &TcpStream {
        self.get_ref()
    }
}

/// `Read + Seek` over a block device, for the `tar` crate's reader of the
/// archive's index. The device reads whole pages only: reads go through a
/// window of pages; a seek only moves the position, so that skipping a
/// file's bytes reads nothing (an image may be large).
struct BlockReader<'a> {
    block: &'a Block,
    pos: u64,
    window: Vec<u8>,
    /// The device offset of `window[0]`, and how many bytes of it are
    /// loaded (0: none).
    window_off: u64,
    window_len: usize,
}

impl<'a> BlockReader<'a> {
    fn new(block: &'a Block) -> BlockReader<'a> {
        let page = block.pagesize();
        BlockReader {
            block,
            pos: 0,
            window: vec![0; (16 * 1024usize).div_ceil(page) * page],
            window_off: 0,
            window_len: 0,
        }
    }
}

impl Read for BlockReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let length = self.block.length();
        if self.pos >= length || buf.is_empty() {
            return Ok(0);
        }
        let loaded = self.window_off..self.window_off + self.window_len as u64;
        if !loaded.contains(&self.pos) {
            let page = self.block.pagesize() as u64;
            let base = self.pos / page * page;
            // The device's length is a multiple of its page size: so is n.
            let n = (self.window.len() as u64).min(length - base) as usize;
            // At start-up, before serving: nothing else to run meanwhile.
            self.block
                .atomic_read(base, &mut self.window[..n])
                .map_err(|e| io::Error::other(format!("reading offset {base}: {e}")))?;
            self.window_off = base;
            self.window_len = n;
        }
        let at = (self.pos - self.window_off) as usize;
        let n = buf.len().min(self.window_len - at);
        buf[..n].copy_from_slice(&self.window[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlockReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.block.length().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        // Past the end is allowed (reads there find the end of file).
        self.pos = pos.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek out of the device's range",
            )
        })?;
        Ok(self.pos)
    }
}

/// The regular files of the tar archive on `block`: name (without a
/// leading `./`) -> (offset, size).
fn index(block: &Block) -> Result<HashMap<String, (u64, u64)>, String> {
    let bad = |e: io::Error| {
        format!(
            "block device {:?}: not a readable tar archive: {e}",
            block.name()
        )
    };
    let mut archive = tar::Archive::new(BlockReader::new(block));
    let mut files = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        if name.is_empty() {
            continue;
        }
        let (off, size) = (entry.raw_file_position(), entry.size());
        // Every file's bytes must be on the device: a truncated image
        // would be served cut short under a Content-Length it cannot
        // honour.
        if off.checked_add(size).is_none_or(|end| end > block.length()) {
            return Err(format!(
                "file {name:?} ({size} bytes at offset {off}) goes past the end of block \
                 device {:?} ({} bytes): the image is truncated",
                block.name(),
                block.length()
            ));
        }
        files.insert(name, (off, size));
    }
    Ok(files)
}

/// A cached file: one buffer holding the keep-alive response head, then
/// the file's bytes, so that a hit is a single write from the cache into
/// the socket (the head still goes out with the body's first segment).
#[derive(Clone)]
struct Cached {
    buf: Rc<Vec<u8>>,
    /// Where the head starts in `buf`, and where the body does (it ends
    /// at `buf.len()`).
    head: usize,
    body: usize,
}

/// The hot files, whole, within a byte budget; the least recently used
/// goes first. A file over a quarter of the budget is not kept (it would
/// push out many small hot ones) and is read from the device each time.
struct FileCache {
    budget: u64,
    state: RefCell<CacheState>,
}

#[derive(Default)]
struct CacheState {
    files: HashMap<String, (Cached, u64)>,
    /// Bumped at each use: the file with the smallest is evicted first.
    tick: u64,
    stats: SiteStats,
}

/// What the file cache did ([`Site::stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SiteStats {
    /// `GET`s of a file answered from the cache.
    pub hits: u64,
    /// `GET`s of a file that read the device.
    pub misses: u64,
    /// Device reads (`Block::read` calls) made to answer requests.
    pub block_reads: u64,
    /// Files in the cache, and the bytes they take.
    pub cached_files: usize,
    pub cached_bytes: u64,
}

impl FileCache {
    fn get(&self, path: &str) -> Option<Cached> {
        let mut st = self.state.borrow_mut();
        st.tick += 1;
        let tick = st.tick;
        let (c, used) = st.files.get_mut(path)?;
        *used = tick;
        let c = c.clone();
        st.stats.hits += 1;
        Some(c)
    }

    fn admits(&self, bytes: u64) -> bool {
        bytes <= self.budget / 4
    }

    /// Keeps `c` as `path`, evicting the least recently used files to
    /// make room. Two tasks that missed the same file both read it; the
    /// first one's copy is kept.
    fn insert(&self, path: &str, c: &Cached) {
        let size = c.buf.capacity() as u64;
        let mut st = self.state.borrow_mut();
        if st.files.contains_key(path) {
            return;
        }
        // A linear scan per eviction: the cache holds at most a few
        // thousand files, and evicts only on a miss.
        while st.stats.cached_bytes + size > self.budget {
            let Some(victim) = st
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, _)) = st.files.remove(&victim) {
                st.stats.cached_bytes -= old.buf.capacity() as u64;
            }
        }
        st.tick += 1;
        let tick = st.tick;
        st.files.insert(path.to_string(), (c.clone(), tick));
        st.stats.cached_bytes += size;
        st.stats.cached_files = st.files.len();
    }
}

/// The files of a tar archive on a block device, and the cache of the
/// hot ones.
pub struct Site {
    block: Block,
    files: HashMap<String, (u64, u64)>,
    cache: FileCache,
}

impl Site {
    /// [`Site::open_with_cache`] with [`DEFAULT_CACHE`].
    ///
    /// # Errors
    ///
    /// As [`Site::open_with_cache`].
    pub fn open(block: Block) -> Result<Site, String> {
        Site::open_with_cache(block, DEFAULT_CACHE)
    }

    /// Reads the archive's index (regular files only; names without a
    /// leading `./`), with a file cache of `cache_bytes` (0: none).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: a page size that is not a multiple
    /// of 512, a read that failed, a header that is not a tar header, a
    /// file whose bytes go past the end of the device (a truncated image).
    pub fn open_with_cache(block: Block, cache_bytes: u64) -> Result<Site, String> {
        let page = block.pagesize() as u64;
        if page % 512 != 0 {
            return Err(format!(
                "block device {:?}: page size {page} is not a multiple of 512",
                block.name()
            ));
        }
        let files = index(&block)?;
        Ok(Site {
            block,
            files,
            cache: FileCache {
                budget: cache_bytes,
                state: RefCell::default(),
            },
        })
    }

    /// Names of the files served.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The file cache's counters.
    pub fn stats(&self) -> SiteStats {
        self.cache.state.borrow().stats
    }

    /// Reads the pages holding `[off, off + size)` with
    /// [`Block::atomic_read`] (see "Reads" in the module docs) into a new buffer, in place: `head` goes just
    /// before the file's first byte (over the page bytes before it, when
    /// there are enough), so that head and body are contiguous.
    fn load(&self, head: &[u8], off: u64, size: u64) -> io::Result<Cached> {
        let page = self.block.pagesize() as u64;
        let base = off / page * page;
        let lead = (off - base) as usize;
        let span = if size == 0 {
            0
        } else {
            ((off + size).div_ceil(page) * page).min(self.block.length()) - base
        };
        let span = usize::try_from(span).map_err(io::Error::other)?;
        let at = head.len().saturating_sub(lead);
        let mut buf = vec![0u8; at + span];
        if span > 0 {
            self.cache.state.borrow_mut().stats.block_reads += 1;
            self.block
                .atomic_read(base, &mut buf[at..])
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        let body = at + lead;
        buf[body - head.len()..body].copy_from_slice(head);
        buf.truncate(body + size as usize);
        Ok(Cached {
            head: body - head.len(),
            body,
            buf: Rc::new(buf),
        })
    }

    /// Sends a `200` for the file `(off, size)` at `path`: the head, and
    /// the body when `body`. From the cache when the file is in it (or
    /// fits: it is loaded), else from the device chunk by chunk.
    fn send_file<S: Conn>(
        &self,
        s: &mut S,
        path: &str,
        (off, size): (u64, u64),
        body: bool,
        keep_alive: bool,
    ) -> io::Result<()> {
        let head = |conn: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {size}\r\nConnection: {conn}\r\n\r\n",
                content_type(path)
            )
        };
        let close_head = || head("close");
        if !body {
            let conn = if keep_alive { "keep-alive" } else { "close" };
            return s.write_all(head(conn).as_bytes());
        }
        let cached = match self.cache.get(path) {
            Some(c) => Some(c),
            None => {
                self.cache.state.borrow_mut().stats.misses += 1;
                let kept = head("keep-alive");
                if self.cache.admits(kept.len() as u64 + size) {
                    let c = self.load(kept.as_bytes(), off, size)?;
                    self.cache.insert(path, &c);
                    Some(c)
                } else {
                    None
                }
            }
        };
        match cached {
            // The hot path: straight from the cache's buffer.
            Some(c) if keep_alive => s.write_all(&c.buf[c.head..]),
            Some(c) => {
                // A `Connection: close` head differs from the cached one:
                // it goes with a copy of the first chunk only.
                let bytes = &c.buf[c.body..];
                let first = bytes.len().min(16 * 1024);
                let mut out = close_head().into_bytes();
                out.extend_from_slice(&bytes[..first]);
                s.write_all(&out)?;
                s.write_all(&bytes[first..])
            }
            None => {
                let conn = if keep_alive { "keep-alive" } else { "close" };
                self.stream_file(s, head(conn).as_bytes(), off, size)
            }
        }
    }

    /// Sends `head` then the body of `(off, size)` on `s`, read from the
    /// device 32 KiB at a time (files too large for the cache); the head
    /// goes out with the first chunk (one segment fewer than a write of
    /// its own).
    fn stream_file<S: Conn>(&self, s: &mut S, head: &[u8], off: u64, size: u64) -> io::Result<()> {
        let page = self.block.pagesize() as u64;
        let chunk_pages = (32 * 1024 / page).max(1);
        let mut buf = vec![0u8; (chunk_pages * page) as usize];
        let end = off + size;
        let mut pos = off;
        let mut first = head.to_vec();
        if size == 0 {
            return s.write_all(head);
        }
        while pos < end {
            let base = pos / page * page;
            let len = (end - base).div_ceil(page).min(chunk_pages) * page;
            let len = len.min(self.block.length() - base);
            self.cache.state.borrow_mut().stats.block_reads += 1;
            self.block
                .atomic_read(base, &mut buf[..len as usize])
                .map_err(|e| io::Error::other(e.to_string()))?;
            let from = (pos - base) as usize;
            let to = ((base + len).min(end) - base) as usize;
            if first.is_empty() {
                s.write_all(&buf[from..to])?;
            } else {
                first.extend_from_slice(&buf[from..to]);
                s.write_all(&first)?;
                first = Vec::new();
            }
            pos = base + to as u64;
        }
        Ok(())
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq)]
pub enum Request {
    /// A `GET` (true) or `HEAD` (false) of a file, and keep-alive.
    Get {
        path: String,
        body: bool,
        keep_alive: bool,
    },
    /// An error response to send, then close.
    Error(u16, &'static str),
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a whole request head (with its final empty line) with
/// `httparse`.
pub fn parse_head(head: &[u8]) -> Request {
    let bad = Request::Error(400, "Bad Request");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Request::Error(431, "Request Header Fields Too Large");
        }
        // Partial: the caller passes whole heads, so it cannot be one.
        Ok(httparse::Status::Partial) | Err(_) => return bad,
    }
    // httparse accepts only HTTP/1.0 (0) and HTTP/1.1 (1).
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return bad;
    };
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Request::Error(405, "Method Not Allowed"),
    };
    // `Connection` is a list of tokens (`keep-alive, Upgrade`).
    let (mut close, mut keep) = (false, false);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(path) = path.strip_prefix('/').and_then(percent_decode) else {
        return bad;
    };
    if path.split('/').any(|seg| seg == "..") || path.contains('\0') {
        return bad;
    }
    let path = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path
    };
    Request::Get {
        path,
        body,
        keep_alive: !close && (keep || version == 1),
    }
}

/// Reads one request head from `s` into `buf` (which may hold bytes of
/// earlier reads); returns the head's length including the empty line,
/// `Ok(None)` at a clean end of stream, or an error status for a
/// request that is too large.
///
/// The head must arrive within `t.header` of its first byte (of the call
/// when `first`: a new connection), and the first byte within `t.idle`.
/// The bound is the stream's peer timeout, set before each read to what
/// is left: a client that sends nothing more has its connection closed by
/// the stack at the deadline (the read fails with `ConnectionReset`), one
/// that trickles bytes is stopped here at the first read past it
/// (`TimedOut`).
fn read_head<S: Conn>(
    s: &mut S,
    buf: &mut Vec<u8>,
    first: bool,
    t: Timeouts,
) -> std::io::Result<Result<Option<usize>, ()>> {
    let start = Instant::now();
    let mut deadline = (first || !buf.is_empty()).then(|| start + t.header);
    let mut scanned: usize = 0;
    loop {
        if let Some(i) = buf[scanned.saturating_sub(3)..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let end = scanned.saturating_sub(3) + i + 4;
            let line_end = buf.windows(2).position(|w| w == b"\r\n").unwrap_or(end);
            return Ok(if line_end > MAX_REQUEST_LINE {
                Err(())
            } else {
                Ok(Some(end))
            });
        }
        scanned = buf.len();
        let line_done = buf.windows(2).any(|w| w == b"\r\n");
        if (!line_done && buf.len() > MAX_REQUEST_LINE) || buf.len() > MAX_HEAD {
            return Ok(Err(()));
        }
        let now = Instant::now();
        let left = match deadline {
            Some(d) => d.saturating_duration_since(now),
            None => (start + t.idle).saturating_duration_since(now),
        };
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request head took too long",
            ));
        }
        s.tcp().set_peer_timeout(Some(left));
        let old = buf.len();
        buf.resize(old + 4096, 0);
        let n = s.read(&mut buf[old..])?;
        buf.truncate(old + n);
        if n == 0 {
            return Ok(Ok(None));
        }
        if deadline.is_none() {
            deadline = Some(Instant::now() + t.header);
        }
    }
}

fn respond_error<S: Conn>(s: &mut S, code: u16, reason: &str) -> std::io::Result<()> {
    let body = format!("{code} {reason}\n");
    let out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(out.as_bytes())?;
    s.end()?;
    // Lingering close: read (and drop) what the client still sends, up to
    // a bound, so that the response is not lost to a reset.
    let mut sink = [0u8; 4096];
    let mut left = 2 * 1024 * 1024usize;
    while left > 0 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    Ok(())
}

/// Serves one connection until it closes or asks to: over plain TCP
/// ([`TcpStream`]) or, with the `tls` feature, over TLS
/// ([`TlsStream`](mkernel::net::tls::TlsStream)), the same code either way
/// (monomorphised: the plain path has no dispatch or copy the TLS one
/// needs).
///
/// # Errors
///
/// The connection's I/O error, when reading a request or writing a
/// response fails.
pub fn serve_connection<S: Conn>(site: &Site, mut s: S, t: Timeouts) -> std::io::Result<()> {
    let s = &mut s;
    let mut buf = Vec::with_capacity(4096);
    // No keep-alive probes: the client's answers would count as activity,
    // and the idle timeout is the peer timeout.
    s.tcp().set_keepalive(None);
    let mut first = true;
    loop {
        let end = match read_head(s, &mut buf, first, t)? {
            Ok(Some(end)) => end,
            Ok(None) => return s.finish(),
            Err(()) => return respond_error(s, 400, "Bad Request"),
        };
        first = false;
        // While responding: the stack's bound on a peer that stops
        // acknowledging.
        s.tcp().set_peer_timeout(Some(stack::DEFAULT_PEER_TIMEOUT));
        let req = parse_head(&buf[..end]);
        buf.drain(..end);
        let (path, body, keep_alive) = match req {
            Request::Get {
                path,
                body,
                keep_alive,
            } => (path, body, keep_alive),
            Request::Error(code, reason) => return respond_error(s, code, reason),
        };
        match site.files.get(&path) {
            Some(&file) => site.send_file(s, &path, file, body, keep_alive)?,
            None => {
                let conn = if keep_alive { "keep-alive" } else { "close" };
                let msg = b"404 Not Found\n";
                let mut out = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
                    msg.len()
                )
                .into_bytes();
                if body {
                    out.extend_from_slice(msg);
                }
                s.write_all(&out)?;
            }
        }
        if !keep_alive {
            return s.end();
        }
    }
}

/// Accepts connections forever, one task each, with the default
/// [`Timeouts`].
pub fn serve(listener: TcpListener, site: Rc<Site>) {
    serve_with(listener, site, Timeouts::default())
}

/// Accepts connections forever, one task each, with timeouts `t`.
pub fn serve_with(listener: TcpListener, site: Rc<Site>, t: Timeouts) {
    accept_loop(listener, move |s| {
        let _ = serve_connection(&site, s, t);
    })
}

/// Accepts connections forever as an HTTPS server with `config` (the `tls`
/// feature), one task each, with timeouts `t`. The TLS handshake is done
/// in the connection's task and must end within the header timeout; a
/// failed one is a line on stderr.
#[cfg(feature = "tls")]
pub fn serve_tls(
    listener: TcpListener,
    site: Rc<Site>,
    t: Timeouts,
    config: std::sync::Arc<mkernel::net::tls::rustls::ServerConfig>,
) {
    accept_loop(listener, move |s| {
        let peer = s.peer_addr();
        // A client that stalls in the handshake is shed as one that stalls
        // in its request head.
        s.set_peer_timeout(Some(t.header));
        match mkernel::net::tls::TlsStream::accept(s, config.clone()) {
            Ok(tls) => {
                let _ = serve_connection(&site, tls, t);
            }
            Err(e) => match peer {
                Ok(p) => eprintln!("{p}: {e}"),
                Err(_) => eprintln!("TLS: {e}"),
            },
        }
    })
}

/// Accepts connections forever, each served by `serve` in a task of its
/// own.
fn accept_loop<F: Fn(TcpStream) + Clone + 'static>(listener: TcpListener, serve: F) {
    let orphans = mkernel::Orphans::new();
    loop {
        while let Some(Some(p)) = orphans.care() {
            let _ = p.join();
        }
        match listener.accept() {
            Ok((s, _peer)) => {
                // A response is a head then the body: with Nagle's
                // algorithm its last partial segment would wait for the
                // client's (delayed, up to 40 ms on Linux) ACK.
                let _ = s.set_nodelay(true);
                let serve = serve.clone();
                mkernel::spawn_orphan(&orphans, move || serve(s))
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// httpd's own flags (after `--`).
struct Flags {
    timeouts: Timeouts,
    /// `--stats=SECONDS`.
    stats: Option<Duration>,
    /// `--cache=BYTES`; [`default_cache`] when not given.
    cache: Option<u64>,
}

/// `BYTES`, or a number with a `K`, `M` or `G` suffix (KiB, MiB, GiB).
fn parse_bytes(v: &str) -> Option<u64> {
    let (num, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// [`DEFAULT_CACHE`], or an eighth of the heap where the heap is fixed
/// (Solo5): the cache must leave room for the connections.
fn default_cache() -> u64 {
    match mkernel::heap() {
        Some(h) => DEFAULT_CACHE.min(h.size as u64 / 8),
        None => DEFAULT_CACHE,
    }
}

/// Each connection's send buffer: 128 KiB where the heap is not fixed
/// (hosted), so that a 64 KiB file and its head go in one write and, on a
/// TAP with offloads, in one or two segments (2026-12-05, `cargo bench
/// --bench tcp`: 64 KiB req/s 0.47 → 0.94 of hyper's, docs/tcp.md); the
/// stack's default on Solo5, where every connection's buffers come out of
/// the heap and set the connection cap.
fn send_buffer() -> usize {
    match mkernel::heap() {
        Some(_) => stack::TCP_BUFFER,
        None => 128 * 1024,
    }
}

/// httpd's own flags, taken out of `args`; the rest is returned.
fn own_flags(args: Vec<String>) -> Result<(Flags, Vec<String>), String> {
    let mut f = Flags {
        timeouts: Timeouts::default(),
        stats: None,
        cache: None,
    };
    let mut rest = Vec::new();
    for a in args {
        let secs = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{a}: expected a positive number of seconds"))
        };
        if let Some(v) = a.strip_prefix("--header-timeout=") {
            f.timeouts.header = secs(v)?;
        } else if let Some(v) = a.strip_prefix("--idle-timeout=") {
            f.timeouts.idle = secs(v)?;
        } else if let Some(v) = a.strip_prefix("--stats=") {
            f.stats = Some(secs(v)?);
        } else if let Some(v) = a.strip_prefix("--cache=") {
            f.cache = Some(parse_bytes(v).ok_or_else(|| {
                format!("{a}: expected a number of bytes (with K, M or G: KiB, MiB, GiB)")
            })?);
        } else {
            rest.push(a);
        }
    }
    Ok((f, rest))
}

/// Prints a `stats:` line every `every`, for ever.
fn print_stats(stack: Stack, site: Rc<Site>, every: Duration) {
    loop {
        let heap = match mkernel::heap() {
            Some(h) => format!(" heap_used {} heap_size {}", h.used, h.size),
            None => String::new(),
        };
        let c = site.stats();
        println!(
            "stats: tcp_sockets {} tasks {}{heap} cache_hits {} cache_misses {} block_reads {} \
             cached_files {} cached_bytes {}",
            stack.tcp_socket_count(),
            mkernel::stats().live_tasks,
            c.hits,
            c.misses,
            c.block_reads,
            c.cached_files,
            c.cached_bytes
        );
        mkernel::sleep(every);
    }
}

/// The TLS server configuration from the PEM text on the block device
/// `tls` (the `tls` feature): the certificate chain, the server's own
/// certificate first, and its private key, zero-padded to whole sectors
/// (as `tls_echo` takes it). Exits with a message (status 1) when it is
/// missing or bad.
#[cfg(feature = "tls")]
fn tls_config(dev: &Block) -> std::sync::Arc<mkernel::net::tls::rustls::ServerConfig> {
    // At most 1 MiB of PEM text.
    let len = dev.length().min(1 << 20) as usize / dev.pagesize() * dev.pagesize();
    let pem = if len == 0 {
        Err(format!("block device {:?} is empty", dev.name()))
    } else {
        let mut buf = vec![0u8; len];
        dev.atomic_read(0, &mut buf)
            .map(|()| buf)
            .map_err(|e| format!("block device {:?}: {e}", dev.name()))
    };
    match pem.and_then(|p| mkernel::net::tls::server_config_from_pem(&p).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: certificate and key (block device tls): {e}");
            std::process::exit(1)
        }
    }
}

/// The devices: the stack on `service`, the site on `site`, and with the
/// `tls` feature the certificate and key on `tls`.
#[cfg(not(feature = "tls"))]
type Devices = (Stack, Block);
#[cfg(feature = "tls")]
type Devices = (Stack, Block, Block);

/// The default port: 80, or 443 with the `tls` feature.
const DEFAULT_PORT: u16 = if cfg!(feature = "tls") { 443 } else { 80 };

fn run(devices: Devices, port: u16, f: Flags) {
    #[cfg(not(feature = "tls"))]
    let (stack, block) = devices;
    #[cfg(feature = "tls")]
    let (stack, block, tls) = devices;
    // Before the site: a bad certificate is the first thing to say.
    #[cfg(feature = "tls")]
    let tls = tls_config(&tls);
    let cache = f.cache.unwrap_or_else(default_cache);
    let site = match Site::open_with_cache(block, cache) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    stack.set_tcp_buffers(stack::TCP_BUFFER, send_buffer());
    let listener = match TcpListener::bind(&stack, port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    if f.stats.is_some() {
        match stack.max_connections() {
            Some(n) => println!("connection cap: {n}"),
            None => println!("connection cap: none"),
        }
    }
    // Runs as long as the server (which never returns).
    let _stats = f.stats.map(|every| {
        let stack = stack.clone();
        let site = site.clone();
        mkernel::spawn(move || print_stats(stack, site, every))
    });
    println!(
        "listening on {}",
        listener.local_addr().expect("a listener has an address")
    );
    #[cfg(not(feature = "tls"))]
    serve_with(listener, site, f.timeouts);
    #[cfg(feature = "tls")]
    serve_tls(listener, site, f.timeouts, tls);
}

#[allow(
    dead_code,
    reason = "unused where this file is included as a module (demo, tests, benches)"
)]
fn main() {
    let parsed = own_flags(mkernel::args()).and_then(|(f, rest)| {
        StackConfig::from_args(&rest)
            .and_then(|(_, rest)| stack::port_from_args(&rest, DEFAULT_PORT))
            .map(|port| (port, f))
            .map_err(|e| e.to_string())
    });
    let (port, f) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    #[cfg(not(feature = "tls"))]
    let devices = (mkernel::stack("service"), mkernel::block("site"));
    #[cfg(feature = "tls")]
    let devices = (
        mkernel::stack("service"),
        mkernel::block("site"),
        mkernel::block("tls"),
    );
    mkernel::run(devices, move |d| run(d, port, f));
}

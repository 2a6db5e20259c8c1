//! A static HTTP/1.1 server: files from a tar archive on a block device.
//!
//! Build the site image (ustar, padded to a multiple of 512 bytes, which
//! tar already does) and run:
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
//! `--stats=SECONDS` (print `stats: ...` lines that often: TCP sockets,
//! the connection cap, the heap on Solo5; and a first line
//! `connection cap: N` or `none`). Prints `listening on ADDR:PORT` once
//! ready, the only line without `--stats` (the same hosted and as a
//! unikernel).
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
//! file; 400 for a malformed request, a request line over 8 KiB, a header
//! over 32 KiB, or a path with a `..` segment; 405 for other methods.

use mkernel::Block;
use mkernel::net::stack::{self, Stack, StackConfig, TcpListener, TcpStream};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 32 * 1024;
/// How long a request head may take to arrive whole: 10 s, from its first
/// byte (on a new connection, from the accept).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a kept-alive connection may wait for its next request: 30 s.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The files of a ustar archive on a block device: name -> (offset, size).
pub struct Site {
    block: Block,
    files: HashMap<String, (u64, u64)>,
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl Site {
    /// Reads the archive's headers (regular files only; names without a
    /// leading `./`).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong: a page size that is not a multiple
    /// of 512, a read that failed, a header that is not a tar header, a
    /// file whose bytes go past the end of the device (a truncated image).
    pub fn open(block: Block) -> Result<Site, String> {
        let page = block.pagesize() as u64;
        if page % 512 != 0 {
            return Err(format!(
                "block device {:?}: page size {page} is not a multiple of 512",
                block.name()
            ));
        }
        let mut files = HashMap::new();
        let mut pagebuf = vec![0u8; page as usize];
        let mut off = 0u64;
        while off + 512 <= block.length() {
            let base = off / page * page;
            block
                .atomic_read(base, &mut pagebuf)
                .map_err(|e| format!("reading the archive: {e}"))?;
            let start = (off - base) as usize;
            let h = &pagebuf[start..start + 512];
            if h.iter().all(|&b| b == 0) {
                break; // end of archive
            }
            if &h[257..262] != b"ustar" {
                return Err(format!("not a ustar archive (bad header at offset {off})"));
            }
            let size =
                octal(&h[124..136]).ok_or_else(|| format!("bad size field at offset {off}"))?;
            let typeflag = h[156];
            let mut name = cstr(&h[0..100]);
            let prefix = cstr(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
            let name = name.trim_start_matches("./").to_string();
            if (typeflag == b'0' || typeflag == 0) && !name.is_empty() {
                // Every file's bytes must be on the device: a truncated
                // image would be served cut short under a Content-Length
                // it cannot honour.
                let end = off + 512 + size;
                if end > block.length() {
                    return Err(format!(
                        "file {name:?} ({size} bytes at offset {}) goes past the end of block \
                         device {:?} ({} bytes): the image is truncated",
                        off + 512,
                        block.name(),
                        block.length()
                    ));
                }
                files.insert(name, (off + 512, size));
            }
            off += 512 + size.div_ceil(512) * 512;
        }
        Ok(Site { block, files })
    }

    /// Names of the files served.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Sends `head` then the body of `(off, size)` on `s`, page by page;
    /// the head goes out with the first chunk (one segment fewer than a
    /// write of its own).
    fn send_file(&self, s: &TcpStream, head: &[u8], off: u64, size: u64) -> std::io::Result<()> {
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
            self.block
                .read(base, &mut buf[..len as usize])
                .map_err(|e| std::io::Error::other(e.to_string()))?;
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

/// Parses a request head (without the final empty line).
pub fn parse_head(head: &[u8]) -> Request {
    let bad = Request::Error(400, "Bad Request");
    let Ok(head) = std::str::from_utf8(head) else {
        return bad;
    };
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    if line.len() > MAX_REQUEST_LINE {
        return bad;
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad;
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return bad,
    };
    let mut connection = None;
    for h in lines {
        let Some((name, value)) = h.split_once(':') else {
            return bad;
        };
        if name.eq_ignore_ascii_case("connection") {
            connection = Some(value.trim().to_ascii_lowercase());
        }
    }
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Request::Error(405, "Method Not Allowed"),
    };
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
    let keep_alive = match connection.as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => http11,
    };
    Request::Get {
        path,
        body,
        keep_alive,
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
fn read_head(
    s: &TcpStream,
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
        s.set_peer_timeout(Some(left));
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

fn respond_error(s: &TcpStream, code: u16, reason: &str) -> std::io::Result<()> {
    let body = format!("{code} {reason}\n");
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
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

/// Serves one connection until it closes or asks to.
///
/// # Errors
///
/// The connection's I/O error, when reading a request or writing a
/// response fails.
pub fn serve_connection(site: &Site, s: TcpStream, t: Timeouts) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    // No keep-alive probes: the client's answers would count as activity,
    // and the idle timeout is the peer timeout.
    s.set_keepalive(None);
    let mut first = true;
    loop {
        let end = match read_head(&s, &mut buf, first, t)? {
            Ok(Some(end)) => end,
            Ok(None) => return Ok(()),
            Err(()) => return respond_error(&s, 400, "Bad Request"),
        };
        first = false;
        // While responding: the stack's bound on a peer that stops
        // acknowledging.
        s.set_peer_timeout(Some(stack::DEFAULT_PEER_TIMEOUT));
        let req = parse_head(&buf[..end - 4]);
        buf.drain(..end);
        let (path, body, keep_alive) = match req {
            Request::Get {
                path,
                body,
                keep_alive,
            } => (path, body, keep_alive),
            Request::Error(code, reason) => return respond_error(&s, code, reason),
        };
        let conn = if keep_alive { "keep-alive" } else { "close" };
        match site.files.get(&path) {
            Some(&(off, size)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {size}\r\nConnection: {conn}\r\n\r\n",
                    content_type(&path)
                );
                if body {
                    site.send_file(&s, head.as_bytes(), off, size)?;
                } else {
                    s.write_all(head.as_bytes())?;
                }
            }
            None => {
                let msg = b"404 Not Found\n";
                let head = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
                    msg.len()
                );
                s.write_all(head.as_bytes())?;
                if body {
                    s.write_all(msg)?;
                }
            }
        }
        if !keep_alive {
            s.shutdown(std::net::Shutdown::Write)?;
            return Ok(());
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
                let site = site.clone();
                mkernel::spawn_orphan(&orphans, move || {
                    let _ = serve_connection(&site, s, t);
                })
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

/// httpd's own flags, taken out of `args`; the rest is returned.
fn own_flags(args: Vec<String>) -> Result<(Timeouts, Option<Duration>, Vec<String>), String> {
    let mut t = Timeouts::default();
    let mut stats = None;
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
            t.header = secs(v)?;
        } else if let Some(v) = a.strip_prefix("--idle-timeout=") {
            t.idle = secs(v)?;
        } else if let Some(v) = a.strip_prefix("--stats=") {
            stats = Some(secs(v)?);
        } else {
            rest.push(a);
        }
    }
    Ok((t, stats, rest))
}

/// Prints a `stats:` line every `every`, for ever.
fn print_stats(stack: Stack, every: Duration) {
    loop {
        let heap = match mkernel::heap() {
            Some(h) => format!(" heap_used {} heap_size {}", h.used, h.size),
            None => String::new(),
        };
        println!(
            "stats: tcp_sockets {} tasks {}{heap}",
            stack.tcp_socket_count(),
            mkernel::stats().live_tasks
        );
        mkernel::sleep(every);
    }
}

fn run(stack: Stack, block: Block, port: u16, t: Timeouts, stats: Option<Duration>) {
    let site = match Site::open(block) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    let listener = match TcpListener::bind(&stack, port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    if stats.is_some() {
        match stack.max_connections() {
            Some(n) => println!("connection cap: {n}"),
            None => println!("connection cap: none"),
        }
    }
    // Runs as long as the server (which never returns).
    let _stats = stats.map(|every| {
        let stack = stack.clone();
        mkernel::spawn(move || print_stats(stack, every))
    });
    println!(
        "listening on {}",
        listener.local_addr().expect("a listener has an address")
    );
    serve_with(listener, site, t)
}

#[allow(
    dead_code,
    reason = "unused where this file is included as a module (demo, tests, benches)"
)]
fn main() {
    let parsed = own_flags(mkernel::args()).and_then(|(t, stats, rest)| {
        StackConfig::from_args(&rest)
            .and_then(|(_, rest)| stack::port_from_args(&rest, 80))
            .map(|port| (port, t, stats))
            .map_err(|e| e.to_string())
    });
    let (port, t, stats) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    mkernel::run(
        (mkernel::stack("service"), mkernel::block("site")),
        move |(stack, block)| run(stack, block, port, t, stats),
    );
}

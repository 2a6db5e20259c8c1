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
//! `--ipv4=ADDR/PREFIX` (default 10.0.0.2/24), `--ipv4-gateway=ADDR`.
//! Prints `listening on ADDR:PORT` once ready.
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

/// Longest request line accepted.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 32 * 1024;

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
fn read_head(s: &TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Result<Option<usize>, ()>> {
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
        let old = buf.len();
        buf.resize(old + 4096, 0);
        let n = s.read(&mut buf[old..])?;
        buf.truncate(old + n);
        if n == 0 {
            return Ok(Ok(None));
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
pub fn serve_connection(site: &Site, s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let end = match read_head(&s, &mut buf)? {
            Ok(Some(end)) => end,
            Ok(None) => return Ok(()),
            Err(()) => return respond_error(&s, 400, "Bad Request"),
        };
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

/// Accepts connections forever, one task each.
pub fn serve(listener: TcpListener, site: Rc<Site>) {
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
                    let _ = serve_connection(&site, s);
                })
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn run(stack: Stack, block: Block, port: u16) {
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
    println!(
        "listening on {}",
        listener.local_addr().expect("a listener has an address")
    );
    serve(listener, site)
}

#[allow(
    dead_code,
    reason = "unused where this file is included as a module (demo, tests, benches)"
)]
fn main() {
    let port = match StackConfig::from_args(&mkernel::args())
        .and_then(|(_, rest)| stack::port_from_args(&rest, 80))
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    mkernel::run(
        (mkernel::stack("service"), mkernel::block("site")),
        move |(stack, block)| run(stack, block, port),
    );
}

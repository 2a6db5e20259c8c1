//! A DNS stub resolver: [`Stack::resolve`] (A and AAAA records over UDP
//! to the configured name servers, IPv4 or IPv6) and [`TcpStream::connect_host`].
//!
//! The query and the answer are built and read here (RFC 1035's wire
//! format, a few dozen lines), over a [`UdpSocket`], so that the timeouts
//! and retries are ours and wait as any socket call does: only the calling
//! task is suspended.

use super::{ConfigError, ConfigErrorKind, Stack, TcpStream, UdpSocket};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How long [`Stack::resolve`] waits for one name server's answer before
/// it asks the next one: 2 s.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times [`Stack::resolve`] goes through the list of name servers
/// (each one asked once per round): 3. A resolve with no answer at all
/// fails with `TimedOut` after `DNS_TRIES × servers × DNS_TIMEOUT` (6 s
/// with one server), as a libc resolver with `timeout:2 attempts:3`.
pub const DNS_TRIES: u32 = 3;

/// The most name servers a [`StackConfig`](super::StackConfig) holds: 3,
/// as `resolv.conf` (`MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;

/// The name servers of a [`StackConfig`](super::StackConfig), in order
/// (at most [`MAX_NAMESERVERS`]). Empty by default; filled by
/// `--nameserver=ADDR` ([`StackConfig::from_args`](super::StackConfig::from_args))
/// or [`StackConfig::set_nameservers`](super::StackConfig::set_nameservers).
///
/// ```
/// use mkernel::net::stack::Nameservers;
/// let mut ns = Nameservers::default();
/// assert!(ns.is_empty());
/// ns.push("10.0.0.1".parse().unwrap()).unwrap();
/// assert_eq!(ns.as_slice(), ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nameservers {
    addrs: [IpAddr; MAX_NAMESERVERS],
    len: usize,
}

impl Default for Nameservers {
    /// None.
    fn default() -> Self {
        Nameservers {
            addrs: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); MAX_NAMESERVERS],
            len: 0,
        }
    }
}

impl Nameservers {
    /// The name servers, in the order they are asked.
    ///
    /// ```
    /// let ns = mkernel::net::stack::Nameservers::default();
    /// assert_eq!(ns.as_slice().len(), 0);
    /// ```
    #[must_use]
    pub fn as_slice(&self) -> &[IpAddr] {
        &self.addrs[..self.len]
    }

    /// Whether there is none.
    ///
    /// ```
    /// assert!(mkernel::net::stack::Nameservers::default().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `addr` at the end.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] of kind [`Malformed`](ConfigErrorKind::Malformed)
    /// naming `--nameserver` when there are already [`MAX_NAMESERVERS`], or
    /// `addr` is unspecified, broadcast or multicast.
    ///
    /// ```
    /// let mut ns = mkernel::net::stack::Nameservers::default();
    /// assert!(ns.push("0.0.0.0".parse().unwrap()).is_err());
    /// ```
    pub fn push(&mut self, addr: IpAddr) -> Result<(), ConfigError> {
        let broadcast = matches!(addr, IpAddr::V4(a) if a.is_broadcast());
        if addr.is_unspecified() || broadcast || addr.is_multicast() {
            return Err(ConfigError::new(
                ConfigErrorKind::Malformed,
                "--nameserver",
                format!("--nameserver={addr}: expected a unicast IP address"),
            ));
        }
        if self.len == MAX_NAMESERVERS {
            return Err(ConfigError::new(
                ConfigErrorKind::Malformed,
                "--nameserver",
                format!("--nameserver={addr}: at most {MAX_NAMESERVERS} name servers may be given"),
            ));
        }
        self.addrs[self.len] = addr;
        self.len += 1;
        Ok(())
    }
}

/// Parses the value of `--nameserver=ADDR`.
pub(super) fn parse_nameserver(v: &str) -> Result<IpAddr, ConfigError> {
    v.parse().map_err(|_| {
        ConfigError::new(
            ConfigErrorKind::Malformed,
            "--nameserver",
            format!("--nameserver={v}: expected an IP address, e.g. --nameserver=10.0.0.1"),
        )
    })
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
const RCODE_NXDOMAIN: u8 = 3;

impl Stack {
    /// Resolves `name` to its IPv4 and IPv6 addresses (DNS A and AAAA
    /// records), asking the configured name servers
    /// ([`StackConfig::nameservers`](super::StackConfig::nameservers), IPv4
    /// or IPv6) over UDP, in order: each server is asked both questions at
    /// once (two queries) and gets [`DNS_TIMEOUT`] to answer them before the
    /// next is asked (when only one answer came by then, its addresses are
    /// taken), and the list is gone through [`DNS_TRIES`] times (an
    /// answer after its server's time is not taken). A name server that fails (`SERVFAIL`, `REFUSED`)
    /// passes the question to the next. CNAME chains within the answer are
    /// followed. An IP address (`"10.0.0.1"`, `"::1"`) is returned as is,
    /// without a query; a trailing dot is allowed; no search domains are
    /// tried. Only the calling task waits.
    ///
    /// Order: the IPv6 addresses first when the stack has an IPv6 address
    /// beyond link-local (`--ipv6`), the IPv4 ones first otherwise, each
    /// family in the server's order.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a name that is not a DNS name (empty, a label
    /// longer than 63 bytes, over 253 bytes, characters other than letters,
    /// digits, `-` and `_`); `NotFound` when a server says the name does not
    /// exist (NXDOMAIN) or has neither an A nor an AAAA record; `TimedOut` when no server
    /// answered within `DNS_TRIES × servers × DNS_TIMEOUT`; `ConnectionRefused`
    /// when every server refused or failed; `AddrNotAvailable` when no name
    /// server is configured; `Interrupted` when the task is being cancelled;
    /// a UDP socket's errors otherwise.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig};
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     // An address needs no name server.
    ///     assert_eq!(stack.resolve("10.0.0.1").unwrap(), ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    ///     let e = stack.resolve("bad..name").unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    /// });
    /// ```
    pub fn resolve(&self, name: &str) -> io::Result<Vec<IpAddr>> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let qname = encode_name(name)?;
        let config = self.config();
        let servers = config.nameservers.as_slice();
        if servers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("cannot resolve {name:?}: no name server configured (--nameserver=ADDR)"),
            ));
        }
        // Two questions (A and AAAA) in two queries: servers answer only
        // one question per query.
        let id = query_id();
        let ids = [id, id.wrapping_add(1)];
        let queries = [
            build_query(ids[0], &qname, TYPE_A),
            build_query(ids[1], &qname, TYPE_AAAA),
        ];
        // IPv6 first when the stack has an IPv6 address beyond link-local
        // (then it can reach both families), as RFC 6724 prefers.
        let v6_first = config.ipv6.is_some();
        // A socket per query, dropped on its timeout: a datagram to a
        // server whose link address is unknown stays queued in smoltcp, and
        // its ARP requests (smoltcp sends one a second, for any address)
        // would starve those for the next server.
        let mut failed: Vec<IpAddr> = Vec::new();
        let mut buf = [0u8; 1500];
        for _ in 0..DNS_TRIES {
            for &server in servers {
                if failed.contains(&server) {
                    continue;
                }
                let sock = UdpSocket::bind(self, 0)?;
                for q in &queries {
                    sock.send_to(q, SocketAddr::new(server, 53))?;
                }
                let deadline =
                    crate::sys::clock::monotonic().saturating_add(DNS_TIMEOUT.as_nanos() as u64);
                // The answers to the A and the AAAA query.
                let mut got: [Option<Answer>; 2] = [None, None];
                loop {
                    let now = crate::sys::clock::monotonic();
                    if now >= deadline {
                        break;
                    }
                    sock.set_read_timeout(Some(Duration::from_nanos(deadline - now)))?;
                    let (n, from) = match sock.recv_from(&mut buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                        Err(e) => return Err(e),
                    };
                    if from.port() != 53 || from.ip() != server {
                        continue;
                    }
                    for (i, qtype) in [TYPE_A, TYPE_AAAA].into_iter().enumerate() {
                        if got[i].is_none() {
                            // Not an answer to this query: ignored.
                            got[i] = parse_response(&buf[..n], ids[i], &qname, qtype);
                        }
                    }
                    if got.iter().all(Option::is_some) {
                        break;
                    }
                }
                let [a, aaaa] = got;
                match combine(a, aaaa, v6_first) {
                    // No answer in time: the next server.
                    None => {}
                    Some(Answer::Addrs(addrs)) => return Ok(addrs),
                    Some(Answer::NoName) => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{name:?}: no such name (NXDOMAIN from {server})"),
                        ));
                    }
                    Some(Answer::NoData) => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{name:?}: no IPv4 or IPv6 address (from {server})"),
                        ));
                    }
                    Some(Answer::Failed(rcode)) => {
                        failed.push(server);
                        if failed.len() == servers.len() {
                            return Err(io::Error::new(
                                io::ErrorKind::ConnectionRefused,
                                format!(
                                    "{name:?}: every name server failed (last: {server}, rcode {rcode})"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{name:?}: no answer from {servers:?} ({DNS_TRIES} tries of {DNS_TIMEOUT:?} each)"
            ),
        ))
    }
}

impl TcpStream {
    /// Connects to `host` (a name or an address) on `port`: resolves it
    /// ([`Stack::resolve`]), then tries each address in turn with
    /// [`TcpStream::connect`] until one connects (in `resolve`'s order,
    /// skipping the addresses of a family the stack has no address of).
    ///
    /// # Errors
    ///
    /// [`Stack::resolve`]'s errors; the last address's
    /// [`connect`](TcpStream::connect) error when none connects.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
    ///
    /// let (a, b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).net_link("b", b).run(
    ///     (mkernel::net("a"), mkernel::net("b")),
    ///     |(a, b)| {
    ///         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
    ///         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
    ///         let l = TcpListener::bind(&server, 7).unwrap();
    ///         let acc = mkernel::spawn(move || l.accept().unwrap().1);
    ///         let c = TcpStream::connect_host(&client, "10.0.0.1", 7).unwrap();
    ///         assert_eq!(acc.join().unwrap(), c.local_addr().unwrap());
    ///     },
    /// );
    /// ```
    pub fn connect_host(stack: &Stack, host: &str, port: u16) -> io::Result<TcpStream> {
        let mut last = None;
        let cfg = stack.config();
        let mut ips = stack.resolve(host)?;
        // Addresses of a family the stack has no address of cannot be
        // reached: not tried, unless there is nothing else (for the error).
        let reachable = |ip: &IpAddr| match ip {
            IpAddr::V4(_) => !cfg.ipv4.address().is_unspecified(),
            IpAddr::V6(a) => cfg.ipv6.is_some() || a.is_unicast_link_local(),
        };
        if ips.iter().any(reachable) {
            ips.retain(reachable);
        }
        for ip in ips {
            match TcpStream::connect(stack, SocketAddr::new(ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{host:?}: no address"))
        }))
    }
}

/// A query ID from the platform's entropy (the clock if it fails).
fn query_id() -> u16 {
    let mut b = [0u8; 2];
    if crate::sys::fill_random(&mut b).is_err() {
        let t = crate::sys::clock::monotonic();
        b = [(t ^ (t >> 16)) as u8, (t >> 8 ^ t >> 24) as u8];
    }
    u16::from_le_bytes(b)
}

/// `name` in wire form (length-prefixed labels, lower-cased, ending with
/// the root's 0), or `InvalidInput`.
fn encode_name(name: &str) -> io::Result<Vec<u8>> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a DNS name: {why}"),
        )
    };
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    if trimmed.len() > 253 {
        return Err(bad("longer than 253 bytes"));
    }
    let mut out = Vec::with_capacity(trimmed.len() + 2);
    for label in trimmed.split('.') {
        if label.is_empty() {
            return Err(bad("an empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label longer than 63 bytes"));
        }
        if !label
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(bad("only letters, digits, '-' and '_' may appear"));
        }
        out.push(label.len() as u8);
        out.extend(label.bytes().map(|c| c.to_ascii_lowercase()));
    }
    out.push(0);
    Ok(out)
}

fn build_query(id: u16, qname: &[u8], qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + qname.len() + 4);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // a standard query, recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    q.extend_from_slice(qname);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

enum Answer {
    Addrs(Vec<IpAddr>),
    NoName,
    NoData,
    Failed(u8),
}

/// Reads the name at `pos` of `msg` (following compression pointers) in
/// lower-cased wire form; returns it and the position after it in place.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        match len {
            0 => {
                out.push(0);
                return Some((out, end.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let ptr = (l & 0x3f) << 8 | *msg.get(pos + 1)? as usize;
                end.get_or_insert(pos + 2);
                pos = ptr;
            }
            l if l <= 63 => {
                let label = msg.get(pos + 1..pos + 1 + l)?;
                out.push(l as u8);
                out.extend(label.iter().map(u8::to_ascii_lowercase));
                if out.len() > 255 {
                    return None;
                }
                pos += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

fn be16(msg: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_be_bytes(msg.get(pos..pos + 2)?.try_into().ok()?))
}

/// What the answers to the A and the AAAA query say together: the
/// addresses of both (IPv6 first if `v6_first`) if either has some;
/// otherwise a failure or NXDOMAIN from either; no data only when both
/// say so; `None` when neither answered.
fn combine(a: Option<Answer>, aaaa: Option<Answer>, v6_first: bool) -> Option<Answer> {
    let (first, second) = if v6_first { (aaaa, a) } else { (a, aaaa) };
    let mut addrs = Vec::new();
    let mut other = None;
    for ans in [first, second].into_iter().flatten() {
        match ans {
            Answer::Addrs(v) => addrs.extend(v),
            Answer::NoData => {
                other.get_or_insert(Answer::NoData);
            }
            // A failure or NXDOMAIN outweighs "no data".
            e => other = Some(e),
        }
    }
    if addrs.is_empty() {
        other
    } else {
        Some(Answer::Addrs(addrs))
    }
}

/// The answer in `msg` to query `id` for `qname` and `qtype` (A or AAAA);
/// `None` when `msg` is not a well-formed response to that query.
fn parse_response(msg: &[u8], id: u16, qname: &[u8], qtype: u16) -> Option<Answer> {
    if be16(msg, 0)? != id || msg.get(2)? & 0x80 == 0 {
        return None;
    }
    let rcode = msg.get(3)? & 0x0f;
    let qd = be16(msg, 4)?;
    let an = be16(msg, 6)?;
    let mut pos = 12;
    if qd != 1 {
        return None;
    }
    let (q, p) = read_name(msg, pos)?;
    if q != qname || be16(msg, p)? != qtype || be16(msg, p + 2)? != CLASS_IN {
        return None;
    }
    pos = p + 4;
    match rcode {
        0 => {}
        RCODE_NXDOMAIN => return Some(Answer::NoName),
        r => return Some(Answer::Failed(r)),
    }
    // The names that lead to the addresses: the question and the CNAME
    // targets met so far (servers give a chain in order).
    let mut names = vec![qname.to_vec()];
    let mut addrs = Vec::new();
    for _ in 0..an {
        let (owner, p) = read_name(msg, pos)?;
        let rtype = be16(msg, p)?;
        let class = be16(msg, p + 2)?;
        let rdlen = be16(msg, p + 8)? as usize;
        let rdata = p + 10;
        msg.get(rdata..rdata + rdlen)?;
        if class == CLASS_IN && names.contains(&owner) {
            match rtype {
                TYPE_A if qtype == TYPE_A && rdlen == 4 => {
                    let b: [u8; 4] = msg[rdata..rdata + 4].try_into().ok()?;
                    addrs.push(IpAddr::from(b));
                }
                TYPE_AAAA if qtype == TYPE_AAAA && rdlen == 16 => {
                    let b: [u8; 16] = msg[rdata..rdata + 16].try_into().ok()?;
                    addrs.push(IpAddr::from(b));
                }
                TYPE_CNAME => names.push(read_name(msg, rdata)?.0),
                _ => {}
            }
        }
        pos = rdata + rdlen;
    }
    Some(if addrs.is_empty() {
        Answer::NoData
    } else {
        Answer::Addrs(addrs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aaaa_and_combined_order() {
        let qname = encode_name("six.test").unwrap();
        let mut m = build_query(9, &qname, TYPE_AAAA);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1;
        m.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        m.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6]);
        let Some(Answer::Addrs(v6)) = parse_response(&m, 9, &qname, TYPE_AAAA) else {
            panic!("no AAAA");
        };
        assert_eq!(v6, ["fd00::6".parse::<IpAddr>().unwrap()]);
        let a = || Some(Answer::Addrs(vec!["10.0.0.1".parse().unwrap()]));
        let aaaa = || Some(Answer::Addrs(v6.clone()));
        let Some(Answer::Addrs(both)) = combine(a(), aaaa(), true) else {
            panic!()
        };
        assert_eq!(both[0], v6[0]);
        let Some(Answer::Addrs(both)) = combine(a(), aaaa(), false) else {
            panic!()
        };
        assert_eq!(both[1], v6[0]);
        // No data for one family and addresses for the other: addresses.
        assert!(matches!(
            combine(Some(Answer::NoData), aaaa(), false),
            Some(Answer::Addrs(_))
        ));
        assert!(matches!(
            combine(Some(Answer::NoData), Some(Answer::NoData), false),
            Some(Answer::NoData)
        ));
        assert!(matches!(
            combine(Some(Answer::NoName), Some(Answer::NoData), false),
            Some(Answer::NoName)
        ));
        assert!(combine(None, None, true).is_none());
    }

    #[test]
    fn names() {
        assert_eq!(encode_name("Ab.c.").unwrap(), b"\x02ab\x01c\x00");
        for bad in ["", ".", "a..b", "a b", &"x".repeat(64), &"a.".repeat(128)] {
            assert_eq!(
                encode_name(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn compressed_cname_chain() {
        let qname = encode_name("www.example.test").unwrap();
        let mut m = build_query(7, &qname, TYPE_A);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 2; // two answers
        // www.example.test CNAME example.test (pointer to offset 16)
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 16]);
        // example.test A 10.1.2.3
        m.extend_from_slice(&[0xc0, 16, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
        match parse_response(&m, 7, &qname, TYPE_A) {
            Some(Answer::Addrs(a)) => assert_eq!(a, [IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))]),
            _ => panic!("no address"),
        }
        assert!(parse_response(&m, 8, &qname, TYPE_A).is_none());
        // The answer to the A question is not one to the AAAA question.
        assert!(parse_response(&m, 7, &qname, TYPE_AAAA).is_none());
        // A pointer loop is refused, not followed for ever.
        let mut l = m.clone();
        l[12] = 0xc0;
        l[13] = 12;
        assert!(parse_response(&l, 7, &qname, TYPE_A).is_none());
    }
}

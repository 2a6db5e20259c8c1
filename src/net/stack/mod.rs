//! A TCP/IP stack (IPv4 static or by DHCP, IPv6 static or by SLAAC, TCP,
//! UDP, ARP and NDP, ICMP echo, names by DNS) on smoltcp, in direct style:
//! a blocking-looking call suspends only its task.
//!
//! How it works: one runtime-owned task (a daemon) waits until the net
//! device has a frame or smoltcp's next timer is due, hands every waiting
//! frame to smoltcp, and wakes exactly the tasks waiting on sockets that
//! became ready (each socket has a wait queue per direction). A connection
//! past its handshake (IPv4 or IPv6) lives in a socket set of its own,
//! and each incoming segment is routed to its connection's set by its
//! addresses and ports, so that the cost of a frame, a read or a write
//! does not grow with the connections the stack holds (smoltcp scans a
//! whole set for each). A task that writes puts the data in the socket's
//! buffer and sends from its connection's set at once, so the data leaves
//! without waiting for the daemon (and bulk senders stay pipelined); if
//! that moves the connection's next deadline earlier, the daemon's timer
//! is moved too. No busy polling; frames are received into and sent from
//! buffers allocated once.
//!
//! Cancelling a task blocked in a socket call unwinds it at its suspension
//! point; its socket is closed and removed from the stack when dropped.
//!
//! ```
//! use mkernel::net::link;
//! use mkernel::net::stack::{Stack, StackConfig, TcpListener, TcpStream};
//! use std::io::{Read, Write};
//!
//! let (a, b) = link::pair(link::Faults::default());
//! let got = mkernel::Builder::new()
//!     .net_link("a", a)
//!     .net_link("b", b)
//!     .run((mkernel::net("a"), mkernel::net("b")), |(a, b)| {
//!         let server = Stack::new(a, StackConfig::parse("10.0.0.1/24", None).unwrap());
//!         let client = Stack::new(b, StackConfig::parse("10.0.0.2/24", None).unwrap());
//!         let listener = TcpListener::bind(&server, 7).unwrap();
//!         let echo = mkernel::spawn(move || {
//!             let (mut s, _peer) = listener.accept().unwrap();
//!             let mut buf = [0u8; 64];
//!             let n = s.read(&mut buf).unwrap();
//!             s.write_all(&buf[..n]).unwrap();
//!         });
//!         let mut c = TcpStream::connect(&client, "10.0.0.1:7".parse().unwrap()).unwrap();
//!         c.write_all(b"hello").unwrap();
//!         let mut buf = [0u8; 5];
//!         c.read_exact(&mut buf).unwrap();
//!         echo.join().unwrap();
//!         buf
//!     });
//! assert_eq!(&got, b"hello");
//! ```

mod autoconf;
mod dns;
mod phy;
mod sockets;
mod tcp;
mod udp;

pub use autoconf::DHCP_TIMEOUT;
pub use dns::{DNS_TIMEOUT, DNS_TRIES, MAX_NAMESERVERS, Nameservers};
pub use smoltcp::wire::{Ipv4Cidr, Ipv6Cidr};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;

use crate::fiber::{self, Syscall, SyscallId, WaitQueue, spawn_daemon, suspend};
use crate::net::{Net, NetCfg};
use crate::reactor::{NetWait, Timer};
use core::cell::{Cell, RefCell};
use core::fmt;
use phy::Phy;
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::{tcp as stcp, udp as sudp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};
use sockets::{Sock, TcpSockets};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::{Rc, Weak};

/// The address used when `--ipv4` is not given: `10.0.0.2/24`.
pub const DEFAULT_IPV4: &str = "10.0.0.2/24";

/// Bytes of each TCP socket's receive buffer and of its send buffer by
/// default: 16 KiB, so that a connection costs 32 KiB of buffers (a
/// unikernel's memory is not overcommitted: every byte is taken from its
/// heap, used or not). Per stack: [`Stack::set_tcp_buffers`]; per
/// listener, for the streams it accepts: [`TcpListener::set_buffers`]. A
/// bulk transfer may want larger ones (64 KiB or more: smoltcp's window is
/// the receive buffer).
pub const TCP_BUFFER: usize = 16 * 1024;

/// What the default connection cap counts for a connection besides its
/// two buffers and a task stack: smoltcp's socket, the task's record, a
/// server's own buffers (httpd's request buffer), rounded up: 8 KiB.
pub const CONNECTION_OVERHEAD: usize = 8 * 1024;

/// Listening sockets a [`TcpListener`] keeps ready by default: how many
/// connections may be half-open or waiting for `accept` at once.
pub const DEFAULT_BACKLOG: usize = 32;

/// How long a handshake may stay in SYN-RECEIVED (our SYN-ACK sent, the
/// peer's ACK awaited) before its socket listens again: 5 s, time for
/// smoltcp to send the SYN-ACK 3 times (at 0, 1 and 3 s). A peer that
/// never answers (spoofed SYNs) holds a socket of the backlog at most that
/// long. Per listener: [`TcpListener::set_syn_timeout`].
pub const DEFAULT_SYN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a connection's peer may send nothing before the connection is
/// reset: 60 s. With keep-alive probes ([`DEFAULT_KEEPALIVE`]) a live peer
/// answers well within it, so this bounds how long a vanished peer is
/// retransmitted to. Per stream: [`TcpStream::set_peer_timeout`].
pub const DEFAULT_PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long [`TcpStream::connect`] waits for the handshake before it fails
/// with `TimedOut`: 20 s, in which smoltcp sends the SYN 5 times (at 0, 1,
/// 3, 7 and 15 s: its retransmission timeout starts at 1 s and doubles),
/// about what Windows allows (21 s) and well under Linux's default
/// (`tcp_syn_retries` = 6: 127 s), since a unikernel's peers are usually
/// near. [`TcpStream::connect_timeout`] takes any other bound.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// After how long without a segment from the peer a connection sends a
/// keep-alive probe: 15 s (four chances within [`DEFAULT_PEER_TIMEOUT`]).
/// Per stream: [`TcpStream::set_keepalive`].
pub const DEFAULT_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a dropped TCP socket may take to finish its graceful close
/// (send what is left, exchange FINs) before it is aborted.
const LINGER_NS: u64 = 30_000_000_000;

/// The IP configuration of a [`Stack`] (as MirageOS's and mnet-cli's
/// `--ipv4`, `--ipv4-gateway`, `--ipv6`, `--ipv6-gateway`, `--nameserver`).
///
/// IPv4 is static (`--ipv4=ADDR/PREFIX`, [`DEFAULT_IPV4`] when not given:
/// existing deployments and tests rely on that default) or comes from a
/// DHCP server (`--ipv4=dhcp`: [`dhcp`](StackConfig::dhcp)). IPv6 is off
/// unless `--ipv6` is given: a static address (`--ipv6=ADDR/PREFIX`) or
/// SLAAC from router advertisements (`--ipv6=auto`:
/// [`slaac`](StackConfig::slaac)); either way the stack also has its
/// link-local address (`fe80::` and the MAC's EUI-64), answers neighbour
/// solicitations and echo requests (ping6).
///
/// ```
/// use mkernel::net::stack::StackConfig;
/// let args: Vec<String> = ["--ipv4=10.77.0.2/24", "--ipv4-gateway=10.77.0.1", "--port=8"]
///     .iter().map(|s| s.to_string()).collect();
/// let (cfg, rest) = StackConfig::from_args(&args).unwrap();
/// assert_eq!(cfg.ipv4.to_string(), "10.77.0.2/24");
/// assert_eq!(cfg.gateway, Some("10.77.0.1".parse().unwrap()));
/// assert_eq!(rest, ["--port=8"]);
/// assert!(StackConfig::from_args(&["--ipv4=10.0.0.300/24".to_string()]).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackConfig {
    /// The stack's address and prefix, e.g. `10.0.0.2/24`.
    pub ipv4: Ipv4Cidr,
    /// The default route, if any.
    pub gateway: Option<Ipv4Addr>,
    /// The name servers [`Stack::resolve`] asks, in order (`--nameserver`);
    /// none by default. With [`dhcp`](StackConfig::dhcp) and no
    /// `--nameserver`, the DHCP server's.
    pub nameservers: Nameservers,
    /// `--ipv4=dhcp`: the IPv4 address and prefix, the gateway and (unless
    /// `--nameserver` is given) the name servers come from a DHCP server
    /// and follow its leases (see [`Stack::wait_configured`]). In the
    /// configuration given to [`Stack::new`], `ipv4` is then `0.0.0.0/0`
    /// and `gateway` is `None`; [`Stack::config`] shows the lease.
    ///
    /// The lease is renewed at the server's T1 (half the lease by
    /// default). When the address changes (a new lease with another
    /// address) or goes (the lease expired unrenewed), listeners and
    /// unbound UDP sockets, bound to a port and not an address, take
    /// connections and datagrams on the new address at once, and
    /// `local_addr` shows it; TCP connections on the old address, which
    /// their peers can no longer reach, are reset (their calls fail, a read
    /// returns `ConnectionReset` or end of stream). Renewing the same lease
    /// changes nothing.
    pub dhcp: bool,
    /// The static IPv6 address and prefix (`--ipv6=ADDR/PREFIX`), if any;
    /// with [`slaac`](StackConfig::slaac), [`Stack::config`] shows the
    /// address formed from the router's prefix here.
    pub ipv6: Option<Ipv6Cidr>,
    /// The IPv6 default route (`--ipv6-gateway=ADDR`), if any; with
    /// [`slaac`](StackConfig::slaac), [`Stack::config`] shows the
    /// advertising router here.
    pub ipv6_gateway: Option<Ipv6Addr>,
    /// `--ipv6=auto`: stateless address autoconfiguration (RFC 4862): the
    /// stack solicits router advertisements and forms its address from the
    /// advertised prefix and its MAC; the router becomes the IPv6 default
    /// route.
    pub slaac: bool,
}

impl Default for StackConfig {
    /// `10.0.0.2/24` ([`DEFAULT_IPV4`]), no gateway.
    fn default() -> Self {
        StackConfig {
            ipv4: Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24),
            gateway: None,
            nameservers: Nameservers::default(),
            dhcp: false,
            ipv6: None,
            ipv6_gateway: None,
            slaac: false,
        }
    }
}

impl StackConfig {
    /// A configuration from `ADDR/PREFIX` and an optional gateway address.
    ///
    /// ```
    /// let c = mkernel::net::stack::StackConfig::parse("192.168.1.10/24", Some("192.168.1.1")).unwrap();
    /// assert_eq!(c.ipv4.prefix_len(), 24);
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] of kind [`Malformed`](ConfigErrorKind::Malformed)
    /// when `ipv4` is not `ADDR/PREFIX` with a unicast address and a prefix
    /// of at most 32 (its [`flag`](ConfigError::flag) is `--ipv4`), or when
    /// `gateway` is not an IPv4 address (`--ipv4-gateway`).
    pub fn parse(ipv4: &str, gateway: Option<&str>) -> Result<StackConfig, ConfigError> {
        Ok(StackConfig {
            ipv4: parse_cidr(ipv4)?,
            gateway: gateway.map(parse_gateway).transpose()?,
            ..StackConfig::default()
        })
    }

    /// Sets the name servers [`Stack::resolve`] asks, in order (as
    /// `--nameserver=ADDR` given once per address).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `--nameserver` for more than
    /// [`MAX_NAMESERVERS`] addresses or an address that is not unicast; the
    /// configuration is then unchanged.
    ///
    /// ```
    /// use mkernel::net::stack::StackConfig;
    /// let mut cfg = StackConfig::default();
    /// cfg.set_nameservers(&["10.0.0.1".parse::<std::net::Ipv4Addr>().unwrap()]).unwrap();
    /// assert_eq!(cfg.nameservers.as_slice(), ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    /// cfg.set_nameservers(&["fd00::1".parse::<std::net::IpAddr>().unwrap()]).unwrap();
    /// ```
    pub fn set_nameservers<A: Copy + Into<IpAddr>>(
        &mut self,
        addrs: &[A],
    ) -> Result<(), ConfigError> {
        let mut ns = Nameservers::default();
        for &a in addrs {
            ns.push(a.into())?;
        }
        self.nameservers = ns;
        Ok(())
    }

    /// Takes `--ipv4=ADDR/PREFIX` or `--ipv4=dhcp`, `--ipv4-gateway=ADDR`,
    /// `--ipv6=ADDR/PREFIX` or `--ipv6=auto`, `--ipv6-gateway=ADDR` and
    /// `--nameserver=ADDR` (IPv4 or IPv6, up to [`MAX_NAMESERVERS`] times,
    /// asked in that order) out of `args` (for instance
    /// [`mkernel::args()`](crate::args)) and returns the configuration and
    /// the other arguments, in order. Without `--ipv4`, the address is
    /// [`DEFAULT_IPV4`] (static: DHCP only when asked for); without
    /// `--ipv4-gateway`, there is no default route (DHCP's with
    /// `--ipv4=dhcp`); without `--ipv6`, no IPv6; without `--nameserver`,
    /// no name server (DHCP's with `--ipv4=dhcp`).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] that names the flag and says what is expected:
    /// [`Malformed`](ConfigErrorKind::Malformed) for a bad value (or a
    /// fourth `--nameserver`),
    /// [`MissingValue`](ConfigErrorKind::MissingValue) for `--ipv4`,
    /// `--ipv4-gateway` or `--nameserver` without `=VALUE`,
    /// [`GatewayOutsideNetwork`](ConfigErrorKind::GatewayOutsideNetwork)
    /// for a gateway outside the network of `--ipv4` (or, for
    /// `--ipv6-gateway`, neither in the network of `--ipv6` nor link-local),
    /// [`Conflict`](ConfigErrorKind::Conflict) for `--ipv4-gateway` with
    /// `--ipv4=dhcp` (the lease gives the gateway) and `--ipv6-gateway` with
    /// `--ipv6=auto`.
    ///
    /// ```
    /// use mkernel::net::stack::{ConfigErrorKind, StackConfig};
    /// let e = StackConfig::from_args(&["--ipv4-gateway".to_string()]).unwrap_err();
    /// assert_eq!(e.kind(), ConfigErrorKind::MissingValue);
    /// assert_eq!(e.flag(), "--ipv4-gateway");
    /// let args = ["--nameserver=10.0.0.1".to_string(), "--nameserver=10.0.0.53".to_string()];
    /// let (cfg, _) = StackConfig::from_args(&args).unwrap();
    /// assert_eq!(cfg.nameservers.as_slice().len(), 2);
    /// let e = StackConfig::from_args(&["--nameserver=dns.local".to_string()]).unwrap_err();
    /// assert_eq!(e.flag(), "--nameserver");
    /// let (cfg, _) = StackConfig::from_args(&["--ipv4=dhcp".to_string()]).unwrap();
    /// assert!(cfg.dhcp);
    /// let args = ["--ipv6=fd00::2/64".to_string(), "--ipv6-gateway=fd00::1".to_string()];
    /// let (cfg, _) = StackConfig::from_args(&args).unwrap();
    /// assert_eq!(cfg.ipv6.unwrap().to_string(), "fd00::2/64");
    /// assert_eq!(cfg.ipv6_gateway, Some("fd00::1".parse().unwrap()));
    /// let (cfg, _) = StackConfig::from_args(&["--ipv6=auto".to_string()]).unwrap();
    /// assert!(cfg.slaac);
    /// let e = StackConfig::from_args(&["--ipv6=fd00::1".to_string()]).unwrap_err();
    /// assert_eq!(e.flag(), "--ipv6");
    /// ```
    pub fn from_args(args: &[String]) -> Result<(StackConfig, Vec<String>), ConfigError> {
        let mut cfg = StackConfig::default();
        let mut rest = Vec::new();
        for a in args {
            if a == "--ipv4=dhcp" {
                cfg.dhcp = true;
                cfg.ipv4 = Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0);
            } else if let Some(v) = a.strip_prefix("--ipv4=") {
                cfg.dhcp = false;
                cfg.ipv4 = parse_cidr(v)?;
            } else if let Some(v) = a.strip_prefix("--ipv4-gateway=") {
                cfg.gateway = Some(parse_gateway(v)?);
            } else if let Some(v) = a.strip_prefix("--nameserver=") {
                cfg.nameservers.push(dns::parse_nameserver(v)?)?;
            } else if a == "--ipv6=auto" {
                cfg.slaac = true;
                cfg.ipv6 = None;
            } else if let Some(v) = a.strip_prefix("--ipv6=") {
                cfg.slaac = false;
                cfg.ipv6 = Some(autoconf::parse_cidr6(v)?);
            } else if let Some(v) = a.strip_prefix("--ipv6-gateway=") {
                cfg.ipv6_gateway = Some(autoconf::parse_gateway6(v)?);
            } else if [
                "--ipv4",
                "--ipv4-gateway",
                "--nameserver",
                "--ipv6",
                "--ipv6-gateway",
            ]
            .contains(&a.as_str())
            {
                return Err(ConfigError::new(
                    ConfigErrorKind::MissingValue,
                    a,
                    format!("{a} needs a value: {a}=VALUE"),
                ));
            } else {
                rest.push(a.clone());
            }
        }
        autoconf::check(&cfg)?;
        if let Some(gw) = cfg.gateway {
            if !cfg.ipv4.contains_addr(&gw) {
                return Err(ConfigError::new(
                    ConfigErrorKind::GatewayOutsideNetwork,
                    "--ipv4-gateway",
                    format!(
                        "--ipv4-gateway={gw} is not in the network of --ipv4={}",
                        cfg.ipv4
                    ),
                ));
            }
        }
        Ok((cfg, rest))
    }
}

/// What kind of [`ConfigError`] this is.
///
/// ```
/// use mkernel::net::stack::{port_from_args, ConfigErrorKind};
/// let e = port_from_args(&["--verbose".to_string()], 80).unwrap_err();
/// assert_eq!(e.kind(), ConfigErrorKind::UnknownArgument);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A flag's value is not of the expected form (`--ipv4=10.0.0.300/24`,
    /// `--port=0`).
    Malformed,
    /// A flag without its `=VALUE` (`--ipv4`).
    MissingValue,
    /// `--ipv4-gateway` is not in the network of `--ipv4`.
    GatewayOutsideNetwork,
    /// An argument that no flag accepts ([`port_from_args`]).
    UnknownArgument,
    /// Two flags that cannot go together (`--ipv4-gateway` with
    /// `--ipv4=dhcp`, whose lease gives the gateway).
    Conflict,
}

/// A malformed network flag ([`StackConfig::parse`],
/// [`StackConfig::from_args`], [`port_from_args`]). Its message names the
/// flag and says what is expected; an [`io::Error`] made from it
/// ([`From`]) is of kind [`InvalidInput`](io::ErrorKind::InvalidInput).
///
/// ```
/// use mkernel::net::stack::{ConfigErrorKind, StackConfig};
/// let e = StackConfig::from_args(&["--ipv4=10.0.0.300/24".to_string()]).unwrap_err();
/// assert_eq!(e.kind(), ConfigErrorKind::Malformed);
/// assert_eq!(e.flag(), "--ipv4");
/// assert_eq!(e.to_string(), "--ipv4=10.0.0.300/24: expected ADDR/PREFIX, e.g. --ipv4=10.0.0.2/24");
/// let io = std::io::Error::from(e);
/// assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    flag: String,
    msg: String,
}

impl ConfigError {
    fn new(kind: ConfigErrorKind, flag: &str, msg: String) -> ConfigError {
        ConfigError {
            kind,
            flag: flag.to_string(),
            msg,
        }
    }

    /// What is wrong.
    #[must_use]
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The flag at fault, without its value (`--ipv4`, `--ipv4-gateway`,
    /// `--port`), or the argument as given for
    /// [`UnknownArgument`](ConfigErrorKind::UnknownArgument).
    #[must_use]
    pub fn flag(&self) -> &str {
        &self.flag
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for io::Error {
    /// An error of kind [`InvalidInput`](io::ErrorKind::InvalidInput)
    /// whose [`get_ref`](io::Error::get_ref) is the `ConfigError`.
    fn from(e: ConfigError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The service port from the arguments left by
/// [`StackConfig::from_args`]: `--port=N` (1-65535), else `default`. Any
/// other argument is an error naming it and the accepted flags, so that a
/// service's command line is checked as a whole.
///
/// ```
/// use mkernel::net::stack::port_from_args;
/// assert_eq!(port_from_args(&["--port=8080".to_string()], 80), Ok(8080));
/// assert_eq!(port_from_args(&[], 80), Ok(80));
/// assert!(port_from_args(&["--port=0".to_string()], 80).is_err());
/// let e = port_from_args(&["--verbose".to_string()], 80).unwrap_err();
/// assert!(e.to_string().contains("--verbose"));
/// ```
///
/// # Errors
///
/// A [`ConfigError`]: [`Malformed`](ConfigErrorKind::Malformed) for a
/// `--port` that is not 1-65535,
/// [`UnknownArgument`](ConfigErrorKind::UnknownArgument) for any other
/// argument.
pub fn port_from_args(args: &[String], default: u16) -> Result<u16, ConfigError> {
    let mut port = default;
    for a in args {
        match a.strip_prefix("--port=") {
            Some(v) => {
                port = v.parse().ok().filter(|&p: &u16| p > 0).ok_or_else(|| {
                    ConfigError::new(
                        ConfigErrorKind::Malformed,
                        "--port",
                        format!("--port={v}: expected a port number (1-65535)"),
                    )
                })?;
            }
            None => {
                return Err(ConfigError::new(
                    ConfigErrorKind::UnknownArgument,
                    a,
                    format!(
                        "unknown argument {a:?} (expected --port=N, --ipv4=ADDR/PREFIX|dhcp, --ipv4-gateway=ADDR, --ipv6=ADDR/PREFIX|auto, --ipv6-gateway=ADDR, --nameserver=ADDR)"
                    ),
                ));
            }
        }
    }
    Ok(port)
}

fn parse_cidr(v: &str) -> Result<Ipv4Cidr, ConfigError> {
    let bad = || {
        ConfigError::new(
            ConfigErrorKind::Malformed,
            "--ipv4",
            format!("--ipv4={v}: expected ADDR/PREFIX, e.g. --ipv4=10.0.0.2/24"),
        )
    };
    let (addr, prefix) = v.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > 32 || addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() {
        return Err(bad());
    }
    let not_a_host = |why: &str| {
        ConfigError::new(
            ConfigErrorKind::Malformed,
            "--ipv4",
            format!(
                "--ipv4={v}: {why}; give a host address and its network, e.g. --ipv4=10.0.0.2/24"
            ),
        )
    };
    if prefix == 0 {
        return Err(not_a_host("a /0 network is every address"));
    }
    if addr.is_loopback() {
        return Err(not_a_host(
            "a loopback address is not reachable on a net device",
        ));
    }
    let cidr = Ipv4Cidr::new(addr, prefix);
    // In a /31 or /32 every address is a host (RFC 3021).
    if prefix <= 30 {
        if addr == cidr.network().address() {
            return Err(not_a_host("that is the network's own address"));
        }
        if Some(addr) == cidr.broadcast() {
            return Err(not_a_host("that is the network's broadcast address"));
        }
    }
    Ok(cidr)
}

fn parse_gateway(v: &str) -> Result<Ipv4Addr, ConfigError> {
    v.parse().map_err(|_| {
        ConfigError::new(
            ConfigErrorKind::Malformed,
            "--ipv4-gateway",
            format!("--ipv4-gateway={v}: expected an IPv4 address, e.g. --ipv4-gateway=10.0.0.1"),
        )
    })
}

/// The TCP/IP stack on one net device. Cheap to clone (an `Rc` inside);
/// every clone is the same stack. Build it in a run (the daemon that
/// receives frames is a task of that run).
#[derive(Clone)]
pub struct Stack {
    pub(crate) inner: Rc<Inner>,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Stack({:?}, {})",
            self.inner.net.name(),
            self.inner.config.get().ipv4
        )
    }
}

/// What a waiting task waits for.
#[derive(Clone)]
pub(crate) enum Cond {
    TcpRecv(Sock),
    /// Also "connected" and "accepted" (a socket past its handshake).
    TcpSend(Sock),
    Accept(Rc<RefCell<Vec<Sock>>>),
    UdpRecv(SocketHandle),
    UdpSend(SocketHandle),
}

struct Waiter {
    token: u64,
    cond: Cond,
    queue: Rc<WaitQueue>,
}

/// The tasks waiting on sockets. Those waiting on a connection in a set of
/// its own are found by its [`Sock`], so that a poll looks only at the
/// connections it touched; the others (listeners, outgoing connections
/// still connecting, UDP: few) are looked at on every poll.
#[derive(Default)]
struct Waiters {
    shared: Vec<Waiter>,
    by_sock: HashMap<Sock, Vec<Waiter>>,
}

pub(crate) struct Core {
    pub(crate) iface: Interface,
    /// The shared socket set: UDP sockets, and the TCP sockets that have no
    /// set of their own (see [`sockets`]).
    pub(crate) sockets: SocketSet<'static>,
    tcp: TcpSockets,
    phy: Phy,
    /// TCP sockets in `sockets` (listening, connected, closing).
    tcp_count: usize,
    /// The connection cap ([`Stack::max_connections`]; `usize::MAX`: none).
    tcp_cap: usize,
}

impl Core {
    /// Adds a TCP socket to the shared set, counting it.
    pub(crate) fn add_tcp(&mut self, s: stcp::Socket<'static>) -> Sock {
        self.tcp_count += 1;
        self.tcp.add(&mut self.sockets, s)
    }

    /// Removes a TCP socket from the stack.
    pub(crate) fn remove_tcp(&mut self, h: Sock) {
        self.tcp_count -= 1;
        self.tcp.remove(&mut self.sockets, h);
    }

    /// A TCP socket.
    pub(crate) fn tcp(&mut self, h: Sock) -> &mut stcp::Socket<'static> {
        self.tcp.get_mut(&mut self.sockets, h)
    }

    /// A TCP socket, to look at.
    pub(crate) fn tcp_ref(&self, h: Sock) -> &stcp::Socket<'static> {
        self.tcp.get(&self.sockets, h)
    }

    /// Gives a connected socket a set of its own (see [`sockets`]).
    pub(crate) fn promote(&mut self, h: Sock) {
        self.tcp.promote(&mut self.sockets, h);
    }

    /// Sends what the connection `h` in a set of its own has to send, and
    /// records its next deadline; false for a socket in the shared set.
    fn egress_own(&mut self, h: Sock, now: u64) -> bool {
        let Core {
            iface, phy, tcp, ..
        } = self;
        let Some(set) = tcp.own_set(h) else {
            return false;
        };
        while iface.poll_egress(instant(now), phy, set) == PollResult::SocketStateChanged {}
        let due = iface.poll_at(instant(now), set).map(ns_of);
        tcp.set_due(h, due);
        true
    }

    /// Hands every frame waiting on the device to smoltcp, each to the
    /// socket set it belongs to; the connections in sets of their own that
    /// got one go to `touched`. Whether an ARP frame came (a neighbour
    /// became known: sockets waiting for it may send now).
    fn ingress(&mut self, now: u64, touched: &mut Vec<Sock>) -> bool {
        let mut arp = false;
        let Core {
            iface,
            sockets,
            phy,
            tcp,
            ..
        } = self;
        while phy.stage(now).is_some() {
            let frame = phy.staged();
            let to = tcp.route(phy.staged_head());
            if to.is_none() && frame.len() >= 14 && frame[12..14] == [0x08, 0x06] {
                arp = true;
            }
            let set = match to.and_then(|h| tcp.own_set(h)) {
                Some(set) => set,
                None => &mut *sockets,
            };
            if iface.poll_ingress_single(instant(now), phy, set) == PollIngressSingleResult::None {
                break;
            }
            if let Some(h) = to {
                touched.push(h);
            }
        }
        arp
    }

    /// Whether one more TCP socket fits under the cap.
    pub(crate) fn below_cap(&self) -> bool {
        self.tcp_count < self.tcp_cap
    }
}

/// The default connection cap: `None` hosted; on Solo5, three quarters of
/// the heap divided by what a connection costs (its buffers, a task stack
/// of the run's size, [`CONNECTION_OVERHEAD`]).
fn derived_cap((rx, tx): (usize, usize)) -> Option<usize> {
    let (heap, _) = crate::sys::heap()?;
    let stack = crate::fiber::stats().stacks.stack_size;
    Some((heap / 4 * 3 / (rx + tx + stack + CONNECTION_OVERHEAD)).max(1))
}

pub(crate) struct Inner {
    net: Net,
    /// The current configuration: DHCP and SLAAC change it
    /// ([`autoconf`]).
    config: Cell<StackConfig>,
    /// DHCP and SLAAC state, and the tasks waiting for an address.
    autoconf: autoconf::Autoconf,
    pub(crate) core: RefCell<Core>,
    waiters: RefCell<Waiters>,
    next_token: Cell<u64>,
    /// Dropped TCP sockets finishing their close, with their deadline.
    /// The local port is given back when the socket goes, if it owned it.
    closing: RefCell<Vec<(Sock, u64, Option<u16>)>>,
    /// The shared set's next deadline, as of the last poll (it changes only
    /// in polls: its sockets are not written to outside them).
    shared_due: Cell<Option<u64>>,
    /// The connections in sets of their own touched since the last wake-up
    /// of their waiters.
    touched: RefCell<Vec<Sock>>,
    /// The daemon's current wait: its syscall and deadline.
    daemon: Cell<Option<(SyscallId, u64)>>,
    /// Local ports in use, per protocol (TCP and UDP ports are separate
    /// spaces).
    pub(crate) ports: RefCell<HashSet<(Proto, u16)>>,
    next_port: Cell<u16>,
    /// The listeners, tended at each poll ([`tcp::tend`]).
    pub(crate) listeners: RefCell<Vec<Rc<tcp::Listening>>>,
    /// Handshakes that ended before `accept` (see [`StackStats`]).
    handshakes_failed: Cell<u64>,
    /// Buffer sizes (receive, send) of the TCP sockets made from now on.
    pub(crate) tcp_buffers: Cell<(usize, usize)>,
    /// The cap set by [`Stack::set_max_connections`]; `None`: derived.
    cap_set: Cell<Option<Option<usize>>>,
}

/// Counters of a [`Stack`]'s listeners, see [`Stack::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackStats {
    /// SYNs set aside in the SYN queue because their listener had no
    /// listening socket ready (each is handed over when one is).
    pub syns_queued: u64,
    /// SYNs dropped because they waited in the SYN queue for 1 s or found
    /// it full (the client sends them again).
    pub syns_dropped: u64,
    /// Handshakes that ended before `accept` took the connection: the
    /// SYN-RECEIVED timeout expired ([`DEFAULT_SYN_TIMEOUT`]) or the peer
    /// reset it. Their sockets listen again.
    pub handshakes_failed: u64,
}

fn now_ns() -> u64 {
    crate::sys::clock::monotonic()
}

fn instant(ns: u64) -> Instant {
    Instant::from_micros((ns / 1000) as i64)
}

fn ns_of(i: Instant) -> u64 {
    (i.total_micros().max(0) as u64).saturating_mul(1000)
}

pub(crate) fn to_std(ep: IpEndpoint) -> SocketAddr {
    match ep.addr {
        IpAddress::Ipv4(a) => SocketAddr::new(IpAddr::V4(a), ep.port),
        IpAddress::Ipv6(a) => SocketAddr::new(IpAddr::V6(a), ep.port),
    }
}

pub(crate) fn from_std(addr: SocketAddr) -> io::Result<IpEndpoint> {
    // An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address,
    // as a dual-stack socket on Linux takes it.
    let ip = match addr.ip() {
        IpAddr::V6(a) => a
            .to_ipv4_mapped()
            .map_or(IpAddress::Ipv6(a), IpAddress::Ipv4),
        IpAddr::V4(a) => IpAddress::Ipv4(a),
    };
    Ok(IpEndpoint::new(ip, addr.port()))
}

impl Stack {
    /// A stack on net device `dev` (as given by [`mkernel::net`](crate::net()))
    /// with the IP configuration `config`. Starts the stack's daemon.
    ///
    /// # Panics
    /// Outside a run.
    #[must_use]
    pub fn new(dev: (Net, NetCfg), config: StackConfig) -> Stack {
        let (net, cfg) = dev;
        let mut phy = Phy::new(net.clone());
        // SLAAC solicits routers at the first poll, from the link-local
        // address that `autoconf::setup` gives the interface.
        let slaac = config.slaac;
        let mut icfg = Config::new(EthernetAddress(cfg.mac).into());
        icfg.random_seed = now_ns()
            ^ u64::from_le_bytes([
                cfg.mac[0], cfg.mac[1], cfg.mac[2], cfg.mac[3], cfg.mac[4], cfg.mac[5], 0x5a, 0xa5,
            ]);
        icfg.slaac = slaac;
        let mut iface = Interface::new(icfg, &mut phy, instant(now_ns()));
        if !config.dhcp {
            iface.update_ip_addrs(|addrs| {
                addrs
                    .push(IpCidr::Ipv4(config.ipv4))
                    .expect("one address fits");
            });
        }
        if let Some(gw) = config.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gw)
                .expect("one route fits");
        }
        let mut sockets = SocketSet::new(Vec::new());
        let autoconf = autoconf::setup(&config, cfg.mac, &mut iface, &mut sockets);
        phy.set_addrs(iface.ip_addrs());
        let inner = Rc::new(Inner {
            net,
            config: Cell::new(config),
            autoconf,
            core: RefCell::new(Core {
                iface,
                sockets,
                tcp: TcpSockets::new(),
                phy,
                tcp_count: 0,
                tcp_cap: derived_cap((TCP_BUFFER, TCP_BUFFER)).unwrap_or(usize::MAX),
            }),
            waiters: RefCell::new(Waiters::default()),
            next_token: Cell::new(0),
            closing: RefCell::new(Vec::new()),
            shared_due: Cell::new(None),
            touched: RefCell::new(Vec::new()),
            daemon: Cell::new(None),
            ports: RefCell::new(HashSet::new()),
            next_port: Cell::new(49152 + (now_ns() % 16384) as u16),
            listeners: RefCell::new(Vec::new()),
            handshakes_failed: Cell::new(0),
            tcp_buffers: Cell::new((TCP_BUFFER, TCP_BUFFER)),
            cap_set: Cell::new(None),
        });
        let weak = Rc::downgrade(&inner);
        spawn_daemon(move || daemon(weak));
        Stack { inner }
    }

    /// The stack's IP configuration now: as given to [`Stack::new`], with
    /// what DHCP ([`StackConfig::dhcp`]) and SLAAC
    /// ([`StackConfig::slaac`]) obtained since (`0.0.0.0/0` as `ipv4`
    /// while DHCP has no lease; see [`wait_configured`](Stack::wait_configured)).
    #[must_use]
    pub fn config(&self) -> StackConfig {
        self.inner.config.get()
    }

    /// The net device under the stack.
    #[must_use]
    pub fn net(&self) -> &Net {
        &self.inner.net
    }

    /// Sockets currently in the stack (open ones, listening ones, and
    /// dropped ones still finishing their close).
    #[must_use]
    pub fn socket_count(&self) -> usize {
        let core = self.inner.core.borrow();
        core.sockets.iter().count() + core.tcp.own_count()
    }

    /// How many connections live in socket sets of their own (for the
    /// crate's tests: see `run.rs`).
    #[cfg(test)]
    pub(crate) fn own_sets(&self) -> usize {
        self.inner.core.borrow().tcp.own_count()
    }

    /// Sets the sizes in bytes of the receive and send buffers of the TCP
    /// sockets this stack makes from now on: listeners bound later (and
    /// the streams they accept), outgoing connections. Default
    /// [`TCP_BUFFER`] each; at least 1 byte. A listener has its own:
    /// [`TcpListener::set_buffers`]. The derived connection cap follows
    /// (see [`max_connections`](Stack::max_connections)).
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, TcpListener, TCP_BUFFER};
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     assert_eq!(stack.tcp_buffers(), (TCP_BUFFER, TCP_BUFFER));
    ///     stack.set_tcp_buffers(256 * 1024, 64 * 1024);
    ///     let l = TcpListener::bind(&stack, 80).unwrap();
    ///     assert_eq!(l.buffers(), (256 * 1024, 64 * 1024));
    /// });
    /// ```
    pub fn set_tcp_buffers(&self, rx: usize, tx: usize) {
        let b = (rx.max(1), tx.max(1));
        self.inner.tcp_buffers.set(b);
        if self.inner.cap_set.get().is_none() {
            self.inner.core.borrow_mut().tcp_cap = derived_cap(b).unwrap_or(usize::MAX);
        }
    }

    /// The buffer sizes (receive, send) of the TCP sockets made from now
    /// on (see [`set_tcp_buffers`](Stack::set_tcp_buffers)).
    #[must_use]
    pub fn tcp_buffers(&self) -> (usize, usize) {
        self.inner.tcp_buffers.get()
    }

    /// Sets the connection cap: the TCP sockets the stack may hold before
    /// its listeners stop taking new connections; `None`: no cap.
    ///
    /// Every TCP socket counts, since each holds its buffers: the
    /// listeners' listening sockets, connections waiting for `accept`,
    /// accepted and outgoing streams, and dropped ones still closing. At
    /// the cap, a listener whose socket became a connection gets no new
    /// listening socket until the count falls below the cap again (a
    /// connection closed and left the stack); meanwhile new SYNs wait in
    /// the SYN queue for up to 1 s and are then dropped, and clients send
    /// them again (see [`TcpListener`]). No established connection is
    /// reset for the cap, and nothing aborts. Outgoing connections
    /// ([`TcpStream::connect`]) count but are not refused.
    ///
    /// Default: derived from the memory, so that connections cannot
    /// exhaust it. On Solo5, three quarters of the heap ([`crate::heap`])
    /// divided by what a connection costs: its two buffers
    /// ([`tcp_buffers`](Stack::tcp_buffers)), a task stack of the run's
    /// size ([`Builder::stack_size`](crate::Builder::stack_size)) for its
    /// handler, and [`CONNECTION_OVERHEAD`]: with `solo5-spt --mem=512`,
    /// 16 KiB buffers and 64 KiB stacks, about 3,800 connections. Hosted:
    /// no cap (the process's memory is overcommitted; set one if the
    /// machine's memory matters).
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig};
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     assert_eq!(stack.max_connections(), None); // hosted
    ///     stack.set_max_connections(Some(1000));
    ///     assert_eq!(stack.max_connections(), Some(1000));
    /// });
    /// ```
    pub fn set_max_connections(&self, max: Option<usize>) {
        self.inner.cap_set.set(Some(max));
        self.inner.core.borrow_mut().tcp_cap = max.unwrap_or(usize::MAX);
        // Listeners short of sockets get them back if the cap rose.
        self.inner.poll();
    }

    /// The connection cap (see [`set_max_connections`](Stack::set_max_connections)).
    #[must_use]
    pub fn max_connections(&self) -> Option<usize> {
        let cap = self.inner.core.borrow().tcp_cap;
        (cap != usize::MAX).then_some(cap)
    }

    /// TCP sockets the stack holds now (what the cap counts, see
    /// [`set_max_connections`](Stack::set_max_connections)).
    #[must_use]
    pub fn tcp_socket_count(&self) -> usize {
        self.inner.core.borrow().tcp_count
    }

    /// The listeners' counters: SYNs queued and dropped for a full
    /// backlog, handshakes that failed (see [`TcpListener`]).
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig, StackStats};
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     assert_eq!(stack.stats(), StackStats::default());
    /// });
    /// ```
    #[must_use]
    pub fn stats(&self) -> StackStats {
        let syn = self.inner.core.borrow().phy.syn_stats;
        StackStats {
            syns_queued: syn.queued,
            syns_dropped: syn.dropped,
            handshakes_failed: self.inner.handshakes_failed.get(),
        }
    }
}

/// The receiver: waits for a frame or smoltcp's next deadline, polls.
fn daemon(weak: Weak<Inner>) {
    /// Forgets the daemon's wait, also when the daemon is cancelled.
    struct Waiting<'a>(&'a Weak<Inner>);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            if let Some(inner) = self.0.upgrade() {
                inner.daemon.set(None);
            }
        }
    }
    loop {
        let (sc, deadline, dev) = {
            let Some(inner) = weak.upgrade() else { return };
            inner.poll();
            let deadline = inner.next_deadline();
            let sc = Syscall::new();
            inner
                .daemon
                .set(Some((sc.id(), deadline.unwrap_or(u64::MAX))));
            (sc, deadline, inner.net.dev.index)
        };
        let _waiting = Waiting(&weak);
        if fiber::cannot_wait() {
            return;
        }
        let _net = NetWait::new(dev, sc.id());
        let _timer = deadline.map(|d| Timer::new(d, sc.id()));
        suspend(&sc, || {});
    }
}

impl Inner {
    /// Feeds smoltcp every frame waiting on the device, sends what is due,
    /// reaps closed sockets, wakes the tasks whose sockets became ready and
    /// moves the daemon's deadline if needed. Its cost grows with the
    /// frames and the connections they touch, not with the connections
    /// the stack holds (see [`sockets`]).
    pub(crate) fn poll(&self) {
        let now = now_ns();
        // Again while a SYN set aside can be taken now (a handshake failed
        // during the poll and its socket listens again).
        self.feed(&mut self.core.borrow_mut(), now, 4);
        if self.reap(now) && tcp::short(&self.listeners.borrow()) {
            // Room under the cap again: the listeners short of listening
            // sockets get them now, and a SYN waiting for one is handed
            // over.
            self.feed(&mut self.core.borrow_mut(), now, 1);
        }
        self.wake_ready();
        self.rearm(now);
    }

    /// Tops up the listeners short of listening sockets and feeds smoltcp,
    /// up to `rounds` times while a SYN set aside can be taken.
    fn feed(&self, core: &mut Core, now: u64, rounds: usize) {
        let listeners = self.listeners.borrow();
        let mut touched = self.touched.borrow_mut();
        let mut failed = 0;
        for round in 0..rounds {
            failed += tcp::tend(core, &listeners);
            if round > 0 && !core.phy.admissible() {
                break;
            }
            core.phy.expire_held(now);
            core.iface.poll_maintenance(instant(now));
            let from = touched.len();
            let arp = core.ingress(now, &mut touched);
            // Connections that completed their handshake in this pass get
            // their own sets before anything is sent.
            failed += tcp::tend(core, &listeners);
            {
                let Core {
                    iface,
                    sockets,
                    phy,
                    ..
                } = core;
                while iface.poll_egress(instant(now), phy, sockets)
                    == PollResult::SocketStateChanged
                {}
            }
            // DHCP leases and SLAAC addresses reach the interface and
            // the configuration (the one hook of autoconf in the poll).
            autoconf::update(self, core);
            // The connections that got segments, those whose timers are
            // due, and after an ARP frame all (one of them may have been
            // waiting for that neighbour: rare).
            core.tcp.take_due(now, &mut touched);
            if arp {
                touched.extend(core.tcp.owned());
            }
            let mut sent: Vec<Sock> = touched[from..].to_vec();
            sent.sort_unstable();
            sent.dedup();
            for h in sent {
                core.egress_own(h, now);
            }
        }
        let Core { iface, sockets, .. } = core;
        self.shared_due
            .set(iface.poll_at(instant(now), sockets).map(ns_of));
        if failed > 0 {
            self.handshakes_failed
                .set(self.handshakes_failed.get() + failed);
        }
    }

    /// Sends what TCP socket `h` has to send after its task used it (a
    /// write, a read that opened the window, a close), and wakes the tasks
    /// waiting on it if that changed its state. For a connection in a set
    /// of its own this touches nothing else; a socket in the shared set
    /// takes a whole poll.
    pub(crate) fn kick(&self, h: Sock) {
        let now = now_ns();
        let mut core = self.core.borrow_mut();
        if !core.egress_own(h, now) {
            drop(core);
            self.poll();
            return;
        }
        drop(core);
        self.touched.borrow_mut().push(h);
        self.wake_ready();
        self.rearm(now);
    }

    /// Removes the closed sockets; whether it removed any.
    fn reap(&self, now: u64) -> bool {
        let mut closing = self.closing.borrow_mut();
        if closing.is_empty() {
            return false;
        }
        let mut removed = false;
        let mut core = self.core.borrow_mut();
        let mut ports = self.ports.borrow_mut();
        closing.retain(|&(h, deadline, port)| {
            let s = core.tcp(h);
            match s.state() {
                stcp::State::Closed | stcp::State::TimeWait => {
                    if let Some(p) = port {
                        ports.remove(&(Proto::Tcp, p));
                    }
                    core.remove_tcp(h);
                    removed = true;
                    false
                }
                _ => {
                    if now >= deadline {
                        // Aborted: the reset leaves at the next poll, then
                        // the socket is Closed and removed.
                        s.abort();
                        if core.tcp.own_set(h).is_some() {
                            core.tcp.set_due(h, Some(now));
                        } else {
                            self.shared_due.set(Some(now));
                        }
                    }
                    true
                }
            }
        });
        removed
    }

    /// Wakes the tasks whose sockets are ready: those waiting on the
    /// connections touched since the last time, and the shared set's.
    fn wake_ready(&self) {
        let mut touched = self.touched.borrow_mut();
        let waiters = self.waiters.borrow();
        let core = self.core.borrow();
        for w in &waiters.shared {
            if ready(&core, &w.cond) {
                w.queue.notify_all();
            }
        }
        if !waiters.by_sock.is_empty() {
            for h in touched.iter() {
                for w in waiters.by_sock.get(h).into_iter().flatten() {
                    if ready(&core, &w.cond) {
                        w.queue.notify_all();
                    }
                }
            }
        }
        touched.clear();
    }

    fn next_deadline(&self) -> Option<u64> {
        let t = self.core.borrow_mut().tcp.next_due();
        let c = self.closing.borrow().iter().map(|&(_, d, _)| d).min();
        [t, c, self.shared_due.get()].into_iter().flatten().min()
    }

    /// Moves the daemon's timer earlier when smoltcp now wants to be
    /// polled before the daemon planned to wake.
    fn rearm(&self, now: u64) {
        let Some((id, planned)) = self.daemon.get() else {
            return;
        };
        let Some(d) = self.next_deadline() else {
            return;
        };
        if d < planned {
            let d = d.max(now);
            // The timer stays armed until it fires or the daemon's own
            // timer guard withdraws the syscall as the daemon wakes.
            core::mem::forget(Timer::new(d, id));
            self.daemon.set(Some((id, d)));
        }
    }

    /// Suspends the current task until `attempt` gives a value; it is tried
    /// first, then after each wake-up by a poll that found `cond` ready.
    pub(crate) fn block_on<R>(
        &self,
        cond: Cond,
        queue: &Rc<WaitQueue>,
        attempt: impl FnMut(&mut Core) -> Option<io::Result<R>>,
    ) -> io::Result<R> {
        self.block_on_until(cond, queue, None, attempt)
    }

    /// As [`block_on`](Inner::block_on), but gives up at `deadline`
    /// (monotonic ns) with `TimedOut` if `attempt` has given nothing by
    /// then (it is tried once more at the deadline).
    pub(crate) fn block_on_until<R>(
        &self,
        cond: Cond,
        queue: &Rc<WaitQueue>,
        deadline: Option<u64>,
        mut attempt: impl FnMut(&mut Core) -> Option<io::Result<R>>,
    ) -> io::Result<R> {
        let mut timed_out = false;
        loop {
            if let Some(r) = attempt(&mut self.core.borrow_mut()) {
                return r;
            }
            if timed_out {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            if fiber::cannot_wait() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the task is being cancelled",
                ));
            }
            let token = self.next_token.get();
            self.next_token.set(token + 1);
            let waiter = Waiter {
                token,
                cond: cond.clone(),
                queue: queue.clone(),
            };
            // A connection in a set of its own is looked at only when
            // touched (it never moves back to the shared set).
            let key = match cond {
                Cond::TcpRecv(h) | Cond::TcpSend(h)
                    if self.core.borrow_mut().tcp.own_set(h).is_some() =>
                {
                    Some(h)
                }
                _ => None,
            };
            {
                let mut ws = self.waiters.borrow_mut();
                match key {
                    Some(h) => ws.by_sock.entry(h).or_default().push(waiter),
                    None => ws.shared.push(waiter),
                }
            }
            struct Unregister<'a>(&'a Inner, u64, Option<Sock>);
            impl Drop for Unregister<'_> {
                fn drop(&mut self) {
                    let mut ws = self.0.waiters.borrow_mut();
                    let list = match self.2 {
                        Some(h) => match ws.by_sock.get_mut(&h) {
                            Some(l) => l,
                            None => return,
                        },
                        None => &mut ws.shared,
                    };
                    if let Some(i) = list.iter().position(|w| w.token == self.1) {
                        list.swap_remove(i);
                    }
                    if let Some(h) = self.2 {
                        if ws.by_sock.get(&h).is_some_and(|l| l.is_empty()) {
                            ws.by_sock.remove(&h);
                        }
                    }
                }
            }
            let _unregister = Unregister(self, token, key);
            match deadline {
                None => queue.wait(),
                Some(d) => {
                    let now = now_ns();
                    timed_out =
                        now >= d || queue.wait_for(core::time::Duration::from_nanos(d - now));
                }
            }
        }
    }

    /// The deadline `timeout` from now (monotonic ns), if any.
    pub(crate) fn deadline(timeout: Option<core::time::Duration>) -> Option<u64> {
        timeout.map(|t| now_ns().saturating_add(t.as_nanos().min(u64::MAX as u128) as u64))
    }

    /// A free local port for an outgoing connection or an unbound socket.
    fn ephemeral_port(&self, proto: Proto) -> io::Result<u16> {
        let ports = self.ports.borrow();
        for _ in 0..16384 {
            let p = self.next_port.get();
            self.next_port
                .set(if p == u16::MAX { 49152 } else { p + 1 });
            if !ports.contains(&(proto, p)) {
                return Ok(p);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("no free local {proto} port (49152-65535 all in use)"),
        ))
    }

    /// Takes `port` (0: a free ephemeral one) for `proto`; `AddrInUse` if
    /// it is taken.
    pub(crate) fn claim_port(&self, proto: Proto, port: u16) -> io::Result<u16> {
        let port = if port == 0 {
            self.ephemeral_port(proto)?
        } else {
            port
        };
        if !self.ports.borrow_mut().insert((proto, port)) {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{proto} port {port} is already in use"),
            ));
        }
        Ok(port)
    }

    /// Gives `port` back.
    pub(crate) fn free_port(&self, proto: Proto, port: u16) {
        self.ports.borrow_mut().remove(&(proto, port));
    }

    /// Takes a dropped TCP socket: closes it gracefully and removes it
    /// once closed (or aborts it after a while).
    pub(crate) fn release_tcp(&self, h: Sock, port: Option<u16>) {
        {
            let mut core = self.core.borrow_mut();
            let s = core.tcp(h);
            match s.state() {
                stcp::State::Listen | stcp::State::SynSent | stcp::State::SynReceived => s.abort(),
                // Unread data: a reset, as BSD sockets do.
                _ if s.recv_queue() > 0 => s.abort(),
                _ => s.close(),
            }
            nudge_fin(&mut core, h);
        }
        self.closing
            .borrow_mut()
            .push((h, now_ns() + LINGER_NS, port));
        self.kick(h);
        // A socket closed already (reset, timed out) leaves at once, and
        // gives its port back.
        if self.reap(now_ns()) && tcp::short(&self.listeners.borrow()) {
            self.poll();
        }
    }

    pub(crate) fn release_udp(&self, h: SocketHandle) {
        let mut core = self.core.borrow_mut();
        let s = core.sockets.get_mut::<sudp::Socket>(h);
        let port = s.endpoint().port;
        s.close();
        core.sockets.remove(h);
        drop(core);
        self.free_port(Proto::Udp, port);
    }
}

/// A transport protocol, for port bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        })
    }
}

/// Works around a smoltcp 0.14 stall seen on lossy links: a socket whose
/// FIN was lost can end up with no retransmission timer (`poll_at` says
/// "ingress only"), so the FIN is never sent again. Keep-alive probes make
/// the peer answer with duplicate ACKs, which trigger smoltcp's fast
/// retransmit, which resends the FIN.
fn nudge_fin(core: &mut Core, h: Sock) {
    core.tcp(h)
        .set_keep_alive(Some(smoltcp::time::Duration::from_millis(500)));
}

fn handshaking(s: stcp::State) -> bool {
    matches!(
        s,
        stcp::State::Listen | stcp::State::SynSent | stcp::State::SynReceived
    )
}

fn ready(core: &Core, cond: &Cond) -> bool {
    match cond {
        Cond::TcpRecv(h) => {
            let s = core.tcp_ref(*h);
            !handshaking(s.state()) && (s.can_recv() || !s.may_recv())
        }
        Cond::TcpSend(h) => {
            let s = core.tcp_ref(*h);
            !handshaking(s.state()) && (s.can_send() || !s.may_send())
        }
        Cond::Accept(hs) => hs.borrow().iter().any(|h| {
            !matches!(
                core.tcp_ref(*h).state(),
                stcp::State::Listen | stcp::State::SynReceived
            )
        }),
        Cond::UdpRecv(h) => core.sockets.get::<sudp::Socket>(*h).can_recv(),
        Cond::UdpSend(h) => core.sockets.get::<sudp::Socket>(*h).can_send(),
    }
}

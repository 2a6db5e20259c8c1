//! Addresses that come from the network: DHCPv4 (`--ipv4=dhcp`, smoltcp's
//! DHCP client socket) and IPv6 SLAAC (`--ipv6=auto`, smoltcp's router
//! solicitation and advertisement handling), plus the IPv6 flags.
//!
//! smoltcp does the protocols; this module takes their results to the
//! interface and to the stack's [`StackConfig`] after every poll
//! ([`update`]), and wakes the tasks in [`Stack::wait_configured`].
//!
//! What an address change does to sockets: listeners and unbound UDP
//! sockets are bound to a port, not an address, so they take connections
//! and datagrams on the new address at once. A TCP connection from or to
//! the old address cannot survive (its peer knows only that address): it
//! is reset when the address goes (a new lease with another address, or
//! the lease lost), and its next call returns an error
//! (`ConnectionReset`, or `Ok(0)` from a read, as for a peer's reset).
//! The same lease renewed changes nothing.

use super::{ConfigError, ConfigErrorKind, Core, Inner, Nameservers, Stack, StackConfig};
use crate::fiber::{self, WaitQueue};
use core::cell::Cell;
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{Socket, dhcpv4};
use smoltcp::wire::{IpAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// How long [`mkernel::stack`](crate::stack()) waits for a DHCP lease (with
/// `--ipv4=dhcp`) and a SLAAC address (with `--ipv6=auto`) before the run
/// fails: 30 s, in which smoltcp's DHCP client sends its DISCOVER 3 times
/// (every 10 s) and SLAAC its 3 router solicitations (every 4 s).
pub const DHCP_TIMEOUT: Duration = Duration::from_secs(30);

/// The stack's DHCP and SLAAC state.
pub(crate) struct Autoconf {
    /// The DHCP client socket, in the stack's shared socket set.
    dhcp: Option<SocketHandle>,
    slaac: bool,
    /// `--nameserver` was given: those win over the DHCP server's.
    own_nameservers: bool,
    /// The static IPv6 address, which SLAAC does not replace.
    static_ipv6: Option<Ipv6Cidr>,
    /// Tasks in [`Stack::wait_configured`].
    queue: WaitQueue,
    /// Leases obtained (a renewal that changes nothing is not counted).
    leases: Cell<u64>,
}

impl Autoconf {
    /// Whether every address the configuration waits for is there.
    fn configured(&self, cfg: &StackConfig) -> bool {
        (self.dhcp.is_none() || !cfg.ipv4.address().is_unspecified())
            && (!self.slaac || cfg.ipv6 != self.static_ipv6)
    }
}

/// The link-local address of a MAC (RFC 4291's modified EUI-64).
fn link_local(mac: [u8; 6]) -> Ipv6Cidr {
    let a = Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]);
    Ipv6Cidr::new(a, 64)
}

/// Gives the interface its IPv6 addresses and route, and the socket set
/// a DHCP client, as `config` asks.
pub(super) fn setup(
    config: &StackConfig,
    mac: [u8; 6],
    iface: &mut Interface,
    sockets: &mut SocketSet<'static>,
) -> Autoconf {
    if config.ipv6.is_some() || config.slaac {
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::Ipv6(link_local(mac)));
            if let Some(a) = config.ipv6 {
                let _ = addrs.push(IpCidr::Ipv6(a));
            }
        });
        if let Some(gw) = config.ipv6_gateway {
            let _ = iface.routes_mut().add_default_ipv6_route(gw);
        }
    }
    let dhcp = config.dhcp.then(|| sockets.add(dhcpv4::Socket::new()));
    Autoconf {
        dhcp,
        slaac: config.slaac,
        own_nameservers: !config.nameservers.is_empty(),
        static_ipv6: config.ipv6,
        queue: WaitQueue::new(),
        leases: Cell::new(0),
    }
}

/// After each poll of the interface: applies a DHCP lease (or its loss)
/// and a SLAAC address (or its expiry) to the interface and the
/// configuration, and wakes [`Stack::wait_configured`].
pub(super) fn update(inner: &Inner, core: &mut Core) {
    let ac = &inner.autoconf;
    if ac.dhcp.is_none() && !ac.slaac {
        return;
    }
    let mut cfg = inner.config.get();
    let before = cfg;
    if let Some(h) = ac.dhcp {
        let event = match core.sockets.get_mut::<dhcpv4::Socket>(h).poll() {
            None => None,
            Some(dhcpv4::Event::Deconfigured) => Some(None),
            Some(dhcpv4::Event::Configured(c)) => Some(Some((c.address, c.router, {
                let mut ns = Nameservers::default();
                for &a in &c.dns_servers {
                    let _ = ns.push(IpAddr::V4(a));
                }
                ns
            }))),
        };
        match event {
            None => {}
            Some(lease) => {
                let old = cfg.ipv4.address();
                let (addr, router, ns) = lease.unwrap_or((
                    Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0),
                    None,
                    Nameservers::default(),
                ));
                if addr.address() != old && !old.is_unspecified() {
                    reset_connections(core, IpAddress::Ipv4(old));
                }
                core.iface.update_ip_addrs(|addrs| {
                    addrs.retain(|a| !matches!(a, IpCidr::Ipv4(_)));
                    if !addr.address().is_unspecified() {
                        let _ = addrs.push(IpCidr::Ipv4(addr));
                    }
                });
                let routes = core.iface.routes_mut();
                routes.remove_default_ipv4_route();
                if let Some(r) = router {
                    let _ = routes.add_default_ipv4_route(r);
                }
                core.phy.set_addrs(core.iface.ip_addrs());
                cfg.ipv4 = addr;
                cfg.gateway = router;
                if !ac.own_nameservers {
                    cfg.nameservers = ns;
                }
                if lease.is_some() {
                    ac.leases.set(ac.leases.get() + 1);
                    log::info!(
                        "mkernel stack: DHCP lease {addr}, gateway {router:?}, name servers {:?}",
                        cfg.nameservers.as_slice()
                    );
                } else {
                    log::info!("mkernel stack: DHCP lease of {old} lost");
                }
            }
        }
    }
    if ac.slaac {
        // smoltcp adds and removes the SLAAC address and route itself.
        let slaac = core.iface.ip_addrs().iter().find_map(|a| match a {
            IpCidr::Ipv6(c)
                if !c.address().is_unicast_link_local() && Some(*c) != ac.static_ipv6 =>
            {
                Some(*c)
            }
            _ => None,
        });
        let new = slaac.or(ac.static_ipv6);
        if new != cfg.ipv6 {
            if let Some(old) = cfg.ipv6.filter(|o| Some(*o) != ac.static_ipv6) {
                reset_connections(core, IpAddress::Ipv6(old.address()));
            }
            cfg.ipv6 = new;
            core.phy.set_addrs(core.iface.ip_addrs());
        }
        cfg.ipv6_gateway =
            core.iface
                .routes()
                .get_default_ipv6_route()
                .and_then(|r| match r.via_router {
                    IpAddress::Ipv6(a) => Some(a),
                    IpAddress::Ipv4(_) => None,
                });
    }
    if cfg != before {
        inner.config.set(cfg);
        ac.queue.notify_all();
    }
}

/// Resets the TCP connections whose local address is `addr`, which the
/// stack no longer has (their peers could not reach them any more).
fn reset_connections(core: &mut Core, addr: IpAddress) {
    for (_, s) in core.sockets.iter_mut() {
        if let Socket::Tcp(t) = s {
            if t.local_endpoint().is_some_and(|e| e.addr == addr) {
                t.abort();
            }
        }
    }
    // The connections in sets of their own: aborted, and due at once so
    // that their resets leave at this poll.
    for h in core.tcp.owned() {
        let t = core.tcp(h);
        if t.local_endpoint().is_some_and(|e| e.addr == addr) {
            t.abort();
            core.tcp.set_due(h, Some(0));
        }
    }
}

impl Stack {
    /// Waits until the addresses that come from the network are there: a
    /// DHCP lease with `--ipv4=dhcp` ([`StackConfig::dhcp`]), a SLAAC
    /// address with `--ipv6=auto` ([`StackConfig::slaac`]); at once
    /// without either. Returns the configuration then
    /// ([`config`](Stack::config)). [`mkernel::stack`](crate::stack())
    /// calls it with [`DHCP_TIMEOUT`] before the main function, so that a
    /// program's first `local_addr` is the leased one.
    ///
    /// The stack goes on with its leases after: it renews them (at the
    /// server's T1, half the lease by default), and a changed or lost
    /// lease changes [`config`](Stack::config) (see
    /// [`StackConfig::dhcp`]: connections on an address that goes are
    /// reset).
    ///
    /// # Errors
    ///
    /// `TimedOut` when `timeout` passed first; `Interrupted` when the task
    /// is being cancelled.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig};
    /// use std::time::Duration;
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     // A static address is there at once.
    ///     let stack = Stack::new(a, StackConfig::default());
    ///     assert_eq!(stack.wait_configured(Duration::from_secs(1)).unwrap(), StackConfig::default());
    /// });
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     // No DHCP server on this link.
    ///     let (cfg, _) = StackConfig::from_args(&["--ipv4=dhcp".to_string()]).unwrap();
    ///     let stack = Stack::new(a, cfg);
    ///     let e = stack.wait_configured(Duration::from_millis(100)).unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    ///     assert!(stack.config().ipv4.address().is_unspecified());
    /// });
    /// ```
    pub fn wait_configured(&self, timeout: Duration) -> io::Result<StackConfig> {
        let ac = &self.inner.autoconf;
        let deadline = Inner::deadline(Some(timeout)).unwrap_or(u64::MAX);
        loop {
            let cfg = self.config();
            if ac.configured(&cfg) {
                return Ok(cfg);
            }
            if fiber::cannot_wait() {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "the task is being cancelled",
                ));
            }
            let now = super::now_ns();
            if now >= deadline {
                let mut missing = Vec::new();
                if ac.dhcp.is_some() && cfg.ipv4.address().is_unspecified() {
                    missing.push("no DHCP lease (--ipv4=dhcp)");
                }
                if ac.slaac && cfg.ipv6 == ac.static_ipv6 {
                    missing.push("no IPv6 router advertisement (--ipv6=auto)");
                }
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} within {timeout:?}", missing.join(" and ")),
                ));
            }
            ac.queue.wait_for(Duration::from_nanos(deadline - now));
        }
    }

    /// How many DHCP leases the stack obtained (the first, and each
    /// renewal or rebinding that changed the configuration); 0 without
    /// `--ipv4=dhcp`.
    ///
    /// ```
    /// use mkernel::net::link;
    /// use mkernel::net::stack::{Stack, StackConfig};
    ///
    /// let (a, _b) = link::pair(link::Faults::default());
    /// mkernel::Builder::new().net_link("a", a).run(mkernel::net("a"), |a| {
    ///     assert_eq!(Stack::new(a, StackConfig::default()).dhcp_leases(), 0);
    /// });
    /// ```
    #[must_use]
    pub fn dhcp_leases(&self) -> u64 {
        self.inner.autoconf.leases.get()
    }
}

/// Parses the value of `--ipv6=ADDR/PREFIX`.
pub(super) fn parse_cidr6(v: &str) -> Result<Ipv6Cidr, ConfigError> {
    let bad = |why: &str| {
        ConfigError::new(
            ConfigErrorKind::Malformed,
            "--ipv6",
            format!("--ipv6={v}: {why}expected ADDR/PREFIX or auto, e.g. --ipv6=fd00::2/64"),
        )
    };
    let (addr, prefix) = v.split_once('/').ok_or_else(|| bad(""))?;
    let addr: Ipv6Addr = addr.parse().map_err(|_| bad(""))?;
    let prefix: u8 = prefix.parse().map_err(|_| bad(""))?;
    if prefix == 0 || prefix > 128 {
        return Err(bad("the prefix is 1-128; "));
    }
    if addr.is_unspecified() || addr.is_loopback() || addr.is_multicast() {
        return Err(bad("not a unicast address; "));
    }
    if addr.to_ipv4_mapped().is_some() {
        return Err(bad("an IPv4-mapped address is IPv4 (--ipv4); "));
    }
    Ok(Ipv6Cidr::new(addr, prefix))
}

/// Parses the value of `--ipv6-gateway=ADDR`.
pub(super) fn parse_gateway6(v: &str) -> Result<Ipv6Addr, ConfigError> {
    v.parse::<Ipv6Addr>()
        .ok()
        .filter(|a| !a.is_unspecified() && !a.is_multicast() && !a.is_loopback())
        .ok_or_else(|| {
            ConfigError::new(
                ConfigErrorKind::Malformed,
                "--ipv6-gateway",
                format!(
                    "--ipv6-gateway={v}: expected a unicast IPv6 address, e.g. --ipv6-gateway=fd00::1"
                ),
            )
        })
}

/// The checks across flags of [`StackConfig::from_args`] for DHCP and
/// IPv6.
pub(super) fn check(cfg: &StackConfig) -> Result<(), ConfigError> {
    if cfg.dhcp && cfg.gateway.is_some() {
        return Err(ConfigError::new(
            ConfigErrorKind::Conflict,
            "--ipv4-gateway",
            "--ipv4-gateway cannot be given with --ipv4=dhcp (the DHCP lease gives the gateway)"
                .into(),
        ));
    }
    if let Some(gw) = cfg.ipv6_gateway {
        if cfg.slaac {
            return Err(ConfigError::new(
                ConfigErrorKind::Conflict,
                "--ipv6-gateway",
                "--ipv6-gateway cannot be given with --ipv6=auto (the router advertisement gives the gateway)"
                    .into(),
            ));
        }
        let Some(net) = cfg.ipv6 else {
            return Err(ConfigError::new(
                ConfigErrorKind::Conflict,
                "--ipv6-gateway",
                format!("--ipv6-gateway={gw} needs an IPv6 address: --ipv6=ADDR/PREFIX"),
            ));
        };
        if !gw.is_unicast_link_local() && !net.contains_addr(&gw) {
            return Err(ConfigError::new(
                ConfigErrorKind::GatewayOutsideNetwork,
                "--ipv6-gateway",
                format!(
                    "--ipv6-gateway={gw} is neither link-local nor in the network of --ipv6={net}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_link_local() {
        let ll = link_local([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(ll.to_string(), "fe80::5054:ff:fe12:3456/64");
    }

    #[test]
    fn flags() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (bad, flag, kind) in [
            ("--ipv6=fd00::1", "--ipv6", ConfigErrorKind::Malformed),
            ("--ipv6=fd00::1/129", "--ipv6", ConfigErrorKind::Malformed),
            ("--ipv6=ff02::1/64", "--ipv6", ConfigErrorKind::Malformed),
            (
                "--ipv6-gateway=10.0.0.1",
                "--ipv6-gateway",
                ConfigErrorKind::Malformed,
            ),
        ] {
            let e = StackConfig::from_args(&args(&[bad])).unwrap_err();
            assert_eq!((e.flag(), e.kind()), (flag, kind), "{bad}");
        }
        let e =
            StackConfig::from_args(&args(&["--ipv4=dhcp", "--ipv4-gateway=10.0.0.1"])).unwrap_err();
        assert_eq!(
            (e.flag(), e.kind()),
            ("--ipv4-gateway", ConfigErrorKind::Conflict)
        );
        let e = StackConfig::from_args(&args(&["--ipv6=fd00::2/64", "--ipv6-gateway=fd01::1"]))
            .unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::GatewayOutsideNetwork);
        let (c, _) =
            StackConfig::from_args(&args(&["--ipv6=fd00::2/64", "--ipv6-gateway=fe80::1"]))
                .unwrap();
        assert_eq!(c.ipv6_gateway, Some("fe80::1".parse().unwrap()));
        let e = StackConfig::from_args(&args(&["--ipv6"])).unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::MissingValue);
    }
}

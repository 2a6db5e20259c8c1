//! The typed list of devices a unikernel is a function of.
//!
//! A program declares its devices as the first argument of
//! [`run`](crate::run); `main` receives their values, in the same shape:
//!
//! ```no_run
//! // ./app --net:service=tap0 --block:disk=disk.img -- ARGS
//! mkernel::run((mkernel::net("service"), mkernel::block("disk")), |((net, cfg), disk)| {
//!     println!("mac {:02x?}, {} bytes of disk", cfg.mac, disk.length());
//!     let _ = net;
//! });
//! ```
//!
//! The list is the single source of the Solo5 manifest:
//! `MKERNEL_MANIFEST=1 ./app` prints the manifest derived from it and exits
//! without running `main`, and `cargo mkernel` builds unikernels with it.
//!
//! Where the devices come from: on Solo5, from the tender
//! (`solo5-spt --net:service=tap0 ...`); in a hosted process, from the same
//! flags on the command line before `--`, or from a mapping given to the
//! [`Builder`](crate::Builder) (`net_link`, `net_tap`, `block_file`), which
//! tests and demos use. A device that is not mapped, a missing file or a TAP
//! that cannot be opened stop `run` before `main` with a message that names
//! the device and the flag to pass.

pub(crate) mod cmdline;
mod error;
pub(crate) mod mapping;

pub use error::{DeviceError, DeviceErrorKind};

use crate::block::Block;
use crate::net::link::LinkEnd;
use crate::net::stack::{Stack, StackConfig};
use crate::net::{Net, NetCfg};
use crate::sys;
use core::fmt;
use mapping::{Acquire, Declared, Kind};

/// The application's own arguments: what follows `--` on a hosted command
/// line (without a program name), the unikernel's command line on Solo5,
/// or what [`Builder::args`](crate::Builder::args) gave. The Solo5
/// bindings' options (`--solo5:quiet`, `--solo5:debug`) at their start are
/// not part of them, on either platform.
///
/// This is the portable way to read a program's arguments.
/// [`std::env::args()`] is not the same on both platforms: hosted it is the
/// whole command line of the process (its name, the device flags, `--`,
/// then the application's arguments), while in a Solo5 unikernel it is the
/// image's name followed by the unikernel's command line (what the tender
/// got after the image, the Solo5 options taken off):
///
/// | command line | `std::env::args()` (after the program name) | `mkernel::args()` |
/// |---|---|---|
/// | `./app --net:service=tap0 -- -v file` | `--net:service=tap0 -- -v file` | `-v file` |
/// | `solo5-spt --net:service=tap0 app.spt -v file` | `-v file` | `-v file` |
///
/// So parse `mkernel::args()` (for instance with clap's
/// `Parser::parse_from`, giving it a program name first) inside the main
/// function of [`run`](crate::run), not `std::env::args()` before it: that
/// one is also run by `cargo mkernel` with `MKERNEL_MANIFEST=1` and no
/// arguments to get the manifest, and a parser that requires a flag stops
/// the program there.
///
/// ```
/// // ./app --net:service=tap0 -- --verbose file    (hosted)
/// // solo5-spt --net:service=tap0 app.spt --verbose file   (Solo5)
/// mkernel::run((), |()| {
///     let args = mkernel::args(); // ["--verbose", "file"] on both
///     let verbose = args.iter().any(|a| a == "--verbose");
///     let _ = verbose;
/// });
/// // With a Builder, the arguments are given:
/// let n = mkernel::Builder::new()
///     .args(["a", "b"])
///     .run((), |()| mkernel::args().len());
/// assert_eq!(n, 2);
/// ```
#[must_use]
pub fn args() -> Vec<String> {
    mapping::app_args().unwrap_or_else(|| cmdline::without_solo5_options(sys::env_app_args()))
}

/// A device argument: the TCP/IP stack on net device `name`, configured
/// from the application's arguments ([`StackConfig::from_args`] on
/// [`args()`]; `10.0.0.2/24` without `--ipv4`). With `--ipv4=dhcp` or
/// `--ipv6=auto`, it waits for the DHCP lease and the SLAAC address
/// ([`Stack::wait_configured`]) up to
/// [`DHCP_TIMEOUT`](crate::net::stack::DHCP_TIMEOUT) before the main
/// function; without them, the run fails as for a bad flag, with the
/// `TimedOut` [`io::Error`](std::io::Error) as the source.
///
/// A malformed flag stops the run before the main function: it is a
/// [`DeviceError`] of kind [`DeviceErrorKind::Map`] whose
/// [`source`](std::error::Error::source) is the
/// [`ConfigError`](crate::net::stack::ConfigError);
/// [`run`](crate::run) prints it on stderr and exits with status 2,
/// [`Builder::try_run`](crate::Builder::try_run) returns it.
///
/// ```no_run
/// mkernel::run(mkernel::stack("service"), |stack| {
///     println!("my address: {}", stack.config().ipv4);
/// });
/// ```
///
/// ```
/// use mkernel::devices::DeviceErrorKind;
/// use mkernel::net::{link, stack::ConfigError};
/// use std::error::Error;
/// let (a, _b) = link::pair(link::Faults::default());
/// let e = mkernel::Builder::new()
///     .net_link("service", a)
///     .args(["--ipv4=10.0.0.300/24"])
///     .try_run(mkernel::stack("service"), |_stack| ())
///     .unwrap_err();
/// assert_eq!(e.kind(), DeviceErrorKind::Map);
/// let cfg = e.source().unwrap().downcast_ref::<ConfigError>().unwrap();
/// assert_eq!(cfg.flag(), "--ipv4");
/// ```
#[must_use]
pub fn stack(name: &str) -> impl Devices<Output = Stack> {
    try_map(
        net(name),
        |dev| -> Result<Stack, Box<dyn std::error::Error + Send + Sync>> {
            let (cfg, _) = StackConfig::from_args(&args())?;
            let stack = Stack::new(dev, cfg);
            // With --ipv4=dhcp or --ipv6=auto, main starts with its
            // addresses (a server prints the address it listens on).
            stack.wait_configured(crate::net::stack::DHCP_TIMEOUT)?;
            Ok(stack)
        },
    )
}

/// A list of device arguments (a device, a tuple of them, or `()`), whose
/// value is handed to the main function of [`run`](crate::run).
pub trait Devices {
    /// What the main function receives.
    type Output: 'static;
    /// Adds this list's devices to the manifest.
    #[doc(hidden)]
    fn declare(&self, manifest: &mut Vec<Declared>);
    /// Opens the devices (inside the run, before the main function).
    #[doc(hidden)]
    fn acquire(self, ctx: &mut Acquire) -> Result<Self::Output, DeviceError>;
}

impl Devices for () {
    type Output = ();
    fn declare(&self, _: &mut Vec<Declared>) {}
    fn acquire(self, _: &mut Acquire) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// The argument of [`net`].
#[derive(Debug)]
pub struct NetArg(String);
/// The argument of [`link`].
#[derive(Debug)]
pub struct LinkArg(String, LinkEnd);
/// The argument of [`block`].
#[derive(Debug)]
pub struct BlockArg(String);
/// The argument of [`map`].
pub struct MapArg<D, F>(D, F);
/// The argument of [`try_map`].
pub struct TryMapArg<D, F>(D, F);
/// The argument of [`constant`].
#[derive(Debug)]
pub struct ConstArg<T>(T);

impl<D: fmt::Debug, F> fmt::Debug for MapArg<D, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MapArg")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

impl<D: fmt::Debug, F> fmt::Debug for TryMapArg<D, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TryMapArg")
            .field(&self.0)
            .finish_non_exhaustive()
    }
}

/// A net device named `name` in the manifest: `main` gets `(Net, NetCfg)`.
///
/// ```
/// use mkernel::net::link;
/// let (a, _b) = link::pair(link::Faults::default());
/// let mtu = mkernel::Builder::new().net_link("service", a)
///     .run(mkernel::net("service"), |(_net, cfg)| cfg.mtu);
/// assert_eq!(mtu, 1500);
/// ```
#[must_use]
pub fn net(name: &str) -> impl Devices<Output = (Net, NetCfg)> {
    NetArg(name.to_string())
}

/// A net device on one end of an in-memory link
/// ([`net::link::pair`](crate::net::link::pair)) that the program makes
/// itself: `main` gets `(Net, NetCfg)`, as from [`net`]. Unlike [`net`],
/// it is not in the manifest (no tender attaches it, and no command-line
/// flag or [`Builder`](crate::Builder) mapping names it), so a program
/// whose own parts talk over a link runs unchanged hosted and as a Solo5
/// unikernel, next to the devices it does declare. `name` names the device
/// in its errors and [`Net::name`]; `Builder::net_pcap(name, ..)` captures
/// its frames as for a mapped device.
///
/// ```
/// use mkernel::net::link;
/// let (a, b) = link::pair(link::Faults::default());
/// let got = mkernel::run((mkernel::link("a", a), mkernel::link("b", b)), |((a, _), (b, _))| {
///     a.write(&[0xff; 60]).unwrap();
///     let mut buf = [0u8; 1514];
///     b.read(&mut buf).unwrap()
/// });
/// assert_eq!(got, 60);
/// ```
#[must_use]
pub fn link(name: &str, end: LinkEnd) -> impl Devices<Output = (Net, NetCfg)> {
    LinkArg(name.to_string(), end)
}

/// A block device named `name` in the manifest: `main` gets a [`Block`].
///
/// ```
/// let path = std::env::temp_dir().join(format!("mk-doc-block-{}", std::process::id()));
/// std::fs::write(&path, vec![7u8; 4096]).unwrap();
/// let len = mkernel::Builder::new().block_file("disk", &path)
///     .run(mkernel::block("disk"), |disk| disk.length());
/// assert_eq!(len, 4096);
/// # std::fs::remove_file(path).unwrap();
/// ```
#[must_use]
pub fn block(name: &str) -> impl Devices<Output = Block> {
    BlockArg(name.to_string())
}

/// A value built from other devices (e.g. a TCP/IP stack from a net device).
///
/// `f` runs inside the run, in the main task before `main` (as in mkernel):
/// it may sleep, do deferred block I/O and spawn tasks — hand their
/// promises to `main`, which must join or cancel them (rule 1). It may
/// borrow from the caller of `run`.
///
/// ```
/// use mkernel::net::link;
/// let (a, _b) = link::pair(link::Faults::default());
/// let mac = mkernel::Builder::new().net_link("service", a)
///     .run(mkernel::map(mkernel::net("service"), |(_net, cfg)| cfg.mac), |mac| mac);
/// assert_eq!(mac[0] & 1, 0); // unicast
/// ```
pub fn map<D: Devices, T: 'static>(
    devices: D,
    f: impl FnOnce(D::Output) -> T,
) -> impl Devices<Output = T> {
    MapArg(devices, f)
}

/// A value built from other devices by a function that may fail (e.g. on
/// a malformed command-line flag, as [`stack()`] does).
///
/// `f` runs inside the run, before the main function, like [`map`]'s. Its
/// error stops the run before the main function: it becomes a
/// [`DeviceError`] of kind [`DeviceErrorKind::Map`] with the error as its
/// [`source`](std::error::Error::source) (and its message as the
/// `DeviceError`'s); [`run`](crate::run) prints it on stderr and exits with
/// status 2, [`Builder::try_run`](crate::Builder::try_run) returns it.
///
/// ```
/// use mkernel::devices::DeviceErrorKind;
/// use mkernel::net::link;
/// let (a, _b) = link::pair(link::Faults::default());
/// let e = mkernel::Builder::new()
///     .net_link("service", a)
///     .try_run(
///         mkernel::try_map(mkernel::net("service"), |(_net, cfg)| {
///             if cfg.mtu < 9000 {
///                 return Err(format!("this service needs jumbo frames, the MTU is {}", cfg.mtu));
///             }
///             Ok(cfg.mtu)
///         }),
///         |mtu| mtu,
///     )
///     .unwrap_err();
/// assert_eq!(e.kind(), DeviceErrorKind::Map);
/// assert_eq!(e.to_string(), "this service needs jumbo frames, the MTU is 1500");
/// ```
pub fn try_map<D, T, E>(
    devices: D,
    f: impl FnOnce(D::Output) -> Result<T, E>,
) -> impl Devices<Output = T>
where
    D: Devices,
    T: 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    TryMapArg(devices, f)
}

/// A plain value, as a device argument.
///
/// ```
/// assert_eq!(mkernel::run(mkernel::constant(7), |v| v * 6), 42);
/// ```
pub fn constant<T: 'static>(value: T) -> impl Devices<Output = T> {
    ConstArg(value)
}

impl Devices for NetArg {
    type Output = (Net, NetCfg);
    fn declare(&self, m: &mut Vec<Declared>) {
        m.push(Declared {
            name: self.0.clone(),
            kind: Kind::Net,
        });
    }
    fn acquire(self, ctx: &mut Acquire) -> Result<(Net, NetCfg), DeviceError> {
        ctx.net(&self.0)
    }
}

impl Devices for LinkArg {
    type Output = (Net, NetCfg);
    // Not in the manifest: the link is inside the program.
    fn declare(&self, _: &mut Vec<Declared>) {}
    fn acquire(self, ctx: &mut Acquire) -> Result<(Net, NetCfg), DeviceError> {
        ctx.link(&self.0, self.1)
    }
}

impl Devices for BlockArg {
    type Output = Block;
    fn declare(&self, m: &mut Vec<Declared>) {
        m.push(Declared {
            name: self.0.clone(),
            kind: Kind::Block,
        });
    }
    fn acquire(self, ctx: &mut Acquire) -> Result<Block, DeviceError> {
        ctx.block(&self.0)
    }
}

impl<D: Devices, T: 'static, F: FnOnce(D::Output) -> T> Devices for MapArg<D, F> {
    type Output = T;
    fn declare(&self, m: &mut Vec<Declared>) {
        self.0.declare(m)
    }
    fn acquire(self, ctx: &mut Acquire) -> Result<T, DeviceError> {
        let v = self.0.acquire(ctx)?;
        Ok((self.1)(v))
    }
}

impl<D, T, E, F> Devices for TryMapArg<D, F>
where
    D: Devices,
    T: 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: FnOnce(D::Output) -> Result<T, E>,
{
    type Output = T;
    fn declare(&self, m: &mut Vec<Declared>) {
        self.0.declare(m)
    }
    fn acquire(self, ctx: &mut Acquire) -> Result<T, DeviceError> {
        let v = self.0.acquire(ctx)?;
        (self.1)(v).map_err(|e| {
            let e = e.into();
            DeviceError::with_source(DeviceErrorKind::Map, e.to_string(), e)
        })
    }
}

impl<T: 'static> Devices for ConstArg<T> {
    type Output = T;
    fn declare(&self, _: &mut Vec<Declared>) {}
    fn acquire(self, _: &mut Acquire) -> Result<T, DeviceError> {
        Ok(self.0)
    }
}

macro_rules! tuple_devices {
    ($($d:ident $v:ident),+) => {
        impl<$($d: Devices),+> Devices for ($($d,)+) {
            type Output = ($($d::Output,)+);
            fn declare(&self, m: &mut Vec<Declared>) {
                let ($($v,)+) = self;
                $($v.declare(m);)+
            }
            fn acquire(self, ctx: &mut Acquire) -> Result<Self::Output, DeviceError> {
                let ($($v,)+) = self;
                Ok(($($v.acquire(ctx)?,)+))
            }
        }
    };
}
tuple_devices!(A a);
tuple_devices!(A a, B b);
tuple_devices!(A a, B b, C c);
tuple_devices!(A a, B b, C c, D d);
tuple_devices!(A a, B b, C c, D d, E e);
tuple_devices!(A a, B b, C c, D d, E e, F f);
tuple_devices!(A a, B b, C c, D d, E e, F f, G g);
tuple_devices!(A a, B b, C c, D d, E e, F f, G g, H h);

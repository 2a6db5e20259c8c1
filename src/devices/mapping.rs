//! Where device arguments find their devices: the command line (in the
//! Solo5 tenders' syntax), a mapping given to the `Builder`, or the Solo5
//! tender.

use super::cmdline::{self, CmdLine};
use super::error::{DeviceError, DeviceErrorKind};
use crate::block::{self, Block};
use crate::net::link::LinkEnd;
use crate::net::{self, Net, NetBackend, NetCfg};
use crate::sys;
use core::cell::RefCell;
use std::path::PathBuf;

/// A device named in the program's device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Net,
    Block,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Block => "block",
        }
    }
}

/// The Solo5 manifest (JSON, as `solo5-elftool gen-manifest` reads it) of a
/// device list.
pub(crate) fn manifest_json(declared: &[Declared]) -> String {
    let devs: Vec<String> = declared
        .iter()
        .map(|d| {
            let ty = match d.kind {
                Kind::Net => "NET_BASIC",
                Kind::Block => "BLOCK_BASIC",
            };
            format!("{{\"name\":\"{}\",\"type\":\"{ty}\"}}", d.name)
        })
        .collect();
    format!(
        "{{\"type\":\"solo5.manifest\",\"version\":1,\"devices\":[{}]}}",
        devs.join(",")
    )
}

/// Checks the declared list itself: valid, unique names.
pub(crate) fn check_declared(declared: &[Declared]) -> Result<(), DeviceError> {
    for (i, d) in declared.iter().enumerate() {
        let ok = !d.name.is_empty()
            && d.name.len() <= cmdline::NAME_MAX
            && d.name.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(DeviceError::new(
                DeviceErrorKind::InvalidList,
                format!(
                    "mkernel: the {} device name {:?} is not valid: use 1 to {} ASCII letters or digits (as the Solo5 manifest)",
                    d.kind.word(),
                    d.name,
                    cmdline::NAME_MAX
                ),
            ));
        }
        if declared[..i].iter().any(|e| e.name == d.name) {
            return Err(DeviceError::new(
                DeviceErrorKind::InvalidList,
                format!(
                    "mkernel: the device name {:?} is declared twice in the device list; each device needs its own name",
                    d.name
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Debug)]
pub(crate) enum GivenNet {
    Link(LinkEnd),
    Tap(String),
}

/// A mapping given to the `Builder` (tests, demos).
#[derive(Debug, Default)]
pub(crate) struct Given {
    pub(crate) nets: Vec<(String, GivenNet)>,
    pub(crate) blocks: Vec<(String, PathBuf)>,
    pub(crate) sector_sizes: Vec<(String, usize)>,
    pub(crate) pcaps: Vec<(String, PathBuf)>,
    pub(crate) args: Option<Vec<String>>,
    /// `Builder::net_offload`: whether TAPs may offload (`None`: the
    /// command line's `--net-offload`, else yes).
    pub(crate) offload: Option<bool>,
}

impl Given {
    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.blocks.is_empty() && self.sector_sizes.is_empty()
    }
}

#[derive(Debug)]
enum Source {
    None,
    CmdLine(CmdLine),
    Given(Given),
    /// A Solo5 tender attached the devices.
    Tender,
}

/// Opens device arguments for one run.
#[derive(Debug)]
pub struct Acquire {
    source: Source,
    /// Whether TAPs are opened with offloads allowed.
    offload: bool,
}

thread_local! {
    static APP_ARGS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// The application's arguments fixed by the current run, if any.
pub(crate) fn app_args() -> Option<Vec<String>> {
    APP_ARGS.with(|a| a.borrow().clone())
}

/// Clears the run's arguments when the run ends.
pub(crate) struct ArgsGuard;

impl Drop for ArgsGuard {
    fn drop(&mut self) {
        APP_ARGS.with(|a| *a.borrow_mut() = None);
    }
}

impl Acquire {
    /// Decides where devices come from. `declared` is the program's device
    /// list; without a mapping given to the `Builder`, the hosted command
    /// line is parsed (only its device flags when the list is empty: any
    /// of them maps an undeclared device).
    pub(crate) fn new(
        declared: &[Declared],
        mut given: Given,
    ) -> Result<(Acquire, ArgsGuard), DeviceError> {
        check_declared(declared)?;
        let args = given.args.take();
        let given_offload = given.offload;
        let source = if !given.is_empty() {
            let src = Source::Given(given);
            check_unused(&src, declared)?;
            src
        } else if sys::TENDER_MAPS_DEVICES {
            // The tender checked the command line against the manifest.
            if declared.is_empty() {
                Source::None
            } else {
                Source::Tender
            }
        } else if declared.is_empty() {
            // A program without devices may get other arguments (a test
            // harness's), but a device flag before `--` is checked as the
            // Solo5 tenders check it against the manifest: it maps a
            // device that the program does not declare.
            let argv: Vec<String> = std::env::args()
                .skip(1)
                .take_while(|a| a != "--")
                .filter(|a| cmdline::is_device_flag(a))
                .collect();
            let cl = cmdline::parse(&argv).map_err(|e| {
                DeviceError::new(DeviceErrorKind::CommandLine, format!("mkernel: {e}"))
            })?;
            check_unused(&Source::CmdLine(cl), declared)?;
            Source::None
        } else {
            let argv: Vec<String> = std::env::args().skip(1).collect();
            let cl = cmdline::parse(&argv).map_err(|e| {
                DeviceError::new(DeviceErrorKind::CommandLine, format!("mkernel: {e}"))
            })?;
            let src = Source::CmdLine(cl);
            check_unused(&src, declared)?;
            src
        };
        let args = args.or_else(|| match &source {
            Source::CmdLine(cl) => Some(cl.app_args.clone()),
            _ => None,
        });
        APP_ARGS.with(|a| *a.borrow_mut() = args);
        let offload = given_offload
            .or(match &source {
                Source::CmdLine(cl) => cl.offload,
                _ => None,
            })
            .unwrap_or(true);
        Ok((Acquire { source, offload }, ArgsGuard))
    }

    pub(crate) fn net(&mut self, name: &str) -> Result<(Net, NetCfg), DeviceError> {
        let pcap = self.pcap(name)?;
        let offload = self.offload;
        match &mut self.source {
            Source::None => unreachable!("a declared device implies a source"),
            Source::Given(g) => {
                let Some(i) = g.nets.iter().position(|(n, _)| n == name) else {
                    return Err(DeviceError::new(
                        DeviceErrorKind::NotMapped,
                        format!(
                            "mkernel: the net device {name:?} is not mapped: give it with \
                         Builder::net_link({name:?}, end) or Builder::net_tap({name:?}, \"tap0\")"
                        ),
                    ));
                };
                match g.nets.swap_remove(i).1 {
                    GivenNet::Link(end) => {
                        let cfg = NetCfg {
                            mac: end.mac(),
                            mtu: end.mtu(),
                        };
                        Ok(net::register(name, cfg, NetBackend::Link(end), pcap))
                    }
                    GivenNet::Tap(iface) => open_tap(name, &iface, None, pcap, offload),
                }
            }
            Source::CmdLine(cl) => match cl.net(name) {
                Some(iface) => {
                    let iface = iface.to_string();
                    open_tap(name, &iface, cl.net_mac(name), pcap, offload)
                }
                None => Err(DeviceError::new(
                    DeviceErrorKind::NotMapped,
                    format!(
                        "mkernel: the net device {name:?} is not mapped: pass --net:{name}=TAP \
                     (e.g. --net:{name}=tap0) before --"
                    ),
                )),
            },
            Source::Tender => {
                let dev = sys::NetDev::acquire(name)
                    .map_err(|e| open_error(format!("mkernel: net device {name:?}: {e}"), e))?;
                Ok(register_sys_net(name, dev, pcap))
            }
        }
    }

    /// A net device on an in-memory link end the program made itself
    /// ([`link`](super::link)): the same whatever the source.
    pub(crate) fn link(&mut self, name: &str, end: LinkEnd) -> Result<(Net, NetCfg), DeviceError> {
        let pcap = self.pcap(name)?;
        let cfg = NetCfg {
            mac: end.mac(),
            mtu: end.mtu(),
        };
        Ok(net::register(name, cfg, NetBackend::Link(end), pcap))
    }

    /// The capture file asked for net device `name`, created.
    fn pcap(&self, name: &str) -> Result<Option<net::Pcap>, DeviceError> {
        let path = match &self.source {
            Source::CmdLine(cl) => cl.pcap(name),
            Source::Given(g) => g
                .pcaps
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.as_path()),
            _ => None,
        };
        path.map(|p| {
            net::Pcap::create(p).map_err(|e| {
                open_error(
                    format!(
                        "mkernel: cannot create the capture file {} for net device {name:?}: {e}",
                        p.display()
                    ),
                    e,
                )
            })
        })
        .transpose()
    }

    pub(crate) fn block(&mut self, name: &str) -> Result<Block, DeviceError> {
        match &mut self.source {
            Source::None => unreachable!("a declared device implies a source"),
            Source::Given(g) => {
                let Some((_, path)) = g.blocks.iter().find(|(n, _)| n == name) else {
                    return Err(DeviceError::new(
                        DeviceErrorKind::NotMapped,
                        format!(
                            "mkernel: the block device {name:?} is not mapped: give it with \
                         Builder::block_file({name:?}, \"disk.img\")"
                        ),
                    ));
                };
                let ss = g
                    .sector_sizes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|&(_, s)| s)
                    .unwrap_or(512);
                open_file(name, path.clone(), ss)
            }
            Source::CmdLine(cl) => match cl.block(name) {
                Some(path) => {
                    let path = path.to_path_buf();
                    open_file(name, path, cl.sector_size(name))
                }
                None => Err(DeviceError::new(
                    DeviceErrorKind::NotMapped,
                    format!(
                        "mkernel: the block device {name:?} is not mapped: pass --block:{name}=FILE \
                     (e.g. --block:{name}=disk.img) before --"
                    ),
                )),
            },
            Source::Tender => {
                let dev = sys::BlockDev::acquire(name)
                    .map_err(|e| open_error(format!("mkernel: block device {name:?}: {e}"), e))?;
                Ok(make_block(name, dev))
            }
        }
    }
}

/// A mapping for a device the program does not declare is a mistake (the
/// Solo5 tenders refuse it too).
fn check_unused(src: &Source, declared: &[Declared]) -> Result<(), DeviceError> {
    let mapped: Vec<(&str, Kind)> = match src {
        Source::CmdLine(cl) => cl
            .nets
            .iter()
            .map(|(n, _)| (n.as_str(), Kind::Net))
            .chain(cl.blocks.iter().map(|(n, _)| (n.as_str(), Kind::Block)))
            .collect(),
        Source::Given(g) => g
            .nets
            .iter()
            .map(|(n, _)| (n.as_str(), Kind::Net))
            .chain(g.blocks.iter().map(|(n, _)| (n.as_str(), Kind::Block)))
            .collect(),
        _ => Vec::new(),
    };
    for (name, kind) in mapped {
        if !declared.iter().any(|d| d.name == name && d.kind == kind) {
            let list: Vec<String> = declared
                .iter()
                .map(|d| format!("{} ({})", d.name, d.kind.word()))
                .collect();
            return Err(DeviceError::new(
                DeviceErrorKind::Undeclared,
                format!(
                    "mkernel: a {} device {name:?} is mapped, but the program declares no such device \
                 (it declares: {})",
                    kind.word(),
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn register_sys_net(name: &str, dev: sys::NetDev, pcap: Option<net::Pcap>) -> (Net, NetCfg) {
    let cfg = NetCfg {
        mac: dev.mac(),
        mtu: dev.mtu(),
    };
    net::register(name, cfg, NetBackend::Sys(dev), pcap)
}

fn make_block(name: &str, dev: sys::BlockDev) -> Block {
    block::make(block::BlockDevice {
        name: name.to_string(),
        pagesize: dev.pagesize(),
        length: dev.length(),
        read_only: dev.read_only(),
        backend: dev,
    })
}

fn open_tap(
    name: &str,
    iface: &str,
    mac: Option<[u8; 6]>,
    pcap: Option<net::Pcap>,
    offload: bool,
) -> Result<(Net, NetCfg), DeviceError> {
    let dev = sys::NetDev::open_tap(iface, mac, offload).map_err(|e| {
        open_error(
            format!(
                "mkernel: cannot open TAP interface {iface:?} for net device {name:?}: {e} \
                 (create it first, e.g. `ip tuntap add dev {iface} mode tap && ip link set {iface} up`)"
            ),
            e,
        )
    })?;
    Ok(register_sys_net(name, dev, pcap))
}

fn open_file(name: &str, path: PathBuf, sector_size: usize) -> Result<Block, DeviceError> {
    let dev = sys::BlockDev::open_file(&path, sector_size).map_err(|e| {
        open_error(
            format!(
                "mkernel: cannot open {} for block device {name:?}: {e} (pass an existing file: --block:{name}=FILE)",
                path.display()
            ),
            e,
        )
    })?;
    Ok(make_block(name, dev))
}

/// A failed open: the message (which includes `e`'s) and `e` as the source.
fn open_error(msg: String, e: std::io::Error) -> DeviceError {
    DeviceError::with_source(DeviceErrorKind::Open, msg, e)
}

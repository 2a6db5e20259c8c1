//! The hosted process's command line, in the Solo5 tenders' syntax.
//!
//! One command line fits both the hosted process and a Solo5 tender:
//!
//! ```text
//! ./app       --net:service=tap0 --block:disk=disk.img -- APP ARGS
//! solo5-hvt   --net:service=tap0 --block:disk=disk.img app.hvt APP ARGS
//! ```
//!
//! Everything before `--` must be a device flag:
//!
//! | flag | meaning |
//! |---|---|
//! | `--net:NAME=IFACE` | net device `NAME` is the TAP interface `IFACE` |
//! | `--net-mac:NAME=HWADDR` | net device `NAME` uses the MAC `HWADDR` (`aa:bb:cc:dd:ee:ff`) instead of a random one (as `solo5-hvt`) |
//! | `--pcap:NAME=FILE`, `--pcap=FILE` | every frame net device `NAME` (or the only one) reads or writes is appended to the pcap capture `FILE` (hosted only: `tcpdump -r FILE`, Wireshark) |
//! | `--net-offload=on`, `--net-offload=off` | whether the TAPs may offload TCP segmentation and checksums to the host's kernel (default `on`: one `write` carries up to 64 KiB of a connection, which the kernel cuts into frames); `off`: one frame per `write`, as a Solo5 tender does (hosted only) |
//! | `--block:NAME=PATH` | block device `NAME` is the file (or block special file) `PATH` |
//! | `--block-sector-size:NAME=N` | block device `NAME` has `N`-byte sectors (a power of two, at least 512; default 512) |
//!
//! What follows `--` is the application's own arguments (without a program
//! name). Without `--`, the application gets no arguments. Device names are
//! those of the Solo5 manifest: 1 to 67 ASCII letters or digits.
//!
//! The Solo5 bindings' own options, `--solo5:quiet` and `--solo5:debug`,
//! which a unikernel takes at the start of its command line (after the
//! image: `solo5-spt app.spt --solo5:quiet ARGS`) and never passes on, are
//! accepted and ignored at the start of the application's arguments
//! (`./app -- --solo5:quiet ARGS`), so that one command line fits both.
//!
//! A program that declares no devices gets only its device flags checked
//! (any of them maps a device it does not declare); its other arguments
//! before `--` (a test harness's) are left alone.
//!
//! [`parse`] only checks the syntax and the consistency of the command line
//! itself; whether the program declares the devices it names is checked by
//! the device layer, which knows the device list.

use std::fmt;
use std::path::PathBuf;

/// Longest device name the Solo5 manifest accepts (`MFT_NAME_MAX`).
pub(crate) const NAME_MAX: usize = 67;

/// The smallest (and default) sector size of a block device, as in Solo5.
pub(crate) const MIN_SECTOR_SIZE: usize = 512;

/// The accepted forms, shown in error messages.
const FORMS: &str = "--net:NAME=IFACE, --net-mac:NAME=HWADDR, --pcap:NAME=FILE, --pcap=FILE, \
                     --net-offload=on|off, --block:NAME=PATH, --block-sector-size:NAME=SIZE";

/// A parsed command line: the device mapping and the application's arguments.
///
/// Each list is in command-line order. A device name appears at most once
/// in `nets` and `blocks` together, at most once in `net_macs` (and then also
/// in `nets`), at most once in `sector_sizes` (and then also in `blocks`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CmdLine {
    /// `--net:NAME=IFACE`: (device name, TAP interface name).
    pub nets: Vec<(String, String)>,
    /// `--net-mac:NAME=HWADDR`: (device name, MAC address).
    pub net_macs: Vec<(String, [u8; 6])>,
    /// `--block:NAME=PATH`: (device name, path of the backing file).
    pub blocks: Vec<(String, PathBuf)>,
    /// `--block-sector-size:NAME=N`: (device name, sector size in bytes).
    pub sector_sizes: Vec<(String, usize)>,
    /// `--pcap:NAME=FILE`: (device name, capture file); `--pcap=FILE` is
    /// kept with an empty name (the only net device).
    pub pcaps: Vec<(String, PathBuf)>,
    /// `--net-offload=on|off`, if given.
    pub offload: Option<bool>,
    /// What follows `--`, without a program name.
    pub app_args: Vec<String>,
}

impl CmdLine {
    /// The TAP interface mapped to net device `name`, if any.
    pub(crate) fn net(&self, name: &str) -> Option<&str> {
        lookup(&self.nets, name).map(String::as_str)
    }

    /// The capture file of net device `name` (`--pcap:NAME=FILE`, or
    /// `--pcap=FILE` for the only net device), if any.
    pub(crate) fn pcap(&self, name: &str) -> Option<&std::path::Path> {
        self.pcaps
            .iter()
            .find(|(n, _)| n == name || n.is_empty())
            .map(|(_, p)| p.as_path())
    }

    /// The MAC address given to net device `name` by `--net-mac:`, if any.
    pub(crate) fn net_mac(&self, name: &str) -> Option<[u8; 6]> {
        lookup(&self.net_macs, name).copied()
    }

    /// The file mapped to block device `name`, if any.
    pub(crate) fn block(&self, name: &str) -> Option<&std::path::Path> {
        lookup(&self.blocks, name).map(PathBuf::as_path)
    }

    /// The sector size of block device `name`: the one given by
    /// `--block-sector-size:`, else 512.
    pub(crate) fn sector_size(&self, name: &str) -> usize {
        lookup(&self.sector_sizes, name)
            .copied()
            .unwrap_or(MIN_SECTOR_SIZE)
    }
}

fn lookup<'a, T>(list: &'a [(String, T)], name: &str) -> Option<&'a T> {
    list.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Why a command line was rejected. The [`Display`](fmt::Display) message
/// names the offending argument and says what would be right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CmdLineError {
    /// An argument before `--` that is not a device flag.
    NotADeviceFlag {
        /// The argument as given.
        arg: String,
    },
    /// A device flag whose shape is wrong (empty name, missing `=VALUE`,
    /// bad characters in the name, empty value, bad MAC).
    Malformed {
        /// The argument as given.
        arg: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// `--block-sector-size:NAME=N` with `N` not a power of two ≥ 512.
    BadSectorSize {
        /// The argument as given.
        arg: String,
    },
    /// A device name mapped twice (`--net:`/`--block:` twice, or as both).
    Duplicate {
        /// The device name.
        name: String,
        /// The first argument that maps it.
        first: String,
        /// The second one.
        second: String,
    },
    /// An option (`--net-mac:`, `--block-sector-size:`) for a device that
    /// no `--net:`/`--block:` flag maps.
    Unmapped {
        /// The argument as given.
        arg: String,
        /// The device name.
        name: String,
        /// The flag that would map it: `--net` or `--block`.
        kind: &'static str,
        /// What that flag maps the device to: `IFACE` or `PATH`.
        value: &'static str,
    },
}

impl fmt::Display for CmdLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdLineError::NotADeviceFlag { arg } => write!(
                f,
                "unexpected argument `{arg}` before `--`: only device flags may come \
                 before `--` ({FORMS}); the application's own arguments go after `--`, \
                 e.g. `./app --net:service=tap0 -- {arg}`"
            ),
            CmdLineError::Malformed { arg, reason } => write!(f, "`{arg}`: {reason}"),
            CmdLineError::BadSectorSize { arg } => write!(
                f,
                "`{arg}`: the sector size must be a power of two of at least 512 \
                 (e.g. 512 or 4096)"
            ),
            CmdLineError::Duplicate {
                name,
                first,
                second,
            } => write!(
                f,
                "device `{name}` is mapped twice, by `{first}` and by `{second}`: \
                 map each device once"
            ),
            CmdLineError::Unmapped {
                arg,
                name,
                kind,
                value,
            } => write!(
                f,
                "`{arg}` is for device `{name}`, but no `{kind}:{name}={value}` maps it"
            ),
        }
    }
}

impl std::error::Error for CmdLineError {}

/// The prefixes of the device flags (the forms of [`parse`]).
const DEVICE_FLAGS: [&str; 7] = [
    "--net:",
    "--net-mac:",
    "--net-offload=",
    "--block:",
    "--block-sector-size:",
    "--pcap:",
    "--pcap=",
];

/// Whether `arg` is a device flag (well formed or not): `--net:..`,
/// `--net-mac:..`, `--block:..`, `--block-sector-size:..`.
pub(crate) fn is_device_flag(arg: &str) -> bool {
    DEVICE_FLAGS.iter().any(|p| arg.starts_with(p))
}

/// The options of the Solo5 bindings, which they take off the start of a
/// unikernel's command line (`bindings/cmdline.c`), and mkernel's own
/// (`--mkernel:trace`: see [`trace_option`]), which it takes off in the same
/// place on both platforms.
const SOLO5_OPTIONS: [&str; 3] = ["--solo5:quiet", "--solo5:debug", TRACE_OPTION];

/// The option that prints a trace of the run on the console at its end
/// (`Trace::console`), among the options at the start of the application's
/// arguments.
pub(crate) const TRACE_OPTION: &str = "--mkernel:trace";

/// Whether `args` (the application's, as the platform gives them) start
/// with options that include [`TRACE_OPTION`].
pub(crate) fn trace_option(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| SOLO5_OPTIONS.contains(&a.as_str()))
        .any(|a| a == TRACE_OPTION)
}

/// The application's arguments without the Solo5 bindings' options (and
/// mkernel's) at their start, as a unikernel gets them (the bindings strip
/// theirs there).
pub(crate) fn without_solo5_options(mut args: Vec<String>) -> Vec<String> {
    let n = args
        .iter()
        .take_while(|a| SOLO5_OPTIONS.contains(&a.as_str()))
        .count();
    args.drain(..n);
    args
}

/// Parses the hosted command line `args` (WITHOUT the program name).
///
/// See the [module documentation](self) for the syntax.
pub(crate) fn parse(args: &[String]) -> Result<CmdLine, CmdLineError> {
    let mut cl = CmdLine::default();
    // (name, the argument that mapped it), for duplicate detection.
    let mut mapped: Vec<(String, String)> = Vec::new();
    let mut macs: Vec<(String, String)> = Vec::new();
    let mut sizes: Vec<(String, String)> = Vec::new();
    let mut pcaps: Vec<(String, String)> = Vec::new();
    let mut rest = args.iter();
    for arg in rest.by_ref() {
        if arg == "--" {
            break;
        }
        if let Some(body) = arg.strip_prefix("--net:") {
            let (name, iface) = split(arg, body, "IFACE", "service", "tap0")?;
            remember(&mut mapped, name, arg)?;
            cl.nets.push((name.to_owned(), iface.to_owned()));
        } else if let Some(body) = arg.strip_prefix("--net-mac:") {
            let (name, mac) = split(arg, body, "HWADDR", "service", "02:00:00:00:00:01")?;
            let mac = parse_mac(mac).ok_or_else(|| CmdLineError::Malformed {
                arg: arg.clone(),
                reason: format!(
                    "`{mac}` is not a MAC address; expected six hexadecimal bytes \
                     separated by colons, e.g. --net-mac:{name}=02:00:00:00:00:01"
                ),
            })?;
            if mac[0] & 1 == 1 || mac == [0; 6] {
                return Err(CmdLineError::Malformed {
                    arg: arg.clone(),
                    reason: format!(
                        "`{}` cannot be a device's own address: {}; give a unicast address, \
                         e.g. --net-mac:{name}=02:00:00:00:00:01",
                        mac_text(mac),
                        if mac == [0; 6] {
                            "it is all zeroes"
                        } else {
                            "its first byte is odd, which makes it a multicast (or broadcast) address"
                        }
                    ),
                });
            }
            remember(&mut macs, name, arg)?;
            cl.net_macs.push((name.to_owned(), mac));
        } else if let Some(body) = arg.strip_prefix("--pcap:") {
            let (name, path) = split(arg, body, "FILE", "service", "service.pcap")?;
            remember(&mut pcaps, name, arg)?;
            cl.pcaps.push((name.to_owned(), PathBuf::from(path)));
        } else if let Some(path) = arg.strip_prefix("--pcap=") {
            if path.is_empty() {
                return Err(CmdLineError::Malformed {
                    arg: arg.clone(),
                    reason: "expected --pcap=FILE (or --pcap:NAME=FILE)".to_string(),
                });
            }
            remember(&mut pcaps, "", arg)?;
            cl.pcaps.push((String::new(), PathBuf::from(path)));
        } else if let Some(v) = arg.strip_prefix("--net-offload=") {
            let on = match v {
                "on" => true,
                "off" => false,
                _ => {
                    return Err(CmdLineError::Malformed {
                        arg: arg.clone(),
                        reason: format!("`{v}` is neither `on` nor `off`"),
                    });
                }
            };
            if cl.offload.is_some() {
                return Err(CmdLineError::Malformed {
                    arg: arg.clone(),
                    reason: "--net-offload is given twice".to_string(),
                });
            }
            cl.offload = Some(on);
        } else if let Some(body) = arg.strip_prefix("--block:") {
            let (name, path) = split(arg, body, "PATH", "disk", "disk.img")?;
            remember(&mut mapped, name, arg)?;
            cl.blocks.push((name.to_owned(), PathBuf::from(path)));
        } else if let Some(body) = arg.strip_prefix("--block-sector-size:") {
            let (name, size) = split(arg, body, "SIZE", "disk", "4096")?;
            let size = match size.parse::<usize>() {
                Ok(n) if n >= MIN_SECTOR_SIZE && n.is_power_of_two() => n,
                Ok(_) => return Err(CmdLineError::BadSectorSize { arg: arg.clone() }),
                Err(_) => {
                    return Err(CmdLineError::Malformed {
                        arg: arg.clone(),
                        reason: format!(
                            "`{size}` is not a number; the sector size must be a power \
                             of two of at least 512, e.g. --block-sector-size:{name}=4096"
                        ),
                    });
                }
            };
            remember(&mut sizes, name, arg)?;
            cl.sector_sizes.push((name.to_owned(), size));
        } else if let Some(form) = ["--net-mac", "--net", "--block-sector-size", "--block"]
            .into_iter()
            .find(|f| arg.starts_with(f))
        {
            // `--net=tap0`, `--block disk.img`, `--netx:..`: a device flag
            // written wrongly rather than an application argument.
            let value = match form {
                "--net" => "IFACE",
                "--net-mac" => "HWADDR",
                "--block" => "PATH",
                _ => "SIZE",
            };
            return Err(CmdLineError::Malformed {
                arg: arg.clone(),
                reason: format!("expected {form}:NAME={value} (a colon after {form})"),
            });
        } else {
            return Err(CmdLineError::NotADeviceFlag { arg: arg.clone() });
        }
    }
    cl.app_args = without_solo5_options(rest.cloned().collect());

    // Options for devices must go with a mapping of that device, of the
    // right kind.
    for (name, arg) in &macs {
        if cl.net(name).is_none() {
            return Err(unmapped(arg, name, "--net", "IFACE"));
        }
    }
    for (name, arg) in &sizes {
        if cl.block(name).is_none() {
            return Err(unmapped(arg, name, "--block", "PATH"));
        }
    }
    for (name, arg) in &pcaps {
        if name.is_empty() {
            if cl.nets.len() != 1 || pcaps.len() != 1 {
                return Err(CmdLineError::Malformed {
                    arg: arg.clone(),
                    reason: "--pcap=FILE is for a program with one net device; name the \
                             device with --pcap:NAME=FILE"
                        .to_string(),
                });
            }
        } else if cl.net(name).is_none() {
            return Err(unmapped(arg, name, "--net", "IFACE"));
        }
    }
    Ok(cl)
}

fn unmapped(arg: &str, name: &str, kind: &'static str, value: &'static str) -> CmdLineError {
    CmdLineError::Unmapped {
        arg: arg.to_owned(),
        name: name.to_owned(),
        kind,
        value,
    }
}

/// Splits `NAME=VALUE` (the part of `arg` after the flag's colon), checking
/// that both are present and that the name is a valid Solo5 device name.
fn split<'a>(
    arg: &str,
    body: &'a str,
    what: &str,
    example_name: &str,
    example: &str,
) -> Result<(&'a str, &'a str), CmdLineError> {
    let flag = &arg[..arg.len() - body.len() - 1];
    let malformed = |reason: String| CmdLineError::Malformed {
        arg: arg.to_owned(),
        reason,
    };
    let Some((name, value)) = body.split_once('=') else {
        let name = if body.is_empty() { example_name } else { body };
        return Err(malformed(format!(
            "missing `={what}`; expected {flag}:NAME={what}, e.g. {flag}:{name}={example}"
        )));
    };
    if name.is_empty() {
        return Err(malformed(format!(
            "the device name is empty; expected {flag}:NAME={what}, e.g. {flag}:{example_name}={value}"
        )));
    }
    if name.len() > NAME_MAX || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(malformed(format!(
            "device name `{name}` is not valid: a device name is 1 to {NAME_MAX} ASCII \
             letters or digits (as in the Solo5 manifest)"
        )));
    }
    if value.is_empty() {
        return Err(malformed(format!(
            "{what} is empty; expected {flag}:NAME={what}, e.g. {flag}:{name}={example}"
        )));
    }
    Ok((name, value))
}

/// Records that `name` is used by `arg`, or reports the earlier use.
fn remember(seen: &mut Vec<(String, String)>, name: &str, arg: &str) -> Result<(), CmdLineError> {
    if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
        return Err(CmdLineError::Duplicate {
            name: name.to_owned(),
            first: first.clone(),
            second: arg.to_owned(),
        });
    }
    seen.push((name.to_owned(), arg.to_owned()));
    Ok(())
}

fn mac_text(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parses `aa:bb:cc:dd:ee:ff` (hexadecimal, either case).
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn err(a: &[&str]) -> String {
        parse(&args(a)).unwrap_err().to_string()
    }

    #[test]
    fn empty_command_line() {
        assert_eq!(parse(&[]).unwrap(), CmdLine::default());
        assert_eq!(parse(&args(&["--"])).unwrap(), CmdLine::default());
    }

    #[test]
    fn full_command_line() {
        let cl = parse(&args(&[
            "--net:service=tap0",
            "--block:disk=disk.img",
            "--block-sector-size:disk=4096",
            "--net:admin=tap1",
            "--net-mac:admin=02:AB:cd:00:00:01",
            "--",
            "--verbose",
            "--net:x=y",
            "--",
            "file",
        ]))
        .unwrap();
        assert_eq!(
            cl.nets,
            vec![
                ("service".into(), "tap0".into()),
                ("admin".into(), "tap1".into())
            ]
        );
        assert_eq!(cl.blocks, vec![("disk".into(), PathBuf::from("disk.img"))]);
        assert_eq!(cl.sector_sizes, vec![("disk".into(), 4096)]);
        assert_eq!(
            cl.net_macs,
            vec![("admin".into(), [0x02, 0xab, 0xcd, 0, 0, 1])]
        );
        // After `--`, everything belongs to the application, even `--` and
        // things that look like device flags.
        assert_eq!(cl.app_args, args(&["--verbose", "--net:x=y", "--", "file"]));
        assert_eq!(cl.net("service"), Some("tap0"));
        assert_eq!(cl.net("disk"), None);
        assert_eq!(cl.block("disk"), Some(std::path::Path::new("disk.img")));
        assert_eq!(cl.sector_size("disk"), 4096);
        assert_eq!(cl.sector_size("other"), 512);
        assert_eq!(cl.net_mac("admin"), Some([0x02, 0xab, 0xcd, 0, 0, 1]));
        assert_eq!(cl.net_mac("service"), None);
    }

    #[test]
    fn values_may_contain_equals_and_colons() {
        let cl = parse(&args(&["--block:disk=/tmp/a=b:c.img"])).unwrap();
        assert_eq!(
            cl.block("disk"),
            Some(std::path::Path::new("/tmp/a=b:c.img"))
        );
    }

    #[test]
    fn app_args_without_device_flags() {
        let cl = parse(&args(&["--", "a", "b"])).unwrap();
        assert_eq!(cl.app_args, args(&["a", "b"]));
        assert!(cl.nets.is_empty() && cl.blocks.is_empty());
    }

    #[test]
    fn solo5_options_at_the_start_of_the_app_args_are_ignored() {
        let cl = parse(&args(&[
            "--",
            "--solo5:quiet",
            "--solo5:debug",
            "a",
            "--solo5:quiet",
        ]))
        .unwrap();
        assert_eq!(cl.app_args, args(&["a", "--solo5:quiet"]));
        let cl = parse(&args(&["--block:d=x", "--", "--solo5:quiet"])).unwrap();
        assert!(cl.app_args.is_empty());
        // Before `--` they are not device flags (a tender rejects them there).
        assert!(matches!(
            parse(&args(&["--solo5:quiet"])),
            Err(CmdLineError::NotADeviceFlag { .. })
        ));
    }

    #[test]
    fn device_flags_are_recognised() {
        for a in [
            "--net:x=t",
            "--net-mac:x",
            "--block:",
            "--block-sector-size:d=512",
        ] {
            assert!(is_device_flag(a), "{a}");
        }
        for a in [
            "--net=t",
            "--verbose",
            "--block",
            "--nocapture",
            "x",
            "--solo5:quiet",
        ] {
            assert!(!is_device_flag(a), "{a}");
        }
    }

    #[test]
    fn not_a_device_flag() {
        assert_eq!(
            err(&["--net:service=tap0", "--verbose", "--", "x"]),
            "unexpected argument `--verbose` before `--`: only device flags may come before \
             `--` (--net:NAME=IFACE, --net-mac:NAME=HWADDR, --pcap:NAME=FILE, --pcap=FILE, \
             --net-offload=on|off, \
             --block:NAME=PATH, --block-sector-size:NAME=SIZE); the application's own \
             arguments go after `--`, \
             e.g. `./app --net:service=tap0 -- --verbose`"
        );
        assert!(err(&["file.txt"]).starts_with("unexpected argument `file.txt` before `--`"));
        assert_eq!(
            parse(&args(&["-v"])),
            Err(CmdLineError::NotADeviceFlag { arg: "-v".into() })
        );
    }

    #[test]
    fn flag_without_colon() {
        assert_eq!(
            err(&["--net=tap0"]),
            "`--net=tap0`: expected --net:NAME=IFACE (a colon after --net)"
        );
        assert_eq!(
            err(&["--block"]),
            "`--block`: expected --block:NAME=PATH (a colon after --block)"
        );
        assert_eq!(
            err(&["--block-sector-size=4096"]),
            "`--block-sector-size=4096`: expected --block-sector-size:NAME=SIZE \
             (a colon after --block-sector-size)"
        );
        assert_eq!(
            err(&["--net-mac=02:00:00:00:00:01"]),
            "`--net-mac=02:00:00:00:00:01`: expected --net-mac:NAME=HWADDR \
             (a colon after --net-mac)"
        );
    }

    #[test]
    fn empty_name() {
        assert_eq!(
            err(&["--net:=tap0"]),
            "`--net:=tap0`: the device name is empty; expected --net:NAME=IFACE, \
             e.g. --net:service=tap0"
        );
        assert_eq!(
            err(&["--block:=d.img"]),
            "`--block:=d.img`: the device name is empty; expected --block:NAME=PATH, \
             e.g. --block:disk=d.img"
        );
    }

    #[test]
    fn missing_value() {
        assert_eq!(
            err(&["--net:x"]),
            "`--net:x`: missing `=IFACE`; expected --net:NAME=IFACE, e.g. --net:x=tap0"
        );
        assert_eq!(
            err(&["--block:"]),
            "`--block:`: missing `=PATH`; expected --block:NAME=PATH, e.g. --block:disk=disk.img"
        );
        assert_eq!(
            err(&["--net:x="]),
            "`--net:x=`: IFACE is empty; expected --net:NAME=IFACE, e.g. --net:x=tap0"
        );
        assert_eq!(
            err(&["--block-sector-size:disk"]),
            "`--block-sector-size:disk`: missing `=SIZE`; expected \
             --block-sector-size:NAME=SIZE, e.g. --block-sector-size:disk=4096"
        );
    }

    #[test]
    fn bad_name() {
        let long = format!("--net:{}=tap0", "a".repeat(68));
        for arg in [
            "--net:my-net=tap0",
            "--block:dïsk=x",
            "--net:a_b=tap0",
            &long,
        ] {
            let msg = err(&[arg]);
            assert!(msg.starts_with(&format!("`{arg}`: device name `")), "{msg}");
            assert!(
                msg.ends_with(
                    "is not valid: a device name is 1 to 67 ASCII letters or digits \
                     (as in the Solo5 manifest)"
                ),
                "{msg}"
            );
        }
        // 67 characters is fine.
        let ok = format!("--net:{}=tap0", "a".repeat(67));
        assert!(parse(&[ok]).is_ok());
    }

    #[test]
    fn sector_size_not_a_number() {
        assert_eq!(
            err(&["--block:disk=d.img", "--block-sector-size:disk=abc"]),
            "`--block-sector-size:disk=abc`: `abc` is not a number; the sector size must be \
             a power of two of at least 512, e.g. --block-sector-size:disk=4096"
        );
        assert!(err(&["--block-sector-size:disk=-512"]).contains("`-512` is not a number"));
    }

    #[test]
    fn sector_size_not_a_power_of_two() {
        for size in ["0", "256", "511", "1000", "768", "4097"] {
            let arg = format!("--block-sector-size:disk={size}");
            assert_eq!(
                err(&["--block:disk=d.img", &arg]),
                format!(
                    "`{arg}`: the sector size must be a power of two of at least 512 \
                     (e.g. 512 or 4096)"
                )
            );
        }
        for size in [512, 1024, 4096, 65536] {
            let arg = format!("--block-sector-size:disk={size}");
            let cl = parse(&args(&["--block:disk=d.img", &arg])).unwrap();
            assert_eq!(cl.sector_size("disk"), size);
        }
    }

    #[test]
    fn duplicate_names() {
        assert_eq!(
            err(&["--net:x=tap0", "--net:x=tap1"]),
            "device `x` is mapped twice, by `--net:x=tap0` and by `--net:x=tap1`: \
             map each device once"
        );
        assert_eq!(
            err(&["--block:x=a.img", "--block:x=a.img"]),
            "device `x` is mapped twice, by `--block:x=a.img` and by `--block:x=a.img`: \
             map each device once"
        );
        assert_eq!(
            err(&["--net:x=tap0", "--block:x=a.img"]),
            "device `x` is mapped twice, by `--net:x=tap0` and by `--block:x=a.img`: \
             map each device once"
        );
        assert_eq!(
            err(&[
                "--block:x=a.img",
                "--block-sector-size:x=512",
                "--block-sector-size:x=4096"
            ]),
            "device `x` is mapped twice, by `--block-sector-size:x=512` and by \
             `--block-sector-size:x=4096`: map each device once"
        );
        assert!(matches!(
            parse(&args(&[
                "--net:x=t",
                "--net-mac:x=02:00:00:00:00:01",
                "--net-mac:x=02:00:00:00:00:02"
            ])),
            Err(CmdLineError::Duplicate { .. })
        ));
    }

    #[test]
    fn options_for_unmapped_devices() {
        assert_eq!(
            err(&["--block-sector-size:disk=4096"]),
            "`--block-sector-size:disk=4096` is for device `disk`, but no \
             `--block:disk=PATH` maps it"
        );
        // A net device is not a block device.
        assert_eq!(
            err(&["--net:disk=tap0", "--block-sector-size:disk=4096"]),
            "`--block-sector-size:disk=4096` is for device `disk`, but no \
             `--block:disk=PATH` maps it"
        );
        assert_eq!(
            err(&["--net-mac:service=02:00:00:00:00:01"]),
            "`--net-mac:service=02:00:00:00:00:01` is for device `service`, but no \
             `--net:service=IFACE` maps it"
        );
        // Order does not matter.
        assert!(parse(&args(&["--block-sector-size:disk=4096", "--block:disk=d"])).is_ok());
    }

    #[test]
    fn bad_mac() {
        for mac in [
            "02:00:00:00:00",
            "02:00:00:00:00:01:02",
            "0g:00:00:00:00:01",
            "2:0:0:0:0:1",
        ] {
            let arg = format!("--net-mac:x={mac}");
            assert_eq!(
                err(&["--net:x=tap0", &arg]),
                format!(
                    "`{arg}`: `{mac}` is not a MAC address; expected six hexadecimal bytes \
                     separated by colons, e.g. --net-mac:x=02:00:00:00:00:01"
                )
            );
        }
    }

    #[test]
    fn error_trait() {
        let e: Box<dyn std::error::Error> = Box::new(parse(&args(&["x"])).unwrap_err());
        assert!(e.to_string().contains("`x`"));
    }

    #[test]
    fn net_offload_flag() {
        assert_eq!(parse(&args(&["--net:a=tap0"])).unwrap().offload, None);
        let cl = parse(&args(&["--net-offload=off", "--net:a=tap0"])).unwrap();
        assert_eq!(cl.offload, Some(false));
        let cl = parse(&args(&["--net:a=tap0", "--net-offload=on"])).unwrap();
        assert_eq!(cl.offload, Some(true));
        assert!(err(&["--net-offload=no"]).contains("neither `on` nor `off`"));
        assert!(err(&["--net-offload=on", "--net-offload=off"]).contains("twice"));
        assert!(is_device_flag("--net-offload=off"));
    }

    #[test]
    fn pcap_flags_name_a_mapped_net_device() {
        let cl = parse(&args(&["--net:service=tap0", "--pcap=cap.pcap"])).unwrap();
        assert_eq!(cl.pcap("service"), Some(std::path::Path::new("cap.pcap")));
        let cl = parse(&args(&["--net:a=tap0", "--net:b=tap1", "--pcap:b=b.pcap"])).unwrap();
        assert_eq!(
            (cl.pcap("a"), cl.pcap("b")),
            (None, Some(std::path::Path::new("b.pcap")))
        );
        assert!(err(&["--net:a=tap0", "--net:b=tap1", "--pcap=x.pcap"]).contains("one net device"));
        assert!(err(&["--pcap:x=x.pcap"]).contains("no `--net:x=IFACE` maps it"));
        assert!(is_device_flag("--pcap=f") && is_device_flag("--pcap:a=f"));
    }

    #[test]
    fn a_multicast_broadcast_or_zero_mac_is_refused() {
        for mac in [
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "03:00:00:00:00:01",
            "00:00:00:00:00:00",
        ] {
            let e = err(&[&format!("--net-mac:service={mac}")]);
            assert!(e.contains("cannot be a device's own address"), "{mac}: {e}");
        }
        let ok = parse(&args(&[
            "--net:service=tap0",
            "--net-mac:service=02:00:00:00:00:01",
        ]))
        .unwrap();
        assert_eq!(ok.net_mac("service"), Some([2, 0, 0, 0, 0, 1]));
    }
}

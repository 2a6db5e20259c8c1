//! The public error types: each is nameable, has a `kind()` to match on,
//! keeps its cause as `source()`, and converts into an `io::Error` of a
//! matching kind; `Builder::try_run` returns (never exits), also with
//! `MKERNEL_MANIFEST=1` and on a malformed `--ipv4`.

use mkernel::DeviceError;
use mkernel::block::BlockErrorKind;
use mkernel::devices::DeviceErrorKind;
use mkernel::net::link::{self, LinkError};
use mkernel::net::stack::{ConfigError, ConfigErrorKind, StackConfig, port_from_args};
use mkernel::net::{NetError, NetErrorKind};
use std::error::Error as _;
use std::io;
use std::path::PathBuf;
use std::process::Command;

struct TempFile(PathBuf);
impl TempFile {
    fn new(tag: &str, bytes: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!("mk-api-{tag}-{}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The test binary itself, run on the one test `name` with `MK_API_CHILD`
/// set to `name` (that test does its real work only then).
fn child(name: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("MK_API_CHILD", name);
    c
}

fn in_child(name: &str) -> bool {
    std::env::var("MK_API_CHILD").is_ok_and(|v| v == name)
}

#[test]
fn an_unmapped_device_is_not_mapped() {
    // A mapping is given (a sector size), but none for `disk`.
    let e: DeviceError = mkernel::Builder::new()
        .block_sector_size("disk", 512)
        .try_run(mkernel::block("disk"), |_disk| unreachable!("main ran"))
        .unwrap_err();
    assert_eq!(e.kind(), DeviceErrorKind::NotMapped);
    assert!(e.source().is_none());
    assert!(
        e.to_string()
            .contains("block device \"disk\" is not mapped"),
        "{e}"
    );
    let io = io::Error::from(e.clone());
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
    // The DeviceError is inside the io::Error, whole.
    let inner = io.get_ref().unwrap().downcast_ref::<DeviceError>().unwrap();
    assert_eq!(inner, &e);
}

#[test]
fn a_missing_file_is_an_open_error_whose_source_is_the_io_error() {
    let e = mkernel::Builder::new()
        .block_file("disk", "/nonexistent/mk-api.img")
        .try_run(mkernel::block("disk"), |_disk| unreachable!("main ran"))
        .unwrap_err();
    assert_eq!(e.kind(), DeviceErrorKind::Open);
    let msg = e.to_string();
    assert!(
        msg.contains("/nonexistent/mk-api.img") && msg.contains("\"disk\""),
        "{msg}"
    );
    let cause = e
        .source()
        .expect("the open's error is the source")
        .downcast_ref::<io::Error>()
        .expect("an io::Error");
    assert_eq!(cause.kind(), io::ErrorKind::NotFound);
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::NotFound);
}

#[test]
fn a_bad_device_list_and_an_undeclared_mapping_are_invalid_input() {
    let f = TempFile::new("list", &[0u8; 4096]);
    let e = mkernel::Builder::new()
        .block_file("disk", &f.0)
        .try_run((mkernel::block("disk"), mkernel::block("disk")), |_| ())
        .unwrap_err();
    assert_eq!(e.kind(), DeviceErrorKind::InvalidList);
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);

    let e = mkernel::Builder::new()
        .block_file("disk", &f.0)
        .block_file("other", &f.0)
        .try_run(mkernel::block("disk"), |_| ())
        .unwrap_err();
    assert_eq!(e.kind(), DeviceErrorKind::Undeclared);
    assert!(e.to_string().contains("\"other\""), "{e}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn block_errors_convert_to_io_errors_of_their_kind() {
    let f = TempFile::new("block", &[0u8; 4096]);
    let (unaligned, out_of_range) =
        mkernel::Builder::new()
            .block_file("disk", &f.0)
            .run(mkernel::block("disk"), |disk| {
                (
                    disk.atomic_read(1, &mut [0u8; 512]).unwrap_err(),
                    disk.read(4096, &mut [0u8; 512]).unwrap_err(),
                )
            });
    assert_eq!(unaligned.kind(), &BlockErrorKind::Unaligned);
    assert!(unaligned.source().is_none());
    let msg = unaligned.to_string();
    let io = io::Error::from(unaligned);
    assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(io.to_string(), msg);
    assert_eq!(out_of_range.kind(), &BlockErrorKind::OutOfRange);
    assert_eq!(
        io::Error::from(out_of_range).kind(),
        io::ErrorKind::UnexpectedEof
    );
}

#[test]
fn net_errors_have_a_kind_a_source_and_convert_to_io_errors() {
    let (a, b) = link::pair(link::Faults::default());
    let (short, too_small, gone) = mkernel::Builder::new()
        .net_link("a", a)
        .net_link("b", b)
        .run(
            (mkernel::net("a"), mkernel::net("b")),
            |((a, _), (b, bcfg))| {
                let short = a.write(&[0u8; 10]).unwrap_err();
                let mut frame = vec![0u8; 60];
                frame[..6].copy_from_slice(&bcfg.mac);
                a.write(&frame).unwrap();
                let too_small = b.read(&mut [0u8; 20]).unwrap_err();
                drop(b);
                (short, too_small, a)
            },
        );
    assert_eq!(short.kind(), NetErrorKind::TooShort);
    assert!(
        short
            .to_string()
            .contains("shorter than an Ethernet header")
    );
    assert_eq!(io::Error::from(short).kind(), io::ErrorKind::InvalidInput);

    assert_eq!(too_small.kind(), NetErrorKind::BufferTooSmall);
    assert!(matches!(
        too_small.source().unwrap().downcast_ref::<LinkError>(),
        Some(LinkError::BufferTooSmall {
            frame_len: 60,
            buf_len: 20
        })
    ));
    assert_eq!(
        io::Error::from(too_small).kind(),
        io::ErrorKind::InvalidInput
    );

    // A link whose other end is gone: outside the run, the link's own error.
    drop(gone);
    let (c, d) = link::pair(link::Faults::default());
    drop(d);
    let e: NetError = c.send(&[0u8; 60], 0).unwrap_err().into();
    assert_eq!(e.kind(), NetErrorKind::Link);
    assert_eq!(
        e.source().unwrap().downcast_ref::<LinkError>(),
        Some(&LinkError::PeerGone)
    );
    let io = io::Error::from(e);
    assert_eq!(io.kind(), io::ErrorKind::BrokenPipe);
    assert!(io.get_ref().unwrap().is::<NetError>());
}

#[test]
fn a_bad_network_flag_is_a_typed_error_naming_the_flag() {
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let e: ConfigError = StackConfig::from_args(&args(&["--ipv4=10.0.0.300/24"])).unwrap_err();
    assert_eq!(e.kind(), ConfigErrorKind::Malformed);
    assert_eq!(e.flag(), "--ipv4");
    assert!(e.to_string().contains("--ipv4=10.0.0.300/24"), "{e}");
    assert!(e.to_string().contains("ADDR/PREFIX"), "{e}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);

    let e = StackConfig::from_args(&args(&["--ipv4"])).unwrap_err();
    assert_eq!(
        (e.kind(), e.flag()),
        (ConfigErrorKind::MissingValue, "--ipv4")
    );
    let e = StackConfig::from_args(&args(&["--ipv4=10.0.0.2/24", "--ipv4-gateway=10.9.0.1"]))
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.flag()),
        (ConfigErrorKind::GatewayOutsideNetwork, "--ipv4-gateway")
    );
    let e = StackConfig::parse("10.0.0.2/24", Some("gw")).unwrap_err();
    assert_eq!(
        (e.kind(), e.flag()),
        (ConfigErrorKind::Malformed, "--ipv4-gateway")
    );
    let e = port_from_args(&args(&["--port=70000"]), 80).unwrap_err();
    assert_eq!((e.kind(), e.flag()), (ConfigErrorKind::Malformed, "--port"));
    let e = port_from_args(&args(&["--verbose"]), 80).unwrap_err();
    assert_eq!(
        (e.kind(), e.flag()),
        (ConfigErrorKind::UnknownArgument, "--verbose")
    );
}

#[test]
fn try_run_returns_a_bad_ipv4_flag_of_stack_instead_of_exiting() {
    let (a, _b) = link::pair(link::Faults::default());
    let e = mkernel::Builder::new()
        .net_link("service", a)
        .args(["--ipv4=10.0.0.300/24"])
        .try_run(mkernel::stack("service"), |_stack| unreachable!("main ran"))
        .unwrap_err();
    assert_eq!(e.kind(), DeviceErrorKind::Map);
    assert!(e.to_string().contains("--ipv4=10.0.0.300/24"), "{e}");
    let cfg = e.source().unwrap().downcast_ref::<ConfigError>().unwrap();
    assert_eq!(cfg.flag(), "--ipv4");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);

    // A good flag runs the main function with it.
    let (a, _b) = link::pair(link::Faults::default());
    let ip = mkernel::Builder::new()
        .net_link("service", a)
        .args(["--ipv4=10.9.0.7/16"])
        .try_run(mkernel::stack("service"), |stack| {
            stack.config().ipv4.to_string()
        })
        .unwrap();
    assert_eq!(ip, "10.9.0.7/16");
}

#[test]
fn a_failed_try_map_is_a_map_error_with_its_source() {
    #[derive(Debug)]
    struct Mine;
    impl std::fmt::Display for Mine {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("mine failed")
        }
    }
    impl std::error::Error for Mine {}
    let e = mkernel::Builder::new()
        .try_run(
            mkernel::try_map(mkernel::constant(1), |_| Err::<u8, _>(Mine)),
            |_| unreachable!("main ran"),
        )
        .unwrap_err();
    assert_eq!(e.kind(), DeviceErrorKind::Map);
    assert_eq!(e.to_string(), "mine failed");
    assert!(e.source().unwrap().is::<Mine>());
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::Other);

    // An io::Error keeps its kind.
    let e = mkernel::Builder::new()
        .try_run(
            mkernel::try_map((), |()| {
                Err::<(), _>(io::Error::new(io::ErrorKind::PermissionDenied, "no"))
            }),
            |()| (),
        )
        .unwrap_err();
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::PermissionDenied);

    // Success is the value.
    let v = mkernel::Builder::new()
        .try_run(
            mkernel::try_map(mkernel::constant(20), |v| Ok::<_, String>(v + 1)),
            |v| v * 2,
        )
        .unwrap();
    assert_eq!(v, 42);
}

#[test]
fn try_run_with_mkernel_manifest_returns_after_printing_it() {
    if in_child("try_run_with_mkernel_manifest_returns_after_printing_it") {
        // Would fail to open: the manifest comes first, and main never runs.
        let e = mkernel::Builder::new()
            .block_file("disk", "/nonexistent/mk-api.img")
            .try_run(mkernel::block("disk"), |_disk| unreachable!("main ran"))
            .unwrap_err();
        assert_eq!(e.kind(), DeviceErrorKind::ManifestPrinted);
        println!("try_run returned {:?}", e.kind());
        return;
    }
    let o = child("try_run_with_mkernel_manifest_returns_after_printing_it")
        .env("MKERNEL_MANIFEST", "1")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains(
            "{\"type\":\"solo5.manifest\",\"version\":1,\"devices\":[{\"name\":\"disk\",\"type\":\"BLOCK_BASIC\"}]}\n"
        ),
        "{out}"
    );
    assert!(out.contains("try_run returned ManifestPrinted"), "{out}");
}

#[test]
fn run_reports_a_bad_ipv4_flag_and_exits_2() {
    if in_child("run_reports_a_bad_ipv4_flag_and_exits_2") {
        let (a, _b) = link::pair(link::Faults::default());
        mkernel::Builder::new()
            .net_link("service", a)
            .args(["--ipv4=10.0.0.300/24"])
            .run(mkernel::stack("service"), |_stack| unreachable!("main ran"));
        unreachable!("run returned");
    }
    let o = child("run_reports_a_bad_ipv4_flag_and_exits_2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: --ipv4=10.0.0.300/24: expected ADDR/PREFIX, e.g. --ipv4=10.0.0.2/24"),
        "{err}"
    );
}

#[test]
fn public_types_implement_debug() {
    fn debug<T: std::fmt::Debug>(_: &T) {}
    let b = mkernel::Builder::new().seed(3);
    assert!(format!("{b:?}").contains("seed: 3"), "{b:?}");
    let (a, _b) = link::pair(link::Faults::default());
    debug(&a);
    debug(&link::Faults::default());
    debug(&mkernel::testing::VirtualClock::new());
    mkernel::run((), |()| {
        let m = mkernel::sync::Mutex::new(5);
        assert_eq!(format!("{m:?}"), "Mutex { data: 5, .. }");
        {
            let g = m.lock();
            assert_eq!(format!("{g:?}"), "5");
            assert_eq!(format!("{m:?}"), "Mutex { data: <locked>, .. }");
        }
        let l = mkernel::sync::Lazy::new(|| 7);
        debug(&l);
        debug(&mkernel::sync::Condition::new());
        let o: mkernel::Orphans<()> = mkernel::Orphans::new();
        assert_eq!(format!("{o:?}"), "Orphans { len: 0, .. }");
        let r = mkernel::Resource::new(1, |_| ());
        debug(&r);
        let h = mkernel::Hook::add(|| ());
        debug(&h);
        h.remove();
        debug(&mkernel::Syscall::new());
    });
}

#[test]
fn ipv4_flags_that_name_no_host_are_refused() {
    use mkernel::net::stack::StackConfig;
    for bad in [
        "10.0.0.0/0",
        "127.0.0.1/8",
        "10.0.0.0/24",
        "10.0.0.255/24",
        "192.168.0.0/16",
    ] {
        let e = StackConfig::parse(bad, None).expect_err(bad);
        assert_eq!(e.flag(), "--ipv4", "{bad}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    for good in [
        "10.0.0.2/24",
        "10.0.0.1/31",
        "10.0.0.0/31",
        "10.0.0.7/32",
        "192.168.1.0/16",
    ] {
        StackConfig::parse(good, None).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}

//! `cargo mkernel`: build and run mkernel programs as Solo5 unikernels.
//!
//! ```text
//! cargo mkernel build --target spt --example hello      # last line: the image path
//! cargo mkernel run --target spt --example hello --net:service=tap0 -- ARGS
//! cargo mkernel run --target virtio --example hello -- ARGS   # QEMU (TCG)
//! cargo mkernel manifest --example hello
//! cargo mkernel solo5                                    # build Solo5, print its tree
//! ```
//!
//! Install it for your own crate (which must depend on `mkernel`) with
//! `cargo install --path cargo-mkernel`; inside this repository the
//! `.cargo/config.toml` alias runs it from source.

mod elf;
mod link;
mod metadata;
mod solo5;
mod tools;
mod virtio;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Errors are messages for the user.
pub type Result<T> = std::result::Result<T, String>;

/// Shorthand for an error result.
///
/// # Errors
///
/// Always: `msg`.
pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(msg.into())
}

/// The `cargo` to call back (cargo sets `CARGO` for subcommands).
#[must_use]
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The host triple whose precompiled std is linked into the unikernel.
/// Passing `--target` explicitly also keeps RUSTFLAGS away from build
/// scripts and proc-macros.
const RUST_TARGET: &str = "x86_64-unknown-linux-gnu";

#[derive(Parser)]
#[command(
    name = "cargo mkernel",
    version,
    about = "Build and run mkernel programs as Solo5 unikernels"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the Solo5 image; its path is the last line printed.
    Build {
        #[arg(long, value_enum)]
        target: Target,
        #[command(flatten)]
        sel: Selection,
    },
    /// Build, then run the image under the tender (which replaces this
    /// process), or under QEMU for virtio (signals passed on; exit status =
    /// the unikernel's). Tender options
    /// (`--net:NAME=TAP`, `--block:NAME=FILE`, `--mem=MB`) may follow;
    /// application arguments go after `--`.
    Run {
        #[arg(long, value_enum)]
        target: Target,
        #[command(flatten)]
        sel: Selection,
        /// virtio only: kill QEMU after this many seconds (exit status 124).
        /// (default 300).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Print the Solo5 manifest of the program (derived from its devices).
    Manifest {
        #[command(flatten)]
        sel: Selection,
    },
    /// Link the program without mkernel's libc shim and list the C symbols
    /// left undefined: the set the shim must provide (it changes with Rust).
    Symbols {
        #[command(flatten)]
        sel: Selection,
    },
    /// Build Solo5 from the `solo5-sys` sources (cached) and print the tree.
    Solo5 {
        #[arg(long)]
        manifest_path: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// Solo5 spt (seccomp sandbox; no KVM needed).
    Spt,
    /// Solo5 hvt (KVM).
    Hvt,
    /// Solo5 virtio (a multiboot VM; `run` boots it with QEMU in software
    /// emulation). One net and one block device at most.
    Virtio,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Spt => "spt",
            Target::Hvt => "hvt",
            Target::Virtio => "virtio",
        }
    }
}

/// Which program of the package to turn into a unikernel.
#[derive(Args, Clone)]
struct Selection {
    /// Build this example.
    #[arg(long, conflicts_with = "bin")]
    example: Option<String>,
    /// Build this binary. Without `--bin` or `--example`: the package's
    /// only binary (or its `default-run` one), as `cargo run` picks it.
    #[arg(long)]
    bin: Option<String>,
    /// Package containing the program.
    #[arg(short, long)]
    package: Option<String>,
    /// Path to Cargo.toml.
    #[arg(long)]
    manifest_path: Option<String>,
    /// Cargo features to enable (as `cargo build --features`), e.g.
    /// `mkernel/tls` or, inside the mkernel repository, `tls`.
    #[arg(short = 'F', long, value_name = "FEATURES")]
    features: Vec<String>,
}

impl Selection {
    fn cargo_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(e) = &self.example {
            v.extend(["--example".into(), e.clone()]);
        }
        if let Some(b) = &self.bin {
            v.extend(["--bin".into(), b.clone()]);
        }
        if let Some(p) = &self.package {
            v.extend(["-p".into(), p.clone()]);
        }
        if let Some(m) = &self.manifest_path {
            v.extend(["--manifest-path".into(), m.clone()]);
        }
        for f in &self.features {
            v.extend(["--features".into(), f.clone()]);
        }
        v
    }
    /// This selection with the program named: as given, or else the
    /// package's only binary ([`metadata::default_binary`]).
    fn resolve(mut self, meta: &metadata::Metadata) -> Result<Selection> {
        if self.example.is_none() && self.bin.is_none() {
            let (package, bin) = metadata::default_binary(meta, self.package.as_deref())?;
            self.bin = Some(bin);
            // A virtual workspace: say which member the binary is in.
            if meta.raw.root_package().is_none() && self.package.is_none() {
                self.package = Some(package);
            }
        }
        Ok(self)
    }
    fn name(&self) -> &str {
        self.example
            .as_deref()
            .or(self.bin.as_deref())
            .unwrap_or("")
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    if std::env::var_os(link::LINKER_ENV).is_some() {
        std::process::exit(link::rustc_linker(args.split_off(1)));
    }
    // `cargo mkernel ...` runs `cargo-mkernel mkernel ...`.
    if args.get(1).map(String::as_str) == Some("mkernel") {
        args.remove(1);
    }
    // Tender options and application arguments are not ours: take them out
    // before clap sees them.
    let mut app_args = Vec::new();
    if let Some(i) = args.iter().position(|a| a == "--") {
        app_args = args.split_off(i + 1);
        args.pop();
    }
    let (tender_opts, args): (Vec<String>, Vec<String>) =
        args.into_iter().partition(|a| is_tender_opt(a));
    let cli = Cli::parse_from(args);
    let is_run = matches!(cli.cmd, Cmd::Run { .. });
    if !is_run && (!tender_opts.is_empty() || !app_args.is_empty()) {
        eprintln!("cargo mkernel: tender options and `-- ARGS` are only for `cargo mkernel run`");
        std::process::exit(2);
    }
    if let Cmd::Run { target, .. } = &cli.cmd
        && let Err(msg) = check_tender_opts(*target, &tender_opts)
    {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
    match real_main(cli.cmd, tender_opts, app_args) {
        Ok(code) => std::process::exit(code),
        Err(msg) => {
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
}

/// Whether `a` is an option for the tender (or one that mkernel's hosted
/// command line takes there), not for `cargo mkernel` itself.
fn is_tender_opt(a: &str) -> bool {
    [
        "--net:",
        "--net-mac:",
        "--block:",
        "--block-sector-size:",
        "--mem=",
        "--solo5:",
    ]
    .iter()
    .any(|p| a.starts_with(p))
}

/// Refuses, before building anything, the options that a hosted mkernel
/// program takes but `target`'s tender does not (it would say only
/// "Invalid option"); see the README's table of flags per target.
fn check_tender_opts(target: Target, opts: &[String]) -> Result<()> {
    for o in opts {
        if o.starts_with("--block-sector-size:") {
            return fail(format!(
                "`{o}`: the Solo5 {t} target has no sector-size option (Solo5's tenders \
                 give every block device 512-byte sectors); `--block-sector-size:NAME=N` \
                 exists only for a hosted mkernel program. Drop it for --target {t} \
                 (see the README's table of flags per target)",
                t = target.name()
            ));
        }
        if o.starts_with("--net-mac:") && matches!(target, Target::Virtio) {
            return fail(format!(
                "`{o}`: the Solo5 virtio target takes no MAC address option (QEMU picks \
                 the guest's); `--net-mac:NAME=HWADDR` is for spt, hvt and hosted \
                 programs (see the README's table of flags per target)"
            ));
        }
        if o.starts_with("--solo5:") {
            return fail(format!(
                "`{o}` is an option of the Solo5 bindings inside the unikernel, not of \
                 the {t} tender: put it first after `--` (`cargo mkernel run --target {t} \
                 ... -- {o} ARGS`); a hosted program ignores it there too",
                t = target.name()
            ));
        }
    }
    Ok(())
}

fn real_main(cmd: Cmd, tender_opts: Vec<String>, app_args: Vec<String>) -> Result<i32> {
    match cmd {
        Cmd::Build { target, sel } => {
            let (sel, meta) = chosen(sel)?;
            let (image, _, _) = build(target, &sel, &meta)?;
            println!("{}", image.display());
            Ok(0)
        }
        Cmd::Run {
            target: Target::Virtio,
            sel,
            timeout,
        } => {
            let (sel, meta) = chosen(sel)?;
            let (image, _, manifest) = build(Target::Virtio, &sel, &meta)?;
            virtio::run(
                &image,
                &manifest,
                &tender_opts,
                &app_args,
                Duration::from_secs(timeout.unwrap_or(300)),
            )
        }
        Cmd::Run {
            timeout: Some(_), ..
        } => fail("--timeout is for --target virtio (the spt and hvt tenders run unbounded)"),
        Cmd::Run { target, sel, .. } => {
            let (sel, meta) = chosen(sel)?;
            let (image, solo5, _) = build(target, &sel, &meta)?;
            // The tender takes this process's place (pid, signals, exit
            // status): a SIGTERM or SIGINT sent to `cargo mkernel run`
            // stops the unikernel, and none is left behind.
            let tender = solo5.tender(target.name());
            let err = Command::new(&tender)
                .args(&tender_opts)
                .arg(&image)
                .args(&app_args)
                .exec();
            fail(format!("cannot run the tender {}: {err}", tender.display()))
        }
        Cmd::Manifest { sel } => {
            let (sel, _) = chosen(sel)?;
            println!("{}", manifest(&sel)?);
            Ok(0)
        }
        Cmd::Symbols { sel } => {
            let (sel, meta) = chosen(sel)?;
            for s in undefined_without_shim(&sel, &meta)? {
                println!("{s}");
            }
            Ok(0)
        }
        Cmd::Solo5 { manifest_path } => {
            let meta = metadata::Metadata::load(manifest_path.as_deref())?;
            let s = solo5::ensure(&meta)?;
            println!("{}", s.root.display());
            Ok(0)
        }
    }
}

/// The crate graph, and `sel` with its program named
/// ([`Selection::resolve`]).
fn chosen(sel: Selection) -> Result<(Selection, metadata::Metadata)> {
    let meta = metadata::Metadata::load(sel.manifest_path.as_deref())?;
    Ok((sel.resolve(&meta)?, meta))
}

/// Builds the image; returns its path, the Solo5 tree used and the
/// manifest (JSON).
fn build(
    target: Target,
    sel: &Selection,
    meta: &metadata::Metadata,
) -> Result<(PathBuf, solo5::Solo5, String)> {
    let solo5 = solo5::ensure(meta)?;
    let json = manifest(sel)?;
    let app = build_rust(sel, &meta.target_dir.join("solo5"), &[])?;
    let dir = app.parent().ok_or("artifact without a directory")?;
    let scratch = link::Scratch::new(dir, sel.name())?;
    let mft = link::manifest_object(&solo5, &json, &scratch)?;
    let image = dir.join(format!("{}.{}", sel.name(), target.name()));
    link::image(&solo5, target.name(), &app, &mft, &scratch, &image)?;
    elf::check_tls(&image)?;
    if let Target::Virtio = target {
        elf::check_multiboot(&image)?;
    }
    Ok((image, solo5, json))
}

/// Runs `cargo` with JSON messages and returns the executable artefact.
fn cargo_executable(mut cmd: Command, what: &str) -> Result<PathBuf> {
    cmd.arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return fail(format!("{what} failed"));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
        .next_back()
        .ok_or_else(|| format!("{what} produced no executable"))
}

/// The Rust part, linked by [`link::rustc_linker`] into one object.
fn build_rust(sel: &Selection, target_dir: &Path, extra_flags: &[&str]) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut flags: Vec<String> = [
        "--cfg",
        "mkernel_solo5",
        // Direct addressing and local-exec TLS (`%fs`-relative) in our code;
        // the image is linked static, non-PIE, at a fixed address.
        "-C",
        "relocation-model=static",
        // Unwinding needs frame information for every function.
        "-C",
        "force-unwind-tables=yes",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    flags.extend(extra_flags.iter().map(|s| s.to_string()));
    flags.push("-C".into());
    flags.push(format!("linker={}", exe.display()));
    let mut cmd = Command::new(cargo());
    cmd.args([
        "build",
        "--release",
        "--target",
        RUST_TARGET,
        "--target-dir",
    ])
    .arg(target_dir)
    .args(sel.cargo_args())
    .env_remove("RUSTFLAGS")
    .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
    .env(link::LINKER_ENV, "1");
    cargo_executable(cmd, "the Solo5 build of the Rust program")
}

/// Builds without the shim (`--cfg mkernel_solo5_no_shim`, own target
/// directory), links the spt image letting undefined symbols through, and
/// returns them sorted.
fn undefined_without_shim(sel: &Selection, meta: &metadata::Metadata) -> Result<Vec<String>> {
    let solo5 = solo5::ensure(meta)?;
    let app = build_rust(
        sel,
        &meta.target_dir.join("solo5-noshim"),
        &["--cfg", "mkernel_solo5_no_shim"],
    )?;
    let dir = app.parent().ok_or("artifact without a directory")?;
    let scratch = link::Scratch::new(dir, sel.name())?;
    let json = r#"{"type":"solo5.manifest","version":1,"devices":[]}"#;
    let mft = link::manifest_object(&solo5, json, &scratch)?;
    let image = dir.join(format!("{}.noshim.spt", sel.name()));
    link::undefined_symbols(&solo5, &app, &mft, &scratch, &image)
}

/// The manifest, as the program itself prints it when run hosted with
/// `MKERNEL_MANIFEST=1` (the device list is the single source).
fn manifest(sel: &Selection) -> Result<String> {
    let mut cmd = Command::new(cargo());
    cmd.arg("build").args(sel.cargo_args());
    let exe = cargo_executable(cmd, "the hosted build (for the manifest)")?;
    let mut child = Command::new(&exe)
        .env("MKERNEL_MANIFEST", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    // A program that does not know MKERNEL_MANIFEST runs its main: bound it.
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let found = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('{') && l.contains("\"solo5.manifest\""));
    match (found, status) {
        (Some(json), Some(s)) if s.success() => Ok(json.to_string()),
        (Some(_), _) => fail(format!(
            "{} printed a manifest but did not exit 0 with MKERNEL_MANIFEST=1",
            exe.display()
        )),
        (None, Some(s)) if !s.success() => {
            let name = exe.file_name().map_or_else(
                || exe.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let how = match s.code() {
                Some(n) => format!("with status {n}"),
                None => format!("({s})"),
            };
            fail(format!(
                "{name} exited {how} before printing its manifest (run as \
                 `MKERNEL_MANIFEST=1 {exe}`, with no arguments): it probably parses its \
                 command line before mkernel::run. Parse mkernel::args() inside the main \
                 function given to mkernel::run instead (it is also the portable way: \
                 std::env::args() differs between hosted and Solo5; see the docs of \
                 mkernel::args, and the Cmdliner → clap pattern in mkernel's docs/porting.md), \
                 or skip parsing when MKERNEL_MANIFEST=1 is set.\n\
                 Its stderr:\n{stderr}",
                exe = exe.display(),
                stderr = if out.stderr.is_empty() {
                    "(empty)".into()
                } else {
                    String::from_utf8_lossy(&out.stderr)
                }
            ))
        }
        (None, status) => {
            let how = match status {
                None => "it was still running after 20 s and was killed".to_string(),
                Some(s) => format!("it exited with {s}"),
            };
            fail(format!(
                "{exe} printed no Solo5 manifest when run with MKERNEL_MANIFEST=1 ({how}).\n\
                 The manifest is derived from the program's device list: the program must \
                 start with `mkernel::run(DEVICES, main)` (or `mkernel::Builder::run`), which \
                 prints it and exits 0 without running `main` — `mkernel::run((), |()| ..)` \
                 for a program without devices.{stderr}",
                exe = exe.display(),
                stderr = if out.stderr.is_empty() {
                    String::new()
                } else {
                    format!("\nIts stderr:\n{}", String::from_utf8_lossy(&out.stderr))
                }
            ))
        }
    }
}

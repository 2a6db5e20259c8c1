//! Linking a Rust program into Solo5 images.
//!
//! Two stages, so that one Rust build serves spt, hvt and virtio:
//!
//! 1. rustc links the bin with this very executable as its "linker"
//!    ([`rustc_linker`], selected by the `MKERNEL_LINKER` environment
//!    variable). Instead of producing a Linux executable it keeps only the
//!    program's objects and Rust libraries (rlibs; glibc, libgcc and the crt
//!    files are dropped) and merges them with `ld -r` into one relocatable
//!    object, written where rustc asked for the executable.
//! 2. [`image`] links that object with the Solo5 bindings of the chosen
//!    target and the manifest object, using mkernel's linker script and
//!    `--gc-sections`, into the `.spt` / `.hvt` / `.virtio` image.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::solo5::Solo5;
use crate::tools::LD;
use crate::{Result, fail};

/// Environment variable that switches this executable into linker mode.
pub const LINKER_ENV: &str = "MKERNEL_LINKER";

/// mkernel's linker script for Solo5 images (see the file for why it differs
/// from Solo5's).
const LINKER_SCRIPT: &str = include_str!("unikernel.ld");

/// Stage 1: called by rustc as `cc`-style linker; returns the exit code.
pub fn rustc_linker(args: Vec<String>) -> i32 {
    let args = expand_response_files(args);
    let mut inputs = Vec::new();
    let mut output = None;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => output = it.next(),
            // Options whose value is a separate argument.
            "-L" | "-Xlinker" | "-z" | "-T" | "-e" => {
                it.next();
            }
            _ if a.starts_with('-') => {}
            _ => {
                let p = Path::new(&a);
                let keep = matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("o" | "rlib" | "a")
                ) && p.is_file();
                if keep {
                    inputs.push(a);
                }
            }
        }
    }
    let Some(output) = output else {
        eprintln!("cargo-mkernel (linker mode): rustc gave no `-o`");
        return 1;
    };
    let mut ld = match LD.command() {
        Ok(ld) => ld,
        Err(e) => {
            eprintln!("cargo-mkernel (linker mode): {e}");
            return 1;
        }
    };
    // `solo5_app_main` is only referenced by the Solo5 bindings, which are
    // linked in stage 2: keep it (and `main`, which it calls) here.
    ld.args(["-r", "-o", &output, "-u", "solo5_app_main", "-u", "main"])
        .arg("--start-group")
        .args(&inputs)
        .arg("--end-group");
    match ld.status() {
        Ok(s) if s.success() => 0,
        Ok(s) => {
            eprintln!("cargo-mkernel (linker mode): `ld -r` failed: {s}");
            1
        }
        Err(e) => {
            eprintln!("cargo-mkernel (linker mode): cannot run `ld`: {e}");
            1
        }
    }
}

/// rustc passes `@file` when the command line is long: one argument a line,
/// with `\` escaping.
fn expand_response_files(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        match a.strip_prefix('@').map(std::fs::read_to_string) {
            Some(Ok(text)) => {
                for line in text.lines() {
                    let mut s = String::new();
                    let mut chars = line.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' {
                            if let Some(n) = chars.next() {
                                s.push(n);
                            }
                        } else {
                            s.push(c);
                        }
                    }
                    out.push(s);
                }
            }
            _ => out.push(a),
        }
    }
    out
}

/// A private work directory for one link, `DIR/NAME.mkernel/PID`, removed
/// when dropped. Two `cargo mkernel` runs on the same program at once (tests
/// in parallel, two terminals) each write their own manifest, linker script
/// and image there, so neither reads a file the other is rewriting; the
/// finished image is then renamed into place (atomic on one file system),
/// so a tender or QEMU starting meanwhile loads the old image or the new
/// one, never half of one.
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates the directory for the program `name` whose artefacts are in
    /// `artifact_dir`.
    pub fn new(artifact_dir: &Path, name: &str) -> Result<Scratch> {
        let dir = artifact_dir
            .join(format!("{name}.mkernel"))
            .join(std::process::id().to_string());
        // A directory left by a killed run whose PID came back: start clean.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch { dir })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Compiles the manifest JSON into the object that carries the
/// `.note.solo5.manifest` note.
pub fn manifest_object(solo5: &Solo5, json: &str, scratch: &Scratch) -> Result<PathBuf> {
    let json_path = scratch.path("manifest.json");
    let c_path = scratch.path("manifest.c");
    let o_path = scratch.path("manifest.o");
    std::fs::write(&json_path, json).map_err(|e| format!("{}: {e}", json_path.display()))?;
    run(Command::new(solo5.elftool())
        .arg("gen-manifest")
        .arg(&json_path)
        .arg(&c_path))?;
    run(Command::new(solo5.cc())
        .args(["-O2", "-c"])
        .arg(&c_path)
        .arg("-o")
        .arg(&o_path))?;
    Ok(o_path)
}

/// Writes mkernel's linker script into `scratch`.
fn linker_script(scratch: &Scratch) -> Result<PathBuf> {
    let script = scratch.path("unikernel.ld");
    std::fs::write(&script, LINKER_SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
    Ok(script)
}

/// Moves the image linked in `scratch` to `out`.
fn install(linked: &Path, out: &Path) -> Result<()> {
    std::fs::rename(linked, out)
        .map_err(|e| format!("cannot move {} to {}: {e}", linked.display(), out.display()))
}

/// The options every image link takes.
const LD_ARGS: [&str; 6] = [
    "-nostdlib",
    "-static",
    "-z",
    "max-page-size=0x1000",
    "-z",
    "noexecstack",
];

/// Stage 2: links the Solo5 image for `target` (`spt`, `hvt` or `virtio`)
/// in `scratch`, then moves it to `out`.
pub fn image(
    solo5: &Solo5,
    target: &str,
    app: &Path,
    manifest: &Path,
    scratch: &Scratch,
    out: &Path,
) -> Result<()> {
    let script = linker_script(scratch)?;
    let linked = scratch.path("image");
    run(LD
        .command()?
        .args(LD_ARGS)
        .args(["--eh-frame-hdr", "--gc-sections", "--build-id=none"])
        .arg("-T")
        .arg(&script)
        .arg("-o")
        .arg(&linked)
        .arg(solo5.bindings(target))
        .arg(manifest)
        .arg(app))?;
    install(&linked, out)
}

/// Links like [`image`] (spt, in `scratch`, then moved to `out`) but only
/// warns about undefined symbols, and returns them (sorted, deduplicated).
/// `--gc-sections` keeps the list to what is really reachable.
pub fn undefined_symbols(
    solo5: &Solo5,
    app: &Path,
    manifest: &Path,
    scratch: &Scratch,
    out: &Path,
) -> Result<Vec<String>> {
    let script = linker_script(scratch)?;
    let linked = scratch.path("image");
    let o = LD
        .command()?
        .args(LD_ARGS)
        .args([
            "--eh-frame-hdr",
            "--gc-sections",
            "--warn-unresolved-symbols",
            "-T",
        ])
        .arg(&script)
        .arg("-o")
        .arg(&linked)
        .arg(solo5.bindings("spt"))
        .arg(manifest)
        .arg(app)
        .output()
        .map_err(|e| format!("cannot run ld: {e}"))?;
    let text = String::from_utf8_lossy(&o.stderr);
    let mut syms: Vec<String> = text
        .lines()
        .filter_map(|l| l.split("undefined reference to `").nth(1))
        .filter_map(|r| r.split('\'').next())
        .map(str::to_string)
        .collect();
    syms.sort();
    syms.dedup();
    if linked.is_file() {
        install(&linked, out)?;
    }
    Ok(syms)
}

/// Runs a command, failing with its output when it does not succeed.
pub fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return fail(format!(
            "{:?} failed ({}):\n{}{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

//! Building Solo5 (tenders, `solo5-elftool`, bindings) from the sources that
//! the `solo5-sys` crate bundles.
//!
//! The tree is located through `cargo metadata` (the `solo5-sys` package's
//! `manifest_path`), copied under `<target-dir>/solo5/`, and built there with
//! Solo5's own `configure.sh` + `make` (a full build takes ~5 s). The registry
//! copy is never written to. A finished build is marked with a stamp file, so
//! later calls only check that the outputs are still there.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::{CC, LD, MAKE, OBJCOPY, PKG_CONFIG};
use crate::{Result, fail, metadata::Metadata};

/// Paths of everything the tool uses from a built Solo5 tree.
pub struct Solo5 {
    /// Root of the built copy.
    pub root: PathBuf,
}

impl Solo5 {
    /// The tender executable for `target` (`spt` or `hvt`; `virtio` has
    /// none: QEMU boots its images).
    pub fn tender(&self, target: &str) -> PathBuf {
        self.root.join(format!("tenders/{target}/solo5-{target}"))
    }
    /// `solo5-elftool` (manifest generation and queries).
    pub fn elftool(&self) -> PathBuf {
        self.root.join("elftool/solo5-elftool")
    }
    /// The bindings object for `target`, with Solo5's internal symbols
    /// already made local by Solo5's build (`objcopy -G solo5_* ...`).
    pub fn bindings(&self, target: &str) -> PathBuf {
        self.root.join(format!("bindings/solo5_{target}.o"))
    }
    /// Solo5's C compiler wrapper (freestanding flags, Solo5 include path).
    pub fn cc(&self) -> PathBuf {
        self.root.join("toolchain/bin/x86_64-solo5-none-static-cc")
    }
    fn outputs(&self) -> Vec<PathBuf> {
        let mut v = vec![self.elftool(), self.cc()];
        for t in ["spt", "hvt"] {
            v.push(self.tender(t));
            v.push(self.bindings(t));
        }
        v.push(self.bindings("virtio"));
        v
    }
}

/// Marks a finished build. The suffix changes whenever the patches below
/// change, so that a tree built by an older cargo-mkernel is rebuilt.
const STAMP: &str = ".mkernel-built-virtio-exit-2-spt-fault-1";

/// Patches applied to the copied Solo5 tree before building it:
/// (file, upstream text, replacement).
///
/// virtio: upstream's `platform_exit` writes the fixed value 41 to QEMU's
/// `isa-debug-exit` port, so QEMU always exits with 83 whatever the
/// unikernel's status. Write the status plus one instead: QEMU exits with
/// `(value << 1) | 1`, and the value is never 0, so QEMU's own failure
/// (status 1: a kernel it cannot load, an option it refuses) is never
/// taken for a unikernel that exited with 0. The exit status carries 7 bits:
/// statuses above 125 are sent as 127 ("126 or more"; `cargo mkernel run`
/// then reads the exact status from Solo5's exit line on the console when
/// there is one). This covers every exit path of the unikernel
/// (`solo5_exit`, `solo5_abort`, Solo5's own assertions), and changes
/// nothing for spt and hvt.
///
/// spt: upstream installs no signal handler, so a fault of the guest (most
/// often, with mkernel, a task's stack overflow: Solo5 has no guard pages,
/// see the README's "Stack overflow") kills the tender with `SIGSEGV` and
/// nothing on the console. Just before entering the guest, our tender
/// installs a handler (on an alternate stack) that writes one line naming
/// the signal, the faulting address, the instruction and stack pointers
/// (guest addresses: spt maps the guest at address 0, so `addr2line -e
/// IMAGE` reads them), and the likely cause, to the console, then exits with
/// status 139 (as a shell reports a death by `SIGSEGV`). The handler makes
/// only the two system calls spt's seccomp policy allows the guest (`write`
/// to fd 1, `exit_group`), by `syscall` instructions: the guest owns `%fs`,
/// so nothing of libc (errno, stack protector) may run there. The image is
/// untouched: it still runs on a stock tender (which then dies silently).
const PATCHES: [(&str, &str, &str); 3] = [
    (
        "bindings/virtio/platform.c",
        "    outw(0x501, 41);\n",
        "    outw(0x501, (status >= 0 && status < 126) ? status + 1 : 127);\n",
    ),
    (
        "tenders/spt/spt_main.c",
        "static void usage(const char *prog)\n",
        SPT_FAULT_REPORT,
    ),
    (
        "tenders/spt/spt_main.c",
        "    spt_run(spt, p_entry);\n",
        "    mk_fault_report_install();\n    spt_run(spt, p_entry);\n",
    ),
];

/// The spt tender's fault report (see [`PATCHES`]), inserted before
/// `usage`; x86_64 only, as the crate is.
const SPT_FAULT_REPORT: &str = r#"/* mkernel: a fault of the guest is reported on the console. */
#include <signal.h>
#include <ucontext.h>
static char mk_fault_stack[65536];
static char mk_fault_line[512];
static unsigned long mk_fault_len;

static void mk_fault_put(const char *s)
{
    while (*s && mk_fault_len < sizeof mk_fault_line)
        mk_fault_line[mk_fault_len++] = *s++;
}

static void mk_fault_hex(unsigned long v)
{
    int shift = 60;
    mk_fault_put("0x");
    while (shift > 0 && (v >> shift) == 0)
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        if (mk_fault_len < sizeof mk_fault_line)
            mk_fault_line[mk_fault_len++] = "0123456789abcdef"[(v >> shift) & 0xf];
}

static void mk_fault(int sig, siginfo_t *si, void *ucv)
{
    ucontext_t *uc = ucv;
    long ret;
    mk_fault_put("solo5-spt: the unikernel faulted: ");
    mk_fault_put(sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    mk_fault_put(" at address ");
    mk_fault_hex((unsigned long)si->si_addr);
    mk_fault_put(", ip ");
    mk_fault_hex((unsigned long)uc->uc_mcontext.gregs[REG_RIP]);
    mk_fault_put(", sp ");
    mk_fault_hex((unsigned long)uc->uc_mcontext.gregs[REG_RSP]);
    mk_fault_put("\nsolo5-spt: the usual cause is a task's stack overflow "
                 "(Solo5 has no guard pages): give tasks more stack "
                 "(mkernel::Builder::stack_size) or keep large arrays off "
                 "the stack\n");
    __asm__ volatile("syscall" : "=a"(ret)
                     : "0"(1L), "D"(1L), "S"(mk_fault_line), "d"(mk_fault_len)
                     : "rcx", "r11", "memory");
    __asm__ volatile("syscall" : "=a"(ret) : "0"(231L), "D"(139L)
                     : "rcx", "r11", "memory");
    (void)ret;
    for (;;)
        ;
}

static void mk_fault_report_install(void)
{
    stack_t ss;
    struct sigaction sa;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = mk_fault_stack;
    ss.ss_size = sizeof mk_fault_stack;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = mk_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaltstack(&ss, NULL) == -1 || sigaction(SIGSEGV, &sa, NULL) == -1
            || sigaction(SIGBUS, &sa, NULL) == -1)
        err(1, "installing the fault report");
}

static void usage(const char *prog)
"#;

/// Applies [`PATCHES`] to the tree at `root`; fails if upstream's text is
/// not found (another Solo5 version: the patch must be reviewed).
fn patch(root: &Path) -> Result<()> {
    for (file, from, to) in PATCHES {
        let path = root.join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if text.matches(from).count() != 1 {
            return fail(format!(
                "{}: expected exactly one {from:?} to patch (is this Solo5 v0.7.x?)",
                path.display()
            ));
        }
        std::fs::write(&path, text.replacen(from, to, 1))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Returns a built Solo5 tree, building it first if needed.
pub fn ensure(meta: &Metadata) -> Result<Solo5> {
    let pkg = meta.package("solo5-sys").ok_or_else(|| {
        "the crate graph has no `solo5-sys` package: the program must depend on the \
         `mkernel` crate (which brings `solo5-sys`, the source of the Solo5 tenders)"
            .to_string()
    })?;
    let src = crate::metadata::package_dir(pkg).join("solo5");
    if !src.join("configure.sh").is_file() {
        return fail(format!(
            "{} does not look like a Solo5 source tree (no configure.sh)",
            src.display()
        ));
    }
    let dest = meta
        .target_dir
        .join("solo5")
        .join(format!("solo5-sys-{}", pkg.version));
    let solo5 = Solo5 { root: dest.clone() };
    if dest.join(STAMP).is_file() && solo5.outputs().iter().all(|p| p.exists()) {
        return Ok(solo5);
    }
    check_prerequisites()?;
    eprintln!(
        "cargo-mkernel: building Solo5 {} (once) in {}",
        pkg.version,
        dest.display()
    );
    // Build in a private directory, then rename: concurrent builds (tests run
    // in parallel) never see a half-built tree.
    let tmp = meta.target_dir.join("solo5").join(format!(
        "solo5-sys-{}.tmp-{}",
        pkg.version,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_tree(&src, &tmp).map_err(|e| format!("copying {}: {e}", src.display()))?;
    // A release tree without .git needs this file, else its version script
    // stops the build.
    std::fs::write(
        tmp.join("include/version.h.distrib"),
        format!(
            "#define SOLO5_VERSION \"v{}-solo5-sys\"\n",
            solo5_version(&tmp)
        ),
    )
    .map_err(|e| e.to_string())?;
    patch(&tmp)?;
    let log = tmp.join("mkernel-build.log");
    let jobs = std::thread::available_parallelism().map_or(4, |n| n.get());
    run_logged(Command::new("./configure.sh").current_dir(&tmp), &log)?;
    run_logged(
        MAKE.command()?.arg(format!("-j{jobs}")).current_dir(&tmp),
        &log,
    )?;
    // Solo5's toolchain directory links to the build tree by absolute
    // paths: point them at the final location before moving there.
    repoint_symlinks(&tmp.join("toolchain"), &tmp, &dest).map_err(|e| e.to_string())?;
    std::fs::write(tmp.join(STAMP), b"").map_err(|e| e.to_string())?;
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => {}
        Err(_) if dest.join(STAMP).is_file() => {
            // Another process finished first; use its tree.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(&dest);
            std::fs::rename(&tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
    }
    Ok(solo5)
}

/// The version in Solo5's `CHANGES.md` (first `## vX.Y.Z` heading), for the
/// banner of the bindings.
fn solo5_version(tree: &Path) -> String {
    std::fs::read_to_string(tree.join("CHANGES.md"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("## v")
                    .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Fails with the Debian package to install when a build tool is missing.
fn check_prerequisites() -> Result<()> {
    for program in [CC, MAKE, LD, OBJCOPY, PKG_CONFIG] {
        program
            .find()
            .map_err(|e| format!("building Solo5 needs {}: {e}", program.name))?;
    }
    let seccomp = PKG_CONFIG
        .command()?
        .args(["--exists", "libseccomp"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !seccomp {
        return fail(
            "the Solo5 spt tender needs libseccomp's development files, which pkg-config \
             cannot find: install them with `apt-get install libseccomp-dev`",
        );
    }
    Ok(())
}

fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    let mut text = out.stdout;
    text.extend_from_slice(&out.stderr);
    let mut all = std::fs::read(log).unwrap_or_default();
    all.extend_from_slice(&text);
    let _ = std::fs::write(log, &all);
    if !out.status.success() {
        let text = String::from_utf8_lossy(&text);
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return fail(format!(
            "building Solo5 failed ({:?} exited with {}); last lines of the log {}:\n{}",
            cmd.get_program(),
            out.status,
            log.display(),
            tail.join("\n")
        ));
    }
    Ok(())
}

fn repoint_symlinks(dir: &Path, from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            if let Ok(rest) = target.strip_prefix(from) {
                std::fs::remove_file(entry.path())?;
                std::os::unix::fs::symlink(to.join(rest), entry.path())?;
            }
        } else if ty.is_dir() {
            repoint_symlinks(&entry.path(), from, to)?;
        }
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dst = to.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &dst)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(target, dst)?;
        } else {
            // `fs::copy` keeps the permission bits (configure.sh and the
            // scripts stay executable).
            std::fs::copy(entry.path(), dst)?;
        }
    }
    Ok(())
}
